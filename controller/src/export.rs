//! `conductor export`: the controller's event log as a SPEC §4 dataset, so that real demand
//! can be replayed in the twin.
//!
//! What a session is, read from the log (per server, in sequence order):
//! - it opens at the first `server.requested` (customer start, or a player waking a
//!   pay-per-use server through the gateway) while none is open;
//! - it closes at `server.stop-requested` (customer stop), `server.idle` (pay-per-use: the
//!   last player left `idle_ms` before the event, so the session ends then), `server.abandoned`
//!   (the request gave up) or `server.slept` (any other stop), whichever comes first;
//! - `players` is the `peak_players` the closing event carries (the most the status ping saw);
//! - a session still open at `until` ends at `until` (its players are not known yet: 0).
//!
//! Sessions that ended before `since` are left out; one that began before it keeps its real
//! start (the twin requests it at the window start, SPEC §11). A session the log shows ending
//! where it began (a wake nobody used) is kept one second long, so its demand is not lost;
//! the count is in the meta notes.

use crate::store::Event;
use conductor_config::dataset::{Fit, Measured};
use conductor_core::time::SECOND;
use conductor_core::Millis;
use conductor_forecast::timefmt::format_rfc3339;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// A server as `GET /v1/servers` lists it, or as its `server.created` event describes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServerRow {
    pub id: i64,
    pub owner: i64,
    pub ram_mib: u32,
    pub disk_mb: u64,
    pub pay_per_use: bool,
    pub cost_mode: String,
    #[serde(deserialize_with = "rfc3339")]
    pub created_at: Millis,
}

impl From<&crate::store::Server> for ServerRow {
    fn from(s: &crate::store::Server) -> Self {
        ServerRow {
            id: s.id,
            owner: s.owner,
            ram_mib: s.ram_mib,
            disk_mb: s.disk_mb,
            pay_per_use: s.pay_per_use,
            cost_mode: crate::store::cost_mode_str(s.cost_mode).into(),
            created_at: s.created_at,
        }
    }
}

fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    let s = String::deserialize(d)?;
    conductor_forecast::timefmt::parse_rfc3339(&s).map_err(serde::de::Error::custom)
}

/// What the dataset's `meta.toml` says besides the window.
#[derive(Clone, Debug)]
pub struct MetaInfo {
    pub name: String,
    pub timezone: String,
    pub source: String,
}

/// One demand interval, as `sessions.csv` has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub server: i64,
    pub start: Millis,
    pub end: Millis,
    pub players: u32,
}

/// The three files of a dataset, and what was counted on the way.
#[derive(Clone, Debug)]
pub struct Export {
    pub servers: Vec<ServerRow>,
    pub sessions: Vec<Session>,
    pub still_open: usize,
    pub lengthened: usize,
    pub meta_toml: String,
}

impl Export {
    pub fn servers_csv(&self) -> String {
        let mut out = String::from("server_id,owner_id,ram_mib,disk_gb,cpu_cores,pay_per_use,cost_mode,created_at\n");
        for s in &self.servers {
            // disk_gb is decimal GB: MB ÷ 1000, exact in three decimals.
            let _ = writeln!(
                out,
                "s{},o{},{},{}.{:03},,{},{},{}",
                s.id,
                s.owner,
                s.ram_mib,
                s.disk_mb / 1000,
                s.disk_mb % 1000,
                s.pay_per_use,
                s.cost_mode,
                format_rfc3339(s.created_at)
            );
        }
        out
    }

    pub fn sessions_csv(&self) -> String {
        let mut out = String::from("server_id,start,end,players\n");
        for s in &self.sessions {
            let _ = writeln!(out, "s{},{},{},{}", s.server, format_rfc3339(s.start), format_rfc3339(s.end), s.players);
        }
        out
    }

