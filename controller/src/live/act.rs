//! Intents: every command of the core becomes a durable intent (written to the store before
//! any call), carried out by the drivers until it is done, proven unnecessary, or has failed
//! for good.
//!
//! - Intents on the same target (a server, a VM) run one after the other, in the order the
//!   core asked for them; different targets are independent — one failing never holds up
//!   another, and nothing is dropped.
//! - A transient failure (timeout, 429, 5xx, silent node) is retried with exponential
//!   backoff and jitter; a permanent one (or too many attempts at a placement or a VM
//!   create) goes back to the core as an input (`start_failed`, `vm_failed`), so the
//!   decision about what to do next stays in the core. Stops, archives and deletions are
//!   retried until they succeed (operators are told when they keep failing).
//! - After a restart the pending intents are resumed (`adopt.rs`): every call is idempotent
//!   by deterministic names.

pub(super) use super::intents::{Action, Intents, Pending, RestoreFrom, Target};
pub(super) use super::work::{timed, Call, Done, Job, Output, Source, Verdict, Work};
use super::*;
use crate::cloud::{NewVm, LABEL_MANAGED};
use crate::docker::ContainerSpec;
use crate::driver::DriverError;
use crate::store::{NewNode, NodeState};
use conductor_core::{Command, NodeKind, Restore};

impl<S: Store> Live<S> {
    pub(super) fn container(&self, server: ServerId, node: i64) -> ContainerSpec {
        let store_id = self.server_ids[server.0 as usize];
        let t = self.template_of(store_id);
        let plan = self.core.plan_ram(server);
        ContainerSpec {
            node: Some(node),
            server: store_id,
            image: t.image.clone(),
            cmd: t.cmd.clone(),
            memory_mib: plan,
            env: t.env(plan),
            host_port: self.game_port(store_id),
            data_path: Some(t.data_path.clone()),
            nano_cpus: t.nano_cpus(plan),
            open_stdin: t.console == crate::template::Console::Stdin,
            secret_env: t.secret_env().map(str::to_owned),
            stop_signal: t.stop_signal.clone(),
        }
    }

    /// The stable game port of a server, if configured and in range.
    fn game_port(&self, store_id: i64) -> Option<u16> {
        let base = self.cfg.game.port_base?;
        u16::try_from(i64::from(base) + store_id).ok()
    }

    /// Room for the core's node `core` in the per-node tables, tied to its store row.
    pub(super) fn node_slot(&mut self, core: NodeId, store_id: i64) {
        let i = core.0 as usize;
        if self.node_ids.len() <= i {
            self.node_ids.resize(i + 1, None);
            self.docker.resize(i + 1, None);
            self.health.resize(i + 1, Health::default());
        }
        self.node_ids[i] = Some(store_id);
    }

    pub(super) fn push_node(&mut self, core: NodeId, store_id: i64, name: &str) {
        self.node_slot(core, store_id);
        // Its Docker API once the cloud has given it an address (`observe::vms`).
        self.vm_names.insert(core, name.to_owned());
    }

    /// Records an intent and queues it (an identical one already waiting is enough).
    pub(super) async fn enqueue(&mut self, now: Millis, action: Action, _why: Option<&str>) -> Result<(), LiveError> {
        if self.intents.items.values().any(|p| p.action == action) {
            return Ok(());
        }
        // The archive of a world already waiting (resumed after a restart: its name was made
        // at the first decision) is the same archive: one copy, not two.
        if let Action::Archive { server, node, .. } = &action {
            let same = |p: &&Pending| matches!(&p.action, Action::Archive { server: s, node: n, .. } if s == server && n == node);
            if self.intents.items.values().any(|p| same(&p)) {
                return Ok(());
            }
        }
        let key = format!("{}:{:?}:{}.{}", action.kind(), action.target(), self.intents.base, self.intents.next);
        let data = serde_json::to_value(&action).expect("plain data");
        let intent = self.store.begin_intent(&key, action.kind(), data, now).await?;
        self.intents.push(intent.id, key, action, now, now);
        Ok(())
    }

