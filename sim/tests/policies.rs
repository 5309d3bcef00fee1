//! Composed scaling policies on tiny hand-built fleets, with the expected decisions written
//! out. `tiny` (dedicated) and `tinyvm` both have exactly 8192 MiB usable; provisioning 120 s.

mod common;
use common::*;

fn custom(policy: &str) -> String {
    format!(
        "[[fleet.dedicated]]\ntype = \"tiny\"\n[fleet.cloud]\ntype = \"tinyvm\"\nmax_vms = 20\n[policy]\nkind = \"custom\"\n{policy}\n"
    )
}

#[test]
fn spare_pool_keeps_an_idle_vm_against_the_reactive_scale_in() {
    // No demand at all. Tick 120: the spare pool wants 1 idle VM → created (ready 240).
    // From 120 on U = 0 is low; at 1920 the reactive policy wants to scale in, but the spare
    // pool (1 idle = its size) does not agree: the VM stays to the window end (2 h).
    let ds = dataset(h(2), &[srv("a", 1024, 1.0, false)], &[]);
    let o = run(&scenario(&custom("[policy.spare_pool]\nsize = 1")), &ds);
    assert_eq!((o.cloud_vms_created, o.scale_downs), (1, 0));
    assert_eq!(o.decisions.get("spare-pool create"), Some(&1));
    // Alive 120 s → 7200 s = 7080 s → 2 started hours.
    assert_eq!(o.cloud_vm_hours_billed, 2);
}

#[test]
fn predictive_provisions_before_the_demand_arrives() {
    // a (8 GiB) and b (4 GiB) both want [1h, 2h); the tiny node holds 8192 MiB.
    // Perfect forecast, target utilisation 1, lead = 120 s provisioning + 300 s buffer.
    // The first tick whose [t, t + 420 s] reaches 1 h is 3240 (27 × 120): the peak
    // 12288 MiB > 8192 → ⌈4096 / 8192⌉ = 1 VM, ready at 3360. At 1 h both are placed at
    // once: waits 20 s and 20 s.
    let servers = [srv("a", 8192, 1.0, false), srv("b", 4096, 1.0, false)];
    let ds = dataset(h(3), &servers, &[("a", h(1), h(2)), ("b", h(1), h(2))]);
    let table =
        "[policy.predictive]\nsource = \"perfect\"\nband = \"mean\"\ntarget_utilisation = 1\nlead_buffer_s = 300";
    let o = run(&scenario(&custom(&format!("reactive = false\n{table}"))), &ds);
    assert_eq!(o.waits, vec![s(20), s(20)]);
    assert_eq!(o.decisions.get("predictive create"), Some(&1));
    assert_eq!(o.decision_log[0].t, "2025-01-06T00:54:00Z", "created at 3240 s");
    assert!(o.decision_log[0].reason.contains("perfect forecast 12288 MiB"), "{}", o.decision_log[0].reason);

    // The reference policy only reacts: b queues until a VM made at tick 3720 is ready at
    // 3840: b waits 3840 + 20 − 3600 = 260 s.
    let o = run(&scenario(&custom("")), &ds);
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(260)]);

    // Shadow mode records what it would do and changes nothing.
    let o = run(&scenario(&custom(&format!("{table}\nshadow = true"))), &ds);
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(260)]);
    assert_eq!(o.decisions.get("predictive-shadow create"), None);
    // …but it is on record: first at 3240 s, as in the acting run.
    let first = o.decision_log.iter().find(|d| d.policy == "predictive-shadow").expect("shadow decisions recorded");
    assert_eq!((first.t.as_str(), first.action), ("2025-01-06T00:54:00Z", "would-create"));
    assert!(o.decisions.get("predictive-shadow would-create").is_some_and(|&n| n >= 1));
}

