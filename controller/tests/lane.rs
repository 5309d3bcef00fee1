//! World copies run in the slow lane: an archive that takes long (a big world) does not hold
//! up the loop — the step that starts it returns after `data_wait`, heartbeats and other
//! servers' starts go on meanwhile, and the archive is recorded by the first step after it
//! is done. At most `max_copies` copies run at once.

use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::fake::{Clock, FakeNode, Faults, MemArchive};
use conductor_controller::live::{DedicatedNode, GameAccess, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{NewEntry, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::model::CostMode;
use conductor_core::{Millis, Residence, SchedulerConfig, ServerId};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: Millis = 1_760_000_000_000;

/// One step 5 s (virtual) after the last; its wall time.
async fn step(live: &mut Live<MemoryStore>, clock: &Clock) -> Duration {
    let now = clock.now() + 5_000;
    clock.set(now);
    let t = Instant::now();
    live.tick(now).await.unwrap();
    t.elapsed()
}

/// A store with `names` servers (1 GiB each) and an engine on one dedicated node whose
/// containers answer `boot_ms` after their start; worlds sleep a minute before their archive.
async fn setup(
    names: &[&str],
    boot_ms: Millis,
    healing: Healing,
) -> (Arc<Clock>, Arc<FakeNode>, Arc<MemoryStore>, Vec<i64>, Live<MemoryStore>) {
    setup_with(names, boot_ms, healing, GameAccess::default()).await
}

/// `setup` with what players are told about a start's wait.
async fn setup_with(
    names: &[&str],
    boot_ms: Millis,
    healing: Healing,
    game: GameAccess,
) -> (Arc<Clock>, Arc<FakeNode>, Arc<MemoryStore>, Vec<i64>, Live<MemoryStore>) {
    let clock = Clock::new(T0);
    let node = FakeNode::new("ded-0", clock.clone(), Faults::none(), boot_ms);
    let kind = conductor_controller::fake::ax41();
    let vm = conductor_controller::fake::cx23();
    let store = Arc::new(MemoryStore::new());
    let owner = store.create_owner("o", T0).await.unwrap().id;
    store.post(NewEntry::topup(owner, Decimal::from(100), "credit", T0)).await.unwrap();
    let mut ids = Vec::new();
    for name in names {
        let s = NewServer {
            owner,
            name: (*name).into(),
            ram_mib: 1024,
            disk_mb: 100,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        ids.push(store.create_server(s, T0).await.unwrap().id);
    }
    let mut scheduler = SchedulerConfig::reference(vm, 0);
    scheduler.sleep_window = 60_000;
    let cfg = LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game,
        scheduler,
        dedicated: vec![DedicatedNode { name: "ded-0".into(), kind, docker: node.clone() as Arc<dyn NodeDriver> }],
        cloud: None,
        idle_timeout: 300_000,
        stop_timeout: Duration::from_secs(1),
        image: "standin".into(),
        cmd: None,
        helper: Helper { image: "standin".into(), cmd: vec![] },
        archive: Arc::new(MemArchive::memory()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing,
    };
    let live = Live::start(store.clone(), cfg, T0).await.unwrap();
    (clock, node, store, ids, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_archive_runs_beside_the_loop_and_is_recorded_when_done() {
    let healing = Healing { data_wait: Duration::from_millis(50), max_copies: 1, ..Healing::default() };
    let (clock, node, store, ids, mut live) = setup(&["a", "b", "c"], 0, healing).await;
    let residence = |live: &Live<MemoryStore>, i: u32| live.core().residence(ServerId(i));
    for &id in &ids[..2] {
        live.request_start(id, clock.now()).await.unwrap();
    }
    for _ in 0..3 {
        step(&mut live, &clock).await;
    }
    assert!(matches!(residence(&live, 0), Residence::Running { .. }));
    // a and b stop; their archives are due a minute later and take 1.5 s each.
    node.set_slow_data(Duration::from_millis(1500));
    for &id in &ids[..2] {
        live.request_stop(id, clock.now()).await.unwrap();
    }
    for _ in 0..13 {
        let took = step(&mut live, &clock).await;
        assert!(took < Duration::from_millis(1000), "a step waited for a copy: {took:?}");
    }
    assert!(live.pending_intents() >= 1, "the archives are under way");
    assert!(matches!(residence(&live, 0), Residence::Sleeping { .. } | Residence::Archived));
    // Meanwhile c starts, and the node's heartbeats and listings go on.
    let listed = node.listed().len();
    live.request_start(ids[2], clock.now()).await.unwrap();
    for _ in 0..3 {
        step(&mut live, &clock).await;
    }
    assert!(matches!(residence(&live, 2), Residence::Running { .. }), "c started during the copies");
    assert!(node.listed().len() >= listed + 3, "the node was listed every step");
    // One copy at a time (max_copies = 1): both are done after ~3 s, each recorded once.
    let archived = |store: Arc<MemoryStore>| async move {
        let events = store.events(0, 10_000).await.unwrap();
        events.into_iter().filter(|e| e.kind == conductor_controller::events::SERVER_ARCHIVED).count()
    };
    assert_eq!(archived(store.clone()).await, 0, "not recorded before it is done");
    let t = Instant::now();
    while archived(store.clone()).await < 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "the archives never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
        step(&mut live, &clock).await;
    }
    assert!(t.elapsed() >= Duration::from_millis(2000), "one at a time: {:?}", t.elapsed());
    assert_eq!(archived(store.clone()).await, 2);
    assert_eq!(live.pending_intents(), 0);
    let left: Vec<i64> = node.volumes().into_keys().collect();
    assert_eq!(left, vec![ids[2]], "a's and b's node copies went once archived (c runs)");
}

/// Server 0 (store id `id`) runs, stops and is archived (its sleep window is a minute);
/// `before_stop` runs while it runs.
async fn run_and_archive(live: &mut Live<MemoryStore>, clock: &Clock, id: i64, before_stop: impl FnOnce()) {
    let residence = |live: &Live<MemoryStore>| live.core().residence(ServerId(0));
    live.request_start(id, clock.now()).await.unwrap();
    for _ in 0..5 {
        step(live, clock).await;
    }
    assert!(matches!(residence(live), Residence::Running { .. }), "{:?}", residence(live));
    before_stop();
    live.request_stop(id, clock.now()).await.unwrap();
    for _ in 0..40 {
        step(live, clock).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(residence(live), Residence::Archived);
}

/// The start timeout runs from the container's start: a restore that takes longer than it
/// (a big world) does not count, and a container that then never answers is still given up,
/// `start_timeout` after its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_timeout_runs_from_the_container_not_from_the_copy_of_its_world() {
    let healing =
        Healing { data_wait: Duration::from_millis(50), max_copies: 1, start_timeout: 70_000, ..Healing::default() };
    let (clock, node, store, ids, mut live) = setup(&["a"], 0, healing).await;
    let residence = |live: &Live<MemoryStore>| live.core().residence(ServerId(0));
    run_and_archive(&mut live, &clock, ids[0], || {}).await;
    // The restore takes 3 s of real time while the loop steps 5 s of virtual time every
    // 100 ms; the restored server never answers.
    node.set_slow_data(Duration::from_millis(3000));
    node.set_boot_ms(Millis::MAX);
    let asked = clock.now();
    live.request_start(ids[0], asked).await.unwrap();
    use conductor_controller::events::{SERVER_PLACED, SERVER_RESTORED, SERVER_START_FAILED};
    let t = Instant::now();
    let events = loop {
        let events = store.events(0, 10_000).await.unwrap();
        if events.iter().any(|e| e.kind == SERVER_START_FAILED) {
            break events;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never given up: {:?}", residence(&live));
        tokio::time::sleep(Duration::from_millis(100)).await;
        step(&mut live, &clock).await;
    };
    // The first of each since the request (the core places it again after the give-up).
    let at = |kind: &str| events.iter().find(|e| e.kind == kind && e.at >= asked).map(|e| e.at).unwrap();
    let copy = at(SERVER_RESTORED) - at(SERVER_PLACED);
    assert!(copy > 70_000, "the copy ({copy} ms) must outlast the start timeout for this test to mean anything");
    let unanswered = at(SERVER_START_FAILED) - at(SERVER_RESTORED);
    assert!((70_000..=80_000).contains(&unanswered), "given up {unanswered} ms after its container started");
}

/// What players are told while a world is copied onto its node: the copy's rest plus the
/// boot (the restore estimate of a world measured at 100 MB, at 1 MB/s, is 100 s), not the
/// boot alone; once the container started, the boot's rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_server_s_wait_counts_the_copy_of_its_world_still_to_do() {
    use conductor_controller::events::{SERVER_PLACED, SERVER_RESTORED};
    let healing = Healing { data_wait: Duration::from_millis(50), max_copies: 1, ..Healing::default() };
    let game = GameAccess { boot: 20_000, restore_mb_per_s: 1, ..GameAccess::default() };
    let (clock, node, store, ids, mut live) = setup_with(&["a"], 0, healing, game).await;
    let owner = store.server(ids[0]).await.unwrap().owner;
    let residence = |live: &Live<MemoryStore>| live.core().residence(ServerId(0));
    // Its world measures 100 MB when it is archived (the size the core counts from then).
    run_and_archive(&mut live, &clock, ids[0], || node.set_world_bytes(ids[0], 100_000_000)).await;
    let eta = |live: &Live<MemoryStore>, now: Millis| live.route(ids[0], owner, now).unwrap().eta_s;
    assert_eq!(eta(&live, clock.now()), Some(120), "archived: restore 100 s + boot 20 s");
    // The restore takes 2 s of real time while the loop steps 5 s of virtual time every
    // 100 ms (about 100 s of copy); the container answers 10 s after its start.
    node.set_slow_data(Duration::from_millis(2000));
    node.set_boot_ms(10_000);
    let asked = clock.now();
    live.request_start(ids[0], asked).await.unwrap();
    let first = |events: &[conductor_controller::store::Event], kind: &str| {
        events.iter().find(|e| e.kind == kind && e.at >= asked).map(|e| e.at)
    };
    let t = Instant::now();
    let mut seen = 0;
    loop {
        step(&mut live, &clock).await;
        let events = store.events(0, 10_000).await.unwrap();
        let now = clock.now();
        if first(&events, SERVER_RESTORED).is_some() {
            break;
        }
        let placed = first(&events, SERVER_PLACED).expect("placed in the first step");
        // What is left of the 100 s copy and the 20 s boot, at least 5 s.
        let left = ((120_000 - (now - placed)).max(5_000) as u64).div_ceil(1000) as u32;
        assert_eq!(eta(&live, now), Some(left), "{} s into the copy", (now - placed) / 1000);
        seen += 1;
        assert!(t.elapsed() < Duration::from_secs(20), "the copy never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen >= 5, "the copy was seen under way {seen} times only");
    // The container started: the boot's rest (20 s at most), then running.
    let started = clock.now();
    if matches!(residence(&live), Residence::Starting { .. }) {
        assert_eq!(eta(&live, started), Some(20), "only the boot is left");
    }
    let t = Instant::now();
    while !matches!(residence(&live), Residence::Running { .. }) {
        assert!(t.elapsed() < Duration::from_secs(20), "never ran: {:?}", residence(&live));
        step(&mut live, &clock).await;
    }
    assert_eq!(eta(&live, clock.now()), None);
}
