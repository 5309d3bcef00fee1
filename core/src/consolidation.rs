//! Consolidation (SPEC §7): move running servers off a cloud VM so that it can be deleted,
//! when that saves enough per hour and stays within a disruption budget. Only servers
//! without players move, unless their owner consented (`cost_mode`): `auto` after an
//! announcement and at most once per interval, `suggest` once a recommendation is accepted.
//!
//! The planner is a pure function of a snapshot of the fleet, so deciding twice on the same
//! state gives the same plan (tested), and it never plans onto the VM it empties.

use crate::model::{NodeId, ServerId};
use crate::time::Millis;
use rust_decimal::Decimal;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsolidationParams {
    /// How often to look for a VM to empty.
    pub every: Millis,
    /// Only empty a VM that costs at least this per hour.
    pub min_saving_per_hour: Decimal,
    /// Disruption budget: migrations within any hour.
    pub max_migrations_per_hour: u32,
    /// `auto` owners are told this long before their server moves.
    pub announce: Millis,
    /// An `auto` server with players moves at most once per this interval.
    pub auto_once_per: Millis,
}

/// Whether a server may move now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Movable {
    Yes,
    /// Has players, owner chose `auto`: announce first.
    NeedsAnnouncement,
    /// Has players, owner chose `suggest`: recommend first.
    NeedsAcceptance,
    /// Starting, owner said `off` while players are on, or waiting for its announcement.
    No,
}

/// A node as the planner sees it, in node order.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanNode {
    pub id: NodeId,
    pub is_cloud: bool,
    /// Takes new servers (ready, not cordoned).
    pub accepts: bool,
    pub free_mib: u64,
    /// Disk free for worlds (`u64::MAX` where disk decides nothing).
    pub free_disk_mb: u64,
    /// What deleting it saves per hour (0 for dedicated nodes).
    pub hourly: Decimal,
    /// Its starting and running servers: id, plan RAM, whether it may move, world size (MB).
    pub servers: Vec<(ServerId, u64, Movable, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub vm: NodeId,
    /// (server, target) in the order to carry out.
    pub moves: Vec<(ServerId, NodeId)>,
    pub saving_per_hour: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Nothing,
    Migrate(Plan),
    /// The best VM to empty waits for owners: announce to these, recommend to those.
    Ask {
        vm: NodeId,
        announce: Vec<ServerId>,
        recommend: Vec<ServerId>,
        saving_per_hour: Decimal,
    },
}

