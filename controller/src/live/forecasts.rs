//! What the scaling policies are given besides the fleet: the nightly forecast (handed over
//! from the store, dropped when older than `max_age_h`) and each policy's mode (shadow or
//! enforce, switched by an admin and kept across restarts).

use super::*;
use conductor_forecast::ForecastDocument;

/// A scaling policy as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyView {
    pub index: usize,
    pub name: &'static str,
    /// `None`: the policy has no shadow mode (reactive).
    pub shadow: Option<bool>,
    /// What the configuration says (an admin switch overrides it until the file changes).
    pub configured_shadow: Option<bool>,
}

/// What reading the configuration file again changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Policies switched by the file: (index, shadow).
    pub switched: Vec<(usize, bool)>,
    /// Parts the file changed that apply at the next start.
    pub restart_needed: Vec<String>,
}

impl<S: Store> Live<S> {
    /// The configuration file read again (SIGHUP), with its scheduler configuration and the
    /// other parts it changed (`changed`, by name): a policy whose `shadow` the file now
    /// sets otherwise is switched to it (`policy.mode` by "reload": the edited file wins, and
    /// a restart keeps it); every other change waits for a restart — the engine is not
    /// rebuilt under a running fleet. Recorded as `config.reloaded`.
    pub async fn reload(
        &mut self,
        scheduler: &conductor_core::SchedulerConfig,
        changed: Vec<String>,
        now: Millis,
    ) -> Result<Reloaded, LiveError> {
        let mut out = Reloaded { switched: Vec::new(), restart_needed: changed };
        let current = &self.cfg.scheduler;
        // The new file with the running modes: does it change anything else?
        let mut same = scheduler.clone();
        if same.scaling.policies.len() == current.scaling.policies.len() {
            for (p, c) in same.scaling.policies.iter_mut().zip(&current.scaling.policies) {
                if let Some(shadow) = c.shadow() {
                    p.set_shadow(shadow);
                }
            }
        }
        if format!("{same:?}") != format!("{current:?}") {
            out.restart_needed.push("policy".into());
        } else {
            let switched: Vec<(usize, bool)> = scheduler
                .scaling
                .policies
                .iter()
                .zip(&current.scaling.policies)
                .enumerate()
                .filter_map(|(i, (new, old))| new.shadow().filter(|&s| Some(s) != old.shadow()).map(|s| (i, s)))
                .collect();
            for &(index, shadow) in &switched {
                self.cfg.scheduler.scaling.policies[index].set_shadow(shadow);
                self.set_policy_shadow(index, shadow, "reload", now).await?;
            }
            out.switched = switched;
        }
        let data = serde_json::to_value(&out).expect("plain data");
        self.event(now, CONFIG_RELOADED, None, None, data).await?;
        Ok(out)
    }

    /// The configuration file could not be read again: the running one stays.
    pub async fn reload_failed(&mut self, error: &str, now: Millis) -> Result<(), LiveError> {
        self.event(now, CONFIG_RELOAD_FAILED, None, None, json!({ "error": error })).await
    }

    /// When the forecast the engine was last handed was made (used or not).
    pub fn forecast_made_at(&self) -> Option<Millis> {
        self.forecast_made_at
    }

    /// Whether the forecast in use went stale (forecast-driven policies are neutral).
    pub fn forecast_stale(&self) -> bool {
        self.forecast_stale
    }

    /// Counts a failed nightly run (`/metrics`).
    pub fn forecast_failed(&mut self) {
        self.metrics.forecast_failures += 1;
    }

    fn max_age(&self) -> Millis {
        self.cfg.forecast.as_ref().map_or(crate::forecasting::DEFAULT_MAX_AGE, |f| f.max_age)
    }

