//! A seeded generator of realistic demand datasets (SPEC §4).
//!
//! The model, per server:
//! - tier (small 55 %, medium 30 %, large 15 %) fixes plan RAM, disk size, player counts,
//!   the pay-per-use share and session habits: small servers have many short sessions,
//!   large communities long ones, and a few large always-on servers run 24/7;
//! - an engagement level (log-normal across servers; some servers are dormant) scales how
//!   often it is used;
//! - each local day, a Poisson number of sessions whose rate follows the weekday
//!   (Friday/Saturday above Tuesday), German public holidays and school holidays; start
//!   hours follow a daily cycle (low mornings, rising from 15:00, peak 19–23 h), flatter
//!   on weekends and holidays;
//! - owners hold one to several servers; sign-ups are spread over the year before the
//!   window and, for a tenth of the servers, inside it (no sessions before sign-up);
//! - with `habits` > 0, that share of the servers has a weekly routine (a friend group that
//!   plays, say, Friday and Saturday evenings): one to three weekly slots kept with the
//!   server's adherence (55–95 %), start times jittered by a quarter of an hour, lapses of
//!   weeks now and then (the group stops, then returns), and irregular play beside it at a
//!   quarter of the usual rate — so a server's next start is predictable where it would be
//!   in real life. `habits = 0` is the irregular model alone, exactly as before.
//!
//! Same configuration and seed → byte-identical files.

use crate::calendar::{is_public_holiday, school_holiday_share};
use crate::dataset::{Generator, RawMeta};
use crate::timefmt::format_rfc3339;
use chrono::{Datelike, NaiveDate, TimeZone, Weekday};
use chrono_tz::Tz;
use conductor_core::time::{DAY, HOUR, MINUTE, SECOND};
use conductor_core::Millis;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Poisson};
use std::io::{self, BufWriter, Write};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub servers: usize,
    pub days: u32,
    pub seed: u64,
    /// First local day of the window (starts at local midnight).
    pub start: NaiveDate,
    pub timezone: Tz,
    /// Multiplies every server's session rate (1.0 = the calibrated demo load).
    pub activity: f64,
    /// The share of servers (0 to 1) with a weekly routine; 0: irregular play only.
    pub habits: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            servers: 1000,
            days: 14,
            seed: 7,
            start: NaiveDate::from_ymd_opt(2025, 10, 6).expect("valid date"),
            timezone: chrono_tz::Europe::Berlin,
            activity: 1.0,
            habits: 0.0,
        }
    }
}

/// A server's weekly routine: slots (weekday from Monday = 0, local hour, minutes), kept
/// with `adherence`; lapses start with `lapse_per_week` and last `lapse_weeks` on average.
struct Routine {
    slots: Vec<(u32, u32, f64)>,
    adherence: f64,
    lapse_per_week: f64,
    lapse_weeks: f64,
}

/// Which weekday a routine slot falls on: Friday and Saturday evenings lead.
const SLOT_DAYS: [(u32, f64); 7] = [(0, 0.8), (1, 0.8), (2, 0.9), (3, 0.9), (4, 1.6), (5, 1.8), (6, 1.2)];

