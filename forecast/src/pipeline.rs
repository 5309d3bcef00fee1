//! The forecasting job, step by step: backtest a model, pick the best model per series
//! (`auto`), forecast from an origin. Time measurements use a clock the caller passes in.

use crate::backtest::{self, Plan, Scores};
use crate::document::{BacktestSummary, SeriesForecast};
use crate::model::{fit_predict_with, Covariates, ModelError, ModelKind, ModelSpec, Prediction};
use crate::series::Series;
use conductor_core::Millis;

/// Seconds on some monotonic clock; the CLI passes `Instant`-based time, tests a counter.
pub type Clock<'a> = &'a mut dyn FnMut() -> f64;

/// A model's rolling-origin backtest on one series.
#[derive(Debug, Clone)]
pub struct BacktestRun {
    pub spec: ModelSpec,
    pub plan: Plan,
    pub step: Millis,
    /// Mean over origins.
    pub scores: Scores,
    /// Per origin: first forecast step, forecast, actual values, scores.
    pub origins: Vec<(Millis, Prediction, Vec<f64>, Scores)>,
    /// Mean fit + predict time per origin, seconds.
    pub seconds_per_origin: f64,
}

impl BacktestRun {
    pub fn summary(&self) -> BacktestSummary {
        BacktestSummary {
            origins: self.plan.origins,
            every_s: self.plan.every as i64 * self.step / 1000,
            window_s: self.plan.window as i64 * self.step / 1000,
            mase: self.scores.mase,
            smape: self.scores.smape,
            coverage80: self.scores.coverage80,
            coverage95: self.scores.coverage95,
            pinball: self.scores.pinball,
        }
    }
}

pub fn run_backtest(
    series: &Series,
    spec: ModelSpec,
    plan: Plan,
    cov: &Covariates,
    clock: Clock<'_>,
) -> Result<BacktestRun, ModelError> {
    let err = |message: String| ModelError { series: series.name.clone(), model: spec.label(), message };
    let week = series.periods().map_err(err)?.week;
    let origins = backtest::origins(series, plan).map_err(err)?;
    let mut out = Vec::with_capacity(origins.len());
    let mut seconds = 0.0;
    for o in origins {
        let t0 = clock();
        let cov = Covariates {
            signups: cov.signups.as_ref().map(|s| s.slice(o.history.start, o.history.end())),
            ..cov.clone()
        };
        let p = fit_predict_with(spec, &o.history, plan.horizon, &cov)?;
        seconds += clock() - t0;
        let s = backtest::score(&p, &o.actual, &o.history.values, week);
        out.push((o.origin, p, o.actual, s));
    }
    let scores = Scores::mean(&out.iter().map(|o| o.3).collect::<Vec<_>>());
    Ok(BacktestRun {
        spec,
        plan,
        step: series.step,
        scores,
        seconds_per_origin: seconds / out.len().max(1) as f64,
        origins: out,
    })
}

/// A short backtest plan that fits in `series` for choosing a model and reporting scores:
/// up to `origins` daily origins, then a window of up to `window` steps (at least two
/// weeks), the given horizon. `None` when the series is too short for even one origin.
pub fn quick_plan(series: &Series, horizon: usize, window: usize, origins: usize) -> Option<Plan> {
    let p = series.periods().ok()?;
    let min_window = 2 * p.week;
    let room = series.len().checked_sub(horizon)?;
    if room < min_window {
        return None;
    }
    // Origins first (scores from one origin are noise), then as much window as remains.
    let every = p.day;
    let origins = origins.min(1 + (room - min_window) / every).max(1);
    let window = window.min(room - (origins - 1) * every).max(min_window);
    Some(Plan { origins, every, window, horizon })
}

/// Which model to use on a series: a fixed one, or the best backtest MASE among `candidates`.
#[derive(Debug, Clone)]
pub enum Choice {
    Fixed(ModelSpec),
    Auto(Vec<ModelSpec>),
}

impl Choice {
    pub fn all_models(log: bool) -> Choice {
        Choice::Auto(ModelKind::ALL.iter().map(|&k| ModelSpec::new(k).log(log)).collect())
    }
}

/// Forecasts `history` from `origin` (≥ the history end, on its grid) for `horizon` steps,
/// choosing the model as `choice` says and backtesting it on up to `backtest_origins` daily
/// origins when the history allows (0: no backtest; `auto` then takes its first candidate).
#[allow(clippy::too_many_arguments)]
pub fn forecast(
    history: &Series,
    unit: &str,
    choice: &Choice,
    origin: Millis,
    horizon: usize,
    window: usize,
    backtest_origins: usize,
    cov: &Covariates,
    clock: Clock<'_>,
) -> Result<(SeriesForecast, Option<BacktestRun>), ModelError> {
    let gap = ((origin - history.end()).max(0) / history.step) as usize;
    let plan = if backtest_origins == 0 { None } else { quick_plan(history, horizon, window, backtest_origins) };
    let (spec, run) = match (choice, plan) {
        (Choice::Fixed(spec), Some(plan)) => (*spec, Some(run_backtest(history, *spec, plan, cov, clock)?)),
        (Choice::Fixed(spec), None) => (*spec, None),
        (Choice::Auto(candidates), Some(plan)) => {
            let mut best: Option<BacktestRun> = None;
            for &spec in candidates {
                // A candidate that cannot fit this series (e.g. log of negatives) is skipped.
                if let Ok(run) = run_backtest(history, spec, plan, cov, clock) {
                    if best.as_ref().is_none_or(|b| run.scores.mase < b.scores.mase) {
                        best = Some(run);
                    }
                }
            }
            let best = best.ok_or_else(|| ModelError {
                series: history.name.clone(),
                model: "auto".into(),
                message: "no candidate model could be backtested".into(),
            })?;
            (best.spec, Some(best))
        }
        // Too short to compare: MSTL is the model the issue asks for by default.
        (Choice::Auto(candidates), None) => (*candidates.first().expect("candidates"), None),
    };
    let fit_on = history.slice(history.end() - window as Millis * history.step, history.end());
    let cov = Covariates { signups: cov.signups.as_ref().map(|s| s.slice(fit_on.start, fit_on.end())), ..cov.clone() };
    let mut p = fit_predict_with(spec, &fit_on, gap + horizon, &cov)?;
    p.skip(gap);
    let doc = SeriesForecast::new(&fit_on, unit, spec.label(), origin, &p, run.as_ref().map(BacktestRun::summary));
    Ok((doc, run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_core::time::HOUR;

    #[test]
    fn quick_plans_keep_origins_before_window() {
        let s = |days: usize| Series::new("x", 0, HOUR, vec![1.0; days * 24]);
        // 35 days, 48 h horizon: room 33 days; 3 origins need 2 days of stepping → 31-day window.
        assert_eq!(
            quick_plan(&s(35), 48, 56 * 24, 3),
            Some(Plan { origins: 3, every: 24, window: 31 * 24, horizon: 48 })
        );
        // 15 days: room 13 days < 2 weeks → no backtest.
        assert_eq!(quick_plan(&s(15), 48, 56 * 24, 3), None);
        // 17 days: room 15 days → 2 origins with the minimum two-week window.
        assert_eq!(
            quick_plan(&s(17), 48, 56 * 24, 3),
            Some(Plan { origins: 2, every: 24, window: 14 * 24, horizon: 48 })
        );
        // Plenty of data: the window is capped at what was asked.
        assert_eq!(
            quick_plan(&s(100), 48, 56 * 24, 3),
            Some(Plan { origins: 3, every: 24, window: 56 * 24, horizon: 48 })
        );
    }
}
