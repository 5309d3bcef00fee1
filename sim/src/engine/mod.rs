//! The event engine: a binary heap of events ordered by (time, class, sequence), merged
//! with the time-ordered stream of start requests, delivered to the core's scheduler.
//! The engine carries out the commands the scheduler returns — with simulated delays —
//! and meters usage as integers for billing. It decides nothing itself.
//!
//! Same-instant order (SPEC §11 rule 8): interval ends, boot completions, node ready,
//! abandonments, archiving, scaling tick, new start requests (in input order).

use crate::dataset::{wanted_intervals, Dataset, Interval};
use crate::scenario::{Delay, Scenario};
use crate::series::Series;
use conductor_core::billing::{self, MB_MS_PER_GB_MONTH, MB_MS_PER_TB_MONTH, MIB_MS_PER_GIB_HOUR};
use conductor_core::scheduler::{Outbox, ScaleAction};
use conductor_core::{Command, Millis, Money, NodeId, Note, PlacementId, Restore, Scheduler, ServerId, Timer};
pub use observe::{Input, Observer, Seen};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use rust_decimal::prelude::ToPrimitive;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

mod failures;
mod observe;
mod staging;

/// Event classes in same-instant order.
mod class {
    pub const INTERVAL_END: u8 = 0;
    pub const BOOT: u8 = 1;
    pub const NODE_READY: u8 = 2;
    pub const ABANDON: u8 = 3;
    pub const ARCHIVE: u8 = 4;
    /// Player counts (consolidation only; not in SPEC §11); a stream of their own.
    pub const PLAYERS: u8 = 5;
    /// The nightly forecast (not in SPEC §11: runs only when a predictive policy is active).
    pub const FORECAST: u8 = 6;
    /// Wake scores for staging (not in SPEC §11: only with `[policy.staging]`).
    pub const SCORE: u8 = 7;
    pub const TICK: u8 = 8;
    pub const REQUEST: u8 = 9;
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    IntervalEnd(ServerId),
    Boot(ServerId, PlacementId),
    NodeReady(NodeId),
    Timer(Timer),
    Forecast,
    /// An injected failure: the node stops answering.
    Fail(crate::scenario::FailureTarget),
    /// A failed dedicated node is back (repaired).
    Repair(NodeId),
    /// The owner changes the server's plan (RAM MiB).
    Upgrade(ServerId, u32),
    /// A preemptible job arrives / finishes (index into the job stream).
    JobArrive(u32),
    JobDone(u32),
    /// An injected crash of the server's container (if that placement still runs).
    Crash(ServerId, PlacementId),
    /// An injected failed start: the placement never answers.
    StartFail(ServerId, PlacementId),
    /// A staging round (wake scores).
    Score,
    /// The copy of a world ordered at that time is on the node.
    Staged(ServerId, NodeId, Millis),
}

/// A preemptible job as the twin plays it.
#[derive(Clone, Copy, Debug)]
struct SimJob {
    ram_mib: u32,
    duration: Millis,
    started: Option<Millis>,
    ended: bool,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    time: Millis,
    class: u8,
    seq: u64,
    kind: Kind,
}

impl Event {
    fn key(&self) -> (Millis, u8, u64) {
        (self.time, self.class, self.seq)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// What the meter knows about a server's billable phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Starting,
    Running(Millis),
    Sleeping(Millis),
    Archived(Millis),
}

#[derive(Clone, Debug)]
struct VmRecord {
    node: NodeId,
    created: Millis,
    deleted: Option<Millis>,
}

/// Seeded delay sampling; one generator per component so that adding draws to one does
/// not shift another.
struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Sampler { rng }
    }

    fn sample(&mut self, delay: &Delay) -> Millis {
        match *delay {
            Delay::Fixed(ms) => ms,
            Delay::Uniform { min, max } => self.rng.random_range(min..=max),
            Delay::LogNormal { median, sigma } => {
                let d = rand_distr::LogNormal::new((median.max(1) as f64).ln(), sigma).expect("validated sigma");
                d.sample(&mut self.rng).round() as Millis
            }
        }
    }
}

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
    /// The fleet's state over time, when asked for ([`run_with`]).
    pub series: Option<Series>,
    /// Every billable span, when asked for ([`run_logging_usage`]).
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

/// How far a run has come, for progress display: simulated time done ÷ window.
pub type Progress<'a> = &'a mut dyn FnMut(f64);

