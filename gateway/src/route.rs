//! The route table: which server a host name means, where it runs and what state it is in,
//! as the controller last said (`GET /v1/routes`: a snapshot, then changes since a version).

use serde::Deserialize;
use std::collections::HashMap;

/// A server's state as the gateway needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Never started: it has no world yet; a join creates it.
    New,
    /// Placed (booting or restoring), or its start request waits for room.
    Starting,
    Running,
    /// Stopped, its world on its node.
    Sleeping,
    /// Stopped, its world in the archive.
    Archived,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub server: i64,
    /// Server and owner names (the default host is `<name>.<owner>.<domain>`).
    pub name: String,
    pub owner: String,
    /// Custom host names, lower case.
    #[serde(default)]
    pub hosts: Vec<String>,
    pub state: State,
    pub pay_per_use: bool,
    /// `host:port` of its game port while it runs (or starts).
    pub backend: Option<String>,
    /// Seconds until it should answer, while starting (boot, or restore and boot).
    pub eta_s: Option<u32>,
    /// Why a join must not start it (`balance`), if so.
    pub blocked: Option<String>,
    #[serde(default = "twenty")]
    pub max_players: u32,
}

fn twenty() -> u32 {
    20
}

/// One answer of the controller's route feed.
#[derive(Clone, Debug, Deserialize)]
pub struct Update {
    /// The controller instance's table: a new epoch (a restart) means "resync from scratch".
    pub epoch: String,
    pub version: u64,
    /// A snapshot (replaces the table) or changes only.
    pub full: bool,
    pub routes: Vec<Route>,
    #[serde(default)]
    pub removed: Vec<i64>,
}

/// A DNS label made from a name, if it can be one (lower case a–z, 0–9, '-', 1–63).
pub fn label(name: &str) -> Option<String> {
    let l = name.to_ascii_lowercase();
    let ok = !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-');
    ok.then_some(l)
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub epoch: String,
    pub version: u64,
    routes: HashMap<i64, Route>,
    hosts: HashMap<String, i64>,
    /// `play.example.net`: default hosts are `<name>.<owner>.<domain>`.
    domain: String,
}

impl Table {
    pub fn new(domain: &str) -> Table {
        Table { domain: domain.trim_end_matches('.').to_ascii_lowercase(), ..Table::default() }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Applies a feed answer; `false` if it does not follow from this table (another epoch
    /// and not a snapshot): the caller asks for a snapshot.
    pub fn apply(&mut self, u: Update) -> bool {
        if u.full {
            self.routes.clear();
            self.hosts.clear();
            self.epoch = u.epoch;
        } else if u.epoch != self.epoch {
            return false;
        }
        self.version = u.version;
        for id in u.removed {
            self.remove(id);
        }
        for r in u.routes {
            self.remove(r.server);
            for h in self.hosts_of(&r) {
                self.hosts.insert(h, r.server);
            }
            self.routes.insert(r.server, r);
        }
        true
    }

    fn remove(&mut self, id: i64) {
        if let Some(old) = self.routes.remove(&id) {
            for h in self.hosts_of(&old) {
                if self.hosts.get(&h) == Some(&id) {
                    self.hosts.remove(&h);
                }
            }
        }
    }

    fn hosts_of(&self, r: &Route) -> Vec<String> {
        let mut out: Vec<String> = r.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        if let (Some(n), Some(o), false) = (label(&r.name), label(&r.owner), self.domain.is_empty()) {
            out.push(format!("{n}.{o}.{}", self.domain));
        }
        out
    }

    /// The route of a normalised host name.
    pub fn lookup(&self, host: &str) -> Option<&Route> {
        self.hosts.get(host).and_then(|id| self.routes.get(id))
    }

    pub fn get(&self, server: i64) -> Option<&Route> {
        self.routes.get(&server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(server: i64, name: &str, hosts: &[&str], state: State) -> Route {
        Route {
            server,
            name: name.into(),
            owner: "Alice".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            state,
            pay_per_use: true,
            backend: None,
            eta_s: None,
            blocked: None,
            max_players: 20,
        }
    }

    fn update(epoch: &str, version: u64, full: bool, routes: Vec<Route>, removed: Vec<i64>) -> Update {
        Update { epoch: epoch.into(), version, full, routes, removed }
    }

    #[test]
    fn default_and_custom_hosts_route_and_follow_changes() {
        let mut t = Table::new("Play.Example.NET.");
        assert!(t.apply(update("e1", 1, true, vec![route(1, "Survival", &["mc.alice.de"], State::Sleeping)], vec![])));
        assert_eq!(t.lookup("survival.alice.play.example.net").map(|r| r.server), Some(1));
        assert_eq!(t.lookup("mc.alice.de").map(|r| r.server), Some(1));
        // A change: the custom host moves away, the state changes.
        assert!(t.apply(update("e1", 2, false, vec![route(1, "Survival", &[], State::Running)], vec![])));
        assert!(t.lookup("mc.alice.de").is_none());
        assert_eq!(t.lookup("survival.alice.play.example.net").unwrap().state, State::Running);
        // Removed.
        assert!(t.apply(update("e1", 3, false, vec![], vec![1])));
        assert!(t.lookup("survival.alice.play.example.net").is_none());
        // Changes from another epoch do not apply: a resync is needed.
        assert!(!t.apply(update("e2", 1, false, vec![route(2, "x", &[], State::New)], vec![])));
        assert_eq!(t.version, 3);
    }

    #[test]
    fn names_that_cannot_be_labels_get_only_custom_hosts() {
        assert_eq!(label("My Server"), None);
        assert_eq!(label("-x"), None);
        assert_eq!(label("Lobby-2"), Some("lobby-2".into()));
        let mut t = Table::new("play.example.net");
        t.apply(update("e", 1, true, vec![route(1, "My Server", &["mine.example.org"], State::New)], vec![]));
        assert_eq!(t.lookup("mine.example.org").map(|r| r.server), Some(1));
        assert_eq!(t.hosts.len(), 1);
    }
}
