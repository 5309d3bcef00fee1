//! The twin against hand-computed expectations (SPEC §6, §8, §11). Each test states the
//! arithmetic it expects in a comment. Test node types (see common/mod.rs): `tiny` and
//! `tinyvm` both have exactly 8192 MiB usable; tiny costs 72 EUR/month, tinyvm 0.01 EUR/h.

mod common;
use common::*;

const FIXED_TINY: &str = r#"
[[fleet.dedicated]]
type = "tiny"
[policy]
kind = "fixed"
"#;

const REFERENCE_TINY: &str = r#"
[[fleet.dedicated]]
type = "tiny"
[fleet.cloud]
type = "tinyvm"
max_vms = 20
[policy]
kind = "reference"
"#;

#[test]
fn exact_revenue_of_one_server_on_one_node() {
    // One 4 GiB, 10 GB server started by hand for 3 h in a 24 h window.
    let ds = dataset(h(24), &[srv("a", 4096, 10.0, false)], &[("a", 0, h(3))]);
    let sc = scenario(FIXED_TINY);
    let k = kpis(&sc, &ds);
    // Running from 20 s (boot) to 3 h: 4 GiB × 10780 s = 11.9777… GiB-h × 0.02 = 0.2395555… → 0.239556.
    // Sleeping from 3 h to 24 h: 10 GB × 21 h / 720 h × 0.10 = 0.0291666… → 0.029167.
    assert_eq!(k.revenue_eur, d("0.268723"));
    // Dedicated: 72 × 24 / 720 = 2.4; no cloud; nothing archived (48 h not reached).
    assert_eq!(k.dedicated_cost_eur, d("2.4"));
    assert_eq!(k.infra_cost_eur, d("2.4"));
    assert_eq!(k.storage_cost_eur, d("0"));
    assert_eq!(k.promo_credit_eur, d("0"));
    assert_eq!(k.margin_eur, d("-2.131277"));
    assert_eq!((k.starts, k.starts_abandoned), (1, 0));
    assert_eq!(k.start_wait_max_s, 20.0);
}

#[test]
fn pay_per_use_sessions_merge_with_the_idle_timeout() {
    // Sessions [0,10m) [12m,20m) [31m,40m). Pay-per-use adds the 5 min idle timeout:
    // [0,15m) ∪ [12m,25m) = [0,25m) and [31m,45m) → two starts. Without pay-per-use the
    // same sessions are three separate intervals.
    let sessions = |id| [(id, 0, m(10)), (id, m(12), m(20)), (id, m(31), m(40))];
    let ds = dataset(h(1), &[srv("b", 2048, 1.0, true)], &sessions("b"));
    let sc = scenario(FIXED_TINY);
    let o = run(&sc, &ds);
    assert_eq!(o.starts, 2);
    // Active: (25m − 20s) + (45m − 31m20s) = 1480 s + 820 s = 2300 s × 2 GiB
    //   = 1.2777… GiB-h × 0.02 = 0.0255555… → 0.025556.
    assert_eq!(o.active_revenue, d("0.025556"));
    // Sleeping: [25m,31m) + [45m,60m) = 1260 s × 1 GB = 1260/2592000 GB-month × 0.10
    //   = 0.0000486… → 0.000049.
    assert_eq!(o.sleeping_revenue, d("0.000049"));

    let ds = dataset(h(1), &[srv("c", 2048, 1.0, false)], &sessions("c"));
    assert_eq!(run(&sc, &ds).starts, 3);
}

