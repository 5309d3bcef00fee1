//! What an owner reaches of a running server: its plan (changed at any time, through the
//! core's `change_plan`), its template (changed while it is stopped), its logs and its
//! console. The engine says which node's driver to ask and keeps the rate
//! limits and the audit trail; the API streams without holding the engine.

use super::*;
use crate::driver::ConsoleVia;

/// Console commands a server takes within [`CONSOLE_WINDOW`].
pub const CONSOLE_BURST: usize = 5;
pub const CONSOLE_WINDOW: Millis = 10_000;
/// Log streams followed at once per server.
pub const MAX_FOLLOWS: usize = 4;

impl<S: Store> Live<S> {
    /// Changes a server's plan RAM (SPEC: upgrades during play) as the core decides: a
    /// running server restarts in place when its node has room, moves when another has,
    /// else keeps running and starts on the new plan next time; a stopped one simply
    /// starts on it. `how` is which of those (the `server.plan-changed` event has it too).
    pub async fn change_plan(
        &mut self,
        now: Millis,
        store_id: i64,
        ram_mib: u32,
    ) -> Result<(crate::store::Server, &'static str), LiveError> {
        let id = self.id_of(store_id)?;
        let from = self.core.plan_ram(id);
        let template = self.template_of(store_id).name.clone();
        self.cfg.templates.check(&template, ram_mib).map_err(|(code, message)| LiveError::Invalid { code, message })?;
        let row = self.store.set_server_ram(store_id, ram_mib).await?;
        if from == ram_mib {
            return Ok((row, "unchanged"));
        }
        let running = matches!(self.core.residence(id), Residence::Running { .. } | Residence::Starting { .. });
        self.core.change_plan(now, id, ram_mib, &mut self.out);
        let how = match self.out.commands.iter().find_map(|c| match c {
            conductor_core::Command::Migrate { server, from, to, .. } if *server == id => Some(from == to),
            _ => None,
        }) {
            Some(true) => "restart",
            Some(false) => "move",
            None if running => "next start",
            None => "at start",
        };
        let data = json!({ "from": from, "ram_mib": ram_mib, "how": how });
        self.event(now, SERVER_PLAN_CHANGED, Some(store_id), None, data).await?;
        self.apply(now).await?;
        Ok((row, how))
    }

    /// Switches pay-per-use on or off: from now on the server stops after `idle_timeout`
    /// without players, or runs until it is stopped. Billing does not change (it follows
    /// the phases, whoever ends them).
    pub async fn set_pay_per_use(
        &mut self,
        now: Millis,
        store_id: i64,
        pay_per_use: bool,
    ) -> Result<crate::store::Server, LiveError> {
        let id = self.id_of(store_id)?;
        let before = self.core.spec(id).pay_per_use;
        let row = self.store.set_server_pay_per_use(store_id, pay_per_use).await?;
        if before != pay_per_use {
            self.core.set_pay_per_use(id, pay_per_use);
            self.idle_since.remove(&id);
            let data = json!({ "from": before, "pay_per_use": pay_per_use });
            self.event(now, SERVER_PAY_PER_USE, Some(store_id), None, data).await?;
        }
        Ok(row)
    }

    /// Gives a stopped server another template (`None`: the default); it applies at its
    /// next start (the container is made anew).
    pub async fn set_template(
        &mut self,
        now: Millis,
        store_id: i64,
        template: Option<&str>,
    ) -> Result<crate::store::Server, LiveError> {
        let id = self.id_of(store_id)?;
        let name = template.unwrap_or(&self.cfg.templates.default).to_owned();
        self.cfg
            .templates
            .check(&name, self.core.plan_ram(id))
            .map_err(|(code, message)| LiveError::Invalid { code, message })?;
        if matches!(self.core.residence(id), Residence::Starting { .. } | Residence::Running { .. })
            || self.core.is_queued(id)
        {
            return Err(LiveError::Conflict {
                code: "server_running",
                message: "the template changes while the server is stopped: stop it first".into(),
            });
        }
        let before = self.template_of(store_id).name.clone();
        let row = self.store.set_server_template(store_id, template).await?;
        self.template_names.insert(store_id, template.map(str::to_owned));
        let data = json!({ "from": before, "to": name });
        self.event(now, SERVER_TEMPLATE_CHANGED, Some(store_id), None, data).await?;
        Ok(row)
    }

    /// A token held while a server's log is followed: at most [`MAX_FOLLOWS`] at once.
    pub fn follow_token(&mut self, store_id: i64) -> Result<Arc<()>, LiveError> {
        let token = self.follows.entry(store_id).or_default();
        if Arc::strong_count(token) > MAX_FOLLOWS {
            return Err(LiveError::RateLimited {
                retry_after_s: 5,
                message: format!("at most {MAX_FOLLOWS} followed log streams per server at once"),
            });
        }
        Ok(token.clone())
    }

    /// The driver of the node a server's container is on (running or asleep there).
    pub fn logs_driver(&self, store_id: i64) -> Result<Arc<dyn NodeDriver>, LiveError> {
        let id = self.id_of(store_id)?;
        let no_container = || LiveError::Conflict {
            code: "no_container",
            message: "the server has no container (never started, or archived): no logs".into(),
        };
        let node = self.node_of(id).ok_or_else(no_container)?;
        self.docker.get(node.0 as usize).cloned().flatten().ok_or_else(no_container)
    }

    /// The driver and console of a running server, if its rate allows one more command now.
    pub fn console_target(
        &mut self,
        now: Millis,
        store_id: i64,
    ) -> Result<(Arc<dyn NodeDriver>, ConsoleVia), LiveError> {
        let id = self.id_of(store_id)?;
        let Residence::Running { node } = self.core.residence(id) else {
            return Err(LiveError::Conflict {
                code: "server_not_running",
                message: "console commands go to a running server".into(),
            });
        };
        let sent = self.console_times.entry(store_id).or_default();
        sent.retain(|&at| at > now - CONSOLE_WINDOW);
        if sent.len() >= CONSOLE_BURST {
            let wait = sent.front().map_or(CONSOLE_WINDOW, |&first| first + CONSOLE_WINDOW - now);
            return Err(LiveError::RateLimited {
                retry_after_s: (wait as u64).div_ceil(1000).max(1),
                message: format!("at most {CONSOLE_BURST} console commands per {} s per server", CONSOLE_WINDOW / 1000),
            });
        }
        let driver = self.docker.get(node.0 as usize).cloned().flatten().ok_or_else(|| LiveError::Conflict {
            code: "server_not_running",
            message: "the server's node cannot be reached now".into(),
        })?;
        sent.push_back(now);
        Ok((driver, self.template_of(store_id).console_via()))
    }

    /// The audit trail of a console command: who sent what, and whether it went through.
    pub async fn console_sent(
        &mut self,
        now: Millis,
        store_id: i64,
        by: &str,
        command: &str,
        outcome: Result<(), &str>,
    ) -> Result<(), LiveError> {
        let data = json!({ "by": by, "command": command, "ok": outcome.is_ok(), "error": outcome.err() });
        self.event(now, CONSOLE_COMMAND, Some(store_id), None, data).await
    }
}
