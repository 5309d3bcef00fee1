//! The live engine: the decision core (`conductor_core::Scheduler`, exactly as the twin
//! runs it) fed with what really happens, its commands carried out by the drivers.
//!
//! One step ([`Live::tick`]) has three phases, so that the engine lock is held only for
//! core steps and short store writes, never for a driver call:
//!
//! 1. [`Live::prepare`] (locked): due timers fire, metering runs, and the step's work is
//!    collected — the intents that are due, and what to look at (every node's Docker API,
//!    the cloud's VMs).
//! 2. [`Work::run`] (unlocked): the heartbeat, container listings and status pings of every
//!    node, then the intents' driver calls, each node's one at a time, nodes in parallel,
//!    every call under a deadline.
//! 3. [`Live::finish`] (locked): outcomes and observations become core inputs —
//!    `boot_complete`, `crashed`, `start_failed`, `node_unreachable`/`node_reachable`,
//!    `node_ready`, `vm_failed` — and the core's answer becomes events and new intents.
//!
//! Every command of the core becomes a durable intent (`act.rs`) carried out until it is
//! done, proven unnecessary, or failed for good; a failure of one never stops the others or
//! the next step. Modules: `adopt` (start-up), `act` (intents), `observe` (facts into the
//! core, garbage collection), `settle` (billing). `observe` mode records every decision and
//! carries out nothing.

mod act;
mod adopt;
mod consents;
mod console;
mod forecasts;
mod intents;
mod jobs;
mod nodes;
mod objects;
mod observe;
mod settle;
mod setup;
mod work;
mod worlds;

pub use consents::Recommendation;
pub use forecasts::{PolicyView, Reloaded};
pub use intents::{Action, RestoreFrom};
pub use jobs::JobsSetup;
pub use nodes::node_server_name;
pub use objects::ObjectGc;
pub use setup::*;
pub use work::Work;
pub use worlds::{Backup, WorldSize, Worlds};

use crate::archive::ArchiveRef;
use crate::billing::Usage;
use crate::driver::NodeDriver;
use crate::events::*;
use crate::store::{NewEvent, ServerState, Store, StoreError};
use conductor_core::scheduler::{Outbox, ScaleAction};
use conductor_core::{
    DedicatedType, Millis, NodeId, Note, Residence, ScalingMemory, Scheduler, ServerId, ServerSpec, Timer,
};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decide and record, carry out nothing.
    Observe,
    Enforce,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Driver(String),
    /// The owner's balance is used up: nothing starts until a top-up.
    #[error("the balance is used up ({balance} EUR): top up to start servers")]
    BalanceExhausted { balance: crate::store::Money },
    /// The world is past its plan's hard limit: it is not started.
    #[error("the world is {world_mb} MB, past the hard limit of {limit_mb} MB for its plan's {quota_mb} MB: free space in the world or choose a larger plan")]
    OverQuota { world_mb: u64, quota_mb: u64, limit_mb: u64 },
    /// What was asked does not fit the server's state (`code` says what).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// What was asked cannot be done as given (`code` says what).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Too many of these too fast: try again in `retry_after_s`.
    #[error("{message}")]
    RateLimited { retry_after_s: u64, message: String },
}

/// What the engine knows about a node's health.
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    /// Since when its heartbeat fails (`None`: it answers).
    silent_since: Option<Millis>,
    /// Whether it was declared dead (the operators are told when it comes back).
    dead: bool,
}

