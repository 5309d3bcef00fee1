//! Node disk as a capacity (SPEC §5): a world occupies the disk of the node it starts, runs
//! or sleeps on. With a [`DiskRule`] a world is placed or restored only onto a node with
//! room for it, and a node past its high watermark archives its sleepers early, oldest
//! stop first. Without one (the reference policy, SPEC §11) disk is counted but decides
//! nothing.
//!
//! A world is counted on one node at a time: the node of its residence. A copy in transit
//! (a restore from another node, a migration) counts on its target from the placement on.

use super::*;

/// The disk rule of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskRule {
    /// Sleepers are archived early while their node's worlds occupy more than this share
    /// (percent) of its usable disk. At most 100.
    pub high_watermark_pct: u8,
    /// At the end of the sleep window a sleeper stays on its node while the node is below
    /// the watermark (it is archived when the watermark is passed, or its node drains).
    /// Its owner's bill ends with the window either way (SPEC §8).
    pub keep_past_window: bool,
}

impl Default for DiskRule {
    fn default() -> Self {
        DiskRule { high_watermark_pct: 85, keep_past_window: false }
    }
}

/// The node a residence keeps a world on.
fn world_node(r: Residence) -> Option<NodeId> {
    match r {
        Residence::Starting { node } | Residence::Running { node } | Residence::Sleeping { node } => Some(node),
        Residence::New | Residence::Archived => None,
    }
}

impl Node {
    /// Disk its worlds do not occupy, MB.
    pub fn free_disk_mb(&self) -> u64 {
        self.disk_mb.saturating_sub(self.disk_used_mb)
    }

    fn over_watermark(&self, rule: &DiskRule) -> bool {
        u128::from(self.disk_used_mb) * 100 > u128::from(self.disk_mb) * u128::from(rule.high_watermark_pct)
    }
}

impl Scheduler {
    /// Moves `server` to residence `r`, moving its world's disk between nodes.
    pub(super) fn set_residence(&mut self, server: ServerId, r: Residence) {
        let s = &mut self.servers[server.0 as usize];
        let (from, to) = (world_node(s.residence), world_node(r));
        s.residence = r;
        if from != to {
            let mb = s.spec.disk_mb;
            if let Some(n) = from {
                let n = &mut self.nodes[n.0 as usize];
                n.disk_used_mb = n.disk_used_mb.saturating_sub(mb);
            }
            if let Some(n) = to {
                self.nodes[n.0 as usize].disk_used_mb += mb;
            }
        }
    }

    /// What placing `server` needs of a node's disk: nothing without a disk rule, else room
    /// for its world (MB) unless the node is the one it is on.
    pub(super) fn disk_need(&self, server: ServerId) -> Option<(Option<NodeId>, u64)> {
        self.config.disk?;
        let s = &self.servers[server.0 as usize];
        let home = world_node(s.residence).or(s.staged.filter(|st| st.ready).map(|st| st.node));
        Some((home, s.spec.disk_mb))
    }

    /// The world of `server` measures `disk_mb` now (the live controller measures it at
    /// every copy). Its node's disk follows; past the watermark, sleepers there are archived.
    pub fn set_world_mb(&mut self, server: ServerId, disk_mb: u64, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let old = std::mem::replace(&mut s.spec.disk_mb, disk_mb);
        if let Some(node) = world_node(s.residence) {
            let n = &mut self.nodes[node.0 as usize];
            n.disk_used_mb = (n.disk_used_mb + disk_mb).saturating_sub(old);
            self.relieve(node, out);
        }
    }

    /// Rule of the high watermark: while `node` is past it, archive its sleepers, oldest
    /// stop first (ties in the order they stopped). The list is in stop order, so this only
    /// looks at the sleepers it archives and the stale entries before them.
    pub(super) fn relieve(&mut self, node: NodeId, out: &mut Outbox) {
        let Some(rule) = self.config.disk else { return };
        if !self.nodes[node.0 as usize].over_watermark(&rule) {
            return;
        }
        // Staged copies go first: the archive has them, a sleeper would have to be archived.
        if self.drop_staged_on(node, true, out) && !self.nodes[node.0 as usize].over_watermark(&rule) {
            return;
        }
        let mut sleepers = std::mem::take(&mut self.nodes[node.0 as usize].sleepers);
        let mut seen = 0;
        while seen < sleepers.len() && self.nodes[node.0 as usize].over_watermark(&rule) {
            let (t, server) = sleepers[seen];
            seen += 1;
            if self.sleeps_on(node, server, t) {
                self.set_residence(server, Residence::Archived);
                out.commands.push(Command::Archive { server, node });
            }
        }
        sleepers.drain(..seen);
        self.nodes[node.0 as usize].sleepers = sleepers;
    }

    /// Whether the entry `(stopped_at, server)` of `node`'s sleepers is current.
    pub(super) fn sleeps_on(&self, node: NodeId, server: ServerId, stopped_at: Millis) -> bool {
        let s = &self.servers[server.0 as usize];
        s.residence == (Residence::Sleeping { node }) && s.stopped_at == stopped_at
    }

    /// `server` sleeps on `node` now (since its `stopped_at`): listed in stop order.
    pub(super) fn add_sleeper(&mut self, node: NodeId, server: ServerId) {
        let t = self.servers[server.0 as usize].stopped_at;
        let list = &mut self.nodes[node.0 as usize].sleepers;
        let at = list.partition_point(|&(u, _)| u <= t);
        list.insert(at, (t, server));
    }

    /// Whether a sleeper whose window ended stays on `node` (rule `keep_past_window`).
    pub(super) fn keeps_past_window(&self, node: NodeId) -> bool {
        match self.config.disk {
            Some(rule) if rule.keep_past_window => {
                let n = &self.nodes[node.0 as usize];
                n.state == NodeState::Ready && !n.over_watermark(&rule)
            }
            _ => false,
        }
    }
}
