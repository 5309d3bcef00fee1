//! Observe, then feed the differences to the core: every step pings every node's Docker
//! API (the heartbeat), lists its containers and probes the servers that start or run on
//! it, and lists the cloud's VMs. What changed becomes a core input:
//!
//! - heartbeat failing for `unreachable_after` → `node_unreachable` (the core declares the
//!   node dead `dead_after` later and restarts its servers elsewhere); answering again →
//!   `node_reachable`. Billing of the node's servers stops while it is silent.
//! - a starting server that answers → `boot_complete`; one that does not within
//!   `start_timeout` → `start_failed`.
//! - a running server whose container exited or vanished, or that has not answered for
//!   `crash_grace` → `crashed` (recorded with its exit code and last output lines).
//! - a provisioning VM the cloud runs → `node_ready`; one not ready in `vm_ready_timeout`,
//!   or gone → `vm_failed`.
//!
//! Garbage collection is part of the loop: containers and VMs that nobody knows (or that
//! belong elsewhere) are reported, then removed after `gc_grace`; a volume is removed only
//! when the world's copy of record is elsewhere (a verified archive, or another node).

use super::act::timed;
use super::*;
use crate::cloud::Vm;
use crate::docker::ContainerInfo;
use crate::driver::DriverError;
use crate::mcping::Status;
use conductor_core::scheduler::NodeState as CoreNode;

/// What to look at on one node.
pub(in crate::live) struct Look {
    node: NodeId,
    driver: Arc<dyn NodeDriver>,
    /// Store ids of the servers that start or run there.
    active: Vec<i64>,
    /// A provisioning VM: only its readiness is checked (the images it needs, and whether
    /// its bootstrap must have reported done).
    ready: Option<(Arc<[String]>, bool)>,
    /// Jobs whose containers run there.
    jobs: Vec<i64>,
}

/// What was seen on one node.
pub(in crate::live) struct Seen {
    node: NodeId,
    ping: Result<(), DriverError>,
    containers: Option<Result<Vec<ContainerInfo>, DriverError>>,
    volumes: Option<Vec<i64>>,
    probes: HashMap<i64, Result<Status, DriverError>>,
    logs: HashMap<i64, String>,
    /// A provisioning VM's readiness check.
    ready: Option<Result<(), DriverError>>,
    jobs: HashMap<i64, Result<Option<crate::driver::JobStatus>, DriverError>>,
}

impl Look {
    pub(in crate::live) async fn run(&self, deadline: Duration, log_lines: usize) -> Seen {
        if let Some((images, marker)) = &self.ready {
            let ready = timed(deadline, self.driver.ready_check(images, *marker)).await;
            let ping = ready.clone().map(|_| ());
            let (probes, logs) = (HashMap::new(), HashMap::new());
            return Seen {
                node: self.node,
                ping,
                containers: None,
                volumes: None,
                probes,
                logs,
                ready: Some(ready),
                jobs: HashMap::new(),
            };
        }
        let mut seen = Seen {
            node: self.node,
            ping: timed(deadline, self.driver.ping()).await,
            containers: None,
            volumes: None,
            probes: HashMap::new(),
            logs: HashMap::new(),
            ready: None,
            jobs: HashMap::new(),
        };
        if seen.ping.is_err() {
            return seen;
        }
        for &job in &self.jobs {
            seen.jobs.insert(job, timed(deadline, self.driver.job_status(job)).await);
        }
        let listed = timed(deadline, self.driver.list_managed()).await;
        if let Ok(list) = &listed {
            for &server in &self.active {
                match list.iter().find(|c| c.server == server) {
                    Some(c) if c.running => {
                        seen.probes.insert(server, timed(deadline, self.driver.probe(server)).await);
                    }
                    Some(_) => {
                        if let Ok(text) = timed(deadline, self.driver.logs_tail(server, log_lines)).await {
                            seen.logs.insert(server, text);
                        }
                    }
                    None => {}
                }
            }
        }
        if listed.is_ok() {
            seen.volumes = timed(deadline, self.driver.volumes()).await.ok();
        }
        seen.containers = Some(listed);
        seen
    }
}

