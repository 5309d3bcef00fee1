//! In-memory drivers that fail on cue: the fast backend of the engine's fault tests.
//!
//! A [`FakeNode`] is a Docker API with containers and volumes in memory; a [`FakeCloud`] a
//! VM API whose VMs get ready after a provisioning delay. Both read a shared virtual clock
//! ([`Clock`], set by the test) and a seeded fault schedule ([`Faults`]): every call may fail
//! transiently, fail for good, or be carried out with its answer lost; a node can be made
//! silent (partitioned) and a container can exit. What really happened is recorded (run
//! intervals of every container, every VM ever made) so that a test can check the engine's
//! records against it.

use crate::cloud::{NewVm, Vm};
use crate::docker::{ContainerInfo, ContainerSpec, Helper};
use crate::driver::{BoxFuture, CloudDriver, DriverError, NodeDriver};
use crate::mcping::Status;
use conductor_core::Millis;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The virtual time the fakes see (the test moves it).
#[derive(Debug, Default)]
pub struct Clock(AtomicI64);

impl Clock {
    pub fn new(at: Millis) -> Arc<Clock> {
        Arc::new(Clock(AtomicI64::new(at)))
    }
    pub fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
}

/// What a call does under the fault schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Fails before doing anything (a 5xx, a refused connection).
    Transient,
    /// Refused for good (a 4xx, a quota).
    Permanent,
    /// Carried out, but the answer is lost (a timeout after the fact).
    Lost,
}

/// A seeded fault schedule: probabilities per call, switched off with [`Faults::calm`].
pub struct Faults {
    rng: Mutex<rand::rngs::StdRng>,
    pub transient: f64,
    pub permanent: f64,
    pub lost: f64,
    calm: std::sync::atomic::AtomicBool,
}

impl Faults {
    pub fn new(seed: u64, transient: f64, permanent: f64, lost: f64) -> Arc<Faults> {
        Arc::new(Faults {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            transient,
            permanent,
            lost,
            calm: false.into(),
        })
    }

    /// No faults at all.
    pub fn none() -> Arc<Faults> {
        Faults::new(0, 0.0, 0.0, 0.0)
    }

    /// From now on every call succeeds (convergence is checked after this).
    pub fn calm(&self) {
        self.calm.store(true, Ordering::SeqCst);
    }

    pub fn roll(&self) -> Fault {
        if self.calm.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let x: f64 = self.rng.lock().unwrap().random();
        if x < self.transient {
            Fault::Transient
        } else if x < self.transient + self.permanent {
            Fault::Permanent
        } else if x < self.transient + self.permanent + self.lost {
            Fault::Lost
        } else {
            Fault::None
        }
    }
}

#[derive(Clone, Debug)]
pub struct FakeContainer {
    pub running: bool,
    pub started_at: Millis,
    pub exit_code: Option<i64>,
    pub memory_mib: u32,
    /// Players the status ping reports.
    pub players: u32,
    /// The published game port (the spec's, else one per server).
    pub host_port: u16,
}

#[derive(Default)]
struct NodeState {
    containers: BTreeMap<i64, FakeContainer>,
    /// Each server's world: a save counter (a graceful stop saves, a kill does not).
    volumes: BTreeMap<i64, u64>,
    silent: bool,
    /// Every interval a container of each server ran: (from, to); `None` while it runs.
    runs: BTreeMap<i64, Vec<(Millis, Option<Millis>)>>,
    /// When the containers were listed successfully (what the controller could see).
    listed: Vec<Millis>,
    /// How long a world's download or write takes in real time (a big world; default none).
    slow_data: std::time::Duration,
    /// Worlds given a size: their tar is that many bytes (zeros, then the save counter).
    world_bytes: BTreeMap<i64, u64>,
    /// A disk that fills: a world written past this many bytes fails (and stops reading).
    disk_left: Option<u64>,
    /// Preemptible jobs' containers.
    jobs: BTreeMap<i64, FakeJob>,
}

