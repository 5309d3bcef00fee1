//! Metering into the ledger (SPEC §3, §8): each server's usage per metering window is rated
//! with the core's `window_charge` — the very rating the twin uses for its revenue — and
//! posted with the key `charge:<server>:<phase>:<window start>`, so a retried or concurrent
//! metering run can never charge a window twice.

use crate::store::{EntryKind, Money, NewEntry, Posted, Store, StoreError};
use conductor_core::billing::{window_charge, Prices, MB_MS_PER_GB_MONTH, MIB_MS_PER_GIB_HOUR};
use conductor_core::Millis;
use serde_json::json;

/// What a server is charged for (archived worlds are free).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Plan RAM while running: MiB·ms at the active price per GiB-hour.
    Active,
    /// Disk while sleeping: MB·ms at the sleeping price per GB-month.
    Sleeping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Sleeping => "sleeping",
        }
    }

    /// The price and the quantity in one priced unit.
    pub fn price(self, prices: &Prices) -> (Money, u128) {
        match self {
            Phase::Active => (prices.active_per_gib_hour, MIB_MS_PER_GIB_HOUR),
            Phase::Sleeping => (prices.sleeping_per_gb_month, MB_MS_PER_GB_MONTH),
        }
    }
}

/// One server's usage in one metering window: `before` is everything it used in this phase
/// before the window (the cumulative rating needs it), `during` the window's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUsage {
    pub owner: i64,
    pub server: i64,
    pub phase: Phase,
    pub window_start: Millis,
    pub before: u128,
    pub during: u128,
}

impl WindowUsage {
    pub fn key(&self) -> String {
        format!("charge:{}:{}:{}", self.server, self.phase.as_str(), self.window_start)
    }

    pub fn charge(&self, prices: &Prices) -> Money {
        let (price, unit) = self.phase.price(prices);
        window_charge(self.before, self.during, price, unit)
    }
}

/// Posts the charge of every window with a non-zero amount. Windows already charged (by an
/// earlier or a concurrent run) are found by their key and left as they are.
pub async fn post_charges<S: Store>(
    store: &S,
    usage: &[WindowUsage],
    prices: &Prices,
    now: Millis,
) -> Result<Vec<Posted>, StoreError> {
    let mut posted = Vec::new();
    for u in usage {
        let amount = u.charge(prices);
        if amount == Money::ZERO {
            continue;
        }
        let entry = NewEntry {
            owner: u.owner,
            kind: EntryKind::Charge,
            amount: -amount,
            key: u.key(),
            at: now,
            server: Some(u.server),
            window_start: Some(u.window_start),
            data: json!({ "phase": u.phase, "quantity": u.during.to_string() }),
        };
        posted.push(store.post(entry).await?);
    }
    Ok(posted)
}

/// The price calculator with its input checked (the API and `conductor price` share it):
/// plan RAM in MiB, disk in GB, play time in hours per week, a competitor's monthly price.
/// Amounts are exact decimals as strings (EUR, 6 places; `month_total_cents` rounded as an
/// invoice would be).
pub fn quote_checked(
    ram_mib: u32,
    disk_gb: f64,
    hours_per_week: f64,
    competitor: Option<Money>,
    prices: &Prices,
) -> Result<serde_json::Value, String> {
    if ram_mib == 0 || ram_mib > 1024 * 1024 {
        return Err(format!("ram_mib: 1 to 1048576 MiB, got {ram_mib}"));
    }
    if !(disk_gb.is_finite() && (0.0..=100_000.0).contains(&disk_gb)) {
        return Err(format!("disk_gb: 0 to 100000 GB, got {disk_gb}"));
    }
    if !(hours_per_week.is_finite() && (0.0..=168.0).contains(&hours_per_week)) {
        return Err(format!("hours_per_week: 0 to 168, got {hours_per_week}"));
    }
    // Disk in whole MB, play time in whole seconds: the calculator's inputs are rough.
    let disk_mb = (disk_gb * 1000.0).round() as u64;
    let played = (hours_per_week * 3600.0).round() as Millis * 1000;
    let q = conductor_core::billing::quote(ram_mib, disk_mb, played, competitor, prices);
    let s = |m: Money| m.normalize().to_string();
    Ok(json!({
        "ram_mib": ram_mib,
        "disk_gb": disk_gb,
        "hours_per_week": hours_per_week,
        "per_minute_active": s(q.per_minute_active),
        "per_hour_active": s(q.per_hour_active),
        "per_day_sleeping": s(q.per_day_sleeping),
        "month_active": s(q.month_active),
        "month_sleeping": s(q.month_sleeping),
        "month_total": s(q.month_total),
        "month_total_cents": s(q.month_total.round_dp(2)),
        "month_always_on": s(q.month_always_on),
        "competitor_month": competitor.map(s),
        "saving_month": q.saving.map(|(m, _)| s(m)),
        "saving_percent": q.saving.map(|(_, p)| s(p)),
        "assumptions": "a month is 720 h; play time is spread over the week and the rest of the month is \
                        charged asleep (an upper bound: worlds asleep past the sleep window are archived, free)",
    }))
}
