//! The controller's state: owners and tokens, servers, nodes, placements, the append-only
//! event log, forecasts and intents. One trait, two implementations: PostgreSQL (`pg.rs`,
//! what the daemon uses) and memory (`memory.rs`, for fast unit tests); both pass the same
//! test suite (`tests/store.rs`).

use conductor_core::model::CostMode;
use conductor_core::{Millis, NodeKind};
use serde::{Deserialize, Serialize};
use std::future::Future;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("database: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub id: i64,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    New,
    Queued,
    Starting,
    Running,
    Sleeping,
    Archived,
    Deleted,
}

impl ServerState {
    pub const ALL: [ServerState; 7] = [
        ServerState::New,
        ServerState::Queued,
        ServerState::Starting,
        ServerState::Running,
        ServerState::Sleeping,
        ServerState::Archived,
        ServerState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::New => "new",
            ServerState::Queued => "queued",
            ServerState::Starting => "starting",
            ServerState::Running => "running",
            ServerState::Sleeping => "sleeping",
            ServerState::Archived => "archived",
            ServerState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Result<ServerState> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| StoreError::Invalid(format!("server state {s:?}")))
    }
}

pub fn cost_mode_str(m: CostMode) -> &'static str {
    match m {
        CostMode::Off => "off",
        CostMode::Suggest => "suggest",
        CostMode::Auto => "auto",
    }
}

pub fn parse_cost_mode(s: &str) -> Result<CostMode> {
    match s {
        "off" => Ok(CostMode::Off),
        "suggest" => Ok(CostMode::Suggest),
        "auto" => Ok(CostMode::Auto),
        _ => Err(StoreError::Invalid(format!("cost mode {s:?}"))),
    }
}

/// A server as the API creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewServer {
    pub owner: i64,
    pub name: String,
    pub ram_mib: u32,
    pub disk_mb: u64,
    pub pay_per_use: bool,
    pub cost_mode: CostMode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: i64,
    pub owner: i64,
    pub name: String,
    pub ram_mib: u32,
    pub disk_mb: u64,
    pub pay_per_use: bool,
    pub cost_mode: CostMode,
    pub state: ServerState,
    pub node: Option<i64>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Its template (`None`: the controller's default template).
    pub template: Option<String>,
}

/// Where a server started or ran, from when to when (open while it runs there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub node: i64,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Provisioning,
    Ready,
    Cordoned,
    Unreachable,
    Dead,
    Deleted,
}

impl NodeState {
    pub const ALL: [NodeState; 6] = [
        NodeState::Provisioning,
        NodeState::Ready,
        NodeState::Cordoned,
        NodeState::Unreachable,
        NodeState::Dead,
        NodeState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Provisioning => "provisioning",
            NodeState::Ready => "ready",
            NodeState::Cordoned => "cordoned",
            NodeState::Unreachable => "unreachable",
            NodeState::Dead => "dead",
            NodeState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Result<NodeState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| StoreError::Invalid(format!("node state {s:?}")))
    }
}

pub fn node_kind_str(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Dedicated => "dedicated",
        NodeKind::Cloud => "cloud",
    }
}

pub fn parse_node_kind(s: &str) -> Result<NodeKind> {
    match s {
        "dedicated" => Ok(NodeKind::Dedicated),
        "cloud" => Ok(NodeKind::Cloud),
        _ => Err(StoreError::Invalid(format!("node kind {s:?}"))),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub name: String,
    pub kind: NodeKind,
    pub type_name: String,
    pub provider_id: Option<String>,
    pub state: NodeState,
    pub ram_mib: u32,
    pub usable_mib: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: i64,
    pub name: String,
    pub kind: NodeKind,
    pub type_name: String,
    pub provider_id: Option<String>,
    pub state: NodeState,
    pub ram_mib: u32,
    pub usable_mib: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// A node added through the admin API: its Docker endpoint and game address.
    pub docker: Option<String>,
    pub address: Option<String>,
    /// Drained by an operator: takes no new server.
    pub drained: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub at: Millis,
    pub kind: String,
    pub server: Option<i64>,
    pub node: Option<i64>,
    pub data: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    pub at: Millis,
    pub kind: String,
    pub server: Option<i64>,
    pub node: Option<i64>,
    pub data: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentState {
    Pending,
    Done,
    Failed,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Done => "done",
            IntentState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<IntentState> {
        match s {
            "pending" => Ok(IntentState::Pending),
            "done" => Ok(IntentState::Done),
            "failed" => Ok(IntentState::Failed),
            _ => Err(StoreError::Invalid(format!("intent state {s:?}"))),
        }
    }
}

/// An external action (create a VM, start a container…) recorded before it is attempted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Intent {
    pub id: i64,
    pub key: String,
    pub action: String,
    pub data: serde_json::Value,
    pub state: IntentState,
    pub created_at: Millis,
    pub outcome: Option<serde_json::Value>,
}

/// What a ledger entry is. Credits (grant, top-up, refund) are positive, charges negative,
/// adjustments either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Grant,
    Topup,
    Charge,
    Refund,
    Adjustment,
}

