//! The gateway end to end with real peers: `conductor serve` (PostgreSQL, Podman, the
//! stand-in image) and two `conductor gateway`s side by side (hold 25 s and 1 s), reached
//! by clients nobody here wrote — npm's `minecraft-protocol` status ping and a `mineflayer`
//! bot (`gateway/tests/js/peers.js`, offline mode, 1.8.9) — naming servers by host name.
//!
//! Needs `CONDUCTOR_TEST_PG`, `CONDUCTOR_TEST_DOCKER` and the npm peers installed
//! (`bash .ci/npm.sh`); skipped otherwise, except under `CONDUCTOR_REQUIRE_SERVICES`.

use conductor_controller::docker::DockerNode;
use conductor_controller::driver::NodeDriver;
mod common;

use common::daemons::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN: &str = "gateway-admin-token-123";
const IMAGE: &str = "localhost/conductor-standin:test";
const FIRST_ID: i64 = 7000;
const DOMAIN: &str = "play.test";

fn js() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/tests/js")
}

/// Runs a real client: `ping <port> <host>` or `join <port> <host> <name> <stay_ms>`.
fn peer(args: &[&str]) -> Value {
    let out = Command::new("node").arg(js().join("peers.js")).args(args).output().expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("peers.js {args:?}: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn services() -> Option<(String, String)> {
    let npm = js().join("node_modules/mineflayer").exists();
    match (std::env::var("CONDUCTOR_TEST_PG"), std::env::var("CONDUCTOR_TEST_DOCKER"), npm) {
        (Ok(pg), Ok(docker), true) => Some((pg, docker)),
        _ if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() => {
            panic!("services are required: PostgreSQL, Podman and the npm peers (bash .ci/npm.sh)")
        }
        _ => {
            eprintln!("skipping: set CONDUCTOR_TEST_PG, CONDUCTOR_TEST_DOCKER and run bash .ci/npm.sh");
            None
        }
    }
}

/// A base such that `base + id` is a free port for the few ids this test makes.
fn port_base() -> u16 {
    loop {
        let p = free_port();
        let free = (0..8).all(|i| std::net::TcpListener::bind(("0.0.0.0", p + i)).is_ok());
        if p > 20_000 && p < 65_000 && free {
            return p - FIRST_ID as u16;
        }
    }
}

#[test]
fn players_reach_servers_by_name_wake_them_by_joining_and_never_by_pinging() {
    let Some((admin_url, docker_endpoint)) = services() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("conductor-gateway-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("daemons.log");
    let (url, _store) = fresh_db(&rt, &admin_url, &format!("conductor_gateway_{pid}"), FIRST_ID);
    let docker = DockerNode::connect(&docker_endpoint, "127.0.0.1").unwrap();
    // Containers of an earlier run with the same ids would be adopted with their old ports.
    for id in FIRST_ID..FIRST_ID + 8 {
        rt.block_on(NodeDriver::remove(&docker, id, true)).unwrap();
    }
    let (api, gw_a, gw_b, metrics) = (free_port(), free_port(), free_port(), free_port());
    let root = env!("CARGO_MANIFEST_DIR");
    let base = port_base();
    // One file for the controller and gateway A; gateway B has a file of its own.
    let config = format!(
        r#"catalogue = "{root}/scenarios/catalogue.toml"

[controller]
database = "{url}"
listen = "127.0.0.1:{api}"
admin_token = "{ADMIN}"
tick_s = 2
archive_dir = "{archive}"
image = "{IMAGE}"
stop_timeout_s = 5
game_port_base = {base}

[[controller.node]]
name = "ded-1"
docker = "{docker_endpoint}"

[[fleet.dedicated]]
type = "AX41"
count = 1

[policy]
kind = "fixed"

[prices]
promo_credit_eur = 5

[gateway]
listen = "127.0.0.1:{gw_a}"
id = "gw-a"
domain = "{DOMAIN}"
hold_s = 25
metrics_listen = "127.0.0.1:{metrics}"
report_every_s = 1
"#,
        archive = dir.join("archive").display(),
    );
    let a_file = dir.join("controller.toml");
    std::fs::write(&a_file, config).unwrap();
    let b_file = dir.join("gateway-b.toml");
    std::fs::write(
        &b_file,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{gw_b}\"\ncontroller = \"http://127.0.0.1:{api}\"\ntoken = \"{ADMIN}\"\nid = \"gw-b\"\ndomain = \"{DOMAIN}\"\nhold_s = 1\nmetrics_listen = \"\"\n"
        ),
    )
    .unwrap();
    let _serve = spawn(&["serve", "--config", a_file.to_str().unwrap()], &log);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _a = spawn(&["gateway", "--config", a_file.to_str().unwrap()], &log);
    let _b = spawn(&["gateway", "--config", b_file.to_str().unwrap()], &log);

    let (status, owner) = http(api, "POST", "/v1/owners", ADMIN, r#"{"name":"alice"}"#);
    assert_eq!(status, 201, "{owner}");
    let token = owner["token"].as_str().unwrap().to_owned();
    let create = |name: &str, ppu: bool| {
        let body = format!(r#"{{"name":"{name}","ram_mib":512,"pay_per_use":{ppu}}}"#);
        let (status, s) = http(api, "POST", "/v1/servers", &token, &body);
        assert_eq!(status, 201, "{s}");
        s["id"].as_i64().unwrap()
    };
    let (lobby, arena, fixed) = (create("lobby", true), create("arena", true), create("fixed", false));
    let host = |name: &str| format!("{name}.alice.{DOMAIN}");
    let (a, b) = (gw_a.to_string(), gw_b.to_string());
    let custom = "mc.alice-games.example";
    assert_eq!(http(api, "PUT", &format!("/v1/servers/{arena}/hosts/{custom}"), &token, "").0, 200);

    // The lobby has run once and sleeps now.
    http(api, "POST", &format!("/v1/servers/{lobby}/start"), &token, "");
    wait_state(api, ADMIN, lobby, "running", Duration::from_secs(60), &log);
    http(api, "POST", &format!("/v1/servers/{lobby}/stop"), &token, "");
    wait_state(api, ADMIN, lobby, "sleeping", Duration::from_secs(60), &log);
    std::thread::sleep(Duration::from_secs(3)); // the gateways follow
    let pinged = Instant::now();
    for gw in [&a, &b] {
        let s = peer(&["ping", gw, &host("lobby")]);
        assert_eq!(s["motd"], "Asleep - join to wake it", "{s}");
        assert_eq!(s["online"], 0);
    }

    // A start slower than gateway B's 1 s hold: the "starting" message, then in once it runs.
    let kicked = peer(&["join", &b, custom, "early", "0"]);
    assert_eq!(kicked["result"], "kicked", "{kicked}");
    let reason = kicked["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.starts_with("The server is starting. Join again in about"), "{reason}");
    wait_state(api, ADMIN, arena, "running", Duration::from_secs(60), &log);
    std::thread::sleep(Duration::from_secs(3));
    let joined = peer(&["join", &b, custom, "late", "0"]);
    assert_eq!(joined["result"], "spawned", "{joined}");

    // Refusals say why.
    let unknown = peer(&["join", &a, &host("nobody"), "x", "0"]);
    assert_eq!(unknown["reason"], "There is no server at this address.", "{unknown}");
    let off = peer(&["join", &a, &host("fixed"), "x", "0"]);
    assert_eq!(off["reason"], "This server is stopped. Its owner can start it from the panel.", "{off}");
    assert_eq!(state(api, ADMIN, fixed), "new", "not started");

    // A minute after the pings, the lobby's container has still not started.
    while pinged.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!rt.block_on(docker.running(lobby)).unwrap(), "a status ping started the lobby");
    assert_eq!(state(api, ADMIN, lobby), "sleeping");

    // A bot joining the sleeping lobby wakes it and lands in the world without reconnecting,
    // while another bot plays on the arena behind the same port.
    let t = Instant::now();
    let (j1, j2) = std::thread::scope(|s| {
        let h1 = s.spawn(|| peer(&["join", &a, &host("lobby"), "walker", "3000"]));
        let h2 = s.spawn(|| peer(&["join", &a, &host("arena"), "runner", "3000"]));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    assert_eq!(j1["result"], "spawned", "{j1}");
    assert_eq!(j2["result"], "spawned", "{j2}");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(rt.block_on(docker.running(lobby)).unwrap(), "woken through the controller");
    // Each bot reached its own server: the stand-ins' logs say who joined.
    let logs = |id| rt.block_on(docker.logs_tail(id, 50)).unwrap();
    assert!(logs(lobby).contains("walker joined") && !logs(lobby).contains("runner"), "{}", logs(lobby));
    assert!(logs(arena).contains("runner joined") && !logs(arena).contains("walker"), "{}", logs(arena));

    // The stable game port: the lobby's route names base + id.
    let routes = http(api, "GET", "/v1/routes", ADMIN, "").1;
    let r = routes["routes"].as_array().unwrap().iter().find(|r| r["server"] == lobby).unwrap().clone();
    assert_eq!(r["backend"], format!("127.0.0.1:{}", base as i64 + lobby), "{r}");

    let (_, m) = http(metrics, "GET", "/metrics", "", "");
    let m = m.as_str().unwrap_or_default().to_owned();
    assert!(m.contains("conductor_gateway_wakes_total 1"), "{m}");
    assert!(m.contains("conductor_gateway_holds_total{outcome=\"joined\"} 1"), "{m}");
    assert!(m.contains("conductor_gateway_status_total{kind=\"sleeping\"} 1"), "{m}");

    for id in [lobby, arena] {
        http(api, "POST", &format!("/v1/servers/{id}/stop"), &token, "");
    }
    for id in [lobby, arena] {
        wait_state(api, ADMIN, id, "sleeping", Duration::from_secs(60), &log);
        rt.block_on(NodeDriver::remove(&docker, id, true)).unwrap();
    }
}
