//! Consolidation against PostgreSQL, Podman (the stand-in game server) and the fake Hetzner
//! API: a server with no players is moved off a VM to the dedicated node once there is room
//! there, its world saved by its stop and started again where it goes, and the emptied VM
//! is deleted. (Every node here is the same Podman engine, so the world is not copied
//! between engines: `migrations.rs` covers the copy on the in-memory drivers.)

mod common;

use common::rig::vm_type;
use conductor_controller::cloud::{CloudConfig, HetznerCloud};
use conductor_controller::driver::NodeDriver;
use conductor_controller::events::*;
use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
use conductor_controller::live::{CloudSetup, Healing, Live};
use conductor_controller::store::{NewEntry, NewServer, ServerState, Store};
use conductor_controller::PgStore;
use conductor_core::consolidation::ConsolidationParams;
use conductor_core::model::CostMode;
use conductor_core::time::{HOUR, MINUTE, SECOND};
use conductor_core::{Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;

const T0: Millis = 1_770_000_000_000;

async fn until(live: &mut Live<PgStore>, now: &mut Millis, what: &str, done: impl AsyncFn(&Live<PgStore>) -> bool) {
    for _ in 0..200 {
        *now += 5 * SECOND;
        live.tick(*now).await.unwrap();
        if done(live).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("not within 200 steps: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_moves_off_a_vm_to_the_dedicated_node_and_the_vm_goes() {
    let (Some(store), Some(docker)) = (common::fresh_pg("consolidation").await, common::docker()) else { return };
    // Apart from other tests' servers on the same Podman.
    sqlx::query("ALTER SEQUENCE servers_id_seq RESTART WITH 960").execute(store.pool()).await.unwrap();
    let (store, docker) = (Arc::new(store), Arc::new(docker));
    for id in 960..963 {
        docker.remove(id, true).await.unwrap();
    }
    let fake = FakeHetzner::new(Behaviour { action_ms: 300, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let quick = CloudConfig { requests_per_s: 100.0, burst: 20.0, max_attempts: 1, backoff: Duration::from_millis(10) };
    let shared = docker.clone();
    let mut scheduler = SchedulerConfig::reference(vm_type(), 2);
    scheduler.scaling.consolidation = Some(ConsolidationParams {
        every: 5 * MINUTE,
        min_saving_per_hour: Decimal::ZERO,
        max_migrations_per_hour: 4,
        announce: 10 * MINUTE,
        auto_once_per: HOUR,
    });
    let archive = std::env::temp_dir().join(format!("conductor-consolidation-{}", std::process::id()));
    let cloud = CloudSetup {
        client: Arc::new(HetznerCloud::new("token", Some(&url), quick)),
        cluster: format!("consolidation{}", std::process::id()),
        image: "ubuntu-24.04".into(),
        location: None,
        user_data: CloudSetup::fixed_user_data(None),
        docker_for_vm: Box::new(move |_, _| Ok(shared.clone() as Arc<dyn NodeDriver>)),
        bootstrap_marker: false,
    };
    let mut cfg = common::rig::podman_engine(docker.clone(), 2048, scheduler, Some(cloud), &archive);
    cfg.healing = Healing { vm_ready_timeout: 120 * SECOND, ..Healing::default() };
    let owner = store.create_owner("o", T0).await.unwrap().id;
    store.post(NewEntry::topup(owner, Decimal::from(10), "credit", T0)).await.unwrap();
    let mut live = Live::start(store.clone(), cfg, T0).await.unwrap();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let s = NewServer {
            owner,
            name: name.into(),
            ram_mib: 1024,
            disk_mb: 100,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        let s = store.create_server(s, T0).await.unwrap();
        live.add_server(&s);
        ids.push(s.id);
    }
    let (a, c) = (ids[0], ids[2]);
    let mut now = T0;
    for &id in &ids {
        live.request_start(id, now).await.unwrap();
    }
    // a and b fill the dedicated node; c waits for a VM and runs there.
    let ded = store.nodes().await.unwrap().into_iter().find(|n| n.name == "ded").unwrap().id;
    let on = async |store: &PgStore, id: i64| {
        let s = store.server(id).await.unwrap();
        (s.state, s.node)
    };
    until(
        &mut live,
        &mut now,
        "c runs on a VM",
        async |_| matches!(on(&store, c).await, (ServerState::Running, Some(n)) if n != ded),
    )
    .await;
    assert_eq!(fake.server_names().len(), 1);
    // a stops: room on the dedicated node; c has no players, so it moves there.
    live.request_stop(a, now).await.unwrap();
    until(&mut live, &mut now, "c runs on the dedicated node", async |_| {
        on(&store, c).await == (ServerState::Running, Some(ded))
    })
    .await;
    let (status, logs) = (docker.probe(c).await, docker.logs_tail(c, 30).await.unwrap());
    assert!(status.is_ok(), "it answers its status ping where it runs now");
    assert!(logs.contains("world saves=1"), "saved by the move's stop, started with that world: {logs}");
    until(&mut live, &mut now, "the VM is deleted", async |_| fake.server_names().is_empty()).await;
    let events = store.events(0, 100_000).await.unwrap();
    let resumed = events.iter().find(|e| e.kind == SERVER_RESUMED && e.server == Some(c)).expect("resumed");
    assert_eq!(resumed.data["reason"], "migrated");
    assert_eq!(resumed.data["disrupted_player_ms"], 0, "nobody was on it");
    assert!(events.iter().any(|e| e.kind == SCALING_DECISION && e.data["policy"] == "consolidation"));
    for id in ids {
        docker.remove(id, true).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&archive);
}
