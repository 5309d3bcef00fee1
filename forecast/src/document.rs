//! The forecast document (SPEC §9): per series and step, the mean and 80 % / 95 % prediction
//! intervals, the model used, the window it was fitted on and its backtest scores. JSON; the
//! controller and the twin read it. Schema: `docs/forecast-schema.md`.

use crate::backtest::Scores;
use crate::model::Prediction;
use crate::series::Series;
use crate::timefmt::{format_rfc3339, parse_rfc3339};
use conductor_core::Millis;
use serde::{Deserialize, Serialize};

/// Identifies the layout; bumped on incompatible changes.
pub const SCHEMA: &str = "conductor.forecast/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastDocument {
    pub schema: String,
    /// The instant the forecast was made for (`--at`), RFC 3339.
    pub made_at: String,
    /// Timestamp of the first forecast step.
    pub origin: String,
    pub step_s: i64,
    pub horizon_steps: usize,
    pub series: Vec<SeriesForecast>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesForecast {
    pub name: String,
    pub unit: String,
    /// e.g. `mstl`, `snaive-week`, `mstl+log`.
    pub model: String,
    pub fitted_on: FittedOn,
    /// Rolling-origin scores of `model` on this series, when a backtest ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest: Option<BacktestSummary>,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FittedOn {
    pub start: String,
    pub end: String,
    pub steps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestSummary {
    pub origins: usize,
    pub every_s: i64,
    pub window_s: i64,
    // Spelled out rather than `#[serde(flatten)]`: flattening breaks number parsing with
    // serde_json's arbitrary_precision, which the reports need for exact money.
    pub mase: f64,
    /// Percent.
    pub smape: f64,
    pub coverage80: f64,
    pub coverage95: f64,
    pub pinball: f64,
}

impl BacktestSummary {
    pub fn scores(&self) -> Scores {
        Scores {
            mase: self.mase,
            smape: self.smape,
            coverage80: self.coverage80,
            coverage95: self.coverage95,
            pinball: self.pinball,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub t: String,
    pub mean: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

impl SeriesForecast {
    /// A forecast of `history`'s series whose first step starts at `origin`.
    pub fn new(
        history: &Series,
        unit: &str,
        model: String,
        origin: Millis,
        p: &Prediction,
        backtest: Option<BacktestSummary>,
    ) -> SeriesForecast {
        SeriesForecast {
            name: history.name.clone(),
            unit: unit.into(),
            model,
            fitted_on: FittedOn {
                start: format_rfc3339(history.start),
                end: format_rfc3339(history.end()),
                steps: history.len(),
            },
            backtest,
            points: (0..p.len())
                .map(|i| Point {
                    t: format_rfc3339(origin + history.step * i as Millis),
                    mean: round(p.mean[i]),
                    lo80: round(p.lo80[i]),
                    hi80: round(p.hi80[i]),
                    lo95: round(p.lo95[i]),
                    hi95: round(p.hi95[i]),
                })
                .collect(),
        }
    }
}

/// Six significant decimals are plenty for demand and keep documents small and stable.
fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl ForecastDocument {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a forecast serializes");
        s.push('\n');
        s
    }

    /// Parses and checks a document (schema, timestamps, step grid).
    pub fn from_json(text: &str) -> Result<ForecastDocument, String> {
        let doc: ForecastDocument = serde_json::from_str(text).map_err(|e| format!("not a forecast document: {e}"))?;
        if doc.schema != SCHEMA {
            return Err(format!("unsupported schema {:?} (expected {SCHEMA:?})", doc.schema));
        }
        let origin = parse_rfc3339(&doc.origin).map_err(|e| format!("origin: {e}"))?;
        for s in &doc.series {
            if s.points.len() != doc.horizon_steps {
                return Err(format!(
                    "series {}: {} points, horizon_steps says {}",
                    s.name,
                    s.points.len(),
                    doc.horizon_steps
                ));
            }
            for (i, p) in s.points.iter().enumerate() {
                let t = parse_rfc3339(&p.t).map_err(|e| format!("series {} point {i}: {e}", s.name))?;
                if t != origin + doc.step_s * 1000 * i as Millis {
                    return Err(format!("series {} point {i}: {} is off the step grid", s.name, p.t));
                }
            }
        }
        Ok(doc)
    }

    pub fn series(&self, name: &str) -> Option<&SeriesForecast> {
        self.series.iter().find(|s| s.name == name)
    }
}
