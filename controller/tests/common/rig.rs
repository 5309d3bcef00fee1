//! The HTTP API over a live engine on a virtual clock, as the end-to-end tests drive it,
//! and the node and VM types they share.

use conductor_controller::api::{router, Api, ApiConfig};
use conductor_controller::live::Live;
use conductor_controller::store::{token_hash, ServerState, Store};
use conductor_core::catalogue::Reserve;
use conductor_core::{CloudType, DedicatedType, Millis};
use rust_decimal::Decimal;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN: &str = "admin-secret-token";
const S: Millis = 1000;

/// A 2 GiB VM type (cx23 prices).
pub fn vm_type() -> CloudType {
    CloudType {
        name: "cx23".into(),
        ram_mib: 2048,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        hourly_eur: Decimal::new(6, 3),
        monthly_cap_eur: Decimal::new(399, 2),
        reserve: Reserve::Mib(0),
    }
}

/// A dedicated node type of `ram_mib`, all of it usable.
pub fn dedicated_type(name: &str, ram_mib: u32) -> DedicatedType {
    DedicatedType {
        name: name.into(),
        ram_mib,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(10),
        reserve: Reserve::Mib(0),
    }
}

pub struct Rig<St: Store> {
    pub app: axum::Router,
    pub api: Arc<Api<St>>,
    pub clock: Arc<AtomicI64>,
}

impl<St: Store + 'static> Rig<St> {
    /// The API (admin token [`ADMIN`]) over `live`, its time read from `clock`.
    pub fn new(store: Arc<St>, live: Live<St>, clock: Arc<AtomicI64>, max_plan_mib: u32) -> Self {
        let now = clock.clone();
        let api = Arc::new(Api {
            store,
            config: ApiConfig {
                admin_token_sha256: token_hash(ADMIN),
                max_plan_mib,
                now: Box::new(move || now.load(Ordering::SeqCst)),
                prices: Default::default(),
                stripe_secret: None,
                warn_before: 86_400_000,
            },
            live: Some(Arc::new(tokio::sync::Mutex::new(live))),
            routes: Default::default(),
        });
        Rig { app: router(api.clone()), api, clock }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (axum::http::StatusCode, serde_json::Value) {
        super::call(&self.app, method, path, token, body).await
    }

    /// One step of the engine, a virtual second on.
    pub async fn tick(&self) {
        let now = self.clock.fetch_add(S, Ordering::SeqCst) + S;
        conductor_controller::serve::step(self.api.live.as_ref().unwrap(), now).await.unwrap();
    }

    pub async fn ticks(&self, n: usize) {
        for _ in 0..n {
            self.tick().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ticks until the server is in `want` (at most 150 virtual seconds).
    pub async fn until(&self, id: i64, want: ServerState) {
        for _ in 0..150 {
            self.tick().await;
            if self.api.store.server(id).await.unwrap().state == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let events = self.api.store.events(0, 100_000).await.unwrap();
        let tail: Vec<String> = events
            .iter()
            .rev()
            .take(25)
            .map(|e| format!("{} {:?} {:?} {}", e.kind, e.server, e.node, e.data))
            .collect();
        panic!(
            "timed out waiting for server {id} to be {want:?}; the last events (newest first):\n{}",
            tail.join("\n")
        );
    }
}

/// An engine on one dedicated node of `ram_mib` (the Podman engine `docker`) running the
/// stand-in, in enforce mode, archives in `archive`, with `cloud` if given.
pub fn podman_engine(
    docker: Arc<conductor_controller::docker::DockerNode>,
    ram_mib: u32,
    scheduler: conductor_core::SchedulerConfig,
    cloud: Option<conductor_controller::live::CloudSetup>,
    archive: &std::path::Path,
) -> conductor_controller::live::LiveConfig {
    use conductor_controller::docker::Helper;
    use conductor_controller::driver::NodeDriver;
    use conductor_controller::live::{DedicatedNode, LiveConfig, Mode};
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler,
        dedicated: vec![DedicatedNode {
            name: "ded".into(),
            kind: dedicated_type("small", ram_mib),
            docker: docker as Arc<dyn NodeDriver>,
        }],
        cloud,
        idle_timeout: 3600 * S,
        stop_timeout: Duration::from_secs(10),
        image: super::IMAGE.into(),
        cmd: None,
        helper: Helper { image: super::IMAGE.into(), cmd: vec!["/standin".into(), "hold".into()] },
        archive: Arc::new(conductor_controller::archive::Archive::dir(archive).unwrap()),
        mode: Mode::Enforce,
        billing: Default::default(),
        healing: Default::default(),
    }
}
