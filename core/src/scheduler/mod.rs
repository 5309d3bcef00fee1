//! The scheduler: admission, the start queue, the server lifecycle and scaling, as one
//! state machine driven by inputs that carry `now` and answered with [`Command`]s.
//!
//! The rules are those of SPEC §6, §7 and — with first-fit placement and the reference
//! reactive parameters — exactly the pinned reference policy of SPEC §11.
//!
//! Map: inputs from the driver (`request_start`, `wanted_end`, `boot_complete`,
//! `node_ready`, `timer`) and the queries are here; what it answers with is `commands.rs`;
//! admission and the queue `admission.rs`; node disk `disk.rs`; live start-up `adopt.rs`;
//! failures `failures.rs`; scaling `scaling.rs`; migrations `moves.rs`; jobs `jobs.rs`; staged
//! worlds `staging.rs`.

use crate::catalogue::{CloudType, DedicatedType};
use crate::consolidation::{ConsolidationParams, Movable, Outcome, PlanNode};
use crate::model::CostMode;
use crate::model::{NodeId, NodeKind, ServerId, ServerSpec};
use crate::placement::{Candidate, Strategy};
use crate::policy::{to_next_hour, DemandForecast, PolicyState, Proposal, ScaleIn, ScalingPolicy, Utilisation, View};
use crate::time::{Millis, HOUR, MINUTE};
use std::collections::BTreeMap;

pub use commands::*;
pub use disk::DiskRule;
pub use nodes::RetireError;
pub use staging::StagingRule;

/// Everything the scheduler needs to decide, fixed for its lifetime.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub strategy: Strategy,
    /// A queued request is abandoned this long after it was made.
    pub give_up: Millis,
    /// A sleeping server is archived this long after it stopped.
    pub sleep_window: Millis,
    pub scaling: ScalingPolicy,
    /// What scale-up creates; required when the scaling policy can create VMs.
    pub vm_type: Option<CloudType>,
    /// A node unreachable this long is declared dead (SPEC §7: 5 min).
    pub dead_after: Millis,
    /// Preemptible jobs get this much notice before they are killed for a paying server.
    pub job_notice: Millis,
    /// A server that crashes `crash_limit` times within `crash_window` is stopped instead
    /// of restarted (a crash loop); its owner is told.
    pub crash_limit: u32,
    pub crash_window: Millis,
    /// Node disk as a capacity (SPEC §5); `None` (the reference policy) ignores disk.
    pub disk: Option<DiskRule>,
    /// Staged worlds (SPEC §6); `None` stages nothing.
    pub staging: Option<StagingRule>,
}

impl SchedulerConfig {
    /// The reference policy of SPEC §11 for the given VM type and VM limit.
    pub fn reference(vm_type: CloudType, max_vms: u32) -> Self {
        SchedulerConfig {
            strategy: Strategy::FirstFit,
            give_up: 10 * MINUTE,
            sleep_window: 48 * HOUR,
            scaling: ScalingPolicy::reference(max_vms),
            vm_type: Some(vm_type),
            dead_after: 5 * MINUTE,
            job_notice: 5 * MINUTE,
            crash_limit: 3,
            crash_window: 10 * MINUTE,
            disk: None,
            staging: None,
        }
    }
}

