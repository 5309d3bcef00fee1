//! `[[transform]]` blocks: what-if changes to demand and prices, validated.

use super::*;

/// Validates `[[transform]]` blocks; price changes replace `prices` here and become a
/// demand factor (constant elasticity on the active price).
pub(super) fn transforms(
    raw: &[RawTransform],
    prices: &mut Prices,
    err: &dyn Fn(&str, String) -> ScenarioError,
) -> Result<Vec<Transform>, ScenarioError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = |field: &str| format!("transform[{i}].{field}");
        let finite_positive = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(err(&key(field), format!("expected a non-negative number, got {v}")))
            }
        };
        let duration = |field: &str, text: &str| {
            conductor_forecast::duration::parse_duration(text).map_err(|m| err(&key(field), m))
        };
        out.push(match t {
            RawTransform::Scale { factor } => Transform::Scale { factor: finite_positive("factor", *factor)? },
            RawTransform::Growth { percent_per_week } => {
                if !(percent_per_week.is_finite() && *percent_per_week > -100.0) {
                    return Err(err(&key("percent_per_week"), "expected a number above -100".into()));
                }
                Transform::Growth { percent_per_week: *percent_per_week }
            }
            RawTransform::Spike { at, within, servers, tier, ram_gib, disk_gb, session, players } => {
                let at = parse_rfc3339(at).map_err(|m| err(&key("at"), m))?;
                let within = duration("within", within)?;
                let (tier_ram, tier_disk) = match tier.as_deref() {
                    None | Some("small") => (2, 2),
                    Some("medium") => (6, 6),
                    Some("large") => (12, 15),
                    Some(other) => {
                        return Err(err(&key("tier"), format!("expected small, medium or large, got {other:?}")))
                    }
                };
                let ram_gib = ram_gib.unwrap_or(tier_ram);
                let ram_mib = gib_to_mib(ram_gib)
                    .filter(|&m| m > 0)
                    .ok_or_else(|| err(&key("ram_gib"), "expected a positive number of GiB".into()))?;
                let disk_gb = disk_gb.as_ref().map_or(Decimal::from(tier_disk), |d| d.0);
                if disk_gb < Decimal::ZERO {
                    return Err(err(&key("disk_gb"), "a disk size cannot be negative".into()));
                }
                let disk_mb = (disk_gb * Decimal::from(1000)).round().try_into().unwrap_or(0u64);
                let session = duration("session", session.as_deref().unwrap_or("2h"))?;
                Transform::Spike {
                    at,
                    within,
                    servers: *servers,
                    ram_mib,
                    disk_mb,
                    session,
                    players: players.unwrap_or(3),
                }
            }
            RawTransform::Shift { by } => {
                let (sign, text) = match by.trim().strip_prefix('-') {
                    Some(rest) => (-1, rest),
                    None => (1, by.trim().trim_start_matches('+')),
                };
                Transform::Shift { by: sign * duration("by", text)? }
            }
            RawTransform::Stretch { factor } => {
                if !(factor.is_finite() && *factor > 0.0) {
                    return Err(err(&key("factor"), format!("expected a positive number, got {factor}")));
                }
                Transform::Stretch { factor: *factor }
            }
            RawTransform::TierMix { small, medium, large } => {
                let shares = [
                    finite_positive("small", *small)?,
                    finite_positive("medium", *medium)?,
                    finite_positive("large", *large)?,
                ];
                if shares.iter().sum::<f64>() <= 0.0 {
                    return Err(err(&key("small"), "the shares must not all be zero".into()));
                }
                Transform::TierMix { shares }
            }
            RawTransform::PayPerUse { share } => {
                if !(0.0..=1.0).contains(share) {
                    return Err(err(&key("share"), format!("expected a share between 0 and 1, got {share}")));
                }
                Transform::PayPerUse { share: *share }
            }
            RawTransform::Prices {
                active_eur_per_gib_hour,
                sleeping_eur_per_gb_month,
                promo_credit_eur,
                elasticity,
            } => {
                let old = prices.active_per_gib_hour;
                let mut what = Vec::new();
                for (field, v, slot) in [
                    ("active_eur_per_gib_hour", active_eur_per_gib_hour, &mut prices.active_per_gib_hour),
                    ("sleeping_eur_per_gb_month", sleeping_eur_per_gb_month, &mut prices.sleeping_per_gb_month),
                    ("promo_credit_eur", promo_credit_eur, &mut prices.promo_credit),
                ] {
                    if let Some(Dec(d)) = v {
                        if *d < Decimal::ZERO {
                            return Err(err(&key(field), "a price cannot be negative".into()));
                        }
                        what.push(format!("{field} {slot} → {d}"));
                        *slot = *d;
                    }
                }
                if !(elasticity.is_finite() && *elasticity >= 0.0) {
                    return Err(err(&key("elasticity"), "expected a non-negative number".into()));
                }
                let ratio = if old.is_zero() {
                    1.0
                } else {
                    use rust_decimal::prelude::ToPrimitive;
                    (prices.active_per_gib_hour / old).to_f64().unwrap_or(1.0)
                };
                let factor = if *elasticity == 0.0 || ratio <= 0.0 { 1.0 } else { ratio.powf(-elasticity) };
                Transform::Elastic {
                    factor,
                    description: format!(
                        "prices: {}; elasticity {elasticity} → demand × {factor:.4}",
                        if what.is_empty() { "unchanged".to_string() } else { what.join(", ") }
                    ),
                }
            }
        });
    }
    Ok(out)
}
