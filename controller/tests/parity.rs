//! Parity: for the same recorded state, the live controller decides exactly as the twin.
//!
//! The twin replays generated days on one dedicated node with cloud VMs, and an observer
//! sees every core input it delivers. For a sample of the inputs the controller takes from
//! its API and its clock — scaling ticks (every one that decided something, the one after,
//! those with a waiting world, a silent node or moves in the hourly budget, and a regular
//! share of quiet ones), other timers (archive, give-up, job kill), starts, stops, plan
//! changes and job submissions — the twin's state just before is written into a fresh store
//! the way the controller records it: servers with their states and nodes, sleeping since
//! their stop, archived worlds, VMs (ready, provisioning, cordoned, silent), moves under way
//! and past ones, what owners were told and answered, open jobs, the scaling memory and the
//! latest nightly forecast. A controller configured from the same scenario sections adopts
//! that store in `observe` mode, is told the player counts its pings would see, and is given
//! the same input at the same instant. Every command it records (nodes by name, jobs by the
//! twin's number) must equal the twin's, and at ticks its scaling decisions (action, node,
//! policy, reason with the figures seen) and the memory it records too.
//!
//! Not replayed: what the controller learns from its nodes (boot done, a start that failed —
//! the only source of `Discard` —, crashes, a node's death: a restart gives a silent node a
//! full `dead_after` again, on purpose); those paths are `tests/healing.rs`,
//! `tests/faults.rs` and `tests/fidelity.rs`.