/// A preemptible job's container on a fake node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeJob {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub memory_mib: u32,
    /// When it was sent SIGTERM (the notice), if it was.
    pub signalled_at: Option<Millis>,
}

/// A node's Docker API in memory.
pub struct FakeNode {
    pub name: String,
    clock: Arc<Clock>,
    faults: Arc<Faults>,
    /// How long a started container takes to answer its status ping (`set_boot_ms`).
    boot_ms: std::sync::atomic::AtomicI64,
    state: Mutex<NodeState>,
}

impl FakeNode {
    pub fn new(name: &str, clock: Arc<Clock>, faults: Arc<Faults>, boot_ms: Millis) -> Arc<FakeNode> {
        let boot_ms = std::sync::atomic::AtomicI64::new(boot_ms);
        Arc::new(FakeNode { name: name.into(), clock, faults, boot_ms, state: Mutex::new(NodeState::default()) })
    }

    /// The tar of `server`'s world is `bytes` long from now on (its measured size).
    pub fn set_world_bytes(&self, server: i64, bytes: u64) {
        self.state.lock().unwrap().world_bytes.insert(server, bytes);
    }

    /// Writing a world fails with "no space left on device" once it passes `bytes`.
    pub fn set_disk_left(&self, bytes: Option<u64>) {
        self.state.lock().unwrap().disk_left = bytes;
    }

    /// Reading a world off this node, and writing one onto it, take this long (real time):
    /// the copy of a big world, each way.
    pub fn set_slow_data(&self, d: std::time::Duration) {
        self.state.lock().unwrap().slow_data = d;
    }

