//! The catalogue of node and VM types with their prices (SPEC §5), shared by scenarios
//! and the controller.

use super::*;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalogue {
    #[serde(default)]
    dedicated: BTreeMap<String, RawDedicated>,
    #[serde(default)]
    cloud: BTreeMap<String, RawCloud>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawDedicated {
    ram_gib: u32,
    cores: u32,
    disk_gb: u32,
    disk_reserve_gb: Option<u32>,
    monthly_eur: Dec,
    reserve_mib: Option<u32>,
    reserve_pct: Option<Dec>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    ram_gib: u32,
    cores: u32,
    disk_gb: u32,
    disk_reserve_gb: Option<u32>,
    hourly_eur: Dec,
    monthly_cap_eur: Dec,
    reserve_mib: Option<u32>,
    reserve_pct: Option<Dec>,
}

/// Node and VM types with prices (SPEC §5).
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub dedicated: BTreeMap<String, DedicatedType>,
    pub cloud: BTreeMap<String, CloudType>,
}

/// Default reserve of a dedicated node (SPEC §5).
const DEDICATED_RESERVE_MIB: u32 = 2300;
/// Default reserve of a cloud VM, percent (SPEC §5).
const CLOUD_RESERVE_PCT: i64 = 15;
/// Default disk reserve of a dedicated node: its system, images, PostgreSQL and the control
/// plane where it runs, and copies in transit (GB).
const DEDICATED_DISK_RESERVE_GB: u32 = 64;
/// Default disk reserve of a cloud VM: its system and images (GB).
const CLOUD_DISK_RESERVE_GB: u32 = 5;

impl Catalogue {
    pub fn parse(path: &Path, text: &str) -> Result<Catalogue, ScenarioError> {
        let raw: RawCatalogue = deserialize(path, text)?;
        Catalogue::from_raw(path, raw, "")
    }

    /// Validates `raw`; `prefix` is prepended to key paths in errors.
    pub(super) fn from_raw(path: &Path, raw: RawCatalogue, prefix: &str) -> Result<Catalogue, ScenarioError> {
        let key_err = |key: String, message: String| ScenarioError::Key { path: path.to_path_buf(), key, message };
        let reserve = |key: &str, mib: Option<u32>, pct: Option<Dec>, default: Reserve| match (mib, pct) {
            (Some(_), Some(_)) => Err(key_err(key.into(), "give reserve_mib or reserve_pct, not both".into())),
            (Some(m), None) => Ok(Reserve::Mib(m)),
            (None, Some(Dec(p))) if p >= Decimal::ZERO && p < Decimal::ONE_HUNDRED => Ok(Reserve::Percent(p)),
            (None, Some(_)) => Err(key_err(format!("{key}.reserve_pct"), "expected a percentage in [0, 100)".into())),
            (None, None) => Ok(default),
        };
        let disk_reserve = |key: &str, disk_gb: u32, reserve: Option<u32>, default: u32| {
            let reserve = reserve.unwrap_or(default.min(disk_gb / 2));
            if disk_gb == 0 {
                Err(key_err(format!("{key}.disk_gb"), "expected a positive number of GB".into()))
            } else if reserve >= disk_gb {
                Err(key_err(format!("{key}.disk_reserve_gb"), format!("expected less than disk_gb ({disk_gb})")))
            } else {
                Ok(reserve)
            }
        };
        let mut catalogue = Catalogue::default();
        for (name, d) in raw.dedicated {
            let key = format!("{prefix}dedicated.{name}");
            non_negative(&d.monthly_eur, || {
                key_err(format!("{key}.monthly_eur"), "a price cannot be negative".into())
            })?;
            positive(d.ram_gib, || key_err(format!("{key}.ram_gib"), "expected a positive number of GiB".into()))?;
            let reserve = reserve(&key, d.reserve_mib, d.reserve_pct, Reserve::Mib(DEDICATED_RESERVE_MIB))?;
            let ram_mib = gib_to_mib(d.ram_gib).ok_or_else(|| key_err(format!("{key}.ram_gib"), "too large".into()))?;
            catalogue.dedicated.insert(
                name.clone(),
                DedicatedType {
                    name,
                    ram_mib,
                    cores: d.cores,
                    disk_gb: d.disk_gb,
                    disk_reserve_gb: disk_reserve(&key, d.disk_gb, d.disk_reserve_gb, DEDICATED_DISK_RESERVE_GB)?,
                    monthly_eur: d.monthly_eur.0,
                    reserve,
                },
            );
        }
        for (name, c) in raw.cloud {
            let key = format!("{prefix}cloud.{name}");
            non_negative(&c.hourly_eur, || key_err(format!("{key}.hourly_eur"), "a price cannot be negative".into()))?;
            non_negative(&c.monthly_cap_eur, || {
                key_err(format!("{key}.monthly_cap_eur"), "a price cannot be negative".into())
            })?;
            positive(c.ram_gib, || key_err(format!("{key}.ram_gib"), "expected a positive number of GiB".into()))?;
            let reserve =
                reserve(&key, c.reserve_mib, c.reserve_pct, Reserve::Percent(Decimal::from(CLOUD_RESERVE_PCT)))?;
            let ram_mib = gib_to_mib(c.ram_gib).ok_or_else(|| key_err(format!("{key}.ram_gib"), "too large".into()))?;
            catalogue.cloud.insert(
                name.clone(),
                CloudType {
                    name,
                    ram_mib,
                    cores: c.cores,
                    disk_gb: c.disk_gb,
                    disk_reserve_gb: disk_reserve(&key, c.disk_gb, c.disk_reserve_gb, CLOUD_DISK_RESERVE_GB)?,
                    hourly_eur: c.hourly_eur.0,
                    monthly_cap_eur: c.monthly_cap_eur.0,
                    reserve,
                },
            );
        }
        Ok(catalogue)
    }

    pub fn load(path: &Path) -> Result<Catalogue, ScenarioError> {
        Catalogue::parse(path, &read(path)?)
    }

    pub fn builtin() -> Catalogue {
        Catalogue::parse(Path::new("<built-in catalogue>"), DEFAULT_CATALOGUE).expect("the shipped catalogue is valid")
    }
}

/// GiB as MiB, `None` on overflow.
pub fn gib_to_mib(gib: u32) -> Option<u32> {
    gib.checked_mul(1024)
}

pub(super) fn non_negative(d: &Dec, err: impl FnOnce() -> ScenarioError) -> Result<(), ScenarioError> {
    if d.0 < Decimal::ZERO {
        Err(err())
    } else {
        Ok(())
    }
}

pub(super) fn positive(v: u32, err: impl FnOnce() -> ScenarioError) -> Result<(), ScenarioError> {
    if v == 0 {
        Err(err())
    } else {
        Ok(())
    }
}
