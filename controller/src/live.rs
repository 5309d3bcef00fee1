//! The live engine: the decision core (`conductor_core::Scheduler`, exactly as the twin
//! runs it) fed with what really happens, its commands carried out by the drivers.
//!
//! - Start-up rebuilds the scheduler from the store (adoption) and compares it with what
//!   exists: containers by label on every node, VMs by label in the cloud. Pending intents
//!   (external actions that may or may not have happened before a crash) are completed
//!   idempotently: VM names and container names are deterministic.
//! - Every tick (level-triggered): due timers fire, starting servers are probed (status
//!   ping → `boot_complete`), running ones report players (`set_players`; pay-per-use
//!   servers idle for `idle_timeout` → `wanted_end`), provisioning VMs are polled
//!   (`node_ready`).
//! - `observe` records every decision as an event and carries out nothing; `enforce`
//!   writes an intent, calls the driver, and records the outcome.

use crate::archive::{self, ArchiveRef, ArchiveStore};
use crate::billing::{burn_per_hour, post_charges, BillingSetup, Usage};
use crate::cloud::{HetznerCloud, NewVm, LABEL_MANAGED};
use crate::docker::{ContainerSpec, DockerNode, Helper};
use crate::store::{NewEvent, NewNode, NodeState, ServerState, Store, StoreError};
use conductor_core::scheduler::{Outbox, ScaleAction};
use conductor_core::{
    Command, DedicatedType, Millis, NodeId, NodeKind, Note, PlacementId, Restore, ScalingMemory, Scheduler, ServerId,
    Timer,
};
use conductor_core::{SchedulerConfig, ServerSpec};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
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
}

/// A dedicated node: its type (capacity) and how to reach its Docker API.
pub struct DedicatedNode {
    pub name: String,
    pub kind: DedicatedType,
    pub docker: Arc<DockerNode>,
}

/// The Docker API of a VM, by its name.
pub type DockerForVm = Box<dyn Fn(&str) -> Arc<DockerNode> + Send + Sync>;

/// How VMs are made and reached.
pub struct CloudSetup {
    pub client: Arc<HetznerCloud>,
    /// The value of the `conductor-managed` label: this controller's VMs.
    pub cluster: String,
    pub image: String,
    pub location: Option<String>,
    pub user_data: Option<String>,
    /// The Docker API of a new VM (tests and local runs: one engine for all).
    pub docker_for_vm: DockerForVm,
}

pub struct LiveConfig {
    pub scheduler: SchedulerConfig,
    pub dedicated: Vec<DedicatedNode>,
    pub cloud: Option<CloudSetup>,
    pub idle_timeout: Millis,
    pub stop_timeout: Duration,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub helper: Helper,
    pub archive: Arc<dyn ArchiveStore>,
    pub mode: Mode,
    pub billing: BillingSetup,
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
    docker: Vec<Option<Arc<DockerNode>>>,
    vm_ids: HashMap<NodeId, i64>,
    /// Each VM's (deterministic) name, for polling the cloud.
    vm_names: HashMap<NodeId, String>,
    timers: BTreeMap<(Millis, u64), Timer>,
    timer_seq: u64,
    /// Servers placed and not yet answering: their placement.
    starting: HashMap<ServerId, PlacementId>,
    idle_since: HashMap<ServerId, Millis>,
    /// Most players seen since each running server started (the session's `players` when
    /// the event log is exported as a dataset).
    peak_players: HashMap<ServerId, u32>,
    /// Latest archive of each server.
    archives: HashMap<ServerId, ArchiveRef>,
    /// The scaling memory last recorded in the event log.
    memory: ScalingMemory,
    /// Each server's billable phases (index = core server id), and where metering stands.
    usage: Vec<Usage>,
    metered_until: Millis,
    /// Owners warned of a low balance, and owners whose servers were stopped at zero (each
    /// told once until their balance recovers).
    warned: std::collections::HashSet<i64>,
    exhausted: std::collections::HashSet<i64>,
}

fn spec(s: &crate::store::Server) -> ServerSpec {
    ServerSpec { ram_mib: s.ram_mib, disk_mb: s.disk_mb, pay_per_use: s.pay_per_use, cost_mode: s.cost_mode }
}

