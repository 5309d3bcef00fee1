//! Bad datasets and scenarios give precise messages (file, line, column or key, reason)
//! and no result; the generator and the engine are deterministic.

mod common;
use common::*;
use conductor_sim::dataset::{wanted_intervals, Dataset};
use conductor_sim::generate::{self, GenConfig};
use conductor_sim::scenario::Scenario;
use std::path::{Path, PathBuf};

/// A fresh directory under the target's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conductor-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const META: &str = r#"name = "t"
timezone = "Europe/Berlin"
start = "2025-01-06T00:00:00Z"
end = "2025-01-07T00:00:00Z"
source = "test"
license = "CC0-1.0"
"#;
const SERVERS: &str = "server_id,owner_id,ram_mib,disk_gb,cpu_cores,pay_per_use,cost_mode,created_at
s1,o1,4096,2.5,2,true,off,2024-12-01T00:00:00Z
s2,o1,2048,1,,false,auto,2024-12-01T00:00:00+01:00
";
const SESSIONS: &str = "server_id,start,end,players
s1,2025-01-06T10:00:00Z,2025-01-06T11:00:00Z,3
s2,2025-01-06T12:00:00Z,2025-01-06T13:00:00Z,1
";

fn write_dataset(name: &str, meta: &str, servers: &str, sessions: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("meta.toml"), meta).unwrap();
    std::fs::write(dir.join("servers.csv"), servers).unwrap();
    std::fs::write(dir.join("sessions.csv"), sessions).unwrap();
    dir
}

