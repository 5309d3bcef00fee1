//! From demand history to regular series (SPEC §9): RAM (GiB) wanted by running servers per
//! tier and in total, CPU cores, sleeping disk (GB), players online, new sign-ups per hour and
//! wake-ups from archive per hour.
//!
//! Level series (RAM, CPU, disk, players) are time-weighted means over each step, so a step
//! half covered by a 4 GiB server counts 2 GiB. Rate series count events in the step and
//! scale them to per hour. The input is plain data, so a demand dataset (the twin) and the
//! controller's event log are two sources of the same aggregation.

use crate::series::Series;
use conductor_core::time::{HOUR, MINUTE};
use conductor_core::{Millis, Tier};

/// Default step of demand series.
pub const STEP: Millis = 15 * MINUTE;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerInfo {
    pub ram_mib: u32,
    pub disk_mb: u64,
    pub cpu_cores: Option<f64>,
}

/// Demand history of a fleet's customers.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub servers: Vec<ServerInfo>,
    /// Wanted run intervals (server, start, end), merged per server (SPEC §4).
    pub intervals: Vec<(u32, Millis, Millis)>,
    /// Sessions with their peak players (server, start, end, players).
    pub sessions: Vec<(u32, Millis, Millis, u32)>,
    /// Sign-up instants of owners.
    pub signups: Vec<Millis>,
    /// A server asleep longer than this is archived (SPEC §6).
    pub sleep_window: Millis,
}

/// Names of the series [`aggregate`] returns, in order, with their units.
pub const SERIES: [(&str, &str); 9] = [
    ("ram_gib.small", "GiB"),
    ("ram_gib.medium", "GiB"),
    ("ram_gib.large", "GiB"),
    ("ram_gib.total", "GiB"),
    ("cpu_cores", "cores"),
    ("sleeping_disk_gb", "GB"),
    ("players", "players"),
    ("signups_per_hour", "1/h"),
    ("archive_wakeups_per_hour", "1/h"),
];

/// A step grid and accumulation of time-weighted levels on it.
struct Grid {
    from: Millis,
    step: Millis,
    n: usize,
}

impl Grid {
    /// Adds `value` over `[a, b)`, weighted by the covered share of each step.
    fn add(&self, out: &mut [f64], a: Millis, b: Millis, value: f64) {
        let end = self.from + self.step * self.n as Millis;
        let (a, b) = (a.max(self.from), b.min(end));
        if a >= b {
            return;
        }
        let first = ((a - self.from) / self.step) as usize;
        let last = ((b - 1 - self.from) / self.step) as usize;
        for (i, slot) in out.iter_mut().enumerate().take(last + 1).skip(first) {
            let s = self.from + self.step * i as Millis;
            let covered = b.min(s + self.step) - a.max(s);
            *slot += value * covered as f64 / self.step as f64;
        }
    }

    fn count(&self, out: &mut [f64], t: Millis, per_hour: f64) {
        if t >= self.from {
            let i = ((t - self.from) / self.step) as usize;
            if i < self.n {
                out[i] += per_hour;
            }
        }
    }
}

/// Aggregates `h` over `[from, to)` in steps of `step` (to − from must be a multiple).
pub fn aggregate(h: &History, from: Millis, to: Millis, step: Millis) -> Vec<Series> {
    assert!(step > 0 && to > from && (to - from) % step == 0, "a whole number of steps");
    let grid = Grid { from, step, n: ((to - from) / step) as usize };
    let mut out = vec![vec![0.0; grid.n]; SERIES.len()];
    let per_hour = HOUR as f64 / step as f64;

    // Intervals sorted per server in time, for sleeping and archive wake-ups.
    let mut by_server: Vec<(u32, Millis, Millis)> = h.intervals.clone();
    by_server.sort_unstable();
    for (i, &(server, start, end)) in by_server.iter().enumerate() {
        let s = h.servers[server as usize];
        let gib = f64::from(s.ram_mib) / 1024.0;
        let tier = match Tier::of_ram_mib(s.ram_mib) {
            Tier::Small => 0,
            Tier::Medium => 1,
            Tier::Large => 2,
        };
        grid.add(&mut out[tier], start, end, gib);
        grid.add(&mut out[3], start, end, gib);
        if let Some(cores) = s.cpu_cores {
            grid.add(&mut out[4], start, end, cores);
        }
        // Asleep from the end until the next start or the archiving, whichever is first.
        let next = by_server.get(i + 1).filter(|n| n.0 == server).map(|n| n.1);
        let asleep_until = next.map_or(end + h.sleep_window, |n| n.min(end + h.sleep_window));
        grid.add(&mut out[5], end, asleep_until, s.disk_mb as f64 / 1000.0);
        // A start more than the sleep window after the previous stop wakes from archive.
        let previous = i.checked_sub(1).map(|p| by_server[p]).filter(|p| p.0 == server);
        if previous.is_some_and(|p| start - p.2 >= h.sleep_window) {
            grid.count(&mut out[8], start, per_hour);
        }
    }
    for &(_, start, end, players) in &h.sessions {
        grid.add(&mut out[6], start, end, f64::from(players));
    }
    for &t in &h.signups {
        grid.count(&mut out[7], t, per_hour);
    }
    SERIES.iter().zip(out).map(|((name, _), values)| Series::new(*name, from, step, values)).collect()
}