/// Replays `dataset` against `scenario` with `seed`.
pub fn run(scenario: &Scenario, dataset: &Dataset, seed: u64, progress: Progress<'_>) -> Outcome {
    run_with(scenario, dataset, seed, None, progress)
}

/// [`run`], also sampling the fleet's state every `series_step` into [`Outcome::series`].
pub fn run_with(
    scenario: &Scenario,
    dataset: &Dataset,
    seed: u64,
    series_step: Option<Millis>,
    progress: Progress<'_>,
) -> Outcome {
    run_full(scenario, dataset, seed, series_step, None, false, progress)
}

/// [`run`], showing the core inputs `observer` wants to it.
pub fn run_observed(scenario: &Scenario, dataset: &Dataset, seed: u64, observer: &mut dyn Observer) -> Outcome {
    run_full(scenario, dataset, seed, None, Some(observer), false, &mut |_| {})
}

/// [`run`], also logging each run's usage (what the controller's billing test checks its
/// metering is compared with).
pub fn run_logging_usage(scenario: &Scenario, dataset: &Dataset, seed: u64) -> Outcome {
    run_full(scenario, dataset, seed, None, None, true, &mut |_| {})
}

fn run_full<'a>(
    scenario: &'a Scenario,
    dataset: &'a Dataset,
    seed: u64,
    series_step: Option<Millis>,
    observer: Option<&'a mut dyn Observer>,
    log_usage: bool,
    progress: Progress<'_>,
) -> Outcome {
    let window = scenario.window.unwrap_or((dataset.meta.start, dataset.meta.end));
    let intervals = wanted_intervals(dataset, scenario.lifecycle.idle_timeout);
    let mut engine = Engine::new(scenario, dataset, seed, window);
    engine.observer = observer;
    if log_usage {
        engine.o.usage = Some(Vec::new());
    }
    if let Some(step) = series_step.filter(|&s| s > 0) {
        engine.series = Some(Series::new(step));
        engine.next_sample = window.0;
    }
    if scenario.forecast_source.is_some() {
        let ram: Vec<u32> = dataset.servers.iter().map(|s| s.ram_mib).collect();
        engine.peaks = crate::forecasting::peak_demand(
            intervals.iter().map(|iv| (iv.server, iv.start, iv.end)),
            &ram,
            window.0,
            window.1,
        );
        for t in crate::forecasting::nightly_runs(dataset.meta.timezone, window.0, window.1) {
            engine.push(t, class::FORECAST, None, Kind::Forecast);
        }
        engine.refresh_forecast(window.0);
    }
    if let Some(every) = engine.wake.as_ref().map(|w| w.cfg.every) {
        engine.push(window.0 + every, class::SCORE, None, Kind::Score);
    }
    engine.schedule_failures(seed);
    engine.schedule_jobs(seed);
    for (id, at, ram) in &scenario.upgrades {
        // Unknown ids are rejected by Scenario::check_against before a run.
        if let Some(i) = dataset.servers.iter().position(|s| &s.id == id) {
            engine.push(*at, class::NODE_READY, None, Kind::Upgrade(ServerId(i as u32), *ram));
        }
    }
    if scenario.migration.is_some() || !scenario.upgrades.is_empty() {
        // Consolidation moves only servers without players, and migrations of any kind
        // count the players they interrupt: track who plays.
        // A sorted stream merged in the main loop: a million changes would slow the heap.
        let mut changes = Vec::new();
        for sess in &dataset.sessions {
            let (a, b) = (sess.start.max(window.0), sess.end.min(window.1));
            if a < b && sess.players > 0 {
                let server = ServerId(sess.server);
                changes.push((a, server, sess.players as i32));
                changes.push((b, server, -(sess.players as i32)));
            }
        }
        changes.sort_by_key(|c| (c.0, c.2, c.1));
        engine.player_changes = changes.into_iter().enumerate().map(|(i, (t, s, d))| (t, i as u64, s, d)).collect();
    }
    engine.replay(&intervals, progress);
    engine.finish()
}

