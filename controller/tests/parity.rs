//! Parity: for the same recorded state, the live controller decides exactly as the twin.
//!
//! The twin replays two generated days on one dedicated node with cloud VMs (the reference
//! policy). At sampled scaling ticks (every tick with a decision, the tick after it, and a
//! regular sample of quiet ones) the twin's state just before the tick is written into a
//! fresh store the way the controller records it: servers with their states and nodes,
//! sleeping since their stop, archived worlds, VMs with their creation times, and the
//! scaling memory. A controller configured from the same scenario sections (its
//! `controller.toml` is the scenario plus a `[controller]` section) adopts that store in
//! `observe` mode and ticks at the same instant. Its scaling decisions (action, node,
//! policy, reason with the figures seen) and the memory it records must equal the twin's.
//! With forecast-driven policies (17 days: MSTL needs two weeks) the twin's latest nightly
//! forecast is stored too, and the ticks after the first one are compared.

use conductor_controller::config::ControllerConfig;
use conductor_controller::live::Live;
use conductor_controller::store::{NewEvent, NewNode, NewServer, NodeState, ServerState, Store};
use conductor_controller::MemoryStore;
use conductor_core::scheduler::{NodeState as CoreNodeState, ScaleAction};
use conductor_core::time::DAY;
use conductor_core::{Millis, NodeId, NodeKind, Note, Residence, Scheduler, ServerId};
use conductor_sim::dataset::Dataset;
use conductor_sim::generate::GenConfig;
use conductor_sim::scenario::Scenario;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;

/// One scaling decision, comparable across the two: the node by its recorded name.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    action: String,
    node: Option<String>,
    policy: String,
    reason: String,
}

const CONTROLLER: &str = r#"
[controller]
database = "unused: the test hands the engine a memory store"
admin_token = "parity-admin-token"
mode = "observe"
archive_dir = "unused"
image = "unused"

[[controller.node]]
name = "ded-1"
docker = "tcp://127.0.0.1:9"
host = "127.0.0.1"

[controller.cloud]
token = "unused"
base_url = "http://127.0.0.1:9/v1"
cluster = "parity"
image = "unused"
vm_docker = "tcp://127.0.0.1:9"
"#;

fn vm_name(node: NodeId) -> String {
    format!("twin-vm-{}", node.0)
}

/// The twin's decisions at one tick.
fn twin_decisions(notes: &[Note], dedicated: &[String]) -> Vec<Decision> {
    notes
        .iter()
        .filter_map(|n| match n {
            Note::Scaled { action, policy, reason, .. } => {
                let (name, node) = match *action {
                    ScaleAction::Create { .. } => ("create", None),
                    ScaleAction::Delete { node } => ("delete", Some(node)),
                    ScaleAction::Cordon { node } => ("cordon", Some(node)),
                    ScaleAction::Uncordon { node } => ("uncordon", Some(node)),
                };
                let node = node.map(|n| dedicated.get(n.0 as usize).cloned().unwrap_or_else(|| vm_name(n)));
                Some(Decision { action: name.into(), node, policy: policy.to_string(), reason: reason.clone() })
            }
            _ => None,
        })
        .collect()
}

