//! The nightly forecast as the twin and the controller make it for the predictive policy:
//! at 03:00 (local time) every night from the demand seen so far, 48 h ahead — the twin
//! every simulated night, the controller from its own event log.
//!
//! Demand is the RAM wanted by running servers (wanted run intervals), per 15-minute step,
//! taken at its peak within the step — capacity must cover peaks, not averages.

use crate::model::{fit_predict, seasonal_naive};
use crate::{ModelKind, ModelSpec, Prediction, Series};
use chrono::{Duration, TimeZone};
use chrono_tz::Tz;
use conductor_core::policy::DemandForecast;
use conductor_core::time::{DAY, HOUR, MINUTE};
use conductor_core::Millis;

pub const STEP: Millis = 15 * MINUTE;
pub const HORIZON: Millis = 48 * HOUR;

/// Where a predictive policy gets its forecast.
#[derive(Debug, Clone, PartialEq)]
pub enum ForecastSource {
    /// The future demand itself: an upper bound for analysis, not a forecast (twin only).
    Perfect,
    /// Demand one week earlier.
    SeasonalNaive,
    /// The forecaster's model, re-fitted every night at 03:00.
    Model(ModelSpec),
}

impl ForecastSource {
    /// A source by name: `perfect`, `seasonal-naive` or a forecaster model.
    pub fn parse(name: &str) -> Result<ForecastSource, String> {
        Ok(match name {
            "perfect" => ForecastSource::Perfect,
            "seasonal-naive" => ForecastSource::SeasonalNaive,
            other => ForecastSource::Model(ModelSpec::new(
                ModelKind::parse(other).map_err(|m| format!("{m}; or perfect, seasonal-naive"))?,
            )),
        })
    }
}

/// Peak demand (MiB) per step over `[start, end)` of wanted run intervals
/// `(server, start, end)`; `ram_mib` is indexed by server.
pub fn peak_demand(
    intervals: impl IntoIterator<Item = (u32, Millis, Millis)>,
    ram_mib: &[u32],
    start: Millis,
    end: Millis,
) -> Vec<u64> {
    let n = ((end - start).max(0) as u64).div_ceil(STEP as u64) as usize;
    // (time, +/−RAM) with ends before starts at the same instant (a stop frees before a start).
    let mut changes: Vec<(Millis, i64)> = Vec::new();
    for (server, iv_start, iv_end) in intervals {
        if iv_end <= start || iv_start >= end {
            continue;
        }
        let ram = i64::from(ram_mib[server as usize]);
        changes.push((iv_start.max(start), ram));
        changes.push((iv_end.min(end), -ram));
    }
    changes.sort_unstable();
    let mut peaks = vec![0u64; n];
    let mut level: i64 = 0;
    let mut i = 0;
    for (step, peak) in peaks.iter_mut().enumerate() {
        let step_end = start + STEP * (step as Millis + 1);
        let mut max = level;
        while i < changes.len() && changes[i].0 < step_end {
            level += changes[i].1;
            max = max.max(level);
            i += 1;
        }
        *peak = max.max(0) as u64;
    }
    peaks
}

/// The instants at which the nightly job runs inside the window: 03:00 local every day.
pub fn nightly_runs(tz: Tz, start: Millis, end: Millis) -> Vec<Millis> {
    nightly_runs_at(tz, (3, 0), start, end)
}

/// The instants in `[start, end)` at local time `(hour, minute)` every day; a local time a
/// DST change skips has no run that day, one it repeats runs at its first occurrence.
pub fn nightly_runs_at(tz: Tz, (hour, minute): (u32, u32), start: Millis, end: Millis) -> Vec<Millis> {
    let Some(first) = tz.timestamp_millis_opt(start).single() else { return Vec::new() };
    let mut date = first.date_naive();
    let mut out = Vec::new();
    loop {
        let at = date.and_hms_opt(hour, minute, 0).and_then(|t| tz.from_local_datetime(&t).earliest());
        if let Some(at) = at {
            let t = at.timestamp_millis();
            if t >= end {
                break;
            }
            if t >= start {
                out.push(t);
            }
        }
        date += Duration::days(1);
    }
    out
}

