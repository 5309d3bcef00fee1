//! A small fleet on the in-memory drivers and a virtual clock: one 4 GiB dedicated node,
//! 4 GiB VMs (at most two) from the fake cloud, the reference policy with consolidation,
//! and an engine on the in-memory store that can be restarted.

use conductor_controller::billing::BillingSetup;
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::fake::{Clock, FakeCloud, FakeNode, Faults, MemArchive};
use conductor_controller::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{Event, NewEntry, NewServer, ServerState, Store};
use conductor_controller::MemoryStore;
use conductor_core::catalogue::Reserve;
use conductor_core::consolidation::ConsolidationParams;
use conductor_core::model::CostMode;
use conductor_core::time::{HOUR, MINUTE, SECOND};
use conductor_core::{CloudType, DedicatedType, Millis, SchedulerConfig};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const T0: Millis = 1_760_000_000_000;
pub const BOOT: Millis = 10 * SECOND;

pub struct World {
    pub clock: Arc<Clock>,
    pub ded: Arc<FakeNode>,
    pub vms: Vms,
    pub cloud: Arc<FakeCloud>,
    pub store: Arc<MemoryStore>,
    pub live: Live<MemoryStore>,
    pub now: Millis,
    pub tune: fn(&mut LiveConfig),
}

pub type Vms = Arc<Mutex<BTreeMap<String, Arc<FakeNode>>>>;

pub fn config(clock: Arc<Clock>, ded: Arc<FakeNode>, vms: Vms, cloud: Arc<FakeCloud>) -> LiveConfig {
    let vm = CloudType {
        name: "cx23".into(),
        ram_mib: 4096,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        hourly_eur: Decimal::new(6, 3),
        monthly_cap_eur: Decimal::new(399, 2),
        reserve: Reserve::Mib(0),
    };
    let node = DedicatedType {
        name: "small".into(),
        ram_mib: 4096,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(10),
        reserve: Reserve::Mib(0),
    };
    let mut scheduler = SchedulerConfig::reference(vm, 2);
    scheduler.scaling.consolidation = Some(ConsolidationParams {
        every: 5 * MINUTE,
        min_saving_per_hour: Decimal::ZERO,
        max_migrations_per_hour: 4,
        announce: 10 * MINUTE,
        auto_once_per: HOUR,
    });
    let faults = Faults::none();
    let docker_for_vm = Box::new(move |name: &str, _address: &str| {
        let mut vms = vms.lock().unwrap();
        let n = vms.entry(name.to_owned()).or_insert_with(|| FakeNode::new(name, clock.clone(), faults.clone(), BOOT));
        Ok(n.clone() as Arc<dyn NodeDriver>)
    });
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler,
        dedicated: vec![DedicatedNode { name: "ded".into(), kind: node, docker: ded as Arc<dyn NodeDriver> }],
        cloud: Some(CloudSetup {
            client: cloud,
            cluster: "test".into(),
            image: "ubuntu".into(),
            location: None,
            user_data: CloudSetup::fixed_user_data(None),
            docker_for_vm,
            bootstrap_marker: false,
        }),
        idle_timeout: 300 * SECOND,
        stop_timeout: Duration::from_secs(10),
        image: "standin".into(),
        cmd: None,
        helper: Helper { image: "standin".into(), cmd: vec![] },
        archive: Arc::new(MemArchive::memory()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing { retry_base: SECOND, retry_max: 5 * SECOND, max_attempts: 3, ..Healing::default() },
    }
}

impl World {
    pub async fn new() -> World {
        World::with(|_| {}).await
    }

    /// A world whose engine configuration `tune` changes (kept across restarts).
    pub async fn with(tune: fn(&mut LiveConfig)) -> World {
        let clock = Clock::new(T0);
        let ded = FakeNode::new("ded", clock.clone(), Faults::none(), BOOT);
        let vms = Arc::new(Mutex::new(BTreeMap::new()));
        let cloud = FakeCloud::new(clock.clone(), Faults::none(), 30 * SECOND);
        let store = Arc::new(MemoryStore::new());
        let mut cfg = config(clock.clone(), ded.clone(), vms.clone(), cloud.clone());
        tune(&mut cfg);
        let live = Live::start(store.clone(), cfg, T0).await.unwrap();
        World { clock, ded, vms, cloud, store, live, now: T0, tune }
    }

    pub async fn server(&mut self, name: &str, ram_mib: u32) -> i64 {
        self.server_with(name, ram_mib, CostMode::Off).await
    }

    pub async fn server_with(&mut self, name: &str, ram_mib: u32, cost_mode: CostMode) -> i64 {
        let owner = match self.store.owners().await.unwrap().first() {
            Some(o) => o.id,
            None => {
                let o = self.store.create_owner("o", T0).await.unwrap().id;
                self.store.post(NewEntry::topup(o, Decimal::from(100), "credit", T0)).await.unwrap();
                o
            }
        };
        let s = NewServer { owner, name: name.into(), ram_mib, disk_mb: 100, pay_per_use: false, cost_mode };
        let s = self.store.create_server(s, self.now).await.unwrap();
        self.live.add_server(&s);
        s.id
    }

    pub async fn step(&mut self) {
        self.now += 5 * SECOND;
        self.clock.set(self.now);
        self.live.tick(self.now).await.unwrap();
    }

    pub async fn until(&mut self, what: &str, mut done: impl AsyncFnMut(&World) -> bool) {
        for _ in 0..400 {
            self.step().await;
            if done(self).await {
                return;
            }
        }
        panic!("not within 400 steps: {what}");
    }

    pub async fn state(&self, id: i64) -> ServerState {
        self.store.server(id).await.unwrap().state
    }

    pub async fn events(&self, kind: &str) -> Vec<Event> {
        self.store.events(0, 1_000_000).await.unwrap().into_iter().filter(|e| e.kind == kind).collect()
    }

    /// The controller restarts (a new engine on the same store and fleet).
    pub async fn restart(&mut self) {
        let mut cfg = config(self.clock.clone(), self.ded.clone(), self.vms.clone(), self.cloud.clone());
        (self.tune)(&mut cfg);
        self.live = Live::start(self.store.clone(), cfg, self.now).await.unwrap();
    }

    pub fn vm(&self) -> Arc<FakeNode> {
        self.vms.lock().unwrap().values().next().cloned().expect("a VM")
    }
}
