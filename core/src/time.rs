//! Time is a value: milliseconds since the Unix epoch (UTC), passed in by the caller.

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;
/// A month is 30 days wherever a monthly price is prorated (SPEC §3).
pub const MONTH: Millis = 30 * DAY;
