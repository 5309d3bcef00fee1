//! Scenario files (TOML) and the catalogue of node and VM types.
//!
//! Two phases, as in ripgrep: raw structs that mirror the file (`deny_unknown_fields`),
//! then validation into core types. Every error names the file and the key path.

use crate::timefmt::parse_rfc3339;
use crate::transform::Transform;
use conductor_config::{deserialize, gib_to_mib, read, to_millis, Consumer, Shared};
use conductor_core::time::{HOUR, SECOND};
use conductor_core::{CloudType, DedicatedType, Millis, Prices, SchedulerConfig};
use rust_decimal::Decimal;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod transforms;

pub use conductor_config::{
    Catalogue, Dec, Delay, ForecastSource, ImageKind, Lifecycle, MigrationModel, PolicyKind, ScenarioError,
    DEFAULT_CATALOGUE,
};
use transforms::transforms;

// ---------------------------------------------------------------- scenario

/// The twin's own sections; the shared ones (`conductor_config`) are listed to be skipped.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the skipped sections are never read here
struct RawScenario {
    name: String,
    dataset: String,
    window: Option<RawWindow>,
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
    variant: Option<IgnoredAny>,
    sweep: Option<IgnoredAny>,
    objective: Option<IgnoredAny>,
    output: Option<IgnoredAny>,
    // The shared sections, read by `Shared::parse`; the live side's, refused there.
    description: Option<IgnoredAny>,
    seed: Option<IgnoredAny>,
    catalogue: Option<IgnoredAny>,
    types: Option<IgnoredAny>,
    fleet: Option<IgnoredAny>,
    lifecycle: Option<IgnoredAny>,
    prices: Option<IgnoredAny>,
    policy: Option<IgnoredAny>,
    controller: Option<IgnoredAny>,
    gateway: Option<IgnoredAny>,
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
    /// The control plane's always-on VM (a fleet without dedicated nodes).
    pub control_plane: Option<CloudType>,
    pub lifecycle: Lifecycle,
    pub prices: Prices,
    pub policy: PolicyKind,
    pub scheduler: SchedulerConfig,
    /// Set when a predictive policy is active.
    pub forecast_source: Option<ForecastSource>,
    pub failures: Failures,
    /// Set when consolidation is active.
    pub migration: Option<MigrationModel>,
    /// `[policy.staging]`: how the twin scores servers (the core's rule is in `scheduler`).
    pub wake: Option<conductor_config::WakeStaging>,
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
        let dataset = base.join(&raw.dataset);
        let err =
            |key: &str, message: String| ScenarioError::Key { path: path.to_path_buf(), key: key.into(), message };
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
        let shared = Shared::parse(path, text, Consumer::Twin { dataset: &dataset })?;
        let secs = |key: &str, v: Option<Dec>, default: Millis| -> Result<Millis, ScenarioError> {
            match v {
                None => Ok(default),
                Some(Dec(d)) => {
                    to_millis(d, SECOND).ok_or_else(|| err(key, "expected a non-negative duration in seconds".into()))
                }
            }
        };
        let dedicated = shared.dedicated;
        let mut prices = shared.prices;
        let transforms = transforms(&raw.transform, &mut prices, &err)?;

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
        let mut scheduler = shared.scheduler;
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
                scheduler.job_notice = secs("jobs.notice_s", j.notice_s, scheduler.job_notice)?;
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

        Ok(Scenario {
            name: raw.name,
            description: shared.description,
            file: path.to_path_buf(),
            seed: shared.seed,
            dataset,
            window,
            dedicated,
            cloud: shared.cloud,
            image: shared.image,
            snapshot_monthly_eur: shared.snapshot_monthly_eur,
            control_plane: shared.control_plane,
            lifecycle: shared.lifecycle,
            prices,
            policy: shared.policy,
            scheduler,
            forecast_source: shared.forecast_source,
            failures,
            migration: shared.migration,
            wake: shared.wake,
            upgrades,
            jobs,
            transforms,
            catalogue: shared.catalogue,
        })
    }
}

/// `[[transform]]` blocks alone (a file for `conductor dataset transform`), validated as in
/// a scenario; a price change is refused (a dataset has no prices).
pub fn parse_transforms(path: &Path, text: &str) -> Result<Vec<Transform>, ScenarioError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawFile {
        #[serde(default)]
        transform: Vec<RawTransform>,
    }
    let raw: RawFile = deserialize(path, text)?;
    let err = |key: &str, message: String| ScenarioError::Key { path: path.to_path_buf(), key: key.into(), message };
    let parsed = transforms(&raw.transform, &mut Prices::default(), &err)?;
    if let Some(i) = parsed.iter().position(|t| matches!(t, Transform::Elastic { .. })) {
        return Err(err(&format!("transform[{i}]"), "a price change belongs in a scenario, not a dataset".into()));
    }
    Ok(parsed)
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
