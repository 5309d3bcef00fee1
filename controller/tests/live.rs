//! The live engine end to end: PostgreSQL, Podman (the stand-in game server) and the fake
//! Hetzner API. Servers are created and started, the dedicated node fills, the policy
//! creates a VM in the fake cloud, servers stop (worlds saved), are archived after the
//! sleep window and restored with matching checksums; the controller is killed while a VM
//! provisions and restarted: no duplicate VM, no lost server, no orphan container.
//! Time is passed in: the test jumps `now` forward for timers (scaling ticks, the sleep
//! window) and waits for real only on containers and the fake cloud's actions.

mod common;

use conductor_controller::archive::Archive;
use conductor_controller::billing::BillingSetup;
use conductor_controller::cloud::{CloudConfig, HetznerCloud};
use conductor_controller::docker::{DockerNode, Helper};
use conductor_controller::export::{MetaInfo, ServerRow};
use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
use conductor_controller::live::{CloudSetup, DedicatedNode, Live, LiveConfig, Mode};
use conductor_controller::store::{EntryKind, NewEntry, NewServer, ServerState, Store};
use conductor_core::catalogue::Reserve;
use conductor_core::model::CostMode;
use conductor_core::{CloudType, DedicatedType, Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;

const T0: Millis = 1_760_000_000_000;

/// The tests share one engine, and a controller starting up removes containers its store
/// does not know: one test at a time.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const S: Millis = 1000;

fn config(docker: Arc<DockerNode>, cloud: Arc<HetznerCloud>, archive: &std::path::Path, mode: Mode) -> LiveConfig {
    // A tiny dedicated node (1024 MiB usable) and 2 GiB VMs: two small servers fill it.
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
    let dedicated = DedicatedType {
        name: "tiny".into(),
        ram_mib: 1024,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(10),
        reserve: Reserve::Mib(0),
    };
    let for_vm = docker.clone();
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler: SchedulerConfig::reference(vm, 3),
        dedicated: vec![DedicatedNode { name: "ded-1".into(), kind: dedicated, docker }],
        cloud: Some(CloudSetup {
            client: cloud,
            cluster: format!("test{}", std::process::id()),
            image: "ubuntu-24.04".into(),
            location: None,
            user_data: CloudSetup::fixed_user_data(Some("#cloud-config\n".into())),
            docker_for_vm: Box::new(move |_, _| Ok(for_vm.clone())),
            bootstrap_marker: false,
        }),
        idle_timeout: 300 * S,
        stop_timeout: Duration::from_secs(10),
        image: common::IMAGE.into(),
        cmd: None,
        helper: Helper { image: common::IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] },
        archive: Arc::new(Archive::dir(archive).unwrap()),
        mode,
        billing: BillingSetup::default(),
        healing: Default::default(),
    }
}

/// Credits `owner` (servers only start with a positive balance).
async fn credit<St: Store>(store: &St, owner: i64, eur: i64, key: &str) -> Decimal {
    let entry = NewEntry {
        owner,
        kind: EntryKind::Topup,
        amount: Decimal::from(eur),
        key: key.into(),
        at: T0,
        server: None,
        window_start: None,
        data: serde_json::json!({}),
    };
    store.post(entry).await.unwrap().balance
}

