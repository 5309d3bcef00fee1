//! The sign-up credit expires: at the expiry the part not yet spent (the credit is spent
//! first) leaves the balance as one adjustment, once; spent credit and top-ups stay.

use conductor_controller::archive::Archive;
use conductor_controller::billing::{signup_key, BillingSetup};
use conductor_controller::docker::{DockerNode, Helper};
use conductor_controller::live::{DedicatedNode, Live, LiveConfig, Mode};
use conductor_controller::store::{EntryKind, Money, NewEntry, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::catalogue::Reserve;
use conductor_core::model::CostMode;
use conductor_core::time::{DAY, HOUR};
use conductor_core::{CloudType, DedicatedType, Millis, SchedulerConfig};
use serde_json::json;
use std::sync::Arc;

const T0: Millis = 1_760_000_000_000;

fn config() -> LiveConfig {
    let vm = CloudType {
        name: "cx23".into(),
        ram_mib: 4096,
        cores: 2,
        disk_gb: 40,
        disk_reserve_gb: 0,
        hourly_eur: Money::new(6, 3),
        monthly_cap_eur: Money::new(399, 2),
        reserve: Reserve::Mib(0),
    };
    let kind = DedicatedType {
        name: "AX41".into(),
        ram_mib: 65536,
        cores: 6,
        disk_gb: 512,
        disk_reserve_gb: 0,
        monthly_eur: Money::from(70),
        reserve: Reserve::Mib(2300),
    };
    // Observe mode: nothing is carried out, the engine only decides, meters and settles.
    let docker = Arc::new(DockerNode::connect("tcp://127.0.0.1:9", "127.0.0.1").unwrap());
    LiveConfig {
        joining: Default::default(),
        forecast: None,
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler: SchedulerConfig::reference(vm, 0),
        dedicated: vec![DedicatedNode { name: "ded-1".into(), kind, docker }],
        cloud: None,
        idle_timeout: 300_000,
        stop_timeout: std::time::Duration::from_secs(1),
        image: "unused".into(),
        cmd: None,
        helper: Helper { image: "unused".into(), cmd: Vec::new() },
        archive: Arc::new(Archive::dir(&std::env::temp_dir()).unwrap()),
        mode: Mode::Observe,
        billing: BillingSetup { promo_expiry: Some(DAY), ..BillingSetup::default() },
        healing: Default::default(),
    }
}

async fn post(store: &MemoryStore, owner: i64, kind: EntryKind, eur: i64, key: &str, at: Millis, server: Option<i64>) {
    let e = NewEntry {
        owner,
        kind,
        amount: Money::from(eur),
        key: key.into(),
        at,
        server,
        window_start: None,
        data: json!({}),
    };
    store.post(e).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_unused_sign_up_credit_expires_once() {
    let store = Arc::new(MemoryStore::new());
    let alice = store.create_owner("alice", T0).await.unwrap().id;
    let bob = store.create_owner("bob", T0 + 2 * HOUR).await.unwrap().id;
    let server = |owner| NewServer {
        owner,
        name: "mc".into(),
        ram_mib: 1024,
        disk_mb: 100,
        pay_per_use: true,
        cost_mode: CostMode::Off,
    };
    let a = store.create_server(server(alice), T0).await.unwrap().id;
    let b = store.create_server(server(bob), T0).await.unwrap().id;
    // Alice: 5 credit, 10 top-up, 3 spent before the expiry → 2 of the credit expire.
    post(&store, alice, EntryKind::Grant, 5, &signup_key(alice), T0, None).await;
    post(&store, alice, EntryKind::Topup, 10, "pay-1", T0 + HOUR, None).await;
    post(&store, alice, EntryKind::Charge, -3, "charge:a:1", T0 + 3 * HOUR, Some(a)).await;
    // Bob spent more than his credit: nothing expires.
    post(&store, bob, EntryKind::Grant, 5, &signup_key(bob), T0 + 2 * HOUR, None).await;
    post(&store, bob, EntryKind::Topup, 10, "pay-2", T0 + 2 * HOUR, None).await;
    post(&store, bob, EntryKind::Charge, -7, "charge:b:1", T0 + 4 * HOUR, Some(b)).await;

    let mut live = Live::start(store.clone(), config(), T0 + HOUR).await.unwrap();
    live.tick(T0 + DAY + HOUR).await.unwrap();
    assert_eq!(store.balance(alice).await.unwrap(), Money::from(10), "5 + 10 − 3 − 2 expired");
    let expired = store.ledger(alice, 0, 100).await.unwrap().into_iter().find(|e| e.kind == EntryKind::Adjustment);
    assert_eq!(expired.map(|e| (e.amount, e.at)), Some((Money::from(-2), T0 + DAY)));
    // Later hours: bob's expiry passes (nothing unused), alice's is not repeated.
    live.tick(T0 + DAY + 5 * HOUR).await.unwrap();
    assert_eq!(store.balance(alice).await.unwrap(), Money::from(10));
    assert_eq!(store.balance(bob).await.unwrap(), Money::from(8));
    assert_eq!(store.ledger(bob, 0, 100).await.unwrap().len(), 3);
}
