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

/// One server's billable phases, followed from the events the live engine records:
/// running from `server.started` to `server.slept`, asleep from `server.slept` to the next
/// placement (`server.placed`), the archive (`server.archived`) or the deletion. Spans
/// metered already are folded into per-phase totals, so metering stays O(recent spans).
#[derive(Clone, Debug)]
pub struct Usage {
    pub owner: i64,
    pub server: i64,
    ram_mib: u32,
    disk_mb: u64,
    open: Option<(Phase, Millis)>,
    /// Closed spans that may still overlap unmetered windows.
    spans: Vec<(Phase, Millis, Millis)>,
    /// Usage per phase (active, sleeping) before `folded`.
    base: [u128; 2],
    folded: Millis,
}

fn index(p: Phase) -> usize {
    match p {
        Phase::Active => 0,
        Phase::Sleeping => 1,
    }
}

impl Usage {
    pub fn new(owner: i64, server: i64, ram_mib: u32, disk_mb: u64) -> Usage {
        Usage { owner, server, ram_mib, disk_mb, open: None, spans: Vec::new(), base: [0; 2], folded: Millis::MIN }
    }

    /// Whether events of this kind change billable phases.
    pub fn follows(kind: &str) -> bool {
        matches!(kind, "server.started" | "server.slept" | "server.placed" | "server.archived" | "server.deleted")
    }

    /// An event of this server's log (other kinds change nothing).
    pub fn on(&mut self, kind: &str, at: Millis) {
        match kind {
            "server.started" => {
                self.close(at);
                self.open = Some((Phase::Active, at));
            }
            "server.slept" => {
                self.close(at);
                self.open = Some((Phase::Sleeping, at));
            }
            "server.placed" | "server.archived" | "server.deleted" => self.close(at),
            _ => {}
        }
    }

    fn close(&mut self, at: Millis) {
        if let Some((p, since)) = self.open.take() {
            if at > since {
                self.spans.push((p, since, at));
            }
        }
    }

    /// The phase it is billed for now, if any.
    pub fn phase(&self) -> Option<(Phase, Millis)> {
        self.open
    }

    /// Quantity per ms in phase `p`: plan RAM (MiB) running, disk (MB) asleep.
    pub fn rate_of(&self, p: Phase) -> u128 {
        match p {
            Phase::Active => u128::from(self.ram_mib),
            Phase::Sleeping => u128::from(self.disk_mb),
        }
    }

    /// Quantity of phase `p` in `[from, to)` (spans and the open phase clipped to it).
    pub fn quantity(&self, p: Phase, from: Millis, to: Millis) -> u128 {
        let clip = |a: Millis, b: Millis| (b.min(to) - a.max(from)).max(0) as u128;
        let closed: u128 = self.spans.iter().filter(|s| s.0 == p).map(|s| clip(s.1, s.2)).sum();
        let open = match self.open {
            Some((q, since)) if q == p => clip(since, to),
            _ => 0,
        };
        (closed + open) * self.rate_of(p)
    }

    /// The usage of each window `[w, w + window)` for `w` from `from` up to `to` (windows
    /// with none are left out). `from` is where metering stopped last ([`Usage::fold`]).
    pub fn windows(&self, from: Millis, to: Millis, window: Millis) -> Vec<WindowUsage> {
        assert!(window > 0, "a metering window is positive");
        // Windows this server metered already (a step that failed half-way) are skipped.
        let from = from.max(self.folded);
        let mut out = Vec::new();
        for p in [Phase::Active, Phase::Sleeping] {
            let mut before = self.base[index(p)] + self.quantity(p, self.folded, from);
            let mut w = from;
            while w + window <= to {
                let during = self.quantity(p, w, w + window);
                if during > 0 {
                    out.push(WindowUsage {
                        owner: self.owner,
                        server: self.server,
                        phase: p,
                        window_start: w,
                        before,
                        during,
                    });
                }
                before += during;
                w += window;
            }
        }
        out
    }

    /// Everything before `to` is metered: fold it into the totals.
    pub fn fold(&mut self, to: Millis) {
        if to <= self.folded {
            return;
        }
        for p in [Phase::Active, Phase::Sleeping] {
            self.base[index(p)] += self.quantity(p, self.folded, to);
        }
        self.folded = to;
        self.spans.retain(|s| s.2 > to);
    }
}

/// How the controller bills: the price list (the scenario's `[prices]`), the metering window
/// and when owners are warned.
#[derive(Clone, Debug)]
pub struct BillingSetup {
    pub prices: Prices,
    /// Metering window (SPEC §8: per minute).
    pub window: Millis,
    /// Warn an owner when the balance lasts less than this at the current burn.
    pub warn_before: Millis,
    /// Optional webhook (e.g. Discord) told of warnings and stops: `{"content": "…"}`.
    pub webhook: Option<String>,
}

impl Default for BillingSetup {
    fn default() -> Self {
        BillingSetup {
            prices: Prices::default(),
            window: conductor_core::time::MINUTE,
            warn_before: 24 * conductor_core::time::HOUR,
            webhook: None,
        }
    }
}

/// What `usage` costs per hour in its current phase (zero when archived or new).
pub fn burn_per_hour(usage: &Usage, prices: &Prices) -> Money {
    match usage.phase() {
        Some((p, _)) => {
            let (price, unit) = p.price(prices);
            conductor_core::billing::rate(usage.rate_of(p) * conductor_core::time::HOUR as u128, price, unit)
        }
        None => Money::ZERO,
    }
}