    /// A command of the core: a timer, or an intent (recorded only, in observe mode).
    pub(super) async fn command(&mut self, now: Millis, command: Command) -> Result<(), LiveError> {
        if let Command::Wake { at, timer } = command {
            self.timer_seq += 1;
            self.timers.insert((at, self.timer_seq), timer);
            return Ok(());
        }
        if self.cfg.mode == Mode::Observe {
            let data = json!({ "command": format!("{command:?}") });
            return self.event(now, DECISION_OBSERVED, None, None, data).await;
        }
        let action = match command {
            Command::Place { server, node, restore, .. } => {
                let restore = match restore {
                    Restore::None => RestoreFrom::None,
                    // The controller stages nothing (its config refuses [policy.staging]); the
                    // archive is the copy of record, so restoring from it is always right.
                    Restore::FromArchive | Restore::Staged => RestoreFrom::Archive,
                    Restore::FromNode(from) => RestoreFrom::Node { node: self.nid(from) },
                };
                self.placed_at.insert(server, now);
                self.fresh.insert(server);
                self.unanswered.remove(&server);
                self.unplaced.insert(server);
                self.record_state(server, now).await?;
                // Ends a sleeping phase for billing (and tells where it went).
                let data = json!({ "restore": format!("{restore:?}") });
                self.event(now, SERVER_PLACED, Some(self.sid(server)), Some(self.nid(node)), data).await?;
                Action::Place { server: self.sid(server), node: self.nid(node), restore }
            }
            Command::Migrate { server, from, to, .. } => {
                // Saved and stopped where it runs (the template's stop command, then the
                // signal); then its world is copied node to node and it starts on `to` — the
                // placement waits for the stop on `from`. The old copy goes once the new one
                // is in place; a failure leaves it asleep on `from` (the core restarts it).
                let id = self.sid(server);
                self.placed_at.insert(server, now);
                self.fresh.insert(server);
                self.unanswered.remove(&server);
                self.unplaced.insert(server);
                self.record_state(server, now).await?;
                let restore = if from == to { RestoreFrom::None } else { RestoreFrom::Node { node: self.nid(from) } };
                // Ends the running phase for billing: the move is not billed (as in the twin).
                let data = json!({ "restore": format!("{restore:?}"), "migration": true });
                self.event(now, SERVER_PLACED, Some(id), Some(self.nid(to)), data).await?;
                self.enqueue(now, Action::Stop { server: id, node: self.nid(from) }, None).await?;
                Action::Place { server: id, node: self.nid(to), restore }
            }
            Command::Stop { server, node } => {
                // Stopped before its placement was carried out: it is not, and the core
                // learns the world is still where it was (or that there is none yet).
                let id = self.sid(server);
                let undone = self.intents.cancel_place(id);
                for store_id in &undone {
                    let outcome = json!({ "unnecessary": "stopped before it was carried out" });
                    self.store.finish_intent(*store_id, true, outcome, now).await?;
                }
                if self.unplaced.remove(&server) && !self.intents.placing(id) {
                    self.core.restore_undone(now, server, &mut self.out);
                }
                self.record_state(server, now).await?;
                Action::Stop { server: self.sid(server), node: self.nid(node) }
            }
            Command::Archive { server, node } => {
                let key = format!("s{}-{now}.tar.zst", self.sid(server));
                Action::Archive { server: self.sid(server), node: self.nid(node), key }
            }
            Command::Discard { server, node, keep_data } => {
                Action::Discard { server: self.sid(server), node: self.nid(node), keep_data }
            }
            Command::Stage { .. } | Command::Unstage { .. } => {
                // Twin-only for now: a controller config with [policy.staging] is refused.
                let data = json!({ "command": format!("{command:?}"), "error": "staging is twin-only" });
                return self.event(now, COMMAND_UNSUPPORTED, None, None, data).await;
            }
            Command::CreateVm { node, vm_type } => {
                let Some(c) = self.cfg.cloud.as_ref() else {
                    let data = json!({ "command": "create_vm", "error": "no cloud configured" });
                    self.event(now, COMMAND_UNSUPPORTED, None, None, data).await?;
                    self.core.vm_failed(now, node, &mut self.out);
                    return Ok(());
                };
                let cluster = c.cluster.clone();
                // The node row first: its event's seq makes the VM's name.
                let seq = self
                    .store
                    .append_event(NewEvent {
                        at: now,
                        kind: NODE_CREATE_REQUESTED.into(),
                        server: None,
                        node: None,
                        data: json!({ "type": vm_type }),
                    })
                    .await?;
                let name = format!("cdt-{cluster}-{seq}");
                let n = self.core.node(node);
                let new = NewNode {
                    name: name.clone(),
                    kind: NodeKind::Cloud,
                    type_name: vm_type.clone(),
                    provider_id: None,
                    state: NodeState::Provisioning,
                    ram_mib: n.ram_mib,
                    usable_mib: n.usable_mib,
                };
                let row = self.store.upsert_node(new, now).await?;
                self.push_node(node, row.id, &name);
                self.provisioning_since.insert(node, now);
                Action::CreateVm { node: row.id, name, vm_type }
            }
            Command::DeleteVm { node } => {
                let store_node = self.store_node(node);
                if let Some(id) = store_node {
                    self.store.set_node_state(id, NodeState::Deleted, None, now).await?;
                }
                self.provisioning_since.remove(&node);
                let name = self.vm_names.get(&node).cloned().unwrap_or_default();
                Action::DeleteVm { node: store_node, name }
            }
            job @ (Command::StartJob { .. } | Command::NoticeJob { .. } | Command::KillJob { .. }) => {
                match self.job_command(now, job).await? {
                    Some(action) => action,
                    None => return Ok(()),
                }
            }
            Command::Wake { .. } => unreachable!("timers are handled above"),
        };
        self.enqueue(now, action, None).await
    }