/// Where a server is in its lifecycle (SPEC §6). `queued` is a property of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    New,
    Starting { node: NodeId },
    Running { node: NodeId },
    Sleeping { node: NodeId },
    Archived,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Provisioning,
    Ready,
    /// Draining: takes no new servers; deleted once empty.
    Cordoned,
    /// Not answering: takes no new servers; declared dead after `dead_after`.
    Unreachable {
        since: Millis,
    },
    /// Declared dead (a dedicated node until repaired).
    Dead,
    Deleted,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub type_name: String,
    pub ram_mib: u32,
    pub usable_mib: u32,
    /// Disk worlds may occupy (MB), and what its worlds occupy (see `disk.rs`).
    pub disk_mb: u64,
    pub disk_used_mb: u64,
    pub state: NodeState,
    pub created_at: Millis,
    /// RAM reserved by starting and running servers.
    pub reserved_mib: u64,
    /// Starting and running servers.
    pub active: u32,
    /// Servers migrating away whose copy is still being read from here.
    pub outgoing: u32,
    /// RAM used by preemptible jobs (dedicated nodes only); `noticed_mib` of it is leaving.
    pub job_mib: u64,
    pub noticed_mib: u64,
    /// Its starting and running servers (so decisions need not scan every server).
    pub servers: Vec<ServerId>,
    /// Servers that went to sleep here (lazy: entries may have left since; check the
    /// server's residence and stop time), in the order they stopped. Lets cordoning, deletion
    /// and the disk watermark find sleepers without a full scan.
    sleepers: Vec<(Millis, ServerId)>,
    /// Servers with a staged copy here (see `staging.rs`).
    staged: Vec<ServerId>,
    /// Drained by an operator (dedicated nodes): takes no new server, and comes back from a
    /// silence still drained.
    pub drained: bool,
}

impl Node {
    fn new(
        kind: NodeKind,
        type_name: &str,
        ram_mib: u32,
        usable_mib: u32,
        disk_mb: u64,
        state: NodeState,
        created_at: Millis,
    ) -> Node {
        Node {
            kind,
            type_name: type_name.to_owned(),
            ram_mib,
            usable_mib,
            disk_mb,
            disk_used_mb: 0,
            state,
            created_at,
            reserved_mib: 0,
            active: 0,
            outgoing: 0,
            job_mib: 0,
            noticed_mib: 0,
            servers: Vec::new(),
            sleepers: Vec::new(),
            staged: Vec::new(),
            drained: false,
        }
    }

    pub fn free_mib(&self) -> u64 {
        u64::from(self.usable_mib).saturating_sub(self.reserved_mib + self.job_mib)
    }
}

#[derive(Clone, Copy, Debug)]
struct Request {
    seq: u64,
    at: Millis,
    queued: bool,
}

#[derive(Clone, Debug)]
struct Server {
    spec: ServerSpec,
    residence: Residence,
    request: Option<Request>,
    placement: PlacementId,
    /// Incremented at every stop; an archive timer of an older stop is stale.
    stops: u32,
    /// When it last stopped (a sleeping server's archive is due `sleep_window` later).
    stopped_at: Millis,
    /// Players online (reported by the driver); consolidation moves only empty servers
    /// unless the owner consented.
    players: u32,
    /// False from a live start-up until the first count: a server nobody has looked at yet
    /// is not known to be empty, so it is not moved.
    players_known: bool,
    consent: Consent,
    /// A `suggest` owner was asked and has not accepted (yet).
    asked: bool,
    last_migrated: Option<Millis>,
    /// While migrating: the node its data is read from.
    migrating_from: Option<NodeId>,
    /// A plan change that could not be applied yet (takes effect at the next chance).
    pending_ram: Option<u32>,
    /// Where its data was before the current placement (where it returns if that fails).
    before: Residence,
    /// A node whose placement of it failed: avoided by its next placement.
    avoid: Option<NodeId>,
    /// Recent crash times (within the crash window).
    crashes: std::collections::VecDeque<Millis>,
    /// A staged copy of its archived world (see `staging.rs`).
    staged: Option<staging::Staged>,
}

