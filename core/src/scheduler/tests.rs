use super::*;
use crate::catalogue::Reserve;
use crate::model::CostMode;
use crate::time::SECOND;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

pub(super) fn vm() -> CloudType {
    CloudType {
        name: "vm".into(),
        ram_mib: 8192,
        cores: 2,
        disk_gb: 80,
        disk_reserve_gb: 0,
        hourly_eur: Decimal::new(1, 2),
        monthly_cap_eur: Decimal::from(5),
        reserve: Reserve::Mib(0),
    }
}

pub(super) fn node(ram_mib: u32) -> DedicatedType {
    DedicatedType {
        name: "d".into(),
        ram_mib,
        cores: 4,
        disk_gb: 100,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(50),
        reserve: Reserve::Mib(0),
    }
}

pub(super) fn spec(ram_mib: u32) -> ServerSpec {
    ServerSpec { ram_mib, disk_mb: 1000, pay_per_use: true, cost_mode: CostMode::Off }
}

/// A live controller rebuilds its scheduler from what exists (adoption); the result
/// must decide exactly as a scheduler that saw the events did.
#[test]
fn adopting_what_exists_equals_having_seen_it_happen() {
    let nodes = [node(16384)];
    let config = SchedulerConfig::reference(vm(), 4);
    let mut out = Outbox::default();
    // By events: server 0 runs on node 0, server 1 sleeps there since t = 100, one VM is ready.
    let mut seen = Scheduler::new(config.clone(), &nodes, vec![spec(4096), spec(2048), spec(8192)]);
    seen.request_start(0, ServerId(0), &mut out);
    seen.request_start(0, ServerId(1), &mut out);
    let placements: Vec<PlacementId> = out
        .commands
        .iter()
        .filter_map(|c| if let Command::Place { placement, .. } = c { Some(*placement) } else { None })
        .collect();
    seen.boot_complete(20, ServerId(0), placements[0], &mut out);
    seen.boot_complete(20, ServerId(1), placements[1], &mut out);
    seen.wanted_end(100, ServerId(1), &mut out);
    let vm_node = seen.create_vm(100, &mut out).unwrap();
    seen.node_ready(200, vm_node, &mut out);
    // By adoption, with servers added one by one.
    let mut adopted = Scheduler::new(config, &nodes, Vec::new());
    let ids: Vec<ServerId> = [4096, 2048, 8192].iter().map(|&r| adopted.add_server(spec(r))).collect();
    assert_eq!(ids, vec![ServerId(0), ServerId(1), ServerId(2)]);
    adopted.adopt_running(ids[0], NodeId(0), true);
    let mut wakes = Outbox::default();
    adopted.adopt_stopped(ids[1], Some(NodeId(0)), 100, &mut wakes);
    assert!(
        matches!(wakes.commands[..], [Command::Wake { at, timer: Timer::Archive { .. } }] if at == 100 + adopted.config.sleep_window)
    );
    assert_eq!(adopted.adopt_vm(true, 100), Some(vm_node));
    for sch in [&seen, &adopted] {
        assert_eq!(sch.residence(ServerId(0)), Residence::Running { node: NodeId(0) });
        assert_eq!(sch.residence(ServerId(1)), Residence::Sleeping { node: NodeId(0) });
    }
    assert_eq!(seen.utilisation(true), adopted.utilisation(true));
    assert_eq!(seen.cloud_vms(), adopted.cloud_vms());
    assert_eq!(seen.node(NodeId(0)).free_mib(), adopted.node(NodeId(0)).free_mib());
    // Both place the next request the same way (server 2, 8 GiB: first fit, node 0).
    let (mut a, mut b) = (Outbox::default(), Outbox::default());
    seen.request_start(300, ServerId(2), &mut a);
    adopted.request_start(300, ServerId(2), &mut b);
    let place = |o: &Outbox| {
        o.commands.iter().find_map(|c| {
            if let Command::Place { node, restore, .. } = c {
                Some((*node, *restore))
            } else {
                None
            }
        })
    };
    assert_eq!(place(&a), Some((NodeId(0), Restore::None)));
    assert_eq!(place(&a), place(&b));
    // And the sleeping server wakes where it sleeps, in both.
    let (mut a, mut b) = (Outbox::default(), Outbox::default());
    seen.request_start(400, ServerId(1), &mut a);
    adopted.request_start(400, ServerId(1), &mut b);
    assert_eq!(place(&a), Some((NodeId(0), Restore::None)));
    assert_eq!(place(&a), place(&b));
}