    /// The intents due now whose target has no earlier intent waiting, as calls.
    pub(super) async fn due_work(&mut self, now: Millis) -> Result<Work, LiveError> {
        let mut work = Work::empty(&self.cfg, &self.lane);
        // An intent waits for the earlier ones on the same server and node (a stop before
        // the restart there), or on the same VM; on other nodes it goes its own way (the
        // removal of a stray copy is not held up by a placement elsewhere).
        let mut blocked: std::collections::BTreeSet<(Target, i64)> = std::collections::BTreeSet::new();
        // A VM is deleted only after the earlier intents on it: its worlds are saved and
        // archived first, whatever the core already decided.
        let mut busy: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
        let locals: Vec<u64> = self.intents.items.keys().copied().collect();
        for local in locals {
            let p = &self.intents.items[&local];
            if let Action::DeleteVm { node: Some(n), .. } = &p.action {
                if busy.contains(n) {
                    continue;
                }
            }
            busy.extend(p.action.nodes());
            let target = p.action.target();
            let keys: Vec<(Target, i64)> = match target {
                Target::Server(_) | Target::Backups(_) => {
                    p.action.nodes().into_iter().map(|n| (target.clone(), n)).collect()
                }
                Target::Vm(_) | Target::Object(_) | Target::Console(_) | Target::Job(_) => vec![(target, 0)],
            };
            let waits = keys.iter().any(|k| blocked.contains(k));
            blocked.extend(keys);
            if waits || p.in_flight || p.next_at > now {
                continue;
            }
            let action = p.action.clone();
            let (group, call) = self.resolve(&action);
            self.intents.items.get_mut(&local).expect("present").in_flight = true;
            work.jobs.push(Job { local, group, call });
        }
        work.objects = self.objects_due(now);
        Ok(work)
    }

