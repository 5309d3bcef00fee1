//! The simulation report (SPEC §10): JSON with the exact `kpis` names, plus a readable
//! summary table. Money is written as exact decimal JSON numbers.

use crate::dataset::Dataset;
use crate::engine::Outcome;
use crate::scenario::Scenario;
use crate::timefmt::format_rfc3339;
use conductor_core::time::HOUR;
use conductor_core::{Millis, Money};
use serde::{Serialize, Serializer};
use std::fmt::Write as _;
use std::str::FromStr;

/// Version of the report layout; bumped when a field changes meaning.
pub const REPORT_FORMAT: u32 = 1;

fn money<S: Serializer>(m: &Money, s: S) -> Result<S::Ok, S::Error> {
    let n = serde_json::Number::from_str(&m.to_string()).map_err(serde::ser::Error::custom)?;
    n.serialize(s)
}

/// Exactly the SPEC §10 key performance indicators, in that order.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Kpis {
    #[serde(serialize_with = "money")]
    pub infra_cost_eur: Money,
    #[serde(serialize_with = "money")]
    pub dedicated_cost_eur: Money,
    #[serde(serialize_with = "money")]
    pub cloud_cost_eur: Money,
    #[serde(serialize_with = "money")]
    pub storage_cost_eur: Money,
    #[serde(serialize_with = "money")]
    pub revenue_eur: Money,
    #[serde(serialize_with = "money")]
    pub promo_credit_eur: Money,
    #[serde(serialize_with = "money")]
    pub margin_eur: Money,
    pub starts: u64,
    pub starts_abandoned: u64,
    pub start_wait_p50_s: f64,
    pub start_wait_p95_s: f64,
    pub start_wait_p99_s: f64,
    pub start_wait_max_s: f64,
    pub cloud_vms_created: u64,
    pub cloud_vm_hours_billed: u64,
    pub peak_cloud_vms: u64,
    pub start_queue_wait_p95_s: f64,
    pub starts_restored: u64,
    pub migrations: u64,
    pub events: u64,
    pub seed: u64,
}

/// Figures beyond §10 that explain the KPIs.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Details {
    #[serde(serialize_with = "money")]
    pub active_revenue_eur: Money,
    #[serde(serialize_with = "money")]
    pub sleeping_revenue_eur: Money,
    /// Part of `cloud_cost_eur`: the prepared snapshot's storage (image = "snapshot").
    #[serde(serialize_with = "money")]
    pub snapshot_cost_eur: Money,
    /// Part of `cloud_cost_eur`: the control plane's VM of a fleet without dedicated nodes.
    #[serde(serialize_with = "money")]
    pub control_plane_cost_eur: Money,
    pub owners_promoted: u64,
    pub requests: u64,
    pub abandoned_gave_up: u64,
    pub abandoned_interval_ended: u64,
    pub restores_from_archive: u64,
    pub restores_from_node: u64,
    /// Staged worlds (SPEC §6, `[policy.staging]`): copies made, starts that used one (boot
    /// only), copies dropped unused, GB copied, and the restore time the used ones saved.
    pub staged: u64,
    pub staged_used: u64,
    pub staged_dropped: u64,
    pub staged_gb: f64,
    pub restore_wait_avoided_s: f64,
    pub archived: u64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    /// Scale decisions by policy and action, e.g. "predictive create".
    pub decisions_by_policy: std::collections::BTreeMap<String, u64>,
    /// Forecasts the twin made for predictive policies (nightly at 03:00).
    pub forecasts: u64,
    /// Injected node failures, nodes declared dead, and the play lost to them.
    pub failures: u64,
    pub nodes_dead: u64,
    pub lost_play_minutes: f64,
    /// Injected crashes of running servers (`lost_play_minutes` includes their restarts),
    /// crash loops stopped by the core's limit, and injected failed starts.
    pub crashes: u64,
    pub crash_loops: u64,
    pub failed_starts: u64,
    /// Consolidation: player-minutes interrupted by migrations, announcements made to
    /// `auto` owners, recommendations to `suggest` owners, accepted ones and their saving.
    pub disrupted_player_minutes: f64,
    pub announcements: u64,
    pub recommendations: u64,
    pub recommendations_accepted: u64,
    #[serde(serialize_with = "money")]
    pub recommended_saving_eur_per_hour: Money,
    /// Plan changes during play (scenario `[[upgrades]]`); moves count in `migrations`.
    pub upgrades: u64,
    /// Preemptible jobs, a second product reported apart from `revenue_eur` and `margin_eur`.
    pub jobs_submitted: u64,
    pub jobs_completed: u64,
    pub jobs_preempted: u64,
    pub job_notices: u64,
    #[serde(serialize_with = "money")]
    pub job_revenue_eur: Money,
}

#[derive(Serialize, Debug, Clone)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub description: String,
    pub policy: crate::scenario::PolicyKind,
    pub placement: conductor_core::Strategy,
}

#[derive(Serialize, Debug, Clone)]
pub struct DatasetInfo {
    pub name: String,
    pub path: String,
    pub servers: usize,
    pub owners: usize,
    pub sessions: usize,
}

