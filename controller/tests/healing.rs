//! Self-healing against the real services (PostgreSQL, Podman with the stand-in game server,
//! the fake Hetzner API): a container killed from outside is seen as crashed, billed up to
//! the crash and restarted; a node whose Docker API stops answering is declared dead and
//! its servers restart on another node; a cloud outage during a scale-up does not stop the
//! next one. Time is passed in (`now` jumps for timers); containers and the fake cloud's
//! actions are waited for for real.

mod common;

use conductor_controller::archive::Archive;
use conductor_controller::billing::BillingSetup;
use conductor_controller::cloud::{CloudConfig, HetznerCloud};
use conductor_controller::docker::{DockerNode, Helper};
use conductor_controller::driver::NodeDriver;
use conductor_controller::events::*;
use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
use conductor_controller::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{Event, NewEntry, NewServer, ServerState, Store};
use conductor_controller::PgStore;
use conductor_core::catalogue::Reserve;
use conductor_core::model::CostMode;
use conductor_core::{CloudType, DedicatedType, Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;

const T0: Millis = 1_770_000_000_000;
const S: Millis = 1000;

/// One engine for every test of this file: one at a time.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn small(name: &str, ram_mib: u32) -> DedicatedType {
    DedicatedType {
        name: name.into(),
        ram_mib,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(10),
        reserve: Reserve::Mib(0),
    }
}

fn config(
    nodes: Vec<(String, Arc<dyn NodeDriver>, u32)>,
    cloud: Option<CloudSetup>,
    archive: &std::path::Path,
) -> LiveConfig {
    let vm = CloudType {
        name: "cx23".into(),
        ram_mib: 2048,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        hourly_eur: Decimal::new(6, 3),
        monthly_cap_eur: Decimal::new(399, 2),
        reserve: Reserve::Mib(0),
    };
    let mut scheduler = SchedulerConfig::reference(vm, 3);
    scheduler.dead_after = 20 * S;
    scheduler.sleep_window = 60 * S;
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler,
        dedicated: nodes
            .into_iter()
            .map(|(name, docker, ram)| DedicatedNode { kind: small(&name, ram), name, docker })
            .collect(),
        cloud,
        idle_timeout: 300 * S,
        stop_timeout: Duration::from_secs(10),
        image: common::IMAGE.into(),
        cmd: None,
        helper: Helper { image: common::IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] },
        archive: Arc::new(Archive::dir(archive).unwrap()),
        mode: Mode::Enforce,
        billing: BillingSetup { window: S, ..BillingSetup::default() },
        healing: Healing {
            unreachable_after: 2 * S,
            crash_grace: 10 * S,
            retry_base: 100,
            retry_max: 2 * S,
            call_timeout: Duration::from_secs(5),
            ..Healing::default()
        },
    }
}

async fn setup(name: &str, first_id: i64) -> Option<(Arc<PgStore>, Arc<DockerNode>, i64)> {
    let (Some(store), Some(docker)) = (common::fresh_pg(name).await, common::docker()) else { return None };
    // Container names follow server ids: keep clear of the other tests' servers.
    sqlx::query(&format!("ALTER SEQUENCE servers_id_seq RESTART WITH {first_id}")).execute(store.pool()).await.unwrap();
    let owner = store.create_owner("o", T0).await.unwrap().id;
    let credit = NewEntry::topup(owner, Decimal::from(1000), "credit", T0);
    store.post(credit).await.unwrap();
    Some((Arc::new(store), Arc::new(docker), owner))
}

async fn server(store: &PgStore, docker: &DockerNode, owner: i64, name: &str) -> i64 {
    let s = NewServer {
        owner,
        name: name.into(),
        ram_mib: 512,
        disk_mb: 100,
        pay_per_use: false,
        cost_mode: CostMode::Off,
    };
    let id = store.create_server(s, T0).await.unwrap().id;
    docker.remove(id, true).await.unwrap();
    id
}

