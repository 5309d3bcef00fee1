//! Preemptible jobs live (SPEC §5): submitted through the API, placed by the core on idle
//! dedicated capacity, run as containers (`conductor-j<id>`), told with SIGTERM when a paying
//! server needs the room and killed when their notice runs out (or at their own
//! `max_duration_s`), and billed to their owner per GiB-hour of run time at the job's price.
//! The store's `jobs` table is the record; open jobs are adopted at start-up.

use super::*;
use crate::store::{EntryKind, Job, JobState, NewEntry, NewJob};
use conductor_core::scheduler::JobId;
use conductor_core::Command;

/// What owners may run as jobs, and at what price.
#[derive(Clone, Debug)]
pub struct JobsSetup {
    /// Images an owner may submit (an admin may submit any).
    pub images: Vec<String>,
    /// The price an owner's job is billed at (an admin may set another).
    pub price_per_gib_hour: crate::store::Money,
    /// The longest `max_duration_s` a job may ask for.
    pub max_duration: Millis,
}

impl Default for JobsSetup {
    fn default() -> Self {
        JobsSetup {
            images: Vec::new(),
            price_per_gib_hour: crate::store::Money::new(1, 2),
            max_duration: 24 * conductor_core::time::HOUR,
        }
    }
}

/// The open jobs: the core's id of each, and its row.
#[derive(Default)]
pub(super) struct OpenJobs {
    pub(super) by_store: BTreeMap<i64, (JobId, Job)>,
    /// Store id of each core job (index = `JobId`).
    pub(super) store_ids: Vec<i64>,
}

impl OpenJobs {
    fn store_id(&self, job: JobId) -> Option<i64> {
        self.store_ids.get(job.0 as usize).copied()
    }
}

impl<S: Store> Live<S> {
    pub fn jobs_setup(&self) -> &JobsSetup {
        &self.cfg.jobs
    }

    /// A new job: queued in the core (it starts when idle dedicated capacity fits it and no
    /// paying request waits).
    pub async fn submit_job(&mut self, now: Millis, new: NewJob) -> Result<Job, LiveError> {
        let biggest = self
            .core
            .nodes()
            .iter()
            .filter(|n| n.kind == conductor_core::NodeKind::Dedicated)
            .map(|n| n.usable_mib)
            .max()
            .unwrap_or(0);
        if new.ram_mib > biggest {
            return Err(LiveError::Invalid {
                code: "job_too_large",
                message: format!("ram_mib {}: no dedicated node has more than {biggest} MiB", new.ram_mib),
            });
        }
        let job = self.store.create_job(new, now).await?;
        let id = self.core.submit_job(now, job.ram_mib, &mut self.out);
        self.adopted_job(id, job.clone());
        let data = json!({ "job": job.id, "owner": job.owner, "ram_mib": job.ram_mib, "image": job.image });
        self.event(now, JOB_SUBMITTED, None, None, data).await?;
        self.apply(now).await?;
        Ok(self.job_row(job.id).unwrap_or(job))
    }

    fn adopted_job(&mut self, id: JobId, job: Job) {
        let j = &mut self.jobs;
        if j.store_ids.len() <= id.0 as usize {
            j.store_ids.resize(id.0 as usize + 1, -1);
        }
        j.store_ids[id.0 as usize] = job.id;
        j.by_store.insert(job.id, (id, job));
    }

    /// An open job's row as the engine has it.
    pub fn job_row(&self, store_id: i64) -> Option<Job> {
        self.jobs.by_store.get(&store_id).map(|(_, j)| j.clone())
    }

    /// Cancels a job: a queued one leaves the queue, a running one is killed; it is billed
    /// for the time it ran.
    pub async fn cancel_job(&mut self, now: Millis, store_id: i64, by: &str) -> Result<Job, LiveError> {
        let Some((id, job)) = self.jobs.by_store.get(&store_id).cloned() else {
            return Err(LiveError::Conflict { code: "job_ended", message: format!("job {store_id} is not open") });
        };
        self.core.job_done(now, id, &mut self.out);
        if let (Some(node), JobState::Running | JobState::Noticed) = (job.node, job.state) {
            self.enqueue(now, Action::RemoveJob { job: store_id, node }, None).await?;
        }
        let ended = self.end_job(now, store_id, JobState::Cancelled, format!("cancelled by {by}")).await?;
        self.apply(now).await?;
        Ok(ended)
    }

    /// A job command of the core, as an intent (and the job's row).
    pub(super) async fn job_command(&mut self, now: Millis, command: Command) -> Result<Option<Action>, LiveError> {
        let (job, node) = match command {
            Command::StartJob { job, node } | Command::NoticeJob { job, node, .. } | Command::KillJob { job, node } => {
                (job, node)
            }
            _ => return Ok(None),
        };
        let (Some(store_id), Some(store_node)) = (self.jobs.store_id(job), self.store_node(node)) else {
            return Ok(None);
        };
        match command {
            Command::StartJob { .. } => {
                self.update_job(store_id, |j| {
                    (j.state, j.node, j.started_at) = (JobState::Running, Some(store_node), Some(now));
                })
                .await?;
                let data = json!({ "job": store_id });
                self.event(now, JOB_STARTED, None, Some(store_node), data).await?;
                Ok(Some(Action::RunJob { job: store_id, node: store_node }))
            }
            Command::NoticeJob { kill_at, .. } => {
                self.update_job(store_id, |j| (j.state, j.kill_at) = (JobState::Noticed, Some(kill_at))).await?;
                let data = json!({ "job": store_id, "kill_at": kill_at });
                self.event(now, JOB_NOTICED, None, Some(store_node), data).await?;
                Ok(Some(Action::SignalJob { job: store_id, node: store_node }))
            }
            _ => {
                // Killed when its notice runs out, or at once when its node was declared dead.
                let noticed = self.job_row(store_id).is_some_and(|j| j.state == JobState::Noticed);
                let why = if noticed { "its notice ran out" } else { "its node was declared dead" };
                self.end_job(now, store_id, JobState::Killed, why.into()).await?;
                Ok(Some(Action::RemoveJob { job: store_id, node: store_node }))
            }
        }
    }