pub struct Live<S: Store> {
    store: Arc<S>,
    cfg: LiveConfig,
    core: Scheduler,
    out: Outbox,
    /// Store id of each core server, and back.
    server_ids: Vec<i64>,
    by_store_id: HashMap<i64, ServerId>,
    /// Store node id, Docker API and cloud id of each core node.
    node_ids: Vec<Option<i64>>,
    docker: Vec<Option<Arc<dyn NodeDriver>>>,
    health: Vec<Health>,
    vm_ids: HashMap<NodeId, i64>,
    /// Each VM's (deterministic) name, and since when it provisions.
    vm_names: HashMap<NodeId, String>,
    provisioning_since: HashMap<NodeId, Millis>,
    /// The last readiness check of each provisioning VM with a Docker API: why it is not
    /// ready yet (`None`: it passed).
    ready_checks: HashMap<NodeId, Option<String>>,
    /// The address each VM's driver was made for.
    vm_addresses: HashMap<NodeId, String>,
    /// Dedicated nodes that joined through the admin API, by name.
    joined: HashMap<NodeId, String>,
    /// Servers' own templates, by store id (absent or `None`: the default).
    template_names: HashMap<i64, Option<String>>,
    /// When each server's recent console commands were sent (the rate limit).
    console_times: HashMap<i64, std::collections::VecDeque<Millis>>,
    /// One token per server; each followed log stream holds a clone.
    follows: HashMap<i64, Arc<()>>,
    timers: BTreeMap<(Millis, u64), Timer>,
    timer_seq: u64,
    /// When each starting server was placed, then when its container started (the start
    /// timeout runs from there).
    placed_at: HashMap<ServerId, Millis>,
    /// Running servers whose status ping fails, since when.
    unanswered: HashMap<ServerId, Millis>,
    idle_since: HashMap<ServerId, Millis>,
    /// Most players seen since each running server started (the session's `players` when
    /// the event log is exported as a dataset).
    peak_players: HashMap<ServerId, u32>,
    /// Latest verified archive of each server.
    archives: HashMap<ServerId, ArchiveRef>,
    /// Each server's backups (store ids), oldest first, and its measured size (MB).
    backups: HashMap<i64, Vec<worlds::Backup>>,
    measured: HashMap<i64, u64>,
    /// The node being declared dead (store id) and since when it was silent (its servers'
    /// recovery).
    dying: Option<i64>,
    dead_since: Option<Millis>,
    /// Archive-store objects nobody references, since when (GC); objects of servers this
    /// store does not know (reported once); when the store was last listed.
    orphans: HashMap<String, Millis>,
    foreign: HashSet<String>,
    objects_listed: Option<Millis>,
    /// When each deleted server was deleted (its copies are kept `deleted_retention`).
    deleted_at: HashMap<i64, Millis>,
    /// The intents not yet done, by local sequence (their order).
    intents: act::Intents,
    /// Containers, volumes and VMs nobody knows, since when they were seen.
    strays: HashMap<String, Millis>,
    /// Volumes reported and kept (no other copy of their world is known).
    kept: HashSet<String>,
    /// Servers whose intents ran in the current step (their observation is older).
    touched: HashSet<(i64, i64)>,
    /// Servers placed during the current finish phase (not carried out yet: not judged).
    fresh: HashSet<ServerId>,
    /// Servers whose latest placement has not been carried out yet (stopped before it is,
    /// their world is still where it was, or there is none yet).
    unplaced: HashSet<ServerId>,
    /// Servers deleted (store ids, from the event log and since start-up): their containers
    /// and worlds go.
    deleted: HashSet<i64>,
    /// The scaling memory last recorded in the event log.
    memory: ScalingMemory,
    /// Preemptible jobs not yet over.
    jobs: jobs::OpenJobs,
    /// Moves owners were asked to accept (store id → since, saving per hour, owner).
    recommended: BTreeMap<i64, (Millis, String, i64)>,
    /// Servers being moved: since when, and the players on them then (disruption).
    migrating: HashMap<ServerId, (Millis, u32)>,
    /// When the stored forecast last handed over was made, and whether it went stale.
    forecast_made_at: Option<Millis>,
    forecast_stale: bool,
    /// Each server's billable phases (index = core server id), and where metering stands.
    usage: Vec<Usage>,
    /// Each server's plan disk (MB, index = core server id): its quota. The core counts the
    /// world's measured size instead, once measured.
    plan_disk_mb: Vec<u64>,
    metered_until: Millis,
    /// Owners warned of a low balance, and owners whose servers were stopped at zero (each
    /// told once until their balance recovers).
    warned: HashSet<i64>,
    exhausted: HashSet<i64>,
    metrics: Metrics,
    /// The published game port of each server's container, as its node lists it.
    ports: HashMap<ServerId, u16>,
    /// Open player connections per server as each gateway reported them, until when valid.
    gateway_players: HashMap<String, (Millis, HashMap<i64, u32>)>,
    /// World copies running outside the steps.
    lane: work::Lane,
}

fn spec(s: &crate::store::Server) -> ServerSpec {
    ServerSpec { ram_mib: s.ram_mib, disk_mb: s.disk_mb, pay_per_use: s.pay_per_use, cost_mode: s.cost_mode }
}