/// Ticks (at `now`) until `done` holds, waiting for real in between; at most 30 s.
async fn until<St: Store>(live: &mut Live<St>, now: Millis, what: &str, mut done: impl FnMut(&Live<St>) -> bool) {
    for _ in 0..150 {
        live.tick(now).await.unwrap();
        if done(live) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn state<St: Store>(store: &St, id: i64) -> ServerState {
    store.server(id).await.unwrap().state
}

fn server(owner: i64, name: &str, ram_mib: u32) -> NewServer {
    NewServer { owner, name: name.into(), ram_mib, disk_mb: 100, pay_per_use: false, cost_mode: CostMode::Off }
}

#[tokio::test(flavor = "current_thread")]
async fn servers_run_scale_sleep_archive_restore_and_survive_a_crash() {
    let _engine = ENGINE.lock().await;
    let (Some(store), Some(docker)) = (common::fresh_pg("live").await, common::docker()) else { return };
    let store = Arc::new(store);
    let docker = Arc::new(docker);
    let fake = FakeHetzner::new(Behaviour { action_ms: 800, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let quick = CloudConfig { requests_per_s: 100.0, burst: 20.0, max_attempts: 4, backoff: Duration::from_millis(50) };
    let cloud = Arc::new(HetznerCloud::new("token", Some(&url), quick));
    let archive_dir = std::env::temp_dir().join(format!("conductor-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&archive_dir);

    let owner = store.create_owner("alice", T0).await.unwrap();
    credit(&*store, owner.id, 5, "grant:alice").await;
    let a = store.create_server(server(owner.id, "a", 512), T0).await.unwrap();
    let b = store.create_server(server(owner.id, "b", 512), T0).await.unwrap();
    let c = store.create_server(server(owner.id, "c", 768), T0).await.unwrap();
    for id in [a.id, b.id, c.id] {
        docker.remove(id, true).await.unwrap();
    }

    let mut live = Live::start(store.clone(), config(docker.clone(), cloud.clone(), &archive_dir, Mode::Enforce), T0)
        .await
        .unwrap();
    // a and b fill the dedicated node; their containers really start and answer pings.
    live.request_start(a.id, T0).await.unwrap();
    live.request_start(b.id, T0).await.unwrap();
    let (sa, sb) = (store.clone(), store.clone());
    until(&mut live, T0 + S, "a and b running", |_| true).await;
    for _ in 0..100 {
        if state(&*sa, a.id).await == ServerState::Running && state(&*sb, b.id).await == ServerState::Running {
            break;
        }
        live.tick(T0 + S).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&*store, a.id).await, ServerState::Running);
    assert_eq!(state(&*store, b.id).await, ServerState::Running);
    assert!(docker.probe(a.id).await.is_ok(), "a's container answers a status ping");

    // c does not fit: queued; the scaling tick (2 min later) creates a VM in the fake cloud.
    live.request_start(c.id, T0 + 2 * S).await.unwrap();
    assert_eq!(state(&*store, c.id).await, ServerState::Queued);
    live.tick(T0 + 121 * S).await.unwrap();
    assert_eq!(fake.server_names().len(), 1, "one VM created");
    let events = store.events(0, 1000).await.unwrap();
    let decision = events.iter().find(|e| e.kind == "scaling.decision").expect("a scaling decision was recorded");
    assert_eq!(decision.data["action"], "create");
    assert!(
        decision.data["reason"].as_str().unwrap().contains('%')
            || !decision.data["reason"].as_str().unwrap().is_empty()
    );

    // Crash while the VM provisions: drop the controller, start a new one on the same store.
    drop(live);
    let mut live =
        Live::start(store.clone(), config(docker.clone(), cloud.clone(), &archive_dir, Mode::Enforce), T0 + 122 * S)
            .await
            .unwrap();
    assert_eq!(fake.server_names().len(), 1, "no duplicate VM after the restart");
    // The VM becomes ready; c (still queued, re-requested at start-up) is placed on it.
    for _ in 0..100 {
        live.tick(T0 + 123 * S).await.unwrap();
        if state(&*store, c.id).await == ServerState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&*store, c.id).await, ServerState::Running, "c runs on the new VM");
    let c_node = store.server(c.id).await.unwrap().node.unwrap();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.iter().find(|n| n.id == c_node).unwrap().kind, conductor_core::NodeKind::Cloud);
    assert_eq!(store.servers(None).await.unwrap().len(), 3, "no server lost");

    // a stops: its world is saved and it sleeps on its node.
    live.request_stop(a.id, T0 + 200 * S).await.unwrap();
    assert_eq!(state(&*store, a.id).await, ServerState::Sleeping);
    // The decision is recorded at once; the stop itself is carried out by the next step.
    live.tick(T0 + 200 * S).await.unwrap();
    let tar = docker.download_data(a.id).await.unwrap();
    assert!(String::from_utf8_lossy(&tar).contains("saves=1"), "a's world saved on stop");

    // 48 h later it is archived (verified), and its node copy is gone.
    // (The backup taken at the stop may hold the node's copy slot for a step or two first.)
    let later = T0 + 200 * S + 48 * 3600 * S;
    for _ in 0..20 {
        live.tick(later).await.unwrap();
        if state(&*store, a.id).await == ServerState::Archived {
            break;
        }
    }
    assert_eq!(state(&*store, a.id).await, ServerState::Archived);
    assert!(docker.inspect(a.id).await.unwrap().is_none(), "node copy removed after the archive");
    let archived = store.events(0, 1000).await.unwrap().into_iter().find(|e| e.kind == "server.archived").unwrap();
    let sha = archived.data["sha256"].as_str().unwrap().to_owned();

    // The controller restarts (the archive's whereabouts must survive that), then a is
    // started again: restored from the archive with a matching checksum, world intact.
    drop(live);
    let mut live =
        Live::start(store.clone(), config(docker.clone(), cloud.clone(), &archive_dir, Mode::Enforce), later)
            .await
            .unwrap();
    live.request_start(a.id, later + S).await.unwrap();
    for _ in 0..100 {
        live.tick(later + 2 * S).await.unwrap();
        if state(&*store, a.id).await == ServerState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&*store, a.id).await, ServerState::Running);
    let restored = store.events(0, 1000).await.unwrap().into_iter().find(|e| e.kind == "server.restored").unwrap();
    assert_eq!(restored.data["sha256"].as_str().unwrap(), sha);
    assert!(docker.probe(a.id).await.unwrap().raw.contains("\"saves\":1"), "the archived world came back");

    // Every server has exactly its one container: no orphans.
    let containers = docker.list_managed().await.unwrap();
    for id in [a.id, b.id, c.id] {
        assert_eq!(containers.iter().filter(|x| x.server == id).count(), 1, "server {id}");
    }
    // The event log of this run, exported as a dataset: a played once and runs again,
    // b and c still run at the end.
    let rows: Vec<ServerRow> = store.servers(None).await.unwrap().iter().map(ServerRow::from).collect();
    let events = store.events(0, 10_000).await.unwrap();
    let until = later + 10 * S;
    let meta = MetaInfo { name: "live".into(), timezone: "UTC".into(), source: "test".into() };
    let x = conductor_controller::export::build(&rows, &events, T0, until, &meta).unwrap();
    let of = |id| x.sessions.iter().filter(|s| s.server == id).map(|s| (s.start, s.end)).collect::<Vec<_>>();
    assert_eq!(of(a.id), [(T0, T0 + 200 * S), (later + S, until)]);
    assert_eq!(of(b.id), [(T0, until)]);
    assert_eq!(of(c.id), [(T0 + 2 * S, until)]);
    let dir = archive_dir.join("export");
    x.write(&dir, false).unwrap();
    assert_eq!(conductor_sim::dataset::Dataset::load(&dir).unwrap().sessions.len(), 4);

    for id in [a.id, b.id, c.id] {
        docker.remove(id, true).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&archive_dir);
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_stops_when_the_credit_is_used_up_and_starts_again_after_a_top_up() {
    let _engine = ENGINE.lock().await;
    let (Some(store), Some(docker)) = (common::fresh_pg("zero").await, common::docker()) else { return };
    let store = Arc::new(store);
    let docker = Arc::new(docker);
    let fake = FakeHetzner::new(Behaviour::default());
    let url = fake.serve(0).await.unwrap();
    let cloud = Arc::new(HetznerCloud::new("token", Some(&url), CloudConfig::default()));
    let archive_dir = std::env::temp_dir().join(format!("conductor-zero-{}", std::process::id()));
    // Container names follow server ids: keep clear of the other test's servers 1, 2, 3.
    sqlx::query("ALTER SEQUENCE servers_id_seq RESTART WITH 500").execute(store.pool()).await.unwrap();
    let owner = store.create_owner("payer", T0).await.unwrap().id;
    credit(&*store, owner, 5, "grant:payer").await;
    let id = store.create_server(server(owner, "burner", 512), T0).await.unwrap().id;
    docker.remove(id, true).await.unwrap();

    // Expensive on purpose: 512 MiB at 1800 EUR/GiB-h = 0.25 EUR a second, so 5 EUR last
    // 20 s of (simulated) play; metered every second, warned 10 s ahead.
    // A chat webhook (Discord-style) that keeps what it is told.
    let told = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let keep = told.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let keep = keep.clone();
            async move { keep.lock().unwrap().push(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    let mut cfg = config(docker.clone(), cloud, &archive_dir, Mode::Enforce);
    cfg.billing.webhook = Some(hook_url);
    cfg.billing.prices.active_per_gib_hour = Decimal::from(1800);
    cfg.billing.window = S;
    cfg.billing.warn_before = 10 * S;
    let mut live = Live::start(store.clone(), cfg, T0).await.unwrap();
    live.request_start(id, T0).await.unwrap();
    let mut t = T0;
    for _ in 0..150 {
        t += S;
        live.tick(t).await.unwrap();
        if state(&*store, id).await == ServerState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&*store, id).await, ServerState::Running);
    let running_at = t;
    let kinds =
        |events: &[conductor_controller::store::Event]| events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();

    // 12 s of play: 3 EUR charged, 2 EUR left lasts 8 s < 10 s: warned, still running.
    live.tick(running_at + 12 * S).await.unwrap();
    assert_eq!(store.balance(owner).await.unwrap(), Decimal::from(2));
    let events = store.events(0, 100_000).await.unwrap();
    let warned: Vec<_> = events.iter().filter(|e| e.kind == "account.low-balance").collect();
    assert_eq!(warned.len(), 1, "{:?}", kinds(&events));
    assert_eq!(warned[0].data["covers_ms"], 8000);
    // What the customer sees: the current session has cost 3 EUR so far.
    let (phase, since, cost) = live.current_phase(id, running_at + 12 * S).unwrap();
    assert_eq!((phase, since, cost), (conductor_controller::billing::Phase::Active, running_at, Decimal::from(3)));
    assert_eq!(state(&*store, id).await, ServerState::Running);
    live.tick(running_at + 13 * S).await.unwrap();
    let again = store.events(0, 100_000).await.unwrap();
    assert_eq!(again.iter().filter(|e| e.kind == "account.low-balance").count(), 1, "warned once");

    // 20 s: nothing left. The server stops gracefully (world saved), nothing is deleted.
    live.tick(running_at + 20 * S).await.unwrap();
    assert_eq!(store.balance(owner).await.unwrap(), Decimal::ZERO);
    assert_eq!(state(&*store, id).await, ServerState::Sleeping);
    let events = store.events(0, 100_000).await.unwrap();
    let exhausted = events.iter().find(|e| e.kind == "account.exhausted").expect("stopped at zero");
    assert_eq!(exhausted.data["stopped"], serde_json::json!([id]));
    let tar = docker.download_data(id).await.unwrap();
    assert!(String::from_utf8_lossy(&tar).contains("saves=1"), "the world was saved on the stop");
    assert!(docker.inspect(id).await.unwrap().is_some(), "the container stays (never deleted)");
    // The chat was told twice: the warning, then the stop.
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].contains("lasts about 8 s") && told[1].contains("used up"), "{told:?}");
    // No charge is booked twice, whatever ran: one entry per window key.
    let ledger = store.ledger(owner, 0, 100_000).await.unwrap();
    let keys: std::collections::BTreeSet<_> = ledger.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys.len(), ledger.len());

    // Starting again is refused until a top-up; then it runs.
    let refused = live.request_start(id, running_at + 21 * S).await;
    assert!(matches!(refused, Err(conductor_controller::live::LiveError::BalanceExhausted { .. })), "{refused:?}");
    assert!(credit(&*store, owner, 5, "topup:payer-1").await > Decimal::ZERO);
    live.request_start(id, running_at + 22 * S).await.unwrap();
    let mut t = running_at + 22 * S;
    for _ in 0..150 {
        live.tick(t).await.unwrap();
        if state(&*store, id).await == ServerState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        t += 100;
    }
    assert_eq!(state(&*store, id).await, ServerState::Running, "a top-up lets it start again");
    assert!(docker.probe(id).await.unwrap().raw.contains("\"saves\":1"), "with its saved world");
    docker.remove(id, true).await.unwrap();
    let _ = std::fs::remove_dir_all(&archive_dir);
}
