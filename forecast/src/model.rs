//! Forecasting models: MSTL (daily + weekly seasons) with an AutoETS trend, and seasonal
//! naive baselines (weekly, daily). Each gives a mean and 80 % / 95 % prediction intervals.

use crate::series::Series;
use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;
use serde::{Deserialize, Serialize};

/// Standard normal quantiles for central 80 % and 95 % intervals.
const Z80: f64 = 1.281_551_565_545;
const Z95: f64 = 1.959_963_984_540;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// MSTL with daily and weekly seasons, AutoETS on the deseasonalised series.
    Mstl,
    /// Same step one week earlier.
    SeasonalNaiveWeek,
    /// Same step one day earlier.
    SeasonalNaiveDay,
    /// Prophet with holidays, events and regressors (feature `prophet`).
    #[cfg(feature = "prophet")]
    Prophet,
}

impl ModelKind {
    #[cfg(not(feature = "prophet"))]
    pub const ALL: &'static [ModelKind] = &[ModelKind::Mstl, ModelKind::SeasonalNaiveWeek, ModelKind::SeasonalNaiveDay];
    #[cfg(feature = "prophet")]
    pub const ALL: &'static [ModelKind] =
        &[ModelKind::Mstl, ModelKind::SeasonalNaiveWeek, ModelKind::SeasonalNaiveDay, ModelKind::Prophet];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mstl => "mstl",
            ModelKind::SeasonalNaiveWeek => "snaive-week",
            ModelKind::SeasonalNaiveDay => "snaive-day",
            #[cfg(feature = "prophet")]
            ModelKind::Prophet => "prophet",
        }
    }

    pub fn parse(s: &str) -> Result<ModelKind, String> {
        ModelKind::ALL.iter().copied().find(|m| m.name() == s).ok_or_else(|| {
            let known: Vec<&str> = ModelKind::ALL.iter().map(|m| m.name()).collect();
            let hint = if s == "prophet" { " (Prophet needs a build with `--features prophet`)" } else { "" };
            format!("unknown model {s:?} (known: auto, {}){hint}", known.join(", "))
        })
    }
}

/// A model and the transform applied around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    pub kind: ModelKind,
    /// Fit on ln(1 + y) and transform back: multiplicative seasons, positive forecasts.
    pub log: bool,
    /// MSTL seasonal smoothing windows (daily, weekly), in cycles (odd, ≥ 7): how many
    /// days (weeks) each point of the daily (weekly) pattern is averaged over.
    pub windows: (usize, usize),
    /// What the ETS model of the deseasonalised series may do with a trend.
    pub trend: TrendKind,
}

/// Trend freedom of MSTL's ETS model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrendKind {
    /// AutoETS chooses: none, additive, or damped additive.
    Auto,
    /// Only a damped additive trend (or none).
    Damped,
}

impl TrendKind {
    pub fn parse(s: &str) -> Result<TrendKind, String> {
        match s {
            "auto" => Ok(TrendKind::Auto),
            "damped" => Ok(TrendKind::Damped),
            _ => Err(format!("unknown trend {s:?} (auto or damped)")),
        }
    }
}

/// Default MSTL seasonal windows: STL's usual 11 and 15. Wider windows (61, 31) halve the
/// seasonal noise on a stationary series but lose on real and demo-like demand, whose
/// patterns drift (BENCHMARKS.md, forecaster).
pub const DEFAULT_WINDOWS: (usize, usize) = (11, 15);

/// Default trend freedom of MSTL's ETS model.
pub const DEFAULT_TREND: TrendKind = TrendKind::Auto;

impl ModelSpec {
    pub fn new(kind: ModelKind) -> ModelSpec {
        ModelSpec { kind, log: false, windows: DEFAULT_WINDOWS, trend: DEFAULT_TREND }
    }

    pub fn log(self, log: bool) -> ModelSpec {
        ModelSpec { log, ..self }
    }
}

impl ModelSpec {
    pub fn label(&self) -> String {
        if self.log {
            format!("{}+log", self.kind.name())
        } else {
            self.kind.name().to_owned()
        }
    }
}

/// A forecast of `horizon` steps after the history.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Prediction {
    pub mean: Vec<f64>,
    pub lo80: Vec<f64>,
    pub hi80: Vec<f64>,
    pub lo95: Vec<f64>,
    pub hi95: Vec<f64>,
}

impl Prediction {
    fn map(&mut self, f: impl Fn(f64) -> f64) {
        for v in [&mut self.mean, &mut self.lo80, &mut self.hi80, &mut self.lo95, &mut self.hi95] {
            v.iter_mut().for_each(|x| *x = f(*x));
        }
    }

    /// Drops the first `n` steps (forecast across a gap between history and origin).
    pub fn skip(&mut self, n: usize) {
        for v in [&mut self.mean, &mut self.lo80, &mut self.hi80, &mut self.lo95, &mut self.hi95] {
            v.drain(..n.min(v.len()));
        }
    }