/// Writes the twin's state into `store` as the controller records it; returns the names of
/// the nodes written, in order.
async fn record(store: &MemoryStore, twin: &Scheduler, dedicated: &[String], at: Millis) -> Vec<String> {
    let mut node_ids: HashMap<NodeId, i64> = HashMap::new();
    let mut names = Vec::new();
    for (i, n) in twin.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let (name, state) = match (n.kind, n.state) {
            (NodeKind::Dedicated, _) => (dedicated[i].clone(), NodeState::Ready),
            (NodeKind::Cloud, CoreNodeState::Ready) => (vm_name(id), NodeState::Ready),
            (NodeKind::Cloud, CoreNodeState::Provisioning) => (vm_name(id), NodeState::Provisioning),
            (NodeKind::Cloud, CoreNodeState::Deleted) => continue,
            (_, other) => panic!("the reference policy does not make {other:?} nodes"),
        };
        let created = if n.kind == NodeKind::Dedicated { at } else { n.created_at };
        names.push(name.clone());
        let new = NewNode {
            name,
            kind: n.kind,
            type_name: n.type_name.clone(),
            provider_id: None,
            state,
            ram_mib: n.ram_mib,
            usable_mib: n.usable_mib,
        };
        node_ids.insert(id, store.upsert_node(new, created).await.unwrap().id);
    }
    let owner = store.create_owner("twin", at).await.unwrap();
    for i in 0..twin.server_count() {
        let sid = ServerId(i as u32);
        let spec = twin.spec(sid);
        let new = NewServer {
            owner: owner.id,
            name: format!("s{i}"),
            ram_mib: spec.ram_mib,
            disk_mb: spec.disk_mb,
            pay_per_use: spec.pay_per_use,
            cost_mode: spec.cost_mode,
        };
        let id = store.create_server(new, at).await.unwrap().id;
        let residence = twin.residence(sid);
        if matches!(residence, Residence::Archived) {
            let data = json!({ "archive": format!("s{id}"), "sha256": "0", "bytes": 0 });
            let e = NewEvent { at, kind: "server.archived".into(), server: Some(id), node: None, data };
            store.append_event(e).await.unwrap();
        }
        let (state, node, since) = match residence {
            Residence::Starting { node } => (ServerState::Starting, Some(node), at),
            Residence::Running { node } => (ServerState::Running, Some(node), at),
            Residence::Sleeping { node } => (ServerState::Sleeping, Some(node), twin.stopped_at(sid)),
            Residence::Archived => (ServerState::Archived, None, at),
            Residence::New => (ServerState::New, None, at),
        };
        let (state, since) = match twin.requested_at(sid) {
            Some(r) if twin.is_queued(sid) => (ServerState::Queued, r),
            _ => (state, since),
        };
        if state != ServerState::New {
            store.set_server_state(id, state, node.map(|n| node_ids[&n]), since).await.unwrap();
        }
    }
    let memory = serde_json::to_value(twin.scaling_memory()).unwrap();
    let e = NewEvent { at, kind: "scaling.memory".into(), server: None, node: None, data: memory };
    store.append_event(e).await.unwrap();
    // The twin's latest nightly forecast, stored as the live job stores its own (made at its
    // origin, the night's 03:00): the controller adopts it at start-up.
    if let Some(f) = twin.forecast() {
        let doc = conductor_controller::forecasting::document(f, (&f.mean, &f.mean), f.start, f.start - 14 * DAY);
        store.save_forecast(serde_json::to_value(&doc).unwrap(), f.start).await.unwrap();
    }
    names
}

/// Where a server is, with its node by name, and whether it waits: comparable across the two.
fn whereabouts(core: &Scheduler, names: &dyn Fn(NodeId) -> String) -> Vec<(String, bool)> {
    (0..core.server_count() as u32)
        .map(ServerId)
        .map(|s| {
            let at = match core.residence(s) {
                Residence::Starting { node } => format!("starting on {}", names(node)),
                Residence::Running { node } => format!("running on {}", names(node)),
                Residence::Sleeping { node } => format!("sleeping on {}", names(node)),
                other => format!("{other:?}"),
            };
            (at, core.is_queued(s))
        })
        .collect()
}

