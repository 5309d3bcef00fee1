//! `controller.toml`: a `[controller]` section (database, listen address, tokens, nodes,
//! cloud, mode) plus the sections a twin scenario shares with it (`[fleet]`, `[lifecycle]`,
//! `[policy]`, `[prices]`, `catalogue`), parsed by the one parser both use
//! (`conductor-config`) — so the controller runs the policies and parameters an analyst
//! tested. The twin's own sections are refused with their key path.

use conductor_config::{Consumer, Env, Shared};
use conductor_core::Millis;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Scenario(#[from] conductor_config::ScenarioError),
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// Docker API: `unix:///run/podman/podman.sock`, `tcp://host:2375`, `tls://host:2376` or
    /// `ssh://user@host[:port][/var/run/docker.sock]` (through the system's OpenSSH client).
    pub docker: String,
    /// Where the node's published game ports are reached (by the controller's status pings
    /// and the gateways): its private network address. Required for a remote node
    /// (`tcp`, `tls`, `ssh`); 127.0.0.1 for a local socket.
    pub host: Option<String>,
    /// The address game ports are published on (default: `host` if it is an address,
    /// 127.0.0.1 for `localhost`, else all addresses).
    pub game_bind: Option<String>,
    /// ssh:// endpoints: the private key, and the known_hosts file with the node's host key.
    pub ssh_identity: Option<PathBuf>,
    pub ssh_known_hosts: Option<PathBuf>,
    /// tls:// endpoints (mutual TLS, as `dockerd --tlsverify`): CA, client certificate, key.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl NodeConfig {
    /// The address game ports are reached at (see `host`).
    pub fn game_host(&self) -> &str {
        self.host.as_deref().unwrap_or("127.0.0.1")
    }

    pub fn access(&self) -> crate::docker::Access {
        crate::docker::Access {
            ssh_identity: self.ssh_identity.clone(),
            ssh_known_hosts: self.ssh_known_hosts.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CloudConfigFile {
    /// The API token, or the name of an environment variable holding it (`token_env`).
    pub token: Option<String>,
    pub token_env: Option<String>,
    /// `http://127.0.0.1:8081/v1` for the local fake; absent for the real API.
    pub base_url: Option<String>,
    /// The value of the `conductor-managed` label on this controller's VMs.
    pub cluster: String,
    /// The image VMs boot: an image name (`ubuntu-24.04`: the bootstrap installs the engine)
    /// or `snapshot:<id>` / `snapshot:<label selector>` (the newest available snapshot with
    /// those labels), prepared with `conductor node image`.
    pub image: String,
    pub location: Option<String>,
    /// One engine for every VM (local runs and tests: `unix:///run/podman/podman.sock`),
    /// reached at `vm_host`; VMs then get `user_data` as it is. Without it each VM is
    /// bootstrapped and reached on its own address with certificates from `[controller.pki]`.
    pub vm_docker: Option<String>,
    pub vm_host: Option<String>,
    pub user_data: Option<String>,
    /// The private network VMs are attached to and reached on (else their public IPv4).
    pub network: Option<String>,
    /// The port of each VM's Docker API (mutual TLS).
    #[serde(default = "docker_tls_port")]
    pub docker_port: u16,
    /// Who may reach a VM's Docker API (the controller's addresses, CIDR) and, with
    /// `gateway_cidrs`, its game ports.
    #[serde(default)]
    pub controller_cidrs: Vec<String>,
    #[serde(default)]
    pub gateway_cidrs: Vec<String>,
    /// Your own cloud-init template instead of the shipped one (same placeholders).
    pub cloud_init: Option<PathBuf>,
    /// Days a VM's engine certificate is valid.
    #[serde(default = "ninety")]
    pub certificate_days: u32,
    #[serde(default = "one")]
    pub requests_per_s: f64,
}

/// `[controller.pki]`: the fleet CA's key (PKCS#8 PEM; `conductor pki init` makes one), from
/// a file or an environment variable holding the PEM. Never logged.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PkiConfig {
    pub ca_key: Option<PathBuf>,
    pub ca_key_env: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ControllerSection {
    pub database: String,
    #[serde(default = "listen")]
    pub listen: String,
    pub admin_token: Option<String>,
    pub admin_token_env: Option<String>,
    #[serde(default = "enforce")]
    pub mode: crate::live::Mode,
    #[serde(default = "five")]
    pub tick_s: u64,
    /// Archives in this directory (a mounted storage box), unless `[controller.archive_s3]`
    /// names an S3-compatible bucket (credentials from the environment).
    pub archive_dir: PathBuf,
    pub archive_s3: Option<crate::archive::S3Config>,
    /// The plain template "default" (the image as it is), unless templates are configured.
    pub image: Option<String>,
    pub cmd: Option<Vec<String>>,
    /// `[controller.templates.<name>]`: what servers may run (see `template.rs`).
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, crate::template::TemplateFile>,
    /// The template of a server that names none ("default" if there is one).
    pub default_template: Option<String>,
    pub helper_image: Option<String>,
    pub helper_cmd: Option<Vec<String>>,
    #[serde(default = "thirty")]
    pub stop_timeout_s: u64,
    /// Metering window in seconds (charges are posted per server and window).
    #[serde(default = "sixty")]
    pub billing_window_s: u64,
    /// Owners are warned when their balance lasts less than this many hours.
    #[serde(default = "twenty_four")]
    pub warn_hours: f64,
    /// Optional webhook told of low balances and stops at zero (Discord-style `content`).
    pub warn_webhook: Option<String>,
    /// The unused sign-up credit expires this many days after sign-up (absent: never).
    pub promo_expiry_days: Option<u32>,
    /// The signing secret of Stripe's webhook (or the environment variable holding it):
    /// enables `POST /v1/webhooks/stripe`.
    pub stripe_webhook_secret: Option<String>,
    pub stripe_webhook_secret_env: Option<String>,
    /// Healing: a server that does not answer within this many seconds of its container's
    /// start (its world's copy does not count) is given up (its request placed again or
    /// abandoned by the core's rules).
    #[serde(default = "three_hundred")]
    pub start_timeout_s: u64,
    /// A running server that does not answer its status ping this long crashed.
    #[serde(default = "sixty")]
    pub crash_grace_s: u64,
    /// A node whose heartbeat fails this long is unreachable (dead `lifecycle.dead_after_s`
    /// later).
    #[serde(default = "fifteen")]
    pub unreachable_after_s: u64,
    /// A VM not ready this long after its create is deleted.
    #[serde(default = "six_hundred")]
    pub vm_ready_timeout_s: u64,
    /// Containers and VMs nobody knows are removed this long after they were first seen.
    #[serde(default = "three_hundred")]
    pub gc_grace_s: u64,
    /// Intents not done this long after they were asked for are reported.
    #[serde(default = "thirty_six_hundred")]
    pub stale_after_s: u64,
    /// Operators' webhook (Discord-style `content`): dead nodes and their return, crash
    /// loops, commands failed for good, VMs that never became ready — once per incident.
    pub ops_webhook: Option<String>,
    /// World copies (archives, restores, moves between nodes) at once in total; one per node.
    #[serde(default = "two")]
    pub max_copies: usize,
    /// Server `id`'s game port on its node is `game_port_base + id` (stable across restarts
    /// and restores, so a firewall can open one range); absent: any free port (the gateway's
    /// route follows it).
    pub game_port_base: Option<u16>,
    /// Backups of every world (`[controller.backups]`).
    #[serde(default)]
    pub backups: BackupsConfig,
    /// A world past this percentage of its plan's disk (`disk_mb`) is not started; past
    /// 100 % its owner is told.
    #[serde(default = "one_fifty")]
    pub hard_quota_pct: u32,
    /// Garbage collection of the archive store: listed every `object_gc_every_s` (0: never);
    /// an object nothing references is removed `object_grace_s` after it was found; a
    /// deleted server's copies are kept `deleted_retention_days`.
    #[serde(default = "thirty_six_hundred")]
    pub object_gc_every_s: u64,
    #[serde(default = "one_day_s")]
    pub object_grace_s: u64,
    #[serde(default = "thirty_days")]
    pub deleted_retention_days: u32,
    /// One per `[[fleet.dedicated]]` node, in the same order.
    #[serde(default)]
    pub node: Vec<NodeConfig>,
    pub cloud: Option<CloudConfigFile>,
    pub pki: Option<PkiConfig>,
    #[serde(default)]
    pub forecast: ForecastConfigFile,
    #[serde(default)]
    pub jobs: JobsConfigFile,
}

/// `[controller.jobs]`: preemptible jobs owners may submit (`POST /v1/jobs`).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfigFile {
    /// Images an owner may run as a job (an admin may run any); none: only admins submit.
    pub images: Vec<String>,
    /// What an owner's job is billed per GiB-hour of run time (EUR, a decimal string).
    pub price_per_gib_hour: Option<String>,
    /// The longest run a job may ask for (hours).
    pub max_duration_h: Option<u32>,
    /// How long a job has between its notice (SIGTERM) and its kill, when a paying server
    /// needs its room (the twin's `[jobs] notice_s`).
    pub notice_s: Option<u32>,
}

impl JobsConfigFile {
    pub fn setup(&self) -> Result<crate::live::JobsSetup, String> {
        let d = crate::live::JobsSetup::default();
        let price = match &self.price_per_gib_hour {
            Some(p) => p.parse::<crate::store::Money>().ok().filter(|p| !p.is_sign_negative()).ok_or_else(|| {
                format!("controller.jobs.price_per_gib_hour: a non-negative decimal such as \"0.01\", got {p:?}")
            })?,
            None => d.price_per_gib_hour,
        };
        let max_duration = match self.max_duration_h {
            Some(0) => return Err("controller.jobs.max_duration_h: at least 1".into()),
            Some(h) => Millis::from(h) * conductor_core::time::HOUR,
            None => d.max_duration,
        };
        Ok(crate::live::JobsSetup { images: self.images.clone(), price_per_gib_hour: price, max_duration })
    }
}

/// `[controller.forecast]`: when the nightly forecast is made from the event log, on how
/// much history, and how old it may get before forecast-driven policies go neutral. Used
/// when a policy reads a forecast (`[policy.predictive]`, `[policy.spare_pool]` with
/// `from_forecast`); the model is theirs (`source`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfigFile {
    /// Local time of the nightly run, "HH:MM".
    pub at: String,
    /// IANA time zone of `at` (and of the daily and weekly seasons).
    pub timezone: String,
    pub window_days: u32,
    pub max_age_h: u32,
    /// After a failed run, the next attempt this many minutes later.
    pub retry_after_min: u32,
}

impl Default for ForecastConfigFile {
    fn default() -> Self {
        ForecastConfigFile {
            at: "03:00".into(),
            timezone: "UTC".into(),
            window_days: 28,
            max_age_h: 30,
            retry_after_min: 15,
        }
    }
}

impl ForecastConfigFile {
    /// The setup for `source`, checked: key paths in the errors.
    pub fn setup(
        &self,
        source: &conductor_config::ForecastSource,
        idle_timeout: Millis,
    ) -> Result<crate::forecasting::ForecastSetup, String> {
        use conductor_config::ForecastSource;
        let need_days = match source {
            ForecastSource::Perfect => {
                return Err(
                    "policy.predictive.source: \"perfect\" is the future itself; the controller forecasts from \
                            its own history (mstl, seasonal-naive, …)"
                        .into(),
                )
            }
            ForecastSource::SeasonalNaive => 7,
            ForecastSource::Model(_) => 14,
        };
        let at = self
            .at
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .filter(|&(h, m)| h < 24 && m < 60 && self.at.len() == 5)
            .ok_or_else(|| format!("controller.forecast.at: \"HH:MM\" (e.g. \"03:00\"), got {:?}", self.at))?;
        let timezone = self.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            format!(
                "controller.forecast.timezone: unknown time zone {:?} (an IANA name such as Europe/Berlin)",
                self.timezone
            )
        })?;
        if self.window_days < need_days {
            return Err(format!(
                "controller.forecast.window_days: at least {need_days} for this source (its seasons need that much history), got {}",
                self.window_days
            ));
        }
        if self.max_age_h == 0 {
            return Err("controller.forecast.max_age_h: at least 1".into());
        }
        Ok(crate::forecasting::ForecastSetup {
            source: source.clone(),
            timezone,
            at,
            window: Millis::from(self.window_days) * conductor_core::time::DAY,
            max_age: Millis::from(self.max_age_h) * conductor_core::time::HOUR,
            idle_timeout,
            retry_after: Millis::from(self.retry_after_min.max(1)) * conductor_core::time::MINUTE,
        })
    }
}

