//! The gateway against a fake controller and a recording backend: status without waking,
//! wake once and hold, splicing, refusals, route changes, controller outages, hostile input.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "lobby.alice.play.test";

#[tokio::test]
async fn a_status_ping_of_a_sleeping_server_is_answered_without_waking_it() {
    let (ctl, url) = controller(vec![route(1, "lobby", "sleeping", true, None)]).await;
    let (gw, addr) = gateway(config(&url, "")).await;
    let s = status(addr, "Lobby.Alice.Play.Test.").await;
    assert_eq!(s["description"]["text"], "Asleep - join to wake it");
    assert_eq!(s["players"]["online"], 0);
    assert_eq!(s["version"]["protocol"], 47, "the client's own protocol: listed as compatible");
    // Many pings (a server list refreshing) never wake it.
    for _ in 0..20 {
        status(addr, HOST).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ctl.0.lock().unwrap().wakes.is_empty(), "no wake from a status ping");
    assert_eq!(gw.metrics.get("conductor_gateway_status_total", "sleeping"), 21);
    // An unknown name gets a status saying so.
    let u = status(addr, "nobody.alice.play.test").await;
    assert_eq!(u["description"]["text"], "No server at this address");
}

#[tokio::test]
async fn joins_wake_a_sleeping_server_once_and_are_held_until_it_runs() {
    let (backend, seen) = backend().await;
    let (ctl, url) = controller(vec![route(1, "lobby", "sleeping", true, None)]).await;
    ctl.0.lock().unwrap().wake_to = Some((backend, Duration::from_millis(1500)));
    let (gw, addr) = gateway(config(&url, "hold_s = 10\n")).await;
    let started = Instant::now();
    // Three players join at once.
    let joins: Vec<_> = ["ann", "bob", "cat"].iter().map(|n| tokio::spawn(login(addr, HOST, n))).collect();
    let mut streams = Vec::new();
    for (j, name) in joins.into_iter().zip(["ann", "bob", "cat"]) {
        let (f, s) = j.await.unwrap();
        // The backend's answer: the player went through without reconnecting.
        assert_eq!(f.id, 2, "proxied to the backend");
        let mut r = conductor_gateway::protocol::Reader::new(&f.body);
        assert_eq!(r.string(16).unwrap(), name);
        streams.push(s);
    }
    assert!(started.elapsed() >= Duration::from_millis(1400), "held while it started");
    assert_eq!(ctl.0.lock().unwrap().wakes, vec![1], "woken once for three joins");
    // The backend got exactly the handshake and login start the client sent.
    let mut expected = handshake(47, HOST, 2);
    expected.extend_from_slice(&login_start("ann"));
    assert!(seen.lock().unwrap().contains(&expected));
    // Bytes flow both ways.
    let s = &mut streams[0];
    s.write_all(b"ping-pong").await.unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping-pong");
    // The open connections are reported to the controller, per server.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reports = ctl.0.lock().unwrap().reports.clone();
    assert!(reports.iter().any(|r| r["players"] == json!({ "1": 3 })), "{reports:?}");
    drop(streams);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(ctl.0.lock().unwrap().reports.last().unwrap()["players"], json!({}));
    assert_eq!(gw.metrics.get("conductor_gateway_holds_total", "joined"), 3);
}

#[tokio::test]
async fn a_start_slower_than_the_hold_gets_the_starting_message_and_a_later_join_gets_in() {
    let (backend, _) = backend().await;
    let (ctl, url) = controller(vec![route(1, "lobby", "archived", true, None)]).await;
    ctl.0.lock().unwrap().wake_to = Some((backend, Duration::from_millis(2500)));
    let (_gw, addr) = gateway(config(&url, "hold_s = 1\n")).await;
    let (f, _) = login(addr, HOST, "ann").await;
    assert_eq!(disconnect_text(&f), "The server is starting. Join again in about 30 seconds.");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (f, _) = login(addr, HOST, "ann").await;
    assert_eq!(f.id, 2, "in, once it runs");
    assert_eq!(ctl.0.lock().unwrap().wakes, vec![1], "the second join did not wake it again");
}

