//! Carrying out intents (phase 2 of a step, no engine access): the calls of one node run one
//! after the other, nodes in parallel, each under a deadline. World copies (archives,
//! restores, copies between nodes) run in the *slow lane*: spawned with a limit per node and
//! in total, so that a copy of many gigabytes never holds up the loop — heartbeats, crash
//! detection and other nodes' intents go on; a copy's outcome reaches the engine in the
//! first step that finishes after it (within the same step when it is done within
//! `data_wait`).

use super::{observe, LiveConfig};
use crate::archive::{self, Archive, ArchiveRef};
use crate::cloud::{NewVm, Vm};
use crate::docker::{ContainerSpec, Helper};
use crate::driver::{CloudDriver, DriverError, NodeDriver};
use futures_util::future::join_all;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a placement's world comes from.
pub(super) enum Source {
    Here,
    Archive(ArchiveRef),
    Node(Arc<dyn NodeDriver>),
}

/// One driver call sequence of an intent, with everything it needs (no engine access).
pub(super) enum Call {
    Place {
        node: Arc<dyn NodeDriver>,
        spec: ContainerSpec,
        source: Source,
    },
    /// `console`: the template's stop command, sent first (the container then exits by itself).
    Stop {
        node: Arc<dyn NodeDriver>,
        server: i64,
        console: Option<(crate::driver::ConsoleVia, String)>,
    },
    Archive {
        node: Arc<dyn NodeDriver>,
        server: i64,
        key: String,
    },
    Remove {
        node: Arc<dyn NodeDriver>,
        server: i64,
        volume: bool,
    },
    CreateVm {
        cloud: Arc<dyn CloudDriver>,
        new: NewVm,
    },
    DeleteVm {
        cloud: Arc<dyn CloudDriver>,
        id: Option<i64>,
        name: String,
        selector: String,
    },
    Backup {
        node: Arc<dyn NodeDriver>,
        server: i64,
        key: String,
    },
    Say {
        node: Arc<dyn NodeDriver>,
        server: i64,
        via: crate::driver::ConsoleVia,
        text: String,
    },
    RunJob {
        node: Arc<dyn NodeDriver>,
        spec: crate::driver::JobSpec,
    },
    SignalJob {
        node: Arc<dyn NodeDriver>,
        job: i64,
    },
    RemoveJob {
        node: Arc<dyn NodeDriver>,
        job: i64,
    },
    RestoreBackup {
        node: Arc<dyn NodeDriver>,
        spec: ContainerSpec,
        backup: ArchiveRef,
    },
    DropObject {
        key: String,
    },
}

pub(super) struct Job {
    pub(super) local: u64,
    /// Calls of one group run one after the other (one node's, or the cloud's).
    pub(super) group: String,
    pub(super) call: Result<Call, Verdict>,
}

/// Why an intent needs no call (or cannot have one).
#[derive(Clone, Debug)]
pub(super) enum Verdict {
    Unnecessary(String),
    Failed(DriverError),
}

pub(super) enum Output {
    Unit,
    Archived(ArchiveRef),
    Vm(Vm),
}

/// What a step looks at and carries out, detached from the engine (phase 2 of a step).
pub struct Work {
    pub(super) jobs: Vec<Job>,
    pub(super) looks: Vec<observe::Look>,
    pub(super) cloud: Option<(Arc<dyn CloudDriver>, String)>,
    /// List the archive store (its garbage collection).
    pub(super) objects: bool,
    ctx: Ctx,
    lane: Lane,
    log_lines: usize,
}

/// What a call needs besides its own arguments (cloned into slow-lane tasks).
#[derive(Clone)]
struct Ctx {
    archive: Arc<Archive>,
    helper: Helper,
    stop_timeout: Duration,
    call_timeout: Duration,
    data_timeout: Duration,
}

/// An intent's outcome, by its local sequence number.
type Outcome = (u64, Result<Output, Verdict>);

/// World copies under way, and the outcomes of those finished but not yet taken.
#[derive(Clone)]
pub(super) struct Lane {
    total: Arc<tokio::sync::Semaphore>,
    per_node: Arc<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    finished: Arc<Mutex<Vec<Outcome>>>,
    /// How long a step waits for the copies it started (small worlds finish within it).
    wait: Duration,
}

impl Lane {
    pub(super) fn new(total: usize, wait: Duration) -> Lane {
        Lane {
            total: Arc::new(tokio::sync::Semaphore::new(total.max(1))),
            per_node: Arc::default(),
            finished: Arc::default(),
            wait,
        }
    }

    fn node(&self, engine: &str) -> Arc<tokio::sync::Semaphore> {
        self.per_node
            .lock()
            .unwrap()
            .entry(engine.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1)))
            .clone()
    }
}