/// `[controller.backups]`: when worlds are copied and how many copies are kept.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct BackupsConfig {
    /// A backup at every stop.
    pub on_stop: bool,
    /// Every this many hours while a server runs (0: none).
    pub every_h: u32,
    /// Kept: the newest `keep_last`, and the newest of each of the last `keep_daily` days
    /// and `keep_weekly` weeks (UTC).
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
}

impl Default for BackupsConfig {
    fn default() -> Self {
        let r = conductor_core::backups::Retention::default();
        BackupsConfig { on_stop: true, every_h: 6, keep_last: r.last, keep_daily: r.daily, keep_weekly: r.weekly }
    }
}

impl ControllerSection {
    pub fn worlds(&self) -> crate::live::Worlds {
        let b = &self.backups;
        crate::live::Worlds {
            backup_on_stop: b.on_stop,
            backup_every_h: b.every_h,
            retention: conductor_core::backups::Retention {
                last: b.keep_last,
                daily: b.keep_daily,
                weekly: b.keep_weekly,
            },
            hard_quota_pct: self.hard_quota_pct,
            objects: crate::live::ObjectGc {
                every: self.object_gc_every_s as i64 * 1000,
                grace: self.object_grace_s as i64 * 1000,
                deleted_retention: i64::from(self.deleted_retention_days) * 86_400_000,
            },
        }
    }
}

