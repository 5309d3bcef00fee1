//! The nightly forecast, live, and a predictive policy switched from shadow to enforce,
//! end to end: PostgreSQL (or the in-memory store without it), the fake Hetzner API and
//! in-memory nodes (no server runs: the demand history is synthetic events in the store).
//!
//! Fifteen days of history (Europe/Berlin): eight 1 GiB servers play 18:00–22:00 every
//! evening, one plays 09:00–17:00. The dedicated node has 4 GiB, VMs 2 GiB. At 03:00 the
//! job forecasts from the event log (MSTL); in shadow the predictive policy records a
//! would-create before the 18:00 ramp and nothing is created; switched to enforce, it
//! creates the VMs before the ramp. A restart keeps the forecast and the switch; an edited
//! configuration wins over the switch.

mod common;

use common::rig::{dedicated_type, vm_type, Rig, ADMIN};
use conductor_controller::archive::Archive;
use conductor_controller::billing::BillingSetup;
use conductor_controller::cloud::{CloudConfig, HetznerCloud};
use conductor_controller::docker::Helper;
use conductor_controller::driver::NodeDriver;
use conductor_controller::events::*;
use conductor_controller::fake::{Clock, FakeNode, Faults};
use conductor_controller::fake_hetzner::{Behaviour, FakeHetzner};
use conductor_controller::forecasting::{self, ForecastSetup};
use conductor_controller::live::{CloudSetup, DedicatedNode, Healing, Live, LiveConfig, Mode};
use conductor_controller::store::{NewEvent, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::model::CostMode;
use conductor_core::policy::{Band, Policy, PredictiveParams};
use conductor_core::time::{DAY, HOUR, MINUTE, SECOND};
use conductor_core::{Millis, SchedulerConfig};
use conductor_sim::scenario::ForecastSource;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Monday 2026-01-05 00:00 in Berlin (CET, UTC+1).
const T0: Millis = 1_767_567_600_000;
const DAYS: i64 = 15;
/// The forecast night: day 15, 03:00 local.
const NIGHT: Millis = T0 + DAYS * DAY + 3 * HOUR;
const RAMP: Millis = T0 + DAYS * DAY + 18 * HOUR;

fn setup(source: ForecastSource, window_days: i64) -> ForecastSetup {
    ForecastSetup {
        source,
        timezone: chrono_tz::Europe::Berlin,
        at: (3, 0),
        window: window_days * DAY,
        max_age: 30 * HOUR,
        idle_timeout: 5 * MINUTE,
        retry_after: 15 * MINUTE,
    }
}

fn mstl() -> ForecastSource {
    ForecastSource::Model(conductor_forecast::ModelSpec::new(conductor_forecast::ModelKind::Mstl))
}

fn predictive(shadow: bool) -> Policy {
    Policy::Predictive(PredictiveParams {
        lead: 30 * MINUTE,
        band: Band::P90,
        target_utilisation: rust_decimal::Decimal::ONE,
        scale_in: false,
        hold: 0,
        shadow,
    })
}

fn config(node: Arc<FakeNode>, cloud: Option<CloudSetup>, shadow: bool, forecast: ForecastSetup) -> LiveConfig {
    let mut scheduler = SchedulerConfig::reference(vm_type(), 3);
    scheduler.scaling.interval = 5 * MINUTE;
    scheduler.scaling.policies.push(predictive(shadow));
    LiveConfig {
        joining: Default::default(),
        forecast: Some(forecast),
        jobs: Default::default(),
        templates: Default::default(),
        worlds: Default::default(),
        game: conductor_controller::live::GameAccess::default(),
        scheduler,
        dedicated: vec![DedicatedNode {
            name: "ded-1".into(),
            kind: dedicated_type("small", 4096),
            docker: node as Arc<dyn NodeDriver>,
        }],
        cloud,
        idle_timeout: 5 * MINUTE,
        stop_timeout: Duration::from_secs(1),
        image: "unused".into(),
        cmd: None,
        helper: Helper { image: "unused".into(), cmd: Vec::new() },
        archive: Arc::new(Archive::dir(&std::env::temp_dir()).unwrap()),
        mode: Mode::Enforce,
        billing: BillingSetup::default(),
        healing: Healing { vm_ready_timeout: 10 * MINUTE, ..Healing::default() },
    }
}

/// The synthetic history: servers and their requests and stops, written into the store.
async fn history<St: Store>(store: &St) -> Vec<i64> {
    let owner = store.create_owner("o", T0 - DAY).await.unwrap().id;
    let mut ids = Vec::new();
    for i in 0..9 {
        let s = NewServer {
            owner,
            name: format!("mc{i}"),
            ram_mib: 1024,
            disk_mb: 100,
            pay_per_use: false,
            cost_mode: CostMode::Off,
        };
        ids.push(store.create_server(s, T0 - DAY).await.unwrap().id);
    }
    let event = |at: Millis, kind: &str, server: i64| NewEvent {
        at,
        kind: kind.into(),
        server: Some(server),
        node: None,
        data: json!({ "peak_players": 3 }),
    };
    for d in 0..DAYS {
        let day = T0 + d * DAY;
        store.append_event(event(day + 9 * HOUR, "server.requested", ids[0])).await.unwrap();
        store.append_event(event(day + 17 * HOUR, "server.stop-requested", ids[0])).await.unwrap();
        for &id in &ids[1..] {
            store.append_event(event(day + 18 * HOUR, "server.requested", id)).await.unwrap();
            store.append_event(event(day + 22 * HOUR, "server.stop-requested", id)).await.unwrap();
        }
    }
    ids
}

async fn kinds<St: Store>(store: &St, kind: &str) -> Vec<conductor_controller::store::Event> {
    store.events(0, 1_000_000).await.unwrap().into_iter().filter(|e| e.kind == kind).collect()
}

/// The forecast the live job makes is the twin's forecast on the exported dataset: the
/// dataset written by `conductor export` and read back by the twin's own loader gives the
/// same numbers, and the stored document hands the scheduler exactly them.
#[tokio::test(flavor = "current_thread")]
async fn the_live_forecast_is_the_twins_forecast_of_the_exported_dataset() {
    let store = MemoryStore::new();
    history(&store).await;
    let s = setup(mstl(), 14);
    let (listed, events) = forecasting::history(&store, &s, NIGHT).await.unwrap();
    let made = forecasting::make(&s, &listed, &events, NIGHT).unwrap();

    let since = NIGHT - 14 * DAY;
    let meta = conductor_controller::export::MetaInfo {
        name: "x".into(),
        timezone: "Europe/Berlin".into(),
        source: "test".into(),
    };
    let dir = std::env::temp_dir().join(format!("conductor-forecast-parity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    conductor_controller::export::build(&listed, &events, since, NIGHT, &meta).unwrap().write(&dir, false).unwrap();
    let ds = conductor_sim::dataset::Dataset::load(&dir).unwrap();
    let intervals = conductor_sim::dataset::wanted_intervals(&ds, 5 * MINUTE);
    let ram: Vec<u32> = ds.servers.iter().map(|s| s.ram_mib).collect();
    let peaks = conductor_sim::forecasting::peak_demand(
        intervals.iter().map(|iv| (iv.server, iv.start, iv.end)),
        &ram,
        ds.meta.start,
        ds.meta.end,
    );
    let twin = conductor_sim::forecasting::forecast(&mstl(), &peaks, ds.meta.start, NIGHT).unwrap();
    assert_eq!(made.demand, twin, "the live forecast is the twin's on the same demand");
    assert_eq!(twin.start, NIGHT);
    // The evening is forecast at the eight servers' 8 GiB, the afternoon at one.
    let at = |t: Millis| twin.p90[((t - twin.start) / twin.step) as usize];
    assert!((7_000..=10_000).contains(&at(RAMP + HOUR)), "evening p90 {}", at(RAMP + HOUR));
    assert!(at(NIGHT + 11 * HOUR) < 3_000, "afternoon p90 {}", at(NIGHT + 11 * HOUR));
    // The stored document is what the scheduler is given, to the MiB.
    let doc: conductor_forecast::ForecastDocument =
        serde_json::from_value(serde_json::to_value(&made.document).unwrap()).unwrap();
    assert_eq!(forecasting::demand_of(&doc).unwrap(), twin);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_nightly_run_is_due_once_a_night_at_local_time() {
    let s = setup(mstl(), 14);
    assert!(!s.due(Some(NIGHT - DAY), NIGHT - MINUTE), "yesterday's is the latest until 03:00");
    assert!(s.due(Some(NIGHT - DAY), NIGHT));
    assert!(s.due(None, NIGHT - MINUTE), "none yet: yesterday's run is due");
    assert!(!s.due(Some(NIGHT), NIGHT + 20 * HOUR));
    // Summer time: 03:00 CEST is 01:00 UTC (2026-03-30 is after the change).
    let summer = 1_774_832_400_000; // 2026-03-30T01:00:00Z
    assert_eq!(s.last_run(summer + MINUTE), Some(summer));
}

struct World<St: Store> {
    rig: Rig<St>,
    fake: FakeHetzner,
}

async fn start<St: Store + 'static>(store: Arc<St>, shadow: bool, now: Millis) -> World<St> {
    let clock = Clock::new(now);
    let node = FakeNode::new("ded-1", clock.clone(), Faults::none(), 0);
    let vm_node = FakeNode::new("vm", clock, Faults::none(), 0);
    let fake = FakeHetzner::new(Behaviour { action_ms: 50, ..Behaviour::default() });
    let url = fake.serve(0).await.unwrap();
    let quick = CloudConfig { requests_per_s: 100.0, burst: 20.0, max_attempts: 1, backoff: Duration::from_millis(10) };
    let cloud = CloudSetup {
        client: Arc::new(HetznerCloud::new("token", Some(&url), quick)),
        cluster: format!("forecast{}", std::process::id()),
        image: "ubuntu-24.04".into(),
        location: None,
        user_data: CloudSetup::fixed_user_data(None),
        docker_for_vm: Box::new(move |_, _| Ok(vm_node.clone() as Arc<dyn NodeDriver>)),
        bootstrap_marker: false,
    };
    let live = Live::start(store.clone(), config(node, Some(cloud), shadow, setup(mstl(), 14)), now).await.unwrap();
    let rig = Rig::new(store, live, Arc::new(AtomicI64::new(now)), 4096);
    World { rig, fake }
}

impl<St: Store + 'static> World<St> {
    /// One step at `now`, then the forecast job as the daemon runs it after each step.
    async fn step(&self, now: Millis, failure: &mut Option<Millis>) {
        self.rig.clock.store(now, Ordering::SeqCst);
        let live = self.rig.api.live.as_ref().unwrap();
        conductor_controller::serve::step(live, now).await.unwrap();
        let s = setup(mstl(), 14);
        forecasting::step(&*self.rig.api.store, live, &s, failure, now).await.unwrap();
    }
}

async fn shadow_then_enforce<St: Store + 'static>(store: Arc<St>) {
    history(&*store).await;
    let w = start(store.clone(), true, NIGHT - 11 * MINUTE).await;
    let mut failure = None;
    // None stored yet: the first step makes one at once (a new controller does not wait a night).
    w.step(NIGHT - 10 * MINUTE, &mut failure).await;
    assert_eq!(kinds(&*store, FORECAST_MADE).await.len(), 1);
    w.step(NIGHT - MINUTE, &mut failure).await;
    assert_eq!(kinds(&*store, FORECAST_MADE).await.len(), 1, "the next run is at 03:00");
    w.step(NIGHT, &mut failure).await;
    let made = kinds(&*store, FORECAST_MADE).await;
    assert_eq!(made.len(), 2, "made at 03:00");
    assert_eq!(made[1].at, NIGHT);
    assert_eq!((made[1].data["model"].as_str(), made[1].data["servers"].as_u64()), (Some("mstl"), Some(9)));
    assert_eq!(kinds(&*store, FORECAST_APPLIED).await.len(), 2);
    let (status, view) = w.rig.call("GET", "/v1/scaling", ADMIN, None).await;
    assert_eq!(status, 200);
    assert_eq!(view["forecast"]["model"], "mstl");
    assert_eq!(view["policies"][1]["name"], "predictive-shadow");

    // The day passes in 5-minute steps: in shadow, a would-create before the ramp, no VM.
    let mut now = NIGHT;
    let mut first_shadow = None;
    while now < RAMP - 20 * MINUTE {
        now += 5 * MINUTE;
        w.step(now, &mut failure).await;
        if first_shadow.is_none() && !kinds(&*store, SCALING_SHADOW).await.is_empty() {
            first_shadow = Some(now);
        }
    }
    let first_shadow = first_shadow.expect("a shadow decision before the ramp");
    assert!((RAMP - HOUR..RAMP).contains(&first_shadow), "would-create at {}", (RAMP - first_shadow) / MINUTE);
    let shadow = kinds(&*store, SCALING_SHADOW).await;
    assert!(shadow[0].data["reason"].as_str().unwrap().starts_with("shadow: would add 2"), "{}", shadow[0].data);
    assert!(w.fake.server_names().is_empty(), "shadow creates nothing");
    assert!(kinds(&*store, NODE_CREATED).await.is_empty());
    let (_, view) = w.rig.call("GET", "/v1/scaling", ADMIN, None).await;
    assert!(!view["shadow"].as_array().unwrap().is_empty(), "the view shows the would-create");

    // Switched to enforce by the admin: the VMs are created before the ramp.
    let (status, body) = w.rig.call("PUT", "/v1/policies/1", ADMIN, Some(json!({ "shadow": false }))).await;
    assert_eq!((status.as_u16(), body["name"].as_str()), (200, Some("predictive")), "{body}");
    let (status, body) = w.rig.call("PUT", "/v1/policies/0", ADMIN, Some(json!({ "shadow": false }))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (422, Some("no_shadow_mode")));
    let (status, _) = w.rig.call("PUT", "/v1/policies/7", ADMIN, Some(json!({ "shadow": false }))).await;
    assert_eq!(status, 422);
    let (status, _) = w.rig.call("PUT", "/v1/policies/1", "not-the-admin", Some(json!({ "shadow": false }))).await;
    assert!(status == 401 || status == 403, "{status}");
    assert_eq!(kinds(&*store, POLICY_MODE).await.len(), 1, "recorded once");
    while now < RAMP && kinds(&*store, NODE_READY).await.len() < 2 {
        now += 30 * SECOND;
        w.step(now, &mut failure).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let created = kinds(&*store, NODE_CREATED).await;
    let ready = kinds(&*store, NODE_READY).await;
    eprintln!(
        "first would-create {} min before the ramp; switched 20 min before it; VMs created {:?} and ready {:?} min before it",
        (RAMP - first_shadow) / MINUTE,
        created.iter().map(|e| (RAMP - e.at) / MINUTE).collect::<Vec<_>>(),
        ready.iter().map(|e| (RAMP - e.at) / MINUTE).collect::<Vec<_>>()
    );
    assert_eq!(created.len(), 2, "two VMs for the evening's 8 GiB over 4 GiB");
    assert!(created.iter().all(|e| e.at < RAMP));
    assert_eq!(kinds(&*store, NODE_READY).await.len(), 2, "ready before 18:00");
    let decision = kinds(&*store, SCALING_DECISION).await;
    assert!(decision.iter().any(|e| e.data["policy"] == "predictive"), "{:?}", decision.last().map(|e| &e.data));
    drop(w);

    // A restart keeps the forecast and the switch (the configuration still says shadow).
    let w = start(store.clone(), true, now + MINUTE).await;
    {
        let live = w.rig.api.live.as_ref().unwrap().lock().await;
        assert!(live.core().forecast().is_some(), "the stored forecast is adopted");
        assert_eq!(live.policies()[1].shadow, Some(false), "the admin's switch survives the restart");
        assert_eq!(live.policies()[1].configured_shadow, Some(true));
    }
    drop(w);
    // The configuration edited since (now enforce, then back to shadow by the file): the file wins.
    let w = start(store.clone(), false, now + 2 * MINUTE).await;
    drop(w);
    let w = start(store.clone(), true, now + 3 * MINUTE).await;
    assert_eq!(w.rig.api.live.as_ref().unwrap().lock().await.policies()[1].shadow, Some(false));
    let (status, _) = w.rig.call("PUT", "/v1/policies/1", ADMIN, Some(json!({ "shadow": true }))).await;
    assert_eq!(status, 200);
    drop(w);
    let w = start(store.clone(), false, now + 4 * MINUTE).await;
    assert_eq!(
        w.rig.api.live.as_ref().unwrap().lock().await.policies()[1].shadow,
        Some(false),
        "switched to shadow while the file said shadow; the file now says enforce: enforce"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_then_enforce_on_postgres() {
    let Some(store) = common::fresh_pg("forecast").await else { return };
    shadow_then_enforce(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_then_enforce_in_memory() {
    shadow_then_enforce(Arc::new(MemoryStore::new())).await;
}

/// Too little history: the run fails (an event, a metric), predictive stays neutral, the
/// next attempt waits `retry_after`; a forecast older than `max_age` is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_stale_forecast_is_an_event_and_predictive_goes_neutral() {
    let store = Arc::new(MemoryStore::new());
    // A fleet three days old.
    let owner = store.create_owner("o", NIGHT - 3 * DAY).await.unwrap().id;
    let s = NewServer {
        owner,
        name: "a".into(),
        ram_mib: 1024,
        disk_mb: 100,
        pay_per_use: false,
        cost_mode: CostMode::Off,
    };
    store.create_server(s, NIGHT - 3 * DAY).await.unwrap();
    let w = start(store.clone(), false, NIGHT - MINUTE).await;
    let mut failure = None;
    w.step(NIGHT, &mut failure).await;
    let failed = kinds(&*store, FORECAST_FAILED).await;
    assert_eq!(failed.len(), 1);
    assert!(failed[0].data["error"].as_str().unwrap().contains("2 weeks"), "{}", failed[0].data);
    w.step(NIGHT + 5 * MINUTE, &mut failure).await;
    assert_eq!(kinds(&*store, FORECAST_FAILED).await.len(), 1, "retried only after retry_after");
    w.step(NIGHT + 15 * MINUTE, &mut failure).await;
    assert_eq!(kinds(&*store, FORECAST_FAILED).await.len(), 2);
    let (_, metrics) = w.rig.call("GET", "/metrics", ADMIN, None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains("conductor_forecast_failures_total 2"), "{metrics}");
    assert!(metrics.contains("conductor_forecast_stale 0"));

    // An uploaded document the scheduler can read is used at once; older than max_age it goes.
    let made = {
        let store = MemoryStore::new();
        history(&store).await;
        let s = setup(mstl(), 14);
        let (listed, events) = forecasting::history(&store, &s, NIGHT).await.unwrap();
        forecasting::make(&s, &listed, &events, NIGHT).unwrap()
    };
    let doc = serde_json::to_value(&made.document).unwrap();
    let (status, body) = w.rig.call("PUT", "/v1/forecast", ADMIN, Some(doc)).await;
    assert_eq!((status.as_u16(), body["applied"].as_bool()), (201, Some(true)), "{body}");
    let live = w.rig.api.live.as_ref().unwrap();
    assert!(live.lock().await.core().forecast().is_some());
    let uploaded = w.rig.clock.load(Ordering::SeqCst);
    w.step(uploaded + 29 * HOUR, &mut failure).await;
    assert!(live.lock().await.core().forecast().is_some());
    // The next nights fail (too little history of its own), so the forecast ages out.
    w.step(uploaded + 31 * HOUR, &mut failure).await;
    assert!(live.lock().await.core().forecast().is_none(), "stale: dropped");
    let stale = kinds(&*store, FORECAST_STALE).await;
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].data["dropped"], true);
    let (_, metrics) = w.rig.call("GET", "/metrics", ADMIN, None).await;
    assert!(metrics.as_str().unwrap().contains("conductor_forecast_stale 1"), "{metrics}");
    // A document without the scheduler's series is stored but not used.
    let mut other = made.document.clone();
    other.series[0].name = "ram_gib.total".into();
    let (status, body) = w.rig.call("PUT", "/v1/forecast", ADMIN, Some(serde_json::to_value(&other).unwrap())).await;
    assert_eq!((status.as_u16(), body["applied"].as_bool()), (201, Some(false)));
    assert!(kinds(&*store, FORECAST_UNUSABLE).await[0].data["error"].as_str().unwrap().contains("ram_mib.peak"));
}

/// The file read again (SIGHUP): a policy whose `shadow` it now sets otherwise is switched
/// at once (`policy.mode` by "reload", `config.reloaded`) and a restart on that file keeps
/// it; a change besides the modes is not applied and is named as waiting for a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_file_switches_a_policy_and_names_what_waits_for_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let w = start(store.clone(), true, NIGHT).await;
    let scheduler = |shadow: bool| predictive_scheduler(shadow);
    let live = w.rig.api.live.as_ref().unwrap();
    assert_eq!(live.lock().await.policies()[1].shadow, Some(true));
    // The same file: nothing changes.
    let r = live.lock().await.reload(&scheduler(true), Vec::new(), NIGHT + MINUTE).await.unwrap();
    assert!(r.switched.is_empty() && r.restart_needed.is_empty(), "{r:?}");
    // The file now says enforce.
    let r = live.lock().await.reload(&scheduler(false), vec!["prices".into()], NIGHT + 2 * MINUTE).await.unwrap();
    assert_eq!((r.switched, r.restart_needed), (vec![(1, false)], vec!["prices".to_string()]));
    {
        let l = live.lock().await;
        assert_eq!((l.policies()[1].shadow, l.policies()[1].configured_shadow), (Some(false), Some(false)));
        assert!(!l.core().config().scaling.policies[1].shadow().unwrap(), "the core enforces it");
    }
    let modes = kinds(&*store, POLICY_MODE).await;
    assert_eq!((modes.len(), modes[0].data["by"].as_str()), (1, Some("reload")));
    let reloaded = kinds(&*store, CONFIG_RELOADED).await;
    assert_eq!(reloaded.len(), 2);
    assert_eq!(reloaded[1].data["restart_needed"], json!(["prices"]));
    // Another interval besides the mode: a restart applies it; the mode is not switched either.
    let mut other = scheduler(true);
    other.scaling.interval = 10 * MINUTE;
    let r = live.lock().await.reload(&other, Vec::new(), NIGHT + 3 * MINUTE).await.unwrap();
    assert_eq!((r.switched.len(), r.restart_needed), (0, vec!["policy".to_string()]));
    assert_eq!(live.lock().await.policies()[1].shadow, Some(false));
    live.lock().await.reload_failed("controller.toml: key `policy.kind`: …", NIGHT + 4 * MINUTE).await.unwrap();
    assert_eq!(kinds(&*store, CONFIG_RELOAD_FAILED).await.len(), 1);
    drop(w);
    // Restarted on the edited file (enforce): enforce.
    let w = start(store.clone(), false, NIGHT + 5 * MINUTE).await;
    assert_eq!(w.rig.api.live.as_ref().unwrap().lock().await.policies()[1].shadow, Some(false));
}

/// The scheduler configuration `config` builds, with the predictive policy in `shadow`.
fn predictive_scheduler(shadow: bool) -> SchedulerConfig {
    let node = FakeNode::new("unused", Clock::new(0), Faults::none(), 0);
    config(node, None, shadow, setup(mstl(), 14)).scheduler
}
