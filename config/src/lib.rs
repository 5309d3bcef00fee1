//! What the twin and the live controller read alike: the configuration sections they share
//! (`catalogue`, `[types]`, `[fleet]`, `[lifecycle]`, `[prices]`, `[policy]`), parsed once
//! here, and the dataset format (`dataset`) the twin replays and `conductor export` writes.
//!
//! A file is read by one consumer (a twin scenario, or a controller config) and each says
//! which sections are its own: a section of the other one is refused with its key path, not
//! ignored (`[[transform]]` could change the prices a controller bills with). Two phases,
//! as in ripgrep: raw structs that mirror the file (`deny_unknown_fields`), then validation
//! into core types; every error names the file, the key path and, where it can, the line.
//! Nothing here reads the process environment: secrets are the consumer's, with the
//! environment passed in as a value ([`Env`]).

use conductor_core::policy::{Band, Policy, PredictiveParams, ReactiveParams, ScaleIn, ScalingPolicy, SparePoolParams};
use conductor_core::time::{HOUR, SECOND};
use conductor_core::{CloudType, DedicatedType, Millis, Prices, Reserve, SchedulerConfig, Strategy};
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod catalogue;
pub mod dataset;
mod lifecycle;
mod policy;

use catalogue::RawCatalogue;
pub use catalogue::{gib_to_mib, Catalogue};
pub use conductor_forecast::nightly::ForecastSource;
use lifecycle::{delay, RawLifecycle};
pub use lifecycle::{Delay, Lifecycle};
use policy::{policy, PolicyParts, RawPolicy};
pub use policy::{MigrationModel, PolicyKind, WakeStaging};

/// The catalogue shipped in `scenarios/catalogue.toml`, used when a file names none.
pub const DEFAULT_CATALOGUE: &str = include_str!("../../scenarios/catalogue.toml");

/// The environment, as a value: a variable's value by name (the process's in production,
/// a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Key { path: PathBuf, key: String, message: String },
}

/// Who reads a file, and so which sections besides the shared ones it may have.
#[derive(Debug, Clone, Copy)]
pub enum Consumer<'a> {
    /// `conductor sim` and the workbench; `dataset` is the scenario's dataset directory
    /// (`lifecycle.delays_from = "dataset"` reads its `[measured]` delays).
    Twin { dataset: &'a Path },
    /// `conductor serve` (and the gateway, which reads `[gateway]` from the same file).
    Controller,
}

/// Top-level sections only the twin (and its workbench) reads, and what they are.
pub const TWIN_ONLY: &[(&str, &str)] = &[
    ("dataset", "the recorded demand: the controller's demand is live"),
    ("window", "the replayed time window"),
    ("transform", "what-if transforms of recorded demand"),
    ("upgrades", "scripted plan changes: live ones go through PATCH /v1/servers/{id}"),
    ("failures", "injected node failures: live ones are observed"),
    ("jobs", "generated job arrivals: live jobs are submitted to POST /v1/jobs"),
    ("variant", "the workbench's variants"),
    ("sweep", "the workbench's sweeps"),
    ("objective", "the workbench's objective"),
    ("output", "the workbench's outputs"),
];

/// Top-level sections only the live side reads.
pub const CONTROLLER_ONLY: &[(&str, &str)] =
    &[("controller", "the live controller's settings"), ("gateway", "the gateway's settings")];

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

/// The shared sections as written. The consumers' own sections are listed (so that a typo
/// at the top level is still an unknown key) and read by the consumer itself.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawShared {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
    catalogue: Option<String>,
    /// Types added to (or replacing those of) the catalogue for this file only.
    types: Option<RawCatalogue>,
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    lifecycle: RawLifecycle,
    #[serde(default)]
    prices: RawPrices,
    #[serde(default)]
    policy: RawPolicy,
    // The twin's (TWIN_ONLY) and the live side's (CONTROLLER_ONLY) sections.
    dataset: Option<IgnoredAny>,
    window: Option<IgnoredAny>,
    transform: Option<IgnoredAny>,
    upgrades: Option<IgnoredAny>,
    failures: Option<IgnoredAny>,
    jobs: Option<IgnoredAny>,
    variant: Option<IgnoredAny>,
    sweep: Option<IgnoredAny>,
    objective: Option<IgnoredAny>,
    output: Option<IgnoredAny>,
    controller: Option<IgnoredAny>,
    gateway: Option<IgnoredAny>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    dedicated: Vec<RawDedicatedGroup>,
    cloud: Option<RawCloudFleet>,
    /// The cloud type hosting the control plane (API, PostgreSQL, gateway) of a fleet
    /// without dedicated nodes (default: the catalogue's smallest).
    control_plane: Option<String>,
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
    /// Size of the prepared snapshot (stored while the fleet runs), GB.
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
struct RawPrices {
    active_eur_per_gib_hour: Option<Dec>,
    sleeping_eur_per_gb_month: Option<Dec>,
    archive_eur_per_tb_month: Option<Dec>,
    promo_credit_eur: Option<Dec>,
}

