//! The gateways' API on the real engine (in-memory store, fake node, virtual clock): the
//! route feed (snapshot, changes within an epoch, long polls woken by a change), stable game
//! ports, wakes of pay-per-use servers only, custom host names, and the players gateways
//! report keeping a pay-per-use server from its idle stop.

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use conductor_controller::api::{router, Api, ApiConfig};
use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::fake::{Clock, FakeNode, Faults, MemArchive};
use conductor_controller::live::{DedicatedNode, GameAccess, Live, LiveConfig, Mode};
use conductor_controller::store::token_hash;
use conductor_controller::MemoryStore;
use conductor_core::{Millis, SchedulerConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-token";
const T0: Millis = 1_760_000_000_000;

struct World {
    app: axum::Router,
    api: Arc<Api<MemoryStore>>,
    clock: Arc<Clock>,
    node: Arc<FakeNode>,
}

fn world() -> World {
    let clock = Clock::new(T0);
    let node = FakeNode::new("ded-0", clock.clone(), Faults::none(), 0);
    let kind = conductor_controller::fake::ax41();
    let vm = conductor_controller::fake::cx23();
    let store = Arc::new(MemoryStore::new());
    let cfg = LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: GameAccess { port_base: Some(20_000), boot: 40_000, restore_mb_per_s: 100 },
        scheduler: SchedulerConfig::reference(vm, 0),
        dedicated: vec![DedicatedNode { name: "ded-0".into(), kind, docker: node.clone() as Arc<dyn NodeDriver> }],
        cloud: None,
        idle_timeout: 300_000,
        stop_timeout: Duration::from_secs(1),
        image: "standin".into(),
        cmd: None,
        helper: Helper { image: "standin".into(), cmd: vec![] },
        archive: Arc::new(MemArchive::memory()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Default::default(),
    };
    let rt_live = futures_block(Live::start(store.clone(), cfg, T0)).unwrap();
    let c2 = clock.clone();
    let api = Arc::new(Api {
        store,
        config: ApiConfig {
            admin_token_sha256: token_hash(ADMIN),
            max_plan_mib: 60 * 1024,
            now: Box::new(move || c2.now()),
            prices: Default::default(),
            stripe_secret: None,
            warn_before: 86_400_000,
        },
        live: Some(Arc::new(tokio::sync::Mutex::new(rt_live))),
        routes: Default::default(),
    });
    World { app: router(api.clone()), api, clock, node }
}

/// `Live::start` on the in-memory store completes without waiting on anything.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the in-memory start waited"),
    }
}