/// The fast queue scans make exactly the decisions of the literal one-pass scan, for
/// random streams of requests, stops, boots, ticks, VMs and timers — without a disk rule
/// (heads of RAM groups) and with one that binds (worlds of 5–45 GB on 100 GB nodes, VMs
/// of 80 GB: the merged walk).
#[test]
fn fast_queue_scan_matches_the_literal_scan() {
    let mut disk_bound_seeds = 0;
    for seed in 0..400u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let sizes = [1024, 2048, 3072, 4096, 6144, 8192];
        let disk = seed % 2 == 1;
        let servers: Vec<ServerSpec> = (0..40)
            .map(|_| {
                let ram = sizes[rng.random_range(0..sizes.len())];
                if disk {
                    world(ram, rng.random_range(5..=45))
                } else {
                    spec(ram)
                }
            })
            .collect();
        let nodes = [node(16384), node(12288)];
        let rule = DiskRule { high_watermark_pct: rng.random_range(70..=100), keep_past_window: rng.random_bool(0.5) };
        let config = SchedulerConfig { disk: disk.then_some(rule), ..SchedulerConfig::reference(vm(), 4) };
        let mut fast = Scheduler::new(config.clone(), &nodes, servers.clone());
        let mut slow = Scheduler::new(config, &nodes, servers);
        slow.naive_scan = true;
        let (mut a, mut b) = (Outbox::default(), Outbox::default());
        let mut now = 0;
        fast.start(now, &mut a);
        slow.start(now, &mut b);
        let mut pending: Vec<Command> = Vec::new();
        let mut queued_at_some_point = false;
        let mut disk_bound = false;
        for _ in 0..400 {
            assert_eq!(a.commands, b.commands, "seed {seed}");
            assert_eq!(a.notes, b.notes, "seed {seed}");
            for n in fast.nodes() {
                assert_eq!(n.servers.len() as u32, n.active, "seed {seed}: a node's server list matches its count");
            }
            queued_at_some_point |= fast.queue_len() > 1;
            // A request waits for disk while its RAM would fit: the case the walk is for.
            disk_bound |= fast.queue.keys().any(|&ram| u64::from(ram) <= fast.max_free_mib());
            pending.append(&mut a.commands);
            a.clear();
            b.clear();
            now += rng.random_range(0..90) * SECOND;
            let server = ServerId(rng.random_range(0..40));
            match rng.random_range(0..6) {
                0 | 1 => {
                    fast.request_start(now, server, &mut a);
                    slow.request_start(now, server, &mut b);
                }
                2 | 3 => {
                    fast.wanted_end(now, server, &mut a);
                    slow.wanted_end(now, server, &mut b);
                }
                _ if !pending.is_empty() => {
                    // Deliver a random outstanding command's completion or timer.
                    match pending.swap_remove(rng.random_range(0..pending.len())) {
                        Command::Place { server, placement, .. } => {
                            fast.boot_complete(now, server, placement, &mut a);
                            slow.boot_complete(now, server, placement, &mut b);
                        }
                        Command::CreateVm { node, .. } => {
                            fast.node_ready(now, node, &mut a);
                            slow.node_ready(now, node, &mut b);
                        }
                        Command::Wake { timer, at } => {
                            now = now.max(at);
                            fast.timer(now, timer, &mut a);
                            slow.timer(now, timer, &mut b);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        assert!(queued_at_some_point, "seed {seed} never exercised the queue");
        assert_eq!(fast.queue_len(), slow.queue_len());
        assert!(!disk_bound || disk, "seed {seed}: without a disk rule what fits by RAM is placed");
        disk_bound_seeds += u32::from(disk_bound);
    }
    assert!(disk_bound_seeds >= 50, "only {disk_bound_seeds} of 200 disk seeds had a request waiting for disk");
}

#[test]
fn preemptible_jobs_yield_to_paying_servers_after_their_notice() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut s = Scheduler::new(config, &[node(8192)], vec![spec(4096)]);
    let mut out = Outbox::default();
    // A 6 GiB job takes the idle node.
    let job0 = s.submit_job(0, 6144, &mut out);
    assert_eq!(out.commands, vec![Command::StartJob { job: job0, node: NodeId(0) }]);
    out.clear();
    // A paying 4 GiB server cannot fit (2 GiB free): it queues and the job gets notice.
    s.request_start(10 * SECOND, ServerId(0), &mut out);
    assert!(s.is_queued(ServerId(0)));
    assert!(out.commands.contains(&Command::NoticeJob { job: job0, node: NodeId(0), kill_at: 310 * SECOND }));
    out.clear();
    // A second job waits: a paying request is queued.
    let job1 = s.submit_job(20 * SECOND, 1024, &mut out);
    assert!(out.commands.is_empty());
    // The notice runs out: the job is killed, the server placed, then the waiting job
    // takes what is left (8192 − 4096 ≥ 1024).
    s.timer(310 * SECOND, Timer::JobKill { job: job0 }, &mut out);
    assert_eq!(out.commands[0], Command::KillJob { job: job0, node: NodeId(0) });
    assert!(matches!(out.commands[1], Command::Place { server: ServerId(0), node: NodeId(0), .. }));
    assert_eq!(out.commands[2], Command::StartJob { job: job1, node: NodeId(0) });
    assert_eq!(s.node(NodeId(0)).job_mib, 1024);
    // The node dies: its job is killed with it and holds no room when the node returns.
    out.clear();
    s.node_unreachable(400 * SECOND, NodeId(0), &mut out);
    let dead_at = 400 * SECOND + s.config().dead_after;
    s.timer(dead_at, Timer::DeadCheck { node: NodeId(0), since: 400 * SECOND }, &mut out);
    assert!(out.commands.contains(&Command::KillJob { job: job1, node: NodeId(0) }), "{:?}", out.commands);
    assert_eq!(s.node(NodeId(0)).job_mib, 0);
}

#[test]
fn the_scan_skips_what_does_not_fit_and_keeps_arrival_order() {
    // One 12 GiB node. a (12 GiB) runs; b (8), c (2), d (4) queue in that order.
    // a stops → 12 GiB free: b fits (4 left), c fits (2 left), d does not.
    let mut s = Scheduler::new(
        SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) },
        &[node(12288)],
        vec![spec(12288), spec(8192), spec(2048), spec(4096)],
    );
    let mut out = Outbox::default();
    for i in 0..4 {
        s.request_start(i * SECOND, ServerId(i as u32), &mut out);
    }
    assert_eq!(s.queue_len(), 3);
    out.clear();
    s.wanted_end(10 * SECOND, ServerId(0), &mut out);
    let placed: Vec<u32> = out
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Place { server, .. } => Some(server.0),
            _ => None,
        })
        .collect();
    assert_eq!(placed, vec![1, 2]);
    assert!(s.is_queued(ServerId(3)));
}