impl<S: Store> Live<S> {
    /// Rebuilds the scheduler from the store and reconciles it with what exists.
    pub async fn start(store: Arc<S>, cfg: LiveConfig, now: Millis) -> Result<Live<S>, LiveError> {
        let types: Vec<DedicatedType> = cfg.dedicated.iter().map(|d| d.kind.clone()).collect();
        let core = Scheduler::new(cfg.scheduler.clone(), &types, Vec::new());
        let mut live = Live {
            store,
            core,
            out: Outbox::default(),
            server_ids: Vec::new(),
            by_store_id: HashMap::new(),
            node_ids: Vec::new(),
            docker: Vec::new(),
            vm_ids: HashMap::new(),
            vm_names: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            starting: HashMap::new(),
            idle_since: HashMap::new(),
            peak_players: HashMap::new(),
            archives: HashMap::new(),
            memory: ScalingMemory::default(),
            usage: Vec::new(),
            metered_until: Millis::MIN,
            warned: Default::default(),
            exhausted: Default::default(),
            cfg,
        };
        // Dedicated nodes: core nodes 0..k, in config order.
        for d in &live.cfg.dedicated {
            let n = live
                .store
                .upsert_node(
                    NewNode {
                        name: d.name.clone(),
                        kind: NodeKind::Dedicated,
                        type_name: d.kind.name.clone(),
                        provider_id: None,
                        state: NodeState::Ready,
                        ram_mib: d.kind.ram_mib,
                        usable_mib: d.kind.usable_mib(),
                    },
                    now,
                )
                .await?;
            live.node_ids.push(Some(n.id));
            live.docker.push(Some(d.docker.clone()));
        }
        // Cloud VMs the store knows, reconciled with the cloud's list.
        let mut existing = HashMap::new();
        if let (Some(c), Mode::Enforce) = (&live.cfg.cloud, live.cfg.mode) {
            for vm in c
                .client
                .list(&format!("{LABEL_MANAGED}={}", c.cluster))
                .await
                .map_err(|e| LiveError::Driver(e.to_string()))?
            {
                existing.insert(vm.name.clone(), vm);
            }
        }
        let mut store_node_to_core = HashMap::new();
        for (i, id) in live.node_ids.iter().enumerate() {
            store_node_to_core.insert(id.expect("dedicated nodes are stored"), NodeId(i as u32));
        }
        for n in live.store.nodes().await? {
            if n.kind != NodeKind::Cloud || matches!(n.state, NodeState::Deleted | NodeState::Dead) {
                continue;
            }
            let found = existing.remove(&n.name);
            if live.cfg.mode == Mode::Enforce && found.is_none() && n.state != NodeState::Provisioning {
                // Gone from the cloud (deleted by hand, or a delete whose record was lost).
                live.store.set_node_state(n.id, NodeState::Deleted, None, now).await?;
                live.event(
                    now,
                    "node.deleted",
                    None,
                    Some(n.id),
                    json!({ "reason": "not found in the cloud at start-up" }),
                )
                .await?;
                continue;
            }
            let ready = n.state == NodeState::Ready || found.as_ref().is_some_and(|v| v.running);
            let Some(core_node) = live.core.adopt_vm(ready, n.created_at) else { continue };
            store_node_to_core.insert(n.id, core_node);
            live.push_node(core_node, n.id, &n.name);
            if let Some(vm) = found {
                live.vm_ids.insert(core_node, vm.id);
            }
        }
        // VMs carrying our label that the store does not know: a create whose record was
        // lost. Nothing runs on them yet: delete.
        if let (Some(client), Mode::Enforce) = (live.cfg.cloud.as_ref().map(|c| c.client.clone()), live.cfg.mode) {
            for (name, vm) in existing {
                client.delete(vm.id).await.map_err(|e| LiveError::Driver(e.to_string()))?;
                live.event(now, "node.cleaned-up", None, None, json!({ "vm": name, "reason": "unknown to the store" }))
                    .await?;
            }
        }
        // From the event log: where archived worlds are (the latest `server.archived` event
        // of each server) and what the scaling decisions remembered (the latest
        // `scaling.memory`), so that a restart decides as the running controller would have.
        let mut archived: HashMap<i64, ArchiveRef> = HashMap::new();
        let mut memory = None;
        // Billable phases (replayed into each server's usage below) and the last metering
        // checkpoint (windows after it are metered again: posting is idempotent).
        let mut billable: Vec<(i64, String, Millis)> = Vec::new();
        let mut checkpoint = None;
        let mut after = 0;
        loop {
            let page = live.store.events(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                match (e.kind.as_str(), e.server) {
                    ("server.archived", Some(store_id)) => {
                        if let (Some(key), Some(sha)) = (e.data["archive"].as_str(), e.data["sha256"].as_str()) {
                            let bytes = e.data["bytes"].as_u64().unwrap_or(0);
                            archived.insert(store_id, ArchiveRef { key: key.into(), sha256: sha.into(), bytes });
                        }
                    }
                    ("scaling.memory", _) => memory = serde_json::from_value::<ScalingMemory>(e.data.clone()).ok(),
                    ("billing.metered", _) => checkpoint = e.data["until"].as_i64(),
                    (kind, Some(store_id)) if Usage::follows(kind) => billable.push((store_id, kind.into(), e.at)),
                    _ => {}
                }
            }
        }
        if let Some(m) = memory {
            live.core.adopt_scaling_memory(&m);
            live.memory = m;
        }
        // Servers.
        let mut requeue = Vec::new();
        for s in live.store.servers(None).await? {
            let id = live.core.add_server(spec(&s));
            live.server_ids.push(s.id);
            live.by_store_id.insert(s.id, id);
            live.usage.push(Usage::new(s.owner, s.id, s.ram_mib, s.disk_mb));
            let node = s.node.and_then(|n| store_node_to_core.get(&n).copied());
            if let Some(r) = archived.remove(&s.id) {
                live.archives.insert(id, r);
            }
            match (s.state, node) {
                (ServerState::Running | ServerState::Starting, Some(node)) => {
                    let placement = live.core.adopt_running(id, node, s.state == ServerState::Running);
                    if s.state == ServerState::Starting {
                        live.starting.insert(id, placement);
                    }
                }
                (ServerState::Sleeping, Some(node)) => {
                    let mut out = Outbox::default();
                    live.core.adopt_stopped(id, Some(node), s.updated_at, &mut out);
                    live.out.commands.extend(out.commands);
                }
                (ServerState::Archived, _) | (ServerState::Sleeping, None) => {
                    live.core.adopt_stopped(id, None, s.updated_at, &mut Outbox::default());
                }
                (ServerState::Queued, node) => {
                    // Waiting to start: its world sleeps on `node`, lies in the archive, or
                    // it never ran. Requeued in the order the requests came.
                    if node.is_some() || live.archives.contains_key(&id) {
                        let mut out = Outbox::default();
                        live.core.adopt_stopped(id, node, s.updated_at, &mut out);
                        live.out.commands.extend(out.commands);
                    }
                    requeue.push((s.updated_at, id));
                }
                _ => {}
            }
        }
        // Containers that exist but should not (their server is gone): removed.
        if live.cfg.mode == Mode::Enforce {
            let mut seen: Vec<Arc<DockerNode>> = Vec::new();
            let nodes: Vec<Arc<DockerNode>> = live.docker.iter().flatten().cloned().collect();
            for d in &nodes {
                if seen.iter().any(|x| Arc::ptr_eq(x, d)) {
                    continue;
                }
                seen.push(d.clone());
                for c in d.list_managed().await.map_err(|e| LiveError::Driver(e.to_string()))? {
                    if !live.by_store_id.contains_key(&c.server) {
                        d.remove(c.server, false).await.map_err(|e| LiveError::Driver(e.to_string()))?;
                        live.event(now, "container.cleaned-up", Some(c.server), None, json!({ "name": c.name }))
                            .await?;
                    }
                }
            }
        }
        live.core.start(now, &mut live.out);
        let first = billable.first().map(|b| b.2);
        for (store_id, kind, at) in billable {
            if let Some(&id) = live.by_store_id.get(&store_id) {
                live.usage[id.0 as usize].on(&kind, at);
            }
        }
        let window = live.cfg.billing.window;
        let floor = |t: Millis| t - t.rem_euclid(window);
        live.metered_until = checkpoint.or(first.map(floor)).unwrap_or_else(|| floor(now));
        // What was metered before the checkpoint only counts as totals: keep no spans of it.
        let metered = live.metered_until;
        live.usage.iter_mut().for_each(|u| u.fold(metered));
        requeue.sort_unstable();
        for (_, id) in requeue {
            live.core.request_start(now, id, &mut live.out);
        }
        live.apply(now).await?;
        // Pending intents: finish what a crash interrupted (the calls are idempotent).
        for i in live.store.pending_intents().await? {
            live.event(now, "intent.resumed", None, None, json!({ "key": i.key, "action": i.action })).await?;
            live.store.finish_intent(i.id, false, json!({ "superseded": "restart; state re-derived" }), now).await?;
        }
        Ok(live)
    }

