//! Demand datasets (SPEC §4): `meta.toml`, `servers.csv`, `sessions.csv`.
//!
//! Loading validates every row; bad rows are reported with file, line, column and
//! reason, and nothing is silently dropped. Disk sizes are held as integer MB
//! (`disk_gb` × 1000, rounded to the nearest MB).

use conductor_core::lifecycle;
use conductor_core::model::CostMode;
use conductor_core::{Millis, ServerSpec};
use conductor_forecast::timefmt::{format_rfc3339, parse_rfc3339};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// At most this many problems are listed in one error.
const MAX_LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with one place in a dataset file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// 1-based line, when the problem is on a line.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ": column `{column}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "invalid dataset: {n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in self.0.iter().take(MAX_LISTED) {
            write!(f, "\n  {p}")?;
        }
        if n > MAX_LISTED {
            write!(f, "\n  … and {} more", n - MAX_LISTED)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub timezone: chrono_tz::Tz,
    pub start: Millis,
    pub end: Millis,
    pub source: String,
    pub license: String,
    pub notes: String,
}

/// `meta.toml` as written in the file (timestamps still RFC 3339 text).
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeta {
    pub name: String,
    pub timezone: String,
    pub start: String,
    pub end: String,
    pub source: String,
    pub license: String,
    #[serde(default)]
    pub notes: String,
    /// What a live fleet measured (`conductor export` writes it); a scenario may take its
    /// lifecycle delays from here (`lifecycle.delays_from = "dataset"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    /// How a synthetic dataset's demand was made (`conductor dataset generate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
}

/// `[generator]` in a synthetic dataset's `meta.toml`: its demand model.
#[derive(Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// `irregular` (sessions drawn day by day) or `habits` (weekly routines on a share of
    /// the servers, beside irregular play).
    pub demand: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub habit_share: Option<f64>,
}

/// Delays measured by a live fleet, each fitted as a log-normal distribution.
#[derive(Deserialize, serde::Serialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// From a placement without restore to the server answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Fit>,
    /// From the cloud's create of a VM to its engine being ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Fit>,
    /// Worlds restored from the archive: their size over the time from placement to the
    /// world in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Bandwidth>,
}

/// A measured bandwidth: total MB over total seconds of some copies.
#[derive(Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    pub samples: u32,
    pub mb_per_s: f64,
}

impl Bandwidth {
    /// Of copies of (bytes, ms); `None` without any (or none that took time).
    pub fn of(copies: &[(u64, Millis)]) -> Option<Bandwidth> {
        let bytes: u64 = copies.iter().map(|c| c.0).sum();
        let ms: Millis = copies.iter().map(|c| c.1.max(0)).sum();
        if copies.is_empty() || ms == 0 {
            return None;
        }
        let mb_per_s = bytes as f64 / 1e6 / (ms as f64 / 1000.0);
        Some(Bandwidth { samples: copies.len() as u32, mb_per_s: (mb_per_s * 10.0).round() / 10.0 })
    }
}

/// A log-normal fit: the median and the standard deviation of the natural logarithm.
#[derive(Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fit {
    pub samples: u32,
    pub median_s: f64,
    pub sigma: f64,
}

impl Fit {
    /// The fit of some durations (ms); `None` without any.
    pub fn of(durations_ms: &[Millis]) -> Option<Fit> {
        if durations_ms.is_empty() {
            return None;
        }
        let logs: Vec<f64> = durations_ms.iter().map(|&d| (d.max(1) as f64 / 1000.0).ln()).collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let var = logs.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / n;
        // Rounded: the text of meta.toml stays the same for the same events.
        let round = |x: f64, scale: f64| (x * scale).round() / scale;
        Some(Fit {
            samples: logs.len() as u32,
            median_s: round(mean.exp(), 1000.0),
            sigma: round(var.sqrt(), 10_000.0),
        })
    }
}

/// The `[measured]` table of a dataset's `meta.toml`, if it has one.
pub fn measured(dir: &Path) -> Result<Option<Measured>, String> {
    Ok(raw_meta(dir)?.measured)
}

