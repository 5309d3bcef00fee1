//! Lifecycle rules shared by every driver (SPEC §4, §6): when a server with demand should be
//! running. The twin applies them to recorded sessions; the controller to live player counts.

use crate::time::Millis;

/// When a server whose demand ended at `demand_end` should stop: a pay-per-use server runs
/// on for `idle_timeout` after the last player leaves; a manual one stops when told.
pub fn stop_at(pay_per_use: bool, demand_end: Millis, idle_timeout: Millis) -> Millis {
    if pay_per_use {
        demand_end + idle_timeout
    } else {
        demand_end
    }
}

/// Whether demand starting at `start` keeps alive a run that would stop at `stop`:
/// overlapping and touching intervals merge into one wanted run interval.
pub fn continues(stop: Millis, start: Millis) -> bool {
    start <= stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_applies_to_pay_per_use_only() {
        assert_eq!(stop_at(true, 1000, 300), 1300);
        assert_eq!(stop_at(false, 1000, 300), 1000);
        assert!(continues(1300, 1300), "touching merges");
        assert!(!continues(1300, 1301));
    }
}
