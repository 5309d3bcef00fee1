//! World copies beyond the lifecycle archive, and the world's measured size.
//!
//! - **Backups**: a copy into the archive store at every stop, every `backup_every_h` while a
//!   server runs, and on request; kept by the core's retention rule
//!   (`conductor_core::backups`). A backup runs beside the server's lifecycle intents (a
//!   start never waits for it); the backup before a restore runs before it.
//! - **Restore** of a backup into a stopped server: the world of now is backed up first.
//! - **Recovery**: the servers of a dead node come back from their newest copy (backup or
//!   archive); how much play that lost is recorded (`world.recovered`, `lost_world_minutes`).
//! - **Measured size**: every copy measures the world (its tar's size); sleeping is charged
//!   at the measured size from then on, and a world over its plan's disk (`disk_mb`) is
//!   flagged — past the hard limit it is not started.
//!
//! Backups, their deletion and measurements are events, so a restart knows them all.

use super::act::{Action, Call, Output, Verdict};
use super::intents::PRE_RESTORE;
use super::*;
use conductor_core::backups::{self, Retention};

/// How worlds are copied and measured (`[controller.backups]`, `[controller] hard_quota_pct`).
#[derive(Clone, Debug)]
pub struct Worlds {
    /// A backup at every stop.
    pub backup_on_stop: bool,
    /// A backup every this many hours while a server runs (0: none).
    pub backup_every_h: u32,
    pub retention: Retention,
    /// A world past this percentage of its plan's disk is not started (100 %: the quota).
    pub hard_quota_pct: u32,
    /// Garbage collection of the archive store.
    pub objects: super::objects::ObjectGc,
}

impl Default for Worlds {
    fn default() -> Self {
        Worlds {
            backup_on_stop: true,
            backup_every_h: 6,
            retention: Retention::default(),
            hard_quota_pct: 150,
            objects: Default::default(),
        }
    }
}

/// A backup of a server's world, as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Backup {
    /// The sequence number of its `backup.created` event.
    pub id: i64,
    pub key: String,
    pub sha256: String,
    /// Stored (compressed) bytes, and the world's size.
    pub bytes: u64,
    pub world_bytes: u64,
    /// When it was decided (the world is at least this recent).
    pub taken_at: Millis,
    /// `stop`, `schedule`, `manual` or `pre-restore`.
    pub reason: String,
}

impl Backup {
    fn of_event(e: &crate::store::Event) -> Option<Backup> {
        let d = &e.data;
        Some(Backup {
            id: e.seq,
            key: d["backup"].as_str()?.to_owned(),
            sha256: d["sha256"].as_str()?.to_owned(),
            bytes: d["bytes"].as_u64().unwrap_or(0),
            world_bytes: d["world_bytes"].as_u64().unwrap_or(0),
            taken_at: d["taken_at"].as_i64().unwrap_or(e.at),
            reason: d["reason"].as_str().unwrap_or("").to_owned(),
        })
    }

    fn archive_ref(&self) -> ArchiveRef {
        ArchiveRef {
            key: self.key.clone(),
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            world_bytes: self.world_bytes,
        }
    }
}

/// A world's measured size and its plan's limits (the API's `world` field).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorldSize {
    /// Measured size (MB), if it was measured.
    pub measured_mb: Option<u64>,
    /// The plan's disk (0: no quota), and the size past which it is not started.
    pub quota_mb: u64,
    pub hard_limit_mb: Option<u64>,
    pub over_quota: bool,
}

/// When a copy was decided, from its name (`<letter><server>-<ms>.tar.zst`).
pub(super) fn key_time(key: &str) -> Option<Millis> {
    let rest = key.split_once('-')?.1;
    rest.split('.').next()?.parse().ok()
}

/// Whole MB (10^6 bytes), rounded up: what sleeping is charged for.
fn mb_of(bytes: u64) -> u64 {
    bytes.div_ceil(1_000_000)
}