    /// From now on every container answers its status ping this long after its start
    /// (`Millis::MAX`: none answers).
    pub fn set_boot_ms(&self, ms: Millis) {
        self.boot_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Silent (partitioned): every call fails as a timeout would; containers keep running.
    pub fn set_silent(&self, silent: bool) {
        self.state.lock().unwrap().silent = silent;
    }

    pub fn is_silent(&self) -> bool {
        self.state.lock().unwrap().silent
    }

    /// The container exits by itself (a crash) with `code`.
    pub fn crash(&self, server: i64, code: i64) -> bool {
        let now = self.clock.now();
        let mut st = self.state.lock().unwrap();
        let Some(c) = st.containers.get_mut(&server).filter(|c| c.running) else { return false };
        c.running = false;
        c.exit_code = Some(code);
        close_run(&mut st, server, now);
        true
    }

    pub fn containers(&self) -> BTreeMap<i64, FakeContainer> {
        self.state.lock().unwrap().containers.clone()
    }

    pub fn volumes(&self) -> BTreeMap<i64, u64> {
        self.state.lock().unwrap().volumes.clone()
    }

    /// Every interval each server's container ran here.
    pub fn runs(&self) -> BTreeMap<i64, Vec<(Millis, Option<Millis>)>> {
        self.state.lock().unwrap().runs.clone()
    }

    /// When the controller listed the containers successfully.
    pub fn listed(&self) -> Vec<Millis> {
        self.state.lock().unwrap().listed.clone()
    }

    /// Every job container here, removed ones left out.
    pub fn jobs(&self) -> BTreeMap<i64, FakeJob> {
        self.state.lock().unwrap().jobs.clone()
    }

    /// The job's process exits with `code` (it finished, or it obeyed its notice).
    pub fn end_job(&self, job: i64, code: i64) {
        if let Some(j) = self.state.lock().unwrap().jobs.get_mut(&job) {
            j.running = false;
            j.exit_code = Some(code);
        }
    }

    pub fn set_players(&self, server: i64, players: u32) {
        if let Some(c) = self.state.lock().unwrap().containers.get_mut(&server) {
            c.players = players;
        }
    }

    /// The fault schedule's verdict for one call, and the node's silence.
    fn gate(&self, what: &str) -> Result<Fault, DriverError> {
        if self.state.lock().unwrap().silent {
            return Err(DriverError::transient(format!("{}: {what}: timed out (node silent)", self.name)));
        }
        match self.faults.roll() {
            Fault::Transient => Err(DriverError::transient(format!("{}: {what}: 503 (injected)", self.name))),
            Fault::Permanent => Err(DriverError::permanent(format!("{}: {what}: 400 (injected)", self.name))),
            f => Ok(f),
        }
    }

    /// Runs `op` under the fault schedule: a lost answer still changes the state.
    fn call<T>(
        &self,
        what: &str,
        op: impl FnOnce(&mut NodeState, Millis) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        let fault = self.gate(what)?;
        let now = self.clock.now();
        let out = op(&mut self.state.lock().unwrap(), now)?;
        if fault == Fault::Lost {
            return Err(DriverError::transient(format!("{}: {what}: answer lost (injected)", self.name)));
        }
        Ok(out)
    }

    fn info(server: i64, c: &FakeContainer) -> ContainerInfo {
        ContainerInfo {
            id: format!("fake-{server}"),
            name: crate::docker::container_name(server),
            server,
            running: c.running,
            exit_code: c.exit_code,
            host_port: Some(c.host_port),
            node: None,
            spec: None,
        }
    }
}

fn close_run(st: &mut NodeState, server: i64, now: Millis) {
    if let Some(last) = st.runs.get_mut(&server).and_then(|r| r.last_mut()) {
        if last.1.is_none() {
            last.1 = Some(now);
        }
    }
}

fn ready<T>(v: T) -> BoxFuture<'static, T>
where
    T: Send + 'static,
{
    Box::pin(std::future::ready(v))
}

impl NodeDriver for FakeNode {
    fn engine(&self) -> &str {
        &self.name
    }
    fn game_host(&self) -> &str {
        &self.name
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("ping", |_, _| Ok(())))
    }

    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, DriverError>> {
        let listed = self.call("list", |st, _| Ok(st.containers.iter().map(|(s, c)| FakeNode::info(*s, c)).collect()));
        if listed.is_ok() {
            let now = self.clock.now();
            self.state.lock().unwrap().listed.push(now);
        }
        ready(listed)
    }

