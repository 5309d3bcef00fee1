//! One player connection: handshake, then a status exchange or a login (wake, hold, splice).

use crate::protocol::{self, Frame, Handshake, NextState};
use crate::route::{Route, State};
use crate::Gateway;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at};

/// The protocol number synthetic status answers claim when the client's is unknown.
const ANY_PROTOCOL: i32 = -1;

pub async fn handle(gw: &Gateway, mut client: TcpStream, peer: SocketAddr) {
    gw.metrics.enter("handshake");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(gw.cfg.handshake_timeout_s);
    let first = timeout_at(deadline, async {
        let mut b = [0u8; 1];
        client.peek(&mut b).await.map(|n| (n, b[0]))
    })
    .await;
    let outcome = match first {
        Ok(Ok((1, 0xFE))) => {
            legacy(gw, &mut client).await;
            Ok(None)
        }
        Ok(Ok((1, _))) => {
            match timeout_at(deadline, protocol::read_frame(&mut client, protocol::MAX_HANDSHAKE)).await {
                Ok(Ok(f)) => protocol::parse_handshake(&f).map(|h| Some((h, f))).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timeout".into()),
            }
        }
        Ok(_) => Err("closed".into()),
        Err(_) => Err("timeout".into()),
    };
    gw.metrics.leave("handshake");
    let (hs, raw) = match outcome {
        Ok(Some(x)) => x,
        Ok(None) => return,
        Err(reason) => {
            gw.metrics.count("conductor_gateway_rejects_total", reject_reason(&reason));
            return;
        }
    };
    let host = protocol::normalise_host(&hs.address);
    let route = gw.table.read().unwrap().lookup(&host).cloned();
    match hs.next {
        NextState::Status => {
            gw.metrics.enter("status");
            status(gw, &mut client, &hs, &raw, route.as_ref(), deadline).await;
            gw.metrics.leave("status");
        }
        NextState::Login | NextState::Transfer => login(gw, client, peer, hs, raw, route, deadline).await,
    }
}

fn reject_reason(e: &str) -> &'static str {
    match e {
        "timeout" => "timeout",
        "closed" | "connection closed" => "closed",
        _ => "malformed",
    }
}

async fn legacy(gw: &Gateway, client: &mut TcpStream) {
    gw.metrics.count("conductor_gateway_status_total", "legacy");
    // Consume what the old client sent (0xFE 0x01, 1.6's plugin message: a few hundred bytes
    // at most) so that closing does not reset the connection before it reads the answer.
    let mut buf = [0u8; 512];
    let _ = timeout(Duration::from_millis(100), client.read(&mut buf)).await;
    let b = protocol::legacy_status(127, &gw.cfg.version_text, "Conductor", 0, 0);
    let _ = timeout(Duration::from_secs(2), client.write_all(&b)).await;
    let _ = client.shutdown().await;
}

fn eta(route: &Route) -> u32 {
    route.eta_s.unwrap_or(60)
}

fn fill(text: &str, route: Option<&Route>) -> String {
    text.replace("{eta}", &route.map_or(60, eta).to_string())
}

