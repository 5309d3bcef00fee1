//! What-if transforms: changes to the recorded demand applied before a replay (scenario
//! `[[transform]]` blocks, in file order), each recorded in the report with its effect.
//!
//! Demand multipliers (`scale`, `growth`, the elasticity of `prices`) work per session: a
//! factor g makes ⌊g⌋ copies of each session plus one more with probability g − ⌊g⌋ (seeded).
//! Copy 0 is the original; copy j ≥ 1 goes to a clone of the server (`<id>~j`, owned by a
//! clone of its owner, so sign-ups and promotions scale too). A factor below 1 keeps each
//! session with probability g.

use crate::dataset::{Dataset, Server, Session};
use conductor_core::model::CostMode;
use conductor_core::time::{DAY, HOUR};
use conductor_core::{Millis, Tier};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;

/// One validated transform.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Demand × factor.
    Scale { factor: f64 },
    /// Demand grows by `percent_per_week` (compounded) from the window start.
    Growth { percent_per_week: f64 },
    /// `servers` new owners sign up uniformly within `[at, at + within)`, each with one
    /// server that plays one session of `session` at sign-up.
    Spike { at: Millis, within: Millis, servers: u32, ram_mib: u32, disk_mb: u64, session: Millis, players: u32 },
    /// Every session moves by `by` (may be negative); clipped to the dataset window.
    Shift { by: Millis },
    /// Every session lasts `factor` × as long (same start); clipped to the window end.
    Stretch { factor: f64 },
    /// Servers change plan so that tiers hold these shares (small, medium, large).
    TierMix { shares: [f64; 3] },
    /// This share of servers is pay-per-use, the rest always-on while played.
    PayPerUse { share: f64 },
    /// A price change: the scenario's prices are replaced (when parsing the scenario) and
    /// demand follows the active price with constant elasticity: × (new/old)^(−elasticity).
    Elastic { factor: f64, description: String },
}

impl Transform {
    pub fn describe(&self) -> String {
        match self {
            Transform::Scale { factor } => format!("scale demand × {factor}"),
            Transform::Growth { percent_per_week } => format!("growth {percent_per_week} % per week"),
            Transform::Spike { at, within, servers, ram_mib, session, .. } => format!(
                "spike: {servers} sign-ups of {} GiB within {} from {}, each playing {}",
                f64::from(*ram_mib) / 1024.0,
                conductor_forecast::duration::format_duration(*within),
                crate::timefmt::format_rfc3339(*at),
                conductor_forecast::duration::format_duration(*session)
            ),
            Transform::Shift { by } => format!("shift sessions by {} min", by / 60_000),
            Transform::Stretch { factor } => format!("stretch sessions × {factor}"),
            Transform::TierMix { shares } => {
                format!("tier mix small {} / medium {} / large {}", shares[0], shares[1], shares[2])
            }
            Transform::PayPerUse { share } => format!("pay-per-use share {share}"),
            Transform::Elastic { description, .. } => description.clone(),
        }
    }
}

/// What one transform did, for the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Effect {
    pub transform: String,
    pub servers_before: usize,
    pub servers_after: usize,
    pub sessions_before: usize,
    pub sessions_after: usize,
    pub session_hours_before: f64,
    pub session_hours_after: f64,
}

fn session_hours(ds: &Dataset) -> f64 {
    let ms: i64 = ds.sessions.iter().map(|s| s.end - s.start).sum();
    ((ms as f64 / HOUR as f64) * 100.0).round() / 100.0
}

/// Applies `transforms` in order; `seed` drives the random parts (one stream per transform).
pub fn apply(dataset: &Dataset, transforms: &[Transform], seed: u64) -> (Dataset, Vec<Effect>) {
    let mut ds = dataset.clone();
    let mut effects = Vec::with_capacity(transforms.len());
    for (i, t) in transforms.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(100 + i as u64);
        let (servers_before, sessions_before, hours_before) = (ds.servers.len(), ds.sessions.len(), session_hours(&ds));
        match t {
            Transform::Scale { factor } | Transform::Elastic { factor, .. } => {
                let f = *factor;
                multiply(&mut ds, &mut rng, |_| f)
            }
            Transform::Growth { percent_per_week } => {
                let (start, rate) = (ds.meta.start, 1.0 + percent_per_week / 100.0);
                multiply(&mut ds, &mut rng, |t| rate.powf((t - start) as f64 / (7 * DAY) as f64))
            }
            Transform::Spike { at, within, servers, ram_mib, disk_mb, session, players } => {
                spike(&mut ds, &mut rng, *at, *within, *servers, *ram_mib, *disk_mb, *session, *players)
            }
            Transform::Shift { by } => {
                let (lo, hi) = (ds.meta.start, ds.meta.end);
                ds.sessions.retain_mut(|s| {
                    s.start = (s.start + by).clamp(lo, hi);
                    s.end = (s.end + by).clamp(lo, hi);
                    s.end > s.start
                });
            }
            Transform::Stretch { factor } => {
                let hi = ds.meta.end;
                for s in &mut ds.sessions {
                    let len = ((s.end - s.start) as f64 * factor).round() as Millis;
                    s.end = (s.start + len.max(1)).min(hi);
                }
                ds.sessions.retain(|s| s.end > s.start);
            }
            Transform::TierMix { shares } => tier_mix(&mut ds, &mut rng, shares),
            Transform::PayPerUse { share } => {
                let target = (share * ds.servers.len() as f64).round() as usize;
                let now: usize = ds.servers.iter().filter(|s| s.pay_per_use).count();
                // Flip the servers that a seeded shuffle puts first, in the needed direction.
                let mut order: Vec<usize> = (0..ds.servers.len()).collect();
                shuffle(&mut order, &mut rng);
                let (want, mut left) = if target > now { (false, target - now) } else { (true, now - target) };
                for i in order {
                    if left == 0 {
                        break;
                    }
                    if ds.servers[i].pay_per_use == want {
                        ds.servers[i].pay_per_use = !want;
                        left -= 1;
                    }
                }
            }
        }
        effects.push(Effect {
            transform: t.describe(),
            servers_before,
            servers_after: ds.servers.len(),
            sessions_before,
            sessions_after: ds.sessions.len(),
            session_hours_before: hours_before,
            session_hours_after: session_hours(&ds),
        });
    }
    (ds, effects)
}

fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Replaces each session by ⌊g⌋ copies plus one with probability frac(g), g = factor(start).
fn multiply(ds: &mut Dataset, rng: &mut ChaCha8Rng, factor: impl Fn(Millis) -> f64) {
    let mut clones: HashMap<(u32, u32), u32> = HashMap::new();
    let mut owner_clones: HashMap<(u32, u32), u32> = HashMap::new();
    let original = std::mem::take(&mut ds.sessions);
    let mut sessions = Vec::with_capacity(original.len());
    for s in original {
        let g = factor(s.start).max(0.0);
        let u: f64 = rng.random();
        let copies = g.floor() as u32 + u32::from(u < g.fract());
        for j in 0..copies {
            let server = if j == 0 {
                s.server
            } else {
                *clones.entry((s.server, j)).or_insert_with(|| {
                    let base = ds.servers[s.server as usize].clone();
                    let owner = *owner_clones.entry((base.owner, j)).or_insert_with(|| {
                        ds.owners.push(format!("{}~{j}", ds.owners[base.owner as usize]));
                        ds.owners.len() as u32 - 1
                    });
                    ds.servers.push(Server { id: format!("{}~{j}", base.id), owner, ..base });
                    ds.servers.len() as u32 - 1
                })
            };
            sessions.push(Session { server, ..s });
        }
    }
    ds.sessions = sessions;
}

#[allow(clippy::too_many_arguments)]
fn spike(
    ds: &mut Dataset,
    rng: &mut ChaCha8Rng,
    at: Millis,
    within: Millis,
    servers: u32,
    ram_mib: u32,
    disk_mb: u64,
    session: Millis,
    players: u32,
) {
    for k in 0..servers {
        let t = at + rng.random_range(0..within.max(1));
        ds.owners.push(format!("spike-owner-{k}"));
        ds.servers.push(Server {
            id: format!("spike-{k}"),
            owner: ds.owners.len() as u32 - 1,
            ram_mib,
            disk_mb,
            cpu_cores: None,
            pay_per_use: true,
            cost_mode: CostMode::Off,
            created_at: t,
        });
        let end = (t + session).min(ds.meta.end);
        if end > t && t >= ds.meta.start {
            ds.sessions.push(Session { server: ds.servers.len() as u32 - 1, start: t, end, players });
        }
    }
}

fn tier_index(ram_mib: u32) -> usize {
    match Tier::of_ram_mib(ram_mib) {
        Tier::Small => 0,
        Tier::Medium => 1,
        Tier::Large => 2,
    }
}

/// Moves servers between tiers until the counts match `shares` (largest remainder). A moved
/// server takes the most common plan of its new tier (2, 6 or 12 GiB if the tier is empty).
fn tier_mix(ds: &mut Dataset, rng: &mut ChaCha8Rng, shares: &[f64; 3]) {
    let n = ds.servers.len();
    let total: f64 = shares.iter().sum();
    let exact: Vec<f64> = shares.iter().map(|s| s / total * n as f64).collect();
    let mut target: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..3).collect();
    by_remainder.sort_by(|&a, &b| (exact[b].fract()).total_cmp(&exact[a].fract()).then(a.cmp(&b)));
    let short = n - target.iter().sum::<usize>();
    for &t in by_remainder.iter().take(short) {
        target[t] += 1;
    }
    let mut plan = [2048u32, 6144, 12288];
    for (t, p) in plan.iter_mut().enumerate() {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for s in ds.servers.iter().filter(|s| tier_index(s.ram_mib) == t) {
            *counts.entry(s.ram_mib).or_default() += 1;
        }
        if let Some((&ram, _)) = counts.iter().max_by_key(|(&ram, &c)| (c, std::cmp::Reverse(ram))) {
            *p = ram;
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    let mut count = [0usize; 3];
    for s in &ds.servers {
        count[tier_index(s.ram_mib)] += 1;
    }
    for i in order {
        let from = tier_index(ds.servers[i].ram_mib);
        if count[from] <= target[from] {
            continue;
        }
        if let Some(to) = (0..3).find(|&t| count[t] < target[t]) {
            ds.servers[i].ram_mib = plan[to];
            count[from] -= 1;
            count[to] += 1;
        }
    }
}
