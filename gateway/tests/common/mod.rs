//! A fake controller (the route feed, wakes, player reports) and a recording backend, for
//! the gateway's fast tests. The real controller and real clients are in the root crate's
//! `tests/gateway.rs`.
#![allow(dead_code)]

use axum::extract::{Path, Query, State};
use axum::Json;
use conductor_gateway::config::GatewayConfig;
use conductor_gateway::protocol::{self, write_string, write_varint};
use conductor_gateway::Gateway;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TOKEN: &str = "test-admin-token-1234";

#[derive(Default)]
pub struct Ctl {
    pub epoch: String,
    pub version: u64,
    pub routes: HashMap<i64, Value>,
    pub wakes: Vec<i64>,
    pub reports: Vec<Value>,
    /// What a wake does: the server runs at this backend after this delay (None: never).
    pub wake_to: Option<(String, Duration)>,
    pub down: bool,
}

pub type Shared = Arc<(Mutex<Ctl>, tokio::sync::watch::Sender<u64>)>;

pub fn route(server: i64, name: &str, state: &str, ppu: bool, backend: Option<&str>) -> Value {
    json!({ "server": server, "name": name, "owner": "alice", "hosts": [], "state": state,
            "pay_per_use": ppu, "backend": backend, "eta_s": 30, "blocked": null })
}

pub fn set_route(ctl: &Shared, r: Value) {
    let mut c = ctl.0.lock().unwrap();
    c.version += 1;
    c.routes.insert(r["server"].as_i64().unwrap(), r);
    let v = c.version;
    drop(c);
    ctl.1.send_replace(v);
}

#[derive(serde::Deserialize)]
struct Q {
    since: Option<u64>,
    epoch: Option<String>,
    #[serde(default)]
    wait_s: u64,
}

async fn routes(State(ctl): State<Shared>, Query(q): Query<Q>) -> Result<Json<Value>, axum::http::StatusCode> {
    if ctl.0.lock().unwrap().down {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let epoch = ctl.0.lock().unwrap().epoch.clone();
    let since = q.since.filter(|_| q.epoch.as_deref() == Some(epoch.as_str()));
    if let Some(since) = since {
        let mut rx = ctl.1.subscribe();
        let until = tokio::time::Instant::now() + Duration::from_secs(q.wait_s.min(30));
        while *rx.borrow_and_update() <= since {
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                break;
            }
        }
    }
    let c = ctl.0.lock().unwrap();
    Ok(Json(json!({ "epoch": c.epoch, "version": c.version, "full": since.is_none(),
                    "routes": c.routes.values().collect::<Vec<_>>(), "removed": [] })))
}

async fn wake(State(ctl): State<Shared>, Path(id): Path<i64>) -> axum::http::StatusCode {
    let mut c = ctl.0.lock().unwrap();
    c.wakes.push(id);
    if let Some((backend, delay)) = c.wake_to.clone() {
        let mut r = c.routes.get(&id).cloned().unwrap();
        let ctl = ctl.clone();
        tokio::spawn(async move {
            set_route(&ctl, {
                r["state"] = json!("starting");
                r.clone()
            });
            tokio::time::sleep(delay).await;
            r["state"] = json!("running");
            r["backend"] = json!(backend);
            set_route(&ctl, r);
        });
    }
    axum::http::StatusCode::ACCEPTED
}

async fn players(State(ctl): State<Shared>, Json(v): Json<Value>) -> axum::http::StatusCode {
    ctl.0.lock().unwrap().reports.push(v);
    axum::http::StatusCode::NO_CONTENT
}

/// A fake controller on a loopback port.
pub async fn controller(routes_: Vec<Value>) -> (Shared, String) {
    let ctl: Shared = Arc::new((
        Mutex::new(Ctl { epoch: "e1".into(), version: 1, ..Ctl::default() }),
        tokio::sync::watch::channel(1).0,
    ));
    for r in routes_ {
        ctl.0.lock().unwrap().routes.insert(r["server"].as_i64().unwrap(), r);
    }
    let app = axum::Router::new()
        .route("/v1/routes", axum::routing::get(routes))
        .route("/v1/wake/{id}", axum::routing::post(wake))
        .route("/v1/gateways/{id}/players", axum::routing::put(players))
        .with_state(ctl.clone());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (ctl, url)
}