    async fn update_job(&mut self, store_id: i64, f: impl FnOnce(&mut Job)) -> Result<(), LiveError> {
        if let Some((_, job)) = self.jobs.by_store.get_mut(&store_id) {
            f(job);
            let job = job.clone();
            self.store.update_job(&job).await?;
        }
        Ok(())
    }

    /// A job is over: recorded, and billed to its owner for the time it ran (once: the
    /// ledger key is the job's).
    pub(super) async fn end_job(
        &mut self,
        now: Millis,
        store_id: i64,
        state: JobState,
        outcome: String,
    ) -> Result<Job, LiveError> {
        let Some((_, mut job)) = self.jobs.by_store.remove(&store_id) else {
            return self.store.job(store_id).await.map_err(LiveError::from);
        };
        (job.state, job.ended_at, job.outcome) = (state, Some(now), Some(outcome.clone()));
        self.store.update_job(&job).await?;
        let ran = job.started_at.map_or(0, |t| (now - t).max(0));
        let quantity = u128::from(job.ram_mib) * ran as u128;
        let charge = conductor_core::billing::rate(quantity, job.price_per_gib_hour, 1024 * 3_600_000);
        if charge > crate::store::Money::ZERO {
            self.store
                .post(NewEntry {
                    owner: job.owner,
                    kind: EntryKind::Charge,
                    amount: -charge,
                    key: format!("job:{}", job.id),
                    at: now,
                    server: None,
                    window_start: None,
                    data: json!({ "job": job.id, "ram_mib": job.ram_mib, "run_ms": ran, "price_per_gib_hour": job.price_per_gib_hour }),
                })
                .await?;
        }
        let data = json!({
            "job": job.id,
            "state": state,
            "outcome": outcome,
            "run_ms": ran,
            "charge": charge.to_string(),
        });
        self.event(now, JOB_ENDED, None, job.node, data).await?;
        Ok(job)
    }

    /// Open jobs on `node` whose container should be there (their run is carried out).
    pub(super) fn jobs_on(&self, store_node: i64) -> Vec<i64> {
        self.jobs
            .by_store
            .values()
            .filter(|(_, j)| j.node == Some(store_node) && matches!(j.state, JobState::Running | JobState::Noticed))
            .filter(|(_, j)| {
                !self.intents.items.values().any(|p| p.action == Action::RunJob { job: j.id, node: store_node })
            })
            .map(|(_, j)| j.id)
            .collect()
    }

    /// What the node showed of its jobs: ended by themselves, vanished, or past their own
    /// longest run — the core is told they are done.
    pub(super) async fn jobs_seen(
        &mut self,
        now: Millis,
        store_node: i64,
        seen: &HashMap<i64, Result<Option<crate::driver::JobStatus>, crate::driver::DriverError>>,
    ) -> Result<(), LiveError> {
        for (&store_id, status) in seen {
            let Some((id, job)) = self.jobs.by_store.get(&store_id).cloned() else { continue };
            let ended = match status {
                Ok(Some(st)) if !st.running => {
                    let code = st.exit_code.unwrap_or(-1);
                    let after_notice = if job.state == JobState::Noticed { " after its notice" } else { "" };
                    Some((JobState::Done, format!("exit {code}{after_notice}")))
                }
                Ok(None) => Some((JobState::Failed, "its container vanished".to_owned())),
                Ok(Some(_)) if job.started_at.is_some_and(|t| now - t >= job.max_duration_s as Millis * 1000) => {
                    Some((JobState::Killed, format!("ran its max_duration_s ({} s)", job.max_duration_s)))
                }
                _ => None,
            };
            if let Some((state, outcome)) = ended {
                self.core.job_done(now, id, &mut self.out);
                self.enqueue(now, Action::RemoveJob { job: store_id, node: store_node }, None).await?;
                self.end_job(now, store_id, state, outcome).await?;
            }
        }
        Ok(())
    }

    /// A job's container could not be run (failed for good): it is over.
    pub(super) async fn job_failed(&mut self, now: Millis, store_id: i64, error: String) -> Result<(), LiveError> {
        if let Some((id, _)) = self.jobs.by_store.get(&store_id).cloned() {
            self.core.job_done(now, id, &mut self.out);
            self.end_job(now, store_id, JobState::Failed, error).await?;
        }
        Ok(())
    }

    /// At start-up: the open jobs, in submission order.
    pub(super) async fn adopt_jobs(&mut self, store_node_to_core: &HashMap<i64, NodeId>) -> Result<(), LiveError> {
        for job in self.store.jobs(None).await? {
            if job.state.ended() {
                continue;
            }
            let on = job.node.and_then(|n| store_node_to_core.get(&n).copied());
            let on = match job.state {
                JobState::Queued => None,
                _ => match on {
                    Some(n) => Some(n),
                    // Its node is gone: nothing of it runs any more.
                    None => {
                        let mut job = job;
                        (job.state, job.outcome) = (JobState::Failed, Some("its node is gone".into()));
                        self.store.update_job(&job).await?;
                        continue;
                    }
                },
            };
            let kill_at = if job.state == JobState::Noticed { job.kill_at } else { None };
            let id = self.core.adopt_job(job.ram_mib, on, kill_at, &mut self.out);
            self.adopted_job(id, job);
        }
        Ok(())
    }
}
