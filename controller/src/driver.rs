//! The engine's view of the outside world: a node's Docker API ([`NodeDriver`]) and the
//! cloud ([`CloudDriver`]), with typed errors that say whether trying again can help.
//!
//! The real implementations are the bollard driver (`docker.rs`) and the hcloud driver
//! (`cloud.rs`); the in-memory fakes (`fake.rs`) fail on a seeded schedule for the engine's
//! fault tests. The engine never sees bollard's or hcloud's error types.

use crate::cloud::{NewVm, Vm};
use crate::docker::{ContainerInfo, ContainerSpec, Helper};
use crate::mcping::Status;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes streamed (a world's tar, an archive): never held whole in memory.
pub type ByteStream = Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// An error with its causes ("client error (Connect): invalid peer certificate: …"), each
/// once: HTTP clients hide the reason a few sources down.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        cause = c.source();
    }
    out
}

/// How a console command reaches a server (its template says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleVia {
    /// A line on the container's standard input.
    Stdin,
    /// This command and the console command's words, run inside the container (an RCON client).
    Exec(Vec<String>),
}

/// Whether trying the same call again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Timeouts, 429, 5xx, connection refused, a node that does not answer.
    Transient,
    /// 404, an invalid spec, a quota: the same call will fail the same way.
    Permanent,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub retry: Retry,
    pub message: String,
}

impl DriverError {
    pub fn transient(message: impl Into<String>) -> DriverError {
        DriverError { retry: Retry::Transient, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> DriverError {
        DriverError { retry: Retry::Permanent, message: message.into() }
    }

    pub fn is_transient(&self) -> bool {
        self.retry == Retry::Transient
    }
}

/// An HTTP status from a peer's API: 408, 429 and 5xx are worth a retry, other codes not.
pub fn retry_for_status(status: u16) -> Retry {
    if status == 408 || status == 429 || status >= 500 {
        Retry::Transient
    } else {
        Retry::Permanent
    }
}

/// One node's Docker API. Every call is idempotent by the server's deterministic names.
/// A preemptible job's container (`conductor-j<job>`): image, command and memory limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    pub job: i64,
    pub image: String,
    pub cmd: Vec<String>,
    pub memory_mib: u32,
}

/// What a job's container is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub running: bool,
    pub exit_code: Option<i64>,
}

pub trait NodeDriver: Send + Sync {
    /// Which engine this is (its endpoint): nodes that share one (a local run, a test) have
    /// one set of containers and volumes, and nothing is copied or removed between them.
    fn engine(&self) -> &str;
    /// Where players (through the gateway) reach the node's published game ports.
    fn game_host(&self) -> &str;
    /// The heartbeat: does the engine answer?
    fn ping(&self) -> BoxFuture<'_, Result<(), DriverError>>;
    /// Whether a new VM can take servers: its engine answers, its bootstrap reported done
    /// (`marker`: the `conductor-bootstrap` volume exists) and every image is present. The
    /// error says what is missing.
    fn ready_check<'a>(&'a self, images: &'a [String], marker: bool) -> BoxFuture<'a, Result<(), DriverError>> {
        let _ = (images, marker);
        self.ping()
    }
    /// Every container the controller manages on the node, running or not.
    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, DriverError>>;
    /// Whether the server's container runs (one container, not a listing).
    fn running(&self, server: i64) -> BoxFuture<'_, Result<bool, DriverError>>;
    /// The servers whose world volume exists on the node.
    fn volumes(&self) -> BoxFuture<'_, Result<Vec<i64>, DriverError>>;
    /// Creates the server's container unless it exists.
    fn ensure_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<ContainerInfo, DriverError>>;
    /// Starts it (running already is fine).
    fn start(&self, server: i64) -> BoxFuture<'_, Result<(), DriverError>>;
    /// Graceful stop (the game saves), killed after `timeout`; stopped or gone is fine.
    fn stop(&self, server: i64, timeout: Duration) -> BoxFuture<'_, Result<(), DriverError>>;
    /// Removes the container and, with `volume`, the world on this node; gone is fine.
    fn remove(&self, server: i64, volume: bool) -> BoxFuture<'_, Result<(), DriverError>>;
    /// Status ping of the server's game port (readiness and players).
    fn probe(&self, server: i64) -> BoxFuture<'_, Result<Status, DriverError>>;
    /// The last lines the server printed (for a crash report).
    fn logs_tail(&self, server: i64, lines: usize) -> BoxFuture<'_, Result<String, DriverError>>;
    /// The container's last `lines` log lines, then (with `follow`) what it writes until it
    /// stops or the stream is dropped.
    fn logs(&self, server: i64, lines: usize, follow: bool) -> BoxFuture<'_, Result<ByteStream, DriverError>> {
        let _ = (server, lines, follow);
        Box::pin(async { Err(DriverError::permanent("this node keeps no logs")) })
    }
    /// Creates (unless it exists) and starts a preemptible job's container; running is fine.
    fn run_job<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<(), DriverError>> {
        let _ = spec;
        Box::pin(async { Err(DriverError::permanent("this node runs no jobs")) })
    }
    /// A job's container: running or how it exited; `None` when there is none.
    fn job_status(&self, job: i64) -> BoxFuture<'_, Result<Option<JobStatus>, DriverError>> {
        let _ = job;
        Box::pin(async { Err(DriverError::permanent("this node runs no jobs")) })
    }
    /// The notice: SIGTERM to the job (it should save and exit before it is killed).
    fn signal_job(&self, job: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        let _ = job;
        Box::pin(async { Err(DriverError::permanent("this node runs no jobs")) })
    }
    /// Kills and removes the job's container; gone is fine.
    fn remove_job(&self, job: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        let _ = job;
        Box::pin(async { Err(DriverError::permanent("this node runs no jobs")) })
    }
    /// Sends a console command; answers with what the console answered (stdin: nothing).
    fn console<'a>(
        &'a self,
        server: i64,
        via: &'a ConsoleVia,
        line: &'a str,
    ) -> BoxFuture<'a, Result<String, DriverError>> {
        let _ = (server, via, line);
        Box::pin(async { Err(DriverError::permanent("this node has no console")) })
    }
    /// A tar of the server's `/data`, streamed (from its container, or from a `helper`
    /// mounting its volume when only the volume is left).
    fn download_data<'a>(&'a self, server: i64, helper: &'a Helper) -> BoxFuture<'a, Result<ByteStream, DriverError>>;
    /// Writes a tar of `/data` (streamed) into the server's volume while its container does
    /// not run; an error in the stream fails the write.
    fn write_volume<'a>(
        &'a self,
        server: i64,
        tar: ByteStream,
        helper: &'a Helper,
    ) -> BoxFuture<'a, Result<(), DriverError>>;
}

/// The cloud's VM API.
pub trait CloudDriver: Send + Sync {
    /// VMs matching a label selector (`key=value`).
    fn list<'a>(&'a self, selector: &'a str) -> BoxFuture<'a, Result<Vec<Vm>, DriverError>>;
    /// Creates the VM, or returns the one of that name if it exists (a retried create).
    fn create<'a>(&'a self, new: &'a NewVm) -> BoxFuture<'a, Result<Vm, DriverError>>;
    /// Deletes a VM; one already gone is fine.
    fn delete(&self, id: i64) -> BoxFuture<'_, Result<(), DriverError>>;
}
