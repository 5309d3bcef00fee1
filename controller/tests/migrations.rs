//! Moves carried out live, on the in-memory drivers and a virtual clock: consolidation
//! empties a VM by moving its idle server to the dedicated node (saved by its stop, world
//! copied node to node, the old copy removed, the VM deleted), with the twin's disruption
//! accounting; a move whose target fails leaves the server on its node, started again.

mod common;

use common::fakes::{World, BOOT};
use conductor_controller::events::*;
use conductor_controller::store::{ServerState, Store};
use conductor_core::model::CostMode;
use conductor_core::time::MINUTE;

#[tokio::test(flavor = "current_thread")]
async fn consolidation_moves_an_idle_server_off_a_vm_and_the_vm_goes() {
    let mut w = World::new().await;
    let (a, b, c) = (w.server("a", 2048).await, w.server("b", 2048).await, w.server("c", 2048).await);
    for id in [a, b, c] {
        w.live.request_start(id, w.now).await.unwrap();
    }
    // a and b fill the dedicated node; c waits for a VM and runs there.
    w.until("c runs on a VM", async |w| w.state(c).await == ServerState::Running).await;
    assert_eq!(w.cloud.vms().len(), 1);
    let vm = w.vm();
    assert!(vm.containers()[&c].running);
    let saves_before = vm.volumes()[&c];
    // a stops: the dedicated node has room; c has no players, so it may move.
    w.live.request_stop(a, w.now).await.unwrap();
    w.until("c is moved", async |w| !w.events(SERVER_MIGRATING).await.is_empty()).await;
    w.until("c runs on the dedicated node", async |w| {
        w.state(c).await == ServerState::Running && w.ded.containers().get(&c).is_some_and(|x| x.running)
    })
    .await;
    // Saved by its graceful stop on the VM, then copied: the dedicated node has that world.
    assert_eq!(w.ded.volumes()[&c], saves_before + 1, "the world as the stop saved it");
    w.until("the VM is deleted", async |w| w.cloud.vms().iter().all(|v| v.deleted_at.is_some())).await;
    assert!(!vm.volumes().contains_key(&c), "the old copy went with the move");
    let resumed = w.events(SERVER_RESUMED).await;
    let moved = resumed.iter().find(|e| e.server == Some(c) && e.data["reason"] == "migrated").expect("resumed");
    assert!(moved.data["downtime_ms"].as_i64().unwrap() >= BOOT);
    assert_eq!(moved.data["disrupted_player_ms"], 0, "nobody was on it");
    // Not billed while it moved: the running phase closed at the move, opened at the resume.
    let placed = w.events(SERVER_PLACED).await;
    assert!(placed.iter().any(|e| e.server == Some(c) && e.data["migration"] == true));
    assert!(w.events(COMMAND_UNSUPPORTED).await.is_empty());
    assert_eq!(w.live.metrics().migrations, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_move_whose_target_fails_leaves_the_server_on_its_node_and_starts_it_again() {
    let mut w = World::new().await;
    let (a, b, c) = (w.server("a", 2048).await, w.server("b", 2048).await, w.server("c", 2048).await);
    for id in [a, b, c] {
        w.live.request_start(id, w.now).await.unwrap();
    }
    w.until("c runs on a VM", async |w| w.state(c).await == ServerState::Running).await;
    let vm = w.vm();
    // The dedicated node's disk is full: the copy of c's world there fails for good.
    w.ded.set_disk_left(Some(0));
    w.live.request_stop(a, w.now).await.unwrap();
    w.until("the move fails", async |w| {
        w.events(SERVER_START_FAILED).await.iter().any(|e| e.server == Some(c) && e.data["migration"] == true)
    })
    .await;
    assert!(w.live.metrics().migration_failures >= 1);
    // Asleep on the VM with its world, then started there again.
    w.until("c runs again on the VM", async |w| {
        w.state(c).await == ServerState::Running && w.vm().containers().get(&c).is_some_and(|x| x.running)
    })
    .await;
    // The next tries fail alike and put it back each time; the VM, emptied for the move,
    // stays while c runs on it.
    for _ in 0..100 {
        w.step().await;
    }
    assert!(w.cloud.vms().iter().all(|v| v.deleted_at.is_none()), "the VM holds c: not deleted");
    let placed_on_ded =
        w.events(SERVER_PLACED).await.iter().filter(|e| e.server == Some(c) && e.node == Some(1)).count();
    let failed = w.live.metrics().migration_failures as usize;
    assert_eq!(placed_on_ded, failed, "every placement on the full node was a move that failed, not a retry");
    assert!(vm.volumes().contains_key(&c), "its world never left the VM");
    assert!(!w.ded.volumes().contains_key(&c), "nothing of it stays on the dedicated node");
}

#[tokio::test(flavor = "current_thread")]
async fn a_plan_change_restarts_in_place_or_waits_for_the_next_start() {
    let mut w = World::new().await;
    let (a, b) = (w.server("a", 2048).await, w.server("b", 1024).await);
    for id in [a, b] {
        w.live.request_start(id, w.now).await.unwrap();
    }
    w.until("a and b run", async |w| {
        w.state(a).await == ServerState::Running && w.state(b).await == ServerState::Running
    })
    .await;
    assert_eq!(w.ded.containers()[&a].memory_mib, 2048);
    let saves = w.ded.volumes().get(&a).copied().unwrap_or(0);
    // 3 GiB fits where it runs (4 GiB − b's 1 GiB): restarted in place with the new limit.
    let (row, how) = w.live.change_plan(w.now, a, 3072).await.unwrap();
    assert_eq!((row.ram_mib, how), (3072, "restart"));
    w.until("a runs on 3 GiB", async |w| {
        w.state(a).await == ServerState::Running && w.ded.containers()[&a].memory_mib == 3072
    })
    .await;
    assert_eq!(w.ded.volumes()[&a], saves + 1, "saved by its stop, the same world");
    // 4 GiB fits nowhere now (no VM yet): it runs on, and starts on 4 GiB next time.
    let (_, how) = w.live.change_plan(w.now, b, 4096).await.unwrap();
    assert_eq!(how, "next start");
    w.step().await;
    assert_eq!(w.ded.containers()[&b].memory_mib, 1024, "still running on its old plan");
    // A stopped server simply starts on its new plan.
    w.live.request_stop(a, w.now).await.unwrap();
    w.until("a sleeps", async |w| w.state(a).await == ServerState::Sleeping).await;
    let (_, how) = w.live.change_plan(w.now, a, 1024).await.unwrap();
    assert_eq!(how, "at start");
    w.live.request_start(a, w.now).await.unwrap();
    w.until("a runs on 1 GiB", async |w| {
        w.state(a).await == ServerState::Running && w.ded.containers()[&a].memory_mib == 1024
    })
    .await;
    let changes = w.events(SERVER_PLAN_CHANGED).await;
    let hows: Vec<&str> = changes.iter().map(|e| e.data["how"].as_str().unwrap()).collect();
    assert_eq!(hows, ["restart", "next start", "at start"]);
    // Not for a plan the template cannot run (the plain template runs anything) nor for an
    // unknown server.
    assert!(w.live.change_plan(w.now, 999, 2048).await.is_err());
}

/// A VM holding c with players on it, a, b on the dedicated node: a stops, so c could move.
async fn with_players_on_a_vm(w: &mut World, cost_mode: CostMode) -> (i64, i64) {
    let (a, b) = (w.server("a", 2048).await, w.server("b", 2048).await);
    let c = w.server_with("c", 2048, cost_mode).await;
    for id in [a, b, c] {
        w.live.request_start(id, w.now).await.unwrap();
    }
    w.until("c runs on a VM", async |w| w.state(c).await == ServerState::Running).await;
    w.vm().set_players(c, 3);
    w.step().await;
    w.live.request_stop(a, w.now).await.unwrap();
    (a, c)
}

#[tokio::test(flavor = "current_thread")]
async fn a_suggest_owner_is_asked_once_even_across_a_restart_and_the_move_waits_for_the_answer() {
    let mut w = World::new().await;
    let (_, c) = with_players_on_a_vm(&mut w, CostMode::Suggest).await;
    w.until("the owner is asked", async |w| !w.events(SERVER_RECOMMENDED).await.is_empty()).await;
    let listed = w.live.recommendations(None);
    assert_eq!(listed.iter().map(|r| r.server).collect::<Vec<_>>(), [c]);
    assert_eq!(listed[0].saving_per_hour, "0.006", "the VM's hourly price");
    assert!(w.live.recommendations(Some(999)).is_empty(), "another owner sees none");
    // Unanswered: nothing moves, however long; a restart neither forgets nor asks again.
    for _ in 0..100 {
        w.step().await;
    }
    w.restart().await;
    for _ in 0..100 {
        w.step().await;
    }
    assert!(w.events(SERVER_MIGRATING).await.is_empty(), "no move without the answer");
    assert_eq!(w.events(SERVER_RECOMMENDED).await.len(), 1, "asked once");
    assert_eq!(w.live.recommendations(None).len(), 1, "still waiting after the restart");
    // Accepted: it moves at the next consolidation, with its players (their wait is counted).
    w.live.accept_move(w.now, c, "owner:1").await.unwrap();
    assert!(w.live.accept_move(w.now, c, "owner:1").await.is_err(), "accepted once");
    w.until("c runs on the dedicated node", async |w| {
        w.state(c).await == ServerState::Running && w.ded.containers().get(&c).is_some_and(|x| x.running)
    })
    .await;
    let resumed = w.events(SERVER_RESUMED).await;
    let moved = resumed.iter().find(|e| e.server == Some(c) && e.data["reason"] == "migrated").expect("moved");
    let downtime = moved.data["downtime_ms"].as_u64().unwrap();
    assert_eq!(moved.data["disrupted_player_ms"].as_u64(), Some(3 * downtime), "three players waited it out");
    assert!(w.live.recommendations(None).is_empty());
    let consented = w.events(SERVER_CONSENTED).await;
    assert_eq!(consented.len(), 1);
    assert_eq!(consented[0].data["by"], "owner:1");
}

#[tokio::test(flavor = "current_thread")]
async fn an_auto_owner_is_told_and_the_server_moves_once_the_notice_is_up_even_across_a_restart() {
    let mut w = World::new().await;
    with_players_on_a_vm(&mut w, CostMode::Auto).await;
    w.until("the move is announced", async |w| !w.events(SERVER_ANNOUNCED).await.is_empty()).await;
    let announced = w.events(SERVER_ANNOUNCED).await[0].clone();
    let moves_at = announced.data["moves_at"].as_i64().unwrap();
    assert_eq!(moves_at - announced.at, 10 * MINUTE, "the notice");
    assert!(announced.data["text"].as_str().unwrap().starts_with("say "), "{}", announced.data);
    // The players are told on the console (the fake has none: recorded, nobody alerted).
    w.until("the announcement was tried", async |w| {
        w.events(INTENT_FAILED).await.iter().any(|e| e.data["key"].as_str().is_some_and(|k| k.starts_with("say:")))
    })
    .await;
    w.restart().await;
    w.until("c moves", async |w| !w.events(SERVER_MIGRATING).await.is_empty()).await;
    let moving = w.events(SERVER_MIGRATING).await[0].clone();
    assert!(moving.at >= moves_at, "not before the notice is up ({} ms early)", moves_at - moving.at);
    assert_eq!(w.events(SERVER_ANNOUNCED).await.len(), 1, "announced once, even across the restart");
    assert_eq!(moving.data["players"], 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_vm_being_emptied_stays_so_across_a_restart() {
    let mut w = World::new().await;
    let (a, b, c) = (w.server("a", 2048).await, w.server("b", 2048).await, w.server("c", 2048).await);
    for id in [a, b, c] {
        w.live.request_start(id, w.now).await.unwrap();
    }
    w.until("c runs on a VM", async |w| w.state(c).await == ServerState::Running).await;
    w.live.request_stop(a, w.now).await.unwrap();
    w.until("c is moved", async |w| !w.events(SERVER_MIGRATING).await.is_empty()).await;
    // The controller restarts in the middle of the move; then another server wants room.
    w.restart().await;
    let d = w.server("d", 2048).await;
    w.live.request_start(d, w.now).await.unwrap();
    w.until("d runs", async |w| w.state(d).await == ServerState::Running).await;
    let old = w.cloud.vms()[0].name.clone();
    let on_old = w.vms.lock().unwrap()[&old].containers().contains_key(&d);
    assert!(!on_old, "the VM being emptied took nothing new");
    w.until("the emptied VM is deleted", async |w| w.cloud.vms()[0].deleted_at.is_some()).await;
    assert_eq!(w.state(c).await, ServerState::Running);
    assert!(w.ded.containers()[&c].running, "the move finished after the restart");
    // The copy waited for the VM's address (known from the cloud's first listing after the
    // restart) instead of taking the VM for gone.
    assert!(w.events(SERVER_START_FAILED).await.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_move_under_way_at_a_restart_is_still_a_move_and_its_failure_puts_the_server_back() {
    let mut w = World::new().await;
    let (a, b, c) = (w.server("a", 2048).await, w.server("b", 2048).await, w.server("c", 2048).await);
    for id in [a, b, c] {
        w.live.request_start(id, w.now).await.unwrap();
    }
    w.until("c runs on a VM", async |w| w.state(c).await == ServerState::Running).await;
    w.ded.set_disk_left(Some(0));
    w.live.request_stop(a, w.now).await.unwrap();
    w.until("c is moved", async |w| !w.events(SERVER_MIGRATING).await.is_empty()).await;
    // The controller restarts before the copy is tried; then the copy fails.
    w.restart().await;
    w.until("the move fails", async |w| {
        w.events(SERVER_START_FAILED).await.iter().any(|e| e.server == Some(c) && e.data["migration"] == true)
    })
    .await;
    w.until("c runs again on the VM", async |w| {
        w.state(c).await == ServerState::Running && w.vm().containers().get(&c).is_some_and(|x| x.running)
    })
    .await;
    assert_eq!(w.live.metrics().migration_failures, 1, "counted as a failed move after the restart");
}

/// Pay-per-use switched on: the running server stops once idle for `idle_timeout`; switched
/// off, it runs on without players; a restart keeps what was chosen.
#[tokio::test(flavor = "current_thread")]
async fn pay_per_use_switched_on_stops_an_idle_server_and_off_keeps_it_running() {
    let mut w = World::new().await;
    let a = w.server("a", 1024).await;
    w.live.request_start(a, w.now).await.unwrap();
    w.until("a runs", async |w| w.state(a).await == ServerState::Running).await;
    // Not pay-per-use: ten idle minutes change nothing.
    for _ in 0..120 {
        w.step().await;
    }
    assert_eq!(w.state(a).await, ServerState::Running);
    assert!(w.events(SERVER_IDLE).await.is_empty());
    let row = w.live.set_pay_per_use(w.now, a, true).await.unwrap();
    assert!(row.pay_per_use && w.store.server(a).await.unwrap().pay_per_use);
    let switched = w.now;
    w.until("a stops when idle", async |w| w.state(a).await == ServerState::Sleeping).await;
    let idle = w.events(SERVER_IDLE).await;
    assert_eq!(idle.len(), 1);
    assert!(idle[0].at - switched >= 5 * MINUTE, "idle counted from the switch, not before");
    let changed = w.events(SERVER_PAY_PER_USE).await;
    assert_eq!(
        (changed.len(), changed[0].data["from"].clone(), changed[0].data["pay_per_use"].clone()),
        (1, false.into(), true.into())
    );
    // Off again, and a restart: it runs on without players.
    w.live.set_pay_per_use(w.now, a, false).await.unwrap();
    w.restart().await;
    w.live.request_start(a, w.now).await.unwrap();
    w.until("a runs again", async |w| w.state(a).await == ServerState::Running).await;
    for _ in 0..120 {
        w.step().await;
    }
    assert_eq!(w.state(a).await, ServerState::Running);
    assert_eq!(w.events(SERVER_IDLE).await.len(), 1);
}