    fn running(&self, server: i64) -> BoxFuture<'_, Result<bool, DriverError>> {
        ready(self.call("inspect", |st, _| Ok(st.containers.get(&server).is_some_and(|c| c.running))))
    }

    fn volumes(&self) -> BoxFuture<'_, Result<Vec<i64>, DriverError>> {
        ready(self.call("volumes", |st, _| Ok(st.volumes.keys().copied().collect())))
    }

    fn ensure_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<ContainerInfo, DriverError>> {
        ready(self.call("create", |st, _| {
            // As the Docker driver: a stopped container made from another spec is made anew
            // (here the spec is its memory limit); the volume stays.
            if st.containers.get(&spec.server).is_some_and(|c| !c.running && c.memory_mib != spec.memory_mib) {
                st.containers.remove(&spec.server);
            }
            let c = st.containers.entry(spec.server).or_insert(FakeContainer {
                running: false,
                started_at: 0,
                exit_code: None,
                memory_mib: spec.memory_mib,
                players: 0,
                host_port: spec.host_port.unwrap_or(30000 + spec.server as u16),
            });
            let info = FakeNode::info(spec.server, c);
            st.volumes.entry(spec.server).or_insert(0);
            Ok(info)
        }))
    }

    fn start(&self, server: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("start", |st, now| {
            let c = st.containers.get_mut(&server).ok_or_else(|| DriverError::permanent("404: no such container"))?;
            if !c.running {
                c.running = true;
                c.started_at = now;
                c.exit_code = None;
                st.runs.entry(server).or_default().push((now, None));
            }
            Ok(())
        }))
    }

    fn stop(&self, server: i64, _timeout: Duration) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("stop", |st, now| {
            if let Some(c) = st.containers.get_mut(&server).filter(|c| c.running) {
                c.running = false;
                c.exit_code = Some(0);
                *st.volumes.entry(server).or_insert(0) += 1;
                close_run(st, server, now);
            }
            Ok(())
        }))
    }

    fn remove(&self, server: i64, volume: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("remove", |st, now| {
            if st.containers.remove(&server).is_some() {
                close_run(st, server, now);
            }
            if volume {
                st.volumes.remove(&server);
            }
            Ok(())
        }))
    }

    fn run_job<'a>(&'a self, spec: &'a crate::driver::JobSpec) -> BoxFuture<'a, Result<(), DriverError>> {
        ready(self.call("run job", |st, _| {
            let j = st.jobs.entry(spec.job).or_insert(FakeJob {
                running: false,
                exit_code: None,
                memory_mib: spec.memory_mib,
                signalled_at: None,
            });
            if j.exit_code.is_none() {
                j.running = true;
            }
            Ok(())
        }))
    }

    fn job_status(&self, job: i64) -> BoxFuture<'_, Result<Option<crate::driver::JobStatus>, DriverError>> {
        ready(self.call("job status", |st, _| {
            Ok(st.jobs.get(&job).map(|j| crate::driver::JobStatus { running: j.running, exit_code: j.exit_code }))
        }))
    }

    fn signal_job(&self, job: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("signal job", |st, now| {
            if let Some(j) = st.jobs.get_mut(&job) {
                j.signalled_at.get_or_insert(now);
            }
            Ok(())
        }))
    }

    fn remove_job(&self, job: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("remove job", |st, _| {
            st.jobs.remove(&job);
            Ok(())
        }))
    }

    fn probe(&self, server: i64) -> BoxFuture<'_, Result<Status, DriverError>> {
        let boot = self.boot_ms.load(std::sync::atomic::Ordering::Relaxed);
        ready(self.call("probe", |st, now| match st.containers.get(&server) {
            Some(c) if c.running && now - c.started_at >= boot => {
                Ok(Status { online: c.players, max: 20, version: "fake".into(), raw: String::new() })
            }
            Some(c) if c.running => Err(DriverError::transient("booting: connection refused")),
            _ => Err(DriverError::transient("container not running")),
        }))
    }

    fn logs_tail(&self, server: i64, _lines: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        ready(self.call("logs", |st, _| {
            let code = st.containers.get(&server).and_then(|c| c.exit_code);
            Ok(format!("[fake] server {server} exited with {code:?}\n"))
        }))
    }

    fn download_data<'a>(
        &'a self,
        server: i64,
        _helper: &'a Helper,
    ) -> BoxFuture<'a, Result<crate::driver::ByteStream, DriverError>> {
        ready(self.call("download", |st, _| {
            let saves = st.volumes.get(&server).ok_or_else(|| DriverError::permanent("404: no such volume"))?;
            let (world, slow) = (format!("world:{server}:{saves}").into_bytes(), st.slow_data);
            // A sized world: zeros first, in 1 MiB chunks (bounded memory), the counter last.
            let mut pad = st.world_bytes.get(&server).map_or(0, |&b| b.saturating_sub(world.len() as u64));
            let zeros = bytes::Bytes::from(vec![0u8; 1 << 20]);
            let padding = futures_util::stream::iter(std::iter::from_fn(move || {
                let n = pad.min(1 << 20);
                pad -= n;
                (n > 0).then(|| Ok(zeros.slice(..n as usize)))
            }));
            let last = futures_util::stream::once(async move {
                if !slow.is_zero() {
                    tokio::time::sleep(slow).await;
                }
                Ok(bytes::Bytes::from(world))
            });
            Ok(Box::pin(futures_util::StreamExt::chain(padding, last)) as crate::driver::ByteStream)
        }))
    }

    fn write_volume<'a>(
        &'a self,
        server: i64,
        tar: crate::driver::ByteStream,
        _helper: &'a Helper,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            let (left, slow) = {
                let st = self.state.lock().unwrap();
                (st.disk_left, st.slow_data)
            };
            let mut tar = tar;
            let mut all = Vec::new();
            while let Some(chunk) = futures_util::StreamExt::next(&mut tar).await {
                all.extend_from_slice(&chunk.map_err(|e| DriverError::transient(e.to_string()))?);
                if left.is_some_and(|n| all.len() as u64 > n) {
                    // Like Docker's answer on a full disk; the stream is dropped unread.
                    return Err(DriverError::permanent(format!(
                        "{}: write volume: no space left on device",
                        self.name
                    )));
                }
            }
            let tar = all;
            if !slow.is_zero() {
                tokio::time::sleep(slow).await;
            }
            self.call("write volume", |st, _| {
                let text = String::from_utf8_lossy(&tar[tar.len().saturating_sub(64)..]).into_owned();
                let saves = text.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                st.volumes.insert(server, saves);
                Ok(())
            })
        })
    }
}

