//! Billing rating (SPEC §3, §8): exact decimal money, usage accumulated as integers and
//! rated cumulatively so that the sum of charges never drifts from the exact amount.

use crate::time::{Millis, HOUR, MONTH};
use rust_decimal::Decimal;

/// Money in EUR. Always exact decimal, never binary floating point.
pub type Money = Decimal;

/// Decimal places of a rated amount (micro-EUR).
pub const RATING_DP: u32 = 6;

/// MiB·ms in one GiB-hour.
pub const MIB_MS_PER_GIB_HOUR: u128 = 1024 * HOUR as u128;
/// MB·ms in one GB-month (720 h).
pub const MB_MS_PER_GB_MONTH: u128 = 1000 * MONTH as u128;
/// MB·ms in one TB-month (1000 GB-month, 720 h).
pub const MB_MS_PER_TB_MONTH: u128 = 1_000_000 * MONTH as u128;

/// The customer price list and the promotion (SPEC §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prices {
    /// Per GiB-hour of plan RAM while `running`.
    pub active_per_gib_hour: Money,
    /// Per GB-month of disk while `sleeping`.
    pub sleeping_per_gb_month: Money,
    /// What archive storage costs the business, per TB-month.
    pub archive_per_tb_month: Money,
    /// Starting credit per new owner (a promotion cost).
    pub promo_credit: Money,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            active_per_gib_hour: Decimal::new(2, 2),
            sleeping_per_gb_month: Decimal::new(10, 2),
            archive_per_tb_month: Decimal::from(3),
            promo_credit: Decimal::from(5),
        }
    }
}

/// `round_half_even(quantity × price / unit, 6 dp)`, computed exactly in integers.
///
/// `price` is the price of one `unit` of quantity (e.g. EUR per GiB-hour with quantity in
/// MiB·ms and `unit` = [`MIB_MS_PER_GIB_HOUR`]). Prices must be non-negative.
pub fn rate(quantity: u128, price: Money, unit: u128) -> Money {
    assert!(price >= Decimal::ZERO, "prices are non-negative");
    assert!(unit > 0, "a rating unit is positive");
    // price = mantissa / 10^scale, so amount in micro-EUR = q · mantissa · 10^6 / (10^scale · unit).
    let mantissa = price.mantissa() as u128;
    let numerator = quantity
        .checked_mul(mantissa)
        .and_then(|n| n.checked_mul(10u128.pow(RATING_DP)))
        .expect("usage quantity too large to rate");
    let denominator = unit.checked_mul(10u128.pow(price.scale())).expect("price scale too large to rate");
    let micros = div_round_half_even(numerator, denominator);
    Decimal::from_i128_with_scale(i128::try_from(micros).expect("amount fits"), RATING_DP)
}

fn div_round_half_even(n: u128, d: u128) -> u128 {
    let (q, r) = (n / d, n % d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

/// One metering window's charge under cumulative rating (SPEC §3): the rated usage up to
/// the window's end minus the rated usage up to its start. The charges of consecutive
/// windows sum to the rating of the total (they telescope), so rounding each window at
/// 6 decimals never drifts, and a window's charge depends on nothing but the usage.
pub fn window_charge(before: u128, during: u128, price: Money, unit: u128) -> Money {
    rate(before + during, price, unit) - rate(before, price, unit)
}

/// What an owner's prepaid balance calls for (SPEC §8: servers stop at zero, with warnings
/// before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountAction {
    Fine,
    /// The balance lasts less than the warning time at the current burn: how long it lasts.
    Warn {
        covers: Millis,
    },
    /// Nothing left: stop the owner's servers (gracefully; they are never deleted).
    Stop,
}

/// The decision for a balance that `burn_per_hour` (what the owner's servers cost per hour
/// now) eats into; warn when it lasts less than `warn_before`.
pub fn account_action(balance: Money, burn_per_hour: Money, warn_before: Millis) -> AccountAction {
    if balance <= Decimal::ZERO {
        return AccountAction::Stop;
    }
    if burn_per_hour <= Decimal::ZERO {
        return AccountAction::Fine;
    }
    let covers = (balance * Decimal::from(HOUR) / burn_per_hour).floor();
    match i64::try_from(covers) {
        Ok(covers) if covers < warn_before => AccountAction::Warn { covers },
        _ => AccountAction::Fine,
    }
}

/// What a plan costs the customer (the price calculator): exact amounts at 6 decimals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub per_minute_active: Money,
    pub per_hour_active: Money,
    pub per_day_sleeping: Money,
    /// A month (720 h) of play at the given hours per week: the active hours…
    pub month_active: Money,
    /// …and the rest of the month asleep (an upper bound: a world asleep longer than the
    /// sleep window is archived, which is free).
    pub month_sleeping: Money,
    pub month_total: Money,
    /// A month running around the clock, as a fixed-price host would.
    pub month_always_on: Money,
    /// The competitor's monthly price minus `month_total`, and that as a percentage of it.
    pub saving: Option<(Money, Money)>,
}