    /// Writes `meta.toml`, `servers.csv` and `sessions.csv` into `dir` (created if needed).
    /// An existing dataset there is only replaced with `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), ExportError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ExportError::Io { path, source }
        };
        if !force && dir.join("servers.csv").exists() {
            return Err(ExportError::Invalid(format!(
                "{}: a dataset is already there (use --force to replace it)",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in [
            ("meta.toml", self.meta_toml.clone()),
            ("servers.csv", self.servers_csv()),
            ("sessions.csv", self.sessions_csv()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        Ok(())
    }
}

/// Builds the dataset of the window `[since, until]` from the listed servers and the event
/// log (oldest first). Servers deleted before the export are known from their
/// `server.created` event.
pub fn build(
    listed: &[ServerRow],
    events: &[Event],
    since: Millis,
    until: Millis,
    meta: &MetaInfo,
) -> Result<Export, ExportError> {
    if until <= since {
        return Err(ExportError::Invalid(format!(
            "--until {} is not after --since {}",
            format_rfc3339(until),
            format_rfc3339(since)
        )));
    }
    let mut servers: BTreeMap<i64, ServerRow> = listed.iter().map(|s| (s.id, s.clone())).collect();
    let mut open: HashMap<i64, Millis> = HashMap::new();
    let mut sessions = Vec::new();
    let mut lengthened = 0;
    // The fleet's own delays: placement (no restore) → started; the cloud's create → ready.
    let (mut placed, mut boots): (HashMap<i64, Millis>, Vec<Millis>) = Default::default();
    let (mut created, mut provisioning): (HashMap<i64, Millis>, Vec<Millis>) = Default::default();
    // Restores from the archive: placement → the world in place, with its size.
    let (mut restoring, mut restores): (HashMap<i64, Millis>, Vec<(u64, Millis)>) = Default::default();
    for e in events.iter().filter(|e| e.at <= until) {
        let in_window = e.at >= since;
        match (e.kind.as_str(), e.server, e.node) {
            // A boot from the world on the node (a move's restart is not a boot alone).
            ("server.placed", Some(s), _) if e.data["restore"] == "None" && e.data["migration"] != true => {
                placed.insert(s, e.at);
            }
            ("server.placed", Some(s), _) if e.data["restore"] == "Archive" => {
                placed.remove(&s);
                restoring.insert(s, e.at);
            }
            ("server.placed" | "server.start-failed" | "server.crashed", Some(s), _) => {
                placed.remove(&s);
                restoring.remove(&s);
            }
            ("server.restored", Some(s), _) => {
                if let (Some(at), Some(bytes)) = (restoring.remove(&s), e.data["world_bytes"].as_u64()) {
                    if in_window {
                        restores.push((bytes, e.at - at));
                    }
                }
            }
            ("server.started", Some(s), _) => {
                if let Some(at) = placed.remove(&s).filter(|_| in_window) {
                    boots.push(e.at - at);
                }
            }
            ("node.created", _, Some(n)) => {
                created.insert(n, e.at);
            }
            ("node.ready", _, Some(n)) => {
                if let Some(at) = created.remove(&n).filter(|_| in_window) {
                    provisioning.push(e.at - at);
                }
            }
            _ => {}
        }
        let Some(server) = e.server else { continue };
        match e.kind.as_str() {
            "server.created" => {
                if let Ok(mut row) = serde_json::from_value::<ServerRowData>(e.data.clone()) {
                    servers.entry(server).or_insert_with(|| {
                        row.created_at = e.at;
                        row.into_row(server)
                    });
                }
            }
            "server.requested" => {
                open.entry(server).or_insert(e.at);
            }
            "server.stop-requested" | "server.idle" | "server.abandoned" | "server.slept" => {
                let Some(start) = open.remove(&server) else { continue };
                let end = e.at - e.data["idle_ms"].as_i64().unwrap_or(0);
                let end = if end <= start {
                    lengthened += 1;
                    start + SECOND
                } else {
                    end
                };
                let players = e.data["peak_players"].as_u64().unwrap_or(0) as u32;
                if end > since {
                    sessions.push(Session { server, start, end, players });
                }
            }
            _ => {}
        }
    }
    let still_open = open.len();
    let mut open: Vec<(i64, Millis)> = open.into_iter().collect();
    open.sort_unstable();
    for (server, start) in open {
        if until > start {
            sessions.push(Session { server, start, end: until, players: 0 });
        }
    }
    if let Some(s) = sessions.iter().find(|s| !servers.contains_key(&s.server)) {
        return Err(ExportError::Invalid(format!(
            "server {} has sessions in the event log but is neither listed nor created in it",
            s.server
        )));
    }
    sessions.sort_by_key(|s| (s.start, s.server));
    let servers: Vec<ServerRow> = servers.into_values().filter(|s| s.created_at <= until).collect();
    let measured = Measured {
        boot: Fit::of(&boots),
        provisioning: Fit::of(&provisioning),
        restore: conductor_config::dataset::Bandwidth::of(&restores),
    };
    let mut meta_toml = meta_toml(meta, since, until, servers.len(), &sessions, still_open, lengthened);
    if measured != Measured::default() {
        #[derive(serde::Serialize)]
        struct Table<'a> {
            measured: &'a Measured,
        }
        meta_toml.push('\n');
        meta_toml.push_str(&toml::to_string(&Table { measured: &measured }).expect("plain data"));
    }
    Ok(Export { servers, sessions, still_open, lengthened, meta_toml })
}

/// The plan a `server.created` event carries.
#[derive(Deserialize)]
struct ServerRowData {
    owner: i64,
    ram_mib: u32,
    disk_mb: u64,
    pay_per_use: bool,
    cost_mode: String,
    #[serde(default)]
    created_at: Millis,
}

impl ServerRowData {
    fn into_row(self, id: i64) -> ServerRow {
        ServerRow {
            id,
            owner: self.owner,
            ram_mib: self.ram_mib,
            disk_mb: self.disk_mb,
            pay_per_use: self.pay_per_use,
            cost_mode: self.cost_mode,
            created_at: self.created_at,
        }
    }
}

fn meta_toml(
    meta: &MetaInfo,
    since: Millis,
    until: Millis,
    servers: usize,
    sessions: &[Session],
    still_open: usize,
    lengthened: usize,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let notes = format!(
        "Exported from the controller's event log: {servers} servers, {} sessions; {still_open} still open at the \
         end (ended there, players unknown: 0); {lengthened} that ended where they began kept 1 s long.",
        sessions.len()
    );
    format!(
        "name = {}\ntimezone = {}\nstart = {}\nend = {}\nsource = {}\nlicense = {}\nnotes = {}\n",
        q(&meta.name),
        q(&meta.timezone),
        q(&format_rfc3339(since)),
        q(&format_rfc3339(until)),
        q(&meta.source),
        q("customer data: internal use only"),
        q(&notes)
    )
}

/// Reads the servers and the whole event log from a controller's API (admin token).
pub async fn fetch(base: &str, token: &str) -> Result<(Vec<ServerRow>, Vec<Event>), ExportError> {
    let client = reqwest::Client::new();
    let base = base.trim_end_matches('/');
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let http = |message: String| ExportError::Http { url: url.clone(), message };
            let resp =
                client.get(&url).bearer_auth(token).send().await.map_err(|e| http(crate::driver::with_causes(&e)))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| http(crate::driver::with_causes(&e)))?;
            if !status.is_success() {
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                return Err(http(format!("{status}: {message}")));
            }
            Ok::<_, ExportError>((url, body))
        }
    };
    let (url, body) = get("/v1/servers".into()).await?;
    let servers: Vec<ServerRow> = serde_json::from_slice(&body)
        .map_err(|e| ExportError::Http { url, message: format!("unexpected server list: {e}") })?;
    let mut events: Vec<Event> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let (url, body) = get(format!("/v1/events?after={after}&limit=10000")).await?;
        let page: Vec<Event> = serde_json::from_slice(&body)
            .map_err(|e| ExportError::Http { url, message: format!("unexpected event page: {e}") })?;
        if page.is_empty() {
            return Ok((servers, events));
        }
        events.extend(page);
    }
}
