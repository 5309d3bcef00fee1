//! The cloud driver: Hetzner Cloud through the `hcloud` crate. VMs get deterministic names
//! (the intent's key), so a retried create cannot make a duplicate: a `uniqueness_error`
//! means the VM exists, and it is looked up by name. Labels mark what the controller owns,
//! so after a restart it lists its VMs by label selector. Requests pass a client-side rate
//! budget (the crate drops response headers, so the server's remaining quota is unknown)
//! and are retried with exponential backoff on 429 and 5xx.

use crate::driver::{BoxFuture, DriverError};
use hcloud::apis::configuration::Configuration;
use hcloud::apis::{actions_api, networks_api, servers_api, Error as HError};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const LABEL_MANAGED: &str = "conductor-managed";

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("Hetzner API {status}: {code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("Hetzner API: {0}")]
    Transport(String),
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("action {id} failed: {message}")]
    ActionFailed { id: i64, message: String },
    #[error("action {id} not finished after {waited:?}")]
    ActionTimeout { id: i64, waited: Duration },
}

impl CloudError {
    fn retryable(&self) -> bool {
        match self {
            CloudError::Api { status, .. } => *status == 429 || *status >= 500,
            CloudError::Transport(_) => true,
            _ => false,
        }
    }

    /// Whether the same call may succeed later: an exhausted retry budget or a slow action
    /// may, a refused request (invalid spec, quota, not found) or a failed action not.
    pub fn retry(&self) -> crate::driver::Retry {
        use crate::driver::Retry;
        match self {
            CloudError::Api { .. } | CloudError::Transport(_) if self.retryable() => Retry::Transient,
            CloudError::Exhausted { .. } | CloudError::ActionTimeout { .. } => Retry::Transient,
            _ => Retry::Permanent,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn api_error<T>(e: HError<T>) -> CloudError {
    match e {
        HError::ResponseError(r) => {
            let v: serde_json::Value = serde_json::from_str(&r.content).unwrap_or_default();
            CloudError::Api {
                status: r.status.as_u16(),
                code: v["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
                message: v["error"]["message"].as_str().unwrap_or(&r.content).to_owned(),
            }
        }
        other => CloudError::Transport(other.to_string()),
    }
}

/// A VM as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    pub id: i64,
    pub name: String,
    pub type_name: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
    /// Where the controller reaches it: its address on the configured private network, or
    /// its public IPv4 without one (`None` until the cloud has assigned it).
    pub address: Option<String>,
}

fn vm(s: &hcloud::models::Server, network: Option<i64>) -> Vm {
    let address = match network {
        Some(id) => s.private_net.iter().find(|p| p.network == Some(id)).and_then(|p| p.ip.clone()),
        None => s.public_net.ipv4.as_ref().map(|v| v.ip.clone()).filter(|ip| !ip.is_empty()),
    };
    Vm {
        id: s.id,
        name: s.name.clone(),
        type_name: s.server_type.name.clone(),
        running: s.status == hcloud::models::server::Status::Running,
        labels: s.labels.clone(),
        address,
    }
}

/// Knobs of the client: rate budget and retries.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// Requests allowed per second, on average (a token bucket of `burst`).
    pub requests_per_s: f64,
    pub burst: f64,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Default for CloudConfig {
    fn default() -> Self {
        // Hetzner allows 3600 requests per hour per project: 1 per second on average.
        CloudConfig { requests_per_s: 1.0, burst: 10.0, max_attempts: 6, backoff: Duration::from_millis(500) }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct HetznerCloud {
    config: Configuration,
    knobs: CloudConfig,
    bucket: Mutex<Bucket>,
    /// The private network VMs are attached to and reached on (by name), and its id once
    /// looked up.
    network: Option<String>,
    network_id: Mutex<Option<i64>>,
}

/// A VM to create.
#[derive(Clone)]
pub struct NewVm {
    /// Deterministic: the same intent always asks for the same name.
    pub name: String,
    pub type_name: String,
    /// An image name or a snapshot id.
    pub image: String,
    pub location: Option<String>,
    pub user_data: Option<String>,
    pub labels: HashMap<String, String>,
}

/// The user data holds the VM's private key: never printed.
impl std::fmt::Debug for NewVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewVm")
            .field("name", &self.name)
            .field("type_name", &self.type_name)
            .field("image", &self.image)
            .field("location", &self.location)
            .field("user_data", &self.user_data.as_ref().map(|u| format!("<{} bytes>", u.len())))
            .field("labels", &self.labels)
            .finish()
    }
}

impl HetznerCloud {
    /// `base_url`: `None` for the real API, or e.g. `http://127.0.0.1:PORT/v1` (the fake).
    pub fn new(token: &str, base_url: Option<&str>, knobs: CloudConfig) -> HetznerCloud {
        let mut config = Configuration::new();
        config.bearer_access_token = Some(token.to_owned());
        if let Some(url) = base_url {
            config.base_path_mapping.insert("https://api.hetzner.cloud/v1".into(), url.trim_end_matches('/').into());
        }
        let bucket = Mutex::new(Bucket { tokens: knobs.burst, at: Instant::now() });
        HetznerCloud { config, knobs, bucket, network: None, network_id: Mutex::new(None) }
    }

    /// VMs are attached to the private network `name` and reached on their address there.
    pub fn with_network(mut self, name: Option<String>) -> HetznerCloud {
        self.network = name;
        self
    }

    /// The configured network's id (looked up once); a network that does not exist is a
    /// permanent error naming it.
    async fn network(&self) -> Result<Option<i64>, CloudError> {
        let Some(name) = &self.network else { return Ok(None) };
        if let Some(id) = *self.network_id.lock().await {
            return Ok(Some(id));
        }
        let found = self
            .call(|| async {
                let params = networks_api::ListNetworksParams { name: Some(name.clone()), ..Default::default() };
                let r = networks_api::list_networks(&self.config, params).await.map_err(api_error)?;
                Ok(r.networks.iter().find(|n| &n.name == name).map(|n| n.id))
            })
            .await?;
        let id = found.ok_or_else(|| CloudError::Api {
            status: 404,
            code: "not_found".into(),
            message: format!("no network named {name:?} (controller.cloud.network)"),
        })?;
        *self.network_id.lock().await = Some(id);
        Ok(Some(id))
    }

    /// Waits for a token of the rate budget.
    async fn take(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().await;
                let now = Instant::now();
                b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.knobs.requests_per_s)
                    .min(self.knobs.burst);
                b.at = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / self.knobs.requests_per_s)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs `call` within the budget, retrying retryable failures with backoff.
    async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudError>>,
    {
        let mut delay = self.knobs.backoff;
        let mut last = String::new();
        for attempt in 1..=self.knobs.max_attempts {
            self.take().await;
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && attempt < self.knobs.max_attempts => {
                    last = e.to_string();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) if e.retryable() => {
                    return Err(CloudError::Exhausted { attempts: attempt, last: e.to_string() });
                }
                Err(e) => return Err(e),
            }
        }
        Err(CloudError::Exhausted { attempts: self.knobs.max_attempts, last })
    }

    /// VMs matching a label selector (e.g. `conductor-managed=prod`).
    pub async fn list(&self, selector: &str) -> Result<Vec<Vm>, CloudError> {
        let network = self.network().await?;
        self.call(|| async {
            let params =
                servers_api::ListServersParams { label_selector: Some(selector.to_owned()), ..Default::default() };
            let r = servers_api::list_servers(&self.config, params).await.map_err(api_error)?;
            Ok(r.servers.iter().map(|s| vm(s, network)).collect())
        })
        .await
    }

    pub async fn by_name(&self, name: &str) -> Result<Option<Vm>, CloudError> {
        let network = self.network().await?;
        self.call(|| async {
            let params = servers_api::ListServersParams { name: Some(name.to_owned()), ..Default::default() };
            let r = servers_api::list_servers(&self.config, params).await.map_err(api_error)?;
            Ok(r.servers.first().map(|s| vm(s, network)))
        })
        .await
    }

    /// The image a create names: `snapshot:<label selector>` is the newest available
    /// snapshot carrying those labels (prepared with `conductor node image`); anything else
    /// (a name, a numeric id) as it is.
    async fn image(&self, image: &str) -> Result<String, CloudError> {
        let Some(selector) = image.strip_prefix("snapshot:") else { return Ok(image.to_owned()) };
        if selector.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(selector.to_owned());
        }
        let found = self
            .call(|| async {
                let params = hcloud::apis::images_api::ListImagesParams {
                    r#type: Some(vec!["snapshot".into()]),
                    label_selector: Some(selector.to_owned()),
                    sort: Some(vec!["created:desc".into()]),
                    ..Default::default()
                };
                let r = hcloud::apis::images_api::list_images(&self.config, params).await.map_err(api_error)?;
                Ok(r.images
                    .iter()
                    .filter(|i| i.status == hcloud::models::image::Status::Available)
                    .max_by(|a, b| a.created.cmp(&b.created))
                    .map(|i| i.id))
            })
            .await?;
        found.map(|id| id.to_string()).ok_or_else(|| CloudError::Api {
            status: 404,
            code: "not_found".into(),
            message: format!("no available snapshot has the labels {selector:?} (controller.cloud.image)"),
        })
    }

