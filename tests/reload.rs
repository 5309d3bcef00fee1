//! SIGHUP on a running `conductor serve` (PostgreSQL; observe mode, so no node or cloud is
//! called): a policy whose `shadow` the file now sets otherwise is switched at once, other
//! changes are named as waiting for a restart, and a file that no longer loads leaves the
//! running configuration as it was. Needs `CONDUCTOR_TEST_PG` (`.ci/run` sets it).

mod common;

use common::daemons::{free_port, fresh_db, http, spawn, wait_healthy};
use conductor_controller::store::Store;
use std::time::{Duration, Instant};

const ADMIN: &str = "reload-admin-token-123";

fn config(url: &str, port: u16, archive: &std::path::Path, shadow: bool, price: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    format!(
        r#"catalogue = "{root}/scenarios/catalogue.toml"

[controller]
database = "{url}"
listen = "127.0.0.1:{port}"
admin_token = "{ADMIN}"
mode = "observe"
tick_s = 1
archive_dir = "{archive}"
image = "unused"

[[controller.node]]
name = "ded-1"
docker = "tcp://127.0.0.1:9"
host = "127.0.0.1"

[controller.cloud]
token = "unused"
base_url = "http://127.0.0.1:9/v1"
cluster = "reload"
image = "ubuntu-24.04"
vm_docker = "tcp://127.0.0.1:9"

[[fleet.dedicated]]
type = "AX41"

[fleet.cloud]
type = "cpx32"
max_vms = 2

[prices]
active_eur_per_gib_hour = "{price}"

[policy]
kind = "custom"

[policy.spare_pool]
size = 1
shadow = {shadow}
"#,
        archive = archive.display()
    )
}

/// Waits (up to 20 s) until `done` holds.
fn within(what: &str, log: &std::path::Path, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sighup_switches_a_policy_names_what_waits_for_a_restart_and_survives_a_bad_file() {
    let Ok(admin) = std::env::var("CONDUCTOR_TEST_PG") else {
        assert!(std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_err(), "CONDUCTOR_TEST_PG is required");
        eprintln!("skipping: set CONDUCTOR_TEST_PG (bash .ci/postgres.sh)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (url, store) = fresh_db(&rt, &admin, &format!("conductor_reload_{}", std::process::id()), 1);
    let dir = common::temp_dir("reload");
    let (file, log, port) = (dir.join("controller.toml"), dir.join("daemon.log"), free_port());
    std::fs::write(&file, config(&url, port, &dir, true, "0.016")).unwrap();
    let daemon = spawn(&["serve", "--config", file.to_str().unwrap()], &log);
    wait_healthy(port, &log);
    let shadow = || http(port, "GET", "/v1/policies", ADMIN, "").1[1]["shadow"].as_bool();
    assert_eq!(shadow(), Some(true));
    let hangup = || {
        let pid = daemon.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };

    // Enforce by the file, and a new price (which waits for a restart).
    std::fs::write(&file, config(&url, port, &dir, false, "0.02")).unwrap();
    hangup();
    within("the pool is enforced", &log, || shadow() == Some(false));
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    within("the reload is logged", &log, || {
        text().contains(r#"policies switched [(1, false)]; at the next start: ["prices"]"#)
    });
    let events = rt.block_on(store.events(0, 10_000)).unwrap();
    let modes: Vec<_> = events.iter().filter(|e| e.kind == "policy.mode").collect();
    assert_eq!((modes.len(), modes[0].data["by"].as_str()), (1, Some("reload")));
    let reloaded = events.iter().find(|e| e.kind == "config.reloaded").expect("recorded");
    assert_eq!(reloaded.data["restart_needed"], serde_json::json!(["prices"]));

    // A file that no longer loads: logged, the daemon runs on with what it had.
    std::fs::write(&file, "[policy\nkind = ").unwrap();
    hangup();
    within("the bad file is refused", &log, || text().contains("the running configuration stays"));
    assert_eq!(http(port, "GET", "/healthz", "", "").0, 200);
    assert_eq!(shadow(), Some(false));
    let failed = rt.block_on(store.events(0, 10_000)).unwrap();
    assert!(failed.iter().any(|e| e.kind == "config.reload-failed"), "recorded");
}