async fn call(app: &axum::Router, method: &str, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {token}"));
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(HttpBody::from(b.to_string())),
        None => req.body(HttpBody::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

impl World {
    async fn step(&self, dt: Millis) {
        let now = self.clock.now() + dt;
        self.clock.set(now);
        let live = self.api.live.as_ref().unwrap();
        conductor_controller::serve::step(live, now).await.unwrap();
        self.api.routes.refresh(&self.api).await.unwrap();
    }

    async fn route(&self, id: i64) -> Value {
        let (s, v) = call(&self.app, "GET", "/v1/routes", ADMIN, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["routes"].as_array().unwrap().iter().find(|r| r["server"] == id).cloned().unwrap_or(Value::Null)
    }

    async fn server(&self, token: &str, name: &str, ppu: bool) -> i64 {
        let body = json!({ "name": name, "ram_mib": 1024, "disk_mb": 2000, "pay_per_use": ppu });
        let (s, v) = call(&self.app, "POST", "/v1/servers", token, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
}

async fn owner(w: &World, name: &str) -> String {
    let (s, v) = call(&w.app, "POST", "/v1/owners", ADMIN, Some(json!({ "name": name }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, _) = call(
        &w.app,
        "POST",
        &format!("/v1/owners/{id}/topups"),
        ADMIN,
        Some(json!({ "amount": "50", "reference": format!("pay-{name}") })),
    )
    .await;
    assert!(s.is_success(), "top-up: {s}");
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn routes_follow_the_engine_with_stable_ports_and_a_versioned_feed() {
    let w = world();
    let alice = owner(&w, "alice").await;
    let lobby = w.server(&alice, "lobby", true).await;
    let r = w.route(lobby).await;
    assert_eq!((r["state"].as_str(), r["owner"].as_str(), r["eta_s"].as_u64()), (Some("new"), Some("alice"), Some(40)));
    assert_eq!(r["backend"], Value::Null);

    // A snapshot, then nothing new within an epoch: the long poll waits, then answers empty.
    let (_, snap) = call(&w.app, "GET", "/v1/routes", ADMIN, None).await;
    assert_eq!(snap["full"], true);
    let (epoch, version) = (snap["epoch"].as_str().unwrap().to_owned(), snap["version"].as_u64().unwrap());
    let since = format!("/v1/routes?since={version}&epoch={epoch}&wait_s=1");
    let t = std::time::Instant::now();
    let (_, v) = call(&w.app, "GET", &since, ADMIN, None).await;
    assert!(t.elapsed() >= Duration::from_millis(900), "waited for a change");
    assert_eq!((v["full"].as_bool(), v["routes"].as_array().unwrap().len()), (Some(false), 0));

    // A start wakes a waiting poll at once with the server's change only.
    let other = w.server(&alice, "other", true).await;
    let (_, snap) = call(&w.app, "GET", "/v1/routes", ADMIN, None).await;
    let version = snap["version"].as_u64().unwrap();
    let poll = {
        let app = w.app.clone();
        let path = format!("/v1/routes?since={version}&epoch={epoch}&wait_s=20");
        tokio::spawn(async move { call(&app, "GET", &path, ADMIN, None).await })
    };
    tokio::task::yield_now().await;
    let t = std::time::Instant::now();
    let (s, _) = call(&w.app, "POST", &format!("/v1/servers/{lobby}/start"), &alice, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, v) = poll.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "woken by the change");
    let changed: Vec<i64> = v["routes"].as_array().unwrap().iter().map(|r| r["server"].as_i64().unwrap()).collect();
    assert_eq!(changed, vec![lobby], "only what changed, not {other}");
    assert_eq!(v["routes"][0]["state"], "starting");

    // Running: its backend is the node's game address and the stable port base + id.
    for _ in 0..3 {
        w.step(5_000).await;
    }
    let r = w.route(lobby).await;
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["backend"], format!("ded-0:{}", 20_000 + lobby));
    // Stopped: sleeping, no backend.
    call(&w.app, "POST", &format!("/v1/servers/{lobby}/stop"), &alice, None).await;
    w.step(5_000).await;
    let r = w.route(lobby).await;
    assert_eq!((r["state"].as_str(), &r["backend"]), (Some("sleeping"), &Value::Null));
    // Another epoch (a restarted controller) gets a snapshot.
    let (_, v) = call(&w.app, "GET", "/v1/routes?since=1&epoch=other", ADMIN, None).await;
    assert_eq!(v["full"], true);
    // Deleted: listed as removed to a gateway that follows.
    let version = v["version"].as_u64().unwrap();
    assert_eq!(call(&w.app, "DELETE", &format!("/v1/servers/{other}"), &alice, None).await.0, StatusCode::NO_CONTENT);
    let (_, v) = call(&w.app, "GET", &format!("/v1/routes?since={version}&epoch={epoch}"), ADMIN, None).await;
    assert_eq!(v["removed"], json!([other]));
    // Owners do not read the route table.
    assert_eq!(call(&w.app, "GET", "/v1/routes", &alice, None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "current_thread")]
async fn wakes_start_pay_per_use_servers_only_and_host_names_are_unique_and_valid() {
    let w = world();
    let alice = owner(&w, "alice").await;
    let bob = owner(&w, "bob").await;
    let ppu = w.server(&alice, "lobby", true).await;
    let fixed = w.server(&alice, "fixed", false).await;
    let bobs = w.server(&bob, "bobs", true).await;
    let (s, v) = call(&w.app, "POST", &format!("/v1/wake/{fixed}"), ADMIN, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_pay_per_use")));
    assert_eq!(w.route(fixed).await["state"], "new", "not started");
    assert_eq!(call(&w.app, "POST", &format!("/v1/wake/{ppu}"), &alice, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&w.app, "POST", &format!("/v1/wake/{ppu}"), ADMIN, None).await.0, StatusCode::ACCEPTED);
    // Twice is fine (several players joining): one start.
    assert_eq!(call(&w.app, "POST", &format!("/v1/wake/{ppu}"), ADMIN, None).await.0, StatusCode::ACCEPTED);
    w.step(5_000).await;
    assert_eq!(w.node.runs().get(&ppu).map(Vec::len), Some(1), "started once");

    let put = |id: i64, host: &str| format!("/v1/servers/{id}/hosts/{host}");
    let (s, v) = call(&w.app, "PUT", &put(ppu, "MC.Alice.DE"), &alice, None).await;
    assert_eq!((s, v["host"].as_str()), (StatusCode::OK, Some("mc.alice.de")));
    assert_eq!(w.route(ppu).await["hosts"], json!(["mc.alice.de"]));
    let (s, v) = call(&w.app, "PUT", &put(bobs, "mc.alice.de"), &bob, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = call(&w.app, "PUT", &put(ppu, "not_a_host"), &alice, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("not a host name"), "{v}");
    assert_eq!(call(&w.app, "PUT", &put(ppu, "x.example.org"), &bob, None).await.0, StatusCode::NOT_FOUND);
    let (_, v) = call(&w.app, "GET", &format!("/v1/servers/{ppu}/hosts"), &alice, None).await;
    assert_eq!(v["hosts"], json!(["mc.alice.de"]));
    assert_eq!(call(&w.app, "DELETE", &put(ppu, "mc.alice.de"), &alice, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&w.app, "DELETE", &put(ppu, "mc.alice.de"), &alice, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.route(ppu).await["hosts"], json!([]));
}

#[tokio::test(flavor = "current_thread")]
async fn players_reported_by_gateways_keep_a_server_from_its_idle_stop() {
    let w = world();
    let alice = owner(&w, "alice").await;
    let id = w.server(&alice, "lobby", true).await;
    call(&w.app, "POST", &format!("/v1/servers/{id}/start"), &alice, None).await;
    for _ in 0..3 {
        w.step(5_000).await;
    }
    assert_eq!(w.route(id).await["state"], "running");
    // Its status ping says 0 players (a ping can lag), the gateways say 1 + 1.
    let report = |n: u32| json!({ "players": { id.to_string(): n }, "ttl_s": 60 });
    for gw in ["gw-a", "gw-b"] {
        let (s, v) = call(&w.app, "PUT", &format!("/v1/gateways/{gw}/players"), ADMIN, Some(report(1))).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    }
    let (s, _) = call(&w.app, "PUT", "/v1/gateways/gw-a/players", &alice, Some(report(1))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&w.app, "PUT", "/v1/gateways/gw-a/players", ADMIN, Some(json!({ "players": { "x": 1 } }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Six minutes (past the 5-minute idle rule), the reports renewed every 30 s: it runs on.
    for i in 0..72 {
        if i % 6 == 0 {
            for gw in ["gw-a", "gw-b"] {
                call(&w.app, "PUT", &format!("/v1/gateways/{gw}/players"), ADMIN, Some(report(1))).await;
            }
        }
        w.step(5_000).await;
    }
    assert_eq!(w.route(id).await["state"], "running", "players through the gateways are players");
    // The gateways stop reporting (gone, or the players left): the reports expire after their
    // ttl and the idle rule stops it 5 minutes later.
    for _ in 0..(60 + 300 + 30) / 5 {
        w.step(5_000).await;
    }
    assert_eq!(w.route(id).await["state"], "sleeping");
}