/// Status answers: a running server's own (cached), or one made from the route.
async fn status(
    gw: &Gateway,
    client: &mut TcpStream,
    hs: &Handshake,
    raw: &Frame,
    route: Option<&Route>,
    deadline: tokio::time::Instant,
) {
    match timeout_at(deadline, protocol::read_frame(client, protocol::MAX_SMALL)).await {
        Ok(Ok(f)) if f.id == 0 => {}
        Ok(Ok(_)) | Ok(Err(_)) => return gw.metrics.count("conductor_gateway_rejects_total", "malformed"),
        Err(_) => return gw.metrics.count("conductor_gateway_rejects_total", "timeout"),
    }
    let m = &gw.cfg.messages;
    let (json, kind) = match route {
        None => (synthetic(gw, hs, &m.motd_unknown, 0, None), "unknown"),
        Some(r) => match (r.state, &r.backend) {
            (State::Running, Some(b)) => match proxied_status(gw, r.server, b, raw).await {
                Some(j) => (j, "proxied"),
                None => (synthetic(gw, hs, &fill(&m.motd_starting, Some(r)), r.max_players, Some(r)), "fallback"),
            },
            (State::Starting, _) | (State::Running, None) => {
                (synthetic(gw, hs, &fill(&m.motd_starting, Some(r)), r.max_players, Some(r)), "starting")
            }
            _ if !r.pay_per_use => (synthetic(gw, hs, &m.motd_offline, r.max_players, Some(r)), "offline"),
            (State::Sleeping, _) => {
                (synthetic(gw, hs, &fill(&m.motd_sleeping, Some(r)), r.max_players, Some(r)), "sleeping")
            }
            (State::Archived, _) => {
                (synthetic(gw, hs, &fill(&m.motd_archived, Some(r)), r.max_players, Some(r)), "archived")
            }
            (State::New, _) => (synthetic(gw, hs, &m.motd_new, r.max_players, Some(r)), "new"),
        },
    };
    gw.metrics.count("conductor_gateway_status_total", kind);
    if client.write_all(&protocol::status_response(&json)).await.is_err() {
        return;
    }
    // The ping: answered with its own payload (a client measures its latency with it). Some
    // clients (minecraft-protocol) repeat the status request first: answered again, a few times.
    let wait = Duration::from_secs(gw.cfg.handshake_timeout_s);
    for _ in 0..4 {
        match timeout(wait, protocol::read_frame(client, protocol::MAX_SMALL)).await {
            Ok(Ok(f)) if f.id == 0 => {
                if client.write_all(&protocol::status_response(&json)).await.is_err() {
                    return;
                }
            }
            Ok(Ok(f)) if f.id == 1 => {
                let _ = client.write_all(&protocol::frame(1, &f.body)).await;
                break;
            }
            _ => break,
        }
    }
    close(client).await;
}