#[test]
fn billing_hour_scale_in_waits_for_the_end_of_the_paid_hour() {
    // a fills the node [0,1h); b [10s,1h) queues → VM created at tick 120 (as in the
    // reference test). From 3600 U is low; at 5400 the reactive policy wants the VM gone,
    // but it is 1920 s from its next started hour (created at 120: 5280 s of life). With a
    // 600 s margin it goes at the first tick with ≥ 3000 s into its hour: 6720 (life
    // 6600 s). Both cost 2 started hours; the VM served 22 minutes longer for free.
    let ds =
        dataset(h(3), &[srv("a", 8192, 1.0, false), srv("b", 4096, 1.0, false)], &[("a", 0, h(1)), ("b", s(10), h(1))]);
    let newest = run(&scenario(&custom("")), &ds);
    let billing = run(&scenario(&custom("scale_in = \"billing-hour\"\nbilling_margin_s = 600")), &ds);
    let deleted_at =
        |o: &conductor_sim::engine::Outcome| o.decision_log.iter().find(|d| d.action == "delete").map(|d| d.t.clone());
    assert_eq!(deleted_at(&newest).as_deref(), Some("2025-01-06T01:30:00Z"), "5400 s");
    assert_eq!(deleted_at(&billing).as_deref(), Some("2025-01-06T01:52:00Z"), "6720 s");
    assert_eq!((newest.cloud_vm_hours_billed, billing.cloud_vm_hours_billed), (2, 2));
}

#[test]
fn scale_up_takes_the_largest_request() {
    // With the spare pool (size 3) and the reactive policy both active and no demand, the
    // first tick creates 3 VMs at once (the pool's request), not 1.
    let ds = dataset(h(1), &[srv("a", 1024, 1.0, false)], &[]);
    let o = run(&scenario(&custom("[policy.spare_pool]\nsize = 3")), &ds);
    assert_eq!((o.cloud_vms_created, o.peak_cloud_vms), (3, 3));
    assert!(o.decision_log.iter().all(|d| d.t == "2025-01-06T00:02:00Z" && d.policy == "spare-pool"));
}

#[test]
fn draining_cordons_the_coldest_vm_and_deletes_it_when_empty() {
    //  a (8 GiB) [0,20m) fills the tiny node; b (2 GiB) [10s,3h) queues → VM1 at tick 120,
    //  ready 240, b runs there. a stops at 1200: U = 2048/16384 → low since 1200 (interval
    //  ends run before the tick at the same instant). At 3000 (low 30 min) the reactive
    //  policy wants to scale in, but VM1 is busy: with draining it is cordoned instead.
    //  b stops at 3 h on the cordoned VM → archived at once; the tick at 10800 deletes the
    //  empty VM (life 10680 s → 3 started hours).
    let servers = [srv("a", 8192, 1.0, false), srv("b", 2048, 1.0, false)];
    let ds = dataset(h(4), &servers, &[("a", 0, m(20)), ("b", s(10), h(3))]);
    let o = run(&scenario(&custom("drain = true")), &ds);
    let log: Vec<(&str, &str, &str)> = o.decision_log.iter().map(|d| (d.t.as_str(), d.policy, d.action)).collect();
    assert_eq!(
        log,
        vec![
            ("2025-01-06T00:02:00Z", "reactive", "create"),
            ("2025-01-06T00:50:00Z", "reactive", "cordon"),
            ("2025-01-06T03:00:00Z", "drain", "delete"),
        ]
    );
    assert_eq!((o.archived, o.cloud_vm_hours_billed), (1, 3));
    // Without draining the VM is never cordoned; the reactive policy deletes it at the
    // first tick it is idle (same instant here, since b keeps it busy to the end either way;
    // draining pays when new servers would otherwise land on the VM).
    let o = run(&scenario(&custom("")), &ds);
    let log: Vec<(&str, &str, &str)> = o.decision_log.iter().map(|d| (d.t.as_str(), d.policy, d.action)).collect();
    assert_eq!(
        log,
        vec![("2025-01-06T00:02:00Z", "reactive", "create"), ("2025-01-06T03:00:00Z", "reactive", "delete")]
    );
    assert_eq!(o.archived, 1, "b, asleep on the VM, is archived by the deletion");
}

