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
    /// The world's size for sleeping charges: declared, then measured (`world.measured`).
    disk_mb: u64,
    /// The phase it is in, since when, at what quantity per ms.
    open: Option<(Phase, Millis, u128)>,
    /// Closed spans (phase, from, to, quantity per ms) that may still overlap unmetered windows.
    spans: Vec<(Phase, Millis, Millis, u128)>,
    /// Usage per phase (active, sleeping) before `folded`.
    base: [u128; 2],
    folded: Millis,
    /// The sleep window (SPEC §8: sleeping is billed from the stop until the server is
    /// placed again or the window ends), and when the current sleep stops being billed.
    sleep_window: Millis,
    sleep_until: Millis,
}

fn index(p: Phase) -> usize {
    match p {
        Phase::Active => 0,
        Phase::Sleeping => 1,
    }
}

impl Usage {
    pub fn new(owner: i64, server: i64, ram_mib: u32, disk_mb: u64) -> Usage {
        Usage {
            owner,
            server,
            ram_mib,
            disk_mb,
            open: None,
            spans: Vec::new(),
            base: [0; 2],
            folded: Millis::MIN,
            sleep_window: Millis::MAX / 4,
            sleep_until: Millis::MAX,
        }
    }

    /// Sleeping is billed for at most `window` after each stop (default: until archived).
    pub fn with_sleep_window(mut self, window: Millis) -> Usage {
        self.sleep_window = window;
        self
    }

    /// Whether events of this kind change billable phases.
    pub fn follows(kind: &str) -> bool {
        use crate::events::*;
        [
            SERVER_STARTED,
            SERVER_RESUMED,
            SERVER_SLEPT,
            SERVER_PLACED,
            SERVER_ARCHIVED,
            SERVER_DELETED,
            SERVER_CRASHED,
            SERVER_LOST,
            SERVER_FAILED,
            WORLD_MEASURED,
        ]
        .contains(&kind)
    }

    /// An event of this server's log (other kinds change nothing). Billing follows what was
    /// observed: a run ends when the server crashed or its node stopped answering, and starts
    /// again when it answers (`server.resumed`).
    pub fn on(&mut self, kind: &str, at: Millis) {
        use crate::events::*;
        match kind {
            SERVER_STARTED | SERVER_RESUMED => self.open_at(Phase::Active, at),
            SERVER_SLEPT => {
                self.open_at(Phase::Sleeping, at);
                self.sleep_until = at.saturating_add(self.sleep_window);
            }
            SERVER_PLACED | SERVER_ARCHIVED | SERVER_DELETED | SERVER_CRASHED | SERVER_LOST | SERVER_FAILED => {
                self.close(at)
            }
            _ => {}
        }
    }

    fn open_at(&mut self, p: Phase, at: Millis) {
        self.close(at);
        self.open = Some((p, at, self.rate_of(p)));
    }

    fn close(&mut self, at: Millis) {
        if let Some((p, since, rate)) = self.open.take() {
            let at = if p == Phase::Sleeping { at.min(self.sleep_until) } else { at };
            if at > since {
                self.spans.push((p, since, at, rate));
            }
        }
    }

    /// The world was measured at `at` (`world.measured`): sleeping is charged at this size
    /// from then on (what was metered before keeps its size, so a replay agrees).
    pub fn measured(&mut self, at: Millis, disk_mb: u64) {
        self.disk_mb = disk_mb;
        if let Some((Phase::Sleeping, _, _)) = self.open {
            self.open_at(Phase::Sleeping, at);
        }
    }

    /// The plan's RAM changed: a run is charged at it from the next time one opens (the
    /// restart a plan change makes, or the next start when it waits for room).
    pub fn set_plan(&mut self, ram_mib: u32) {
        self.ram_mib = ram_mib;
    }

    /// The phase it is billed for now, if any.
    pub fn phase(&self) -> Option<(Phase, Millis)> {
        self.open.map(|(p, since, _)| (p, since))
    }