    pub(super) fn driver(&self, store_node: i64) -> Result<(NodeId, Arc<dyn NodeDriver>), Verdict> {
        use conductor_core::scheduler::NodeState as N;
        let node = self.core_node(store_node).ok_or_else(|| Verdict::Unnecessary("node unknown".into()))?;
        // A VM the core has let go is still there until its deletion is carried out, which
        // waits for the intents on it (the stop and archive of its sleepers): they run.
        let state = self.core.node(node).state;
        if state == N::Dead || (state == N::Deleted && !self.intents.deletes_vm(store_node)) {
            return Err(Verdict::Unnecessary(format!("node {} is gone", self.node_name(node))));
        }
        let d = self.docker.get(node.0 as usize).cloned().flatten();
        d.map(|d| (node, d)).ok_or_else(|| {
            // A VM's API is known from the cloud's next listing (its address): wait for it.
            Verdict::Failed(if self.vm_names.contains_key(&node) {
                DriverError::transient("the VM's address is not known yet")
            } else {
                DriverError::permanent("node without a Docker API")
            })
        })
    }

    fn waits_for_dead(&self, store_node: i64) -> bool {
        use conductor_core::scheduler::NodeState as N;
        self.core_node(store_node).is_some_and(|n| {
            let n = self.core.node(n);
            n.state == N::Dead && n.kind == NodeKind::Dedicated
        })
    }