#[test]
fn queueing_and_abandonment() {
    // One node with 8192 MiB usable, no scaling.
    //  a 8 GiB [0,30m): placed at 0, running at 20 s.
    //  b 4 GiB [5m,50m): queued, gives up at 15m.
    //  c 4 GiB [22m,50m): queued; a stops at 30m → c placed, running 30m20s: wait 8m20s = 500 s.
    //  d 8 GiB [35m,38m): queued (4 GiB free), its interval ends at 38m → abandoned.
    let ds = dataset(
        h(1),
        &[
            srv("a", 8192, 1.0, false),
            srv("b", 4096, 1.0, false),
            srv("c", 4096, 1.0, false),
            srv("d", 8192, 1.0, false),
        ],
        &[("a", 0, m(30)), ("b", m(5), m(50)), ("c", m(22), m(50)), ("d", m(35), m(38))],
    );
    let sc = scenario(FIXED_TINY);
    let o = run(&sc, &ds);
    assert_eq!(o.starts, 2);
    assert_eq!((o.abandoned_gave_up, o.abandoned_interval_ended), (1, 1));
    let k = kpis(&sc, &ds);
    assert_eq!(k.starts_abandoned, 2);
    // Waits [20 s, 500 s]: p50 is the ⌈1⌉st = 20, p95 the ⌈1.9⌉ = 2nd = 500.
    assert_eq!((k.start_wait_p50_s, k.start_wait_p95_s, k.start_wait_max_s), (20.0, 500.0, 500.0));
}

#[test]
fn cloud_scale_up_waits_scale_down_and_started_hours() {
    //  a 8 GiB [0,1h) fills the tiny node (running at 20 s); b 4 GiB [10s,1h) queues.
    //  Tick 120 s: U = (8192 + 4096) / 8192 = 1.5 > 0.85 → create VM; ready at 240 s;
    //  the queue scan places b at 240 s, running 260 s: wait 250 s.
    //  Until 1h U = 12288 / 16384 = 0.75: nothing. At 3600 s both stop (interval ends
    //  run before the tick at the same instant), U = 0 → low since 3600.
    //  Tick 5400: low for 1800 s ≥ 30 min, cooldown long over → delete the VM; b, asleep
    //  on it, is archived.
    let ds =
        dataset(h(2), &[srv("a", 8192, 1.0, false), srv("b", 4096, 2.0, false)], &[("a", 0, h(1)), ("b", s(10), h(1))]);
    let sc = scenario(REFERENCE_TINY);
    let o = run(&sc, &ds);
    assert_eq!((o.scale_ups, o.scale_downs, o.archived), (1, 1, 1));
    let k = kpis(&sc, &ds);
    assert_eq!((k.starts, k.starts_abandoned), (2, 0));
    assert_eq!((k.start_wait_p50_s, k.start_wait_max_s), (20.0, 250.0));
    assert_eq!((k.cloud_vms_created, k.peak_cloud_vms), (1, 1));
    // VM life 120 s → 5400 s = 5280 s → 2 started hours × 0.01 = 0.02.
    assert_eq!(k.cloud_vm_hours_billed, 2);
    assert_eq!(k.cloud_cost_eur, d("0.02"));
    // Archive: b, 2 GB for [5400 s, 7200 s) = 0.5 h: 1 GB-h / 720 000 GB-h per TB-month… ×3
    //   = 2 × 0.5 / (1000 × 720) × 3 = 0.0000041… → 0.000004.
    assert_eq!(k.storage_cost_eur, d("0.000004"));
    // Active: a 8 GiB × 3580 s = 7.9555… GiB-h × 0.02 = 0.159111; b 4 GiB × 3340 s
    //   = 3.7111… × 0.02 = 0.074222. Sleeping: a 1 GB × 1 h, b 2 GB × 0.5 h: each
    //   1/720 GB-month × 0.10 = 0.000139.
    assert_eq!(o.active_revenue, d("0.233333"));
    assert_eq!(o.sleeping_revenue, d("0.000278"));
    // Dedicated 72 × 2 / 720 = 0.2.
    assert_eq!(k.infra_cost_eur, d("0.220004"));
}