/// What the work found and did.
pub struct Done {
    pub(super) outcomes: Vec<(u64, Result<Output, Verdict>)>,
    pub(super) seen: Vec<observe::Seen>,
    pub(super) cloud: Option<Result<Vec<Vm>, DriverError>>,
    /// The archive store's objects (name, bytes), when this step listed them.
    pub(super) objects: Option<Result<Vec<(String, u64)>, DriverError>>,
}

/// `fut` under a deadline: a call that does not answer in time failed transiently.
pub(super) async fn timed<T>(
    deadline: Duration,
    fut: impl std::future::Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(DriverError::transient(format!("no answer within {deadline:?}"))),
    }
}

impl Work {
    pub(super) fn empty(cfg: &LiveConfig, lane: &Lane) -> Work {
        Work {
            jobs: Vec::new(),
            looks: Vec::new(),
            cloud: None,
            objects: false,
            ctx: Ctx {
                archive: cfg.archive.clone(),
                helper: cfg.helper.clone(),
                stop_timeout: cfg.stop_timeout,
                call_timeout: cfg.healing.call_timeout,
                data_timeout: cfg.healing.data_timeout,
            },
            lane: lane.clone(),
            log_lines: cfg.healing.log_lines,
        }
    }

    /// Looks first (what exists before this step's actions), then the intents' calls:
    /// one group (a node, the cloud) at a time each, groups in parallel; world copies go to
    /// the slow lane. The outcomes: this step's calls and every copy finished by now.
    pub async fn run(self) -> Done {
        let t = self.ctx.call_timeout;
        let looks = join_all(self.looks.iter().map(|l| l.run(t, self.log_lines)));
        let cloud = async {
            match &self.cloud {
                Some((c, selector)) => Some(timed(t, c.list(selector)).await),
                None => None,
            }
        };
        let objects = async {
            match self.objects {
                true => Some(
                    timed(self.ctx.data_timeout, async { self.ctx.archive.list().await.map_err(DriverError::from) })
                        .await,
                ),
                false => None,
            }
        };
        let (seen, cloud, objects) = futures_util::join!(looks, cloud, objects);
        let mut groups: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for j in self.jobs {
            groups.entry(j.group.clone()).or_default().push(j);
        }
        let ctx = &self.ctx;
        let lane = &self.lane;
        let runs = join_all(groups.into_values().map(|jobs| async move {
            let mut out = Vec::new();
            let mut copies = Vec::new();
            for j in jobs {
                match j.call {
                    Ok(call) if call.copies_a_world() => copies.push(lane.spawn(ctx.clone(), j.local, call)),
                    Ok(call) => out.push((j.local, ctx.call(&call).await.map_err(Verdict::Failed))),
                    Err(v) => out.push((j.local, Err(v))),
                }
            }
            (out, copies)
        }))
        .await;
        let mut outcomes = Vec::new();
        let mut copies = Vec::new();
        for (o, c) in runs {
            outcomes.extend(o);
            copies.extend(c);
        }
        // Small worlds are done within the step; big ones report to a later one.
        let _ = tokio::time::timeout(lane.wait, join_all(copies)).await;
        outcomes.append(&mut lane.finished.lock().unwrap());
        outcomes.sort_by_key(|o| o.0);
        Done { outcomes, seen, cloud, objects }
    }
}

impl Lane {
    /// Runs a copy in its own task once a slot (in total and on its node) is free.
    fn spawn(&self, ctx: Ctx, local: u64, call: Call) -> tokio::task::JoinHandle<()> {
        let lane = self.clone();
        tokio::spawn(async move {
            let node = lane.node(call.engine());
            let _total = lane.total.clone().acquire_owned().await;
            let _node = node.acquire_owned().await;
            let r = ctx.call(&call).await.map_err(Verdict::Failed);
            lane.finished.lock().unwrap().push((local, r));
        })
    }
}

impl Call {
    /// Whether this call moves a world's bytes (an archive, a restore, a copy between nodes).
    fn copies_a_world(&self) -> bool {
        match self {
            Call::Archive { .. } | Call::Backup { .. } | Call::RestoreBackup { .. } => true,
            Call::Place { source: Source::Archive(_), .. } => true,
            Call::Place { node, source: Source::Node(src), .. } => src.engine() != node.engine(),
            _ => false,
        }
    }

