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

    /// Whether `node` has room for the world of `server` (always, without a disk rule, or
    /// when the world is already there).
    pub(super) fn disk_room(&self, node: NodeId, server: ServerId) -> bool {
        if self.config.disk.is_none() {
            return true;
        }
        let s = &self.servers[server.0 as usize];
        world_node(s.residence) == Some(node) || self.nodes[node.0 as usize].free_disk_mb() >= s.spec.disk_mb
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
    /// stop first (ties in server order).
    pub(super) fn relieve(&mut self, node: NodeId, out: &mut Outbox) {
        let Some(rule) = self.config.disk else { return };
        if !self.nodes[node.0 as usize].over_watermark(&rule) {
            return;
        }
        let mut sleepers = std::mem::take(&mut self.nodes[node.0 as usize].sleepers);
        sleepers.sort_unstable();
        sleepers.dedup();
        sleepers.retain(|&s| self.servers[s.0 as usize].residence == (Residence::Sleeping { node }));
        let mut oldest = sleepers.clone();
        oldest.sort_by_key(|&s| (self.servers[s.0 as usize].stopped_at, s));
        let mut archived = 0;
        for &server in &oldest {
            if !self.nodes[node.0 as usize].over_watermark(&rule) {
                break;
            }
            self.set_residence(server, Residence::Archived);
            out.commands.push(Command::Archive { server, node });
            archived += 1;
        }
        if archived > 0 {
            sleepers.retain(|&s| self.servers[s.0 as usize].residence == (Residence::Sleeping { node }));
        }
        self.nodes[node.0 as usize].sleepers = sleepers;
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