#[test]
fn scale_up_is_one_vm_at_a_time_with_cooldown() {
    // a fills the tiny node; q1..q5 (8 GiB each, [10..50 s, 1h)) queue. Ticks every 120 s.
    //  120: create VM1 (ready 240: q1 placed, running 260, wait 250).
    //  240: VM1 done provisioning but the cooldown (300 s) runs until 420.
    //  360: cooldown not over (240 s). 480: create VM2 (ready 600: q2 placed, wait 600).
    //  q3..q5 give up at 630..650. 840: U = 24576/24576 = 1 > 0.85 → VM3 (ready 960),
    //  then U = 0.75: no more.
    let mut servers = vec![srv("a", 8192, 1.0, false)];
    let ids = ["q1", "q2", "q3", "q4", "q5"];
    servers.extend(ids.iter().map(|id| srv(id, 8192, 1.0, false)));
    let mut sessions = vec![("a", 0, h(1))];
    sessions.extend(ids.iter().enumerate().map(|(i, id)| (*id, s(10 * (i as i64 + 1)), h(1))));
    let ds = dataset(h(1), &servers, &sessions);
    let sc = scenario(REFERENCE_TINY);
    let o = run(&sc, &ds);
    assert_eq!((o.starts, o.abandoned_gave_up), (3, 3));
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(250), s(600)]);
    assert_eq!((o.cloud_vms_created, o.peak_cloud_vms), (3, 3));
}

#[test]
fn archiving_after_48_hours_and_the_restore_delay() {
    //  x 4 GiB, 5 GB: [0,1h) and [60h,61h) in a 96 h window. Stops at 1h, archived at 49h.
    //  At 60h it is restored: 5 GB at 100 MB/s = 50 s, + 20 s boot → wait 70 s.
    //  y 2 GiB, 20 GB: [2h,3h) and [10h,11h): still asleep on its node → boot only, 20 s.
    let ds = dataset(
        h(96),
        &[srv("x", 4096, 5.0, false), srv("y", 2048, 20.0, false)],
        &[("x", 0, h(1)), ("x", h(60), h(61)), ("y", h(2), h(3)), ("y", h(10), h(11))],
    );
    let sc = scenario(FIXED_TINY);
    let o = run(&sc, &ds);
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(20), s(20), s(70)]);
    // y stops at 11h and is archived at 59h, inside the window, too.
    assert_eq!((o.archived, o.restores_from_archive, o.restores_from_node), (2, 1, 0));
    // Archive storage, rated on the total: x 5 GB × [49h,60h) = 55 GB-h; y 20 GB × [59h,96h)
    //   = 740 GB-h; 795 GB-h × 3 / (1000 × 720) = 0.0033125 exactly → half-even → 0.003312.
    assert_eq!(o.storage_cost, d("0.003312"));
    // Sleeping: x (49−1) + (96−61) = 83 h × 5 GB = 5 × 83 / 720 × 0.10 = 0.0576388… → 0.057639;
    //   y (10−3) + (59−11) = 55 h × 20 GB = 20 × 55 / 720 × 0.10 = 0.152777… → 0.152778.
    assert_eq!(o.sleeping_revenue, d("0.210417"));
    // Active: x 4 GiB × (3580 + 3530) s = 7.9 GiB-h → 0.158; y 2 GiB × 2 × 3580 s
    //   = 3.9777… GiB-h → 0.0795555… → 0.079556.
    assert_eq!(o.active_revenue, d("0.237556"));
}

#[test]
fn restore_from_a_full_node_goes_elsewhere() {
    // Two tiny nodes. s1 (4 GiB, 3 GB) runs [0,1h) on node 0 and sleeps there. b (8 GiB)
    // [61m,3h) takes node 0 (first fit). s1 again at 2h: node 0 is full → node 1, its data
    // copied over: 3 GB / 100 MB/s = 30 s + 20 s boot = 50 s.
    let ds = dataset(
        h(4),
        &[srv("s1", 4096, 3.0, false), srv("b", 8192, 1.0, false)],
        &[("s1", 0, h(1)), ("b", m(61), h(3)), ("s1", h(2), h(3))],
    );
    let sc = scenario(
        r#"
[[fleet.dedicated]]
type = "tiny"
count = 2
[policy]
kind = "fixed"
"#,
    );
    let o = run(&sc, &ds);
    assert_eq!(o.restores_from_node, 1);
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(20), s(50)]);
}