    fn engine(&self) -> &str {
        match self {
            Call::Place { node, .. }
            | Call::Stop { node, .. }
            | Call::Archive { node, .. }
            | Call::Remove { node, .. }
            | Call::Backup { node, .. }
            | Call::Say { node, .. }
            | Call::RunJob { node, .. }
            | Call::SignalJob { node, .. }
            | Call::RemoveJob { node, .. }
            | Call::RestoreBackup { node, .. } => node.engine(),
            Call::CreateVm { .. } | Call::DeleteVm { .. } => "cloud",
            Call::DropObject { .. } => "archive",
        }
    }
}

impl Ctx {
    async fn call(&self, call: &Call) -> Result<Output, DriverError> {
        let t = self.call_timeout;
        match call {
            Call::Place { node, spec, source } => {
                let id = spec.server;
                match source {
                    Source::Here => {
                        timed(t, node.ensure_container(spec)).await?;
                    }
                    Source::Archive(r) => {
                        let restore = archive::restore_server(&**node, self.archive.as_ref(), spec, r, &self.helper);
                        timed(self.data_timeout, async { restore.await.map_err(DriverError::from) }).await?;
                    }
                    Source::Node(src) if src.engine() == node.engine() => {
                        // One engine: the world is already there.
                        timed(t, node.ensure_container(spec)).await?;
                    }
                    Source::Node(src) => {
                        // A retry after the copy started here is not copied again.
                        if !timed(t, node.running(id)).await? {
                            // A copy of a stopped world only (a container left running there
                            // by an earlier failure is stopped first; the game saves).
                            timed(t + self.stop_timeout, src.stop(id, self.stop_timeout)).await?;
                            let tar = timed(self.data_timeout, src.download_data(id, &self.helper)).await?;
                            timed(self.data_timeout, node.write_volume(id, tar, &self.helper)).await?;
                        }
                        timed(t, node.ensure_container(spec)).await?;
                    }
                }
                // The old copy is removed by its own intent once this is done.
                timed(t, node.start(id)).await?;
                Ok(match source {
                    Source::Archive(r) => Output::Archived(r.clone()),
                    _ => Output::Unit,
                })
            }
            Call::Stop { node, server, console } => {
                if let Some((via, command)) = console {
                    // Best effort: a console that does not take it leaves the signal to stop it.
                    if timed(t, node.console(*server, via, command)).await.is_ok() {
                        let until = tokio::time::Instant::now() + self.stop_timeout;
                        while tokio::time::Instant::now() < until && matches!(node.running(*server).await, Ok(true)) {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
                let deadline = t + self.stop_timeout;
                timed(deadline, node.stop(*server, self.stop_timeout)).await.map(|_| Output::Unit)
            }
            Call::Archive { node, server, key } => {
                let made = archive::archive_server(&**node, self.archive.as_ref(), *server, key, &self.helper);
                timed(self.data_timeout, async { made.await.map_err(DriverError::from) }).await.map(Output::Archived)
            }
            Call::Remove { node, server, volume } => {
                timed(t, node.remove(*server, *volume)).await.map(|_| Output::Unit)
            }
            Call::Say { node, server, via, text } => {
                timed(t, node.console(*server, via, text)).await.map(|_| Output::Unit)
            }
            Call::RunJob { node, spec } => timed(t, node.run_job(spec)).await.map(|_| Output::Unit),
            Call::SignalJob { node, job } => timed(t, node.signal_job(*job)).await.map(|_| Output::Unit),
            Call::RemoveJob { node, job } => timed(t, node.remove_job(*job)).await.map(|_| Output::Unit),
            Call::Backup { node, server, key } => {
                let made = archive::backup_server(&**node, self.archive.as_ref(), *server, key, &self.helper);
                timed(self.data_timeout, async { made.await.map_err(DriverError::from) }).await.map(Output::Archived)
            }
            Call::RestoreBackup { node, spec, backup } => {
                // The world of now was backed up by the intent before this one.
                let (archive, helper) = (self.archive.as_ref(), &self.helper);
                let done = async {
                    node.remove(spec.server, true).await?;
                    archive::restore_server(&**node, archive, spec, backup, helper).await
                };
                timed(self.data_timeout, async { done.await.map_err(DriverError::from) }).await.map(|_| Output::Unit)
            }
            Call::DropObject { key } => timed(t, async { self.archive.delete(key).await.map_err(DriverError::from) })
                .await
                .map(|_| Output::Unit),
            Call::CreateVm { cloud, new } => timed(t, cloud.create(new)).await.map(Output::Vm),
            Call::DeleteVm { cloud, id, name, selector } => {
                let id = match id {
                    Some(id) => Some(*id),
                    None => timed(t, cloud.list(selector)).await?.into_iter().find(|v| &v.name == name).map(|v| v.id),
                };
                if let Some(id) = id {
                    timed(t, cloud.delete(id)).await?;
                }
                Ok(Output::Unit)
            }
        }
    }
}