impl Server {
    /// A server that never ran.
    fn new(spec: ServerSpec) -> Server {
        Server {
            spec,
            residence: Residence::New,
            request: None,
            placement: PlacementId(0),
            stops: 0,
            stopped_at: Millis::MIN,
            players: 0,
            players_known: true,
            consent: Consent::None,
            asked: false,
            last_migrated: None,
            migrating_from: None,
            pending_ram: None,
            before: Residence::New,
            avoid: None,
            crashes: std::collections::VecDeque::new(),
            staged: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running {
        node: NodeId,
    },
    /// Told it will be killed at `kill_at`.
    Noticed {
        node: NodeId,
        kill_at: Millis,
    },
    Ended,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    ram_mib: u64,
    state: JobState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consent {
    None,
    Announced { at: Millis },
    Accepted,
}

/// What the scaling decisions remember between ticks (cooldown, low spells, the last
/// consolidation). A live controller records it and adopts it after a restart, so that a
/// restart does not change what it decides.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScalingMemory {
    pub last_action: Option<Millis>,
    /// Per policy, in configuration order.
    pub low_since: Vec<Option<Millis>>,
    pub last_consolidation: Option<Millis>,
}

#[derive(Clone, Debug, Default)]
struct ScalingState {
    last_action: Option<Millis>,
    /// One per policy in `config.scaling.policies`.
    policies: Vec<PolicyState>,
    forecast: Option<DemandForecast>,
    proposals: Vec<Proposal>,
}

/// The decision state of one fleet.
#[derive(Clone, Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    nodes: Vec<Node>,
    /// Ready nodes in node order (dedicated in given order, then cloud by creation).
    ready: Vec<NodeId>,
    /// Cordoned (draining) VMs in creation order.
    draining: Vec<NodeId>,
    servers: Vec<Server>,
    /// Queued requests by plan RAM, each group in arrival order (request seq → server).
    /// Grouping lets a scan skip every request larger than the largest free RAM.
    queue: BTreeMap<u32, BTreeMap<u64, ServerId>>,
    queue_len: usize,
    next_seq: u64,
    next_placement: u64,
    reserved_mib: u64,
    queued_mib: u64,
    usable_ready_mib: u64,
    provisioning: u32,
    usable_provisioning_mib: u64,
    cloud_vms: u32,
    scaling: ScalingState,
    last_placed: Option<NodeId>,
    candidates: Vec<Candidate>,
    jobs: Vec<Job>,
    job_queue: std::collections::VecDeque<JobId>,
    /// Recent migrations, oldest first (the disruption budget looks back one hour).
    migrations: std::collections::VecDeque<(Millis, ServerId)>,
    last_consolidation: Option<Millis>,
    staging: staging::StagingState,
    /// Tests only: scan the queue the literal way, to check the fast scan against it.
    #[cfg(test)]
    naive_scan: bool,
}

impl Scheduler {
    /// A scheduler for `dedicated` nodes (ready from the start, in this order) and
    /// `servers` (all `new`), indexed by [`ServerId`] in the given order.
    pub fn new(config: SchedulerConfig, dedicated: &[DedicatedType], servers: Vec<ServerSpec>) -> Self {
        let nodes: Vec<Node> = dedicated
            .iter()
            .map(|t| {
                let (ram, usable, disk) = (t.ram_mib, t.usable_mib(), t.usable_disk_mb());
                Node::new(NodeKind::Dedicated, &t.name, ram, usable, disk, NodeState::Ready, Millis::MIN)
            })
            .collect();
        let usable_ready_mib = nodes.iter().map(|n| u64::from(n.usable_mib)).sum();
        let policies = vec![PolicyState::default(); config.scaling.policies.len()];
        Scheduler {
            config,
            ready: (0..nodes.len() as u32).map(NodeId).collect(),
            draining: Vec::new(),
            nodes,
            servers: servers.into_iter().map(Server::new).collect(),
            queue: BTreeMap::new(),
            queue_len: 0,
            next_seq: 0,
            next_placement: 0,
            reserved_mib: 0,
            queued_mib: 0,
            usable_ready_mib,
            provisioning: 0,
            usable_provisioning_mib: 0,
            cloud_vms: 0,
            scaling: ScalingState { policies, ..ScalingState::default() },
            last_placed: None,
            candidates: Vec::new(),
            migrations: std::collections::VecDeque::new(),
            last_consolidation: None,
            staging: staging::StagingState::default(),
            jobs: Vec::new(),
            job_queue: std::collections::VecDeque::new(),
            #[cfg(test)]
            naive_scan: false,
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// A server created after start-up (the live controller's API); `new`.
    pub fn add_server(&mut self, spec: ServerSpec) -> ServerId {
        let id = ServerId(self.servers.len() as u32);
        self.servers.push(Server::new(spec));
        id
    }

    /// Starts the scaling clock at `now` (the window start): the first tick is one
    /// interval later.
    pub fn start(&mut self, now: Millis, out: &mut Outbox) {
        if let Some(interval) = self.config.scaling.interval() {
            out.commands.push(Command::Wake { at: now + interval, timer: Timer::Tick });
        }
    }

    /// A start is requested for `server` (a player connects or the customer presses
    /// start). Places it at once if it fits, otherwise queues it (SPEC §11 rule 2).
    /// A request for a server that already has one, or is running, changes nothing.
    pub fn request_start(&mut self, now: Millis, server: ServerId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        if s.request.is_some() || matches!(s.residence, Residence::Running { .. } | Residence::Starting { .. }) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        s.request = Some(Request { seq, at: now, queued: false });
        if !self.try_place(server, out) {
            self.enqueue(now, server, out);
        }
    }

    /// Puts the pending request of `server` (not placed) into the queue, in its arrival
    /// The wanted run interval of `server` ended: a queued request is abandoned; a starting
    /// or running server stops and sleeps on its node (SPEC §11 rule 5).
    pub fn wanted_end(&mut self, now: Millis, server: ServerId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let request = s.request.take();
        if let Some(r) = request {
            if r.queued {
                self.dequeue(server, r.seq);
                out.notes.push(Note::Abandoned { server, requested_at: r.at, reason: AbandonReason::IntervalEnded });
                if !self.job_queue.is_empty() {
                    self.start_jobs(out);
                }
                return;
            }
        }
        match s.residence {
            Residence::Starting { node } => {
                if let Some(r) = request {
                    out.notes.push(Note::Abandoned {
                        server,
                        requested_at: r.at,
                        reason: AbandonReason::IntervalEnded,
                    });
                }
                self.stop(now, server, node, out);
            }
            Residence::Running { node } => self.stop(now, server, node, out),
            Residence::New | Residence::Sleeping { .. } | Residence::Archived => {}
        }
    }

    /// The server placed by `placement` finished booting.
    pub fn boot_complete(&mut self, now: Millis, server: ServerId, placement: PlacementId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let Residence::Starting { node } = s.residence else { return };
        if s.placement != placement {
            return;
        }
        s.avoid = None;
        self.set_residence(server, Residence::Running { node });
        let s = &mut self.servers[server.0 as usize];
        if let Some(r) = s.request.take() {
            out.notes.push(Note::Running { server, requested_at: r.at });
        }
        if let Some(from) = s.migrating_from.take() {
            self.nodes[from.0 as usize].outgoing -= 1;
            out.notes.push(Note::Resumed { server });
        }
        if let Some(ram) = self.servers[server.0 as usize].pending_ram.take() {
            self.change_plan(now, server, ram, out);
        }
    }

    /// Players online on `server` (from status pings, or the dataset in the twin).
    pub fn set_players(&mut self, server: ServerId, players: u32) {
        self.servers[server.0 as usize].players_known = true;
        self.servers[server.0 as usize].players = players;
    }

    /// Players online on `server` as last told.
    pub fn players(&self, server: ServerId) -> u32 {
        self.servers[server.0 as usize].players
    }

    /// The owner of `server` accepted the recommendation to move it.
    pub fn accept_recommendation(&mut self, server: ServerId) {
        let s = &mut self.servers[server.0 as usize];
        s.consent = Consent::Accepted;
        s.asked = false;
    }

    /// `server` stops when idle (pay-per-use) or runs until stopped, from now on; nothing
    /// the core decides depends on it (the driver's idle stop does).
    pub fn set_pay_per_use(&mut self, server: ServerId, pay_per_use: bool) {
        self.servers[server.0 as usize].spec.pay_per_use = pay_per_use;
    }

    /// What the owner of `server` was told or answered since its last move: (announced at,
    /// asked and not answered, accepted) — what `adopt_consent` takes.
    pub fn consent(&self, server: ServerId) -> (Option<Millis>, bool, bool) {
        let s = &self.servers[server.0 as usize];
        let announced = match s.consent {
            Consent::Announced { at } => Some(at),
            _ => None,
        };
        (announced, s.asked, s.consent == Consent::Accepted)
    }

    /// While `server` moves: the node its world is copied from.
    pub fn migrating_from(&self, server: ServerId) -> Option<NodeId> {
        self.servers[server.0 as usize].migrating_from
    }

    /// When `server` last started a move (consolidation or plan change).
    pub fn last_migrated(&self, server: ServerId) -> Option<Millis> {
        self.servers[server.0 as usize].last_migrated
    }

    /// The migrations the disruption budget still counts (within the hour before the last
    /// consolidation), oldest first.
    pub fn recent_migrations(&self) -> impl Iterator<Item = (Millis, ServerId)> + '_ {
        self.migrations.iter().copied()
    }

    /// The preemptible jobs by id: RAM (MiB) and state.
    pub fn jobs(&self) -> impl Iterator<Item = (JobId, u32, JobState)> + '_ {
        self.jobs.iter().enumerate().map(|(i, j)| (JobId(i as u32), j.ram_mib as u32, j.state))
    }

