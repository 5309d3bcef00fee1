//! What the live engine is built from: its drivers, its knobs (`[controller]` keys in
//! brackets) and its counters.

use super::{Mode, Worlds};
use crate::archive::Archive;
use crate::billing::BillingSetup;
use crate::driver::{CloudDriver, NodeDriver};
use conductor_core::{DedicatedType, Millis, SchedulerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A dedicated node: its type (capacity) and how to reach its Docker API.
pub struct DedicatedNode {
    pub name: String,
    pub kind: DedicatedType,
    pub docker: Arc<dyn NodeDriver>,
}

/// The Docker API of a VM, by its name and the address the cloud gave it.
pub type DockerForVm = Box<dyn Fn(&str, &str) -> Result<Arc<dyn NodeDriver>, String> + Send + Sync>;

/// A VM's user data, by its name (certificates are issued per VM).
pub type UserData = Box<dyn Fn(&str) -> Result<Option<String>, String> + Send + Sync>;

/// How VMs are made and reached.
pub struct CloudSetup {
    pub client: Arc<dyn CloudDriver>,
    /// The value of the `conductor-managed` label: this controller's VMs.
    pub cluster: String,
    pub image: String,
    pub location: Option<String>,
    pub user_data: UserData,
    /// The Docker API of a VM once the cloud has given it an address (tests and local runs:
    /// one engine for all).
    pub docker_for_vm: DockerForVm,
    /// A VM is ready only once its bootstrap reported done (the `conductor-bootstrap`
    /// volume); a shared engine has no bootstrap.
    pub bootstrap_marker: bool,
}

impl CloudSetup {
    /// The same user data for every VM.
    pub fn fixed_user_data(text: Option<String>) -> UserData {
        Box::new(move |_| Ok(text.clone()))
    }
}

/// How the engine notices and heals failures (`[controller]` keys in brackets).
#[derive(Clone, Debug)]
pub struct Healing {
    /// A server that does not answer within this long of its container's start is given up
    /// (`start_timeout_s`); the copy of its world before that is bounded by `data_timeout`.
    pub start_timeout: Millis,
    /// A running server that does not answer its status ping this long crashed (`crash_grace_s`).
    pub crash_grace: Millis,
    /// A node whose heartbeat fails this long is unreachable for the core, which declares
    /// it dead `lifecycle.dead_after_s` later (`unreachable_after_s`).
    pub unreachable_after: Millis,
    /// A VM not ready this long after its create is deleted (`vm_ready_timeout_s`).
    pub vm_ready_timeout: Millis,
    /// Containers and VMs nobody knows are removed this long after they were first seen
    /// (`gc_grace_s`).
    pub gc_grace: Millis,
    /// Intents not done this long after they were asked for are reported (`stale_after_s`).
    pub stale_after: Millis,
    /// Retries back off from `retry_base` doubling to `retry_max`, with ±50 % jitter.
    pub retry_base: Millis,
    pub retry_max: Millis,
    /// Attempts of a placement or a VM create before it has failed for good (then the core
    /// decides what next); stops, archives and deletes are retried until they succeed.
    pub max_attempts: u32,
    /// Deadline of one driver call (a copy of a world: `data_timeout`).
    pub call_timeout: Duration,
    pub data_timeout: Duration,
    /// Operators are told here of dead nodes, crash loops, commands failed for good and
    /// VMs that never became ready (`ops_webhook`).
    pub ops_webhook: Option<String>,
    /// Seed of the retry jitter.
    pub seed: u64,
    /// Lines of a crashed server's output kept in its `server.crashed` event.
    pub log_lines: usize,
    /// World copies (archives, restores, moves) at once, in total (`max_copies`); one per
    /// node at a time. A step waits `data_wait` for those it starts, then goes on.
    pub max_copies: usize,
    pub data_wait: Duration,
}

impl Default for Healing {
    fn default() -> Self {
        const S: Millis = 1000;
        Healing {
            start_timeout: 300 * S,
            crash_grace: 60 * S,
            unreachable_after: 15 * S,
            vm_ready_timeout: 600 * S,
            gc_grace: 300 * S,
            stale_after: 3600 * S,
            retry_base: 2 * S,
            retry_max: 60 * S,
            max_attempts: 8,
            call_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(3600),
            ops_webhook: None,
            seed: 1,
            log_lines: 20,
            max_copies: 2,
            data_wait: Duration::from_secs(2),
        }
    }
}

/// How players reach servers through the gateway.
#[derive(Clone, Debug)]
pub struct GameAccess {
    /// Server `id`'s game port on its node is `port_base + id` (stable across restarts and
    /// restores; `[controller] game_port_base`); `None`, or past 65535: any free port, and the
    /// route follows it.
    pub port_base: Option<u16>,
    /// What a start takes, for the wait players are shown: boot, plus the restore of an
    /// archived world (or the rest of a copy under way) at `restore_mb_per_s` (the
    /// scenario's `[lifecycle]`).
    pub boot: Millis,
    pub restore_mb_per_s: u32,
}

impl Default for GameAccess {
    fn default() -> Self {
        GameAccess { port_base: None, boot: 60_000, restore_mb_per_s: 100 }
    }
}

/// A server's route as the gateway needs it (`GET /v1/routes`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteState {
    /// `new`, `starting`, `running`, `sleeping` or `archived`.
    pub state: &'static str,
    /// `host:port` of its game port while it runs.
    pub backend: Option<String>,
    /// Seconds until it should answer once started (or while starting).
    pub eta_s: Option<u32>,
    /// Why a join must not start it: `balance`.
    pub blocked: Option<&'static str>,
}