impl EntryKind {
    pub const ALL: [EntryKind; 5] =
        [EntryKind::Grant, EntryKind::Topup, EntryKind::Charge, EntryKind::Refund, EntryKind::Adjustment];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Grant => "grant",
            EntryKind::Topup => "topup",
            EntryKind::Charge => "charge",
            EntryKind::Refund => "refund",
            EntryKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Result<EntryKind> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| StoreError::Invalid(format!("entry kind {s:?}")))
    }
}

/// A ledger entry to post. `key` makes posting idempotent: a charge's key names its server
/// and metering window, a top-up's the payment it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    pub owner: i64,
    pub kind: EntryKind,
    pub amount: Money,
    pub key: String,
    pub at: Millis,
    pub server: Option<i64>,
    pub window_start: Option<Millis>,
    pub data: serde_json::Value,
}

impl NewEntry {
    /// A top-up of `amount` for `owner`, idempotent by its payment `key`.
    pub fn topup(owner: i64, amount: Money, key: &str, at: Millis) -> NewEntry {
        NewEntry {
            owner,
            kind: EntryKind::Topup,
            amount,
            key: key.into(),
            at,
            server: None,
            window_start: None,
            data: serde_json::json!({}),
        }
    }

    /// The rules both stores enforce (PostgreSQL also by CHECK constraints).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(StoreError::Invalid(m));
        if self.key.is_empty() || self.key.len() > 200 {
            return bad("an entry needs a key of 1 to 200 characters".into());
        }
        if self.amount.scale() > conductor_core::billing::RATING_DP {
            return bad(format!("amount {}: at most 6 decimals", self.amount));
        }
        match self.kind {
            EntryKind::Charge if self.amount > Money::ZERO => {
                bad(format!("a charge is not positive, got {}", self.amount))
            }
            EntryKind::Grant | EntryKind::Topup | EntryKind::Refund if self.amount < Money::ZERO => {
                bad(format!("a {} is not negative, got {}", self.kind.as_str(), self.amount))
            }
            _ => Ok(()),
        }
    }

    /// Whether `e` is this entry posted before (a replay), rather than another entry that
    /// reuses its key.
    pub fn same_as(&self, e: &Entry) -> bool {
        self.owner == e.owner && self.kind == e.kind && self.amount == e.amount && self.server == e.server
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub id: i64,
    pub owner: i64,
    pub kind: EntryKind,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Money,
    pub key: String,
    pub at: Millis,
    pub server: Option<i64>,
    pub window_start: Option<Millis>,
    pub data: serde_json::Value,
}

/// The outcome of posting: the entry (new, or the one posted before with that key) and the
/// owner's balance after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted {
    pub entry: Entry,
    pub new: bool,
    pub balance: Money,
}

pub type Money = conductor_core::Money;

/// A preemptible job's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    /// Given notice (SIGTERM): killed at `kill_at` unless it ends first.
    Noticed,
    /// Ended by itself (its exit code in `outcome`).
    Done,
    /// Killed: its notice ran out, or its `max_duration_s`.
    Killed,
    Cancelled,
    /// Its container could not be run.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Noticed => "noticed",
            JobState::Done => "done",
            JobState::Killed => "killed",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<JobState> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| StoreError::Invalid(format!("unknown job state {s:?}")))
    }

    /// Whether it is over (nothing of it runs).
    pub fn ended(self) -> bool {
        matches!(self, JobState::Done | JobState::Killed | JobState::Cancelled | JobState::Failed)
    }
}

/// A job as submitted.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub owner: i64,
    pub image: String,
    pub cmd: Vec<String>,
    pub ram_mib: u32,
    pub max_duration_s: u64,
    pub price_per_gib_hour: Money,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub id: i64,
    pub owner: i64,
    pub image: String,
    pub cmd: Vec<String>,
    pub ram_mib: u32,
    pub max_duration_s: u64,
    pub price_per_gib_hour: Money,
    pub state: JobState,
    pub node: Option<i64>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub kill_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// How it ended (`exit 0`, `notice ran out`, `max duration`, the error, …).
    pub outcome: Option<String>,
}

/// SHA-256 of an API token: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Everything the controller keeps. Implementations are safe to share between tasks.
/// Methods return `Send` futures so that HTTP handlers and tasks can await them.
pub trait Store: Send + Sync {
    fn create_owner(&self, name: &str, now: Millis) -> impl Future<Output = Result<Owner>> + Send;
    fn owner(&self, id: i64) -> impl Future<Output = Result<Owner>> + Send;
    fn owners(&self) -> impl Future<Output = Result<Vec<Owner>>> + Send;
    /// Stores the token's hash for `owner`.
    fn add_token(&self, owner: i64, token_sha256: [u8; 32], now: Millis) -> impl Future<Output = Result<()>> + Send;
    /// The owner a (not revoked) token belongs to.
    fn owner_by_token(&self, token_sha256: [u8; 32]) -> impl Future<Output = Result<Option<i64>>> + Send;

