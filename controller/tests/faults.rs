//! The live engine's own code against the in-memory drivers under seeded fault schedules,
//! with a virtual clock: calls fail transiently or for good, answers are lost after the
//! fact, nodes go silent and come back, containers crash, the cloud has outages and the
//! controller restarts at random moments — while a workload starts and stops servers and
//! the fleet scales. After every step the invariants hold; once the faults stop, everything
//! converges within a bounded number of steps.
//!
//! `CONDUCTOR_FAULT_SEEDS=N` runs N schedules (default 1000); `CONDUCTOR_FAULT_SEED=S`
//! replays one (a failure prints its seed).

use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::events::*;
use conductor_controller::fake::{Clock, FakeCloud, FakeNode, Faults, MemArchive};
use conductor_controller::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{NewEntry, NewServer, ServerState, Store};
use conductor_controller::MemoryStore;
use conductor_core::catalogue::Reserve;
use conductor_core::model::CostMode;
use conductor_core::{CloudType, DedicatedType, Millis, SchedulerConfig};
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T0: Millis = 1_760_000_000_000;
const S: Millis = 1000;
/// One step every 5 s of virtual time.
const STEP: Millis = 5 * S;
const BOOT: Millis = 10 * S;
/// A second running copy of a world (its node came back after its servers were restarted
/// elsewhere) is removed within this many steps, although its removal fails as often as
/// any call.
const MAX_DUPLICATE_STEPS: u32 = 6;
/// Steps without faults within which everything must have converged: a start whose world
/// cannot be restored is retried until the core gives it up (10 min), then 40 more steps.
const CONVERGE: u32 = 160;

struct World {
    clock: Arc<Clock>,
    faults: Arc<Faults>,
    dedicated: Vec<Arc<FakeNode>>,
    vms: Arc<Mutex<BTreeMap<String, Arc<FakeNode>>>>,
    cloud: Arc<FakeCloud>,
    archive: Arc<MemArchive>,
    store: Arc<MemoryStore>,
}

impl World {
    fn new(seed: u64, transient: f64, permanent: f64, lost: f64) -> World {
        let clock = Clock::new(T0);
        let faults = Faults::new(seed, transient, permanent, lost);
        let dedicated =
            (0..2).map(|i| FakeNode::new(&format!("ded-{i}"), clock.clone(), faults.clone(), BOOT)).collect();
        World {
            cloud: FakeCloud::new(clock.clone(), faults.clone(), 30 * S),
            clock,
            faults,
            dedicated,
            vms: Arc::default(),
            archive: Arc::new(MemArchive::memory()),
            store: Arc::new(MemoryStore::new()),
        }
    }