#[tokio::test]
async fn refusals_say_why_and_start_nothing() {
    let mut blocked = route(3, "broke", "sleeping", true, None);
    blocked["blocked"] = json!("balance");
    let (ctl, url) = controller(vec![
        route(1, "lobby", "sleeping", true, None),
        route(2, "fixed", "sleeping", false, None),
        blocked,
    ])
    .await;
    let (_gw, addr) = gateway(config(&url, "hold_s = 1\n")).await;
    let (f, _) = login(addr, "nobody.play.test", "ann").await;
    assert_eq!(disconnect_text(&f), "There is no server at this address.");
    let (f, _) = login(addr, "fixed.alice.play.test", "ann").await;
    assert_eq!(disconnect_text(&f), "This server is stopped. Its owner can start it from the panel.");
    let (f, _) = login(addr, "broke.alice.play.test", "ann").await;
    assert_eq!(disconnect_text(&f), "This server cannot start: its owner's balance is used up.");
    assert!(ctl.0.lock().unwrap().wakes.is_empty());
}

#[tokio::test]
async fn two_servers_behind_one_port_and_a_moved_server_is_followed() {
    let (b1, _) = backend().await;
    let (b2, seen2) = backend().await;
    let (b3, seen3) = backend().await;
    let mut custom = route(2, "other", "running", true, Some(&b2));
    custom["hosts"] = json!(["mc.example.org"]);
    let (ctl, url) = controller(vec![route(1, "lobby", "running", true, Some(&b1)), custom]).await;
    let (_gw, addr) = gateway(config(&url, "")).await;
    let (f, _) = login(addr, HOST, "ann").await;
    assert_eq!(f.id, 2);
    let (f, _) = login(addr, "MC.example.org:25565", "bob").await;
    assert_eq!(f.id, 2);
    assert_eq!(seen2.lock().unwrap().len(), 1, "the custom host reached server 2's backend");
    // Restored on another node: the route changes, the gateway follows within a second.
    set_route(&ctl, {
        let mut r = route(2, "other", "running", true, Some(&b3));
        r["hosts"] = json!(["mc.example.org"]);
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (f, _) = login(addr, "mc.example.org", "bob").await;
    assert_eq!(f.id, 2);
    assert_eq!(seen3.lock().unwrap().len(), 1, "the new backend");
}

#[tokio::test]
async fn a_controller_outage_keeps_the_last_table_and_a_restart_resyncs() {
    let (b1, _) = backend().await;
    let (ctl, url) = controller(vec![route(1, "lobby", "running", true, Some(&b1))]).await;
    let (gw, addr) = gateway(config(&url, "")).await;
    ctl.0.lock().unwrap().down = true;
    ctl.1.send_replace(99); // ends the pending long poll: the next one fails
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (f, _) = login(addr, HOST, "ann").await;
    assert_eq!(f.id, 2, "players still reach running servers");
    // Back, restarted: a new epoch, another table.
    {
        let mut c = ctl.0.lock().unwrap();
        c.down = false;
        c.epoch = "e2".into();
        c.version = 1;
        c.routes.clear();
        c.routes.insert(5, route(5, "new", "sleeping", true, None));
    }
    for _ in 0..100 {
        if gw.table.read().unwrap().epoch == "e2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.table.read().unwrap().epoch, "e2");
    assert!(gw.table.read().unwrap().lookup(HOST).is_none(), "resynchronised, not merged");
    assert!(gw.table.read().unwrap().lookup("new.alice.play.test").is_some());
}

#[tokio::test]
async fn proxy_protocol_v2_tells_the_backend_the_players_address() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap().to_string();
    let (ctl, url) = controller(vec![route(1, "lobby", "running", true, Some(&backend))]).await;
    let _ = ctl;
    let (_gw, addr) = gateway(config(&url, "proxy_protocol = true\n")).await;
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&handshake(47, HOST, 2)).await.unwrap();
        s.write_all(&login_start("ann")).await.unwrap();
        let local = s.local_addr().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        local
    });
    let (mut c, _) = l.accept().await.unwrap();
    let mut head = [0u8; 28];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!((head[12], head[13]), (0x21, 0x11), "v2 PROXY over TCP/IPv4");
    let local = client.await.unwrap();
    assert_eq!(&head[16..20], &[127, 0, 0, 1]);
    assert_eq!(u16::from_be_bytes([head[24], head[25]]), local.port(), "the player's port");
    let hs = conductor_gateway::protocol::read_frame(&mut c, 4096).await.unwrap();
    assert_eq!(hs.raw, handshake(47, HOST, 2), "then the handshake as sent");
}

