//! The store in PostgreSQL (sqlx). Migrations (`controller/migrations/NNNN_*.sql`) run at
//! connect. State changes that touch two tables run in one transaction.

use crate::store::*;
use chrono::{DateTime, TimeZone, Utc};
use conductor_core::Millis;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

pub struct PgStore {
    pool: PgPool,
}

const LEDGER_COLUMNS: &str = "id, owner_id, kind, amount, key, at, server_id, window_start, data";

fn ts(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn ms(t: DateTime<Utc>) -> Millis {
    t.timestamp_millis()
}

fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        match d.kind() {
            sqlx::error::ErrorKind::UniqueViolation => return StoreError::Conflict(d.message().to_owned()),
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                return StoreError::NotFound { what: "referenced row", id: d.message().to_owned() }
            }
            sqlx::error::ErrorKind::CheckViolation => return StoreError::Invalid(d.message().to_owned()),
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

fn int(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} out of range")))
}

impl PgStore {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await.map_err(db)?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Tries to become the acting instance: a session-level advisory lock on a connection of
    /// its own, held as long as the returned connection lives (a crash releases it).
    pub async fn try_lead(&self, key: i64) -> Result<Option<sqlx::PgConnection>> {
        let mut conn = self.pool.acquire().await.map_err(db)?.detach();
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await.map_err(db)?;
        Ok(got.then_some(conn))
    }