fn placed(out: &Outbox) -> Vec<(u32, u32, Restore, PlacementId)> {
    out.commands
        .iter()
        .filter_map(|c| match c {
            Command::Place { server, node, restore, placement } => Some((server.0, node.0, *restore, *placement)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failed_vm_frees_its_slot_and_the_policy_asks_again_after_its_cooldown() {
    // No dedicated node: a queued request makes the reference policy create a VM.
    let mut s = Scheduler::new(SchedulerConfig::reference(vm(), 4), &[], vec![spec(2048)]);
    let mut out = Outbox::default();
    s.start(0, &mut out);
    s.request_start(SECOND, ServerId(0), &mut out);
    out.clear();
    s.timer(120 * SECOND, Timer::Tick, &mut out);
    let vm0 = s.nodes().len() as u32 - 1;
    assert!(out.commands.contains(&Command::CreateVm { node: NodeId(vm0), vm_type: "vm".into() }));
    assert_eq!(s.cloud_vms(), 1);
    out.clear();
    // The create fails for good: the slot is free again and what was made is deleted.
    s.vm_failed(130 * SECOND, NodeId(vm0), &mut out);
    assert_eq!(s.cloud_vms(), 0);
    assert_eq!(s.node(NodeId(vm0)).state, NodeState::Deleted);
    assert!(out.notes.contains(&Note::VmFailed { node: NodeId(vm0) }));
    assert!(out.commands.contains(&Command::DeleteVm { node: NodeId(vm0) }));
    // A late ready report of the failed VM changes nothing.
    out.clear();
    s.node_ready(140 * SECOND, NodeId(vm0), &mut out);
    assert!(out.commands.is_empty() && s.is_queued(ServerId(0)));
    // Within the cooldown (300 s after the create) nothing; after it, a new VM.
    s.timer(240 * SECOND, Timer::Tick, &mut out);
    assert!(!out.commands.iter().any(|c| matches!(c, Command::CreateVm { .. })));
    s.timer(420 * SECOND, Timer::Tick, &mut out);
    assert!(out.commands.iter().any(|c| matches!(c, Command::CreateVm { node, .. } if node.0 == vm0 + 1)));
    assert_eq!(s.cloud_vms(), 1);
}

#[test]
fn a_failed_start_frees_the_ram_and_places_the_request_elsewhere_or_queues_it() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut s = Scheduler::new(config, &[node(4096), node(4096)], vec![spec(4096), spec(4096)]);
    let mut out = Outbox::default();
    s.request_start(0, ServerId(0), &mut out);
    let (_, n0, _, p0) = placed(&out)[0];
    assert_eq!(n0, 0);
    out.clear();
    // Node 0 cannot start it: discarded there, placed on node 1 (a node that failed it is
    // avoided while another fits), RAM accounted once.
    s.start_failed(60 * SECOND, ServerId(0), p0, &mut out);
    assert!(out.notes.contains(&Note::StartFailed { server: ServerId(0), node: NodeId(0) }));
    assert!(out.commands.contains(&Command::Discard { server: ServerId(0), node: NodeId(0), keep_data: false }));
    let again = placed(&out);
    assert_eq!((again[0].0, again[0].1, again[0].2), (0, 1, Restore::None));
    assert_eq!(s.node(NodeId(0)).reserved_mib, 0);
    assert_eq!(s.node(NodeId(1)).reserved_mib, 4096);
    // A stale failure report of the first placement changes nothing.
    out.clear();
    s.start_failed(61 * SECOND, ServerId(0), p0, &mut out);
    assert!(out.commands.is_empty() && out.notes.is_empty());
    // Server 1 takes node 0; then server 0's second placement fails too: the only node
    // with room is the one that just failed it, so it is tried again there.
    s.request_start(62 * SECOND, ServerId(1), &mut out);
    out.clear();
    s.start_failed(90 * SECOND, ServerId(0), again[0].3, &mut out);
    let third = placed(&out);
    assert_eq!((third[0].0, third[0].1), (0, 1));
    assert_eq!(s.requested_at(ServerId(0)), Some(0), "the request keeps its arrival time");
    // When no node can take it (here: its node stopped answering), a failed start waits
    // in the queue with the give-up timer of its first request.
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut q = Scheduler::new(config, &[node(4096)], vec![spec(4096)]);
    q.request_start(0, ServerId(0), &mut out);
    let p = placed(&out).last().unwrap().3;
    q.node_unreachable(30 * SECOND, NodeId(0), &mut out);
    out.clear();
    q.start_failed(60 * SECOND, ServerId(0), p, &mut out);
    assert!(q.is_queued(ServerId(0)));
    assert!(out
        .commands
        .contains(&Command::Wake { at: 600 * SECOND, timer: Timer::GiveUp { server: ServerId(0), seq: 0 } }));
    // Past give-up, a failed start abandons the request.
    out.clear();
    s.start_failed(700 * SECOND, ServerId(0), third[0].3, &mut out);
    assert!(out.notes.iter().any(|n| matches!(n, Note::Abandoned { reason: AbandonReason::StartFailed, .. })));
    assert!(!s.is_queued(ServerId(0)));
    assert_eq!(s.residence(ServerId(0)), Residence::New);
    assert_eq!(s.node(NodeId(1)).reserved_mib, 0);
}

#[test]
fn a_failed_restore_leaves_the_world_archived_and_a_failed_wake_keeps_it_sleeping() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut s = Scheduler::new(config, &[node(4096)], vec![spec(2048), spec(2048)]);
    let mut out = Outbox::default();
    s.adopt_stopped(ServerId(0), None, 0, &mut out);
    s.adopt_stopped(ServerId(1), Some(NodeId(0)), 0, &mut out);
    out.clear();
    s.request_start(SECOND, ServerId(0), &mut out);
    s.request_start(SECOND, ServerId(1), &mut out);
    let p = placed(&out);
    assert_eq!(p[0].2, Restore::FromArchive);
    assert_eq!(p[1].2, Restore::None);
    out.clear();
    s.start_failed(30 * SECOND, ServerId(0), p[0].3, &mut out);
    assert!(out.commands.contains(&Command::Discard { server: ServerId(0), node: NodeId(0), keep_data: false }));
    out.clear();
    s.start_failed(30 * SECOND, ServerId(1), p[1].3, &mut out);
    // The world sleeping on the node stays (and is archived when its window ends).
    assert!(out.commands.contains(&Command::Discard { server: ServerId(1), node: NodeId(0), keep_data: true }));
    assert!(out
        .commands
        .contains(&Command::Wake { at: 48 * 3600 * SECOND, timer: Timer::Archive { server: ServerId(1), epoch: 1 } }));
    // Both were placed again on the only node (nothing else fits), as they were.
    let p = placed(&out);
    assert!(p.iter().any(|p| p.0 == 1 && p.2 == Restore::None));
    assert!(matches!(s.residence(ServerId(1)), Residence::Starting { .. }));
}

#[test]
fn a_crash_ends_the_run_restarts_the_server_and_a_crash_loop_stops_it() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut s = Scheduler::new(config, &[node(4096)], vec![spec(2048)]);
    let mut out = Outbox::default();
    s.request_start(0, ServerId(0), &mut out);
    let mut placement = placed(&out)[0].3;
    s.boot_complete(20 * SECOND, ServerId(0), placement, &mut out);
    let mut t = 60 * SECOND;
    for crash in 1..=3u32 {
        out.clear();
        s.crashed(t, ServerId(0), placement, &mut out);
        let restarted = crash < 3;
        assert!(out.notes.contains(&Note::Crashed { server: ServerId(0), node: NodeId(0), crashes: crash, restarted }));
        // The container is made sure to be down; the world stays on the node.
        assert!(out.commands.contains(&Command::Stop { server: ServerId(0), node: NodeId(0) }));
        if restarted {
            // Started again on its node (boot only); a new run when it answers.
            let p = placed(&out);
            assert_eq!((p[0].1, p[0].2), (0, Restore::None));
            placement = p[0].3;
            out.clear();
            s.boot_complete(t + 20 * SECOND, ServerId(0), placement, &mut out);
            assert!(out.notes.contains(&Note::Running { server: ServerId(0), requested_at: t }));
        } else {
            // Three crashes within 10 minutes: stopped, RAM free, no restart.
            assert!(placed(&out).is_empty());
            assert_eq!(s.residence(ServerId(0)), Residence::Sleeping { node: NodeId(0) });
            assert_eq!(s.utilisation(true).demand_mib, 0);
        }
        t += 60 * SECOND;
    }
    // A crash reported for an old placement changes nothing.
    out.clear();
    s.crashed(t, ServerId(0), placement, &mut out);
    assert!(out.notes.is_empty());
    // Crashes spread wider than the window never add up to a loop.
    s.request_start(t, ServerId(0), &mut out);
    let mut placement = placed(&out).last().unwrap().3;
    for k in 0..5 {
        let at = t + (k + 1) * 11 * 60 * SECOND;
        s.boot_complete(at - 30 * SECOND, ServerId(0), placement, &mut out);
        out.clear();
        s.crashed(at, ServerId(0), placement, &mut out);
        assert!(out.notes.iter().any(|n| matches!(n, Note::Crashed { restarted: true, crashes: 1, .. })), "{out:?}");
        placement = placed(&out)[0].3;
    }
}

#[test]
fn a_placement_never_carried_out_leaves_the_world_where_it_was() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    // Node 0 is full (server 2), so server 0, asleep there, is placed on node 1 (a copy).
    let mut s = Scheduler::new(config, &[node(4096), node(4096)], vec![spec(2048), spec(2048), spec(4096)]);
    let mut out = Outbox::default();
    s.adopt_stopped(ServerId(0), Some(NodeId(0)), 0, &mut out);
    s.adopt_running(ServerId(2), NodeId(0), true);
    s.request_start(SECOND, ServerId(0), &mut out);
    assert_eq!(placed(&out)[0].2, Restore::FromNode(NodeId(0)));
    // Stopped before the copy happened: the core's rule (SPEC §11) says it sleeps on node 1,
    // the driver knows better.
    s.wanted_end(2 * SECOND, ServerId(0), &mut out);
    assert_eq!(s.residence(ServerId(0)), Residence::Sleeping { node: NodeId(1) });
    s.restore_undone(2 * SECOND, ServerId(0), &mut out);
    assert_eq!(s.residence(ServerId(0)), Residence::Sleeping { node: NodeId(0) });
    // Its next start finds it there (node 0 is still full: copied again to node 1).
    out.clear();
    s.request_start(3 * SECOND, ServerId(0), &mut out);
    assert_eq!(placed(&out)[0].2, Restore::FromNode(NodeId(0)));
    // A new server stopped before its first placement ran has no world anywhere yet.
    out.clear();
    s.request_start(4 * SECOND, ServerId(1), &mut out);
    s.wanted_end(5 * SECOND, ServerId(1), &mut out);
    s.restore_undone(5 * SECOND, ServerId(1), &mut out);
    assert_eq!(s.residence(ServerId(1)), Residence::New);
    // A copy that was carried out stays where it went if the start then fails.
    // (Server 0's start at 3 s, on node 1, is still under way.)
    assert_eq!(s.residence(ServerId(0)), Residence::Starting { node: NodeId(1) });
    s.world_copied(ServerId(0));
    out.clear();
    let p = s.placement(ServerId(0));
    s.start_failed(8 * SECOND, ServerId(0), p, &mut out);
    assert!(out.commands.contains(&Command::Discard { server: ServerId(0), node: NodeId(1), keep_data: true }));
    // A running server is never "undone".
    s.restore_undone(6 * SECOND, ServerId(2), &mut out);
    assert_eq!(s.residence(ServerId(2)), Residence::Running { node: NodeId(0) });
}