/// The VM to empty next, coldest first (least RAM in use; the newest on ties).
pub fn plan(nodes: &[PlanNode], params: &ConsolidationParams, budget: u32) -> Outcome {
    let mut vms: Vec<&PlanNode> = nodes.iter().filter(|n| n.is_cloud && n.accepts && !n.servers.is_empty()).collect();
    let used = |n: &PlanNode| n.servers.iter().map(|s| s.1).sum::<u64>();
    vms.sort_by(|a, b| used(a).cmp(&used(b)).then(b.id.cmp(&a.id)));
    for vm in vms {
        if vm.hourly < params.min_saving_per_hour || vm.servers.len() as u32 > budget {
            continue;
        }
        if vm.servers.iter().any(|s| s.2 == Movable::No) {
            continue;
        }
        // First-fit decreasing onto the other accepting nodes, in node order.
        let mut free: Vec<(NodeId, u64, u64)> =
            nodes.iter().filter(|n| n.accepts && n.id != vm.id).map(|n| (n.id, n.free_mib, n.free_disk_mb)).collect();
        let mut servers = vm.servers.clone();
        servers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut moves = Vec::with_capacity(servers.len());
        for &(server, ram, _, disk) in &servers {
            let Some(slot) = free.iter_mut().find(|(_, f, d)| *f >= ram && *d >= disk) else { break };
            slot.1 -= ram;
            slot.2 = slot.2.saturating_sub(disk);
            moves.push((server, slot.0));
        }
        if moves.len() < servers.len() {
            continue;
        }
        let announce: Vec<ServerId> =
            servers.iter().filter(|s| s.2 == Movable::NeedsAnnouncement).map(|s| s.0).collect();
        let recommend: Vec<ServerId> =
            servers.iter().filter(|s| s.2 == Movable::NeedsAcceptance).map(|s| s.0).collect();
        if !announce.is_empty() || !recommend.is_empty() {
            return Outcome::Ask { vm: vm.id, announce, recommend, saving_per_hour: vm.hourly };
        }
        return Outcome::Migrate(Plan { vm: vm.id, moves, saving_per_hour: vm.hourly });
    }
    Outcome::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn params() -> ConsolidationParams {
        ConsolidationParams {
            every: 900_000,
            min_saving_per_hour: Decimal::new(1, 2),
            max_migrations_per_hour: 10,
            announce: 600_000,
            auto_once_per: 86_400_000,
        }
    }

    fn node(id: u32, is_cloud: bool, free_mib: u64, servers: &[(u32, u64, Movable)]) -> PlanNode {
        PlanNode {
            id: NodeId(id),
            is_cloud,
            accepts: true,
            free_mib,
            free_disk_mb: u64::MAX,
            hourly: if is_cloud { Decimal::new(16, 3) } else { Decimal::ZERO },
            servers: servers.iter().map(|&(s, r, m)| (ServerId(s), r, m, 0)).collect(),
        }
    }

    #[test]
    fn empties_the_coldest_vm_that_fits_elsewhere() {
        // Dedicated 0 has 5000 free; VM 1 runs 4096 + 2048, VM 2 runs 1024 + 2048 (coldest).
        // VM 2's servers (decreasing: 2048, 1024) both fit on node 0 → plan.
        let nodes = [
            node(0, false, 5000, &[]),
            node(1, true, 1000, &[(1, 4096, Movable::Yes), (2, 2048, Movable::Yes)]),
            node(2, true, 4000, &[(3, 1024, Movable::Yes), (4, 2048, Movable::Yes)]),
        ];
        let p = plan(&nodes, &params(), 10);
        assert_eq!(
            p,
            Outcome::Migrate(Plan {
                vm: NodeId(2),
                moves: vec![(ServerId(4), NodeId(0)), (ServerId(3), NodeId(0))],
                saving_per_hour: Decimal::new(16, 3)
            })
        );
        // Not enough budget for two migrations → nothing.
        assert_eq!(plan(&nodes, &params(), 1), Outcome::Nothing);
        // A server whose owner said no (players on, cost mode off) pins VM 2; then VM 1 is
        // emptied instead: 4096 onto node 0 (5000 free), 2048 onto VM 2 (4000 free).
        let mut pinned = nodes.clone();
        pinned[2].servers[0].2 = Movable::No;
        let Outcome::Migrate(p) = plan(&pinned, &params(), 10) else { panic!("VM 1 can be emptied") };
        assert_eq!((p.vm, p.moves), (NodeId(1), vec![(ServerId(1), NodeId(0)), (ServerId(2), NodeId(2))]));
        // Pin VM 1 too: nothing can move.
        pinned[1].servers[0].2 = Movable::No;
        assert_eq!(plan(&pinned, &params(), 10), Outcome::Nothing);
        // An `auto` owner with players is asked first.
        let mut ask = nodes.clone();
        ask[2].servers[1].2 = Movable::NeedsAnnouncement;
        assert!(
            matches!(plan(&ask, &params(), 10), Outcome::Ask { vm: NodeId(2), ref announce, .. } if announce == &[ServerId(4)])
        );
    }

    /// No flapping: deciding twice on the same state gives the same plan, a plan never
    /// targets the VM it empties, and once carried out (servers moved, VM gone) the next
    /// decision never moves a server that just moved.
    #[test]
    fn deciding_twice_changes_nothing() {
        for seed in 0..500u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut next_server = 0u32;
            let mut nodes: Vec<PlanNode> = (0..rng.random_range(2..7u32))
                .map(|id| {
                    let is_cloud = id > 0 && rng.random_bool(0.7);
                    let capacity: u64 = if is_cloud { 8192 } else { 32768 };
                    let mut servers = Vec::new();
                    let mut used = 0;
                    for _ in 0..rng.random_range(0..4) {
                        let ram = [1024u64, 2048, 4096][rng.random_range(0..3)];
                        if used + ram <= capacity {
                            used += ram;
                            servers.push((ServerId(next_server), ram, Movable::Yes, 0));
                            next_server += 1;
                        }
                    }
                    let mut n = node(id, is_cloud, capacity - used, &[]);
                    n.servers = servers;
                    n
                })
                .collect();
            let first = plan(&nodes, &params(), 10);
            assert_eq!(first, plan(&nodes, &params(), 10), "seed {seed}: same state, same plan");
            let Outcome::Migrate(p) = first else { continue };
            assert!(p.moves.iter().all(|&(_, to)| to != p.vm), "seed {seed}: never onto the VM it empties");
            // Carry it out: servers move, the VM is gone.
            let moved: Vec<ServerId> = p.moves.iter().map(|m| m.0).collect();
            for &(server, to) in &p.moves {
                let ram = nodes.iter().flat_map(|n| &n.servers).find(|s| s.0 == server).unwrap().1;
                let target = nodes.iter_mut().find(|n| n.id == to).unwrap();
                target.free_mib -= ram;
                target.servers.push((server, ram, Movable::No, 0)); // just moved: once per interval
            }
            nodes.retain(|n| n.id != p.vm);
            if let Outcome::Migrate(next) = plan(&nodes, &params(), 10) {
                assert!(next.moves.iter().all(|m| !moved.contains(&m.0)), "seed {seed}: a server moved twice");
            }
        }
    }
}
