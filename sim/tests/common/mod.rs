//! A tiny harness: build a dataset in memory, parse a scenario from text, run, look at KPIs.
#![allow(dead_code)]

use conductor_core::model::CostMode;
use conductor_core::time::{HOUR, MINUTE, SECOND};
use conductor_core::Millis;
use conductor_sim::dataset::{Dataset, Meta, Server, Session};
use conductor_sim::engine::{self, Outcome};
use conductor_sim::report::{Kpis, Report, RunInfo};
use conductor_sim::scenario::Scenario;
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Window start of every test dataset: 2025-01-06T00:00:00Z.
pub const T0: Millis = 1_736_121_600_000;

pub fn s(x: i64) -> Millis {
    x * SECOND
}
pub fn m(x: i64) -> Millis {
    x * MINUTE
}
pub fn h(x: i64) -> Millis {
    x * HOUR
}

pub fn d(x: &str) -> Decimal {
    Decimal::from_str(x).unwrap()
}

/// A server: id, RAM MiB, disk GB, pay-per-use. Owners are one per server, signed up
/// before the window unless `created` is given.
pub struct Srv {
    pub id: &'static str,
    pub ram_mib: u32,
    pub disk_gb: f64,
    pub ppu: bool,
    pub created: Millis,
}

pub fn srv(id: &'static str, ram_mib: u32, disk_gb: f64, ppu: bool) -> Srv {
    Srv { id, ram_mib, disk_gb, ppu, created: -h(24) }
}

/// Sessions as (server id, start, end) relative to the window start.
pub fn dataset(window: Millis, servers: &[Srv], sessions: &[(&str, Millis, Millis)]) -> Dataset {
    let servers_out: Vec<Server> = servers
        .iter()
        .enumerate()
        .map(|(i, x)| Server {
            id: x.id.into(),
            owner: i as u32,
            ram_mib: x.ram_mib,
            disk_mb: (x.disk_gb * 1000.0).round() as u64,
            cpu_cores: None,
            pay_per_use: x.ppu,
            cost_mode: CostMode::Off,
            created_at: T0 + x.created,
        })
        .collect();
    let index = |id: &str| servers.iter().position(|x| x.id == id).expect("known server") as u32;
    Dataset {
        dir: PathBuf::from("<test>"),
        meta: Meta {
            name: "test".into(),
            timezone: chrono_tz::Europe::Berlin,
            start: T0,
            end: T0 + window,
            source: "test".into(),
            license: "test".into(),
            notes: String::new(),
        },
        owners: servers.iter().map(|x| format!("owner-{}", x.id)).collect(),
        servers: servers_out,
        sessions: sessions
            .iter()
            .map(|&(id, a, b)| Session { server: index(id), start: T0 + a, end: T0 + b, players: 1 })
            .collect(),
    }
}

/// Test node types: `tiny` has exactly 8192 MiB usable (9 GiB − 1024 MiB); `tinyvm` is a
/// cloud VM with 8192 MiB usable at 0.01 EUR/h.
pub const TYPES: &str = r#"
[types.dedicated.tiny]
ram_gib = 9
cores = 2
disk_gb = 100
monthly_eur = 72
reserve_mib = 1024

[types.cloud.tinyvm]
ram_gib = 9
cores = 2
disk_gb = 100
hourly_eur = 0.01
monthly_cap_eur = 5
reserve_mib = 1024
"#;

pub fn scenario(text: &str) -> Scenario {
    let full = format!("name = \"test\"\ndataset = \"unused\"\n{text}\n{TYPES}");
    Scenario::parse(Path::new("test.toml"), &full).unwrap_or_else(|e| panic!("test scenario: {e}"))
}

pub fn run(sc: &Scenario, ds: &Dataset) -> Outcome {
    engine::run(sc, ds, sc.seed, &mut |_| {})
}

pub fn kpis(sc: &Scenario, ds: &Dataset) -> Kpis {
    Kpis::from_outcome(&run(sc, ds), sc.seed)
}

pub fn report_json(sc: &Scenario, ds: &Dataset) -> String {
    let o = run(sc, ds);
    Report::new(sc, ds, sc.seed, &o, RunInfo::default()).to_json()
}