pub struct LiveConfig {
    pub scheduler: SchedulerConfig,
    pub dedicated: Vec<DedicatedNode>,
    pub cloud: Option<CloudSetup>,
    pub idle_timeout: Millis,
    pub stop_timeout: Duration,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub helper: crate::docker::Helper,
    pub archive: Arc<Archive>,
    pub mode: Mode,
    pub billing: BillingSetup,
    pub healing: Healing,
    pub game: GameAccess,
    pub worlds: Worlds,
    pub joining: Joining,
    /// The templates servers run (empty: the plain template of `image`/`cmd`).
    pub templates: crate::template::Templates,
    /// The nightly forecast (`None`: no policy reads a forecast).
    pub forecast: Option<crate::forecasting::ForecastSetup>,
    /// What owners may run as preemptible jobs, at what price.
    pub jobs: super::JobsSetup,
}

/// How a node added through the admin API is reached: its name, Docker endpoint and game
/// address give its driver.
pub type JoinNode = Arc<dyn Fn(&str, &str, &str) -> Result<Arc<dyn NodeDriver>, String> + Send + Sync>;

/// Dedicated nodes that join while the controller runs.
#[derive(Clone, Default)]
pub struct Joining {
    /// The dedicated types a joining node may name (the scenario's catalogue).
    pub types: BTreeMap<String, DedicatedType>,
    /// `None`: nodes cannot join (no `[controller.pki]`).
    pub connect: Option<JoinNode>,
    /// How long a joining node's Docker API may take to answer.
    pub answer_within: Duration,
    /// The fleet CA, which issues a joining node's engine certificate.
    pub pki: Option<Arc<crate::pki::Pki>>,
}

/// Counters for `/metrics` (since start-up).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub crashes: u64,
    pub crash_loops: u64,
    pub start_failures: u64,
    pub nodes_dead: u64,
    /// Retries and failures for good, by intent kind.
    pub retries: BTreeMap<&'static str, u64>,
    pub failures: BTreeMap<&'static str, u64>,
    pub gc_removed: u64,
    /// Intents reported as not done after `stale_after`.
    pub stale_intents: u64,
    /// Moves carried out and failed, and the players' waiting time they caused.
    pub migrations: u64,
    pub migration_failures: u64,
    pub disrupted_player_ms: u64,
    /// Nightly forecasts that failed.
    pub forecast_failures: u64,
    /// Wall time of whole steps: bucket upper bounds in ms ([`TICK_BUCKETS_MS`]), then +Inf.
    pub tick_buckets: [u64; TICK_BUCKETS_MS.len() + 1],
    pub tick_ms_sum: f64,
    pub ticks: u64,
}

pub const TICK_BUCKETS_MS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];