/// The price calculator (SPEC §8): plan RAM, disk, play time per week, and optionally what a
/// competitor charges per month. `hours_per_week_ms` is the play time per week in ms
/// (at most a week).
pub fn quote(
    ram_mib: u32,
    disk_mb: u64,
    hours_per_week_ms: Millis,
    competitor: Option<Money>,
    prices: &Prices,
) -> Quote {
    const WEEK: Millis = 7 * crate::time::DAY;
    assert!((0..=WEEK).contains(&hours_per_week_ms), "play time per week lies within a week");
    let (ram, disk) = (u128::from(ram_mib), u128::from(disk_mb));
    let active = |ms: u128| rate(ram * ms, prices.active_per_gib_hour, MIB_MS_PER_GIB_HOUR);
    // A month is 30 days = 30/7 weeks: quantities × 30 over units × 7 keep it exact.
    let played = hours_per_week_ms as u128 * 30;
    let asleep = MONTH as u128 * 7 - played;
    let month_active = rate(ram * played, prices.active_per_gib_hour, MIB_MS_PER_GIB_HOUR * 7);
    let month_sleeping = rate(disk * asleep, prices.sleeping_per_gb_month, MB_MS_PER_GB_MONTH * 7);
    let month_total = month_active + month_sleeping;
    let saving = competitor.filter(|c| *c > Decimal::ZERO).map(|c| {
        let saved = c - month_total;
        (saved, (saved * Decimal::from(100) / c).round_dp(1))
    });
    Quote {
        per_minute_active: active(crate::time::MINUTE as u128),
        per_hour_active: active(HOUR as u128),
        per_day_sleeping: rate(disk * crate::time::DAY as u128, prices.sleeping_per_gb_month, MB_MS_PER_GB_MONTH),
        month_active,
        month_sleeping,
        month_total,
        month_always_on: active(MONTH as u128),
        saving,
    }
}

/// Cumulative rating of one usage stream: usage is added as integers; each charge is the
/// difference between the rated total and what was already billed (SPEC §3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meter {
    quantity: u128,
    billed: Money,
}

impl Meter {
    pub fn add(&mut self, quantity: u128) {
        self.quantity += quantity;
    }

    pub fn quantity(&self) -> u128 {
        self.quantity
    }

    /// Rates everything accumulated so far and returns the part not billed yet.
    #[must_use]
    pub fn charge(&mut self, price: Money, unit: u128) -> Money {
        let total = rate(self.quantity, price, unit);
        let delta = total - self.billed;
        self.billed = total;
        delta
    }

    pub fn billed(&self) -> Money {
        self.billed
    }
}

/// Cost of a dedicated node over `horizon` ms: monthly × H / 720 (SPEC §5).
pub fn dedicated_cost(monthly: Money, horizon: Millis) -> Money {
    rate(horizon.max(0) as u128, monthly, MONTH as u128)
}

/// Started hours of a VM that lived `life` ms: ⌈life / 1 h⌉.
pub fn started_hours(life: Millis) -> u64 {
    (life.max(0) as u64).div_ceil(HOUR as u64)
}