pub fn config(controller: &str, extra: &str) -> GatewayConfig {
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\ncontroller = \"{controller}\"\ntoken = \"{TOKEN}\"\nid = \"gw-test\"\ndomain = \"play.test\"\nmetrics_listen = \"\"\nreport_every_s = 1\n{extra}"
    );
    GatewayConfig::parse(std::path::Path::new("test.toml"), &text, &|_| None).unwrap()
}

/// A gateway following `controller`, listening on a loopback port; waits for its first table.
pub async fn gateway(cfg: GatewayConfig) -> (Arc<Gateway>, std::net::SocketAddr) {
    let l = TcpListener::bind(&cfg.listen).await.unwrap();
    let addr = l.local_addr().unwrap();
    let gw = Gateway::new(cfg);
    tokio::spawn(conductor_gateway::feed::follow(gw.clone()));
    tokio::spawn(conductor_gateway::feed::report_players(gw.clone()));
    tokio::spawn(conductor_gateway::accept(gw.clone(), l));
    for _ in 0..200 {
        if !gw.table.read().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (gw, addr)
}

pub fn handshake(protocol: i32, host: &str, next: i32) -> Vec<u8> {
    let mut b = Vec::new();
    write_varint(&mut b, protocol);
    write_string(&mut b, host);
    b.extend_from_slice(&25565u16.to_be_bytes());
    write_varint(&mut b, next);
    protocol::frame(0, &b)
}

pub fn login_start(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    write_string(&mut b, name);
    protocol::frame(0, &b)
}

/// A status exchange: the status JSON.
pub async fn status(addr: std::net::SocketAddr, host: &str) -> Value {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&handshake(47, host, 1)).await.unwrap();
    s.write_all(&protocol::frame(0, &[])).await.unwrap();
    let f = protocol::read_frame(&mut s, protocol::MAX_STATUS).await.unwrap();
    let mut r = protocol::Reader::new(&f.body);
    let json: Value = serde_json::from_str(r.string(32768).unwrap()).unwrap();
    s.write_all(&protocol::frame(1, &42i64.to_be_bytes())).await.unwrap();
    let pong = protocol::read_frame(&mut s, 64).await.unwrap();
    assert_eq!((pong.id, pong.body.as_slice()), (1, &42i64.to_be_bytes()[..]), "the ping is answered with its payload");
    json
}

/// A login: the first frame the gateway or the backend answers, with the stream.
pub async fn login(addr: std::net::SocketAddr, host: &str, name: &str) -> (protocol::Frame, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&handshake(47, host, 2)).await.unwrap();
    s.write_all(&login_start(name)).await.unwrap();
    let f = protocol::read_frame(&mut s, 1 << 16).await.unwrap();
    (f, s)
}

pub fn disconnect_text(f: &protocol::Frame) -> String {
    assert_eq!(f.id, 0, "a login disconnect");
    let mut r = protocol::Reader::new(&f.body);
    let v: Value = serde_json::from_str(r.string(32768).unwrap()).unwrap();
    v["text"].as_str().unwrap().to_owned()
}

/// A backend that records what each connection sent first (handshake and login start),
/// answers with frame 0x02 carrying the player's name, then echoes everything.
pub async fn backend() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let seen = s2.clone();
            tokio::spawn(async move {
                let Ok(hs) = protocol::read_frame(&mut c, 4096).await else { return };
                let Ok(start) = protocol::read_frame(&mut c, 4096).await else { return };
                let mut first = hs.raw.clone();
                first.extend_from_slice(&start.raw);
                seen.lock().unwrap().push(first);
                let mut r = protocol::Reader::new(&start.body);
                let name = r.string(16).unwrap_or("?").to_owned();
                let mut b = Vec::new();
                write_string(&mut b, &name);
                if c.write_all(&protocol::frame(2, &b)).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}
