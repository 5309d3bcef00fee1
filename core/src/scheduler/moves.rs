//! Moving running servers: consolidation (bin-packing onto fewer VMs, with owner consent)
//! and plan changes, both carried out by `migrate`.

use super::*;

impl Scheduler {
    /// The owner changes `server`'s plan to `ram_mib` (SPEC: RAM upgrades during play). A
    /// running server restarts in place if its node has room, else moves to a node with
    /// room (players wait meanwhile; it counts like a migration). If no node has room it
    /// keeps running on its old plan and the new one applies at its next start; a server
    /// that is not running simply starts on the new plan next time.
    pub fn change_plan(&mut self, now: Millis, server: ServerId, ram_mib: u32, out: &mut Outbox) {
        let s = &self.servers[server.0 as usize];
        let old = s.spec.ram_mib;
        if old == ram_mib {
            return;
        }
        if let Some(r) = s.request.filter(|r| r.queued) {
            // Re-file the queued request under its new size, keeping its place in line.
            self.dequeue(server, r.seq);
            self.servers[server.0 as usize].spec.ram_mib = ram_mib;
            self.queued_mib += u64::from(ram_mib);
            self.queue.entry(ram_mib).or_default().insert(r.seq, server);
            self.queue_len += 1;
            return;
        }
        let Residence::Running { node } = s.residence else {
            if matches!(s.residence, Residence::Starting { .. }) {
                self.servers[server.0 as usize].pending_ram = Some(ram_mib);
            } else {
                self.servers[server.0 as usize].spec.ram_mib = ram_mib;
            }
            return;
        };
        let (old, new) = (u64::from(old), u64::from(ram_mib));
        let n = &self.nodes[node.0 as usize];
        let target = if n.free_mib() + old >= new {
            Some(node)
        } else {
            self.fill_candidates(server, Some(node));
            self.config.strategy.choose(&self.candidates, new, self.last_placed)
        };
        let Some(to) = target else {
            self.servers[server.0 as usize].pending_ram = Some(ram_mib);
            return;
        };
        // Re-plan where it is, then restart it there or move it (migrate() carries the new
        // reservation along).
        let s = &mut self.servers[server.0 as usize];
        s.spec.ram_mib = ram_mib;
        s.pending_ram = None;
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib = n.reserved_mib + new - old;
        self.reserved_mib = self.reserved_mib + new - old;
        self.migrate(now, server, node, to, out);
    }

    pub(super) fn movable(&self, s: &Server, now: Millis, p: &ConsolidationParams) -> Movable {
        if !matches!(s.residence, Residence::Running { .. }) || s.migrating_from.is_some() {
            return Movable::No;
        }
        if !s.players_known {
            return Movable::No;
        }
        if s.players == 0 {
            return Movable::Yes;
        }
        match s.spec.cost_mode {
            CostMode::Off => Movable::No,
            CostMode::Suggest => match (s.consent, s.asked) {
                (Consent::Accepted, _) => Movable::Yes,
                (_, true) => Movable::No,
                _ => Movable::NeedsAcceptance,
            },
            CostMode::Auto => {
                if s.last_migrated.is_some_and(|t| now - t < p.auto_once_per) {
                    return Movable::No;
                }
                match s.consent {
                    Consent::Announced { at } if now - at >= p.announce => Movable::Yes,
                    Consent::Announced { .. } => Movable::No,
                    _ => Movable::NeedsAnnouncement,
                }
            }
        }
    }

    /// One consolidation decision (see `consolidation`): migrate, or ask owners first.
    pub(super) fn consolidate(&mut self, now: Millis, p: &ConsolidationParams, out: &mut Outbox) {
        while self.migrations.front().is_some_and(|&(t, _)| now - t >= HOUR) {
            self.migrations.pop_front();
        }
        let budget = p.max_migrations_per_hour.saturating_sub(self.migrations.len() as u32);
        let hourly = self.config.vm_type.as_ref().map_or(rust_decimal::Decimal::ZERO, |v| v.hourly_eur);
        let mut nodes: Vec<PlanNode> = self
            .ready
            .iter()
            .map(|&id| {
                let n = &self.nodes[id.0 as usize];
                PlanNode {
                    id,
                    is_cloud: n.kind == NodeKind::Cloud,
                    accepts: true,
                    free_mib: n.free_mib(),
                    free_disk_mb: if self.config.disk.is_some() { n.free_disk_mb() } else { u64::MAX },
                    hourly: if n.kind == NodeKind::Cloud { hourly } else { rust_decimal::Decimal::ZERO },
                    servers: Vec::new(),
                }
            })
            .collect();
        for pn in nodes.iter_mut() {
            for &server in &self.nodes[pn.id.0 as usize].servers {
                let s = &self.servers[server.0 as usize];
                pn.servers.push((server, u64::from(s.spec.ram_mib), self.movable(s, now, p), s.spec.disk_mb));
            }
        }
        match crate::consolidation::plan(&nodes, p, budget) {
            Outcome::Nothing => {}
            Outcome::Ask { announce, recommend, saving_per_hour, .. } => {
                for server in announce {
                    self.servers[server.0 as usize].consent = Consent::Announced { at: now };
                    out.notes.push(Note::Announced { server, moves_at: now + p.announce });
                }
                for server in recommend {
                    self.servers[server.0 as usize].asked = true;
                    out.notes.push(Note::Recommended { server, saving_per_hour });
                }
            }
            Outcome::Migrate(plan) => {
                for &(server, to) in &plan.moves {
                    self.migrate(now, server, plan.vm, to, out);
                }
                self.cordon(plan.vm, out);
                out.notes.push(Note::Scaled {
                    action: ScaleAction::Cordon { node: plan.vm },
                    policy: "consolidation",
                    seen: self.utilisation(true),
                    reason: format!("{} migrations save {} EUR/h", plan.moves.len(), plan.saving_per_hour),
                });
            }
        }
    }

    pub(super) fn migrate(&mut self, now: Millis, server: ServerId, from: NodeId, to: NodeId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        self.next_placement += 1;
        let placement = PlacementId(self.next_placement);
        s.placement = placement;
        s.migrating_from = Some(from);
        s.last_migrated = Some(now);
        s.consent = Consent::None;
        s.asked = false;
        self.set_residence(server, Residence::Starting { node: to });
        let f = &mut self.nodes[from.0 as usize];
        f.reserved_mib -= ram;
        f.active -= 1;
        f.outgoing += 1;
        f.servers.retain(|&s| s != server);
        let t = &mut self.nodes[to.0 as usize];
        t.reserved_mib += ram;
        t.active += 1;
        t.servers.push(server);
        self.migrations.push_back((now, server));
        out.commands.push(Command::Migrate { server, from, to, placement });
        out.notes.push(Note::Migrated { server, from, to });
    }
}
