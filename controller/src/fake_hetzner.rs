//! A local fake of the Hetzner Cloud API subset the controller uses (servers create, list
//! with label selectors, get, delete; actions; server types; networks by name), so that the real `hcloud`
//! client can be tested here (the real API is unreachable). Responses are built from
//! `hcloud`'s own models, so the client parses them as it parses the real thing.
//!
//! It behaves like the real API where it matters: actions run asynchronously (a create
//! finishes after `action_ms`), duplicate names give `uniqueness_error` (409), more servers
//! than `max_servers` give `resource_limit_exceeded` (403), more than `rate_per_s` requests a
//! second give `rate_limit_exceeded` (429), and it can be told to fail the next requests
//! with 503 or to answer slowly.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hcloud::models;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the fake behaves; change it while it runs through [`FakeHetzner::behaviour`].
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// How long a create action runs before the server is `running`.
    pub action_ms: u64,
    pub max_servers: usize,
    /// Requests allowed per second (a fixed one-second window).
    pub rate_per_s: u32,
    /// Answer the next N requests with 503.
    pub fail_next: u32,
    /// Added to every answer.
    pub latency_ms: u64,
    /// Every `fail_every`-th request is answered 503 (0: none) — a flaky API on a fixed
    /// pattern, so runs repeat.
    pub fail_every: u32,
    /// Every `slow_every`-th request waits `slow_ms` before it is answered (0: none).
    pub slow_every: u32,
    pub slow_ms: u64,
    /// The N-th server created on a network gets the address 127.`subnet`.0.N there (a test
    /// gives each VM its own loopback address); its public IPv4 is 192.0.2.N (a documentation
    /// range nothing answers on).
    pub subnet: u8,
    /// The private networks that exist (ids 1, 2, … in this order).
    pub networks: Vec<String>,
    /// Snapshots `GET /v1/images?type=snapshot&label_selector=…` lists: (id, labels, created
    /// as seconds since the epoch).
    pub snapshots: Vec<(i64, HashMap<String, String>, u64)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            action_ms: 300,
            max_servers: 100,
            rate_per_s: 1000,
            fail_next: 0,
            latency_ms: 0,
            fail_every: 0,
            slow_every: 0,
            slow_ms: 0,
            subnet: 0,
            networks: vec!["conductor".into()],
            snapshots: Vec::new(),
        }
    }
}

struct FakeServer {
    id: i64,
    name: String,
    type_name: String,
    labels: HashMap<String, String>,
    created: Instant,
    create_action: i64,
    user_data: Option<String>,
    /// (network id, address) when attached to a network.
    private: Option<(i64, String)>,
    public_ip: String,
    image: String,
}

struct FakeAction {
    id: i64,
    command: String,
    server: i64,
    started: Instant,
    duration: Duration,
}

#[derive(Default)]
struct Inner {
    servers: Vec<FakeServer>,
    actions: Vec<FakeAction>,
    next_id: i64,
    /// Servers created so far (their addresses' last octet).
    created: u8,
    window: Option<(Instant, u32)>,
    /// Every request seen: (method, path), for tests.
    log: Vec<(String, String)>,
}

/// The fake's state and knobs, shared with its HTTP handlers.
#[derive(Clone, Default)]
pub struct FakeHetzner {
    inner: Arc<Mutex<Inner>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Requests answered so far (for `fail_every`, `slow_every`).
    calls: Arc<std::sync::atomic::AtomicU64>,
}

const TYPES: [(&str, i32, f64, f64, &str); 4] = [
    ("cx23", 2, 4.0, 40.0, "0.0060"),
    ("cpx32", 4, 8.0, 160.0, "0.0160"),
    ("cx43", 8, 16.0, 160.0, "0.0210"),
    ("ccx33", 8, 32.0, 240.0, "0.0880"),
];

fn server_type(name: &str) -> Option<models::ServerType> {
    let (i, &(n, cores, memory, disk, hourly)) = TYPES.iter().enumerate().find(|(_, t)| t.0 == name)?;
    let price = models::PricePerTime::new(
        0,
        "fsn1".into(),
        models::Price::new(hourly.into(), hourly.into()),
        models::Price::new("0".into(), "0".into()),
        models::Price::new("0".into(), "0".into()),
    );
    Some(models::ServerType::new(
        models::Architecture::X86,
        cores,
        models::server_type::CpuType::Shared,
        Some(false),
        format!("{n} (fake)"),
        disk,
        i as i64 + 1,
        Vec::new(),
        memory,
        n.into(),
        vec![price],
        models::server_type::StorageType::Local,
    ))
}

