//! The Docker driver (bollard): one Docker API endpoint per node. Containers are named
//! `conductor-s<server id>` and labelled, so that after a restart the controller finds what
//! really runs (`list_managed`) and a retried create finds the container it made before.
//! A server's world lives in the named volume `conductor-data-s<id>-world` mounted at `/data`.
//! Readiness and player counts come from the Minecraft status ping, not from health checks.

mod console;
mod jobs;

pub use jobs::{job_container_name, LABEL_JOB};

use crate::driver::{BoxFuture, DriverError};
use crate::mcping;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const LABEL_MANAGED: &str = "conductor.managed";
pub const LABEL_SERVER: &str = "conductor.server";
/// The store id of the node a container was made for: a Docker engine shared by several
/// nodes (or controllers) tells each its own containers.
pub const LABEL_NODE: &str = "conductor.node";
/// The [`ContainerSpec::digest`] a container was made from.
pub const LABEL_SPEC: &str = "conductor.spec";
/// The game port inside the container.
pub const GAME_PORT: u16 = 25565;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    /// With the error's causes: a TLS refusal ("invalid peer certificate: UnknownIssuer")
    /// lies three sources below bollard's "client error (Connect)".
    #[error("Docker API: {}", crate::driver::with_causes(.0))]
    Api(#[from] bollard::errors::Error),
    #[error("server {server}: not ready after {waited:?}: {last}")]
    NotReady { server: i64, waited: Duration, last: String },
    #[error("server {0}: no container")]
    NoContainer(i64),
    /// A new VM's engine lacks what it needs to take servers.
    #[error("node not ready: {0}")]
    NodeNotReady(String),
    /// A stream of world data broke (the store, or a checksum while restoring).
    #[error("world data: {0}")]
    Data(String),
}

/// 24 random bytes, hex: a password nobody types.
fn random_secret() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DockerError {
    fn from_io(e: std::io::Error) -> DockerError {
        DockerError::Data(e.to_string())
    }
}

/// What the controller wants a server's container to be.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub server: i64,
    pub image: String,
    /// The container's command (images imported from a tarball have none).
    pub cmd: Option<Vec<String>>,
    pub memory_mib: u32,
    pub env: Vec<String>,
    /// Host port for the game port; `None` lets the engine pick a free one.
    pub host_port: Option<u16>,
    /// The node it is made for (labelled; see [`LABEL_NODE`]).
    pub node: Option<i64>,
    /// Where the world volume is mounted (`None`: /data).
    pub data_path: Option<String>,
    /// CPU limit in billionths of a CPU; CPU shares follow the plan's RAM either way.
    pub nano_cpus: Option<i64>,
    /// Keep standard input open (a console on stdin).
    pub open_stdin: bool,
    /// A variable given a fresh random value when the container is made (an RCON
    /// password): in the container's environment only, never in the spec or its digest.
    pub secret_env: Option<String>,
    pub stop_signal: Option<String>,
}

impl ContainerSpec {
    /// What the container is made of, as a label: a container made from another spec (a
    /// template or plan changed while the server was stopped) is made anew at its start.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = serde_json::json!([
            self.image,
            self.cmd,
            self.memory_mib,
            self.env,
            self.data_path,
            self.nano_cpus,
            self.open_stdin,
            self.secret_env,
            self.stop_signal,
        ])
        .to_string();
        Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// An image and command for volume helper containers (they idle until SIGTERM).
#[derive(Clone, Debug)]
pub struct Helper {
    pub image: String,
    pub cmd: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub server: i64,
    pub running: bool,
    /// The exit code of a container that ran and stopped.
    pub exit_code: Option<i64>,
    pub host_port: Option<u16>,
    /// The node it was made for, if labelled.
    pub node: Option<i64>,
    /// The digest of the spec it was made from, if labelled ([`LABEL_SPEC`]).
    pub spec: Option<String>,
}

pub fn container_name(server: i64) -> String {
    format!("conductor-s{server}")
}

