//! Scenario files (TOML) and the catalogue of node and VM types.
//!
//! Two phases, as in ripgrep: raw structs that mirror the file (`deny_unknown_fields`),
//! then validation into core types. Every error names the file and the key path.

use crate::timefmt::parse_rfc3339;
use crate::transform::Transform;
use conductor_core::policy::{Band, Policy, PredictiveParams, ReactiveParams, ScaleIn, ScalingPolicy, SparePoolParams};
use conductor_core::time::{HOUR, SECOND};
use conductor_core::{CloudType, DedicatedType, Millis, Prices, Reserve, SchedulerConfig, Strategy};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod catalogue;
mod policy;
mod transforms;

pub use catalogue::Catalogue;
use catalogue::{gib_to_mib, RawCatalogue};
use policy::{policy, PolicyParts, RawPolicy};
pub use policy::{ForecastSource, MigrationModel, PolicyKind};
use transforms::transforms;

/// The catalogue shipped in `scenarios/catalogue.toml`, used when a scenario names none.
pub const DEFAULT_CATALOGUE: &str = include_str!("../../../scenarios/catalogue.toml");

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Key { path: PathBuf, key: String, message: String },
}

/// A decimal written as a TOML number or string; floats are read through their shortest
/// decimal form so that `0.016` is exactly 0.016.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec(pub Decimal);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a decimal number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dec, E> {
                Ok(Dec(Decimal::from(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dec, E> {
                Ok(Dec(Decimal::from(v)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dec, E> {
                Decimal::from_str(v.trim())
                    .map(Dec)
                    .map_err(|_| E::custom(format!("expected a decimal number, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------- scenario

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
    dataset: String,
    catalogue: Option<String>,
    /// Types added to (or replacing those of) the catalogue for this scenario only.
    types: Option<RawCatalogue>,
    window: Option<RawWindow>,
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    lifecycle: RawLifecycle,
    #[serde(default)]
    prices: RawPrices,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    failures: RawFailures,
    /// Plan changes during play.
    #[serde(default)]
    upgrades: Vec<RawUpgrade>,
    /// Preemptible jobs on idle dedicated capacity.
    jobs: Option<RawJobs>,
    /// What-if transforms of the demand, applied in order before the replay.
    #[serde(default)]
    transform: Vec<RawTransform>,
    // Read by the workbench (variants, sweeps, objective); a single run ignores them.
    #[serde(default, rename = "variant")]
    _variant: Option<toml::Value>,
    #[serde(default, rename = "sweep")]
    _sweep: Option<toml::Value>,
    #[serde(default, rename = "objective")]
    _objective: Option<toml::Value>,
    #[serde(default, rename = "output")]
    _output: Option<toml::Value>,
}

#[derive(Deserialize, Debug)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum RawTransform {
    Scale {
        factor: f64,
    },
    Growth {
        percent_per_week: f64,
    },
    Spike {
        at: String,
        within: String,
        servers: u32,
        #[serde(default)]
        tier: Option<String>,
        ram_gib: Option<u32>,
        disk_gb: Option<Dec>,
        session: Option<String>,
        players: Option<u32>,
    },
    Shift {
        by: String,
    },
    Stretch {
        factor: f64,
    },
    TierMix {
        small: f64,
        medium: f64,
        large: f64,
    },
    PayPerUse {
        share: f64,
    },
    Prices {
        active_eur_per_gib_hour: Option<Dec>,
        sleeping_eur_per_gb_month: Option<Dec>,
        promo_credit_eur: Option<Dec>,
        #[serde(default)]
        elasticity: f64,
    },
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    rate_per_hour: f64,
    ram_gib: Vec<u32>,
    /// Mean job length (exponentially distributed).
    duration_h: Dec,
    price_eur_per_gib_hour: Dec,
    notice_s: Option<Dec>,
}

/// A stream of preemptible jobs (seeded): arrivals, sizes, lengths and their price.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStream {
    pub rate_per_hour: f64,
    pub ram_mib: Vec<u32>,
    pub mean_duration: Millis,
    pub price_per_gib_hour: Decimal,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawUpgrade {
    server: String,
    at: String,
    ram_gib: u32,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawFailures {
    /// Dedicated nodes come back this long after failing.
    repair_h: Option<Dec>,
    /// Seeded failures of dedicated nodes: expected failures per node per 30 days.
    random_per_node_month: Option<f64>,
    /// Seeded crashes of running servers: expected crashes per server per day of running.
    crashes_per_server_day: Option<f64>,
    /// The share of starts whose container never answers (0 to 1).
    failed_start_share: Option<f64>,
    #[serde(default)]
    events: Vec<RawFailure>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawFailure {
    /// `dedicated:N` (scenario order, from 0) or `cloud:oldest`.
    node: String,
    at: String,
}

/// Which node an injected failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureTarget {
    Dedicated(u32),
    /// The oldest cloud VM that exists at that moment.
    OldestVm,
}

/// Node failures injected into a run (SPEC §7 failure handling).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failures {
    pub repair: Millis,
    pub random_per_node_month: f64,
    pub crashes_per_server_day: f64,
    pub failed_start_share: f64,
    pub events: Vec<(FailureTarget, Millis)>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    start: String,
    end: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    dedicated: Vec<RawDedicatedGroup>,
    cloud: Option<RawCloudFleet>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawDedicatedGroup {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawCloudFleet {
    #[serde(rename = "type")]
    type_name: String,
    max_vms: u32,
    /// `image` (cloud-init, slow) or `snapshot` (prepared, fast).
    #[serde(default)]
    image: ImageKind,
    /// Size of the prepared snapshot (stored while the scenario runs), GB.
    snapshot_gb: Option<Dec>,
    /// What snapshot storage costs, per GB-month.
    snapshot_eur_per_gb_month: Option<Dec>,
}

#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    #[default]
    Image,
    Snapshot,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    boot_s: Option<Dec>,
    boot_distribution: Option<RawDistribution>,
    restore_mb_per_s: Option<u32>,
    provisioning_s: Option<Dec>,
    provisioning_distribution: Option<RawDistribution>,
    idle_timeout_s: Option<Dec>,
    give_up_s: Option<Dec>,
    sleep_window_h: Option<Dec>,
    /// A node silent this long is declared dead.
    dead_after_s: Option<Dec>,
    /// A server that crashes this many times within `crash_window_s` is stopped, not
    /// restarted (a crash loop).
    crash_limit: Option<u32>,
    crash_window_s: Option<Dec>,
    /// `"dataset"`: boot and VM provisioning as the dataset's `[measured]` says (a live
    /// fleet's own delays, from `conductor export`); the values above where it has none.
    delays_from: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum RawDistribution {
    Uniform { min_s: Dec, max_s: Dec },
    Lognormal { median_s: Dec, sigma: f64 },
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawPrices {
    active_eur_per_gib_hour: Option<Dec>,
    sleeping_eur_per_gb_month: Option<Dec>,
    archive_eur_per_tb_month: Option<Dec>,
    promo_credit_eur: Option<Dec>,
}

/// How long something takes in the simulated world.
#[derive(Clone, Debug, PartialEq)]
pub enum Delay {
    Fixed(Millis),
    Uniform { min: Millis, max: Millis },
    LogNormal { median: Millis, sigma: f64 },
}

impl Delay {
    /// The value policies plan with: the fixed value, the worst case of a uniform delay,
    /// the median of a log-normal one.
    pub fn planning_value(&self) -> Millis {
        match *self {
            Delay::Fixed(ms) => ms,
            Delay::Uniform { max, .. } => max,
            Delay::LogNormal { median, .. } => median,
        }
    }
}

/// Delays and timeouts of the server lifecycle (SPEC §6, §11 rule 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Lifecycle {
    pub boot: Delay,
    pub restore_mb_per_s: u32,
    pub provisioning: Delay,
    pub idle_timeout: Millis,
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The scenario file, as given.
    pub file: PathBuf,
    pub seed: u64,
    pub dataset: PathBuf,
    pub window: Option<(Millis, Millis)>,
    pub dedicated: Vec<DedicatedType>,
    pub cloud: Option<CloudType>,
    pub image: ImageKind,
    /// Snapshot storage cost per month (0 with `image`).
    pub snapshot_monthly_eur: Decimal,
    pub lifecycle: Lifecycle,
    pub prices: Prices,
    pub policy: PolicyKind,
    pub scheduler: SchedulerConfig,
    /// Set when a predictive policy is active.
    pub forecast_source: Option<ForecastSource>,
    pub failures: Failures,
    /// Set when consolidation is active.
    pub migration: Option<MigrationModel>,
    /// Plan changes during play: (server id, when, new plan RAM MiB).
    pub upgrades: Vec<(String, Millis, u32)>,
    pub jobs: Option<JobStream>,
    /// What-if transforms of the demand (applied before the replay, in order).
    pub transforms: Vec<Transform>,
    /// The node and VM types the scenario could name (the live controller's joining nodes
    /// name theirs from it).
    pub catalogue: Catalogue,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::parse(path, &read(path)?)
    }

    /// Parses scenario `text`; relative paths in it are relative to `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = deserialize(path, text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let err =
            |key: &str, message: String| ScenarioError::Key { path: path.to_path_buf(), key: key.into(), message };

        let mut catalogue = match &raw.catalogue {
            Some(file) => Catalogue::load(&base.join(file))?,
            None => Catalogue::builtin(),
        };
        if let Some(types) = raw.types {
            let extra = Catalogue::from_raw(path, types, "types.")?;
            catalogue.dedicated.extend(extra.dedicated);
            catalogue.cloud.extend(extra.cloud);
        }
        let window = match &raw.window {
            None => None,
            Some(w) => {
                let start = parse_rfc3339(&w.start).map_err(|m| err("window.start", m))?;
                let end = parse_rfc3339(&w.end).map_err(|m| err("window.end", m))?;
                if end <= start {
                    return Err(err("window.end", "the window must end after it starts".into()));
                }
                Some((start, end))
            }
        };
        let mut dedicated = Vec::new();
        for (i, group) in raw.fleet.dedicated.iter().enumerate() {
            let t = catalogue.dedicated.get(&group.type_name).ok_or_else(|| {
                err(
                    &format!("fleet.dedicated[{i}].type"),
                    format!(
                        "unknown dedicated type {:?} (catalogue has: {})",
                        group.type_name,
                        keys(&catalogue.dedicated)
                    ),
                )
            })?;
            dedicated.extend(std::iter::repeat_n(t.clone(), group.count as usize));
        }
        let mut snapshot_monthly_eur = Decimal::ZERO;
        let (cloud, max_vms, image) = match &raw.fleet.cloud {
            None => (None, 0, ImageKind::Image),
            Some(c) => {
                let t = catalogue.cloud.get(&c.type_name).ok_or_else(|| {
                    err(
                        "fleet.cloud.type",
                        format!("unknown cloud type {:?} (catalogue has: {})", c.type_name, keys(&catalogue.cloud)),
                    )
                })?;
                if c.image == ImageKind::Snapshot {
                    // Hetzner Cloud snapshots: about 0.011 EUR per GB-month.
                    let gb = c.snapshot_gb.map_or(Decimal::from(20), |d| d.0);
                    let price = c.snapshot_eur_per_gb_month.map_or(Decimal::new(11, 3), |d| d.0);
                    if gb < Decimal::ZERO || price < Decimal::ZERO {
                        return Err(err("fleet.cloud.snapshot_gb", "sizes and prices cannot be negative".into()));
                    }
                    snapshot_monthly_eur = gb * price;
                } else if c.snapshot_gb.is_some() || c.snapshot_eur_per_gb_month.is_some() {
                    return Err(err("fleet.cloud.snapshot_gb", "only meaningful with image = \"snapshot\"".into()));
                }
                (Some(t.clone()), c.max_vms, c.image)
            }
        };

        let l = &raw.lifecycle;
        let secs = |key: &str, v: Option<Dec>, default: Millis| -> Result<Millis, ScenarioError> {
            match v {
                None => Ok(default),
                Some(Dec(d)) => {
                    to_millis(d, SECOND).ok_or_else(|| err(key, "expected a non-negative duration in seconds".into()))
                }
            }
        };
        let default_provisioning = match image {
            ImageKind::Image => 120 * SECOND,
            ImageKind::Snapshot => 30 * SECOND,
        };
        let boot = delay(
            secs("lifecycle.boot_s", l.boot_s, 20 * SECOND)?,
            l.boot_distribution.as_ref(),
            "lifecycle.boot_distribution",
            &err,
        )?;
        let provisioning = delay(
            secs("lifecycle.provisioning_s", l.provisioning_s, default_provisioning)?,
            l.provisioning_distribution.as_ref(),
            "lifecycle.provisioning_distribution",
            &err,
        )?;
        let mut measured_restore = None;
        let (boot, provisioning) = match l.delays_from.as_deref() {
            None => (boot, provisioning),
            Some("dataset") => {
                let dir = base.join(&raw.dataset);
                let m =
                    crate::dataset::measured(&dir).map_err(|e| err("lifecycle.delays_from", e))?.ok_or_else(|| {
                        err(
                            "lifecycle.delays_from",
                            format!(
                                "{}/meta.toml has no [measured] table (conductor export writes one)",
                                dir.display()
                            ),
                        )
                    })?;
                let fit = |f: &Option<crate::dataset::Fit>, fallback: Delay| match f {
                    Some(f) => Delay::LogNormal { median: (f.median_s * 1000.0).round() as Millis, sigma: f.sigma },
                    None => fallback,
                };
                measured_restore = m.restore.map(|r| (r.mb_per_s.round() as u32).max(1));
                (fit(&m.boot, boot), fit(&m.provisioning, provisioning))
            }
            Some(other) => {
                return Err(err("lifecycle.delays_from", format!("expected \"dataset\", got {other:?}")));
            }
        };
        let restore_mb_per_s = measured_restore.or(l.restore_mb_per_s).unwrap_or(100);
        if restore_mb_per_s == 0 {
            return Err(err("lifecycle.restore_mb_per_s", "expected a positive bandwidth in MB/s".into()));
        }
        let lifecycle = Lifecycle {
            boot,
            restore_mb_per_s,
            provisioning,
            idle_timeout: secs("lifecycle.idle_timeout_s", l.idle_timeout_s, 300 * SECOND)?,
        };
        let give_up = secs("lifecycle.give_up_s", l.give_up_s, 600 * SECOND)?;
        let sleep_window = match l.sleep_window_h {
            None => 48 * HOUR,
            Some(Dec(h)) => to_millis(h, HOUR)
                .ok_or_else(|| err("lifecycle.sleep_window_h", "expected a non-negative number of hours".into()))?,
        };

        let defaults = Prices::default();
        let price = |key: &str, v: Option<Dec>, default: Decimal| -> Result<Decimal, ScenarioError> {
            match v {
                None => Ok(default),
                Some(Dec(d)) if d >= Decimal::ZERO => Ok(d),
                Some(_) => Err(err(key, "a price cannot be negative".into())),
            }
        };
        let p = &raw.prices;
        let prices = Prices {
            active_per_gib_hour: price(
                "prices.active_eur_per_gib_hour",
                p.active_eur_per_gib_hour,
                defaults.active_per_gib_hour,
            )?,
            sleeping_per_gb_month: price(
                "prices.sleeping_eur_per_gb_month",
                p.sleeping_eur_per_gb_month,
                defaults.sleeping_per_gb_month,
            )?,
            archive_per_tb_month: price(
                "prices.archive_eur_per_tb_month",
                p.archive_eur_per_tb_month,
                defaults.archive_per_tb_month,
            )?,
            promo_credit: price("prices.promo_credit_eur", p.promo_credit_eur, defaults.promo_credit)?,
        };

        let mut prices = prices;
        let transforms = transforms(&raw.transform, &mut prices, &err)?;

        let pol = &raw.policy;
        let PolicyParts { scaling, strategy, forecast_source, migration, disk } =
            policy(pol, &lifecycle, cloud.as_ref(), max_vms, &err)?;
        if dedicated.is_empty() && cloud.is_none() {
            return Err(err("fleet", "the fleet is empty: add [[fleet.dedicated]] groups or [fleet.cloud]".into()));
        }

        let f = &raw.failures;
        let mut events = Vec::new();
        for (i, e) in f.events.iter().enumerate() {
            let key = |k: &str| format!("failures.events[{i}].{k}");
            let target = if e.node == "cloud:oldest" {
                FailureTarget::OldestVm
            } else {
                let index = e.node.strip_prefix("dedicated:").and_then(|n| n.parse::<u32>().ok());
                match index {
                    Some(n) if (n as usize) < dedicated.len() => FailureTarget::Dedicated(n),
                    _ => {
                        return Err(err(
                            &key("node"),
                            format!(
                            "expected dedicated:N with N < {} (the fleet's dedicated nodes) or cloud:oldest, got {:?}",
                            dedicated.len(),
                            e.node
                        ),
                        ))
                    }
                }
            };
            events.push((target, parse_rfc3339(&e.at).map_err(|m| err(&key("at"), m))?));
        }
        let random = f.random_per_node_month.unwrap_or(0.0);
        if !(random.is_finite() && random >= 0.0) {
            return Err(err("failures.random_per_node_month", "expected a non-negative rate".into()));
        }
        let crashes = f.crashes_per_server_day.unwrap_or(0.0);
        if !(crashes.is_finite() && crashes >= 0.0) {
            return Err(err("failures.crashes_per_server_day", "expected a non-negative rate".into()));
        }
        let failed_starts = f.failed_start_share.unwrap_or(0.0);
        if !(0.0..1.0).contains(&failed_starts) {
            return Err(err("failures.failed_start_share", "expected a share from 0 up to (not including) 1".into()));
        }
        let failures = Failures {
            repair: match f.repair_h {
                None => 4 * HOUR,
                Some(Dec(h)) => to_millis(h, HOUR)
                    .ok_or_else(|| err("failures.repair_h", "expected a non-negative number of hours".into()))?,
            },
            random_per_node_month: random,
            crashes_per_server_day: crashes,
            failed_start_share: failed_starts,
            events,
        };
        let dead_after = secs("lifecycle.dead_after_s", raw.lifecycle.dead_after_s, 300 * SECOND)?;
        let crash_window = secs("lifecycle.crash_window_s", raw.lifecycle.crash_window_s, 600 * SECOND)?;
        let crash_limit = match raw.lifecycle.crash_limit {
            Some(0) => return Err(err("lifecycle.crash_limit", "expected at least 1 crash".into())),
            Some(n) => n,
            None => 3,
        };
        let mut job_notice = 300 * SECOND;
        let jobs = match &raw.jobs {
            None => None,
            Some(j) => {
                if !(j.rate_per_hour.is_finite() && j.rate_per_hour > 0.0) {
                    return Err(err("jobs.rate_per_hour", "expected a positive rate".into()));
                }
                if j.ram_gib.is_empty() || j.ram_gib.contains(&0) {
                    return Err(err("jobs.ram_gib", "expected a list of positive sizes in GiB".into()));
                }
                if dedicated.is_empty() {
                    return Err(err("jobs", "preemptible jobs run on dedicated nodes: add [[fleet.dedicated]]".into()));
                }
                let mean_duration = to_millis(j.duration_h.0, HOUR)
                    .filter(|&d| d > 0)
                    .ok_or_else(|| err("jobs.duration_h", "expected a positive number of hours".into()))?;
                if j.price_eur_per_gib_hour.0 < Decimal::ZERO {
                    return Err(err("jobs.price_eur_per_gib_hour", "a price cannot be negative".into()));
                }
                job_notice = secs("jobs.notice_s", j.notice_s, job_notice)?;
                Some(JobStream {
                    rate_per_hour: j.rate_per_hour,
                    ram_mib: j.ram_gib.iter().map(|g| g * 1024).collect(),
                    mean_duration,
                    price_per_gib_hour: j.price_eur_per_gib_hour.0,
                })
            }
        };
        let mut upgrades = Vec::new();
        for (i, u) in raw.upgrades.iter().enumerate() {
            let at = parse_rfc3339(&u.at).map_err(|m| err(&format!("upgrades[{i}].at"), m))?;
            let ram = gib_to_mib(u.ram_gib)
                .filter(|&r| r > 0)
                .ok_or_else(|| err(&format!("upgrades[{i}].ram_gib"), "expected a positive number of GiB".into()))?;
            upgrades.push((u.server.clone(), at, ram));
        }

        let seed = raw.seed;
        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            file: path.to_path_buf(),
            seed,
            dataset: base.join(&raw.dataset),
            window,
            dedicated,
            cloud: cloud.clone(),
            image,
            snapshot_monthly_eur,
            lifecycle,
            prices,
            policy: pol.kind,
            scheduler: SchedulerConfig {
                strategy,
                give_up,
                sleep_window,
                scaling,
                vm_type: cloud,
                dead_after,
                job_notice,
                crash_limit,
                crash_window,
                disk,
            },
            forecast_source,
            failures,
            migration,
            upgrades,
            jobs,
            transforms,
            catalogue,
        })
    }
}

impl Scenario {
    /// Checks what the scenario says about the dataset's servers (e.g. upgrades name
    /// servers that exist).
    pub fn check_against(&self, ds: &crate::dataset::Dataset) -> Result<(), ScenarioError> {
        for (i, (id, _, _)) in self.upgrades.iter().enumerate() {
            if !ds.servers.iter().any(|s| &s.id == id) {
                return Err(ScenarioError::Key {
                    path: self.file.clone(),
                    key: format!("upgrades[{i}].server"),
                    message: format!("no server {id:?} in dataset {}", ds.dir.display()),
                });
            }
        }
        Ok(())
    }
}

fn delay(
    fixed: Millis,
    dist: Option<&RawDistribution>,
    key: &str,
    err: &dyn Fn(&str, String) -> ScenarioError,
) -> Result<Delay, ScenarioError> {
    let ms = |d: Dec, sub: &str| {
        to_millis(d.0, SECOND)
            .ok_or_else(|| err(&format!("{key}.{sub}"), "expected a non-negative number of seconds".into()))
    };
    match dist {
        None => Ok(Delay::Fixed(fixed)),
        Some(RawDistribution::Uniform { min_s, max_s }) => {
            let (min, max) = (ms(*min_s, "min_s")?, ms(*max_s, "max_s")?);
            if min > max {
                return Err(err(&format!("{key}.max_s"), "must not be below min_s".into()));
            }
            Ok(Delay::Uniform { min, max })
        }
        Some(RawDistribution::Lognormal { median_s, sigma }) => {
            if !(sigma.is_finite() && *sigma >= 0.0) {
                return Err(err(&format!("{key}.sigma"), "expected a non-negative number".into()));
            }
            Ok(Delay::LogNormal { median: ms(*median_s, "median_s")?, sigma: *sigma })
        }
    }
}

/// A forecast source by name: `perfect`, `seasonal-naive` or a forecaster model.
fn parse_source(name: &str) -> Result<ForecastSource, String> {
    Ok(match name {
        "perfect" => ForecastSource::Perfect,
        "seasonal-naive" => ForecastSource::SeasonalNaive,
        other => ForecastSource::Model(conductor_forecast::ModelSpec::new(
            conductor_forecast::ModelKind::parse(other).map_err(|m| format!("{m}; or perfect, seasonal-naive"))?,
        )),
    })
}

fn to_millis(v: Decimal, unit: Millis) -> Option<Millis> {
    if v < Decimal::ZERO {
        return None;
    }
    let ms = (v * Decimal::from(unit)).round();
    rust_decimal::prelude::ToPrimitive::to_i64(&ms)
}

fn keys<V>(m: &BTreeMap<String, V>) -> String {
    m.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn read(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Io { path: path.to_path_buf(), source })
}

/// Deserializes TOML, reporting the key path of a bad value.
fn deserialize<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ScenarioError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_owned();
        let at = inner
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        if key == "." || key.is_empty() {
            ScenarioError::Syntax { path: path.to_path_buf(), message: format!("{message}{at}") }
        } else {
            ScenarioError::Key { path: path.to_path_buf(), key, message: format!("{message}{at}") }
        }
    })
}
