//! Failures injected into a twin run (`[failures]`): nodes that stop answering and come back,
//! servers that crash while running, starts that fail. The twin only makes them happen; what
//! follows is the core's decision, the same one the live engine gets.

use super::*;

impl Engine<'_> {
    pub(super) fn is_down(&self, node: NodeId) -> bool {
        self.down.get(node.0 as usize).copied().unwrap_or(false)
    }

    pub(super) fn end_loss(&mut self, i: usize, now: Millis) {
        if let Some(since) = self.lost_since[i].take() {
            self.o.lost_play_ms += (now - since).max(0) as u64;
        }
    }

    /// Injected failures: the scenario's events, and seeded random failures of dedicated
    /// nodes (exponential times between failures at the configured rate).
    pub(super) fn schedule_failures(&mut self, seed: u64) {
        let f = &self.scenario.failures;
        for &(target, at) in &f.events {
            self.push(at, class::NODE_READY, None, Kind::Fail(target));
        }
        if f.random_per_node_month > 0.0 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(3);
            let per_ms = f.random_per_node_month / conductor_core::time::MONTH as f64;
            let gap = rand_distr::Exp::new(per_ms).expect("positive rate");
            for i in 0..self.scenario.dedicated.len() as u32 {
                let mut t = self.window.0;
                loop {
                    t += gap.sample(&mut rng).ceil() as Millis;
                    if t >= self.window.1 {
                        break;
                    }
                    self.push(t, class::NODE_READY, None, Kind::Fail(crate::scenario::FailureTarget::Dedicated(i)));
                    t += f.repair;
                }
            }
        }
    }

    /// A node stops answering: its servers stop playing (and being billed) now; the core
    /// declares it dead after its silence limit and restarts them elsewhere.
    pub(super) fn fail(&mut self, now: Millis, target: crate::scenario::FailureTarget) {
        use conductor_core::scheduler::NodeState;
        let node = match target {
            crate::scenario::FailureTarget::Dedicated(i) => Some(NodeId(i)),
            crate::scenario::FailureTarget::OldestVm => self
                .core
                .nodes()
                .iter()
                .position(|n| {
                    n.kind == conductor_core::NodeKind::Cloud
                        && matches!(n.state, NodeState::Ready | NodeState::Cordoned | NodeState::Provisioning)
                })
                .map(|i| NodeId(i as u32)),
        };
        let Some(node) = node.filter(|&n| !self.is_down(n)) else { return };
        if matches!(self.core.node(node).state, NodeState::Dead | NodeState::Deleted) {
            return;
        }
        self.o.failures += 1;
        if self.down.len() <= node.0 as usize {
            self.down.resize(node.0 as usize + 1, false);
        }
        self.down[node.0 as usize] = true;
        for i in 0..self.phases.len() {
            let on_node = match self.core.residence(ServerId(i as u32)) {
                conductor_core::Residence::Starting { node: n } | conductor_core::Residence::Running { node: n } => {
                    n == node
                }
                _ => false,
            };
            if on_node {
                self.close_phase(i, now);
                self.lost_since[i] = Some(now);
            }
        }
        self.core.node_unreachable(now, node, &mut self.out);
        if matches!(target, crate::scenario::FailureTarget::Dedicated(_)) {
            self.push(now + self.scenario.failures.repair, class::NODE_READY, None, Kind::Repair(node));
        }
    }

    /// A failed dedicated node is back.
    pub(super) fn repair(&mut self, now: Millis, node: NodeId) {
        if let Some(d) = self.down.get_mut(node.0 as usize) {
            *d = false;
        }
        self.core.node_reachable(now, node, &mut self.out);
        // Back before it was declared dead: its servers kept their place and play on.
        for i in 0..self.phases.len() {
            if self.lost_since[i].is_some()
                && self.core.residence(ServerId(i as u32)) == (conductor_core::Residence::Running { node })
            {
                self.end_loss(i, now);
                self.enter(i, Phase::Running(now));
            }
        }
    }

    /// A running server's next crash, if `[failures]` injects crashes: exponential times at
    /// `crashes_per_server_day` (memoryless, so drawn afresh at every start).
    pub(super) fn schedule_crash(&mut self, now: Millis, server: ServerId) {
        let rate = self.scenario.failures.crashes_per_server_day;
        if rate <= 0.0 {
            return;
        }
        let gap = rand_distr::Exp::new(rate / conductor_core::time::DAY as f64).expect("positive rate");
        let at = now + gap.sample(&mut self.crash_rng).ceil() as Millis;
        if at < self.window.1 {
            self.push(at, class::BOOT, None, Kind::Crash(server, self.core.placement(server)));
        }
    }

    /// The server's container exits: its run ends (and its billing) now; the core decides a
    /// restart or, in a crash loop, a stop. Players wait until it runs again.
    pub(super) fn crash(&mut self, now: Millis, server: ServerId, placement: PlacementId) {
        let i = server.0 as usize;
        let running = match self.core.residence(server) {
            conductor_core::Residence::Running { node } => !self.is_down(node),
            _ => false,
        };
        if !running || self.core.placement(server) != placement {
            return;
        }
        self.close_phase(i, now);
        self.core.crashed(now, server, placement, &mut self.out);
        self.apply(now);
        // Restarted (placed again or queued): its players lose the time until it runs.
        if self.core.requested_at(server).is_some()
            || matches!(self.core.residence(server), conductor_core::Residence::Starting { .. })
        {
            self.lost_since[i] = Some(now);
        }
    }
}