impl<S: Store> Live<S> {
    /// Adds what to look at to the step's work.
    pub(super) fn looks(&self, work: &mut Work) {
        for (i, n) in self.core.nodes().iter().enumerate() {
            let node = NodeId(i as u32);
            let (Some(driver), Some(_)) = (self.docker.get(i).cloned().flatten(), self.store_node(node)) else {
                continue;
            };
            let look = match n.state {
                CoreNode::Deleted => false,
                CoreNode::Provisioning => {
                    let marker = self.cfg.cloud.as_ref().is_some_and(|c| c.bootstrap_marker);
                    let images: Arc<[String]> = self.images_needed().into();
                    work.looks.push(Look {
                        node,
                        driver: driver.clone(),
                        active: Vec::new(),
                        ready: Some((images, marker)),
                        jobs: Vec::new(),
                    });
                    false
                }
                CoreNode::Dead => n.kind == conductor_core::NodeKind::Dedicated,
                _ => true,
            };
            if look {
                let active = n.servers.iter().map(|s| self.server_ids[s.0 as usize]).collect();
                let jobs = self.store_node(node).map_or_else(Vec::new, |n| self.jobs_on(n));
                work.looks.push(Look { node, driver, active, ready: None, jobs });
            }
        }
        if let Some(c) = &self.cfg.cloud {
            work.cloud = Some((c.client.clone(), format!("{}={}", crate::cloud::LABEL_MANAGED, c.cluster)));
        }
    }

    pub(super) async fn observed(
        &mut self,
        now: Millis,
        seen: Vec<Seen>,
        cloud: Option<Result<Vec<Vm>, DriverError>>,
    ) -> Result<(), LiveError> {
        // Strays on nodes that are gone are nobody's business any more.
        let gone: Vec<String> = (0..self.core.nodes().len())
            .filter(|&i| self.core.nodes()[i].state == CoreNode::Deleted)
            .filter_map(|i| self.store_node(NodeId(i as u32)))
            .map(|n| format!("container:{n}:"))
            .collect();
        self.strays.retain(|k, _| !gone.iter().any(|g| k.starts_with(g)));
        let mut running: HashMap<NodeId, HashSet<i64>> = HashMap::new();
        for s in seen {
            if let Some(ready) = s.ready {
                // A VM that is not ready yet has no heartbeat: its ready timeout runs.
                self.ready_checks.insert(s.node, ready.err().map(|e| e.message));
                continue;
            }
            let answered = self.heartbeat(now, s.node, &s.ping).await?;
            // A node back takes queued servers: their placements are intents before the
            // node's containers are judged.
            self.apply(now).await?;
            if answered {
                if let Some(store_node) = self.store_node(s.node) {
                    self.jobs_seen(now, store_node, &s.jobs).await?;
                    self.apply(now).await?;
                }
                if let Some(Ok(containers)) = &s.containers {
                    running.insert(s.node, containers.iter().filter(|c| c.running).map(|c| c.server).collect());
                    self.containers(now, s.node, containers, &s.probes, &s.logs).await?;
                    if let Some(volumes) = &s.volumes {
                        self.volumes_on(now, s.node, containers, volumes).await?;
                    }
                }
            }
            self.apply(now).await?;
        }
        self.stopped_seen(now, &running).await?;
        // Starts that ran out of time (wherever they are: a silent node's too).
        let timeout =
            |s: ServerId| self.template_of(self.sid(s)).start_timeout.unwrap_or(self.cfg.healing.start_timeout);
        let late: Vec<ServerId> = self
            .placed_at
            .iter()
            .filter(|(s, at)| {
                now - **at >= timeout(**s) && matches!(self.core.residence(**s), Residence::Starting { .. })
            })
            .map(|(s, _)| *s)
            .collect();
        for server in late {
            self.placed_at.remove(&server);
            self.give_up_start(now, server).await?;
            self.apply(now).await?;
        }
        if let Some(Ok(vms)) = cloud {
            self.vms(now, vms).await?;
        }
        Ok(())
    }

