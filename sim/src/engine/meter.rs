//! Metering: each server's phases (running, sleeping, archived) as integer usage, the
//! optional time series, and the window end's bill (SPEC §8, §11 rule 9).

use super::*;

impl Engine<'_> {
    /// Enters server `i` into `phase` (after [`Engine::close_phase`]), keeping the totals.
    pub(super) fn enter(&mut self, i: usize, phase: Phase) {
        match phase {
            Phase::Running(_) => {
                self.running.0 += 1;
                self.running.1 += u64::from(self.phase_ram[i]);
            }
            Phase::Sleeping(_) => {
                self.sleeping.0 += 1;
                self.sleeping.1 += self.dataset.servers[i].disk_mb;
            }
            _ => {}
        }
        self.phases[i] = phase;
    }

    /// Takes every due sample up to and including `until` (before events at that instant).
    pub(super) fn sample_until(&mut self, until: Millis) {
        while self.next_sample <= until && self.next_sample < self.window.1 {
            let t = self.next_sample;
            let row = self.sample(t);
            let series = self.series.as_mut().expect("sampling only with a series");
            series.push(t, row);
            self.next_sample = t + series.step;
        }
    }

    pub(super) fn sample(&self, t: Millis) -> [f64; crate::series::COLUMNS_LEN] {
        use conductor_core::scheduler::NodeState;
        const GIB: f64 = 1024.0;
        let (mut reserved, mut usable, mut servers_mib) = ([0u64; 2], [0u64; 2], 0u64);
        let mut provisioning = 0u64;
        for n in self.core.nodes() {
            let k = usize::from(n.kind == conductor_core::NodeKind::Cloud);
            match n.state {
                NodeState::Ready | NodeState::Cordoned => usable[k] += u64::from(n.usable_mib),
                NodeState::Provisioning => provisioning += 1,
                _ => {}
            }
            reserved[k] += n.reserved_mib + n.job_mib;
            servers_mib += n.reserved_mib;
        }
        let prices = &self.scenario.prices;
        let f = |d: Money| d.to_f64().unwrap_or(0.0);
        let monthly: Money = self.scenario.dedicated.iter().map(|d| d.monthly_eur).sum();
        let hourly = self.scenario.cloud.as_ref().map_or(0.0, |c| f(c.hourly_eur));
        let cost = f(monthly) / 720.0 + self.vms_existing as f64 * hourly;
        let revenue = self.running.1 as f64 / GIB * f(prices.active_per_gib_hour)
            + self.sleeping.1 as f64 / 1000.0 * f(prices.sleeping_per_gb_month) / 720.0;
        let (mut mean, mut p90, mut actual) = (f64::NAN, f64::NAN, f64::NAN);
        if let Some(fc) = &self.forecast {
            let k = (t - fc.start).div_euclid(fc.step.max(1));
            if k >= 0 && (k as usize) < fc.mean.len() {
                mean = fc.mean[k as usize] as f64 / GIB;
                p90 = fc.p90[k as usize] as f64 / GIB;
            }
            let step = ((t - self.window.0) / crate::forecasting::STEP) as usize;
            if let Some(&peak) = self.peaks.get(step) {
                actual = peak as f64 / GIB;
            }
        }
        [
            (servers_mib + self.core.queued_mib()) as f64 / GIB,
            reserved[0] as f64 / GIB,
            reserved[1] as f64 / GIB,
            usable[0] as f64 / GIB,
            usable[1] as f64 / GIB,
            self.vms_existing as f64,
            provisioning as f64,
            self.core.queue_len() as f64,
            self.running.0 as f64,
            self.sleeping.0 as f64,
            cost,
            revenue,
            mean,
            p90,
            actual,
        ]
    }

    /// Bills a job's run time (preempted jobs pay for the time they ran).
    pub(super) fn end_job(&mut self, j: usize, now: Millis) {
        let job = &mut self.jobs[j];
        if let (Some(started), false) = (job.started, job.ended) {
            self.job_mib_ms += u128::from(job.ram_mib) * (now - started) as u128;
        }
        job.ended = true;
    }

    pub(super) fn log_usage(&mut self, i: usize, running: bool, size: u64, from: Millis, to: Millis) {
        if let (Some(log), true) = (self.o.usage.as_mut(), to > from) {
            log.push(UsageSpan { server: ServerId(i as u32), running, size, from, to });
        }
    }

    /// Meters the phase server `i` is leaving at `now`.
    pub(super) fn close_phase(&mut self, i: usize, now: Millis) {
        let s = &self.dataset.servers[i];
        match self.phases[i] {
            Phase::Running(since) => {
                self.active_mib_ms[i] += u128::from(self.phase_ram[i]) * (now - since) as u128;
                let size = u64::from(self.phase_ram[i]);
                self.log_usage(i, true, size, since, now);
                self.running.0 -= 1;
                self.running.1 -= u64::from(self.phase_ram[i]);
            }
            Phase::Sleeping(since) => {
                // Billed from the stop until it is placed again or the sleep window ends
                // (SPEC §8): a world kept on disk past the window sleeps for free.
                let billed_to = now.min(since + self.scenario.scheduler.sleep_window);
                self.sleeping_mb_ms[i] += u128::from(s.disk_mb) * (billed_to - since) as u128;
                let size = s.disk_mb;
                self.log_usage(i, false, size, since, billed_to);
                self.sleeping.0 -= 1;
                self.sleeping.1 -= s.disk_mb;
            }
            Phase::Archived(since) => self.archived_mb_ms += u128::from(s.disk_mb) * (now - since) as u128,
            Phase::Idle | Phase::Starting => {}
        }
        self.phases[i] = Phase::Idle;
    }

    /// The window end: everything stops and is billed up to the end (SPEC §11 rule 9).
    pub(super) fn finish(mut self) -> Outcome {
        let (start, end) = self.window;
        for i in 0..self.phases.len() {
            self.close_phase(i, end);
            self.end_loss(i, end);
        }
        for j in 0..self.jobs.len() {
            self.end_job(j, end);
        }
        if let Some(stream) = &self.scenario.jobs {
            self.o.job_revenue = billing::rate(self.job_mib_ms, stream.price_per_gib_hour, MIB_MS_PER_GIB_HOUR);
        }
        let prices = &self.scenario.prices;
        for i in 0..self.phases.len() {
            self.o.active_revenue +=
                billing::rate(self.active_mib_ms[i], prices.active_per_gib_hour, MIB_MS_PER_GIB_HOUR);
            self.o.sleeping_revenue +=
                billing::rate(self.sleeping_mb_ms[i], prices.sleeping_per_gb_month, MB_MS_PER_GB_MONTH);
        }
        self.o.storage_cost = billing::rate(self.archived_mb_ms, prices.archive_per_tb_month, MB_MS_PER_TB_MONTH);
        // Rated once on the summed monthly prices: per-node rounding would drift.
        let monthly: Money = self.scenario.dedicated.iter().map(|d| d.monthly_eur).sum();
        self.o.dedicated_cost = billing::dedicated_cost(monthly, end - start);
        // A prepared snapshot is stored for the whole window (a cloud cost).
        self.o.snapshot_cost = billing::dedicated_cost(self.scenario.snapshot_monthly_eur, end - start);
        self.o.cloud_cost += self.o.snapshot_cost;
        // The control plane's own VM, for the whole window (no dedicated node hosts it).
        if let Some(cp) = &self.scenario.control_plane {
            self.o.control_plane_cost = billing::vm_cost(end - start, cp.hourly_eur, cp.monthly_cap_eur);
            self.o.cloud_cost += self.o.control_plane_cost;
        }
        if let Some(vm) = &self.scenario.cloud {
            for r in &self.vms {
                let life = r.deleted.unwrap_or(end) - r.created;
                self.o.cloud_cost += billing::vm_cost(life, vm.hourly_eur, vm.monthly_cap_eur);
                self.o.cloud_vm_hours_billed += billing::started_hours(life);
            }
        }
        let promoted = self.dataset.owner_signups().iter().filter(|&&t| t >= start && t < end).count() as u64;
        self.o.owners_promoted = promoted;
        self.o.promo_credit = prices.promo_credit * Money::from(promoted);
        self.o.series = self.series.take();
        self.o
    }
}
