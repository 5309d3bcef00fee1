//! Services for the controller's tests: a fresh PostgreSQL database, the Podman engine.
#![allow(dead_code)]

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