#[test]
fn a_draining_vm_is_taken_back_before_a_new_one_is_made() {
    // As above, plus d (8 GiB) [1h,2h): at 3600 it takes the (now free) tiny node, and U =
    // (2048 + 8192) / 8192 (the cordoned VM does not count) > 0.85 → at tick 3720 the
    // reactive policy wants a VM: VM1 is uncordoned instead of creating one. After d stops
    // at 2 h U is low again from 7200 → cordon at 9000 → b stops at 3 h → deleted.
    let servers = [srv("a", 8192, 1.0, false), srv("b", 2048, 1.0, false), srv("d", 8192, 1.0, false)];
    let ds = dataset(h(4), &servers, &[("a", 0, m(20)), ("b", s(10), h(3)), ("d", h(1), h(2))]);
    let o = run(&scenario(&custom("drain = true")), &ds);
    let actions: Vec<(&str, &str)> = o.decision_log.iter().map(|d| (d.t.as_str(), d.action)).collect();
    assert_eq!(
        actions,
        vec![
            ("2025-01-06T00:02:00Z", "create"),
            ("2025-01-06T00:50:00Z", "cordon"),
            ("2025-01-06T01:02:00Z", "uncordon"),
            ("2025-01-06T02:30:00Z", "cordon"),
            ("2025-01-06T03:00:00Z", "delete"),
        ]
    );
    assert_eq!(o.cloud_vms_created, 1);
}

const TWO_TINY: &str = "[[fleet.dedicated]]\ntype = \"tiny\"\ncount = 2\n[policy]\nkind = \"fixed\"\n";

#[test]
fn a_dead_node_s_servers_restart_elsewhere_from_their_archive() {
    //  a (4 GiB, 2 GB) [0,2h) runs on node 0 from 20 s; b (1 GiB) [0,10m) also lands on
    //  node 0 and sleeps there from 600 s. Node 0 fails at 1800 s: a stops playing (and
    //  being billed). Silent for 300 s → dead at 2100: b's node copy is gone (archived), a
    //  restarts on node 1 from its archive: 2 GB restore 20 s + boot 20 s → running 2140.
    //  Lost play: 2140 − 1800 = 340 s. Active: a (1780 + 5060) s × 4 GiB = 7.6 GiB-h → 0.152;
    //  b 580 s × 1 GiB = 0.1611… GiB-h → 0.003222.
    let servers = [srv("a", 4096, 2.0, false), srv("b", 1024, 1.0, false)];
    let ds = dataset(h(2), &servers, &[("a", 0, h(2)), ("b", 0, m(10))]);
    let failure = "[[failures.events]]\nnode = \"dedicated:0\"\nat = \"2025-01-06T00:30:00Z\"\n";
    let o = run(&scenario(&format!("{TWO_TINY}{failure}")), &ds);
    assert_eq!((o.failures, o.nodes_dead), (1, 1));
    assert_eq!(o.lost_play_ms, 340_000);
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(20), s(40)]);
    assert_eq!(o.active_revenue, d("0.155222"));
    // b slept on node 0 from 600 s to its death at 2100 s: 1500 s × 1 GB = 1500/2592000 GB-month × 0.10.
    assert_eq!(o.sleeping_revenue, d("0.000058"));
}

#[test]
fn a_node_back_within_the_silence_limit_is_not_declared_dead() {
    // The same failure, but node 0 answers again after 3 minutes (< 5): nothing restarts,
    // a plays on; only the 180 s of silence are lost.
    let servers = [srv("a", 4096, 2.0, false)];
    let ds = dataset(h(2), &servers, &[("a", 0, h(2))]);
    let failure =
        "[failures]\nrepair_h = 0.05\n[[failures.events]]\nnode = \"dedicated:0\"\nat = \"2025-01-06T00:30:00Z\"\n";
    let o = run(&scenario(&format!("{TWO_TINY}{failure}")), &ds);
    assert_eq!((o.failures, o.nodes_dead, o.starts), (1, 0, 1));
    assert_eq!(o.lost_play_ms, 180_000);
}