    /// Quantity per ms in phase `p`: plan RAM (MiB) running, disk (MB) asleep.
    fn rate_of(&self, p: Phase) -> u128 {
        match p {
            Phase::Active => u128::from(self.ram_mib),
            Phase::Sleeping => u128::from(self.disk_mb),
        }
    }

    /// Quantity of phase `p` in `[from, to)` (spans and the open phase clipped to it).
    pub fn quantity(&self, p: Phase, from: Millis, to: Millis) -> u128 {
        let clip = |a: Millis, b: Millis| (b.min(to) - a.max(from)).max(0) as u128;
        let closed: u128 = self.spans.iter().filter(|s| s.0 == p).map(|s| clip(s.1, s.2) * s.3).sum();
        let open = match self.open {
            Some((q, since, rate)) if q == p => {
                let end = if q == Phase::Sleeping { to.min(self.sleep_until) } else { to };
                clip(since, end) * rate
            }
            _ => 0,
        };
        closed + open
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
    /// The sign-up credit's unused part expires this long after sign-up (`None`: never).
    pub promo_expiry: Option<Millis>,
}

impl Default for BillingSetup {
    fn default() -> Self {
        BillingSetup {
            prices: Prices::default(),
            window: conductor_core::time::MINUTE,
            warn_before: 24 * conductor_core::time::HOUR,
            webhook: None,
            promo_expiry: None,
        }
    }
}

/// What a server of `ram_mib` and `disk_mb` costs over `ms` in `phase` (nothing when
/// archived or new: `None`).
pub fn phase_cost(phase: Option<Phase>, ram_mib: u32, disk_mb: u64, ms: Millis, prices: &Prices) -> Money {
    let Some(p) = phase else { return Money::ZERO };
    let per_ms = match p {
        Phase::Active => u128::from(ram_mib),
        Phase::Sleeping => u128::from(disk_mb),
    };
    let (price, unit) = p.price(prices);
    conductor_core::billing::rate(per_ms * ms.max(0) as u128, price, unit)
}

impl Phase {
    /// The billable phase of a server in `state` (starting servers are shown at the running
    /// rate they are about to pay).
    pub fn of_state(state: crate::store::ServerState) -> Option<Phase> {
        use crate::store::ServerState as S;
        match state {
            S::Running | S::Starting => Some(Phase::Active),
            S::Sleeping => Some(Phase::Sleeping),
            _ => None,
        }
    }
}

/// What `usage` costs per hour in its current phase (zero when archived or new).
pub fn burn_per_hour(usage: &Usage, prices: &Prices) -> Money {
    phase_cost(usage.phase().map(|p| p.0), usage.ram_mib, usage.disk_mb, conductor_core::time::HOUR, prices)
}

/// One line of a statement's usage: a server's charges in one phase over the month.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UsageLine {
    pub server: i64,
    pub name: String,
    pub phase: Phase,
    /// GiB-hours (active) or GB-months (sleeping), 6 decimals.
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Money,
    pub unit: &'static str,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Money,
}

/// A monthly statement (calendar month, UTC): opening balance, credits one by one, charges
/// by server and phase, closing balance. Archived worlds are free, so they have no line.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Statement {
    pub owner: i64,
    pub month: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub opening: Money,
    pub credits: Vec<crate::store::Entry>,
    pub usage: Vec<UsageLine>,
    #[serde(with = "rust_decimal::serde::str")]
    pub charged: Money,
    /// What an invoice shows: the charges rounded to cents.
    #[serde(with = "rust_decimal::serde::str")]
    pub charged_cents: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub closing: Money,
}