    fn create_server(&self, s: NewServer, now: Millis) -> impl Future<Output = Result<Server>> + Send;
    fn server(&self, id: i64) -> impl Future<Output = Result<Server>> + Send;
    /// Servers that are not deleted, of one owner or of all, by id.
    fn servers(&self, owner: Option<i64>) -> impl Future<Output = Result<Vec<Server>>> + Send;
    /// Moves a server to `state` on `node`; opens a placement when it starts on a node and
    /// closes the open one when it leaves it.
    fn set_server_state(
        &self,
        id: i64,
        state: ServerState,
        node: Option<i64>,
        now: Millis,
    ) -> impl Future<Output = Result<Server>> + Send;
    /// A server's placements, oldest first.
    fn placements(&self, server: i64) -> impl Future<Output = Result<Vec<Placement>>> + Send;

    /// Creates a node, or returns the existing one with that name (adoption after a restart).
    fn upsert_node(&self, n: NewNode, now: Millis) -> impl Future<Output = Result<Node>> + Send;
    fn nodes(&self) -> impl Future<Output = Result<Vec<Node>>> + Send;
    /// A dedicated node joining through the admin API; a name ever used (even by a removed
    /// node) is a conflict.
    fn add_node(
        &self,
        n: NewNode,
        docker: &str,
        address: &str,
        now: Millis,
    ) -> impl Future<Output = Result<Node>> + Send;
    fn set_node_drained(&self, id: i64, drained: bool, now: Millis) -> impl Future<Output = Result<Node>> + Send;
    /// Sets a server's plan RAM (its state and since when are unchanged).
    fn set_server_ram(&self, id: i64, ram_mib: u32) -> impl Future<Output = Result<Server>> + Send;
    /// Sets whether a server is stopped when idle (pay-per-use) or runs until stopped.
    fn set_server_pay_per_use(&self, id: i64, pay_per_use: bool) -> impl Future<Output = Result<Server>> + Send;
    /// Sets a server's template (`None`: the default).
    fn set_server_template(&self, id: i64, template: Option<&str>) -> impl Future<Output = Result<Server>> + Send;
    fn set_node_state(
        &self,
        id: i64,
        state: NodeState,
        provider_id: Option<String>,
        now: Millis,
    ) -> impl Future<Output = Result<Node>> + Send;

    fn append_event(&self, e: NewEvent) -> impl Future<Output = Result<i64>> + Send;
    /// Events with `seq > after`, oldest first, at most `limit`.
    fn events(&self, after: i64, limit: u32) -> impl Future<Output = Result<Vec<Event>>> + Send;
    /// Events of the given kinds at or after `since`, with `seq > after`, oldest first, at
    /// most `limit` (the nightly forecast reads its window of demand with it).
    fn events_of(
        &self,
        kinds: &[&str],
        since: Millis,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;
    /// The latest `limit` events of the given kinds, newest first.
    fn latest_events(&self, kinds: &[&str], limit: u32) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// Records an intent, or returns the existing one with the same key (a retry).
    fn begin_intent(
        &self,
        key: &str,
        action: &str,
        data: serde_json::Value,
        now: Millis,
    ) -> impl Future<Output = Result<Intent>> + Send;
    fn finish_intent(
        &self,
        id: i64,
        ok: bool,
        outcome: serde_json::Value,
        now: Millis,
    ) -> impl Future<Output = Result<Intent>> + Send;
    fn pending_intents(&self) -> impl Future<Output = Result<Vec<Intent>>> + Send;

    /// Appends `e` to its owner's ledger and updates the balance, in one transaction, unless
    /// an entry with its key exists: then nothing changes and that entry is returned
    /// (`new: false`). A key reused for a different entry is a conflict.
    fn post(&self, e: NewEntry) -> impl Future<Output = Result<Posted>> + Send;
    /// The sum of the owner's ledger (zero before any entry).
    fn balance(&self, owner: i64) -> impl Future<Output = Result<Money>> + Send;
    /// The owner's entries with `id > after`, oldest first, at most `limit`.
    fn ledger(&self, owner: i64, after: i64, limit: u32) -> impl Future<Output = Result<Vec<Entry>>> + Send;

    /// Adds a custom host name (lower case) to a server; one another server has is a conflict.
    fn add_host(&self, server: i64, host: &str, now: Millis) -> impl Future<Output = Result<()>> + Send;
    /// Removes it; `false` if the server did not have it.
    fn remove_host(&self, server: i64, host: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Every custom host name and its server, by host.
    fn hosts(&self) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;

    fn create_job(&self, j: NewJob, now: Millis) -> impl Future<Output = Result<Job>> + Send;
    fn job(&self, id: i64) -> impl Future<Output = Result<Job>> + Send;
    /// All jobs (or an owner's), oldest first.
    fn jobs(&self, owner: Option<i64>) -> impl Future<Output = Result<Vec<Job>>> + Send;
    /// Writes a job's state, node, times and outcome (what the engine changed).
    fn update_job(&self, j: &Job) -> impl Future<Output = Result<()>> + Send;

    fn save_forecast(&self, document: serde_json::Value, now: Millis) -> impl Future<Output = Result<i64>> + Send;
    fn latest_forecast(&self) -> impl Future<Output = Result<Option<(Millis, serde_json::Value)>>> + Send;
}