/// A VM the fake cloud made.
#[derive(Clone, Debug)]
pub struct FakeVm {
    pub id: i64,
    pub name: String,
    pub type_name: String,
    pub labels: std::collections::HashMap<String, String>,
    pub created_at: Millis,
    pub deleted_at: Option<Millis>,
}

/// A VM API in memory: VMs run `provisioning_ms` after their create.
pub struct FakeCloud {
    clock: Arc<Clock>,
    faults: Arc<Faults>,
    pub provisioning_ms: Millis,
    vms: Mutex<Vec<FakeVm>>,
    down: std::sync::atomic::AtomicBool,
}

impl FakeCloud {
    pub fn new(clock: Arc<Clock>, faults: Arc<Faults>, provisioning_ms: Millis) -> Arc<FakeCloud> {
        Arc::new(FakeCloud { clock, faults, provisioning_ms, vms: Mutex::new(Vec::new()), down: false.into() })
    }

    /// An outage: every call fails (503) until it ends.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every VM ever made, deleted ones included.
    pub fn vms(&self) -> Vec<FakeVm> {
        self.vms.lock().unwrap().clone()
    }

    fn call<T>(
        &self,
        what: &str,
        op: impl FnOnce(&mut Vec<FakeVm>, Millis) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DriverError::transient(format!("cloud: {what}: 503 (outage)")));
        }
        let fault = self.faults.roll();
        match fault {
            Fault::Transient => return Err(DriverError::transient(format!("cloud: {what}: 503 (injected)"))),
            Fault::Permanent => {
                return Err(DriverError::permanent(format!("cloud: {what}: resource_limit_exceeded (injected)")))
            }
            _ => {}
        }
        let out = op(&mut self.vms.lock().unwrap(), self.clock.now())?;
        if fault == Fault::Lost {
            return Err(DriverError::transient(format!("cloud: {what}: answer lost (injected)")));
        }
        Ok(out)
    }

    fn vm(&self, v: &FakeVm, now: Millis) -> Vm {
        Vm {
            id: v.id,
            name: v.name.clone(),
            type_name: v.type_name.clone(),
            running: now - v.created_at >= self.provisioning_ms,
            labels: v.labels.clone(),
            address: Some(format!("10.0.0.{}", v.id)),
        }
    }
}

impl CloudDriver for FakeCloud {
    fn list<'a>(&'a self, selector: &'a str) -> BoxFuture<'a, Result<Vec<Vm>, DriverError>> {
        let (key, value) = selector.split_once('=').unwrap_or((selector, ""));
        ready(self.call("list", |vms, now| {
            Ok(vms
                .iter()
                .filter(|v| v.deleted_at.is_none() && v.labels.get(key).is_some_and(|x| x == value))
                .map(|v| self.vm(v, now))
                .collect())
        }))
    }

