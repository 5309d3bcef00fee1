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

/// The catalogue shipped in `scenarios/catalogue.toml`, used when a scenario names none.
pub const DEFAULT_CATALOGUE: &str = include_str!("../../scenarios/catalogue.toml");

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

// ---------------------------------------------------------------- catalogue

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    #[serde(default)]
    dedicated: BTreeMap<String, RawDedicated>,
    #[serde(default)]
    cloud: BTreeMap<String, RawCloud>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawDedicated {
    ram_gib: u32,
    cores: u32,
    disk_gb: u32,
    monthly_eur: Dec,
    reserve_mib: Option<u32>,
    reserve_pct: Option<Dec>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    ram_gib: u32,
    cores: u32,
    disk_gb: u32,
    hourly_eur: Dec,
    monthly_cap_eur: Dec,
    reserve_mib: Option<u32>,
    reserve_pct: Option<Dec>,
}

/// Node and VM types with prices (SPEC §5).
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub dedicated: BTreeMap<String, DedicatedType>,
    pub cloud: BTreeMap<String, CloudType>,
}

/// Default reserve of a dedicated node (SPEC §5).
const DEDICATED_RESERVE_MIB: u32 = 2300;
/// Default reserve of a cloud VM, percent (SPEC §5).
const CLOUD_RESERVE_PCT: i64 = 15;

impl Catalogue {
    pub fn parse(path: &Path, text: &str) -> Result<Catalogue, ScenarioError> {
        let raw: RawCatalogue = deserialize(path, text)?;
        Catalogue::from_raw(path, raw, "")
    }

    /// Validates `raw`; `prefix` is prepended to key paths in errors.
    fn from_raw(path: &Path, raw: RawCatalogue, prefix: &str) -> Result<Catalogue, ScenarioError> {
        let key_err = |key: String, message: String| ScenarioError::Key { path: path.to_path_buf(), key, message };
        let reserve = |key: &str, mib: Option<u32>, pct: Option<Dec>, default: Reserve| match (mib, pct) {
            (Some(_), Some(_)) => Err(key_err(key.into(), "give reserve_mib or reserve_pct, not both".into())),
            (Some(m), None) => Ok(Reserve::Mib(m)),
            (None, Some(Dec(p))) if p >= Decimal::ZERO && p < Decimal::ONE_HUNDRED => Ok(Reserve::Percent(p)),
            (None, Some(_)) => Err(key_err(format!("{key}.reserve_pct"), "expected a percentage in [0, 100)".into())),
            (None, None) => Ok(default),
        };
        let mut catalogue = Catalogue::default();
        for (name, d) in raw.dedicated {
            let key = format!("{prefix}dedicated.{name}");
            non_negative(&d.monthly_eur, || {
                key_err(format!("{key}.monthly_eur"), "a price cannot be negative".into())
            })?;
            positive(d.ram_gib, || key_err(format!("{key}.ram_gib"), "expected a positive number of GiB".into()))?;
            let reserve = reserve(&key, d.reserve_mib, d.reserve_pct, Reserve::Mib(DEDICATED_RESERVE_MIB))?;
            let ram_mib = gib_to_mib(d.ram_gib).ok_or_else(|| key_err(format!("{key}.ram_gib"), "too large".into()))?;
            catalogue.dedicated.insert(
                name.clone(),
                DedicatedType {
                    name,
                    ram_mib,
                    cores: d.cores,
                    disk_gb: d.disk_gb,
                    monthly_eur: d.monthly_eur.0,
                    reserve,
                },
            );
        }
        for (name, c) in raw.cloud {
            let key = format!("{prefix}cloud.{name}");
            non_negative(&c.hourly_eur, || key_err(format!("{key}.hourly_eur"), "a price cannot be negative".into()))?;
            non_negative(&c.monthly_cap_eur, || {
                key_err(format!("{key}.monthly_cap_eur"), "a price cannot be negative".into())
            })?;
            positive(c.ram_gib, || key_err(format!("{key}.ram_gib"), "expected a positive number of GiB".into()))?;
            let reserve =
                reserve(&key, c.reserve_mib, c.reserve_pct, Reserve::Percent(Decimal::from(CLOUD_RESERVE_PCT)))?;
            let ram_mib = gib_to_mib(c.ram_gib).ok_or_else(|| key_err(format!("{key}.ram_gib"), "too large".into()))?;
            catalogue.cloud.insert(
                name.clone(),
                CloudType {
                    name,
                    ram_mib,
                    cores: c.cores,
                    disk_gb: c.disk_gb,
                    hourly_eur: c.hourly_eur.0,
                    monthly_cap_eur: c.monthly_cap_eur.0,
                    reserve,
                },
            );
        }
        Ok(catalogue)
    }