/// The statement of `[from, to)` (`month` names it) from the owner's ledger, oldest first.
pub fn statement(
    owner: i64,
    month: &str,
    from: Millis,
    to: Millis,
    entries: &[crate::store::Entry],
    names: &std::collections::HashMap<i64, String>,
) -> Statement {
    let opening: Money = entries.iter().filter(|e| e.at < from).map(|e| e.amount).sum();
    let inside: Vec<&crate::store::Entry> = entries.iter().filter(|e| e.at >= from && e.at < to).collect();
    let credits: Vec<crate::store::Entry> =
        inside.iter().filter(|e| e.kind != EntryKind::Charge).map(|e| (*e).clone()).collect();
    let mut lines: std::collections::BTreeMap<(i64, u8), (Money, u128)> = Default::default();
    for e in inside.iter().filter(|e| e.kind == EntryKind::Charge) {
        let phase = u8::from(e.data["phase"] == "sleeping");
        let quantity: u128 = e.data["quantity"].as_str().and_then(|q| q.parse().ok()).unwrap_or(0);
        let line = lines.entry((e.server.unwrap_or(0), phase)).or_default();
        line.0 -= e.amount;
        line.1 += quantity;
    }
    let usage: Vec<UsageLine> = lines
        .into_iter()
        .map(|((server, phase), (amount, quantity))| {
            let (phase, unit, per) = if phase == 0 {
                (Phase::Active, "GiB-h", MIB_MS_PER_GIB_HOUR)
            } else {
                (Phase::Sleeping, "GB-month", MB_MS_PER_GB_MONTH)
            };
            UsageLine {
                server,
                name: names.get(&server).cloned().unwrap_or_else(|| format!("server {server}")),
                phase,
                quantity: conductor_core::billing::rate(quantity, Money::ONE, per),
                unit,
                amount,
            }
        })
        .collect();
    let charged: Money = usage.iter().map(|u| u.amount).sum();
    let closing = opening + inside.iter().map(|e| e.amount).sum::<Money>();
    Statement {
        owner,
        month: month.to_owned(),
        opening,
        credits,
        usage,
        charged,
        charged_cents: charged.round_dp(2),
        closing,
    }
}

impl Statement {
    /// A readable page (Markdown; HTML wraps the same lines).
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "# Statement {} — owner {}\n\nOpening balance: **{} EUR**\n\n",
            self.month,
            self.owner,
            self.opening.round_dp(2)
        );
        if !self.credits.is_empty() {
            out.push_str("## Credits\n\n| date | kind | amount (EUR) | reference |\n|---|---|---:|---|\n");
            for c in &self.credits {
                let reference = c.data["reference"].as_str().or(c.data["reason"].as_str()).unwrap_or(&c.key);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    &conductor_forecast::timefmt::format_rfc3339(c.at)[..10],
                    c.kind.as_str(),
                    c.amount.round_dp(2),
                    reference
                );
            }
            out.push('\n');
        }
        out.push_str("## Usage\n\n| server | phase | quantity | amount (EUR) |\n|---|---|---:|---:|\n");
        for u in &self.usage {
            let _ = writeln!(
                out,
                "| {} | {} | {} {} | {} |",
                u.name,
                u.phase.as_str(),
                u.quantity.normalize(),
                u.unit,
                u.amount
            );
        }
        let _ = write!(
            out,
            "\nArchived worlds are free.\n\nCharged: **{} EUR** ({} exact)\n\nClosing balance: **{} EUR**\n",
            self.charged_cents,
            self.charged,
            self.closing.round_dp(2)
        );
        out
    }

    /// A self-contained HTML page with the same content.
    pub fn html(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut body = String::new();
        let mut in_table = false;
        for line in self.markdown().lines() {
            if let Some(h) = line.strip_prefix("# ") {
                body.push_str(&format!("<h1>{}</h1>\n", esc(h)));
            } else if let Some(h) = line.strip_prefix("## ") {
                body.push_str(&format!("<h2>{}</h2>\n", esc(h)));
            } else if line.starts_with("|---") {
                continue;
            } else if let Some(row) = line.strip_prefix('|') {
                if !in_table {
                    body.push_str("<table>\n");
                    in_table = true;
                }
                let cells: Vec<String> =
                    row.trim_end_matches('|').split('|').map(|c| format!("<td>{}</td>", esc(c.trim()))).collect();
                body.push_str(&format!("<tr>{}</tr>\n", cells.concat()));
            } else {
                if in_table {
                    body.push_str("</table>\n");
                    in_table = false;
                }
                if !line.is_empty() {
                    body.push_str(&format!("<p>{}</p>\n", esc(&line.replace("**", ""))));
                }
            }
        }
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Statement {}</title>\
             <style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}td{{padding:0.2em 0.8em;border-bottom:1px solid #ddd}}</style>\
             </head><body>\n{body}</body></html>\n",
            esc(&self.month)
        )
    }
}

