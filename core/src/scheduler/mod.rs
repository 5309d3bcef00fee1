//! The scheduler: admission, the start queue, the server lifecycle and scaling, as one
//! state machine driven by inputs that carry `now` and answered with [`Command`]s.
//!
//! The rules are those of SPEC §6, §7 and — with first-fit placement and the reference
//! reactive parameters — exactly the pinned reference policy of SPEC §11.

use crate::catalogue::{CloudType, DedicatedType};
use crate::consolidation::{ConsolidationParams, Movable, Outcome, PlanNode};
use crate::model::CostMode;
use crate::model::{NodeId, NodeKind, ServerId, ServerSpec};
use crate::placement::{Candidate, Strategy};
use crate::policy::{to_next_hour, DemandForecast, PolicyState, Proposal, ScaleIn, ScalingPolicy, Utilisation, View};
use crate::time::{Millis, HOUR, MINUTE};
use std::collections::BTreeMap;

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
        }
    }
}

/// A preemptible job (low-priority work on idle dedicated capacity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u32);

/// Identifies one placement, so that a late boot completion of an earlier placement is
/// recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlacementId(pub u64);

/// Where a placed server's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The data is already on the target node (or the server is new): boot only.
    None,
    /// Restore from archive storage, then boot.
    FromArchive,
    /// Copy from the node it slept on (which cannot take it now), then boot.
    FromNode(NodeId),
}

/// Timers the core asks the driver to deliver back through [`Scheduler::timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The queued request `seq` of `server` has waited `give_up`.
    GiveUp { server: ServerId, seq: u64 },
    /// `server` has slept for the sleep window since stop number `epoch`.
    Archive { server: ServerId, epoch: u32 },
    /// A scaling tick.
    Tick,
    /// `node` became unreachable at `since`: declare it dead if it still is.
    DeadCheck { node: NodeId, since: Millis },
    /// The notice of `job` ran out.
    JobKill { job: JobId },
}

/// What the driver must carry out. Plain data; the driver reports completion back through
/// [`Scheduler::boot_complete`] and [`Scheduler::node_ready`].
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Reserve `server`'s RAM on `node` (done) and start it there, restoring its data first
    /// as `restore` says. Report the server running with `placement`.
    Place { server: ServerId, node: NodeId, restore: Restore, placement: PlacementId },
    /// Stop `server` gracefully; its data stays on `node` (it is now sleeping).
    Stop { server: ServerId, node: NodeId },
    /// Archive the sleeping `server` from `node` and delete the node copy once verified.
    Archive { server: ServerId, node: NodeId },
    /// Create a cloud VM of `vm_type`; it will be known as `node`. Report it ready.
    CreateVm { node: NodeId, vm_type: String },
    /// Delete the cloud VM `node` (it holds no starting or running server).
    DeleteVm { node: NodeId },
    /// Call [`Scheduler::timer`] with `timer` at `at`.
    Wake { at: Millis, timer: Timer },
    /// Start preemptible `job` on `node`; report [`Scheduler::job_done`] when it ends.
    StartJob { job: JobId, node: NodeId },
    /// Tell `job` it will be killed at `kill_at` (a paying server needs the room).
    NoticeJob { job: JobId, node: NodeId, kill_at: Millis },
    /// Kill `job` now (its notice ran out).
    KillJob { job: JobId, node: NodeId },
    /// A placement of `server` on `node` failed: remove what it left there (the container;
    /// the world too unless `keep_data`, i.e. unless the world sleeps on that node).
    Discard { server: ServerId, node: NodeId, keep_data: bool },
    /// Move running `server` from `from` to `to` (save, copy its disk, boot there); its RAM
    /// is already reserved on `to`. Report it running with `placement`.
    Migrate { server: ServerId, from: NodeId, to: NodeId, placement: PlacementId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbandonReason {
    /// Waited longer than `give_up` in the queue.
    GaveUp,
    /// The wanted interval ended before the server ran.
    IntervalEnded,
    /// Its placement failed (the driver gave up on it) once `give_up` had passed.
    StartFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleAction {
    Create {
        node: NodeId,
    },
    Delete {
        node: NodeId,
    },
    /// Draining starts: no new servers, sleepers archived early.
    Cordon {
        node: NodeId,
    },
    /// Capacity is wanted again: a draining VM takes servers again (cheaper than a new one).
    Uncordon {
        node: NodeId,
    },
}

/// Facts worth recording (event log, KPIs); nothing to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    Queued {
        server: ServerId,
    },
    Abandoned {
        server: ServerId,
        requested_at: Millis,
        reason: AbandonReason,
    },
    /// The server is running; `requested_at` is when its start was requested.
    Running {
        server: ServerId,
        requested_at: Millis,
    },
    /// A scaling decision with the policy that took it, the utilisation it saw and the
    /// policy's own figures.
    Scaled {
        action: ScaleAction,
        policy: &'static str,
        seen: Utilisation,
        reason: String,
    },
    /// A policy in shadow mode would have created `add` VMs.
    Shadow {
        policy: &'static str,
        add: u32,
        reason: String,
    },
    /// `node` was declared dead; its servers are restarted elsewhere from their archive.
    NodeDead {
        node: NodeId,
    },
    /// `server` lost its copy on a dead node and now lives only in its latest archive; if it
    /// was starting or running it is restarted elsewhere.
    Failed {
        server: ServerId,
        was_active: bool,
    },
    /// Consolidation moves `server`; it plays again when its migration boot completes.
    Migrated {
        server: ServerId,
        from: NodeId,
        to: NodeId,
    },
    /// A migrated (or otherwise restarted without a request) server runs again.
    Resumed {
        server: ServerId,
    },
    /// A VM that will never be ready (its create failed for good, or it did not get ready
    /// in time): the slot is free again, the policy may ask for another after its cooldown.
    VmFailed {
        node: NodeId,
    },
    /// The placement of `server` could not start it; its RAM is free again and its request
    /// waits in the queue (or is abandoned past `give_up`).
    StartFailed {
        server: ServerId,
        node: NodeId,
    },
    /// `server` crashed on `node`: it sleeps there and is started again (`restarted`), or —
    /// after `crashes` crashes within the crash window — stays stopped (a crash loop).
    Crashed {
        server: ServerId,
        node: NodeId,
        crashes: u32,
        restarted: bool,
    },
    /// An `auto` owner is told that `server` will move (not before `moves_at`).
    Announced {
        server: ServerId,
        moves_at: Millis,
    },
    /// A `suggest` owner is asked to accept moving `server`, which would save this much.
    Recommended {
        server: ServerId,
        saving_per_hour: rust_decimal::Decimal,
    },
}