    /// Creates the VM, or finds it if a VM of that name exists (a retry after a crash or a
    /// lost answer). Returns the VM and the create action to wait for (if this call made it).
    pub async fn create(&self, new: &NewVm) -> Result<(Vm, Option<i64>), CloudError> {
        let network = self.network().await?;
        let image = self.image(&new.image).await?;
        let made = self
            .call(|| async {
                let mut req =
                    hcloud::models::CreateServerRequest::new(image.clone(), new.name.clone(), new.type_name.clone());
                req.labels = Some(new.labels.clone());
                req.location = new.location.clone();
                req.user_data = new.user_data.clone();
                req.start_after_create = Some(true);
                req.networks = network.map(|id| vec![id]);
                let params = servers_api::CreateServerParams { create_server_request: req };
                servers_api::create_server(&self.config, params).await.map_err(api_error)
            })
            .await;
        match made {
            Ok(r) => Ok((vm(&r.server, network), Some(r.action.id))),
            Err(e) if e.code() == Some("uniqueness_error") => match self.by_name(&new.name).await? {
                Some(existing) => Ok((existing, None)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Polls an action until it succeeds, fails, or `timeout` passes.
    pub async fn wait_action(&self, id: i64, timeout: Duration) -> Result<(), CloudError> {
        let started = Instant::now();
        loop {
            let a = self
                .call(|| async {
                    let params = actions_api::GetActionParams { id };
                    actions_api::get_action(&self.config, params).await.map_err(api_error)
                })
                .await?;
            match a.action.status {
                hcloud::models::action::Status::Success => return Ok(()),
                hcloud::models::action::Status::Error => {
                    let message = a.action.error.map(|e| e.message).unwrap_or_else(|| "unknown".into());
                    return Err(CloudError::ActionFailed { id, message });
                }
                hcloud::models::action::Status::Running => {}
            }
            if started.elapsed() >= timeout {
                return Err(CloudError::ActionTimeout { id, waited: started.elapsed() });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes a VM; one that is already gone is fine.
    pub async fn delete(&self, id: i64) -> Result<(), CloudError> {
        let r = self
            .call(|| async {
                let params = servers_api::DeleteServerParams { id };
                servers_api::delete_server(&self.config, params).await.map_err(api_error)
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("not_found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl From<CloudError> for crate::driver::DriverError {
    fn from(e: CloudError) -> Self {
        crate::driver::DriverError { retry: e.retry(), message: e.to_string() }
    }
}

impl crate::driver::CloudDriver for HetznerCloud {
    fn list<'a>(&'a self, selector: &'a str) -> BoxFuture<'a, Result<Vec<Vm>, DriverError>> {
        Box::pin(async move { Ok(HetznerCloud::list(self, selector).await?) })
    }
    fn create<'a>(&'a self, new: &'a NewVm) -> BoxFuture<'a, Result<Vm, DriverError>> {
        Box::pin(async move { Ok(HetznerCloud::create(self, new).await?.0) })
    }
    fn delete(&self, id: i64) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move { Ok(HetznerCloud::delete(self, id).await?) })
    }
}