    fn create<'a>(&'a self, new: &'a NewVm) -> BoxFuture<'a, Result<Vm, DriverError>> {
        ready(self.call("create", |vms, now| {
            // Names are unique among existing VMs (Hetzner's uniqueness_error): the retry of a
            // create finds the VM its first attempt made.
            if let Some(v) = vms.iter().find(|v| v.deleted_at.is_none() && v.name == new.name) {
                return Ok(self.vm(v, now));
            }
            let v = FakeVm {
                id: vms.len() as i64 + 1,
                name: new.name.clone(),
                type_name: new.type_name.clone(),
                labels: new.labels.clone(),
                created_at: now,
                deleted_at: None,
            };
            vms.push(v.clone());
            Ok(self.vm(&v, now))
        }))
    }

    fn delete(&self, id: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        ready(self.call("delete", |vms, now| {
            if let Some(v) = vms.iter_mut().find(|v| v.id == id && v.deleted_at.is_none()) {
                v.deleted_at = Some(now);
            }
            Ok(())
        }))
    }
}

/// Archives in memory (an `object_store` in-memory store behind the real archive code).
pub type MemArchive = crate::archive::Archive;

/// The dedicated node type of the engine's tests and benchmarks: an AX41 (64 GiB, 2.3 GiB
/// kept for the system).
pub fn ax41() -> conductor_core::DedicatedType {
    conductor_core::DedicatedType {
        name: "AX41".into(),
        ram_mib: 65536,
        cores: 8,
        disk_gb: 1000,
        disk_reserve_gb: 0,
        monthly_eur: rust_decimal::Decimal::from(70),
        reserve: conductor_core::catalogue::Reserve::Mib(2300),
    }
}

/// Their cloud VM type: a cx23 (4 GiB).
pub fn cx23() -> conductor_core::CloudType {
    conductor_core::CloudType {
        name: "cx23".into(),
        ram_mib: 4096,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        hourly_eur: rust_decimal::Decimal::new(6, 3),
        monthly_cap_eur: rust_decimal::Decimal::from(4),
        reserve: conductor_core::catalogue::Reserve::Mib(0),
    }
}

/// Worlds for tests and benchmarks, generated as they stream (never whole in memory).
pub mod world {
    use crate::driver::ByteStream;
    use bytes::Bytes;

    /// One pseudo-random (incompressible) MiB, the same for the same index.
    pub fn noise(i: u64) -> Bytes {
        let mut x = 0x9E37_79B9_7F4A_7C15 ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let mut v = vec![0u8; 1 << 20];
        for c in v.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        Bytes::from(v)
    }

    /// A ustar header of a regular file.
    pub fn header(name: &str, bytes: u64) -> Bytes {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        if bytes < 1 << 33 {
            h[124..136].copy_from_slice(format!("{bytes:011o}\0").as_bytes());
        } else {
            // 8 GiB and more do not fit 11 octal digits: GNU base-256 (read by Go's and GNU tar).
            h[124] = 0x80;
            h[128..136].copy_from_slice(&bytes.to_be_bytes());
        }
        h[136..148].copy_from_slice(b"14712345670\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        Bytes::copy_from_slice(&h)
    }

    /// A tar of files (name, MiB, incompressible or zeros), streamed.
    pub fn tar(files: Vec<(String, u64, bool)>) -> ByteStream {
        let items = files.into_iter().flat_map(|(name, mib, noisy)| {
            std::iter::once(header(&name, mib << 20)).chain((0..mib).map(move |i| {
                if noisy {
                    noise(i)
                } else {
                    Bytes::from(vec![0u8; 1 << 20])
                }
            }))
        });
        let end = std::iter::once(Bytes::from(vec![0u8; 1024]));
        Box::pin(futures_util::stream::iter(items.chain(end).map(Ok)))
    }
}
