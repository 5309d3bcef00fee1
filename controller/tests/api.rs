//! The HTTP API against the in-memory store, request by request (tower `oneshot`): owners
//! see only their own servers, bad input gets a clear 4xx with a stable code and changes
//! nothing.

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use conductor_controller::api::{router, Api, ApiConfig};
use conductor_controller::store::{token_hash, Store};
use conductor_controller::MemoryStore;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret";

fn api() -> (axum::Router, Arc<Api<MemoryStore>>) {
    let api = Arc::new(Api {
        store: Arc::new(MemoryStore::new()),
        live: None,
        routes: Default::default(),
        config: ApiConfig {
            admin_token_sha256: token_hash(ADMIN),
            max_plan_mib: 60 * 1024,
            now: Box::new(|| 1_760_000_000_000),
            prices: Default::default(),
            stripe_secret: Some(STRIPE.into()),
            warn_before: 86_400_000,
        },
    });
    (router(api.clone()), api)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(HttpBody::from(b.to_owned())),
        None => req.body(HttpBody::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn owner(app: &axum::Router, name: &str) -> (i64, String) {
    let (s, v) = call(app, "POST", "/v1/owners", Some(ADMIN), Some(&json!({ "name": name }).to_string())).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (v["id"].as_i64().unwrap(), v["token"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "current_thread")]
async fn owners_see_and_act_on_their_own_servers_only() {
    let (app, _) = api();
    let (alice, ta) = owner(&app, "alice").await;
    let (_bob, tb) = owner(&app, "bob").await;
    assert!(ta.starts_with("cdt_") && ta != tb);
    let (s, v) =
        call(&app, "POST", "/v1/servers", Some(&ta), Some(r#"{"name":"survival","ram_mib":4096,"disk_mb":5000}"#))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!((v["owner"].as_i64(), v["state"].as_str()), (Some(alice), Some("new")));
    let id = v["id"].as_i64().unwrap();
    // Alice sees it; Bob neither lists nor reads it (404, not 403: ids leak nothing).
    assert_eq!(call(&app, "GET", "/v1/servers", Some(&ta), None).await.1.as_array().unwrap().len(), 1);
    assert_eq!(call(&app, "GET", "/v1/servers", Some(&tb), None).await.1, json!([]));
    let (s, v) = call(&app, "GET", &format!("/v1/servers/{id}"), Some(&tb), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    assert_eq!(call(&app, "GET", &format!("/v1/servers/{id}"), Some(&ta), None).await.0, StatusCode::OK);
    // Bob cannot create a server in Alice's name; the admin sees everything.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/servers",
        Some(&tb),
        Some(&format!(r#"{{"name":"x","ram_mib":1024,"owner":{alice}}}"#)),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert_eq!(call(&app, "GET", "/v1/servers", Some(ADMIN), None).await.1.as_array().unwrap().len(), 1);
    // Owners cannot create owners.
    assert_eq!(call(&app, "POST", "/v1/owners", Some(&ta), Some(r#"{"name":"eve"}"#)).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "current_thread")]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let (app, api) = api();
    let (_, ta) = owner(&app, "alice").await;
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, StatusCode, &'a str);
    let cases: [Case; 11] = [
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a","ram_mib":4096"#),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a","ram_mib":4096,"colour":"red"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a","ram_mib":"lots"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a","ram_mib":1048576}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "impossible_plan",
        ),
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a","ram_mib":1000}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a b/c","ram_mib":1024}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/servers",
            Some(&ta),
            Some(r#"{"name":"a","ram_mib":1024,"cost_mode":"always"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        ("POST", "/v1/servers", None, Some(r#"{"name":"a","ram_mib":1024}"#), StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            "POST",
            "/v1/servers",
            Some("wrong-token"),
            Some(r#"{"name":"a","ram_mib":1024}"#),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        ("GET", "/v1/servers/999", Some(&ta), None, StatusCode::NOT_FOUND, "not_found"),
        ("GET", "/v1/nothing-here", Some(&ta), None, StatusCode::NOT_FOUND, "not_found"),
    ];
    for (method, path, token, body, status, code) in cases {
        let (s, v) = call(&app, method, path, token, body).await;
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{method} {path} {body:?}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(api.store.servers(None).await.unwrap().is_empty(), "no bad request created anything");
    // A duplicate name is a conflict, and the first server is unchanged.
    let ok = r#"{"name":"a","ram_mib":1024}"#;
    assert_eq!(call(&app, "POST", "/v1/servers", Some(&ta), Some(ok)).await.0, StatusCode::CREATED);
    let (s, v) = call(&app, "POST", "/v1/servers", Some(&ta), Some(r#"{"name":"a","ram_mib":2048}"#)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    assert_eq!(api.store.servers(None).await.unwrap()[0].ram_mib, 1024);
    // Plan changes: checked before anything else (no engine here: a good one is 503).
    let id = api.store.servers(None).await.unwrap()[0].id;
    let path = format!("/v1/servers/{id}");
    for (body, status, code) in [
        (r#"{"ram_mib":1000}"#, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (r#"{"ram_mib":0}"#, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (r#"{"ram_mib":1048576}"#, StatusCode::UNPROCESSABLE_ENTITY, "impossible_plan"),
        (r#"{}"#, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (r#"{"ram_mib":2048,"disk":1}"#, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (r#"{"ram_mib":2048}"#, StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (r#"{"pay_per_use":"yes"}"#, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (r#"{"pay_per_use":true}"#, StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    ] {
        let (s, v) = call(&app, "PATCH", &path, Some(&ta), Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{body}: {v}");
    }
    assert_eq!(api.store.servers(None).await.unwrap()[0].ram_mib, 1024, "unchanged");
    // Health needs no token.
    assert_eq!(call(&app, "GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/readyz", None, None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn deletes_forecasts_admin_views_and_the_openapi_document() {
    let (app, api) = api();
    let (_, ta) = owner(&app, "alice").await;
    let (_, tb) = owner(&app, "bob").await;
    let (_, v) = call(&app, "POST", "/v1/servers", Some(&ta), Some(r#"{"name":"x","ram_mib":1024}"#)).await;
    let id = v["id"].as_i64().unwrap();
    // Bob cannot delete Alice's server; Alice can; then it is gone.
    assert_eq!(call(&app, "DELETE", &format!("/v1/servers/{id}"), Some(&tb), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, "DELETE", &format!("/v1/servers/{id}"), Some(&ta), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, "GET", &format!("/v1/servers/{id}"), Some(&ta), None).await.0, StatusCode::NOT_FOUND);
    // Without an engine, starting says so (and changes nothing).
    let (_, v) = call(&app, "POST", "/v1/servers", Some(&ta), Some(r#"{"name":"y","ram_mib":1024}"#)).await;
    let (s, v2) = call(&app, "POST", &format!("/v1/servers/{}/start", v["id"]), Some(&ta), None).await;
    assert_eq!((s, v2["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
    // Forecasts: only well-formed documents, only by the admin.
    let (s, v) = call(&app, "PUT", "/v1/forecast", Some(ADMIN), Some(r#"{"schema":"other/9"}"#)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")));
    assert_eq!(call(&app, "PUT", "/v1/forecast", Some(&ta), Some("{}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "GET", "/v1/forecast", Some(ADMIN), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.store.latest_forecast().await.unwrap(), None, "nothing stored from bad uploads");
    // Admin views are admin-only.
    assert_eq!(call(&app, "GET", "/v1/policies", Some(&ta), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "GET", "/v1/policies", Some(ADMIN), None).await.0, StatusCode::SERVICE_UNAVAILABLE);
    for path in ["/v1/fleet", "/v1/scaling", "/v1/events"] {
        assert_eq!(call(&app, "GET", path, Some(&ta), None).await.0, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(call(&app, "GET", path, Some(ADMIN), None).await.0, StatusCode::OK, "{path}");
    }
    let (s, metrics) = call(&app, "GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(metrics.as_str().unwrap().contains("conductor_servers{state=\"new\"} 1"), "{metrics}");
    // The OpenAPI document names every route the router serves.
    let (_, doc) = call(&app, "GET", "/v1/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/owners",
        "/v1/servers",
        "/v1/servers/{id}",
        "/v1/servers/{id}/start",
        "/v1/servers/{id}/stop",
        "/v1/servers/{id}/restart",
        "/v1/wake/{id}",
        "/v1/routes",
        "/v1/servers/{id}/hosts",
        "/v1/servers/{id}/backups",
        "/v1/fleet",
        "/v1/scaling",
        "/v1/scaling/mode",
        "/v1/policies",
        "/v1/policies/{index}",
        "/v1/recommendations",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/recommendations/{id}/accept",
        "/v1/forecast",
        "/v1/events",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
        let concrete = p.replace("{id}", "1").replace("{index}", "0");
        let (s, _) = call(&app, "OPTIONS", &concrete, Some(ADMIN), None).await;
        assert_ne!(s, StatusCode::NOT_FOUND, "{p} is not routed");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_price_calculator_quotes_exactly_and_rejects_bad_input() {
    let (app, _) = api();
    // Public: no token. 4 GiB, 10 GB, 10 h a week, against 12.99 EUR a month.
    let (s, v) =
        call(&app, "GET", "/v1/price?ram_mib=4096&disk_gb=10&hours_per_week=10&competitor_eur=12.99", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["per_minute_active"], "0.001333");
    assert_eq!(v["per_day_sleeping"], "0.033333");
    assert_eq!(v["month_total"], "4.369047");
    assert_eq!(v["month_total_cents"], "4.37");
    assert_eq!(v["saving_month"], "8.620953");
    assert_eq!(v["saving_percent"], "66.4");
    for bad in [
        "/v1/price?ram_mib=0&hours_per_week=1",
        "/v1/price?ram_mib=4096&hours_per_week=200",
        "/v1/price?ram_mib=4096&hours_per_week=1&disk_gb=-1",
        "/v1/price?ram_mib=4096&hours_per_week=1&competitor_eur=cheap",
        "/v1/price?ram_mib=4096",
        "/v1/price?ram_mib=4096&hours_per_week=1&colour=red",
    ] {
        let (s, v) = call(&app, "GET", bad, None, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{bad}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sign_up_credit_top_ups_and_accounts() {
    let (app, api) = api();
    let (alice, alice_token) = owner(&app, "alice").await;
    let (bob, bob_token) = owner(&app, "bob").await;
    let account = |id: i64, token: String| {
        let app = app.clone();
        async move { call(&app, "GET", &format!("/v1/owners/{id}/account"), Some(&token), None).await }
    };
    let (s, v) = account(alice, alice_token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["balance"], "5.000000", "the sign-up credit");
    assert_eq!(v["entries"][0]["kind"], "grant");

    let topup = |id: i64, body: &str, token: &str| {
        let (app, body, token) = (app.clone(), body.to_owned(), token.to_owned());
        async move { call(&app, "POST", &format!("/v1/owners/{id}/topups"), Some(&token), Some(&body)).await }
    };
    let (s, v) = topup(alice, r#"{"amount": "10.50", "reference": "pay-1"}"#, ADMIN).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["balance"], "15.500000");
    // A replayed payment: 200, nothing booked.
    let (s, v) = topup(alice, r#"{"amount": "10.50", "reference": "pay-1"}"#, ADMIN).await;
    assert_eq!((s, v["replayed"].clone(), v["balance"].clone()), (StatusCode::OK, json!(true), json!("15.500000")));
    // An exact JSON number works too.
    let (s, v) = topup(alice, r#"{"amount": 0.1, "reference": "pay-2"}"#, ADMIN).await;
    assert_eq!((s, v["balance"].clone()), (StatusCode::CREATED, json!("15.600000")));

    // Bad top-ups change nothing.
    for (body, id, token, status) in [
        (r#"{"amount": "-5", "reference": "x1"}"#, alice, ADMIN, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": "0", "reference": "x2"}"#, alice, ADMIN, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": "1.0000001", "reference": "x3"}"#, alice, ADMIN, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": true, "reference": "x4"}"#, alice, ADMIN, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": "5", "reference": ""}"#, alice, ADMIN, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": "5", "reference": "x5", "currency": "USD"}"#, alice, ADMIN, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": "5", "reference": "x6"}"#, 9999, ADMIN, StatusCode::NOT_FOUND),
        (r#"{"amount": "5", "reference": "x7"}"#, alice, alice_token.as_str(), StatusCode::FORBIDDEN),
        (r#"{"amount": "20", "reference": "pay-1"}"#, alice, ADMIN, StatusCode::CONFLICT),
    ] {
        let (s, v) = topup(id, body, token).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    assert_eq!(api.store.balance(alice).await.unwrap().to_string(), "15.600000");
    assert_eq!(api.store.ledger(alice, 0, 100).await.unwrap().len(), 3);
    // Owners see their own account only; others' do not exist for them.
    let (s, _) = account(alice, bob_token.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = account(bob, bob_token).await;
    assert_eq!((s, v["balance"].clone()), (StatusCode::OK, json!("5.000000")));
}

#[tokio::test(flavor = "current_thread")]
async fn monthly_statements_and_what_a_server_costs_now() {
    use conductor_controller::billing::{post_charges, Phase, WindowUsage};
    let (app, api) = api();
    let (alice, token) = owner(&app, "alice").await; // 5 EUR sign-up credit on 2025-10-09
    let (_, other) = owner(&app, "bob").await;
    let (s, v) =
        call(&app, "POST", "/v1/servers", Some(&token), Some(r#"{"name":"mc","ram_mib":2048,"disk_mb":5000}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let server = v["id"].as_i64().unwrap();
    let (_, v) = call(&app, "GET", &format!("/v1/servers/{server}"), Some(&token), None).await;
    assert_eq!(v["billing"]["rate_per_minute"], "0", "a new server costs nothing");

    // Two hours running (in 1 h windows), then a day asleep, all in October 2025.
    let t = 1_760_000_000_000;
    let hour = 3_600_000i64;
    let window = |k: i64, phase, before: u128, during: u128| WindowUsage {
        owner: alice,
        server,
        phase,
        window_start: t + k * hour,
        before,
        during,
    };
    let active = 2048u128 * hour as u128;
    let asleep = 5000u128 * 24 * hour as u128;
    let usage = [
        window(0, Phase::Active, 0, active),
        window(1, Phase::Active, active, active),
        window(2, Phase::Sleeping, 0, asleep),
    ];
    post_charges(&*api.store, &usage, &Default::default(), t + 30 * hour).await.unwrap();
    call(
        &app,
        "POST",
        &format!("/v1/owners/{alice}/topups"),
        Some(ADMIN),
        Some(r#"{"amount":"20","reference":"oct"}"#),
    )
    .await;

    let (s, v) = call(&app, "GET", &format!("/v1/owners/{alice}/statement?month=2025-10"), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["opening"], "0");
    assert_eq!(v["credits"].as_array().unwrap().len(), 2);
    // 4 GiB-h × 0.02 = 0.08; 5 GB for a day = 5/30 GB-month × 0.10 = 0.016667.
    assert_eq!(v["usage"][0]["phase"], "active");
    assert_eq!(
        (v["usage"][0]["quantity"].clone(), v["usage"][0]["amount"].clone()),
        (json!("4.000000"), json!("0.080000"))
    );
    assert_eq!(
        (v["usage"][1]["quantity"].clone(), v["usage"][1]["amount"].clone()),
        (json!("0.166667"), json!("0.016667"))
    );
    assert_eq!((v["charged"].clone(), v["charged_cents"].clone()), (json!("0.096667"), json!("0.10")));
    assert_eq!(v["closing"], "24.903333");
    assert_eq!(api.store.balance(alice).await.unwrap().to_string(), "24.903333");
    // November opens where October closed, with no usage.
    let (_, nov) = call(&app, "GET", &format!("/v1/owners/{alice}/statement?month=2025-11"), Some(ADMIN), None).await;
    assert_eq!((nov["opening"].clone(), nov["usage"].clone()), (json!("24.903333"), json!([])));

    // Readable pages.
    let md =
        call(&app, "GET", &format!("/v1/owners/{alice}/statement?month=2025-10&format=md"), Some(&token), None).await.1;
    let md = md.as_str().unwrap();
    assert!(
        md.contains("| mc | active | 4 GiB-h | 0.080000 |") && md.contains("Closing balance: **24.90 EUR**"),
        "{md}"
    );
    let html =
        call(&app, "GET", &format!("/v1/owners/{alice}/statement?month=2025-10&format=html"), Some(&token), None)
            .await
            .1;
    let html = html.as_str().unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<td>mc</td>") && html.contains("<h2>Usage</h2>"),
        "{html}"
    );
    // Bad requests and other owners.
    for bad in ["month=2025-13", "month=october", "format=pdf", "colour=red"] {
        let (s, v) = call(&app, "GET", &format!("/v1/owners/{alice}/statement?{bad}"), Some(&token), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (s, _) = call(&app, "GET", &format!("/v1/owners/{alice}/statement"), Some(&other), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Running, 2 GiB costs 0.02 × 2 / 60 = 0.000667 EUR a minute; asleep, 5 GB 0.000012.
    use conductor_controller::store::{NewNode, NodeState, ServerState};
    let node = NewNode {
        name: "ded-1".into(),
        kind: conductor_core::NodeKind::Dedicated,
        type_name: "AX41".into(),
        provider_id: None,
        state: NodeState::Ready,
        ram_mib: 65536,
        usable_mib: 63236,
    };
    let node = api.store.upsert_node(node, t).await.unwrap().id;
    for (state, rate) in [(ServerState::Running, "0.000667"), (ServerState::Sleeping, "0.000012")] {
        api.store.set_server_state(server, state, Some(node), t).await.unwrap();
        let (_, v) = call(&app, "GET", &format!("/v1/servers/{server}"), Some(&token), None).await;
        assert_eq!(v["billing"]["rate_per_minute"], rate, "{state:?}");
    }
    // The account's status: 24.90 EUR at 0.04 EUR/h lasts long; a costly plan does not.
    api.store.set_server_state(server, ServerState::Running, Some(node), t).await.unwrap();
    let (_, v) = call(&app, "GET", &format!("/v1/owners/{alice}/account"), Some(&token), None).await;
    assert_eq!((v["burn_per_hour"].clone(), v["status"]["state"].clone()), (json!("0.040000"), json!("fine")));
    let (_, v) = call(&app, "POST", "/v1/servers", Some(&token), Some(r#"{"name":"big","ram_mib":61440}"#)).await;
    let big = v["id"].as_i64().unwrap();
    api.store.set_server_state(big, ServerState::Running, Some(node), t).await.unwrap();
    // 60 GiB + 2 GiB at 0.02 = 1.24 EUR/h: 24.903333 EUR last 1204.99… min < 24 h.
    let (_, v) = call(&app, "GET", &format!("/v1/owners/{alice}/account"), Some(&token), None).await;
    assert_eq!(v["status"], json!({ "state": "low", "lasts_minutes": 1204 }));
}

const STRIPE: &str = "whsec_test_secret";

/// A Stripe-style signed request: `t=<s>,v1=HMAC-SHA256(secret, "t.body")`.
fn signed(secret: &str, t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

async fn webhook(app: &axum::Router, signature: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/webhooks/stripe")
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(HttpBody::from(body.to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn a_signed_checkout_tops_up_once_and_forgeries_change_nothing() {
    let (app, api) = api();
    let (alice, _) = owner(&app, "alice").await;
    let now_s = 1_760_000_000;
    let paid = |session: &str, cents: i64, owner: i64| {
        json!({
            "id": format!("evt_{session}"),
            "type": "checkout.session.completed",
            "data": { "object": { "id": session, "amount_total": cents, "currency": "eur",
                                  "payment_status": "paid", "client_reference_id": owner.to_string() } }
        })
        .to_string()
    };
    let body = paid("cs_1", 1250, alice);
    let (s, v) = webhook(&app, &signed(STRIPE, now_s, &body), &body).await;
    assert_eq!((s, v["balance"].clone()), (StatusCode::CREATED, json!("17.500000")), "{v}");
    // Stripe retries: the same session again books nothing.
    let (s, v) = webhook(&app, &signed(STRIPE, now_s + 60, &body), &body).await;
    assert_eq!((s, v["replayed"].clone()), (StatusCode::OK, json!(true)));
    // Other events are acknowledged and ignored.
    let other = json!({ "id": "evt_x", "type": "invoice.created", "data": { "object": {} } }).to_string();
    let (s, v) = webhook(&app, &signed(STRIPE, now_s, &other), &other).await;
    assert_eq!((s, v["ignored"].clone()), (StatusCode::OK, json!("invoice.created")));

    let forged = paid("cs_2", 100_000, alice);
    let cases = [
        (signed("not-the-secret", now_s, &forged), forged.clone(), StatusCode::BAD_REQUEST),
        (signed(STRIPE, now_s, &body), forged.clone(), StatusCode::BAD_REQUEST), // signature of another body
        (signed(STRIPE, now_s - 3600, &forged), forged.clone(), StatusCode::BAD_REQUEST), // too old: a replay
        (String::new(), forged.clone(), StatusCode::BAD_REQUEST),
        (signed(STRIPE, now_s, "{oops"), "{oops".to_owned(), StatusCode::BAD_REQUEST),
        {
            let usd = forged.replace("\"eur\"", "\"usd\"");
            (signed(STRIPE, now_s, &usd), usd, StatusCode::UNPROCESSABLE_ENTITY)
        },
        {
            let nobody = paid("cs_3", 500, 9999);
            (signed(STRIPE, now_s, &nobody), nobody, StatusCode::NOT_FOUND)
        },
    ];
    for (signature, body, status) in cases {
        let (s, v) = webhook(&app, &signature, &body).await;
        assert_eq!(s, status, "{signature} {body}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    assert_eq!(api.store.balance(alice).await.unwrap().to_string(), "17.500000", "nothing booked by forgeries");
    assert_eq!(api.store.ledger(alice, 0, 100).await.unwrap().len(), 2);
}