/// What the controller decides at `t` after adopting `before`, and the memory it records.
async fn controller_tick(
    file: &Path,
    twin: &Scheduler,
    dedicated: &[String],
    t: Millis,
    interval: Millis,
) -> (Vec<Decision>, conductor_core::ScalingMemory) {
    let store = Arc::new(MemoryStore::new());
    let written = record(&store, twin, dedicated, t).await;
    let seen = store.events(0, 100_000).await.unwrap().last().map_or(0, |e| e.seq);
    let cfg = ControllerConfig::load(file).unwrap();
    let live_cfg = conductor_controller::serve::live_config(&cfg).unwrap();
    // Started one interval earlier, so that its first scaling tick falls at `t`.
    let mut live = Live::start(store.clone(), live_cfg, t - interval).await.unwrap();
    // Adoption rebuilt every server where the twin has it (queued ones still waiting).
    let twin_name = |n: NodeId| dedicated.get(n.0 as usize).cloned().unwrap_or_else(|| vm_name(n));
    let (here, there) =
        (whereabouts(live.core(), &|n: NodeId| written[n.0 as usize].clone()), whereabouts(twin, &twin_name));
    let differ: Vec<_> = here.iter().zip(&there).enumerate().filter(|(_, (a, b))| a != b).take(5).collect();
    assert!(differ.is_empty(), "adopted (controller, twin) differ for servers {differ:?}");
    live.tick(t).await.unwrap();
    let names: HashMap<i64, String> = store.nodes().await.unwrap().into_iter().map(|n| (n.id, n.name)).collect();
    let events = store.events(0, 100_000).await.unwrap();
    // The memory the controller recorded (a restart would adopt it): the latest event.
    let recorded = events.iter().rev().find(|e| e.kind == "scaling.memory").unwrap();
    let recorded = serde_json::from_value(recorded.data.clone()).unwrap();
    assert_eq!(live.core().scaling_memory(), recorded, "the memory in use is the memory recorded");
    let decisions = events
        .into_iter()
        .filter(|e| e.seq > seen)
        .filter(|e| e.kind == "scaling.decision")
        .map(|e| Decision {
            action: e.data["action"].as_str().unwrap().into(),
            node: e.node.map(|n| names[&n].clone()),
            policy: e.data["policy"].as_str().unwrap().into(),
            reason: e.data["reason"].as_str().unwrap().into(),
        })
        .collect();
    (decisions, recorded)
}

#[tokio::test(flavor = "current_thread")]
async fn the_controller_decides_as_the_twin_on_the_same_state() {
    let gen = GenConfig { servers: 500, days: 2, seed: 11, ..GenConfig::default() };
    let policies = parity("reference", &gen, None).await;
    assert_eq!(policies, BTreeSet::from(["reactive".to_string()]));
}

/// Predictive (MSTL, re-fitted every night) beside the reactive policy with billing-hour
/// scale-in, and a forecast-sized spare pool: the twin's nightly forecast is stored as the
/// live job stores its own, and the controller adopting it decides the same. (That the
/// live job makes the twin's forecast from its event log is `tests/forecast.rs`.)
#[tokio::test(flavor = "current_thread")]
async fn forecast_driven_policies_decide_as_the_twin_with_the_nightly_forecast() {
    let gen = GenConfig { servers: 300, days: 17, seed: 5, ..GenConfig::default() };
    let policy = r#"[policy]
kind = "custom"
scale_in = "billing-hour"
billing_margin_s = 900

[policy.predictive]
source = "mstl"
lead_buffer_s = 300
target_utilisation = 0.8
scale_in = true
"#;
    let policies = parity("predictive", &gen, Some(policy)).await;
    assert!(policies.contains("predictive"), "the run must make predictive act: {policies:?}");
    // The pool alone (beside predictive the largest scale-up is predictive's, beside the
    // reactive policy a tie is the reactive's).
    let pool = r#"[policy]
kind = "custom"
reactive = false

[policy.spare_pool]
size = 1
from_forecast = true
source = "mstl"
"#;
    let policies = parity("pool", &gen, Some(pool)).await;
    assert!(policies.contains("spare-pool"), "the run must make the pool act: {policies:?}");
}

