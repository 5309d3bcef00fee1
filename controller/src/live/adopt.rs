//! Start-up: the scheduler is rebuilt from the store (adoption) — nodes, VMs, servers, the
//! archives' whereabouts, the scaling memory and the billable phases from the event log —
//! so that a restart decides as the running controller would have. No driver is called:
//! a node or a cloud that does not answer does not stop the start; the loop's first steps
//! observe what exists (unreachable nodes start their dead timer, strays are collected) and
//! the pending intents of the previous run are resumed.

use super::*;
use crate::store::{NewNode, NodeState};
use conductor_core::NodeKind;

impl<S: Store> Live<S> {
    /// Rebuilds the scheduler from the store; pending intents are resumed.
    pub async fn start(store: Arc<S>, mut cfg: LiveConfig, now: Millis) -> Result<Live<S>, LiveError> {
        if cfg.templates.by_name.is_empty() {
            cfg.templates = crate::template::Templates::plain(&cfg.image, cfg.cmd.clone());
        }
        let types: Vec<DedicatedType> = cfg.dedicated.iter().map(|d| d.kind.clone()).collect();
        let core = Scheduler::new(cfg.scheduler.clone(), &types, Vec::new());
        // Its seq makes this run's intent keys unique.
        let started = store
            .append_event(NewEvent {
                at: now,
                kind: CONTROLLER_STARTED.into(),
                server: None,
                node: None,
                data: json!({ "mode": cfg.mode }),
            })
            .await?;
        let mut live = Live {
            store,
            core,
            out: Outbox::default(),
            server_ids: Vec::new(),
            by_store_id: HashMap::new(),
            node_ids: Vec::new(),
            docker: Vec::new(),
            health: Vec::new(),
            vm_ids: HashMap::new(),
            vm_names: HashMap::new(),
            provisioning_since: HashMap::new(),
            ready_checks: HashMap::new(),
            vm_addresses: HashMap::new(),
            joined: HashMap::new(),
            template_names: HashMap::new(),
            console_times: HashMap::new(),
            follows: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            placed_at: HashMap::new(),
            unanswered: HashMap::new(),
            idle_since: HashMap::new(),
            peak_players: HashMap::new(),
            archives: HashMap::new(),
            backups: HashMap::new(),
            measured: HashMap::new(),
            dying: None,
            dead_since: None,
            orphans: HashMap::new(),
            foreign: HashSet::new(),
            objects_listed: None,
            deleted_at: HashMap::new(),
            intents: act::Intents::new(started, cfg.healing.seed),
            strays: HashMap::new(),
            kept: HashSet::new(),
            deleted: HashSet::new(),
            unplaced: HashSet::new(),
            touched: HashSet::new(),
            fresh: HashSet::new(),
            memory: ScalingMemory::default(),
            migrating: HashMap::new(),
            recommended: BTreeMap::new(),
            jobs: Default::default(),
            forecast_made_at: None,
            forecast_stale: false,
            usage: Vec::new(),
            plan_disk_mb: Vec::new(),
            metered_until: Millis::MIN,
            warned: Default::default(),
            exhausted: Default::default(),
            ports: HashMap::new(),
            gateway_players: HashMap::new(),
            lane: super::work::Lane::new(cfg.healing.max_copies, cfg.healing.data_wait),
            metrics: Metrics::default(),
            cfg,
        };
        // Nodes that were silent when the previous run ended start silent: their dead timer
        // runs again from now, and the first heartbeat that answers brings them back.
        let before = live.store.nodes().await?;
        let was_silent = |name: &str| before.iter().any(|n| n.name == name && n.state == NodeState::Unreachable);
        let mut silent = Vec::new();
        // Dedicated nodes: core nodes 0..k, in config order.
        for d in &live.cfg.dedicated {
            if was_silent(&d.name) {
                silent.push(NodeId(live.node_ids.len() as u32));
            }
            let new = NewNode {
                name: d.name.clone(),
                kind: NodeKind::Dedicated,
                type_name: d.kind.name.clone(),
                provider_id: None,
                state: NodeState::Ready,
                ram_mib: d.kind.ram_mib,
                usable_mib: d.kind.usable_mib(),
            };
            let n = live.store.upsert_node(new, now).await?;
            live.node_ids.push(Some(n.id));
            live.docker.push(Some(d.docker.clone()));
            live.health.push(Health::default());
        }
        // Cloud VMs the store holds (the loop checks them against the cloud's list).
        let mut store_node_to_core = HashMap::new();
        for (i, id) in live.node_ids.iter().enumerate() {
            store_node_to_core.insert(id.expect("dedicated nodes are stored"), NodeId(i as u32));
        }
        for n in live.store.nodes().await? {
            // Nodes that joined through the admin API (they have an endpoint of record).
            if n.docker.is_some() {
                if n.state != NodeState::Deleted {
                    if let Some(core_node) = live.adopt_joined(now, &n) {
                        store_node_to_core.insert(n.id, core_node);
                        if n.state == NodeState::Unreachable {
                            silent.push(core_node);
                        }
                    }
                }
                continue;
            }
            if n.kind != NodeKind::Cloud || matches!(n.state, NodeState::Deleted | NodeState::Dead) {
                continue;
            }
            let ready = matches!(n.state, NodeState::Ready | NodeState::Unreachable | NodeState::Cordoned);
            let Some(core_node) = live.core.adopt_vm(ready, n.created_at) else { continue };
            store_node_to_core.insert(n.id, core_node);
            live.push_node(core_node, n.id, &n.name);
            if n.state == NodeState::Cordoned {
                // Being emptied (drain, consolidation): it takes nothing new, goes once empty.
                live.core.adopt_cordon(core_node);
            }
            if let Some(vm) = n.provider_id.as_deref().and_then(|p| p.parse().ok()) {
                live.vm_ids.insert(core_node, vm);
            }
            if !ready {
                live.provisioning_since.insert(core_node, now);
            }
            if n.state == NodeState::Unreachable {
                silent.push(core_node);
            }
        }
        // From the event log: where archived worlds are (the latest `server.archived` event
        // of each server) and what the scaling decisions remembered (the latest
        // `scaling.memory`), so that a restart decides as the running controller would have.
        let mut archived: HashMap<i64, ArchiveRef> = HashMap::new();
        let mut memory = None;
        // What owners were told, asked and answered since each server's last move.
        let mut consents: HashMap<i64, super::consents::Consents> = HashMap::new();
        // Moves not yet done: the latest placement of each server, whether it was a move, and
        // the move's start (node it left, when, players on it).
        let mut moving: HashMap<i64, Option<(Millis, Option<i64>, u32)>> = HashMap::new();
        // Each server's plan RAM before its first plan change (billing replays from it).
        let mut plan_before: HashMap<i64, u32> = HashMap::new();
        // The latest admin switch of each scaling policy.
        let mut modes: BTreeMap<usize, serde_json::Value> = BTreeMap::new();
        // Billable phases (replayed into each server's usage below) and the last metering
        // checkpoint (windows after it are metered again: posting is idempotent).
        let mut billable: Vec<(i64, String, Millis, Option<u64>)> = Vec::new();
        // Backups and measured sizes.
        let mut worlds = super::worlds::Replay::default();
        let mut checkpoint = None;
        let mut migrated: Vec<(i64, Millis)> = Vec::new();
        let mut after = 0;
        loop {
            let page = live.store.events(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                worlds.on(e);
                if let Some(s) = e.server {
                    consents.entry(s).or_default().on(e);
                }
                match (e.kind.as_str(), e.server) {
                    (SERVER_ARCHIVED, Some(store_id)) => {
                        if let (Some(key), Some(sha)) = (e.data["archive"].as_str(), e.data["sha256"].as_str()) {
                            let bytes = e.data["bytes"].as_u64().unwrap_or(0);
                            let world_bytes = e.data["world_bytes"].as_u64().unwrap_or(0);
                            let r = ArchiveRef { key: key.into(), sha256: sha.into(), bytes, world_bytes };
                            archived.insert(store_id, r);
                        }
                    }
                    (SERVER_DELETED, Some(store_id)) => {
                        live.deleted.insert(store_id);
                        live.deleted_at.insert(store_id, e.at);
                        billable.push((store_id, e.kind.clone(), e.at, None));
                    }
                    (SCALING_MEMORY, _) => memory = serde_json::from_value::<ScalingMemory>(e.data.clone()).ok(),
                    (SERVER_MIGRATING, Some(store_id)) => {
                        migrated.push((store_id, e.at));
                        let players = e.data["players"].as_u64().unwrap_or(0) as u32;
                        moving.insert(store_id, Some((e.at, e.data["from"].as_i64(), players)));
                    }
                    (SERVER_PLACED, Some(store_id)) if e.data["migration"] != true => {
                        moving.insert(store_id, None);
                        billable.push((store_id, e.kind.clone(), e.at, e.data["world_mb"].as_u64()));
                    }
                    (SERVER_PLAN_CHANGED, Some(store_id)) => {
                        if let Some(from) = e.data["from"].as_u64() {
                            plan_before.entry(store_id).or_insert(from as u32);
                        }
                        billable.push((store_id, e.kind.clone(), e.at, e.data["ram_mib"].as_u64()));
                    }
                    (POLICY_MODE, _) => {
                        if let Some(i) = e.data["index"].as_u64() {
                            modes.insert(i as usize, e.data.clone());
                        }
                    }
                    (BILLING_METERED, _) => checkpoint = e.data["until"].as_i64(),
                    (kind, Some(store_id)) if Usage::follows(kind) => {
                        billable.push((store_id, kind.into(), e.at, e.data["world_mb"].as_u64()))
                    }
                    _ => {}
                }
            }
        }
        if let Some(m) = memory {
            live.core.adopt_scaling_memory(&m);
            live.memory = m;
        }
        live.adopt_policy_modes(&modes);
        live.adopt_forecast(now).await?;
        // The placements a previous run left unfinished: where their worlds come from.
        let pending = live.store.pending_intents().await?;
        let placing: HashMap<i64, RestoreFrom> = pending
            .iter()
            .filter_map(|i| match serde_json::from_value::<Action>(i.data.clone()) {
                Ok(Action::Place { server, restore, .. }) => Some((server, restore)),
                _ => None,
            })
            .collect();
        // Servers that ever ran (a world of theirs exists somewhere).
        let ran: std::collections::HashSet<i64> =
            billable.iter().filter(|b| b.1 == SERVER_STARTED).map(|b| b.0).collect();
        // Servers.
        let mut requeue = Vec::new();
        for s in live.store.servers(None).await? {
            // The world's measured size where it was measured (as `measured()` told the core).
            let mut world = spec(&s);
            world.disk_mb = worlds.measured.get(&s.id).copied().unwrap_or(world.disk_mb);
            let id = live.core.add_server(world);
            live.server_ids.push(s.id);
            live.by_store_id.insert(s.id, id);
            live.usage.push(
                Usage::new(s.owner, s.id, s.ram_mib, s.disk_mb).with_sleep_window(live.core.config().sleep_window),
            );
            live.plan_disk_mb.push(s.disk_mb);
            let node = s.node.and_then(|n| store_node_to_core.get(&n).copied());
            if let Some(r) = archived.remove(&s.id) {
                live.archives.insert(id, r);
            }
            match (s.state, node) {
                (ServerState::Running, Some(node)) => {
                    let _ = live.core.adopt_running(id, node, true);
                }
                (ServerState::Starting, Some(node)) => {
                    // Its start is still wanted: the request carries on (placed again or
                    // given up by the core's rules if this placement fails). Its world is
                    // where the unfinished placement would have taken it from; with the
                    // placement done, on its node.
                    let before = match placing.get(&s.id) {
                        Some(RestoreFrom::Archive) => Residence::Archived,
                        Some(RestoreFrom::Node { node: from }) => match store_node_to_core.get(from) {
                            Some(&from) => Residence::Sleeping { node: from },
                            None => Residence::Archived,
                        },
                        // Boot only: its world is on the node, unless it never ran (none yet).
                        Some(RestoreFrom::None) if !ran.contains(&s.id) => Residence::New,
                        Some(RestoreFrom::None) | None => Residence::Sleeping { node },
                    };
                    let move_from = moving
                        .get(&s.id)
                        .copied()
                        .flatten()
                        .filter(|_| placing.contains_key(&s.id))
                        .and_then(|(at, from, players)| Some((at, *store_node_to_core.get(&from?)?, players)));
                    match move_from {
                        // A move under way: as the core left it (a failure puts it back).
                        Some((at, from, players)) => {
                            live.core.adopt_migration(id, from, node);
                            live.migrating.insert(id, (at, players));
                        }
                        None => {
                            let _ = live.core.adopt_starting(id, node, s.updated_at, before);
                        }
                    }
                    live.placed_at.insert(id, now);
                    if placing.contains_key(&s.id) {
                        live.unplaced.insert(id);
                    }
                }
                (ServerState::Sleeping, Some(node)) => {
                    let mut out = Outbox::default();
                    live.core.adopt_stopped(id, Some(node), s.updated_at, &mut out);
                    live.out.commands.extend(out.commands);
                }
                (ServerState::Archived, _) | (ServerState::Sleeping, None) => {
                    live.core.adopt_stopped(id, None, s.updated_at, &mut Outbox::default());
                }
                (ServerState::Queued, node) => {
                    // Waiting to start: its world sleeps on `node`, lies in the archive, or
                    // it never ran. Requeued in the order the requests came.
                    if node.is_some() || live.archives.contains_key(&id) {
                        let mut out = Outbox::default();
                        live.core.adopt_stopped(id, node, s.updated_at, &mut out);
                        live.out.commands.extend(out.commands);
                    }
                    requeue.push((s.updated_at, id));
                }
                _ => {}
            }
        }
        for node in silent {
            live.health[node.0 as usize].silent_since = Some(now);
            live.core.node_unreachable(now, node, &mut live.out);
            if let Some(n) = live.store_node(node) {
                live.store.set_node_state(n, NodeState::Unreachable, None, now).await?;
            }
        }
        // Past moves count against the hourly budget and an `auto` owner's once-per rule.
        for (store_id, at) in migrated {
            if let Some(&id) = live.by_store_id.get(&store_id) {
                live.core.adopt_migrated(id, at, now);
            }
        }
        live.adopt_consents(consents);
        live.adopt_jobs(&store_node_to_core).await?;
        live.core.start(now, &mut live.out);
        let first = billable.first().map(|b| b.2);
        // A plan changed since: its runs before the first change were on the plan before it.
        for (store_id, from) in &plan_before {
            if let Some(&id) = live.by_store_id.get(store_id) {
                live.usage[id.0 as usize].set_plan(*from);
            }
        }
        for (store_id, kind, at, mb) in billable {
            if let Some(&id) = live.by_store_id.get(&store_id) {
                match (mb, kind.as_str()) {
                    (Some(mb), WORLD_MEASURED) => live.usage[id.0 as usize].measured(at, mb),
                    (Some(ram), SERVER_PLAN_CHANGED) => live.usage[id.0 as usize].set_plan(ram as u32),
                    _ => live.usage[id.0 as usize].on(&kind, at),
                }
            }
        }
        live.backups = worlds.backups;
        live.measured = worlds.measured;
        let window = live.cfg.billing.window;
        let floor = |t: Millis| t - t.rem_euclid(window);
        live.metered_until = checkpoint.or(first.map(floor)).unwrap_or_else(|| floor(now));
        // What was metered before the checkpoint only counts as totals: keep no spans of it.
        let metered = live.metered_until;
        live.usage.iter_mut().for_each(|u| u.fold(metered));
        // Pending intents of the previous run: resumed before anything new is decided, so
        // that what it began is finished first (and an identical new one is not repeated).
        for i in pending {
            match serde_json::from_value::<Action>(i.data.clone()) {
                Ok(action) if live.cfg.mode == Mode::Enforce => {
                    let data = json!({ "key": i.key, "action": action.kind() });
                    live.event(now, INTENT_RESUMED, None, None, data).await?;
                    live.intents.resume(i.id, i.key, action, i.created_at, now);
                }
                Ok(_) => {}
                Err(e) => {
                    let outcome = json!({ "superseded": format!("unreadable after a restart: {e}") });
                    live.store.finish_intent(i.id, false, outcome, now).await?;
                }
            }
        }
        requeue.sort_unstable();
        for (_, id) in requeue {
            live.core.request_start(now, id, &mut live.out);
        }
        live.apply(now).await?;
        Ok(live)
    }
}
