//! `conductor export`: the event log → a SPEC §4 dataset the twin replays. First the session
//! rules on a hand-written log (expected rows written out), then the whole path: servers
//! created through the HTTP API, the log read back over HTTP, the dataset written, loaded by
//! the twin's loader and replayed.

use conductor_controller::api::{router, Api, ApiConfig};
use conductor_controller::export::{build, fetch, MetaInfo, ServerRow, Session};
use conductor_controller::store::{token_hash, Event, NewEvent, Store};
use conductor_controller::MemoryStore;
use conductor_sim::dataset::Dataset;
use conductor_sim::scenario::Scenario;
use conductor_sim::timefmt::parse_rfc3339;
use serde_json::{json, Value};
use std::sync::Arc;

const MIN: i64 = 60_000;
const T0: i64 = 1_760_000_000_000;

fn ev(seq: i64, at: i64, kind: &str, server: i64, data: Value) -> Event {
    Event { seq, at, kind: kind.into(), server: Some(server), node: None, data }
}

fn row(id: i64, pay_per_use: bool) -> ServerRow {
    ServerRow {
        id,
        owner: 1,
        ram_mib: 2048,
        disk_mb: 1500,
        pay_per_use,
        cost_mode: "off".into(),
        created_at: T0 - 1000 * MIN,
    }
}

fn meta() -> MetaInfo {
    MetaInfo { name: "t".into(), timezone: "Europe/Berlin".into(), source: "test".into() }
}

