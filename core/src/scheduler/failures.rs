//! Failure inputs: nodes that stop answering and die (SPEC §7), and what the driver reports
//! when carrying out a command failed for good.

use super::*;

impl Scheduler {
    /// `node` stopped answering (health checks, heartbeats): it takes no new servers now and
    /// is declared dead if it stays silent for `dead_after`.
    pub fn node_unreachable(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        match n.state {
            NodeState::Ready => {
                self.usable_ready_mib -= u64::from(n.usable_mib);
                self.ready.retain(|&id| id != node);
            }
            NodeState::Cordoned => self.draining.retain(|&id| id != node),
            NodeState::Provisioning => {
                self.provisioning -= 1;
                self.usable_provisioning_mib -= u64::from(n.usable_mib);
            }
            NodeState::Unreachable { .. } | NodeState::Dead | NodeState::Deleted => return,
        }
        self.nodes[node.0 as usize].state = NodeState::Unreachable { since: now };
        out.commands
            .push(Command::Wake { at: now + self.config.dead_after, timer: Timer::DeadCheck { node, since: now } });
    }

    /// `node` answers again: before being declared dead it simply resumes; a dead dedicated
    /// node comes back empty (repaired).
    pub fn node_reachable(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        let back = match n.state {
            NodeState::Unreachable { .. } => true,
            NodeState::Dead => n.kind == NodeKind::Dedicated,
            _ => false,
        };
        if back && n.drained {
            n.state = NodeState::Cordoned;
        } else if back {
            self.make_ready(now, node, out);
        }
    }

    /// Rule of SPEC §7: restart the node's servers elsewhere from their latest archive.
    pub(super) fn declare_dead(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        out.notes.push(Note::NodeDead { node });
        // Staged copies died with it; the archive has their worlds.
        self.drop_staged_on(node, false, out);
        let mut restart = Vec::new();
        for i in 0..self.servers.len() {
            let server = ServerId(i as u32);
            let s = &mut self.servers[i];
            let was_active = match s.residence {
                Residence::Starting { node: n } | Residence::Running { node: n } if n == node => true,
                Residence::Sleeping { node: n } if n == node => false,
                _ => continue,
            };
            out.notes.push(Note::Failed { server, was_active });
            self.set_residence(server, Residence::Archived);
            let s = &mut self.servers[i];
            if was_active {
                let ram = u64::from(s.spec.ram_mib);
                self.reserved_mib -= ram;
                let n = &mut self.nodes[node.0 as usize];
                n.reserved_mib -= ram;
                n.active -= 1;
                n.servers.retain(|&x| x != server);
                // Its start (if still pending) is replaced by the restart below.
                s.request = None;
                if let Some(from) = s.migrating_from.take() {
                    self.nodes[from.0 as usize].outgoing -= 1;
                }
                restart.push(server);
            }
        }
        // Its jobs died with it: killed (their room is not reserved any more).
        for j in 0..self.jobs.len() {
            let job = JobId(j as u32);
            if matches!(self.jobs[j].state, JobState::Running { node: n } | JobState::Noticed { node: n, .. } if n == node)
            {
                self.end_job(job, node);
                out.commands.push(Command::KillJob { job, node });
            }
        }
        let n = &mut self.nodes[node.0 as usize];
        debug_assert_eq!(n.active, 0);
        debug_assert_eq!(n.job_mib, 0);
        if n.kind == NodeKind::Cloud {
            n.state = NodeState::Deleted;
            self.cloud_vms -= 1;
            out.commands.push(Command::DeleteVm { node });
        } else {
            n.state = NodeState::Dead;
        }
        for server in restart {
            self.request_start(now, server, out);
        }
    }

    /// A VM that will never be ready: its create failed for good, or it did not become
    /// ready in time. The slot is free again (the policy may ask for another after its
    /// cooldown); whatever the cloud made is deleted.
    pub fn vm_failed(&mut self, _now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        if n.kind != NodeKind::Cloud || n.state != NodeState::Provisioning {
            return;
        }
        self.provisioning -= 1;
        self.usable_provisioning_mib -= u64::from(n.usable_mib);
        n.state = NodeState::Deleted;
        self.cloud_vms -= 1;
        out.notes.push(Note::VmFailed { node });
        out.commands.push(Command::DeleteVm { node });
    }