struct Engine<'a> {
    scenario: &'a Scenario,
    observer: Option<&'a mut dyn Observer>,
    dataset: &'a Dataset,
    window: (Millis, Millis),
    core: Scheduler,
    heap: BinaryHeap<Event>,
    seq: u64,
    out: Outbox,
    boot_rng: Sampler,
    provisioning_rng: Sampler,
    phases: Vec<Phase>,
    active_mib_ms: Vec<u128>,
    sleeping_mb_ms: Vec<u128>,
    archived_mb_ms: u128,
    vms: Vec<VmRecord>,
    vms_existing: u64,
    /// Peak demand per 15-minute step over the window (predictive policies only).
    peaks: Vec<u64>,
    /// Nodes that failed and are not back, by node id.
    down: Vec<bool>,
    /// Servers hit by a failure and not yet running again: since when.
    lost_since: Vec<Option<Millis>>,
    jobs: Vec<SimJob>,
    job_mib_ms: u128,
    /// Plan RAM of each server's current running phase (plans can change during play).
    phase_ram: Vec<u32>,
    /// Players online per server, and the time-ordered changes (consolidation only).
    players: Vec<i32>,
    /// Per server: when its latest placement was made and whether it restored the world.
    placed: Vec<(Millis, bool)>,
    player_changes: Vec<(Millis, u64, ServerId, i32)>,
    consent_rng: ChaCha8Rng,
    /// Injected crashes and failed starts (stream 5; drawn only when `[failures]` asks).
    crash_rng: ChaCha8Rng,
    /// Time series sampling (off unless asked for): next sample time, and running totals
    /// kept by phase changes so that a sample costs O(nodes).
    series: Option<Series>,
    next_sample: Millis,
    running: (u64, u64),
    sleeping: (u64, u64),
    forecast: Option<conductor_core::DemandForecast>,
    /// Staging (`[policy.staging]`): the start history the wake predictor reads.
    wake: Option<staging::Wake>,
    o: Outcome,
}

impl<'a> Engine<'a> {
    fn new(scenario: &'a Scenario, dataset: &'a Dataset, seed: u64, window: (Millis, Millis)) -> Self {
        let core = Scheduler::new(scenario.scheduler.clone(), &scenario.dedicated, dataset.specs());
        let n = dataset.servers.len();
        Engine {
            scenario,
            observer: None,
            dataset,
            window,
            core,
            heap: BinaryHeap::new(),
            seq: 0,
            out: Outbox::default(),
            boot_rng: Sampler::new(seed, 1),
            provisioning_rng: Sampler::new(seed, 2),
            phases: vec![Phase::Idle; n],
            active_mib_ms: vec![0; n],
            sleeping_mb_ms: vec![0; n],
            archived_mb_ms: 0,
            vms: Vec::new(),
            vms_existing: 0,
            peaks: Vec::new(),
            down: Vec::new(),
            lost_since: vec![None; n],
            players: vec![0; n],
            placed: vec![(0, false); n],
            player_changes: Vec::new(),
            phase_ram: dataset.servers.iter().map(|s| s.ram_mib).collect(),
            jobs: Vec::new(),
            job_mib_ms: 0,
            consent_rng: {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(4);
                rng
            },
            crash_rng: {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(5);
                rng
            },
            series: None,
            next_sample: Millis::MAX,
            running: (0, 0),
            sleeping: (0, 0),
            forecast: None,
            wake: scenario.wake.clone().map(|w| staging::Wake::new(w, n)),
            o: Outcome { window, ..Outcome::default() },
        }
    }

    /// Enters server `i` into `phase` (after [`Engine::close_phase`]), keeping the totals.
    fn enter(&mut self, i: usize, phase: Phase) {
        match phase {
            Phase::Running(_) => {
                self.running.0 += 1;
                self.running.1 += u64::from(self.phase_ram[i]);
            }
            Phase::Sleeping(_) => {
                self.sleeping.0 += 1;
                self.sleeping.1 += self.dataset.servers[i].disk_mb;
            }
            _ => {}
        }
        self.phases[i] = phase;
    }

    /// Takes every due sample up to and including `until` (before events at that instant).
    fn sample_until(&mut self, until: Millis) {
        while self.next_sample <= until && self.next_sample < self.window.1 {
            let t = self.next_sample;
            let row = self.sample(t);
            let series = self.series.as_mut().expect("sampling only with a series");
            series.push(t, row);
            self.next_sample = t + series.step;
        }
    }

