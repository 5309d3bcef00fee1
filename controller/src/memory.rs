//! The store in memory: the same contract as PostgreSQL, for fast unit tests.

use crate::store::*;
use conductor_core::Millis;
use std::sync::Mutex;

#[derive(Default)]
struct State {
    owners: Vec<Owner>,
    tokens: Vec<(i64, [u8; 32])>,
    servers: Vec<Server>,
    /// (server, node, started, ended)
    placements: Vec<(i64, i64, Millis, Option<Millis>)>,
    nodes: Vec<Node>,
    events: Vec<Event>,
    intents: Vec<Intent>,
    forecasts: Vec<(Millis, serde_json::Value)>,
    jobs: Vec<Job>,
    ledger: Vec<Entry>,
    /// Index of each ledger key (posting is insert-if-absent by key).
    ledger_keys: std::collections::HashMap<String, usize>,
    balances: std::collections::HashMap<i64, Money>,
    hosts: std::collections::BTreeMap<String, i64>,
}

impl State {
    /// Ids are 1, 2, … in creation order: the row is at id − 1.
    fn has_server(&self, id: i64) -> bool {
        usize::try_from(id - 1).ok().and_then(|i| self.servers.get(i)).is_some_and(|x| x.id == id)
            || self.servers.iter().any(|x| x.id == id)
    }

    fn has_owner(&self, id: i64) -> bool {
        usize::try_from(id - 1).ok().and_then(|i| self.owners.get(i)).is_some_and(|x| x.id == id)
            || self.owners.iter().any(|x| x.id == id)
    }
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut s = self.state.lock().map_err(|_| StoreError::Backend("poisoned".into()))?;
        f(&mut s)
    }
}

fn not_found(what: &'static str, id: i64) -> StoreError {
    StoreError::NotFound { what, id: id.to_string() }
}

impl Store for MemoryStore {
    async fn create_owner(&self, name: &str, now: Millis) -> Result<Owner> {
        self.with(|s| {
            if s.owners.iter().any(|o| o.name == name) {
                return Err(StoreError::Conflict(format!("owner {name:?} exists")));
            }
            let o = Owner { id: s.owners.len() as i64 + 1, name: name.into(), created_at: now };
            s.owners.push(o.clone());
            Ok(o)
        })
    }

    async fn owner(&self, id: i64) -> Result<Owner> {
        self.with(|s| s.owners.iter().find(|o| o.id == id).cloned().ok_or_else(|| not_found("owner", id)))
    }

    async fn owners(&self) -> Result<Vec<Owner>> {
        self.with(|s| Ok(s.owners.clone()))
    }

    async fn add_token(&self, owner: i64, token_sha256: [u8; 32], _now: Millis) -> Result<()> {
        self.with(|s| {
            if !s.owners.iter().any(|o| o.id == owner) {
                return Err(not_found("owner", owner));
            }
            if s.tokens.iter().any(|t| t.1 == token_sha256) {
                return Err(StoreError::Conflict("token exists".into()));
            }
            s.tokens.push((owner, token_sha256));
            Ok(())
        })
    }

    async fn owner_by_token(&self, token_sha256: [u8; 32]) -> Result<Option<i64>> {
        self.with(|s| Ok(s.tokens.iter().find(|t| t.1 == token_sha256).map(|t| t.0)))
    }

    async fn create_server(&self, n: NewServer, now: Millis) -> Result<Server> {
        self.with(|s| {
            if !s.owners.iter().any(|o| o.id == n.owner) {
                return Err(not_found("owner", n.owner));
            }
            if n.ram_mib == 0 {
                return Err(StoreError::Invalid("ram_mib must be positive".into()));
            }
            if s.servers.iter().any(|x| x.owner == n.owner && x.name == n.name && x.state != ServerState::Deleted) {
                return Err(StoreError::Conflict(format!("server {:?} exists", n.name)));
            }
            let server = Server {
                id: s.servers.len() as i64 + 1,
                owner: n.owner,
                name: n.name,
                ram_mib: n.ram_mib,
                disk_mb: n.disk_mb,
                pay_per_use: n.pay_per_use,
                cost_mode: n.cost_mode,
                state: ServerState::New,
                node: None,
                created_at: now,
                updated_at: now,
                template: None,
            };
            s.servers.push(server.clone());
            Ok(server)
        })
    }

