//! The Docker driver against a real engine: Podman's Docker-compatible API with the stand-in
//! game server image (`.ci/podman.sh` starts both and sets `CONDUCTOR_TEST_DOCKER`;
//! `CONDUCTOR_REQUIRE_SERVICES=1` turns a missing engine into a failure, as in CI).

use conductor_controller::docker::{container_name, Access, ContainerSpec, DockerNode};
use conductor_controller::driver::NodeDriver;
use std::time::Duration;

mod common;

const IMAGE: &str = "localhost/conductor-standin:test";

fn node() -> Option<DockerNode> {
    let Ok(endpoint) = std::env::var("CONDUCTOR_TEST_DOCKER") else {
        if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() {
            panic!("CONDUCTOR_TEST_DOCKER is not set but services are required");
        }
        eprintln!("skipping: set CONDUCTOR_TEST_DOCKER (bash .ci/podman.sh prints it) to run the Docker tests");
        return None;
    };
    Some(DockerNode::connect(&endpoint, "127.0.0.1").expect("a Docker endpoint"))
}

fn helper() -> conductor_controller::docker::Helper {
    conductor_controller::docker::Helper { image: IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] }
}

/// Server ids unique to this test process, so parallel runs do not collide.
fn server_id(k: i64) -> i64 {
    i64::from(std::process::id()) * 100 + k
}

fn spec(server: i64, env: &[&str]) -> ContainerSpec {
    ContainerSpec {
        node: None,
        server,
        image: IMAGE.into(),
        cmd: None,
        memory_mib: 256,
        env: env.iter().map(|s| s.to_string()).collect(),
        host_port: None,
        ..Default::default()
    }
}