#[test]
fn random_failures_are_seeded() {
    let servers = [srv("a", 4096, 2.0, false)];
    let ds = dataset(h(24 * 30), &servers, &[("a", 0, h(24 * 30))]);
    let text = format!("{TWO_TINY}[failures]\nrandom_per_node_month = 3\nrepair_h = 1\n");
    let mut sc = scenario(&text);
    let a = run(&sc, &ds);
    assert_eq!(run(&sc, &ds).failures, a.failures, "same seed, same failures");
    assert!(a.failures >= 1, "3 per node-month over a month on 2 nodes: {}", a.failures);
    sc.seed += 1;
    let b = run(&sc, &ds);
    assert_ne!((a.failures, a.lost_play_ms), (b.failures, b.lost_play_ms), "another seed, other failures");
}

#[test]
fn crashed_servers_are_restarted_by_the_core_and_their_downtime_is_lost_play() {
    // One server wanted for a day on two nodes, crashing on average every 2 h of running:
    // each crash ends its billed run at once (the restart boots for 20 s, unbilled), the core
    // restarts it (a crash loop needs 3 crashes within 10 min: practically never here), and
    // its players lose the boot time of every restart.
    let servers = [srv("a", 4096, 2.0, false)];
    let ds = dataset(h(24), &servers, &[("a", 0, h(24))]);
    let calm = run(&scenario(TWO_TINY), &ds);
    let sc = scenario(&format!("{TWO_TINY}[failures]\ncrashes_per_server_day = 12\n"));
    let o = run(&sc, &ds);
    assert!(o.crashes >= 3, "12 a day over a day: {}", o.crashes);
    assert_eq!(o.crash_loops, 0);
    assert_eq!(o.starts, 1 + o.crashes, "every crash restarted");
    assert_eq!(o.lost_play_ms, o.crashes * 20_000, "a 20 s boot lost per restart");
    // Billing stops at each crash: 20 s less running per crash, at 4 GiB.
    assert!(o.active_revenue < calm.active_revenue);
    let usage = sim_usage(&sc, &ds);
    let running_ms: i64 = usage.iter().filter(|u| u.running).map(|u| u.to - u.from).sum();
    assert_eq!(running_ms, h(24) - s(20) * (1 + o.crashes as i64), "billed exactly the observed running time");
    assert_eq!(run(&sc, &ds).crashes, o.crashes, "seeded");
}

#[test]
fn a_crash_loop_stops_the_server_until_its_owner_starts_it() {
    // With crash_limit = 1 the first crash is a loop: the server stays stopped (asleep on its
    // node, billed as sleeping), its request is not retried, and nothing runs after it.
    let servers = [srv("a", 4096, 2.0, false)];
    let ds = dataset(h(24), &servers, &[("a", 0, h(24))]);
    let sc = scenario(&format!("{TWO_TINY}[lifecycle]\ncrash_limit = 1\n[failures]\ncrashes_per_server_day = 12\n"));
    let o = run(&sc, &ds);
    assert_eq!((o.crashes, o.crash_loops, o.starts), (1, 1, 1));
    let usage = sim_usage(&sc, &ds);
    let crash = usage.iter().filter(|u| u.running).map(|u| u.to).max().unwrap();
    let end = usage.iter().map(|u| u.to).max().unwrap();
    assert!(crash < end, "the run ended at the crash, before the window's end");
    assert!(usage.iter().all(|u| u.running || u.from >= crash), "sleeping only after it");
    assert_eq!(o.lost_play_ms, 0, "nothing restarts: the loss is not counted as a wait");
}

#[test]
fn failed_starts_are_placed_again_and_every_request_ends_running_or_abandoned() {
    // A third of all starts never answer: the core frees their RAM, discards the container
    // and places the request again (another node first) until it runs or gives up.
    let servers: Vec<_> = ["a", "b", "c", "d", "e", "f"].iter().map(|n| srv(n, 2048, 1.0, false)).collect();
    let sessions: Vec<_> =
        ["a", "b", "c", "d", "e", "f"].iter().enumerate().map(|(i, n)| (*n, m(10 * i as i64), h(1))).collect();
    let ds = dataset(h(2), &servers, &sessions);
    let sc = scenario(&format!("{TWO_TINY}[failures]\nfailed_start_share = 0.33\n"));
    let o = run(&sc, &ds);
    assert!(o.failed_starts >= 1, "{}", o.failed_starts);
    assert_eq!(o.starts + o.abandoned_gave_up + o.abandoned_interval_ended, 6, "every request accounted for");
    assert!(o.waits.iter().any(|&w| w >= s(40)), "a failed start costs its player at least one more boot");
}