    /// Waits (as a standby) until this instance may act; `waiting` is told once.
    pub async fn lead(&self, key: i64, waiting: impl FnOnce()) -> Result<sqlx::PgConnection> {
        let mut waiting = Some(waiting);
        loop {
            if let Some(conn) = self.try_lead(key).await? {
                return Ok(conn);
            }
            if let Some(w) = waiting.take() {
                w();
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }

    fn owner_row(r: &PgRow) -> Result<Owner> {
        Ok(Owner { id: r.get("id"), name: r.get("name"), created_at: ms(r.get("created_at")) })
    }

    fn event_row(r: &PgRow) -> Event {
        Event {
            seq: r.get("seq"),
            at: ms(r.get("at")),
            kind: r.get("kind"),
            server: r.get("server_id"),
            node: r.get("node_id"),
            data: r.get("data"),
        }
    }

    fn entry_row(r: &PgRow) -> Result<Entry> {
        Ok(Entry {
            id: r.get("id"),
            owner: r.get("owner_id"),
            kind: EntryKind::parse(r.get("kind"))?,
            amount: r.get("amount"),
            key: r.get("key"),
            at: ms(r.get("at")),
            server: r.get("server_id"),
            window_start: r.get::<Option<DateTime<Utc>>, _>("window_start").map(ms),
            data: r.get("data"),
        })
    }

    fn server_row(r: &PgRow) -> Result<Server> {
        Ok(Server {
            id: r.get("id"),
            owner: r.get("owner_id"),
            name: r.get("name"),
            ram_mib: int(i64::from(r.get::<i32, _>("ram_mib")), "ram_mib")?,
            disk_mb: r.get::<i64, _>("disk_mb").max(0) as u64,
            pay_per_use: r.get("pay_per_use"),
            cost_mode: parse_cost_mode(r.get("cost_mode"))?,
            state: ServerState::parse(r.get("state"))?,
            node: r.get("node_id"),
            created_at: ms(r.get("created_at")),
            updated_at: ms(r.get("updated_at")),
            template: r.get("template"),
        })
    }

    fn job_row(r: &PgRow) -> Result<Job> {
        let cmd: serde_json::Value = r.get("cmd");
        Ok(Job {
            id: r.get("id"),
            owner: r.get("owner_id"),
            image: r.get("image"),
            cmd: serde_json::from_value(cmd).map_err(|e| StoreError::Invalid(format!("job cmd: {e}")))?,
            ram_mib: int(i64::from(r.get::<i32, _>("ram_mib")), "ram_mib")?,
            max_duration_s: r.get::<i64, _>("max_duration_s").max(0) as u64,
            price_per_gib_hour: r.get("price_per_gib_hour"),
            state: JobState::parse(r.get("state"))?,
            node: r.get("node_id"),
            created_at: ms(r.get("created_at")),
            started_at: r.get::<Option<DateTime<Utc>>, _>("started_at").map(ms),
            kill_at: r.get::<Option<DateTime<Utc>>, _>("kill_at").map(ms),
            ended_at: r.get::<Option<DateTime<Utc>>, _>("ended_at").map(ms),
            outcome: r.get("outcome"),
        })
    }

    fn node_row(r: &PgRow) -> Result<Node> {
        Ok(Node {
            id: r.get("id"),
            name: r.get("name"),
            kind: parse_node_kind(r.get("kind"))?,
            type_name: r.get("type_name"),
            provider_id: r.get("provider_id"),
            state: NodeState::parse(r.get("state"))?,
            ram_mib: int(i64::from(r.get::<i32, _>("ram_mib")), "ram_mib")?,
            usable_mib: int(i64::from(r.get::<i32, _>("usable_mib")), "usable_mib")?,
            created_at: ms(r.get("created_at")),
            updated_at: ms(r.get("updated_at")),
            docker: r.get("docker"),
            address: r.get("address"),
            drained: r.get("drained"),
        })
    }

    fn intent_row(r: &PgRow) -> Result<Intent> {
        Ok(Intent {
            id: r.get("id"),
            key: r.get("key"),
            action: r.get("action"),
            data: r.get("data"),
            state: IntentState::parse(r.get("state"))?,
            created_at: ms(r.get("created_at")),
            outcome: r.get("outcome"),
        })
    }
}

const JOB_COLUMNS: &str = "id, owner_id, image, cmd, ram_mib, max_duration_s, price_per_gib_hour, state, node_id, \
     created_at, started_at, kill_at, ended_at, outcome";
const SERVER_COLUMNS: &str =
    "id, owner_id, name, ram_mib, disk_mb, pay_per_use, cost_mode, state, node_id, created_at, updated_at, template";
const NODE_COLUMNS: &str =
    "id, name, kind, type_name, provider_id, state, ram_mib, usable_mib, created_at, updated_at, docker, address, drained";
const INTENT_COLUMNS: &str = "id, key, action, data, state, created_at, outcome";

impl Store for PgStore {
    async fn create_owner(&self, name: &str, now: Millis) -> Result<Owner> {
        let r = sqlx::query("INSERT INTO owners (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at")
            .bind(name)
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("owner {name:?} exists")),
                other => other,
            })?;
        Self::owner_row(&r)
    }

    async fn owner(&self, id: i64) -> Result<Owner> {
        let r = sqlx::query("SELECT id, name, created_at FROM owners WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound { what: "owner", id: id.to_string() })?;
        Self::owner_row(&r)
    }

    async fn owners(&self) -> Result<Vec<Owner>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM owners ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(Self::owner_row).collect()
    }

    async fn add_token(&self, owner: i64, token_sha256: [u8; 32], now: Millis) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (owner_id, token_sha256, created_at) VALUES ($1, $2, $3)")
            .bind(owner)
            .bind(&token_sha256[..])
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| match db(e) {
                StoreError::NotFound { .. } => StoreError::NotFound { what: "owner", id: owner.to_string() },
                StoreError::Conflict(_) => StoreError::Conflict("token exists".into()),
                other => other,
            })?;
        Ok(())
    }

    async fn owner_by_token(&self, token_sha256: [u8; 32]) -> Result<Option<i64>> {
        let r = sqlx::query("SELECT owner_id FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL")
            .bind(&token_sha256[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.map(|r| r.get("owner_id")))
    }

    async fn create_server(&self, n: NewServer, now: Millis) -> Result<Server> {
        if n.ram_mib == 0 {
            return Err(StoreError::Invalid("ram_mib must be positive".into()));
        }
        let ram = i32::try_from(n.ram_mib).map_err(|_| StoreError::Invalid("ram_mib too large".into()))?;
        let disk = i64::try_from(n.disk_mb).map_err(|_| StoreError::Invalid("disk_mb too large".into()))?;
        let q = format!(
            "INSERT INTO servers (owner_id, name, ram_mib, disk_mb, pay_per_use, cost_mode, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'new', $7, $7) RETURNING {SERVER_COLUMNS}"
        );
        let r = sqlx::query(&q)
            .bind(n.owner)
            .bind(&n.name)
            .bind(ram)
            .bind(disk)
            .bind(n.pay_per_use)
            .bind(cost_mode_str(n.cost_mode))
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match db(e) {
                StoreError::NotFound { .. } => StoreError::NotFound { what: "owner", id: n.owner.to_string() },
                StoreError::Conflict(_) => StoreError::Conflict(format!("server {:?} exists", n.name)),
                other => other,
            })?;
        Self::server_row(&r)
    }

    async fn server(&self, id: i64) -> Result<Server> {
        let r = sqlx::query(&format!("SELECT {SERVER_COLUMNS} FROM servers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound { what: "server", id: id.to_string() })?;
        Self::server_row(&r)
    }

    async fn servers(&self, owner: Option<i64>) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE state <> 'deleted' AND ($1::BIGINT IS NULL OR owner_id = $1) ORDER BY id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::server_row).collect()
    }

    async fn set_server_state(&self, id: i64, state: ServerState, node: Option<i64>, now: Millis) -> Result<Server> {
        let active = matches!(state, ServerState::Starting | ServerState::Running);
        if active && node.is_none() {
            return Err(StoreError::Invalid(format!("a {} server needs a node", state.as_str())));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(&format!(
            "UPDATE servers SET state = $2, node_id = $3, updated_at = $4 WHERE id = $1 RETURNING {SERVER_COLUMNS}"
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(node)
        .bind(ts(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::NotFound { .. } => {
                StoreError::NotFound { what: "node", id: node.map(|n| n.to_string()).unwrap_or_default() }
            }
            other => other,
        })?
        .ok_or_else(|| StoreError::NotFound { what: "server", id: id.to_string() })?;
        // A placement is open while the server starts or runs on a node.
        sqlx::query(
            "UPDATE placements SET ended_at = $3 WHERE server_id = $1 AND ended_at IS NULL
             AND (NOT $4 OR node_id IS DISTINCT FROM $2)",
        )
        .bind(id)
        .bind(node)
        .bind(ts(now))
        .bind(active)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let (true, Some(n)) = (active, node) {
            sqlx::query(
                "INSERT INTO placements (server_id, node_id, started_at) VALUES ($1, $2, $3)
                 ON CONFLICT (server_id) WHERE ended_at IS NULL DO NOTHING",
            )
            .bind(id)
            .bind(n)
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Self::server_row(&r)
    }

    async fn placements(&self, server: i64) -> Result<Vec<Placement>> {
        let rows = sqlx::query("SELECT node_id, started_at, ended_at FROM placements WHERE server_id = $1 ORDER BY id")
            .bind(server)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Placement {
                node: r.get("node_id"),
                started_at: ms(r.get("started_at")),
                ended_at: r.get::<Option<DateTime<Utc>>, _>("ended_at").map(ms),
            })
            .collect())
    }

    async fn upsert_node(&self, n: NewNode, now: Millis) -> Result<Node> {
        if n.usable_mib > n.ram_mib || n.ram_mib == 0 {
            return Err(StoreError::Invalid("usable RAM must be within the node's RAM".into()));
        }
        let ram = i32::try_from(n.ram_mib).map_err(|_| StoreError::Invalid("ram_mib too large".into()))?;
        let usable = i32::try_from(n.usable_mib).map_err(|_| StoreError::Invalid("usable_mib too large".into()))?;
        // Insert, or (same name) return what is there: adoption is not an update.
        let q = format!(
            "WITH ins AS (
                INSERT INTO nodes (name, kind, type_name, provider_id, state, ram_mib, usable_mib, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                ON CONFLICT (name) DO NOTHING RETURNING {NODE_COLUMNS})
             SELECT {NODE_COLUMNS} FROM ins UNION ALL SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1 LIMIT 1"
        );
        let r = sqlx::query(&q)
            .bind(&n.name)
            .bind(node_kind_str(n.kind))
            .bind(&n.type_name)
            .bind(&n.provider_id)
            .bind(n.state.as_str())
            .bind(ram)
            .bind(usable)
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("provider id {:?} is another node's", n.provider_id))
                }
                other => other,
            })?;
        Self::node_row(&r)
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        let rows = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(Self::node_row).collect()
    }

    async fn add_node(&self, n: NewNode, docker: &str, address: &str, now: Millis) -> Result<Node> {
        if n.usable_mib > n.ram_mib || n.ram_mib == 0 {
            return Err(StoreError::Invalid("usable RAM must be within the node's RAM".into()));
        }
        let ram = i32::try_from(n.ram_mib).map_err(|_| StoreError::Invalid("ram_mib too large".into()))?;
        let usable = i32::try_from(n.usable_mib).map_err(|_| StoreError::Invalid("usable_mib too large".into()))?;
        let q = format!(
            "INSERT INTO nodes (name, kind, type_name, provider_id, state, ram_mib, usable_mib, created_at, updated_at, docker, address)
             VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $7, $8, $9) RETURNING {NODE_COLUMNS}"
        );
        let r = sqlx::query(&q)
            .bind(&n.name)
            .bind(node_kind_str(n.kind))
            .bind(&n.type_name)
            .bind(n.state.as_str())
            .bind(ram)
            .bind(usable)
            .bind(ts(now))
            .bind(docker)
            .bind(address)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("a node named {:?} exists or existed", n.name)),
                other => other,
            })?;
        Self::node_row(&r)
    }

    async fn set_server_template(&self, id: i64, template: Option<&str>) -> Result<Server> {
        // `updated_at` is since when the server is in its state (adoption reads it): kept.
        let r = sqlx::query(&format!("UPDATE servers SET template = $2 WHERE id = $1 RETURNING {SERVER_COLUMNS}"))
            .bind(id)
            .bind(template)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound { what: "server", id: id.to_string() })?;
        Self::server_row(&r)
    }

    async fn set_server_ram(&self, id: i64, ram_mib: u32) -> Result<Server> {
        let ram = i32::try_from(ram_mib).map_err(|_| StoreError::Invalid("ram_mib too large".into()))?;
        let r = sqlx::query(&format!("UPDATE servers SET ram_mib = $2 WHERE id = $1 RETURNING {SERVER_COLUMNS}"))
            .bind(id)
            .bind(ram)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound { what: "server", id: id.to_string() })?;
        Self::server_row(&r)
    }

    async fn set_server_pay_per_use(&self, id: i64, pay_per_use: bool) -> Result<Server> {
        let r = sqlx::query(&format!("UPDATE servers SET pay_per_use = $2 WHERE id = $1 RETURNING {SERVER_COLUMNS}"))
            .bind(id)
            .bind(pay_per_use)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound { what: "server", id: id.to_string() })?;
        Self::server_row(&r)
    }

    async fn set_node_drained(&self, id: i64, drained: bool, now: Millis) -> Result<Node> {
        let r = sqlx::query(&format!(
            "UPDATE nodes SET drained = $2, updated_at = $3 WHERE id = $1 RETURNING {NODE_COLUMNS}"
        ))
        .bind(id)
        .bind(drained)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound { what: "node", id: id.to_string() })?;
        Self::node_row(&r)
    }

    async fn set_node_state(
        &self,
        id: i64,
        state: NodeState,
        provider_id: Option<String>,
        now: Millis,
    ) -> Result<Node> {
        let r = sqlx::query(&format!(
            "UPDATE nodes SET state = $2, provider_id = COALESCE($3, provider_id), updated_at = $4 WHERE id = $1
             RETURNING {NODE_COLUMNS}"
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(&provider_id)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("provider id {provider_id:?} is another node's")),
            other => other,
        })?
        .ok_or_else(|| StoreError::NotFound { what: "node", id: id.to_string() })?;
        Self::node_row(&r)
    }

    async fn append_event(&self, e: NewEvent) -> Result<i64> {
        let r = sqlx::query(
            "INSERT INTO events (at, kind, server_id, node_id, data) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(ts(e.at))
        .bind(&e.kind)
        .bind(e.server)
        .bind(e.node)
        .bind(&e.data)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.get("seq"))
    }

    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, server_id, node_id, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(Self::event_row).collect())
    }

    async fn events_of(&self, kinds: &[&str], since: Millis, after: i64, limit: u32) -> Result<Vec<Event>> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let rows = sqlx::query(
            "SELECT seq, at, kind, server_id, node_id, data FROM events \
             WHERE kind = ANY($1) AND at >= $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(&kinds)
        .bind(ts(since))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(Self::event_row).collect())
    }

    async fn latest_events(&self, kinds: &[&str], limit: u32) -> Result<Vec<Event>> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let rows = sqlx::query(
            "SELECT seq, at, kind, server_id, node_id, data FROM events WHERE kind = ANY($1) ORDER BY seq DESC LIMIT $2",
        )
        .bind(&kinds)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(Self::event_row).collect())
    }

    async fn begin_intent(&self, key: &str, action: &str, data: serde_json::Value, now: Millis) -> Result<Intent> {
        let q = format!(
            "WITH ins AS (
                INSERT INTO intents (key, action, data, state, created_at) VALUES ($1, $2, $3, 'pending', $4)
                ON CONFLICT (key) DO NOTHING RETURNING {INTENT_COLUMNS})
             SELECT {INTENT_COLUMNS} FROM ins UNION ALL SELECT {INTENT_COLUMNS} FROM intents WHERE key = $1 LIMIT 1"
        );
        let r =
            sqlx::query(&q).bind(key).bind(action).bind(&data).bind(ts(now)).fetch_one(&self.pool).await.map_err(db)?;
        Self::intent_row(&r)
    }

    async fn finish_intent(&self, id: i64, ok: bool, outcome: serde_json::Value, now: Millis) -> Result<Intent> {
        let state = if ok { IntentState::Done } else { IntentState::Failed };
        let r = sqlx::query(&format!(
            "UPDATE intents SET state = $2, outcome = $3, finished_at = $4 WHERE id = $1 AND state = 'pending'
             RETURNING {INTENT_COLUMNS}"
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(&outcome)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match r {
            Some(r) => Self::intent_row(&r),
            None => {
                let existing = sqlx::query("SELECT state FROM intents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                match existing {
                    Some(r) => {
                        Err(StoreError::Conflict(format!("intent {id} is already {}", r.get::<String, _>("state"))))
                    }
                    None => Err(StoreError::NotFound { what: "intent", id: id.to_string() }),
                }
            }
        }
    }

    async fn pending_intents(&self) -> Result<Vec<Intent>> {
        let rows = sqlx::query(&format!("SELECT {INTENT_COLUMNS} FROM intents WHERE state = 'pending' ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(Self::intent_row).collect()
    }

    async fn post(&self, e: NewEntry) -> Result<Posted> {
        e.check()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Insert-if-absent: a concurrent posting of the same key waits for this transaction
        // and then inserts nothing.
        let inserted = sqlx::query(&format!(
            "INSERT INTO ledger (owner_id, kind, amount, key, at, server_id, window_start, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING RETURNING {LEDGER_COLUMNS}"
        ))
        .bind(e.owner)
        .bind(e.kind.as_str())
        .bind(e.amount)
        .bind(&e.key)
        .bind(ts(e.at))
        .bind(e.server)
        .bind(e.window_start.map(ts))
        .bind(&e.data)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|x| match db(x) {
            StoreError::NotFound { .. } => StoreError::NotFound { what: "owner or server", id: e.owner.to_string() },
            other => other,
        })?;
        if let Some(row) = inserted {
            let entry = Self::entry_row(&row)?;
            let r = sqlx::query(
                "INSERT INTO balances (owner_id, balance) VALUES ($1, $2) \
                 ON CONFLICT (owner_id) DO UPDATE SET balance = balances.balance + EXCLUDED.balance RETURNING balance",
            )
            .bind(e.owner)
            .bind(e.amount)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(Posted { entry, new: true, balance: r.get("balance") });
        }
        tx.rollback().await.map_err(db)?;
        let row = sqlx::query(&format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE key = $1"))
            .bind(&e.key)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let old = Self::entry_row(&row)?;
        if !e.same_as(&old) {
            return Err(StoreError::Conflict(format!("key {:?} belongs to another entry", e.key)));
        }
        let balance = self.balance(old.owner).await?;
        Ok(Posted { entry: old, new: false, balance })
    }

    async fn balance(&self, owner: i64) -> Result<Money> {
        self.owner(owner).await?;
        let r = sqlx::query("SELECT balance FROM balances WHERE owner_id = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.map_or(Money::ZERO, |r| r.get("balance")))
    }

    async fn ledger(&self, owner: i64, after: i64, limit: u32) -> Result<Vec<Entry>> {
        self.owner(owner).await?;
        let rows = sqlx::query(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(owner)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::entry_row).collect()
    }

    async fn add_host(&self, server: i64, host: &str, now: Millis) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO server_hosts (host, server_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (host) DO UPDATE SET host = EXCLUDED.host RETURNING server_id",
        )
        .bind(host)
        .bind(server)
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match db(e) {
            StoreError::NotFound { .. } => StoreError::NotFound { what: "server", id: server.to_string() },
            other => other,
        })?;
        let holder: i64 = r.get("server_id");
        if holder != server {
            return Err(StoreError::Conflict(format!("the host name {host:?} belongs to another server")));
        }
        Ok(())
    }

    async fn remove_host(&self, server: i64, host: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM server_hosts WHERE host = $1 AND server_id = $2")
            .bind(host)
            .bind(server)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn hosts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT host, server_id FROM server_hosts ORDER BY host")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| (r.get("host"), r.get("server_id"))).collect())
    }

    async fn create_job(&self, j: NewJob, now: Millis) -> Result<Job> {
        let ram = i32::try_from(j.ram_mib).map_err(|_| StoreError::Invalid("ram_mib too large".into()))?;
        let max =
            i64::try_from(j.max_duration_s).map_err(|_| StoreError::Invalid("max_duration_s too large".into()))?;
        let r = sqlx::query(&format!(
            "INSERT INTO jobs (owner_id, image, cmd, ram_mib, max_duration_s, price_per_gib_hour, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {JOB_COLUMNS}"
        ))
        .bind(j.owner)
        .bind(&j.image)
        .bind(serde_json::json!(j.cmd))
        .bind(ram)
        .bind(max)
        .bind(j.price_per_gib_hour)
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Self::job_row(&r)
    }

    async fn job(&self, id: i64) -> Result<Job> {
        let r = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound { what: "job", id: id.to_string() })?;
        Self::job_row(&r)
    }

    async fn jobs(&self, owner: Option<i64>) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE $1::BIGINT IS NULL OR owner_id = $1 ORDER BY id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::job_row).collect()
    }

    async fn update_job(&self, j: &Job) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET state = $2, node_id = $3, started_at = $4, kill_at = $5, ended_at = $6, outcome = $7 \
             WHERE id = $1",
        )
        .bind(j.id)
        .bind(j.state.as_str())
        .bind(j.node)
        .bind(j.started_at.map(ts))
        .bind(j.kill_at.map(ts))
        .bind(j.ended_at.map(ts))
        .bind(&j.outcome)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "job", id: j.id.to_string() });
        }
        Ok(())
    }

    async fn save_forecast(&self, document: serde_json::Value, now: Millis) -> Result<i64> {
        let r = sqlx::query("INSERT INTO forecasts (made_at, document) VALUES ($1, $2) RETURNING id")
            .bind(ts(now))
            .bind(&document)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.get("id"))
    }

    async fn latest_forecast(&self) -> Result<Option<(Millis, serde_json::Value)>> {
        let r = sqlx::query("SELECT made_at, document FROM forecasts ORDER BY id DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.map(|r| (ms(r.get("made_at")), r.get("document"))))
    }
}