/// Output of one scheduler step.
#[derive(Debug, Default)]
pub struct Outbox {
    pub commands: Vec<Command>,
    pub notes: Vec<Note>,
}

impl Outbox {
    pub fn clear(&mut self) {
        self.commands.clear();
        self.notes.clear();
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
    /// server's residence). Lets cordoning and deletion find sleepers without a full scan.
    sleepers: Vec<ServerId>,
}

impl Node {
    fn new(
        kind: NodeKind,
        type_name: &str,
        ram_mib: u32,
        usable_mib: u32,
        state: NodeState,
        created_at: Millis,
    ) -> Node {
        Node {
            kind,
            type_name: type_name.to_owned(),
            ram_mib,
            usable_mib,
            state,
            created_at,
            reserved_mib: 0,
            active: 0,
            outgoing: 0,
            job_mib: 0,
            noticed_mib: 0,
            servers: Vec::new(),
            sleepers: Vec::new(),
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
            consent: Consent::None,
            asked: false,
            last_migrated: None,
            migrating_from: None,
            pending_ram: None,
            before: Residence::New,
            avoid: None,
            crashes: std::collections::VecDeque::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    Queued,
    Running { node: NodeId },
    Noticed { node: NodeId },
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
    /// Times of recent migrations (the disruption budget looks back one hour).
    migrations: std::collections::VecDeque<Millis>,
    last_consolidation: Option<Millis>,
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
            .map(|t| Node::new(NodeKind::Dedicated, &t.name, t.ram_mib, t.usable_mib(), NodeState::Ready, Millis::MIN))
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

    /// Start-up of a live controller: a cloud VM that already exists (found by label),
    /// ready or still provisioning. Returns its node.
    pub fn adopt_vm(&mut self, ready: bool, created_at: Millis) -> Option<NodeId> {
        let node = self.new_vm(created_at)?;
        if ready {
            // As `node_ready` does, without scanning the queue: adoption is not an event.
            let n = &mut self.nodes[node.0 as usize];
            n.state = NodeState::Ready;
            self.provisioning -= 1;
            self.usable_provisioning_mib -= u64::from(n.usable_mib);
            self.usable_ready_mib += u64::from(n.usable_mib);
            let at = self.ready.partition_point(|&id| id < node);
            self.ready.insert(at, node);
        }
        Some(node)
    }

    /// Start-up of a live controller: a server found running (or starting) on `node`.
    /// Returns the placement its boot completion must carry.
    pub fn adopt_running(&mut self, server: ServerId, node: NodeId, booted: bool) -> PlacementId {
        let residence = if booted { Residence::Running { node } } else { Residence::Starting { node } };
        self.reserve(server, node, residence)
    }

    /// Start-up of a live controller: a server that was starting on `node` when the
    /// previous run ended, for a start requested at `requested_at`; `before` is where its
    /// world was before this placement (where it returns if the placement fails). The
    /// request is placed again or given up by the usual rules.
    pub fn adopt_starting(
        &mut self,
        server: ServerId,
        node: NodeId,
        requested_at: Millis,
        before: Residence,
    ) -> PlacementId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let s = &mut self.servers[server.0 as usize];
        s.request = Some(Request { seq, at: requested_at, queued: false });
        s.before = before;
        self.reserve(server, node, Residence::Starting { node })
    }

    /// Start-up of a live controller: a server whose world sleeps on `node` since
    /// `stopped_at` (its archive timer is asked for), or lies in the archive.
    pub fn adopt_stopped(&mut self, server: ServerId, node: Option<NodeId>, stopped_at: Millis, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        match node {
            Some(node) => {
                s.residence = Residence::Sleeping { node };
                s.stops += 1;
                s.stopped_at = stopped_at;
                let epoch = s.stops;
                self.nodes[node.0 as usize].sleepers.push(server);
                let at = stopped_at + self.config.sleep_window;
                out.commands.push(Command::Wake { at, timer: Timer::Archive { server, epoch } });
            }
            None => s.residence = Residence::Archived,
        }
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
    /// order, with its give-up timer.
    fn enqueue(&mut self, now: Millis, server: ServerId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let Some(r) = s.request.as_mut() else { return };
        r.queued = true;
        let (seq, at) = (r.seq, r.at);
        let ram = s.spec.ram_mib;
        self.queued_mib += u64::from(ram);
        self.queue.entry(ram).or_default().insert(seq, server);
        self.queue_len += 1;
        out.notes.push(Note::Queued { server });
        if !self.jobs.is_empty() {
            self.reclaim_for(now, u64::from(ram), out);
        }
        out.commands.push(Command::Wake { at: at + self.config.give_up, timer: Timer::GiveUp { server, seq } });
    }

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
        s.residence = Residence::Running { node };
        s.avoid = None;
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
        self.servers[server.0 as usize].players = players;
    }

    /// The owner of `server` accepted the recommendation to move it.
    pub fn accept_recommendation(&mut self, server: ServerId) {
        let s = &mut self.servers[server.0 as usize];
        s.consent = Consent::Accepted;
        s.asked = false;
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
                    if s.stops == epoch {
                        s.residence = Residence::Archived;
                        out.commands.push(Command::Archive { server, node });
                    }
                }
            }
            Timer::JobKill { job } => {
                if let JobState::Noticed { node } = self.jobs[job.0 as usize].state {
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

    fn dequeue(&mut self, server: ServerId, seq: u64) {
        let ram = self.servers[server.0 as usize].spec.ram_mib;
        let Some(group) = self.queue.get_mut(&ram) else { return };
        if group.remove(&seq).is_some() {
            self.queued_mib -= u64::from(ram);
            self.queue_len -= 1;
            if group.is_empty() {
                self.queue.remove(&ram);
            }
        }
    }

    /// The largest free RAM on a node that accepts servers.
    fn max_free_mib(&self) -> u64 {
        self.ready.iter().map(|id| self.nodes[id.0 as usize].free_mib()).max().unwrap_or(0)
    }

    /// Rule 2: the node it sleeps on if that has room, else the strategy's choice.
    fn try_place(&mut self, server: ServerId, out: &mut Outbox) -> bool {
        let s = &self.servers[server.0 as usize];
        let need = u64::from(s.spec.ram_mib);
        let residence = s.residence;
        let avoid = s.avoid;
        if let Residence::Sleeping { node } = residence {
            let n = &self.nodes[node.0 as usize];
            if n.state == NodeState::Ready && n.free_mib() >= need && avoid != Some(node) {
                self.place(server, node, Restore::None, out);
                return true;
            }
        }
        // A node whose last placement of this server failed is taken only if no other fits.
        let mut chosen = None;
        for skip in [avoid, None] {
            self.candidates.clear();
            self.candidates.extend(self.ready.iter().filter(|&&id| Some(id) != skip).map(|&id| {
                let n = &self.nodes[id.0 as usize];
                Candidate { id, kind: n.kind, free_mib: n.free_mib() }
            }));
            chosen = self.config.strategy.choose(&self.candidates, need, self.last_placed);
            if chosen.is_some() || avoid.is_none() {
                break;
            }
        }
        let Some(node) = chosen else {
            return false;
        };
        if residence == (Residence::Sleeping { node }) {
            self.place(server, node, Restore::None, out);
            return true;
        }
        let restore = match residence {
            Residence::New => Restore::None,
            Residence::Sleeping { node: from } => Restore::FromNode(from),
            Residence::Archived => Restore::FromArchive,
            Residence::Starting { .. } | Residence::Running { .. } => unreachable!("placing an active server"),
        };
        self.place(server, node, restore, out);
        true
    }

    fn place(&mut self, server: ServerId, node: NodeId, restore: Restore, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        s.before = s.residence;
        let placement = self.reserve(server, node, Residence::Starting { node });
        self.last_placed = Some(node);
        out.commands.push(Command::Place { server, node, restore, placement });
    }

    /// Reserves `server`'s RAM on `node` under a new placement and moves it to `residence`.
    fn reserve(&mut self, server: ServerId, node: NodeId, residence: Residence) -> PlacementId {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        self.next_placement += 1;
        let placement = PlacementId(self.next_placement);
        s.placement = placement;
        s.residence = residence;
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib += ram;
        n.active += 1;
        n.servers.push(server);
        self.reserved_mib += ram;
        placement
    }

    /// Frees the RAM `server` holds on `node`: it no longer starts or runs there.
    fn release(&mut self, server: ServerId, node: NodeId) {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        if let Some(from) = s.migrating_from.take() {
            self.nodes[from.0 as usize].outgoing -= 1;
        }
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib -= ram;
        n.active -= 1;
        n.servers.retain(|&s| s != server);
        self.reserved_mib -= ram;
        let s = &mut self.servers[server.0 as usize];
        if let Some(ram) = s.pending_ram.take() {
            s.spec.ram_mib = ram;
        }
    }

    fn stop(&mut self, now: Millis, server: ServerId, node: NodeId, out: &mut Outbox) {
        self.release(server, node);
        let s = &mut self.servers[server.0 as usize];
        s.residence = Residence::Sleeping { node };
        s.stops += 1;
        s.stopped_at = now;
        let epoch = s.stops;
        self.nodes[node.0 as usize].sleepers.push(server);
        let n = &self.nodes[node.0 as usize];
        out.commands.push(Command::Stop { server, node });
        if n.state == NodeState::Cordoned {
            // The node is going away: do not leave the world on it.
            self.servers[server.0 as usize].residence = Residence::Archived;
            out.commands.push(Command::Archive { server, node });
        } else {
            out.commands
                .push(Command::Wake { at: now + self.config.sleep_window, timer: Timer::Archive { server, epoch } });
        }
        self.scan_queue(now, out);
    }

    /// Rule 3: one pass over the queue in arrival order, placing every request that fits.
    ///
    /// Placing only shrinks free RAM, so a request that does not fit at its turn cannot fit
    /// later in the same pass. The pass is therefore the same as repeatedly placing the
    /// earliest-arrived request whose RAM is at most the largest free RAM of any node — which
    /// visits only the heads of the RAM groups that can fit, not the whole queue.
    fn scan_queue(&mut self, _now: Millis, out: &mut Outbox) {
        #[cfg(test)]
        if self.naive_scan {
            let mut pass: Vec<(u64, ServerId)> =
                self.queue.values().flat_map(|g| g.iter().map(|(&seq, &server)| (seq, server))).collect();
            pass.sort_unstable();
            for (seq, server) in pass {
                if self.try_place(server, out) {
                    self.dequeue(server, seq);
                    if let Some(r) = self.servers[server.0 as usize].request.as_mut() {
                        r.queued = false;
                    }
                }
            }
            return;
        }
        while self.queue_len > 0 {
            let max_free = u32::try_from(self.max_free_mib()).unwrap_or(u32::MAX);
            let head = self
                .queue
                .range(..=max_free)
                .filter_map(|(_, group)| group.first_key_value())
                .min_by_key(|(&seq, _)| seq)
                .map(|(&seq, &server)| (seq, server));
            let Some((seq, server)) = head else { break };
            let placed = self.try_place(server, out);
            debug_assert!(placed, "a request no larger than the largest free RAM fits");
            self.dequeue(server, seq);
            if let Some(r) = self.servers[server.0 as usize].request.as_mut() {
                r.queued = false;
            }
            if !placed {
                break;
            }
        }
        if !self.job_queue.is_empty() {
            self.start_jobs(out);
        }
    }
}

mod failures;
mod jobs;
mod moves;
mod scaling;
#[cfg(test)]
mod tests;