    /// Whether the owner of `server` was asked to accept a move and has not answered.
    pub fn awaiting_acceptance(&self, server: ServerId) -> bool {
        let s = &self.servers[server.0 as usize];
        s.asked && s.consent != Consent::Accepted
    }

    /// Live start-up: what the owner of `server` was told or answered since its last move
    /// (announced at, asked, accepted), so that a restart neither asks again nor moves an
    /// announced server before its notice is up.
    pub fn adopt_consent(&mut self, server: ServerId, announced_at: Option<Millis>, asked: bool, accepted: bool) {
        let s = &mut self.servers[server.0 as usize];
        s.asked = asked && !accepted;
        s.consent = match (accepted, announced_at) {
            (true, _) => Consent::Accepted,
            (false, Some(at)) => Consent::Announced { at },
            (false, None) => Consent::None,
        };
    }

    /// A cloud VM finished provisioning; it now accepts servers and the queue is scanned.
    pub fn node_ready(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        if n.state != NodeState::Provisioning {
            return;
        }
        self.provisioning -= 1;
        self.usable_provisioning_mib -= u64::from(n.usable_mib);
        self.make_ready(now, node, out);
    }

    /// A timer requested by a [`Command::Wake`] fired.
    pub fn timer(&mut self, now: Millis, timer: Timer, out: &mut Outbox) {
        match timer {
            Timer::GiveUp { server, seq } => {
                let s = &mut self.servers[server.0 as usize];
                if let Some(r) = s.request.filter(|r| r.queued && r.seq == seq) {
                    s.request = None;
                    self.dequeue(server, seq);
                    out.notes.push(Note::Abandoned { server, requested_at: r.at, reason: AbandonReason::GaveUp });
                    if !self.job_queue.is_empty() {
                        self.start_jobs(out);
                    }
                }
            }
            Timer::Archive { server, epoch } => {
                let s = &mut self.servers[server.0 as usize];
                if let Residence::Sleeping { node } = s.residence {
                    if s.stops == epoch && !self.keeps_past_window(node) {
                        self.set_residence(server, Residence::Archived);
                        out.commands.push(Command::Archive { server, node });
                        if self.config.disk.is_some() && self.queue_len > 0 {
                            // Its disk is free now: a request may fit.
                            self.scan_queue(now, out);
                        }
                    }
                }
            }
            Timer::JobKill { job } => {
                if let JobState::Noticed { node, .. } = self.jobs[job.0 as usize].state {
                    self.end_job(job, node);
                    out.commands.push(Command::KillJob { job, node });
                    self.scan_queue(now, out);
                }
            }
            Timer::DeadCheck { node, since } => {
                if self.nodes[node.0 as usize].state == (NodeState::Unreachable { since }) {
                    self.declare_dead(now, node, out);
                }
            }
            Timer::Tick => {
                if let Some(interval) = self.config.scaling.interval() {
                    self.scaling_tick(now, out);
                    out.commands.push(Command::Wake { at: now + interval, timer: Timer::Tick });
                }
            }
        }
    }