/// The validated shared sections: the fleet, its lifecycle, the price list and the policy,
/// as the core's scheduler takes them.
#[derive(Clone, Debug)]
pub struct Shared {
    pub name: Option<String>,
    pub description: String,
    pub seed: u64,
    pub dedicated: Vec<DedicatedType>,
    pub cloud: Option<CloudType>,
    pub image: ImageKind,
    /// Snapshot storage cost per month (0 with `image`).
    pub snapshot_monthly_eur: Decimal,
    /// The always-on VM of the control plane when no dedicated node hosts it (SPEC §5).
    pub control_plane: Option<CloudType>,
    pub lifecycle: Lifecycle,
    pub prices: Prices,
    pub policy: PolicyKind,
    /// `job_notice` is the default here; the consumer's jobs section sets it.
    pub scheduler: SchedulerConfig,
    /// Set when a predictive policy or a forecast-sized spare pool is active.
    pub forecast_source: Option<ForecastSource>,
    /// How the twin scores servers for `[policy.staging]`.
    pub wake: Option<WakeStaging>,
    /// Set when consolidation is active.
    pub migration: Option<MigrationModel>,
    /// The node and VM types the file could name (the live controller's joining nodes name
    /// theirs from it).
    pub catalogue: Catalogue,
}

impl Shared {
    /// Parses the shared sections of `text` for `consumer`, refusing the other consumer's
    /// sections; relative paths in it are relative to `path`'s directory.
    pub fn parse(path: &Path, text: &str, consumer: Consumer<'_>) -> Result<Shared, ScenarioError> {
        let raw: RawShared = deserialize(path, text)?;
        let err =
            |key: &str, message: String| ScenarioError::Key { path: path.to_path_buf(), key: key.into(), message };
        let (foreign, whose, reader) = match consumer {
            Consumer::Twin { .. } => (CONTROLLER_ONLY, "live-only", "a twin scenario"),
            Consumer::Controller => (TWIN_ONLY, "twin-only", "a controller config"),
        };
        let present = |key: &str| match key {
            "dataset" => raw.dataset.is_some(),
            "window" => raw.window.is_some(),
            "transform" => raw.transform.is_some(),
            "upgrades" => raw.upgrades.is_some(),
            "failures" => raw.failures.is_some(),
            "jobs" => raw.jobs.is_some(),
            "variant" => raw.variant.is_some(),
            "sweep" => raw.sweep.is_some(),
            "objective" => raw.objective.is_some(),
            "output" => raw.output.is_some(),
            "controller" => raw.controller.is_some(),
            "gateway" => raw.gateway.is_some(),
            _ => false,
        };
        if let Some((key, what)) = foreign.iter().find(|(key, _)| present(key)) {
            let line = line_of(text, key).map(|l| format!(" (line {l})")).unwrap_or_default();
            return Err(err(key, format!("{whose} ({what}): {reader} does not take it{line}")));
        }

        let base = path.parent().unwrap_or(Path::new("."));
        let mut catalogue = match &raw.catalogue {
            Some(file) => Catalogue::load(&base.join(file))?,
            None => Catalogue::builtin(),
        };
        if let Some(types) = raw.types {
            let extra = Catalogue::from_raw(path, types, "types.")?;
            catalogue.dedicated.extend(extra.dedicated);
            catalogue.cloud.extend(extra.cloud);
        }
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

        // The control plane runs on the first dedicated node (its larger reserve); without
        // one it needs a VM of its own for the whole horizon.
        let control_plane = match (&raw.fleet.control_plane, dedicated.is_empty()) {
            (Some(name), _) => {
                let t = catalogue.cloud.get(name).ok_or_else(|| {
                    err(
                        "fleet.control_plane",
                        format!("unknown cloud type {name:?} (catalogue has: {})", keys(&catalogue.cloud)),
                    )
                })?;
                if !dedicated.is_empty() {
                    return Err(err(
                        "fleet.control_plane",
                        "only for a fleet without dedicated nodes (the first one hosts the control plane)".into(),
                    ));
                }
                Some(t.clone())
            }
            (None, true) => catalogue
                .cloud
                .values()
                .min_by(|a, b| (a.ram_mib, a.hourly_eur, &a.name).cmp(&(b.ram_mib, b.hourly_eur, &b.name)))
                .cloned(),
            (None, false) => None,
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
        let (boot, provisioning) = match (l.delays_from.as_deref(), consumer) {
            (None, _) => (boot, provisioning),
            (Some(_), Consumer::Controller) => {
                return Err(err(
                    "lifecycle.delays_from",
                    "twin-only (a replay's delays from a dataset); the controller measures its own".into(),
                ));
            }
            (Some("dataset"), Consumer::Twin { dataset: dir }) => {
                let m = dataset::measured(dir).map_err(|e| err("lifecycle.delays_from", e))?.ok_or_else(|| {
                    err(
                        "lifecycle.delays_from",
                        format!("{}/meta.toml has no [measured] table (conductor export writes one)", dir.display()),
                    )
                })?;
                let fit = |f: &Option<dataset::Fit>, fallback: Delay| match f {
                    Some(f) => Delay::LogNormal { median: (f.median_s * 1000.0).round() as Millis, sigma: f.sigma },
                    None => fallback,
                };
                measured_restore = m.restore.map(|r| (r.mb_per_s.round() as u32).max(1));
                (fit(&m.boot, boot), fit(&m.provisioning, provisioning))
            }
            (Some(other), Consumer::Twin { .. }) => {
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
        let dead_after = secs("lifecycle.dead_after_s", l.dead_after_s, 300 * SECOND)?;
        let crash_window = secs("lifecycle.crash_window_s", l.crash_window_s, 600 * SECOND)?;
        let crash_limit = match l.crash_limit {
            Some(0) => return Err(err("lifecycle.crash_limit", "expected at least 1 crash".into())),
            Some(n) => n,
            None => 3,
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

        let pol = &raw.policy;
        let PolicyParts { scaling, strategy, forecast_source, migration, disk, staging } =
            policy(pol, &lifecycle, cloud.as_ref(), max_vms, &err)?;
        if staging.is_some() && matches!(consumer, Consumer::Controller) {
            let line = line_of(text, "policy.staging").map(|l| format!(" (line {l})")).unwrap_or_default();
            return Err(err(
                "policy.staging",
                format!("twin-only for now (the controller has no wake predictor yet): remove it to run live{line}"),
            ));
        }
        if dedicated.is_empty() && cloud.is_none() {
            return Err(err("fleet", "the fleet is empty: add [[fleet.dedicated]] groups or [fleet.cloud]".into()));
        }
        Ok(Shared {
            name: raw.name,
            description: raw.description,
            seed: raw.seed,
            dedicated,
            cloud: cloud.clone(),
            image,
            snapshot_monthly_eur,
            control_plane,
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
                job_notice: DEFAULT_JOB_NOTICE,
                crash_limit,
                crash_window,
                disk,
                staging: staging.as_ref().map(|(rule, _)| *rule),
            },
            wake: staging.map(|(_, wake)| wake),
            forecast_source,
            migration,
            catalogue,
        })
    }
}

/// A preemptible job's notice before it is killed, unless the jobs section says otherwise.
pub const DEFAULT_JOB_NOTICE: Millis = 300 * SECOND;

/// The line a top-level section or key starts on (`[key]`, `[[key]]`, `[key.…]`, `key =`).
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let t = line.trim_start().trim_start_matches('[').trim_start();
            t.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                line.trim_start().starts_with('[') && (rest.starts_with(']') || rest.starts_with('.'))
                    || !line.trim_start().starts_with('[') && rest.starts_with('=')
            })
        })
        .map(|i| i + 1)
}

/// A non-negative decimal amount of `unit` in milliseconds.
pub fn to_millis(v: Decimal, unit: Millis) -> Option<Millis> {
    if v < Decimal::ZERO {
        return None;
    }
    let ms = (v * Decimal::from(unit)).round();
    rust_decimal::prelude::ToPrimitive::to_i64(&ms)
}

fn keys<V>(m: &BTreeMap<String, V>) -> String {
    m.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Io { path: path.to_path_buf(), source })
}

/// Deserializes TOML, reporting the key path and line of a bad value.
pub fn deserialize<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ScenarioError> {
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
