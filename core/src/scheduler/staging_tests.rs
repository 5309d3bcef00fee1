//! Staged worlds in the core (SPEC §6): what is staged, where, within which budgets, and what
//! a staged start is. Worlds of 10 GB on a 100 GB node unless a test says otherwise.

use super::tests::{archived, disk_node, placed_on, with_disk, world};
use super::*;

const RULE: StagingRule = StagingRule { budget: 10, min_ppm: 500_000, keep: 6 * HOUR, mb_per_hour: 1_000_000 };

fn staging(rule: StagingRule, disk: Option<DiskRule>) -> SchedulerConfig {
    SchedulerConfig { staging: Some(rule), ..with_disk(disk) }
}

/// A scheduler whose `n` servers (10 GB worlds, 1 GiB) all lie in the archive.
fn archived_fleet(config: SchedulerConfig, n: usize) -> Scheduler {
    let mut s = Scheduler::new(config, &[disk_node()], vec![world(1024, 10); n]);
    let mut out = Outbox::default();
    for i in 0..n {
        s.adopt_stopped(ServerId(i as u32), None, 0, &mut out);
    }
    s
}

fn staged(out: &Outbox) -> Vec<ServerId> {
    out.commands
        .iter()
        .filter_map(|c| if let Command::Stage { server, .. } = c { Some(*server) } else { None })
        .collect()
}

fn unstaged(out: &Outbox) -> Vec<ServerId> {
    out.commands
        .iter()
        .filter_map(|c| if let Command::Unstage { server, .. } = c { Some(*server) } else { None })
        .collect()
}

fn restore_of(out: &Outbox, server: ServerId) -> Option<Restore> {
    out.commands.iter().find_map(|c| match c {
        Command::Place { server: s, restore, .. } if *s == server => Some(*restore),
        _ => None,
    })
}

#[test]
fn a_staged_world_starts_with_boot_only_and_its_disk_is_counted_once() {
    let mut s = archived_fleet(staging(RULE, Some(DiskRule::default())), 2);
    let mut out = Outbox::default();
    // s1 scores below the threshold: only s0 is copied, onto the node, 10 GB of its disk.
    s.set_wake_scores(HOUR, &[(ServerId(0), 800_000), (ServerId(1), 499_999)], &mut out);
    assert_eq!(staged(&out), vec![ServerId(0)]);
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 10_000);
    assert_eq!(s.staged(ServerId(0)), Some((NodeId(0), HOUR, false)));
    assert_eq!(s.residence(ServerId(0)), Residence::Archived, "the archive stays the copy of record");
    // Scored again: already staged, nothing new.
    out.clear();
    s.set_wake_scores(2 * HOUR, &[(ServerId(0), 800_000)], &mut out);
    assert!(staged(&out).is_empty());
    s.world_staged(ServerId(0), NodeId(0), HOUR);
    out.clear();
    s.request_start(3 * HOUR, ServerId(0), &mut out);
    assert_eq!(restore_of(&out, ServerId(0)), Some(Restore::Staged));
    assert_eq!(placed_on(&out, ServerId(0)), Some(NodeId(0)));
    // The copy became its world: still 10 GB on the node, no copy left.
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 10_000);
    assert_eq!((s.staged(ServerId(0)), s.staged_count()), (None, 0));
    // s1 was not staged: restored from the archive.
    out.clear();
    s.request_start(3 * HOUR, ServerId(1), &mut out);
    assert_eq!(restore_of(&out, ServerId(1)), Some(Restore::FromArchive));
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 20_000);
}

#[test]
fn a_start_before_the_copy_is_complete_restores_and_cancels_the_copy() {
    let mut s = archived_fleet(staging(RULE, Some(DiskRule::default())), 1);
    let mut out = Outbox::default();
    s.set_wake_scores(HOUR, &[(ServerId(0), 900_000)], &mut out);
    out.clear();
    s.request_start(HOUR + 1, ServerId(0), &mut out);
    assert_eq!(restore_of(&out, ServerId(0)), Some(Restore::FromArchive));
    assert_eq!(unstaged(&out), vec![ServerId(0)]);
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 10_000);
    // The late completion of the cancelled copy changes nothing.
    s.world_staged(ServerId(0), NodeId(0), HOUR);
    assert_eq!(s.staged(ServerId(0)), None);
}

#[test]
fn the_count_and_bandwidth_budgets_take_the_top_scores_first() {
    // Budget 2 copies: of four servers the two best scores (ties by id).
    let rule = StagingRule { budget: 2, ..RULE };
    let mut s = archived_fleet(staging(rule, None), 4);
    let mut out = Outbox::default();
    let scores = [(ServerId(0), 600_000), (ServerId(1), 900_000), (ServerId(2), 700_000), (ServerId(3), 700_000)];
    s.set_wake_scores(HOUR, &scores, &mut out);
    assert_eq!(staged(&out), vec![ServerId(1), ServerId(2)]);
    // 25 GB per hour: two 10 GB copies in the first hour, the third only an hour after.
    let rule = StagingRule { mb_per_hour: 25_000, ..RULE };
    let mut s = archived_fleet(staging(rule, None), 3);
    let scores = [(ServerId(0), 900_000), (ServerId(1), 800_000), (ServerId(2), 700_000)];
    let mut out = Outbox::default();
    s.set_wake_scores(HOUR, &scores, &mut out);
    assert_eq!(staged(&out), vec![ServerId(0), ServerId(1)]);
    out.clear();
    s.set_wake_scores(2 * HOUR - 1, &scores, &mut out);
    assert!(staged(&out).is_empty());
    s.set_wake_scores(2 * HOUR, &scores, &mut out);
    assert_eq!(staged(&out), vec![ServerId(2)]);
}

