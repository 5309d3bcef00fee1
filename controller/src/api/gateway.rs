//! The gateways' part of the API: the route feed (`GET /v1/routes`: a snapshot, then the
//! changes since a version, long-polled), waking a server when a player joins, the players
//! each gateway has connected, and the custom host names of servers.
//!
//! The feed is versioned within an *epoch* (one per controller start): a gateway that asks
//! with another epoch — the controller restarted — gets a snapshot and resynchronises.

use super::{caller, live_error, no_engine, visible, Api, ApiError, Body, Caller};
use crate::store::{ServerState, Store};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The route table as the gateways last saw it, with the version of each entry's change.
pub struct RouteFeed {
    epoch: String,
    state: Mutex<FeedState>,
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct FeedState {
    version: u64,
    routes: BTreeMap<i64, (u64, Value)>,
    removed: BTreeMap<i64, u64>,
}

impl Default for RouteFeed {
    fn default() -> Self {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        RouteFeed {
            epoch: format!("{:x}-{:x}", t.as_nanos(), std::process::id()),
            state: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl RouteFeed {
    /// Recomputes every route from the store and the engine; entries that changed get the
    /// next version and wake the gateways waiting for one.
    pub async fn refresh<S: Store>(&self, api: &Api<S>) -> Result<(), ApiError> {
        let now = (api.config.now)();
        let servers = api.store.servers(None).await?;
        let owners: HashMap<i64, String> = api.store.owners().await?.into_iter().map(|o| (o.id, o.name)).collect();
        let mut hosts: HashMap<i64, Vec<String>> = HashMap::new();
        for (h, s) in api.store.hosts().await? {
            hosts.entry(s).or_default().push(h);
        }
        let live_routes: HashMap<i64, crate::live::RouteState> = match &api.live {
            Some(live) => {
                let live = live.lock().await;
                servers.iter().filter_map(|s| live.route(s.id, s.owner, now).map(|r| (s.id, r))).collect()
            }
            None => HashMap::new(),
        };
        let mut next = BTreeMap::new();
        for s in &servers {
            let r = live_routes.get(&s.id).cloned().unwrap_or(crate::live::RouteState {
                state: match s.state {
                    ServerState::New => "new",
                    ServerState::Queued | ServerState::Starting => "starting",
                    ServerState::Running => "running",
                    ServerState::Sleeping => "sleeping",
                    ServerState::Archived | ServerState::Deleted => "archived",
                },
                backend: None,
                eta_s: None,
                blocked: None,
            });
            let v = json!({
                "server": s.id,
                "name": s.name,
                "owner": owners.get(&s.owner).cloned().unwrap_or_default(),
                "hosts": hosts.remove(&s.id).unwrap_or_default(),
                "state": r.state,
                "pay_per_use": s.pay_per_use,
                "backend": r.backend,
                "eta_s": r.eta_s,
                "blocked": r.blocked,
            });
            next.insert(s.id, v);
        }
        let mut st = self.state.lock().unwrap();
        let before = st.version;
        let gone: Vec<i64> = st.routes.keys().filter(|id| !next.contains_key(id)).copied().collect();
        for id in gone {
            st.version += 1;
            let v = st.version;
            st.routes.remove(&id);
            st.removed.insert(id, v);
        }
        for (id, v) in next {
            if st.routes.get(&id).is_none_or(|(_, old)| *old != v) {
                st.version += 1;
                let ver = st.version;
                st.removed.remove(&id);
                st.routes.insert(id, (ver, v));
            }
        }
        let version = st.version;
        drop(st);
        if version != before {
            self.changed.send_replace(version);
        }
        Ok(())
    }

    fn answer(&self, since: Option<u64>) -> Value {
        let st = self.state.lock().unwrap();
        let (full, since) = match since {
            Some(v) if v <= st.version => (false, v),
            _ => (true, 0),
        };
        let routes: Vec<&Value> = st.routes.values().filter(|(v, _)| full || *v > since).map(|(_, r)| r).collect();
        let removed: Vec<i64> =
            if full { vec![] } else { st.removed.iter().filter(|(_, v)| **v > since).map(|(id, _)| *id).collect() };
        json!({ "epoch": self.epoch, "version": st.version, "full": full, "routes": routes, "removed": removed })
    }
}

/// Refreshes the routes after something changed; a failure is the next refresh's business.
pub(super) async fn routes_changed<S: Store>(api: &Api<S>) {
    if let Err(e) = api.routes.refresh(api).await {
        eprintln!("conductor: refreshing routes: {}", e.message());
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteQuery {
    since: Option<u64>,
    epoch: Option<String>,
    /// Wait up to this long for a change (at most 30 s).
    #[serde(default)]
    wait_s: u64,
}

/// `GET /v1/routes`: the table (no `since`, or another epoch), or the changes after `since`
/// — waiting up to `wait_s` for one (admin token: the gateways').
pub(super) async fn routes<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    query: Result<Query<RouteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("the route table"));
    }
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let since = q.since.filter(|_| q.epoch.as_deref() == Some(api.routes.epoch.as_str()));
    let Some(since) = since else {
        api.routes.refresh(&api).await?;
        return Ok(Json(api.routes.answer(None)));
    };
    let mut changed = api.routes.changed.subscribe();
    let wait = Duration::from_secs(q.wait_s.min(30));
    let deadline = tokio::time::Instant::now() + wait;
    while *changed.borrow_and_update() <= since {
        if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
            break;
        }
    }
    Ok(Json(api.routes.answer(Some(since))))
}

/// `POST /v1/wake/{id}`: a gateway wakes a server a player joins (admin token). Only
/// pay-per-use servers wake this way; others are started by their owners.
pub(super) async fn wake<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<super::ServerView>), ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("waking servers"));
    }
    let server = visible(&api, &headers, &id).await?;
    if !server.pay_per_use {
        return Err(ApiError::new(StatusCode::CONFLICT, "not_pay_per_use", "only pay-per-use servers wake on a join"));
    }
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    if !matches!(server.state, ServerState::Running | ServerState::Starting | ServerState::Queued) {
        live.lock().await.request_start(server.id, (api.config.now)()).await.map_err(live_error)?;
    }
    routes_changed(&api).await;
    Ok((StatusCode::ACCEPTED, Json(api.store.server(server.id).await?.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlayersReport {
    /// Open player connections by server id.
    players: BTreeMap<String, u32>,
    /// How long the report holds (a gateway that stops reporting is forgotten).
    #[serde(default = "fifteen")]
    ttl_s: u64,
}

fn fifteen() -> u64 {
    15
}

/// `PUT /v1/gateways/{id}/players`: a gateway's open player connections per server.
pub(super) async fn players<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(gateway): Path<String>,
    Body(report): Body<PlayersReport>,
) -> Result<StatusCode, ApiError> {
    if caller(&api, &headers).await? != Caller::Admin {
        return Err(ApiError::forbidden("reporting players"));
    }
    if gateway.is_empty() || gateway.len() > 128 {
        return Err(ApiError::invalid("gateway id: 1 to 128 characters"));
    }
    let mut counts = HashMap::new();
    for (id, n) in report.players {
        let id: i64 = id.parse().map_err(|_| ApiError::invalid(format!("players: {id:?} is not a server id")))?;
        counts.insert(id, n);
    }
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let ttl = report.ttl_s.clamp(1, 600) as conductor_core::Millis * 1000;
    live.lock().await.gateway_report(&gateway, counts, ttl, (api.config.now)());
    Ok(StatusCode::NO_CONTENT)
}

/// A custom host name: lower case, a DNS name of two labels or more, not an address.
pub fn valid_host(host: &str) -> Result<String, String> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = h.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) || h.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{host:?} is not a host name (labels of a-z, 0-9 and '-', two or more, up to 253 characters)"
        ));
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{host:?} is not a host name (an all-digit top-level label)"));
    }
    Ok(h)
}