fn routine(rng: &mut ChaCha8Rng, h: &Habits) -> Routine {
    let n = pick(rng, &[(1usize, 0.45), (2, 0.35), (3, 0.2)]);
    let mut slots: Vec<(u32, u32, f64)> = Vec::with_capacity(n);
    while slots.len() < n {
        let day = pick(rng, &SLOT_DAYS);
        if slots.iter().any(|s| s.0 == day) {
            continue;
        }
        let profile = if day >= 5 { &HOURS_FREE_DAY } else { &HOURS_WEEKDAY };
        let hours: Vec<(u32, f64)> = (0..24u32).map(|hr| (hr, profile[hr as usize].powi(2))).collect();
        let hour = pick(rng, &hours);
        let minutes = h.minutes_manual * LogNormal::new(0.0, 0.3).expect("valid").sample(rng);
        slots.push((day, hour, minutes));
    }
    Routine {
        slots,
        adherence: rng.random_range(0.55..0.95),
        lapse_per_week: 0.06,
        lapse_weeks: rng.random_range(2.0..5.0),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    Small,
    Medium,
    Large,
}

/// Habits of one tier.
struct Habits {
    ram_gib: &'static [(u32, f64)],
    disk_gb: (f64, f64),
    pay_per_use: f64,
    /// Median sessions per day of an engaged server.
    rate: f64,
    /// Median session length, pay-per-use and manual start/stop.
    minutes_ppu: f64,
    minutes_manual: f64,
    /// Base players and mean extra players.
    players: (u32, f64),
    /// Share of manual (not pay-per-use) servers that run 24/7.
    always_on: f64,
}

const SMALL: Habits = Habits {
    ram_gib: &[(1, 0.2), (2, 0.35), (3, 0.15), (4, 0.3)],
    disk_gb: (0.5, 5.0),
    pay_per_use: 0.8,
    rate: 0.12,
    minutes_ppu: 45.0,
    minutes_manual: 120.0,
    players: (1, 1.5),
    always_on: 0.0,
};
const MEDIUM: Habits = Habits {
    ram_gib: &[(5, 0.15), (6, 0.35), (8, 0.5)],
    disk_gb: (2.0, 15.0),
    pay_per_use: 0.65,
    rate: 0.09,
    minutes_ppu: 90.0,
    minutes_manual: 180.0,
    players: (2, 3.0),
    always_on: 0.01,
};
const LARGE: Habits = Habits {
    ram_gib: &[(10, 0.35), (12, 0.35), (16, 0.3)],
    disk_gb: (8.0, 40.0),
    pay_per_use: 0.4,
    rate: 0.08,
    minutes_ppu: 150.0,
    minutes_manual: 240.0,
    players: (3, 8.0),
    always_on: 0.04,
};

/// Relative start-time weight per local hour on a school/work day.
const HOURS_WEEKDAY: [f64; 24] = [
    0.5, 0.3, 0.15, 0.08, 0.05, 0.05, 0.08, 0.12, 0.15, 0.2, 0.25, 0.3, //
    0.4, 0.5, 0.6, 0.9, 1.2, 1.5, 1.8, 2.2, 2.5, 2.5, 2.2, 1.3,
];
/// The same on weekends and holidays: later nights, more daytime play.
const HOURS_FREE_DAY: [f64; 24] = [
    0.8, 0.5, 0.3, 0.15, 0.08, 0.06, 0.08, 0.12, 0.25, 0.5, 0.8, 1.0, //
    1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.9, 2.2, 2.4, 2.4, 2.1, 1.5,
];

fn weekday_factor(w: Weekday) -> f64 {
    match w {
        Weekday::Mon => 0.9,
        Weekday::Tue => 0.85,
        Weekday::Wed => 0.9,
        Weekday::Thu => 0.95,
        Weekday::Fri => 1.2,
        Weekday::Sat => 1.35,
        Weekday::Sun => 1.2,
    }
}

fn habits(t: Tier) -> &'static Habits {
    match t {
        Tier::Small => &SMALL,
        Tier::Medium => &MEDIUM,
        Tier::Large => &LARGE,
    }
}

pub struct GenServer {
    pub id: String,
    pub owner: String,
    pub ram_mib: u32,
    pub disk_gb: f64,
    pub cpu_cores: Option<f64>,
    pub pay_per_use: bool,
    pub cost_mode: &'static str,
    pub created_at: Millis,
}

pub struct GenSession {
    pub server: u32,
    pub start: Millis,
    pub end: Millis,
    pub players: u32,
}

pub struct Generated {
    pub start: Millis,
    pub end: Millis,
    pub servers: Vec<GenServer>,
    pub sessions: Vec<GenSession>,
}