/// Steps at `now` (advancing `step` each time) until `done`, waiting for real in between.
async fn until<St: Store>(
    live: &mut Live<St>,
    now: &mut Millis,
    step: Millis,
    what: &str,
    mut done: impl AsyncFnMut(&Live<St>) -> bool,
) {
    for _ in 0..150 {
        *now += step;
        live.tick(*now).await.unwrap();
        if done(live).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log: Vec<String> = live.intents().iter().map(|i| format!("{i:?}")).collect();
    panic!("timed out waiting for: {what}; intents {log:?}");
}

async fn events(store: &PgStore, server: i64) -> Vec<Event> {
    store.events(0, 100_000).await.unwrap().into_iter().filter(|e| e.server == Some(server)).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_container_killed_from_outside_is_seen_as_crashed_billed_up_to_the_crash_and_restarted() {
    let _engine = ENGINE.lock().await;
    let Some((store, docker, owner)) = setup("crash", 700).await else { return };
    let archive = std::env::temp_dir().join(format!("conductor-crash-{}", std::process::id()));
    let id = server(&store, &docker, owner, "crashy").await;
    let nodes = vec![("ded-1".to_string(), docker.clone() as Arc<dyn NodeDriver>, 2048)];
    let mut live = Live::start(store.clone(), config(nodes, None, &archive), T0).await.unwrap();
    let mut now = T0;
    live.request_start(id, now).await.unwrap();
    let st = store.clone();
    until(&mut live, &mut now, S, "running", async |_| st.server(id).await.unwrap().state == ServerState::Running)
        .await;

    // Killed from outside (SIGKILL, as `podman kill`): seen at the next step.
    let api = bollard::Docker::connect_with_unix(
        common_socket().trim_start_matches("unix://"),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    api.kill_container(
        &conductor_controller::docker::container_name(id),
        None::<bollard::query_parameters::KillContainerOptions>,
    )
    .await
    .unwrap();
    let killed_at = now;
    let st = store.clone();
    until(&mut live, &mut now, S, "a crash recorded", async |_| {
        events(&st, id).await.iter().any(|e| e.kind == SERVER_CRASHED)
    })
    .await;
    let evs = events(&store, id).await;
    let crash = evs.iter().find(|e| e.kind == SERVER_CRASHED).unwrap();
    assert!(crash.at > killed_at && crash.at <= killed_at + 5 * S, "seen within a few steps");
    assert_eq!(crash.data["exit_code"], 137, "{}", crash.data);
    // Billing: the run ended at the crash; nothing is billed while it restarts.
    let phase = live.current_phase(id, now).map(|p| p.0);
    assert_ne!(phase, Some(conductor_controller::billing::Phase::Active), "no running phase after the crash");
    // Restarted by the core's rule: it runs again, a new run billed from its new start.
    let st = store.clone();
    until(&mut live, &mut now, S, "restarted", async |_| {
        let e = events(&st, id).await;
        e.iter().filter(|e| e.kind == SERVER_STARTED).count() == 2
    })
    .await;
    let evs = events(&store, id).await;
    let restarted = evs.iter().filter(|e| e.kind == SERVER_STARTED).nth(1).unwrap().at;
    assert!(restarted > crash.at);
    assert!(docker.probe(id).await.is_ok(), "the restarted container answers");
    assert_eq!(live.metrics().crashes, 1);
    assert_eq!(live.pending_intents(), 0);
    let (phase, since, _) = live.current_phase(id, now).unwrap();
    assert_eq!((phase, since), (conductor_controller::billing::Phase::Active, restarted));
    docker.remove(id, true).await.unwrap();
    let _ = std::fs::remove_dir_all(&archive);
}

fn common_socket() -> String {
    std::env::var("CONDUCTOR_TEST_DOCKER").unwrap()
}

/// A TCP front of the Podman socket that can be switched off (the node's API stops).
struct Front {
    addr: String,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn front(socket: &str) -> Front {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let socket = socket.to_owned();
    tokio::spawn(async move {
        let mut rx2 = rx.clone();
        loop {
            tokio::select! {
                _ = rx2.changed() => return,
                accepted = listener.accept() => {
                    let Ok((mut c, _)) = accepted else { return };
                    let socket = socket.clone();
                    let mut rx = rx.clone();
                    tokio::spawn(async move {
                        let Ok(mut u) = tokio::net::UnixStream::connect(&socket).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                            _ = rx.changed() => {}
                        }
                    });
                }
            }
        }
    });
    Front { addr, stop }
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_whose_api_stops_answering_is_declared_dead_and_its_servers_restart_on_another_node() {
    let _engine = ENGINE.lock().await;
    let Some((store, docker, owner)) = setup("dead", 800).await else { return };
    let archive = std::env::temp_dir().join(format!("conductor-dead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&archive);
    let id = server(&store, &docker, owner, "survivor").await;
    // Node A is the engine behind a front that can be switched off; node B the engine
    // itself (one engine plays two nodes: what counts is what the controller can reach).
    let a = front(common_socket().trim_start_matches("unix://")).await;
    let node_a = Arc::new(DockerNode::connect(&a.addr, "127.0.0.1").unwrap());
    let nodes = vec![
        ("node-a".to_string(), node_a.clone() as Arc<dyn NodeDriver>, 1024),
        ("node-b".to_string(), docker.clone() as Arc<dyn NodeDriver>, 1024),
    ];
    let mut live = Live::start(store.clone(), config(nodes, None, &archive), T0).await.unwrap();
    let mut now = T0;
    // It runs on A, stops, and is archived when its (one-minute) sleep window ends; then it
    // runs on A again.
    live.request_start(id, now).await.unwrap();
    let st = store.clone();
    until(&mut live, &mut now, S, "running", async |_| st.server(id).await.unwrap().state == ServerState::Running)
        .await;
    let a_id = store.nodes().await.unwrap().iter().find(|n| n.name == "node-a").unwrap().id;
    assert_eq!(store.server(id).await.unwrap().node, Some(a_id));
    live.request_stop(id, now).await.unwrap();
    let st = store.clone();
    until(&mut live, &mut now, 10 * S, "archived", async |_| {
        st.server(id).await.unwrap().state == ServerState::Archived
    })
    .await;
    live.request_start(id, now).await.unwrap();
    let st = store.clone();
    until(&mut live, &mut now, S, "running again", async |_| {
        st.server(id).await.unwrap().state == ServerState::Running
    })
    .await;
    assert_eq!(store.server(id).await.unwrap().node, Some(a_id));

    // A's API stops answering: unreachable after 2 s, dead 20 s later, the server restarts
    // on B from its archive.
    a.stop.send(true).unwrap();
    let silent_at = now;
    let st = store.clone();
    until(&mut live, &mut now, S, "restarted on B", async |_| {
        let s = st.server(id).await.unwrap();
        s.state == ServerState::Running && s.node != Some(a_id)
    })
    .await;
    let all = store.events(0, 100_000).await.unwrap();
    let dead = all.iter().find(|e| e.kind == NODE_DEAD && e.node == Some(a_id)).expect("node A declared dead");
    assert!(dead.at >= silent_at + 20 * S, "not before dead_after: {} vs {}", dead.at, silent_at);
    let evs = events(&store, id).await;
    assert!(evs.iter().any(|e| e.kind == SERVER_LOST), "billing stopped while A was silent");
    assert!(evs.iter().any(|e| e.kind == SERVER_FAILED));
    assert!(evs.iter().any(|e| e.kind == SERVER_RESTORED), "restored from its archive on B");
    assert!(docker.probe(id).await.is_ok());
    docker.remove(id, true).await.unwrap();
    let _ = std::fs::remove_dir_all(&archive);
}

#[tokio::test(flavor = "current_thread")]
async fn a_cloud_outage_during_a_scale_up_does_not_stop_the_next_scale_up() {
    let _engine = ENGINE.lock().await;
    let Some((store, docker, owner)) = setup("outage", 900).await else { return };
    let archive = std::env::temp_dir().join(format!("conductor-outage-{}", std::process::id()));
    let fake = FakeHetzner::new(Behaviour { action_ms: 300, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let quick = CloudConfig { requests_per_s: 100.0, burst: 20.0, max_attempts: 1, backoff: Duration::from_millis(10) };
    let for_vm = docker.clone();
    let cloud = CloudSetup {
        client: Arc::new(HetznerCloud::new("token", Some(&url), quick)),
        cluster: format!("outage{}", std::process::id()),
        image: "ubuntu-24.04".into(),
        location: None,
        user_data: CloudSetup::fixed_user_data(None),
        docker_for_vm: Box::new(move |_, _| Ok(for_vm.clone() as Arc<dyn NodeDriver>)),
        bootstrap_marker: false,
    };
    let a = server(&store, &docker, owner, "a").await;
    let b = server(&store, &docker, owner, "b").await;
    // The dedicated node takes a; b waits: the policy wants a VM at its next tick (2 min).
    let nodes = vec![("ded".to_string(), docker.clone() as Arc<dyn NodeDriver>, 512)];
    let mut cfg = config(nodes, Some(cloud), &archive);
    cfg.healing.max_attempts = 3;
    let mut live = Live::start(store.clone(), cfg, T0).await.unwrap();
    let mut now = T0;
    live.request_start(a, now).await.unwrap();
    live.request_start(b, now).await.unwrap();
    assert_eq!(store.server(b).await.unwrap().state, ServerState::Queued);
    // The cloud is down when the tick asks for the VM, and stays down for a while.
    fake.set(|f| f.fail_next = 1_000_000);
    now = T0 + 121 * S;
    live.tick(now).await.unwrap();
    let all = store.events(0, 100_000).await.unwrap();
    assert!(all.iter().any(|e| e.kind == SCALING_DECISION), "the policy asked for a VM");
    assert!(fake.server_names().is_empty());
    // The create is retried with backoff, then fails for good: the core frees the slot.
    let st = store.clone();
    until(&mut live, &mut now, S, "the create failed for good", async |_| {
        st.events(0, 100_000).await.unwrap().iter().any(|e| e.kind == INTENT_FAILED)
    })
    .await;
    assert_eq!(live.core().cloud_vms(), 0, "the failed VM does not count");
    // The cloud is back; after the cooldown the next tick creates a VM and b runs on it.
    fake.set(|f| f.fail_next = 0);
    let st = store.clone();
    until(&mut live, &mut now, 30 * S, "b runs on a new VM", async |_| {
        st.server(b).await.unwrap().state == ServerState::Running
    })
    .await;
    assert_eq!(fake.server_names().len(), 1, "one VM, no duplicate");
    let decisions = store.events(0, 100_000).await.unwrap().into_iter().filter(|e| e.kind == SCALING_DECISION).count();
    assert!(decisions >= 2, "a second scale-up after the outage");
    for id in [a, b] {
        docker.remove(id, true).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&archive);
}