    fn sample(&self, t: Millis) -> [f64; crate::series::COLUMNS_LEN] {
        use conductor_core::scheduler::NodeState;
        const GIB: f64 = 1024.0;
        let (mut reserved, mut usable, mut servers_mib) = ([0u64; 2], [0u64; 2], 0u64);
        let mut provisioning = 0u64;
        for n in self.core.nodes() {
            let k = usize::from(n.kind == conductor_core::NodeKind::Cloud);
            match n.state {
                NodeState::Ready | NodeState::Cordoned => usable[k] += u64::from(n.usable_mib),
                NodeState::Provisioning => provisioning += 1,
                _ => {}
            }
            reserved[k] += n.reserved_mib + n.job_mib;
            servers_mib += n.reserved_mib;
        }
        let prices = &self.scenario.prices;
        let f = |d: Money| d.to_f64().unwrap_or(0.0);
        let monthly: Money = self.scenario.dedicated.iter().map(|d| d.monthly_eur).sum();
        let hourly = self.scenario.cloud.as_ref().map_or(0.0, |c| f(c.hourly_eur));
        let cost = f(monthly) / 720.0 + self.vms_existing as f64 * hourly;
        let revenue = self.running.1 as f64 / GIB * f(prices.active_per_gib_hour)
            + self.sleeping.1 as f64 / 1000.0 * f(prices.sleeping_per_gb_month) / 720.0;
        let (mut mean, mut p90, mut actual) = (f64::NAN, f64::NAN, f64::NAN);
        if let Some(fc) = &self.forecast {
            let k = (t - fc.start).div_euclid(fc.step.max(1));
            if k >= 0 && (k as usize) < fc.mean.len() {
                mean = fc.mean[k as usize] as f64 / GIB;
                p90 = fc.p90[k as usize] as f64 / GIB;
            }
            let step = ((t - self.window.0) / crate::forecasting::STEP) as usize;
            if let Some(&peak) = self.peaks.get(step) {
                actual = peak as f64 / GIB;
            }
        }
        [
            (servers_mib + self.core.queued_mib()) as f64 / GIB,
            reserved[0] as f64 / GIB,
            reserved[1] as f64 / GIB,
            usable[0] as f64 / GIB,
            usable[1] as f64 / GIB,
            self.vms_existing as f64,
            provisioning as f64,
            self.core.queue_len() as f64,
            self.running.0 as f64,
            self.sleeping.0 as f64,
            cost,
            revenue,
            mean,
            p90,
            actual,
        ]
    }

    fn push(&mut self, time: Millis, class: u8, seq: Option<u64>, kind: Kind) {
        // Events at or after the window end are never processed: the window end stops everything.
        if time >= self.window.1 {
            return;
        }
        let seq = seq.unwrap_or_else(|| {
            self.seq += 1;
            self.seq
        });
        self.heap.push(Event { time, class, seq, kind });
    }