#[test]
fn same_instant_node_ready_runs_before_abandonment() {
    // Provisioning takes 480 s. a fills the node at 0; b, requested at 0 too (input order:
    // a's row first), queues. Tick 120 → VM ready at 600 = b's give-up instant. Node ready
    // (class 2) runs before abandonments (class 3): b is placed at 600, running 620.
    let ds =
        dataset(h(1), &[srv("a", 8192, 1.0, false), srv("b", 4096, 1.0, false)], &[("a", 0, h(1)), ("b", 0, h(1))]);
    let sc = scenario(&format!("{REFERENCE_TINY}\n[lifecycle]\nprovisioning_s = 480\n"));
    let o = run(&sc, &ds);
    assert_eq!((o.starts, o.abandoned()), (2, 0));
    assert_eq!(o.waits.iter().max(), Some(&s(620)));

    // One second slower and b gives up first.
    let sc = scenario(&format!("{REFERENCE_TINY}\n[lifecycle]\nprovisioning_s = 481\n"));
    let o = run(&sc, &ds);
    assert_eq!((o.starts, o.abandoned_gave_up), (1, 1));
}

#[test]
fn same_instant_interval_end_runs_before_boot_completion() {
    // c's interval [0,20s) ends exactly when its boot completes: the interval end runs
    // first, so the request is abandoned and the server never counts as running.
    let ds = dataset(h(1), &[srv("c", 4096, 1.0, false)], &[("c", 0, s(20))]);
    let o = run(&scenario(FIXED_TINY), &ds);
    assert_eq!((o.starts, o.abandoned_interval_ended), (0, 1));
    assert_eq!(o.active_revenue, d("0"));
}

#[test]
fn same_instant_stop_frees_ram_before_new_requests() {
    // a [0,10m) and d [10m,20m) both need the whole node: at 10m a's stop runs before d's
    // request, so d is placed at once (wait 20 s), not queued.
    let ds = dataset(
        h(1),
        &[srv("a", 8192, 1.0, false), srv("d", 8192, 1.0, false)],
        &[("a", 0, m(10)), ("d", m(10), m(20))],
    );
    let o = run(&scenario(FIXED_TINY), &ds);
    assert_eq!(o.waits, vec![s(20), s(20)]);
}

#[test]
fn same_instant_requests_go_in_input_order() {
    // e and f both want the whole node at 0; the sessions.csv row that comes first wins.
    let servers = [srv("e", 8192, 1.0, false), srv("f", 8192, 1.0, false)];
    let o = run(&scenario(FIXED_TINY), &dataset(h(1), &servers, &[("f", 0, m(30)), ("e", 0, m(30))]));
    // f runs [20 s, 30m); e gives up at 10m. Swap the rows and e runs instead; both
    // servers have the same plan so only which one ran tells them apart.
    assert_eq!((o.starts, o.abandoned_gave_up), (1, 1));
    let ran_f = o.active_revenue;
    let servers2 = [srv("e", 8192, 1.0, false), srv("f", 4096, 1.0, false)];
    let first_f = run(&scenario(FIXED_TINY), &dataset(h(1), &servers2, &[("f", 0, m(30)), ("e", 0, m(30))]));
    let first_e = run(&scenario(FIXED_TINY), &dataset(h(1), &servers2, &[("e", 0, m(30)), ("f", 0, m(30))]));
    // f (4 GiB) first: both fit? 4096 + 8192 > 8192, so e queues; e first: f queues.
    assert_eq!(first_f.starts, 1);
    assert_eq!(first_e.starts, 1);
    // f for 1780 s × 4 GiB = 1.9777… × 0.02 = 0.039556; e × 8 GiB = 0.079111.
    assert_eq!(first_f.active_revenue, d("0.039556"));
    assert_eq!(first_e.active_revenue, d("0.079111"));
    assert_eq!(ran_f, d("0.079111"));
}