/// Reads `world.txt`'s `saves=` out of a tar of `/data`.
fn saves(tar: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(tar);
    text.split("saves=").nth(1).and_then(|rest| rest.split('\n').next()).and_then(|n| n.trim().parse().ok())
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_container_starts_answers_pings_and_saves_its_world_on_stop() {
    let Some(n) = node() else { return };
    n.ping().await.unwrap();
    let id = server_id(1);
    n.remove(id, true).await.unwrap();
    let s = spec(id, &["PLAYERS=3", "READY_AFTER_MS=700"]);
    let info = n.ensure_container(&s).await.unwrap();
    assert_eq!(info.name, container_name(id));
    assert!(!info.running);
    // A retried create finds the same container.
    assert_eq!(n.ensure_container(&s).await.unwrap().id, info.id);
    n.start(id).await.unwrap();
    n.start(id).await.unwrap(); // idempotent
                                // Not ready at once (it takes 700 ms), then answers the status ping with 3 players.
    let status = n.wait_ready(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!((status.online, status.max), (3, 20));
    assert!(status.raw.contains("\"saves\":0"), "{}", status.raw);
    let listed = n.list_managed().await.unwrap();
    assert!(listed.iter().any(|c| c.server == id && c.running));

    // Graceful stop: SIGTERM, the world is saved (saves=1), the container stays.
    n.stop(id, Duration::from_secs(10)).await.unwrap();
    let info = n.inspect(id).await.unwrap().unwrap();
    assert!(!info.running);
    let tar = n.download_data(id).await.unwrap();
    assert_eq!(saves(&tar), Some(1), "world saved once");
    // Started again, it loads its world from the volume.
    n.start(id).await.unwrap();
    let status = n.wait_ready(id, Duration::from_secs(20)).await.unwrap();
    assert!(status.raw.contains("\"saves\":1"), "{}", status.raw);
    n.stop(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(saves(&n.download_data(id).await.unwrap()), Some(2));

    n.remove(id, true).await.unwrap();
    assert_eq!(n.inspect(id).await.unwrap(), None);
    n.stop(id, Duration::from_secs(1)).await.unwrap(); // stopping what is gone is fine
}

#[tokio::test(flavor = "current_thread")]
async fn the_player_count_follows_the_server_and_a_dead_server_is_not_ready() {
    let Some(n) = node() else { return };
    let id = server_id(2);
    n.remove(id, true).await.unwrap();
    n.ensure_container(&spec(id, &["PLAYERS=0"])).await.unwrap();
    n.start(id).await.unwrap();
    assert_eq!(n.wait_ready(id, Duration::from_secs(20)).await.unwrap().online, 0);
    // A restore writes the world (and here a player count) into the volume.
    let mut tar = Vec::new();
    append_file(&mut tar, "data/players", b"5\n");
    tar.extend_from_slice(&[0u8; 1024]);
    n.upload_data(id, tar).await.unwrap();
    assert_eq!(n.probe(id).await.unwrap().online, 5);
    n.stop(id, Duration::from_secs(10)).await.unwrap();
    let err = n.wait_ready(id, Duration::from_millis(600)).await.unwrap_err().to_string();
    assert!(err.contains("not ready") && err.contains("not running"), "{err}");
    n.remove(id, true).await.unwrap();
}

/// A minimal ustar entry.
fn append_file(tar: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar.extend_from_slice(&h);
    tar.extend_from_slice(data);
    tar.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

#[tokio::test(flavor = "current_thread")]
async fn a_world_is_archived_verified_and_restored_with_matching_checksums() {
    use conductor_controller::archive::{archive_server, restore_server, Archive, S3Config};
    let Some(n) = node() else { return };
    let id = server_id(3);
    let dir = std::env::temp_dir().join(format!("conductor-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Archive::dir(&dir).unwrap();
    n.remove(id, true).await.unwrap();
    n.ensure_container(&spec(id, &[])).await.unwrap();
    n.start(id).await.unwrap();
    n.wait_ready(id, Duration::from_secs(20)).await.unwrap();
    n.stop(id, Duration::from_secs(10)).await.unwrap();

    // An object store that does not answer: the archive fails and the node copy is kept.
    let dead = S3Config {
        bucket: "worlds".into(),
        endpoint: "http://127.0.0.1:9".into(),
        region: "us-east-1".into(),
        access_key_env: "K".into(),
        secret_key_env: "S".into(),
    };
    let unreachable = Archive::s3(&dead, &|_| Some("x".into())).unwrap();
    let err = archive_server(&n, &unreachable, id, "bad.tar.zst", &helper()).await.unwrap_err();
    assert!(matches!(err, conductor_controller::archive::ArchiveError::Io { .. }), "{err}");
    assert!(n.inspect(id).await.unwrap().is_some(), "node copy kept when the store fails");

    // Only the volume left (a failed placement's container was removed, its world kept):
    // archived through a helper mounting the volume, which goes afterwards.
    NodeDriver::remove(&n, id, false).await.unwrap();
    assert!(n.inspect(id).await.unwrap().is_none());
    let key = format!("s{id}-1.tar.zst");
    let r = archive_server(&n, &store, id, &key, &helper()).await.unwrap();
    assert_eq!(r.sha256.len(), 64);
    for _ in 0..50 {
        if !n.helpers().await.unwrap().iter().any(|c| c == &format!("conductor-helper-s{id}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!n.helpers().await.unwrap().iter().any(|c| c == &format!("conductor-helper-s{id}")), "helper left");
    assert!(!NodeDriver::volumes(&n).await.unwrap().contains(&id), "the volume goes once archived");
    assert_eq!(conductor_controller::archive::sha256_hex(&store.read_raw(&r.key).await.unwrap()), r.sha256);
    assert!(dir.join(&key).exists(), "stored under its name, zstd");

    restore_server(&n, &store, &spec(id, &[]), &r, &helper()).await.unwrap();
    n.start(id).await.unwrap();
    let status = n.wait_ready(id, Duration::from_secs(20)).await.unwrap();
    assert!(status.raw.contains("\"saves\":1"), "the archived world came back: {}", status.raw);
    n.stop(id, Duration::from_secs(10)).await.unwrap();

    // A damaged archive is refused: what the restore wrote is removed, no container made.
    let path = dir.join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    n.remove(id, true).await.unwrap();
    let err = restore_server(&n, &store, &spec(id, &[]), &r, &helper()).await.unwrap_err().to_string();
    assert!(err.contains("checksum mismatch") || err.contains("archive"), "{err}");
    assert!(n.inspect(id).await.unwrap().is_none(), "nothing created from a bad archive");
    assert!(!NodeDriver::volumes(&n).await.unwrap().contains(&id), "what the bad restore wrote is removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "current_thread")]
async fn removing_one_servers_world_never_touches_another_with_a_longer_id() {
    let Some(n) = node() else { return };
    // Server 7 and server 7x (an id that starts with the same digits).
    let (short, long) = (server_id(7) / 10, server_id(7));
    for id in [short, long] {
        n.remove(id, true).await.unwrap();
    }
    n.ensure_container(&spec(long, &[])).await.unwrap();
    n.start(long).await.unwrap();
    n.wait_ready(long, Duration::from_secs(20)).await.unwrap();
    n.stop(long, Duration::from_secs(10)).await.unwrap();
    n.remove(long, false).await.unwrap(); // the world of `long` stays, unused by any container
    n.remove(short, true).await.unwrap(); // must not resolve to `long`'s volume by prefix
    n.ensure_container(&spec(long, &[])).await.unwrap();
    assert_eq!(saves(&n.download_data(long).await.unwrap()), Some(1), "the longer id's world survived");
    n.remove(long, true).await.unwrap();
}

/// The node's engine reached through SSH (`.ci/sshd.sh` runs an OpenSSH server on
/// 127.0.0.1:2222 forwarding to the Podman socket and prints `CONDUCTOR_TEST_SSH`).
fn ssh_endpoint() -> Option<(String, Access)> {
    let Ok(endpoint) = std::env::var("CONDUCTOR_TEST_SSH") else {
        if std::env::var("CONDUCTOR_REQUIRE_SERVICES").is_ok() {
            panic!("CONDUCTOR_TEST_SSH is not set but services are required");
        }
        eprintln!("skipping: set CONDUCTOR_TEST_SSH (bash .ci/sshd.sh prints it) to run the SSH test");
        return None;
    };
    let dir = std::path::Path::new("/tmp/conductor-sshd");
    let access = Access {
        ssh_identity: Some(dir.join("client_ed25519")),
        ssh_known_hosts: Some(dir.join("known_hosts")),
        ..Access::default()
    };
    Some((endpoint, access))
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_is_driven_over_ssh_and_an_unknown_host_key_is_refused() {
    let Some((endpoint, access)) = ssh_endpoint() else { return };
    let n = DockerNode::connect_with(&endpoint, "127.0.0.1", &access).unwrap();
    n.ping().await.unwrap();
    let id = server_id(7);
    n.remove(id, true).await.unwrap();
    n.ensure_container(&spec(id, &["PLAYERS=2"])).await.unwrap();
    n.start(id).await.unwrap();
    let status = n.wait_ready(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(status.online, 2, "the container started over SSH answers the status ping");
    n.remove(id, true).await.unwrap();
    drop(n);

    // The host key is always checked: an empty known_hosts file refuses the node.
    let empty = std::env::temp_dir().join(format!("conductor-known-hosts-{}", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let strict = Access { ssh_known_hosts: Some(empty.clone()), ..access.clone() };
    let e = DockerNode::connect_with(&endpoint, "127.0.0.1", &strict).err().expect("refused").to_string();
    assert!(e.contains("Host key verification failed") && e.contains(&endpoint), "{e}");
    // A wrong key is refused as well.
    let wrong = Access { ssh_identity: Some(empty.clone()), ..access };
    let e = DockerNode::connect_with(&endpoint, "127.0.0.1", &wrong).err().expect("refused").to_string();
    assert!(e.contains("ssh exited"), "{e}");
    std::fs::remove_file(&empty).unwrap();
    let e = DockerNode::connect("ftp://x", "h").err().unwrap().to_string();
    assert!(e.contains("ssh://"), "{e}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl
/// command line (as one would for `dockerd --tlsverify`).
fn make_certs(dir: &std::path::Path, ca_name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let script = format!(
        r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $ec -keyout ca-key.pem -out ca.pem -days 2 -subj /CN={ca_name} \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl req $ec -keyout $who-key.pem -out $who.csr -subj /CN=$who
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile $who.ext -out $who.pem
done"#
    );
    let out = std::process::Command::new("bash").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
}

/// A TLS endpoint in front of the engine's Unix socket that requires a client certificate
/// signed by the CA in `dir` (what `dockerd --tlsverify` does). Returns its port.
async fn tls_front(dir: &std::path::Path, socket: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone()).build().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_file(dir.join("server.pem")).unwrap()],
            PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, socket) = (acceptor.clone(), socket.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut engine = tokio::net::UnixStream::connect(socket).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_is_driven_over_mutual_tls_and_a_foreign_certificate_is_refused() {
    let Some(_) = node() else { return };
    let endpoint = std::env::var("CONDUCTOR_TEST_DOCKER").unwrap();
    let socket = endpoint.strip_prefix("unix://").expect("the test engine is a Unix socket").to_owned();
    let base = std::env::temp_dir().join(format!("conductor-tls-{}", std::process::id()));
    let (good, foreign) = (base.join("good"), base.join("foreign"));
    make_certs(&good, "conductor-test-ca");
    make_certs(&foreign, "someone-else");
    let port = tls_front(&good, socket).await;
    let access = |dir: &std::path::Path| Access {
        tls_ca: Some(dir.join("ca.pem")),
        tls_cert: Some(dir.join("client.pem")),
        tls_key: Some(dir.join("client-key.pem")),
        ..Access::default()
    };
    let url = format!("tls://127.0.0.1:{port}");

    let n = DockerNode::connect_with(&url, "127.0.0.1", &access(&good)).unwrap();
    n.ping().await.unwrap();
    let id = server_id(8);
    n.remove(id, true).await.unwrap();
    n.ensure_container(&spec(id, &["PLAYERS=4"])).await.unwrap();
    n.start(id).await.unwrap();
    assert_eq!(n.wait_ready(id, Duration::from_secs(20)).await.unwrap().online, 4);
    n.remove(id, true).await.unwrap();

    // A client certificate from another CA is refused by the engine; an engine certificate
    // from another CA is refused by the client.
    let mixed = Access { tls_ca: Some(good.join("ca.pem")), ..access(&foreign) };
    let n = DockerNode::connect_with(&url, "127.0.0.1", &mixed).unwrap();
    assert!(n.ping().await.is_err(), "a foreign client certificate must not reach the engine");
    let n = DockerNode::connect_with(&url, "127.0.0.1", &access(&foreign)).unwrap();
    let e = n.ping().await.expect_err("an unknown engine certificate is refused").to_string();
    assert!(!e.is_empty());
    // Missing pieces are named.
    let e = DockerNode::connect_with(&url, "h", &Access::default()).err().unwrap().to_string();
    assert!(e.contains("tls_ca, tls_cert and tls_key"), "{e}");
    let bad = Access { tls_ca: Some(base.join("nope.pem")), ..access(&good) };
    let e = DockerNode::connect_with(&url, "h", &bad).err().unwrap().to_string();
    assert!(e.contains("tls_ca") && e.contains("nope.pem"), "{e}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// A VM's engine as the controller makes it: certificates issued by the controller's CA,
/// the engine's naming the VM (dialled by address, checked by name), and the engine's
/// identity the same through any endpoint that reaches it.
#[tokio::test(flavor = "current_thread")]
async fn a_vm_engine_is_reached_with_certificates_the_controller_issued() {
    use conductor_controller::pki::{vm_server_name, Pki, Role};
    let Some(local) = node() else { return };
    let endpoint = std::env::var("CONDUCTOR_TEST_DOCKER").unwrap();
    let socket = endpoint.strip_prefix("unix://").expect("the test engine is a Unix socket").to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let pki = Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "test").unwrap();
    let server = pki.issue(&vm_server_name("vm-a"), Role::Server, now, 2).unwrap();
    let client = pki.issue("controller.conductor", Role::Client, now, 2).unwrap();
    let front =
        common::tls::front("127.0.0.1:0", pki.ca_pem(), &server.cert_pem, server.key_pem.expose(), socket.clone())
            .await;
    let address = front.addr.to_string();

    let vm =
        DockerNode::connect_tls(&address, "127.0.0.1", &pki.client(&client, Some(vm_server_name("vm-a")))).unwrap();
    vm.ping().await.unwrap();
    local.ping().await.unwrap();
    assert_eq!(NodeDriver::engine(&vm), NodeDriver::engine(&local), "one engine through two endpoints");
    assert_ne!(NodeDriver::engine(&vm), format!("tls://{address}"));

    // Another VM's name, a certificate from another CA, or a VM's server certificate used as
    // a client: refused.
    let wrong =
        DockerNode::connect_tls(&address, "127.0.0.1", &pki.client(&client, Some(vm_server_name("vm-b")))).unwrap();
    assert!(wrong.ping().await.is_err(), "the engine's certificate names vm-a, not vm-b");
    let foreign = Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "test").unwrap();
    let foreign_client = foreign.issue("controller.conductor", Role::Client, now, 2).unwrap();
    let mut id = pki.client(&foreign_client, Some(vm_server_name("vm-a")));
    id.ca_pem = pki.ca_pem().to_owned();
    let n = DockerNode::connect_tls(&address, "127.0.0.1", &id).unwrap();
    assert!(n.ping().await.is_err(), "a client certificate of another CA must not reach the engine");
    let as_client = pki.client(&server, Some(vm_server_name("vm-a")));
    let n = DockerNode::connect_tls(&address, "127.0.0.1", &as_client).unwrap();
    assert!(n.ping().await.is_err(), "a server certificate is no client certificate");
}

/// A new VM takes servers only once its bootstrap reported done and its images are there.
#[tokio::test(flavor = "current_thread")]
async fn a_vm_is_ready_only_with_its_bootstrap_marker_and_its_images() {
    use conductor_controller::bootstrap::READY_VOLUME;
    let Some(n) = node() else { return };
    let endpoint = std::env::var("CONDUCTOR_TEST_DOCKER").unwrap();
    let socket = endpoint.strip_prefix("unix://").unwrap().to_owned();
    let podman = bollard::Docker::connect_with_socket(&socket, 30, bollard::API_DEFAULT_VERSION).unwrap();
    // Other tests' VMs may have left the marker: this test owns it while it runs.
    let _ = podman.remove_volume(READY_VOLUME, None::<bollard::query_parameters::RemoveVolumeOptions>).await;
    let images = vec![IMAGE.to_owned()];
    let e = n.ready_check(&images, true).await.expect_err("no marker yet").to_string();
    assert!(e.contains("bootstrap not finished"), "{e}");
    n.ready_check(&images, false).await.unwrap();
    let options = bollard::models::VolumeCreateOptions { name: Some(READY_VOLUME.into()), ..Default::default() };
    podman.create_volume(options).await.unwrap();
    n.ready_check(&images, true).await.unwrap();
    let missing = vec![IMAGE.to_owned(), "localhost/not-pulled:never".to_owned()];
    let e = n.ready_check(&missing, true).await.expect_err("an image is missing").to_string();
    assert!(e.contains("localhost/not-pulled:never"), "{e}");
}
