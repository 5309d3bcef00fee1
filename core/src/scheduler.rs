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
            let s = &mut self.servers[server.0 as usize];
            if let Some(r) = s.request.as_mut() {
                r.queued = true;
            }
            let ram = s.spec.ram_mib;
            self.queued_mib += u64::from(ram);
            self.queue.entry(ram).or_default().insert(seq, server);
            self.queue_len += 1;
            out.notes.push(Note::Queued { server });
            if !self.jobs.is_empty() {
                self.reclaim_for(now, u64::from(ram), out);
            }
            out.commands.push(Command::Wake { at: now + self.config.give_up, timer: Timer::GiveUp { server, seq } });
        }
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

    /// A preemptible job of `ram_mib` arrives; it starts on idle dedicated capacity when no
    /// paying request waits, else it queues.
    pub fn submit_job(&mut self, _now: Millis, ram_mib: u32, out: &mut Outbox) -> JobId {
        let job = JobId(self.jobs.len() as u32);
        self.jobs.push(Job { ram_mib: u64::from(ram_mib), state: JobState::Queued });
        self.job_queue.push_back(job);
        self.start_jobs(out);
        job
    }

    /// `job` finished (or its driver gave up on it).
    pub fn job_done(&mut self, now: Millis, job: JobId, out: &mut Outbox) {
        match self.jobs[job.0 as usize].state {
            JobState::Running { node } | JobState::Noticed { node } => {
                self.end_job(job, node);
                self.scan_queue(now, out);
            }
            JobState::Queued => {
                self.jobs[job.0 as usize].state = JobState::Ended;
                self.job_queue.retain(|&j| j != job);
            }
            JobState::Ended => {}
        }
    }

    fn end_job(&mut self, job: JobId, node: NodeId) {
        let j = &mut self.jobs[job.0 as usize];
        let n = &mut self.nodes[node.0 as usize];
        n.job_mib -= j.ram_mib;
        if matches!(j.state, JobState::Noticed { .. }) {
            n.noticed_mib -= j.ram_mib;
        }
        j.state = JobState::Ended;
    }

    /// Queued jobs take idle dedicated capacity (best fit), in arrival order, but only
    /// while no paying request waits.
    fn start_jobs(&mut self, out: &mut Outbox) {
        while self.queue_len == 0 {
            let Some(&job) = self.job_queue.front() else { return };
            let ram = self.jobs[job.0 as usize].ram_mib;
            let node = self
                .ready
                .iter()
                .copied()
                .filter(|id| {
                    let n = &self.nodes[id.0 as usize];
                    n.kind == NodeKind::Dedicated && n.free_mib() >= ram
                })
                .min_by_key(|id| self.nodes[id.0 as usize].free_mib());
            let Some(node) = node else { return };
            self.job_queue.pop_front();
            self.nodes[node.0 as usize].job_mib += ram;
            self.jobs[job.0 as usize].state = JobState::Running { node };
            out.commands.push(Command::StartJob { job, node });
        }
    }

    /// A paying request of `need` MiB could not be placed: if a dedicated node would fit it
    /// once its jobs are gone, give them notice (largest first) until it will.
    fn reclaim_for(&mut self, now: Millis, need: u64, out: &mut Outbox) {
        let node = self.ready.iter().copied().find(|id| {
            let n = &self.nodes[id.0 as usize];
            n.kind == NodeKind::Dedicated && n.free_mib() + n.job_mib >= need
        });
        let Some(node) = node else { return };
        let n = &self.nodes[node.0 as usize];
        if n.free_mib() + n.noticed_mib >= need {
            return; // already coming free
        }
        let mut running: Vec<JobId> = (0..self.jobs.len() as u32)
            .map(JobId)
            .filter(|j| self.jobs[j.0 as usize].state == (JobState::Running { node }))
            .collect();
        running.sort_by_key(|j| std::cmp::Reverse(self.jobs[j.0 as usize].ram_mib));
        for job in running {
            let n = &self.nodes[node.0 as usize];
            if n.free_mib() + n.noticed_mib >= need {
                break;
            }
            let ram = self.jobs[job.0 as usize].ram_mib;
            self.jobs[job.0 as usize].state = JobState::Noticed { node };
            self.nodes[node.0 as usize].noticed_mib += ram;
            let kill_at = now + self.config.job_notice;
            out.commands.push(Command::NoticeJob { job, node, kill_at });
            out.commands.push(Command::Wake { at: kill_at, timer: Timer::JobKill { job } });
        }
    }

    /// The owner changes `server`'s plan to `ram_mib` (SPEC: RAM upgrades during play). A
    /// running server restarts in place if its node has room, else moves to a node with
    /// room (players wait meanwhile; it counts like a migration). If no node has room it
    /// keeps running on its old plan and the new one applies at its next start; a server
    /// that is not running simply starts on the new plan next time.
    pub fn change_plan(&mut self, now: Millis, server: ServerId, ram_mib: u32, out: &mut Outbox) {
        let s = &self.servers[server.0 as usize];
        let old = s.spec.ram_mib;
        if old == ram_mib {
            return;
        }
        if let Some(r) = s.request.filter(|r| r.queued) {
            // Re-file the queued request under its new size, keeping its place in line.
            self.dequeue(server, r.seq);
            self.servers[server.0 as usize].spec.ram_mib = ram_mib;
            self.queued_mib += u64::from(ram_mib);
            self.queue.entry(ram_mib).or_default().insert(r.seq, server);
            self.queue_len += 1;
            return;
        }
        let Residence::Running { node } = s.residence else {
            if matches!(s.residence, Residence::Starting { .. }) {
                self.servers[server.0 as usize].pending_ram = Some(ram_mib);
            } else {
                self.servers[server.0 as usize].spec.ram_mib = ram_mib;
            }
            return;
        };
        let (old, new) = (u64::from(old), u64::from(ram_mib));
        let n = &self.nodes[node.0 as usize];
        let target = if n.free_mib() + old >= new {
            Some(node)
        } else {
            self.candidates.clear();
            self.candidates.extend(self.ready.iter().filter(|&&id| id != node).map(|&id| {
                let n = &self.nodes[id.0 as usize];
                Candidate { id, kind: n.kind, free_mib: n.free_mib() }
            }));
            self.config.strategy.choose(&self.candidates, new, self.last_placed)
        };
        let Some(to) = target else {
            self.servers[server.0 as usize].pending_ram = Some(ram_mib);
            return;
        };
        // Re-plan where it is, then restart it there or move it (migrate() carries the new
        // reservation along).
        let s = &mut self.servers[server.0 as usize];
        s.spec.ram_mib = ram_mib;
        s.pending_ram = None;
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib = n.reserved_mib + new - old;
        self.reserved_mib = self.reserved_mib + new - old;
        self.migrate(now, server, node, to, out);
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

    /// `node` stopped answering (health checks, heartbeats): it takes no new servers now and
    /// is declared dead if it stays silent for `dead_after`.
    pub fn node_unreachable(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        match n.state {
            NodeState::Ready => {
                self.usable_ready_mib -= u64::from(n.usable_mib);
                self.ready.retain(|&id| id != node);
            }
            NodeState::Cordoned => self.draining.retain(|&id| id != node),
            NodeState::Provisioning => {
                self.provisioning -= 1;
                self.usable_provisioning_mib -= u64::from(n.usable_mib);
            }
            NodeState::Unreachable { .. } | NodeState::Dead | NodeState::Deleted => return,
        }
        self.nodes[node.0 as usize].state = NodeState::Unreachable { since: now };
        out.commands
            .push(Command::Wake { at: now + self.config.dead_after, timer: Timer::DeadCheck { node, since: now } });
    }

    /// `node` answers again: before being declared dead it simply resumes; a dead dedicated
    /// node comes back empty (repaired).
    pub fn node_reachable(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        let back = match n.state {
            NodeState::Unreachable { .. } => true,
            NodeState::Dead => n.kind == NodeKind::Dedicated,
            _ => false,
        };
        if back {
            self.make_ready(now, node, out);
        }
    }

    /// Rule of SPEC §7: restart the node's servers elsewhere from their latest archive.
    fn declare_dead(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        out.notes.push(Note::NodeDead { node });
        let mut restart = Vec::new();
        for i in 0..self.servers.len() {
            let server = ServerId(i as u32);
            let s = &mut self.servers[i];
            let was_active = match s.residence {
                Residence::Starting { node: n } | Residence::Running { node: n } if n == node => true,
                Residence::Sleeping { node: n } if n == node => false,
                _ => continue,
            };
            s.residence = Residence::Archived;
            out.notes.push(Note::Failed { server, was_active });
            if was_active {
                let ram = u64::from(s.spec.ram_mib);
                self.reserved_mib -= ram;
                let n = &mut self.nodes[node.0 as usize];
                n.reserved_mib -= ram;
                n.active -= 1;
                n.servers.retain(|&x| x != server);
                // Its start (if still pending) is replaced by the restart below.
                s.request = None;
                if let Some(from) = s.migrating_from.take() {
                    self.nodes[from.0 as usize].outgoing -= 1;
                }
                restart.push(server);
            }
        }
        let n = &mut self.nodes[node.0 as usize];
        debug_assert_eq!(n.active, 0);
        if n.kind == NodeKind::Cloud {
            n.state = NodeState::Deleted;
            self.cloud_vms -= 1;
            out.commands.push(Command::DeleteVm { node });
        } else {
            n.state = NodeState::Dead;
        }
        for server in restart {
            self.request_start(now, server, out);
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
        if let Residence::Sleeping { node } = residence {
            let n = &self.nodes[node.0 as usize];
            if n.state == NodeState::Ready && n.free_mib() >= need {
                self.place(server, node, Restore::None, out);
                return true;
            }
        }
        self.candidates.clear();
        self.candidates.extend(self.ready.iter().map(|&id| {
            let n = &self.nodes[id.0 as usize];
            Candidate { id, kind: n.kind, free_mib: n.free_mib() }
        }));
        let Some(node) = self.config.strategy.choose(&self.candidates, need, self.last_placed) else {
            return false;
        };
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

    fn stop(&mut self, now: Millis, server: ServerId, node: NodeId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        s.residence = Residence::Sleeping { node };
        s.stops += 1;
        s.stopped_at = now;
        if let Some(from) = s.migrating_from.take() {
            self.nodes[from.0 as usize].outgoing -= 1;
        }
        let epoch = s.stops;
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib -= ram;
        n.active -= 1;
        n.servers.retain(|&s| s != server);
        n.sleepers.push(server);
        self.reserved_mib -= ram;
        let s = &mut self.servers[server.0 as usize];
        if let Some(ram) = s.pending_ram.take() {
            s.spec.ram_mib = ram;
        }
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

    /// A scaling tick: every policy proposes; scale-up takes the largest request, scale-in
    /// needs every policy to agree and one to want it (with only the reactive policy this is
    /// SPEC §11 rule 7).
    fn scaling_tick(&mut self, now: Millis, out: &mut Outbox) {
        let policies = std::mem::take(&mut self.config.scaling.policies);
        // Draining VMs that are empty go (at the end of their paid hour with that rule).
        let empty: Vec<NodeId> = self
            .cordoned()
            .filter(|id| {
                let n = &self.nodes[id.0 as usize];
                n.active == 0 && n.outgoing == 0 && self.may_delete_now(n.created_at, now)
            })
            .collect();
        for node in empty {
            let seen = self.utilisation(true);
            self.delete_vm(node, out);
            self.scaling.last_action = Some(now);
            let reason = "drained: no starting or running servers left".to_owned();
            out.notes.push(Note::Scaled { action: ScaleAction::Delete { node }, policy: "drain", seen, reason });
        }
        let idle_vms = self
            .ready
            .iter()
            .filter(|id| {
                let n = &self.nodes[id.0 as usize];
                n.kind == NodeKind::Cloud && n.active == 0
            })
            .count() as u32;
        let view = View {
            now,
            reserved_mib: self.reserved_mib,
            queued_mib: self.queued_mib,
            usable_ready_mib: self.usable_ready_mib,
            usable_provisioning_mib: self.usable_provisioning_mib,
            provisioning: self.provisioning,
            cloud_vms: self.cloud_vms,
            max_vms: self.config.scaling.max_vms,
            idle_vms,
            vm_usable_mib: self.config.vm_type.as_ref().map_or(0, |v| u64::from(v.usable_mib())),
            last_action: self.scaling.last_action,
            forecast: self.scaling.forecast.as_ref(),
        };
        let mut proposals = std::mem::take(&mut self.scaling.proposals);
        proposals.clear();
        for (policy, state) in policies.iter().zip(self.scaling.policies.iter_mut()) {
            proposals.push(policy.propose(&view, state));
        }
        let seen = self.utilisation(true);
        for (policy, p) in policies.iter().zip(&proposals) {
            if p.would_add > 0 {
                out.notes.push(Note::Shadow { policy: policy.name(), add: p.would_add, reason: p.reason.clone() });
            }
        }
        // Scale up: the largest request (the first policy on ties).
        let up =
            proposals.iter().enumerate().filter(|(_, p)| p.add > 0).fold(None, |best: Option<(usize, u32)>, (i, p)| {
                match best {
                    Some((_, add)) if add >= p.add => best,
                    _ => Some((i, p.add)),
                }
            });
        if let Some((i, add)) = up {
            // A draining VM is already paid for and ready: take it back before creating.
            let mut add = add;
            while add > 0 {
                let Some(node) = self.cordoned().last() else { break };
                self.uncordon(now, node, out);
                self.scaling.last_action = Some(now);
                out.notes.push(Note::Scaled {
                    action: ScaleAction::Uncordon { node },
                    policy: policies[i].name(),
                    seen,
                    reason: proposals[i].reason.clone(),
                });
                add -= 1;
            }
            let room = self.config.scaling.max_vms.saturating_sub(self.cloud_vms);
            for _ in 0..add.min(room) {
                if let Some(node) = self.create_vm(now, out) {
                    self.scaling.last_action = Some(now);
                    out.notes.push(Note::Scaled {
                        action: ScaleAction::Create { node },
                        policy: policies[i].name(),
                        seen,
                        reason: proposals[i].reason.clone(),
                    });
                }
            }
        } else if !proposals.is_empty() && proposals.iter().all(|p| p.agrees_in) {
            if let Some(i) = proposals.iter().position(|p| p.wants_in) {
                let action = if let Some(node) = self.scale_in_victim(now) {
                    self.delete_vm(node, out);
                    Some(ScaleAction::Delete { node })
                } else if self.config.scaling.drain && self.cordoned().next().is_none() {
                    // No idle VM: drain the coldest one (least RAM in use; the newest on ties).
                    let coldest = self
                        .ready
                        .iter()
                        .rev()
                        .copied()
                        .filter(|id| self.nodes[id.0 as usize].kind == NodeKind::Cloud)
                        .min_by_key(|id| self.nodes[id.0 as usize].reserved_mib);
                    coldest.map(|node| {
                        self.cordon(node, out);
                        ScaleAction::Cordon { node }
                    })
                } else {
                    None
                };
                if let Some(action) = action {
                    self.scaling.last_action = Some(now);
                    // A scale-in ends every low spell (SPEC §11: a deletion clears `low_since`).
                    self.scaling.policies.iter_mut().for_each(|s| s.low_since = None);
                    out.notes.push(Note::Scaled {
                        action,
                        policy: policies[i].name(),
                        seen,
                        reason: proposals[i].reason.clone(),
                    });
                }
            }
        }
        self.scaling.proposals = proposals;
        self.config.scaling.policies = policies;
        if let Some(params) = self.config.scaling.consolidation.clone() {
            if self.last_consolidation.is_none_or(|t| now - t >= params.every) {
                self.last_consolidation = Some(now);
                self.consolidate(now, &params, out);
            }
        }
    }

    fn movable(&self, s: &Server, now: Millis, p: &ConsolidationParams) -> Movable {
        if !matches!(s.residence, Residence::Running { .. }) || s.migrating_from.is_some() {
            return Movable::No;
        }
        if s.players == 0 {
            return Movable::Yes;
        }
        match s.spec.cost_mode {
            CostMode::Off => Movable::No,
            CostMode::Suggest => match (s.consent, s.asked) {
                (Consent::Accepted, _) => Movable::Yes,
                (_, true) => Movable::No,
                _ => Movable::NeedsAcceptance,
            },
            CostMode::Auto => {
                if s.last_migrated.is_some_and(|t| now - t < p.auto_once_per) {
                    return Movable::No;
                }
                match s.consent {
                    Consent::Announced { at } if now - at >= p.announce => Movable::Yes,
                    Consent::Announced { .. } => Movable::No,
                    _ => Movable::NeedsAnnouncement,
                }
            }
        }
    }

    /// One consolidation decision (see `consolidation`): migrate, or ask owners first.
    fn consolidate(&mut self, now: Millis, p: &ConsolidationParams, out: &mut Outbox) {
        while self.migrations.front().is_some_and(|&t| now - t >= HOUR) {
            self.migrations.pop_front();
        }
        let budget = p.max_migrations_per_hour.saturating_sub(self.migrations.len() as u32);
        let hourly = self.config.vm_type.as_ref().map_or(rust_decimal::Decimal::ZERO, |v| v.hourly_eur);
        let mut nodes: Vec<PlanNode> = self
            .ready
            .iter()
            .map(|&id| {
                let n = &self.nodes[id.0 as usize];
                PlanNode {
                    id,
                    is_cloud: n.kind == NodeKind::Cloud,
                    accepts: true,
                    free_mib: n.free_mib(),
                    hourly: if n.kind == NodeKind::Cloud { hourly } else { rust_decimal::Decimal::ZERO },
                    servers: Vec::new(),
                }
            })
            .collect();
        for pn in nodes.iter_mut() {
            for &server in &self.nodes[pn.id.0 as usize].servers {
                let s = &self.servers[server.0 as usize];
                pn.servers.push((server, u64::from(s.spec.ram_mib), self.movable(s, now, p)));
            }
        }
        match crate::consolidation::plan(&nodes, p, budget) {
            Outcome::Nothing => {}
            Outcome::Ask { announce, recommend, saving_per_hour, .. } => {
                for server in announce {
                    self.servers[server.0 as usize].consent = Consent::Announced { at: now };
                    out.notes.push(Note::Announced { server, moves_at: now + p.announce });
                }
                for server in recommend {
                    self.servers[server.0 as usize].asked = true;
                    out.notes.push(Note::Recommended { server, saving_per_hour });
                }
            }
            Outcome::Migrate(plan) => {
                for &(server, to) in &plan.moves {
                    self.migrate(now, server, plan.vm, to, out);
                }
                self.cordon(plan.vm, out);
                out.notes.push(Note::Scaled {
                    action: ScaleAction::Cordon { node: plan.vm },
                    policy: "consolidation",
                    seen: self.utilisation(true),
                    reason: format!("{} migrations save {} EUR/h", plan.moves.len(), plan.saving_per_hour),
                });
            }
        }
    }

    fn migrate(&mut self, now: Millis, server: ServerId, from: NodeId, to: NodeId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        self.next_placement += 1;
        let placement = PlacementId(self.next_placement);
        s.placement = placement;
        s.residence = Residence::Starting { node: to };
        s.migrating_from = Some(from);
        s.last_migrated = Some(now);
        s.consent = Consent::None;
        s.asked = false;
        let f = &mut self.nodes[from.0 as usize];
        f.reserved_mib -= ram;
        f.active -= 1;
        f.outgoing += 1;
        f.servers.retain(|&s| s != server);
        let t = &mut self.nodes[to.0 as usize];
        t.reserved_mib += ram;
        t.active += 1;
        t.servers.push(server);
        self.migrations.push_back(now);
        out.commands.push(Command::Migrate { server, from, to, placement });
        out.notes.push(Note::Migrated { server, from, to });
    }

    /// The idle ready VM to delete, if any may go now.
    fn scale_in_victim(&self, now: Millis) -> Option<NodeId> {
        let idle = self.ready.iter().rev().copied().filter(|&id| {
            let n = &self.nodes[id.0 as usize];
            n.kind == NodeKind::Cloud && n.active == 0
        });
        match self.config.scaling.scale_in {
            ScaleIn::Newest => idle.into_iter().next(),
            ScaleIn::BillingHour { margin } => idle
                .map(|id| (to_next_hour(self.nodes[id.0 as usize].created_at, now), id))
                .filter(|&(left, _)| left <= margin)
                .min_by_key(|&(left, _)| left)
                .map(|(_, id)| id),
        }
    }

    fn create_vm(&mut self, now: Millis, out: &mut Outbox) -> Option<NodeId> {
        let node = self.new_vm(now)?;
        let vm_type = self.nodes[node.0 as usize].type_name.clone();
        out.commands.push(Command::CreateVm { node, vm_type });
        Some(node)
    }

    /// A provisioning VM node of the configured type.
    fn new_vm(&mut self, now: Millis) -> Option<NodeId> {
        let vm = self.config.vm_type.as_ref()?;
        let node = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node::new(
            NodeKind::Cloud,
            &vm.name,
            vm.ram_mib,
            vm.usable_mib(),
            NodeState::Provisioning,
            now,
        ));
        self.provisioning += 1;
        self.usable_provisioning_mib += u64::from(vm.usable_mib());
        self.cloud_vms += 1;
        Some(node)
    }

    /// Deletes an idle ready VM; its sleeping servers are archived first.
    fn delete_vm(&mut self, node: NodeId, out: &mut Outbox) {
        self.archive_sleepers(node, out);
        let n = &mut self.nodes[node.0 as usize];
        debug_assert_eq!(n.active, 0);
        if n.state == NodeState::Ready {
            self.usable_ready_mib -= u64::from(n.usable_mib);
        }
        n.state = NodeState::Deleted;
        self.cloud_vms -= 1;
        self.draining.retain(|&id| id != node);
        self.ready.retain(|&id| id != node);
        out.commands.push(Command::DeleteVm { node });
    }

    /// `node` takes servers again: back into the placement order (node order), its RAM
    /// usable, and the queue scanned (SPEC §11 rule 3).
    fn make_ready(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        n.state = NodeState::Ready;
        self.usable_ready_mib += u64::from(n.usable_mib);
        let at = self.ready.partition_point(|&id| id < node);
        self.ready.insert(at, node);
        self.scan_queue(now, out);
    }

    /// Starts draining `node`: it leaves the placement order and its sleepers are archived.
    fn cordon(&mut self, node: NodeId, out: &mut Outbox) {
        self.archive_sleepers(node, out);
        let n = &mut self.nodes[node.0 as usize];
        n.state = NodeState::Cordoned;
        self.usable_ready_mib -= u64::from(n.usable_mib);
        self.ready.retain(|&id| id != node);
        let at = self.draining.partition_point(|&id| id < node);
        self.draining.insert(at, node);
    }

    /// Archives every server asleep on `node` (in server order).
    fn archive_sleepers(&mut self, node: NodeId, out: &mut Outbox) {
        let mut sleepers = std::mem::take(&mut self.nodes[node.0 as usize].sleepers);
        sleepers.sort_unstable();
        sleepers.dedup();
        for server in sleepers {
            let s = &mut self.servers[server.0 as usize];
            if s.residence == (Residence::Sleeping { node }) {
                s.residence = Residence::Archived;
                out.commands.push(Command::Archive { server, node });
            }
        }
    }

    fn uncordon(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        self.draining.retain(|&id| id != node);
        self.make_ready(now, node, out);
    }

    fn cordoned(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.draining.iter().copied()
    }

    /// Whether deleting a VM created at `created` is allowed now by the billing-hour rule.
    fn may_delete_now(&self, created: Millis, now: Millis) -> bool {
        match self.config.scaling.scale_in {
            ScaleIn::Newest => true,
            ScaleIn::BillingHour { margin } => to_next_hour(created, now) <= margin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Reserve;
    use crate::model::CostMode;
    use crate::time::SECOND;
    use rand::{Rng, SeedableRng};
    use rust_decimal::Decimal;

    fn vm() -> CloudType {
        CloudType {
            name: "vm".into(),
            ram_mib: 8192,
            cores: 2,
            disk_gb: 80,
            hourly_eur: Decimal::new(1, 2),
            monthly_cap_eur: Decimal::from(5),
            reserve: Reserve::Mib(0),
        }
    }

    fn node(ram_mib: u32) -> DedicatedType {
        DedicatedType {
            name: "d".into(),
            ram_mib,
            cores: 4,
            disk_gb: 100,
            monthly_eur: Decimal::from(50),
            reserve: Reserve::Mib(0),
        }
    }

    fn spec(ram_mib: u32) -> ServerSpec {
        ServerSpec { ram_mib, disk_mb: 1000, pay_per_use: true, cost_mode: CostMode::Off }
    }

    /// A live controller rebuilds its scheduler from what exists (adoption); the result
    /// must decide exactly as a scheduler that saw the events did.
    #[test]
    fn adopting_what_exists_equals_having_seen_it_happen() {
        let nodes = [node(16384)];
        let config = SchedulerConfig::reference(vm(), 4);
        let mut out = Outbox::default();
        // By events: server 0 runs on node 0, server 1 sleeps there since t = 100, one VM is ready.
        let mut seen = Scheduler::new(config.clone(), &nodes, vec![spec(4096), spec(2048), spec(8192)]);
        seen.request_start(0, ServerId(0), &mut out);
        seen.request_start(0, ServerId(1), &mut out);
        let placements: Vec<PlacementId> = out
            .commands
            .iter()
            .filter_map(|c| if let Command::Place { placement, .. } = c { Some(*placement) } else { None })
            .collect();
        seen.boot_complete(20, ServerId(0), placements[0], &mut out);
        seen.boot_complete(20, ServerId(1), placements[1], &mut out);
        seen.wanted_end(100, ServerId(1), &mut out);
        let vm_node = seen.create_vm(100, &mut out).unwrap();
        seen.node_ready(200, vm_node, &mut out);
        // By adoption, with servers added one by one.
        let mut adopted = Scheduler::new(config, &nodes, Vec::new());
        let ids: Vec<ServerId> = [4096, 2048, 8192].iter().map(|&r| adopted.add_server(spec(r))).collect();
        assert_eq!(ids, vec![ServerId(0), ServerId(1), ServerId(2)]);
        adopted.adopt_running(ids[0], NodeId(0), true);
        let mut wakes = Outbox::default();
        adopted.adopt_stopped(ids[1], Some(NodeId(0)), 100, &mut wakes);
        assert!(
            matches!(wakes.commands[..], [Command::Wake { at, timer: Timer::Archive { .. } }] if at == 100 + adopted.config.sleep_window)
        );
        assert_eq!(adopted.adopt_vm(true, 100), Some(vm_node));
        for sch in [&seen, &adopted] {
            assert_eq!(sch.residence(ServerId(0)), Residence::Running { node: NodeId(0) });
            assert_eq!(sch.residence(ServerId(1)), Residence::Sleeping { node: NodeId(0) });
        }
        assert_eq!(seen.utilisation(true), adopted.utilisation(true));
        assert_eq!(seen.cloud_vms(), adopted.cloud_vms());
        assert_eq!(seen.node(NodeId(0)).free_mib(), adopted.node(NodeId(0)).free_mib());
        // Both place the next request the same way (server 2, 8 GiB: first fit, node 0).
        let (mut a, mut b) = (Outbox::default(), Outbox::default());
        seen.request_start(300, ServerId(2), &mut a);
        adopted.request_start(300, ServerId(2), &mut b);
        let place = |o: &Outbox| {
            o.commands.iter().find_map(|c| {
                if let Command::Place { node, restore, .. } = c {
                    Some((*node, *restore))
                } else {
                    None
                }
            })
        };
        assert_eq!(place(&a), Some((NodeId(0), Restore::None)));
        assert_eq!(place(&a), place(&b));
        // And the sleeping server wakes where it sleeps, in both.
        let (mut a, mut b) = (Outbox::default(), Outbox::default());
        seen.request_start(400, ServerId(1), &mut a);
        adopted.request_start(400, ServerId(1), &mut b);
        assert_eq!(place(&a), Some((NodeId(0), Restore::None)));
        assert_eq!(place(&a), place(&b));
    }

    /// The fast queue scan makes exactly the decisions of the literal one-pass scan, for
    /// random streams of requests, stops, boots, ticks, VMs and timers.
    #[test]
    fn fast_queue_scan_matches_the_literal_scan() {
        for seed in 0..200u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let sizes = [1024, 2048, 3072, 4096, 6144, 8192];
            let servers: Vec<ServerSpec> = (0..40).map(|_| spec(sizes[rng.random_range(0..sizes.len())])).collect();
            let nodes = [node(16384), node(12288)];
            let config = SchedulerConfig::reference(vm(), 4);
            let mut fast = Scheduler::new(config.clone(), &nodes, servers.clone());
            let mut slow = Scheduler::new(config, &nodes, servers);
            slow.naive_scan = true;
            let (mut a, mut b) = (Outbox::default(), Outbox::default());
            let mut now = 0;
            fast.start(now, &mut a);
            slow.start(now, &mut b);
            let mut pending: Vec<Command> = Vec::new();
            let mut queued_at_some_point = false;
            for _ in 0..400 {
                assert_eq!(a.commands, b.commands, "seed {seed}");
                assert_eq!(a.notes, b.notes, "seed {seed}");
                for n in fast.nodes() {
                    assert_eq!(n.servers.len() as u32, n.active, "seed {seed}: a node's server list matches its count");
                }
                queued_at_some_point |= fast.queue_len() > 1;
                pending.append(&mut a.commands);
                a.clear();
                b.clear();
                now += rng.random_range(0..90) * SECOND;
                let server = ServerId(rng.random_range(0..40));
                match rng.random_range(0..6) {
                    0 | 1 => {
                        fast.request_start(now, server, &mut a);
                        slow.request_start(now, server, &mut b);
                    }
                    2 | 3 => {
                        fast.wanted_end(now, server, &mut a);
                        slow.wanted_end(now, server, &mut b);
                    }
                    _ if !pending.is_empty() => {
                        // Deliver a random outstanding command's completion or timer.
                        match pending.swap_remove(rng.random_range(0..pending.len())) {
                            Command::Place { server, placement, .. } => {
                                fast.boot_complete(now, server, placement, &mut a);
                                slow.boot_complete(now, server, placement, &mut b);
                            }
                            Command::CreateVm { node, .. } => {
                                fast.node_ready(now, node, &mut a);
                                slow.node_ready(now, node, &mut b);
                            }
                            Command::Wake { timer, at } => {
                                now = now.max(at);
                                fast.timer(now, timer, &mut a);
                                slow.timer(now, timer, &mut b);
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            assert!(queued_at_some_point, "seed {seed} never exercised the queue");
            assert_eq!(fast.queue_len(), slow.queue_len());
        }
    }

    #[test]
    fn preemptible_jobs_yield_to_paying_servers_after_their_notice() {
        let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
        let mut s = Scheduler::new(config, &[node(8192)], vec![spec(4096)]);
        let mut out = Outbox::default();
        // A 6 GiB job takes the idle node.
        let job0 = s.submit_job(0, 6144, &mut out);
        assert_eq!(out.commands, vec![Command::StartJob { job: job0, node: NodeId(0) }]);
        out.clear();
        // A paying 4 GiB server cannot fit (2 GiB free): it queues and the job gets notice.
        s.request_start(10 * SECOND, ServerId(0), &mut out);
        assert!(s.is_queued(ServerId(0)));
        assert!(out.commands.contains(&Command::NoticeJob { job: job0, node: NodeId(0), kill_at: 310 * SECOND }));
        out.clear();
        // A second job waits: a paying request is queued.
        let job1 = s.submit_job(20 * SECOND, 1024, &mut out);
        assert!(out.commands.is_empty());
        // The notice runs out: the job is killed, the server placed, then the waiting job
        // takes what is left (8192 − 4096 ≥ 1024).
        s.timer(310 * SECOND, Timer::JobKill { job: job0 }, &mut out);
        assert_eq!(out.commands[0], Command::KillJob { job: job0, node: NodeId(0) });
        assert!(matches!(out.commands[1], Command::Place { server: ServerId(0), node: NodeId(0), .. }));
        assert_eq!(out.commands[2], Command::StartJob { job: job1, node: NodeId(0) });
        assert_eq!(s.node(NodeId(0)).job_mib, 1024);
    }

    #[test]
    fn the_scan_skips_what_does_not_fit_and_keeps_arrival_order() {
        // One 12 GiB node. a (12 GiB) runs; b (8), c (2), d (4) queue in that order.
        // a stops → 12 GiB free: b fits (4 left), c fits (2 left), d does not.
        let mut s = Scheduler::new(
            SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) },
            &[node(12288)],
            vec![spec(12288), spec(8192), spec(2048), spec(4096)],
        );
        let mut out = Outbox::default();
        for i in 0..4 {
            s.request_start(i * SECOND, ServerId(i as u32), &mut out);
        }
        assert_eq!(s.queue_len(), 3);
        out.clear();
        s.wanted_end(10 * SECOND, ServerId(0), &mut out);
        let placed: Vec<u32> = out
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Place { server, .. } => Some(server.0),
                _ => None,
            })
            .collect();
        assert_eq!(placed, vec![1, 2]);
        assert!(s.is_queued(ServerId(3)));
    }
}