#[test]
fn an_unused_copy_is_dropped_after_keep_and_its_disk_freed() {
    let mut s = archived_fleet(staging(RULE, None), 1);
    let mut out = Outbox::default();
    s.set_wake_scores(HOUR, &[(ServerId(0), 900_000)], &mut out);
    s.world_staged(ServerId(0), NodeId(0), HOUR);
    out.clear();
    s.set_wake_scores(7 * HOUR - 1, &[], &mut out);
    assert!(unstaged(&out).is_empty());
    s.set_wake_scores(7 * HOUR, &[], &mut out);
    assert_eq!(unstaged(&out), vec![ServerId(0)]);
    assert_eq!((s.node(NodeId(0)).disk_used_mb, s.staged_count()), (0, 0));
    // Without a staging rule nothing is ever staged.
    let mut s = archived_fleet(with_disk(None), 1);
    let mut out = Outbox::default();
    s.set_wake_scores(HOUR, &[(ServerId(0), 1_000_000)], &mut out);
    assert!(out.commands.is_empty());
}

#[test]
fn staging_stays_below_the_watermark_and_is_dropped_before_any_sleeper() {
    // Watermark 50 % of 100 GB: four 10 GB copies fit (40 GB), a fifth would make 50 GB —
    // allowed (not over) — a sixth not.
    let rule = DiskRule { high_watermark_pct: 50, keep_past_window: false };
    let mut s = archived_fleet(staging(RULE, Some(rule)), 8);
    let mut out = Outbox::default();
    let scores: Vec<(ServerId, u32)> = (0..8).map(|i| (ServerId(i), 900_000 - i)).collect();
    s.set_wake_scores(HOUR, &scores, &mut out);
    assert_eq!(staged(&out).len(), 5);
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 50_000);
    // s7 (not staged) starts, is restored (60 GB > 50 %): the copies go, no sleeper is archived.
    out.clear();
    s.request_start(2 * HOUR, ServerId(7), &mut out);
    assert_eq!(restore_of(&out, ServerId(7)), Some(Restore::FromArchive));
    assert_eq!(unstaged(&out).len(), 5);
    assert!(archived(&out).is_empty());
    assert_eq!((s.node(NodeId(0)).disk_used_mb, s.staged_count()), (10_000, 0));
}

#[test]
fn copies_on_a_dead_node_are_gone_and_a_restart_restores() {
    let mut s = archived_fleet(staging(RULE, None), 1);
    let mut out = Outbox::default();
    s.set_wake_scores(HOUR, &[(ServerId(0), 900_000)], &mut out);
    s.world_staged(ServerId(0), NodeId(0), HOUR);
    s.node_unreachable(2 * HOUR, NodeId(0), &mut out);
    out.clear();
    s.timer(2 * HOUR + s.config().dead_after, Timer::DeadCheck { node: NodeId(0), since: 2 * HOUR }, &mut out);
    assert_eq!((s.staged(ServerId(0)), s.staged_count()), (None, 0));
    assert!(unstaged(&out).is_empty(), "nothing to delete on a dead node");
}

#[test]
fn a_predicted_start_takes_the_room_of_the_oldest_sleeper_kept_past_its_window() {
    // Watermark 50 % of 100 GB, keep_past_window: s0..s4 (10 GB each) stop at t = 0..4 and
    // stay hot past their window (50 GB). s5 lies in the archive and is predicted: its copy
    // needs 10 GB, so the oldest sleeper past its window (s0) is archived for it.
    let rule = DiskRule { high_watermark_pct: 50, keep_past_window: true };
    let mut s = Scheduler::new(staging(RULE, Some(rule)), &[disk_node()], vec![world(1024, 10); 6]);
    let mut out = Outbox::default();
    s.adopt_stopped(ServerId(5), None, 0, &mut out);
    for i in 0..5 {
        s.request_start(i, ServerId(i as u32), &mut out);
        s.wanted_end(i, ServerId(i as u32), &mut out);
    }
    let window = s.config().sleep_window;
    for i in 0..5 {
        s.timer(i + window, Timer::Archive { server: ServerId(i as u32), epoch: 1 }, &mut out);
    }
    assert!(archived(&out).is_empty(), "kept past the window");
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 50_000);
    out.clear();
    s.set_wake_scores(window + 10, &[(ServerId(5), 900_000)], &mut out);
    assert_eq!(archived(&out), vec![ServerId(0)]);
    assert_eq!(staged(&out), vec![ServerId(5)]);
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 50_000);
    // Only as much as the copy needs: the other sleepers stay hot.
    assert_eq!(s.residence(ServerId(1)), Residence::Sleeping { node: NodeId(0) });
}
