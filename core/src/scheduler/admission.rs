//! Admission (SPEC §11 rules 2, 3, 5): placing a request where it fits, the start queue
//! in arrival order, reserving and releasing RAM, and stopping a server to sleep.

use super::*;

impl Scheduler {
    /// order, with its give-up timer.
    pub(super) fn enqueue(&mut self, now: Millis, server: ServerId, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        let Some(r) = s.request.as_mut() else { return };
        r.queued = true;
        let (seq, at) = (r.seq, r.at);
        let ram = s.spec.ram_mib;
        self.queued_mib += u64::from(ram);
        self.queue.entry(ram).or_default().insert(seq, server);
        self.queue_len += 1;
        out.notes.push(Note::Queued { server });
        if !self.jobs.is_empty() {
            self.reclaim_for(now, u64::from(ram), out);
        }
        out.commands.push(Command::Wake { at: at + self.config.give_up, timer: Timer::GiveUp { server, seq } });
    }

    pub(super) fn dequeue(&mut self, server: ServerId, seq: u64) {
        let ram = self.servers[server.0 as usize].spec.ram_mib;
        let Some(group) = self.queue.get_mut(&ram) else { return };
        if group.remove(&seq).is_some() {
            self.queued_mib -= u64::from(ram);
            self.queue_len -= 1;
            if group.is_empty() {
                self.queue.remove(&ram);
            }
        }
    }

    /// The largest free disk on a node that accepts servers.
    fn max_free_disk_mb(&self) -> u64 {
        self.ready.iter().map(|id| self.nodes[id.0 as usize].free_disk_mb()).max().unwrap_or(0)
    }

    /// The largest free RAM on a node that accepts servers.
    pub(super) fn max_free_mib(&self) -> u64 {
        self.ready.iter().map(|id| self.nodes[id.0 as usize].free_mib()).max().unwrap_or(0)
    }

    /// Rule 2: the node it sleeps on if that has room, else the strategy's choice.
    pub(super) fn try_place(&mut self, server: ServerId, out: &mut Outbox) -> bool {
        let s = &self.servers[server.0 as usize];
        let need = u64::from(s.spec.ram_mib);
        let residence = s.residence;
        let avoid = s.avoid;
        if let Residence::Sleeping { node } = residence {
            let n = &self.nodes[node.0 as usize];
            // Its world is there: no disk needed.
            if n.state == NodeState::Ready && n.free_mib() >= need && avoid != Some(node) {
                self.place(server, node, Restore::None, out);
                return true;
            }
        }
        // A staged copy is as good as a sleeping world on its node (boot only).
        let staged = self.staged_ready(server);
        if let Some(node) = staged {
            let n = &self.nodes[node.0 as usize];
            if n.state == NodeState::Ready && n.free_mib() >= need && avoid != Some(node) {
                self.drop_staged(server, false, out);
                self.place(server, node, Restore::Staged, out);
                return true;
            }
        }
        // A node whose last placement of this server failed is taken only if no other fits.
        let mut chosen = None;
        for skip in [avoid, None] {
            self.fill_candidates(server, skip);
            chosen = self.config.strategy.choose(&self.candidates, need, self.last_placed);
            if chosen.is_some() || avoid.is_none() {
                break;
            }
        }
        let Some(node) = chosen else {
            return false;
        };
        if residence == (Residence::Sleeping { node }) {
            self.place(server, node, Restore::None, out);
            return true;
        }
        if staged == Some(node) {
            self.drop_staged(server, false, out);
            self.place(server, node, Restore::Staged, out);
            return true;
        }
        // A copy elsewhere (or still in transit) is of no use now.
        self.drop_staged(server, true, out);
        let restore = match residence {
            Residence::New => Restore::None,
            Residence::Sleeping { node: from } => Restore::FromNode(from),
            Residence::Archived => Restore::FromArchive,
            Residence::Starting { .. } | Residence::Running { .. } => unreachable!("placing an active server"),
        };
        self.place(server, node, restore, out);
        true
    }