    fn config(&self) -> LiveConfig {
        let vm = CloudType {
            name: "cx23".into(),
            ram_mib: 4096,
            cores: 2,
            disk_gb: 40,
            disk_reserve_gb: 0,
            hourly_eur: Decimal::new(6, 3),
            monthly_cap_eur: Decimal::new(399, 2),
            reserve: Reserve::Mib(0),
        };
        let node = DedicatedType {
            name: "small".into(),
            ram_mib: 4096,
            cores: 2,
            disk_gb: 40,
            disk_reserve_gb: 0,
            monthly_eur: Decimal::from(10),
            reserve: Reserve::Mib(0),
        };
        let mut scheduler = SchedulerConfig::reference(vm, 3);
        scheduler.dead_after = 60 * S;
        let dedicated = self
            .dedicated
            .iter()
            .map(|d| DedicatedNode {
                name: d.name.clone(),
                kind: node.clone(),
                docker: d.clone() as Arc<dyn NodeDriver>,
            })
            .collect();
        let (vms, clock, faults) = (self.vms.clone(), self.clock.clone(), self.faults.clone());
        let docker_for_vm = Box::new(move |name: &str, _address: &str| {
            let mut vms = vms.lock().unwrap();
            let n =
                vms.entry(name.to_owned()).or_insert_with(|| FakeNode::new(name, clock.clone(), faults.clone(), BOOT));
            Ok(n.clone() as Arc<dyn NodeDriver>)
        });
        LiveConfig {
            joining: Default::default(),
            forecast: None,
            jobs: Default::default(),
            templates: Default::default(),
            worlds: Default::default(),
            game: conductor_controller::live::GameAccess::default(),
            scheduler,
            dedicated,
            cloud: Some(CloudSetup {
                client: self.cloud.clone(),
                cluster: "test".into(),
                image: "ubuntu".into(),
                location: None,
                user_data: CloudSetup::fixed_user_data(None),
                docker_for_vm,
                bootstrap_marker: false,
            }),
            idle_timeout: 300 * S,
            stop_timeout: Duration::from_secs(10),
            image: "standin".into(),
            cmd: None,
            helper: Helper { image: "standin".into(), cmd: vec![] },
            archive: self.archive.clone(),
            mode: Mode::Enforce,
            billing: BillingSetup { window: 60 * S, ..BillingSetup::default() },
            healing: Healing {
                start_timeout: 60 * S,
                crash_grace: 20 * S,
                unreachable_after: 10 * S,
                vm_ready_timeout: 120 * S,
                gc_grace: 30 * S,
                retry_base: S,
                retry_max: 10 * S,
                // Every copy of the fakes is done within its step: replays are exact.
                data_wait: std::time::Duration::from_secs(3600),
                ..Healing::default()
            },
        }
    }

    /// Every node the fakes have, VMs the cloud deleted left out.
    fn nodes(&self) -> Vec<Arc<FakeNode>> {
        let deleted: Vec<String> =
            self.cloud.vms().into_iter().filter(|v| v.deleted_at.is_some()).map(|v| v.name).collect();
        let vms = self.vms.lock().unwrap();
        self.dedicated
            .iter()
            .cloned()
            .chain(vms.iter().filter(|(n, _)| !deleted.contains(n)).map(|(_, v)| v.clone()))
            .collect()
    }

    fn all_nodes(&self) -> Vec<Arc<FakeNode>> {
        let vms = self.vms.lock().unwrap();
        self.dedicated.iter().cloned().chain(vms.values().cloned()).collect()
    }
}

fn fail(seed: u64, what: String) -> String {
    format!("seed {seed}: {what}")
}

/// With `CONDUCTOR_FAULT_TRACE=<server id>`, a failing replay prints that server's events.
async fn trace(store: &MemoryStore) {
    let Some(id) = std::env::var("CONDUCTOR_FAULT_TRACE").ok().and_then(|s| s.parse::<i64>().ok()) else { return };
    for e in store.events(0, 1_000_000).await.unwrap() {
        if id < 0
            || e.server == Some(id)
            || (e.server.is_none() && !e.kind.starts_with("billing") && !e.kind.starts_with("scaling.memory"))
        {
            eprintln!("{:>6} {:<24} s={:?} n={:?} {}", (e.at - T0) / 1000, e.kind, e.server, e.node, e.data);
        }
    }
}

/// Billed running intervals of each server, from the event log as billing reads it.
fn billed(events: &[conductor_controller::store::Event]) -> BTreeMap<i64, Vec<(Millis, Millis)>> {
    let mut open: BTreeMap<i64, Millis> = BTreeMap::new();
    let mut out: BTreeMap<i64, Vec<(Millis, Millis)>> = BTreeMap::new();
    for e in events {
        let Some(s) = e.server else { continue };
        let k = e.kind.as_str();
        if !conductor_controller::billing::Usage::follows(k) {
            continue;
        }
        if let Some(a) = open.remove(&s) {
            if e.at > a {
                out.entry(s).or_default().push((a, e.at));
            }
        }
        if k == SERVER_STARTED || k == SERVER_RESUMED {
            open.insert(s, e.at);
        }
    }
    out
}

