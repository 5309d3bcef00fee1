//! The gateway against what an operator would otherwise put in front of game servers:
//! HAProxy in TCP mode (Debian's `haproxy`), both on loopback in front of the same backend.
//!
//! - added connect latency: a player's connect + handshake + login start until the backend's
//!   first answer arrives, 2,000 times one after another (p50, p99), minus going direct;
//! - throughput of one proxied connection (2 GiB from the backend to the player), as a ratio
//!   to HAProxy's;
//! - handshakes per second: status pings of a sleeping server (answered by the gateway
//!   itself), 64 clients at once for 5 s;
//! - memory at 10,000 idle proxied connections (the gateway's RSS, and HAProxy's).
//!
//! The gateway runs as its own process (this binary re-executed), as `conductor gateway`
//! does: a multi-threaded runtime on the machine's cores. Without `haproxy` on the PATH its
//! rows are skipped. `cargo bench -p conductor-gateway --bench proxy`
//! (`CONDUCTOR_BENCH_IDLE` = idle connections, default 10,000).

use conductor_gateway::protocol::{self, write_string, write_varint};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BULK: u64 = 2 << 30;

fn main() {
    if let Ok(cfg) = std::env::var("CONDUCTOR_BENCH_GATEWAY") {
        return run_gateway(&cfg);
    }
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench());
}

fn run_gateway(path: &str) {
    let cfg = conductor_gateway::config::GatewayConfig::load(std::path::Path::new(path), &|_| None).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async { conductor_gateway::run(cfg).await.unwrap() });
}

/// 10,000 proxied connections are 20,000 sockets in the gateway and as many here.
fn raise_fd_limit() {
    let want = libc::rlimit { rlim_cur: 65_536, rlim_max: 65_536 };
    // SAFETY: plain system calls with valid structs.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
        l.rlim_cur = l.rlim_max;
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
        eprintln!("note: open files limited to {} per process here", l.rlim_max);
    }
}

fn open_files_limit() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system call with a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    l.rlim_cur
}

fn handshake(host: &str, next: i32) -> Vec<u8> {
    let mut b = Vec::new();
    write_varint(&mut b, 47);
    write_string(&mut b, host);
    b.extend_from_slice(&25565u16.to_be_bytes());
    write_varint(&mut b, next);
    protocol::frame(0, &b)
}

fn login(host: &str, name: &str) -> Vec<u8> {
    let mut out = handshake(host, 2);
    let mut b = Vec::new();
    write_string(&mut b, name);
    out.extend_from_slice(&protocol::frame(0, &b));
    out
}

/// A game server's stand-in: answers a login with one frame; `bulk` then gets 2 GiB.
async fn backend() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let _ = c.set_nodelay(true);
                let Ok(_) = protocol::read_frame(&mut c, 4096).await else { return };
                let Ok(start) = protocol::read_frame(&mut c, 4096).await else { return };
                let name = protocol::Reader::new(&start.body).string(16).unwrap_or("").to_owned();
                if c.write_all(&protocol::frame(2, b"ok")).await.is_err() {
                    return;
                }
                if name == "bulk" {
                    let chunk = vec![7u8; 1 << 16];
                    let mut sent = 0;
                    while sent < BULK {
                        if c.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent += chunk.len() as u64;
                    }
                } else {
                    let mut buf = [0u8; 1024];
                    while matches!(c.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    addr
}

/// The controller's route feed, as far as the gateway needs it here.
async fn controller(backend: &str) -> String {
    let routes = serde_json::json!({ "epoch": "bench", "version": 1, "full": true, "removed": [], "routes": [
        { "server": 1, "name": "bench", "owner": "o", "hosts": [], "state": "running", "pay_per_use": true,
          "backend": backend, "eta_s": null, "blocked": null },
        { "server": 2, "name": "sleepy", "owner": "o", "hosts": [], "state": "sleeping", "pay_per_use": true,
          "backend": null, "eta_s": 30, "blocked": null } ] });
    let app = axum::Router::new()
        .route(
            "/v1/routes",
            axum::routing::get(move |q: axum::extract::RawQuery| {
                let routes = routes.clone();
                async move {
                    if q.0.is_some() {
                        tokio::time::sleep(Duration::from_secs(20)).await; // a long poll: no change
                        let mut r = routes;
                        r["full"] = false.into();
                        r["routes"] = serde_json::json!([]);
                        return r.to_string();
                    }
                    routes.to_string()
                }
            }),
        )
        .route("/v1/gateways/{id}/players", axum::routing::put(|| async { axum::http::StatusCode::NO_CONTENT }));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

/// Connect, log in, wait for the backend's first frame.
async fn join(port: u16, name: &str) -> (Duration, TcpStream) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&login("bench.o.bench.test", name)).await.unwrap();
    let f = protocol::read_frame(&mut s, 64).await.unwrap();
    assert_eq!(f.id, 2, "the backend answered");
    (t.elapsed(), s)
}

