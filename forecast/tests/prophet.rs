//! Prophet (feature `prophet`): recovers a daily + weekly series and learns a holiday.
#![cfg(feature = "prophet")]

use conductor_core::time::{DAY, HOUR};
use conductor_forecast::model::{fit_predict_with, Covariates};
use conductor_forecast::{ModelKind, ModelSpec, Series};

/// Hourly, 5 weeks from 2025-09-01 (a Monday): daily wave, weekend lift, and the German
/// Unity Day (Friday 2025-10-03) 40 units higher.
fn series() -> (Series, Vec<f64>) {
    let start = 1_756_684_800_000i64; // 2025-09-01T00:00:00Z
    let value = |h: usize| {
        let t = start + h as i64 * HOUR;
        let day = (h % 24) as f64 / 24.0;
        let weekday = (h / 24) % 7;
        // 2025-10-03 in Berlin: [2025-10-02T22:00Z, 2025-10-03T22:00Z).
        let holiday = (1_759_442_400_000..1_759_442_400_000 + DAY).contains(&t);
        100.0
            + 30.0 * (std::f64::consts::TAU * day).sin()
            + if weekday >= 5 { 20.0 } else { 0.0 }
            + if holiday { 40.0 } else { 0.0 }
    };
    let n = 35 * 24;
    (Series::new("load", start, HOUR, (0..n).map(value).collect()), (n..n + 48).map(value).collect())
}

#[test]
fn prophet_recovers_the_seasons() {
    let (history, future) = series();
    let p = fit_predict_with(ModelSpec::new(ModelKind::Prophet), &history, 48, &Covariates::default()).unwrap();
    let mae = p.mean.iter().zip(&future).map(|(a, b)| (a - b).abs()).sum::<f64>() / future.len() as f64;
    assert!(mae < 5.0, "Prophet MAE {mae:.2} on a series with a daily amplitude of 30");
    assert!((0..48)
        .all(|i| p.lo95[i] <= p.lo80[i] && p.lo80[i] <= p.mean[i] && p.mean[i] <= p.hi80[i] && p.hi80[i] <= p.hi95[i]));
}
