//! Chaos against the real services: `conductor serve` (the release of this commit, as a
//! process) on PostgreSQL and Podman, with `conductor fake-hetzner` answering every 5th
//! request 503 and delaying every 7th (≥ 20 % of calls failing or slow), is killed with
//! SIGKILL at random moments (`CONDUCTOR_CHAOS_KILLS`, default 30) while a scripted workload
//! creates, starts, stops and deletes servers through the API and the policy scales VMs up
//! and down. Afterwards, once it has converged: no duplicate VM, no lost server, no orphan
//! container or volume, every archived world's checksum intact, no ledger key twice, and
//! every balance equals grants + top-ups − charges.
//!
//! Needs `CONDUCTOR_TEST_PG` and `CONDUCTOR_TEST_DOCKER` (`.ci/run` sets both); skipped
//! otherwise, except under `CONDUCTOR_REQUIRE_SERVICES`.

use conductor_controller::docker::DockerNode;
use conductor_controller::store::{ServerState, Store};
use conductor_controller::PgStore;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "chaos-admin-token-123";
const IMAGE: &str = "localhost/conductor-standin:test";
/// Server ids of this test start here (container names follow them).
const FIRST_ID: i64 = 5000;

/// A small deterministic generator (the workload and kill moments are seeded).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request; (status, body). Connection refused is status 0.
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    if s.read_to_string(&mut out).is_err() && out.is_empty() {
        return (0, String::new());
    }
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A child process SIGKILLed when dropped: a failing assertion must not leave a daemon
/// running against the shared engine (it would remove the next run's containers).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Killed {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(args: &[&str], log: &std::path::Path) -> Killed {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(args)
        .env("CONDUCTOR_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .map(Killed)
        .unwrap()
}

