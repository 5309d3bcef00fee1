//! The gateway's metrics read by a real Prometheus (Debian's `prometheus`, `.ci/prometheus.sh`
//! installs it): `promtool check metrics` accepts the exposition, and a Prometheus scraping the
//! metrics port sees the gateway up and the status answers it counted. Skipped without
//! `prometheus` on the PATH, except under `CONDUCTOR_REQUIRE_SERVICES`.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn have_prometheus() -> bool {
    let ok = Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() {
        panic!("prometheus is required (bash .ci/prometheus.sh)");
    }
    if !ok {
        eprintln!("skipping: no prometheus on the PATH (bash .ci/prometheus.sh)");
    }
    ok
}

async fn get(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_s_metrics() {
    if !have_prometheus() {
        return;
    }
    let (_ctl, url) = controller(vec![route(1, "lobby", "sleeping", true, None)]).await;
    let m = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = m.local_addr().unwrap();
    let (gw, addr) = gateway(config(&url, "")).await;
    tokio::spawn(conductor_gateway::serve_metrics(gw.clone(), m));
    for _ in 0..7 {
        status(addr, "lobby.alice.play.test").await;
    }
    let text = get(&format!("http://{metrics}/metrics")).await;

    // The exposition format, checked by Prometheus's own tool.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A Prometheus scraping it every second.
    let dir = std::env::temp_dir().join(format!("conductor-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['{metrics}']\n"),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = |q: &str| format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
    let t = Instant::now();
    let mut last = String::new();
    let found = loop {
        if t.elapsed() > Duration::from_secs(60) {
            break false;
        }
        if let Ok(r) = reqwest::get(query("conductor_gateway_status_total")).await {
            last = r.text().await.unwrap_or_default();
            if last.contains("\"sleeping\"") {
                break true;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let up = get(&query("up")).await;
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(found, "Prometheus never had the status counter: {last}");
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    let series = v["data"]["result"].as_array().unwrap();
    let sleeping = series.iter().find(|s| s["metric"]["kind"] == "sleeping").unwrap();
    assert_eq!(sleeping["value"][1], "7", "the seven status answers: {last}");
    assert!(up.contains("\"1\""), "the target is up: {up}");
}