fn pick<T: Copy>(rng: &mut impl Rng, table: &[(T, f64)]) -> T {
    let total: f64 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(v, w) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

fn local_midnight(tz: Tz, date: NaiveDate) -> Millis {
    let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    tz.from_local_datetime(&naive).earliest().expect("a local midnight").timestamp_millis()
}

pub fn generate(cfg: &GenConfig) -> Generated {
    let tz = cfg.timezone;
    let start = local_midnight(tz, cfg.start);
    let end_date = cfg.start + chrono::Duration::days(i64::from(cfg.days));
    let end = local_midnight(tz, end_date);
    // Separate streams so that, e.g., changing the session model keeps the server table.
    let mut rng_servers = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng_servers.set_stream(1);
    let mut rng_sessions = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng_sessions.set_stream(2);
    // Routines draw from their own stream: `habits = 0` leaves the other two untouched.
    let mut rng_habits = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng_habits.set_stream(3);

    // Day features, computed once.
    struct Day {
        start: Millis,
        factor: f64,
        free: bool,
        weekday: u32,
    }
    let days: Vec<Day> = (0..cfg.days)
        .map(|d| {
            let date = cfg.start + chrono::Duration::days(i64::from(d));
            let holiday = is_public_holiday(date);
            let school = school_holiday_share(date);
            let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
            Day {
                start: local_midnight(tz, date),
                factor: weekday_factor(date.weekday()) * if holiday { 1.3 } else { 1.0 } * (1.0 + 0.25 * school),
                free: weekend || holiday || school > 0.5,
                weekday: date.weekday().num_days_from_monday(),
            }
        })
        .collect();

    let mut servers = Vec::with_capacity(cfg.servers);
    let mut owner = 0u32;
    let mut owner_left = 0u32;
    let engagement = LogNormal::new(0.0, 1.0).expect("valid");
    let mut sessions = Vec::new();
    let mut starts: Vec<Millis> = Vec::new();
    for i in 0..cfg.servers {
        if owner_left == 0 {
            owner += 1;
            // 1 server (65 %), 2 (20 %), 3–5 (15 %).
            owner_left = pick(&mut rng_servers, &[(1, 0.65), (2, 0.2), (3, 0.08), (4, 0.04), (5, 0.03)]);
        }
        owner_left -= 1;
        let tier = pick(&mut rng_servers, &[(Tier::Small, 0.55), (Tier::Medium, 0.30), (Tier::Large, 0.15)]);
        let h = habits(tier);
        let ram_gib = pick(&mut rng_servers, h.ram_gib);
        let disk_gb = (rng_servers.random_range(h.disk_gb.0..h.disk_gb.1) * 100.0).round() / 100.0;
        let cpu_cores = (rng_servers.random::<f64>() >= 0.05).then(|| (f64::from(ram_gib) / 2.0).max(1.0));
        let pay_per_use = rng_servers.random::<f64>() < h.pay_per_use;
        let cost_mode = pick(&mut rng_servers, &[("off", 0.6), ("suggest", 0.25), ("auto", 0.15)]);
        let created_at = if rng_servers.random::<f64>() < 0.9 {
            start - rng_servers.random_range(DAY..365 * DAY) / SECOND * SECOND
        } else {
            start + rng_servers.random_range(0..(end - start)) / SECOND * SECOND
        };
        let always_on = !pay_per_use && rng_servers.random::<f64>() < h.always_on;
        let dormant = rng_servers.random::<f64>() < 0.2;
        let level = if dormant { 0.1 } else { engagement.sample(&mut rng_servers) };
        servers.push(GenServer {
            id: format!("s{:05}", i + 1),
            owner: format!("o{owner:05}"),
            ram_mib: ram_gib * 1024,
            disk_gb,
            cpu_cores,
            pay_per_use,
            cost_mode,
            created_at,
        });

        let server = i as u32;
        let players =
            |rng: &mut ChaCha8Rng| h.players.0 + Poisson::new(h.players.1).map_or(0, |p| p.sample(rng) as u32);
        if always_on {
            let from = created_at.max(start);
            if from < end {
                let p = players(&mut rng_sessions);
                sessions.push(GenSession { server, start: from, end, players: p });
            }
            continue;
        }
        let routine =
            (cfg.habits > 0.0 && rng_habits.random::<f64>() < cfg.habits).then(|| routine(&mut rng_habits, h));
        // Beside a routine, irregular play at a quarter of the usual rate.
        let level = if routine.is_some() { level * 0.25 } else { level };
        let first = sessions.len();
        let minutes = if pay_per_use { h.minutes_ppu } else { h.minutes_manual };
        let length = LogNormal::new(minutes.ln(), 0.8).expect("valid");
        let cap = if pay_per_use { 12 * HOUR } else { DAY };
        let mut busy_until = Millis::MIN;
        for day in &days {
            let rate = h.rate * level * day.factor * cfg.activity;
            let n = if rate > 0.0 { Poisson::new(rate).map_or(0, |p| p.sample(&mut rng_sessions) as usize) } else { 0 };
            if n == 0 {
                continue;
            }
            let profile: Vec<(u32, f64)> = (0..24u32)
                .map(|hr| (hr, if day.free { HOURS_FREE_DAY[hr as usize] } else { HOURS_WEEKDAY[hr as usize] }))
                .collect();
            starts.clear();
            for _ in 0..n {
                let hour = pick(&mut rng_sessions, &profile);
                starts
                    .push(day.start + Millis::from(hour) * HOUR + rng_sessions.random_range(0..HOUR / SECOND) * SECOND);
            }
            starts.sort_unstable();
            for &s in &starts {
                let mut s = s;
                if s < busy_until {
                    s = busy_until + rng_sessions.random_range(5..60) * MINUTE;
                }
                let len = (length.sample(&mut rng_sessions) * MINUTE as f64) as Millis;
                let len = (len / SECOND * SECOND).clamp(MINUTE, cap);
                let e = (s + len).min(end);
                if s < created_at || s >= end || e <= s {
                    continue;
                }
                busy_until = e;
                let p = players(&mut rng_sessions);
                sessions.push(GenSession { server, start: s, end: e, players: p });
            }
        }
        if let Some(r) = &routine {
            let mut own: Vec<GenSession> = sessions.drain(first..).collect();
            let jitter = rand_distr::Normal::new(0.0f64, 15.0).expect("valid");
            let mut lapsed_weeks = 0.0f64;
            for (d, day) in days.iter().enumerate() {
                if d % 7 == 0 {
                    // A new week: a lapse goes on, ends, or begins.
                    if lapsed_weeks > 0.0 {
                        lapsed_weeks -= 1.0;
                    } else if rng_habits.random::<f64>() < r.lapse_per_week {
                        lapsed_weeks = rng_habits.random_range(1.0..2.0 * r.lapse_weeks);
                    }
                }
                for &(_, hour, minutes) in r.slots.iter().filter(|s| s.0 == day.weekday) {
                    let kept = rng_habits.random::<f64>() < r.adherence;
                    let shift = jitter.sample(&mut rng_habits).clamp(-45.0, 45.0);
                    let stretch = LogNormal::new(0.0, 0.25).expect("valid").sample(&mut rng_habits);
                    if lapsed_weeks > 0.0 || !kept {
                        continue;
                    }
                    let s = day.start + Millis::from(hour) * HOUR + (shift * MINUTE as f64) as Millis / SECOND * SECOND;
                    let len =
                        ((minutes * stretch * MINUTE as f64) as Millis / SECOND * SECOND).clamp(15 * MINUTE, 8 * HOUR);
                    let e = (s + len).min(end);
                    if s < created_at || s >= end || e <= s {
                        continue;
                    }
                    // The group's usual crowd.
                    let p = players(&mut rng_habits) + 1;
                    own.push(GenSession { server, start: s, end: e, players: p });
                }
            }
            // One session at a time per server: an overlapping later one is dropped.
            own.sort_by_key(|s| (s.start, s.end));
            let mut until = Millis::MIN;
            for x in own {
                if x.start >= until {
                    until = x.end;
                    sessions.push(x);
                }
            }
        }
    }
    sessions.sort_by_key(|s| (s.start, s.server));
    Generated { start, end, servers, sessions }
}

/// Writes `g` as a dataset directory; `how` is recorded in meta.toml.
pub fn write(dir: &Path, cfg: &GenConfig, g: &Generated, how: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = dir.file_name().map_or("generated".into(), |n| n.to_string_lossy().into_owned());
    // The window in local time, as a person would write it.
    let local =
        |t: Millis| cfg.timezone.timestamp_millis_opt(t).single().map_or_else(|| format_rfc3339(t), |d| d.to_rfc3339());
    let meta = RawMeta {
        name,
        timezone: cfg.timezone.name().to_owned(),
        start: local(g.start),
        end: local(g.end),
        source: format!("synthetic, generated by: {how}"),
        license: "CC0-1.0".into(),
        measured: None,
        generator: Some(Generator {
            demand: if cfg.habits > 0.0 { "habits".into() } else { "irregular".into() },
            habit_share: (cfg.habits > 0.0).then_some(cfg.habits),
        }),
        notes: format!(
            "Synthetic demand from the seeded model in sim/src/generate.rs (seed {}, {} servers, {} days from {}, \
             activity {}, weekly routines on {} of the servers): daily cycle with an evening peak, weekday and German \
             holiday effects, three tiers with different habits.",
            cfg.seed, cfg.servers, cfg.days, cfg.start, cfg.activity, cfg.habits
        ),
    };
    let meta = toml::to_string(&meta).map_err(io::Error::other)?;
    std::fs::write(dir.join("meta.toml"), meta)?;

    let mut w = BufWriter::new(std::fs::File::create(dir.join("servers.csv"))?);
    writeln!(w, "server_id,owner_id,ram_mib,disk_gb,cpu_cores,pay_per_use,cost_mode,created_at")?;
    for s in &g.servers {
        let cores = s.cpu_cores.map(|c| c.to_string()).unwrap_or_default();
        writeln!(
            w,
            "{},{},{},{},{},{},{},{}",
            s.id,
            s.owner,
            s.ram_mib,
            s.disk_gb,
            cores,
            s.pay_per_use,
            s.cost_mode,
            format_rfc3339(s.created_at)
        )?;
    }
    w.flush()?;

    let mut w = BufWriter::new(std::fs::File::create(dir.join("sessions.csv"))?);
    writeln!(w, "server_id,start,end,players")?;
    for s in &g.sessions {
        writeln!(
            w,
            "{},{},{},{}",
            g.servers[s.server as usize].id,
            format_rfc3339(s.start),
            format_rfc3339(s.end),
            s.players
        )?;
    }
    w.flush()
}