fn location() -> models::Location {
    models::Location::new(
        "Falkenstein".into(),
        "DE".into(),
        "Falkenstein DC Park 1".into(),
        1,
        50.47612,
        12.370071,
        "fsn1".into(),
        "eu-central".into(),
    )
}

fn iso(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs as i64, 0).map(|d| d.to_rfc3339()).unwrap_or_default()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": { "code": code, "message": message, "details": {} } }))).into_response()
}

impl FakeHetzner {
    pub fn new(behaviour: Behaviour) -> FakeHetzner {
        FakeHetzner { inner: Arc::default(), behaviour: Arc::new(Mutex::new(behaviour)), calls: Arc::default() }
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().expect("behaviour lock"));
    }

    /// Requests seen so far, as (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.inner.lock().expect("fake lock").log.clone()
    }

    /// Names of the servers that exist.
    pub fn server_names(&self) -> Vec<String> {
        self.inner.lock().expect("fake lock").servers.iter().map(|s| s.name.clone()).collect()
    }

    /// Serves the fake on `127.0.0.1:port` (0 = any free port); returns the base URL
    /// (`http://127.0.0.1:PORT/v1`).
    pub async fn serve(&self, port: u16) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}/v1"))
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/server_types", get(list_types))
            .route("/v1/servers", get(list_servers).post(create_server))
            .route("/v1/servers/{id}", get(get_server).delete(delete_server))
            .route("/v1/actions/{id}", get(get_action))
            .route("/v1/networks", get(list_networks))
            .route("/v1/images", get(list_images))
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate))
            .with_state(self.clone())
    }

    fn server_model(&self, inner: &Inner, s: &FakeServer) -> models::Server {
        let running =
            inner.actions.iter().find(|a| a.id == s.create_action).is_none_or(|a| a.started.elapsed() >= a.duration);
        let created = std::time::SystemTime::now() - s.created.elapsed();
        let mut m = models::Server::new(
            None,
            iso(created),
            s.id,
            None,
            None,
            None,
            None,
            s.labels.clone(),
            location(),
            false,
            s.name.clone(),
            None,
            40,
            Vec::new(),
            models::ServerProtection::new(false, false),
            models::ServerPublicNet::new(
                Vec::new(),
                Some(models::Ipv4::new(false, String::new(), s.public_ip.clone())),
                None,
            ),
            false,
            server_type(&s.type_name).expect("validated type"),
            if running { models::server::Status::Running } else { models::server::Status::Initializing },
        );
        m.labels = s.labels.clone();
        if let Some((network, ip)) = &s.private {
            let mut p = models::ServerPrivateNet::new();
            p.network = Some(*network);
            p.ip = Some(ip.clone());
            m.private_net = vec![p];
        }
        m
    }

    fn action_model(a: &FakeAction) -> models::Action {
        let done = a.started.elapsed() >= a.duration;
        let started = std::time::SystemTime::now() - a.started.elapsed();
        models::Action::new(
            a.command.clone(),
            None,
            done.then(|| iso(started + a.duration)),
            a.id,
            if done { 100 } else { (a.started.elapsed().as_millis() * 100 / a.duration.as_millis().max(1)) as i32 },
            vec![models::Resource::new(a.server, "server".into())],
            iso(started),
            if done { models::action::Status::Success } else { models::action::Status::Running },
        )
    }
}

/// Rate limit, injected failures and latency, in front of every route.
async fn gate(State(fake): State<FakeHetzner>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let b = fake.behaviour.lock().expect("behaviour lock").clone();
    {
        let mut inner = fake.inner.lock().expect("fake lock");
        inner.log.push((req.method().to_string(), req.uri().path().to_string()));
        let now = Instant::now();
        let count = match inner.window {
            Some((start, n)) if now.duration_since(start) < Duration::from_secs(1) => n + 1,
            _ => {
                inner.window = Some((now, 0));
                1
            }
        };
        inner.window = inner.window.map(|(s, _)| (s, count));
        if count > b.rate_per_s {
            return error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "limit of requests per second reached");
        }
    }
    if b.fail_next > 0 {
        fake.set(|b| b.fail_next -= 1);
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "service temporarily unavailable");
    }
    let n = fake.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if b.fail_every > 0 && n % u64::from(b.fail_every) == 0 {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "service temporarily unavailable");
    }
    if b.slow_every > 0 && n % u64::from(b.slow_every) == 0 {
        tokio::time::sleep(Duration::from_millis(b.slow_ms)).await;
    }
    if b.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.latency_ms)).await;
    }
    next.run(req).await
}

