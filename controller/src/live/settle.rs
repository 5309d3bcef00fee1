//! Billing settlement of the live engine: every metering window that ended is rated into
//! the ledger (idempotent keys), then owners who pay are settled by the core's
//! `account_action` — warned when the balance runs low, their servers stopped at zero.

use super::*;
use crate::billing::{burn_per_hour, post_charges};
use crate::events::*;

impl<S: Store> Live<S> {
    /// What a server costs while it runs or sleeps: since when, and the cost of that phase so
    /// far (what the customer sees as the current session).
    pub fn current_phase(
        &self,
        store_id: i64,
        now: Millis,
    ) -> Option<(crate::billing::Phase, Millis, crate::store::Money)> {
        let u = &self.usage[self.by_store_id.get(&store_id)?.0 as usize];
        let (phase, since) = u.phase()?;
        let (price, unit) = phase.price(&self.cfg.billing.prices);
        Some((phase, since, conductor_core::billing::rate(u.quantity(phase, since, now), price, unit)))
    }

    /// Meters every window that ended by `now` into the ledger, then settles the owners
    /// that pay: warned when the balance runs low, servers stopped (gracefully) at zero.
    pub(super) async fn meter(&mut self, now: Millis) -> Result<(), LiveError> {
        let window = self.cfg.billing.window;
        let to = now - now.rem_euclid(window);
        if to <= self.metered_until {
            return Ok(());
        }
        let prices = self.cfg.billing.prices.clone();
        let mut balances: HashMap<i64, crate::store::Money> = HashMap::new();
        for u in &mut self.usage {
            let windows = u.windows(self.metered_until, to, window);
            for p in post_charges(&*self.store, &windows, &prices, now).await? {
                balances.insert(p.entry.owner, p.balance);
            }
            u.fold(to);
        }
        let from = std::mem::replace(&mut self.metered_until, to);
        if from.div_euclid(conductor_core::time::HOUR) != to.div_euclid(conductor_core::time::HOUR) {
            // A checkpoint an hour: a restart meters again from here (idempotently).
            self.event(now, BILLING_METERED, None, None, json!({ "until": to })).await?;
            self.expire_promotions(from, to).await?;
        }
        // Owners who pay now: what their servers cost per hour, and which of them run, start
        // or wait (what a stop at zero stops) — one pass over the servers.
        let mut owners: BTreeMap<i64, (crate::store::Money, Vec<i64>)> = BTreeMap::new();
        for (i, u) in self.usage.iter().enumerate() {
            let b = burn_per_hour(u, &prices);
            let s = ServerId(i as u32);
            let active = self.core.is_queued(s)
                || matches!(
                    self.core.residence(s),
                    conductor_core::Residence::Running { .. } | conductor_core::Residence::Starting { .. }
                );
            if b > crate::store::Money::ZERO || active {
                let o = owners.entry(u.owner).or_default();
                o.0 += b;
                if active {
                    o.1.push(self.server_ids[i]);
                }
            }
        }
        for owner in balances.keys() {
            owners.entry(*owner).or_default();
        }
        owners.retain(|owner, (burn, _)| *burn > crate::store::Money::ZERO || balances.contains_key(owner));
        for (owner, (burn, running)) in owners {
            let balance = match balances.get(&owner) {
                Some(b) => *b,
                None => self.store.balance(owner).await?,
            };
            self.settle(owner, balance, burn, running, now).await?;
        }
        Ok(())
    }

    /// The unused sign-up credit of owners whose promotion expired in `(from, to]` goes (an
    /// adjustment, once per owner by its key).
    async fn expire_promotions(&mut self, from: Millis, to: Millis) -> Result<(), LiveError> {
        let Some(expiry) = self.cfg.billing.promo_expiry else { return Ok(()) };
        for o in self.store.owners().await? {
            let at = o.created_at + expiry;
            if at <= from || at > to {
                continue;
            }
            let entries = self.store.ledger(o.id, 0, u32::MAX).await?;
            let unused = crate::billing::unused_promotion(&entries, o.id, at);
            if unused > crate::store::Money::ZERO {
                let entry = crate::store::NewEntry {
                    owner: o.id,
                    kind: crate::store::EntryKind::Adjustment,
                    amount: -unused,
                    key: format!("expire:{}", crate::billing::signup_key(o.id)),
                    at,
                    server: None,
                    window_start: None,
                    data: json!({ "reason": "unused sign-up credit expired" }),
                };
                self.store.post(entry).await?;
            }
        }
        Ok(())
    }

    async fn settle(
        &mut self,
        owner: i64,
        balance: crate::store::Money,
        burn: crate::store::Money,
        running: Vec<i64>,
        now: Millis,
    ) -> Result<(), LiveError> {
        use conductor_core::billing::{account_action, AccountAction};
        let data = json!({ "owner": owner, "balance": balance.to_string(), "burn_per_hour": burn.to_string() });
        match account_action(balance, burn, self.cfg.billing.warn_before) {
            AccountAction::Fine => {
                self.warned.remove(&owner);
                self.exhausted.remove(&owner);
            }
            AccountAction::Warn { covers } => {
                self.exhausted.remove(&owner);
                if self.warned.insert(owner) {
                    let mut data = data;
                    data["covers_ms"] = json!(covers);
                    let lasts = match covers / 1000 {
                        s if s < 60 => format!("{s} s"),
                        s if s < 3600 => format!("{} min", s / 60),
                        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
                    };
                    let text =
                        format!("Owner {owner}: the balance of {balance} EUR lasts about {lasts} at {burn} EUR/h.");
                    self.event(now, ACCOUNT_LOW_BALANCE, None, None, data).await?;
                    self.notify(now, text).await?;
                }
            }
            AccountAction::Stop => {
                // Every server of the owner that runs, starts or waits stops (world saved).
                if self.exhausted.insert(owner) || !running.is_empty() {
                    let mut data = data;
                    data["stopped"] = json!(running);
                    self.event(now, ACCOUNT_EXHAUSTED, None, None, data).await?;
                    let text =
                        format!("Owner {owner}: the balance is used up ({balance} EUR); servers {running:?} stop.");
                    self.notify(now, text).await?;
                }
                for id in running {
                    self.request_stop(id, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Tells the owner-facing webhook (if any); a failure is recorded, never fatal.
    pub(super) async fn notify(&mut self, now: Millis, text: String) -> Result<(), LiveError> {
        let url = self.cfg.billing.webhook.clone();
        self.post_webhook(url, now, text).await
    }

    /// Tells the operators' webhook (`ops_webhook`), once per incident (the callers decide).
    pub(super) async fn alert(&mut self, now: Millis, text: String) -> Result<(), LiveError> {
        let url = self.cfg.healing.ops_webhook.clone();
        self.post_webhook(url, now, text).await
    }

    async fn post_webhook(&mut self, url: Option<String>, now: Millis, text: String) -> Result<(), LiveError> {
        let Some(url) = url else { return Ok(()) };
        let body = json!({ "content": text }).to_string();
        let sent = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        self.event(now, WEBHOOK_FAILED, None, None, json!({ "url": url, "error": failure })).await
    }
}