fn load_err(name: &str, meta: &str, servers: &str, sessions: &str) -> String {
    let dir = write_dataset(name, meta, servers, sessions);
    match Dataset::load(&dir) {
        Ok(_) => panic!("dataset {name} should be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_dataset_loads() {
    let dir = write_dataset("good", META, SERVERS, SESSIONS);
    let ds = Dataset::load(&dir).unwrap();
    assert_eq!((ds.servers.len(), ds.owners.len(), ds.sessions.len()), (2, 1, 2));
    assert_eq!(ds.servers[0].disk_mb, 2500);
    assert_eq!(ds.servers[1].cpu_cores, None);
    // +01:00 offset honoured: 2024-12-01T00:00:00+01:00 is one hour before the Z one.
    assert_eq!(ds.servers[0].created_at - ds.servers[1].created_at, h(1));
}

#[test]
fn bad_rows_name_file_line_column_and_reason() {
    let servers = format!("{SERVERS}s3,o2,-5,1,1,true,off,2024-12-01T00:00:00Z\ns4,o2,1024,1,1,maybe,off,2024-12-01T00:00:00Z\ns1,o3,1024,1,1,true,off,2024-12-01T00:00:00Z\n");
    let sessions = format!(
        "{SESSIONS}ghost,2025-01-06T10:00:00Z,2025-01-06T11:00:00Z,1\ns1,2025-01-06T12:00:00Z,2025-01-06T11:00:00Z,1\ns2,2025-01-06 12:00,2025-01-06T13:00:00Z,1\ns2,2025-01-06T14:00:00Z,2025-01-06T15:00:00Z,-1\n"
    );
    let e = load_err("bad-rows", META, &servers, &sessions);
    for expected in [
        "servers.csv:4: column `ram_mib`: expected a positive integer number of MiB, got \"-5\"",
        "servers.csv:5: column `pay_per_use`: expected true or false, got \"maybe\"",
        "servers.csv:6: column `server_id`: duplicate server id \"s1\" (first on line 2)",
        "sessions.csv:4: column `server_id`: unknown server \"ghost\" (not in servers.csv)",
        "sessions.csv:5: column `end`: end 2025-01-06T11:00:00Z is not after start 2025-01-06T12:00:00Z",
        "sessions.csv:6: column `start`: expected an RFC 3339 timestamp",
        "sessions.csv:7: column `players`: expected a non-negative integer, got \"-1\"",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    assert!(e.starts_with("invalid dataset: 7 problems"), "{e}");
}

#[test]
fn zero_ram_missing_columns_and_bad_meta_are_rejected() {
    let e = load_err("zero-ram", META, &SERVERS.replace("s1,o1,4096", "s1,o1,0"), SESSIONS);
    assert!(e.contains("servers.csv:2: column `ram_mib`: RAM must be positive"), "{e}");

    let e = load_err("no-column", META, SERVERS, "server_id,start,players\ns1,2025-01-06T10:00:00Z,1\n");
    assert!(e.contains("sessions.csv:1: header lacks column(s) end"), "{e}");

    let e = load_err("bad-meta", &META.replace("Europe/Berlin", "Mars/Olympus"), SERVERS, SESSIONS);
    assert!(e.contains("meta.toml: column `timezone`: unknown time zone \"Mars/Olympus\""), "{e}");

    let e = load_err("meta-window", &META.replace("2025-01-07", "2025-01-05"), SERVERS, SESSIONS);
    assert!(e.contains("meta.toml: column `end`: end 2025-01-05T00:00:00Z must be after start"), "{e}");

    let e = load_err("meta-key", &format!("{META}colour = \"red\"\n"), SERVERS, SESSIONS);
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[test]
fn a_missing_file_is_named() {
    let dir = temp_dir("missing");
    let e = Dataset::load(&dir).unwrap_err().to_string();
    assert!(e.contains("meta.toml"), "{e}");
}

fn scenario_err(text: &str) -> String {
    let full = format!("name = \"t\"\ndataset = \"x\"\n{text}");
    Scenario::parse(Path::new("bad.toml"), &full).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn scenario_errors_name_the_key() {
    let cases = [
        ("[[fleet.dedicated]]\ntype = \"AX41\"\ncolour = 1\n", "bad.toml: key `fleet.dedicated[0].colour`: unknown field `colour`, expected `type` or `count` (line 5)"),
        ("[[fleet.dedicated]]\ntype = \"AX99\"\n", "key `fleet.dedicated[0].type`: unknown dedicated type \"AX99\" (catalogue has: AX41)"),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[policy]\nkind = \"reference\"\nup = 0.9\n", "key `policy.up`: the reference policy is pinned"),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[policy]\nkind = \"custom\"\nup = 0.2\n", "key `policy.down`: must be below policy.up"),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[lifecycle]\nboot_s = -3\n", "key `lifecycle.boot_s`: expected a non-negative duration"),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[prices]\npromo_credit_eur = \"five\"\n", "key `prices.promo_credit_eur`: expected a decimal number, got \"five\""),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = \"many\"\n", "key `fleet.cloud.max_vms`: invalid type"),
        ("[policy]\nkind = \"magic\"\n", "key `policy.kind`: unknown variant `magic`"),
        ("[policy]\nkind = \"fixed\"\n", "key `fleet`: the fleet is empty"),
        ("[window]\nstart = \"2025-01-02T00:00:00Z\"\nend = \"2025-01-01T00:00:00Z\"\n", "key `window.end`: the window must end after it starts"),
        (
            "[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[lifecycle]\nboot_distribution = { kind = \"uniform\", min_s = 30, max_s = 10 }\n",
            "key `lifecycle.boot_distribution.max_s`: must not be below min_s",
        ),
        ("[types.cloud.x]\nram_gib = 4\ncores = 1\ndisk_gb = 1\nhourly_eur = -1\nmonthly_cap_eur = 1\n", "key `types.cloud.x.hourly_eur`: a price cannot be negative"),
        ("name2 = 1\n", "unknown field `name2`"),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[failures]\nfailed_start_share = 1\n", "key `failures.failed_start_share`: expected a share from 0 up to (not including) 1"),
        ("[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 2\n[failures]\ncrashes_per_server_day = -1\n", "key `failures.crashes_per_server_day`: expected a non-negative rate"),
    ];
    for (text, expected) in cases {
        let e = scenario_err(text);
        assert!(e.contains(expected), "for\n{text}\nexpected {expected:?}, got:\n{e}");
    }
}

#[test]
fn the_shipped_scenarios_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let reference = Scenario::load(&root.join("reference.toml")).unwrap();
    // SPEC: 2 × AX41 (64 GiB, reserve 2300 MiB, 70 EUR/month); cpx32 (8 GiB, 15 %, 0.016/h, cap 11.99); max 20.
    assert_eq!(reference.dedicated.len(), 2);
    assert!(reference
        .dedicated
        .iter()
        .all(|d| d.ram_mib == 65536 && d.usable_mib() == 63236 && d.monthly_eur == common::d("70")));
    let vm = reference.cloud.as_ref().unwrap();
    assert_eq!((vm.name.as_str(), vm.ram_mib, vm.usable_mib()), ("cpx32", 8192, 6963));
    assert_eq!((vm.hourly_eur, vm.monthly_cap_eur), (common::d("0.016"), common::d("11.99")));
    assert_eq!(reference.scheduler.scaling, conductor_core::ScalingPolicy::reference(20));
    Scenario::load(&root.join("baseline.toml")).unwrap();
}

