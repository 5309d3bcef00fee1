//! Writes `augurs-testing`'s Victoria electricity demand (hourly, from 2012-01-01) as a
//! `timestamp,value` series CSV on stdout, for `conductor forecast --series`.
//!
//! cargo run -p conductor-forecast --example vic_elec > vic_elec.csv

fn main() {
    // 2012-01-01T00:00:00Z; the source gives local clock times without a zone, taken as UTC.
    let start = 1_325_376_000_000i64;
    let mut out = String::from("timestamp,value\n");
    for (i, v) in augurs_testing::data::VIC_ELEC.iter().enumerate() {
        let t = start + i as i64 * 3_600_000;
        out.push_str(&format!("{},{v}\n", conductor_forecast::timefmt::format_rfc3339(t)));
    }
    print!("{out}");
}