    fn replay(&mut self, intervals: &[Interval], progress: Progress<'_>) {
        let (start, end) = self.window;
        // Requests in the window, clipped to its start (SPEC §11 clarifications). Requests
        // at the same instant go in input order: the sessions.csv row opening the interval.
        let mut requests: Vec<(Millis, u64, Interval)> = intervals
            .iter()
            .filter(|iv| iv.end > start && iv.start < end)
            .map(|iv| (iv.start.max(start), u64::from(iv.first_row), *iv))
            .collect();
        requests.sort_unstable_by_key(|r| (r.0, r.1));
        self.o.requests = requests.len() as u64;

        self.core.start(start, &mut self.out);
        self.apply(start);
        let mut next_request = 0;
        let span = (end - start).max(1) as f64;
        let mut next_player = 0;
        loop {
            let heap_key = self.heap.peek().map(Event::key);
            let req_key = requests.get(next_request).map(|r| (r.0, class::REQUEST, r.1));
            let player_key = self.player_changes.get(next_player).map(|p| (p.0, class::PLAYERS, p.1));
            let Some(first) = [heap_key, req_key, player_key].into_iter().flatten().min() else { break };
            if first.0 >= self.next_sample {
                self.sample_until(first.0);
            }
            if Some(first) == player_key {
                let (now, _, server, delta) = self.player_changes[next_player];
                next_player += 1;
                if now >= end {
                    continue;
                }
                self.o.events += 1;
                let p = &mut self.players[server.0 as usize];
                *p = (*p + delta).max(0);
                self.core.set_players(server, *p as u32);
                continue;
            }
            let take_request = Some(first) == req_key;
            self.o.events += 1;
            if self.o.events.is_multiple_of(65_536) {
                let now = heap_key.map_or(req_key.map_or(end, |r| r.0), |h| req_key.map_or(h.0, |r| r.0.min(h.0)));
                progress(((now - start) as f64 / span).clamp(0.0, 1.0));
            }
            if take_request {
                let (now, order, iv) = requests[next_request];
                next_request += 1;
                if now >= end {
                    break;
                }
                let server = ServerId(iv.server);
                let input = Input::Request(server);
                let mark = self.before_input(now, &input);
                if let Some(wake) = self.wake.as_mut() {
                    wake.record(now, server);
                }
                self.core.request_start(now, server, &mut self.out);
                if mark.is_some() {
                    self.after_input(now, &input, mark);
                }
                self.apply(now);
                self.push(iv.end, class::INTERVAL_END, Some(order), Kind::IntervalEnd(server));
            } else {
                let ev = self.heap.pop().expect("peeked");
                let now = ev.time;
                // Described only for an observer (the hot loop of a plain run skips it).
                let input = if self.observer.is_none() {
                    None
                } else {
                    match ev.kind {
                        Kind::IntervalEnd(server) => Some(Input::WantedEnd(server)),
                        Kind::Timer(timer) => Some(Input::Timer(timer)),
                        Kind::Upgrade(server, ram) => Some(Input::Upgrade(server, ram)),
                        Kind::JobArrive(j) => Some(Input::JobArrive(self.jobs[j as usize].ram_mib)),
                        Kind::JobDone(j) if !self.jobs[j as usize].ended => {
                            Some(Input::JobDone(conductor_core::scheduler::JobId(j)))
                        }
                        _ => None,
                    }
                };
                let mark = input.as_ref().and_then(|i| self.before_input(now, i));
                match ev.kind {
                    Kind::IntervalEnd(server) => self.core.wanted_end(now, server, &mut self.out),
                    Kind::Boot(server, placement) => {
                        // A container on a failed node never comes up.
                        let on_down_node = match self.core.residence(server) {
                            conductor_core::Residence::Starting { node } => self.is_down(node),
                            _ => false,
                        };
                        if !on_down_node {
                            self.core.boot_complete(now, server, placement, &mut self.out)
                        }
                    }
                    Kind::NodeReady(node) => self.core.node_ready(now, node, &mut self.out),
                    Kind::Timer(timer) => self.core.timer(now, timer, &mut self.out),
                    Kind::Forecast => self.refresh_forecast(now),
                    Kind::Fail(target) => self.fail(now, target),
                    Kind::JobArrive(j) => {
                        self.o.jobs_submitted += 1;
                        let ram = self.jobs[j as usize].ram_mib;
                        let id = self.core.submit_job(now, ram, &mut self.out);
                        debug_assert_eq!(id.0, j, "jobs are submitted in stream order");
                    }
                    Kind::JobDone(j) => {
                        if !self.jobs[j as usize].ended {
                            self.end_job(j as usize, now);
                            self.o.jobs_completed += 1;
                            self.core.job_done(now, conductor_core::scheduler::JobId(j), &mut self.out);
                        }
                    }
                    Kind::Upgrade(server, ram) => {
                        self.o.upgrades += 1;
                        self.core.change_plan(now, server, ram, &mut self.out);
                    }

                    Kind::Repair(node) => self.repair(now, node),
                    Kind::Crash(server, placement) => self.crash(now, server, placement),
                    Kind::StartFail(server, placement) => self.core.start_failed(now, server, placement, &mut self.out),
                    Kind::Score => self.score_wakes(now),
                    Kind::Staged(server, node, at) => self.core.world_staged(server, node, at),
                }
                if let Some(input) = &input {
                    self.after_input(now, input, mark);
                }
                self.apply(now);
            }
        }
        if self.series.is_some() {
            self.sample_until(end - 1);
        }
        progress(1.0);
    }