/// Reads until the gateway closes the connection; how long that took.
async fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("not closed within {limit:?}"),
        }
    }
}

#[tokio::test]
async fn hostile_input_closes_the_connection_in_bounded_time() {
    let (_ctl, url) = controller(vec![route(1, "lobby", "sleeping", true, None)]).await;
    let (gw, addr) = gateway(config(&url, "handshake_timeout_s = 1\n")).await;
    // A VarInt of 6 bytes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0xff; 6]).await.unwrap();
    closed_within(s, Duration::from_secs(2)).await;
    // A length of 2 GB: refused at once, nothing allocated.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut b = Vec::new();
    conductor_gateway::protocol::write_varint(&mut b, 2_000_000_000);
    s.write_all(&b).await.unwrap();
    assert!(closed_within(s, Duration::from_secs(2)).await < Duration::from_millis(900));
    // Slow loris: a byte every 300 ms never finishes a handshake within its deadline.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let frame = handshake(47, HOST, 2);
    let t = Instant::now();
    for b in &frame {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if t.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "the slow client was closed: {r:?}");
    // A login start that is not one.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&handshake(47, HOST, 2)).await.unwrap();
    s.write_all(&conductor_gateway::protocol::frame(0, &[0x7f])).await.unwrap();
    closed_within(s, Duration::from_secs(2)).await;
    assert!(gw.metrics.get("conductor_gateway_rejects_total", "malformed") >= 2);
    assert!(gw.metrics.get("conductor_gateway_rejects_total", "timeout") >= 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.open_connections(), 0, "nothing left open");
}

#[tokio::test]
async fn a_legacy_ping_gets_a_legacy_answer() {
    let (_ctl, url) = controller(vec![]).await;
    let (_gw, addr) = gateway(config(&url, "")).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0xFE, 0x01]).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(out[0], 0xFF);
    let units: Vec<u16> = out[3..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    assert!(String::from_utf16(&units).unwrap().starts_with("§1\u{0}127\u{0}"));
}

#[tokio::test]
async fn the_per_address_rate_limit_and_the_connection_cap_refuse_connections() {
    let (_ctl, url) = controller(vec![route(1, "lobby", "sleeping", true, None)]).await;
    let (gw, addr) = gateway(config(&url, "per_ip_per_minute = 3\n")).await;
    for _ in 0..3 {
        status(addr, HOST).await;
    }
    let s = TcpStream::connect(addr).await.unwrap();
    closed_within(s, Duration::from_secs(1)).await;
    assert_eq!(gw.metrics.get("conductor_gateway_rejects_total", "rate"), 1);

    let (gw, addr) = gateway(config(&url, "max_connections = 2\n")).await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = TcpStream::connect(addr).await.unwrap();
    closed_within(c, Duration::from_secs(1)).await;
    assert_eq!(gw.metrics.get("conductor_gateway_rejects_total", "capacity"), 1);
}

#[tokio::test]
async fn a_running_server_s_status_is_proxied_and_its_favicon_kept_while_it_sleeps() {
    // A backend answering status requests (as a game server does) and counting them.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap().to_string();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let a2 = asked.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let asked = a2.clone();
            tokio::spawn(async move {
                use conductor_gateway::protocol::*;
                let _ = read_frame(&mut c, 4096).await;
                let _ = read_frame(&mut c, 64).await;
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let json = status_json("1.8.9", 47, 3, 20, "Welcome to the lobby", Some("data:image/png;base64,AAAA"));
                let _ = c.write_all(&status_response(&json)).await;
            });
        }
    });
    let (ctl, url) = controller(vec![route(1, "lobby", "running", true, Some(&backend))]).await;
    let (_gw, addr) = gateway(config(&url, "")).await;
    let s = status(addr, HOST).await;
    assert_eq!(
        (s["description"]["text"].as_str(), s["players"]["online"].as_u64()),
        (Some("Welcome to the lobby"), Some(3))
    );
    // Cached: a server list refreshing does not hammer the server.
    for _ in 0..5 {
        status(addr, HOST).await;
    }
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "cached for status_cache_s");
    set_route(&ctl, route(1, "lobby", "sleeping", true, None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = status(addr, HOST).await;
    assert_eq!(s["description"]["text"], "Asleep - join to wake it");
    assert_eq!(s["favicon"], "data:image/png;base64,AAAA", "its own icon while it sleeps");
}
