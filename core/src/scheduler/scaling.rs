//! The scaling tick (composed policies: largest scale-up, unanimous scale-in) and the VM
//! life cycle it drives: create, ready, cordon (drain), uncordon, delete.

use super::*;

impl Scheduler {
    /// A scaling tick: every policy proposes; scale-up takes the largest request, scale-in
    /// needs every policy to agree and one to want it (with only the reactive policy this is
    /// SPEC §11 rule 7).
    pub(super) fn scaling_tick(&mut self, now: Millis, out: &mut Outbox) {
        let policies = std::mem::take(&mut self.config.scaling.policies);
        // Draining VMs that are empty go (at the end of their paid hour with that rule).
        let empty: Vec<NodeId> = self
            .cordoned()
            .filter(|id| {
                let n = &self.nodes[id.0 as usize];
                n.active == 0 && n.outgoing == 0 && self.may_delete_now(n.created_at, now)
            })
            .collect();
        for node in empty {
            let seen = self.utilisation(true);
            self.delete_vm(node, out);
            self.scaling.last_action = Some(now);
            let reason = "drained: no starting or running servers left".to_owned();
            out.notes.push(Note::Scaled { action: ScaleAction::Delete { node }, policy: "drain", seen, reason });
        }
        let idle_vms = self
            .ready
            .iter()
            .filter(|id| {
                let n = &self.nodes[id.0 as usize];
                n.kind == NodeKind::Cloud && n.active == 0
            })
            .count() as u32;
        let view = View {
            now,
            reserved_mib: self.reserved_mib,
            queued_mib: self.queued_mib,
            usable_ready_mib: self.usable_ready_mib,
            usable_provisioning_mib: self.usable_provisioning_mib,
            provisioning: self.provisioning,
            cloud_vms: self.cloud_vms,
            max_vms: self.config.scaling.max_vms,
            idle_vms,
            vm_usable_mib: self.config.vm_type.as_ref().map_or(0, |v| u64::from(v.usable_mib())),
            last_action: self.scaling.last_action,
            forecast: self.scaling.forecast.as_ref(),
        };
        let mut proposals = std::mem::take(&mut self.scaling.proposals);
        proposals.clear();
        for (policy, state) in policies.iter().zip(self.scaling.policies.iter_mut()) {
            proposals.push(policy.propose(&view, state));
        }
        let seen = self.utilisation(true);
        for (policy, p) in policies.iter().zip(&proposals) {
            if p.would_add > 0 {
                out.notes.push(Note::Shadow { policy: policy.name(), add: p.would_add, reason: p.reason.clone() });
            }
        }
        // Scale up: the largest request (the first policy on ties).
        let up =
            proposals.iter().enumerate().filter(|(_, p)| p.add > 0).fold(None, |best: Option<(usize, u32)>, (i, p)| {
                match best {
                    Some((_, add)) if add >= p.add => best,
                    _ => Some((i, p.add)),
                }
            });
        if let Some((i, add)) = up {
            // A draining VM is already paid for and ready: take it back before creating.
            let mut add = add;
            while add > 0 {
                let Some(node) = self.cordoned().last() else { break };
                self.uncordon(now, node, out);
                self.scaling.last_action = Some(now);
                out.notes.push(Note::Scaled {
                    action: ScaleAction::Uncordon { node },
                    policy: policies[i].name(),
                    seen,
                    reason: proposals[i].reason.clone(),
                });
                add -= 1;
            }
            let room = self.config.scaling.max_vms.saturating_sub(self.cloud_vms);
            for _ in 0..add.min(room) {
                if let Some(node) = self.create_vm(now, out) {
                    self.scaling.last_action = Some(now);
                    out.notes.push(Note::Scaled {
                        action: ScaleAction::Create { node },
                        policy: policies[i].name(),
                        seen,
                        reason: proposals[i].reason.clone(),
                    });
                }
            }
        } else if !proposals.is_empty() && proposals.iter().all(|p| p.agrees_in) {
            if let Some(i) = proposals.iter().position(|p| p.wants_in) {
                let action = if let Some(node) = self.scale_in_victim(now) {
                    self.delete_vm(node, out);
                    Some(ScaleAction::Delete { node })
                } else if self.config.scaling.drain && self.cordoned().next().is_none() {
                    // No idle VM: drain the coldest one (least RAM in use; the newest on ties).
                    let coldest = self
                        .ready
                        .iter()
                        .rev()
                        .copied()
                        .filter(|id| self.nodes[id.0 as usize].kind == NodeKind::Cloud)
                        .min_by_key(|id| self.nodes[id.0 as usize].reserved_mib);
                    coldest.map(|node| {
                        self.cordon(node, out);
                        ScaleAction::Cordon { node }
                    })
                } else {
                    None
                };
                if let Some(action) = action {
                    self.scaling.last_action = Some(now);
                    // A scale-in ends every low spell (SPEC §11: a deletion clears `low_since`).
                    self.scaling.policies.iter_mut().for_each(|s| s.low_since = None);
                    out.notes.push(Note::Scaled {
                        action,
                        policy: policies[i].name(),
                        seen,
                        reason: proposals[i].reason.clone(),
                    });
                }
            }
        }
        self.scaling.proposals = proposals;
        self.config.scaling.policies = policies;
        if let Some(params) = self.config.scaling.consolidation.clone() {
            if self.last_consolidation.is_none_or(|t| now - t >= params.every) {
                self.last_consolidation = Some(now);
                self.consolidate(now, &params, out);
            }
        }
    }