/// Why a payment provider's webhook was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("no valid signature: {0}")]
    Signature(String),
    #[error("{0}")]
    Invalid(String),
}

/// A paid checkout, as Stripe's `checkout.session.completed` reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct Payment {
    pub session: String,
    pub owner: i64,
    pub amount: Money,
}

/// Verifies a Stripe-style signature: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=…]` where
/// v1 = HMAC-SHA256(secret, "<t>.<raw body>"), and `t` within `tolerance_s` of `now`.
pub fn verify_stripe_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: Millis,
    tolerance_s: i64,
) -> Result<(), WebhookError> {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| WebhookError::Signature("the header has no timestamp t=".into()))?;
    if (now / 1000 - t).abs() > tolerance_s {
        return Err(WebhookError::Signature(format!("timestamp {t} is more than {tolerance_s} s away")));
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    // Constant time over equal lengths: the comparison does not leak how much matched.
    let matches = |s: &String| {
        s.len() == expected.len() && s.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    };
    if signatures.iter().any(matches) {
        Ok(())
    } else {
        Err(WebhookError::Signature("no v1 signature matches".into()))
    }
}

/// The payment in a verified event, `None` for events that are not a paid checkout.
pub fn stripe_payment(event: &serde_json::Value) -> Result<Option<Payment>, WebhookError> {
    if event["type"] != "checkout.session.completed" {
        return Ok(None);
    }
    let o = &event["data"]["object"];
    if o["payment_status"] != "paid" {
        return Ok(None);
    }
    let invalid = |m: &str| WebhookError::Invalid(m.to_owned());
    let session = o["id"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| invalid("data.object.id is missing"))?;
    if o["currency"].as_str().map(str::to_ascii_lowercase).as_deref() != Some("eur") {
        return Err(invalid("data.object.currency: only eur is accepted"));
    }
    let cents = o["amount_total"]
        .as_i64()
        .filter(|c| *c > 0)
        .ok_or_else(|| invalid("data.object.amount_total: positive cents"))?;
    let owner = o["client_reference_id"]
        .as_str()
        .or(o["metadata"]["owner_id"].as_str())
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| invalid("data.object.client_reference_id: the owner id"))?;
    Ok(Some(Payment { session: session.to_owned(), owner, amount: Money::new(cents, 2) }))
}

/// The key of an owner's sign-up credit.
pub fn signup_key(owner: i64) -> String {
    format!("grant:signup:{owner}")
}

/// What expires of an owner's sign-up credit: the credit is spent first, so what is left of
/// it is the grant minus the charges before `expiry` (never below zero).
pub fn unused_promotion(entries: &[crate::store::Entry], owner: i64, expiry: Millis) -> Money {
    let key = signup_key(owner);
    let Some(grant) = entries.iter().find(|e| e.key == key) else { return Money::ZERO };
    let spent: Money = entries.iter().filter(|e| e.kind == EntryKind::Charge && e.at < expiry).map(|e| -e.amount).sum();
    (grant.amount - spent).max(Money::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    /// A plan change is charged from the next run on: the run under way keeps its RAM.
    #[test]
    fn a_new_plan_is_charged_from_the_next_run() {
        let mut u = Usage::new(1, 1, 2048, 100);
        u.on(SERVER_STARTED, 0);
        u.set_plan(4096);
        u.on(SERVER_PLACED, 10); // the restart the change makes: the run ends
        u.on(SERVER_RESUMED, 15);
        u.on(SERVER_SLEPT, 25);
        assert_eq!(u.quantity(Phase::Active, 0, 100), 2048 * 10 + 4096 * 10);
    }
}