    /// The heartbeat of `node`; returns whether it answered.
    async fn heartbeat(
        &mut self,
        now: Millis,
        node: NodeId,
        ping: &Result<(), DriverError>,
    ) -> Result<bool, LiveError> {
        let i = node.0 as usize;
        let store_node = self.store_node(node);
        match ping {
            Err(e) => {
                let since = *self.health[i].silent_since.get_or_insert(now);
                let state = self.core.node(node).state;
                if now - since >= self.cfg.healing.unreachable_after
                    && matches!(state, CoreNode::Ready | CoreNode::Cordoned)
                {
                    // Billing of its servers stops: nobody can tell whether they still run.
                    for s in self.core.node(node).servers.clone() {
                        let id = self.server_ids[s.0 as usize];
                        self.event(now, SERVER_LOST, Some(id), store_node, json!({ "silent_since": since })).await?;
                    }
                    if let Some(n) = store_node {
                        self.store.set_node_state(n, crate::store::NodeState::Unreachable, None, now).await?;
                    }
                    let data = json!({ "silent_since": since, "error": e.message });
                    self.event(now, NODE_UNREACHABLE, None, store_node, data).await?;
                    self.core.node_unreachable(now, node, &mut self.out);
                }
                Ok(false)
            }
            Ok(()) => {
                self.health[i].silent_since = None;
                let state = self.core.node(node).state;
                let back = matches!(state, CoreNode::Unreachable { .. })
                    || (state == CoreNode::Dead && self.core.node(node).kind == conductor_core::NodeKind::Dedicated);
                if back {
                    let was_dead = std::mem::take(&mut self.health[i].dead);
                    if let Some(n) = store_node {
                        self.intents.kick(n, now);
                    }
                    self.core.node_reachable(now, node, &mut self.out);
                    if let Some(n) = store_node {
                        self.store.set_node_state(n, crate::store::NodeState::Ready, None, now).await?;
                    }
                    self.event(now, NODE_REACHABLE, None, store_node, json!({ "was_dead": was_dead })).await?;
                    // Its servers still placed here are billed again once their containers
                    // are seen running (below).
                    if was_dead {
                        let name = self.node_name(node);
                        self.alert(now, format!("Node {name} answers again (it was declared dead).")).await?;
                    }
                }
                Ok(true)
            }
        }
    }

    /// What the containers of an answering node say about the servers placed there, and
    /// what is there that should not be.
    async fn containers(
        &mut self,
        now: Millis,
        node: NodeId,
        containers: &[ContainerInfo],
        probes: &HashMap<i64, Result<Status, DriverError>>,
        logs: &HashMap<i64, String>,
    ) -> Result<(), LiveError> {
        let by_server: HashMap<i64, &ContainerInfo> = containers.iter().map(|c| (c.server, c)).collect();
        for server in self.core.node(node).servers.clone() {
            let id = self.server_ids[server.0 as usize];
            let on = self.nid(node);
            if self.fresh.contains(&server) || self.intents.for_server_on(id, on) || self.touched.contains(&(id, on)) {
                continue; // being carried out here: judged once it is done
            }
            let c = by_server.get(&id).copied();
            if let Some(port) = c.and_then(|c| c.host_port) {
                self.ports.insert(server, port);
            }
            let running = c.is_some_and(|c| c.running);
            let answer = probes.get(&id).and_then(|p| p.as_ref().ok());
            match self.core.residence(server) {
                Residence::Starting { .. } => {
                    if let (true, Some(status)) = (running, answer) {
                        self.placed_at.remove(&server);
                        let placement = self.core.placement(server);
                        self.core.boot_complete(now, server, placement, &mut self.out);
                        self.see_players(server, self.players(server, status.online, now));
                    } else if !running {
                        // Its container was started (the intent is done) and is not running.
                        self.crash(now, server, c, logs.get(&id), "container exited while starting").await?;
                    }
                }
                Residence::Running { .. } => {
                    if !running {
                        let why = if c.is_some() { "container exited" } else { "container gone" };
                        self.crash(now, server, c, logs.get(&id), why).await?;
                    } else if let Some(status) = answer {
                        if !matches!(self.usage[server.0 as usize].phase(), Some((crate::billing::Phase::Active, _))) {
                            // Its node was silent (billing stopped); it is seen playing on.
                            let data = json!({ "reason": "seen running again" });
                            self.event(now, SERVER_RESUMED, Some(id), Some(on), data).await?;
                        }
                        self.unanswered.remove(&server);
                        let online = self.players(server, status.online, now);
                        self.see_players(server, online);
                        self.idle(now, server, online).await?;
                    } else {
                        let since = *self.unanswered.entry(server).or_insert(now);
                        if now - since >= self.cfg.healing.crash_grace {
                            self.crash(now, server, c, None, "not answering its status ping").await?;
                        }
                    }
                }
                _ => {}
            }
            self.apply(now).await?;
        }
        self.strays_on(now, node, containers).await
    }