    /// The idle ready VM to delete, if any may go now.
    pub(super) fn scale_in_victim(&self, now: Millis) -> Option<NodeId> {
        let idle = self.ready.iter().rev().copied().filter(|&id| {
            let n = &self.nodes[id.0 as usize];
            n.kind == NodeKind::Cloud && n.active == 0
        });
        match self.config.scaling.scale_in {
            ScaleIn::Newest => idle.into_iter().next(),
            ScaleIn::BillingHour { margin } => idle
                .map(|id| (to_next_hour(self.nodes[id.0 as usize].created_at, now), id))
                .filter(|&(left, _)| left <= margin)
                .min_by_key(|&(left, _)| left)
                .map(|(_, id)| id),
        }
    }

    pub(super) fn create_vm(&mut self, now: Millis, out: &mut Outbox) -> Option<NodeId> {
        let node = self.new_vm(now)?;
        let vm_type = self.nodes[node.0 as usize].type_name.clone();
        out.commands.push(Command::CreateVm { node, vm_type });
        Some(node)
    }

    /// A provisioning VM node of the configured type.
    pub(super) fn new_vm(&mut self, now: Millis) -> Option<NodeId> {
        let vm = self.config.vm_type.as_ref()?;
        let node = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node::new(
            NodeKind::Cloud,
            &vm.name,
            vm.ram_mib,
            vm.usable_mib(),
            vm.usable_disk_mb(),
            NodeState::Provisioning,
            now,
        ));
        self.provisioning += 1;
        self.usable_provisioning_mib += u64::from(vm.usable_mib());
        self.cloud_vms += 1;
        Some(node)
    }

    /// Deletes an idle ready VM; its sleeping servers are archived first.
    pub(super) fn delete_vm(&mut self, node: NodeId, out: &mut Outbox) {
        self.archive_sleepers(node, out);
        let n = &mut self.nodes[node.0 as usize];
        debug_assert_eq!(n.active, 0);
        if n.state == NodeState::Ready {
            self.usable_ready_mib -= u64::from(n.usable_mib);
        }
        n.state = NodeState::Deleted;
        self.cloud_vms -= 1;
        self.draining.retain(|&id| id != node);
        self.ready.retain(|&id| id != node);
        out.commands.push(Command::DeleteVm { node });
    }

    /// `node` takes servers again: back into the placement order (node order), its RAM
    /// usable, and the queue scanned (SPEC §11 rule 3).
    pub(super) fn make_ready(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        let n = &mut self.nodes[node.0 as usize];
        n.state = NodeState::Ready;
        self.usable_ready_mib += u64::from(n.usable_mib);
        let at = self.ready.partition_point(|&id| id < node);
        self.ready.insert(at, node);
        self.scan_queue(now, out);
    }

    /// Starts draining `node`: it leaves the placement order and its sleepers are archived.
    pub(super) fn cordon(&mut self, node: NodeId, out: &mut Outbox) {
        self.archive_sleepers(node, out);
        let n = &mut self.nodes[node.0 as usize];
        n.state = NodeState::Cordoned;
        self.usable_ready_mib -= u64::from(n.usable_mib);
        self.ready.retain(|&id| id != node);
        let at = self.draining.partition_point(|&id| id < node);
        self.draining.insert(at, node);
    }

    /// Archives every server asleep on `node` (in server order) and drops its staged copies.
    pub(super) fn archive_sleepers(&mut self, node: NodeId, out: &mut Outbox) {
        self.drop_staged_on(node, true, out);
        let taken = std::mem::take(&mut self.nodes[node.0 as usize].sleepers);
        let mut sleepers: Vec<ServerId> =
            taken.into_iter().filter(|&(t, s)| self.sleeps_on(node, s, t)).map(|(_, s)| s).collect();
        sleepers.sort_unstable();
        sleepers.dedup();
        for server in sleepers {
            if self.servers[server.0 as usize].residence == (Residence::Sleeping { node }) {
                self.set_residence(server, Residence::Archived);
                out.commands.push(Command::Archive { server, node });
            }
        }
    }

    pub(super) fn uncordon(&mut self, now: Millis, node: NodeId, out: &mut Outbox) {
        self.draining.retain(|&id| id != node);
        self.make_ready(now, node, out);
    }

    pub(super) fn cordoned(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.draining.iter().copied()
    }

    /// Whether deleting a VM created at `created` is allowed now by the billing-hour rule.
    pub(super) fn may_delete_now(&self, created: Millis, now: Millis) -> bool {
        match self.config.scaling.scale_in {
            ScaleIn::Newest => true,
            ScaleIn::BillingHour { margin } => to_next_hour(created, now) <= margin,
        }
    }
}