#[derive(Serialize, Debug, Clone)]
pub struct WindowInfo {
    pub start: String,
    pub end: String,
    pub hours: f64,
}

/// Measures the run itself; excluded from determinism.
#[derive(Serialize, Debug, Clone, Default)]
pub struct RunInfo {
    pub version: String,
    pub wall_s: f64,
    pub load_s: f64,
    pub replay_s: f64,
    pub events_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub report_format: u32,
    pub scenario: ScenarioInfo,
    pub dataset: DatasetInfo,
    pub window: WindowInfo,
    pub seed: u64,
    pub kpis: Kpis,
    pub details: Details,
    /// What-if transforms applied to the dataset before the replay, with their effect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<crate::transform::Effect>,
    /// Start waits at every percentile 0..=100 (nearest rank; 0 is the shortest), seconds:
    /// the wait distribution for CDF plots and comparisons.
    pub wait_percentiles_s: Vec<f64>,
    /// The first scale decisions with the figures behind them.
    pub decisions: Vec<crate::engine::Decision>,
    pub run: RunInfo,
}

/// Nearest-rank percentile: the p-th of n sorted values is the ⌈p·n/100⌉-th (SPEC §11).
pub fn nearest_rank(sorted: &[Millis], p: u64) -> Option<Millis> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    Some(sorted[(rank - 1) as usize])
}

/// Waits at percentiles 0..=100 in seconds (empty without starts).
pub fn wait_percentiles(waits: &[Millis]) -> Vec<f64> {
    let mut sorted = waits.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Vec::new();
    }
    (0..=100).map(|p| seconds(nearest_rank(&sorted, p))).collect()
}

fn seconds(ms: Option<Millis>) -> f64 {
    ms.map_or(0.0, |ms| ms as f64 / 1000.0)
}

impl Kpis {
    pub fn from_outcome(o: &Outcome, seed: u64) -> Kpis {
        let mut waits = o.waits.clone();
        waits.sort_unstable();
        let mut queue_waits = o.queue_waits.clone();
        queue_waits.sort_unstable();
        Kpis {
            infra_cost_eur: o.infra_cost(),
            dedicated_cost_eur: o.dedicated_cost,
            cloud_cost_eur: o.cloud_cost,
            storage_cost_eur: o.storage_cost,
            revenue_eur: o.revenue(),
            promo_credit_eur: o.promo_credit,
            margin_eur: o.margin(),
            starts: o.starts,
            starts_abandoned: o.abandoned(),
            start_wait_p50_s: seconds(nearest_rank(&waits, 50)),
            start_wait_p95_s: seconds(nearest_rank(&waits, 95)),
            start_wait_p99_s: seconds(nearest_rank(&waits, 99)),
            start_wait_max_s: seconds(waits.last().copied()),
            cloud_vms_created: o.cloud_vms_created,
            cloud_vm_hours_billed: o.cloud_vm_hours_billed,
            peak_cloud_vms: o.peak_cloud_vms,
            start_queue_wait_p95_s: seconds(nearest_rank(&queue_waits, 95)),
            starts_restored: o.starts_restored,
            migrations: o.migrations,
            events: o.events,
            seed,
        }
    }
}

