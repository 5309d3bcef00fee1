//! Start-up of a live controller: what it finds running, starting, stopped or provisioning
//! is adopted into the decision state without being decided again.

use super::*;

impl Scheduler {
    /// Start-up of a live controller: a cloud VM that already exists (found by label),
    /// ready or still provisioning. Returns its node.
    pub fn adopt_vm(&mut self, ready: bool, created_at: Millis) -> Option<NodeId> {
        let node = self.new_vm(created_at)?;
        if ready {
            // As `node_ready` does, without scanning the queue: adoption is not an event.
            let n = &mut self.nodes[node.0 as usize];
            n.state = NodeState::Ready;
            self.provisioning -= 1;
            self.usable_provisioning_mib -= u64::from(n.usable_mib);
            self.usable_ready_mib += u64::from(n.usable_mib);
            let at = self.ready.partition_point(|&id| id < node);
            self.ready.insert(at, node);
        }
        Some(node)
    }

    /// Start-up of a live controller: a preemptible job as the store has it — queued (in
    /// arrival order), running on `node`, or given notice there with its kill at `kill_at`
    /// (the timer is commanded again). Returns its id; ended jobs are not adopted.
    pub fn adopt_job(&mut self, ram_mib: u32, on: Option<NodeId>, kill_at: Option<Millis>, out: &mut Outbox) -> JobId {
        let job = JobId(self.jobs.len() as u32);
        let ram = u64::from(ram_mib);
        let state = match (on, kill_at) {
            (None, _) => {
                self.job_queue.push_back(job);
                JobState::Queued
            }
            (Some(node), None) => {
                self.nodes[node.0 as usize].job_mib += ram;
                JobState::Running { node }
            }
            (Some(node), Some(at)) => {
                let n = &mut self.nodes[node.0 as usize];
                n.job_mib += ram;
                n.noticed_mib += ram;
                out.commands.push(Command::Wake { at, timer: Timer::JobKill { job } });
                JobState::Noticed { node, kill_at: at }
            }
        };
        self.jobs.push(Job { ram_mib: ram, state });
        job
    }

    /// Start-up of a live controller: a ready VM that was being emptied (drained or
    /// consolidated) stays so — it takes no new server and goes once empty. Its sleepers'
    /// archives were decided when it was cordoned.
    pub fn adopt_cordon(&mut self, node: NodeId) {
        let n = &mut self.nodes[node.0 as usize];
        if n.state != NodeState::Ready {
            return;
        }
        n.state = NodeState::Cordoned;
        self.usable_ready_mib -= u64::from(n.usable_mib);
        self.ready.retain(|&id| id != node);
        let at = self.draining.partition_point(|&id| id < node);
        self.draining.insert(at, node);
    }

    /// Start-up of a live controller: a server found running (or starting) on `node`.
    /// Returns the placement its boot completion must carry.
    /// Its players are unknown until the first count (`set_players`): it is not moved before.
    pub fn adopt_running(&mut self, server: ServerId, node: NodeId, booted: bool) -> PlacementId {
        let residence = if booted { Residence::Running { node } } else { Residence::Starting { node } };
        self.servers[server.0 as usize].players_known = false;
        self.reserve(server, node, residence)
    }

    /// Start-up of a live controller: `server` started a move at `at` (from the event log;
    /// oldest first), so that neither the hourly disruption budget nor an `auto` owner's
    /// once-per rule starts afresh at a restart.
    pub fn adopt_migrated(&mut self, server: ServerId, at: Millis, now: Millis) {
        let s = &mut self.servers[server.0 as usize];
        s.last_migrated = Some(s.last_migrated.map_or(at, |t| t.max(at)));
        if now - at < HOUR {
            self.migrations.push_back((at, server));
        }
    }

    /// Start-up of a live controller: a server that was starting on `node` when the
    /// previous run ended, for a start requested at `requested_at`; `before` is where its
    /// world was before this placement (where it returns if the placement fails). The
    /// request is placed again or given up by the usual rules.
    pub fn adopt_starting(
        &mut self,
        server: ServerId,
        node: NodeId,
        requested_at: Millis,
        before: Residence,
    ) -> PlacementId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let s = &mut self.servers[server.0 as usize];
        s.request = Some(Request { seq, at: requested_at, queued: false });
        s.before = before;
        self.reserve(server, node, Residence::Starting { node })
    }

    /// Start-up of a live controller: a move of `server` from `from` to `to` not yet done
    /// (`from == to`: a restart in place), as `migrate` left it: no start request, its old
    /// node counted busy until it runs (or the move fails and it goes back there).
    pub fn adopt_migration(&mut self, server: ServerId, from: NodeId, to: NodeId) -> PlacementId {
        let s = &mut self.servers[server.0 as usize];
        s.request = None;
        s.before = Residence::Running { node: from };
        s.migrating_from = Some(from);
        self.nodes[from.0 as usize].outgoing += 1;
        self.reserve(server, to, Residence::Starting { node: to })
    }

    /// Start-up of a live controller: a server whose world sleeps on `node` since
    /// `stopped_at` (its archive timer is asked for), or lies in the archive.
    pub fn adopt_stopped(&mut self, server: ServerId, node: Option<NodeId>, stopped_at: Millis, out: &mut Outbox) {
        match node {
            Some(node) => {
                self.set_residence(server, Residence::Sleeping { node });
                let s = &mut self.servers[server.0 as usize];
                s.stops += 1;
                s.stopped_at = stopped_at;
                let epoch = s.stops;
                self.add_sleeper(node, server);
                let at = stopped_at + self.config.sleep_window;
                out.commands.push(Command::Wake { at, timer: Timer::Archive { server, epoch } });
            }
            None => self.set_residence(server, Residence::Archived),
        }
    }
}
