//! Scaling policies and their composition (SPEC §7). At every tick each active policy looks
//! at the same view of the fleet and proposes: how many VMs to add now, whether it agrees to
//! scale in, whether it wants to. Scale-up takes the largest request; scale-in happens only
//! when every active policy agrees and at least one wants it. The reactive policy alone,
//! with its defaults and first-fit placement, is the pinned reference policy (SPEC §11).

use crate::time::{Millis, HOUR, MINUTE, SECOND};
use rust_decimal::Decimal;

/// Parameters of the reactive (threshold) policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactiveParams {
    /// Scale up when U > `up`.
    pub up: Decimal,
    /// U < `down` counts as low.
    pub down: Decimal,
    /// Scale in after U has been low for this long.
    pub low_for: Millis,
    /// Minimum time since the last scale action (of any policy).
    pub cooldown: Millis,
    /// Count queued requests' RAM as demand.
    pub queue_aware: bool,
}

impl ReactiveParams {
    /// The pinned reference values (SPEC §11 rule 7).
    pub fn reference() -> Self {
        ReactiveParams {
            up: Decimal::new(85, 2),
            down: Decimal::new(30, 2),
            low_for: 30 * MINUTE,
            cooldown: 300 * SECOND,
            queue_aware: true,
        }
    }
}

/// Which band of the forecast the predictive policy provisions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Band {
    Mean,
    /// Upper end of the 80 % interval (the 90th percentile).
    P90,
    /// Upper end of the 95 % interval (the 97.5th percentile).
    P97_5,
}

/// Keeps ready capacity ahead of forecast demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PredictiveParams {
    /// How far ahead to provision: the provisioning delay plus a buffer.
    pub lead: Millis,
    pub band: Band,
    /// Capacity is sized so that forecast demand fills it to this share.
    pub target_utilisation: Decimal,
    /// Also initiate scale-in when the forecast says capacity will not be needed.
    pub scale_in: bool,
    /// How far ahead a scale-in must stay safe (beyond the lead time).
    pub hold: Millis,
    /// Record what it would do without acting (never blocks or initiates anything).
    pub shadow: bool,
}

/// Keeps N empty ready VMs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparePoolParams {
    /// N when fixed, and the floor when sized from the forecast.
    pub size: u32,
    /// Size N from forecast arrivals × this provisioning time: enough empty VMs to absorb
    /// the RAM forecast to arrive while a new VM is being made.
    pub from_forecast: Option<Millis>,
    /// Record what it would do without acting (never blocks or initiates anything).
    pub shadow: bool,
}

impl SparePoolParams {
    /// The pool size at `now`: the fixed size, or ⌈arrival rate × provisioning ÷ VM RAM⌉
    /// with the arrival rate the steepest forecast rise (mean) over the next hour.
    pub fn size_at(&self, now: Millis, forecast: Option<&DemandForecast>, vm_usable_mib: u64) -> u32 {
        self.size_over(now, now, forecast, vm_usable_mib)
    }

    /// The size to keep at `now`: as [`Self::size_at`], but a rise in the current step still
    /// counts — so the pool is not given up at the very moment the burst arrives.
    pub fn keep_at(&self, now: Millis, forecast: Option<&DemandForecast>, vm_usable_mib: u64) -> u32 {
        let step = forecast.map_or(0, |f| f.step);
        self.size_over(now - step, now, forecast, vm_usable_mib)
    }