/// A dataset's `meta.toml` as written.
pub fn raw_meta(dir: &Path) -> Result<RawMeta, String> {
    let path = dir.join("meta.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: String,
    /// Index into [`Dataset::owners`].
    pub owner: u32,
    pub ram_mib: u32,
    pub disk_mb: u64,
    pub cpu_cores: Option<f64>,
    pub pay_per_use: bool,
    pub cost_mode: CostMode,
    pub created_at: Millis,
}

impl Server {
    pub fn spec(&self) -> ServerSpec {
        ServerSpec {
            ram_mib: self.ram_mib,
            disk_mb: self.disk_mb,
            pay_per_use: self.pay_per_use,
            cost_mode: self.cost_mode,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Index into [`Dataset::servers`].
    pub server: u32,
    pub start: Millis,
    pub end: Millis,
    pub players: u32,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub meta: Meta,
    pub servers: Vec<Server>,
    pub owners: Vec<String>,
    /// In file order: the index is the row order ("input order").
    pub sessions: Vec<Session>,
}

impl Dataset {
    /// Reads and validates the dataset in `dir`.
    pub fn load(dir: &Path) -> Result<Dataset, DatasetError> {
        let mut problems = Vec::new();
        let meta_path = dir.join("meta.toml");
        let meta = read(&meta_path).map(|text| parse_meta(&meta_path, &text, &mut problems))?;
        let servers_path = dir.join("servers.csv");
        let (servers, owners) = load_servers(&servers_path, &mut problems)?;
        let index: HashMap<&str, u32> = servers.iter().enumerate().map(|(i, s)| (s.id.as_str(), i as u32)).collect();
        let sessions = load_sessions(&dir.join("sessions.csv"), &index, &mut problems)?;
        match meta {
            Some(meta) if problems.is_empty() => {
                Ok(Dataset { dir: dir.to_path_buf(), meta, servers, owners, sessions })
            }
            _ => Err(DatasetError::Invalid(problems)),
        }
    }

    /// Writes the dataset into `dir` (created) as `load` reads it back, with `meta` as its
    /// `meta.toml` (the caller says where it came from).
    pub fn write(&self, dir: &Path, meta: &RawMeta) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("meta.toml"), toml::to_string(meta).map_err(std::io::Error::other)?)?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("servers.csv"))?);
        writeln!(w, "{}", SERVER_COLUMNS.join(","))?;
        for s in &self.servers {
            let mode = match s.cost_mode {
                CostMode::Off => "off",
                CostMode::Suggest => "suggest",
                CostMode::Auto => "auto",
            };
            let cores = s.cpu_cores.map(|c| c.to_string()).unwrap_or_default();
            let disk_gb = s.disk_mb as f64 / 1000.0;
            let owner = &self.owners[s.owner as usize];
            let created = format_rfc3339(s.created_at);
            writeln!(w, "{},{owner},{},{disk_gb},{cores},{},{mode},{created}", s.id, s.ram_mib, s.pay_per_use)?;
        }
        w.flush()?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("sessions.csv"))?);
        writeln!(w, "server_id,start,end,players")?;
        for x in &self.sessions {
            let id = &self.servers[x.server as usize].id;
            writeln!(w, "{id},{},{},{}", format_rfc3339(x.start), format_rfc3339(x.end), x.players)?;
        }
        w.flush()
    }

    /// Specs of all servers in [`ServerId`](conductor_core::ServerId) order.
    pub fn specs(&self) -> Vec<ServerSpec> {
        self.servers.iter().map(Server::spec).collect()
    }

    /// Sign-up time of each owner: the earliest `created_at` of its servers.
    pub fn owner_signups(&self) -> Vec<Millis> {
        let mut signup = vec![Millis::MAX; self.owners.len()];
        for s in &self.servers {
            let t = &mut signup[s.owner as usize];
            *t = (*t).min(s.created_at);
        }
        signup
    }
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })
}

fn parse_meta(path: &Path, text: &str, problems: &mut Vec<Problem>) -> Option<Meta> {
    let mut problem = |column: Option<&str>, reason: String| {
        problems.push(Problem { path: path.to_path_buf(), line: None, column: column.map(str::to_owned), reason })
    };
    let raw: RawMeta = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            problem(None, e.message().to_owned());
            return None;
        }
    };
    let timezone = raw
        .timezone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| {
            problem(
                Some("timezone"),
                format!("unknown time zone {:?} (expected an IANA name such as Europe/Berlin)", raw.timezone),
            )
        })
        .ok();
    let start = parse_rfc3339(&raw.start).map_err(|e| problem(Some("start"), e)).ok();
    let end = parse_rfc3339(&raw.end).map_err(|e| problem(Some("end"), e)).ok();
    let (timezone, start, end) = (timezone?, start?, end?);
    if end <= start {
        problem(Some("end"), format!("end {} must be after start {}", raw.end, raw.start));
        return None;
    }
    Some(Meta { name: raw.name, timezone, start, end, source: raw.source, license: raw.license, notes: raw.notes })
}

/// A CSV file with named columns, read row by row with line numbers.
struct Csv<'p> {
    path: &'p Path,
    reader: csv::Reader<std::fs::File>,
    columns: Vec<usize>,
}

