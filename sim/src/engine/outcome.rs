//! What a run measured, before formatting: the outcome the report is made from.

use crate::series::Series;
use conductor_core::{Millis, Money, ServerId};

/// Everything a run measured, before formatting.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub window: (Millis, Millis),
    pub dedicated_cost: Money,
    /// VM hours plus snapshot storage.
    pub cloud_cost: Money,
    /// Part of `cloud_cost`: storing the prepared VM snapshot.
    pub snapshot_cost: Money,
    /// Part of `cloud_cost`: the control plane's VM (a fleet without dedicated nodes).
    pub control_plane_cost: Money,
    pub storage_cost: Money,
    pub active_revenue: Money,
    pub sleeping_revenue: Money,
    pub promo_credit: Money,
    pub owners_promoted: u64,
    pub requests: u64,
    pub starts: u64,
    /// Request → running, ms, in the order servers became running.
    pub waits: Vec<Millis>,
    /// Request → placement of the same starts (what capacity decides), ms.
    pub queue_waits: Vec<Millis>,
    /// Starts whose placement restored the world (from the archive or another node).
    pub starts_restored: u64,
    /// Staged worlds (SPEC §6): copies made, starts that used one, copies dropped unused,
    /// MB copied, and the restore time the used ones saved.
    pub staged: u64,
    pub staged_used: u64,
    pub staged_dropped: u64,
    pub staged_mb: u64,
    pub restore_avoided_ms: u64,
    pub abandoned_gave_up: u64,
    pub abandoned_interval_ended: u64,
    pub restores_from_archive: u64,
    pub restores_from_node: u64,
    pub archived: u64,
    pub cloud_vms_created: u64,
    pub cloud_vm_hours_billed: u64,
    pub peak_cloud_vms: u64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    pub migrations: u64,
    pub events: u64,
    /// Scale decisions counted by "policy action".
    pub decisions: std::collections::BTreeMap<String, u64>,
    /// The first [`DECISION_LOG`] decisions with their reasons.
    pub decision_log: Vec<Decision>,
    /// Nightly forecasts made (predictive policies).
    pub forecasts: u64,
    /// Injected node failures, and nodes declared dead after them.
    pub failures: u64,
    /// Injected crashes of running servers, the crash loops among them (stopped by the
    /// core's limit), and injected failed starts.
    pub crashes: u64,
    pub crash_loops: u64,
    pub failed_starts: u64,
    pub nodes_dead: u64,
    /// Server-minutes between a failure and the server running again (or its demand
    /// ending): play the customers lost.
    pub lost_play_ms: u64,
    /// Consolidation: player-time interrupted by migrations, announcements to `auto`
    /// owners, recommendations to `suggest` owners (accepted, and the saving they offered).
    pub disrupted_player_ms: u64,
    pub announcements: u64,
    pub recommendations: u64,
    pub recommendations_accepted: u64,
    pub recommended_saving_per_hour: Money,
    /// Plan changes during play (scenario events).
    pub upgrades: u64,
    /// Preemptible jobs: a second product, reported apart from `revenue`.
    pub jobs_submitted: u64,
    pub jobs_completed: u64,
    pub jobs_preempted: u64,
    pub job_notices: u64,
    pub job_revenue: Money,
    /// The fleet's state over time, when asked for ([`super::run_with`]).
    pub series: Option<Series>,
    /// Every billable span, when asked for ([`super::run_logging_usage`]).
    pub usage: Option<Vec<UsageSpan>>,
}

/// One span a server spent running (billed per MiB of plan RAM) or asleep (per MB of disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSpan {
    pub server: ServerId,
    pub running: bool,
    /// Plan RAM (running) or disk (asleep) during the span.
    pub size: u64,
    pub from: Millis,
    pub to: Millis,
}

/// How many scale decisions the report lists one by one.
pub const DECISION_LOG: usize = 500;

/// One scale decision, as the report lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    pub t: String,
    pub action: &'static str,
    pub node: u32,
    pub policy: &'static str,
    pub reason: String,
}

impl Outcome {
    pub fn infra_cost(&self) -> Money {
        self.dedicated_cost + self.cloud_cost + self.storage_cost
    }
    pub fn revenue(&self) -> Money {
        self.active_revenue + self.sleeping_revenue
    }
    pub fn margin(&self) -> Money {
        self.revenue() - self.infra_cost() - self.promo_credit
    }
    pub fn abandoned(&self) -> u64 {
        self.abandoned_gave_up + self.abandoned_interval_ended
    }
}
