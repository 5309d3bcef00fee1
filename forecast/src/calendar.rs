//! Calendar features in the scenario's time zone: German public holidays and an estimate
//! of the share of German pupils on school holidays.
//!
//! Public holidays are the nine nationwide ones plus Reformation Day (Oct 31, observed in
//! most eastern and northern states). School holidays differ per state and year; the share
//! is an approximation from the usual pattern across the large states (Christmas, Easter,
//! a staggered summer, October autumn breaks), good enough as a demand feature, not a
//! legal calendar.

use chrono::{Datelike, Duration, NaiveDate};

/// Easter Sunday (Gregorian), anonymous algorithm (Meeus/Jones/Butcher).
pub fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("valid Easter date")
}

/// Whether `date` is a German public holiday (see module docs for which).
pub fn is_public_holiday(date: NaiveDate) -> bool {
    let fixed = matches!((date.month(), date.day()), (1, 1) | (5, 1) | (10, 3) | (10, 31) | (12, 25) | (12, 26));
    if fixed {
        return true;
    }
    let e = easter(date.year());
    [-2, 1, 39, 50].iter().any(|&offset| e + Duration::days(offset) == date)
}

/// Approximate share (0–1) of German pupils on school holidays on `date`.
pub fn school_holiday_share(date: NaiveDate) -> f64 {
    let (m, d) = (date.month(), date.day());
    let e = easter(date.year());
    if (m == 12 && d >= 23) || (m == 1 && d <= 6) {
        return 1.0;
    }
    if date >= e - Duration::days(8) && date <= e + Duration::days(8) {
        return 0.8;
    }
    match (m, d) {
        (6, 20..) => 0.2,
        (7, 1..=14) => 0.5,
        (7, _) | (8, 1..=14) => 0.9,
        (8, _) => 0.5,
        (9, 1..=12) => 0.3,
        (10, 13..) => 0.6,
        (11, 1..=7) => 0.3,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_dates() {
        assert_eq!(easter(2024), day(2024, 3, 31));
        assert_eq!(easter(2025), day(2025, 4, 20));
        assert_eq!(easter(2026), day(2026, 4, 5));
    }

    #[test]
    fn public_holidays() {
        assert!(is_public_holiday(day(2025, 10, 3)));
        assert!(is_public_holiday(day(2025, 4, 18)), "Good Friday");
        assert!(is_public_holiday(day(2025, 5, 29)), "Ascension");
        assert!(is_public_holiday(day(2025, 6, 9)), "Whit Monday");
        assert!(!is_public_holiday(day(2025, 10, 7)));
    }

    #[test]
    fn school_holidays() {
        assert_eq!(school_holiday_share(day(2025, 12, 27)), 1.0);
        assert!(school_holiday_share(day(2025, 10, 15)) > 0.0);
        assert_eq!(school_holiday_share(day(2025, 10, 7)), 0.0);
    }
}
