//! Fidelity: a scripted hour of the live controller, exported and replayed in the twin with
//! the exported delays, gives the same starts, abandoned starts, VMs and VM hours, and waits
//! within a few seconds. The live run is on the in-memory drivers and the fake cloud with a
//! virtual clock (boots take 20 s, VMs 60 s; the engine steps every 5 s), thirty servers
//! coming and going in waves: a scale-up to several VMs (cpx32: six 1 GiB servers each),
//! queues long enough that some give up, and back down once the hour is over; and the same
//! against PostgreSQL, Podman and the fake Hetzner API.
//!
//! One file is both: the scenario's fleet, lifecycle and policy sections are the twin's
//! scenario and, with a `[controller]` section, the controller's configuration.

mod common;

use conductor_controller::archive::Archive;
use conductor_controller::billing::BillingSetup;
use conductor_controller::config::ControllerConfig;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::events::*;
use conductor_controller::export::{self, MetaInfo, ServerRow};
use conductor_controller::fake::{Clock, FakeCloud, FakeNode, Faults};
use conductor_controller::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{Event, NewEntry, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::model::CostMode;
use conductor_core::time::{HOUR, MINUTE, SECOND};
use conductor_core::Millis;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// 2026-01-05T10:00:00Z.
const T0: Millis = 1_767_607_200_000;
const STEP: Millis = 5 * SECOND;
const BOOT: Millis = 20 * SECOND;
const PROVISIONING: Millis = 60 * SECOND;
/// The scripted hour, then quiet while idle VMs go (the reactive policy deletes one per
/// 30 minutes of low utilisation).
const END: Millis = T0 + 105 * MINUTE;

const SCENARIO: &str = concat!(
    r#"name = "fidelity"
seed = 7
catalogue = ""#,
    env!("CARGO_MANIFEST_DIR"),
    r#"/../scenarios/catalogue.toml"

[types.dedicated.small]
ram_gib = 8
cores = 4
disk_gb = 100
disk_reserve_gb = 0
monthly_eur = 30
reserve_mib = 0

[[fleet.dedicated]]
type = "small"
count = 1

[fleet.cloud]
type = "cpx32"
max_vms = 4

[lifecycle]
boot_s = 20
provisioning_s = 60
sleep_window_h = 48
# A world moved between nodes is not copied here (the fakes copy at once, and on Podman
# every node is one engine): the twin must not charge the copy either.
restore_mb_per_s = 1000000

[policy]
kind = "reference"
"#
);

const CONTROLLER: &str = r#"
[controller]
database = "unused: the test hands the engine a memory store"
admin_token = "fidelity-admin-token"
archive_dir = "unused"
image = "unused"

[[controller.node]]
name = "ded-1"
docker = "tcp://127.0.0.1:9"
host = "127.0.0.1"

[controller.cloud]
token = "unused"
base_url = "http://127.0.0.1:9/v1"
cluster = "fidelity"
image = "unused"
vm_docker = "tcp://127.0.0.1:9"
"#;

/// Requests never fall on a scaling tick (every 120 s), even rounded up to a 15 s step: at
/// the same instant the twin runs the tick first (SPEC §11 rule 8), while the controller
/// takes a request made before its step before that step's tick — an order a real fleet
/// never needs, as no request comes at the very millisecond of a tick.
const OFF_TICK: Millis = 5 * SECOND;

/// The script: (server, start, stop) offsets from T0. Thirty 1 GiB
/// servers: 8 fit the dedicated node, the rest need VMs (6 on a cpx32).
fn script() -> Vec<(usize, Millis, Millis)> {
    let mut s = Vec::new();
    for i in 0..30usize {
        let i64i = i as i64;
        // A wave: starts spread over the first 40 minutes...
        let start = OFF_TICK + (i64i * 80 * SECOND) % (40 * MINUTE);
        // ...ending between 45 and 60 minutes; a third come back for a second session.
        let stop = OFF_TICK + 45 * MINUTE + (i64i * 30 * SECOND) % (15 * MINUTE);
        s.push((i, start, stop));
        if i % 3 == 0 {
            s.push((i, stop + 5 * MINUTE, stop + 12 * MINUTE));
        }
    }
    s
}

/// What a live run left: its event log and servers.
struct LiveRun {
    events: Vec<Event>,
    listed: Vec<ServerRow>,
}

/// The engine configuration from the file, on the given drivers.
fn engine(
    cfg: &ControllerConfig,
    ded: Arc<dyn NodeDriver>,
    cloud: Arc<dyn conductor_controller::driver::CloudDriver>,
    docker_for_vm: conductor_controller::live::DockerForVm,
) -> LiveConfig {
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler: cfg.shared.scheduler.clone(),
        dedicated: vec![DedicatedNode { name: "ded-1".into(), kind: cfg.shared.dedicated[0].clone(), docker: ded }],
        cloud: Some(CloudSetup {
            client: cloud,
            cluster: format!("fidelity{}", std::process::id()),
            image: "ubuntu-24.04".into(),
            location: None,
            user_data: CloudSetup::fixed_user_data(None),
            docker_for_vm,
            bootstrap_marker: false,
        }),
        idle_timeout: cfg.shared.lifecycle.idle_timeout,
        stop_timeout: Duration::from_secs(10),
        image: "localhost/conductor-standin:test".into(),
        cmd: None,
        helper: Helper {
            image: "localhost/conductor-standin:test".into(),
            cmd: vec!["/standin".into(), "hold".into()],
        },
        archive: Arc::new(Archive::memory()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing { data_wait: Duration::from_secs(3600), ..Healing::default() },
    }
}

/// Plays the script against `live` in `step`s of virtual time (`pause` of real time between
/// steps, for real engines), then returns the log.
async fn play<St: Store + 'static>(
    store: Arc<St>,
    live_cfg: LiveConfig,
    first_id: i64,
    clock: &dyn Fn(Millis),
    (step, pause): (Millis, Duration),
) -> LiveRun {
    let owner = store.create_owner("o", T0 - HOUR).await.unwrap().id;
    store.post(NewEntry::topup(owner, Decimal::from(100), "credit", T0 - HOUR)).await.unwrap();
    let mut live = Live::start(store.clone(), live_cfg, T0).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let s = NewServer {
            owner,
            name: format!("s{i}"),
            ram_mib: 1024,
            disk_mb: 1000,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        let s = store.create_server(s, T0 - HOUR).await.unwrap();
        assert_eq!(s.id, first_id + i as i64, "server ids in order");
        live.add_server(&s);
        ids.push(s.id);
    }
    let mut script = script();
    script.sort_by_key(|&(i, start, _)| (start, i));
    let mut now = T0;
    while now <= END {
        clock(now);
        // What the script has at or before now since the last step (its times rounded up to
        // the step: the log, and so the export, has the rounded times).
        let due = |t: Millis| T0 + t <= now && T0 + t > now - step;
        for &(i, start, stop) in &script {
            if due(start) {
                live.request_start(ids[i], now).await.unwrap();
            }
            if due(stop) {
                live.request_stop(ids[i], now).await.unwrap();
            }
        }
        live.tick(now).await.unwrap();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        now += step;
    }
    let events = store.events(0, 1_000_000).await.unwrap();
    let listed = store.servers(None).await.unwrap().iter().map(ServerRow::from).collect();
    LiveRun { events, listed }
}