// ---------------------------------------------------------------- node disk (SPEC §5)

/// A node of 16 GiB RAM and 100 GB of disk (no reserves).
pub(super) fn disk_node() -> DedicatedType {
    node(16384)
}

pub(super) fn world(ram_mib: u32, disk_gb: u64) -> ServerSpec {
    ServerSpec { ram_mib, disk_mb: disk_gb * 1000, pay_per_use: true, cost_mode: CostMode::Off }
}

pub(super) fn with_disk(rule: Option<DiskRule>) -> SchedulerConfig {
    SchedulerConfig { scaling: ScalingPolicy::fixed(), disk: rule, ..SchedulerConfig::reference(vm(), 0) }
}

pub(super) fn placed_on(out: &Outbox, server: ServerId) -> Option<NodeId> {
    out.commands.iter().find_map(|c| match c {
        Command::Place { server: s, node, .. } if *s == server => Some(*node),
        _ => None,
    })
}

pub(super) fn archived(out: &Outbox) -> Vec<ServerId> {
    out.commands
        .iter()
        .filter_map(|c| if let Command::Archive { server, .. } = c { Some(*server) } else { None })
        .collect()
}

#[test]
fn a_node_whose_disk_is_full_takes_no_world() {
    // Two nodes, 100 GB each; worlds of 60, 50, 30 and 20 GB, 2 GiB of RAM each (RAM never
    // binds). First fit by RAM and disk: 60 → node 0 (40 left); 50 → node 1 (50 left);
    // 30 → node 0 (10 left); 20 → node 1 (node 0 has 10). Without the rule all go to node 0.
    let specs = vec![world(2048, 60), world(2048, 50), world(2048, 30), world(2048, 20)];
    let rule = DiskRule { high_watermark_pct: 100, keep_past_window: false };
    for (config, want) in [(with_disk(Some(rule)), [0, 1, 0, 1]), (with_disk(None), [0, 0, 0, 0])] {
        let mut s = Scheduler::new(config, &[disk_node(), disk_node()], specs.clone());
        let mut out = Outbox::default();
        for i in 0..4 {
            s.request_start(i, ServerId(i as u32), &mut out);
        }
        let got: Vec<u32> = (0..4).map(|i| placed_on(&out, ServerId(i)).unwrap().0).collect();
        assert_eq!(got, want);
        assert!(archived(&out).is_empty());
    }
    // Counted either way: 60 + 30 on node 0 with the rule.
    let mut s = Scheduler::new(with_disk(Some(rule)), &[disk_node(), disk_node()], specs);
    let mut out = Outbox::default();
    for i in 0..4 {
        s.request_start(i, ServerId(i as u32), &mut out);
    }
    assert_eq!((s.node(NodeId(0)).disk_used_mb, s.node(NodeId(1)).disk_used_mb), (90_000, 70_000));
    assert_eq!(s.node(NodeId(0)).free_disk_mb(), 10_000);
}