    /// The placement `placement` of `server` could not start it (the driver gave up, or it
    /// did not answer within the start timeout). Its RAM is freed, its world is where it was
    /// before, what the placement left on the node is discarded, and its request is placed
    /// again — elsewhere if another node fits — or waits in the queue until `give_up`. A
    /// migration that failed leaves the server asleep where it ran, and starts it again.
    pub fn start_failed(&mut self, now: Millis, server: ServerId, placement: PlacementId, out: &mut Outbox) {
        let s = &self.servers[server.0 as usize];
        let Residence::Starting { node } = s.residence else { return };
        if s.placement != placement {
            return;
        }
        // A move that failed: the world is still on the node it ran on (its copy there goes
        // only once the new one runs); it sleeps there and is started again.
        let migrated_from = s.migrating_from;
        self.release(server, node);
        let s = &mut self.servers[server.0 as usize];
        s.avoid = Some(node);
        let back = match (migrated_from, s.before) {
            (Some(from), _) => Residence::Sleeping { node: from },
            (None, Residence::Starting { .. } | Residence::Running { .. }) => Residence::Archived,
            (None, before) => before,
        };
        if migrated_from.is_some() {
            s.stops += 1;
            s.stopped_at = now;
            // In place (a plan change with room) the node is the one to retry on.
            if migrated_from == Some(node) {
                s.avoid = None;
            }
        }
        self.set_residence(server, back);
        let s = &mut self.servers[server.0 as usize];
        let keep_data = s.residence == (Residence::Sleeping { node });
        if let Residence::Sleeping { node: at } = s.residence {
            // Its archive timer fired (and was ignored) while it was starting: ask again.
            let due = (s.stopped_at + self.config.sleep_window).max(now);
            let epoch = s.stops;
            self.add_sleeper(at, server);
            out.commands.push(Command::Wake { at: due, timer: Timer::Archive { server, epoch } });
        }
        out.notes.push(Note::StartFailed { server, node });
        out.commands.push(Command::Discard { server, node, keep_data });
        let request = self.servers[server.0 as usize].request.take();
        match (request, migrated_from) {
            (Some(r), _) => self.retry(now, server, r, out),
            // It was running: its players want it back — where it ran, even on a node being
            // emptied (the move was the reason for that), if it still fits there.
            (None, Some(from)) => {
                let n = &self.nodes[from.0 as usize];
                let ram = u64::from(self.servers[server.0 as usize].spec.ram_mib);
                if matches!(n.state, NodeState::Ready | NodeState::Cordoned) && n.free_mib() >= ram {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.servers[server.0 as usize].request = Some(Request { seq, at: now, queued: false });
                    self.place(server, from, Restore::None, out);
                } else {
                    self.request_start(now, server, out);
                }
            }
            (None, None) => {}
        }
        self.scan_queue(now, out);
    }

    /// `server`, placed by `placement`, crashed (its container exited, or it stopped
    /// answering): it sleeps on its node (billing of its run ended at the crash), and is
    /// started again unless it crashed `crash_limit` times within `crash_window` — then it
    /// stays stopped until its owner starts it (a crash loop).
    pub fn crashed(&mut self, now: Millis, server: ServerId, placement: PlacementId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let node = match s.residence {
            Residence::Starting { node } | Residence::Running { node } => node,
            _ => return,
        };
        if s.placement != placement {
            return;
        }
        let window = self.config.crash_window;
        while s.crashes.front().is_some_and(|&t| now - t >= window) {
            s.crashes.pop_front();
        }
        s.crashes.push_back(now);
        let crashes = s.crashes.len() as u32;
        let restarted = crashes < self.config.crash_limit;
        let request = s.request.take();
        self.stop(now, server, node, out);
        out.notes.push(Note::Crashed { server, node, crashes, restarted });
        match (restarted, request) {
            (true, Some(r)) => self.retry(now, server, r, out),
            (true, None) => self.request_start(now, server, out),
            (false, Some(r)) => {
                out.notes.push(Note::Abandoned { server, requested_at: r.at, reason: AbandonReason::StartFailed })
            }
            (false, None) => {}
        }
    }

    /// A request whose placement failed: placed again at once if it fits (keeping its
    /// arrival time and place in line), else queued until `give_up` after it was made.
    fn retry(&mut self, now: Millis, server: ServerId, r: Request, out: &mut Outbox) {
        if now - r.at >= self.config.give_up {
            out.notes.push(Note::Abandoned { server, requested_at: r.at, reason: AbandonReason::StartFailed });
            return;
        }
        self.servers[server.0 as usize].request = Some(Request { queued: false, ..r });
        if !self.try_place(server, out) {
            self.enqueue(now, server, out);
        }
    }

    /// `server`'s last placement was never carried out (it stopped before): its world is
    /// still where it was before that placement — on its old node, in the archive, or
    /// nowhere yet (a new server). Only a stopped server is corrected.
    pub fn restore_undone(&mut self, _now: Millis, server: ServerId, _out: &mut Outbox) {
        let s = &self.servers[server.0 as usize];
        let Residence::Sleeping { .. } = s.residence else { return };
        match s.before {
            Residence::Sleeping { node } => {
                self.set_residence(server, Residence::Sleeping { node });
                self.add_sleeper(node, server);
            }
            before @ (Residence::Archived | Residence::New) => self.set_residence(server, before),
            _ => {}
        }
    }

    /// The current placement of `server` has its world on its node now (the restore or
    /// copy is done): if the placement still fails, the world stays there.
    pub fn world_copied(&mut self, server: ServerId) {
        let s = &mut self.servers[server.0 as usize];
        if let Residence::Starting { node } = s.residence {
            s.before = Residence::Sleeping { node };
        }
    }

    /// The world of `server` was archived and its node copy removed (an archive the driver
    /// carried out after a restart of its own, say): a server still taken to sleep on a node
    /// is archived now.
    pub fn world_archived(&mut self, server: ServerId) {
        if let Residence::Sleeping { .. } = self.servers[server.0 as usize].residence {
            self.set_residence(server, Residence::Archived);
        }
    }
}