    async fn server(&self, id: i64) -> Result<Server> {
        self.with(|s| s.servers.iter().find(|x| x.id == id).cloned().ok_or_else(|| not_found("server", id)))
    }

    async fn servers(&self, owner: Option<i64>) -> Result<Vec<Server>> {
        self.with(|s| {
            Ok(s.servers
                .iter()
                .filter(|x| x.state != ServerState::Deleted && owner.is_none_or(|o| x.owner == o))
                .cloned()
                .collect())
        })
    }

    async fn set_server_state(&self, id: i64, state: ServerState, node: Option<i64>, now: Millis) -> Result<Server> {
        self.with(|s| {
            if let Some(n) = node {
                if !s.nodes.iter().any(|x| x.id == n) {
                    return Err(not_found("node", n));
                }
            }
            let active = matches!(state, ServerState::Starting | ServerState::Running);
            if active && node.is_none() {
                return Err(StoreError::Invalid(format!("a {} server needs a node", state.as_str())));
            }
            let server = s.servers.iter_mut().find(|x| x.id == id).ok_or_else(|| not_found("server", id))?;
            server.state = state;
            server.node = node;
            server.updated_at = now;
            let out = server.clone();
            // A placement is open while the server starts or runs on a node.
            for p in s.placements.iter_mut().filter(|p| p.0 == id && p.3.is_none()) {
                if !active || Some(p.1) != node {
                    p.3 = Some(now);
                }
            }
            if let (true, Some(n)) = (active, node) {
                if !s.placements.iter().any(|p| p.0 == id && p.1 == n && p.3.is_none()) {
                    s.placements.push((id, n, now, None));
                }
            }
            Ok(out)
        })
    }

    async fn placements(&self, server: i64) -> Result<Vec<Placement>> {
        self.with(|s| {
            Ok(s.placements
                .iter()
                .filter(|p| p.0 == server)
                .map(|p| Placement { node: p.1, started_at: p.2, ended_at: p.3 })
                .collect())
        })
    }

    async fn upsert_node(&self, n: NewNode, now: Millis) -> Result<Node> {
        self.with(|s| {
            if let Some(x) = s.nodes.iter().find(|x| x.name == n.name) {
                return Ok(x.clone());
            }
            if n.usable_mib > n.ram_mib || n.ram_mib == 0 {
                return Err(StoreError::Invalid("usable RAM must be within the node's RAM".into()));
            }
            if n.provider_id.is_some() && s.nodes.iter().any(|x| x.provider_id == n.provider_id) {
                return Err(StoreError::Conflict(format!("provider id {:?} is another node's", n.provider_id)));
            }
            let node = Node {
                id: s.nodes.len() as i64 + 1,
                name: n.name,
                kind: n.kind,
                type_name: n.type_name,
                provider_id: n.provider_id,
                state: n.state,
                ram_mib: n.ram_mib,
                usable_mib: n.usable_mib,
                created_at: now,
                updated_at: now,
                docker: None,
                address: None,
                drained: false,
            };
            s.nodes.push(node.clone());
            Ok(node)
        })
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        self.with(|s| Ok(s.nodes.clone()))
    }

    async fn add_node(&self, n: NewNode, docker: &str, address: &str, now: Millis) -> Result<Node> {
        if self.with(|s| Ok(s.nodes.iter().any(|x| x.name == n.name)))? {
            return Err(StoreError::Conflict(format!("a node named {:?} exists or existed", n.name)));
        }
        let node = self.upsert_node(n, now).await?;
        self.with(|s| {
            let x = s.nodes.iter_mut().find(|x| x.id == node.id).expect("just added");
            x.docker = Some(docker.to_owned());
            x.address = Some(address.to_owned());
            Ok(x.clone())
        })
    }

    async fn set_server_template(&self, id: i64, template: Option<&str>) -> Result<Server> {
        self.with(|s| {
            let x = s.servers.iter_mut().find(|x| x.id == id).ok_or_else(|| not_found("server", id))?;
            x.template = template.map(str::to_owned);
            Ok(x.clone())
        })
    }

    async fn set_server_ram(&self, id: i64, ram_mib: u32) -> Result<Server> {
        self.with(|s| {
            let x = s.servers.iter_mut().find(|x| x.id == id).ok_or_else(|| not_found("server", id))?;
            x.ram_mib = ram_mib;
            Ok(x.clone())
        })
    }

