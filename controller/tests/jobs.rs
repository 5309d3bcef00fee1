//! Preemptible jobs live, on the in-memory drivers and a virtual clock: a job runs on idle
//! dedicated capacity, is given notice (SIGTERM) when a paying server needs the room, is
//! killed when the notice runs out and the server takes its place; its run is charged to
//! its owner at the job's price. A job that ends by itself, one past its max duration, a
//! cancelled one, and a restart in the middle.

mod common;

use common::fakes::World;
use conductor_controller::events::*;
use conductor_controller::store::{EntryKind, JobState, NewJob, ServerState, Store};
use conductor_core::time::SECOND;
use rust_decimal::Decimal;

fn job(owner: i64, ram_mib: u32, max_duration_s: u64) -> NewJob {
    NewJob {
        owner,
        image: "render".into(),
        cmd: vec!["render".into(), "--frames".into(), "1-100".into()],
        ram_mib,
        max_duration_s,
        price_per_gib_hour: Decimal::new(2, 2), // 0.02 EUR per GiB-hour
    }
}

async fn owner(w: &mut World) -> i64 {
    // The harness's owner, with credit.
    let id = w.server("probe", 512).await;
    w.store.server(id).await.unwrap().owner
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_yields_to_a_paying_server_after_its_notice_and_is_charged_for_its_run() {
    // A short notice (the cloud's VM would take longer): the server waits for the job.
    let mut w = World::with(|c| c.scheduler.job_notice = 60 * SECOND).await;
    let o = owner(&mut w).await;
    let j = w.live.submit_job(w.now, job(o, 2048, 3600)).await.unwrap();
    assert_eq!(j.state, JobState::Running, "idle dedicated capacity: it starts at once");
    w.step().await;
    let fake = w.ded.jobs()[&j.id].clone();
    assert!(fake.running && fake.memory_mib == 2048);
    let started = w.store.job(j.id).await.unwrap().started_at.unwrap();
    // a takes the other half; b needs the job's room.
    let (a, b) = (w.server("a", 2048).await, w.server("b", 2048).await);
    w.live.request_start(a, w.now).await.unwrap();
    w.until("a runs", async |w| w.state(a).await == ServerState::Running).await;
    w.live.request_start(b, w.now).await.unwrap();
    let noticed_at = w.now;
    w.step().await;
    let row = w.store.job(j.id).await.unwrap();
    assert_eq!((row.state, row.kill_at), (JobState::Noticed, Some(noticed_at + 60 * SECOND)));
    assert!(w.ded.jobs()[&j.id].signalled_at.is_some(), "SIGTERM sent with the notice");
    // It ignores the notice: killed when it runs out, and b starts in its place.
    w.until("b runs", async |w| w.state(b).await == ServerState::Running).await;
    assert!(w.ded.containers()[&b].running, "b took the job's room on the dedicated node");
    assert!(!w.ded.jobs().contains_key(&j.id), "the job's container is gone");
    let row = w.store.job(j.id).await.unwrap();
    assert_eq!((row.state, row.outcome.as_deref()), (JobState::Killed, Some("its notice ran out")));
    let ran = row.ended_at.unwrap() - started;
    assert_eq!(row.ended_at, row.kill_at);
    // Charged: 2 GiB × run time × 0.02 EUR per GiB-hour, exactly (to the micro-euro).
    let charge =
        w.store.ledger(o, 0, 100).await.unwrap().into_iter().find(|e| e.key == format!("job:{}", j.id)).unwrap();
    assert_eq!(charge.kind, EntryKind::Charge);
    let want = conductor_core::billing::rate(2048 * ran as u128, Decimal::new(2, 2), 1024 * 3_600_000);
    assert_eq!(charge.amount, -want);
    assert!(want > Decimal::ZERO);
    let ended = w.events(JOB_ENDED).await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].data["charge"], want.to_string());
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_that_ends_by_itself_or_runs_too_long_or_is_cancelled_is_over_and_charged_once() {
    let mut w = World::new().await;
    let o = owner(&mut w).await;
    let done = w.live.submit_job(w.now, job(o, 1024, 3600)).await.unwrap();
    let long = w.live.submit_job(w.now, job(o, 1024, 120)).await.unwrap();
    let later = w.live.submit_job(w.now, job(o, 1024, 3600)).await.unwrap();
    let queued = w.live.submit_job(w.now, job(o, 2048, 3600)).await.unwrap();
    assert_eq!(queued.state, JobState::Queued, "no room left: it waits");
    w.step().await;
    // One exits by itself.
    w.ded.end_job(done.id, 0);
    w.until("it is seen done", async |w| w.store.job(done.id).await.unwrap().state.ended()).await;
    let row = w.store.job(done.id).await.unwrap();
    assert_eq!((row.state, row.outcome.as_deref()), (JobState::Done, Some("exit 0")));
    // One runs past its max_duration_s: killed.
    w.until("the long one is killed", async |w| w.store.job(long.id).await.unwrap().state.ended()).await;
    let row = w.store.job(long.id).await.unwrap();
    assert_eq!(row.state, JobState::Killed);
    assert!(row.ended_at.unwrap() - row.started_at.unwrap() >= 120 * SECOND);
    w.step().await;
    assert!(!w.ded.jobs().contains_key(&long.id), "its container removed");
    assert!(!w.ded.jobs().contains_key(&done.id));
    // The queued one started in the room they left.
    w.until("the queued one runs", async |w| w.store.job(queued.id).await.unwrap().state == JobState::Running).await;
    // A restart: running jobs are adopted as they are; a cancel after it kills and bills.
    w.restart().await;
    for _ in 0..5 {
        w.step().await;
    }
    assert_eq!(w.store.job(later.id).await.unwrap().state, JobState::Running, "still running after the restart");
    assert_eq!(w.ded.jobs().len(), 2, "nothing started twice");
    let cancelled = w.live.cancel_job(w.now, later.id, "owner:1").await.unwrap();
    assert_eq!((cancelled.state, cancelled.outcome.as_deref()), (JobState::Cancelled, Some("cancelled by owner:1")));
    assert!(w.live.cancel_job(w.now, later.id, "owner:1").await.is_err(), "over: not cancelled twice");
    w.step().await;
    assert!(!w.ded.jobs().contains_key(&later.id), "its container killed");
    let ledger = w.store.ledger(o, 0, 100).await.unwrap();
    for j in [done.id, long.id, later.id] {
        assert_eq!(ledger.iter().filter(|e| e.key == format!("job:{j}")).count(), 1, "job {j} charged once");
    }
    // Too big for any dedicated node: refused, nothing stored.
    let before = w.store.jobs(None).await.unwrap().len();
    assert!(w.live.submit_job(w.now, job(o, 8192, 60)).await.is_err());
    assert_eq!(w.store.jobs(None).await.unwrap().len(), before);
}