#[test]
fn wanted_intervals_merge_touching_sessions() {
    // Non-pay-per-use: [0,10m) and [10m,20m) touch → one interval; [30m,40m) apart.
    let ds = dataset(h(1), &[srv("a", 1024, 1.0, false)], &[("a", m(30), m(40)), ("a", m(10), m(20)), ("a", 0, m(10))]);
    let iv = wanted_intervals(&ds, m(5));
    let spans: Vec<_> = iv.iter().map(|i| (i.start - T0, i.end - T0, i.first_row)).collect();
    assert_eq!(spans, vec![(0, m(20), 2), (m(30), m(40), 0)]);
}

fn demo_like(seed: u64) -> Dataset {
    let cfg = GenConfig { servers: 300, days: 7, seed, ..GenConfig::default() };
    let dir = temp_dir(&format!("gen-{seed}"));
    generate::write(&dir, &cfg, &generate::generate(&cfg), "test").unwrap();
    Dataset::load(&dir).unwrap()
}

#[test]
fn generator_output_is_valid_and_reproducible() {
    let a = demo_like(11);
    let b = demo_like(11);
    assert_eq!(a.sessions, b.sessions);
    assert_eq!(a.servers, b.servers);
    let c = demo_like(12);
    assert_ne!(a.sessions, c.sessions, "another seed gives other demand");
    assert!(a.sessions.len() > 300, "a week of 300 servers has demand: {}", a.sessions.len());
}

/// Hour-of-day demand of a generated dataset: the daily cycle the issue asks for.
#[test]
fn generated_demand_has_an_evening_peak_and_a_weekend_lift() {
    use chrono::{Datelike, TimeZone, Timelike};
    let cfg = GenConfig { servers: 2000, days: 28, seed: 3, ..GenConfig::default() };
    let g = generate::generate(&cfg);
    let mut by_hour = [0u64; 24];
    let mut by_weekday = [0u64; 7];
    for s in &g.sessions {
        let local = chrono_tz::Europe::Berlin.timestamp_millis_opt(s.start).unwrap();
        by_hour[local.hour() as usize] += 1;
        by_weekday[local.weekday().num_days_from_monday() as usize] += 1;
    }
    let morning: u64 = by_hour[4..9].iter().sum();
    let evening: u64 = by_hour[19..24].iter().sum();
    assert!(evening > 4 * morning, "evening {evening} vs morning {morning}");
    // Saturday (5) above Tuesday (1).
    assert!(by_weekday[5] > by_weekday[1] * 12 / 10, "{by_weekday:?}");
}