    async fn set_server_pay_per_use(&self, id: i64, pay_per_use: bool) -> Result<Server> {
        self.with(|s| {
            let x = s.servers.iter_mut().find(|x| x.id == id).ok_or_else(|| not_found("server", id))?;
            x.pay_per_use = pay_per_use;
            Ok(x.clone())
        })
    }

    async fn set_node_drained(&self, id: i64, drained: bool, now: Millis) -> Result<Node> {
        self.with(|s| {
            let x = s
                .nodes
                .iter_mut()
                .find(|x| x.id == id)
                .ok_or(StoreError::NotFound { what: "node", id: id.to_string() })?;
            x.drained = drained;
            x.updated_at = now;
            Ok(x.clone())
        })
    }

    async fn set_node_state(
        &self,
        id: i64,
        state: NodeState,
        provider_id: Option<String>,
        now: Millis,
    ) -> Result<Node> {
        self.with(|s| {
            if provider_id.is_some() && s.nodes.iter().any(|x| x.id != id && x.provider_id == provider_id) {
                return Err(StoreError::Conflict(format!("provider id {provider_id:?} is another node's")));
            }
            let node = s.nodes.iter_mut().find(|x| x.id == id).ok_or_else(|| not_found("node", id))?;
            node.state = state;
            if provider_id.is_some() {
                node.provider_id = provider_id;
            }
            node.updated_at = now;
            Ok(node.clone())
        })
    }

    async fn append_event(&self, e: NewEvent) -> Result<i64> {
        self.with(|s| {
            let seq = s.events.len() as i64 + 1;
            s.events.push(Event { seq, at: e.at, kind: e.kind, server: e.server, node: e.node, data: e.data });
            Ok(seq)
        })
    }

