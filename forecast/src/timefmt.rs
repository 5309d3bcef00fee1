//! RFC 3339 in files, milliseconds since the epoch inside (SPEC §3).

use chrono::{DateTime, SecondsFormat, Utc};
use conductor_core::Millis;

/// Parses an RFC 3339 timestamp (offset required) to milliseconds since the epoch.
/// Sub-millisecond digits are truncated.
pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected an RFC 3339 timestamp such as 2025-10-06T18:30:00+02:00, got {s:?} ({e})"))
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC (`Z`), with milliseconds only
/// when they are not zero.
pub fn format_rfc3339(t: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{t}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_respects_offsets() {
        let t = parse_rfc3339("2025-10-06T00:00:00+02:00").unwrap();
        assert_eq!(t, 1_759_701_600_000);
        assert_eq!(format_rfc3339(t), "2025-10-05T22:00:00Z");
        assert_eq!(parse_rfc3339("2025-10-05T22:00:00.250Z").unwrap(), t + 250);
        assert_eq!(format_rfc3339(t + 250), "2025-10-05T22:00:00.250Z");
        assert!(parse_rfc3339("2025-10-05 22:00").unwrap_err().contains("RFC 3339"));
        assert!(parse_rfc3339("2025-10-05T22:00:00").is_err(), "an offset is required");
    }
}