/// The core's id of a store server (the engine adds servers in store order).
fn live_id(live: &Live<MemoryStore>, store_id: i64) -> conductor_core::ServerId {
    conductor_core::ServerId((store_id - 1) as u32).min(conductor_core::ServerId(live.core().server_count() as u32 - 1))
}

fn covered(runs: &[(Millis, Millis)], a: Millis, b: Millis) -> Millis {
    runs.iter().map(|&(x, y)| (y.min(b) - x.max(a)).max(0)).sum()
}

async fn run(seed: u64, steps: u32) -> Result<(), String> {
    let store = Arc::new(MemoryStore::new());
    let r = run_on(seed, steps, store.clone()).await;
    if r.is_err() {
        trace(&store).await;
    }
    r
}

async fn run_on(seed: u64, steps: u32, store: Arc<MemoryStore>) -> Result<(), String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut w = World::new(seed ^ 0x5eed, 0.15, 0.02, 0.05);
    w.store = store.clone();
    let owner = store.create_owner("o", T0).await.unwrap().id;
    let credit = NewEntry::topup(owner, Decimal::from(1_000_000), "credit", T0);
    store.post(credit).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        let ram = [1024, 2048][i % 2];
        let s = NewServer {
            owner,
            name: format!("s{i}"),
            ram_mib: ram,
            disk_mb: 100,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        ids.push(store.create_server(s, T0).await.unwrap().id);
    }
    let mut live = Live::start(store.clone(), w.config(), T0).await.map_err(|e| fail(seed, e.to_string()))?;
    let mut wanted: BTreeMap<i64, bool> = ids.iter().map(|&id| (id, false)).collect();
    let mut silent_until: BTreeMap<usize, Millis> = BTreeMap::new();
    let mut duplicate_for: BTreeMap<i64, u32> = BTreeMap::new();
    let mut now = T0;
    // Faults for `steps` steps, then none until everything is quiet for 3 steps in a row
    // (at most CONVERGE steps).
    let calm_at = steps;
    let mut quiet = 0;
    for step in 0..steps + CONVERGE {
        if step >= calm_at {
            let starting = ids.iter().any(|&id| {
                matches!(live.core().residence(live_id(&live, id)), conductor_core::Residence::Starting { .. })
            });
            let provisioning =
                live.core().nodes().iter().any(|n| n.state == conductor_core::scheduler::NodeState::Provisioning);
            quiet = if live.pending_intents() == 0
                && live.strays() == 0
                && live.core().queue_len() == 0
                && !starting
                && !provisioning
            {
                quiet + 1
            } else {
                0
            };
            if std::env::var("CONDUCTOR_FAULT_SEED").is_ok() && quiet == 0 {
                eprintln!(
                    "step {step}: intents {:?} strays {} queue {} starting {starting} provisioning {provisioning}",
                    live.intents(),
                    live.strays(),
                    live.core().queue_len()
                );
            }
            if quiet >= 3 {
                break;
            }
        }
        now += STEP;
        w.clock.set(now);
        let calm = step >= calm_at;
        if step == calm_at {
            w.faults.calm();
            w.cloud.set_down(false);
            for n in w.all_nodes() {
                n.set_silent(false);
            }
        }
        if !calm {
            // The workload: customers start and stop servers.
            if rng.random_bool(0.3) {
                let id = ids[rng.random_range(0..ids.len())];
                let start = rng.random_bool(0.6);
                let r = if start { live.request_start(id, now).await } else { live.request_stop(id, now).await };
                r.map_err(|e| fail(seed, format!("request: {e}")))?;
                wanted.insert(id, start);
            }
            // Faults of the world: silent nodes, crashes, cloud outages.
            let nodes = w.nodes();
            if rng.random_bool(0.02) {
                let i = rng.random_range(0..nodes.len());
                nodes[i].set_silent(true);
                silent_until.insert(i, now + rng.random_range(2..25) * STEP);
            }
            for (i, until) in silent_until.clone() {
                if now >= until {
                    if let Some(n) = nodes.get(i) {
                        n.set_silent(false);
                    }
                    silent_until.remove(&i);
                }
            }
            if rng.random_bool(0.03) {
                let n = &nodes[rng.random_range(0..nodes.len())];
                if let Some((&s, _)) = n.containers().iter().find(|(_, c)| c.running) {
                    n.crash(s, 137);
                }
            }
            if rng.random_bool(0.01) {
                w.cloud.set_down(true);
            } else if rng.random_bool(0.1) {
                w.cloud.set_down(false);
            }
            // The daemon is killed now and then (in-memory state gone; the store stays).
            if rng.random_bool(0.01) {
                drop(live);
                live = Live::start(store.clone(), w.config(), now).await.map_err(|e| fail(seed, e.to_string()))?;
            }
        }
        live.tick(now).await.map_err(|e| fail(seed, format!("step {step}: {e}")))?;

        // Invariants after every step.
        // 1. No world runs twice on nodes that answer for more than a few steps (a VM the
        // controller is deleting does not count: nothing routes to it any more).
        let deleting: Vec<String> = store
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.state == conductor_controller::store::NodeState::Deleted)
            .map(|n| n.name)
            .collect();
        let mut running: BTreeMap<i64, u32> = BTreeMap::new();
        for n in w.nodes().iter().filter(|n| !n.is_silent() && !deleting.contains(&n.name)) {
            for (s, c) in n.containers() {
                if c.running {
                    *running.entry(s).or_default() += 1;
                }
            }
        }
        for &id in &ids {
            let d = duplicate_for.entry(id).or_default();
            *d = if running.get(&id).copied().unwrap_or(0) > 1 { *d + 1 } else { 0 };
            if *d > MAX_DUPLICATE_STEPS {
                return Err(fail(seed, format!("step {step}: server {id} runs on two nodes for {d} steps")));
            }
        }
        // 2. No two VMs for one create (names are the intents' keys).
        let vms = w.cloud.vms();
        let mut names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|p| p[0] == p[1]) {
            return Err(fail(seed, format!("step {step}: duplicate VM names {names:?}")));
        }
        // 3. The core never counts more VMs than its limit.
        if live.core().cloud_vms() > 3 {
            return Err(fail(seed, format!("step {step}: {} VMs", live.core().cloud_vms())));
        }
    }
    // Convergence.
    if quiet < 3 {
        let starting: Vec<_> = ids.iter().map(|&id| (id, live.core().residence(live_id(&live, id)))).collect();
        let nodes: Vec<_> = live.core().nodes().iter().map(|n| n.state).collect();
        return Err(fail(
            seed,
            format!("not quiet {CONVERGE} steps after the faults stopped: {:?} {starting:?} {nodes:?}", live.intents()),
        ));
    }
    if live.pending_intents() != 0 {
        return Err(fail(seed, format!("{} intents still pending: {:?}", live.pending_intents(), live.intents())));
    }
    if !store.pending_intents().await.unwrap().is_empty() {
        return Err(fail(seed, "intents pending in the store".into()));
    }
    let nodes = w.nodes();
    for (&id, &want) in &wanted {
        let s = store.server(id).await.unwrap();
        let copies: usize = nodes.iter().filter(|n| n.containers().get(&id).is_some_and(|c| c.running)).count();
        if want && (s.state != ServerState::Running || copies != 1) {
            // A start may be abandoned (give-up) or stopped by a crash loop: then it is not
            // wanted any more in the core, which is fine as long as nothing runs half-way.
            let events = store.events(0, 1_000_000).await.unwrap();
            let given_up = events.iter().rev().find(|e| {
                e.server == Some(id)
                    && [SERVER_REQUESTED, SERVER_ABANDONED, SERVER_CRASH_LOOP, SERVER_STARTED]
                        .contains(&e.kind.as_str())
            });
            let ended = given_up.is_some_and(|e| e.kind == SERVER_ABANDONED || e.kind == SERVER_CRASH_LOOP);
            if !(ended && copies == 0 && s.state != ServerState::Running) {
                let c = live.core();
                let nodes: Vec<_> = c.nodes().iter().map(|n| (n.state, n.reserved_mib, n.usable_mib)).collect();
                return Err(fail(seed, format!(
                    "server {id} wanted: state {:?}, {copies} running copies; VMs {}, queue {}, {:?}, nodes {nodes:?}, memory {:?}",
                    s.state, c.cloud_vms(), c.queue_len(), c.utilisation(true), c.scaling_memory()
                )));
            }
        }
        if !want && copies != 0 {
            return Err(fail(seed, format!("server {id} stopped but {copies} containers run ({:?})", s.state)));
        }
    }
    // No world lost: every server that ever ran has its world on a node that still exists
    // or in the archive store (a VM is deleted only after its worlds are saved).
    let objects = w.archive.list().await.map_err(|e| fail(seed, e.to_string()))?;
    let events_all = store.events(0, 1_000_000).await.unwrap();
    for &id in &ids {
        let ran = w.all_nodes().iter().any(|n| n.runs().contains_key(&id));
        let on_node = nodes.iter().any(|n| n.volumes().contains_key(&id));
        // An archive, or a backup (an archive of an unchanged world may be its last backup).
        let archived = objects
            .iter()
            .any(|(name, _)| name.starts_with(&format!("s{id}-")) || name.starts_with(&format!("b{id}-")));
        // Only a node that died may take a world with it (without a backup yet): a server
        // that was ever placed on a node before it died is left out.
        let died_with_node = events_all.iter().any(|d| {
            d.kind == NODE_DEAD
                && events_all
                    .iter()
                    .any(|p| p.kind == SERVER_PLACED && p.server == Some(id) && p.node == d.node && p.at <= d.at)
        });
        if ran && !on_node && !archived && !died_with_node {
            let state = store.server(id).await.unwrap().state;
            return Err(fail(
                seed,
                format!("server {id}'s world is lost ({state:?}): on no node, in no archive ({objects:?})"),
            ));
        }
    }
    // No orphan container: each belongs to a server placed or sleeping on that node.
    let core = live.core();
    let store_nodes = store.nodes().await.unwrap();
    for n in &nodes {
        let node_row = store_nodes
            .iter()
            .find(|r| r.name == n.name)
            .ok_or_else(|| fail(seed, format!("node {} unknown", n.name)))?;
        for (s, _) in n.containers() {
            let server = store.server(s).await.unwrap();
            if server.node != Some(node_row.id) {
                return Err(fail(seed, format!("orphan container of server {s} on {} ({:?})", n.name, server.state)));
            }
        }
    }
    // No world lost on the way: a sleeping server's world is on its node.
    for &id in &ids {
        let s = store.server(id).await.unwrap();
        if s.state == ServerState::Sleeping {
            let row = store_nodes.iter().find(|r| Some(r.id) == s.node).expect("a sleeping server has a node");
            let n = w.all_nodes().into_iter().find(|n| n.name == row.name).expect("a fake node");
            if !n.volumes().contains_key(&id) {
                return Err(fail(seed, format!("server {id} sleeps on {} without its world", n.name)));
            }
        }
    }
    // No orphan volume: a world on a node where its server does not live stays only if no
    // verified archive of it exists (then it may be the only copy).
    let all_events = store.events(0, 1_000_000).await.unwrap();
    let archived: std::collections::BTreeSet<i64> =
        all_events.iter().filter(|e| e.kind == SERVER_ARCHIVED).filter_map(|e| e.server).collect();
    for n in &nodes {
        let node_row = store_nodes.iter().find(|r| r.name == n.name).expect("checked above");
        for (s, _) in n.volumes() {
            let server = store.server(s).await.unwrap();
            if server.node != Some(node_row.id) && archived.contains(&s) && !n.containers().contains_key(&s) {
                return Err(fail(seed, format!("orphan volume of server {s} on {} ({:?})", n.name, server.state)));
            }
        }
    }
    // Every VM the cloud has is one the controller holds, and the other way round.
    for v in w.cloud.vms().iter().filter(|v| v.deleted_at.is_none()) {
        let row = store_nodes.iter().find(|r| r.name == v.name);
        if !row.is_some_and(|r| {
            matches!(
                r.state,
                conductor_controller::store::NodeState::Ready | conductor_controller::store::NodeState::Provisioning
            )
        }) {
            return Err(fail(seed, format!("VM {} exists but the store says {:?}", v.name, row.map(|r| r.state))));
        }
    }
    let _ = core;
    // Billing follows what was observed: every billed run was really running, except after
    // a run ended and before the controller could see it (up to its node's next successful
    // listing, plus the step that acts on it).
    let events = store.events(0, 1_000_000).await.unwrap();
    let mut real: BTreeMap<i64, Vec<(Millis, Millis, Vec<Millis>)>> = BTreeMap::new();
    for n in w.all_nodes() {
        let listed = n.listed();
        for (s, runs) in n.runs() {
            real.entry(s).or_default().extend(runs.into_iter().map(|(a, b)| (a, b.unwrap_or(now), listed.clone())));
        }
    }
    for (s, spans) in billed(&events) {
        let runs = real.get(&s).cloned().unwrap_or_default();
        let plain: Vec<(Millis, Millis)> = runs.iter().map(|r| (r.0, r.1)).collect();
        for (a, b) in spans {
            if covered(&plain, a, b) == b - a {
                continue;
            }
            // The uncovered part must start where a run ended and end by the first listing
            // of that run's node that could show it.
            let mut t = a;
            while t < b {
                if let Some(r) = plain.iter().find(|r| r.0 <= t && t < r.1) {
                    t = r.1;
                    continue;
                }
                let ended = runs.iter().filter(|r| r.1 <= t).max_by_key(|r| r.1);
                let Some((_, end, listed)) = ended else {
                    return Err(fail(seed, format!("server {s} billed running from {a} but no container ran")));
                };
                let seen = listed.iter().copied().find(|&l| l > *end).unwrap_or(now);
                let next = plain.iter().filter(|r| r.0 > t).map(|r| r.0).min().unwrap_or(b).min(b);
                if next > seen + STEP {
                    return Err(fail(seed, format!(
                        "server {s} billed running {a}..{b}: its run ended at {end}, seen at {seen}, billed until {next}"
                    )));
                }
                t = next;
            }
        }
    }
    // The ledger: one entry per key, balance = credits − charges.
    let ledger = store.ledger(owner, 0, u32::MAX).await.unwrap();
    let keys: std::collections::BTreeSet<_> = ledger.iter().map(|e| e.key.clone()).collect();
    if keys.len() != ledger.len() {
        return Err(fail(seed, "a ledger key twice".into()));
    }
    let sum: Decimal = ledger.iter().map(|e| e.amount).sum();
    if sum != store.balance(owner).await.unwrap() {
        return Err(fail(seed, "balance is not the ledger's sum".into()));
    }
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn the_engine_holds_its_invariants_and_converges_under_seeded_faults() {
    let seeds: Vec<u64> = match std::env::var("CONDUCTOR_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("a seed")],
        Err(_) => {
            let n = std::env::var("CONDUCTOR_FAULT_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
            (0..n).collect()
        }
    };
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(e) = run(seed, 160).await {
            if std::env::var("CONDUCTOR_FAULT_SEED").is_ok() {
                eprintln!("{e}");
            }
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} schedules failed (replay with CONDUCTOR_FAULT_SEED=…):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The operators' webhook is told once per incident: a node declared dead and its return,
/// a crash loop, a command failed for good.
#[tokio::test(flavor = "current_thread")]
async fn operators_are_told_once_per_incident() {
    let told = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = told.clone();
    let hook = axum::Router::new().route(
        "/ops",
        axum::routing::post(move |body: String| {
            let keep = keep.clone();
            async move { keep.lock().unwrap().push(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ops", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let w = World::new(1, 0.0, 0.0, 0.0);
    let store = w.store.clone();
    let owner = store.create_owner("o", T0).await.unwrap().id;
    let credit = NewEntry::topup(owner, Decimal::from(100), "credit", T0);
    store.post(credit).await.unwrap();
    let new = |name: &str| NewServer {
        owner,
        name: name.into(),
        ram_mib: 1024,
        disk_mb: 100,
        pay_per_use: false,
        cost_mode: CostMode::Off,
    };
    let a = store.create_server(new("a"), T0).await.unwrap().id;
    let mut cfg = w.config();
    cfg.healing.ops_webhook = Some(url);
    let mut live = Live::start(store.clone(), cfg, T0).await.unwrap();
    let mut now = T0;
    async fn step(live: &mut Live<MemoryStore>, clock: &Clock, now: &mut Millis) {
        *now += STEP;
        clock.set(*now);
        live.tick(*now).await.unwrap();
    }
    live.request_start(a, now).await.unwrap();
    for _ in 0..4 {
        step(&mut live, &w.clock, &mut now).await;
    }
    assert_eq!(store.server(a).await.unwrap().state, ServerState::Running);
    let ded = &w.dedicated[0];
    // A crash loop: three crashes within ten minutes, one message.
    for _ in 0..3 {
        assert!(ded.crash(a, 1), "a runs on ded-0");
        for _ in 0..5 {
            step(&mut live, &w.clock, &mut now).await;
        }
    }
    let msgs = told.lock().unwrap().clone();
    assert_eq!(msgs.iter().filter(|m| m.contains("crashed 3 times")).count(), 1, "{msgs:?}");
    assert_eq!(store.server(a).await.unwrap().state, ServerState::Sleeping, "stopped after the loop");
    // ded-0 goes silent for two minutes: declared dead (once), then back (once).
    ded.set_silent(true);
    for _ in 0..24 {
        step(&mut live, &w.clock, &mut now).await;
    }
    ded.set_silent(false);
    for _ in 0..4 {
        step(&mut live, &w.clock, &mut now).await;
    }
    let msgs = told.lock().unwrap().clone();
    assert_eq!(msgs.iter().filter(|m| m.contains("is dead")).count(), 1, "{msgs:?}");
    assert_eq!(msgs.iter().filter(|m| m.contains("answers again")).count(), 1, "{msgs:?}");
    // Nothing else was said.
    assert_eq!(msgs.len(), 3, "{msgs:?}");
}

/// An intent that is not done long after it was asked for is reported once, and goes on.
#[tokio::test(flavor = "current_thread")]
async fn an_intent_pending_too_long_is_reported_once() {
    let w = World::new(1, 0.0, 0.0, 0.0);
    let store = w.store.clone();
    let owner = store.create_owner("o", T0).await.unwrap().id;
    let new = NewServer {
        owner,
        name: "a".into(),
        ram_mib: 1024,
        disk_mb: 100,
        pay_per_use: false,
        cost_mode: CostMode::Off,
    };
    let a = store.create_server(new, T0).await.unwrap().id;
    let mut cfg = w.config();
    cfg.healing.stale_after = 30 * S;
    let mut live = Live::start(store.clone(), cfg, T0).await.unwrap();
    let credit = NewEntry::topup(owner, Decimal::from(100), "credit", T0);
    store.post(credit).await.unwrap();
    // Its node is silent: the placement waits (retried), past the stale limit.
    w.dedicated[0].set_silent(true);
    live.request_start(a, T0).await.unwrap();
    let mut now = T0;
    for _ in 0..12 {
        now += STEP;
        w.clock.set(now);
        live.tick(now).await.unwrap();
    }
    let events = store.events(0, 100_000).await.unwrap();
    let stale: Vec<_> = events.iter().filter(|e| e.kind == INTENT_STALE).collect();
    assert_eq!(stale.len(), 1, "reported once");
    assert_eq!(stale[0].server, Some(a));
    assert!(stale[0].data["pending_ms"].as_i64().unwrap() >= 30 * S);
    assert_eq!(live.metrics().stale_intents, 1);
}

/// The policy lets a VM go while a world on it still has to be saved (its stop was asked for
/// and the next step comes late, the sleep window over): the VM is deleted only after that
/// world's stop and archive are carried out on it.
#[tokio::test(flavor = "current_thread")]
async fn a_vm_let_go_is_deleted_only_after_its_worlds_are_saved() {
    let w = World::new(7, 0.0, 0.0, 0.0);
    let store = w.store.clone();
    let owner = store.create_owner("o", T0).await.unwrap().id;
    store.post(NewEntry::topup(owner, Decimal::from(1000), "credit", T0)).await.unwrap();
    let mut ids = Vec::new();
    for (name, ram_mib) in [("a", 4096), ("b", 4096), ("c", 1024)] {
        let s =
            NewServer { owner, name: name.into(), ram_mib, disk_mb: 100, pay_per_use: false, cost_mode: CostMode::Off };
        ids.push(store.create_server(s, T0).await.unwrap().id);
    }
    let mut live = Live::start(store.clone(), w.config(), T0).await.unwrap();
    let mut now = T0;
    for &id in &ids {
        live.request_start(id, now).await.unwrap();
    }
    for _ in 0..200 {
        now += STEP;
        w.clock.set(now);
        live.tick(now).await.unwrap();
        let states = futures_util::future::join_all(ids.iter().map(|&id| store.server(id))).await;
        if states.iter().all(|s| s.as_ref().unwrap().state == ServerState::Running) {
            break;
        }
    }
    let c = store.server(ids[2]).await.unwrap();
    assert_eq!(c.state, ServerState::Running);
    let vm_row = store.nodes().await.unwrap().into_iter().find(|n| Some(n.id) == c.node).unwrap();
    assert_eq!(vm_row.kind, conductor_core::NodeKind::Cloud, "c runs on a VM");
    let vm = w.vms.lock().unwrap()[&vm_row.name].clone();
    assert!(vm.volumes().contains_key(&ids[2]));

    // Everyone stops; the next step comes two days later.
    for &id in &ids {
        live.request_stop(id, now).await.unwrap();
    }
    now += 49 * 3600 * S;
    for _ in 0..100 {
        w.clock.set(now);
        live.tick(now).await.unwrap();
        if w.cloud.vms().iter().all(|v| v.deleted_at.is_some()) {
            break;
        }
        now += STEP;
    }
    assert!(w.cloud.vms().iter().all(|v| v.deleted_at.is_some()), "the idle VM goes");
    let objects = w.archive.list().await.unwrap();
    assert!(
        objects.iter().any(|(name, _)| name.starts_with(&format!("s{}-", ids[2]))),
        "c's world was archived before its VM went: {objects:?}"
    );
    let events = store.events(0, 100_000).await.unwrap();
    let archived = events.iter().position(|e| e.kind == SERVER_ARCHIVED && e.server == Some(ids[2])).unwrap();
    let deleted = events.iter().position(|e| e.kind == NODE_DELETED && e.node == Some(vm_row.id)).unwrap();
    assert!(archived < deleted, "archived, then deleted");
    assert!(
        !events.iter().any(|e| e.kind == INTENT_UNNECESSARY && e.server == Some(ids[2])),
        "no intent of c was dropped as unnecessary"
    );
}