    /// Carries out the scheduler's commands and records its notes.
    fn apply(&mut self, now: Millis) {
        let mut out = std::mem::take(&mut self.out);
        for note in out.notes.drain(..) {
            match note {
                Note::Running { server, requested_at } => {
                    self.end_loss(server.0 as usize, now);
                    self.phase_ram[server.0 as usize] = self.core.plan_ram(server);
                    self.o.starts += 1;
                    self.o.waits.push(now - requested_at);
                    let (placed_at, restored) = self.placed[server.0 as usize];
                    self.o.queue_waits.push(placed_at - requested_at);
                    self.o.starts_restored += u64::from(restored);
                    self.enter(server.0 as usize, Phase::Running(now));
                    self.schedule_crash(now, server);
                }
                Note::Abandoned { reason, server, .. } => match reason {
                    conductor_core::AbandonReason::GaveUp => {
                        self.end_loss(server.0 as usize, now);
                        self.o.abandoned_gave_up += 1
                    }
                    // Failed starts and crash loops (injected by `[failures]`): a give-up.
                    conductor_core::AbandonReason::StartFailed => {
                        self.end_loss(server.0 as usize, now);
                        self.o.abandoned_gave_up += 1
                    }
                    conductor_core::AbandonReason::IntervalEnded => {
                        self.end_loss(server.0 as usize, now);
                        self.o.abandoned_interval_ended += 1
                    }
                },
                Note::Scaled { action, policy, reason, .. } => {
                    let (name, node) = match action {
                        ScaleAction::Create { node } => {
                            self.o.scale_ups += 1;
                            ("create", node)
                        }
                        ScaleAction::Delete { node } => {
                            self.o.scale_downs += 1;
                            ("delete", node)
                        }
                        ScaleAction::Cordon { node } => ("cordon", node),
                        ScaleAction::Uncordon { node } => ("uncordon", node),
                    };
                    *self.o.decisions.entry(format!("{policy} {name}")).or_default() += 1;
                    if self.o.decision_log.len() < DECISION_LOG {
                        self.o.decision_log.push(Decision {
                            t: crate::timefmt::format_rfc3339(now),
                            action: name,
                            node: node.0,
                            policy,
                            reason,
                        });
                    }
                }
                Note::Shadow { policy, add, reason } => {
                    *self.o.decisions.entry(format!("{policy} would-create")).or_default() += u64::from(add);
                    if self.o.decision_log.len() < DECISION_LOG {
                        let t = crate::timefmt::format_rfc3339(now);
                        self.o.decision_log.push(Decision { t, action: "would-create", node: 0, policy, reason });
                    }
                }
                Note::NodeDead { .. } => self.o.nodes_dead += 1,
                Note::Failed { server, was_active } => {
                    // Its node copy is gone: from now on it lives in its latest archive.
                    let i = server.0 as usize;
                    if !was_active {
                        self.close_phase(i, now);
                        self.phases[i] = Phase::Archived(now);
                    }
                }
                Note::Migrated { .. } => self.o.migrations += 1,
                Note::Resumed { server } => {
                    self.phase_ram[server.0 as usize] = self.core.plan_ram(server);
                    self.enter(server.0 as usize, Phase::Running(now));
                }
                Note::Announced { .. } => self.o.announcements += 1,
                Note::Recommended { server, saving_per_hour } => {
                    self.o.recommendations += 1;
                    self.o.recommended_saving_per_hour += saving_per_hour;
                    let p = self.scenario.migration.as_ref().map_or(0.0, |m| m.suggest_acceptance);
                    if self.consent_rng.random::<f64>() < p {
                        self.o.recommendations_accepted += 1;
                        self.core.accept_recommendation(server);
                    }
                }
                Note::StartFailed { .. } => self.o.failed_starts += 1,
                Note::Crashed { restarted, .. } => {
                    self.o.crashes += 1;
                    self.o.crash_loops += u64::from(!restarted);
                }
                // The twin's VM creates never fail.
                Note::Queued { .. } | Note::VmFailed { .. } => {}
            }
        }
        for command in out.commands.drain(..) {
            match command {
                Command::Place { server, restore, placement, .. } => {
                    let i = server.0 as usize;
                    let restored = matches!(restore, Restore::FromArchive | Restore::FromNode(_));
                    self.placed[i] = (now, restored);
                    self.close_phase(i, now);
                    self.phases[i] = Phase::Starting;
                    let mut delay = self.boot_rng.sample(&self.scenario.lifecycle.boot);
                    match restore {
                        Restore::None => {}
                        Restore::Staged => {
                            self.o.staged_used += 1;
                            self.o.restore_avoided_ms += self.restore_ms(i) as u64;
                        }
                        Restore::FromArchive | Restore::FromNode(_) => {
                            delay += self.restore_ms(i);
                            match restore {
                                Restore::FromArchive => self.o.restores_from_archive += 1,
                                _ => self.o.restores_from_node += 1,
                            }
                        }
                    }
                    let fails = self.scenario.failures.failed_start_share > 0.0
                        && self.crash_rng.random::<f64>() < self.scenario.failures.failed_start_share;
                    let kind = if fails { Kind::StartFail(server, placement) } else { Kind::Boot(server, placement) };
                    self.push(now + delay, class::BOOT, None, kind);
                }
                Command::Migrate { server, placement, from, to } => {
                    // Downtime: save, copy the disk over, boot. Not billed, players wait.
                    let i = server.0 as usize;
                    self.close_phase(i, now);
                    self.phases[i] = Phase::Starting;
                    let save = self.scenario.migration.as_ref().map_or(0, |m| m.save);
                    let mb = self.dataset.servers[i].disk_mb;
                    // A restart in place (plan change with room) copies nothing.
                    let copy = if from == to {
                        0
                    } else {
                        ((mb * 1000).div_ceil(u64::from(self.scenario.lifecycle.restore_mb_per_s))) as Millis
                    };
                    let delay = save + copy + self.boot_rng.sample(&self.scenario.lifecycle.boot);
                    self.o.disrupted_player_ms += self.players[i].max(0) as u64 * delay as u64;
                    self.push(now + delay, class::BOOT, None, Kind::Boot(server, placement));
                }
                Command::StartJob { job, .. } => {
                    let j = &mut self.jobs[job.0 as usize];
                    j.started = Some(now);
                    let done = now + j.duration;
                    self.push(done, class::NODE_READY, None, Kind::JobDone(job.0));
                }
                Command::NoticeJob { .. } => self.o.job_notices += 1,
                Command::Discard { .. } => {}
                Command::Stage { server, node } => {
                    let i = server.0 as usize;
                    self.o.staged += 1;
                    self.o.staged_mb += self.dataset.servers[i].disk_mb;
                    let done = now + self.restore_ms(i);
                    self.push(done, class::BOOT, None, Kind::Staged(server, node, now));
                }
                Command::Unstage { .. } => self.o.staged_dropped += 1,
                Command::KillJob { job, .. } => {
                    self.end_job(job.0 as usize, now);
                    self.o.jobs_preempted += 1;
                }
                Command::Stop { server, .. } => {
                    let i = server.0 as usize;
                    self.end_loss(i, now);
                    self.close_phase(i, now);
                    self.enter(i, Phase::Sleeping(now));
                }
                Command::Archive { server, .. } => {
                    let i = server.0 as usize;
                    self.close_phase(i, now);
                    self.phases[i] = Phase::Archived(now);
                    self.o.archived += 1;
                }
                Command::CreateVm { node, .. } => {
                    self.vms.push(VmRecord { node, created: now, deleted: None });
                    self.vms_existing += 1;
                    self.o.cloud_vms_created += 1;
                    self.o.peak_cloud_vms = self.o.peak_cloud_vms.max(self.vms_existing);
                    let delay = self.provisioning_rng.sample(&self.scenario.lifecycle.provisioning);
                    self.push(now + delay, class::NODE_READY, None, Kind::NodeReady(node));
                }
                Command::DeleteVm { node } => {
                    if let Some(vm) = self.vms.iter_mut().rev().find(|v| v.node == node) {
                        vm.deleted = Some(now);
                        self.vms_existing -= 1;
                    }
                }
                Command::Wake { at, timer } => {
                    let class = match timer {
                        Timer::GiveUp { .. } => class::ABANDON,
                        Timer::Archive { .. } => class::ARCHIVE,
                        Timer::Tick => class::TICK,
                        Timer::DeadCheck { .. } | Timer::JobKill { .. } => class::NODE_READY,
                    };
                    self.push(at, class, None, Kind::Timer(timer));
                }
            }
        }
        self.out = out;
    }