    pub fn len(&self) -> usize {
        self.mean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{series}: {model}: {message}")]
pub struct ModelError {
    pub series: String,
    pub model: String,
    pub message: String,
}

/// What a model may know beyond the series itself (used by Prophet).
#[derive(Debug, Clone)]
pub struct Covariates {
    /// Calendar features (holidays) are taken in this time zone.
    pub timezone: chrono_tz::Tz,
    /// Known events (name, start, end), e.g. game updates.
    pub events: Vec<(String, conductor_core::Millis, conductor_core::Millis)>,
    /// Sign-ups per hour on the history's grid; the future is filled with its weekly
    /// seasonal naive forecast.
    pub signups: Option<Series>,
}

impl Default for Covariates {
    fn default() -> Self {
        Covariates { timezone: chrono_tz::Europe::Berlin, events: Vec::new(), signups: None }
    }
}

/// Fits `spec` on all of `history` and forecasts `horizon` steps after it. Forecasts of a
/// series that was never negative are clamped at 0.
pub fn fit_predict(spec: ModelSpec, history: &Series, horizon: usize) -> Result<Prediction, ModelError> {
    fit_predict_with(spec, history, horizon, &Covariates::default())
}

/// [`fit_predict`] with covariates.
pub fn fit_predict_with(
    spec: ModelSpec,
    history: &Series,
    horizon: usize,
    #[cfg_attr(not(feature = "prophet"), allow(unused_variables))] cov: &Covariates,
) -> Result<Prediction, ModelError> {
    let err = |message: String| ModelError { series: history.name.clone(), model: spec.label(), message };
    let periods = history.check_weekly_history().map_err(err)?;
    let non_negative = history.values.iter().all(|&v| v >= 0.0);
    if spec.log && !non_negative {
        return Err(err("the log transform needs a series without negative values".into()));
    }
    let y: Vec<f64> =
        if spec.log { history.values.iter().map(|v| v.ln_1p()).collect() } else { history.values.clone() };
    let mut p = match spec.kind {
        ModelKind::SeasonalNaiveWeek => seasonal_naive(&y, periods.week, horizon),
        ModelKind::SeasonalNaiveDay => seasonal_naive(&y, periods.day, horizon),
        ModelKind::Mstl => mstl(&y, vec![periods.day, periods.week], spec.windows, spec.trend, horizon).map_err(err)?,
        #[cfg(feature = "prophet")]
        ModelKind::Prophet => crate::prophet::fit_predict(&y, history, horizon, cov).map_err(err)?,
    };
    if spec.log {
        p.map(f64::exp_m1);
    }
    if non_negative {
        p.map(|v| v.max(0.0));
    }
    Ok(p)
}

/// ŷ(T+h) = y(T+h−k·m) with k = ⌈h/m⌉; intervals from the in-sample seasonal differences:
/// σ·√k, σ the root mean square of y(t) − y(t−m) (Hyndman & Athanasopoulos, §5.5).
pub fn seasonal_naive(y: &[f64], m: usize, horizon: usize) -> Prediction {
    let n = y.len();
    assert!(n >= m && m > 0, "seasonal naive needs one season of history");
    let diffs: Vec<f64> = (m..n).map(|t| y[t] - y[t - m]).collect();
    let sigma =
        if diffs.is_empty() { 0.0 } else { (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt() };
    let mut p = Prediction::default();
    for h in 1..=horizon {
        let k = h.div_ceil(m);
        let mean = y[n + h - k * m - 1];
        let sd = sigma * (k as f64).sqrt();
        p.mean.push(mean);
        p.lo80.push(mean - Z80 * sd);
        p.hi80.push(mean + Z80 * sd);
        p.lo95.push(mean - Z95 * sd);
        p.hi95.push(mean + Z95 * sd);
    }
    p
}

fn mstl(
    y: &[f64],
    periods: Vec<usize>,
    windows: (usize, usize),
    trend: TrendKind,
    horizon: usize,
) -> Result<Prediction, String> {
    let odd = |w: usize| w.max(7) | 1;
    let mut params = stlrs::MstlParams::new();
    params.seasonal_lengths(&[odd(windows.0), odd(windows.1)]);
    let ets = match trend {
        TrendKind::Auto => AutoETS::non_seasonal(),
        TrendKind::Damped => AutoETS::non_seasonal().damped(true).map_err(|e| e.to_string())?,
    };
    let model = MSTLModel::new(periods, ets.into_trend_model()).mstl_params(params);
    let fitted = model.fit(y).map_err(|e| format!("fit failed: {e}"))?;
    let f80 = fitted.predict(horizon, 0.80).map_err(|e| format!("predict failed: {e}"))?;
    let f95 = fitted.predict(horizon, 0.95).map_err(|e| format!("predict failed: {e}"))?;
    let (i80, i95) = match (f80.intervals, f95.intervals) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err("the trend model gave no intervals".into()),
    };
    Ok(Prediction { mean: f80.point, lo80: i80.lower, hi80: i80.upper, lo95: i95.lower, hi95: i95.upper })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_repeats_the_last_season_and_widens_per_season() {
        // m = 3, history 1 2 3 2 3 4: diffs (2−1, 3−2, 4−3) = 1,1,1 → σ = 1.
        let p = seasonal_naive(&[1.0, 2.0, 3.0, 2.0, 3.0, 4.0], 3, 5);
        assert_eq!(p.mean, vec![2.0, 3.0, 4.0, 2.0, 3.0]);
        // h ≤ 3: k = 1 → ±1.96; h = 4,5: k = 2 → ±1.96·√2.
        assert!((p.hi95[0] - (2.0 + Z95)).abs() < 1e-12);
        assert!((p.hi95[3] - (2.0 + Z95 * 2f64.sqrt())).abs() < 1e-12);
        assert!(p.lo80[0] > p.lo95[0] && p.hi80[0] < p.hi95[0]);
    }
}