    /// Billing follows what was observed: a server the core stopped whose stop is not
    /// confirmed (retried, or failed for good) is billed as running until its container is
    /// seen stopped on its node (`running`: what each node that answered listed as running),
    /// then as sleeping.
    async fn stopped_seen(&mut self, now: Millis, running: &HashMap<NodeId, HashSet<i64>>) -> Result<(), LiveError> {
        for i in 0..self.usage.len() {
            if !matches!(self.usage[i].phase(), Some((crate::billing::Phase::Active, _))) {
                continue;
            }
            let server = ServerId(i as u32);
            let Residence::Sleeping { node } = self.core.residence(server) else { continue };
            let id = self.server_ids[i];
            // Whatever is being carried out: the listing shows it was not running then.
            if running.get(&node).is_some_and(|r| !r.contains(&id)) {
                let peak = self.peak_players.remove(&server).unwrap_or(0);
                let data = json!({ "peak_players": peak, "observed": true });
                let store_node = self.store_node(node);
                self.event(now, SERVER_SLEPT, Some(id), store_node, data).await?;
            }
        }
        Ok(())
    }

    async fn crash(
        &mut self,
        now: Millis,
        server: ServerId,
        c: Option<&ContainerInfo>,
        logs: Option<&String>,
        reason: &str,
    ) -> Result<(), LiveError> {
        self.metrics.crashes += 1;
        self.unanswered.remove(&server);
        self.idle_since.remove(&server);
        self.placed_at.remove(&server);
        let id = self.server_ids[server.0 as usize];
        let store_node = self.node_of(server).and_then(|n| self.store_node(n));
        let data = json!({
            "reason": reason,
            "exit_code": c.and_then(|c| c.exit_code),
            "logs": logs.map(|l| l.as_str()).unwrap_or(""),
        });
        self.event(now, SERVER_CRASHED, Some(id), store_node, data).await?;
        let placement = self.core.placement(server);
        self.core.crashed(now, server, placement, &mut self.out);
        Ok(())
    }

    /// A pay-per-use server without players for `idle_timeout` stops.
    async fn idle(&mut self, now: Millis, server: ServerId, online: u32) -> Result<(), LiveError> {
        if online > 0 || !self.core.spec(server).pay_per_use {
            self.idle_since.remove(&server);
            return Ok(());
        }
        let since = *self.idle_since.entry(server).or_insert(now);
        if now - since >= self.cfg.idle_timeout {
            self.idle_since.remove(&server);
            let peak = self.peak_players.get(&server).copied().unwrap_or(0);
            let id = self.server_ids[server.0 as usize];
            let data = json!({ "idle_ms": now - since, "peak_players": peak });
            self.event(now, SERVER_IDLE, Some(id), None, data).await?;
            self.core.wanted_end(now, server, &mut self.out);
        }
        Ok(())
    }