    /// Seeded job arrivals: exponential gaps at the rate, sizes from the list, exponential
    /// lengths around the mean.
    fn schedule_jobs(&mut self, seed: u64) {
        let Some(stream) = &self.scenario.jobs else { return };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(5);
        let gap =
            rand_distr::Exp::new(stream.rate_per_hour / conductor_core::time::HOUR as f64).expect("positive rate");
        let length = rand_distr::Exp::new(1.0 / stream.mean_duration as f64).expect("positive length");
        let mut t = self.window.0;
        loop {
            t += gap.sample(&mut rng).ceil() as Millis;
            if t >= self.window.1 {
                break;
            }
            let ram_mib = stream.ram_mib[rng.random_range(0..stream.ram_mib.len())];
            let duration = (length.sample(&mut rng).ceil() as Millis).max(conductor_core::time::MINUTE);
            let j = self.jobs.len() as u32;
            self.jobs.push(SimJob { ram_mib, duration, started: None, ended: false });
            self.push(t, class::NODE_READY, None, Kind::JobArrive(j));
        }
    }

    /// Bills a job's run time (preempted jobs pay for the time they ran).
    fn end_job(&mut self, j: usize, now: Millis) {
        let job = &mut self.jobs[j];
        if let (Some(started), false) = (job.started, job.ended) {
            self.job_mib_ms += u128::from(job.ram_mib) * (now - started) as u128;
        }
        job.ended = true;
    }