fn meta(total: usize) -> Box<models::Meta> {
    Box::new(models::Meta::new(models::Pagination::new(Some(1), None, 1, 50, None, Some(total as i64))))
}

async fn list_types() -> Response {
    let types: Vec<models::ServerType> = TYPES.iter().filter_map(|t| server_type(t.0)).collect();
    Json(serde_json::json!({ "server_types": types, "meta": meta(types.len()) })).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    label_selector: Option<String>,
    name: Option<String>,
}

/// `k=v`, `k!=v`, `k` (has the label) and `!k`, comma-separated (all must hold).
fn matches(labels: &HashMap<String, String>, selector: &str) -> bool {
    selector.split(',').map(str::trim).filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).is_none_or(|x| x != v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels.get(k.trim()).is_some_and(|x| x == v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else {
            labels.contains_key(term)
        }
    })
}

async fn list_servers(State(fake): State<FakeHetzner>, Query(q): Query<ListQuery>) -> Response {
    let inner = fake.inner.lock().expect("fake lock");
    let servers: Vec<models::Server> = inner
        .servers
        .iter()
        .filter(|s| q.label_selector.as_deref().is_none_or(|sel| matches(&s.labels, sel)))
        .filter(|s| q.name.as_deref().is_none_or(|n| n == s.name))
        .map(|s| fake.server_model(&inner, s))
        .collect();
    let n = servers.len();
    Json(models::ListServersResponse { meta: meta(n), servers }).into_response()
}

async fn create_server(State(fake): State<FakeHetzner>, body: axum::body::Bytes) -> Response {
    let req: models::CreateServerRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_input", &e.to_string()),
    };
    if server_type(&req.server_type).is_none() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "unknown server type");
    }
    let b = fake.behaviour.lock().expect("behaviour lock").clone();
    let mut inner = fake.inner.lock().expect("fake lock");
    if inner.servers.iter().any(|s| s.name == req.name) {
        return error(StatusCode::CONFLICT, "uniqueness_error", "server name is already used");
    }
    if inner.servers.len() >= b.max_servers {
        return error(StatusCode::FORBIDDEN, "resource_limit_exceeded", "server limit exceeded");
    }
    let network = req.networks.as_ref().and_then(|n| n.first().copied());
    if let Some(n) = network {
        if n < 1 || n as usize > b.networks.len() {
            return error(StatusCode::NOT_FOUND, "not_found", "network not found");
        }
    }
    inner.created = inner.created.wrapping_add(1).max(1);
    let host = inner.created;
    inner.next_id += 1;
    let id = inner.next_id;
    inner.next_id += 1;
    let action_id = inner.next_id;
    let action = FakeAction {
        id: action_id,
        command: "create_server".into(),
        server: id,
        started: Instant::now(),
        duration: Duration::from_millis(b.action_ms),
    };
    let server = FakeServer {
        id,
        name: req.name.clone(),
        type_name: req.server_type.clone(),
        labels: req.labels.clone().unwrap_or_default(),
        created: Instant::now(),
        create_action: action_id,
        user_data: req.user_data.clone(),
        private: network.map(|n| (n, format!("127.{}.0.{host}", b.subnet))),
        public_ip: format!("192.0.2.{host}"),
        image: req.image.clone(),
    };
    let action_model = FakeHetzner::action_model(&action);
    inner.actions.push(action);
    let model = fake.server_model(&inner, &server);
    inner.servers.push(server);
    let resp = models::CreateServerResponse {
        action: Box::new(action_model),
        next_actions: Vec::new(),
        root_password: None,
        server: Box::new(model),
    };
    (StatusCode::CREATED, Json(resp)).into_response()
}

async fn get_server(State(fake): State<FakeHetzner>, Path(id): Path<i64>) -> Response {
    let inner = fake.inner.lock().expect("fake lock");
    match inner.servers.iter().find(|s| s.id == id) {
        Some(s) => Json(serde_json::json!({ "server": fake.server_model(&inner, s) })).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "server not found"),
    }
}