fn sim_usage(
    sc: &conductor_sim::scenario::Scenario,
    ds: &conductor_sim::dataset::Dataset,
) -> Vec<conductor_sim::engine::UsageSpan> {
    conductor_sim::engine::run_logging_usage(sc, ds, sc.seed).usage.unwrap()
}

#[test]
fn snapshots_provision_fast_and_cost_storage() {
    // The cloud-scale-up case of the twin tests, from a snapshot: the VM made at 120 s is
    // ready at 150 s (30 s), so b (queued since 10 s) runs at 170 s: wait 160 s instead of
    // 250 s. The snapshot (20 GB × 0.011 EUR/GB-month) is stored for the 2 h window:
    // 0.22 × 2 / 720 = 0.000611.
    let ds =
        dataset(h(2), &[srv("a", 8192, 1.0, false), srv("b", 4096, 2.0, false)], &[("a", 0, h(1)), ("b", s(10), h(1))]);
    let fleet =
        "[[fleet.dedicated]]\ntype = \"tiny\"\n[fleet.cloud]\ntype = \"tinyvm\"\nmax_vms = 20\nimage = \"snapshot\"\n";
    let o = run(&scenario(&format!("{fleet}[policy]\nkind = \"custom\"\n")), &ds);
    assert_eq!(o.waits.iter().max(), Some(&s(160)));
    assert_eq!(o.snapshot_cost, d("0.000611"));
    // VM 2 started hours × 0.01 + the snapshot.
    assert_eq!(o.cloud_cost, d("0.020611"));
}

const CONSOLIDATE: &str = "[policy.consolidation]\nevery_s = 300\nannounce_s = 600\nsave_s = 10\n";

#[test]
fn consolidation_moves_an_idle_server_off_a_vm() {
    //  a (8 GiB) [0,20m) fills the tiny node; b (2 GiB, 1 GB, pay-per-use) [10s,1h) queues →
    //  VM1 at 120, b runs there from 260; its idle tail (no players) is [1h, 1h05m).
    //  Consolidation looks every 300 s on the tick grid: 120, 480, 840, … , 3720 (1h02m): b
    //  has no players and fits on the tiny node (free since a stopped at 1200) → b migrates
    //  (save 10 s + copy 1 GB 10 s + boot 20 s: back at 3760), VM1 is cordoned; the tick at
    //  3840 deletes it. b then sleeps on the tiny node instead of being archived with VM1.
    let servers = [srv("a", 8192, 1.0, false), srv("b", 2048, 1.0, true)];
    let ds = dataset(h(2), &servers, &[("a", 0, m(20)), ("b", s(10), h(1))]);
    let o = run(&scenario(&custom(CONSOLIDATE)), &ds);
    let log: Vec<(&str, &str, &str)> = o.decision_log.iter().map(|d| (d.t.as_str(), d.policy, d.action)).collect();
    assert_eq!(
        log,
        vec![
            ("2025-01-06T00:02:00Z", "reactive", "create"),
            ("2025-01-06T01:02:00Z", "consolidation", "cordon"),
            ("2025-01-06T01:04:00Z", "drain", "delete"),
        ]
    );
    assert_eq!((o.migrations, o.disrupted_player_ms, o.archived), (1, 0, 0));
    // Without consolidation VM1 lives until the tick after b stops (3960) and takes b's
    // world to the archive with it.
    let o = run(&scenario(&custom("")), &ds);
    assert_eq!((o.migrations, o.archived), (0, 1));
}