/// With weekly routines a server's starts gather at its own weekday and hour, it lapses for
/// weeks and returns; without them play stays scattered — and `habits = 0` is the former
/// model to the byte (its files' SHA-256 before routines existed).
#[test]
fn weekly_routines_make_a_servers_starts_predictable_and_zero_is_the_former_model() {
    use chrono::{Datelike, TimeZone, Timelike};
    use std::collections::HashMap;
    let concentration = |habits: f64| {
        let g = generate::generate(&GenConfig { servers: 400, days: 56, seed: 9, habits, ..GenConfig::default() });
        let mut by_server: HashMap<u32, Vec<i64>> = HashMap::new();
        for s in &g.sessions {
            by_server.entry(s.server).or_default().push(s.start);
        }
        // Per server with 6+ starts: the share of its starts in its busiest (weekday, hour ±1).
        let (mut shares, mut lapses) = (Vec::new(), 0);
        for starts in by_server.values().filter(|v| v.len() >= 6) {
            let slot = |t: i64| {
                let l = chrono_tz::Europe::Berlin.timestamp_millis_opt(t).unwrap();
                (l.weekday().num_days_from_monday(), l.hour())
            };
            let mut count: HashMap<(u32, u32), usize> = HashMap::new();
            for &t in starts {
                *count.entry(slot(t)).or_default() += 1;
            }
            let best = count
                .keys()
                .map(|&(d, h)| (0..3).map(|k| count.get(&(d, (h + 23 + k) % 24)).copied().unwrap_or(0)).sum::<usize>())
                .max()
                .unwrap();
            shares.push(best as f64 / starts.len() as f64);
            // A gap of three weeks or more between two starts, with play before and after.
            lapses += usize::from(starts.windows(2).any(|w| w[1] - w[0] >= 21 * 86_400_000));
        }
        (shares.iter().sum::<f64>() / shares.len() as f64, lapses, shares.len())
    };
    let (irregular, _, n0) = concentration(0.0);
    let (habits, lapses, n1) = concentration(0.8);
    eprintln!("busiest-slot share: irregular {irregular:.2} over {n0} servers, habits {habits:.2} over {n1} ({lapses} with a lapse)");
    assert!(irregular < 0.3, "{irregular}");
    assert!(habits > 0.45 && habits > 2.0 * irregular, "{habits} vs {irregular}");
    assert!(lapses >= 5, "some groups lapse for weeks and return: {lapses}");

    let dir = temp_dir("gen-former");
    let cfg = GenConfig { servers: 300, days: 21, seed: 5, ..GenConfig::default() };
    generate::write(&dir, &cfg, &generate::generate(&cfg), "test").unwrap();
    let sha = |f: &str| {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(std::fs::read(dir.join(f)).unwrap()))
    };
    assert_eq!(sha("servers.csv"), "775e2118d8fc8289ecb4e0233cf075395adadabd5dc3174f58f4a54ac4a47508");
    assert_eq!(sha("sessions.csv"), "f63a5dd753643389d1eb391a02099af61e1a10a29af8635bda872cb22d9f5cc9");
    let meta = std::fs::read_to_string(dir.join("meta.toml")).unwrap();
    assert!(meta.contains("[generator]\ndemand = \"irregular\""), "{meta}");
    let with = temp_dir("gen-habits");
    let cfg = GenConfig { habits: 0.5, ..cfg };
    generate::write(&with, &cfg, &generate::generate(&cfg), "test").unwrap();
    let meta = std::fs::read_to_string(with.join("meta.toml")).unwrap();
    assert!(meta.contains("demand = \"habits\"\nhabit_share = 0.5"), "{meta}");
    Dataset::load(&with).unwrap();
}

#[test]
fn same_scenario_and_seed_give_a_byte_identical_report() {
    let ds = demo_like(5);
    let sc = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/baseline.toml")).unwrap();
    let first = report_json(&sc, &ds);
    let second = report_json(&sc, &ds);
    assert_eq!(first, second);
    // The baseline jitters boot and provisioning times: another seed changes the waits.
    let mut other = sc.clone();
    other.seed += 1;
    let k1 = kpis(&sc, &ds);
    let k2 = kpis(&other, &ds);
    assert_ne!((k1.start_wait_p50_s, k1.start_wait_max_s), (k2.start_wait_p50_s, k2.start_wait_max_s));
}