    /// Containers on `node` that should not be there: reported, removed after `gc_grace`.
    async fn strays_on(&mut self, now: Millis, node: NodeId, containers: &[ContainerInfo]) -> Result<(), LiveError> {
        let store_node = self.store_node(node).unwrap_or(-1);
        let here = self.docker[node.0 as usize].clone();
        // What this listing does not show is no stray any more.
        let prefix = format!("container:{store_node}:");
        let listed: HashSet<String> = containers.iter().map(|c| format!("{prefix}{}", c.server)).collect();
        self.strays.retain(|k, _| !k.starts_with(&prefix) || listed.contains(k));
        for c in containers {
            // Made for another node on the same engine: that node's business (unless that
            // node is gone: then nobody else looks at it; a VM whose deletion waits for its
            // worlds to be saved is not gone yet).
            let other_live = |n: i64| {
                n != store_node
                    && self
                        .core_node(n)
                        .is_some_and(|cn| self.core.node(cn).state != CoreNode::Deleted || self.intents.deletes_vm(n))
            };
            if c.node.is_some_and(other_live) {
                continue;
            }
            if self.intents.for_server_on(c.server, store_node) || self.touched.contains(&(c.server, store_node)) {
                continue;
            }
            let id = self.by_store_id.get(&c.server).copied();
            let deleted = id.is_none() || self.deleted.contains(&c.server);
            // Where the server lives, if not here (the same engine counts as here).
            let elsewhere = match id.and_then(|s| self.node_of(s)) {
                Some(n) if n == node => false,
                Some(n) => {
                    !matches!((&here, self.docker.get(n.0 as usize).cloned().flatten()), (Some(a), Some(b)) if a.engine() == b.engine())
                }
                None => true,
            };
            let sleeping_here = id.is_some_and(|s| self.core.residence(s) == Residence::Sleeping { node });
            let action = if deleted {
                // A deleted server's world goes with it; one the store never knew keeps its
                // volume (no verified archive of it exists).
                Some(Action::Remove { server: c.server, node: store_node, volume: self.deleted.contains(&c.server) })
            } else if elsewhere {
                // A world goes only when a verified archive of it exists: a leftover volume
                // costs disk, a removed one could be the only copy.
                let s = id.expect("known");
                let volume = self.archives.contains_key(&s);
                Some(Action::Remove { server: c.server, node: store_node, volume })
            } else if sleeping_here && c.running {
                Some(Action::Stop { server: c.server, node: store_node })
            } else {
                None
            };
            let key = format!("container:{store_node}:{}", c.server);
            let Some(action) = action else {
                self.strays.remove(&key);
                continue;
            };
            // A second copy of a world running (its node came back after its servers were
            // restarted elsewhere) goes at once: two copies must not diverge.
            let urgent = elsewhere && c.running && id.is_some();
            match self.strays.get(&key) {
                None => {
                    self.strays.insert(key, now);
                    let data = json!({ "container": c.name, "running": c.running, "will": action.kind() });
                    self.event(now, GC_FOUND, Some(c.server), Some(store_node), data).await?;
                    if urgent {
                        self.enqueue(now, action, Some("a second copy runs")).await?;
                    }
                }
                Some(_) if urgent => self.enqueue(now, action, Some("a second copy runs")).await?,
                Some(&since) if now - since >= self.cfg.healing.gc_grace => {
                    self.strays.remove(&key);
                    self.enqueue(now, action, Some("garbage collection")).await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// World volumes on `node` without a container: a deleted server's goes, one whose
    /// world has a verified archive and lives elsewhere goes; the others stay (reported
    /// once: no other copy of that world is known).
    async fn volumes_on(
        &mut self,
        now: Millis,
        node: NodeId,
        containers: &[ContainerInfo],
        volumes: &[i64],
    ) -> Result<(), LiveError> {
        let store_node = self.store_node(node).unwrap_or(-1);
        let here = self.docker[node.0 as usize].clone();
        let prefix = format!("volume:{store_node}:");
        let listed: HashSet<String> = volumes.iter().map(|v| format!("{prefix}{v}")).collect();
        self.strays.retain(|k, _| !k.starts_with(&prefix) || listed.contains(k));
        for &v in volumes {
            let key = format!("{prefix}{v}");
            if self.touched.contains(&(v, store_node)) {
                continue;
            }
            if containers.iter().any(|c| c.server == v) || self.intents.for_server_on(v, store_node) {
                // In use: not a stray (any more).
                self.strays.remove(&key);
                continue;
            }
            let id = self.by_store_id.get(&v).copied();
            let lives_here = id.and_then(|s| self.node_of(s)).is_some_and(|n| {
                n == node
                    || matches!((&here, self.docker.get(n.0 as usize).cloned().flatten()), (Some(a), Some(b)) if a.engine() == b.engine())
            });
            if lives_here {
                // Its world came back here (a restart on this node): what was seen before
                // is no stray.
                self.strays.remove(&key);
                continue;
            }
            let removable = self.deleted.contains(&v) || id.is_some_and(|s| self.archives.contains_key(&s));
            if !removable {
                if self.kept.insert(key) {
                    let data = json!({ "volume": crate::docker::volume_name(v), "will": "keep: no other copy of this world is known" });
                    self.event(now, GC_FOUND, Some(v), Some(store_node), data).await?;
                }
                continue;
            }
            match self.strays.get(&key) {
                None => {
                    self.strays.insert(key, now);
                    let data = json!({ "volume": crate::docker::volume_name(v), "will": "remove" });
                    self.event(now, GC_FOUND, Some(v), Some(store_node), data).await?;
                }
                Some(&since) if now - since >= self.cfg.healing.gc_grace => {
                    self.strays.remove(&key);
                    let action = Action::Remove { server: v, node: store_node, volume: true };
                    self.enqueue(now, action, Some("garbage collection")).await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The cloud's list: provisioning VMs that run are ready; ones that never get there or
    /// vanished failed; VMs with our label that nobody knows go after `gc_grace`.
    async fn vms(&mut self, now: Millis, vms: Vec<Vm>) -> Result<(), LiveError> {
        let by_name: HashMap<&str, &Vm> = vms.iter().map(|v| (v.name.as_str(), v)).collect();
        // Every VM's Docker API at the address the cloud lists (after a restart too).
        let mut held: Vec<(NodeId, String)> = self.vm_names.iter().map(|(n, name)| (*n, name.clone())).collect();
        held.sort();
        for (node, name) in held {
            if self.core.node(node).state == CoreNode::Deleted {
                continue;
            }
            if let Some(vm) = by_name.get(name.as_str()) {
                self.connect_vm(now, node, vm).await?;
            }
        }
        let provisioning: Vec<NodeId> = (0..self.core.nodes().len() as u32)
            .map(NodeId)
            .filter(|n| self.core.node(*n).state == CoreNode::Provisioning)
            .collect();
        for node in provisioning {
            let Some(name) = self.vm_names.get(&node).cloned() else { continue };
            let since = *self.provisioning_since.entry(node).or_insert(now);
            let store_node = self.store_node(node);
            if let Some(vm) = by_name.get(name.as_str()) {
                self.vm_ids.insert(node, vm.id);
            }
            let checked = self.ready_checks.get(&node).cloned();
            match by_name.get(name.as_str()) {
                Some(vm) if vm.running && checked == Some(None) => {
                    self.provisioning_since.remove(&node);
                    self.ready_checks.remove(&node);
                    if let Some(n) = store_node {
                        self.store
                            .set_node_state(n, crate::store::NodeState::Ready, Some(vm.id.to_string()), now)
                            .await?;
                    }
                    self.event(now, NODE_READY, None, store_node, json!({})).await?;
                    self.core.node_ready(now, node, &mut self.out);
                }
                found if found.is_none() && self.intents.for_vm(&name) => {} // its create is under way
                found => {
                    let gone = found.is_none() && since < now;
                    if gone || now - since >= self.cfg.healing.vm_ready_timeout {
                        let why = if gone {
                            "not in the cloud".to_owned()
                        } else {
                            match (found.map(|v| (v.running, v.address.is_some())), checked) {
                                (Some((false, _)), _) => "not running in time".to_owned(),
                                (Some((true, false)), _) => "no address in time".to_owned(),
                                (_, Some(Some(e))) => format!("Docker API not ready in time: {e}"),
                                _ => "not ready in time".to_owned(),
                            }
                        };
                        self.provisioning_since.remove(&node);
                        self.ready_checks.remove(&node);
                        let data = json!({ "name": name, "reason": why, "waited_ms": now - since });
                        self.event(now, NODE_NEVER_READY, None, store_node, data).await?;
                        self.core.vm_failed(now, node, &mut self.out);
                    }
                }
            }
            self.apply(now).await?;
        }
        // Strays: VMs with our label the engine does not hold (or holds as deleted).
        let listed: HashSet<String> = vms.iter().map(|v| format!("vm:{}", v.name)).collect();
        self.strays.retain(|k, _| !k.starts_with("vm:") || listed.contains(k));
        let known: HashMap<String, NodeId> = self.vm_names.iter().map(|(n, name)| (name.clone(), *n)).collect();
        let mut stray = Vec::new();
        for v in &vms {
            let held = known.get(&v.name).is_some_and(|n| self.core.node(*n).state != CoreNode::Deleted);
            let key = format!("vm:{}", v.name);
            if held || self.intents.for_vm(&v.name) {
                self.strays.remove(&key);
                continue;
            }
            stray.push((key, v.name.clone(), v.id));
        }
        for (key, name, id) in stray {
            match self.strays.get(&key) {
                None => {
                    self.strays.insert(key, now);
                    self.event(
                        now,
                        GC_FOUND,
                        None,
                        None,
                        json!({ "vm": name, "provider_id": id, "will": "delete_vm" }),
                    )
                    .await?;
                }
                Some(&since) if now - since >= self.cfg.healing.gc_grace => {
                    self.strays.remove(&key);
                    let node = known.get(&name).and_then(|n| self.store_node(*n));
                    self.enqueue(now, Action::DeleteVm { node, name }, Some("garbage collection")).await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The images a node must hold before it takes servers.
    pub(super) fn images_needed(&self) -> Vec<String> {
        let mut images = self.cfg.templates.images();
        images.push(self.cfg.helper.image.clone());
        images.sort();
        images.dedup();
        images
    }

    /// A VM's Docker API, once the cloud has told its address (and whenever it changes).
    async fn connect_vm(&mut self, now: Millis, node: NodeId, vm: &Vm) -> Result<(), LiveError> {
        let (Some(c), Some(address)) = (self.cfg.cloud.as_ref(), vm.address.as_deref()) else { return Ok(()) };
        let i = node.0 as usize;
        if self.docker[i].is_some() && self.vm_addresses.get(&node).map(String::as_str) == Some(address) {
            return Ok(());
        }
        match (c.docker_for_vm)(&vm.name, address) {
            Ok(driver) => {
                self.docker[i] = Some(driver);
                self.vm_addresses.insert(node, address.to_owned());
                let data = json!({ "name": vm.name, "address": address });
                self.event(now, NODE_BOOTED, None, self.store_node(node), data).await
            }
            Err(e) => {
                // Retried at the next listing; the ready timeout bounds it.
                self.ready_checks.insert(node, Some(format!("connecting to {address}: {e}")));
                Ok(())
            }
        }
    }

    /// Notes of a VM that will never be ready.
    pub(super) async fn vm_failed_note(&mut self, now: Millis, node: NodeId) -> Result<(), LiveError> {
        let store_node = self.store_node(node);
        if let Some(n) = store_node {
            self.store.set_node_state(n, crate::store::NodeState::Deleted, None, now).await?;
        }
        let name = self.node_name(node);
        self.alert(now, format!("VM {name} never became ready: deleted; the policy may ask for another.")).await
    }
}