#[test]
fn an_auto_owner_is_told_before_a_server_with_players_moves() {
    //  As above, but b has a player the whole time (manual start, [10s,2h)) and its owner
    //  chose `auto`. At the first check after a stops (1200) b is announced; at 1560 the
    //  600 s announcement has not passed; at 1920 it moves: 1 player × 40 s disrupted. The
    //  emptied VM goes at the tick at 2040.
    let servers = [srv("a", 8192, 1.0, false), srv("b", 2048, 1.0, false)];
    let mut ds = dataset(h(3), &servers, &[("a", 0, m(20)), ("b", s(10), h(2))]);
    ds.servers[1].cost_mode = conductor_core::model::CostMode::Auto;
    let o = run(&scenario(&custom(CONSOLIDATE)), &ds);
    assert_eq!((o.announcements, o.migrations, o.disrupted_player_ms), (1, 1, 40_000));
    let deleted = o.decision_log.iter().find(|d| d.action == "delete").map(|d| d.t.as_str());
    assert_eq!(deleted, Some("2025-01-06T00:34:00Z"));
    // With `off` the server with players never moves.
    ds.servers[1].cost_mode = conductor_core::model::CostMode::Off;
    let o = run(&scenario(&custom(CONSOLIDATE)), &ds);
    assert_eq!((o.announcements, o.migrations), (0, 0));
    // With `suggest` the owner is asked once; with acceptance 1 the move follows.
    ds.servers[1].cost_mode = conductor_core::model::CostMode::Suggest;
    let o = run(&scenario(&custom(&format!("{CONSOLIDATE}suggest_acceptance = 1\n"))), &ds);
    assert_eq!((o.recommendations, o.recommendations_accepted, o.migrations), (1, 1, 1));
    let o = run(&scenario(&custom(&format!("{CONSOLIDATE}suggest_acceptance = 0\n"))), &ds);
    assert_eq!((o.recommendations, o.recommendations_accepted, o.migrations), (1, 0, 0));
}

#[test]
fn a_spare_pool_sized_from_forecast_arrivals() {
    //  a, b, c (8 GiB each) all want [1h, 2h): the perfect forecast rises by 24576 MiB in
    //  the step at 1 h. With 120 s provisioning, 24576 × 120 / 900 = 3277 MiB arrive per
    //  provisioning delay → ⌈3277 / 8192⌉ = 1 spare VM, made at the first tick (the rise
    //  is within the next hour from the start). At 1 h: a takes the tiny node, b the spare
    //  VM (wait 20 s each); c has nowhere to go (no reactive policy) and gives up. The tick
    //  at 1 h itself (before the requests) must not give the spare VM up: the rise is in
    //  the current step.
    let servers = [srv("a", 8192, 1.0, false), srv("b", 8192, 1.0, false), srv("c", 8192, 1.0, false)];
    let ds = dataset(h(2), &servers, &[("a", h(1), h(2)), ("b", h(1), h(2)), ("c", h(1), h(2))]);
    let pool = "reactive = false\n[policy.spare_pool]\nfrom_forecast = true\nsource = \"perfect\"";
    let o = run(&scenario(&custom(pool)), &ds);
    assert_eq!(
        o.decision_log.iter().map(|d| (d.t.as_str(), d.policy)).collect::<Vec<_>>(),
        vec![("2025-01-06T00:02:00Z", "spare-pool")]
    );
    assert_eq!((o.starts, o.abandoned_gave_up), (2, 1));
    assert_eq!(o.waits, vec![s(20), s(20)]);
    // A fixed pool of 0 makes nothing.
    let o = run(&scenario(&custom("reactive = false\n[policy.spare_pool]\nsize = 0")), &ds);
    assert_eq!((o.cloud_vms_created, o.starts), (0, 1));
}

fn upgrade(text: &str) -> String {
    format!("{TWO_TINY}[[upgrades]]\nserver = \"a\"\nat = \"2025-01-06T00:30:00Z\"\nram_gib = 6\n{text}")
}

#[test]
fn a_plan_upgrade_restarts_in_place_when_the_node_has_room() {
    //  a (4 GiB, 2 GB) [0,2h) on node 0. At 30 min it becomes 6 GiB: node 0 has 4096 free
    //  + its own 4096 ≥ 6144 → restart in place: boot 20 s, no copy; back at 1820.
    //  Active: 1780 s × 4 GiB + 5380 s × 6 GiB = 39400 GiB·s = 10.9444… GiB-h → 0.218889.
    let ds = dataset(h(2), &[srv("a", 4096, 2.0, false)], &[("a", 0, h(2))]);
    let o = run(&scenario(&upgrade("")), &ds);
    assert_eq!((o.upgrades, o.migrations, o.disrupted_player_ms), (1, 1, 20_000));
    assert_eq!(o.active_revenue, d("0.218889"));
}