/// Unit of a series produced by [`aggregate`] (empty for others).
pub fn unit_of(name: &str) -> &'static str {
    SERIES.iter().find(|(n, _)| *n == name).map_or("", |(_, u)| u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_core::time::DAY;

    fn value(series: &[Series], name: &str) -> Vec<f64> {
        series.iter().find(|s| s.name == name).unwrap().values.clone()
    }

    /// Two servers over one hour in 15-minute steps, computed by hand.
    #[test]
    fn aggregation_of_a_tiny_history() {
        let m = MINUTE;
        let h = History {
            servers: vec![
                ServerInfo { ram_mib: 4096, disk_mb: 2000, cpu_cores: Some(2.0) },
                ServerInfo { ram_mib: 10240, disk_mb: 30_000, cpu_cores: None },
            ],
            // small: [0,30m); large: [10m,25m) and, after a 3-day sleep, [3d+0, 3d+5m).
            intervals: vec![(0, 0, 30 * m), (1, 10 * m, 25 * m), (1, 3 * DAY, 3 * DAY + 5 * m)],
            sessions: vec![(0, 0, 20 * m, 3), (1, 10 * m, 20 * m, 8)],
            signups: vec![5 * m, 50 * m],
            sleep_window: 48 * HOUR,
        };
        let s = aggregate(&h, 0, HOUR, STEP);
        // small 4 GiB: steps [0,15) and [15,30) full → 4, 4, 0, 0.
        assert_eq!(value(&s, "ram_gib.small"), vec![4.0, 4.0, 0.0, 0.0]);
        // large 10 GiB over [10,25): 5/15 of step 0 and 10/15 of step 1.
        let large = value(&s, "ram_gib.large");
        assert!((large[0] - 10.0 / 3.0).abs() < 1e-12 && (large[1] - 20.0 / 3.0).abs() < 1e-12);
        assert_eq!(value(&s, "ram_gib.medium"), vec![0.0; 4]);
        let total = value(&s, "ram_gib.total");
        assert!((total[1] - (4.0 + 20.0 / 3.0)).abs() < 1e-12);
        assert_eq!(value(&s, "cpu_cores"), vec![2.0, 2.0, 0.0, 0.0]);
        // Sleeping disk: small (2 GB) from 30m on; large (30 GB) from 25m on (next start
        // in 3 days is after the 48 h archive): step 1 gets 30 GB × 5/15 = 10.
        assert_eq!(value(&s, "sleeping_disk_gb"), vec![0.0, 10.0, 32.0, 32.0]);
        // Players: 3 over [0,20) → 3, 1; 8 over [10,20) → 8/3, 8/3.
        let players = value(&s, "players");
        assert!((players[0] - (3.0 + 8.0 / 3.0)).abs() < 1e-12 && (players[1] - (1.0 + 8.0 / 3.0)).abs() < 1e-12);
        // Sign-ups at 5m and 50m: one per 15 minutes = 4 per hour in those steps.
        assert_eq!(value(&s, "signups_per_hour"), vec![4.0, 0.0, 0.0, 4.0]);
        // The large server's wake-up at 3 days is from archive, outside this hour.
        assert_eq!(value(&s, "archive_wakeups_per_hour"), vec![0.0; 4]);
        let later = aggregate(&h, 3 * DAY, 3 * DAY + HOUR, STEP);
        assert_eq!(value(&later, "archive_wakeups_per_hour"), vec![4.0, 0.0, 0.0, 0.0]);
    }
}
