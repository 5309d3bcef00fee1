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
        if back {
            self.make_ready(now, node, out);
        }
    }

    /// Rule of SPEC §7: restart the node's servers elsewhere from their latest archive.
    pub(super) fn declare_dead(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        out.notes.push(Note::NodeDead { node });
        let mut restart = Vec::new();
        for i in 0..self.servers.len() {
            let server = ServerId(i as u32);
            let s = &mut self.servers[i];
            let was_active = match s.residence {
                Residence::Starting { node: n } | Residence::Running { node: n } if n == node => true,
                Residence::Sleeping { node: n } if n == node => false,
                _ => continue,
            };
            s.residence = Residence::Archived;
            out.notes.push(Note::Failed { server, was_active });
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
        let n = &mut self.nodes[node.0 as usize];
        debug_assert_eq!(n.active, 0);
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
}
