//! Staged worlds (SPEC §6): a copy of an archived world put onto a node ahead of a predicted
//! start, so that the start is boot only. The archive stays the copy of record; a staged copy
//! occupies its node's disk, is dropped when it is not used within `keep`, when its node
//! needs the disk (before any sleeper is archived early) or leaves the placement order, and
//! dies with its node.
//!
//! The driver scores servers (the forecaster's wake predictor) and hands the scores in with
//! [`Scheduler::set_wake_scores`]; the core decides what to copy where, within a count, a
//! disk and a bandwidth budget. The copy takes restore time: the driver reports it done with
//! [`Scheduler::world_staged`]; a start before then restores from the archive as usual.

use super::*;

/// The staging rule of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StagingRule {
    /// At most this many staged copies at once.
    pub budget: u32,
    /// Servers scored below this many parts per million are not staged.
    pub min_ppm: u32,
    /// A copy not used this long after it was staged is dropped.
    pub keep: Millis,
    /// At most this many MB are staged within any hour (the restore bandwidth staging may
    /// take from the archive).
    pub mb_per_hour: u64,
}

/// A staged copy of an archived server's world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Staged {
    pub node: NodeId,
    /// When the copy was ordered.
    pub at: Millis,
    /// The copy is complete (reported by the driver).
    pub ready: bool,
}

/// Staging's own state: copies in order of staging, and the recent copies' sizes (for the
/// bandwidth budget).
#[derive(Clone, Debug, Default)]
pub(super) struct StagingState {
    order: std::collections::VecDeque<(Millis, ServerId)>,
    count: u32,
    recent: std::collections::VecDeque<(Millis, u64)>,
}

impl Scheduler {
    /// The wake scores of the servers the driver scored now (server, parts per million of
    /// starting within the predictor's horizon). Drops copies kept too long, then stages the
    /// top-scored archived servers that have none, within the rule's budgets; without a
    /// staging rule it does nothing.
    pub fn set_wake_scores(&mut self, now: Millis, scores: &[(ServerId, u32)], out: &mut Outbox) {
        let Some(rule) = self.config.staging else { return };
        while let Some(&(at, server)) = self.staging.order.front() {
            if at + rule.keep > now {
                break;
            }
            self.staging.order.pop_front();
            if self.servers[server.0 as usize].staged.is_some_and(|s| s.at == at) {
                self.drop_staged(server, true, out);
            }
        }
        while self.staging.recent.front().is_some_and(|&(t, _)| t + HOUR <= now) {
            self.staging.recent.pop_front();
        }
        let mut used: u64 = self.staging.recent.iter().map(|&(_, mb)| mb).sum();
        let mut ranked: Vec<(ServerId, u32)> = scores.iter().copied().filter(|&(_, p)| p >= rule.min_ppm).collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        if ranked.is_empty() {
            return;
        }
        // Staging moves no RAM: the nodes' order is the same for every copy of this round.
        let mut order: Vec<(bool, std::cmp::Reverse<u64>, NodeId)> = self
            .ready
            .iter()
            .map(|&id| (id, &self.nodes[id.0 as usize]))
            .filter(|&(_, n)| !n.drained)
            .map(|(id, n)| (n.kind != NodeKind::Dedicated, std::cmp::Reverse(n.free_mib()), id))
            .collect();
        order.sort_unstable();
        for (server, _) in ranked {
            if self.staging.count >= rule.budget {
                break;
            }
            let s = &self.servers[server.0 as usize];
            if s.residence != Residence::Archived || s.request.is_some() || s.staged.is_some() {
                continue;
            }
            let mb = s.spec.disk_mb;
            if used + mb > rule.mb_per_hour {
                continue;
            }
            // No room for this one: the fleet is full this round (checking every lower score
            // against every node again would cost more than it could find).
            let Some(node) = self.stage_target(now, server, &order, out) else { break };
            used += mb;
            self.staging.recent.push_back((now, mb));
            self.staging.order.push_back((now, server));
            self.staging.count += 1;
            self.servers[server.0 as usize].staged = Some(Staged { node, at: now, ready: false });
            let n = &mut self.nodes[node.0 as usize];
            n.disk_used_mb += mb;
            n.staged.push(server);
            out.commands.push(Command::Stage { server, node });
        }
    }

