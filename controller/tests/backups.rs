//! Backups and measured worlds on in-memory drivers with a virtual clock: backups at every
//! stop and every `backup_every_h` while running, with sizes and checksums; the retention
//! rule removes exactly what it says (by hand below); restoring a backup brings its world
//! back and backs up the world of now first; a dead node's server restarts from its newest
//! backup and the play it lost is recorded; sleeping is charged at the measured size; a
//! world past its plan's hard limit is not started; a node's disk filled by measured worlds
//! takes no more (the core's disk rule, as in the twin); bad requests are refused clearly.

use conductor_controller::archive::{collect, sha256_hex, ArchiveRef};
use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::events::*;
use conductor_controller::fake::{Clock, FakeNode, Faults, MemArchive};
use conductor_controller::live::{
    DedicatedNode, GameAccess, Healing, Live, LiveConfig, LiveError, Mode, ObjectGc, Worlds,
};
use conductor_controller::store::{Event, NewEntry, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::backups::Retention;
use conductor_core::model::CostMode;
use conductor_core::scheduler::DiskRule;
use conductor_core::{Millis, NodeId, Residence, SchedulerConfig, ServerId};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;

const MIN: Millis = 60_000;
const HOUR: Millis = 60 * MIN;
/// 2026-11-30 22:00 UTC (a Monday evening): the first day boundary is two hours on.
const T0: Millis = 1_796_076_000_000;

struct Rig {
    clock: Arc<Clock>,
    nodes: Vec<Arc<FakeNode>>,
    store: Arc<MemoryStore>,
    archive: Arc<MemArchive>,
    live: Live<MemoryStore>,
    owner: i64,
    worlds: Worlds,
    disk: Option<NodeDisk>,
}

/// Nodes of this type with this disk rule (default: AX41s, the reference policy's no rule).
type NodeDisk = (conductor_core::DedicatedType, DiskRule);

async fn rig(nodes: usize, worlds: Worlds, servers: &[u64]) -> (Rig, Vec<i64>) {
    rig_with(nodes, worlds, servers, None).await
}

async fn rig_with(nodes: usize, worlds: Worlds, servers: &[u64], disk: Option<NodeDisk>) -> (Rig, Vec<i64>) {
    let clock = Clock::new(T0);
    let fakes: Vec<Arc<FakeNode>> =
        (0..nodes).map(|i| FakeNode::new(&format!("ded-{i}"), clock.clone(), Faults::none(), 0)).collect();
    let store = Arc::new(MemoryStore::new());
    let owner = store.create_owner("o", T0).await.unwrap().id;
    store.post(NewEntry::topup(owner, Decimal::from(100), "credit", T0)).await.unwrap();
    let mut ids = Vec::new();
    for (i, &disk_mb) in servers.iter().enumerate() {
        let s = NewServer {
            owner,
            name: format!("s{i}"),
            ram_mib: 1024,
            disk_mb,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        ids.push(store.create_server(s, T0).await.unwrap().id);
    }
    let archive = Arc::new(MemArchive::memory());
    let cfg = config(&fakes, &archive, worlds.clone(), disk.clone());
    let live = Live::start(store.clone(), cfg, T0).await.unwrap();
    (Rig { clock, nodes: fakes, store, archive, live, owner, worlds, disk }, ids)
}

fn config(nodes: &[Arc<FakeNode>], archive: &Arc<MemArchive>, worlds: Worlds, disk: Option<NodeDisk>) -> LiveConfig {
    let mut scheduler = SchedulerConfig::reference(conductor_controller::fake::cx23(), 0);
    scheduler.dead_after = 5 * MIN;
    scheduler.disk = disk.as_ref().map(|d| d.1);
    let kind = disk.map_or_else(conductor_controller::fake::ax41, |d| d.0);
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds,
        game: GameAccess::default(),
        scheduler,
        dedicated: nodes
            .iter()
            .map(|n| DedicatedNode {
                name: n.name.clone(),
                kind: kind.clone(),
                docker: n.clone() as Arc<dyn NodeDriver>,
            })
            .collect(),
        cloud: None,
        idle_timeout: 300_000,
        stop_timeout: Duration::from_secs(1),
        image: "standin".into(),
        cmd: None,
        helper: Helper { image: "standin".into(), cmd: vec![] },
        archive: archive.clone(),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing { data_wait: Duration::from_secs(30), unreachable_after: MIN, ..Healing::default() },
    }
}

impl Rig {
    /// The controller restarts (a new engine on the same store, archive and nodes).
    async fn restart(&mut self) {
        let cfg = config(&self.nodes, &self.archive, self.worlds.clone(), self.disk.clone());
        self.live = Live::start(self.store.clone(), cfg, self.clock.now()).await.unwrap();
    }

    /// Steps of one minute (virtual) for `ms`.
    async fn run(&mut self, ms: Millis) {
        let end = self.clock.now() + ms;
        while self.clock.now() < end {
            let now = self.clock.now() + MIN;
            self.clock.set(now);
            self.live.tick(now).await.unwrap();
        }
    }

    async fn events(&self, kind: &str) -> Vec<Event> {
        self.store.events(0, 100_000).await.unwrap().into_iter().filter(|e| e.kind == kind).collect()
    }

    async fn world_of(&self, r: &ArchiveRef) -> String {
        world_in(&self.archive, r).await
    }

    fn residence(&self, i: u32) -> Residence {
        self.live.core().residence(ServerId(i))
    }
}

/// The world a stored copy holds (the fake's `world:<id>:<saves>`, after any zeros).
async fn world_in(archive: &MemArchive, r: &ArchiveRef) -> String {
    let (stream, verdict) = archive.open(r).await.unwrap();
    let bytes = collect(stream).await.unwrap();
    verdict.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(64)..]).into_owned();
    text.trim_start_matches('\0').to_owned()
}