    /// The call an intent needs now, or why it needs none.
    fn resolve(&self, action: &Action) -> (String, Result<Call, Verdict>) {
        let group = match action {
            Action::Place { node, .. }
            | Action::Stop { node, .. }
            | Action::Archive { node, .. }
            | Action::Discard { node, .. }
            | Action::Remove { node, .. }
            | Action::Backup { node, .. }
            | Action::RestoreBackup { node, .. }
            | Action::Say { node, .. }
            | Action::RunJob { node, .. }
            | Action::SignalJob { node, .. }
            | Action::RemoveJob { node, .. } => format!("node:{node}"),
            Action::CreateVm { .. } | Action::DeleteVm { .. } => "cloud".into(),
            Action::DropObject { .. } => "archive".into(),
        };
        let call = (|| match action {
            Action::Place { server, node, restore } => {
                let (core_node, d) = self.driver(*node)?;
                let id = *self.by_store_id.get(server).ok_or_else(|| Verdict::Unnecessary("server unknown".into()))?;
                if self.core.residence(id) != (Residence::Starting { node: core_node }) {
                    return Err(Verdict::Unnecessary("superseded: the server is no longer placed there".into()));
                }
                let source = match restore {
                    RestoreFrom::None => Source::Here,
                    RestoreFrom::Archive => match self.archives.get(&id) {
                        Some(r) => Source::Archive(r.clone()),
                        None => {
                            let e = "no archive of this world is known (it lived only on a node that died)";
                            return Err(Verdict::Failed(DriverError::permanent(e)));
                        }
                    },
                    RestoreFrom::Node { node: from } => match self.driver(*from) {
                        Ok((_, src)) => Source::Node(src),
                        // A VM whose address is not known yet (just after a restart): wait.
                        Err(Verdict::Failed(e)) if e.is_transient() => return Err(Verdict::Failed(e)),
                        Err(_) => return Err(Verdict::Failed(DriverError::permanent("the world's node is gone"))),
                    },
                };
                Ok(Call::Place { node: d, spec: self.container(id, *node), source })
            }
            Action::Stop { server, node } => {
                let t = self.template_of(*server);
                let console = t.stop_command.clone().map(|c| (t.console_via(), c));
                Ok(Call::Stop { node: self.driver(*node)?.1, server: *server, console })
            }
            Action::Discard { node, .. } | Action::Remove { node, .. } | Action::Archive { node, .. }
                if self.waits_for_dead(*node) =>
            {
                // What a dead dedicated node holds is removed (or archived) when it returns.
                Err(Verdict::Failed(DriverError::transient("the node is dead: carried out when it returns")))
            }
            Action::Archive { server, node, key } => {
                // Archived since its last stop already (an earlier intent for the same stop):
                // there is nothing on the node to archive any more.
                let core = self.by_store_id.get(server).copied();
                let made = |r: &ArchiveRef| super::worlds::key_time(&r.key);
                let since = core.and_then(|id| self.archives.get(&id).and_then(made).map(|t| (id, t)));
                if let Some((id, t)) = since {
                    if t >= self.core.stopped_at(id) && super::worlds::key_time(key).is_some_and(|k| k >= t) {
                        return Err(Verdict::Unnecessary(format!("archived already ({})", self.archives[&id].key)));
                    }
                }
                Ok(Call::Archive { node: self.driver(*node)?.1, server: *server, key: key.clone() })
            }
            Action::Discard { server, node, keep_data } => {
                // A world is removed only when a verified copy exists elsewhere: a failed
                // placement never costs a world, whatever the core believed was there.
                let archived = self.by_store_id.get(server).is_some_and(|s| self.archives.contains_key(s));
                let volume = !keep_data && archived;
                Ok(Call::Remove { node: self.driver(*node)?.1, server: *server, volume })
            }
            Action::Remove { server, node, volume } => {
                Ok(Call::Remove { node: self.driver(*node)?.1, server: *server, volume: *volume })
            }
            Action::CreateVm { name, vm_type, .. } => {
                let c = self.cfg.cloud.as_ref().ok_or_else(|| Verdict::Unnecessary("no cloud configured".into()))?;
                let labels = std::collections::HashMap::from([(LABEL_MANAGED.to_string(), c.cluster.clone())]);
                // Issued afresh at each attempt: a VM that exists already keeps its first
                // certificates, which the same CA verifies.
                let user_data = (c.user_data)(name).map_err(|e| Verdict::Failed(DriverError::permanent(e)))?;
                let new = NewVm {
                    name: name.clone(),
                    type_name: vm_type.clone(),
                    image: c.image.clone(),
                    location: c.location.clone(),
                    user_data,
                    labels,
                };
                Ok(Call::CreateVm { cloud: c.client.clone(), new })
            }
            Action::DeleteVm { node, name } => {
                let c = self.cfg.cloud.as_ref().ok_or_else(|| Verdict::Unnecessary("no cloud configured".into()))?;
                let id = node.and_then(|n| self.core_node(n)).and_then(|n| self.vm_ids.get(&n).copied());
                let selector = format!("{LABEL_MANAGED}={}", c.cluster);
                Ok(Call::DeleteVm { cloud: c.client.clone(), id, name: name.clone(), selector })
            }
            Action::Backup { .. } | Action::RestoreBackup { .. } | Action::DropObject { .. } => {
                self.resolve_world(action)
            }
            Action::Say { server, node, text } => {
                let (core_node, d) = self.driver(*node)?;
                let id = *self.by_store_id.get(server).ok_or_else(|| Verdict::Unnecessary("server unknown".into()))?;
                if self.core.residence(id) != (Residence::Running { node: core_node }) {
                    return Err(Verdict::Unnecessary("the server no longer runs there".into()));
                }
                let via = self.template_of(*server).console_via();
                Ok(Call::Say { node: d, server: *server, via, text: text.clone() })
            }
            Action::RunJob { job, node } => {
                let d = self.driver(*node)?.1;
                let Some(j) = self.job_row(*job).filter(|j| j.state == crate::store::JobState::Running) else {
                    return Err(Verdict::Unnecessary("the job is no longer to run".into()));
                };
                let spec = crate::driver::JobSpec { job: j.id, image: j.image, cmd: j.cmd, memory_mib: j.ram_mib };
                Ok(Call::RunJob { node: d, spec })
            }
            Action::SignalJob { job, node } => Ok(Call::SignalJob { node: self.driver(*node)?.1, job: *job }),
            Action::RemoveJob { job, node } => Ok(Call::RemoveJob { node: self.driver(*node)?.1, job: *job }),
        })();
        (group, call)
    }

