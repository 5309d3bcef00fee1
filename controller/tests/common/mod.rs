//! Services for the controller's tests: a fresh PostgreSQL database, the Podman engine.
#![allow(dead_code)]

pub mod fakes;
pub mod rig;
pub mod tls;

use conductor_controller::docker::DockerNode;
use conductor_controller::PgStore;

/// `CONDUCTOR_REQUIRE_SERVICES` (set by .ci/run) turns a missing service into a failure.
fn missing(var: &str, how: &str) {
    if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() {
        panic!("{var} is not set but services are required");
    }
    eprintln!("skipping: set {var} ({how})");
}

/// A fresh database on the test server (`CONDUCTOR_TEST_PG`, an admin URL ending in a
/// database name), or `None` outside CI when none is configured.
pub async fn fresh_pg(name: &str) -> Option<PgStore> {
    let Ok(admin) = std::env::var("CONDUCTOR_TEST_PG") else {
        missing("CONDUCTOR_TEST_PG", "bash .ci/postgres.sh prints it");
        return None;
    };
    use sqlx::Connection;
    let db = format!("conductor_test_{}_{name}", std::process::id());
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to CONDUCTOR_TEST_PG");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db}")).execute(&mut c).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut c).await.unwrap();
    let i = admin.rfind('/').expect("CONDUCTOR_TEST_PG must end in /DATABASE");
    Some(PgStore::connect(&format!("{}/{db}", &admin[..i])).await.expect("connect and migrate"))
}

/// The Podman engine (`CONDUCTOR_TEST_DOCKER`), or `None` outside CI when not configured.
pub fn docker() -> Option<DockerNode> {
    let Ok(endpoint) = std::env::var("CONDUCTOR_TEST_DOCKER") else {
        missing("CONDUCTOR_TEST_DOCKER", "bash .ci/podman.sh prints it");
        return None;
    };
    Some(DockerNode::connect(&endpoint, "127.0.0.1").expect("a Docker endpoint"))
}

pub const IMAGE: &str = "localhost/conductor-standin:test";

/// A generated dataset in `dir/data` and a twin scenario for it (as TOML text): one AX41,
/// cpx32 VMs (at most 20), the reference policy and a 6 h sleep window, so that worlds are
/// archived within a short run. The parity tests compare the controller with the twin on it.
pub fn twin_fixture(
    dir: &std::path::Path,
    name: &str,
    gen: &conductor_sim::generate::GenConfig,
) -> (std::path::PathBuf, String) {
    use conductor_sim::generate;
    let data = dir.join("data");
    generate::write(&data, gen, &generate::generate(gen), "controller test").unwrap();
    let text = format!(
        r#"name = "{name}"
seed = {seed}
dataset = "{data}"
catalogue = "{root}/../scenarios/catalogue.toml"

[[fleet.dedicated]]
type = "AX41"
count = 1

[fleet.cloud]
type = "cpx32"
max_vms = 20

[lifecycle]
sleep_window_h = 6

[policy]
kind = "reference"
"#,
        seed = gen.seed,
        data = data.display(),
        root = env!("CARGO_MANIFEST_DIR")
    );
    (data, text)
}

/// One request to the API router with a bearer token and an optional JSON body: the status
/// and the body as JSON (or as a JSON string when it is text).
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    let body = body.map_or_else(axum::body::Body::empty, |b| axum::body::Body::from(b.to_string()));
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}