/// The suffix keeps every name from being the prefix of another: Podman resolves a volume
/// name that does not exist by prefix, so removing `…-s2` could remove `…-s29`'s world.
pub fn volume_name(server: i64) -> String {
    format!("conductor-data-s{server}-world")
}

/// Every engine's identity: a volume labelled with an id made once (see `DockerNode::ping`).
pub const ENGINE_VOLUME: &str = "conductor-engine";
const ENGINE_LABEL: &str = "conductor.engine";

/// How long the engine may take to take in a whole world (an upload answers at its end):
/// 5 h (a 50 GB world at 3 MB/s).
const WORLD_COPY_TIMEOUT: Duration = Duration::from_secs(5 * 3600);

/// One node's Docker API.
pub struct DockerNode {
    docker: Docker,
    /// Where this node's published ports are reached from the controller and the gateways.
    pub host: String,
    /// The address game ports are published on (`host` when it is an address, 127.0.0.1 for
    /// `localhost`, else every address; `game_bind` in the node's config overrides it).
    pub publish_ip: String,
    /// The endpoint it was connected with: two nodes with the same one are one engine.
    endpoint: String,
    /// The engine's own identity, once read from its marker volume (see [`ENGINE_VOLUME`]):
    /// two endpoints of one engine (two test fronts, a node configured twice) are one.
    engine_id: std::sync::OnceLock<String>,
    /// The SSH process forwarding a local socket to the node's (ssh:// endpoints).
    _tunnel: Option<SshTunnel>,
}

/// How to reach endpoints that need credentials.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// ssh://: the private key to log in with (else ssh's own defaults and agent).
    pub ssh_identity: Option<std::path::PathBuf>,
    /// ssh://: the known_hosts file holding the node's host key; the key is always checked.
    pub ssh_known_hosts: Option<std::path::PathBuf>,
    /// tls://: the CA that signed the engine's certificate, and this client's certificate
    /// and key (Docker's `--tlsverify` scheme: ca.pem, cert.pem, key.pem).
    pub tls_ca: Option<std::path::PathBuf>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
}

impl Access {
    /// The tls:// credentials, read from their files.
    fn tls_identity(&self) -> Result<crate::pki::TlsIdentity, String> {
        let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key) else {
            return Err("tls:// needs tls_ca, tls_cert and tls_key".into());
        };
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
        };
        Ok(crate::pki::TlsIdentity {
            ca_pem: read("tls_ca", ca)?,
            cert_pem: read("tls_cert", cert)?,
            key_pem: crate::pki::Secret::new(read("tls_key", key)?),
            server_name: None,
        })
    }
}

/// A Docker API over TLS with a client certificate (mutual TLS, as `dockerd --tlsverify`).
/// The engine's certificate must name `id.server_name` if given (a VM dialled by address
/// whose certificate names the VM), else the dialled host.
fn tls_docker(address: &str, id: &crate::pki::TlsIdentity) -> Result<Docker, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(id.ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| format!("tls_ca: {e}"))?).map_err(|e| format!("tls_ca: {e}"))?;
    }
    if roots.is_empty() {
        return Err("tls_ca: no certificate in it".into());
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.expose().as_bytes()).map_err(|e| format!("tls_key: {e}"))?;
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("tls_cert/tls_key: {e}"))?;
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only();
    if let Some(name) = &id.server_name {
        let name = ServerName::try_from(name.clone()).map_err(|e| format!("server name {name:?}: {e}"))?;
        builder = builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = builder.enable_http1().build();
    let client = std::sync::Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https),
    );
    let transport = move |req: bollard::BollardRequest| {
        let client = client.clone();
        async move { client.request(req).await.map_err(bollard::errors::Error::from) }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{address}")),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| e.to_string())
}

/// `ssh -L local.sock:remote.sock`: the system's OpenSSH client (its configuration, agent
/// and host-key checks apply) forwarding a local Unix socket to the node's Docker socket.
/// Killed when the node is dropped.
struct SshTunnel {
    child: std::process::Child,
    local: std::path::PathBuf,
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.local);
    }
}