    /// Gives the predictive policy a new demand forecast (the nightly job's output).
    pub fn set_forecast(&mut self, forecast: DemandForecast) {
        self.scaling.forecast = Some(forecast);
    }

    /// Drops the forecast (a stale one): forecast-driven policies go neutral, the reactive
    /// policy keeps working.
    pub fn clear_forecast(&mut self) {
        self.scaling.forecast = None;
    }

    /// The forecast the policies use now.
    pub fn forecast(&self) -> Option<&DemandForecast> {
        self.scaling.forecast.as_ref()
    }

    /// Switches scaling policy `index` between shadow and enforce (SPEC §7: tune in shadow,
    /// then act). `false` when there is no such policy or it has no shadow mode.
    pub fn set_shadow(&mut self, index: usize, shadow: bool) -> bool {
        self.config.scaling.policies.get_mut(index).is_some_and(|p| p.set_shadow(shadow))
    }

    /// Reserved RAM of starting and running servers plus queued RAM, against usable RAM
    /// of ready nodes.
    pub fn utilisation(&self, queue_aware: bool) -> Utilisation {
        Utilisation {
            demand_mib: self.reserved_mib + if queue_aware { self.queued_mib } else { 0 },
            usable_mib: self.usable_ready_mib,
        }
    }

    /// The plan RAM `server` runs (or will start) with.
    pub fn spec(&self, server: ServerId) -> &ServerSpec {
        &self.servers[server.0 as usize].spec
    }

