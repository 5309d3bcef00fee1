//! What the scheduler answers with: commands for the driver, timers it wants back, and
//! notes (facts for the event log and the KPIs).

use crate::model::{NodeId, ServerId};
use crate::policy::Utilisation;
use crate::time::Millis;

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
    /// A staged copy of the archived world is on the target node (SPEC §6): boot only.
    Staged,
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
    /// Copy the archived world of `server` onto `node` ahead of a predicted start (the archive
    /// stays the copy of record); report [`Scheduler::world_staged`] when it is there.
    Stage { server: ServerId, node: NodeId },
    /// Delete the staged copy of `server` on `node` (unused; the archive has the world).
    Unstage { server: ServerId, node: NodeId },
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
