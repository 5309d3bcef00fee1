//! The gateway: the players' one Minecraft address. It reads a connection's handshake,
//! finds the server its host name means in the controller's route table, answers status
//! pings itself (a running server's status proxied and cached, a sleeping one's made up — a
//! ping never wakes anything), wakes a sleeping pay-per-use server when a player logs in,
//! holds the player while it starts, and then splices the connection to the server.
//!
//! Stateless: the route table comes from the controller (`route.rs`, `feed.rs`), so several
//! gateways can run side by side. After login the gateway only copies bytes; a later waiting
//! room (keeping players in a limbo while their server moves) would take over here, in
//! [`conn::login`], which owns the player's connection.

pub mod config;
pub mod conn;
pub mod feed;
pub mod metrics;
pub mod protocol;
pub mod route;
pub mod splice;

use config::GatewayConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// One gateway's shared state.
pub struct Gateway {
    pub cfg: GatewayConfig,
    pub id: String,
    pub table: RwLock<route::Table>,
    /// Bumped at every route change: held logins wait on it.
    pub changed: tokio::sync::watch::Sender<u64>,
    pub metrics: metrics::Metrics,
    pub http: reqwest::Client,
    /// When each server was last woken (one wake for many joins).
    wakes: Mutex<HashMap<i64, Instant>>,
    /// Open proxied player connections per server.
    pub players: Mutex<HashMap<i64, u32>>,
    status_cache: Mutex<HashMap<i64, (Instant, String)>>,
    /// Each server's favicon from its last proxied status (shown while it sleeps).
    favicons: Mutex<HashMap<i64, String>>,
    limiter: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    open: AtomicUsize,
}

impl Gateway {
    pub fn new(cfg: GatewayConfig) -> Arc<Gateway> {
        let (changed, _) = tokio::sync::watch::channel(0);
        Arc::new(Gateway {
            id: cfg.id(),
            table: RwLock::new(route::Table::new(&cfg.domain)),
            changed,
            metrics: metrics::Metrics::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client"),
            wakes: Mutex::default(),
            players: Mutex::default(),
            status_cache: Mutex::default(),
            favicons: Mutex::default(),
            limiter: Mutex::default(),
            open: AtomicUsize::new(0),
            cfg,
        })
    }

    /// Applies a route update and wakes whoever waits for one.
    pub fn apply(&self, u: route::Update) -> bool {
        let mut t = self.table.write().unwrap();
        let ok = t.apply(u);
        self.metrics.routes.store(t.len() as i64, Ordering::Relaxed);
        drop(t);
        self.changed.send_modify(|v| *v += 1);
        ok
    }

    /// Whether to wake `server` now: not if this gateway did within the hold time (many
    /// players joining at once wake it once; the controller's wake is idempotent anyway).
    fn should_wake(&self, server: i64) -> bool {
        let mut w = self.wakes.lock().unwrap();
        let now = Instant::now();
        match w.get(&server) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(self.cfg.hold_s) => false,
            _ => {
                w.insert(server, now);
                true
            }
        }
    }

    /// Per-address rate limit and the global cap; `Err(reason)` refuses the connection.
    fn admit(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.open.load(Ordering::Relaxed) >= self.cfg.max_connections {
            return Err("capacity");
        }
        let mut l = self.limiter.lock().unwrap();
        let now = Instant::now();
        if l.len() > 50_000 {
            l.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let e = l.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        if e.1 >= self.cfg.per_ip_per_minute {
            return Err("rate");
        }
        e.1 += 1;
        Ok(())
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Counts a connection open for as long as it lives.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts players on `listener` until the task is dropped.
pub async fn accept(gw: Arc<Gateway>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                eprintln!("gateway: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        gw.metrics.count("conductor_gateway_accepted_total", "");
        if let Err(reason) = gw.admit(peer.ip()) {
            gw.metrics.count("conductor_gateway_rejects_total", reason);
            continue;
        }
        let _ = stream.set_nodelay(true);
        gw.open.fetch_add(1, Ordering::Relaxed);
        let gw = gw.clone();
        tokio::spawn(async move {
            let _open = Open(&gw.open);
            conn::handle(&gw, stream, peer).await;
        });
    }
}

/// `conductor gateway`: the feed, the player reports, the metrics port and the listener.
pub async fn run(cfg: GatewayConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind(&cfg.listen).await.map_err(|e| format!("listening on {}: {e}", cfg.listen))?;
    let gw = Gateway::new(cfg);
    eprintln!("gateway {}: players on {}", gw.id, listener.local_addr()?);
    tokio::spawn(feed::follow(gw.clone()));
    tokio::spawn(feed::report_players(gw.clone()));
    if !gw.cfg.metrics_listen.is_empty() {
        let m = TcpListener::bind(&gw.cfg.metrics_listen)
            .await
            .map_err(|e| format!("metrics on {}: {e}", gw.cfg.metrics_listen))?;
        eprintln!("gateway {}: metrics on http://{}/metrics", gw.id, m.local_addr()?);
        tokio::spawn(serve_metrics(gw.clone(), m));
    }
    accept(gw, listener).await;
    Ok(())
}

/// `/metrics` on its own listener.
pub async fn serve_metrics(gw: Arc<Gateway>, listener: TcpListener) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let gw = gw.clone();
            async move { gw.metrics.render() }
        }),
    );
    let _ = axum::serve(listener, app).await;
}

/// The address of a peer as PROXY v2 wants it.
pub(crate) fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    h
}