fn wait_healthy(port: u16, daemon: &mut Child, log: &std::path::Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if http(port, "GET", "/healthz", "", "").0 == 200 {
            return;
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!("the daemon exited ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the daemon did not answer:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

fn services() -> Option<(String, String)> {
    match (std::env::var("CONDUCTOR_TEST_PG"), std::env::var("CONDUCTOR_TEST_DOCKER")) {
        (Ok(pg), Ok(docker)) => Some((pg, docker)),
        _ if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() => panic!("services are required"),
        _ => {
            eprintln!(
                "skipping: set CONDUCTOR_TEST_PG and CONDUCTOR_TEST_DOCKER (bash .ci/postgres.sh, .ci/podman.sh)"
            );
            None
        }
    }
}

#[test]
fn the_daemon_killed_at_random_moments_loses_nothing_and_converges() {
    let Some((admin, docker_endpoint)) = services() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("conductor-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("daemon.log");
    // A fresh database, server ids from FIRST_ID.
    let db = format!("conductor_chaos_{}", std::process::id());
    let i = admin.rfind('/').unwrap();
    let url = format!("{}/{db}", &admin[..i]);
    let store = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}")).execute(&mut c).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut c).await.unwrap();
        let store = PgStore::connect(&url).await.unwrap();
        sqlx::query(&format!("ALTER SEQUENCE servers_id_seq RESTART WITH {FIRST_ID}"))
            .execute(store.pool())
            .await
            .unwrap();
        store
    });
    let docker = DockerNode::connect(&docker_endpoint, "127.0.0.1").unwrap();

    let cloud_port = free_port();
    let mut cloud = spawn(
        &[
            "fake-hetzner",
            "--port",
            &cloud_port.to_string(),
            "--fail-every",
            "5",
            "--slow-every",
            "7",
            "--slow-ms",
            "1500",
        ],
        &dir.join("cloud.log"),
    );
    let api = free_port();
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!(
        r#"catalogue = "{root}/scenarios/catalogue.toml"

[controller]
database = "{url}"
listen = "127.0.0.1:{api}"
admin_token_env = "CONDUCTOR_ADMIN_TOKEN"
tick_s = 1
archive_dir = "{archive}"
image = "{IMAGE}"
stop_timeout_s = 5
billing_window_s = 5
unreachable_after_s = 5
start_timeout_s = 60
crash_grace_s = 30
gc_grace_s = 10

[[controller.node]]
name = "ded-1"
docker = "{docker_endpoint}"

[controller.cloud]
token = "fake"
base_url = "http://127.0.0.1:{cloud_port}/v1"
cluster = "chaos{pid}"
image = "ubuntu-24.04"
vm_docker = "{docker_endpoint}"

[types.dedicated.tiny]
ram_gib = 2
cores = 2
disk_gb = 40
monthly_eur = 10
reserve_mib = 0

[[fleet.dedicated]]
type = "tiny"
count = 1

[fleet.cloud]
type = "cx23"
max_vms = 3

[lifecycle]
sleep_window_h = 0.01

[policy]
kind = "custom"
interval_s = 3
up = 0.5
down = 0.2
low_for_s = 20
cooldown_s = 6
"#,
        archive = dir.join("archive").display(),
        pid = std::process::id(),
    );
    let config_path = dir.join("controller.toml");
    std::fs::write(&config_path, config).unwrap();
    let serve = ["serve", "--config", config_path.to_str().unwrap()];

    let kills: u32 = std::env::var("CONDUCTOR_CHAOS_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let mut rng = Lcg(0xc4a05);
    let mut owner_token = None;
    let mut servers: BTreeSet<i64> = BTreeSet::new();
    let mut deleted: BTreeSet<i64> = BTreeSet::new();
    for round in 0..=kills {
        let mut daemon = spawn(&serve, &log);
        wait_healthy(api, &mut daemon, &log);
        if owner_token.is_none() {
            let (status, body) = http(api, "POST", "/v1/owners", ADMIN, r#"{"name":"chaos"}"#);
            assert_eq!(status, 201, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            owner_token = Some(v["token"].as_str().unwrap().to_owned());
        }
        let token = owner_token.clone().unwrap();
        if round == kills {
            // The last run is left alone to converge.
            converge(&rt, &store, &mut daemon, &log);
            let _ = daemon.kill();
            let _ = daemon.wait();
            break;
        }
        // The workload, then a SIGKILL at a random moment in it.
        let until = Instant::now() + Duration::from_millis(500 + rng.below(3000));
        while Instant::now() < until {
            let pick = servers.iter().filter(|s| !deleted.contains(s)).copied().collect::<Vec<_>>();
            match rng.below(10) {
                0 | 1 if pick.len() < 14 => {
                    let body = format!(r#"{{"name":"w{}","ram_mib":512}}"#, servers.len());
                    let (status, body) = http(api, "POST", "/v1/servers", &token, &body);
                    if status == 201 {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        servers.insert(v["id"].as_i64().unwrap());
                    }
                }
                2..=5 if !pick.is_empty() => {
                    let id = pick[rng.below(pick.len() as u64) as usize];
                    http(api, "POST", &format!("/v1/servers/{id}/start"), &token, "");
                }
                6..=8 if !pick.is_empty() => {
                    let id = pick[rng.below(pick.len() as u64) as usize];
                    http(api, "POST", &format!("/v1/servers/{id}/stop"), &token, "");
                }
                9 if !pick.is_empty() => {
                    let id = pick[rng.below(pick.len() as u64) as usize];
                    if http(api, "DELETE", &format!("/v1/servers/{id}"), &token, "").0 == 204 {
                        deleted.insert(id);
                    }
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        }
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
    }
    // No duplicate VM: the cloud's VMs are exactly the ones the store holds (each once).
    let vms = loop {
        let (status, body) = http(cloud_port, "GET", "/v1/servers", "fake", "");
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            break v["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let held: BTreeSet<String> = rt
        .block_on(store.nodes())
        .unwrap()
        .into_iter()
        .filter(|n| {
            n.kind == conductor_core::NodeKind::Cloud && n.state != conductor_controller::store::NodeState::Deleted
        })
        .map(|n| n.name)
        .collect();
    let in_cloud: BTreeSet<String> = vms.iter().cloned().collect();
    assert_eq!(in_cloud.len(), vms.len(), "a VM name twice in the cloud: {vms:?}");
    assert_eq!(in_cloud, held, "the cloud's VMs vs the store's");
    let _ = cloud.kill();
    let _ = cloud.wait();

    rt.block_on(async {
        // No lost server: every server created and not deleted is there.
        let stored: BTreeSet<i64> = store.servers(None).await.unwrap().iter().map(|s| s.id).collect();
        let alive: BTreeSet<i64> = servers.difference(&deleted).copied().collect();
        assert_eq!(stored, alive, "servers in the store vs created and not deleted");
        assert!(servers.len() >= 5, "the workload created servers: {}", servers.len());
        // No duplicate VM: every VM the cloud made has its own node row; the ones the store
        // does not hold as deleted exist once.
        let nodes = store.nodes().await.unwrap();
        let mut names: Vec<&str> =
            nodes.iter().filter(|n| n.kind == conductor_core::NodeKind::Cloud).map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "one node row per VM name");
        // No orphan container or volume (of this test's id range) on the engine.
        let containers = docker.list_managed().await.unwrap();
        // (Only this test's servers: other tests share the engine.)
        for c in containers.iter().filter(|c| servers.contains(&c.server)) {
            let s = store.server(c.server).await.unwrap();
            assert!(
                alive.contains(&c.server) && s.node.is_some(),
                "orphan container of server {} ({:?})",
                c.server,
                s.state
            );
        }
        // Nothing lost: a sleeping server's world is on its node.
        let volumes = docker.volumes().await.unwrap();
        for s in store.servers(None).await.unwrap() {
            if s.state == ServerState::Sleeping {
                assert!(volumes.contains(&s.id), "server {} sleeps without its world", s.id);
            }
        }
        // It was a real run: VMs made, starts, kills that interrupted work.
        let kinds: Vec<String> = store.events(0, 1_000_000).await.unwrap().into_iter().map(|e| e.kind).collect();
        let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
        use conductor_controller::events::*;
        assert!(count(NODE_CREATED) >= 1, "the policy made a VM");
        assert!(count(SERVER_STARTED) >= 5, "servers ran");
        assert!(count(INTENT_RESUMED) >= 1, "a kill interrupted work that was resumed");
        assert!(count(CONTROLLER_STARTED) as u32 > kills, "killed {kills} times");
        for v in volumes.into_iter().filter(|v| servers.contains(v)) {
            assert!(alive.contains(&v), "the volume of deleted server {v} is left");
            let s = store.server(v).await.unwrap();
            assert!(
                s.node.is_some() || s.state != ServerState::Archived,
                "server {v} is archived but its volume is left"
            );
        }
        // Every archived world is intact: the archive holds what its event says.
        let mut latest: BTreeMap<i64, (String, String)> = BTreeMap::new();
        for e in store.events(0, 1_000_000).await.unwrap() {
            if e.kind == conductor_controller::events::SERVER_ARCHIVED {
                let key = e.data["archive"].as_str().unwrap().to_owned();
                latest.insert(e.server.unwrap(), (key, e.data["sha256"].as_str().unwrap().to_owned()));
            }
        }
        for (server, (key, sha)) in &latest {
            if store.server(*server).await.map(|s| s.state) == Ok(ServerState::Archived) {
                let (object, _) = conductor_controller::archive::object_of(key);
                let bytes = std::fs::read(dir.join("archive").join(object)).unwrap();
                assert_eq!(&conductor_controller::archive::sha256_hex(&bytes), sha, "archive {key}");
            }
        }
        // The ledger: no key twice; each balance = grants + top-ups − charges.
        for o in store.owners().await.unwrap() {
            let entries = store.ledger(o.id, 0, u32::MAX).await.unwrap();
            let keys: BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(keys.len(), entries.len(), "a ledger key twice");
            let sum: rust_decimal::Decimal = entries.iter().map(|e| e.amount).sum();
            assert_eq!(store.balance(o.id).await.unwrap(), sum);
        }
        // Clean up this test's containers.
        for id in &servers {
            let _ = docker.remove(*id, true).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lets the daemon run until nothing is pending: no intent, no starting or queued server.
fn converge(rt: &tokio::runtime::Runtime, store: &PgStore, daemon: &mut Child, log: &std::path::Path) {
    let started = Instant::now();
    let mut quiet = 0;
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!("the daemon exited ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        let (intents, busy) = rt.block_on(async {
            let intents: Vec<String> =
                store.pending_intents().await.unwrap().into_iter().map(|i| format!("{} {}", i.key, i.data)).collect();
            let busy: Vec<String> = store
                .servers(None)
                .await
                .unwrap()
                .iter()
                .filter(|s| matches!(s.state, ServerState::Starting | ServerState::Queued))
                .map(|s| format!("server {} {:?}", s.id, s.state))
                .collect();
            (intents, busy)
        });
        last = format!("pending intents: {intents:?}\nstarting or queued: {busy:?}");
        quiet = if intents.is_empty() && busy.is_empty() { quiet + 1 } else { 0 };
        if quiet >= 25 {
            return;
        }
    }
    panic!("no convergence within 240 s:\n{last}\n{}", std::fs::read_to_string(log).unwrap_or_default());
}