#[test]
fn a_request_without_disk_room_waits_until_a_world_leaves() {
    // One node of 100 GB: a (70 GB) sleeps there; b (40 GB) has RAM but no disk: queued.
    // a's sleep window ends → a is archived, its 70 GB freed → b is placed (restore).
    let rule = DiskRule { high_watermark_pct: 100, keep_past_window: false };
    let mut s = Scheduler::new(with_disk(Some(rule)), &[disk_node()], vec![world(2048, 70), world(2048, 40)]);
    let mut out = Outbox::default();
    s.request_start(0, ServerId(0), &mut out);
    s.wanted_end(10, ServerId(0), &mut out);
    out.clear();
    s.request_start(20, ServerId(1), &mut out);
    assert!(s.is_queued(ServerId(1)));
    let window = s.config().sleep_window;
    out.clear();
    s.timer(10 + window, Timer::Archive { server: ServerId(0), epoch: 1 }, &mut out);
    assert_eq!(archived(&out), vec![ServerId(0)]);
    assert_eq!(placed_on(&out, ServerId(1)), Some(NodeId(0)));
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 40_000);
}

#[test]
fn past_the_watermark_sleepers_are_archived_oldest_stop_first() {
    // 100 GB, watermark 80 %: worlds of 30 GB each. s1 stops at t=10, s0 at t=20 (s1 is the
    // older sleeper although its id is larger): 60 GB used. s2 is placed: 90 GB > 80 GB → s1
    // is archived (60 GB ≤ 80 GB: enough); s0 stays asleep.
    let rule = DiskRule { high_watermark_pct: 80, keep_past_window: false };
    let mut s = Scheduler::new(with_disk(Some(rule)), &[disk_node()], vec![world(1024, 30); 3]);
    let mut out = Outbox::default();
    s.request_start(0, ServerId(0), &mut out);
    s.request_start(0, ServerId(1), &mut out);
    s.wanted_end(10, ServerId(1), &mut out);
    s.wanted_end(20, ServerId(0), &mut out);
    assert!(archived(&out).is_empty());
    out.clear();
    s.request_start(30, ServerId(2), &mut out);
    assert_eq!(placed_on(&out, ServerId(2)), Some(NodeId(0)));
    assert_eq!(archived(&out), vec![ServerId(1)]);
    assert_eq!(s.residence(ServerId(1)), Residence::Archived);
    assert_eq!(s.residence(ServerId(0)), Residence::Sleeping { node: NodeId(0) });
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 60_000);
    // A world that grows (measured live) pushes the node past the watermark again: 60 + 25
    // = 85 GB > 80 → the oldest sleeper left (s0) goes.
    out.clear();
    s.set_world_mb(ServerId(2), 55_000, &mut out);
    assert_eq!(archived(&out), vec![ServerId(0)]);
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 55_000);
    // Without the rule nothing is archived early.
    let mut s = Scheduler::new(with_disk(None), &[disk_node()], vec![world(1024, 30); 3]);
    let mut out = Outbox::default();
    for i in 0..2 {
        s.request_start(0, ServerId(i), &mut out);
        s.wanted_end(10, ServerId(i), &mut out);
    }
    s.request_start(30, ServerId(2), &mut out);
    s.set_world_mb(ServerId(2), 90_000, &mut out);
    assert!(archived(&out).is_empty());
    assert_eq!(s.node(NodeId(0)).disk_used_mb, 150_000);
}