impl<S: Store> Live<S> {
    pub fn core(&self) -> &Scheduler {
        &self.core
    }

    /// Where each node's game ports are reached (store node id → address), for nodes with a
    /// Docker API.
    pub fn node_addresses(&self) -> HashMap<i64, String> {
        (0..self.docker.len())
            .filter_map(|i| {
                let d = self.docker[i].as_ref()?;
                Some((self.store_node(NodeId(i as u32))?, d.game_host().to_owned()))
            })
            .collect()
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Intents not yet done (waiting, due or being carried out).
    pub fn pending_intents(&self) -> usize {
        self.intents.len()
    }

    /// Containers and VMs found where they should not be, waiting for their grace period.
    pub fn strays(&self) -> usize {
        self.strays.len()
    }

    /// The intents not yet done: key, attempts so far, next try, whether under way.
    pub fn intents(&self) -> Vec<(String, u32, Millis, bool)> {
        self.intents.describe()
    }

    /// Nodes by health: (answering, silent, dead) among those not deleted.
    pub fn node_health(&self) -> (u32, u32, u32) {
        use conductor_core::scheduler::NodeState as N;
        let mut h = (0, 0, 0);
        for n in self.core.nodes() {
            match n.state {
                N::Ready | N::Cordoned | N::Provisioning => h.0 += 1,
                N::Unreachable { .. } => h.1 += 1,
                N::Dead => h.2 += 1,
                N::Deleted => {}
            }
        }
        h
    }

    /// Records the wall time of a whole step (the daemon measures it).
    pub fn record_tick(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let i = TICK_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(TICK_BUCKETS_MS.len());
        self.metrics.tick_buckets[i] += 1;
        self.metrics.tick_ms_sum += ms;
        self.metrics.ticks += 1;
    }

    /// Switches between observing and enforcing (recorded as an event).
    pub async fn set_mode(&mut self, mode: Mode, now: Millis) -> Result<(), LiveError> {
        let from = self.cfg.mode;
        self.cfg.mode = mode;
        self.event(now, CONTROLLER_MODE, None, None, json!({ "from": from, "to": mode })).await
    }

    /// Deletes a server that does not run: its container and world go from its node.
    pub async fn delete_server(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        match self.core.residence(id) {
            Residence::Starting { .. } | Residence::Running { .. } => {
                return Err(LiveError::Store(StoreError::Conflict("the server runs: stop it first".into())));
            }
            _ if self.core.is_queued(id) => {
                return Err(LiveError::Store(StoreError::Conflict("the server waits to start: stop it first".into())));
            }
            _ => {}
        }
        if self.cfg.mode == Mode::Enforce {
            if let Residence::Sleeping { node } = self.core.residence(id) {
                if let Some(store_node) = self.node_ids[node.0 as usize] {
                    let action = Action::Remove { server: store_id, node: store_node, volume: true };
                    self.enqueue(now, action, None).await?;
                }
            }
        }
        self.deleted.insert(store_id);
        self.deleted_at.insert(store_id, now);
        self.store.set_server_state(store_id, ServerState::Deleted, None, now).await?;
        self.event(now, SERVER_DELETED, Some(store_id), None, json!({})).await
    }

    /// A server created through the API after start-up.
    pub fn add_server(&mut self, s: &crate::store::Server) {
        if !self.by_store_id.contains_key(&s.id) {
            let id = self.core.add_server(spec(s));
            self.server_ids.push(s.id);
            self.by_store_id.insert(s.id, id);
            self.usage.push(
                Usage::new(s.owner, s.id, s.ram_mib, s.disk_mb).with_sleep_window(self.core.config().sleep_window),
            );
            self.plan_disk_mb.push(s.disk_mb);
        }
        self.template_names.insert(s.id, s.template.clone());
    }

    /// The templates this controller offers.
    pub fn templates(&self) -> &crate::template::Templates {
        &self.cfg.templates
    }

    /// A server's template (the default when it names none, or one no longer offered).
    pub fn template_of(&self, store_id: i64) -> &Arc<crate::template::Template> {
        self.cfg.templates.of(self.template_names.get(&store_id).and_then(|t| t.as_deref()))
    }

    fn id_of(&self, store_id: i64) -> Result<ServerId, LiveError> {
        self.by_store_id
            .get(&store_id)
            .copied()
            .ok_or(LiveError::Store(StoreError::NotFound { what: "server", id: store_id.to_string() }))
    }

    /// A customer (or a player connecting through the gateway) asks `server` to start. The
    /// decision is taken and its intents recorded; the drivers carry them out in the loop.
    pub async fn request_start(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        let balance = self.store.balance(self.usage[id.0 as usize].owner).await?;
        if balance <= crate::store::Money::ZERO {
            return Err(LiveError::BalanceExhausted { balance });
        }
        self.check_quota(store_id)?;
        self.event(now, SERVER_REQUESTED, Some(store_id), None, json!({})).await?;
        self.core.request_start(now, id, &mut self.out);
        self.apply(now).await
    }

    /// A customer stops `server` (or it went idle).
    pub async fn request_stop(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        let peak = self.peak_players.get(&id).copied().unwrap_or(0);
        self.event(now, SERVER_STOP_REQUESTED, Some(store_id), None, json!({ "peak_players": peak })).await?;
        self.core.wanted_end(now, id, &mut self.out);
        self.apply(now).await
    }

    /// One whole step at `now` with exclusive access (tests, and the daemon's loop when
    /// nothing else holds the engine): prepare, run the work, finish.
    pub async fn tick(&mut self, now: Millis) -> Result<(), LiveError> {
        let work = self.prepare(now).await?;
        let done = work.run().await;
        self.finish(now, done).await
    }

    /// Phase 1 of a step: timers, metering, and the work to do.
    pub async fn prepare(&mut self, now: Millis) -> Result<Work, LiveError> {
        while let Some((&(at, seq), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            let timer = self.timers.remove(&(at, seq)).expect("present");
            self.core.timer(at, timer, &mut self.out);
            self.apply(now).await?;
        }
        self.check_forecast(now).await?;
        self.remember_scaling(now).await?;
        self.meter(now).await?;
        self.schedule_backups(now).await?;
        if self.cfg.mode == Mode::Observe {
            return Ok(Work::empty(&self.cfg, &self.lane));
        }
        let mut work = self.due_work(now).await?;
        self.looks(&mut work);
        Ok(work)
    }

    /// Phase 3 of a step: what the work found and did goes into the core.
    pub async fn finish(&mut self, now: Millis, done: act::Done) -> Result<(), LiveError> {
        self.fresh.clear();
        // What this step's calls touched was looked at before them: judged next step.
        self.touched = done.outcomes.iter().flat_map(|(local, _)| self.intents.touches(*local)).collect();
        self.outcomes(now, done.outcomes).await?;
        // What the core decided on them is recorded (as intents) before anything is judged.
        self.apply(now).await?;
        self.observed(now, done.seen, done.cloud).await?;
        self.apply(now).await?;
        if let Some(Ok(listed)) = done.objects {
            self.collect_objects(now, listed).await?;
        }
        self.report_stale(now).await?;
        self.remember_scaling(now).await
    }

    async fn remember_scaling(&mut self, now: Millis) -> Result<(), LiveError> {
        let memory = self.core.scaling_memory();
        if memory != self.memory {
            let data = serde_json::to_value(&memory).expect("plain data");
            self.event(now, SCALING_MEMORY, None, None, data).await?;
            self.memory = memory;
        }
        Ok(())
    }

    /// Players on `server`: what its status ping says, or what the gateways report when more
    /// (a ping can be cached by the game; each gateway reports only its own connections, so
    /// the sum over gateways counts a player once).
    fn players(&self, server: ServerId, pinged: u32, now: Millis) -> u32 {
        let id = self.server_ids[server.0 as usize];
        let via: u32 = self
            .gateway_players
            .values()
            .filter(|(until, _)| *until >= now)
            .filter_map(|(_, counts)| counts.get(&id))
            .sum();
        pinged.max(via)
    }

    /// A gateway's report of its open player connections, valid for `ttl`.
    pub fn gateway_report(&mut self, gateway: &str, counts: HashMap<i64, u32>, ttl: Millis, now: Millis) {
        self.gateway_players.insert(gateway.to_owned(), (now + ttl, counts));
        self.gateway_players.retain(|_, (until, _)| *until >= now);
    }

    /// Where players reach `store_id` and what they are told while it does not run.
    pub fn route(&self, store_id: i64, owner: i64, now: Millis) -> Option<RouteState> {
        let id = *self.by_store_id.get(&store_id)?;
        let boot = self.cfg.game.boot;
        let restore = {
            let mb = self.core.spec(id).disk_mb;
            (mb * 1000).div_ceil(u64::from(self.cfg.game.restore_mb_per_s.max(1))) as Millis
        };
        let secs = |ms: Millis| Some((ms.max(5_000) as u64).div_ceil(1000) as u32);
        let queued = self.core.is_queued(id);
        let (state, backend, eta) = match self.core.residence(id) {
            Residence::Running { node } => {
                let host = self.docker.get(node.0 as usize).cloned().flatten();
                let backend = host.zip(self.ports.get(&id)).map(|(d, p)| format!("{}:{p}", d.game_host()));
                ("running", backend, None)
            }
            Residence::Starting { .. } => {
                // Until its world is on the node the wait is the copy's too (`placed_at` is
                // the placement until then, the container's start after).
                let since = self.placed_at.get(&id).copied().unwrap_or(now);
                let copy = if self.intents.copying(store_id) { restore } else { 0 };
                ("starting", None, secs(copy + boot - (now - since)))
            }
            Residence::Sleeping { .. } if queued => ("starting", None, secs(boot)),
            Residence::Sleeping { .. } => ("sleeping", None, secs(boot)),
            Residence::Archived if queued => ("starting", None, secs(restore + boot)),
            Residence::Archived => ("archived", None, secs(restore + boot)),
            Residence::New if queued => ("starting", None, secs(boot)),
            Residence::New => ("new", None, secs(boot)),
        };
        let blocked = self.exhausted.contains(&owner).then_some("balance");
        Some(RouteState { state, backend, eta_s: eta, blocked })
    }

    /// Players online on `store_id` as counted (what the step's pings do; for tests that
    /// drive the engine without nodes).
    pub fn players_counted(&mut self, store_id: i64, online: u32) {
        if let Some(&id) = self.by_store_id.get(&store_id) {
            self.see_players(id, online);
        }
    }

    fn see_players(&mut self, server: ServerId, online: u32) {
        self.core.set_players(server, online);
        let peak = self.peak_players.entry(server).or_insert(0);
        *peak = (*peak).max(online);
    }

    /// The node `server` starts, runs or sleeps on.
    fn node_of(&self, server: ServerId) -> Option<NodeId> {
        match self.core.residence(server) {
            Residence::Starting { node } | Residence::Running { node } | Residence::Sleeping { node } => Some(node),
            _ => None,
        }
    }

    fn sid(&self, server: ServerId) -> i64 {
        self.server_ids[server.0 as usize]
    }

    fn sid_opt(&self, server: ServerId) -> Option<i64> {
        self.server_ids.get(server.0 as usize).copied()
    }

    /// The store id of a core node (-1 for one the store does not hold).
    fn nid(&self, node: NodeId) -> i64 {
        self.store_node(node).unwrap_or(-1)
    }

    fn store_node(&self, node: NodeId) -> Option<i64> {
        self.node_ids.get(node.0 as usize).copied().flatten()
    }

    fn core_node(&self, store_node: i64) -> Option<NodeId> {
        self.node_ids.iter().position(|n| *n == Some(store_node)).map(|i| NodeId(i as u32))
    }

    async fn event(
        &mut self,
        at: Millis,
        kind: &str,
        server: Option<i64>,
        node: Option<i64>,
        data: serde_json::Value,
    ) -> Result<(), LiveError> {
        self.event_seq(at, kind, server, node, data).await.map(|_| ())
    }

    /// [`Self::event`], giving the event's sequence number.
    async fn event_seq(
        &mut self,
        at: Millis,
        kind: &str,
        server: Option<i64>,
        node: Option<i64>,
        data: serde_json::Value,
    ) -> Result<i64, LiveError> {
        let measured = (kind == WORLD_MEASURED).then(|| data["world_mb"].as_u64()).flatten();
        let plan = (kind == SERVER_PLAN_CHANGED).then(|| data["ram_mib"].as_u64()).flatten();
        let seq = self.store.append_event(NewEvent { at, kind: kind.into(), server, node, data }).await?;
        // Billing follows what is recorded, so a restart that replays the log agrees.
        if let Some(id) = server.and_then(|s| self.by_store_id.get(&s).copied()) {
            match (measured, plan) {
                (Some(mb), _) => self.usage[id.0 as usize].measured(at, mb),
                (_, Some(ram)) => self.usage[id.0 as usize].set_plan(ram as u32),
                _ => self.usage[id.0 as usize].on(kind, at),
            }
        }
        Ok(seq)
    }

    /// Records the notes and turns the commands of the last core step(s) into intents.
    async fn apply(&mut self, now: Millis) -> Result<(), LiveError> {
        loop {
            let mut out = std::mem::take(&mut self.out);
            if out.commands.is_empty() && out.notes.is_empty() {
                return Ok(());
            }
            for note in out.notes.drain(..) {
                self.note(now, note).await?;
            }
            for command in out.commands.drain(..) {
                self.command(now, command).await?;
            }
        }
    }

    /// The store state that matches the core's residence of `server`.
    async fn record_state(&mut self, server: ServerId, now: Millis) -> Result<(), LiveError> {
        let id = self.server_ids[server.0 as usize];
        let (state, node) = match self.core.residence(server) {
            _ if self.core.is_queued(server) => {
                let node = match self.core.residence(server) {
                    Residence::Sleeping { node } => self.store_node(node),
                    _ => None,
                };
                (ServerState::Queued, node)
            }
            Residence::New => (ServerState::New, None),
            Residence::Starting { node } => (ServerState::Starting, self.store_node(node)),
            Residence::Running { node } => (ServerState::Running, self.store_node(node)),
            Residence::Sleeping { node } => (ServerState::Sleeping, self.store_node(node)),
            Residence::Archived => (ServerState::Archived, None),
        };
        self.store.set_server_state(id, state, node, now).await?;
        Ok(())
    }

    async fn note(&mut self, now: Millis, note: Note) -> Result<(), LiveError> {
        match note {
            Note::Queued { server } => {
                if let Some(id) = self.sid_opt(server) {
                    self.record_state(server, now).await?;
                    self.event(now, SERVER_QUEUED, Some(id), None, json!({})).await?;
                }
            }
            Note::Running { server, requested_at } => {
                if let (Some(id), Residence::Running { node }) = (self.sid_opt(server), self.core.residence(server)) {
                    let store_node = self.store_node(node);
                    self.record_state(server, now).await?;
                    self.event(now, SERVER_STARTED, Some(id), store_node, json!({ "wait_ms": now - requested_at }))
                        .await?;
                }
            }
            Note::Announced { server, moves_at } => self.announced(now, server, moves_at).await?,
            Note::Recommended { server, saving_per_hour } => {
                self.recommended_move(now, server, saving_per_hour).await?
            }
            Note::Migrated { server, from, to } => {
                let players = self.core.players(server);
                self.migrating.insert(server, (now, players));
                if let Some(id) = self.sid_opt(server) {
                    self.recommended.remove(&id);
                    let data = json!({ "from": self.store_node(from), "to": self.store_node(to), "players": players });
                    self.event(now, SERVER_MIGRATING, Some(id), self.store_node(to), data).await?;
                }
            }
            Note::Resumed { server } => {
                if let Some(id) = self.sid_opt(server) {
                    self.record_state(server, now).await?;
                    // The players who were on it waited the whole move (the twin's measure).
                    let data = match self.migrating.remove(&server) {
                        Some((since, players)) => {
                            self.metrics.migrations += 1;
                            self.metrics.disrupted_player_ms += u64::from(players) * (now - since) as u64;
                            json!({
                                "reason": "migrated",
                                "downtime_ms": now - since,
                                "disrupted_player_ms": u64::from(players) * (now - since) as u64,
                            })
                        }
                        None => json!({ "reason": "restarted" }),
                    };
                    self.event(now, SERVER_RESUMED, Some(id), None, data).await?;
                }
            }
            Note::Abandoned { server, reason, .. } => {
                if let Some(id) = self.sid_opt(server) {
                    if self.core.residence(server) == Residence::Archived && !self.archives.contains_key(&server) {
                        // A world never archived (its placement failed before its first run).
                        self.store.set_server_state(id, ServerState::New, None, now).await?;
                    } else {
                        self.record_state(server, now).await?;
                    }
                    self.event(now, SERVER_ABANDONED, Some(id), None, json!({ "reason": format!("{reason:?}") }))
                        .await?;
                }
            }
            Note::Scaled { action, policy, reason, .. } => {
                let (name, node) = match action {
                    ScaleAction::Create { node } => ("create", node),
                    ScaleAction::Delete { node } => ("delete", node),
                    ScaleAction::Cordon { node } => ("cordon", node),
                    ScaleAction::Uncordon { node } => ("uncordon", node),
                };
                let data = json!({ "action": name, "policy": policy, "reason": reason, "core_node": node.0 });
                let store_node = self.store_node(node);
                // A VM being emptied stays so across a restart (adopted from its row).
                if let (Some(n), "cordon" | "uncordon") = (store_node, name) {
                    let is_vm = self.core.node(node).kind == conductor_core::NodeKind::Cloud;
                    if is_vm {
                        let state = if name == "cordon" {
                            crate::store::NodeState::Cordoned
                        } else {
                            crate::store::NodeState::Ready
                        };
                        self.store.set_node_state(n, state, None, now).await?;
                    }
                }
                self.event(now, SCALING_DECISION, None, store_node, data).await?;
            }
            Note::Shadow { policy, add, reason } => {
                let data = json!({ "policy": policy, "would_add": add, "reason": reason });
                self.event(now, SCALING_SHADOW, None, None, data).await?;
            }
            Note::VmFailed { node } => self.vm_failed_note(now, node).await?,
            Note::StartFailed { server, node } => {
                self.metrics.start_failures += 1;
                self.placed_at.remove(&server);
                let store_node = self.store_node(node);
                self.record_state(server, now).await?;
                let migration = self.migrating.remove(&server).is_some();
                if migration {
                    self.metrics.migration_failures += 1;
                }
                let data = json!({ "migration": migration });
                self.event(now, SERVER_START_FAILED, self.sid_opt(server), store_node, data).await?;
            }
            Note::Crashed { server, node, crashes, restarted } => {
                if !restarted {
                    self.metrics.crash_loops += 1;
                    let id = self.sid_opt(server);
                    let store_node = self.store_node(node);
                    self.record_state(server, now).await?;
                    let data = json!({ "crashes": crashes, "window_ms": self.core.config().crash_window });
                    self.event(now, SERVER_CRASH_LOOP, id, store_node, data).await?;
                    let text = format!(
                        "Server {}: crashed {crashes} times within {} min; stopped, not restarted.",
                        id.unwrap_or(0),
                        self.core.config().crash_window / 60_000
                    );
                    // The owner hears of it too (the account's webhook), the operators apart.
                    self.notify(now, text.clone()).await?;
                    self.alert(now, text).await?;
                }
            }
            Note::NodeDead { node } => {
                self.metrics.nodes_dead += 1;
                if let Some(h) = self.health.get_mut(node.0 as usize) {
                    h.dead = true;
                    self.dead_since = h.silent_since;
                }
                self.dying = self.store_node(node);
                if let Some(store_node) = self.store_node(node) {
                    let state = if self.core.node(node).kind == conductor_core::NodeKind::Cloud {
                        crate::store::NodeState::Deleted
                    } else {
                        crate::store::NodeState::Dead
                    };
                    self.store.set_node_state(store_node, state, None, now).await?;
                    self.event(now, NODE_DEAD, None, Some(store_node), json!({})).await?;
                    let name = self.node_name(node);
                    self.alert(now, format!("Node {name} is dead: its servers restart elsewhere.")).await?;
                }
            }
            Note::Failed { server, was_active } => {
                if let Some(id) = self.sid_opt(server) {
                    let archived = self.archives.get(&server).map(|r| r.key.clone());
                    self.record_state(server, now).await?;
                    let data = json!({ "was_active": was_active, "archive": archived });
                    self.event(now, SERVER_FAILED, Some(id), None, data).await?;
                    self.recover(now, server, was_active).await?;
                    if let (true, Some(dead)) = (was_active, self.dying) {
                        // Its container there goes as soon as the node answers again (not
                        // only once a listing shows it): two copies must not run for long.
                        let volume = self.archives.contains_key(&server);
                        self.enqueue(now, Action::Remove { server: id, node: dead, volume }, None).await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn node_name(&self, node: NodeId) -> String {
        match self.vm_names.get(&node).or_else(|| self.joined.get(&node)) {
            Some(n) => n.clone(),
            None => self.cfg.dedicated.get(node.0 as usize).map_or_else(|| format!("#{}", node.0), |d| d.name.clone()),
        }
    }
}