    pub fn plan_ram(&self, server: ServerId) -> u32 {
        self.servers[server.0 as usize].spec.ram_mib
    }

    /// The current placement of `server` (what its boot completion, crash or failed start
    /// must carry).
    pub fn placement(&self, server: ServerId) -> PlacementId {
        self.servers[server.0 as usize].placement
    }

    pub fn residence(&self, server: ServerId) -> Residence {
        self.servers[server.0 as usize].residence
    }

    /// When the pending start request of `server` was made, if it has one.
    pub fn requested_at(&self, server: ServerId) -> Option<Millis> {
        self.servers[server.0 as usize].request.map(|r| r.at)
    }

    /// When `server` last stopped (`Millis::MIN` if it never did).
    pub fn stopped_at(&self, server: ServerId) -> Millis {
        self.servers[server.0 as usize].stopped_at
    }

    pub fn scaling_memory(&self) -> ScalingMemory {
        ScalingMemory {
            last_action: self.scaling.last_action,
            low_since: self.scaling.policies.iter().map(|p| p.low_since).collect(),
            last_consolidation: self.last_consolidation,
        }
    }

    /// Start-up of a live controller: what the scaling decisions remembered before. Entries
    /// beyond the configured policies are ignored (the configuration changed).
    pub fn adopt_scaling_memory(&mut self, m: &ScalingMemory) {
        self.scaling.last_action = m.last_action;
        for (state, low) in self.scaling.policies.iter_mut().zip(&m.low_since) {
            state.low_since = *low;
        }
        self.last_consolidation = m.last_consolidation;
    }

    pub fn is_queued(&self, server: ServerId) -> bool {
        self.servers[server.0 as usize].request.is_some_and(|r| r.queued)
    }

    pub fn queue_len(&self) -> usize {
        self.queue_len
    }

    /// Plan RAM of the queued requests.
    pub fn queued_mib(&self) -> u64 {
        self.queued_mib
    }

    pub fn node(&self, node: NodeId) -> &Node {
        &self.nodes[node.0 as usize]
    }

    /// All nodes ever known, deleted ones included, indexed by [`NodeId`].
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Cloud VMs provisioning or ready.
    pub fn cloud_vms(&self) -> u32 {
        self.cloud_vms
    }
}

mod admission;
mod adopt;
mod commands;
mod disk;
mod failures;
mod jobs;
mod moves;
mod nodes;
mod scaling;
mod staging;
#[cfg(test)]
mod staging_tests;
#[cfg(test)]
mod tests;
