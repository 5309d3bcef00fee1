//! Staged worlds in the twin (SPEC §6, `[policy.staging]`): a server that plays every
//! Monday evening, replayed with and without staging, with the figures written out.

mod common;
use common::*;

const D100: &str = "[types.dedicated.d100]\nram_gib = 17\ncores = 4\ndisk_gb = 100\ndisk_reserve_gb = 0\nmonthly_eur = 72\nreserve_mib = 1024\n";

fn fixed(extra: &str) -> String {
    format!("[[fleet.dedicated]]\ntype = \"d100\"\n[policy]\nkind = \"fixed\"\n{extra}\n{D100}")
}

/// `a` (10 GB world) plays 19:00–20:00 on days 0, 7 and 14 of a 16-day window.
fn weekly() -> conductor_sim::dataset::Dataset {
    let day = h(24);
    let sessions =
        [("a", h(19), h(20)), ("a", 7 * day + h(19), 7 * day + h(20)), ("a", 14 * day + h(19), 14 * day + h(20))];
    dataset(16 * day, &[srv("a", 2048, 10.0, false)], &sessions)
}

#[test]
fn a_habit_is_staged_ahead_and_its_start_is_boot_only() {
    // Without staging: the first start is boot only (20 s); the world is archived 48 h after
    // each stop, so days 7 and 14 restore 10 GB at 100 MB/s (100 s) + boot: 120 s each.
    let ds = weekly();
    let plain = run(&scenario(&fixed("")), &ds);
    assert_eq!(plain.waits, vec![s(20), s(120), s(120)]);
    assert_eq!((plain.starts_restored, plain.staged), (2, 0));
    // With staging (2 weeks of history, no shrinkage, threshold 0.9), scored hourly: on day 7
    // one of the two weeks looked at had play at 19:00 — 1 / (1 + 2^(-1/3)) = 0.56, below the
    // threshold. On day 14 at 14:00 (the first round whose 6 h window holds 19:00) both did:
    // 1.0 → staged onto the node, copied by 14:01:40; the start at 19:00 is boot only.
    let text =
        fixed("[policy.staging]\nmin_probability = 0.9\nweeks = 2\nprior_weeks = 0\nhorizon_h = 6\nevery_min = 60");
    let staged = run(&scenario(&text), &ds);
    assert_eq!(staged.waits, vec![s(20), s(120), s(20)]);
    assert_eq!((staged.staged, staged.staged_used, staged.staged_dropped), (1, 1, 0));
    assert_eq!(staged.staged_mb, 10_000);
    assert_eq!(staged.restore_avoided_ms, 100_000);
    assert_eq!((staged.starts_restored, staged.restores_from_archive), (1, 1));
    // Where the world waited is invisible on the bill (SPEC §8): the same sleeping charge;
    // the customer plays 100 s more: 2 GiB × 100 s × 0.02 EUR/GiB-h = 0.001111 EUR. The
    // archive stays the copy of record (its storage is paid while the copy waits).
    assert_eq!(staged.sleeping_revenue, plain.sleeping_revenue);
    assert_eq!((staged.active_revenue - plain.active_revenue).round_dp(6), d("0.001111"));
    assert_eq!(staged.storage_cost, plain.storage_cost);
}

#[test]
fn a_copy_that_is_not_used_is_dropped_after_the_horizon() {
    // The same habit, but the third Monday is skipped: the copy made on day 14 at 14:00 is
    // dropped at 20:00 (6 h), its disk freed; nothing else changes.
    let day = h(24);
    let sessions = [("a", h(19), h(20)), ("a", 7 * day + h(19), 7 * day + h(20))];
    let ds = dataset(16 * day, &[srv("a", 2048, 10.0, false)], &sessions);
    let text = fixed("[policy.staging]\nmin_probability = 0.9\nweeks = 2\nprior_weeks = 0");
    let o = run(&scenario(&text), &ds);
    assert_eq!((o.staged, o.staged_used, o.staged_dropped), (1, 0, 1));
    assert_eq!(o.waits, vec![s(20), s(120)]);
}

#[test]
fn bad_staging_keys_are_refused_with_their_key_path() {
    let bad = |text: &str| {
        let full = format!("name = \"t\"\ndataset = \"x\"\n{text}\n{TYPES}");
        conductor_sim::scenario::Scenario::parse(std::path::Path::new("t.toml"), &full).unwrap_err().to_string()
    };
    let e = bad(&fixed("[policy.staging]\nmin_probability = 1.5"));
    assert!(e.contains("policy.staging.min_probability") && e.contains("[0, 1]"), "{e}");
    let e = bad(&fixed("[policy.staging]\nevery_min = 0"));
    assert!(e.contains("policy.staging.every_min"), "{e}");
    let e = bad(&fixed("[policy.staging]\nbudgt = 3"));
    assert!(e.contains("budgt"), "{e}");
    let e = bad("[[fleet.dedicated]]\ntype = \"tiny\"\n[fleet.cloud]\ntype = \"tinyvm\"\nmax_vms = 1\n[policy.staging]\nbudget = 3");
    assert!(e.contains("policy.staging") && e.contains("pinned"), "{e}");
}