    async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.with(|s| Ok(s.events.iter().filter(|e| e.seq > after).take(limit as usize).cloned().collect()))
    }

    async fn events_of(&self, kinds: &[&str], since: Millis, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.with(|s| {
            Ok(s.events
                .iter()
                .filter(|e| e.seq > after && e.at >= since && kinds.contains(&e.kind.as_str()))
                .take(limit as usize)
                .cloned()
                .collect())
        })
    }

    async fn latest_events(&self, kinds: &[&str], limit: u32) -> Result<Vec<Event>> {
        self.with(|s| {
            Ok(s.events
                .iter()
                .rev()
                .filter(|e| kinds.contains(&e.kind.as_str()))
                .take(limit as usize)
                .cloned()
                .collect())
        })
    }

    async fn begin_intent(&self, key: &str, action: &str, data: serde_json::Value, now: Millis) -> Result<Intent> {
        self.with(|s| {
            if let Some(i) = s.intents.iter().find(|i| i.key == key) {
                return Ok(i.clone());
            }
            let i = Intent {
                id: s.intents.len() as i64 + 1,
                key: key.into(),
                action: action.into(),
                data,
                state: IntentState::Pending,
                created_at: now,
                outcome: None,
            };
            s.intents.push(i.clone());
            Ok(i)
        })
    }

    async fn finish_intent(&self, id: i64, ok: bool, outcome: serde_json::Value, _now: Millis) -> Result<Intent> {
        self.with(|s| {
            let i = s.intents.iter_mut().find(|i| i.id == id).ok_or_else(|| not_found("intent", id))?;
            if i.state != IntentState::Pending {
                return Err(StoreError::Conflict(format!("intent {id} is already {}", i.state.as_str())));
            }
            i.state = if ok { IntentState::Done } else { IntentState::Failed };
            i.outcome = Some(outcome);
            Ok(i.clone())
        })
    }

    async fn pending_intents(&self) -> Result<Vec<Intent>> {
        self.with(|s| Ok(s.intents.iter().filter(|i| i.state == IntentState::Pending).cloned().collect()))
    }

    async fn post(&self, e: NewEntry) -> Result<Posted> {
        e.check()?;
        self.with(|s| {
            if let Some(old) = s.ledger_keys.get(&e.key).map(|&i| &s.ledger[i]) {
                if !e.same_as(old) {
                    return Err(StoreError::Conflict(format!("key {:?} belongs to another entry", e.key)));
                }
                let balance = s.balances.get(&old.owner).copied().unwrap_or_default();
                return Ok(Posted { entry: old.clone(), new: false, balance });
            }
            if !s.has_owner(e.owner) {
                return Err(not_found("owner", e.owner));
            }
            if let Some(server) = e.server {
                if !s.has_server(server) {
                    return Err(not_found("server", server));
                }
            }
            // As NUMERIC(20, 6) gives it back.
            let mut amount = e.amount;
            amount.rescale(conductor_core::billing::RATING_DP);
            let entry = Entry {
                id: s.ledger.len() as i64 + 1,
                owner: e.owner,
                kind: e.kind,
                amount,
                key: e.key,
                at: e.at,
                server: e.server,
                window_start: e.window_start,
                data: e.data,
            };
            let balance = s.balances.entry(e.owner).or_default();
            *balance += entry.amount;
            let balance = *balance;
            s.ledger_keys.insert(entry.key.clone(), s.ledger.len());
            s.ledger.push(entry.clone());
            Ok(Posted { entry, new: true, balance })
        })
    }

    async fn balance(&self, owner: i64) -> Result<Money> {
        self.with(|s| {
            if !s.owners.iter().any(|o| o.id == owner) {
                return Err(not_found("owner", owner));
            }
            Ok(s.balances.get(&owner).copied().unwrap_or_default())
        })
    }

    async fn ledger(&self, owner: i64, after: i64, limit: u32) -> Result<Vec<Entry>> {
        self.with(|s| {
            if !s.owners.iter().any(|o| o.id == owner) {
                return Err(not_found("owner", owner));
            }
            Ok(s.ledger.iter().filter(|e| e.owner == owner && e.id > after).take(limit as usize).cloned().collect())
        })
    }

    async fn add_host(&self, server: i64, host: &str, _now: Millis) -> Result<()> {
        self.with(|s| {
            if !s.has_server(server) {
                return Err(not_found("server", server));
            }
            match s.hosts.get(host) {
                Some(&other) if other != server => {
                    Err(StoreError::Conflict(format!("the host name {host:?} belongs to another server")))
                }
                _ => {
                    s.hosts.insert(host.to_owned(), server);
                    Ok(())
                }
            }
        })
    }

    async fn remove_host(&self, server: i64, host: &str) -> Result<bool> {
        self.with(|s| {
            if s.hosts.get(host) == Some(&server) {
                s.hosts.remove(host);
                return Ok(true);
            }
            Ok(false)
        })
    }

    async fn hosts(&self) -> Result<Vec<(String, i64)>> {
        self.with(|s| Ok(s.hosts.iter().map(|(h, id)| (h.clone(), *id)).collect()))
    }

    async fn create_job(&self, j: NewJob, now: Millis) -> Result<Job> {
        self.with(|s| {
            if !s.owners.iter().any(|o| o.id == j.owner) {
                return Err(not_found("owner", j.owner));
            }
            let job = Job {
                id: s.jobs.len() as i64 + 1,
                owner: j.owner,
                image: j.image,
                cmd: j.cmd,
                ram_mib: j.ram_mib,
                max_duration_s: j.max_duration_s,
                price_per_gib_hour: j.price_per_gib_hour,
                state: JobState::Queued,
                node: None,
                created_at: now,
                started_at: None,
                kill_at: None,
                ended_at: None,
                outcome: None,
            };
            s.jobs.push(job.clone());
            Ok(job)
        })
    }

    async fn job(&self, id: i64) -> Result<Job> {
        self.with(|s| s.jobs.iter().find(|j| j.id == id).cloned().ok_or_else(|| not_found("job", id)))
    }

    async fn jobs(&self, owner: Option<i64>) -> Result<Vec<Job>> {
        self.with(|s| Ok(s.jobs.iter().filter(|j| owner.is_none_or(|o| j.owner == o)).cloned().collect()))
    }

    async fn update_job(&self, j: &Job) -> Result<()> {
        self.with(|s| {
            let x = s.jobs.iter_mut().find(|x| x.id == j.id).ok_or_else(|| not_found("job", j.id))?;
            *x = j.clone();
            Ok(())
        })
    }

    async fn save_forecast(&self, document: serde_json::Value, now: Millis) -> Result<i64> {
        self.with(|s| {
            s.forecasts.push((now, document));
            Ok(s.forecasts.len() as i64)
        })
    }

    async fn latest_forecast(&self) -> Result<Option<(Millis, serde_json::Value)>> {
        self.with(|s| Ok(s.forecasts.last().cloned()))
    }
}