fn utc_hour(t: Millis) -> i64 {
    t.rem_euclid(24 * HOUR) / HOUR
}

fn backups_every_hour(retention: Retention) -> Worlds {
    Worlds { backup_on_stop: true, backup_every_h: 1, retention, ..Worlds::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_at_stops_and_every_hour_are_kept_by_the_retention_rule() {
    let (mut r, ids) = rig(1, backups_every_hour(Retention { last: 2, daily: 2, weekly: 0 }), &[100]).await;
    let id = ids[0];
    r.live.request_start(id, T0).await.unwrap();
    r.run(4 * HOUR + 30 * MIN).await; // to 02:30
    r.live.request_stop(id, r.clock.now()).await.unwrap();
    r.run(5 * MIN).await;
    assert!(matches!(r.residence(0), Residence::Sleeping { .. }));

    let created = r.events(BACKUP_CREATED).await;
    let reasons: Vec<(i64, &str)> = created
        .iter()
        .map(|e| (utc_hour(e.data["taken_at"].as_i64().unwrap()), e.data["reason"].as_str().unwrap()))
        .collect();
    // Started at 22:01; every hour after the start or the newest backup; then the stop.
    assert_eq!(reasons, vec![(23, "schedule"), (0, "schedule"), (1, "schedule"), (2, "schedule"), (2, "stop")]);
    // By hand: kept are the newest two (02:01, the stop at 02:3x) and the newest of each of
    // the last two days (02:3x today, 23:01 yesterday): 00:01 and 01:01 go.
    let kept = r.live.backups(id).unwrap();
    let hours: Vec<(i64, &str)> = kept.iter().map(|b| (utc_hour(b.taken_at), b.reason.as_str())).collect();
    assert_eq!(hours, vec![(23, "schedule"), (2, "schedule"), (2, "stop")]);
    let deleted: Vec<i64> = r.events(BACKUP_DELETED).await.iter().map(|e| e.data["backup"].as_i64().unwrap()).collect();
    assert_eq!(deleted, vec![created[1].seq, created[2].seq]);
    // What is kept is stored, with its size and checksum; what went is gone from the store.
    let stored: Vec<String> = r.archive.list().await.unwrap().into_iter().map(|(k, _)| k).collect();
    for b in &kept {
        let raw = r.archive.read_raw(&b.key).await.unwrap();
        assert_eq!(sha256_hex(&raw), b.sha256);
        assert_eq!(raw.len() as u64, b.bytes);
        assert_eq!(b.world_bytes, format!("world:{id}:0").len() as u64);
    }
    for e in &created[1..3] {
        let key = e.data["backup"].as_str().unwrap();
        assert!(!stored.iter().any(|k| k.contains(key.trim_end_matches(".tar.zst"))), "{key} still stored");
    }
    assert_eq!(stored.len(), 3, "{stored:?}");
    // The stop's backup holds the saved world (one save).
    assert_eq!(
        r.world_of(&ArchiveRef {
            key: kept[2].key.clone(),
            sha256: kept[2].sha256.clone(),
            bytes: kept[2].bytes,
            world_bytes: kept[2].world_bytes,
        })
        .await,
        format!("world:{id}:1")
    );

    // A restart knows the backups and the measured size as they were.
    let before = r.live.backups(id).unwrap();
    let size = r.live.world_size(id).unwrap();
    r.restart().await;
    assert_eq!(r.live.backups(id).unwrap(), before);
    assert_eq!(r.live.world_size(id).unwrap(), size);
    assert_eq!(size.measured_mb, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_backup_brings_its_world_back_and_backs_up_the_world_of_now_first() {
    let worlds = Worlds { backup_every_h: 0, ..Worlds::default() };
    let (mut r, ids) = rig(1, worlds, &[100, 100]).await;
    let (id, other) = (ids[0], ids[1]);
    // Two runs: the first stop saves world 1, the second world 2.
    for _ in 0..2 {
        r.live.request_start(id, r.clock.now()).await.unwrap();
        r.run(3 * MIN).await;
        r.live.request_stop(id, r.clock.now()).await.unwrap();
        r.run(3 * MIN).await;
    }
    let list = r.live.backups(id).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(r.nodes[0].volumes()[&id], 2);

    // Bad requests: an unknown backup, another server's, a running server.
    assert!(matches!(r.live.restore_backup(id, 999_999, r.clock.now()).await, Err(LiveError::Store(_))));
    r.live.request_start(other, r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    r.live.request_stop(other, r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    let others = r.live.backups(other).unwrap();
    assert!(matches!(r.live.restore_backup(id, others[0].id, r.clock.now()).await, Err(LiveError::Store(_))));
    r.live.request_start(other, r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    match r.live.restore_backup(other, others[0].id, r.clock.now()).await {
        Err(LiveError::Conflict { code, .. }) => assert_eq!(code, "server_running"),
        e => panic!("a running server was restored: {e:?}"),
    }

    // The first backup (world 1) into the sleeping server: world 2 is backed up first.
    r.live.restore_backup(id, list[0].id, r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    assert_eq!(r.nodes[0].volumes()[&id], 1, "the volume holds the restored world");
    let after = r.live.backups(id).unwrap();
    assert_eq!(after.len(), 3);
    let pre = &after[2];
    assert_eq!(pre.reason, "pre-restore");
    let pre_ref = ArchiveRef { key: pre.key.clone(), sha256: pre.sha256.clone(), bytes: pre.bytes, world_bytes: 0 };
    assert_eq!(r.world_of(&pre_ref).await, format!("world:{id}:2"));
    assert_eq!(r.events(BACKUP_RESTORED).await.len(), 1);
    // It starts with the restored world.
    r.live.request_start(id, r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    assert!(matches!(r.residence(0), Residence::Running { .. }));
    assert_eq!(r.nodes[0].volumes()[&id], 1);

    // Deleting: gone from the list and (once carried out) from the store.
    r.live.delete_backup(id, list[1].id, r.clock.now(), "owner").await.unwrap();
    r.run(MIN).await;
    assert!(!r.live.backups(id).unwrap().iter().any(|b| b.id == list[1].id));
    assert!(r.archive.read_raw(&list[1].key).await.is_err());
    assert!(matches!(r.live.delete_backup(id, list[1].id, r.clock.now(), "owner").await, Err(LiveError::Store(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_server_restored_from_a_backup_starts_with_that_world() {
    let worlds = Worlds { backup_every_h: 0, ..Worlds::default() };
    let (mut r, ids) = rig(1, worlds, &[100]).await;
    let id = ids[0];
    for _ in 0..2 {
        r.live.request_start(id, r.clock.now()).await.unwrap();
        r.run(3 * MIN).await;
        r.live.request_stop(id, r.clock.now()).await.unwrap();
        r.run(3 * MIN).await;
    }
    // The sleep window (48 h) ends: archived (world 2), the node copy gone.
    r.run(49 * HOUR).await;
    assert_eq!(r.residence(0), Residence::Archived);
    assert!(!r.nodes[0].volumes().contains_key(&id));
    let first = r.live.backups(id).unwrap()[0].clone();
    r.live.restore_backup(id, first.id, r.clock.now()).await.unwrap();
    // The archive of world 2 is kept as the pre-restore backup.
    let pre = r.live.backups(id).unwrap().last().cloned().unwrap();
    assert_eq!(pre.reason, "pre-restore");
    assert!(pre.key.starts_with('s'), "the archive itself: {}", pre.key);
    r.live.request_start(id, r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    assert!(matches!(r.residence(0), Residence::Running { .. }));
    assert_eq!(r.nodes[0].volumes()[&id], 1, "restored from the first backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_server_restarts_from_its_newest_backup_and_the_lost_play_is_recorded() {
    let (mut r, ids) = rig(2, backups_every_hour(Retention::default()), &[100]).await;
    let id = ids[0];
    r.live.request_start(id, T0).await.unwrap();
    r.run(90 * MIN).await;
    let Residence::Running { node } = r.residence(0) else { panic!("not running") };
    assert_eq!(node.0, 0, "first fit: ded-0");
    let newest = r.live.backups(id).unwrap().last().cloned().expect("an hourly backup");
    // ded-0 goes silent: unreachable a minute later, dead five minutes after that.
    r.nodes[0].set_silent(true);
    let silent_from = r.clock.now() + MIN;
    r.run(10 * MIN).await;
    let Residence::Running { node } = r.residence(0) else { panic!("not restarted: {:?}", r.residence(0)) };
    assert_eq!(node.0, 1, "restarted on ded-1");
    let rec = r.events(WORLD_RECOVERED).await;
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].data["from"], newest.key.as_str());
    // Placed at 22:01, answering at 22:02: the hourly backup was decided at 23:02; the node
    // was last heard at 23:31 (its first failed heartbeat): 29 minutes of play lost.
    assert_eq!(newest.taken_at, T0 + 62 * MIN);
    assert_eq!(rec[0].data["last_seen"].as_i64(), Some(silent_from));
    assert_eq!(silent_from, T0 + 91 * MIN);
    assert_eq!(rec[0].data["lost_world_minutes"].as_i64(), Some(29));
    assert!(r.nodes[1].volumes().contains_key(&id), "its world was restored on ded-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_is_charged_at_the_measured_size_and_a_world_past_its_hard_limit_does_not_start() {
    let worlds = Worlds { backup_every_h: 0, hard_quota_pct: 150, ..Worlds::default() };
    // s0 declares no disk (it would sleep for free); s1's plan has 1 MB of disk.
    let (mut r, ids) = rig(1, worlds, &[0, 1]).await;
    let (id, small) = (ids[0], ids[1]);
    r.nodes[0].set_world_bytes(id, 1_000_000_000);
    r.nodes[0].set_world_bytes(small, 2_000_000);
    for s in [id, small] {
        r.live.request_start(s, r.clock.now()).await.unwrap();
    }
    r.run(3 * MIN).await;
    for s in [id, small] {
        r.live.request_stop(s, r.clock.now()).await.unwrap();
    }
    r.run(3 * MIN).await;
    let measured = r.events(WORLD_MEASURED).await;
    let of = |s: i64| measured.iter().find(|e| e.server == Some(s)).unwrap().clone();
    assert_eq!(of(id).data["world_mb"], 1000);
    assert_eq!(of(small).data["world_mb"], 2);
    let t_m = of(id).at;
    assert_eq!(t_m.rem_euclid(MIN), T0.rem_euclid(MIN), "measured at a window's start");
    r.run(24 * HOUR + 2 * MIN).await;
    // By hand: 1 GB × 0.10 EUR per GB-month × 24 h / 720 h = 0.0033333… → 0.003333 EUR.
    let ledger = r.store.ledger(r.owner, 0, 100_000).await.unwrap();
    let slept: Decimal = ledger
        .iter()
        .filter(|e| e.server == Some(id) && e.key.contains(":sleeping:"))
        .filter(|e| e.window_start.is_some_and(|w| w < t_m + 24 * HOUR))
        .map(|e| e.amount.abs())
        .sum();
    assert_eq!(slept, Decimal::new(3333, 6));

    // The small plan: 2 MB is past 150 % of 1 MB: flagged, and not started.
    let w = r.live.world_size(small).unwrap();
    assert!(w.over_quota);
    assert_eq!((w.measured_mb, w.quota_mb, w.hard_limit_mb), (Some(2), 1, Some(1)));
    assert_eq!(r.events(WORLD_OVER_QUOTA).await.len(), 1);
    match r.live.request_start(small, r.clock.now()).await {
        Err(e @ LiveError::OverQuota { .. }) => {
            assert!(e.to_string().contains("2 MB, past the hard limit of 1 MB"), "{e}")
        }
        other => panic!("a world past its hard limit was started: {other:?}"),
    }
    assert!(!r.live.world_size(id).unwrap().over_quota, "no plan disk: no quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_is_filled_by_measured_worlds_takes_no_more_and_archives_its_oldest_sleeper() {
    // Nodes with 3 GB of disk for worlds, no watermark below full. s0 and s1 declare no disk:
    // both go to node 0 (first fit). Their stop backups measure 2 GB and 1.5 GB: 3.5 GB > 3 GB,
    // so the oldest sleeper (same stop time: the one that stopped first, s0) is archived at once, not after the
    // 48 h window — 1.5 GB left. s2 declares 2 GB: no room on node 0 (1.5 GB free) → node 1.
    let kind = conductor_core::DedicatedType { disk_gb: 3, disk_reserve_gb: 0, ..conductor_controller::fake::ax41() };
    let rule = DiskRule { high_watermark_pct: 100, keep_past_window: false };
    let worlds = Worlds { backup_every_h: 0, ..Worlds::default() };
    let (mut r, ids) = rig_with(2, worlds, &[0, 0, 2000], Some((kind, rule))).await;
    r.nodes[0].set_world_bytes(ids[0], 2_000_000_000);
    r.nodes[0].set_world_bytes(ids[1], 1_500_000_000);
    for &s in &ids[..2] {
        r.live.request_start(s, r.clock.now()).await.unwrap();
    }
    r.run(3 * MIN).await;
    assert_eq!(r.residence(1), Residence::Running { node: NodeId(0) });
    for &s in &ids[..2] {
        r.live.request_stop(s, r.clock.now()).await.unwrap();
    }
    r.run(5 * MIN).await;
    assert_eq!(r.residence(0), Residence::Archived, "archived early: the disk was full");
    assert_eq!(r.residence(1), Residence::Sleeping { node: NodeId(0) });
    let archived = r.events(SERVER_ARCHIVED).await;
    assert_eq!(archived.iter().map(|e| e.server).collect::<Vec<_>>(), vec![Some(ids[0])]);
    assert!(!r.nodes[0].volumes().contains_key(&ids[0]), "the node copy went once the archive was verified");
    assert_eq!(r.live.core().node(NodeId(0)).disk_used_mb, 1500);
    // A restart counts the same disk (measured sizes replayed) and places the same way.
    r.restart().await;
    assert_eq!(r.live.core().node(NodeId(0)).disk_used_mb, 1500);
    r.live.request_start(ids[2], r.clock.now()).await.unwrap();
    r.run(3 * MIN).await;
    assert_eq!(r.residence(2), Residence::Running { node: NodeId(1) });
    // Without the rule (the reference policy) s2 would have gone to node 0.
    let (mut blind, ids) = rig(2, Worlds { backup_every_h: 0, ..Worlds::default() }, &[0, 0, 2000]).await;
    blind.live.request_start(ids[2], blind.clock.now()).await.unwrap();
    blind.run(3 * MIN).await;
    assert_eq!(blind.residence(2), Residence::Running { node: NodeId(0) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_store_is_collected_after_a_grace_and_never_loses_a_live_worlds_copy() {
    let objects = ObjectGc { every: 5 * MIN, grace: 30 * MIN, deleted_retention: 2 * HOUR };
    let worlds = Worlds { backup_every_h: 0, objects, ..Worlds::default() };
    let (mut r, ids) = rig(1, worlds, &[100, 100]).await;
    let (kept, gone) = (ids[0], ids[1]);
    for s in [kept, gone] {
        r.live.request_start(s, r.clock.now()).await.unwrap();
    }
    r.run(3 * MIN).await;
    for s in [kept, gone] {
        r.live.request_stop(s, r.clock.now()).await.unwrap();
    }
    r.run(3 * MIN).await;
    let live_copy = r.live.backups(kept).unwrap()[0].key.clone();
    let deleted_copy = r.live.backups(gone).unwrap()[0].key.clone();
    r.live.delete_server(gone, r.clock.now()).await.unwrap();
    let deleted_at = r.clock.now();
    // What nothing references: a copy of a live server (left by a killed daemon), one of a
    // server this store does not know, and a file that is none of ours.
    let stray = format!("s{kept}-1700000000000.tar.zst");
    let foreign = "s999999-1700000000000.tar.zst";
    for k in [stray.as_str(), foreign, "snapshot-2024.tar.gz"] {
        r.archive.write_raw(k, b"x".to_vec()).await.unwrap();
    }
    let stored = |r: &Rig| {
        let a = r.archive.clone();
        async move { a.list().await.unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>() }
    };
    // Found within one listing period, removed a grace later; the rest stays.
    r.run(10 * MIN).await;
    let found: Vec<String> =
        r.events(GC_FOUND).await.iter().filter_map(|e| e.data["key"].as_str().map(str::to_owned)).collect();
    assert!(found.contains(&stray) && found.contains(&foreign.to_owned()), "{found:?}");
    assert!(stored(&r).await.contains(&stray), "not before its grace");
    r.run(35 * MIN).await;
    let now_stored = stored(&r).await;
    assert!(!now_stored.contains(&stray), "removed after its grace: {now_stored:?}");
    for k in [live_copy.as_str(), deleted_copy.as_str(), foreign, "snapshot-2024.tar.gz"] {
        assert!(now_stored.iter().any(|s| s == k), "{k} kept: {now_stored:?}");
    }
    // The deleted server's copies go once its retention and a grace have passed.
    let until = deleted_at + 2 * HOUR + 40 * MIN - r.clock.now();
    r.run(until).await;
    let now_stored = stored(&r).await;
    assert!(!now_stored.contains(&deleted_copy), "{now_stored:?}");
    assert!(now_stored.contains(&live_copy), "a live server's only backup is never collected");
    assert_eq!(r.events(GC_FOUND).await.iter().filter(|e| e.data["key"] == foreign).count(), 1, "reported once");
}

mod http {
    use super::*;
    use axum::body::Body as HttpBody;
    use axum::http::{Request, StatusCode};
    use conductor_controller::api::{router, Api, ApiConfig};
    use conductor_controller::store::token_hash;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    async fn call(app: &axum::Router, method: &str, path: &str, token: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(HttpBody::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_backup_api_lists_takes_restores_and_deletes_and_refuses_bad_requests_clearly() {
        let worlds = Worlds { backup_every_h: 0, ..Worlds::default() };
        let (r, ids) = rig(1, worlds, &[100, 1]).await;
        let (id, small) = (ids[0], ids[1]);
        r.nodes[0].set_world_bytes(small, 2_000_000);
        r.store.add_token(r.owner, token_hash("owner-token"), T0).await.unwrap();
        let stranger = r.store.create_owner("mallory", T0).await.unwrap().id;
        r.store.add_token(stranger, token_hash("stranger-token"), T0).await.unwrap();
        let clock = r.clock.clone();
        let now_clock = clock.clone();
        let api = Arc::new(Api {
            store: r.store.clone(),
            config: ApiConfig {
                admin_token_sha256: token_hash("admin-secret-token"),
                max_plan_mib: 60 * 1024,
                now: Box::new(move || now_clock.now()),
                prices: Default::default(),
                stripe_secret: None,
                warn_before: 86_400_000,
            },
            live: Some(Arc::new(tokio::sync::Mutex::new(r.live))),
            routes: Default::default(),
        });
        let app = router(api.clone());
        let run = |ms: Millis| {
            let (api, clock) = (api.clone(), clock.clone());
            async move {
                let end = clock.now() + ms;
                while clock.now() < end {
                    let now = clock.now() + MIN;
                    clock.set(now);
                    conductor_controller::serve::step(api.live.as_ref().unwrap(), now).await.unwrap();
                }
            }
        };
        let me = "owner-token";
        let (s, v) = call(&app, "POST", &format!("/v1/servers/{id}/backups"), me).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("no_world")), "{v}");

        for s in [id, small] {
            assert_eq!(call(&app, "POST", &format!("/v1/servers/{s}/start"), me).await.0, StatusCode::ACCEPTED);
        }
        run(3 * MIN).await;
        let (s, v) = call(&app, "POST", &format!("/v1/servers/{id}/backups"), me).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        for s in [id, small] {
            call(&app, "POST", &format!("/v1/servers/{s}/stop"), me).await;
        }
        run(3 * MIN).await;
        let (s, v) = call(&app, "GET", &format!("/v1/servers/{id}/backups"), me).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let list = v["backups"].as_array().unwrap().clone();
        let reasons: Vec<&str> = list.iter().map(|b| b["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, vec!["manual", "stop"]);
        assert!(list.iter().all(|b| b["sha256"].as_str().unwrap().len() == 64 && b["bytes"].as_u64().unwrap() > 0));
        assert_eq!(v["world"]["measured_mb"], 1);
        let first = list[0]["id"].as_i64().unwrap();

        // Another owner sees neither the server nor its backups; unknown ids are 404.
        let (s, _) = call(&app, "GET", &format!("/v1/servers/{id}/backups"), "stranger-token").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = call(&app, "POST", &format!("/v1/servers/{id}/backups/{first}/restore"), "stranger-token").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = call(&app, "POST", &format!("/v1/servers/{id}/backups/123456/restore"), me).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, _) = call(&app, "POST", &format!("/v1/servers/{id}/backups/nonsense/restore"), me).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let small_first = {
            let (_, v) = call(&app, "GET", &format!("/v1/servers/{small}/backups"), me).await;
            v["backups"][0]["id"].as_i64().unwrap()
        };
        let (s, _) = call(&app, "POST", &format!("/v1/servers/{id}/backups/{small_first}/restore"), me).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "a backup of another server");

        // A running server is not restored.
        call(&app, "POST", &format!("/v1/servers/{id}/start"), me).await;
        run(2 * MIN).await;
        let (s, v) = call(&app, "POST", &format!("/v1/servers/{id}/backups/{first}/restore"), me).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("server_running")), "{v}");
        call(&app, "POST", &format!("/v1/servers/{id}/stop"), me).await;
        run(3 * MIN).await;
        let (s, v) = call(&app, "POST", &format!("/v1/servers/{id}/backups/{first}/restore"), me).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        run(3 * MIN).await;
        // Kept (last 3): the two stops and the pre-restore copy; the manual one that was
        // restored went by the retention rule, but not its bytes before the restore used them.
        let (_, v) = call(&app, "GET", &format!("/v1/servers/{id}/backups"), me).await;
        let reasons: Vec<&str> =
            v["backups"].as_array().unwrap().iter().map(|b| b["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, vec!["stop", "stop", "pre-restore"]);
        let manual = ArchiveRef {
            key: list[0]["key"].as_str().unwrap().to_owned(),
            sha256: list[0]["sha256"].as_str().unwrap().to_owned(),
            bytes: list[0]["bytes"].as_u64().unwrap(),
            world_bytes: 0,
        };
        let saves = world_in(&r.archive, &manual).await.rsplit(':').next().unwrap().parse::<u64>().unwrap();
        assert_eq!(r.nodes[0].volumes()[&id], saves, "the manual backup's world is back");

        let second = list[1]["id"].as_i64().unwrap();
        let (s, _) = call(&app, "DELETE", &format!("/v1/servers/{id}/backups/{second}"), me).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = call(&app, "DELETE", &format!("/v1/servers/{id}/backups/{second}"), me).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // The small plan's world (2 MB of 1 MB, hard limit 1 MB): flagged and not started.
        let (s, v) = call(&app, "GET", &format!("/v1/servers/{small}"), me).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["world"]["over_quota"], true, "{v}");
        let (s, v) = call(&app, "POST", &format!("/v1/servers/{small}/start"), me).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("over_quota")), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("past the hard limit"), "{v}");
    }
}
