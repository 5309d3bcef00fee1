//! One live step at fleet scale on the in-memory drivers: 200 dedicated nodes (64 GiB) and
//! 20,000 servers (512 MiB), 16,000 of them running — every step pings the 200 nodes,
//! lists their containers, probes the 16,000 running servers and feeds the results to the
//! core, in the same engine code the daemon runs (`Live::tick`, MemoryStore).
//!
//! Prints the wall time of 60 steady steps (5 s apart in virtual time, so metering runs
//! every 12th) — median, p95 and max — and, apart, the core's share: one scaling tick of the
//! same scheduler state (a clone), and the `boot_complete`/`set_players` inputs a step makes.
//!
//! `cargo bench -p conductor-controller --bench tick`.

use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::fake::{Clock, FakeNode, Faults, MemArchive};
use conductor_controller::live::{DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{NewEntry, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::model::CostMode;
use conductor_core::scheduler::{Outbox, Timer};
use conductor_core::{Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: Millis = 1_760_000_000_000;
const NODES: usize = 200;
const SERVERS: usize = 20_000;
const RUNNING: usize = 16_000;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let clock = Clock::new(T0);
    let faults = Faults::none();
    let nodes: Vec<Arc<FakeNode>> =
        (0..NODES).map(|i| FakeNode::new(&format!("ded-{i}"), clock.clone(), faults.clone(), 10_000)).collect();
    let kind = conductor_controller::fake::ax41();
    let vm = conductor_controller::fake::cx23();
    let store = Arc::new(MemoryStore::new());
    let owner = store.create_owner("o", T0).await.unwrap().id;
    let credit = NewEntry::topup(owner, Decimal::from(1_000_000_000), "credit", T0);
    store.post(credit).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..SERVERS {
        let s = NewServer {
            owner,
            name: format!("s{i}"),
            ram_mib: 512,
            disk_mb: 1000,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        ids.push(store.create_server(s, T0).await.unwrap().id);
    }
    let cfg = LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler: SchedulerConfig::reference(vm, 0),
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
        stop_timeout: Duration::from_secs(10),
        image: "standin".into(),
        cmd: None,
        helper: Helper { image: "standin".into(), cmd: vec![] },
        archive: Arc::new(MemArchive::memory()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing::default(),
    };
    let mut live = Live::start(store.clone(), cfg, T0).await.unwrap();
    let mut now = T0;
    for &id in &ids[..RUNNING] {
        live.request_start(id, now).await.unwrap();
    }
    // Until every one runs (placements carried out, booted, answering).
    for _ in 0..10 {
        now += 5_000;
        clock.set(now);
        live.tick(now).await.unwrap();
    }
    let running = (0..RUNNING)
        .filter(|&i| {
            matches!(
                live.core().residence(conductor_core::ServerId(i as u32)),
                conductor_core::Residence::Running { .. }
            )
        })
        .count();
    assert_eq!(running, RUNNING, "every started server runs");
    assert_eq!(live.pending_intents(), 0);
    let mut times = Vec::new();
    for _ in 0..60 {
        now += 5_000;
        clock.set(now);
        let t = Instant::now();
        live.tick(now).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "step with {NODES} nodes, {SERVERS} servers ({RUNNING} running): median {:.1} ms, p95 {:.1} ms, max {:.1} ms (60 steps, metering in 5)",
        ms(times[30]),
        ms(times[56]),
        ms(times[59])
    );
    // The core's share: its scaling tick and the per-server inputs of a step.
    let mut core = live.core().clone();
    let mut out = Outbox::default();
    let t = Instant::now();
    core.timer(now, Timer::Tick, &mut out);
    let tick = t.elapsed();
    let t = Instant::now();
    for i in 0..RUNNING {
        let s = conductor_core::ServerId(i as u32);
        core.set_players(s, 0);
        let p = core.placement(s);
        core.boot_complete(now, s, p, &mut out);
    }
    let inputs = t.elapsed();
    println!("core share: scaling tick {:.3} ms, {RUNNING} ping results into the core {:.3} ms", ms(tick), ms(inputs));
}
