//! The intents not yet done: what each one acts on (its target and nodes, which orders
//! them), retries with seeded jitter, and their adoption after a restart.

use super::Healing;
use crate::archive::ArchiveRef;
use conductor_core::Millis;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The reason of the backup taken before a restore replaces the world.
pub const PRE_RESTORE: &str = "pre-restore";

/// An external action, in store ids (what a restarted controller can resume).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create (restore) and start `server`'s container on `node`.
    Place {
        server: i64,
        node: i64,
        restore: RestoreFrom,
    },
    /// Stop it gracefully; the world stays in its volume.
    Stop {
        server: i64,
        node: i64,
    },
    /// Archive its world from `node` (verified), then remove the node copy.
    Archive {
        server: i64,
        node: i64,
        key: String,
    },
    /// Remove what a failed placement left (the world too unless `keep_data`).
    Discard {
        server: i64,
        node: i64,
        keep_data: bool,
    },
    /// Remove a container (and with `volume` its world): deleted servers, strays.
    Remove {
        server: i64,
        node: i64,
        volume: bool,
    },
    CreateVm {
        node: i64,
        name: String,
        vm_type: String,
    },
    /// Delete the VM of this name (the node row, if the store knows it).
    DeleteVm {
        node: Option<i64>,
        name: String,
    },
    /// Copy its world from `node` into the archive store as a backup (verified; the node
    /// copy stays). Runs beside the server's lifecycle intents: a start never waits for it.
    Backup {
        server: i64,
        node: i64,
        key: String,
        /// `stop`, `schedule`, `manual` or `pre-restore`.
        reason: String,
    },
    /// Replace its stopped world on `node` by `backup` (the current world was backed up by
    /// a `pre-restore` backup just before, on the same target).
    RestoreBackup {
        server: i64,
        node: i64,
        backup: ArchiveRef,
    },
    /// Delete an object of the archive store (a backup let go, a deleted server's copies).
    DropObject {
        server: i64,
        key: String,
    },
    /// Tell the players on a running server (its template's console): an announcement.
    /// Best effort: given up after the retries, and never holding up its lifecycle.
    Say {
        server: i64,
        node: i64,
        text: String,
    },
    /// Run a preemptible job's container on `node` (given up after the retries: the job
    /// failed).
    RunJob {
        job: i64,
        node: i64,
    },
    /// The job's notice: SIGTERM (best effort: it is killed when the notice runs out).
    SignalJob {
        job: i64,
        node: i64,
    },
    /// Kill and remove the job's container.
    RemoveJob {
        job: i64,
        node: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum RestoreFrom {
    None,
    Archive,
    Node { node: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Target {
    Server(i64),
    Vm(String),
    /// A server's backups (taken beside its lifecycle).
    Backups(i64),
    /// What is said on a server's console (beside its lifecycle).
    Console(i64),
    /// A preemptible job's container.
    Job(i64),
    Object(String),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Place { .. } => "place",
            Action::Stop { .. } => "stop",
            Action::Archive { .. } => "archive",
            Action::Discard { .. } => "discard",
            Action::Remove { .. } => "remove",
            Action::CreateVm { .. } => "create_vm",
            Action::DeleteVm { .. } => "delete_vm",
            Action::Backup { .. } => "backup",
            Action::RestoreBackup { .. } => "restore_backup",
            Action::DropObject { .. } => "drop_object",
            Action::Say { .. } => "say",
            Action::RunJob { .. } => "run_job",
            Action::SignalJob { .. } => "signal_job",
            Action::RemoveJob { .. } => "remove_job",
        }
    }

    pub(super) fn target(&self) -> Target {
        match self {
            Action::Place { server, .. }
            | Action::Stop { server, .. }
            | Action::Archive { server, .. }
            | Action::Discard { server, .. }
            | Action::Remove { server, .. }
            | Action::RestoreBackup { server, .. } => Target::Server(*server),
            Action::CreateVm { name, .. } | Action::DeleteVm { name, .. } => Target::Vm(name.clone()),
            // A pre-restore backup goes before the restore; the others beside the lifecycle.
            Action::Backup { server, reason, .. } if reason == PRE_RESTORE => Target::Server(*server),
            Action::Backup { server, .. } => Target::Backups(*server),
            Action::DropObject { key, .. } => Target::Object(key.clone()),
            Action::Say { server, .. } => Target::Console(*server),
            Action::RunJob { job, .. } | Action::SignalJob { job, .. } | Action::RemoveJob { job, .. } => {
                Target::Job(*job)
            }
        }
    }

    /// Whether repeated failure ends it (and the core decides what next); the others must
    /// happen eventually and are retried for as long as it takes.
    pub(super) fn gives_up(&self) -> bool {
        matches!(
            self,
            Action::Place { .. }
                | Action::CreateVm { .. }
                | Action::Say { .. }
                | Action::RunJob { .. }
                | Action::SignalJob { .. }
        )
    }

    /// The nodes (store ids) it acts on.
    pub(super) fn nodes(&self) -> Vec<i64> {
        match self {
            Action::Place { node, restore: RestoreFrom::Node { node: from }, .. } => vec![*node, *from],
            Action::Place { node, .. }
            | Action::Stop { node, .. }
            | Action::Archive { node, .. }
            | Action::Discard { node, .. }
            | Action::Remove { node, .. }
            | Action::Backup { node, .. }
            | Action::RestoreBackup { node, .. }
            | Action::Say { node, .. }
            | Action::RunJob { node, .. }
            | Action::SignalJob { node, .. }
            | Action::RemoveJob { node, .. } => vec![*node],
            Action::CreateVm { .. } | Action::DeleteVm { .. } | Action::DropObject { .. } => Vec::new(),
        }
    }

    /// The server whose container or world it acts on.
    pub(super) fn server(&self) -> Option<i64> {
        match self {
            Action::Place { server, .. }
            | Action::Stop { server, .. }
            | Action::Archive { server, .. }
            | Action::Discard { server, .. }
            | Action::Remove { server, .. }
            | Action::Backup { server, .. }
            | Action::RestoreBackup { server, .. }
            | Action::Say { server, .. } => Some(*server),
            Action::CreateVm { .. }
            | Action::DeleteVm { .. }
            | Action::DropObject { .. }
            | Action::RunJob { .. }
            | Action::SignalJob { .. }
            | Action::RemoveJob { .. } => None,
        }
    }
}

/// An intent not yet done.
pub(super) struct Pending {
    pub(super) store_id: i64,
    pub(super) key: String,
    pub(super) action: Action,
    pub(super) attempts: u32,
    pub(super) next_at: Millis,
    pub(super) in_flight: bool,
    /// Operators were told it keeps failing.
    pub(super) alerted: bool,
    /// When it was first asked for, and whether it was reported as old.
    pub(super) since: Millis,
    pub(super) stale: bool,
}

/// The intents not yet done, in the order they were asked for.
pub(super) struct Intents {
    pub(super) items: BTreeMap<u64, Pending>,
    pub(super) next: u64,
    /// Makes keys unique across restarts (the seq of this start-up's `controller.started`).
    pub(super) base: i64,
    pub(super) rng: rand::rngs::StdRng,
}

impl Intents {
    pub(super) fn new(base: i64, seed: u64) -> Intents {
        Intents { items: BTreeMap::new(), next: 0, base, rng: rand::rngs::StdRng::seed_from_u64(seed) }
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether an intent on `server` that acts on `node` (store ids) is not yet done. A
    /// backup does not count: it only reads, and must not hold up the removal of a second
    /// copy (it is unnecessary once the world has left).
    pub(super) fn for_server_on(&self, server: i64, node: i64) -> bool {
        self.items.values().any(|p| {
            p.action.server() == Some(server)
                && p.action.nodes().contains(&node)
                && !matches!(&p.action, Action::Backup { reason, .. } if reason != PRE_RESTORE)
        })
    }

    /// The (server, node) pairs the intent `local` acts on.
    pub(super) fn touches(&self, local: u64) -> Vec<(i64, i64)> {
        let Some(p) = self.items.get(&local) else { return Vec::new() };
        let Some(s) = p.action.server() else { return Vec::new() };
        p.action.nodes().into_iter().map(|n| (s, n)).collect()
    }

    /// Whether a placement, a restore of a backup, or the backup before one is pending.
    pub(super) fn placing_or_pending(&self, server: i64) -> bool {
        self.items.values().any(|p| match &p.action {
            Action::Place { server: s, .. } | Action::RestoreBackup { server: s, .. } => *s == server,
            Action::Backup { server: s, reason, .. } => *s == server && reason == PRE_RESTORE,
            _ => false,
        })
    }

    /// The stored copies pending intents write or read (never garbage).
    pub(super) fn object_keys(&self) -> Vec<String> {
        self.items
            .values()
            .filter_map(|p| match &p.action {
                Action::Archive { key, .. } | Action::Backup { key, .. } => Some(key.clone()),
                Action::RestoreBackup { backup, .. } => Some(backup.key.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether a pending restore uses the stored copy `key`.
    pub(super) fn restores_from(&self, key: &str) -> bool {
        self.items.values().any(|p| matches!(&p.action, Action::RestoreBackup { backup, .. } if backup.key == key))
    }

    /// Whether a backup of `server` is pending.
    pub(super) fn backing_up(&self, server: i64) -> bool {
        self.items.values().any(|p| matches!(&p.action, Action::Backup { server: s, .. } if *s == server))
    }

    /// Whether the deletion of the VM `node` (a store id) waits to be carried out.
    pub(super) fn deletes_vm(&self, node: i64) -> bool {
        self.items.values().any(|p| matches!(&p.action, Action::DeleteVm { node: Some(n), .. } if *n == node))
    }

    /// Whether a placement of `server` still has its world to copy (from the archive or
    /// another node; waiting for a copy slot or under way): its start waits for the copy.
    pub(super) fn copying(&self, server: i64) -> bool {
        self.items.values().any(|p| {
            matches!(&p.action, Action::Place { server: s, restore, .. } if *s == server && *restore != RestoreFrom::None)
        })
    }

    /// Whether a placement of `server` is under way.
    pub(super) fn placing(&self, server: i64) -> bool {
        self.items.values().any(|p| p.in_flight && matches!(&p.action, Action::Place { server: s, .. } if *s == server))
    }

    /// A node answers again: what waits for it is tried at once.
    pub(super) fn kick(&mut self, node: i64, now: Millis) {
        for p in self.items.values_mut().filter(|p| p.action.nodes().contains(&node)) {
            // Its failures were the node's silence: the backoff starts over.
            p.next_at = p.next_at.min(now);
            if !p.action.gives_up() {
                p.attempts = 0;
            }
        }
    }

    /// Each pending intent: key, attempts, when it is tried next, in flight.
    pub(super) fn describe(&self) -> Vec<(String, u32, Millis, bool)> {
        self.items.values().map(|p| (p.key.clone(), p.attempts, p.next_at, p.in_flight)).collect()
    }

    pub(super) fn for_vm(&self, name: &str) -> bool {
        self.items.values().any(|p| p.action.target() == Target::Vm(name.to_owned()))
    }

    /// Queues an intent (recorded in the store as `store_id`); returns its local number.
    pub(super) fn push(&mut self, store_id: i64, key: String, action: Action, since: Millis, now: Millis) -> u64 {
        let local = self.next;
        self.next += 1;
        let p = Pending {
            store_id,
            key,
            action,
            attempts: 0,
            next_at: now,
            in_flight: false,
            alerted: false,
            since,
            stale: false,
        };
        self.items.insert(local, p);
        local
    }

    /// Adopts an intent a previous run left pending.
    pub(super) fn resume(&mut self, store_id: i64, key: String, action: Action, since: Millis, now: Millis) {
        self.push(store_id, key, action, since, now);
    }

    /// Drops the pending intents of `server` of this kind (a start timeout ends its
    /// placement's intent). Returns their store ids.
    pub(super) fn cancel(&mut self, server: i64, kind: &str) -> Vec<i64> {
        let gone: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, p)| !p.in_flight && p.action.server() == Some(server) && p.action.kind() == kind)
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter().filter_map(|k| self.items.remove(&k)).map(|p| p.store_id).collect()
    }

    /// Drops a waiting placement of `server` (not under way).
    pub(super) fn cancel_place(&mut self, server: i64) -> Vec<i64> {
        let gone: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, p)| !p.in_flight && matches!(&p.action, Action::Place { server: s, .. } if *s == server))
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter().filter_map(|k| self.items.remove(&k)).map(|p| p.store_id).collect()
    }

    pub(super) fn backoff(&mut self, attempts: u32, h: &Healing) -> Millis {
        let exp = h.retry_base.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(h.retry_max);
        let jitter: f64 = self.rng.random_range(0.5..1.5);
        ((exp as f64) * jitter).round() as Millis
    }
}