use conductor_controller::config::ControllerConfig;
use conductor_controller::live::Live;
use conductor_controller::live::{Action, RestoreFrom};
use conductor_controller::store::{
    JobState, NewEntry, NewEvent, NewJob, NewNode, NewServer, NodeState, ServerState, Store,
};
use conductor_controller::MemoryStore;
use conductor_core::scheduler::{JobState as CoreJobState, NodeState as CoreNodeState, ScaleAction};
use conductor_core::time::DAY;
use conductor_core::{Command, Millis, NodeId, NodeKind, Note, Residence, Scheduler, ServerId, Timer};
use conductor_sim::dataset::Dataset;
use conductor_sim::engine::{Input, Observer, Seen};
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
async fn record(store: &MemoryStore, twin: &Scheduler, dedicated: &[String], at: Millis) -> (Vec<String>, Vec<i64>) {
    let mut node_ids: HashMap<NodeId, i64> = HashMap::new();
    let mut names = Vec::new();
    for (i, n) in twin.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let state = match n.state {
            CoreNodeState::Ready => NodeState::Ready,
            CoreNodeState::Provisioning => NodeState::Provisioning,
            CoreNodeState::Cordoned => NodeState::Cordoned,
            CoreNodeState::Unreachable { .. } => NodeState::Unreachable,
            CoreNodeState::Deleted => continue,
            CoreNodeState::Dead => panic!("dead nodes are not sampled"),
        };
        let name = match n.kind {
            NodeKind::Dedicated => dedicated[i].clone(),
            NodeKind::Cloud => vm_name(id),
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
        let stored = store.upsert_node(new, created).await.unwrap().id;
        if state != NodeState::Ready {
            // Dedicated nodes are upserted ready; their state of record is set after.
            store.set_node_state(stored, state, None, at).await.unwrap();
        }
        node_ids.insert(id, stored);
    }
    let mut server_ids = Vec::new();
    let owner = store.create_owner("twin", at).await.unwrap();
    // Enough credit for every start the sample asks for.
    store.post(NewEntry::topup(owner.id, "1000".parse().unwrap(), "parity", at)).await.unwrap();
    // Past moves (oldest first), the hourly budget and `auto` owners' once-per rule.
    let mut moves: Vec<(Millis, ServerId)> = twin.recent_migrations().collect();
    for s in (0..twin.server_count() as u32).map(ServerId) {
        if let Some(m) = twin.last_migrated(s).filter(|m| !moves.contains(&(*m, s))) {
            moves.push((m, s));
        }
    }
    moves.sort();
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
        server_ids.push(id);
    }
    for &(m, s) in &moves {
        let from = twin.migrating_from(s).filter(|_| twin.last_migrated(s) == Some(m)).map(|n| node_ids[&n]);
        let data = json!({ "from": from, "players": twin.players(s) });
        let e = NewEvent {
            at: m,
            kind: "server.migrating".into(),
            server: Some(server_ids[s.0 as usize]),
            node: None,
            data,
        };
        store.append_event(e).await.unwrap();
    }
    for s in (0..twin.server_count() as u32).map(ServerId) {
        let id = server_ids[s.0 as usize];
        if let (Some(from), Residence::Starting { node: to }) = (twin.migrating_from(s), twin.residence(s)) {
            // A move under way: the placement on `to` from `from`'s copy is still to do.
            let action =
                Action::Place { server: id, node: node_ids[&to], restore: RestoreFrom::Node { node: node_ids[&from] } };
            let key = format!("place:{id}:parity");
            store.begin_intent(&key, "place", serde_json::to_value(&action).unwrap(), at).await.unwrap();
        }
        // What its owner was told or answered since its last move.
        let (announced, asked, accepted) = twin.consent(s);
        let tell = |at: Millis, kind: &str, data: serde_json::Value| NewEvent {
            at,
            kind: kind.into(),
            server: Some(id),
            node: None,
            data,
        };
        let mut told = Vec::new();
        if let Some(a) = announced {
            told.push(tell(a, "server.announced", json!({})));
        }
        if asked || accepted {
            told.push(tell(at, "server.recommended", json!({ "saving_per_hour": "0" })));
        }
        if accepted {
            told.push(tell(at, "server.consented", json!({})));
        }
        for e in told {
            store.append_event(e).await.unwrap();
        }
    }
    // Open jobs, in the twin's order (the controller adopts them in submission order).
    for (_, ram, state) in twin.jobs() {
        let (state, node, kill_at) = match state {
            CoreJobState::Ended => continue,
            CoreJobState::Queued => (JobState::Queued, None, None),
            CoreJobState::Running { node } => (JobState::Running, Some(node_ids[&node]), None),
            CoreJobState::Noticed { node, kill_at } => (JobState::Noticed, Some(node_ids[&node]), Some(kill_at)),
        };
        let new = NewJob {
            owner: owner.id,
            image: "job".into(),
            cmd: Vec::new(),
            ram_mib: ram,
            max_duration_s: 365 * 86_400,
            price_per_gib_hour: "0.01".parse().unwrap(),
        };
        let mut job = store.create_job(new, at).await.unwrap();
        (job.state, job.node, job.kill_at) = (state, node, kill_at);
        store.update_job(&job).await.unwrap();
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
    (names, server_ids)
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

/// A command as text with its nodes by name, jobs by the twin's number and placements left
/// out (each side counts those its own way).
fn normalize(command: &str, node: &dyn Fn(u32) -> String, job: &dyn Fn(u32) -> u32) -> String {
    let mut out = String::new();
    let mut rest = command;
    while let Some(i) = ["NodeId(", "JobId(", "PlacementId("].iter().filter_map(|p| rest.find(p).map(|i| (i, *p))).min()
    {
        let (at, prefix) = i;
        out.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        let end = after.find(')').expect("a closing parenthesis");
        let n: u32 = after[..end].parse().expect("a number");
        match prefix {
            "NodeId(" => out.push_str(&node(n)),
            "JobId(" => out.push_str(&format!("JobId({})", job(n))),
            _ => out.push_str("PlacementId(_)"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The twin's name of a node: new ones (created by this input) by their rank.
fn twin_node(before: &Scheduler, dedicated: &[String], n: u32) -> String {
    let known = before.nodes().len() as u32;
    match n {
        n if n >= known => format!("new-{}", n - known),
        n => dedicated.get(n as usize).cloned().unwrap_or_else(|| vm_name(NodeId(n))),
    }
}

fn is_tick(input: &Input) -> bool {
    matches!(input, Input::Timer(Timer::Tick))
}

/// The inputs at one instant the controller is given, the twin's state before them, and what
/// the twin decided on them.
struct Sample {
    t: Millis,
    inputs: Vec<Input>,
    before: Scheduler,
    decisions: Vec<Decision>,
    commands: Vec<String>,
    memory: conductor_core::ScalingMemory,
}

/// What the controller does at `sample.t` after adopting `sample.before` and being given its
/// inputs: scaling decisions, commands (normalized, sorted) and the memory it records.
async fn controller_input(
    file: &Path,
    sample: &Sample,
    dedicated: &[String],
    interval: Millis,
    count_players: bool,
) -> (Vec<Decision>, Vec<String>, conductor_core::ScalingMemory) {
    let (twin, t) = (&sample.before, sample.t);
    let store = Arc::new(MemoryStore::new());
    let (written, servers) = record(&store, twin, dedicated, t).await;
    let cfg = ControllerConfig::load(file).unwrap();
    let live_cfg = conductor_controller::serve::live_config(&cfg).unwrap();
    // A scaling tick: started one interval earlier, so that its first tick falls at `t`.
    // Otherwise at `t`, so that no tick does.
    let ticks = sample.inputs.iter().any(is_tick);
    let mut live = Live::start(store.clone(), live_cfg, if ticks { t - interval } else { t }).await.unwrap();
    let seen = store.events(0, 1_000_000).await.unwrap().last().map_or(0, |e| e.seq);
    // Adoption rebuilt every server where the twin has it (queued ones still waiting).
    let twin_name = |n: NodeId| twin_node(twin, dedicated, n.0);
    let (here, there) =
        (whereabouts(live.core(), &|n: NodeId| written[n.0 as usize].clone()), whereabouts(twin, &twin_name));
    let differ: Vec<_> = here.iter().zip(&there).enumerate().filter(|(_, (a, b))| a != b).take(5).collect();
    assert!(differ.is_empty(), "adopted (controller, twin) differ for servers {differ:?}");
    // What the pings would count on the running servers.
    for s in (0..twin.server_count() as u32).map(ServerId).filter(|_| count_players) {
        if matches!(twin.residence(s), Residence::Running { .. }) {
            live.players_counted(servers[s.0 as usize], twin.players(s));
        }
    }
    let open_jobs: Vec<u32> =
        twin.jobs().filter(|(_, _, st)| *st != CoreJobState::Ended).map(|(j, _, _)| j.0).collect();
    for input in &sample.inputs {
        match input {
            Input::Timer(_) => live.tick(t).await.unwrap(),
            Input::Request(s) => live.request_start(servers[s.0 as usize], t).await.unwrap(),
            Input::WantedEnd(s) => live.request_stop(servers[s.0 as usize], t).await.unwrap(),
            Input::Upgrade(s, ram) => {
                live.change_plan(t, servers[s.0 as usize], *ram).await.unwrap();
            }
            Input::JobArrive(ram) => {
                let owner = store.servers(None).await.unwrap()[0].owner;
                let new = NewJob {
                    owner,
                    image: "job".into(),
                    cmd: Vec::new(),
                    ram_mib: *ram,
                    max_duration_s: 365 * 86_400,
                    price_per_gib_hour: "0.01".parse().unwrap(),
                };
                live.submit_job(t, new).await.unwrap();
            }
            Input::JobDone(_) => unreachable!("not sampled"),
        }
        // Timers of one instant are fired by one tick.
        if matches!(input, Input::Timer(_)) {
            break;
        }
    }
    let names: HashMap<i64, String> = store.nodes().await.unwrap().into_iter().map(|n| (n.id, n.name)).collect();
    let events = store.events(0, 1_000_000).await.unwrap();
    // The memory the controller recorded (a restart would adopt it): the latest event.
    let recorded = events.iter().rev().find(|e| e.kind == "scaling.memory").unwrap();
    let recorded = serde_json::from_value(recorded.data.clone()).unwrap();
    assert_eq!(live.core().scaling_memory(), recorded, "the memory in use is the memory recorded");
    let new = events.iter().filter(|e| e.seq > seen);
    let decisions = new
        .clone()
        .filter(|e| e.kind == "scaling.decision")
        .map(|e| Decision {
            action: e.data["action"].as_str().unwrap().into(),
            node: e.node.map(|n| names[&n].clone()),
            policy: e.data["policy"].as_str().unwrap().into(),
            reason: e.data["reason"].as_str().unwrap().into(),
        })
        .collect();
    let node = |n: u32| match written.get(n as usize) {
        Some(name) => name.clone(),
        None => format!("new-{}", n as usize - written.len()),
    };
    let job =
        |k: u32| open_jobs.get(k as usize).copied().unwrap_or(twin.jobs().count() as u32 + k - open_jobs.len() as u32);
    let mut commands: Vec<String> = new
        .filter(|e| e.kind == "decision.observed")
        .map(|e| normalize(e.data["command"].as_str().unwrap(), &node, &job))
        .collect();
    commands.sort();
    (decisions, commands, recorded)
}

/// Collects the twin's inputs to compare: every scaling tick with a decision or a command
/// and the tick after it, every `every`-th quiet tick, every `every`-th start, stop and
/// timer, every plan change and job submission. Timers of one instant form one sample (the
/// controller fires them in one tick); a sample another input shares its instant with is
/// dropped, as are samples with a dead node (a restart gives a silent node a full
/// `dead_after` again, on purpose) and inputs the controller takes from its nodes.
struct Collector<'d> {
    dedicated: &'d [String],
    every: usize,
    seen: HashMap<&'static str, usize>,
    samples: Vec<Sample>,
    /// Keep the next tick (the one after a decision).
    keep_next_tick: bool,
    /// The instant of the last sample made of timers, still open to more of that instant.
    open_timers: Option<Millis>,
    /// The instant whose timers were skipped (so later ones of it are skipped too).
    skipped_timers: Option<Millis>,
    /// Command kinds kept so far.
    kinds: HashMap<String, usize>,
}

/// `Place { … }` → `Place`.
fn kind_of(command: &str) -> &str {
    command.split([' ', '{']).next().unwrap_or(command)
}

impl Observer for Collector<'_> {
    fn wants(&mut self, now: Millis, input: &Input) -> bool {
        let timer = matches!(input, Input::Timer(_));
        let merge = timer && self.open_timers == Some(now);
        if !merge && self.open_timers == Some(now) {
            // Another input between two of this instant's timers: not one tick any more.
            self.samples.pop();
        }
        if !merge {
            self.open_timers = None;
        }
        let kind = match input {
            Input::Request(_) => "request",
            Input::WantedEnd(_) => "stop",
            Input::Timer(Timer::Tick) => "tick",
            Input::Timer(Timer::DeadCheck { .. }) | Input::JobDone(_) => {
                if merge {
                    self.samples.pop();
                    self.open_timers = None;
                }
                return false;
            }
            Input::Timer(_) => "timer",
            Input::Upgrade(..) | Input::JobArrive(_) => return true,
        };
        if merge {
            return true;
        }
        if timer && self.skipped_timers == Some(now) {
            return false;
        }
        *self.seen.entry(kind).or_default() += 1;
        true
    }

    fn seen(&mut self, now: Millis, input: &Input, seen: Seen<'_>) {
        let commands: Vec<String> = seen
            .commands
            .iter()
            .filter(|c| !matches!(c, Command::Wake { .. }))
            .map(|c| normalize(&format!("{c:?}"), &|n| twin_node(seen.before, self.dedicated, n), &|j| j))
            .collect();
        let decisions = twin_decisions(seen.notes, self.dedicated);
        if self.open_timers == Some(now) {
            let last = self.samples.last_mut().expect("open");
            last.inputs.push(input.clone());
            last.commands.extend(commands);
            last.commands.sort();
            last.decisions.extend(decisions);
            last.memory = seen.after.scaling_memory();
            return;
        }
        if seen.before.nodes().iter().any(|n| n.state == CoreNodeState::Dead) {
            return;
        }
        // Kept: what decided something rare so far, every `every`-th of its kind, and the
        // ticks described above.
        let rare = commands.iter().any(|c| self.kinds.get(kind_of(c)).copied().unwrap_or(0) < 3);
        let kind = match input {
            Input::Request(_) => "request",
            Input::WantedEnd(_) => "stop",
            Input::Timer(Timer::Tick) => "tick",
            Input::Timer(_) => "timer",
            _ => "other",
        };
        let n = self.seen.get(kind).copied().unwrap_or(1);
        let mut keep = rare || kind == "other" || (n - 1).is_multiple_of(self.every);
        if is_tick(input) {
            let quiet = decisions.is_empty() && commands.is_empty();
            let waits_with_world = (0..seen.before.server_count() as u32)
                .map(ServerId)
                .any(|s| seen.before.is_queued(s) && seen.before.residence(s) != Residence::New);
            let silent_node = seen.before.nodes().iter().any(|n| matches!(n.state, CoreNodeState::Unreachable { .. }));
            // The hourly disruption budget in play: what a restart must not forget.
            let budget = seen.before.recent_migrations().next().is_some();
            keep |= !quiet || self.keep_next_tick || waits_with_world || silent_node || budget;
            self.keep_next_tick = !quiet;
        }
        if !keep {
            if matches!(input, Input::Timer(_)) {
                self.skipped_timers = Some(now);
            }
            return;
        }
        for c in &commands {
            *self.kinds.entry(kind_of(c).to_owned()).or_default() += 1;
        }
        let mut commands = commands;
        commands.sort();
        if matches!(input, Input::Timer(_)) {
            self.open_timers = Some(now);
        }
        self.samples.push(Sample {
            t: now,
            inputs: vec![input.clone()],
            before: seen.before.clone(),
            decisions,
            commands,
            memory: seen.after.scaling_memory(),
        });
    }
}

/// What one parity run compared.
struct Compared {
    /// Policies that made scaling decisions in the compared samples.
    acted: BTreeSet<String>,
    /// Command kinds compared, with how many of each.
    commands: std::collections::BTreeMap<String, usize>,
    /// Inputs compared, by kind.
    inputs: std::collections::BTreeMap<&'static str, usize>,
    /// Samples whose state held an owner's answer: (announced, asked, accepted).
    consents: [usize; 3],
    /// Samples whose state held queued servers: (never ran, with a world somewhere).
    queued: [usize; 2],
    /// Samples with a node that does not answer.
    silent: usize,
    /// Samples with a move, checked again before any player count.
    uncounted: usize,
    /// Samples with moves the hourly budget still counts.
    budget: usize,
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Request(_) => "request",
        Input::WantedEnd(_) => "stop",
        Input::Timer(Timer::Tick) => "tick",
        Input::Timer(Timer::Archive { .. }) => "archive timer",
        Input::Timer(Timer::GiveUp { .. }) => "give-up timer",
        Input::Timer(Timer::JobKill { .. }) => "job-kill timer",
        Input::Timer(Timer::DeadCheck { .. }) => "dead check",
        Input::Upgrade(..) => "plan change",
        Input::JobArrive(_) => "job submitted",
        Input::JobDone(_) => "job done",
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_controller_decides_as_the_twin_on_the_same_state() {
    let gen = GenConfig { servers: 500, days: 2, seed: 11, ..GenConfig::default() };
    let compared = parity("reference", &gen, None, "", 40).await;
    assert_eq!(compared.acted, BTreeSet::from(["reactive".to_string()]));
    assert!(compared.queued[1] > 0, "the sample must hold servers that wait with a world somewhere");
    for kind in ["Place", "Stop", "Archive", "CreateVm", "DeleteVm"] {
        assert!(compared.commands.contains_key(kind), "{kind} compared: {:?}", compared.commands);
    }
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
    let compared = parity("predictive", &gen, Some(policy), "", 400).await;
    assert!(compared.acted.contains("predictive"), "the run must make predictive act: {:?}", compared.acted);
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
    let compared = parity("pool", &gen, Some(pool), "", 400).await;
    assert!(compared.acted.contains("spare-pool"), "the run must make the pool act: {:?}", compared.acted);
}

/// Consolidation (`auto` owners: announced, then moved), drain, billing-hour scale-in, plan
/// changes, preemptible jobs and node failures in one run; then `suggest` owners. Every
/// command kind the controller is given by its API and clock is compared.
#[tokio::test(flavor = "current_thread")]
async fn moves_jobs_plan_changes_and_failures_decide_as_the_twin() {
    let gen = GenConfig { servers: 300, days: 3, seed: 7, ..GenConfig::default() };
    let policy = r#"[policy]
kind = "custom"
scale_in = "billing-hour"
billing_margin_s = 900
drain = true

[policy.consolidation]
every_s = 300
min_saving_eur_per_hour = 0.001
max_migrations_per_hour = 1
announce_s = 120
"#;
    let twin_only = r#"
[jobs]
rate_per_hour = 2
ram_gib = [2, 4]
duration_h = 3
price_eur_per_gib_hour = 0.004

[failures]
events = [
  { node = "cloud:oldest", at = "2025-10-07T17:00:00Z" },
  { node = "dedicated:0", at = "2025-10-08T09:00:00Z" },
]

[[upgrades]]
server = "s00007"
at = "2025-10-07T18:00:00Z"
ram_gib = 8

[[upgrades]]
server = "s00011"
at = "2025-10-08T19:00:00Z"
ram_gib = 6
"#;
    let compared = parity("moves", &gen, Some(policy), twin_only, 10).await;
    for kind in ["Place", "Stop", "Archive", "CreateVm", "DeleteVm", "Migrate", "StartJob", "NoticeJob", "KillJob"] {
        assert!(compared.commands.contains_key(kind), "{kind} compared: {:?}", compared.commands);
    }
    assert!(compared.acted.contains("consolidation"), "{:?}", compared.acted);
    for input in ["plan change", "job submitted", "job-kill timer", "archive timer", "request", "stop"] {
        assert!(compared.inputs.contains_key(input), "{input} compared: {:?}", compared.inputs);
    }
    assert!(compared.consents[0] > 0, "an announced move must be in a compared state");
    assert!(compared.silent > 0, "a node that does not answer must be in a compared state");
    assert!(
        compared.uncounted > 0 && compared.budget > 0,
        "moves and the budget: {} {}",
        compared.uncounted,
        compared.budget
    );
    // `suggest` owners who accept half the time: asked, and moved once they accept.
    let suggest = policy.replace("announce_s = 120", "announce_s = 120\nsuggest_acceptance = 0.5");
    let compared = parity("suggest", &GenConfig { seed: 8, ..gen }, Some(&suggest), "", 10).await;
    assert!(compared.commands.contains_key("Migrate"), "{:?}", compared.commands);
    assert!(compared.consents[1] > 0 && compared.consents[2] > 0, "asked and accepted: {:?}", compared.consents);
}

/// Runs the twin on generated data with `policy` (default: the reference) and `twin_only`
/// sections, and compares the controller's decisions and commands on the sampled inputs.
async fn parity(name: &str, gen: &GenConfig, policy: Option<&str>, twin_only: &str, every: usize) -> Compared {
    let dir = std::env::temp_dir().join(format!("conductor-parity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (data, text) = common::twin_fixture(&dir, "parity", gen);
    let text = match policy {
        Some(p) => text.replace("[policy]\nkind = \"reference\"\n", p),
        None => text,
    };
    let scenario_file: PathBuf = dir.join("scenario.toml");
    std::fs::write(&scenario_file, format!("{text}{twin_only}")).unwrap();
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

    let mut collector = Collector {
        dedicated: &dedicated,
        every,
        seen: HashMap::new(),
        samples: Vec::new(),
        keep_next_tick: false,
        open_timers: None,
        skipped_timers: None,
        kinds: HashMap::new(),
    };
    let outcome = conductor_sim::engine::run_observed(&scenario, &dataset, gen.seed, &mut collector);
    let mut samples = collector.samples;
    let ticks = samples.iter().filter(|s| s.inputs.iter().any(is_tick));
    let creates = ticks.clone().flat_map(|s| &s.decisions).filter(|d| d.action == "create").count();
    let deletes = ticks.flat_map(|s| &s.decisions).filter(|d| d.action == "delete").count();
    assert!(creates >= 3 && deletes >= 3, "the run must make the policy act: {creates} creates, {deletes} deletes");
    assert!(outcome.abandoned() < outcome.waits.len() as u64);
    if scenario.forecast_source.is_some() {
        // Forecast-driven: the nights after the first forecast (two weeks in) are compared.
        samples.retain(|s| s.before.forecast().is_some());
    }
    let mut compared = Compared {
        acted: BTreeSet::new(),
        commands: Default::default(),
        inputs: Default::default(),
        consents: [0; 3],
        queued: [0; 2],
        silent: 0,
        uncounted: 0,
        budget: 0,
    };
    for (i, sample) in samples.iter().enumerate() {
        let before = &sample.before;
        let servers = (0..before.server_count() as u32).map(ServerId);
        for s in servers.clone().filter(|&s| before.is_queued(s)) {
            compared.queued[usize::from(before.residence(s) != Residence::New)] += 1;
        }
        compared.budget += usize::from(before.recent_migrations().next().is_some());
        compared.silent +=
            usize::from(before.nodes().iter().any(|n| matches!(n.state, CoreNodeState::Unreachable { .. })));
        let consents: Vec<_> = servers.map(|s| before.consent(s)).collect();
        compared.consents[0] += usize::from(consents.iter().any(|c| c.0.is_some()));
        compared.consents[1] += usize::from(consents.iter().any(|c| c.1));
        compared.consents[2] += usize::from(consents.iter().any(|c| c.2));
        for input in &sample.inputs {
            *compared.inputs.entry(input_kind(input)).or_default() += 1;
        }
        let (decisions, commands, memory) =
            controller_input(&controller_file, sample, &dedicated, interval, true).await;
        let at = conductor_forecast::timefmt::format_rfc3339(sample.t);
        if commands.iter().any(|c| c.starts_with("Migrate")) && sample.inputs.iter().any(is_tick) {
            // Just restarted, before its first pings: it does not know who plays, so it
            // moves nothing.
            let (_, uncounted, _) = controller_input(&controller_file, sample, &dedicated, interval, false).await;
            assert!(!uncounted.iter().any(|c| c.starts_with("Migrate")), "sample {i} at {at}: {uncounted:?}");
            compared.uncounted += 1;
        }
        assert_eq!(commands, sample.commands, "sample {i} at {at}: {:?}", sample.inputs);
        if sample.inputs.iter().any(is_tick) {
            assert_eq!(decisions, sample.decisions, "sample {i} at {at}: {:?}", sample.inputs);
            assert_eq!(memory, sample.memory, "scaling memory after sample {i} at {at}");
        }
        compared.acted.extend(sample.decisions.iter().map(|d| d.policy.clone()));
        for c in &sample.commands {
            *compared.commands.entry(kind_of(c).to_owned()).or_default() += 1;
        }
    }
    eprintln!(
        "parity {name}: {} samples compared ({creates} creates, {deletes} deletes among them); inputs {:?}; \
         commands {:?}; samples with queued servers: {} new, {} sleeping or archived; with owners' answers \
         (announced, asked, accepted): {:?}; with a silent node: {}; with moves in the hourly budget: {}",
        samples.len(),
        compared.inputs,
        compared.commands,
        compared.queued[0],
        compared.queued[1],
        compared.consents,
        compared.silent,
        compared.budget,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    compared
}
