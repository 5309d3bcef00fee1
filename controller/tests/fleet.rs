//! A fleet that really runs servers, end to end: PostgreSQL, Podman, the fake Hetzner API and
//! the controller's own certificates. The fake gives each new VM its own loopback address
//! (127.31.0.N on the private network named in config); the harness plays the VM's boot: it
//! reads the VM's cloud-init as the cloud handed it over, and starts on that address a TLS
//! Docker API front with the certificate and key the controller issued *that* VM, accepting
//! only clients the controller's CA signed (what `dockerd --tlsverify` does on a real VM);
//! then it creates the bootstrap's done marker. Every front reaches the same Podman, whose
//! containers publish their game ports on the VM's address.

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
use conductor_core::catalogue::Reserve;
use conductor_core::model::CostMode;
use conductor_core::{CloudType, DedicatedType, Millis, SchedulerConfig};
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
    let vm = CloudType {
        name: "cx23".into(),
        ram_mib: 2048,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        hourly_eur: Decimal::new(6, 3),
        monthly_cap_eur: Decimal::new(399, 2),
        reserve: Reserve::Mib(0),
    };
    let dedicated = DedicatedType {
        name: "tiny".into(),
        ram_mib: 1024,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(10),
        reserve: Reserve::Mib(0),
    };
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
