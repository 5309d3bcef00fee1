//! `[lifecycle]`: the delays and timeouts of a server's life (SPEC §6, §11 rule 1).

use super::*;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifecycle {
    pub(super) boot_s: Option<Dec>,
    pub(super) boot_distribution: Option<RawDistribution>,
    pub(super) restore_mb_per_s: Option<u32>,
    pub(super) provisioning_s: Option<Dec>,
    pub(super) provisioning_distribution: Option<RawDistribution>,
    pub(super) idle_timeout_s: Option<Dec>,
    pub(super) give_up_s: Option<Dec>,
    pub(super) sleep_window_h: Option<Dec>,
    /// A node silent this long is declared dead.
    pub(super) dead_after_s: Option<Dec>,
    /// A server that crashes this many times within `crash_window_s` is stopped, not
    /// restarted (a crash loop).
    pub(super) crash_limit: Option<u32>,
    pub(super) crash_window_s: Option<Dec>,
    /// Twin only — `"dataset"`: boot and VM provisioning as the dataset's `[measured]` says
    /// (a live fleet's own delays, from `conductor export`); the values above where it has none.
    pub(super) delays_from: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawDistribution {
    Uniform { min_s: Dec, max_s: Dec },
    Lognormal { median_s: Dec, sigma: f64 },
}

/// How long something takes (in the twin, drawn from it; live, what policies plan with).
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

pub(super) fn delay(
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
