//! The controller's state: owners and tokens, servers, nodes, placements, the append-only
//! event log, forecasts and intents. One trait, two implementations: PostgreSQL (`pg.rs`,
//! what the daemon uses) and memory (`memory.rs`, for fast unit tests); both pass the same
//! test suite (`tests/store.rs`).

use conductor_core::model::CostMode;
use conductor_core::{Millis, NodeKind};
use serde::{Deserialize, Serialize};

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
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub at: Millis,
    pub kind: String,
    pub server: Option<i64>,
    pub node: Option<i64>,
    pub data: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
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

/// SHA-256 of an API token: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Everything the controller keeps. Implementations are safe to share between tasks.
#[allow(async_fn_in_trait)]
pub trait Store: Send + Sync {
    async fn create_owner(&self, name: &str, now: Millis) -> Result<Owner>;
    async fn owner(&self, id: i64) -> Result<Owner>;
    async fn owners(&self) -> Result<Vec<Owner>>;
    /// Stores the token's hash for `owner`.
    async fn add_token(&self, owner: i64, token_sha256: [u8; 32], now: Millis) -> Result<()>;
    /// The owner a (not revoked) token belongs to.
    async fn owner_by_token(&self, token_sha256: [u8; 32]) -> Result<Option<i64>>;

    async fn create_server(&self, s: NewServer, now: Millis) -> Result<Server>;
    async fn server(&self, id: i64) -> Result<Server>;
    /// Servers that are not deleted, of one owner or of all, by id.
    async fn servers(&self, owner: Option<i64>) -> Result<Vec<Server>>;
    /// Moves a server to `state` on `node`; opens a placement when it starts on a node and
    /// closes the open one when it leaves it.
    async fn set_server_state(&self, id: i64, state: ServerState, node: Option<i64>, now: Millis) -> Result<Server>;
    /// A server's placements, oldest first.
    async fn placements(&self, server: i64) -> Result<Vec<Placement>>;

    /// Creates a node, or returns the existing one with that name (adoption after a restart).
    async fn upsert_node(&self, n: NewNode, now: Millis) -> Result<Node>;
    async fn nodes(&self) -> Result<Vec<Node>>;
    async fn set_node_state(&self, id: i64, state: NodeState, provider_id: Option<String>, now: Millis)
        -> Result<Node>;

    async fn append_event(&self, e: NewEvent) -> Result<i64>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>>;

    /// Records an intent, or returns the existing one with the same key (a retry).
    async fn begin_intent(&self, key: &str, action: &str, data: serde_json::Value, now: Millis) -> Result<Intent>;
    async fn finish_intent(&self, id: i64, ok: bool, outcome: serde_json::Value, now: Millis) -> Result<Intent>;
    async fn pending_intents(&self) -> Result<Vec<Intent>>;

    async fn save_forecast(&self, document: serde_json::Value, now: Millis) -> Result<i64>;
    async fn latest_forecast(&self) -> Result<Option<(Millis, serde_json::Value)>>;
}
