//! The forecaster of Conductor: turns demand history into regular series, fits models
//! (MSTL with an AutoETS trend; weekly and daily seasonal naive baselines), backtests them
//! with rolling origins and writes the forecast document of SPEC §9.
//!
//! Pure computation: this crate never reads files, the network, the environment or a clock.
//! The CLI reads inputs, times runs and writes outputs; the twin and the controller feed it
//! history as plain data (`aggregate::History`).

pub mod aggregate;
pub mod backtest;
pub mod calendar;
pub mod document;
pub mod duration;
pub mod model;
pub mod nightly;
pub mod pipeline;
#[cfg(feature = "prophet")]
pub mod prophet;
pub mod series;
pub mod timefmt;
pub mod wake;

pub use document::ForecastDocument;
pub use model::{fit_predict, ModelKind, ModelSpec, Prediction};
pub use series::Series;
