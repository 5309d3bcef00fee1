//! Node disk as a capacity (SPEC §5) and billing by the customer's phase (SPEC §8) in the
//! twin, on hand-built fleets with the expected figures written out.

mod common;
use common::*;

/// `d100`: 16 GiB usable RAM (RAM never binds here) and exactly 100 GB of disk for worlds.
const D100: &str = "[types.dedicated.d100]\nram_gib = 17\ncores = 4\ndisk_gb = 100\ndisk_reserve_gb = 0\nmonthly_eur = 72\nreserve_mib = 1024\n";

fn fixed(disk: &str) -> String {
    format!("[[fleet.dedicated]]\ntype = \"d100\"\n[policy]\nkind = \"fixed\"\n{disk}\n{D100}")
}

#[test]
fn a_node_whose_disk_is_full_takes_no_more_worlds() {
    // a (70 GB) plays [0, 1 h) and sleeps on the node; b (40 GB) asks at 2 h: 30 GB free, so
    // it waits and is given up after 10 min — although 14 GiB of RAM are free. Without the
    // disk rule b runs at once.
    let servers = [srv("a", 2048, 70.0, false), srv("b", 2048, 40.0, false)];
    let ds = dataset(h(4), &servers, &[("a", 0, h(1)), ("b", h(2), h(3))]);
    let strict = run(&scenario(&fixed("[policy.disk]\nhigh_watermark_pct = 100")), &ds);
    assert_eq!((strict.starts, strict.abandoned_gave_up), (1, 1));
    let blind = run(&scenario(&fixed("[policy.disk]\nenforce = false")), &ds);
    assert_eq!((blind.starts, blind.abandoned_gave_up), (2, 0));
}

#[test]
fn past_the_watermark_a_sleeper_is_archived_at_once() {
    // Watermark 60 %: a's 70 GB are over it as soon as a sleeps (1 h) → archived then, not at
    // 49 h; b (40 GB) fits at 2 h. a was asleep for no time: no sleeping charge; its world
    // lies in the archive from 1 h to the window end at 4 h: 70 GB × 3 h at 3 EUR/TB-month
    // = 0.07 TB × 3 EUR × 3 / 720 = 0.000875 EUR. b sleeps from 3 h to 4 h: 40 GB × 1 h ×
    // 0.10 EUR/GB-month / 720 = 0.005556 EUR.
    let servers = [srv("a", 2048, 70.0, false), srv("b", 2048, 40.0, false)];
    let ds = dataset(h(4), &servers, &[("a", 0, h(1)), ("b", h(2), h(3))]);
    let o = run(&scenario(&fixed("[policy.disk]\nhigh_watermark_pct = 60")), &ds);
    assert_eq!((o.starts, o.abandoned_gave_up, o.archived), (2, 0, 1));
    assert_eq!(o.storage_cost.round_dp(6), d("0.000875"));
    assert_eq!(o.sleeping_revenue.round_dp(6), d("0.005556"));
}

#[test]
fn a_world_kept_hot_five_days_is_charged_the_48_h_window() {
    // a (10 GB) plays [0, 1 h) and never again; the window is 6 days. Sleep is billed for the
    // 48 h window whether the world is archived at 49 h or kept on disk to the end:
    // 10 GB × 48 h × 0.10 EUR/GB-month / 720 h = 0.066667 EUR. Kept on disk it costs no
    // archive storage; archived at 49 h it lies there 95 h: 0.01 TB × 95 h × 3 / 720 =
    // 0.003958 EUR.
    let ds = dataset(h(144), &[srv("a", 2048, 10.0, false)], &[("a", 0, h(1))]);
    let kept = run(&scenario(&fixed("[policy.disk]\nkeep_past_window = true")), &ds);
    let archived = run(&scenario(&fixed("")), &ds);
    for o in [&kept, &archived] {
        assert_eq!(o.sleeping_revenue.round_dp(6), d("0.066667"));
    }
    assert_eq!((kept.archived, kept.storage_cost), (0, d("0")));
    assert_eq!((archived.archived, archived.storage_cost.round_dp(6)), (1, d("0.003958")));
}

#[test]
fn bad_disk_keys_are_refused_with_their_key_path() {
    let bad = |text: &str| {
        let full = format!("name = \"t\"\ndataset = \"x\"\n{text}\n{TYPES}");
        conductor_sim::scenario::Scenario::parse(std::path::Path::new("t.toml"), &full).unwrap_err().to_string()
    };
    let e = bad(&fixed("[policy.disk]\nhigh_watermark_pct = 0"));
    assert!(e.contains("policy.disk.high_watermark_pct") && e.contains("1..=100"), "{e}");
    let e = bad(&fixed("[policy.disk]\nenforce = false\nkeep_past_window = true"));
    assert!(e.contains("policy.disk.enforce"), "{e}");
    let e = bad("[[fleet.dedicated]]\ntype = \"tiny\"\n[fleet.cloud]\ntype = \"tinyvm\"\nmax_vms = 1\n[policy.disk]\nkeep_past_window = true");
    assert!(e.contains("policy.disk") && e.contains("pinned"), "{e}");
    let e = bad(&format!("{}\n[types.cloud.v]\nram_gib = 4\ncores = 1\ndisk_gb = 10\ndisk_reserve_gb = 10\nhourly_eur = 1\nmonthly_cap_eur = 1\n", fixed("")));
    assert!(e.contains("types.cloud.v.disk_reserve_gb") && e.contains("less than disk_gb (10)"), "{e}");
}
