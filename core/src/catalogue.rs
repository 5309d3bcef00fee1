//! Node and VM types with their prices (SPEC §5). Loaded from a catalogue file by the
//! callers; the core only sees the validated values.

use rust_decimal::Decimal;

/// RAM a node keeps for its own system (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    Mib(u32),
    /// A percentage of RAM, e.g. 15 for 15 %.
    Percent(Decimal),
}

impl Reserve {
    /// Usable RAM = RAM − reserve. A percentage reserve is rounded up to whole MiB so that
    /// usable RAM never exceeds what the percentage allows (8192 MiB at 15 % → 6963 MiB).
    pub fn usable_mib(self, ram_mib: u32) -> u32 {
        let reserve = match self {
            Reserve::Mib(mib) => u64::from(mib),
            Reserve::Percent(pct) => {
                let exact = Decimal::from(ram_mib) * pct / Decimal::ONE_HUNDRED;
                let ceil = exact.ceil();
                rust_decimal::prelude::ToPrimitive::to_u64(&ceil).unwrap_or(u64::MAX)
            }
        };
        u64::from(ram_mib).saturating_sub(reserve) as u32
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedicatedType {
    pub name: String,
    pub ram_mib: u32,
    pub cores: u32,
    pub disk_gb: u32,
    /// Disk the node keeps for its system, images and copies in transit (SPEC §5).
    pub disk_reserve_gb: u32,
    pub monthly_eur: Decimal,
    pub reserve: Reserve,
}

impl DedicatedType {
    pub fn usable_mib(&self) -> u32 {
        self.reserve.usable_mib(self.ram_mib)
    }

    /// Disk worlds may occupy, in MB (10^6 bytes).
    pub fn usable_disk_mb(&self) -> u64 {
        usable_disk_mb(self.disk_gb, self.disk_reserve_gb)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudType {
    pub name: String,
    pub ram_mib: u32,
    pub cores: u32,
    pub disk_gb: u32,
    /// Disk the VM keeps for its system, images and copies in transit (SPEC §5).
    pub disk_reserve_gb: u32,
    pub hourly_eur: Decimal,
    pub monthly_cap_eur: Decimal,
    pub reserve: Reserve,
}

impl CloudType {
    pub fn usable_mib(&self) -> u32 {
        self.reserve.usable_mib(self.ram_mib)
    }

    /// Disk worlds may occupy, in MB (10^6 bytes).
    pub fn usable_disk_mb(&self) -> u64 {
        usable_disk_mb(self.disk_gb, self.disk_reserve_gb)
    }
}

/// Usable disk = disk − reserve, GB (10^9 bytes) to MB.
fn usable_disk_mb(disk_gb: u32, reserve_gb: u32) -> u64 {
    u64::from(disk_gb.saturating_sub(reserve_gb)) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ram_subtracts_the_reserve() {
        // AX41: 64 GiB = 65536 MiB − 2300 MiB = 63236 MiB.
        assert_eq!(Reserve::Mib(2300).usable_mib(65536), 63236);
        // cpx32: 8192 MiB × 15 % = 1228.8 → reserve 1229 → 6963 MiB usable.
        assert_eq!(Reserve::Percent(Decimal::from(15)).usable_mib(8192), 6963);
        // A whole-number reserve is not rounded: 4096 × 25 % = 1024.
        assert_eq!(Reserve::Percent(Decimal::from(25)).usable_mib(4096), 3072);
        assert_eq!(Reserve::Mib(10_000).usable_mib(4096), 0);
    }
}
