//! A fleet that really runs servers, end to end: PostgreSQL, Podman, the fake Hetzner API and
//! the controller's own certificates. The fake gives each new VM its own loopback address
//! (127.31.0.N on the private network named in config); the harness plays the VM's boot: it
//! reads the VM's cloud-init as the cloud handed it over, and starts on that address a TLS
//! Docker API front with the certificate and key the controller issued *that* VM, accepting
//! only clients the controller's CA signed (what `dockerd --tlsverify` does on a real VM);
//! then it creates the bootstrap's done marker. Every front reaches the same Podman, whose
//! containers publish their game ports on the VM's address. Dedicated nodes that join
//! through the admin API are played the same way (`mod joining`).

mod common;

use conductor_controller::archive::Archive;
use conductor_controller::billing::BillingSetup;
use conductor_controller::cloud::{CloudConfig, HetznerCloud};
use conductor_controller::config::CloudConfigFile;
use conductor_controller::docker::{DockerNode, Helper};
use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
use conductor_controller::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::pki::{vm_server_name, Pki};
use conductor_controller::store::{EntryKind, NewEntry, NewServer, ServerState, Store};
use conductor_core::model::CostMode;
use conductor_core::{Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const T0: Millis = 1_760_000_000_000;
const S: Millis = 1000;
/// The VMs' Docker API port (not 2376: a real engine on this machine may hold it).
const DOCKER_PORT: u16 = 42376;
const SUBNET: u8 = 31;

/// The VM's boot, as the harness plays it.
struct VmSim {
    fake: FakeHetzner,
    socket: String,
    pki_ca: String,
    fronts: HashMap<String, common::tls::Front>,
    /// VMs whose engine never comes up.
    refuse: HashSet<String>,
    /// The engine certificate each VM was given (PEM), by VM name.
    certs: HashMap<String, String>,
}

/// A cloud-config as JSON, by Python's YAML parser.
fn cloud_config(text: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

impl VmSim {
    /// Boots the VMs the fake cloud holds that have no front yet (unless refused).
    async fn sync(&mut self) {
        for vm in self.fake.servers() {
            if self.fronts.contains_key(&vm.name) || self.refuse.contains(&vm.name) {
                continue;
            }
            let ip = vm.private_ip.clone().expect("attached to the network");
            let doc = cloud_config(vm.user_data.as_deref().expect("user data"));
            let file = |path: &str| {
                doc["write_files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap()["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let (ca, cert, key) =
                (file("/etc/docker/tls/ca.pem"), file("/etc/docker/tls/cert.pem"), file("/etc/docker/tls/key.pem"));
            assert_eq!(ca, self.pki_ca, "the VM trusts the controller's CA");
            let front = common::tls::front(&format!("{ip}:{DOCKER_PORT}"), &ca, &cert, &key, self.socket.clone()).await;
            self.fronts.insert(vm.name.clone(), front);
            self.certs.insert(vm.name.clone(), cert);
            // The bootstrap's last command: the done marker.
            let podman = bollard::Docker::connect_with_socket(&self.socket, 30, bollard::API_DEFAULT_VERSION).unwrap();
            let options = bollard::models::VolumeCreateOptions {
                name: Some(conductor_controller::bootstrap::READY_VOLUME.into()),
                ..Default::default()
            };
            podman.create_volume(options).await.unwrap();
        }
        // A deleted VM's engine goes with it.
        let names: HashSet<String> = self.fake.servers().into_iter().map(|v| v.name).collect();
        self.fronts.retain(|name, _| names.contains(name));
    }
}

fn config(docker: Arc<DockerNode>, cloud: Arc<HetznerCloud>, pki: Arc<Pki>, archive: &std::path::Path) -> LiveConfig {
    let (vm, dedicated) = (common::rig::vm_type(), common::rig::dedicated_type("tiny", 1024));
    let cc: CloudConfigFile = toml::from_str(&format!(
        r#"cluster = "fleet{pid}"
image = "ubuntu-24.04"
network = "conductor"
docker_port = {DOCKER_PORT}
controller_cidrs = ["127.0.0.1/32"]
gateway_cidrs = ["127.0.0.1/32"]"#,
        pid = std::process::id()
    ))
    .unwrap();
    let images = vec![common::IMAGE.to_owned()];
    let template = ("vm.yaml".to_owned(), conductor_controller::bootstrap::VM.to_owned());
    let (user_data, docker_for_vm, bootstrap_marker) =
        conductor_controller::serve::vm_access(pki, template, &cc, images).unwrap();
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler: SchedulerConfig::reference(vm, 3),
        dedicated: vec![DedicatedNode { name: "ded-1".into(), kind: dedicated, docker }],
        cloud: Some(CloudSetup {
            client: cloud,
            cluster: cc.cluster.clone(),
            image: cc.image.clone(),
            location: None,
            user_data,
            docker_for_vm,
            bootstrap_marker,
        }),
        idle_timeout: 300 * S,
        stop_timeout: Duration::from_secs(10),
        image: common::IMAGE.into(),
        cmd: None,
        helper: Helper { image: common::IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] },
        archive: Arc::new(Archive::dir(archive).unwrap()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing { vm_ready_timeout: 60 * S, ..Healing::default() },
    }
}

/// The tests here share one Podman and number their servers and nodes alike (each has its
/// own database): run concurrently, each would take the other's containers for strays.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn state<St: Store>(store: &St, id: i64) -> ServerState {
    store.server(id).await.unwrap().state
}

/// Boots what the cloud holds and ticks from `now` until `done`, at most 30 s.
async fn until<St: Store>(
    live: &mut Live<St>,
    store: &St,
    sim: &mut VmSim,
    now: Millis,
    what: &str,
    done: impl AsyncCheck<St>,
) {
    // Virtual time moves a second per round (retries' backoff runs out).
    for i in 0..150 {
        sim.sync().await;
        live.tick(now + i * S).await.unwrap();
        if done.holds(live).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = store.events(0, 100_000).await.unwrap();
    let tail: Vec<String> = events
        .iter()
        .rev()
        .take(25)
        .rev()
        .map(|e| format!("{} {:?} {:?} {}", e.kind, e.server, e.node, e.data))
        .collect();
    panic!("timed out waiting for: {what}; the last events:\n{}", tail.join("\n"));
}

trait AsyncCheck<St: Store> {
    async fn holds(&self, live: &Live<St>) -> bool;
}

/// The server `.0` is in state `.1` in the store.
struct InState<'a, St>(&'a St, i64, ServerState);
impl<St: Store> AsyncCheck<St> for InState<'_, St> {
    async fn holds(&self, _: &Live<St>) -> bool {
        state(self.0, self.1).await == self.2
    }
}

#[tokio::test(flavor = "current_thread")]
async fn vms_boot_with_their_own_certificates_run_servers_on_their_address_and_go_when_empty() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (Some(store), Some(docker)) = (common::fresh_pg("fleet").await, common::docker()) else { return };
    let store = Arc::new(store);
    let docker = Arc::new(docker);
    let socket = std::env::var("CONDUCTOR_TEST_DOCKER").unwrap().strip_prefix("unix://").unwrap().to_owned();
    let fake = FakeHetzner::new(Behaviour { action_ms: 300, subnet: SUBNET, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let quick = CloudConfig { requests_per_s: 100.0, burst: 20.0, max_attempts: 4, backoff: Duration::from_millis(50) };
    let cloud = Arc::new(HetznerCloud::new("token", Some(&url), quick).with_network(Some("conductor".into())));
    let pki = Arc::new(Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "fleet").unwrap());
    let archive_dir = std::env::temp_dir().join(format!("conductor-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&archive_dir);
    let mut sim = VmSim {
        fake: fake.clone(),
        socket,
        pki_ca: pki.ca_pem().to_owned(),
        fronts: HashMap::new(),
        refuse: HashSet::new(),
        certs: HashMap::new(),
    };

    let owner = store.create_owner("vera", T0).await.unwrap();
    let topup = NewEntry {
        owner: owner.id,
        kind: EntryKind::Topup,
        amount: Decimal::from(5),
        key: "grant:vera".into(),
        at: T0,
        server: None,
        window_start: None,
        data: serde_json::json!({}),
    };
    store.post(topup).await.unwrap();
    let new = |name: &str, ram_mib| NewServer {
        owner: owner.id,
        name: name.into(),
        ram_mib,
        disk_mb: 100,
        pay_per_use: false,
        cost_mode: CostMode::Off,
    };
    let a = store.create_server(new("a", 512), T0).await.unwrap();
    let c = store.create_server(new("c", 768), T0).await.unwrap();
    let d = store.create_server(new("d", 768), T0).await.unwrap();
    for id in [a.id, c.id, d.id] {
        docker.remove(id, true).await.unwrap();
    }
    let mut live =
        Live::start(store.clone(), config(docker.clone(), cloud.clone(), pki.clone(), &archive_dir), T0).await.unwrap();

    // a leaves too little room on the dedicated node for c: the scaling tick asks for a VM.
    live.request_start(a.id, T0).await.unwrap();
    until(&mut live, &*store, &mut sim, T0 + S, "a running", InState(&*store, a.id, ServerState::Running)).await;
    live.request_start(c.id, T0 + 2 * S).await.unwrap();
    live.tick(T0 + 121 * S).await.unwrap();
    let vms = fake.servers();
    assert_eq!(vms.len(), 1, "one VM asked for");
    let vm1 = vms[0].clone();
    let address = vm1.private_ip.clone().unwrap();
    assert_eq!(address, format!("127.{SUBNET}.0.1"));

    // The VM boots; c is placed on it and answers its status ping on the VM's address.
    until(
        &mut live,
        &*store,
        &mut sim,
        T0 + 122 * S,
        "c running on the VM",
        InState(&*store, c.id, ServerState::Running),
    )
    .await;
    let c_node = store.server(c.id).await.unwrap().node.unwrap();
    let nodes = store.nodes().await.unwrap();
    let node = nodes.iter().find(|n| n.id == c_node).unwrap();
    assert_eq!((node.kind, node.name.as_str()), (conductor_core::NodeKind::Cloud, vm1.name.as_str()));
    let inspected = docker.inspect(c.id).await.unwrap().expect("c's container");
    let port = inspected.host_port.expect("a published game port");
    let status = conductor_controller::mcping::status(&address, port, Duration::from_secs(2)).await.unwrap();
    assert!(status.raw.contains("players"), "{}", status.raw);
    assert!(
        conductor_controller::mcping::status("127.0.0.1", port, Duration::from_secs(1)).await.is_err(),
        "published on the VM's address only"
    );
    let events = store.events(0, 10_000).await.unwrap();
    assert_eq!(live.node_addresses()[&c_node], address, "the fleet view's address");
    let booted = events.iter().find(|e| e.kind == "node.booted").expect("node.booted");
    assert_eq!(booted.data["address"], address.as_str());

    // The VM presented a certificate issued for it alone.
    let cert = &sim.certs[&vm1.name];
    let name_ok = verify(pki.ca_pem(), cert, &vm_server_name(&vm1.name));
    assert!(name_ok.is_ok(), "{name_ok:?}");
    assert!(verify(pki.ca_pem(), cert, &vm_server_name("another-vm")).is_err());

    // c stops and sleeps on the VM; 48 h later it is archived, the empty VM is deleted.
    live.request_stop(c.id, T0 + 200 * S).await.unwrap();
    let later = T0 + 200 * S + 48 * 3600 * S;
    until(&mut live, &*store, &mut sim, later, "c archived", InState(&*store, c.id, ServerState::Archived)).await;
    let mut t = later;
    for _ in 0..240 {
        if fake.servers().is_empty() {
            break;
        }
        t += 60 * S;
        sim.sync().await;
        live.tick(t).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.servers().is_empty(), "the empty VM is deleted");
    let events = store.events(0, 10_000).await.unwrap();
    let at = |kind: &str| events.iter().position(|e| e.kind == kind && e.node == Some(c_node));
    let archived = events.iter().position(|e| e.kind == "server.archived" && e.server == Some(c.id)).unwrap();
    assert!(at("node.deleted").unwrap() > archived, "deleted after its world was archived");

    // The next VM never answers: deleted after vm_ready_timeout, and the scale-up that
    // follows brings one that does; d runs there.
    live.request_start(d.id, t + S).await.unwrap();
    t += 121 * S;
    live.tick(t).await.unwrap();
    let vm2 = fake.servers().first().cloned().expect("a second VM asked for");
    sim.refuse.insert(vm2.name.clone());
    for _ in 0..5 {
        sim.sync().await;
        live.tick(t + S).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(&*store, d.id).await, ServerState::Queued, "nothing placed on a VM that does not answer");
    t += 61 * S;
    let mut replaced = false;
    for _ in 0..60 {
        sim.sync().await;
        live.tick(t).await.unwrap();
        let names: Vec<String> = fake.servers().into_iter().map(|v| v.name).collect();
        if !names.contains(&vm2.name) && !names.is_empty() {
            replaced = true;
            break;
        }
        t += 30 * S;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replaced, "the silent VM is deleted and another one asked for: {:?}", fake.servers());
    let events = store.events(0, 10_000).await.unwrap();
    let never = events.iter().find(|e| e.kind == "node.never-ready").expect("node.never-ready");
    assert_eq!(never.data["name"], vm2.name.as_str());
    assert!(never.data["reason"].as_str().unwrap().contains("Docker API"), "{}", never.data);
    until(
        &mut live,
        &*store,
        &mut sim,
        t + S,
        "d running on the third VM",
        InState(&*store, d.id, ServerState::Running),
    )
    .await;
    let d_node = store.server(d.id).await.unwrap().node.unwrap();
    let vm3 = store.nodes().await.unwrap().into_iter().find(|n| n.id == d_node).unwrap();
    assert_ne!(vm3.name, vm2.name);
    assert_eq!(store.servers(None).await.unwrap().len(), 3, "no server lost");

    drop(live);
    for id in [a.id, c.id, d.id] {
        docker.remove(id, true).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&archive_dir);
}

fn verify(ca_pem: &str, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier.verify_server_cert(&cert, &[], &name, &[], UnixTime::now()).map(|_| ())
}

/// Nodes that join through the admin API, end to end: PostgreSQL, Podman behind TLS fronts on
/// their own loopback addresses (127.32.0.N), certificates from `POST /v1/nodes/certificates`.
mod joining {
    use super::*;
    use axum::http::StatusCode;
    use common::rig::{dedicated_type, vm_type, Rig, ADMIN};
    use conductor_controller::live::{node_server_name, Joining};
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicI64, Ordering};

    fn config(docker: Arc<DockerNode>, pki: Arc<Pki>, archive: &std::path::Path) -> LiveConfig {
        let scheduler = SchedulerConfig::reference(vm_type(), 0);
        LiveConfig {
            forecast: None,
            jobs: Default::default(),
            joining: Joining {
                types: [("small".to_owned(), dedicated_type("small", 2048))].into(),
                connect: Some(conductor_controller::serve::join_access(pki.clone()).unwrap()),
                answer_within: Duration::from_secs(2),
                pki: Some(pki),
            },
            templates: Default::default(),
            worlds: Default::default(),
            game: conductor_controller::live::GameAccess::default(),
            scheduler,
            dedicated: vec![DedicatedNode { name: "ded-1".into(), kind: dedicated_type("tiny", 1024), docker }],
            cloud: None,
            idle_timeout: 300 * S,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_joins_through_the_api_takes_servers_survives_a_restart_drains_and_leaves() {
        let _serial = ONE_AT_A_TIME.lock().await;
        let (Some(store), Some(docker)) = (common::fresh_pg("joining").await, common::docker()) else { return };
        // Certificates are checked against the real clock (rustls): the virtual one starts now.
        let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as Millis;
        let store = Arc::new(store);
        let docker = Arc::new(docker);
        let socket = std::env::var("CONDUCTOR_TEST_DOCKER").unwrap().strip_prefix("unix://").unwrap().to_owned();
        let pki = Arc::new(Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "joining").unwrap());
        let archive_dir = std::env::temp_dir().join(format!("conductor-joining-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&archive_dir);
        let owner = store.create_owner("jo", t0).await.unwrap();
        let topup = NewEntry {
            owner: owner.id,
            kind: EntryKind::Topup,
            amount: Decimal::from(5),
            key: "grant:jo".into(),
            at: t0,
            server: None,
            window_start: None,
            data: json!({}),
        };
        store.post(topup).await.unwrap();
        let new = |name: &str| NewServer {
            owner: owner.id,
            name: name.into(),
            ram_mib: 768,
            disk_mb: 100,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        let a = store.create_server(new("a"), t0).await.unwrap();
        let b = store.create_server(new("b"), t0).await.unwrap();
        let e = store.create_server(new("e"), t0).await.unwrap();
        for id in [a.id, b.id, e.id] {
            docker.remove(id, true).await.unwrap();
        }
        let clock = Arc::new(AtomicI64::new(t0));
        let live = Live::start(store.clone(), config(docker.clone(), pki.clone(), &archive_dir), t0).await.unwrap();
        let mut rig = Rig::new(store.clone(), live, clock.clone(), 2048);

        // a fills the configured node; b waits: there is no room and no cloud.
        let (s, v) = rig.call("POST", &format!("/v1/servers/{}/start", a.id), ADMIN, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        rig.until(a.id, ServerState::Running).await;
        rig.call("POST", &format!("/v1/servers/{}/start", b.id), ADMIN, None).await;
        rig.ticks(3).await;
        assert_eq!(state(&*store, b.id).await, ServerState::Queued);

        // Joins that fail change nothing: bad type, bad endpoint, a silent engine, an engine
        // with a certificate of another CA.
        let nodes_before = store.nodes().await.unwrap().len();
        let join = |name: &str, t: &str, docker: &str| json!({ "name": name, "type": t, "docker": docker, "host": "127.32.0.1" });
        let (s, v) = rig.call("POST", "/v1/nodes", ADMIN, Some(join("n1", "huge", "tls://127.32.0.1:42376"))).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_node_type")),
            "{v}"
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("small"), "names the known types: {v}");
        let (s, v) = rig.call("POST", "/v1/nodes", ADMIN, Some(join("n1", "small", "unix:///run/docker.sock"))).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unsupported_endpoint")),
            "{v}"
        );
        // Accepts TCP and never speaks.
        let silent = tokio::net::TcpListener::bind("127.32.0.9:0").await.unwrap();
        let silent_at = format!("tls://{}", silent.local_addr().unwrap());
        let (s, v) = rig.call("POST", "/v1/nodes", ADMIN, Some(join("n1", "small", &silent_at))).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("node_unreachable")),
            "{v}"
        );
        let other = Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "elsewhere").unwrap();
        let forged =
            other.issue(&node_server_name("n1"), conductor_controller::pki::Role::Server, t0 / 1000, 30).unwrap();
        let foreign = common::tls::front(
            "127.32.0.8:0",
            other.ca_pem(),
            &forged.cert_pem,
            forged.key_pem.expose(),
            socket.clone(),
        )
        .await;
        let (s, v) =
            rig.call("POST", "/v1/nodes", ADMIN, Some(join("n1", "small", &format!("tls://{}", foreign.addr)))).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("node_certificate")),
            "{v}"
        );
        assert_eq!(store.nodes().await.unwrap().len(), nodes_before, "no failed join is recorded");
        assert_eq!(state(&*store, b.id).await, ServerState::Queued);

        // The node gets its certificate from the API and joins; b is placed there at once and
        // answers its status ping on the node's address.
        let (s, cert) = rig.call("POST", "/v1/nodes/certificates", ADMIN, Some(json!({ "name": "n1" }))).await;
        assert_eq!(s, StatusCode::CREATED, "{cert}");
        assert_eq!(cert["server_name"], "n1.node.conductor");
        assert_eq!(cert["ca_pem"], pki.ca_pem());
        let key = cert["key_pem"].as_str().unwrap();
        let front =
            common::tls::front("127.32.0.1:0", pki.ca_pem(), cert["cert_pem"].as_str().unwrap(), key, socket.clone())
                .await;
        let endpoint = format!("tls://{}", front.addr);
        let (s, node) = rig.call("POST", "/v1/nodes", ADMIN, Some(join("n1", "small", &endpoint))).await;
        assert_eq!(s, StatusCode::CREATED, "{node}");
        let n1 = node["id"].as_i64().unwrap();
        assert_eq!((node["address"].as_str(), node["usable_mib"].as_u64()), (Some("127.32.0.1"), Some(2048)));
        let (s, v) = rig.call("POST", "/v1/nodes", ADMIN, Some(join("n1", "small", &endpoint))).await;
        assert_eq!(s, StatusCode::CONFLICT, "a name is joined once: {v}");
        rig.until(b.id, ServerState::Running).await;
        assert_eq!(store.server(b.id).await.unwrap().node, Some(n1));
        let port = docker.inspect(b.id).await.unwrap().expect("b's container").host_port.unwrap();
        let status = conductor_controller::mcping::status("127.32.0.1", port, Duration::from_secs(2)).await.unwrap();
        assert!(status.raw.contains("players"), "{}", status.raw);
        let events = store.events(0, 10_000).await.unwrap();
        let issued = events.iter().find(|e| e.kind == "node.certificate-issued").expect("node.certificate-issued");
        assert!(!issued.data.to_string().contains("PRIVATE KEY"), "the key is never stored: {}", issued.data);
        assert!(events.iter().any(|e| e.kind == "node.added" && e.node == Some(n1)));

        // A restart adopts the joined node from the store: b keeps running there.
        drop(rig);
        let live =
            Live::start(store.clone(), config(docker.clone(), pki.clone(), &archive_dir), clock.load(Ordering::SeqCst))
                .await
                .unwrap();
        rig = Rig::new(store.clone(), live, clock.clone(), 2048);
        rig.ticks(3).await;
        assert_eq!(state(&*store, b.id).await, ServerState::Running);
        assert_eq!(store.server(b.id).await.unwrap().node, Some(n1));
        let (_, fleet) = rig.call("GET", "/v1/fleet", ADMIN, None).await;
        let listed = fleet["nodes"].as_array().unwrap().iter().find(|n| n["id"] == n1).cloned().expect("n1 listed");
        assert_eq!(listed["address"], "127.32.0.1", "{fleet}");

        // Drained: nothing new goes there, and it is not removed while b lives there.
        let (s, v) = rig.call("POST", &format!("/v1/nodes/{n1}/drain"), ADMIN, None).await;
        assert_eq!((s, v["drained"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
        rig.call("POST", &format!("/v1/servers/{}/start", e.id), ADMIN, None).await;
        rig.ticks(3).await;
        assert_eq!(state(&*store, e.id).await, ServerState::Queued, "a drained node takes no new server");
        let (s, v) = rig.call("DELETE", &format!("/v1/nodes/{n1}"), ADMIN, None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("node_not_empty")), "{v}");
        let configured = store.nodes().await.unwrap().into_iter().find(|n| n.name == "ded-1").unwrap().id;
        let (s, v) = rig.call("POST", &format!("/v1/nodes/{configured}/drain"), ADMIN, None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("configured_node")), "{v}");

        // b stops: its world is archived (not left on the leaving node); then n1 goes.
        rig.call("POST", &format!("/v1/servers/{}/stop", b.id), ADMIN, None).await;
        rig.until(b.id, ServerState::Archived).await;
        // What is left there (the volume's removal) finishes within a few ticks.
        let mut removed = (StatusCode::CONFLICT, Value::Null);
        for _ in 0..10 {
            removed = rig.call("DELETE", &format!("/v1/nodes/{n1}"), ADMIN, None).await;
            if removed.0 != StatusCode::CONFLICT {
                break;
            }
            eprintln!("{}", removed.1);
            rig.ticks(1).await;
        }
        assert_eq!(removed.0, StatusCode::NO_CONTENT, "{}", removed.1);
        let (_, fleet) = rig.call("GET", "/v1/fleet", ADMIN, None).await;
        assert!(fleet["nodes"].as_array().unwrap().iter().all(|n| n["id"] != n1), "{fleet}");
        let (s, _) = rig.call("DELETE", &format!("/v1/nodes/{n1}"), ADMIN, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(store.servers(None).await.unwrap().len(), 3, "no server lost");
        assert_eq!(state(&*store, e.id).await, ServerState::Queued);

        // b's world comes back from the archive on the configured node once a stops.
        let (s, v) = rig.call("POST", &format!("/v1/servers/{}/stop", e.id), ADMIN, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "a queued start is withdrawn: {v}");
        rig.call("POST", &format!("/v1/servers/{}/stop", a.id), ADMIN, None).await;
        rig.until(a.id, ServerState::Sleeping).await;
        rig.call("POST", &format!("/v1/servers/{}/start", b.id), ADMIN, None).await;
        rig.until(b.id, ServerState::Running).await;
        assert_eq!(store.server(b.id).await.unwrap().node, Some(configured));

        drop(rig);
        drop((front, foreign, silent));
        for id in [a.id, b.id, e.id] {
            docker.remove(id, true).await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&archive_dir);
    }
}