/// What the world replay of the event log found (start-up).
#[derive(Default)]
pub(super) struct Replay {
    pub(super) backups: HashMap<i64, Vec<Backup>>,
    pub(super) measured: HashMap<i64, u64>,
}

impl Replay {
    /// One event of the log, oldest first.
    pub(super) fn on(&mut self, e: &crate::store::Event) {
        let Some(server) = e.server else { return };
        match e.kind.as_str() {
            BACKUP_CREATED => {
                if let Some(b) = Backup::of_event(e) {
                    self.backups.entry(server).or_default().push(b);
                }
            }
            BACKUP_DELETED => {
                let id = e.data["backup"].as_i64();
                if let Some(list) = self.backups.get_mut(&server) {
                    list.retain(|b| Some(b.id) != id);
                }
            }
            WORLD_MEASURED => {
                if let Some(mb) = e.data["world_mb"].as_u64() {
                    self.measured.insert(server, mb);
                }
            }
            _ => {}
        }
    }
}

impl<S: Store> Live<S> {
    /// A server's backups, oldest first.
    pub fn backups(&self, store_id: i64) -> Result<Vec<Backup>, LiveError> {
        self.id_of(store_id)?;
        Ok(self.backups.get(&store_id).cloned().unwrap_or_default())
    }

    /// A server's measured size and quota.
    pub fn world_size(&self, store_id: i64) -> Result<WorldSize, LiveError> {
        let id = self.id_of(store_id)?;
        let quota_mb = self.plan_disk_mb[id.0 as usize];
        let measured_mb = self.measured.get(&store_id).copied();
        Ok(WorldSize {
            measured_mb,
            quota_mb,
            hard_limit_mb: (quota_mb > 0).then(|| self.hard_limit_mb(quota_mb)),
            over_quota: quota_mb > 0 && measured_mb.is_some_and(|m| m > quota_mb),
        })
    }

    fn hard_limit_mb(&self, quota_mb: u64) -> u64 {
        quota_mb * u64::from(self.cfg.worlds.hard_quota_pct) / 100
    }

    /// Refuses a start of a world past its plan's hard limit.
    pub(super) fn check_quota(&self, store_id: i64) -> Result<(), LiveError> {
        let w = self.world_size(store_id)?;
        match (w.measured_mb, w.hard_limit_mb) {
            (Some(m), Some(limit)) if m > limit => {
                Err(LiveError::OverQuota { world_mb: m, quota_mb: w.quota_mb, limit_mb: limit })
            }
            _ => Ok(()),
        }
    }

    /// Where the world of a stopped server is: on a node (sleeping) or in the archive.
    fn stopped_world(&self, store_id: i64) -> Result<Option<NodeId>, LiveError> {
        let id = self.id_of(store_id)?;
        let busy = self.core.is_queued(id) || self.intents.placing_or_pending(store_id);
        match self.core.residence(id) {
            Residence::Sleeping { node } if !busy => Ok(Some(node)),
            Residence::Archived if !busy => Ok(None),
            Residence::New => Err(LiveError::Conflict {
                code: "no_world",
                message: "the server has never run: it has no world yet".into(),
            }),
            _ => Err(LiveError::Conflict {
                code: "server_running",
                message: "the server must be stopped first (POST /v1/servers/{id}/stop)".into(),
            }),
        }
    }

    /// Queues a backup of `server`'s world on `node`.
    pub(super) async fn backup(&mut self, now: Millis, server: i64, node: i64, reason: &str) -> Result<(), LiveError> {
        let key = format!("b{server}-{now}.tar.zst");
        self.enqueue(now, Action::Backup { server, node, key, reason: reason.into() }, None).await
    }