async fn on_fakes(cfg: &ControllerConfig) -> LiveRun {
    let clock = Clock::new(T0);
    let ded = FakeNode::new("ded-1", clock.clone(), Faults::none(), BOOT);
    let cloud = FakeCloud::new(clock.clone(), Faults::none(), PROVISIONING);
    let vms: Arc<Mutex<BTreeMap<String, Arc<FakeNode>>>> = Arc::default();
    let c = clock.clone();
    let docker_for_vm = Box::new(move |name: &str, _address: &str| {
        let mut vms = vms.lock().unwrap();
        let n = vms.entry(name.to_owned()).or_insert_with(|| FakeNode::new(name, c.clone(), Faults::none(), BOOT));
        Ok(n.clone() as Arc<dyn NodeDriver>)
    });
    let live_cfg = engine(cfg, ded, cloud, docker_for_vm);
    play(Arc::new(MemoryStore::new()), live_cfg, 1, &|now| clock.set(now), (STEP, Duration::ZERO)).await
}

/// Billed VM hours as the cloud charges them: each VM's started hours from its create to
/// its deletion (or the end of the hour).
fn vm_hours(events: &[Event], end: Millis) -> u64 {
    let mut created: BTreeMap<i64, Millis> = BTreeMap::new();
    let mut hours = 0u64;
    for e in events {
        match (e.kind.as_str(), e.node) {
            (NODE_CREATED, Some(n)) => {
                created.insert(n, e.at);
            }
            (NODE_DELETED, Some(n)) => {
                if let Some(at) = created.remove(&n) {
                    hours += ((e.at - at) as u64).div_ceil(HOUR as u64).max(1);
                }
            }
            _ => {}
        }
    }
    hours + created.values().map(|&at| ((end - at) as u64).div_ceil(HOUR as u64).max(1)).sum::<u64>()
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank - 1]
}

