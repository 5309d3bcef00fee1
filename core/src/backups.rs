//! Backups of a world: when one is due and which ones a retention rule keeps. Pure rules;
//! the live controller takes the copies and deletes what the rule lets go.

use crate::time::{Millis, DAY, HOUR};

/// Which backups of one server are kept: the newest `last`, and the newest of each of the
/// last `daily` days and of each of the last `weekly` weeks (UTC days, weeks from Monday).
/// The newest backup is always kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { last: 3, daily: 7, weekly: 4 }
    }
}

/// The UTC day of `t` (days since 1970-01-01).
fn day(t: Millis) -> i64 {
    t.div_euclid(DAY)
}

/// The week of `t`, Monday to Sunday (1970-01-01 was a Thursday).
fn week(t: Millis) -> i64 {
    (day(t) + 3).div_euclid(7)
}

impl Retention {
    /// The backups (by index into `taken`, the times they were taken) the rule lets go at
    /// `now`, oldest first. Ties (same time) keep the later entry.
    pub fn expired(&self, taken: &[Millis], now: Millis) -> Vec<usize> {
        let mut order: Vec<usize> = (0..taken.len()).collect();
        // Newest first.
        order.sort_by_key(|&i| (std::cmp::Reverse(taken[i]), std::cmp::Reverse(i)));
        let mut keep = vec![false; taken.len()];
        for &i in order.iter().take(self.last.max(1) as usize) {
            keep[i] = true;
        }
        let mut bucket_keep = |bucket: &dyn Fn(Millis) -> i64, n: u32| {
            let now_b = bucket(now);
            let mut seen = std::collections::HashSet::new();
            for &i in &order {
                let b = bucket(taken[i]);
                if now_b - b < i64::from(n) && seen.insert(b) {
                    keep[i] = true;
                }
            }
        };
        bucket_keep(&day, self.daily);
        bucket_keep(&week, self.weekly);
        let mut out: Vec<usize> = (0..taken.len()).filter(|&i| !keep[i]).collect();
        out.sort_by_key(|&i| (taken[i], i));
        out
    }
}

/// Whether a running server needs a backup at `now`: `every_h` hours (0: never) after the
/// later of its start and its newest backup.
pub fn due(every_h: u32, running_since: Millis, newest: Option<Millis>, now: Millis) -> bool {
    if every_h == 0 {
        return false;
    }
    let from = newest.map_or(running_since, |b| b.max(running_since));
    now - from >= Millis::from(every_h) * HOUR
}

/// Whole minutes of play a world loses when it comes back from a copy taken at `copy` while
/// it was last known good at `last_seen` (none if the copy is newer).
pub fn lost_minutes(copy: Millis, last_seen: Millis) -> i64 {
    (last_seen - copy).max(0) / crate::time::MINUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 (a Monday) 00:00 UTC.
    const MONDAY: Millis = 1_795_996_800_000;

    #[test]
    fn monday_is_the_first_day_of_its_week() {
        assert_eq!(week(MONDAY), week(MONDAY + 6 * DAY + 23 * HOUR));
        assert_eq!(week(MONDAY) - 1, week(MONDAY - 1));
    }

    #[test]
    fn retention_keeps_the_last_ones_and_the_newest_of_each_day_and_week() {
        // Every 6 h from Monday 2026-11-30 (k = 0..63, the newest on day 15 at 18:00);
        // now is day 16 (Wednesday 2026-12-16) at 12:00. By hand below.
        let now = MONDAY + 16 * DAY + 12 * HOUR;
        let taken: Vec<Millis> = (0..64).map(|k| MONDAY + k * 6 * HOUR).collect();
        let r = Retention { last: 2, daily: 3, weekly: 2 };
        let kept: Vec<usize> = (0..64).filter(|i| !r.expired(&taken, now).contains(i)).collect();
        // last 2: 63, 62. daily 3 (days 16, 15, 14 from Monday): day 16 has none, day 15's
        // newest is 63, day 14's is 59. weekly 2 (weeks 2 and 3 of the span: days 14–20 and
        // 7–13): week of day 14 → 63; week of days 7–13 → 55 (day 13, 18:00).
        assert_eq!(kept, vec![55, 59, 62, 63]);
        assert_eq!(r.expired(&taken, now).len(), 60);
    }

    #[test]
    fn the_newest_backup_is_always_kept_and_equal_times_keep_the_later_entry() {
        let r = Retention { last: 0, daily: 0, weekly: 0 };
        assert_eq!(r.expired(&[10, 30, 20], 40), vec![0, 2]);
        assert_eq!(r.expired(&[30, 30], 40), vec![0]);
        assert!(r.expired(&[], 40).is_empty());
    }

    #[test]
    fn a_backup_is_due_every_h_hours_after_the_start_or_the_newest_one() {
        assert!(!due(6, 0, None, 6 * HOUR - 1));
        assert!(due(6, 0, None, 6 * HOUR));
        assert!(!due(6, 0, Some(HOUR), 6 * HOUR));
        assert!(due(6, 0, Some(HOUR), 7 * HOUR));
        // A backup older than the start counts from the start.
        assert!(!due(6, 10 * HOUR, Some(HOUR), 15 * HOUR));
        assert!(!due(0, 0, None, 1000 * HOUR));
    }

    #[test]
    fn lost_minutes_are_whole_minutes_since_the_copy() {
        assert_eq!(lost_minutes(0, 90 * 60_000 + 59_999), 90);
        assert_eq!(lost_minutes(100, 50), 0);
    }
}