#[test]
fn window_clipping_and_promotional_credit() {
    // An interval that began before the window is requested at the window start; one wholly
    // outside is ignored. Owners signed up inside the window get 5 EUR each.
    let mut newcomer = srv("n", 1024, 1.0, false);
    newcomer.created = m(30);
    let ds = dataset(
        h(2),
        &[srv("old", 1024, 1.0, false), newcomer],
        &[("old", -h(5), -h(4)), ("old", -h(1), m(10)), ("n", m(40), m(50)), ("n", h(3), h(4))],
    );
    let o = run(&scenario(FIXED_TINY), &ds);
    assert_eq!(o.requests, 2);
    // old: requested at the window start, running at 20 s: wait 20 s, not 1 h 20 s.
    assert_eq!(o.waits, vec![s(20), s(20)]);
    assert_eq!((o.owners_promoted, o.promo_credit), (1, d("5")));
}

#[test]
fn everything_stops_at_the_window_end() {
    // A request still starting at the window end is neither a start nor abandoned; a VM
    // alive at the end is billed up to the end.
    let ds = dataset(
        m(10),
        &[srv("a", 8192, 1.0, false), srv("b", 4096, 1.0, false)],
        &[("a", 0, h(1)), ("b", m(10) - s(5), h(1))],
    );
    let o = run(&scenario(REFERENCE_TINY), &ds);
    assert_eq!((o.starts, o.abandoned()), (1, 0));
    // VM created at 120 s, alive until 600 s: one started hour.
    assert_eq!((o.cloud_vms_created, o.cloud_vm_hours_billed), (1, 1));
}

#[test]
fn owners_sign_up_at_their_earliest_server() {
    let mut later = srv("b", 1024, 1.0, false);
    later.created = m(30);
    let mut ds = dataset(h(2), &[srv("a", 1024, 1.0, false), later], &[]);
    // Both servers belong to one owner who signed up before the window with server a.
    ds.servers[1].owner = 0;
    ds.owners.truncate(1);
    assert_eq!(run(&scenario(FIXED_TINY), &ds).owners_promoted, 0);
}

#[test]
fn scale_down_waits_for_low_use_and_skips_busy_vms() {
    //  a [0,1h) fills the tiny node; b [10s,1h) queues → VM1 created at tick 120, ready
    //  240, b placed there. c [250s,50m) queues; tick 360 is inside the cooldown; tick 480
    //  creates VM2 (ready 600, c placed). Now U = 24576/24576 = 1 > 0.85: tick 840 creates
    //  VM3 (ready 960, stays empty; U = 0.75). At 50m c stops and d (2 GiB, [50m,3h))
    //  takes its place on VM2 (first fit). At 1h a and b stop: U = 2048/32768 → low since
    //  3600.
    //  5400 (low 30 min): the newest ready VM without servers is VM3 → deleted.
    //  5520: low again since 5520. 7320: VM2 is newer but busy (d) → skipped; VM1 deleted,
    //  b (asleep on it) archived. 7440: low since 7440. 10800: d stops before the tick;
    //  low for 3360 s → VM2 deleted, c and d archived.
    //  Started hours: VM1 120→7320 = exactly 2 h → 2; VM2 480→10800 → 3; VM3 840→5400 → 2.
    let eight = |id| srv(id, 8192, 1.0, false);
    let ds = dataset(
        h(4),
        &[eight("a"), eight("b"), eight("c"), srv("d", 2048, 1.0, false)],
        &[("a", 0, h(1)), ("b", s(10), h(1)), ("c", s(250), m(50)), ("d", m(50), h(3))],
    );
    let o = run(&scenario(REFERENCE_TINY), &ds);
    assert_eq!((o.cloud_vms_created, o.peak_cloud_vms, o.scale_downs), (3, 3, 3));
    assert_eq!(o.cloud_vm_hours_billed, 7);
    assert_eq!(o.cloud_cost, d("0.07"));
    assert_eq!(o.archived, 3);
    // Waits: a 20 s, b 240+20−10 = 250 s, c 600+20−250 = 370 s, d 20 s.
    let mut waits = o.waits.clone();
    waits.sort();
    assert_eq!(waits, vec![s(20), s(20), s(250), s(370)]);
}
