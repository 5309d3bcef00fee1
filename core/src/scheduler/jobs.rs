//! Preemptible jobs: low-priority work on idle dedicated capacity that yields, after its
//! notice, to paying servers.

use super::*;

impl Scheduler {
    /// A preemptible job of `ram_mib` arrives; it starts on idle dedicated capacity when no
    /// paying request waits, else it queues.
    pub fn submit_job(&mut self, _now: Millis, ram_mib: u32, out: &mut Outbox) -> JobId {
        let job = JobId(self.jobs.len() as u32);
        self.jobs.push(Job { ram_mib: u64::from(ram_mib), state: JobState::Queued });
        self.job_queue.push_back(job);
        self.start_jobs(out);
        job
    }

    /// `job` finished (or its driver gave up on it).
    pub fn job_done(&mut self, now: Millis, job: JobId, out: &mut Outbox) {
        match self.jobs[job.0 as usize].state {
            JobState::Running { node } | JobState::Noticed { node, .. } => {
                self.end_job(job, node);
                self.scan_queue(now, out);
            }
            JobState::Queued => {
                self.jobs[job.0 as usize].state = JobState::Ended;
                self.job_queue.retain(|&j| j != job);
            }
            JobState::Ended => {}
        }
    }

    pub(super) fn end_job(&mut self, job: JobId, node: NodeId) {
        let j = &mut self.jobs[job.0 as usize];
        let n = &mut self.nodes[node.0 as usize];
        n.job_mib -= j.ram_mib;
        if matches!(j.state, JobState::Noticed { .. }) {
            n.noticed_mib -= j.ram_mib;
        }
        j.state = JobState::Ended;
    }

    /// Queued jobs take idle dedicated capacity (best fit), in arrival order, but only
    /// while no paying request waits.
    pub(super) fn start_jobs(&mut self, out: &mut Outbox) {
        while self.queue_len == 0 {
            let Some(&job) = self.job_queue.front() else { return };
            let ram = self.jobs[job.0 as usize].ram_mib;
            let node = self
                .ready
                .iter()
                .copied()
                .filter(|id| {
                    let n = &self.nodes[id.0 as usize];
                    n.kind == NodeKind::Dedicated && n.free_mib() >= ram
                })
                .min_by_key(|id| self.nodes[id.0 as usize].free_mib());
            let Some(node) = node else { return };
            self.job_queue.pop_front();
            self.nodes[node.0 as usize].job_mib += ram;
            self.jobs[job.0 as usize].state = JobState::Running { node };
            out.commands.push(Command::StartJob { job, node });
        }
    }

    /// A paying request of `need` MiB could not be placed: if a dedicated node would fit it
    /// once its jobs are gone, give them notice (largest first) until it will.
    pub(super) fn reclaim_for(&mut self, now: Millis, need: u64, out: &mut Outbox) {
        let node = self.ready.iter().copied().find(|id| {
            let n = &self.nodes[id.0 as usize];
            n.kind == NodeKind::Dedicated && n.free_mib() + n.job_mib >= need
        });
        let Some(node) = node else { return };
        let n = &self.nodes[node.0 as usize];
        if n.free_mib() + n.noticed_mib >= need {
            return; // already coming free
        }
        let mut running: Vec<JobId> = (0..self.jobs.len() as u32)
            .map(JobId)
            .filter(|j| self.jobs[j.0 as usize].state == (JobState::Running { node }))
            .collect();
        running.sort_by_key(|j| std::cmp::Reverse(self.jobs[j.0 as usize].ram_mib));
        for job in running {
            let n = &self.nodes[node.0 as usize];
            if n.free_mib() + n.noticed_mib >= need {
                break;
            }
            let ram = self.jobs[job.0 as usize].ram_mib;
            let kill_at = now + self.config.job_notice;
            self.jobs[job.0 as usize].state = JobState::Noticed { node, kill_at };
            self.nodes[node.0 as usize].noticed_mib += ram;
            out.commands.push(Command::NoticeJob { job, node, kill_at });
            out.commands.push(Command::Wake { at: kill_at, timer: Timer::JobKill { job } });
        }
    }
}