impl Report {
    pub fn new(scenario: &Scenario, dataset: &Dataset, seed: u64, o: &Outcome, run: RunInfo) -> Report {
        let (start, end) = o.window;
        Report {
            report_format: REPORT_FORMAT,
            scenario: ScenarioInfo {
                name: scenario.name.clone(),
                file: scenario.file.display().to_string(),
                description: scenario.description.clone(),
                policy: scenario.policy,
                placement: scenario.scheduler.strategy,
            },
            dataset: DatasetInfo {
                name: dataset.meta.name.clone(),
                path: dataset.dir.display().to_string(),
                servers: dataset.servers.len(),
                owners: dataset.owners.len(),
                sessions: dataset.sessions.len(),
            },
            window: WindowInfo {
                start: format_rfc3339(start),
                end: format_rfc3339(end),
                hours: (end - start) as f64 / HOUR as f64,
            },
            seed,
            kpis: Kpis::from_outcome(o, seed),
            details: Details {
                active_revenue_eur: o.active_revenue,
                sleeping_revenue_eur: o.sleeping_revenue,
                snapshot_cost_eur: o.snapshot_cost,
                control_plane_cost_eur: o.control_plane_cost,
                owners_promoted: o.owners_promoted,
                requests: o.requests,
                abandoned_gave_up: o.abandoned_gave_up,
                abandoned_interval_ended: o.abandoned_interval_ended,
                restores_from_archive: o.restores_from_archive,
                restores_from_node: o.restores_from_node,
                staged: o.staged,
                staged_used: o.staged_used,
                staged_dropped: o.staged_dropped,
                staged_gb: o.staged_mb as f64 / 1000.0,
                restore_wait_avoided_s: o.restore_avoided_ms as f64 / 1000.0,
                archived: o.archived,
                scale_ups: o.scale_ups,
                scale_downs: o.scale_downs,
                decisions_by_policy: o.decisions.clone(),
                forecasts: o.forecasts,
                failures: o.failures,
                nodes_dead: o.nodes_dead,
                lost_play_minutes: o.lost_play_ms as f64 / 60_000.0,
                crashes: o.crashes,
                crash_loops: o.crash_loops,
                failed_starts: o.failed_starts,
                disrupted_player_minutes: o.disrupted_player_ms as f64 / 60_000.0,
                announcements: o.announcements,
                recommendations: o.recommendations,
                recommendations_accepted: o.recommendations_accepted,
                recommended_saving_eur_per_hour: o.recommended_saving_per_hour,
                upgrades: o.upgrades,
                jobs_submitted: o.jobs_submitted,
                jobs_completed: o.jobs_completed,
                jobs_preempted: o.jobs_preempted,
                job_notices: o.job_notices,
                job_revenue_eur: o.job_revenue,
            },
            transforms: Vec::new(),
            wait_percentiles_s: wait_percentiles(&o.waits),
            decisions: o.decision_log.clone(),
            run,
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report serializes");
        s.push('\n');
        s
    }

    /// A readable table of the KPIs for a terminal.
    pub fn summary(&self) -> String {
        let k = &self.kpis;
        let mut s = String::new();
        let name = |v: serde_json::Value| v.as_str().unwrap_or("?").to_owned();
        let policy = name(serde_json::json!(self.scenario.policy));
        let placement = name(serde_json::json!(self.scenario.placement));
        let _ = writeln!(s, "scenario  {} (policy {policy}, placement {placement})", self.scenario.name);
        let _ = writeln!(
            s,
            "dataset   {}: {} servers, {} sessions; window {} → {} ({} h); seed {}",
            self.dataset.name,
            self.dataset.servers,
            self.dataset.sessions,
            self.window.start,
            self.window.end,
            self.window.hours,
            self.seed
        );
        let eur = |m: &Money| format!("{:>12} EUR", m.round_dp(2));
        let mut rows: Vec<(&str, String)> = vec![
            ("revenue", eur(&k.revenue_eur)),
            ("  active", eur(&self.details.active_revenue_eur)),
            ("  sleeping", eur(&self.details.sleeping_revenue_eur)),
            ("infra cost", eur(&k.infra_cost_eur)),
            ("  dedicated", eur(&k.dedicated_cost_eur)),
            ("  cloud", eur(&k.cloud_cost_eur)),
            ("  storage", eur(&k.storage_cost_eur)),
            ("promo credit", eur(&k.promo_credit_eur)),
            ("margin", eur(&k.margin_eur)),
            ("starts", format!("{:>12}", k.starts)),
            ("abandoned", format!("{:>12}", k.starts_abandoned)),
            (
                "start wait p50/p95/p99/max",
                format!(
                    "{} / {} / {} / {} s",
                    k.start_wait_p50_s, k.start_wait_p95_s, k.start_wait_p99_s, k.start_wait_max_s
                ),
            ),
            ("queue wait p95 / restored starts", format!("{} s / {}", k.start_queue_wait_p95_s, k.starts_restored)),
            ("cloud VMs created / peak", format!("{:>12} / {}", k.cloud_vms_created, k.peak_cloud_vms)),
            ("cloud VM hours billed", format!("{:>12}", k.cloud_vm_hours_billed)),
            ("events", format!("{:>12}", k.events)),
            ("wall", format!("{:>12.3} s ({:.0} events/s)", self.run.wall_s, self.run.events_per_s)),
        ];
        if !self.details.control_plane_cost_eur.is_zero() {
            let at = rows.iter().position(|(k, _)| *k == "  cloud").expect("listed") + 1;
            rows.insert(at, ("    control plane VM", eur(&self.details.control_plane_cost_eur)));
        }
        let staging = format!(
            "{:>12} / {} / {:.1} GB / {:.0} s",
            self.details.staged, self.details.staged_used, self.details.staged_gb, self.details.restore_wait_avoided_s
        );
        if self.details.staged > 0 {
            let at = rows.iter().position(|(k, _)| k.starts_with("queue wait")).expect("listed") + 1;
            rows.insert(at, ("staged / used / copied / restore avoided", staging));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in rows {
            let _ = writeln!(s, "  {key:<width$}  {value}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        // n = 10: p50 → ⌈5⌉ = 5th; p95 → ⌈9.5⌉ = 10th; p99 → ⌈9.9⌉ = 10th.
        let v: Vec<Millis> = (1..=10).map(|i| i * 1000).collect();
        assert_eq!(nearest_rank(&v, 50), Some(5000));
        assert_eq!(nearest_rank(&v, 95), Some(10_000));
        assert_eq!(nearest_rank(&v, 99), Some(10_000));
        // n = 200: p95 → 190th, p99 → 198th, p50 → 100th.
        let v: Vec<Millis> = (1..=200).collect();
        assert_eq!(nearest_rank(&v, 50), Some(100));
        assert_eq!(nearest_rank(&v, 95), Some(190));
        assert_eq!(nearest_rank(&v, 99), Some(198));
        // n = 1: every percentile is the value.
        assert_eq!(nearest_rank(&[7], 1), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }
}