    /// Where a copy of `server`'s world goes: a ready node (not drained) that stays below the
    /// disk watermark with it, dedicated before cloud (they stay), then the most free RAM
    /// (where a start is likeliest to fit); ties in node order. A node kept full by sleepers
    /// past their window (`keep_past_window`: hot by courtesy, free to their owners) makes
    /// room by archiving the oldest of them: a predicted start is worth more.
    fn stage_target(
        &mut self,
        now: Millis,
        server: ServerId,
        order: &[(bool, std::cmp::Reverse<u64>, NodeId)],
        out: &mut Outbox,
    ) -> Option<NodeId> {
        let s = &self.servers[server.0 as usize];
        let (mb, ram) = (s.spec.disk_mb, u64::from(s.spec.ram_mib));
        let limit = |n: &Node| match self.config.disk {
            Some(rule) => u128::from(n.disk_mb) * u128::from(rule.high_watermark_pct) / 100,
            None => u128::MAX,
        };
        let fits = |id: NodeId| u64::from(self.nodes[id.0 as usize].usable_mib) >= ram;
        if let Some(&(_, _, id)) = order.iter().find(|&&(_, _, id)| {
            fits(id) && u128::from(self.nodes[id.0 as usize].disk_used_mb + mb) <= limit(&self.nodes[id.0 as usize])
        }) {
            return Some(id);
        }
        for &(_, _, id) in order.iter().filter(|&&(_, _, id)| fits(id)) {
            let n = &self.nodes[id.0 as usize];
            let over = (u128::from(n.disk_used_mb + mb)).saturating_sub(limit(n));
            if self.past_window_mb(now, id, over) >= over {
                self.archive_past_window(now, id, over, out);
                return Some(id);
            }
        }
        None
    }

    /// Disk (MB, counted up to `enough`) of the sleepers on `node` past their window.
    fn past_window_mb(&self, now: Millis, node: NodeId, enough: u128) -> u128 {
        let window = self.config.sleep_window;
        let mut sum = 0u128;
        for &(t, server) in &self.nodes[node.0 as usize].sleepers {
            if sum >= enough || t + window > now {
                break;
            }
            if self.sleeps_on(node, server, t) {
                sum += u128::from(self.servers[server.0 as usize].spec.disk_mb);
            }
        }
        sum
    }

    /// Archives the oldest sleepers past their window on `node` until `mb` are freed.
    fn archive_past_window(&mut self, now: Millis, node: NodeId, mb: u128, out: &mut Outbox) {
        let window = self.config.sleep_window;
        let mut sleepers = std::mem::take(&mut self.nodes[node.0 as usize].sleepers);
        let (mut freed, mut seen) = (0u128, 0);
        while seen < sleepers.len() && freed < mb {
            let (t, server) = sleepers[seen];
            if t + window > now {
                break;
            }
            seen += 1;
            if self.sleeps_on(node, server, t) {
                freed += u128::from(self.servers[server.0 as usize].spec.disk_mb);
                self.set_residence(server, Residence::Archived);
                out.commands.push(Command::Archive { server, node });
            }
        }
        sleepers.drain(..seen);
        self.nodes[node.0 as usize].sleepers = sleepers;
    }

    /// The copy of `server`'s world on `node` ordered at `at` is complete.
    pub fn world_staged(&mut self, server: ServerId, node: NodeId, at: Millis) {
        if let Some(s) = self.servers[server.0 as usize].staged.as_mut() {
            if s.node == node && s.at == at {
                s.ready = true;
            }
        }
    }

    /// The staged copy of `server`: its node, when it was ordered, and whether it is complete.
    pub fn staged(&self, server: ServerId) -> Option<(NodeId, Millis, bool)> {
        self.servers[server.0 as usize].staged.map(|s| (s.node, s.at, s.ready))
    }

    /// Staged copies now (ordered or complete).
    pub fn staged_count(&self) -> u32 {
        self.staging.count
    }

    /// Forgets the staged copy of `server`, freeing its disk; `unstage` orders its deletion
    /// (not needed when the copy became the server's world, or its node is gone).
    pub(super) fn drop_staged(&mut self, server: ServerId, unstage: bool, out: &mut Outbox) {
        let Some(st) = self.servers[server.0 as usize].staged.take() else { return };
        let mb = self.servers[server.0 as usize].spec.disk_mb;
        let n = &mut self.nodes[st.node.0 as usize];
        n.disk_used_mb = n.disk_used_mb.saturating_sub(mb);
        n.staged.retain(|&s| s != server);
        self.staging.count -= 1;
        if unstage {
            out.commands.push(Command::Unstage { server, node: st.node });
        }
    }

    /// Drops every staged copy on `node` (it needs the disk, leaves the placement order, or
    /// is gone: then `unstage` is false). Returns whether there was any.
    pub(super) fn drop_staged_on(&mut self, node: NodeId, unstage: bool, out: &mut Outbox) -> bool {
        let staged = std::mem::take(&mut self.nodes[node.0 as usize].staged);
        for &server in &staged {
            self.drop_staged(server, unstage, out);
        }
        !staged.is_empty()
    }

    /// The complete staged copy of `server`, if any: the node it is on.
    pub(super) fn staged_ready(&self, server: ServerId) -> Option<NodeId> {
        self.servers[server.0 as usize].staged.filter(|s| s.ready).map(|s| s.node)
    }
}