async fn latency(port: u16) -> (f64, f64) {
    let mut v = Vec::new();
    for _ in 0..2000 {
        v.push(join(port, "lat").await.0);
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[1000]), ms(v[1980]))
}

async fn throughput(port: u16) -> f64 {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let (_, mut s) = join(port, "bulk").await;
        let t = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        while got < BULK {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got += n as u64;
        }
        best = best.max(BULK as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    best
}

async fn status_rate(port: u16) -> f64 {
    let until = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                s.write_all(&handshake("sleepy.o.bench.test", 1)).await.unwrap();
                s.write_all(&protocol::frame(0, &[])).await.unwrap();
                protocol::read_frame(&mut s, 4096).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / 5.0
}

async fn idle_memory(port: u16, pid: u32, n: usize) -> (u64, u64, usize) {
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(5), join(port, "idle")).await {
            Ok((_, s)) => held.push(s),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    (before, after, held.len())
}

async fn bench() {
    // Each proxied connection is two sockets in the proxy (and two here): under a hard limit
    // of 20,000 open files per process, 9,900 is what fits.
    let limit = open_files_limit();
    let fits = (limit.saturating_sub(150) / 2) as usize;
    let idle: usize =
        std::env::var("CONDUCTOR_BENCH_IDLE").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000).min(fits);
    let backend = backend().await;
    let backend_port: u16 = backend.rsplit(':').next().unwrap().parse().unwrap();
    let url = controller(&backend).await;
    let dir = std::env::temp_dir().join(format!("conductor-bench-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let gw_port = free_port();
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!("[gateway]\nlisten = \"127.0.0.1:{gw_port}\"\ncontroller = \"{url}\"\ntoken = \"t\"\ndomain = \"bench.test\"\nmetrics_listen = \"\"\nper_ip_per_minute = 100000000\nmax_connections = 100000\n"),
    )
    .unwrap();
    let gw = Proc(Command::new(std::env::current_exe().unwrap()).env("CONDUCTOR_BENCH_GATEWAY", &cfg).spawn().unwrap());
    wait_listening(gw_port).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the first route table

    let ha_port = free_port();
    let ha_cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &ha_cfg,
        format!("global\n  maxconn 9990\n  nbthread 2\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nfrontend f\n  bind 127.0.0.1:{ha_port}\n  default_backend b\nbackend b\n  server s1 {backend}\n"),
    )
    .unwrap();
    let ha = Command::new("haproxy").arg("-db").arg("-f").arg(&ha_cfg).stdout(Stdio::null()).spawn().ok().map(Proc);
    if ha.is_some() {
        wait_listening(ha_port).await;
    } else {
        println!("haproxy not found: its rows are skipped (apt-get install haproxy)");
    }

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores; loopback; 2,000 sequential logins each; open files ≤ {limit} per process");
    let (d50, d99) = latency(backend_port).await;
    println!("direct to the backend     connect+login p50 {d50:.3} ms  p99 {d99:.3} ms");
    let (g50, g99) = latency(gw_port).await;
    println!(
        "through the gateway       connect+login p50 {g50:.3} ms  p99 {g99:.3} ms  (added p50 {:.3} ms, p99 {:.3} ms)",
        g50 - d50,
        g99 - d99
    );
    let mut ha_tp = None;
    if ha.is_some() {
        let (h50, h99) = latency(ha_port).await;
        println!("through HAProxy (tcp)     connect+login p50 {h50:.3} ms  p99 {h99:.3} ms  (added p50 {:.3} ms, p99 {:.3} ms)", h50 - d50, h99 - d99);
    }
    let direct_tp = throughput(backend_port).await;
    let gw_tp = throughput(gw_port).await;
    if ha.is_some() {
        ha_tp = Some(throughput(ha_port).await);
    }
    print!("throughput of one connection (2 GiB, best of 3): direct {direct_tp:.0} MB/s, gateway {gw_tp:.0} MB/s");
    match ha_tp {
        Some(h) => println!(", HAProxy {h:.0} MB/s; HAProxy / gateway = {:.2}×", h / gw_tp),
        None => println!(),
    }
    println!(
        "status pings of a sleeping server answered by the gateway: {:.0} per second (64 clients)",
        status_rate(gw_port).await
    );
    let (before, after, held) = idle_memory(gw_port, gw.0.id(), idle).await;
    println!(
        "gateway memory: {} MiB idle, {} MiB with {held} idle proxied connections ({:.1} KiB each)",
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / held.max(1) as f64
    );
    if let Some(ha) = &ha {
        let (before, after, held) = idle_memory(ha_port, ha.0.id(), idle).await;
        println!(
            "HAProxy memory: {} MiB idle, {} MiB with {held} idle connections ({:.1} KiB each)",
            before / 1024,
            after / 1024,
            (after.saturating_sub(before)) as f64 / held.max(1) as f64
        );
    }
    drop(gw);
    drop(ha);
    let _ = std::fs::remove_dir_all(&dir);
}
