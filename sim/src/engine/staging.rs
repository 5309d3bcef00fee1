//! The twin's side of staged worlds (SPEC §6): it remembers when each server was asked to
//! start (only what happened before now), scores servers with the forecaster's wake
//! predictor every `every`, and hands the scores to the core, which decides what to stage.

use super::*;
use conductor_config::WakeStaging;

/// Start requests seen so far, and the scoring cadence.
pub(super) struct Wake {
    pub cfg: WakeStaging,
    /// Per server, its request times (sorted: requests arrive in time order).
    starts: Vec<Vec<Millis>>,
    /// Every request in time order, to find the servers with a hit in a past window.
    log: Vec<(Millis, ServerId)>,
    candidates: Vec<ServerId>,
}

impl Wake {
    pub fn new(cfg: WakeStaging, servers: usize) -> Wake {
        Wake { cfg, starts: vec![Vec::new(); servers], log: Vec::new(), candidates: Vec::new() }
    }

    pub fn record(&mut self, now: Millis, server: ServerId) {
        self.starts[server.0 as usize].push(now);
        self.log.push((now, server));
    }

    /// Scores at `now` the archived servers without a staged copy or a request that started
    /// in one of the windows the predictor looks at (the others' score is their base-rate
    /// share alone, below any useful threshold), in parts per million.
    pub fn scores(&mut self, now: Millis, tz: chrono_tz::Tz, core: &Scheduler) -> Vec<(ServerId, u32)> {
        let m = &self.cfg.model;
        let origins = m.origins(now, tz);
        self.candidates.clear();
        let wanted = |s: ServerId| {
            core.residence(s) == conductor_core::Residence::Archived
                && core.requested_at(s).is_none()
                && core.staged(s).is_none()
        };
        for &from in &origins.back {
            let i = self.log.partition_point(|&(t, _)| t < from);
            let j = self.log.partition_point(|&(t, _)| t < from + m.horizon);
            // Only archived servers are staged: the others are left out before the sort.
            self.candidates.extend(self.log[i..j].iter().map(|&(_, s)| s).filter(|&s| wanted(s)));
        }
        self.candidates.sort_unstable();
        self.candidates.dedup();
        self.candidates
            .iter()
            .map(|&s| (s, (m.probability_at(&self.starts[s.0 as usize], &origins) * 1e6).round() as u32))
            .collect()
    }
}

impl Engine<'_> {
    /// A scoring round: scores, the core's staging decisions, the next round.
    pub(super) fn score_wakes(&mut self, now: Millis) {
        let Some(wake) = self.wake.as_mut() else { return };
        let scores = wake.scores(now, self.dataset.meta.timezone, &self.core);
        let every = wake.cfg.every;
        self.core.set_wake_scores(now, &scores, &mut self.out);
        self.push(now + every, class::SCORE, None, Kind::Score);
    }

    /// The copy of an archived world takes as long as its restore would.
    pub(super) fn restore_ms(&self, i: usize) -> Millis {
        let mb = self.dataset.servers[i].disk_mb;
        (mb * 1000).div_ceil(u64::from(self.scenario.lifecycle.restore_mb_per_s)) as Millis
    }
}