    fn size_over(&self, from: Millis, now: Millis, forecast: Option<&DemandForecast>, vm_usable_mib: u64) -> u32 {
        let (Some(provisioning), Some(f)) = (self.from_forecast, forecast) else { return self.size };
        if f.step <= 0 || vm_usable_mib == 0 {
            return self.size;
        }
        let first = (from - f.start).div_euclid(f.step).max(0) as usize;
        let last = ((now + HOUR - f.start).div_euclid(f.step).max(0) as usize).min(f.mean.len().saturating_sub(1));
        let rise = (first..last).map(|i| f.mean[i + 1].saturating_sub(f.mean[i])).max().unwrap_or(0);
        // MiB arriving during one provisioning delay at that rate.
        let arriving = (u128::from(rise) * provisioning.max(0) as u128).div_ceil(f.step as u128);
        let n = (arriving as u64).div_ceil(vm_usable_mib);
        self.size.max(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    Reactive(ReactiveParams),
    Predictive(PredictiveParams),
    SparePool(SparePoolParams),
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Reactive(_) => "reactive",
            Policy::Predictive(p) if p.shadow => "predictive-shadow",
            Policy::Predictive(_) => "predictive",
            Policy::SparePool(p) if p.shadow => "spare-pool-shadow",
            Policy::SparePool(_) => "spare-pool",
        }
    }

    /// Whether the policy only records (`None`: the reactive policy has no shadow mode).
    pub fn shadow(&self) -> Option<bool> {
        match self {
            Policy::Reactive(_) => None,
            Policy::Predictive(p) => Some(p.shadow),
            Policy::SparePool(p) => Some(p.shadow),
        }
    }

    /// Switches a predictive or spare-pool policy between shadow and enforce; `false` for
    /// the reactive policy, which has no shadow mode.
    pub fn set_shadow(&mut self, shadow: bool) -> bool {
        match self {
            Policy::Reactive(_) => return false,
            Policy::Predictive(p) => p.shadow = shadow,
            Policy::SparePool(p) => p.shadow = shadow,
        }
        true
    }
}

/// Which idle VM goes when the policies agree to scale in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleIn {
    /// The most recently created ready VM without starting or running servers (SPEC §11).
    Newest,
    /// Only a VM within `margin` of its next started hour (the current one is paid anyway),
    /// the one closest to it first.
    BillingHour { margin: Millis },
}

/// The scaling configuration of a fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// Time between ticks; the first tick is at window start + interval.
    pub interval: Millis,
    /// Cloud VMs (provisioning + ready) never exceed this.
    pub max_vms: u32,
    pub policies: Vec<Policy>,
    pub scale_in: ScaleIn,
    /// When scale-in is agreed but no VM is idle, drain the coldest VM (cordon it, archive
    /// its sleepers early, delete it once empty).
    pub drain: bool,
    /// Move servers off a VM so it can go (bin-packing, disruption budget, consent).
    pub consolidation: Option<crate::consolidation::ConsolidationParams>,
}

impl ScalingPolicy {
    /// A static fleet: no ticks, no VMs.
    pub fn fixed() -> Self {
        ScalingPolicy {
            interval: 120 * SECOND,
            max_vms: 0,
            policies: Vec::new(),
            scale_in: ScaleIn::Newest,
            drain: false,
            consolidation: None,
        }
    }

    /// The pinned reference policy (SPEC §11 rule 7).
    pub fn reference(max_vms: u32) -> Self {
        ScalingPolicy {
            interval: 120 * SECOND,
            max_vms,
            policies: vec![Policy::Reactive(ReactiveParams::reference())],
            scale_in: ScaleIn::Newest,
            drain: false,
            consolidation: None,
        }
    }

    pub fn interval(&self) -> Option<Millis> {
        (!self.policies.is_empty()).then_some(self.interval)
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

/// Forecast demand (MiB of plan RAM wanted running) on a regular grid, per band.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DemandForecast {
    pub start: Millis,
    pub step: Millis,
    pub mean: Vec<u64>,
    pub p90: Vec<u64>,
    pub p97_5: Vec<u64>,
    /// Where it came from, for decision reasons (e.g. "perfect", "snaive-week").
    pub source: String,
}

impl DemandForecast {
    fn band(&self, band: Band) -> &[u64] {
        match band {
            Band::Mean => &self.mean,
            Band::P90 => &self.p90,
            Band::P97_5 => &self.p97_5,
        }
    }