    /// The ready nodes (but `skip`) that could take `server`'s world, as placement
    /// candidates in node order.
    pub(super) fn fill_candidates(&mut self, server: ServerId, skip: Option<NodeId>) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        // Without a disk rule every node has room; with one, the node its world is on or one
        // with that much free disk (the server is looked up once, not per node).
        let need = self.disk_need(server);
        let room = |id: NodeId, n: &Node| need.is_none_or(|(home, mb)| home == Some(id) || n.free_disk_mb() >= mb);
        candidates.extend(
            self.ready
                .iter()
                .map(|&id| (id, &self.nodes[id.0 as usize]))
                .filter(|&(id, n)| Some(id) != skip && room(id, n))
                .map(|(id, n)| Candidate { id, kind: n.kind, free_mib: n.free_mib() }),
        );
        self.candidates = candidates;
    }

    pub(super) fn place(&mut self, server: ServerId, node: NodeId, restore: Restore, out: &mut Outbox) {
        let s = &mut self.servers[server.0 as usize];
        s.before = s.residence;
        let placement = self.reserve(server, node, Residence::Starting { node });
        self.last_placed = Some(node);
        out.commands.push(Command::Place { server, node, restore, placement });
        self.relieve(node, out);
    }

    /// Reserves `server`'s RAM on `node` under a new placement and moves it to `residence`.
    pub(super) fn reserve(&mut self, server: ServerId, node: NodeId, residence: Residence) -> PlacementId {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        self.next_placement += 1;
        let placement = PlacementId(self.next_placement);
        s.placement = placement;
        self.set_residence(server, residence);
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib += ram;
        n.active += 1;
        n.servers.push(server);
        self.reserved_mib += ram;
        placement
    }

    /// Frees the RAM `server` holds on `node`: it no longer starts or runs there.
    pub(super) fn release(&mut self, server: ServerId, node: NodeId) {
        let s = &mut self.servers[server.0 as usize];
        let ram = u64::from(s.spec.ram_mib);
        if let Some(from) = s.migrating_from.take() {
            self.nodes[from.0 as usize].outgoing -= 1;
        }
        let n = &mut self.nodes[node.0 as usize];
        n.reserved_mib -= ram;
        n.active -= 1;
        n.servers.retain(|&s| s != server);
        self.reserved_mib -= ram;
        let s = &mut self.servers[server.0 as usize];
        if let Some(ram) = s.pending_ram.take() {
            s.spec.ram_mib = ram;
        }
    }

    pub(super) fn stop(&mut self, now: Millis, server: ServerId, node: NodeId, out: &mut Outbox) {
        self.release(server, node);
        self.set_residence(server, Residence::Sleeping { node });
        let s = &mut self.servers[server.0 as usize];
        s.stops += 1;
        s.stopped_at = now;
        let epoch = s.stops;
        self.add_sleeper(node, server);
        let n = &self.nodes[node.0 as usize];
        out.commands.push(Command::Stop { server, node });
        if n.state == NodeState::Cordoned {
            // The node is going away: do not leave the world on it.
            self.set_residence(server, Residence::Archived);
            out.commands.push(Command::Archive { server, node });
        } else {
            out.commands
                .push(Command::Wake { at: now + self.config.sleep_window, timer: Timer::Archive { server, epoch } });
            // A node past its disk watermark lets its oldest sleepers go, this one included.
            self.relieve(node, out);
        }
        self.scan_queue(now, out);
    }

    /// Rule 3: one pass over the queue in arrival order, placing every request that fits.
    ///
    /// Placing only shrinks free RAM, so a request that does not fit at its turn cannot fit
    /// later in the same pass. The pass is therefore the same as repeatedly placing the
    /// earliest-arrived request whose RAM is at most the largest free RAM of any node — which
    /// visits only the heads of the RAM groups that can fit, not the whole queue.
    ///
    /// With a disk rule a request may not fit for want of disk while a later one of the same
    /// size does: the pass then walks each RAM group past such requests (`scan_merged`).
    pub(super) fn scan_queue(&mut self, _now: Millis, out: &mut Outbox) {
        #[cfg(test)]
        if self.naive_scan {
            let mut pass: Vec<(u64, ServerId)> =
                self.queue.values().flat_map(|g| g.iter().map(|(&seq, &server)| (seq, server))).collect();
            pass.sort_unstable();
            for (seq, server) in pass {
                if self.try_place(server, out) {
                    self.dequeue(server, seq);
                    if let Some(r) = self.servers[server.0 as usize].request.as_mut() {
                        r.queued = false;
                    }
                }
            }
            return self.after_scan(out);
        }
        if self.config.disk.is_some() {
            self.scan_merged(out);
        } else {
            self.scan_heads(out);
        }
        self.after_scan(out);
    }

    fn after_scan(&mut self, out: &mut Outbox) {
        if !self.job_queue.is_empty() {
            self.start_jobs(out);
        }
    }

    /// The literal pass in arrival order over the RAM groups that can fit: a merge of the
    /// groups' cursors, each advanced past the requests it tried. A group larger than the
    /// largest free RAM is left (placing only shrinks free RAM).
    fn scan_merged(&mut self, out: &mut Outbox) {
        use std::cmp::Reverse;
        let mut max_free = self.max_free_mib();
        let cap = u32::try_from(max_free).unwrap_or(u32::MAX);
        let mut heads: std::collections::BinaryHeap<Reverse<(u64, u32)>> = self
            .queue
            .range(..=cap)
            .filter_map(|(&ram, g)| g.first_key_value().map(|(&seq, _)| Reverse((seq, ram))))
            .collect();
        // A world larger than every ready node's free disk fits only where it already is:
        // such requests are passed over without trying every node.
        let mut max_disk = self.max_free_disk_mb();
        while let Some(Reverse((seq, ram))) = heads.pop() {
            if u64::from(ram) > max_free {
                continue;
            }
            let group = &self.queue[&ram];
            let server = group[&seq];
            let next = group.range(seq + 1..).next().map(|(&next, _)| next);
            let s = &self.servers[server.0 as usize];
            let at_home = matches!(s.residence, Residence::Sleeping { node } if self.nodes[node.0 as usize].state == NodeState::Ready);
            if (s.spec.disk_mb <= max_disk || at_home) && self.try_place(server, out) {
                self.dequeue(server, seq);
                if let Some(r) = self.servers[server.0 as usize].request.as_mut() {
                    r.queued = false;
                }
                max_free = self.max_free_mib();
                max_disk = self.max_free_disk_mb();
            }
            if let Some(next) = next {
                heads.push(Reverse((next, ram)));
            }
        }
    }

    /// The fast pass without a disk rule (see `scan_queue`).
    fn scan_heads(&mut self, out: &mut Outbox) {
        while self.queue_len > 0 {
            let max_free = u32::try_from(self.max_free_mib()).unwrap_or(u32::MAX);
            let head = self
                .queue
                .range(..=max_free)
                .filter_map(|(_, group)| group.first_key_value())
                .min_by_key(|(&seq, _)| seq)
                .map(|(&seq, &server)| (seq, server));
            let Some((seq, server)) = head else { break };
            let placed = self.try_place(server, out);
            debug_assert!(placed, "a request no larger than the largest free RAM fits");
            self.dequeue(server, seq);
            if let Some(r) = self.servers[server.0 as usize].request.as_mut() {
                r.queued = false;
            }
            if !placed {
                break;
            }
        }
    }
}