    /// The nightly job: a new forecast from the demand seen before `now`.
    fn refresh_forecast(&mut self, now: Millis) {
        let Some(source) = &self.scenario.forecast_source else { return };
        if let Some(f) = crate::forecasting::forecast(source, &self.peaks, self.window.0, now) {
            self.o.forecasts += 1;
            if self.series.is_some() {
                self.forecast = Some(f.clone());
            }
            self.core.set_forecast(f);
        }
    }

    fn log_usage(&mut self, i: usize, running: bool, size: u64, from: Millis, to: Millis) {
        if let (Some(log), true) = (self.o.usage.as_mut(), to > from) {
            log.push(UsageSpan { server: ServerId(i as u32), running, size, from, to });
        }
    }

    /// Meters the phase server `i` is leaving at `now`.
    fn close_phase(&mut self, i: usize, now: Millis) {
        let s = &self.dataset.servers[i];
        match self.phases[i] {
            Phase::Running(since) => {
                self.active_mib_ms[i] += u128::from(self.phase_ram[i]) * (now - since) as u128;
                let size = u64::from(self.phase_ram[i]);
                self.log_usage(i, true, size, since, now);
                self.running.0 -= 1;
                self.running.1 -= u64::from(self.phase_ram[i]);
            }
            Phase::Sleeping(since) => {
                // Billed from the stop until it is placed again or the sleep window ends
                // (SPEC §8): a world kept on disk past the window sleeps for free.
                let billed_to = now.min(since + self.scenario.scheduler.sleep_window);
                self.sleeping_mb_ms[i] += u128::from(s.disk_mb) * (billed_to - since) as u128;
                let size = s.disk_mb;
                self.log_usage(i, false, size, since, billed_to);
                self.sleeping.0 -= 1;
                self.sleeping.1 -= s.disk_mb;
            }
            Phase::Archived(since) => self.archived_mb_ms += u128::from(s.disk_mb) * (now - since) as u128,
            Phase::Idle | Phase::Starting => {}
        }
        self.phases[i] = Phase::Idle;
    }

    /// The window end: everything stops and is billed up to the end (SPEC §11 rule 9).
    fn finish(mut self) -> Outcome {
        let (start, end) = self.window;
        for i in 0..self.phases.len() {
            self.close_phase(i, end);
            self.end_loss(i, end);
        }
        for j in 0..self.jobs.len() {
            self.end_job(j, end);
        }
        if let Some(stream) = &self.scenario.jobs {
            self.o.job_revenue = billing::rate(self.job_mib_ms, stream.price_per_gib_hour, MIB_MS_PER_GIB_HOUR);
        }
        let prices = &self.scenario.prices;
        for i in 0..self.phases.len() {
            self.o.active_revenue +=
                billing::rate(self.active_mib_ms[i], prices.active_per_gib_hour, MIB_MS_PER_GIB_HOUR);
            self.o.sleeping_revenue +=
                billing::rate(self.sleeping_mb_ms[i], prices.sleeping_per_gb_month, MB_MS_PER_GB_MONTH);
        }
        self.o.storage_cost = billing::rate(self.archived_mb_ms, prices.archive_per_tb_month, MB_MS_PER_TB_MONTH);
        // Rated once on the summed monthly prices: per-node rounding would drift.
        let monthly: Money = self.scenario.dedicated.iter().map(|d| d.monthly_eur).sum();
        self.o.dedicated_cost = billing::dedicated_cost(monthly, end - start);
        // A prepared snapshot is stored for the whole window (a cloud cost).
        self.o.snapshot_cost = billing::dedicated_cost(self.scenario.snapshot_monthly_eur, end - start);
        self.o.cloud_cost += self.o.snapshot_cost;
        // The control plane's own VM, for the whole window (no dedicated node hosts it).
        if let Some(cp) = &self.scenario.control_plane {
            self.o.control_plane_cost = billing::vm_cost(end - start, cp.hourly_eur, cp.monthly_cap_eur);
            self.o.cloud_cost += self.o.control_plane_cost;
        }
        if let Some(vm) = &self.scenario.cloud {
            for r in &self.vms {
                let life = r.deleted.unwrap_or(end) - r.created;
                self.o.cloud_cost += billing::vm_cost(life, vm.hourly_eur, vm.monthly_cap_eur);
                self.o.cloud_vm_hours_billed += billing::started_hours(life);
            }
        }
        let promoted = self.dataset.owner_signups().iter().filter(|&&t| t >= start && t < end).count() as u64;
        self.o.owners_promoted = promoted;
        self.o.promo_credit = prices.promo_credit * Money::from(promoted);
        self.o.series = self.series.take();
        self.o
    }
}