/// Cost of a VM that lived `life` ms: started hours × hourly, at most the monthly cap per
/// started 720 h of life (SPEC §5, §11 rule 9).
pub fn vm_cost(life: Millis, hourly: Money, monthly_cap: Money) -> Money {
    let hours = Decimal::from(started_hours(life));
    let months = Decimal::from((life.max(0) as u64).div_ceil(MONTH as u64));
    (hours * hourly).min(monthly_cap * months)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn rating_one_gib_hour() {
        assert_eq!(rate(MIB_MS_PER_GIB_HOUR, d("0.02"), MIB_MS_PER_GIB_HOUR), d("0.02"));
        // 4 GiB for 90 minutes: 4 × 1.5 × 0.02 = 0.12
        let q = 4096u128 * 90 * 60_000;
        assert_eq!(rate(q, d("0.02"), MIB_MS_PER_GIB_HOUR), d("0.12"));
    }

    #[test]
    fn rating_rounds_half_to_even_at_six_places() {
        // 1 unit at 0.0000005 → exactly 0.0000005 → ties to even 0.000000
        assert_eq!(rate(1, d("0.0000005"), 1), d("0"));
        // 3 units → 0.0000015 → 0.000002 (even)
        assert_eq!(rate(3, d("0.0000005"), 1), d("0.000002"));
        // 5 units → 0.0000025 → 0.000002 (even)
        assert_eq!(rate(5, d("0.0000005"), 1), d("0.000002"));
        // one MiB for one ms at 0.02/GiB-h = 5.4e-12 EUR → 0
        assert_eq!(rate(1, d("0.02"), MIB_MS_PER_GIB_HOUR), d("0"));
    }

    #[test]
    fn cumulative_meter_never_drifts() {
        // Metering a 1 GiB server minute by minute for a day: per-minute amounts of
        // 0.02/60 = 0.000333.. are rounded, but the running total stays exact.
        let mut meter = Meter::default();
        let mut sum = Decimal::ZERO;
        for _ in 0..1440 {
            meter.add(1024 * 60_000);
            sum += meter.charge(d("0.02"), MIB_MS_PER_GIB_HOUR);
        }
        // 24 GiB-h × 0.02 = 0.48 exactly
        assert_eq!(sum, d("0.48"));
        assert_eq!(meter.billed(), d("0.48"));
    }

    #[test]
    fn window_charges_telescope_to_the_rating_of_the_total() {
        // 1 GiB for a minute rates to 0.000333…: windows alternate between 0.000333 and
        // 0.000334 so that three of them make exactly 0.001.
        let minute = 1024 * 60_000u128;
        let p = d("0.02");
        let charges: Vec<Money> = (0..3).map(|k| window_charge(k * minute, minute, p, MIB_MS_PER_GIB_HOUR)).collect();
        assert_eq!(charges, [d("0.000333"), d("0.000334"), d("0.000333")]);
        assert_eq!(charges.iter().sum::<Money>(), rate(3 * minute, p, MIB_MS_PER_GIB_HOUR));
        // Uneven windows sum to the same exact total.
        let q = [7_000_000u128, 0, 123_456_789, 1, 61_440_000];
        let mut before = 0;
        let mut sum = Money::ZERO;
        for &x in q.iter().rev() {
            sum += window_charge(before, x, p, MIB_MS_PER_GIB_HOUR);
            before += x;
        }
        assert_eq!(sum, rate(q.iter().sum(), p, MIB_MS_PER_GIB_HOUR));
        assert_eq!(window_charge(before, 0, p, MIB_MS_PER_GIB_HOUR), Money::ZERO);
    }

    #[test]
    fn a_quote_for_a_4_gib_server_played_10_hours_a_week() {
        let q = quote(4096, 10_000, 10 * HOUR, Some(d("12.99")), &Prices::default());
        // 4 GiB × 0.02 = 0.08 EUR/h; per minute 0.001333…
        assert_eq!((q.per_hour_active, q.per_minute_active), (d("0.08"), d("0.001333")));
        // 10 GB asleep: 0.10 × 10 / 30 = 0.033333 per day.
        assert_eq!(q.per_day_sleeping, d("0.033333"));
        // 10 h/week × 30/7 weeks = 42.857142… h × 0.08 = 3.428571…
        assert_eq!(q.month_active, d("3.428571"));
        // The rest of 720 h asleep: (720 − 42.857142…)/720 × 10 GB × 0.10 = 0.940476…
        assert_eq!(q.month_sleeping, d("0.940476"));
        assert_eq!(q.month_total, d("4.369047"));
        assert_eq!(q.month_always_on, d("57.6"));
        assert_eq!(q.saving, Some((d("8.620953"), d("66.4"))));
        // Around the clock it is the always-on price and nothing asleep.
        let always = quote(4096, 10_000, 7 * crate::time::DAY, None, &Prices::default());
        assert_eq!((always.month_total, always.month_sleeping, always.saving), (d("57.6"), d("0"), None));
    }

    #[test]
    fn balances_are_fine_then_warned_then_stopped() {
        let warn = 24 * HOUR;
        // 0.08 EUR/h: 5 EUR lasts 62.5 h, 1 EUR 12.5 h.
        assert_eq!(account_action(d("5"), d("0.08"), warn), AccountAction::Fine);
        assert_eq!(account_action(d("1"), d("0.08"), warn), AccountAction::Warn { covers: 12 * HOUR + 30 * 60_000 });
        assert_eq!(account_action(d("0"), d("0.08"), warn), AccountAction::Stop);
        assert_eq!(account_action(d("-0.000001"), d("0"), warn), AccountAction::Stop);
        // Nothing running: a small balance lasts forever.
        assert_eq!(account_action(d("0.01"), d("0"), warn), AccountAction::Fine);
    }

    #[test]
    fn dedicated_proration_uses_720_hour_months() {
        // 70 EUR/month for 14 days = 70 × 336 / 720 = 32.666667
        assert_eq!(dedicated_cost(d("70"), 14 * crate::time::DAY), d("32.666667"));
        assert_eq!(dedicated_cost(d("70"), MONTH), d("70"));
    }

    #[test]
    fn vm_billing_counts_started_hours_with_cap() {
        assert_eq!(started_hours(0), 0);
        assert_eq!(started_hours(1), 1);
        assert_eq!(started_hours(HOUR), 1);
        assert_eq!(started_hours(HOUR + 1), 2);
        // 61 minutes of cpx32: 2 started hours × 0.016 = 0.032
        assert_eq!(vm_cost(61 * 60_000, d("0.016"), d("11.99")), d("0.032"));
        // A whole month of cx43 at 0.021/h = 15.12, cap 14.99 → 14.99
        assert_eq!(vm_cost(MONTH, d("0.021"), d("14.99")), d("14.99"));
        // 721 h at 0.021: 15.141 vs cap 2 × 14.99 → 15.141
        assert_eq!(vm_cost(721 * HOUR, d("0.021"), d("14.99")), d("15.141"));
    }
}