fn docker_tls_port() -> u16 {
    2376
}
fn ninety() -> u32 {
    90
}
fn one_fifty() -> u32 {
    150
}
fn one_day_s() -> u64 {
    86_400
}
fn thirty_days() -> u32 {
    30
}
fn listen() -> String {
    "127.0.0.1:8080".into()
}
fn enforce() -> crate::live::Mode {
    crate::live::Mode::Enforce
}
fn thirty_six_hundred() -> u64 {
    3600
}
fn fifteen() -> u64 {
    15
}
fn three_hundred() -> u64 {
    300
}
fn six_hundred() -> u64 {
    600
}
fn five() -> u64 {
    5
}
fn sixty() -> u64 {
    60
}
fn twenty_four() -> f64 {
    24.0
}
fn thirty() -> u64 {
    30
}
fn two() -> usize {
    2
}
fn one() -> f64 {
    1.0
}

pub struct ControllerConfig {
    /// The nightly forecast, when a policy reads one.
    pub forecast: Option<crate::forecasting::ForecastSetup>,
    pub file: PathBuf,
    pub controller: ControllerSection,
    /// The sections the twin reads alike (fleet, lifecycle, prices, policy, catalogue).
    pub shared: Shared,
    pub admin_token: String,
    pub cloud_token: Option<String>,
    pub stripe_secret: Option<String>,
    /// The fleet CA (`[controller.pki]`), loaded.
    pub pki: Option<std::sync::Arc<crate::pki::Pki>>,
    /// The cloud-init template VMs boot with (per-VM mode): its name in errors, its text.
    pub cloud_init: Option<(String, String)>,
    pub templates: crate::template::Templates,
}

