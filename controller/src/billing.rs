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