    /// The highest forecast value over `[from, to]`, or `None` if the forecast does not
    /// cover that span at all.
    pub fn max_over(&self, band: Band, from: Millis, to: Millis) -> Option<u64> {
        if self.step <= 0 {
            return None;
        }
        let v = self.band(band);
        let first = (from - self.start).div_euclid(self.step).max(0);
        let last = (to - self.start).div_euclid(self.step);
        if last < 0 || first >= v.len() as i64 {
            return None;
        }
        let last = last.min(v.len() as i64 - 1);
        v[first as usize..=last as usize].iter().copied().max()
    }
}

/// What the scheduler tells the policies at a tick.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub now: Millis,
    pub reserved_mib: u64,
    pub queued_mib: u64,
    /// Usable RAM of ready nodes that accept servers.
    pub usable_ready_mib: u64,
    /// Usable RAM of VMs still provisioning.
    pub usable_provisioning_mib: u64,
    pub provisioning: u32,
    pub cloud_vms: u32,
    pub max_vms: u32,
    /// Ready VMs without starting or running servers.
    pub idle_vms: u32,
    pub vm_usable_mib: u64,
    pub last_action: Option<Millis>,
    pub forecast: Option<&'a DemandForecast>,
}

/// One policy's answer at a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub add: u32,
    /// Shadow mode: what it would have added.
    pub would_add: u32,
    pub agrees_in: bool,
    pub wants_in: bool,
    /// The figures it saw, for decision logs.
    pub reason: String,
}

/// Per-policy memory between ticks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Reactive: first tick of the current low spell.
    pub low_since: Option<Millis>,
}

impl Policy {
    /// This policy's proposal; updates its own state first (SPEC §11: `low_since` is
    /// updated before the action).
    pub fn propose(&self, view: &View<'_>, state: &mut PolicyState) -> Proposal {
        match self {
            Policy::Reactive(p) => reactive(p, view, state),
            Policy::Predictive(p) => predictive(p, view),
            Policy::SparePool(p) => spare_pool(p, view),
        }
    }
}

fn reactive(p: &ReactiveParams, v: &View<'_>, state: &mut PolicyState) -> Proposal {
    let seen = Utilisation {
        demand_mib: v.reserved_mib + if p.queue_aware { v.queued_mib } else { 0 },
        usable_mib: v.usable_ready_mib,
    };
    if seen.below(p.down) {
        state.low_since.get_or_insert(v.now);
    } else {
        state.low_since = None;
    }
    let cooled = v.last_action.is_none_or(|t| v.now - t >= p.cooldown);
    let up = seen.above(p.up) && v.provisioning == 0 && cooled && v.cloud_vms < v.max_vms;
    let low_long = state.low_since.is_some_and(|since| v.now - since >= p.low_for);
    let agrees = low_long && cooled;
    Proposal {
        add: u32::from(up),
        would_add: 0,
        agrees_in: agrees,
        wants_in: agrees,
        reason: format!("U = {}/{} MiB", seen.demand_mib, seen.usable_mib),
    }
}

fn predictive(p: &PredictiveParams, v: &View<'_>) -> Proposal {
    let neutral = |reason: String| Proposal { add: 0, would_add: 0, agrees_in: true, wants_in: false, reason };
    let Some(f) = v.forecast else { return neutral("no forecast".into()) };
    let Some(ahead) = f.max_over(p.band, v.now, v.now + p.lead) else {
        return neutral(format!("{} forecast does not cover now + lead", f.source));
    };
    let later = f.max_over(p.band, v.now, v.now + p.lead + p.hold).unwrap_or(ahead);
    let required = |demand: u64| -> u64 {
        if p.target_utilisation <= Decimal::ZERO {
            return demand;
        }
        let r = (Decimal::from(demand) / p.target_utilisation).ceil();
        rust_decimal::prelude::ToPrimitive::to_u64(&r).unwrap_or(u64::MAX)
    };
    let capacity = v.usable_ready_mib + v.usable_provisioning_mib;
    let need = required(ahead);
    let add = if need > capacity && v.vm_usable_mib > 0 {
        let vms = (need - capacity).div_ceil(v.vm_usable_mib);
        u32::try_from(vms).unwrap_or(u32::MAX).min(v.max_vms.saturating_sub(v.cloud_vms))
    } else {
        0
    };
    let spare_after_removal = capacity.saturating_sub(v.vm_usable_mib) >= required(later);
    let reason = format!(
        "{} forecast {} MiB within lead, {} MiB within lead + hold; capacity {} MiB",
        f.source, ahead, later, capacity
    );
    if p.shadow {
        let reason = format!("shadow: would add {add}; {reason}");
        return Proposal { add: 0, would_add: add, agrees_in: true, wants_in: false, reason };
    }
    Proposal { add, would_add: 0, agrees_in: spare_after_removal, wants_in: p.scale_in && spare_after_removal, reason }
}

