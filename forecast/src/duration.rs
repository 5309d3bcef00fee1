//! Durations written the way people write them on a command line: `15m`, `48h`, `8w`.

use conductor_core::time::{DAY, HOUR, MINUTE, SECOND};
use conductor_core::Millis;

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d` or `w` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("expected a duration such as 15m, 48h or 8w, got {text:?}"))?;
    let unit = match unit {
        "" | "s" => SECOND,
        "m" | "min" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (use s, m, h, d or w)")),
    };
    if n <= 0 {
        return Err(format!("a duration must be positive, got {text:?}"));
    }
    n.checked_mul(unit).ok_or_else(|| format!("duration {text:?} is too large"))
}

/// The shortest exact spelling of `ms` in the units above.
pub fn format_duration(ms: Millis) -> String {
    for (unit, name) in [(7 * DAY, "w"), (DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")] {
        if ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(15 * MINUTE));
        assert_eq!(parse_duration("48h"), Ok(48 * HOUR));
        assert_eq!(parse_duration("8w"), Ok(56 * DAY));
        assert_eq!(parse_duration("900"), Ok(900 * SECOND));
        assert!(parse_duration("8y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("0h").unwrap_err().contains("positive"));
        assert!(parse_duration("h").is_err());
        assert_eq!(format_duration(24 * HOUR), "1d");
        assert_eq!(format_duration(90 * MINUTE), "90m");
    }
}