impl<'p> Csv<'p> {
    fn open(path: &'p Path, wanted: &[&str], problems: &mut Vec<Problem>) -> Result<Option<Self>, DatasetError> {
        let file = std::fs::File::open(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(file);
        let header = match reader.byte_headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                problems.push(Problem { path: path.to_path_buf(), line: Some(1), column: None, reason: e.to_string() });
                return Ok(None);
            }
        };
        let names: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).trim().to_owned()).collect();
        let mut columns = Vec::new();
        let mut missing = Vec::new();
        for w in wanted {
            match names.iter().position(|n| n == w) {
                Some(i) => columns.push(i),
                None => missing.push(*w),
            }
        }
        if !missing.is_empty() {
            problems.push(Problem {
                path: path.to_path_buf(),
                line: Some(1),
                column: None,
                reason: format!("header lacks column(s) {} (has: {})", missing.join(", "), names.join(", ")),
            });
            return Ok(None);
        }
        Ok(Some(Csv { path, reader, columns }))
    }

    /// Calls `row` for every record with its line and a field getter.
    fn for_each(mut self, problems: &mut Vec<Problem>, mut row: impl FnMut(u64, &Fields<'_>, &mut Vec<Problem>)) {
        let mut record = csv::ByteRecord::new();
        loop {
            match self.reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let fields = Fields { record: &record, columns: &self.columns, path: self.path, line };
                    row(line, &fields, problems);
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line());
                    problems.push(Problem { path: self.path.to_path_buf(), line, column: None, reason: e.to_string() });
                    if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                        break;
                    }
                }
            }
        }
    }
}

struct Fields<'a> {
    record: &'a csv::ByteRecord,
    columns: &'a [usize],
    path: &'a Path,
    line: u64,
}

impl Fields<'_> {
    /// The trimmed text of wanted column `i`, or a problem naming `name`.
    fn get(&self, i: usize, name: &str, problems: &mut Vec<Problem>) -> Option<&str> {
        let raw = self.record.get(self.columns[i]).unwrap_or(b"");
        match std::str::from_utf8(raw) {
            Ok(s) => Some(s.trim()),
            Err(_) => {
                self.problem(name, "not valid UTF-8".into(), problems);
                None
            }
        }
    }

    fn parse<T>(
        &self,
        i: usize,
        name: &str,
        problems: &mut Vec<Problem>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.get(i, name, problems)?;
        f(text).map_err(|reason| self.problem(name, reason, problems)).ok()
    }

    fn problem(&self, column: &str, reason: String, problems: &mut Vec<Problem>) {
        problems.push(Problem {
            path: self.path.to_path_buf(),
            line: Some(self.line),
            column: Some(column.to_owned()),
            reason,
        });
    }
}

const SERVER_COLUMNS: [&str; 8] =
    ["server_id", "owner_id", "ram_mib", "disk_gb", "cpu_cores", "pay_per_use", "cost_mode", "created_at"];

fn load_servers(path: &Path, problems: &mut Vec<Problem>) -> Result<(Vec<Server>, Vec<String>), DatasetError> {
    let mut servers = Vec::new();
    let mut owners: Vec<String> = Vec::new();
    let mut owner_index: HashMap<String, u32> = HashMap::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let Some(csv) = Csv::open(path, &SERVER_COLUMNS, problems)? else { return Ok((servers, owners)) };
    csv.for_each(problems, |line, f, problems| {
        let id = f.parse(0, "server_id", problems, |s| nonempty(s).map(str::to_owned));
        let owner = f.parse(1, "owner_id", problems, |s| nonempty(s).map(str::to_owned));
        let ram_mib = f.parse(2, "ram_mib", problems, |s| match s.parse::<u32>() {
            Ok(0) => Err("RAM must be positive".into()),
            Ok(v) => Ok(v),
            Err(_) => Err(format!("expected a positive integer number of MiB, got {s:?}")),
        });
        let disk_mb = f.parse(3, "disk_gb", problems, parse_disk_mb);
        let cpu_cores = f.parse(4, "cpu_cores", problems, |s| {
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
                _ => Err(format!("expected a positive number of cores or nothing, got {s:?}")),
            }
        });
        let pay_per_use = f.parse(5, "pay_per_use", problems, parse_bool);
        let cost_mode = f.parse(6, "cost_mode", problems, |s| match s {
            "off" => Ok(CostMode::Off),
            "suggest" => Ok(CostMode::Suggest),
            "auto" => Ok(CostMode::Auto),
            _ => Err(format!("expected off, suggest or auto, got {s:?}")),
        });
        let created_at = f.parse(7, "created_at", problems, parse_rfc3339);
        let (
            Some(id),
            Some(owner),
            Some(ram_mib),
            Some(disk_mb),
            Some(cpu_cores),
            Some(pay_per_use),
            Some(cost_mode),
            Some(created_at),
        ) = (id, owner, ram_mib, disk_mb, cpu_cores, pay_per_use, cost_mode, created_at)
        else {
            return;
        };
        if let Some(first) = seen.get(&id) {
            f.problem("server_id", format!("duplicate server id {id:?} (first on line {first})"), problems);
            return;
        }
        seen.insert(id.clone(), line);
        let next = owners.len() as u32;
        let owner = *owner_index.entry(owner).or_insert_with_key(|k| {
            owners.push(k.clone());
            next
        });
        servers.push(Server { id, owner, ram_mib, disk_mb, cpu_cores, pay_per_use, cost_mode, created_at });
    });
    Ok((servers, owners))
}