/// The same on PostgreSQL and Podman: the stand-in's `hold` runs as the job and exits on
/// its notice (SIGTERM), so the server takes its room before the kill would come.
#[tokio::test(flavor = "current_thread")]
async fn on_podman_a_job_is_preempted_with_notice_and_charged() {
    use common::rig::vm_type;
    use conductor_controller::live::Live;
    use conductor_controller::store::{NewEntry, NewServer};
    use std::sync::Arc;
    let (Some(store), Some(docker)) = (common::fresh_pg("jobs").await, common::docker()) else { return };
    // Apart from other tests' servers and jobs on the same Podman.
    for seq in ["servers_id_seq", "jobs_id_seq"] {
        sqlx::query(&format!("ALTER SEQUENCE {seq} RESTART WITH 950")).execute(store.pool()).await.unwrap();
    }
    let (store, docker) = (Arc::new(store), Arc::new(docker));
    for id in 950..953 {
        docker.remove(id, true).await.unwrap();
        docker.remove_job(id).await.unwrap();
    }
    let t0 = 1_770_000_000_000;
    let o = store.create_owner("o", t0).await.unwrap().id;
    store.post(NewEntry::topup(o, Decimal::from(10), "credit", t0)).await.unwrap();
    let archive = std::env::temp_dir().join(format!("conductor-jobs-{}", std::process::id()));
    let mut scheduler = conductor_core::SchedulerConfig::reference(vm_type(), 0);
    scheduler.job_notice = 60 * SECOND;
    let cfg = common::rig::podman_engine(docker.clone(), 2048, scheduler, None, &archive);
    let mut live = Live::start(store.clone(), cfg, t0).await.unwrap();
    let new = NewJob {
        owner: o,
        image: common::IMAGE.into(),
        cmd: vec!["/standin".into(), "hold".into()],
        ram_mib: 1024,
        max_duration_s: 3600,
        price_per_gib_hour: Decimal::new(5, 2),
    };
    let j = live.submit_job(t0, new).await.unwrap();
    let mut now = t0;
    let server = |name: &str| NewServer {
        owner: o,
        name: name.into(),
        ram_mib: 1024,
        disk_mb: 100,
        pay_per_use: false,
        cost_mode: conductor_core::model::CostMode::Off,
    };
    let a = store.create_server(server("a"), t0).await.unwrap();
    let b = store.create_server(server("b"), t0).await.unwrap();
    live.add_server(&a);
    live.add_server(&b);
    let running = |s: usize| {
        move |l: &Live<conductor_controller::PgStore>| {
            matches!(l.core().residence(conductor_core::ServerId(s as u32)), conductor_core::Residence::Running { .. })
        }
    };
    step_until(&mut live, &mut now, "the job runs", |l| l.job_row(j.id).is_some_and(|j| j.state == JobState::Running))
        .await;
    live.tick(now).await.unwrap();
    let status = docker.job_status(j.id).await.unwrap().expect("its container");
    assert!(status.running);
    live.request_start(a.id, now).await.unwrap();
    step_until(&mut live, &mut now, "a runs", running(0)).await;
    live.request_start(b.id, now).await.unwrap();
    step_until(&mut live, &mut now, "b runs", running(1)).await;
    let row = store.job(j.id).await.unwrap();
    assert_eq!(row.state, JobState::Done, "{row:?}");
    assert!(row.outcome.as_deref().unwrap().ends_with("after its notice"), "{row:?}");
    assert!(row.ended_at.unwrap() < row.kill_at.unwrap(), "it left before the kill");
    let charge = store.ledger(o, 0, 100).await.unwrap().into_iter().find(|e| e.key == format!("job:{}", j.id));
    assert!(charge.is_some_and(|c| c.amount < Decimal::ZERO), "charged");
    live.tick(now + SECOND).await.unwrap();
    assert!(docker.job_status(j.id).await.unwrap().is_none(), "its container removed");
    for id in [a.id, b.id] {
        docker.remove(id, true).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&archive);
}

async fn step_until<St: Store>(
    live: &mut conductor_controller::live::Live<St>,
    now: &mut conductor_core::Millis,
    what: &str,
    done: impl Fn(&conductor_controller::live::Live<St>) -> bool,
) {
    for _ in 0..120 {
        *now += SECOND;
        live.tick(*now).await.unwrap();
        if done(live) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("not within 120 steps: {what}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_on_a_node_declared_dead_is_killed_with_it_and_charged_until_then() {
    let mut w = World::new().await;
    let o = owner(&mut w).await;
    let j = w.live.submit_job(w.now, job(o, 1024, 3600)).await.unwrap();
    w.step().await;
    w.ded.set_silent(true);
    w.until("the job is over", async |w| w.store.job(j.id).await.unwrap().state.ended()).await;
    let row = w.store.job(j.id).await.unwrap();
    assert_eq!((row.state, row.outcome.as_deref()), (JobState::Killed, Some("its node was declared dead")));
    assert!(w.events(NODE_DEAD).await.len() == 1);
    assert_eq!(w.store.ledger(o, 0, 100).await.unwrap().iter().filter(|e| e.key == format!("job:{}", j.id)).count(), 1);
}