    /// A backup now (the API): of the running or sleeping world; an archived world is a
    /// copy in the store already and needs none.
    pub async fn backup_now(&mut self, store_id: i64, now: Millis) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        let node = match self.core.residence(id) {
            Residence::Running { node } | Residence::Sleeping { node } | Residence::Starting { node } => node,
            Residence::Archived => {
                return Err(LiveError::Conflict {
                    code: "archived",
                    message: "the world is archived: its archive is a copy already".into(),
                })
            }
            Residence::New => {
                return Err(LiveError::Conflict { code: "no_world", message: "the server has never run".into() })
            }
        };
        let node = self.nid(node);
        self.backup(now, store_id, node, "manual").await
    }

    /// Restores backup `backup` (an id of [`Live::backups`]) into the stopped `store_id`; the
    /// world of now is backed up first. A sleeping world is rewritten on its node; an
    /// archived one is replaced by the backup (its next start restores that).
    pub async fn restore_backup(&mut self, store_id: i64, backup: i64, now: Millis) -> Result<(), LiveError> {
        let b = self
            .backups
            .get(&store_id)
            .and_then(|l| l.iter().find(|b| b.id == backup))
            .cloned()
            .ok_or(LiveError::Store(StoreError::NotFound { what: "backup", id: backup.to_string() }))?;
        let id = self.id_of(store_id)?;
        match self.stopped_world(store_id)? {
            Some(node) => {
                let node = self.nid(node);
                self.backup(now, store_id, node, PRE_RESTORE).await?;
                self.enqueue(now, Action::RestoreBackup { server: store_id, node, backup: b.archive_ref() }, None)
                    .await?;
            }
            None => {
                // The backup becomes the archive (its next start restores it), and the archive
                // of now a backup (no copy: it is one already).
                let r = b.archive_ref();
                let data = json!({ "archive": r.key, "sha256": r.sha256, "bytes": r.bytes, "world_bytes": r.world_bytes, "restored_backup": b.id });
                self.event(now, SERVER_ARCHIVED, Some(store_id), None, data).await?;
                let old = self.archives.insert(id, r);
                self.event(now, BACKUP_RESTORED, Some(store_id), None, json!({ "backup": b.id, "key": b.key })).await?;
                if let Some(old) = old {
                    let taken_at = key_time(&old.key).unwrap_or(now);
                    self.record_backup(now, store_id, &old, PRE_RESTORE, taken_at).await?;
                }
                self.measured(now, store_id, b.world_bytes).await?;
            }
        }
        Ok(())
    }

    /// Deletes a backup (the API, or the retention rule).
    pub async fn delete_backup(&mut self, store_id: i64, backup: i64, now: Millis, why: &str) -> Result<(), LiveError> {
        let list = self.backups.entry(store_id).or_default();
        let Some(i) = list.iter().position(|b| b.id == backup) else {
            return Err(LiveError::Store(StoreError::NotFound { what: "backup", id: backup.to_string() }));
        };
        let b = list.remove(i);
        self.event(now, BACKUP_DELETED, Some(store_id), None, json!({ "backup": b.id, "key": b.key, "why": why }))
            .await?;
        // The copy an archived server starts from, or a restore is about to use, stays.
        if !self.archives.values().any(|r| r.key == b.key) && !self.intents.restores_from(&b.key) {
            self.enqueue(now, Action::DropObject { server: store_id, key: b.key }, None).await?;
        }
        Ok(())
    }

    async fn record_backup(
        &mut self,
        now: Millis,
        store_id: i64,
        r: &ArchiveRef,
        reason: &str,
        taken_at: Millis,
    ) -> Result<(), LiveError> {
        let data = json!({
            "backup": r.key, "sha256": r.sha256, "bytes": r.bytes, "world_bytes": r.world_bytes,
            "reason": reason, "taken_at": taken_at,
        });
        let seq = self.event_seq(now, BACKUP_CREATED, Some(store_id), None, data).await?;
        let b = Backup {
            id: seq,
            key: r.key.clone(),
            sha256: r.sha256.clone(),
            bytes: r.bytes,
            world_bytes: r.world_bytes,
            taken_at,
            reason: reason.into(),
        };
        self.backups.entry(store_id).or_default().push(b);
        // The retention rule, for this server.
        let list = &self.backups[&store_id];
        let taken: Vec<Millis> = list.iter().map(|b| b.taken_at).collect();
        let expired: Vec<i64> =
            self.cfg.worlds.retention.expired(&taken, now).into_iter().map(|i| list[i].id).collect();
        for id in expired {
            self.delete_backup(store_id, id, now, "retention").await?;
        }
        Ok(())
    }

    /// The world of `store_id` was measured (a copy's tar size; 0: unknown).
    pub(super) async fn measured(&mut self, now: Millis, store_id: i64, world_bytes: u64) -> Result<(), LiveError> {
        if world_bytes == 0 || !self.by_store_id.contains_key(&store_id) {
            return Ok(());
        }
        let mb = mb_of(world_bytes);
        if self.measured.get(&store_id) == Some(&mb) {
            return Ok(());
        }
        let was_over = self.world_size(store_id)?.over_quota;
        self.measured.insert(store_id, mb);
        // The core counts its node's disk at this size (and archives sleepers there early
        // if the node passed its watermark).
        let id = self.by_store_id[&store_id];
        self.core.set_world_mb(id, mb, &mut self.out);
        let data = json!({ "world_bytes": world_bytes, "world_mb": mb });
        self.event(now, WORLD_MEASURED, Some(store_id), None, data).await?;
        let w = self.world_size(store_id)?;
        if w.over_quota && !was_over {
            let data = json!({ "world_mb": mb, "quota_mb": w.quota_mb, "hard_limit_mb": w.hard_limit_mb });
            self.event(now, WORLD_OVER_QUOTA, Some(store_id), None, data).await?;
            let text = format!(
                "Server {store_id}: its world is {mb} MB, over its plan's {} MB; past {} MB it will not start.",
                w.quota_mb,
                w.hard_limit_mb.unwrap_or(0)
            );
            self.notify(now, text).await?;
        }
        Ok(())
    }

    /// Scheduled backups: each running server `backup_every_h` after its start or its
    /// newest backup (one at a time).
    pub(super) async fn schedule_backups(&mut self, now: Millis) -> Result<(), LiveError> {
        let every = self.cfg.worlds.backup_every_h;
        if every == 0 {
            return Ok(());
        }
        let mut due = Vec::new();
        for (i, &store_id) in self.server_ids.iter().enumerate() {
            let Residence::Running { node } = self.core.residence(ServerId(i as u32)) else { continue };
            let Some((crate::billing::Phase::Active, since)) = self.usage[i].phase() else { continue };
            let newest = self.backups.get(&store_id).and_then(|l| l.iter().map(|b| b.taken_at).max());
            if backups::due(every, since, newest, now) && !self.intents.backing_up(store_id) {
                due.push((store_id, self.nid(node)));
            }
        }
        for (store_id, node) in due {
            self.backup(now, store_id, node, "schedule").await?;
        }
        Ok(())
    }

    /// The servers of a dead node come back from their newest copy: a backup newer than the
    /// archive becomes the archive they restore from. How much play is lost is recorded.
    pub(super) async fn recover(&mut self, now: Millis, server: ServerId, was_active: bool) -> Result<(), LiveError> {
        let store_id = self.server_ids[server.0 as usize];
        // What the world had when it was last known: the node's silence (running), its stop.
        let last_seen = if was_active { self.dead_since.unwrap_or(now) } else { self.core.stopped_at(server) };
        let archive = self.archives.get(&server).map(|r| (key_time(&r.key).unwrap_or(Millis::MIN), r.clone()));
        let backup = self
            .backups
            .get(&store_id)
            .and_then(|l| l.iter().max_by_key(|b| (b.taken_at, b.id)))
            .map(|b| (b.taken_at, b.archive_ref()));
        let newest = match (archive, backup) {
            (Some(a), Some(b)) if b.0 > a.0 => Some((b, true)),
            (Some(a), _) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let data = match &newest {
            Some(((at, r), _)) => json!({
                "from": r.key,
                "copy_taken_at": at,
                "last_seen": last_seen,
                "lost_world_minutes": backups::lost_minutes(*at, last_seen),
            }),
            None => json!({ "from": null, "last_seen": last_seen, "lost_world_minutes": null }),
        };
        if let Some(((_, r), true)) = newest {
            let data = json!({ "archive": r.key, "sha256": r.sha256, "bytes": r.bytes, "world_bytes": r.world_bytes, "recovered": true });
            self.event(now, SERVER_ARCHIVED, Some(store_id), None, data).await?;
            self.archives.insert(server, r);
        }
        self.event(now, WORLD_RECOVERED, Some(store_id), None, data).await?;
        Ok(())
    }

    /// The call of a backup, a restore of one, or a deletion of a stored object.
    pub(super) fn resolve_world(&self, action: &Action) -> Result<Call, Verdict> {
        match action {
            Action::Backup { server, node, key, .. } => {
                let (core_node, d) = self.driver(*node)?;
                let id = *self.by_store_id.get(server).ok_or_else(|| Verdict::Unnecessary("server unknown".into()))?;
                match self.core.residence(id) {
                    Residence::Running { node } | Residence::Sleeping { node } | Residence::Starting { node }
                        if node == core_node =>
                    {
                        Ok(Call::Backup { node: d, server: *server, key: key.clone() })
                    }
                    _ => Err(Verdict::Unnecessary("the world is no longer on that node".into())),
                }
            }
            Action::RestoreBackup { server, node, backup } => {
                let (core_node, d) = self.driver(*node)?;
                let id = *self.by_store_id.get(server).ok_or_else(|| Verdict::Unnecessary("server unknown".into()))?;
                if self.core.residence(id) != (Residence::Sleeping { node: core_node }) {
                    return Err(Verdict::Failed(crate::driver::DriverError::permanent(
                        "the world is no longer stopped on that node",
                    )));
                }
                Ok(Call::RestoreBackup { node: d, spec: self.container(id, *node), backup: backup.clone() })
            }
            Action::DropObject { key, .. } => Ok(Call::DropObject { key: key.clone() }),
            _ => unreachable!("not a world action"),
        }
    }

    /// What a world action did.
    pub(super) async fn world_done(&mut self, now: Millis, action: &Action, out: Output) -> Result<(), LiveError> {
        match action {
            Action::Backup { server, key, reason, .. } => {
                let Output::Archived(r) = out else { return Ok(()) };
                let taken_at = key_time(key).unwrap_or(now);
                self.record_backup(now, *server, &r, reason, taken_at).await?;
                self.measured(now, *server, r.world_bytes).await?;
            }
            Action::RestoreBackup { server, node, backup } => {
                let data = json!({ "key": backup.key, "sha256": backup.sha256 });
                self.event(now, BACKUP_RESTORED, Some(*server), Some(*node), data).await?;
                self.measured(now, *server, backup.world_bytes).await?;
            }
            Action::DropObject { server, key } => {
                self.metrics.gc_removed += 1;
                self.event(now, GC_REMOVED, Some(*server), None, json!({ "what": "object", "key": key })).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_name_gives_its_time_and_sizes_round_up_to_whole_mb() {
        assert_eq!(key_time("b12-1760000000000.tar.zst"), Some(1_760_000_000_000));
        assert_eq!(key_time("s3-99.tar.gz"), Some(99));
        assert_eq!(key_time("nonsense"), None);
        assert_eq!(mb_of(1), 1);
        assert_eq!(mb_of(2_000_000), 2);
        assert_eq!(mb_of(2_000_001), 3);
    }
}