const SESSION_COLUMNS: [&str; 4] = ["server_id", "start", "end", "players"];

fn load_sessions(
    path: &Path,
    index: &HashMap<&str, u32>,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Session>, DatasetError> {
    let mut sessions = Vec::new();
    let Some(csv) = Csv::open(path, &SESSION_COLUMNS, problems)? else { return Ok(sessions) };
    csv.for_each(problems, |_, f, problems| {
        let server = f.parse(0, "server_id", problems, |s| {
            index.get(s).copied().ok_or_else(|| format!("unknown server {s:?} (not in servers.csv)"))
        });
        let start = f.parse(1, "start", problems, parse_rfc3339);
        let end = f.parse(2, "end", problems, parse_rfc3339);
        let players = f.parse(3, "players", problems, |s| {
            s.parse::<u32>().map_err(|_| format!("expected a non-negative integer, got {s:?}"))
        });
        let (Some(server), Some(start), Some(end), Some(players)) = (server, start, end, players) else { return };
        if end <= start {
            f.problem(
                "end",
                format!("end {} is not after start {}", format_rfc3339(end), format_rfc3339(start)),
                problems,
            );
            return;
        }
        sessions.push(Session { server, start, end, players });
    });
    Ok(sessions)
}

fn nonempty(s: &str) -> Result<&str, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s)
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// GB (10^9 bytes, decimal) → whole MB, rounded to nearest.
fn parse_disk_mb(s: &str) -> Result<u64, String> {
    match s.parse::<f64>() {
        Ok(gb) if (0.0..1e9).contains(&gb) => Ok((gb * 1000.0).round() as u64),
        _ => Err(format!("expected a non-negative number of GB, got {s:?}")),
    }
}

/// A wanted run interval of one server (SPEC §4): the merged union of its sessions,
/// extended by the idle timeout for pay-per-use servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub server: u32,
    pub start: Millis,
    pub end: Millis,
    /// Row index (in sessions.csv order) of the session that opens the interval; breaks
    /// ties between requests at the same instant ("input order").
    pub first_row: u32,
}

/// Wanted run intervals of every server; touching or overlapping intervals merge.
/// Sorted by (start, first_row).
pub fn wanted_intervals(ds: &Dataset, idle_timeout: Millis) -> Vec<Interval> {
    let mut order: Vec<u32> = (0..ds.sessions.len() as u32).collect();
    order.sort_unstable_by_key(|&i| {
        let s = &ds.sessions[i as usize];
        (s.server, s.start, i)
    });
    let mut out: Vec<Interval> = Vec::with_capacity(order.len());
    let mut current: Option<Interval> = None;
    for i in order {
        let s = ds.sessions[i as usize];
        let end = lifecycle::stop_at(ds.servers[s.server as usize].pay_per_use, s.end, idle_timeout);
        match current.as_mut() {
            Some(c) if c.server == s.server && lifecycle::continues(c.end, s.start) => c.end = c.end.max(end),
            _ => {
                out.extend(current.take());
                current = Some(Interval { server: s.server, start: s.start, end, first_row: i });
            }
        }
    }
    out.extend(current);
    out.sort_unstable_by_key(|iv| (iv.start, iv.first_row));
    out
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} → {}, {})", self.name, format_rfc3339(self.start), format_rfc3339(self.end), self.timezone)
    }
}

impl Dataset {
    /// The demand history before `until`, as the forecaster's input: wanted run intervals
    /// (with the idle timeout), sessions with players and owner sign-ups, clipped at `until`.
    pub fn history(
        &self,
        idle_timeout: Millis,
        sleep_window: Millis,
        until: Millis,
    ) -> conductor_forecast::aggregate::History {
        use conductor_forecast::aggregate::{History, ServerInfo};
        History {
            servers: self
                .servers
                .iter()
                .map(|s| ServerInfo { ram_mib: s.ram_mib, disk_mb: s.disk_mb, cpu_cores: s.cpu_cores })
                .collect(),
            intervals: wanted_intervals(self, idle_timeout)
                .into_iter()
                .filter(|iv| iv.start < until)
                .map(|iv| (iv.server, iv.start, iv.end.min(until)))
                .collect(),
            sessions: self
                .sessions
                .iter()
                .filter(|s| s.start < until)
                .map(|s| (s.server, s.start, s.end.min(until), s.players))
                .collect(),
            signups: self.owner_signups().into_iter().filter(|&t| t < until).collect(),
            sleep_window,
        }
    }
}