#[test]
fn kept_past_the_window_while_there_is_room() {
    // keep_past_window: s0 (30 GB) sleeps past its window (30 % < 80 %); it is archived
    // once s1 (60 GB) makes the node 90 % full. Without the option it goes at the window.
    let window = with_disk(None).sleep_window;
    for keep in [true, false] {
        let rule = DiskRule { high_watermark_pct: 80, keep_past_window: keep };
        let mut s = Scheduler::new(with_disk(Some(rule)), &[disk_node()], vec![world(1024, 30), world(1024, 60)]);
        let mut out = Outbox::default();
        s.request_start(0, ServerId(0), &mut out);
        s.wanted_end(10, ServerId(0), &mut out);
        out.clear();
        s.timer(10 + window, Timer::Archive { server: ServerId(0), epoch: 1 }, &mut out);
        if !keep {
            assert_eq!(archived(&out), vec![ServerId(0)]);
            continue;
        }
        assert!(archived(&out).is_empty());
        assert_eq!(s.residence(ServerId(0)), Residence::Sleeping { node: NodeId(0) });
        s.request_start(20 + window, ServerId(1), &mut out);
        assert_eq!(archived(&out), vec![ServerId(0)]);
    }
}

#[test]
fn a_node_that_joins_takes_the_queue_and_a_drained_one_takes_nothing_and_leaves_when_empty() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut s = Scheduler::new(config, &[node(4096)], vec![spec(4096), spec(2048), spec(2048), spec(1024)]);
    let mut out = Outbox::default();
    s.request_start(0, ServerId(0), &mut out);
    s.request_start(SECOND, ServerId(1), &mut out);
    assert!(s.is_queued(ServerId(1)), "node 0 is full");
    out.clear();
    // A node joins: the queued request is placed on it at once.
    let joined = s.add_dedicated(10 * SECOND, &node(4096), &mut out);
    assert_eq!(joined, NodeId(1));
    assert_eq!(placed_on(&out, ServerId(1)), Some(joined));
    assert_eq!(s.utilisation(false).usable_mib, 8192);
    for i in [0, 1] {
        let p = s.placement(ServerId(i));
        s.boot_complete(20 * SECOND, ServerId(i), p, &mut out);
    }
    s.request_start(30 * SECOND, ServerId(2), &mut out);
    let p = s.placement(ServerId(2));
    s.boot_complete(40 * SECOND, ServerId(2), p, &mut out);
    assert_eq!(s.residence(ServerId(2)), Residence::Running { node: joined });
    s.wanted_end(50 * SECOND, ServerId(2), &mut out);
    assert_eq!(s.residence(ServerId(2)), Residence::Sleeping { node: joined });
    out.clear();

    // Drained: its sleeper is archived, nothing new goes there, and not removable while
    // server 1 runs there.
    s.drain(joined, &mut out);
    assert_eq!(s.node(joined).state, NodeState::Cordoned);
    assert!(out.commands.contains(&Command::Archive { server: ServerId(2), node: joined }));
    assert_eq!(s.utilisation(false).usable_mib, 4096);
    out.clear();
    s.request_start(60 * SECOND, ServerId(3), &mut out);
    assert!(s.is_queued(ServerId(3)), "a drained node takes no new server");
    assert_eq!(s.retire(joined), Err(RetireError::NotEmpty { servers: 1 }));
    assert_eq!(s.retire(NodeId(0)), Err(RetireError::NotDrained));
    // A silence and a return: still drained, not back in service; the scaling policy never
    // uncordons nor deletes it.
    s.node_unreachable(70 * SECOND, joined, &mut out);
    s.node_reachable(80 * SECOND, joined, &mut out);
    assert_eq!(s.node(joined).state, NodeState::Cordoned);
    assert!(s.is_queued(ServerId(3)));
    s.timer(600 * SECOND, Timer::Tick, &mut out);
    assert_eq!(s.node(joined).state, NodeState::Cordoned);
    // Server 1 stops there: archived at once, not left on a node that is going.
    out.clear();
    s.wanted_end(90 * SECOND, ServerId(1), &mut out);
    assert_eq!(s.residence(ServerId(1)), Residence::Archived);
    assert!(out.commands.contains(&Command::Archive { server: ServerId(1), node: joined }));
    assert_eq!(s.retire(joined), Ok(()));
    assert_eq!(s.node(joined).state, NodeState::Deleted);
    assert_eq!(s.utilisation(false).usable_mib, 4096);

    // Undrain brings a drained node back: the queue is scanned.
    let third = s.add_dedicated(100 * SECOND, &node(1024), &mut out);
    assert_eq!(s.residence(ServerId(3)), Residence::Starting { node: third }, "it joins and takes the queue");
    let p = s.placement(ServerId(3));
    s.boot_complete(105 * SECOND, ServerId(3), p, &mut out);
    s.wanted_end(106 * SECOND, ServerId(3), &mut out);
    s.drain(third, &mut out);
    assert_eq!(s.residence(ServerId(3)), Residence::Archived);
    out.clear();
    s.request_start(107 * SECOND, ServerId(3), &mut out);
    assert!(s.is_queued(ServerId(3)));
    s.undrain(110 * SECOND, third, &mut out);
    assert_eq!(placed_on(&out, ServerId(3)), Some(third));
}

