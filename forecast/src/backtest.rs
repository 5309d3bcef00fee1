//! Rolling-origin backtests (SPEC §9): the last origin is the latest whose whole horizon is
//! observed (series end − horizon); earlier origins step back by `every`; the model at each
//! origin sees only the `window` of history before it. Scores: MASE scaled by the in-sample
//! weekly seasonal naive over that origin's training window, sMAPE, interval coverage and
//! pinball loss.

use crate::model::Prediction;
use crate::series::Series;
use serde::{Deserialize, Serialize};

/// One origin: the model sees `history` and is scored on `actual`.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Timestamp of the first forecast step (the SPEC's `origin` in dumps).
    pub origin: conductor_core::Millis,
    pub history: Series,
    pub actual: Vec<f64>,
}

/// Backtest geometry, in steps of the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub origins: usize,
    pub every: usize,
    pub window: usize,
    pub horizon: usize,
}

/// The origins of `plan` on `series`, oldest first.
pub fn origins(series: &Series, plan: Plan) -> Result<Vec<Origin>, String> {
    let n = series.len();
    if plan.origins == 0 || plan.every == 0 || plan.window == 0 || plan.horizon == 0 {
        return Err("origins, every, window and horizon must all be positive".into());
    }
    let needed = plan.window + plan.horizon + (plan.origins - 1) * plan.every;
    if n < needed {
        return Err(format!(
            "{}: {} origins every {} steps with a window of {} and a horizon of {} need {} steps of data, the series has {}",
            series.name, plan.origins, plan.every, plan.window, plan.horizon, needed, n
        ));
    }
    let last = n - plan.horizon;
    Ok((0..plan.origins)
        .rev()
        .map(|k| {
            let o = last - k * plan.every;
            Origin {
                origin: series.time(o),
                history: Series::new(
                    series.name.clone(),
                    series.time(o - plan.window),
                    series.step,
                    series.values[o - plan.window..o].to_vec(),
                ),
                actual: series.values[o..o + plan.horizon].to_vec(),
            }
        })
        .collect())
}

/// Scores of one forecast, or their mean over origins.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    pub mase: f64,
    /// Percent, 0–200.
    pub smape: f64,
    /// Share of actuals inside the 80 % interval.
    pub coverage80: f64,
    pub coverage95: f64,
    /// Mean pinball loss over the quantiles 2.5, 10, 50, 90, 97.5 %.
    pub pinball: f64,
}

/// In-sample mean absolute error of the seasonal naive with period `m` over `y`.
pub fn seasonal_naive_mae(y: &[f64], m: usize) -> f64 {
    if y.len() <= m {
        return f64::NAN;
    }
    (m..y.len()).map(|t| (y[t] - y[t - m]).abs()).sum::<f64>() / (y.len() - m) as f64
}

fn pinball(q: f64, actual: f64, predicted: f64) -> f64 {
    let d = actual - predicted;
    if d >= 0.0 {
        q * d
    } else {
        (q - 1.0) * d
    }
}

/// Scores `p` against `actual`; `week` is the weekly period in steps, used for the MASE
/// scale on `history`.
pub fn score(p: &Prediction, actual: &[f64], history: &[f64], week: usize) -> Scores {
    let n = actual.len().min(p.len());
    assert!(n > 0, "nothing to score");
    let scale = seasonal_naive_mae(history, week);
    let mae = (0..n).map(|i| (actual[i] - p.mean[i]).abs()).sum::<f64>() / n as f64;
    let smape = 100.0
        * (0..n)
            .map(|i| {
                let (a, f) = (actual[i], p.mean[i]);
                let denom = a.abs() + f.abs();
                if denom == 0.0 {
                    0.0
                } else {
                    2.0 * (a - f).abs() / denom
                }
            })
            .sum::<f64>()
        / n as f64;
    let inside =
        |lo: &[f64], hi: &[f64]| (0..n).filter(|&i| lo[i] <= actual[i] && actual[i] <= hi[i]).count() as f64 / n as f64;
    let quantiles = [(0.025, &p.lo95), (0.10, &p.lo80), (0.50, &p.mean), (0.90, &p.hi80), (0.975, &p.hi95)];
    let pinball = quantiles
        .iter()
        .map(|(q, v)| (0..n).map(|i| pinball(*q, actual[i], v[i])).sum::<f64>() / n as f64)
        .sum::<f64>()
        / quantiles.len() as f64;
    Scores {
        mase: mae / scale,
        smape,
        coverage80: inside(&p.lo80, &p.hi80),
        coverage95: inside(&p.lo95, &p.hi95),
        pinball,
    }
}