    /// Hands the scheduler the stored forecast made at `made_at`, as the twin does every
    /// night: `forecast.applied`, or `forecast.unusable` (no peak-RAM series) or
    /// `forecast.stale` (already too old) and the previous forecast is kept or dropped.
    pub async fn use_forecast(
        &mut self,
        made_at: Millis,
        doc: &serde_json::Value,
        now: Millis,
    ) -> Result<bool, LiveError> {
        self.forecast_made_at = Some(made_at);
        let read = serde_json::from_value::<ForecastDocument>(doc.clone())
            .map_err(|e| format!("not a forecast document: {e}"))
            .and_then(|d| crate::forecasting::demand_of(&d));
        let demand = match read {
            Ok(d) => d,
            Err(error) => {
                let data = json!({ "made_at": made_at, "error": error });
                self.event(now, FORECAST_UNUSABLE, None, None, data).await?;
                return Ok(false);
            }
        };
        if now - made_at > self.max_age() {
            self.stale(made_at, now).await?;
            return Ok(false);
        }
        let data =
            json!({ "made_at": made_at, "origin": demand.start, "model": demand.source, "steps": demand.mean.len() });
        self.core.set_forecast(demand);
        self.forecast_stale = false;
        self.event(now, FORECAST_APPLIED, None, None, data).await?;
        Ok(true)
    }

    /// Drops the forecast once it is older than `max_age_h` (checked every step).
    pub(super) async fn check_forecast(&mut self, now: Millis) -> Result<(), LiveError> {
        match self.forecast_made_at {
            Some(made) if now - made > self.max_age() && !self.forecast_stale => self.stale(made, now).await,
            _ => Ok(()),
        }
    }

    async fn stale(&mut self, made_at: Millis, now: Millis) -> Result<(), LiveError> {
        let had = self.core.forecast().is_some();
        self.core.clear_forecast();
        self.forecast_stale = true;
        let data = json!({
            "made_at": made_at,
            "age_s": (now - made_at) / 1000,
            "max_age_s": self.max_age() / 1000,
            "dropped": had,
        });
        self.event(now, FORECAST_STALE, None, None, data).await
    }

    /// At start-up: the newest stored forecast, as the running controller had it.
    pub(super) async fn adopt_forecast(&mut self, now: Millis) -> Result<(), LiveError> {
        if let Some((made_at, doc)) = self.store.latest_forecast().await? {
            self.use_forecast(made_at, &doc, now).await?;
        }
        Ok(())
    }

    /// The scaling policies, in configuration order, with their modes.
    pub fn policies(&self) -> Vec<PolicyView> {
        let configured = &self.cfg.scheduler.scaling.policies;
        self.core
            .config()
            .scaling
            .policies
            .iter()
            .enumerate()
            .map(|(index, p)| PolicyView {
                index,
                name: p.name(),
                shadow: p.shadow(),
                configured_shadow: configured.get(index).and_then(|c| c.shadow()),
            })
            .collect()
    }

    /// Switches policy `index` between shadow and enforce (`policy.mode`, with what the
    /// configuration said, so that a restart keeps the switch until the file changes).
    pub async fn set_policy_shadow(
        &mut self,
        index: usize,
        shadow: bool,
        by: &str,
        now: Millis,
    ) -> Result<PolicyView, LiveError> {
        let Some(before) = self.policies().into_iter().nth(index) else {
            return Err(LiveError::Invalid { code: "unknown_policy", message: format!("there is no policy {index}") });
        };
        if before.shadow.is_none() {
            return Err(LiveError::Invalid {
                code: "no_shadow_mode",
                message: format!("policy {index} ({}) has no shadow mode", before.name),
            });
        }
        self.core.set_shadow(index, shadow);
        let after = self.policies().swap_remove(index);
        let data = json!({
            "index": index,
            "from": before.name,
            "to": after.name,
            "shadow": shadow,
            "configured_shadow": before.configured_shadow,
            "by": by,
        });
        self.event(now, POLICY_MODE, None, None, data).await?;
        Ok(after)
    }

    /// At start-up: the latest admin switch of each policy, while the configuration still
    /// says what it said then (an edited file wins).
    pub(super) fn adopt_policy_modes(&mut self, latest: &BTreeMap<usize, serde_json::Value>) {
        for (&index, e) in latest {
            let configured = self.cfg.scheduler.scaling.policies.get(index).and_then(|p| p.shadow());
            let (Some(configured), Some(then), Some(shadow)) =
                (configured, e["configured_shadow"].as_bool(), e["shadow"].as_bool())
            else {
                continue;
            };
            let kind = |name: &str| name.trim_end_matches("-shadow").to_owned();
            let same_policy =
                self.cfg.scheduler.scaling.policies.get(index).map(|p| kind(p.name())) == e["to"].as_str().map(kind);
            if configured == then && same_policy {
                self.core.set_shadow(index, shadow);
            }
        }
    }
}