fn spare_pool(p: &SparePoolParams, v: &View<'_>) -> Proposal {
    let size = p.size_at(v.now, v.forecast, v.vm_usable_mib);
    let keep = p.keep_at(v.now, v.forecast, v.vm_usable_mib);
    let have = v.idle_vms + v.provisioning;
    let add = size.saturating_sub(have).min(v.max_vms.saturating_sub(v.cloud_vms));
    let reason = format!("{} idle + {} provisioning VMs, pool {}", v.idle_vms, v.provisioning, size);
    if p.shadow {
        let reason = format!("shadow: would add {add}; {reason}");
        return Proposal { add: 0, would_add: add, agrees_in: true, wants_in: false, reason };
    }
    Proposal { add, would_add: 0, agrees_in: v.idle_vms > keep, wants_in: v.idle_vms > keep, reason }
}

/// Whether a VM created at `created` is within `margin` of its next started hour at `now`,
/// and how far it is from it.
pub fn to_next_hour(created: Millis, now: Millis) -> Millis {
    let into = (now - created).rem_euclid(HOUR);
    if into == 0 && now > created {
        0
    } else {
        HOUR - into
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

    fn view(forecast: Option<&DemandForecast>) -> View<'_> {
        View {
            now: 0,
            reserved_mib: 0,
            queued_mib: 0,
            usable_ready_mib: 10_000,
            usable_provisioning_mib: 0,
            provisioning: 0,
            cloud_vms: 0,
            max_vms: 10,
            idle_vms: 0,
            vm_usable_mib: 4_000,
            last_action: None,
            forecast,
        }
    }

    #[test]
    fn predictive_provisions_for_the_forecast_peak_within_the_lead() {
        // Steps of 15 min: demand 8000, then 17000 at 15 min, 30000 at 2 h.
        let mut mean = vec![8_000u64; 24];
        mean[1] = 17_000;
        mean[8] = 30_000;
        let f = DemandForecast {
            start: 0,
            step: 15 * MINUTE,
            p90: mean.clone(),
            p97_5: mean.clone(),
            mean,
            source: "test".into(),
        };
        let p = PredictiveParams {
            lead: 20 * MINUTE,
            band: Band::Mean,
            target_utilisation: Decimal::ONE,
            scale_in: true,
            hold: HOUR,
            shadow: false,
        };
        let v = view(Some(&f));
        let prop = predictive(&p, &v);
        // Peak within [0, 20 min] = 17000; capacity 10000 → 7000 more → ⌈7000/4000⌉ = 2 VMs.
        assert_eq!(prop.add, 2);
        // Removing a VM (10000 − 4000 = 6000) would not cover 17000: no scale-in.
        assert!(!prop.agrees_in && !prop.wants_in);
        // At 85 % target utilisation, 17000 / 0.85 = 20000 → 10000 more → 3 VMs.
        let p85 = PredictiveParams { target_utilisation: Decimal::new(85, 2), ..p.clone() };
        assert_eq!(predictive(&p85, &v).add, 3);
        // Shadow mode never acts and never blocks.
        let shadow = PredictiveParams { shadow: true, ..p.clone() };
        let s = predictive(&shadow, &v);
        assert_eq!((s.add, s.would_add, s.agrees_in, s.wants_in), (0, 2, true, false));
        assert!(s.reason.starts_with("shadow: would add 2"), "{}", s.reason);
        // Later, after the peaks: [3 h, 3 h 20 m] and the hold hour ahead are all 8000;
        // capacity 20000 − 4000 ≥ 8000 → scale-in agreed and wanted.
        let late = View { now: 3 * HOUR, usable_ready_mib: 20_000, ..v };
        let prop = predictive(&p, &late);
        assert_eq!(prop.add, 0);
        assert!(prop.agrees_in && prop.wants_in);
        // Without a forecast the policy is neutral.
        let none = predictive(&p, &view(None));
        assert_eq!((none.add, none.agrees_in, none.wants_in), (0, true, false));
    }

    #[test]
    fn spare_pool_sized_from_forecast_arrivals() {
        // Forecast (15-min steps): flat 10000, then +12000 MiB in one step at 30 min, flat.
        let mean = vec![10_000, 10_000, 10_000, 22_000, 22_000, 22_000, 22_000, 22_000];
        let f = DemandForecast {
            start: 0,
            step: 15 * MINUTE,
            p90: mean.clone(),
            p97_5: mean.clone(),
            mean,
            source: "t".into(),
        };
        let p = SparePoolParams { size: 0, from_forecast: Some(5 * MINUTE), shadow: false };
        // Steepest rise within the next hour: 12000 MiB per 15 min; during 5 min of
        // provisioning 4000 MiB arrive → ⌈4000 / 3000⌉ = 2 VMs of 3000 MiB.
        assert_eq!(p.size_at(0, Some(&f), 3000), 2);
        // Past the rise, nothing more arrives: the floor (0).
        assert_eq!(p.size_at(75 * MINUTE, Some(&f), 3000), 0);
        // At the instant of the rise (45 min) nothing arrives *ahead* any more, but the pool
        // is kept through the step it arrives in.
        assert_eq!(p.size_at(45 * MINUTE, Some(&f), 3000), 0);
        assert_eq!(p.keep_at(45 * MINUTE, Some(&f), 3000), 2);
        // Without a forecast: the fixed size.
        assert_eq!(
            SparePoolParams { size: 1, from_forecast: Some(5 * MINUTE), shadow: false }.size_at(0, None, 3000),
            1
        );
    }

    #[test]
    fn spare_pool_keeps_n_idle_vms() {
        let p = SparePoolParams { size: 2, from_forecast: None, shadow: false };
        let v = view(None);
        assert_eq!(spare_pool(&p, &v).add, 2);
        // In shadow it only says what it would add, and never holds up a scale-in.
        let mut shadow = Policy::SparePool(p.clone());
        assert!(shadow.set_shadow(true) && shadow.shadow() == Some(true) && shadow.name() == "spare-pool-shadow");
        let Policy::SparePool(sp) = &shadow else { unreachable!() };
        let s = spare_pool(sp, &v);
        assert_eq!((s.add, s.would_add, s.agrees_in, s.wants_in), (0, 2, true, false));
        assert!(s.reason.starts_with("shadow: would add 2"), "{}", s.reason);
        assert_eq!(spare_pool(&p, &View { idle_vms: 1, provisioning: 1, ..v }).add, 0);
        let over = spare_pool(&p, &View { idle_vms: 3, ..v });
        assert!(over.agrees_in && over.wants_in);
        assert_eq!(spare_pool(&p, &View { cloud_vms: 9, ..v }).add, 1, "capped by max VMs");
    }

    #[test]
    fn hours_to_the_next_started_hour() {
        assert_eq!(to_next_hour(0, 10 * MINUTE), 50 * MINUTE);
        assert_eq!(to_next_hour(0, 59 * MINUTE), MINUTE);
        assert_eq!(to_next_hour(0, HOUR), 0, "exactly on the boundary: the next hour starts now");
        assert_eq!(to_next_hour(0, 0), HOUR);
    }
}
