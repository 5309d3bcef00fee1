//! `conductor forecast --from-db`: the controller's nightly job run once by cron, against a
//! real PostgreSQL holding eight days of events. It stores the forecast where the running
//! controller picks it up; too little history fails with the reason, non-zero, recorded.
//! Needs `CONDUCTOR_TEST_PG` (`.ci/run` sets it); skipped without it outside CI.

use conductor_controller::store::{NewEvent, NewServer, Store};
use conductor_controller::PgStore;
use conductor_core::model::CostMode;
use conductor_core::time::{DAY, HOUR};
use conductor_core::Millis;
use std::process::Command;

/// Monday 2026-01-05 00:00 UTC.
const T0: Millis = 1_767_571_200_000;

#[test]
fn the_cron_job_forecasts_from_the_event_log_and_stores_it_for_the_controller() {
    let Ok(admin) = std::env::var("CONDUCTOR_TEST_PG") else {
        assert!(std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_err(), "CONDUCTOR_TEST_PG is required");
        eprintln!("skipping: set CONDUCTOR_TEST_PG (bash .ci/postgres.sh)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = format!("conductor_forecast_cli_{}", std::process::id());
    let i = admin.rfind('/').unwrap();
    let url = format!("{}/{db}", &admin[..i]);
    let store = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}")).execute(&mut c).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut c).await.unwrap();
        let store = PgStore::connect(&url).await.unwrap();
        // Eight days: four 2 GiB servers play 19:00–23:00 every evening.
        let owner = store.create_owner("o", T0).await.unwrap().id;
        for s in 0..4 {
            let new = NewServer {
                owner,
                name: format!("mc{s}"),
                ram_mib: 2048,
                disk_mb: 100,
                pay_per_use: false,
                cost_mode: CostMode::Off,
            };
            let id = store.create_server(new, T0).await.unwrap().id;
            for d in 0..8 {
                for (at, kind) in [(19, "server.requested"), (23, "server.stop-requested")] {
                    let e = NewEvent {
                        at: T0 + d * DAY + at * HOUR,
                        kind: kind.into(),
                        server: Some(id),
                        node: None,
                        data: serde_json::json!({}),
                    };
                    store.append_event(e).await.unwrap();
                }
            }
        }
        store
    });
    let dir = std::env::temp_dir().join(format!("conductor-forecast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!(
        r#"catalogue = "{root}/scenarios/catalogue.toml"

[controller]
database = "{url}"
admin_token = "local-admin-token-123"
archive_dir = "{archive}"
image = "unused"

[controller.forecast]
window_days = 7

[[controller.node]]
name = "ded-1"
docker = "unix:///nonexistent/docker.sock"

[controller.cloud]
token = "fake"
base_url = "http://127.0.0.1:9/v1"
cluster = "cli"
image = "ubuntu-24.04"
vm_docker = "unix:///nonexistent/docker.sock"

[[fleet.dedicated]]
type = "AX41"
count = 1

[fleet.cloud]
type = "cx23"
max_vms = 3

[policy]
kind = "custom"

[policy.predictive]
source = "seasonal-naive"
shadow = true
"#,
        archive = dir.join("archive").display(),
    );
    let path = dir.join("controller.toml");
    std::fs::write(&path, config).unwrap();
    let run = |at: &str| {
        Command::new(env!("CARGO_BIN_EXE_conductor"))
            .args(["forecast", "--from-db", path.to_str().unwrap(), "--at", at])
            .output()
            .unwrap()
    };

    // Five days in: seasonal-naive needs a week. Non-zero, the reason, recorded.
    let out = run("2026-01-10T03:00:00Z");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs a week of history, has 5.1 days"), "{stderr}");
    let failed = rt.block_on(store.latest_events(&["forecast.failed"], 10)).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(rt.block_on(store.latest_forecast()).unwrap(), None);

    // Eight days in: a week of history (the window), the forecast stored.
    let out = run("2026-01-13T03:00:00Z");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("forecast seasonal-naive from 28 sessions of 4 servers: 192 steps"), "{stdout}");
    let (made_at, doc) = rt.block_on(store.latest_forecast()).unwrap().unwrap();
    assert_eq!(made_at, T0 + 8 * DAY + 3 * HOUR);
    let series = &doc["series"][0];
    assert_eq!((series["name"].as_str(), series["unit"].as_str()), (Some("ram_mib.peak"), Some("MiB")));
    // A week ago this evening all four ran: 8 GiB at 20:00 (step 68 from 03:00), none at noon.
    assert_eq!(series["points"][68]["mean"], 8192.0);
    assert_eq!(series["points"][36]["mean"], 0.0);
    assert_eq!(rt.block_on(store.latest_events(&["forecast.made"], 10)).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