/// Runs the twin on generated data with `policy` (default: the reference) and compares the
/// controller's decisions at sampled ticks; returns the policies that decided something.
async fn parity(name: &str, gen: &GenConfig, policy: Option<&str>) -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!("conductor-parity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (data, text) = common::twin_fixture(&dir, "parity", gen);
    let text = match policy {
        Some(p) => text.replace("[policy]\nkind = \"reference\"\n", p),
        None => text,
    };
    let scenario_file: PathBuf = dir.join("scenario.toml");
    std::fs::write(&scenario_file, &text).unwrap();
    let controller_file = dir.join("controller.toml");
    // The scenario without its dataset (a twin-only key the controller refuses).
    let live_text: String = text.lines().filter(|l| !l.starts_with("dataset = ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&controller_file, format!("{live_text}{CONTROLLER}")).unwrap();

    let scenario = Scenario::load(&scenario_file).unwrap();
    let cfg = ControllerConfig::load(&controller_file).unwrap();
    assert_eq!(
        format!("{:?}", cfg.shared.scheduler),
        format!("{:?}", scenario.scheduler),
        "one file, one policy: the controller's scheduler configuration is the twin's"
    );
    let interval = scenario.scheduler.scaling.interval;
    let dataset = Dataset::load(&data).unwrap();
    let dedicated = vec!["ded-1".to_string()];

    // The twin's run: every tick's state before, decisions and memory after.
    let mut ticks: Vec<(Millis, Scheduler, Vec<Decision>, conductor_core::ScalingMemory)> = Vec::new();
    let mut observer = |t: Millis, before: &Scheduler, after: &Scheduler, notes: &[Note]| {
        ticks.push((t, before.clone(), twin_decisions(notes, &dedicated), after.scaling_memory()));
    };
    let outcome = conductor_sim::engine::run_observed(&scenario, &dataset, gen.seed, &mut observer);
    let with_decision: Vec<usize> = (0..ticks.len()).filter(|&i| !ticks[i].2.is_empty()).collect();
    let creates = ticks.iter().flat_map(|t| &t.2).filter(|d| d.action == "create").count();
    let deletes = ticks.iter().flat_map(|t| &t.2).filter(|d| d.action == "delete").count();
    assert!(creates >= 3 && deletes >= 3, "the day must make the policy act: {creates} creates, {deletes} deletes");
    assert!(outcome.abandoned() < outcome.waits.len() as u64);

    let mut sample: BTreeSet<usize> = with_decision.iter().flat_map(|&i| [i, i + 1]).collect();
    sample.extend((0..ticks.len()).step_by(40));
    if policy.is_some() {
        // Forecast-driven: the nights after the first forecast (two weeks in) are compared.
        sample.retain(|&i| ticks.get(i).is_some_and(|t| t.1.forecast().is_some()));
    }
    let acted: BTreeSet<String> =
        sample.iter().filter_map(|&i| ticks.get(i)).flat_map(|t| &t.2).map(|d| d.policy.clone()).collect();
    // And every tick where a server waits whose world sleeps on a node or lies in the archive.
    let waits_with_world = |c: &Scheduler| {
        (0..c.server_count() as u32).map(ServerId).any(|s| c.is_queued(s) && c.residence(s) != Residence::New)
    };
    sample.extend((0..ticks.len()).filter(|&i| waits_with_world(&ticks[i].1)));
    sample.retain(|&i| i < ticks.len());
    let mut queued = [0usize; 2];
    for &i in &sample {
        let (t, before, twin, memory) = &ticks[i];
        for s in (0..before.server_count() as u32).map(ServerId).filter(|&s| before.is_queued(s)) {
            queued[usize::from(before.residence(s) != Residence::New)] += 1;
        }
        let (live, live_memory) = controller_tick(&controller_file, before, &dedicated, *t, interval).await;
        assert_eq!(&live, twin, "tick {i} at {}", conductor_sim::timefmt::format_rfc3339(*t));
        assert_eq!(&live_memory, memory, "scaling memory after tick {i}");
    }
    eprintln!(
        "parity: {} ticks compared ({} with decisions: {creates} creates, {deletes} deletes in the run); \
         queued servers seen: {} new, {} sleeping or archived",
        sample.len(),
        with_decision.len(),
        queued[0],
        queued[1]
    );
    assert!(queued[1] > 0, "the sample must hold servers that wait with a world somewhere");
    std::fs::remove_dir_all(&dir).unwrap();
    acted
}