    pub fn load(path: &Path) -> Result<Catalogue, ScenarioError> {
        Catalogue::parse(path, &read(path)?)
    }

    pub fn builtin() -> Catalogue {
        Catalogue::parse(Path::new("<built-in catalogue>"), DEFAULT_CATALOGUE).expect("the shipped catalogue is valid")
    }
}

fn gib_to_mib(gib: u32) -> Option<u32> {
    gib.checked_mul(1024)
}

fn non_negative(d: &Dec, err: impl FnOnce() -> ScenarioError) -> Result<(), ScenarioError> {
    if d.0 < Decimal::ZERO {
        Err(err())
    } else {
        Ok(())
    }
}

fn positive(v: u32, err: impl FnOnce() -> ScenarioError) -> Result<(), ScenarioError> {
    if v == 0 {
        Err(err())
    } else {
        Ok(())
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

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    kind: PolicyKind,
    placement: Option<Strategy>,
    interval_s: Option<Dec>,
    /// `custom`: whether the reactive policy is one of the active ones (default true).
    reactive: Option<bool>,
    up: Option<Dec>,
    down: Option<Dec>,
    low_for_s: Option<Dec>,
    cooldown_s: Option<Dec>,
    queue_aware: Option<bool>,
    /// `newest` (SPEC §11) or `billing-hour`.
    scale_in: Option<RawScaleIn>,
    /// `billing-hour`: delete only this close to the VM's next started hour.
    billing_margin_s: Option<Dec>,
    /// Drain the coldest VM when scale-in is agreed but no VM is idle.
    drain: Option<bool>,
    predictive: Option<RawPredictive>,
    spare_pool: Option<RawSparePool>,
    consolidation: Option<RawConsolidation>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConsolidation {
    every_s: Option<Dec>,
    min_saving_eur_per_hour: Option<Dec>,
    max_migrations_per_hour: Option<u32>,
    announce_s: Option<Dec>,
    auto_once_per_h: Option<Dec>,
    /// Twin: the chance that a `suggest` owner accepts a recommendation.
    suggest_acceptance: Option<f64>,
    /// Twin: saving the world before the copy starts.
    save_s: Option<Dec>,
}

/// How the twin plays consolidation's owners and migrations.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationModel {
    pub suggest_acceptance: f64,
    pub save: Millis,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawScaleIn {
    Newest,
    BillingHour,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawPredictive {
    /// `perfect`, `seasonal-naive`, or a forecaster model (`mstl`, `snaive-week`, …).
    source: String,
    /// `mean`, `p90` or `p97.5`.
    #[serde(default = "default_band")]
    band: String,
    /// Lead time beyond the provisioning delay.
    lead_buffer_s: Option<Dec>,
    target_utilisation: Option<Dec>,
    #[serde(default)]
    scale_in: bool,
    hold_s: Option<Dec>,
    #[serde(default)]
    shadow: bool,
}

fn default_band() -> String {
    "p90".into()
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawSparePool {
    /// N, or the floor with `from_forecast`.
    #[serde(default)]
    size: u32,
    /// Size the pool from forecast arrivals × provisioning time; needs a forecast source
    /// (`source` here or in [policy.predictive]).
    #[serde(default)]
    from_forecast: bool,
    source: Option<String>,
}

/// Where the twin's predictive policy gets its forecast.
#[derive(Debug, Clone, PartialEq)]
pub enum ForecastSource {
    /// The future demand itself: an upper bound for analysis, not a forecast.
    Perfect,
    /// Demand one week earlier.
    SeasonalNaive,
    /// The forecaster's model, re-fitted every simulated night at 03:00.
    Model(conductor_forecast::ModelSpec),
}

#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The pinned reactive policy of SPEC §11.
    #[default]
    Reference,
    /// Configurable policies: reactive (flat knobs), predictive and spare pool (tables).
    #[serde(alias = "reactive")]
    Custom,
    /// No scaling: the dedicated fleet only.
    Fixed,
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
        let restore_mb_per_s = l.restore_mb_per_s.unwrap_or(100);
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
        let mut forecast_source = None;
        let mut migration = None;
        let (scaling, strategy) = match pol.kind {
            PolicyKind::Reference => {
                let knobs = [
                    ("policy.placement", pol.placement.is_some_and(|s| s != Strategy::FirstFit)),
                    ("policy.interval_s", pol.interval_s.is_some()),
                    ("policy.reactive", pol.reactive.is_some()),
                    ("policy.up", pol.up.is_some()),
                    ("policy.down", pol.down.is_some()),
                    ("policy.low_for_s", pol.low_for_s.is_some()),
                    ("policy.cooldown_s", pol.cooldown_s.is_some()),
                    ("policy.queue_aware", pol.queue_aware.is_some()),
                    ("policy.scale_in", pol.scale_in.is_some()),
                    ("policy.billing_margin_s", pol.billing_margin_s.is_some()),
                    ("policy.drain", pol.drain.is_some()),
                    ("policy.predictive", pol.predictive.is_some()),
                    ("policy.spare_pool", pol.spare_pool.is_some()),
                    ("policy.consolidation", pol.consolidation.is_some()),
                ];
                if let Some((key, _)) = knobs.iter().find(|(_, set)| *set) {
                    return Err(err(
                        key,
                        "the reference policy is pinned (SPEC §11); use kind = \"custom\" to change it".into(),
                    ));
                }
                if cloud.is_none() {
                    return Err(err(
                        "fleet.cloud",
                        "the reference policy scales with cloud VMs: add [fleet.cloud] with type and max_vms".into(),
                    ));
                }
                (ScalingPolicy::reference(max_vms), Strategy::FirstFit)
            }
            PolicyKind::Custom => {
                let r = ReactiveParams::reference();
                let fraction = |key: &str, v: Option<Dec>, default: Decimal| match v {
                    None => Ok(default),
                    Some(Dec(d)) if d >= Decimal::ZERO => Ok(d),
                    Some(_) => Err(err(key, "expected a non-negative utilisation such as 0.85".into())),
                };
                let mut policies = Vec::new();
                if pol.reactive.unwrap_or(true) {
                    let params = ReactiveParams {
                        up: fraction("policy.up", pol.up, r.up)?,
                        down: fraction("policy.down", pol.down, r.down)?,
                        low_for: secs("policy.low_for_s", pol.low_for_s, r.low_for)?,
                        cooldown: secs("policy.cooldown_s", pol.cooldown_s, r.cooldown)?,
                        queue_aware: pol.queue_aware.unwrap_or(r.queue_aware),
                    };
                    if params.down >= params.up {
                        return Err(err(
                            "policy.down",
                            format!("must be below policy.up ({} ≥ {})", params.down, params.up),
                        ));
                    }
                    policies.push(Policy::Reactive(params));
                }
                if let Some(p) = &pol.predictive {
                    let band = match p.band.as_str() {
                        "mean" => Band::Mean,
                        "p90" => Band::P90,
                        "p97.5" => Band::P97_5,
                        other => {
                            return Err(err(
                                "policy.predictive.band",
                                format!("expected mean, p90 or p97.5, got {other:?}"),
                            ))
                        }
                    };
                    forecast_source = Some(parse_source(&p.source).map_err(|m| err("policy.predictive.source", m))?);
                    let provisioning_ms = lifecycle.provisioning.planning_value();
                    let target =
                        fraction("policy.predictive.target_utilisation", p.target_utilisation, Decimal::new(85, 2))?;
                    if target <= Decimal::ZERO || target > Decimal::ONE {
                        return Err(err("policy.predictive.target_utilisation", "expected a share in (0, 1]".into()));
                    }
                    policies.push(Policy::Predictive(PredictiveParams {
                        lead: provisioning_ms + secs("policy.predictive.lead_buffer_s", p.lead_buffer_s, 300 * SECOND)?,
                        band,
                        target_utilisation: target,
                        scale_in: p.scale_in,
                        hold: secs("policy.predictive.hold_s", p.hold_s, HOUR)?,
                        shadow: p.shadow,
                    }));
                }
                if let Some(sp) = &pol.spare_pool {
                    let provisioning_ms = lifecycle.provisioning.planning_value();
                    if let Some(source) = &sp.source {
                        let parsed = parse_source(source).map_err(|m| err("policy.spare_pool.source", m))?;
                        if forecast_source.as_ref().is_some_and(|s| s != &parsed) {
                            return Err(err(
                                "policy.spare_pool.source",
                                "the twin makes one forecast: use the same source as [policy.predictive]".into(),
                            ));
                        }
                        forecast_source = Some(parsed);
                    }
                    if sp.from_forecast && forecast_source.is_none() {
                        return Err(err(
                            "policy.spare_pool.from_forecast",
                            "needs a forecast: set source here or add [policy.predictive]".into(),
                        ));
                    }
                    policies.push(Policy::SparePool(SparePoolParams {
                        size: sp.size,
                        from_forecast: sp.from_forecast.then_some(provisioning_ms),
                    }));
                }
                let interval = secs("policy.interval_s", pol.interval_s, 120 * SECOND)?;
                if interval <= 0 {
                    return Err(err("policy.interval_s", "the scaling interval must be positive".into()));
                }
                let scale_in = match pol.scale_in.unwrap_or(RawScaleIn::Newest) {
                    RawScaleIn::Newest => ScaleIn::Newest,
                    RawScaleIn::BillingHour => ScaleIn::BillingHour {
                        margin: secs("policy.billing_margin_s", pol.billing_margin_s, 600 * SECOND)?,
                    },
                };
                if !policies.is_empty() && cloud.is_none() {
                    return Err(err(
                        "fleet.cloud",
                        "scaling policies need cloud VMs: add [fleet.cloud] with type and max_vms".into(),
                    ));
                }
                let drain = pol.drain.unwrap_or(false);
                let consolidation = match &pol.consolidation {
                    None => None,
                    Some(c) => {
                        let acceptance = c.suggest_acceptance.unwrap_or(0.3);
                        if !(0.0..=1.0).contains(&acceptance) {
                            return Err(err(
                                "policy.consolidation.suggest_acceptance",
                                "expected a probability in [0, 1]".into(),
                            ));
                        }
                        migration = Some(MigrationModel {
                            suggest_acceptance: acceptance,
                            save: secs("policy.consolidation.save_s", c.save_s, 10 * SECOND)?,
                        });
                        let every = secs("policy.consolidation.every_s", c.every_s, 900 * SECOND)?;
                        if every <= 0 {
                            return Err(err("policy.consolidation.every_s", "must be positive".into()));
                        }
                        Some(conductor_core::consolidation::ConsolidationParams {
                            every,
                            min_saving_per_hour: fraction(
                                "policy.consolidation.min_saving_eur_per_hour",
                                c.min_saving_eur_per_hour,
                                Decimal::ZERO,
                            )?,
                            max_migrations_per_hour: c.max_migrations_per_hour.unwrap_or(10),
                            announce: secs("policy.consolidation.announce_s", c.announce_s, 600 * SECOND)?,
                            auto_once_per: match c.auto_once_per_h {
                                None => 24 * HOUR,
                                Some(Dec(h)) => to_millis(h, HOUR).ok_or_else(|| {
                                    err(
                                        "policy.consolidation.auto_once_per_h",
                                        "expected a non-negative number of hours".into(),
                                    )
                                })?,
                            },
                        })
                    }
                };
                if consolidation.is_some() && cloud.is_none() {
                    return Err(err(
                        "policy.consolidation",
                        "consolidation empties cloud VMs: add [fleet.cloud]".into(),
                    ));
                }
                let scaling = ScalingPolicy { interval, max_vms, policies, scale_in, drain, consolidation };
                (scaling, pol.placement.unwrap_or_default())
            }
            PolicyKind::Fixed => (ScalingPolicy::fixed(), pol.placement.unwrap_or_default()),
        };
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
            },
            forecast_source,
            failures,
            migration,
            upgrades,
            jobs,
            transforms,
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

/// Validates `[[transform]]` blocks; price changes replace `prices` here and become a
/// demand factor (constant elasticity on the active price).
fn transforms(
    raw: &[RawTransform],
    prices: &mut Prices,
    err: &dyn Fn(&str, String) -> ScenarioError,
) -> Result<Vec<Transform>, ScenarioError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = |field: &str| format!("transform[{i}].{field}");
        let finite_positive = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(err(&key(field), format!("expected a non-negative number, got {v}")))
            }
        };
        let duration = |field: &str, text: &str| {
            conductor_forecast::duration::parse_duration(text).map_err(|m| err(&key(field), m))
        };
        out.push(match t {
            RawTransform::Scale { factor } => Transform::Scale { factor: finite_positive("factor", *factor)? },
            RawTransform::Growth { percent_per_week } => {
                if !(percent_per_week.is_finite() && *percent_per_week > -100.0) {
                    return Err(err(&key("percent_per_week"), "expected a number above -100".into()));
                }
                Transform::Growth { percent_per_week: *percent_per_week }
            }
            RawTransform::Spike { at, within, servers, tier, ram_gib, disk_gb, session, players } => {
                let at = parse_rfc3339(at).map_err(|m| err(&key("at"), m))?;
                let within = duration("within", within)?;
                let (tier_ram, tier_disk) = match tier.as_deref() {
                    None | Some("small") => (2, 2),
                    Some("medium") => (6, 6),
                    Some("large") => (12, 15),
                    Some(other) => {
                        return Err(err(&key("tier"), format!("expected small, medium or large, got {other:?}")))
                    }
                };
                let ram_gib = ram_gib.unwrap_or(tier_ram);
                let ram_mib = gib_to_mib(ram_gib)
                    .filter(|&m| m > 0)
                    .ok_or_else(|| err(&key("ram_gib"), "expected a positive number of GiB".into()))?;
                let disk_gb = disk_gb.as_ref().map_or(Decimal::from(tier_disk), |d| d.0);
                if disk_gb < Decimal::ZERO {
                    return Err(err(&key("disk_gb"), "a disk size cannot be negative".into()));
                }
                let disk_mb = (disk_gb * Decimal::from(1000)).round().try_into().unwrap_or(0u64);
                let session = duration("session", session.as_deref().unwrap_or("2h"))?;
                Transform::Spike {
                    at,
                    within,
                    servers: *servers,
                    ram_mib,
                    disk_mb,
                    session,
                    players: players.unwrap_or(3),
                }
            }
            RawTransform::Shift { by } => {
                let (sign, text) = match by.trim().strip_prefix('-') {
                    Some(rest) => (-1, rest),
                    None => (1, by.trim().trim_start_matches('+')),
                };
                Transform::Shift { by: sign * duration("by", text)? }
            }
            RawTransform::Stretch { factor } => {
                if !(factor.is_finite() && *factor > 0.0) {
                    return Err(err(&key("factor"), format!("expected a positive number, got {factor}")));
                }
                Transform::Stretch { factor: *factor }
            }
            RawTransform::TierMix { small, medium, large } => {
                let shares = [
                    finite_positive("small", *small)?,
                    finite_positive("medium", *medium)?,
                    finite_positive("large", *large)?,
                ];
                if shares.iter().sum::<f64>() <= 0.0 {
                    return Err(err(&key("small"), "the shares must not all be zero".into()));
                }
                Transform::TierMix { shares }
            }
            RawTransform::PayPerUse { share } => {
                if !(0.0..=1.0).contains(share) {
                    return Err(err(&key("share"), format!("expected a share between 0 and 1, got {share}")));
                }
                Transform::PayPerUse { share: *share }
            }
            RawTransform::Prices {
                active_eur_per_gib_hour,
                sleeping_eur_per_gb_month,
                promo_credit_eur,
                elasticity,
            } => {
                let old = prices.active_per_gib_hour;
                let mut what = Vec::new();
                for (field, v, slot) in [
                    ("active_eur_per_gib_hour", active_eur_per_gib_hour, &mut prices.active_per_gib_hour),
                    ("sleeping_eur_per_gb_month", sleeping_eur_per_gb_month, &mut prices.sleeping_per_gb_month),
                    ("promo_credit_eur", promo_credit_eur, &mut prices.promo_credit),
                ] {
                    if let Some(Dec(d)) = v {
                        if *d < Decimal::ZERO {
                            return Err(err(&key(field), "a price cannot be negative".into()));
                        }
                        what.push(format!("{field} {slot} → {d}"));
                        *slot = *d;
                    }
                }
                if !(elasticity.is_finite() && *elasticity >= 0.0) {
                    return Err(err(&key("elasticity"), "expected a non-negative number".into()));
                }
                let ratio = if old.is_zero() {
                    1.0
                } else {
                    use rust_decimal::prelude::ToPrimitive;
                    (prices.active_per_gib_hour / old).to_f64().unwrap_or(1.0)
                };
                let factor = if *elasticity == 0.0 || ratio <= 0.0 { 1.0 } else { ratio.powf(-elasticity) };
                Transform::Elastic {
                    factor,
                    description: format!(
                        "prices: {}; elasticity {elasticity} → demand × {factor:.4}",
                        if what.is_empty() { "unchanged".to_string() } else { what.join(", ") }
                    ),
                }
            }
        });
    }
    Ok(out)
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