impl SshTunnel {
    /// `target` is `[user@]host[:port][/remote/socket]` (default socket /var/run/docker.sock).
    fn open(target: &str, access: &Access) -> Result<SshTunnel, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let (authority, remote) = match target.find('/') {
            Some(i) => (&target[..i], &target[i..]),
            None => (target, "/var/run/docker.sock"),
        };
        let (login, port) = match authority.rsplit_once(':') {
            Some((l, p)) => (l, Some(p.parse::<u16>().map_err(|_| format!("port {p:?} is not a number"))?)),
            None => (authority, None),
        };
        if login.is_empty() || login.ends_with('@') {
            return Err("expected ssh://[user@]host[:port][/remote/socket]".into());
        }
        let local = std::env::temp_dir().join(format!(
            "conductor-ssh-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&local);
        let mut cmd = std::process::Command::new("ssh");
        cmd.args(["-nNT", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15"]);
        cmd.args(["-o", "StrictHostKeyChecking=yes"]);
        if let Some(k) = &access.ssh_known_hosts {
            cmd.arg("-o").arg(format!("UserKnownHostsFile={}", k.display()));
        }
        if let Some(i) = &access.ssh_identity {
            cmd.arg("-o").arg("IdentitiesOnly=yes").arg("-i").arg(i);
        }
        if let Some(p) = port {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.arg("-L").arg(format!("{}:{remote}", local.display())).arg(login);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting ssh: {e}"))?;
        // Connected once the forwarded socket exists; ssh exits at once on a refused login
        // or an unknown host key (BatchMode, ExitOnForwardFailure).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if local.exists() {
                return Ok(SshTunnel { child, local });
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("ssh exited ({status}): {}", err.trim()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("ssh: no forwarded socket after 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl DockerNode {
    /// `unix:///path/to/docker.sock` or `tcp://host:port` (plain HTTP).
    pub fn connect(endpoint: &str, host: &str) -> Result<DockerNode, DockerError> {
        Self::connect_with(endpoint, host, &Access::default())
    }

    /// Also `tls://host:port` (mutual TLS) and `ssh://[user@]host[:port][/remote/socket]`
    /// (through an SSH tunnel); credentials in [`Access`].
    pub fn connect_with(endpoint: &str, host: &str, access: &Access) -> Result<DockerNode, DockerError> {
        let fail = |message: String| DockerError::Endpoint { endpoint: endpoint.into(), message };
        let socket = |path: &str| {
            Docker::connect_with_socket(path, 120, bollard::API_DEFAULT_VERSION).map_err(|e| fail(e.to_string()))
        };
        let (docker, tunnel) = if let Some(path) = endpoint.strip_prefix("unix://") {
            (socket(path)?, None)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            let url = endpoint.replacen("tcp://", "http://", 1);
            let d =
                Docker::connect_with_http(&url, 120, bollard::API_DEFAULT_VERSION).map_err(|e| fail(e.to_string()))?;
            (d, None)
        } else if let Some(address) = endpoint.strip_prefix("tls://") {
            (tls_docker(address, &access.tls_identity().map_err(fail)?).map_err(fail)?, None)
        } else if let Some(target) = endpoint.strip_prefix("ssh://") {
            let tunnel = SshTunnel::open(target, access).map_err(fail)?;
            (socket(&tunnel.local.to_string_lossy())?, Some(tunnel))
        } else {
            return Err(fail(
                "expected unix:///path, tcp://host:port, tls://host:port or ssh://[user@]host[:port][/socket]".into(),
            ));
        };
        let publish_ip = match host {
            "localhost" => "127.0.0.1".to_owned(),
            h if h.parse::<std::net::IpAddr>().is_ok() => h.to_owned(),
            _ => "0.0.0.0".to_owned(),
        };
        Ok(DockerNode {
            docker,
            host: host.into(),
            publish_ip,
            endpoint: endpoint.into(),
            _tunnel: tunnel,
            engine_id: Default::default(),
        })
    }

    /// `address` (`host:port`) over mutual TLS with in-memory credentials (a VM the
    /// controller issued certificates for); game ports are published on and reached at `host`.
    pub fn connect_tls(address: &str, host: &str, id: &crate::pki::TlsIdentity) -> Result<DockerNode, DockerError> {
        let endpoint = format!("tls://{address}");
        let docker =
            tls_docker(address, id).map_err(|message| DockerError::Endpoint { endpoint: endpoint.clone(), message })?;
        let publish_ip = if host.parse::<std::net::IpAddr>().is_ok() { host.to_owned() } else { "0.0.0.0".to_owned() };
        Ok(DockerNode { docker, host: host.into(), publish_ip, endpoint, _tunnel: None, engine_id: Default::default() })
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker.ping().await?;
        if self.engine_id.get().is_none() {
            let id = self.engine_marker().await?;
            let _ = self.engine_id.set(id);
        }
        Ok(())
    }

    /// See [`crate::driver::NodeDriver::ready_check`].
    pub async fn ready_check(&self, images: &[String], marker: bool) -> Result<(), DockerError> {
        self.ping().await?;
        let missing = |e: &bollard::errors::Error| {
            matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
        };
        if marker {
            match self.docker.inspect_volume(crate::bootstrap::READY_VOLUME).await {
                Err(e) if missing(&e) => {
                    return Err(DockerError::NodeNotReady(format!(
                        "bootstrap not finished (no {} volume yet)",
                        crate::bootstrap::READY_VOLUME
                    )))
                }
                other => {
                    other?;
                }
            }
        }
        for image in images {
            match self.docker.inspect_image(image).await {
                Err(e) if missing(&e) => {
                    return Err(DockerError::NodeNotReady(format!("image {image} is not on the node")))
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Reads (or makes) the engine's marker volume. Engines' own IDs cannot serve: Podman
    /// answers a new one at every `/info`.
    async fn engine_marker(&self) -> Result<String, DockerError> {
        use bollard::models::VolumeCreateOptions;
        let read = |v: &bollard::models::Volume| v.labels.get(ENGINE_LABEL).cloned();
        if let Ok(v) = self.docker.inspect_volume(ENGINE_VOLUME).await {
            if let Some(id) = read(&v) {
                return Ok(id);
            }
        }
        let digest =
            <sha2::Sha256 as sha2::Digest>::digest(format!("{}-{:?}", self.endpoint, std::time::SystemTime::now()));
        let fresh: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let options = VolumeCreateOptions {
            name: Some(ENGINE_VOLUME.into()),
            labels: Some(HashMap::from([(ENGINE_LABEL.to_string(), fresh.clone())])),
            ..Default::default()
        };
        // Two controllers' first pings may race: whoever made it, its label is the answer.
        let _ = self.docker.create_volume(options).await;
        let v = self.docker.inspect_volume(ENGINE_VOLUME).await?;
        Ok(read(&v).unwrap_or(fresh))
    }

    /// Creates the server's container unless it exists (a retry finds the first one).
    pub async fn ensure_container(&self, spec: &ContainerSpec) -> Result<ContainerInfo, DockerError> {
        let digest = spec.digest();
        if let Some(info) = self.inspect(spec.server).await? {
            // A running container is left as it is (a change applies at its next start); a
            // stopped one made from another spec goes, its volume kept.
            if info.running || info.spec.as_deref() == Some(digest.as_str()) || info.spec.is_none() {
                return Ok(info);
            }
            self.remove(spec.server, false).await?;
        }
        let port = format!("{GAME_PORT}/tcp");
        let mut bindings = HashMap::new();
        bindings.insert(
            port.clone(),
            Some(vec![PortBinding {
                host_ip: Some(self.publish_ip.clone()),
                host_port: Some(spec.host_port.map(|p| p.to_string()).unwrap_or_default()),
            }]),
        );
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_SERVER.to_string(), spec.server.to_string()),
        ]);
        if let Some(node) = spec.node {
            labels.insert(LABEL_NODE.to_string(), node.to_string());
        }
        labels.insert(LABEL_SPEC.to_string(), digest);
        let mut env = spec.env.clone();
        if let Some(var) = &spec.secret_env {
            env.push(format!("{var}={}", random_secret()));
        }
        let data_path = spec.data_path.as_deref().unwrap_or("/data");
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(HashMap::from([(port, HashMap::new())])),
            open_stdin: Some(spec.open_stdin),
            stdin_once: Some(false),
            stop_signal: spec.stop_signal.clone(),
            host_config: Some(HostConfig {
                memory: Some(i64::from(spec.memory_mib) * 1024 * 1024),
                // 1024 shares per GiB of plan: under contention CPU follows what was paid.
                cpu_shares: Some((i64::from(spec.memory_mib)).max(2)),
                nano_cpus: spec.nano_cpus,
                port_bindings: Some(bindings),
                binds: Some(vec![format!("{}:{data_path}", volume_name(spec.server))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(container_name(spec.server)), ..Default::default() };
        match self.docker.create_container(Some(options), body).await {
            Ok(_) => {}
            // Lost a race with another create of the same name: that one is ours too.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inspect(spec.server).await?.ok_or(DockerError::NoContainer(spec.server))
    }

    /// Starts the server's container (already running is fine).
    pub async fn start(&self, server: i64) -> Result<(), DockerError> {
        match self.docker.start_container(&container_name(server), None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Graceful stop: SIGTERM (the server saves its world), SIGKILL after `timeout`.
    pub async fn stop(&self, server: i64, timeout: Duration) -> Result<(), DockerError> {
        let options = StopContainerOptions { t: Some(timeout.as_secs() as i32), ..Default::default() };
        match self.docker.stop_container(&container_name(server), Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the container and, with `volume`, the world on this node.
    pub async fn remove(&self, server: i64, volume: bool) -> Result<(), DockerError> {
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        match self.docker.remove_container(&container_name(server), Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if volume {
            // A volume helper (one that just read it for an archive, or a crash's left-over)
            // would hold the volume.
            let helper = format!("conductor-helper-s{server}");
            let options = RemoveContainerOptions { force: true, ..Default::default() };
            match self.docker.remove_container(&helper, Some(options)).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.docker.remove_volume(&volume_name(server), None::<RemoveVolumeOptions>).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub async fn inspect(&self, server: i64) -> Result<Option<ContainerInfo>, DockerError> {
        let mut got = self.docker.inspect_container(&container_name(server), None::<InspectContainerOptions>).await;
        for _ in 0..10 {
            if !matches!(got, Err(bollard::errors::Error::JsonDataError { .. })) {
                break;
            }
            // Mid-stop on Podman ("stopping"): ask again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
            got = self.docker.inspect_container(&container_name(server), None::<InspectContainerOptions>).await;
        }
        let c = match got {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let host_port = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&format!("{GAME_PORT}/tcp")).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port.and_then(|p| p.parse().ok())));
        Ok(Some(ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_owned(),
            server,
            running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
            exit_code: c.state.as_ref().and_then(|s| s.exit_code),
            host_port,
            node: c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_NODE))
                .and_then(|n| n.parse().ok()),
            spec: c.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get(LABEL_SPEC)).cloned(),
        }))
    }

    /// Every container this controller manages on the node (by label), running or not.
    /// The names of the volume helpers that exist on the engine (left-overs are a bug).
    pub async fn helpers(&self) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=helper")])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let listed = self.docker.list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect())
    }

    pub async fn list_managed(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        // Podman reports a container being stopped as "stopping", a state bollard's model
        // does not know (the whole list would fail to parse): list the steady states both
        // engines accept as filters (Podman rejects `dead` and `restarting`), and retry
        // briefly; a container skipped mid-transition is seen at the next tick. Podman also
        // fails a whole list with a 500 ("does not exist in database") when a container is
        // removed while it lists: retried the same way.
        let states = ["created", "running", "paused", "exited"];
        let filters = HashMap::from([
            ("label".to_string(), vec![format!("{LABEL_MANAGED}=true")]),
            ("status".to_string(), states.iter().map(|s| s.to_string()).collect()),
        ]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let mut listed = self.docker.list_containers(Some(options.clone())).await;
        for _ in 0..10 {
            match &listed {
                Err(bollard::errors::Error::JsonDataError { .. }) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    listed = self.docker.list_containers(Some(options.clone())).await;
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 500, message })
                    if message.contains("does not exist in database") =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    listed = self.docker.list_containers(Some(options.clone())).await;
                }
                _ => break,
            }
        }
        let mut out = Vec::new();
        for c in listed? {
            let server = c.labels.as_ref().and_then(|l| l.get(LABEL_SERVER)).and_then(|s| s.parse().ok());
            if let Some(server) = server {
                if let Some(info) = self.inspect(server).await? {
                    out.push(info);
                }
            }
        }
        out.sort_by_key(|c| c.server);
        Ok(out)
    }

    /// The servers whose world volume (`conductor-data-s<id>-world`) exists on the node.
    pub async fn volumes(&self) -> Result<Vec<i64>, DockerError> {
        let listed = self.docker.list_volumes(None::<bollard::query_parameters::ListVolumesOptions>).await?;
        let mut out: Vec<i64> = listed
            .volumes
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.name.strip_prefix("conductor-data-s")?.strip_suffix("-world")?.parse().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Status ping of the server's game port.
    pub async fn probe(&self, server: i64) -> Result<mcping::Status, String> {
        let info = self.inspect(server).await.map_err(|e| e.to_string())?.ok_or("no container")?;
        if !info.running {
            return Err("container not running".into());
        }
        let port = info.host_port.ok_or("no published game port")?;
        mcping::status(&self.host, port, Duration::from_secs(2)).await.map_err(|e| e.to_string())
    }

    /// Waits until the server answers a status ping.
    pub async fn wait_ready(&self, server: i64, timeout: Duration) -> Result<mcping::Status, DockerError> {
        let started = Instant::now();
        let mut last = String::from("not probed");
        while started.elapsed() < timeout {
            match self.probe(server).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(DockerError::NotReady { server, waited: started.elapsed(), last })
    }

    /// A tar stream of the server's `/data` (its world), read through the Docker API so that
    /// it works for remote nodes too; the container may be stopped.
    pub async fn download_data(&self, server: i64) -> Result<Vec<u8>, DockerError> {
        crate::archive::collect(self.download_stream(server)).await.map_err(DockerError::from_io)
    }

    /// The tar of `/data` as a stream (a world of any size in bounded memory).
    pub fn download_stream(&self, server: i64) -> crate::driver::ByteStream {
        let options = DownloadFromContainerOptions { path: "/data".into() };
        let stream = self.docker.download_from_container(&container_name(server), Some(options));
        Box::pin(stream.map(|c| c.map_err(std::io::Error::other)))
    }

    /// Writes a tar stream of `/data` (as [`Self::download_data`] gives it) into the running
    /// server container.
    pub async fn upload_data(&self, server: i64, tar: Vec<u8>) -> Result<(), DockerError> {
        self.upload(&container_name(server), crate::archive::stream_of(tar)).await
    }

    async fn upload(&self, container: &str, mut tar: crate::driver::ByteStream) -> Result<(), DockerError> {
        // Docker names a download of /data `data/…`, Podman `/…` (rooted at the directory):
        // extract either where it came from (the first entry's name, in the first chunk).
        let first = match tar.next().await {
            Some(c) => c.map_err(DockerError::from_io)?,
            None => bytes::Bytes::new(),
        };
        let name = first.get(..100).map(|n| String::from_utf8_lossy(n).trim_end_matches('\0').to_owned());
        let path = if name.as_deref().is_some_and(|n| n == "data" || n.starts_with("data/")) { "/" } else { "/data" };
        let options = bollard::query_parameters::UploadToContainerOptions { path: path.into(), ..Default::default() };
        let body = futures_util::stream::once(async move { Ok(first) }).chain(tar);
        // The engine answers once the whole world is in: the client's 120 s for a request
        // would cut a world of more than ~25 GB short (it did, at 30 GB), so an upload gets
        // `WORLD_COPY_TIMEOUT` instead.
        let docker = self.docker.clone().with_timeout(WORLD_COPY_TIMEOUT);
        docker.upload_to_container(container, Some(options), bollard::body_try_stream(body)).await?;
        Ok(())
    }

    /// The tar of `/data` as a stream, from the server's container or — when only its
    /// volume is left (a failed placement's container was removed, the world kept) — from a
    /// helper container mounting the volume, removed once the stream ends or is dropped.
    pub async fn download_world(&self, server: i64, helper: &Helper) -> Result<crate::driver::ByteStream, DockerError> {
        if self.inspect(server).await?.is_some() {
            return Ok(self.download_stream(server));
        }
        let name = self.start_helper(server, helper).await?;
        let options = DownloadFromContainerOptions { path: "/data".into() };
        let stream = self.docker.download_from_container(&name, Some(options));
        let guard = HelperGuard { docker: self.docker.clone(), name };
        Ok(Box::pin(stream.map(move |c| {
            let _owned = &guard;
            c.map_err(std::io::Error::other)
        })))
    }

    /// Creates and starts the helper container mounting the server's volume (one left over
    /// from a crash goes first); its name.
    async fn start_helper(&self, server: i64, helper: &Helper) -> Result<String, DockerError> {
        let name = format!("conductor-helper-s{server}");
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "helper".to_string()),
            (LABEL_SERVER.to_string(), server.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(helper.image.clone()),
            cmd: Some(helper.cmd.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/data", volume_name(server))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let remove = RemoveContainerOptions { force: true, ..Default::default() };
        let _ = self.docker.remove_container(&name, Some(remove.clone())).await;
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        self.docker.create_container(Some(options), body).await?;
        if let Err(e) = self.docker.start_container(&name, None::<StartContainerOptions>).await {
            let _ = self.docker.remove_container(&name, Some(remove)).await;
            return Err(e.into());
        }
        Ok(name)
    }

    /// Writes a tar stream of `/data` into the server's volume while its container
    /// does not run: through a short-lived helper container that mounts the volume (Podman
    /// mounts volumes of a never-started container only when it starts). `helper` is an
    /// image and a command that idles until SIGTERM without writing anything.
    pub async fn write_volume(
        &self,
        server: i64,
        tar: crate::driver::ByteStream,
        helper: &Helper,
    ) -> Result<(), DockerError> {
        let name = self.start_helper(server, helper).await?;
        let result = self.upload(&name, tar).await;
        let remove = RemoveContainerOptions { force: true, ..Default::default() };
        let _ = self.docker.remove_container(&name, Some(remove)).await;
        result
    }
}

/// Removes a helper container when the stream reading from it is dropped.
struct HelperGuard {
    docker: Docker,
    name: String,
}

impl Drop for HelperGuard {
    fn drop(&mut self) {
        let (docker, name) = (self.docker.clone(), std::mem::take(&mut self.name));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let remove = RemoveContainerOptions { force: true, ..Default::default() };
                let _ = docker.remove_container(&name, Some(remove)).await;
            });
        }
    }
}

impl DockerError {
    /// Whether the same call may succeed later (see [`crate::driver::Retry`]).
    pub fn retry(&self) -> crate::driver::Retry {
        use crate::driver::{retry_for_status, Retry};
        match self {
            DockerError::Api(bollard::errors::Error::DockerResponseServerError { status_code, .. }) => {
                retry_for_status(*status_code)
            }
            // Transport, timeouts, a reply mid-transition: worth another try.
            DockerError::Api(_) | DockerError::Endpoint { .. } | DockerError::NotReady { .. } => Retry::Transient,
            DockerError::NodeNotReady(_) => Retry::Transient,
            DockerError::NoContainer(_) => Retry::Permanent,
            // The restore verdict decides about checksums; a broken stream may work next time.
            DockerError::Data(_) => Retry::Transient,
        }
    }
}

impl From<DockerError> for crate::driver::DriverError {
    fn from(e: DockerError) -> Self {
        crate::driver::DriverError { retry: e.retry(), message: e.to_string() }
    }
}

impl crate::driver::NodeDriver for DockerNode {
    fn engine(&self) -> &str {
        self.engine_id.get().unwrap_or(&self.endpoint)
    }
    fn game_host(&self) -> &str {
        &self.host
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::ping(self).await?) })
    }
    fn ready_check<'a>(&'a self, images: &'a [String], marker: bool) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::ready_check(self, images, marker).await?) })
    }
    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, DriverError>> {
        Box::pin(async move { Ok(DockerNode::list_managed(self).await?) })
    }
    fn volumes(&self) -> BoxFuture<'_, Result<Vec<i64>, DriverError>> {
        Box::pin(async move { Ok(DockerNode::volumes(self).await?) })
    }
    fn running(&self, server: i64) -> BoxFuture<'_, Result<bool, DriverError>> {
        Box::pin(async move { Ok(DockerNode::inspect(self, server).await?.is_some_and(|c| c.running)) })
    }
    fn ensure_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<ContainerInfo, DriverError>> {
        Box::pin(async move { Ok(DockerNode::ensure_container(self, spec).await?) })
    }
    fn logs(
        &self,
        server: i64,
        lines: usize,
        follow: bool,
    ) -> BoxFuture<'_, Result<crate::driver::ByteStream, DriverError>> {
        Box::pin(async move { Ok(DockerNode::logs_stream(self, server, lines, follow).await?) })
    }
    fn console<'a>(
        &'a self,
        server: i64,
        via: &'a crate::driver::ConsoleVia,
        line: &'a str,
    ) -> BoxFuture<'a, Result<String, DriverError>> {
        Box::pin(async move { Ok(DockerNode::console(self, server, via, line).await?) })
    }
    fn run_job<'a>(&'a self, spec: &'a crate::driver::JobSpec) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::run_job(self, spec).await?) })
    }
    fn job_status(&self, job: i64) -> BoxFuture<'_, Result<Option<crate::driver::JobStatus>, DriverError>> {
        Box::pin(async move { Ok(DockerNode::job_status(self, job).await?) })
    }
    fn signal_job(&self, job: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::signal_job(self, job).await?) })
    }
    fn remove_job(&self, job: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::remove_job(self, job).await?) })
    }
    fn start(&self, server: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::start(self, server).await?) })
    }
    fn stop(&self, server: i64, timeout: Duration) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::stop(self, server, timeout).await?) })
    }
    fn remove(&self, server: i64, volume: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::remove(self, server, volume).await?) })
    }
    fn probe(&self, server: i64) -> BoxFuture<'_, Result<mcping::Status, DriverError>> {
        // A server that does not answer yet is the normal case while it boots: transient.
        Box::pin(async move { DockerNode::probe(self, server).await.map_err(DriverError::transient) })
    }
    fn logs_tail(&self, server: i64, lines: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        Box::pin(async move { Ok(DockerNode::logs_tail(self, server, lines).await?) })
    }
    fn download_data<'a>(
        &'a self,
        server: i64,
        helper: &'a Helper,
    ) -> BoxFuture<'a, Result<crate::driver::ByteStream, DriverError>> {
        Box::pin(async move { Ok(self.download_world(server, helper).await?) })
    }
    fn write_volume<'a>(
        &'a self,
        server: i64,
        tar: crate::driver::ByteStream,
        helper: &'a Helper,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move { Ok(DockerNode::write_volume(self, server, tar, helper).await?) })
    }
}
