//! Dedicated nodes that join and leave while the scheduler runs (the live controller's
//! admin API; the twin's fleet is fixed, so it never calls these). A drained node takes no
//! new server, its sleepers are archived and every server that stops there is archived at
//! once; it is removable once nothing lives on it.

use super::*;

/// Why a node cannot be removed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetireError {
    /// Not a drained dedicated node.
    NotDrained,
    /// Servers start, run, sleep or are being copied away there.
    NotEmpty { servers: u32 },
}

impl Scheduler {
    /// A new dedicated node, ready now: queued requests that fit are placed on it.
    pub fn add_dedicated(&mut self, now: Millis, t: &DedicatedType, out: &mut Outbox) -> NodeId {
        let node = NodeId(self.nodes.len() as u32);
        let (ram, usable, disk) = (t.ram_mib, t.usable_mib(), t.usable_disk_mb());
        self.nodes.push(Node::new(NodeKind::Dedicated, &t.name, ram, usable, disk, NodeState::Ready, now));
        self.make_ready(now, node, out);
        node
    }

    /// Drains a dedicated node: out of the placement order, its sleepers archived. Running
    /// servers keep running until they stop (then they are archived, not left there).
    pub fn drain(&mut self, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        if n.kind != NodeKind::Dedicated || n.drained {
            return;
        }
        n.drained = true;
        // A silent or dead node stays so; it comes back drained (`node_reachable`).
        if n.state == NodeState::Ready {
            self.archive_sleepers(node, out);
            let n = &mut self.nodes[node.0 as usize];
            n.state = NodeState::Cordoned;
            self.usable_ready_mib -= u64::from(n.usable_mib);
            self.ready.retain(|&id| id != node);
        }
    }

    /// Takes a drained node back into service.
    pub fn undrain(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        if !n.drained {
            return;
        }
        n.drained = false;
        if n.state == NodeState::Cordoned {
            self.make_ready(now, node, out);
        }
    }

    /// Removes a drained dedicated node on which nothing lives any more.
    pub fn retire(&mut self, node: NodeId) -> Result<(), RetireError> {
        let n = &self.nodes[node.0 as usize];
        if n.kind != NodeKind::Dedicated || !n.drained {
            return Err(RetireError::NotDrained);
        }
        let here = |r: &Residence| matches!(r, Residence::Starting { node: x } | Residence::Running { node: x } | Residence::Sleeping { node: x } if *x == node);
        let living = self.servers.iter().filter(|s| here(&s.residence)).count() as u32;
        if living > 0 || n.outgoing > 0 || n.job_mib > 0 {
            return Err(RetireError::NotEmpty { servers: living.max(n.outgoing) });
        }
        let n = &mut self.nodes[node.0 as usize];
        if n.state == NodeState::Ready {
            self.usable_ready_mib -= u64::from(n.usable_mib);
        }
        n.state = NodeState::Deleted;
        self.ready.retain(|&id| id != node);
        Ok(())
    }
}
