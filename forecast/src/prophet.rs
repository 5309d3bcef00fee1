//! Prophet (augurs-prophet with the Stan model compiled to WASM, which runs offline), with
//! the calendar of the scenario's time zone: German public holidays and known events (game
//! updates) as holidays, the share of pupils on school holidays and, when given, owner
//! sign-ups as regressors. Behind the `prophet` feature because wasmtime builds slowly.

use crate::calendar::{is_public_holiday, school_holiday_share};
use crate::model::{seasonal_naive, Covariates, Prediction};
use crate::series::Series;
use augurs_prophet::wasmstan::WasmstanOptimizer;
use augurs_prophet::{
    Holiday, HolidayOccurrence, IntervalWidth, PredictionData, Prophet, ProphetOptions, Regressor, TrainingData,
};
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use conductor_core::time::DAY;
use conductor_core::Millis;
use std::collections::HashMap;

fn local_date(tz: Tz, t: Millis) -> NaiveDate {
    tz.timestamp_millis_opt(t).single().map_or_else(|| NaiveDate::MIN, |d| d.date_naive())
}

fn local_midnight(tz: Tz, d: NaiveDate) -> i64 {
    let naive = d.and_hms_opt(0, 0, 0).expect("midnight");
    tz.from_local_datetime(&naive).earliest().map_or(0, |t| t.timestamp())
}

/// Public holidays between `from` and `to` as day-long occurrences in local time.
fn public_holidays(tz: Tz, from: Millis, to: Millis) -> Holiday {
    let (mut d, last) = (local_date(tz, from), local_date(tz, to));
    let mut occurrences = Vec::new();
    while d <= last {
        if is_public_holiday(d) {
            let next = d.succ_opt().expect("a next day");
            occurrences.push(HolidayOccurrence::new(local_midnight(tz, d), local_midnight(tz, next)));
        }
        d = d.succ_opt().expect("a next day");
    }
    Holiday::new(occurrences)
}

pub fn fit_predict(y: &[f64], history: &Series, horizon: usize, cov: &Covariates) -> Result<Prediction, String> {
    let tz = cov.timezone;
    let step = history.step;
    let n = y.len();
    let ds: Vec<i64> = (0..n + horizon).map(|i| (history.start + step * i as Millis) / 1000).collect();
    let school: Vec<f64> = ds.iter().map(|&s| school_holiday_share(local_date(tz, s * 1000))).collect();
    let mut regressors: HashMap<String, Vec<f64>> = HashMap::from([("school_holidays".to_owned(), school)]);
    if let Some(signups) = &cov.signups {
        if signups.step != step || signups.start != history.start || signups.len() < n {
            return Err("the sign-ups series must be on the history's grid".into());
        }
        let past = &signups.values[..n];
        let week = (7 * DAY / step) as usize;
        let future = if n >= week { seasonal_naive(past, week, horizon).mean } else { vec![0.0; horizon] };
        regressors.insert("signups".into(), past.iter().copied().chain(future).collect());
    }
    let split = |all: &HashMap<String, Vec<f64>>, range: std::ops::Range<usize>| {
        all.iter().map(|(k, v)| (k.clone(), v[range.clone()].to_vec())).collect::<HashMap<_, _>>()
    };

    let mut holidays = HashMap::from([(
        "public_holiday".to_owned(),
        public_holidays(tz, history.start, history.start + step * (n + horizon) as Millis),
    )]);
    let mut events: HashMap<String, Vec<HolidayOccurrence>> = HashMap::new();
    for (name, start, end) in &cov.events {
        events.entry(format!("event:{name}")).or_default().push(HolidayOccurrence::new(start / 1000, end / 1000));
    }
    holidays.extend(events.into_iter().map(|(name, occurrences)| (name, Holiday::new(occurrences))));
    let opts = ProphetOptions { holidays, ..Default::default() };
    let mut prophet = Prophet::new(opts, WasmstanOptimizer::new());
    for name in regressors.keys() {
        prophet.add_regressor(name.clone(), Regressor::additive());
    }
    let train = TrainingData::new(ds[..n].to_vec(), y.to_vec())
        .and_then(|t| t.with_regressors(split(&regressors, 0..n)))
        .map_err(|e| format!("training data: {e}"))?;
    prophet.fit(train, Default::default()).map_err(|e| format!("fit failed: {e}"))?;
    let future = || {
        PredictionData::new(ds[n..].to_vec())
            .with_regressors(split(&regressors, n..n + horizon))
            .map_err(|e| format!("prediction data: {e}"))
    };
    // (mean, lower, upper) at one interval width.
    type Bands = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut predict = |width: f64| -> Result<Bands, String> {
        prophet.set_interval_width(IntervalWidth::try_new(width).map_err(|e| e.to_string())?);
        let p = prophet.predict(future()?).map_err(|e| format!("predict failed: {e}"))?;
        match (p.yhat.lower, p.yhat.upper) {
            (Some(l), Some(u)) => Ok((p.yhat.point, l, u)),
            _ => Err("Prophet gave no intervals".into()),
        }
    };
    let (mean, lo80, hi80) = predict(0.8)?;
    let (_, lo95, hi95) = predict(0.95)?;
    let out = Prediction { mean, lo80, hi80, lo95, hi95 };
    Ok(out)
}
