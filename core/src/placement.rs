//! Placement strategies: which ready node takes a server (SPEC §7).

use crate::model::{NodeId, NodeKind};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The first node in node order (dedicated in scenario order, then cloud VMs in
    /// creation order) with room. The reference policy's strategy.
    #[default]
    FirstFit,
    /// The node left with the least free RAM after placing; ties go to node order.
    BestFit,
    /// The node left with the most free RAM after placing; ties go to node order.
    WorstFit,
    /// Best fit among dedicated nodes, then best fit among cloud VMs: fill what is
    /// already paid for the month before touching hourly capacity.
    DedicatedFirst,
    /// Best fit among cloud VMs (newest first on ties), then dedicated nodes: keeps
    /// dedicated headroom for bursts while VMs exist anyway.
    CloudFirst,
    /// The next node with room after the one chosen last, wrapping around.
    RoundRobin,
}

/// A ready node that accepts servers, as seen by a placement decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub kind: NodeKind,
    pub free_mib: u64,
}

impl Strategy {
    /// Picks a node with `free_mib ≥ need` among `candidates`, given in node order.
    /// `last` is the node chosen by the previous placement (round-robin only).
    pub fn choose(self, candidates: &[Candidate], need: u64, last: Option<NodeId>) -> Option<NodeId> {
        let fits = |c: &&Candidate| c.free_mib >= need;
        let best_of = |kind: Option<NodeKind>| {
            candidates
                .iter()
                .filter(fits)
                .filter(|c| kind.is_none_or(|k| c.kind == k))
                .min_by_key(|c| c.free_mib)
                .map(|c| c.id)
        };
        match self {
            Strategy::FirstFit => candidates.iter().find(fits).map(|c| c.id),
            Strategy::BestFit => best_of(None),
            Strategy::WorstFit => candidates
                .iter()
                .filter(fits)
                // max_by_key returns the last maximum; keep node order on ties.
                .fold(None::<&Candidate>, |best, c| match best {
                    Some(b) if b.free_mib >= c.free_mib => Some(b),
                    _ => Some(c),
                })
                .map(|c| c.id),
            Strategy::DedicatedFirst => best_of(Some(NodeKind::Dedicated)).or_else(|| best_of(Some(NodeKind::Cloud))),
            Strategy::CloudFirst => candidates
                .iter()
                .rev()
                .filter(fits)
                .filter(|c| c.kind == NodeKind::Cloud)
                .min_by_key(|c| c.free_mib)
                .map(|c| c.id)
                .or_else(|| best_of(Some(NodeKind::Dedicated))),
            Strategy::RoundRobin => {
                let after = last.map_or(0, |l| candidates.partition_point(|c| c.id <= l));
                let (head, tail) = candidates.split_at(after);
                tail.iter().chain(head).find(fits).map(|c| c.id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Vec<Candidate> {
        let c = |id, kind, free_mib| Candidate { id: NodeId(id), kind, free_mib };
        vec![
            c(0, NodeKind::Dedicated, 3000),
            c(1, NodeKind::Dedicated, 9000),
            c(2, NodeKind::Cloud, 5000),
            c(3, NodeKind::Cloud, 9000),
        ]
    }

    #[test]
    fn each_strategy_picks_its_node() {
        let f = fleet();
        let pick = |s: Strategy, need, last| s.choose(&f, need, last).map(|n| n.0);
        assert_eq!(pick(Strategy::FirstFit, 4000, None), Some(1));
        assert_eq!(pick(Strategy::BestFit, 4000, None), Some(2));
        assert_eq!(pick(Strategy::WorstFit, 4000, None), Some(1), "ties keep node order");
        assert_eq!(pick(Strategy::DedicatedFirst, 2000, None), Some(0));
        assert_eq!(pick(Strategy::DedicatedFirst, 4000, None), Some(1));
        assert_eq!(pick(Strategy::CloudFirst, 4000, None), Some(2));
        assert_eq!(pick(Strategy::CloudFirst, 6000, None), Some(3));
        assert_eq!(pick(Strategy::CloudFirst, 9500, None), None);
        assert_eq!(pick(Strategy::RoundRobin, 1000, None), Some(0));
        assert_eq!(pick(Strategy::RoundRobin, 1000, Some(NodeId(0))), Some(1));
        assert_eq!(pick(Strategy::RoundRobin, 6000, Some(NodeId(1))), Some(3));
        assert_eq!(pick(Strategy::RoundRobin, 1000, Some(NodeId(3))), Some(0), "wraps");
        assert_eq!(pick(Strategy::FirstFit, 10_000, None), None);
    }
}