/// `PUT /v1/servers/{id}/hosts/{host}`: players reach the server at this name too.
pub(super) async fn add_host<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path((id, host)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let host = valid_host(&host).map_err(ApiError::invalid)?;
    api.store.add_host(server.id, &host, (api.config.now)()).await?;
    routes_changed(&api).await;
    Ok(Json(json!({ "server": server.id, "host": host })))
}

/// `DELETE /v1/servers/{id}/hosts/{host}`.
pub(super) async fn remove_host<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path((id, host)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if !api.store.remove_host(server.id, &host).await? {
        return Err(ApiError::not_found("host name"));
    }
    routes_changed(&api).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/servers/{id}/hosts`.
pub(super) async fn list_hosts<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let server = visible(&api, &headers, &id).await?;
    let hosts: Vec<String> =
        api.store.hosts().await?.into_iter().filter(|(_, s)| *s == server.id).map(|(h, _)| h).collect();
    Ok(Json(json!({ "server": server.id, "hosts": hosts })))
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn host_names_are_validated() {
        assert_eq!(valid_host("MC.Alice.DE.").unwrap(), "mc.alice.de");
        for bad in ["localhost", "10.0.0.1", "a..b", "-a.example.org", "a_b.example.org", "x.123", &"a".repeat(64)] {
            assert!(valid_host(bad).is_err(), "{bad}");
        }
    }
}
