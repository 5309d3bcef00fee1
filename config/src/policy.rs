//! `[policy]`: the scaling policies, the placement strategy and the disk rule (SPEC §5,
//! §7), and how the twin plays forecasts and migrations.

use super::*;
use conductor_core::scheduler::{DiskRule, StagingRule};

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) kind: PolicyKind,
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
    disk: Option<RawDisk>,
    staging: Option<RawStaging>,
}

/// `[policy.staging]`: copy archived worlds onto a node ahead of their predicted start (SPEC
/// §6). Twin only for now: the live controller has no wake predictor yet.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaging {
    /// At most this many staged copies at once (default 50).
    budget: Option<u32>,
    /// Stage only servers whose wake probability within `horizon_h` is at least this
    /// (default 0.5).
    min_probability: Option<f64>,
    /// The predictor's window, and how long an unused copy is kept (hours, default 6).
    horizon_h: Option<Dec>,
    /// How often servers are scored and staged (minutes, default 60).
    every_min: Option<Dec>,
    /// The predictor's history (weeks, default 8), its recency half-life (default 3) and its
    /// shrinkage to the base rate (weeks, default 4).
    weeks: Option<u32>,
    half_life_weeks: Option<f64>,
    prior_weeks: Option<f64>,
    /// At most this many GB staged within an hour (default 360: 100 MB/s).
    max_gb_per_hour: Option<Dec>,
}

/// How the twin scores servers for staging: the wake predictor and its cadence.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeStaging {
    pub model: conductor_forecast::wake::WakeModel,
    pub every: Millis,
}