impl Scores {
    /// The mean of per-origin scores.
    pub fn mean(all: &[Scores]) -> Scores {
        let n = all.len().max(1) as f64;
        let sum = |f: fn(&Scores) -> f64| all.iter().map(f).sum::<f64>() / n;
        Scores {
            mase: sum(|s| s.mase),
            smape: sum(|s| s.smape),
            coverage80: sum(|s| s.coverage80),
            coverage95: sum(|s| s.coverage95),
            pinball: sum(|s| s.pinball),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::seasonal_naive;
    use conductor_core::time::DAY;

    /// A daily series (step 1 day, so a week is 7 steps), 3 weeks, one origin, horizon 7.
    #[test]
    fn hand_computed_mase_for_weekly_seasonal_naive() {
        let week1 = [10.0, 12.0, 14.0, 13.0, 15.0, 20.0, 18.0];
        let week2 = [11.0, 12.0, 15.0, 13.0, 16.0, 22.0, 17.0];
        let week3 = [12.0, 14.0, 15.0, 12.0, 16.0, 21.0, 19.0];
        let values: Vec<f64> = [week1, week2, week3].concat();
        let series = Series::new("x", 0, DAY, values);
        let plan = Plan { origins: 1, every: 1, window: 14, horizon: 7 };
        let o = &origins(&series, plan).unwrap()[0];
        assert_eq!(o.origin, 14 * DAY, "the origin is the first forecast step");
        // Forecast = week 2. Errors vs week 3: |12−11| |14−12| |15−15| |12−13| |16−16| |21−22| |19−17|
        //   = 1 2 0 1 0 1 2 → MAE 7/7 = 1.
        // Scale: in-sample weekly naive over the 14-step window: week2 − week1 =
        //   1 0 1 0 1 2 1 → 6/7.  MASE = 1 / (6/7) = 7/6.
        let p = seasonal_naive(&o.history.values, 7, 7);
        let s = score(&p, &o.actual, &o.history.values, 7);
        assert!((s.mase - 7.0 / 6.0).abs() < 1e-12, "{}", s.mase);
        // sMAPE term for the first step: 2·1/(12+11) …
        let expected_smape = 100.0 / 7.0
            * [(12.0, 11.0), (14.0, 12.0), (15.0, 15.0), (12.0, 13.0), (16.0, 16.0), (21.0, 22.0), (19.0, 17.0)]
                .iter()
                .map(|(a, f): &(f64, f64)| 2.0 * (a - f).abs() / (a + f))
                .sum::<f64>();
        assert!((s.smape - expected_smape).abs() < 1e-9);
    }

    #[test]
    fn origins_step_back_from_the_last_fully_observed_one() {
        let series = Series::new("x", 0, 1, (0..100).map(f64::from).collect());
        let plan = Plan { origins: 3, every: 10, window: 50, horizon: 20 };
        let os = origins(&series, plan).unwrap();
        let starts: Vec<i64> = os.iter().map(|o| o.origin).collect();
        assert_eq!(starts, vec![60, 70, 80]);
        assert_eq!(os[2].history.values.first(), Some(&30.0));
        assert_eq!(os[2].actual.len(), 20);
        let too_many = Plan { origins: 4, every: 10, window: 60, horizon: 20 };
        assert!(origins(&series, too_many).unwrap_err().contains("need 110 steps of data, the series has 100"));
    }
}