#[test]
fn sessions_follow_the_rules_of_the_event_log() {
    let servers = [row(1, false), row(2, true), row(3, false), row(4, false)];
    let events = vec![
        // 1: customer start at +10, a second start press ignored, stop at +70 with 4 players.
        ev(1, T0 + 10 * MIN, "server.requested", 1, json!({})),
        ev(2, T0 + 11 * MIN, "server.started", 1, json!({ "wait_ms": 60_000 })),
        ev(3, T0 + 20 * MIN, "server.requested", 1, json!({})),
        ev(4, T0 + 70 * MIN, "server.stop-requested", 1, json!({ "peak_players": 4 })),
        ev(5, T0 + 70 * MIN, "server.slept", 1, json!({ "peak_players": 4 })),
        // 2: pay-per-use, idle event 5 min after the last player left at +40.
        ev(6, T0 + 15 * MIN, "server.requested", 2, json!({})),
        ev(7, T0 + 45 * MIN, "server.idle", 2, json!({ "idle_ms": 5 * MIN, "peak_players": 2 })),
        ev(8, T0 + 45 * MIN, "server.slept", 2, json!({ "peak_players": 2 })),
        // 2 again: woken, nobody came; the idle event puts the end before the start.
        ev(9, T0 + 100 * MIN, "server.requested", 2, json!({})),
        ev(10, T0 + 104 * MIN, "server.idle", 2, json!({ "idle_ms": 5 * MIN, "peak_players": 0 })),
        // 3: a start that gave up in the queue.
        ev(11, T0 + 30 * MIN, "server.requested", 3, json!({})),
        ev(12, T0 + 40 * MIN, "server.abandoned", 3, json!({ "reason": "GaveUp" })),
        // 3: a start still running at the end of the window.
        ev(13, T0 + 150 * MIN, "server.requested", 3, json!({})),
        // 4: a session entirely before the window (left out), one straddling its start.
        ev(14, T0 - 100 * MIN, "server.requested", 4, json!({})),
        ev(15, T0 - 50 * MIN, "server.stop-requested", 4, json!({ "peak_players": 1 })),
        ev(16, T0 - 10 * MIN, "server.requested", 4, json!({})),
        ev(17, T0 + 5 * MIN, "server.stop-requested", 4, json!({ "peak_players": 3 })),
        // 5: deleted before the export, known from its creation event.
        ev(
            18,
            T0 + 20 * MIN,
            "server.created",
            5,
            json!({ "owner": 2, "ram_mib": 1024, "disk_mb": 700, "pay_per_use": false, "cost_mode": "suggest" }),
        ),
        ev(19, T0 + 21 * MIN, "server.requested", 5, json!({})),
        ev(20, T0 + 31 * MIN, "server.stop-requested", 5, json!({ "peak_players": 1 })),
        ev(21, T0 + 40 * MIN, "server.deleted", 5, json!({})),
        // After the window: ignored.
        ev(22, T0 + 300 * MIN, "server.requested", 1, json!({})),
    ];
    let until = T0 + 200 * MIN;
    let x = build(&servers, &events, T0, until, &meta()).unwrap();
    let s = |server, start, end, players| Session { server, start: T0 + start * MIN, end: T0 + end * MIN, players };
    assert_eq!(
        x.sessions,
        vec![
            Session { server: 4, start: T0 - 10 * MIN, end: T0 + 5 * MIN, players: 3 },
            s(1, 10, 70, 4),
            s(2, 15, 40, 2),
            s(5, 21, 31, 1),
            s(3, 30, 40, 0),
            Session { server: 2, start: T0 + 100 * MIN, end: T0 + 100 * MIN + 1000, players: 0 },
            s(3, 150, 200, 0),
        ]
    );
    assert_eq!((x.still_open, x.lengthened), (1, 1));
    assert_eq!(x.servers.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let csv = x.servers_csv();
    assert!(csv.contains("\ns5,o2,1024,0.700,,false,suggest,2025-10-09T09:13:20Z\n"), "{csv}");
    assert!(csv.contains("\ns1,o1,2048,1.500,,false,off,"), "{csv}");
    assert!(x.sessions_csv().contains("\ns1,2025-10-09T09:03:20Z,2025-10-09T10:03:20Z,4\n"), "{}", x.sessions_csv());

    // Errors: an empty window, sessions of a server nobody knows.
    let e = build(&servers, &events, T0, T0, &meta()).unwrap_err().to_string();
    assert!(e.contains("is not after"), "{e}");
    let stray = [ev(1, T0 + MIN, "server.requested", 9, json!({}))];
    let e = build(&servers, &stray, T0, until, &meta()).unwrap_err().to_string();
    assert!(e.contains("server 9"), "{e}");
}

/// The fleet's own delays go into `meta.toml` (`[measured]`, log-normal fits), and a scenario
/// with `lifecycle.delays_from = "dataset"` takes them: boots of 20 s and 80 s (median 40 s,
/// sigma ln 2), a restore-start left out of the boots, its 3 GB restored in 40 s (75 MB/s),
/// one VM ready 60 s after its create.
#[test]
fn the_measured_delays_reach_the_twin() {
    let node =
        |seq, at, kind: &str, n| Event { seq, at, kind: kind.into(), server: None, node: Some(n), data: json!({}) };
    let placed = |seq, at, s, restore: &str| ev(seq, at, "server.placed", s, json!({ "restore": restore }));
    let events = vec![
        placed(1, T0 + MIN, 1, "None"),
        ev(2, T0 + MIN + 20_000, "server.started", 1, json!({})),
        placed(3, T0 + 2 * MIN, 2, "None"),
        ev(4, T0 + 2 * MIN + 80_000, "server.started", 2, json!({})),
        placed(5, T0 + 3 * MIN, 3, "Archive"),
        // 3 GB of world in place 40 s after its placement: 75 MB/s.
        ev(51, T0 + 3 * MIN + 40_000, "server.restored", 3, json!({ "world_bytes": 3_000_000_000u64 })),
        ev(6, T0 + 3 * MIN + 500_000, "server.started", 3, json!({})),
        node(7, T0 + 4 * MIN, "node.created", 7),
        node(8, T0 + 5 * MIN, "node.ready", 7),
    ];
    let servers = [row(1, false), row(2, false), row(3, false)];
    let x = build(&servers, &events, T0, T0 + 60 * MIN, &meta()).unwrap();
    let text = &x.meta_toml;
    assert!(text.contains("[measured.boot]\nsamples = 2\nmedian_s = 40.0\nsigma = 0.6931\n"), "{text}");
    assert!(text.contains("[measured.provisioning]\nsamples = 1\nmedian_s = 60.0\nsigma = 0.0\n"), "{text}");
    assert!(text.contains("[measured.restore]\nsamples = 1\nmb_per_s = 75.0\n"), "{text}");

    let dir = std::env::temp_dir().join(format!("conductor-measured-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    x.write(&dir.join("data"), false).unwrap();
    Dataset::load(&dir.join("data")).expect("the twin loads a dataset with [measured]");
    let scenario = |extra: &str| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let text = format!(
            "name = \"m\"\ndataset = \"data\"\ncatalogue = \"{root}/scenarios/catalogue.toml\"\n\n[[fleet.dedicated]]\ntype = \"AX41\"\ncount = 1\n\n[fleet.cloud]\ntype = \"cx23\"\nmax_vms = 2\n\n[lifecycle]\n{extra}\n\n[policy]\nkind = \"reference\"\n"
        );
        let path = dir.join("s.toml");
        std::fs::write(&path, &text).unwrap();
        Scenario::load(&path).map_err(|e| e.to_string())
    };
    let s = scenario("delays_from = \"dataset\"").unwrap();
    assert_eq!(format!("{:?}", s.lifecycle.boot), "LogNormal { median: 40000, sigma: 0.6931 }");
    assert_eq!(format!("{:?}", s.lifecycle.provisioning), "LogNormal { median: 60000, sigma: 0.0 }");
    assert_eq!(s.lifecycle.restore_mb_per_s, 75, "the measured bandwidth, over the scenario's");
    let e = scenario("delays_from = \"yesterday\"").unwrap_err();
    assert!(e.contains("lifecycle.delays_from"), "{e}");
    // A dataset without measurements says so.
    std::fs::write(dir.join("data/meta.toml"), text.split("\n[measured").next().unwrap()).unwrap();
    let e = scenario("delays_from = \"dataset\"").unwrap_err();
    assert!(e.contains("lifecycle.delays_from") && e.contains("no [measured] table"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_http_is_a_dataset_the_twin_replays() {
    let store = Arc::new(MemoryStore::new());
    let api = Arc::new(Api {
        store: store.clone(),
        live: None,
        routes: Default::default(),
        config: ApiConfig {
            admin_token_sha256: token_hash("admin"),
            max_plan_mib: 60 * 1024,
            now: Box::new(|| T0),
            prices: Default::default(),
            stripe_secret: None,
            warn_before: 86_400_000,
        },
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(api)).await.unwrap() });
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = client.post(format!("{url}{path}")).bearer_auth("admin");
        async move {
            let resp = req.header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
            serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap()
        }
    };
    let owner = post("/v1/owners", json!({ "name": "ann" })).await;
    let mut ids = Vec::new();
    for (i, ppu) in [(0, false), (1, true), (2, false)] {
        let body = json!({ "name": format!("s{i}"), "ram_mib": 4096, "disk_mb": 2000, "pay_per_use": ppu, "owner": owner["id"] });
        let s = post("/v1/servers", body).await;
        ids.push(s["id"].as_i64().unwrap());
    }
    // What the live engine records as servers run (one session each, one left open).
    for (k, &id) in ids.iter().enumerate() {
        let start = T0 + (k as i64 + 1) * 60 * MIN;
        let append = |at, kind: &str, data| {
            store.append_event(NewEvent { at, kind: kind.into(), server: Some(id), node: None, data })
        };
        append(start, "server.requested", json!({})).await.unwrap();
        if k < 2 {
            append(start + 90 * MIN, "server.stop-requested", json!({ "peak_players": k + 1 })).await.unwrap();
        }
    }
    // A wrong token is a clear error.
    let e = fetch(&url, "nope").await.unwrap_err().to_string();
    assert!(e.contains("401") && e.contains("/v1/servers"), "{e}");

    let (servers, events) = fetch(&url, "admin").await.unwrap();
    assert_eq!(servers.len(), 3);
    let until = T0 + 24 * 60 * MIN;
    let x = build(&servers, &events, T0, until, &meta()).unwrap();
    let dir = std::env::temp_dir().join(format!("conductor-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    x.write(&dir, false).unwrap();
    let e = x.write(&dir, false).unwrap_err().to_string();
    assert!(e.contains("--force"), "{e}");

    let ds = Dataset::load(&dir).unwrap();
    assert_eq!((ds.servers.len(), ds.sessions.len()), (3, 3));
    assert_eq!(ds.meta.start, T0);
    assert_eq!(ds.meta.end, until);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/reference.toml")).unwrap();
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/reference.toml"));
    let scenario = Scenario::parse(path, &text).unwrap();
    let out = conductor_sim::engine::run(&scenario, &ds, 1, &mut |_| {});
    // Three requests, each placed at once on an empty fleet (boot only: 20 s).
    assert_eq!(out.waits.len(), 3, "every exported session is requested in the twin");
    assert!(out.waits.iter().all(|&w| w == 20_000), "{:?}", out.waits);
    assert!(out.active_revenue > rust_decimal::Decimal::ZERO);
    assert_eq!(parse_rfc3339("2025-10-09T08:53:20Z").unwrap(), T0);
    std::fs::remove_dir_all(&dir).unwrap();
}