/// `[policy.disk]`: node disk as a capacity (SPEC §5). On by default for `custom` and
/// `fixed` policies; the reference policy has no disk rule.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    /// Place and restore worlds only where they fit (default true).
    enforce: Option<bool>,
    /// Archive sleepers early, oldest first, while a node's worlds fill more than this
    /// percentage of its usable disk (default 85).
    high_watermark_pct: Option<u8>,
    /// Keep sleepers on disk past the sleep window while their node is below the watermark
    /// (default false); the customer pays for the window only.
    keep_past_window: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsolidation {
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
pub(super) enum RawScaleIn {
    Newest,
    BillingHour,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPredictive {
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

pub(super) fn default_band() -> String {
    "p90".into()
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSparePool {
    /// N, or the floor with `from_forecast`.
    #[serde(default)]
    size: u32,
    /// Size the pool from forecast arrivals × provisioning time; needs a forecast source
    /// (`source` here or in [policy.predictive]).
    #[serde(default)]
    from_forecast: bool,
    source: Option<String>,
    /// Record what it would add without acting.
    #[serde(default)]
    shadow: bool,
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

/// What `[policy]` decides.
pub(super) struct PolicyParts {
    pub scaling: ScalingPolicy,
    pub strategy: Strategy,
    pub forecast_source: Option<ForecastSource>,
    pub migration: Option<MigrationModel>,
    pub disk: Option<DiskRule>,
    pub staging: Option<(StagingRule, WakeStaging)>,
}

pub(super) fn policy(
    pol: &RawPolicy,
    lifecycle: &Lifecycle,
    cloud: Option<&CloudType>,
    max_vms: u32,
    err: &dyn Fn(&str, String) -> ScenarioError,
) -> Result<PolicyParts, ScenarioError> {
    let secs = |key: &str, v: Option<Dec>, default: Millis| -> Result<Millis, ScenarioError> {
        match v {
            None => Ok(default),
            Some(Dec(d)) => {
                to_millis(d, SECOND).ok_or_else(|| err(key, "expected a non-negative duration in seconds".into()))
            }
        }
    };
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
                ("policy.disk", pol.disk.is_some()),
                ("policy.staging", pol.staging.is_some()),
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
                forecast_source =
                    Some(ForecastSource::parse(&p.source).map_err(|m| err("policy.predictive.source", m))?);
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
                    let parsed = ForecastSource::parse(source).map_err(|m| err("policy.spare_pool.source", m))?;
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
                    shadow: sp.shadow,
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
                return Err(err("policy.consolidation", "consolidation empties cloud VMs: add [fleet.cloud]".into()));
            }
            let scaling = ScalingPolicy { interval, max_vms, policies, scale_in, drain, consolidation };
            (scaling, pol.placement.unwrap_or_default())
        }
        PolicyKind::Fixed => (ScalingPolicy::fixed(), pol.placement.unwrap_or_default()),
    };
    let disk = match (pol.kind, &pol.disk) {
        (PolicyKind::Reference, _) => None,
        (_, None) => Some(DiskRule::default()),
        (_, Some(d)) if !d.enforce.unwrap_or(true) => {
            if d.high_watermark_pct.is_some() || d.keep_past_window.is_some() {
                return Err(err("policy.disk.enforce", "other disk keys need enforce = true".into()));
            }
            None
        }
        (_, Some(d)) => {
            let pct = d.high_watermark_pct.unwrap_or(DiskRule::default().high_watermark_pct);
            if pct == 0 || pct > 100 {
                return Err(err(
                    "policy.disk.high_watermark_pct",
                    format!("expected a percentage in 1..=100, got {pct}"),
                ));
            }
            Some(DiskRule { high_watermark_pct: pct, keep_past_window: d.keep_past_window.unwrap_or(false) })
        }
    };
    let staging = match &pol.staging {
        None => None,
        Some(st) => Some(staging(st, &err)?),
    };
    Ok(PolicyParts { scaling, strategy, forecast_source, migration, disk, staging })
}

fn staging(
    st: &RawStaging,
    err: &dyn Fn(&str, String) -> ScenarioError,
) -> Result<(StagingRule, WakeStaging), ScenarioError> {
    let positive = |key: &str, v: Option<Dec>, default: Decimal, unit: Millis| -> Result<Millis, ScenarioError> {
        match to_millis(v.map_or(default, |d| d.0), unit) {
            Some(ms) if ms > 0 => Ok(ms),
            _ => Err(err(key, "expected a positive number".into())),
        }
    };
    let p = st.min_probability.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&p) {
        return Err(err("policy.staging.min_probability", format!("expected a probability in [0, 1], got {p}")));
    }
    let horizon = positive("policy.staging.horizon_h", st.horizon_h, Decimal::from(6), HOUR)?;
    let every = positive("policy.staging.every_min", st.every_min, Decimal::from(60), 60 * SECOND)?;
    let gb = st.max_gb_per_hour.map_or(Decimal::from(360), |d| d.0);
    if gb < Decimal::ZERO {
        return Err(err("policy.staging.max_gb_per_hour", "expected a non-negative number of GB".into()));
    }
    let mb_per_hour = rust_decimal::prelude::ToPrimitive::to_u64(&(gb * Decimal::from(1000)).round())
        .ok_or_else(|| err("policy.staging.max_gb_per_hour", "too large".into()))?;
    let defaults = conductor_forecast::wake::WakeModel::default();
    let weeks = st.weeks.unwrap_or(defaults.weeks);
    if weeks == 0 {
        return Err(err("policy.staging.weeks", "expected at least 1 week of history".into()));
    }
    let half_life_weeks = st.half_life_weeks.unwrap_or(defaults.half_life_weeks);
    if !half_life_weeks.is_finite() || half_life_weeks <= 0.0 {
        return Err(err("policy.staging.half_life_weeks", "expected a positive number of weeks".into()));
    }
    let prior_weeks = st.prior_weeks.unwrap_or(defaults.prior_weeks);
    if !prior_weeks.is_finite() || prior_weeks < 0.0 {
        return Err(err("policy.staging.prior_weeks", "expected a non-negative number of weeks".into()));
    }
    let rule =
        StagingRule { budget: st.budget.unwrap_or(50), min_ppm: (p * 1e6).round() as u32, keep: horizon, mb_per_hour };
    let model = conductor_forecast::wake::WakeModel { horizon, weeks, half_life_weeks, prior_weeks };
    Ok((rule, WakeStaging { model, every }))
}