fn secret(
    path: &Path,
    key: &str,
    value: &Option<String>,
    var: &Option<String>,
    env: Env<'_>,
) -> Result<Option<String>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { path: path.into(), message };
    match (value, var) {
        (Some(_), Some(_)) => Err(invalid(format!("{key}: give the token or token_env, not both"))),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(var)) => {
            env(var).map(Some).ok_or_else(|| invalid(format!("{key}_env: environment variable {var} is not set")))
        }
        (None, None) => Ok(None),
    }
}

fn cidr_ok(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
}

impl ControllerConfig {
    /// The image volume helpers run.
    pub fn helper_image(&self) -> String {
        let c = &self.controller;
        c.helper_image.clone().or_else(|| c.image.clone()).expect("checked at load")
    }

    /// Every image a node needs: the templates' and the helper's.
    pub fn images(&self) -> Vec<String> {
        let mut v = self.templates.images();
        v.push(self.helper_image());
        v.sort();
        v.dedup();
        v
    }

    /// Loads `path` with the process environment (secrets named by `*_env` keys).
    pub fn load(path: &Path) -> Result<ControllerConfig, ConfigError> {
        ControllerConfig::load_in(path, &conductor_config::process_env)
    }

    /// Loads `path`; `*_env` keys are looked up in `env`.
    pub fn load_in(path: &Path, env: Env<'_>) -> Result<ControllerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.into(), message };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        let section = table.remove("controller").ok_or_else(|| invalid("a [controller] section is required".into()))?;
        let controller: ControllerSection = serde_path_to_error::deserialize(section)
            .map_err(|e| invalid(format!("controller.{}: {}", e.path(), e.inner().message())))?;
        // The shared sections, from the text itself (so errors name the right lines); the
        // twin's own sections are refused there.
        let scenario = Shared::parse(path, &text, Consumer::Controller)?;
        if scenario.dedicated.len() != controller.node.len() {
            return Err(invalid(format!(
                "controller.node: {} node(s) for {} dedicated node(s) in [[fleet.dedicated]]; give one per node, in order",
                controller.node.len(),
                scenario.dedicated.len()
            )));
        }
        for (i, n) in controller.node.iter().enumerate() {
            if n.host.is_none() && !n.docker.starts_with("unix://") {
                return Err(invalid(format!(
                    "controller.node[{i}].host: required for a remote node ({}): its private address, where its game ports are published and reached",
                    n.name
                )));
            }
        }
        if controller.billing_window_s == 0 || !(controller.warn_hours.is_finite() && controller.warn_hours >= 0.0) {
            return Err(invalid("controller.billing_window_s must be positive and warn_hours not negative".into()));
        }
        if controller.hard_quota_pct < 100 {
            return Err(invalid(format!(
                "controller.hard_quota_pct: at least 100 (the plan's disk itself), got {}",
                controller.hard_quota_pct
            )));
        }
        if scenario.cloud.is_some() != controller.cloud.is_some() {
            return Err(invalid("controller.cloud: needed exactly when [fleet.cloud] is set".into()));
        }
        let admin_token =
            secret(path, "controller.admin_token", &controller.admin_token, &controller.admin_token_env, env)?
                .filter(|t| t.len() >= 16)
                .ok_or_else(|| invalid("controller.admin_token: required, at least 16 characters".into()))?;
        let cloud_token = match &controller.cloud {
            Some(c) => Some(
                secret(path, "controller.cloud.token", &c.token, &c.token_env, env)?
                    .ok_or_else(|| invalid("controller.cloud.token: required".into()))?,
            ),
            None => None,
        };
        let stripe_secret = secret(
            path,
            "controller.stripe_webhook_secret",
            &controller.stripe_webhook_secret,
            &controller.stripe_webhook_secret_env,
            env,
        )?;
        let pki = match &controller.pki {
            None => None,
            Some(p) => {
                let pem = match (&p.ca_key, &p.ca_key_env) {
                    (Some(file), None) => std::fs::read_to_string(file)
                        .map_err(|e| invalid(format!("controller.pki.ca_key: reading {}: {e}", file.display())))?,
                    (None, Some(var)) => env(var).ok_or_else(|| {
                        invalid(format!("controller.pki.ca_key_env: environment variable {var} is not set"))
                    })?,
                    _ => return Err(invalid("controller.pki: give ca_key (a file) or ca_key_env, exactly one".into())),
                };
                let cluster = controller.cloud.as_ref().map_or("conductor", |c| c.cluster.as_str());
                let pki = crate::pki::Pki::from_key_pem(&pem, cluster).map_err(|e| {
                    invalid(format!("controller.pki: {e} (a PKCS#8 PEM key, as `conductor pki init` writes)"))
                })?;
                Some(std::sync::Arc::new(pki))
            }
        };
        let mut cloud_init = None;
        if let Some(c) = &controller.cloud {
            match (&c.vm_docker, &pki) {
                (Some(_), _) => {
                    if c.vm_host.is_none() && c.network.is_some() {
                        return Err(invalid("controller.cloud.network: VMs share vm_docker; give vm_host".into()));
                    }
                }
                (None, None) => {
                    return Err(invalid(
                        "controller.cloud: without vm_docker (one engine for all VMs) each VM is reached with certificates from [controller.pki]: add it".into(),
                    ))
                }
                (None, Some(_)) => {
                    if c.user_data.is_some() || c.vm_host.is_some() {
                        return Err(invalid(
                            "controller.cloud.user_data/vm_host: only with vm_docker; VMs boot from cloud_init (a template) and are reached on their own address".into(),
                        ));
                    }
                    if c.controller_cidrs.is_empty() {
                        return Err(invalid(
                            "controller.cloud.controller_cidrs: required: the addresses VMs accept their Docker API from (e.g. [\"10.0.0.2/32\"])".into(),
                        ));
                    }
                    for (key, list) in [("controller_cidrs", &c.controller_cidrs), ("gateway_cidrs", &c.gateway_cidrs)] {
                        if let Some(bad) = list.iter().find(|x| !cidr_ok(x)) {
                            return Err(invalid(format!("controller.cloud.{key}: {bad:?} is not an IPv4 CIDR (a.b.c.d/n)")));
                        }
                    }
                    let template = match &c.cloud_init {
                        Some(file) => {
                            let text = std::fs::read_to_string(file).map_err(|e| {
                                invalid(format!("controller.cloud.cloud_init: reading {}: {e}", file.display()))
                            })?;
                            (file.display().to_string(), text)
                        }
                        None if c.image.starts_with("snapshot:") => ("attach.yaml".into(), crate::bootstrap::ATTACH.into()),
                        None => ("vm.yaml".into(), crate::bootstrap::VM.into()),
                    };
                    cloud_init = Some(template);
                }
            }
            if let Some(id) = c.image.strip_prefix("snapshot:") {
                let selector_ok = |b: u8| b.is_ascii_alphanumeric() || b"._-/=,!".contains(&b);
                if id.is_empty() || !id.bytes().all(selector_ok) {
                    return Err(invalid(format!(
                        "controller.cloud.image: snapshot:<numeric id> or snapshot:<label selector> (e.g. snapshot:conductor-node=v3), got {:?}",
                        c.image
                    )));
                }
            }
        }
        let templates = crate::template::Templates::from_config(
            &controller.templates,
            controller.image.as_deref(),
            controller.cmd.clone(),
            controller.default_template.as_deref(),
        )
        .map_err(invalid)?;
        if controller.helper_image.is_none() && controller.image.is_none() {
            return Err(invalid(
                "controller.helper_image: required without controller.image (the image volume helpers run)".into(),
            ));
        }
        controller.jobs.setup().map_err(invalid)?;
        let mut scenario = scenario;
        if let Some(s) = controller.jobs.notice_s {
            scenario.scheduler.job_notice = Millis::from(s) * conductor_core::time::SECOND;
        }
        let forecast = match &scenario.forecast_source {
            Some(source) => Some(controller.forecast.setup(source, scenario.lifecycle.idle_timeout).map_err(invalid)?),
            None => None,
        };
        Ok(ControllerConfig {
            forecast,
            templates,
            file: path.into(),
            controller,
            shared: scenario,
            admin_token,
            cloud_token,
            stripe_secret,
            pki,
            cloud_init,
        })
    }
}
