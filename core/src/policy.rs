//! Scaling policies. The reactive policy is configurable; its defaults are the pinned
//! reference policy of SPEC §11 rule 7.

use crate::time::{Millis, MINUTE, SECOND};
use rust_decimal::Decimal;

/// Parameters of the reactive (threshold) policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactiveParams {
    /// Time between scaling ticks; the first tick is at window start + interval.
    pub interval: Millis,
    /// Scale up when U > `up`.
    pub up: Decimal,
    /// U < `down` counts as low.
    pub down: Decimal,
    /// Scale in after U has been low for this long.
    pub low_for: Millis,
    /// Minimum time between two scale actions.
    pub cooldown: Millis,
    /// Cloud VMs (provisioning + ready) never exceed this.
    pub max_vms: u32,
    /// Count queued requests' RAM as demand.
    pub queue_aware: bool,
}

impl ReactiveParams {
    /// The pinned reference values (SPEC §11 rule 7).
    pub fn reference(max_vms: u32) -> Self {
        ReactiveParams {
            interval: 120 * SECOND,
            up: Decimal::new(85, 2),
            down: Decimal::new(30, 2),
            low_for: 30 * MINUTE,
            cooldown: 300 * SECOND,
            max_vms,
            queue_aware: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScalingPolicy {
    /// A static fleet: dedicated nodes only, no cloud VMs.
    Fixed,
    Reactive(ReactiveParams),
}

impl ScalingPolicy {
    pub fn interval(&self) -> Option<Millis> {
        match self {
            ScalingPolicy::Fixed => None,
            ScalingPolicy::Reactive(p) => Some(p.interval),
        }
    }
}

/// Utilisation U = demand ÷ usable, kept as the two integers so comparisons are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utilisation {
    pub demand_mib: u64,
    pub usable_mib: u64,
}

impl Utilisation {
    /// U > threshold, exactly. U = ∞ when nothing is usable but something is wanted.
    pub fn above(self, threshold: Decimal) -> bool {
        if self.usable_mib == 0 {
            return self.demand_mib > 0;
        }
        Decimal::from(self.demand_mib) > threshold * Decimal::from(self.usable_mib)
    }

    /// U < threshold, exactly. With nothing usable and nothing wanted U counts as 0.
    pub fn below(self, threshold: Decimal) -> bool {
        if self.usable_mib == 0 {
            return self.demand_mib == 0 && threshold > Decimal::ZERO;
        }
        Decimal::from(self.demand_mib) < threshold * Decimal::from(self.usable_mib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_compares_exactly() {
        let u = |demand_mib, usable_mib| Utilisation { demand_mib, usable_mib };
        let t = Decimal::new(85, 2);
        assert!(!u(85, 100).above(t), "U = 0.85 is not above 0.85");
        assert!(u(86, 100).above(t));
        assert!(u(1, 0).above(t), "U = ∞");
        assert!(!u(0, 0).above(t));
        let low = Decimal::new(30, 2);
        assert!(!u(30, 100).below(low), "U = 0.30 is not low");
        assert!(u(29, 100).below(low));
        assert!(u(0, 0).below(low));
        assert!(!u(5, 0).below(low));
    }
}