/// The forecast `source` makes at `now` from the demand before it (`peaks` starts at
/// `start`). `None` while there is too little history for the source.
pub fn forecast(source: &ForecastSource, peaks: &[u64], start: Millis, now: Millis) -> Option<DemandForecast> {
    if *source == ForecastSource::Perfect {
        // The whole future at once: an upper bound for analysis, not a forecast.
        let all = peaks.to_vec();
        return Some(DemandForecast {
            start,
            step: STEP,
            mean: all.clone(),
            p90: all.clone(),
            p97_5: all,
            source: "perfect".into(),
        });
    }
    let (origin, p, name) = predict(source, peaks, start, now).ok()?;
    Some(DemandForecast {
        start: origin,
        step: STEP,
        mean: to_mib(&p.mean),
        p90: to_mib(&p.hi80),
        p97_5: to_mib(&p.hi95),
        source: name,
    })
}

/// The prediction behind [`forecast`] for a source that looks only at the past: its first
/// step, the 48 h prediction (MiB, with both intervals) and the model's name; or why there
/// is none (too little history, a model that cannot fit).
pub fn predict(
    source: &ForecastSource,
    peaks: &[u64],
    start: Millis,
    now: Millis,
) -> Result<(Millis, Prediction, String), String> {
    let seen = (((now - start).max(0) / STEP) as usize).min(peaks.len());
    let origin = start + STEP * seen as Millis;
    let horizon = (HORIZON / STEP) as usize;
    let week = (7 * DAY / STEP) as usize;
    let history: Vec<f64> = peaks[..seen].iter().map(|&v| v as f64).collect();
    let (p, name) = match source {
        ForecastSource::Perfect => return Err("perfect is the future itself, not a forecast of the past".into()),
        ForecastSource::SeasonalNaive => {
            if seen < week {
                return Err(format!(
                    "seasonal-naive needs a week of history, has {:.1} days",
                    seen as f64 * STEP as f64 / DAY as f64
                ));
            }
            (seasonal_naive(&history, week, horizon), "seasonal-naive".to_owned())
        }
        ForecastSource::Model(spec) => {
            let series = Series::new("ram_mib.total", start, STEP, history);
            (fit_predict(*spec, &series, horizon).map_err(|e| e.to_string())?, spec.label())
        }
    };
    Ok((origin, p, name))
}

/// Whole MiB, never negative: what the scheduler is given.
pub fn to_mib(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.max(0.0).round() as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(server: u32, start: Millis, end: Millis) -> (u32, Millis, Millis) {
        (server, start, end)
    }

    #[test]
    fn peaks_per_step() {
        // 1024 MiB over [5m, 40m), 2048 MiB over [10m, 12m): step 0 peaks at 3072.
        let p = peak_demand([iv(0, 5 * MINUTE, 40 * MINUTE), iv(1, 10 * MINUTE, 12 * MINUTE)], &[1024, 2048], 0, HOUR);
        assert_eq!(p, vec![3072, 1024, 1024, 0]);
        // Back-to-back: one stops at 15m as another starts; the stop frees first.
        let p = peak_demand([iv(0, 0, 15 * MINUTE), iv(1, 15 * MINUTE, 30 * MINUTE)], &[1024, 1024], 0, 30 * MINUTE);
        assert_eq!(p, vec![1024, 1024]);
    }

    #[test]
    fn nightly_runs_are_at_three_local() {
        // 2025-10-06T00:00+02:00 for two days: 03:00 CEST = 01:00Z on the 6th and 7th.
        let start = 1_759_701_600_000;
        let runs = nightly_runs(chrono_tz::Europe::Berlin, start, start + 2 * DAY);
        assert_eq!(runs, vec![start + 3 * HOUR, start + DAY + 3 * HOUR]);
    }

    #[test]
    fn seasonal_naive_waits_for_a_week_of_history() {
        let peaks: Vec<u64> = (0..(8 * 96)).map(|i| 1000 + (i % 96) as u64).collect();
        assert!(forecast(&ForecastSource::SeasonalNaive, &peaks, 0, 6 * DAY).is_none());
        let f = forecast(&ForecastSource::SeasonalNaive, &peaks, 0, 7 * DAY + 3 * HOUR).unwrap();
        assert_eq!(f.start, 7 * DAY + 3 * HOUR);
        // A perfectly repeating series: the forecast is the same phase a week earlier.
        assert_eq!(f.mean[0], 1000 + 12);
        let perfect = forecast(&ForecastSource::Perfect, &peaks, 0, 0).unwrap();
        assert_eq!(perfect.mean, peaks);
    }
}