/// Closes gracefully: our side first, then what the client still sends is read for a moment,
/// so that closing with unread bytes does not reset the connection before it read our answer.
async fn close(client: &mut TcpStream) {
    let _ = client.shutdown().await;
    let mut buf = [0u8; 256];
    let _ = timeout(Duration::from_millis(250), async {
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn synthetic(gw: &Gateway, hs: &Handshake, motd: &str, max: u32, route: Option<&Route>) -> String {
    // The client's own protocol number: its list shows the entry as compatible.
    let protocol = if hs.protocol > 0 { hs.protocol } else { ANY_PROTOCOL };
    let icon = route.and_then(|r| gw.favicons.lock().unwrap().get(&r.server).cloned());
    protocol::status_json(&gw.cfg.version_text, protocol, 0, max, motd, icon.as_deref())
}

/// The backend's own status JSON, reused for `status_cache_s`.
async fn proxied_status(gw: &Gateway, server: i64, backend: &str, raw: &Frame) -> Option<String> {
    let ttl = Duration::from_secs(gw.cfg.status_cache_s);
    if let Some((at, json)) = gw.status_cache.lock().unwrap().get(&server) {
        if at.elapsed() < ttl {
            return Some(json.clone());
        }
    }
    let json = timeout(Duration::from_secs(2), async {
        let mut b = TcpStream::connect(backend).await.ok()?;
        b.write_all(&raw.raw).await.ok()?;
        b.write_all(&protocol::frame(0, &[])).await.ok()?;
        let f = protocol::read_frame(&mut b, protocol::MAX_STATUS).await.ok()?;
        let mut r = protocol::Reader::new(&f.body);
        (f.id == 0).then_some(())?;
        r.string(protocol::MAX_STATUS / 4).ok().map(str::to_owned)
    })
    .await
    .ok()
    .flatten()?;
    gw.status_cache.lock().unwrap().insert(server, (Instant::now(), json.clone()));
    // Its favicon, shown in the synthetic answers while it sleeps.
    if let Some(icon) =
        serde_json::from_str::<serde_json::Value>(&json).ok().and_then(|v| v["favicon"].as_str().map(str::to_owned))
    {
        if icon.len() <= protocol::MAX_STATUS {
            gw.favicons.lock().unwrap().insert(server, icon);
        }
    }
    Some(json)
}

async fn disconnect(gw: &Gateway, client: &mut TcpStream, outcome: &'static str, text: &str) {
    gw.metrics.count("conductor_gateway_logins_total", outcome);
    let _ = timeout(Duration::from_secs(2), client.write_all(&protocol::login_disconnect(text))).await;
    close(client).await;
}

/// A login: to the server at once if it runs; else wake it (pay-per-use), hold the player
/// up to `hold_s`, and connect it through when it is up.
pub async fn login(
    gw: &Gateway,
    mut client: TcpStream,
    peer: SocketAddr,
    hs: Handshake,
    raw: Frame,
    route: Option<Route>,
    deadline: tokio::time::Instant,
) {
    let start = match timeout_at(deadline, protocol::read_frame(&mut client, protocol::MAX_LOGIN_START)).await {
        Ok(Ok(f)) => f,
        Ok(Err(_)) => return gw.metrics.count("conductor_gateway_rejects_total", "malformed"),
        Err(_) => return gw.metrics.count("conductor_gateway_rejects_total", "timeout"),
    };
    if protocol::parse_login_start(&start, hs.protocol).is_err() {
        return gw.metrics.count("conductor_gateway_rejects_total", "malformed");
    }
    let m = gw.cfg.messages.clone();
    let Some(mut route) = route else {
        gw.metrics.count("conductor_gateway_rejects_total", "unknown-host");
        return disconnect(gw, &mut client, "unknown-host", &m.unknown_host).await;
    };
    let server = route.server;
    if !(route.state == State::Running && route.backend.is_some()) {
        if route.blocked.as_deref() == Some("balance") {
            return disconnect(gw, &mut client, "balance", &m.balance).await;
        }
        let asleep = matches!(route.state, State::Sleeping | State::Archived | State::New);
        if asleep && !route.pay_per_use {
            return disconnect(gw, &mut client, "not-pay-per-use", &m.not_pay_per_use).await;
        }
        if asleep && gw.should_wake(server) {
            gw.metrics.count("conductor_gateway_wakes_total", "");
            if let Err(e) = crate::feed::wake(gw, server).await {
                eprintln!("gateway: waking server {server}: {e}");
            }
        }
        gw.metrics.enter("holding");
        let up = hold(gw, server).await;
        gw.metrics.leave("holding");
        match up {
            Some(r) => {
                gw.metrics.count("conductor_gateway_holds_total", "joined");
                route = r;
            }
            None => {
                gw.metrics.count("conductor_gateway_holds_total", "timed-out");
                let now = gw.table.read().unwrap().get(server).cloned();
                let text = fill(&m.starting, now.as_ref().or(Some(&route)));
                return disconnect(gw, &mut client, "starting", &text).await;
            }
        }
    }
    let backend = route.backend.clone().expect("a running route has a backend");
    let t = Instant::now();
    let mut up = match timeout(Duration::from_secs(3), TcpStream::connect(&backend)).await {
        Ok(Ok(s)) => s,
        _ => return disconnect(gw, &mut client, "unreachable", &m.unreachable).await,
    };
    gw.metrics.connect_latency(t.elapsed());
    let _ = up.set_nodelay(true);
    let mut preface = Vec::with_capacity(raw.raw.len() + start.raw.len() + 64);
    if gw.cfg.proxy_protocol {
        let local = client.local_addr().unwrap_or(peer);
        preface.extend_from_slice(&crate::proxy_v2_header(peer, local));
    }
    preface.extend_from_slice(&raw.raw);
    preface.extend_from_slice(&start.raw);
    if up.write_all(&preface).await.is_err() {
        return disconnect(gw, &mut client, "unreachable", &m.unreachable).await;
    }
    gw.metrics.count("conductor_gateway_logins_total", "proxied");
    gw.metrics.enter("proxied");
    *gw.players.lock().unwrap().entry(server).or_default() += 1;
    let (a, b) = crate::splice::splice(client, up).await;
    gw.metrics.bytes_up.fetch_add(a, std::sync::atomic::Ordering::Relaxed);
    gw.metrics.bytes_down.fetch_add(b, std::sync::atomic::Ordering::Relaxed);
    {
        let mut p = gw.players.lock().unwrap();
        if let Some(n) = p.get_mut(&server) {
            *n -= 1;
            if *n == 0 {
                p.remove(&server);
            }
        }
    }
    gw.metrics.leave("proxied");
}

/// Waits up to `hold_s` for the server to run (with its backend known).
async fn hold(gw: &Gateway, server: i64) -> Option<Route> {
    let mut changed = gw.changed.subscribe();
    let until = tokio::time::Instant::now() + Duration::from_secs(gw.cfg.hold_s);
    loop {
        if let Some(r) = gw.table.read().unwrap().get(server) {
            if r.state == State::Running && r.backend.is_some() {
                return Some(r.clone());
            }
        }
        match timeout_at(until, changed.changed()).await {
            Ok(Ok(())) => {}
            // The feed is gone (shutting down) or the hold is over.
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}
