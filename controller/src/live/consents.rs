//! Owners and the moves of their servers (consolidation, SPEC §7): an `auto` owner is told
//! before a server with players moves (an event, the account webhook, and the players on
//! the server's console); a `suggest` owner is asked, and the move waits for the answer
//! (`GET /v1/recommendations`, `POST …/accept`). What was told, asked and answered since a
//! server's last move is replayed from the event log at start-up.

use super::*;

/// A move an owner is asked to accept.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recommendation {
    pub server: i64,
    pub owner: i64,
    /// When it was asked (ms since the epoch).
    pub since: Millis,
    /// What the move saves per hour (EUR, exact).
    pub saving_per_hour: String,
}

/// What an owner was told or answered since a server's last move (replayed at start-up).
#[derive(Clone, Debug, Default)]
pub(super) struct Consents {
    announced: Option<Millis>,
    asked: Option<(Millis, String)>,
    accepted: bool,
}

impl Consents {
    /// Follows the event log of one server.
    pub(super) fn on(&mut self, e: &crate::store::Event) {
        match e.kind.as_str() {
            SERVER_ANNOUNCED => self.announced = Some(e.at),
            SERVER_RECOMMENDED => {
                self.asked = Some((e.at, e.data["saving_per_hour"].as_str().unwrap_or("0").to_owned()));
            }
            SERVER_CONSENTED => self.accepted = true,
            SERVER_MIGRATING => *self = Consents::default(),
            _ => {}
        }
    }
}

impl<S: Store> Live<S> {
    /// The moves owners were asked to accept and have not answered (all, or one owner's).
    pub fn recommendations(&self, owner: Option<i64>) -> Vec<Recommendation> {
        self.recommended
            .iter()
            .filter(|(id, _)| self.by_store_id.get(id).is_some_and(|&s| self.core.awaiting_acceptance(s)))
            .map(|(&server, (since, saving, o))| Recommendation {
                server,
                owner: *o,
                since: *since,
                saving_per_hour: saving.clone(),
            })
            .filter(|r| owner.is_none_or(|o| o == r.owner))
            .collect()
    }

    /// The owner (or an admin) accepts the recommended move of `store_id`: it may move at
    /// the next consolidation (`server.consented`).
    pub async fn accept_move(&mut self, now: Millis, store_id: i64, by: &str) -> Result<(), LiveError> {
        let id = self.id_of(store_id)?;
        if !self.core.awaiting_acceptance(id) {
            return Err(LiveError::Conflict {
                code: "not_recommended",
                message: format!("no move of server {store_id} waits for an answer"),
            });
        }
        self.core.accept_recommendation(id);
        self.recommended.remove(&store_id);
        self.event(now, SERVER_CONSENTED, Some(store_id), None, json!({ "by": by })).await
    }

    pub(super) async fn announced(&mut self, now: Millis, server: ServerId, moves_at: Millis) -> Result<(), LiveError> {
        let Some(id) = self.sid_opt(server) else { return Ok(()) };
        let minutes = ((moves_at - now).max(0) + 59_999) / 60_000;
        let text = format!(
            "say This server moves to another machine in about {minutes} min: a short restart, your world is kept."
        );
        let node = self.node_of(server).and_then(|n| self.store_node(n));
        self.event(now, SERVER_ANNOUNCED, Some(id), node, json!({ "moves_at": moves_at, "text": text })).await?;
        self.notify(now, format!("Server {id} moves to another machine in about {minutes} min (cost_mode auto)."))
            .await?;
        if let (Some(node), Mode::Enforce) = (node, self.cfg.mode) {
            self.enqueue(now, Action::Say { server: id, node, text }, None).await?;
        }
        Ok(())
    }

    pub(super) async fn recommended_move(
        &mut self,
        now: Millis,
        server: ServerId,
        saving: rust_decimal::Decimal,
    ) -> Result<(), LiveError> {
        let Some(id) = self.sid_opt(server) else { return Ok(()) };
        let saving = saving.normalize().to_string();
        let owner = self.usage.get(server.0 as usize).map_or(0, |u| u.owner);
        self.recommended.insert(id, (now, saving.clone(), owner));
        self.event(now, SERVER_RECOMMENDED, Some(id), None, json!({ "saving_per_hour": saving })).await?;
        self.notify(
            now,
            format!("Moving server {id} would save {saving} EUR/h: accept with POST /v1/recommendations/{id}/accept."),
        )
        .await
    }

    /// At start-up: each server's consents since its last move, into the core.
    pub(super) fn adopt_consents(&mut self, replayed: HashMap<i64, Consents>) {
        for (store_id, c) in replayed {
            let Some(&id) = self.by_store_id.get(&store_id) else { continue };
            self.core.adopt_consent(id, c.announced, c.asked.is_some(), c.accepted);
            if let (Some((since, saving)), false) = (c.asked, c.accepted) {
                let owner = self.usage.get(id.0 as usize).map_or(0, |u| u.owner);
                self.recommended.insert(store_id, (since, saving, owner));
            }
        }
    }
}