    /// Outcomes of the step's calls: done, retried later, or failed for good (then the
    /// core is told).
    pub(super) async fn outcomes(
        &mut self,
        now: Millis,
        outcomes: Vec<(u64, Result<Output, Verdict>)>,
    ) -> Result<(), LiveError> {
        for (local, result) in outcomes {
            let Some(p) = self.intents.items.get_mut(&local) else { continue };
            p.in_flight = false;
            match result {
                Ok(out) => {
                    let p = self.intents.items.remove(&local).expect("present");
                    self.store.finish_intent(p.store_id, true, json!({}), now).await?;
                    self.done(now, &p.action, out).await?;
                }
                Err(Verdict::Unnecessary(why)) => {
                    let p = self.intents.items.remove(&local).expect("present");
                    self.store.finish_intent(p.store_id, true, json!({ "unnecessary": why }), now).await?;
                    let data = json!({ "key": p.key, "reason": why });
                    self.event(now, INTENT_UNNECESSARY, p.action.server(), None, data).await?;
                }
                Err(Verdict::Failed(e)) => {
                    let kind = p.action.kind();
                    let attempts = p.attempts + 1;
                    let gives_up = p.action.gives_up();
                    let action = p.action.clone();
                    // The removal of a second running copy of a world (its node came back
                    // after the server restarted elsewhere) is retried at the base interval
                    // whatever the error: two copies must not diverge for long.
                    let urgent = self.second_copy(&action);
                    if (e.is_transient() || urgent) && !(gives_up && attempts >= self.cfg.healing.max_attempts) {
                        let wait = self.intents.backoff(if urgent { 1 } else { attempts }, &self.cfg.healing);
                        let p = self.intents.items.get_mut(&local).expect("present");
                        p.attempts = attempts;
                        p.next_at = now + wait;
                        let alert = !gives_up && attempts >= self.cfg.healing.max_attempts && !p.alerted;
                        p.alerted |= alert;
                        let (key, server) = (p.key.clone(), p.action.server());
                        *self.metrics.retries.entry(kind).or_default() += 1;
                        let data =
                            json!({ "key": key, "attempt": attempts, "error": e.message, "next_at": now + wait });
                        self.event(now, INTENT_RETRY, server, None, data).await?;
                        if alert {
                            self.alert(now, format!("{key} keeps failing ({attempts} attempts): {}", e.message))
                                .await?;
                        }
                    } else {
                        let p = self.intents.items.remove(&local).expect("present");
                        self.failed(now, p, attempts, e).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `action` removes a container of a server that lives on another node now,
    /// from a node that answers.
    fn second_copy(&self, action: &Action) -> bool {
        let Action::Remove { server, node, .. } = action else { return false };
        let (Some(&id), Some(here)) = (self.by_store_id.get(server), self.core_node(*node)) else { return false };
        let elsewhere = match self.core.residence(id) {
            Residence::Running { node: n } | Residence::Starting { node: n } => n != here,
            _ => false,
        };
        elsewhere && !self.waits_for_dead(*node)
    }

    /// An intent failed for good: recorded, operators told, the core asked what next.
    async fn failed(&mut self, now: Millis, p: Pending, attempts: u32, e: DriverError) -> Result<(), LiveError> {
        let kind = p.action.kind();
        *self.metrics.failures.entry(kind).or_default() += 1;
        self.store.finish_intent(p.store_id, false, json!({ "error": e.message, "attempts": attempts }), now).await?;
        let data = json!({ "key": p.key, "attempts": attempts, "error": e.message });
        self.event(now, INTENT_FAILED, p.action.server(), None, data).await?;
        if !matches!(p.action, Action::Say { .. }) {
            // An announcement is best effort: its failure is recorded, nobody is woken.
            self.alert(now, format!("{} failed for good after {attempts} attempts: {}", p.key, e.message)).await?;
        }
        match &p.action {
            Action::Place { server, node, .. } => {
                if let (Some(&id), Some(n)) = (self.by_store_id.get(server), self.core_node(*node)) {
                    if self.core.residence(id) == (Residence::Starting { node: n }) {
                        let placement = self.core.placement(id);
                        self.core.start_failed(now, id, placement, &mut self.out);
                    }
                }
            }
            Action::CreateVm { node, .. } => {
                if let Some(n) = self.core_node(*node) {
                    self.core.vm_failed(now, n, &mut self.out);
                }
            }
            Action::RunJob { job, .. } => self.job_failed(now, *job, e.message.clone()).await?,
            // Stops, archives and removals never give up unless refused for good: the world
            // stays where it is (an archive is never taken for done).
            _ => {}
        }
        Ok(())
    }

    /// What a finished intent changes in the records.
    async fn done(&mut self, now: Millis, action: &Action, out: Output) -> Result<(), LiveError> {
        match action {
            Action::Place { server, node, restore } => {
                if let Some(&id) = self.by_store_id.get(server) {
                    self.unplaced.remove(&id);
                    if self.core_node(*node).is_some_and(|n| self.core.residence(id) == Residence::Starting { node: n })
                    {
                        self.core.world_copied(id);
                        // The ready check's clock starts with the container: a big world's
                        // copy (bounded by `data_timeout`) does not count against it.
                        self.placed_at.insert(id, now);
                    }
                }
                if let RestoreFrom::Node { node: from } = restore {
                    // The world runs here now: the old copy goes (not on the same engine).
                    let engine = |n: i64| {
                        self.core_node(n)
                            .and_then(|c| self.docker.get(c.0 as usize).cloned().flatten())
                            .map(|d| d.engine().to_owned())
                    };
                    if engine(*from) != engine(*node) {
                        self.enqueue(now, Action::Remove { server: *server, node: *from, volume: true }, None).await?;
                    }
                }
                if let Output::Archived(r) = out {
                    // The world's size: `conductor export` measures restore bandwidth by it.
                    let data = json!({ "archive": r.key, "sha256": r.sha256, "world_bytes": r.world_bytes });
                    self.event(now, SERVER_RESTORED, Some(*server), Some(*node), data).await?;
                }
            }
            Action::Stop { server, node } => {
                let Some(&id) = self.by_store_id.get(server) else { return Ok(()) };
                let slept =
                    self.core_node(*node).is_some_and(|n| self.core.residence(id) == Residence::Sleeping { node: n });
                if slept {
                    // The run is billed until the container really stopped.
                    let peak = self.peak_players.remove(&id).unwrap_or(0);
                    self.event(now, SERVER_SLEPT, Some(*server), Some(*node), json!({ "peak_players": peak })).await?;
                    if self.cfg.worlds.backup_on_stop {
                        self.backup(now, *server, *node, "stop").await?;
                    }
                } else {
                    self.event(now, CONTAINER_STOPPED, Some(*server), Some(*node), json!({})).await?;
                }
            }
            Action::Archive { server, node, .. } => {
                let Output::Archived(r) = out else { return Ok(()) };
                let Some(&id) = self.by_store_id.get(server) else { return Ok(()) };
                // The node copy is gone: wherever the core thought the world slept, it is
                // in the archive now.
                if self.core_node(*node).is_some_and(|n| self.core.residence(id) == Residence::Sleeping { node: n }) {
                    self.core.world_archived(id);
                }
                if self.core.residence(id) == Residence::Archived {
                    self.store.set_server_state(*server, ServerState::Archived, None, now).await?;
                }
                let data =
                    json!({ "archive": r.key, "sha256": r.sha256, "bytes": r.bytes, "world_bytes": r.world_bytes });
                self.event(now, SERVER_ARCHIVED, Some(*server), None, data).await?;
                self.measured(now, *server, r.world_bytes).await?;
                self.archives.insert(id, r);
            }
            Action::Discard { server, node, keep_data } => {
                self.metrics.gc_removed += 1;
                let archived = self.by_store_id.get(server).is_some_and(|s| self.archives.contains_key(s));
                let data = json!({ "what": "container of a failed placement", "volume": !keep_data && archived });
                self.event(now, GC_REMOVED, Some(*server), Some(*node), data).await?;
            }
            Action::Remove { server, node, volume } => {
                self.metrics.gc_removed += 1;
                self.strays.remove(&format!("container:{node}:{server}"));
                self.strays.remove(&format!("volume:{node}:{server}"));
                let data = json!({ "what": "container", "volume": volume });
                self.event(now, GC_REMOVED, Some(*server), Some(*node), data).await?;
            }
            Action::CreateVm { node, name, .. } => {
                let Output::Vm(vm) = out else { return Ok(()) };
                if let Some(n) = self.core_node(*node) {
                    self.vm_ids.insert(n, vm.id);
                    // Its ready timeout runs from the create (the cloud's list of this step
                    // was taken before it).
                    self.provisioning_since.insert(n, now);
                }
                self.store.set_node_state(*node, NodeState::Provisioning, Some(vm.id.to_string()), now).await?;
                let data = json!({ "provider_id": vm.id, "name": name });
                self.event(now, NODE_CREATED, None, Some(*node), data).await?;
            }
            Action::DeleteVm { node, name } => {
                self.strays.remove(&format!("vm:{name}"));
                let data = json!({ "name": name });
                self.event(now, NODE_DELETED, None, *node, data).await?;
            }
            Action::Backup { .. } | Action::RestoreBackup { .. } | Action::DropObject { .. } => {
                self.world_done(now, action, out).await?;
            }
            Action::Say { server, text, .. } => {
                let data = json!({ "by": "controller", "command": text, "ok": true });
                self.event(now, CONSOLE_COMMAND, Some(*server), None, data).await?;
            }
            Action::RunJob { .. } | Action::SignalJob { .. } | Action::RemoveJob { .. } => {}
        }
        Ok(())
    }

    /// Intents pending longer than `stale_after` are reported (an event and the operators),
    /// once each; they go on being carried out.
    pub(super) async fn report_stale(&mut self, now: Millis) -> Result<(), LiveError> {
        let limit = self.cfg.healing.stale_after;
        let old: Vec<(String, u32, Millis, Option<i64>)> = self
            .intents
            .items
            .values_mut()
            .filter(|p| !p.stale && now - p.since >= limit)
            .map(|p| {
                p.stale = true;
                (p.key.clone(), p.attempts, p.since, p.action.server())
            })
            .collect();
        for (key, attempts, since, server) in old {
            self.metrics.stale_intents += 1;
            let data = json!({ "key": key, "attempts": attempts, "pending_ms": now - since });
            self.event(now, INTENT_STALE, server, None, data).await?;
            let min = (now - since) / 60_000;
            self.alert(now, format!("{key} is still not done after {min} min ({attempts} attempts)")).await?;
        }
        Ok(())
    }

    /// A start that ran out of time: its waiting placement intent ends, the core decides.
    pub(super) async fn give_up_start(&mut self, now: Millis, server: ServerId) -> Result<(), LiveError> {
        let id = self.server_ids[server.0 as usize];
        for store_id in self.intents.cancel(id, "place") {
            self.store.finish_intent(store_id, false, json!({ "error": "start timeout" }), now).await?;
        }
        if self.intents.items.values().any(|p| p.in_flight && p.action.server() == Some(id)) {
            return Ok(()); // its call is under way: decided when it reports
        }
        let placement = self.core.placement(server);
        self.core.start_failed(now, server, placement, &mut self.out);
        Ok(())
    }
}