#[test]
fn a_plan_upgrade_moves_to_a_node_with_room() {
    //  b (4 GiB) fills node 0 beside a: a moves to node 1 (copy 2 GB 20 s + boot 20 s),
    //  back at 1840 on 6 GiB. a: 1780 × 4 + 5360 × 6 = 39280 GiB·s → 0.218222;
    //  b: 7180 s × 4 GiB → 0.159556.
    let servers = [srv("a", 4096, 2.0, false), srv("b", 4096, 1.0, false)];
    let ds = dataset(h(2), &servers, &[("a", 0, h(2)), ("b", 0, h(2))]);
    let o = run(&scenario(&upgrade("")), &ds);
    assert_eq!((o.migrations, o.disrupted_player_ms), (1, 40_000));
    assert_eq!(o.active_revenue, d("0.377778"));
}

#[test]
fn a_plan_upgrade_without_room_waits_for_the_next_start() {
    //  c (8 GiB) fills node 1 too: nowhere to go, a keeps running on 4 GiB (billed so).
    let servers = [srv("a", 4096, 2.0, false), srv("b", 4096, 1.0, false), srv("c", 8192, 1.0, false)];
    let ds = dataset(h(2), &servers, &[("a", 0, h(2)), ("b", 0, h(2)), ("c", 0, h(2))]);
    let o = run(&scenario(&upgrade("")), &ds);
    assert_eq!((o.upgrades, o.migrations), (1, 0));
    // a, b: 7180 s × 4 GiB each → 0.159556 each; c: 7180 s × 8 GiB → 0.319111.
    assert_eq!(o.active_revenue, d("0.638223"));
}

#[test]
fn an_upgrade_of_an_unknown_server_is_rejected_before_the_run() {
    let ds = dataset(h(2), &[srv("z", 4096, 2.0, false)], &[("z", 0, h(2))]);
    let e = scenario(&upgrade("")).check_against(&ds).unwrap_err().to_string();
    assert!(e.contains("key `upgrades[0].server`: no server \"a\""), "{e}");
}

#[test]
fn preemptible_jobs_fill_idle_dedicated_capacity_and_are_reported_apart() {
    // A day of light paying demand on two tiny nodes and a stream of 2 GiB jobs (4 an hour,
    // 1 h on average, 0.01 EUR/GiB-h). The figures depend on the seeded stream; the checks
    // are the invariants.
    let servers: Vec<Srv> = ["a", "b", "c"].iter().map(|id| srv(id, 8192, 1.0, false)).collect();
    let ds = dataset(h(24), &servers, &[("a", h(8), h(12)), ("b", h(9), h(13)), ("c", h(18), h(22))]);
    let jobs = "[jobs]\nrate_per_hour = 4\nram_gib = [2]\nduration_h = 1\nprice_eur_per_gib_hour = 0.01\n";
    let sc = scenario(&format!("{TWO_TINY}{jobs}"));
    let o = run(&sc, &ds);
    assert!(o.jobs_submitted > 50, "{}", o.jobs_submitted);
    assert!(o.jobs_completed + o.jobs_preempted <= o.jobs_submitted);
    assert!(o.jobs_preempted > 0, "paying servers needed room taken by jobs");
    assert!(o.job_revenue > d("0"));
    // Paying servers still all run (after at most the 5-minute notice) and job revenue is
    // not part of the paying revenue.
    assert_eq!((o.starts, o.abandoned()), (3, 0));
    assert!(o.waits.iter().all(|&w| w <= s(300) + s(20)), "{:?}", o.waits);
    let without = run(&scenario(TWO_TINY), &ds);
    assert!(without.waits.iter().all(|&w| w == s(20)));
    assert!(o.active_revenue <= without.active_revenue, "notices can only delay paying servers");
    assert_eq!(without.job_revenue, d("0"));
    // Same seed, same stream.
    assert_eq!(run(&sc, &ds).job_revenue, o.job_revenue);
}