#[test]
fn a_failed_migration_leaves_the_world_where_it_ran_and_starts_it_again() {
    let config = SchedulerConfig { scaling: ScalingPolicy::fixed(), ..SchedulerConfig::reference(vm(), 0) };
    let mut s = Scheduler::new(config, &[node(4096), node(8192)], vec![spec(2048)]);
    let mut out = Outbox::default();
    s.request_start(0, ServerId(0), &mut out);
    let (_, n, _, p) = placed(&out)[0];
    assert_eq!(n, 0);
    s.boot_complete(10 * SECOND, ServerId(0), p, &mut out);
    // A plan change with room restarts it in place; the restart fails: it sleeps there (the
    // world is kept) and is started there again.
    out.clear();
    s.change_plan(20 * SECOND, ServerId(0), 4096, &mut out);
    let Some(&Command::Migrate { from, to, placement, .. }) =
        out.commands.iter().find(|c| matches!(c, Command::Migrate { .. }))
    else {
        panic!("{:?}", out.commands)
    };
    assert_eq!((from, to), (NodeId(0), NodeId(0)));
    out.clear();
    s.start_failed(30 * SECOND, ServerId(0), placement, &mut out);
    assert!(out.commands.contains(&Command::Discard { server: ServerId(0), node: NodeId(0), keep_data: true }));
    let again = placed(&out);
    assert_eq!((again[0].1, again[0].2), (0, Restore::None), "{:?}", out.commands);
    assert_eq!(s.node(NodeId(0)).outgoing, 0);
    s.boot_complete(40 * SECOND, ServerId(0), again[0].3, &mut out);
    // Without room it moves to node 1; that fails: asleep on node 0, its world still there,
    // the move's leftovers on node 1 discarded, and started again from node 0's copy.
    out.clear();
    s.change_plan(50 * SECOND, ServerId(0), 8192, &mut out);
    let Some(&Command::Migrate { from, to, placement, .. }) =
        out.commands.iter().find(|c| matches!(c, Command::Migrate { .. }))
    else {
        panic!("{:?}", out.commands)
    };
    assert_eq!((from, to, s.node(NodeId(0)).outgoing), (NodeId(0), NodeId(1), 1));
    out.clear();
    s.start_failed(60 * SECOND, ServerId(0), placement, &mut out);
    assert_eq!(s.node(NodeId(0)).outgoing, 0, "node 0 is no longer waited for");
    assert!(out.commands.contains(&Command::Discard { server: ServerId(0), node: NodeId(1), keep_data: false }));
    let again = placed(&out);
    assert_eq!((again[0].1, again[0].2), (1, Restore::FromNode(NodeId(0))), "only node 1 fits 8 GiB");
    assert_eq!(s.node(NodeId(1)).reserved_mib, 8192);
    assert_eq!(s.node(NodeId(0)).reserved_mib, 0);
}
