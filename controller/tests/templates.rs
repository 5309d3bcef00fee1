//! Templates, logs and the console, end to end: PostgreSQL, Podman, the stand-in image under
//! two templates (a console on stdin with JVM heap flags, and RCON with `MEMORY`), through
//! the HTTP API as an owner uses it. The containers are inspected through the Docker API.

mod common;

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use common::rig::{dedicated_type, vm_type, Rig};
use conductor_controller::archive::Archive;
use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::{container_name, DockerNode, Helper};
use conductor_controller::live::{DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{token_hash, EntryKind, NewEntry, ServerState, Store};
use conductor_controller::template::{TemplateFile, Templates};
use conductor_core::{Millis, SchedulerConfig};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const T0: Millis = 1_760_000_000_000;
const S: Millis = 1000;
const OWNER: &str = "owner-token-templates";
const OTHER: &str = "other-token-templates";

fn templates() -> Templates {
    let file = |text: &str| -> TemplateFile { toml::from_str(text).unwrap() };
    let files: BTreeMap<String, TemplateFile> = [
        (
            "standin-stdin".to_owned(),
            file(&format!(
                r#"image = "{img}"
version = "1.8.9"
eula = true
env = {{ MOTD = "from the template" }}
properties = {{ "max-players" = "7" }}
memory_headroom_mib = 256
cpus_per_gib = 1.0"#,
                img = common::IMAGE
            )),
        ),
        (
            "standin-rcon".to_owned(),
            file(&format!(
                r#"image = "{img}"
version = "1.21.4"
heap_env = "MEMORY"
heap_format = "mib"
memory_headroom_mib = 512
console = "rcon"
rcon_cli = ["/standin", "rcon-cli"]
stop_signal = "SIGINT"
stop_command = "stop""#,
                img = common::IMAGE
            )),
        ),
        (
            // Boots for ten minutes; its ready check allows five seconds.
            "standin-slow".to_owned(),
            file(&format!(
                r#"image = "{img}"
env = {{ READY_AFTER_MS = "600000" }}
start_timeout_s = 5"#,
                img = common::IMAGE
            )),
        ),
    ]
    .into();
    Templates::from_config(&files, None, None, Some("standin-stdin")).unwrap()
}

fn config(docker: Arc<DockerNode>, archive: &std::path::Path) -> LiveConfig {
    let (vm, node) = (vm_type(), dedicated_type("big", 4096));
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: templates(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler: SchedulerConfig::reference(vm, 0),
        dedicated: vec![DedicatedNode { name: "ded-1".into(), kind: node, docker }],
        cloud: None,
        idle_timeout: 3600 * S,
        stop_timeout: Duration::from_secs(10),
        image: common::IMAGE.into(),
        cmd: None,
        helper: Helper { image: common::IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] },
        archive: Arc::new(Archive::dir(archive).unwrap()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing::default(),
    }
}

fn env_of(inspected: &bollard::models::ContainerInspectResponse) -> Vec<String> {
    inspected.config.as_ref().and_then(|c| c.env.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_templates_run_with_their_image_heap_and_environment_and_the_console_reaches_them() {
    let (Some(store), Some(docker)) = (common::fresh_pg("templates").await, common::docker()) else { return };
    // Apart from other tests' servers on the same Podman.
    sqlx::query("ALTER SEQUENCE servers_id_seq RESTART WITH 900").execute(store.pool()).await.unwrap();
    let store = Arc::new(store);
    let docker = Arc::new(docker);
    let socket = std::env::var("CONDUCTOR_TEST_DOCKER").unwrap().strip_prefix("unix://").unwrap().to_owned();
    let podman = bollard::Docker::connect_with_socket(&socket, 30, bollard::API_DEFAULT_VERSION).unwrap();
    let archive_dir = std::env::temp_dir().join(format!("conductor-templates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&archive_dir);
    let owner = store.create_owner("tess", T0).await.unwrap().id;
    store.add_token(owner, token_hash(OWNER), T0).await.unwrap();
    let other = store.create_owner("mallory", T0).await.unwrap().id;
    store.add_token(other, token_hash(OTHER), T0).await.unwrap();
    let topup = NewEntry {
        owner,
        kind: EntryKind::Topup,
        amount: Decimal::from(5),
        key: "grant:tess".into(),
        at: T0,
        server: None,
        window_start: None,
        data: json!({}),
    };
    store.post(topup).await.unwrap();
    for id in 900..903 {
        docker.remove(id, true).await.unwrap();
    }
    let live = Live::start(store.clone(), config(docker.clone(), &archive_dir), T0).await.unwrap();
    let r = Rig::new(store.clone(), live, Arc::new(AtomicI64::new(T0)), 4096);

    // What an owner can choose from: variable names, never values.
    let (s, list) = r.call("GET", "/v1/templates", OWNER, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["templates"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["standin-rcon", "standin-slow", "standin-stdin"]);
    assert!(!list.to_string().contains("from the template"), "no env values: {list}");

    // Bad choices change nothing.
    let create = |name: &str, ram: u32, template: &str| json!({ "name": name, "ram_mib": ram, "template": template });
    let (s, v) = r.call("POST", "/v1/servers", OWNER, Some(create("x", 1024, "vanilla-9"))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_template")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("standin-rcon"), "names the known ones: {v}");
    let (s, v) = r.call("POST", "/v1/servers", OWNER, Some(create("x", 512, "standin-rcon"))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plan_too_small")), "{v}");
    assert!(store.servers(None).await.unwrap().is_empty(), "nothing created");

    let (s, a) = r.call("POST", "/v1/servers", OWNER, Some(create("a", 1024, "standin-stdin"))).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (_, b) = r.call("POST", "/v1/servers", OWNER, Some(create("b", 1536, "standin-rcon"))).await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    assert_eq!(store.server(b).await.unwrap().template.as_deref(), Some("standin-rcon"));
    for id in [a, b] {
        let (s, v) = r.call("POST", &format!("/v1/servers/{id}/start"), OWNER, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    r.until(a, ServerState::Running).await;
    r.until(b, ServerState::Running).await;

    // The containers, as the Docker API shows them.
    let ia = podman
        .inspect_container(&container_name(a), None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap();
    let ib = podman
        .inspect_container(&container_name(b), None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap();
    let (ea, eb) = (env_of(&ia), env_of(&ib));
    for want in ["JVM_OPTS=-Xms768M -Xmx768M", "EULA=TRUE", "VERSION=1.8.9", "MAX_PLAYERS=7", "MOTD=from the template"]
    {
        assert!(ea.iter().any(|e| e == want), "{want} in {ea:?}");
    }
    for want in ["MEMORY=1024M", "VERSION=1.21.4", "ENABLE_RCON=true"] {
        assert!(eb.iter().any(|e| e == want), "{want} in {eb:?}");
    }
    assert!(!eb.iter().any(|e| e.starts_with("JVM_OPTS=") || e.starts_with("EULA=")), "{eb:?}");
    let password = eb.iter().find_map(|e| e.strip_prefix("RCON_PASSWORD=")).expect("an RCON password").to_owned();
    assert_eq!(password.len(), 48);
    assert!(!ea.iter().any(|e| e.starts_with("RCON_PASSWORD=")), "a stdin console has no password");
    let host = |i: &bollard::models::ContainerInspectResponse| i.host_config.clone().unwrap();
    assert_eq!(host(&ia).memory, Some(1024 << 20));
    assert_eq!(host(&ia).nano_cpus, Some(1_000_000_000), "one CPU per GiB");
    assert_eq!(host(&ib).cpu_shares, Some(1536), "shares follow the plan");
    let signal = ib.config.as_ref().unwrap().stop_signal.clone();
    assert!(matches!(signal.as_deref(), Some("SIGINT" | "2")), "Podman reports the number: {signal:?}");
    assert_eq!(ia.config.as_ref().unwrap().image.as_deref(), Some(common::IMAGE));
    let port = docker.inspect(a).await.unwrap().unwrap().host_port.unwrap();
    let status = conductor_controller::mcping::status("127.0.0.1", port, Duration::from_secs(2)).await.unwrap();
    assert_eq!(status.max, 7, "the property reached the server");

    // A plan upgrade while b runs: restarted in place (the node has room) with the new
    // memory limit, heap and CPU shares, its world saved by its stop and kept.
    let (s, v) = r.call("PATCH", &format!("/v1/servers/{b}"), OWNER, Some(json!({ "ram_mib": 2048 }))).await;
    assert_eq!(
        (s, v["plan_change"].as_str(), v["ram_mib"].as_u64()),
        (StatusCode::OK, Some("restart"), Some(2048)),
        "{v}"
    );
    r.until(b, ServerState::Running).await;
    let ib2 = podman
        .inspect_container(&container_name(b), None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap();
    assert_ne!(ib2.id, ib.id, "made anew for the new plan");
    assert_eq!(host(&ib2).memory, Some(2048 << 20));
    assert_eq!(host(&ib2).cpu_shares, Some(2048));
    assert!(env_of(&ib2).iter().any(|e| e == "MEMORY=1536M"), "{:?}", env_of(&ib2));
    let (_, logs) = r.call("GET", &format!("/v1/servers/{b}/logs?lines=20"), OWNER, None).await;
    assert!(logs.as_str().unwrap().contains("world saves=1"), "saved by its stop, then started: {logs}");
    let changed = store.events(0, 100_000).await.unwrap().into_iter().find(|e| e.kind == "server.plan-changed");
    assert_eq!(changed.expect("server.plan-changed").data, json!({ "from": 1536, "ram_mib": 2048, "how": "restart" }));

    // Follow a's log; a console command shows up in it.
    let req = Request::builder()
        .uri(format!("/v1/servers/{a}/logs?lines=10&follow=true"))
        .header("authorization", format!("Bearer {OWNER}"))
        .body(HttpBody::empty())
        .unwrap();
    let resp = r.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut follow = resp.into_body().into_data_stream();
    let (s, v) =
        r.call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": "say hello there" }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.contains("standin: console: say hello there") {
        let chunk = tokio::time::timeout_at(deadline, follow.next()).await.expect("the command in the followed log");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("open").unwrap()));
    }
    assert!(seen.contains("starting version 1.8.9"), "the tail came first: {seen}");
    // At most four followers per server; one that leaves makes room.
    let open = || async {
        let req = Request::builder()
            .uri(format!("/v1/servers/{a}/logs?lines=1&follow=true"))
            .header("authorization", format!("Bearer {OWNER}"))
            .body(HttpBody::empty())
            .unwrap();
        r.app.clone().oneshot(req).await.unwrap()
    };
    let mut more = Vec::new();
    for _ in 0..3 {
        let resp = open().await;
        assert_eq!(resp.status(), StatusCode::OK);
        more.push(resp);
    }
    assert_eq!(open().await.status(), StatusCode::TOO_MANY_REQUESTS, "a fifth follower waits");
    drop(follow);
    assert_eq!(open().await.status(), StatusCode::OK, "room again");
    drop(more);

    // b's console is RCON: the answer comes back, and the stand-in logged it.
    let (s, v) = r.call("POST", &format!("/v1/servers/{b}/console"), OWNER, Some(json!({ "command": "say hi" }))).await;
    assert_eq!((s, v["answer"].as_str()), (StatusCode::OK, Some("ran: say hi")), "{v}");
    let (s, logs) = r.call("GET", &format!("/v1/servers/{b}/logs?lines=50"), OWNER, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(logs.as_str().unwrap().contains("standin: rcon: say hi"), "{logs}");

    // Another owner's server is not found; oversized and malformed requests are refused.
    let (s, _) =
        r.call("POST", &format!("/v1/servers/{a}/console"), OTHER, Some(json!({ "command": "op mallory" }))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = r.call("GET", &format!("/v1/servers/{a}/logs"), OTHER, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = r.call("GET", &format!("/v1/servers/{a}/logs?lines=100000"), OWNER, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("too_many_lines")), "{v}");
    let (s, _) =
        r.call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": "say a\nop x" }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "one line only");
    let long = "x".repeat(300);
    let (s, _) = r.call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": long }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "at most 256 characters");

    // Five commands per ten seconds per server: the sixth waits.
    for i in 0..4 {
        let (s, v) = r
            .call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": format!("say {i}") })))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) =
        r.call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": "say too fast" }))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")), "{v}");
    r.clock.fetch_add(11 * S, Ordering::SeqCst);
    let (s, _) =
        r.call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": "say later" }))).await;
    assert_eq!(s, StatusCode::OK);

    // Every command that went through is audited, by whom; the password is nowhere stored.
    let events = store.events(0, 100_000).await.unwrap();
    let audit: Vec<&Value> = events.iter().filter(|e| e.kind == "console.command").map(|e| &e.data).collect();
    assert_eq!(audit.len(), 7, "{audit:?}");
    assert!(audit.iter().all(|d| d["by"] == format!("owner:{owner}") && d["ok"] == true));
    assert!(audit.iter().any(|d| d["command"] == "say hi"));
    let all = serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains(&password), "the RCON password is in no event");

    // The template changes only while the server is stopped; a keeps its world.
    let patch = |t: &str| Some(json!({ "template": t }));
    let (s, v) = r.call("PATCH", &format!("/v1/servers/{a}"), OWNER, patch("standin-rcon")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("server_running")), "{v}");
    r.call("POST", &format!("/v1/servers/{a}/stop"), OWNER, None).await;
    r.until(a, ServerState::Sleeping).await;
    let (s, v) = r.call("PATCH", &format!("/v1/servers/{a}"), OWNER, patch("vanilla-9")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_template")), "{v}");
    let (s, v) = r.call("PATCH", &format!("/v1/servers/{a}"), OWNER, patch("standin-rcon")).await;
    assert_eq!((s, v["template"].as_str()), (StatusCode::OK, Some("standin-rcon")), "{v}");
    r.call("POST", &format!("/v1/servers/{a}/start"), OWNER, None).await;
    r.until(a, ServerState::Running).await;
    let ia2 = podman
        .inspect_container(&container_name(a), None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap();
    assert_ne!(ia2.id, ia.id, "made anew");
    let ea2 = env_of(&ia2);
    assert!(ea2.iter().any(|e| e == "MEMORY=512M") && ea2.iter().any(|e| e.starts_with("RCON_PASSWORD=")), "{ea2:?}");
    let (_, logs) = r.call("GET", &format!("/v1/servers/{a}/logs?lines=20"), OWNER, None).await;
    assert!(logs.as_str().unwrap().contains("world saves=1"), "the world came along: {logs}");
    let (s, v) =
        r.call("POST", &format!("/v1/servers/{a}/console"), OWNER, Some(json!({ "command": "say via rcon" }))).await;
    assert_eq!((s, v["answer"].as_str()), (StatusCode::OK, Some("ran: say via rcon")), "{v}");
    let changed = store.events(0, 100_000).await.unwrap().into_iter().find(|e| e.kind == "server.template-changed");
    assert_eq!(
        changed.expect("server.template-changed").data,
        json!({ "from": "standin-stdin", "to": "standin-rcon" })
    );

    // Its stop sends the template's stop command first: the server saves and exits by itself.
    r.call("POST", &format!("/v1/servers/{a}/stop"), OWNER, None).await;
    r.until(a, ServerState::Sleeping).await;
    let (_, logs) = r.call("GET", &format!("/v1/servers/{a}/logs?lines=20"), OWNER, None).await;
    let logs = logs.as_str().unwrap().to_owned();
    assert!(logs.contains("standin: rcon: stop") && logs.contains("saved the world (saves=2)"), "{logs}");

    // The template's ready check: a server that does not answer within its 5 s is given up
    // (the controller's own start_timeout_s is 300 s).
    let (_, c) = r.call("POST", "/v1/servers", OWNER, Some(create("c", 1024, "standin-slow"))).await;
    let c = c["id"].as_i64().unwrap();
    r.call("POST", &format!("/v1/servers/{c}/start"), OWNER, None).await;
    let failed = |events: &[conductor_controller::store::Event]| {
        events.iter().any(|e| e.kind == "server.start-failed" && e.server == Some(c))
    };
    let mut waited = 0;
    while !failed(&store.events(0, 100_000).await.unwrap()) {
        assert!(waited < 30, "the slow start was not given up within 30 s");
        r.ticks(1).await;
        waited += 1;
    }
    assert!(waited >= 4, "not before its 5 s: given up after {waited} s");

    drop(r);
    for id in [a, b, c] {
        docker.remove(id, true).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&archive_dir);
}