    fn push_node(&mut self, core: NodeId, store_id: i64, name: &str) {
        let i = core.0 as usize;
        if self.node_ids.len() <= i {
            self.node_ids.resize(i + 1, None);
            self.docker.resize(i + 1, None);
        }
        self.node_ids[i] = Some(store_id);
        self.vm_names.insert(core, name.to_owned());
        if let Some(c) = &self.cfg.cloud {
            self.docker[i] = Some((c.docker_for_vm)(name));
        }
    }

    pub fn core(&self) -> &Scheduler {
        &self.core
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// Switches between observing and enforcing (recorded as an event).
    pub async fn set_mode(&mut self, mode: Mode, now: Millis) -> Result<(), LiveError> {
        let from = self.cfg.mode;
        self.cfg.mode = mode;
        self.event(now, "controller.mode", None, None, json!({ "from": from, "to": mode })).await
    }

    /// Deletes a server that does not run: its container and world go from its node.
    pub async fn delete_server(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        match self.core.residence(id) {
            conductor_core::Residence::Starting { .. } | conductor_core::Residence::Running { .. } => {
                return Err(LiveError::Store(StoreError::Conflict("the server runs: stop it first".into())));
            }
            _ if self.core.is_queued(id) => {
                return Err(LiveError::Store(StoreError::Conflict("the server waits to start: stop it first".into())));
            }
            _ => {}
        }
        if self.cfg.mode == Mode::Enforce {
            if let Some(d) = self.docker_of(id) {
                d.remove(store_id, true).await.map_err(|e| LiveError::Driver(e.to_string()))?;
            }
        }
        self.store.set_server_state(store_id, ServerState::Deleted, None, now).await?;
        self.event(now, "server.deleted", Some(store_id), None, json!({})).await
    }

    /// A server created through the API after start-up.
    pub fn add_server(&mut self, s: &crate::store::Server) {
        if !self.by_store_id.contains_key(&s.id) {
            let id = self.core.add_server(spec(s));
            self.server_ids.push(s.id);
            self.by_store_id.insert(s.id, id);
            self.usage.push(Usage::new(s.owner, s.id, s.ram_mib, s.disk_mb));
        }
    }

    fn id_of(&self, store_id: i64) -> Result<ServerId, LiveError> {
        self.by_store_id
            .get(&store_id)
            .copied()
            .ok_or(LiveError::Store(StoreError::NotFound { what: "server", id: store_id.to_string() }))
    }

    /// A customer (or a player connecting through the gateway) asks `server` to start.
    pub async fn request_start(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        let balance = self.store.balance(self.usage[id.0 as usize].owner).await?;
        if balance <= crate::store::Money::ZERO {
            return Err(LiveError::BalanceExhausted { balance });
        }
        self.event(now, "server.requested", Some(store_id), None, json!({})).await?;
        self.core.request_start(now, id, &mut self.out);
        self.apply(now).await
    }

    /// A customer stops `server` (or it went idle).
    pub async fn request_stop(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        let peak = self.peak_players.get(&id).copied().unwrap_or(0);
        self.event(now, "server.stop-requested", Some(store_id), None, json!({ "peak_players": peak })).await?;
        self.core.wanted_end(now, id, &mut self.out);
        self.apply(now).await
    }

    /// One reconcile step at `now`.
    pub async fn tick(&mut self, now: Millis) -> Result<(), LiveError> {
        while let Some((&(at, seq), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            let timer = self.timers.remove(&(at, seq)).expect("present");
            self.core.timer(at, timer, &mut self.out);
            self.apply(now).await?;
        }
        let memory = self.core.scaling_memory();
        if memory != self.memory {
            let data = serde_json::to_value(&memory).expect("plain data");
            self.event(now, "scaling.memory", None, None, data).await?;
            self.memory = memory;
        }
        self.meter(now).await?;
        if self.cfg.mode == Mode::Observe {
            return Ok(());
        }
        // Provisioning VMs: ready when the cloud says running.
        let provisioning: Vec<NodeId> = (0..self.core.nodes().len() as u32)
            .map(NodeId)
            .filter(|n| self.core.node(*n).state == conductor_core::scheduler::NodeState::Provisioning)
            .collect();
        for node in provisioning {
            let (Some(c), Some(&vm)) = (&self.cfg.cloud, self.vm_ids.get(&node)) else { continue };
            let name = self.vm_names.get(&node).cloned().unwrap_or_default();
            let running = c
                .client
                .by_name(&name)
                .await
                .map_err(|e| LiveError::Driver(e.to_string()))?
                .is_some_and(|v| v.running && v.id == vm);
            if running {
                if let Some(store_id) = self.node_ids[node.0 as usize] {
                    self.store.set_node_state(store_id, NodeState::Ready, None, now).await?;
                    self.event(now, "node.ready", None, Some(store_id), json!({})).await?;
                }
                self.core.node_ready(now, node, &mut self.out);
                self.apply(now).await?;
            }
        }
        // Starting servers: running once they answer a status ping.
        let starting: Vec<(ServerId, PlacementId)> = self.starting.iter().map(|(s, p)| (*s, *p)).collect();
        for (server, placement) in starting {
            let Some(d) = self.docker_of(server) else { continue };
            if let Ok(status) = d.probe(self.server_ids[server.0 as usize]).await {
                self.starting.remove(&server);
                self.core.boot_complete(now, server, placement, &mut self.out);
                self.see_players(server, status.online);
                self.apply(now).await?;
            }
        }
        // Running servers: players, and idle pay-per-use servers stop.
        for i in 0..self.server_ids.len() {
            let server = ServerId(i as u32);
            if !matches!(self.core.residence(server), conductor_core::Residence::Running { .. }) {
                self.idle_since.remove(&server);
                continue;
            }
            let Some(d) = self.docker_of(server) else { continue };
            let Ok(status) = d.probe(self.server_ids[i]).await else { continue };
            self.see_players(server, status.online);
            if status.online > 0 || !self.core.spec(server).pay_per_use {
                self.idle_since.remove(&server);
                continue;
            }
            let since = *self.idle_since.entry(server).or_insert(now);
            if now - since >= self.cfg.idle_timeout {
                self.idle_since.remove(&server);
                let peak = self.peak_players.get(&server).copied().unwrap_or(0);
                self.event(
                    now,
                    "server.idle",
                    Some(self.server_ids[i]),
                    None,
                    json!({ "idle_ms": now - since, "peak_players": peak }),
                )
                .await?;
                self.core.wanted_end(now, server, &mut self.out);
                self.apply(now).await?;
            }
        }
        Ok(())
    }

    fn see_players(&mut self, server: ServerId, online: u32) {
        self.core.set_players(server, online);
        let peak = self.peak_players.entry(server).or_insert(0);
        *peak = (*peak).max(online);
    }

    fn docker_of(&self, server: ServerId) -> Option<Arc<DockerNode>> {
        let node = match self.core.residence(server) {
            conductor_core::Residence::Starting { node }
            | conductor_core::Residence::Running { node }
            | conductor_core::Residence::Sleeping { node } => node,
            _ => return None,
        };
        self.docker.get(node.0 as usize).cloned().flatten()
    }

    async fn event(
        &mut self,
        at: Millis,
        kind: &str,
        server: Option<i64>,
        node: Option<i64>,
        data: serde_json::Value,
    ) -> Result<(), LiveError> {
        self.store.append_event(NewEvent { at, kind: kind.into(), server, node, data }).await?;
        // Billing follows what is recorded, so a restart that replays the log agrees.
        if let Some(id) = server.and_then(|s| self.by_store_id.get(&s).copied()) {
            self.usage[id.0 as usize].on(kind, at);
        }
        Ok(())
    }

    /// What a server costs while it runs or sleeps: since when, and the cost of that phase so
    /// far (what the customer sees as the current session).
    pub fn current_phase(
        &self,
        store_id: i64,
        now: Millis,
    ) -> Option<(crate::billing::Phase, Millis, crate::store::Money)> {
        let u = &self.usage[self.by_store_id.get(&store_id)?.0 as usize];
        let (phase, since) = u.phase()?;
        let (price, unit) = phase.price(&self.cfg.billing.prices);
        Some((phase, since, conductor_core::billing::rate(u.quantity(phase, since, now), price, unit)))
    }

    /// Meters every window that ended by `now` into the ledger, then settles the owners
    /// that pay: warned when the balance runs low, servers stopped (gracefully) at zero.
    async fn meter(&mut self, now: Millis) -> Result<(), LiveError> {
        let window = self.cfg.billing.window;
        let to = now - now.rem_euclid(window);
        if to <= self.metered_until {
            return Ok(());
        }
        let prices = self.cfg.billing.prices.clone();
        let mut balances: HashMap<i64, crate::store::Money> = HashMap::new();
        for u in &mut self.usage {
            let windows = u.windows(self.metered_until, to, window);
            for p in post_charges(&*self.store, &windows, &prices, now).await? {
                balances.insert(p.entry.owner, p.balance);
            }
            u.fold(to);
        }
        let from = std::mem::replace(&mut self.metered_until, to);
        if from.div_euclid(conductor_core::time::HOUR) != to.div_euclid(conductor_core::time::HOUR) {
            // A checkpoint an hour: a restart meters again from here (idempotently).
            self.event(now, "billing.metered", None, None, json!({ "until": to })).await?;
            self.expire_promotions(from, to).await?;
        }
        // Owners who pay now: what their servers cost per hour, and which of them run, start
        // or wait (what a stop at zero stops) — one pass over the servers.
        let mut owners: BTreeMap<i64, (crate::store::Money, Vec<i64>)> = BTreeMap::new();
        for (i, u) in self.usage.iter().enumerate() {
            let b = burn_per_hour(u, &prices);
            let s = ServerId(i as u32);
            let active = self.core.is_queued(s)
                || matches!(
                    self.core.residence(s),
                    conductor_core::Residence::Running { .. } | conductor_core::Residence::Starting { .. }
                );
            if b > crate::store::Money::ZERO || active {
                let o = owners.entry(u.owner).or_default();
                o.0 += b;
                if active {
                    o.1.push(self.server_ids[i]);
                }
            }
        }
        for owner in balances.keys() {
            owners.entry(*owner).or_default();
        }
        owners.retain(|owner, (burn, _)| *burn > crate::store::Money::ZERO || balances.contains_key(owner));
        for (owner, (burn, running)) in owners {
            let balance = match balances.get(&owner) {
                Some(b) => *b,
                None => self.store.balance(owner).await?,
            };
            self.settle(owner, balance, burn, running, now).await?;
        }
        Ok(())
    }

    /// The unused sign-up credit of owners whose promotion expired in `(from, to]` goes (an
    /// adjustment, once per owner by its key).
    async fn expire_promotions(&mut self, from: Millis, to: Millis) -> Result<(), LiveError> {
        let Some(expiry) = self.cfg.billing.promo_expiry else { return Ok(()) };
        for o in self.store.owners().await? {
            let at = o.created_at + expiry;
            if at <= from || at > to {
                continue;
            }
            let entries = self.store.ledger(o.id, 0, u32::MAX).await?;
            let unused = crate::billing::unused_promotion(&entries, o.id, at);
            if unused > crate::store::Money::ZERO {
                let entry = crate::store::NewEntry {
                    owner: o.id,
                    kind: crate::store::EntryKind::Adjustment,
                    amount: -unused,
                    key: format!("expire:{}", crate::billing::signup_key(o.id)),
                    at,
                    server: None,
                    window_start: None,
                    data: json!({ "reason": "unused sign-up credit expired" }),
                };
                self.store.post(entry).await?;
            }
        }
        Ok(())
    }

    async fn settle(
        &mut self,
        owner: i64,
        balance: crate::store::Money,
        burn: crate::store::Money,
        running: Vec<i64>,
        now: Millis,
    ) -> Result<(), LiveError> {
        use conductor_core::billing::{account_action, AccountAction};
        let data = json!({ "owner": owner, "balance": balance.to_string(), "burn_per_hour": burn.to_string() });
        match account_action(balance, burn, self.cfg.billing.warn_before) {
            AccountAction::Fine => {
                self.warned.remove(&owner);
                self.exhausted.remove(&owner);
            }
            AccountAction::Warn { covers } => {
                self.exhausted.remove(&owner);
                if self.warned.insert(owner) {
                    let mut data = data;
                    data["covers_ms"] = json!(covers);
                    let lasts = match covers / 1000 {
                        s if s < 60 => format!("{s} s"),
                        s if s < 3600 => format!("{} min", s / 60),
                        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
                    };
                    let text =
                        format!("Owner {owner}: the balance of {balance} EUR lasts about {lasts} at {burn} EUR/h.");
                    self.event(now, "account.low-balance", None, None, data).await?;
                    self.notify(now, text).await?;
                }
            }
            AccountAction::Stop => {
                // Every server of the owner that runs, starts or waits stops (world saved).
                if self.exhausted.insert(owner) || !running.is_empty() {
                    let mut data = data;
                    data["stopped"] = json!(running);
                    self.event(now, "account.exhausted", None, None, data).await?;
                    let text =
                        format!("Owner {owner}: the balance is used up ({balance} EUR); servers {running:?} stop.");
                    self.notify(now, text).await?;
                }
                for id in running {
                    self.request_stop(id, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Tells the webhook (if any); a failure is recorded, never fatal.
    async fn notify(&mut self, now: Millis, text: String) -> Result<(), LiveError> {
        let Some(url) = self.cfg.billing.webhook.clone() else { return Ok(()) };
        let body = json!({ "content": text }).to_string();
        let sent = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        self.event(now, "webhook.failed", None, None, json!({ "url": url, "error": failure })).await
    }

    fn container(&self, server: ServerId) -> ContainerSpec {
        ContainerSpec {
            server: self.server_ids[server.0 as usize],
            image: self.cfg.image.clone(),
            cmd: self.cfg.cmd.clone(),
            memory_mib: self.core.plan_ram(server),
            env: Vec::new(),
            host_port: None,
        }
    }

    /// Records the notes and carries out the commands of the last core step(s).
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

    async fn note(&mut self, now: Millis, note: Note) -> Result<(), LiveError> {
        let sid = |s: ServerId| self.server_ids.get(s.0 as usize).copied();
        match note {
            Note::Queued { server } => {
                if let Some(id) = sid(server) {
                    // A sleeping world stays where it is while its server waits.
                    let node = match self.core.residence(server) {
                        conductor_core::Residence::Sleeping { node } => self.node_ids[node.0 as usize],
                        _ => None,
                    };
                    self.store.set_server_state(id, ServerState::Queued, node, now).await?;
                    self.event(now, "server.queued", Some(id), None, json!({})).await?;
                }
            }
            Note::Running { server, requested_at } => {
                if let (Some(id), conductor_core::Residence::Running { node }) =
                    (sid(server), self.core.residence(server))
                {
                    let store_node = self.node_ids[node.0 as usize];
                    self.store.set_server_state(id, ServerState::Running, store_node, now).await?;
                    self.event(now, "server.started", Some(id), store_node, json!({ "wait_ms": now - requested_at }))
                        .await?;
                }
            }
            Note::Abandoned { server, reason, .. } => {
                if let Some(id) = sid(server) {
                    let state = match self.core.residence(server) {
                        conductor_core::Residence::Archived => ServerState::Archived,
                        conductor_core::Residence::Sleeping { .. } => ServerState::Sleeping,
                        _ => ServerState::New,
                    };
                    let node = match self.core.residence(server) {
                        conductor_core::Residence::Sleeping { node } => self.node_ids[node.0 as usize],
                        _ => None,
                    };
                    self.store.set_server_state(id, state, node, now).await?;
                    self.event(now, "server.abandoned", Some(id), None, json!({ "reason": format!("{reason:?}") }))
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
                let store_node = self.node_ids.get(node.0 as usize).copied().flatten();
                self.event(now, "scaling.decision", None, store_node, data).await?;
            }
            Note::Shadow { policy, add, reason } => {
                self.event(
                    now,
                    "scaling.shadow",
                    None,
                    None,
                    json!({ "policy": policy, "would_add": add, "reason": reason }),
                )
                .await?;
            }
            other => {
                self.event(now, "core.note", None, None, json!({ "note": format!("{other:?}") })).await?;
            }
        }
        Ok(())
    }

    async fn command(&mut self, now: Millis, command: Command) -> Result<(), LiveError> {
        if let Command::Wake { at, timer } = command {
            self.timer_seq += 1;
            self.timers.insert((at, self.timer_seq), timer);
            return Ok(());
        }
        if self.cfg.mode == Mode::Observe {
            return self
                .event(now, "decision.observed", None, None, json!({ "command": format!("{command:?}") }))
                .await;
        }
        let drv = |e: &dyn std::fmt::Display| LiveError::Driver(e.to_string());
        match command {
            Command::Place { server, node, restore, placement } => {
                let id = self.server_ids[server.0 as usize];
                let store_node = self.node_ids[node.0 as usize];
                let intent = self
                    .store
                    .begin_intent(
                        &format!("place:{id}:{}", placement.0),
                        "place",
                        json!({ "node": store_node, "restore": format!("{restore:?}") }),
                        now,
                    )
                    .await?;
                self.store.set_server_state(id, ServerState::Starting, store_node, now).await?;
                // Ends a sleeping phase for billing (and tells where it went).
                self.event(now, "server.placed", Some(id), store_node, json!({ "restore": format!("{restore:?}") }))
                    .await?;
                let d = self.docker[node.0 as usize]
                    .clone()
                    .ok_or_else(|| LiveError::Driver("node without a Docker API".into()))?;
                let spec = self.container(server);
                match restore {
                    Restore::None => {
                        d.ensure_container(&spec).await.map_err(|e| drv(&e))?;
                    }
                    Restore::FromArchive => {
                        let r = self
                            .archives
                            .get(&server)
                            .cloned()
                            .ok_or_else(|| LiveError::Driver(format!("server {id}: no archive known")))?;
                        archive::restore_server(&d, self.cfg.archive.as_ref(), &spec, &r, &self.cfg.helper)
                            .await
                            .map_err(|e| drv(&e))?;
                        self.event(
                            now,
                            "server.restored",
                            Some(id),
                            store_node,
                            json!({ "archive": r.key, "sha256": r.sha256 }),
                        )
                        .await?;
                    }
                    Restore::FromNode(from) => {
                        let src = self.docker[from.0 as usize]
                            .clone()
                            .ok_or_else(|| LiveError::Driver("node without a Docker API".into()))?;
                        let tar = src.download_data(id).await.map_err(|e| drv(&e))?;
                        d.write_volume(id, tar, &self.cfg.helper).await.map_err(|e| drv(&e))?;
                        d.ensure_container(&spec).await.map_err(|e| drv(&e))?;
                        if !Arc::ptr_eq(&src, &d) {
                            src.remove(id, true).await.map_err(|e| drv(&e))?;
                        }
                    }
                }
                d.start(id).await.map_err(|e| drv(&e))?;
                self.starting.insert(server, placement);
                self.store.finish_intent(intent.id, true, json!({}), now).await?;
            }
            Command::Stop { server, node } => {
                let id = self.server_ids[server.0 as usize];
                let store_node = self.node_ids[node.0 as usize];
                if let Some(d) = self.docker[node.0 as usize].clone() {
                    d.stop(id, self.cfg.stop_timeout).await.map_err(|e| drv(&e))?;
                }
                self.starting.remove(&server);
                self.store.set_server_state(id, ServerState::Sleeping, store_node, now).await?;
                let peak = self.peak_players.remove(&server).unwrap_or(0);
                self.event(now, "server.slept", Some(id), store_node, json!({ "peak_players": peak })).await?;
            }
            Command::Archive { server, node } => {
                let id = self.server_ids[server.0 as usize];
                let d = self.docker[node.0 as usize]
                    .clone()
                    .ok_or_else(|| LiveError::Driver("node without a Docker API".into()))?;
                let key = format!("s{id}-{now}");
                let intent =
                    self.store.begin_intent(&format!("archive:{key}"), "archive", json!({ "server": id }), now).await?;
                let r = archive::archive_server(&d, self.cfg.archive.as_ref(), id, &key).await.map_err(|e| drv(&e))?;
                self.store.set_server_state(id, ServerState::Archived, None, now).await?;
                self.store.finish_intent(intent.id, true, json!({ "archive": r.key, "sha256": r.sha256 }), now).await?;
                self.event(
                    now,
                    "server.archived",
                    Some(id),
                    None,
                    json!({ "archive": r.key, "sha256": r.sha256, "bytes": r.bytes }),
                )
                .await?;
                self.archives.insert(server, r);
            }
            Command::CreateVm { node, vm_type } => {
                let c = self.cfg.cloud.as_ref().ok_or_else(|| LiveError::Driver("no cloud configured".into()))?;
                let (cluster, image, location, user_data) =
                    (c.cluster.clone(), c.image.clone(), c.location.clone(), c.user_data.clone());
                let client = c.client.clone();
                // The node row first: its id makes the VM's name, the key of the intent.
                let seq = self
                    .store
                    .append_event(NewEvent {
                        at: now,
                        kind: "node.create-requested".into(),
                        server: None,
                        node: None,
                        data: json!({ "type": vm_type }),
                    })
                    .await?;
                let name = format!("cdt-{cluster}-{seq}");
                let vm_ram = self.core.node(node).ram_mib;
                let usable = self.core.node(node).usable_mib;
                let n = self
                    .store
                    .upsert_node(
                        NewNode {
                            name: name.clone(),
                            kind: NodeKind::Cloud,
                            type_name: vm_type.clone(),
                            provider_id: None,
                            state: NodeState::Provisioning,
                            ram_mib: vm_ram,
                            usable_mib: usable,
                        },
                        now,
                    )
                    .await?;
                self.push_node(node, n.id, &name);
                let intent = self
                    .store
                    .begin_intent(
                        &format!("create-vm:{name}"),
                        "create_vm",
                        json!({ "name": name, "type": vm_type }),
                        now,
                    )
                    .await?;
                let labels = HashMap::from([(LABEL_MANAGED.to_string(), cluster)]);
                let new = NewVm { name: name.clone(), type_name: vm_type, image, location, user_data, labels };
                let (vm, _) = client.create(&new).await.map_err(|e| drv(&e))?;
                self.vm_ids.insert(node, vm.id);
                self.store.set_node_state(n.id, NodeState::Provisioning, Some(vm.id.to_string()), now).await?;
                self.store.finish_intent(intent.id, true, json!({ "provider_id": vm.id }), now).await?;
                self.event(now, "node.created", None, Some(n.id), json!({ "provider_id": vm.id, "name": name }))
                    .await?;
            }
            Command::DeleteVm { node } => {
                let c = self.cfg.cloud.as_ref().ok_or_else(|| LiveError::Driver("no cloud configured".into()))?;
                if let Some(vm) = self.vm_ids.remove(&node) {
                    c.client.delete(vm).await.map_err(|e| drv(&e))?;
                }
                if let Some(store_id) = self.node_ids[node.0 as usize] {
                    self.store.set_node_state(store_id, NodeState::Deleted, None, now).await?;
                    self.event(now, "node.deleted", None, Some(store_id), json!({})).await?;
                }
            }
            other => {
                self.event(now, "command.unsupported", None, None, json!({ "command": format!("{other:?}") })).await?;
            }
        }
        Ok(())
    }
}