fn config(dir: &std::path::Path) -> ControllerConfig {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let controller_file = dir.join("controller.toml");
    std::fs::write(&controller_file, format!("{SCENARIO}{CONTROLLER}")).unwrap();
    ControllerConfig::load(&controller_file).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn an_hour_of_the_live_controller_replays_in_the_twin_with_the_same_figures() {
    let dir = std::env::temp_dir().join(format!("conductor-fidelity-{}", std::process::id()));
    let run = on_fakes(&config(&dir)).await;
    compare("fakes", &dir, &run, 5.0);
}

/// Compares the live run with the twin's replay of its export (waits within `slack` s).
fn compare(what: &str, dir: &std::path::Path, run: &LiveRun, slack: f64) {
    // The live figures, from the event log.
    let count = |kind: &str| run.events.iter().filter(|e| e.kind == kind).count() as u64;
    let waits: Vec<f64> = run
        .events
        .iter()
        .filter(|e| e.kind == SERVER_STARTED)
        .map(|e| e.data["wait_ms"].as_f64().unwrap() / 1000.0)
        .collect();
    let live_vm_hours = vm_hours(&run.events, END);

    // Exported and replayed with the measured delays.
    let meta = MetaInfo { name: "fidelity".into(), timezone: "UTC".into(), source: "fidelity test".into() };
    let exported = export::build(&run.listed, &run.events, T0, END, &meta).unwrap();
    exported.write(&dir.join("data"), false).unwrap();
    // `dataset` is a top-level key: before the first table.
    let scenario_text = format!(
        "dataset = \"{}\"\n{}",
        dir.join("data").display(),
        SCENARIO.replace("[lifecycle]\n", "[lifecycle]\ndelays_from = \"dataset\"\n")
    );
    let scenario_file = dir.join("scenario.toml");
    std::fs::write(&scenario_file, &scenario_text).unwrap();
    let scenario = conductor_sim::scenario::Scenario::load(&scenario_file).unwrap();
    let dataset = conductor_sim::dataset::Dataset::load(&dir.join("data")).unwrap();
    let outcome = conductor_sim::engine::run(&scenario, &dataset, scenario.seed, &mut |_| {});
    let k = &conductor_sim::report::Kpis::from_outcome(&outcome, scenario.seed);

    let twin_waits = (k.start_wait_p50_s, k.start_wait_p95_s);
    let live_waits = (percentile(waits.clone(), 50.0), percentile(waits.clone(), 95.0));
    eprintln!(
        "fidelity ({what}): live starts {} abandoned {} VMs {} VM hours {} waits p50 {:.1} s p95 {:.1} s; \
         twin starts {} abandoned {} VMs {} VM hours {} waits p50 {:.1} s p95 {:.1} s; measured boot {:?} provisioning {:?}",
        count(SERVER_STARTED),
        count(SERVER_ABANDONED),
        count(NODE_CREATED),
        live_vm_hours,
        live_waits.0,
        live_waits.1,
        k.starts,
        k.starts_abandoned,
        k.cloud_vms_created,
        k.cloud_vm_hours_billed,
        twin_waits.0,
        twin_waits.1,
        scenario.lifecycle.boot,
        scenario.lifecycle.provisioning,
    );
    assert_eq!(count(SERVER_STARTED), k.starts, "starts");
    assert_eq!(count(SERVER_ABANDONED), k.starts_abandoned, "abandoned starts");
    assert_eq!(count(NODE_CREATED), k.cloud_vms_created, "VMs created");
    assert_eq!(live_vm_hours, k.cloud_vm_hours_billed, "VM hours");
    assert!((live_waits.0 - twin_waits.0).abs() <= slack, "p50 wait: live {live_waits:?}, twin {twin_waits:?}");
    assert!((live_waits.1 - twin_waits.1).abs() <= slack, "p95 wait: live {live_waits:?}, twin {twin_waits:?}");
    assert!(count(NODE_CREATED) >= 3, "the hour scales up");
    assert!(count(NODE_DELETED) >= 1, "and back down");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The same hour against PostgreSQL, Podman (the stand-in game server) and the fake
/// Hetzner API: boots and VM creates take what they take in real time (the engine steps
/// every 15 s of virtual time with 50 ms of real time between steps: each step lists and
/// pings thirty containers, so finer steps would take minutes), and the export carries the
/// delays the fleet really showed. Waits within 20 s: a step is 15 s of virtual time, and
/// the twin draws each VM's provisioning from the measured distribution while the live
/// fleet had its own — the few servers that wait for a VM make the 95th percentile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_podman_and_the_fake_cloud_the_hour_replays_in_the_twin_too() {
    use conductor_controller::cloud::{CloudConfig, HetznerCloud};
    use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
    let (Some(store), Some(docker)) = (common::fresh_pg("fidelity").await, common::docker()) else { return };
    // Apart from other tests' servers on the same Podman.
    sqlx::query("ALTER SEQUENCE servers_id_seq RESTART WITH 700").execute(store.pool()).await.unwrap();
    let docker = Arc::new(docker);
    for id in 700..730 {
        docker.remove(id, true).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("conductor-fidelity-podman-{}", std::process::id()));
    let cfg = config(&dir);
    let fake = FakeHetzner::new(Behaviour { action_ms: 300, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let quick = CloudConfig { requests_per_s: 100.0, burst: 20.0, max_attempts: 1, backoff: Duration::from_millis(10) };
    let shared = docker.clone();
    let docker_for_vm: conductor_controller::live::DockerForVm =
        Box::new(move |_, _| Ok(shared.clone() as Arc<dyn NodeDriver>));
    let live_cfg = engine(&cfg, docker.clone(), Arc::new(HetznerCloud::new("token", Some(&url), quick)), docker_for_vm);
    let run = play(Arc::new(store), live_cfg, 700, &|_| {}, (15 * SECOND, Duration::from_millis(50))).await;
    for id in 700..730 {
        docker.remove(id, true).await.unwrap();
    }
    compare("podman", &dir, &run, 20.0);
}
