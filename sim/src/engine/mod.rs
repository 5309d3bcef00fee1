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
pub use outcome::{Decision, Outcome, UsageSpan, DECISION_LOG};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use rust_decimal::prelude::ToPrimitive;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

mod apply;
mod failures;
mod meter;
mod observe;
mod outcome;
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
}
