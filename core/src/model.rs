//! Domain identifiers and the static description of customer servers.

use serde::{Deserialize, Serialize};

/// Index of a customer server (dense, assigned by the caller in input order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerId(pub u32);

/// Index of a node; dedicated nodes first, then cloud VMs in creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Dedicated,
    Cloud,
}

/// Plan size class used by the forecaster and reports (SPEC §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// ≤ 4 GiB
    Small,
    /// 5–8 GiB
    Medium,
    /// ≥ 9 GiB
    Large,
}

impl Tier {
    /// Tier of a plan. Plans between whole GiB are rounded up (4.5 GiB is medium).
    pub fn of_ram_mib(ram_mib: u32) -> Tier {
        match ram_mib {
            0..=4096 => Tier::Small,
            4097..=8192 => Tier::Medium,
            _ => Tier::Large,
        }
    }
}

/// Consent of the owner to cost optimisation that disrupts players (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CostMode {
    #[default]
    Off,
    Suggest,
    Auto,
}

/// What the core needs to know about a server to place and rate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub ram_mib: u32,
    /// World + mods on disk, in MB (10^6 bytes); see ARCHITECTURE.md "units".
    pub disk_mb: u64,
    pub pay_per_use: bool,
    pub cost_mode: CostMode,
}