async fn delete_server(State(fake): State<FakeHetzner>, Path(id): Path<i64>) -> Response {
    let mut inner = fake.inner.lock().expect("fake lock");
    let Some(i) = inner.servers.iter().position(|s| s.id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "server not found");
    };
    inner.servers.remove(i);
    inner.next_id += 1;
    let action = FakeAction {
        id: inner.next_id,
        command: "delete_server".into(),
        server: id,
        started: Instant::now(),
        duration: Duration::ZERO,
    };
    let model = FakeHetzner::action_model(&action);
    inner.actions.push(action);
    Json(serde_json::json!({ "action": model })).into_response()
}

async fn get_action(State(fake): State<FakeHetzner>, Path(id): Path<i64>) -> Response {
    let inner = fake.inner.lock().expect("fake lock");
    match inner.actions.iter().find(|a| a.id == id) {
        Some(a) => Json(serde_json::json!({ "action": FakeHetzner::action_model(a) })).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "action not found"),
    }
}

#[derive(Deserialize)]
struct ImageQuery {
    r#type: Option<String>,
    label_selector: Option<String>,
}

async fn list_images(State(fake): State<FakeHetzner>, Query(q): Query<ImageQuery>) -> Response {
    let b = fake.behaviour.lock().expect("behaviour lock").clone();
    if q.r#type.as_deref().is_some_and(|t| t != "snapshot") {
        return Json(models::ListImagesResponse::new(Vec::new(), *meta(0))).into_response();
    }
    let mut found: Vec<&(i64, HashMap<String, String>, u64)> =
        b.snapshots.iter().filter(|(_, l, _)| q.label_selector.as_deref().is_none_or(|sel| matches(l, sel))).collect();
    found.sort_by_key(|(_, _, created)| std::cmp::Reverse(*created));
    let images: Vec<models::Image> = found
        .into_iter()
        .map(|(id, labels, created)| {
            let at = std::time::UNIX_EPOCH + Duration::from_secs(*created);
            models::Image::new(
                models::Architecture::X86,
                None,
                iso(at),
                None,
                None,
                None,
                format!("snapshot {id}"),
                40.0,
                *id,
                Some(1.0),
                labels.clone(),
                None,
                models::image::OsFlavor::Ubuntu,
                Some("24.04".into()),
                models::Protection::new(false),
                models::image::Status::Available,
                models::image::Type::Snapshot,
            )
        })
        .collect();
    let n = images.len();
    Json(models::ListImagesResponse::new(images, *meta(n))).into_response()
}

#[derive(Deserialize)]
struct NetworkQuery {
    name: Option<String>,
}

async fn list_networks(State(fake): State<FakeHetzner>, Query(q): Query<NetworkQuery>) -> Response {
    let b = fake.behaviour.lock().expect("behaviour lock").clone();
    let networks: Vec<models::Network> = b
        .networks
        .iter()
        .enumerate()
        .filter(|(_, n)| q.name.as_deref().is_none_or(|want| want == n.as_str()))
        .map(|(i, n)| {
            models::Network::new(
                iso(std::time::SystemTime::now()),
                false,
                i as i64 + 1,
                format!("127.{}.0.0/16", b.subnet),
                HashMap::new(),
                n.clone(),
                models::Protection::new(false),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )
        })
        .collect();
    let n = networks.len();
    Json(models::ListNetworksResponse { meta: meta(n), networks }).into_response()
}

/// A server as a test harness sees it: what the controller asked for and where it is.
#[derive(Clone, Debug)]
pub struct FakeServerView {
    pub id: i64,
    pub name: String,
    pub private_ip: Option<String>,
    pub user_data: Option<String>,
    /// The image it was created from (a name or an id).
    pub image: String,
}

/// The user data each server was created with, by name (to check cloud-init in tests).
impl FakeHetzner {
    pub fn servers(&self) -> Vec<FakeServerView> {
        let inner = self.inner.lock().expect("fake lock");
        inner
            .servers
            .iter()
            .map(|s| FakeServerView {
                id: s.id,
                name: s.name.clone(),
                private_ip: s.private.as_ref().map(|p| p.1.clone()),
                user_data: s.user_data.clone(),
                image: s.image.clone(),
            })
            .collect()
    }

    pub fn user_data(&self) -> BTreeMap<String, Option<String>> {
        let inner = self.inner.lock().expect("fake lock");
        inner.servers.iter().map(|s| (s.name.clone(), s.user_data.clone())).collect()
    }
}
