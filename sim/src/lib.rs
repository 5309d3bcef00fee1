//! The digital twin: a discrete-event simulator that replays recorded demand against the
//! decision core of `conductor-core` and reports cost, revenue, margin and start waits.
//!
//! The engine decides nothing itself: it delivers events to the core's scheduler and
//! carries out the commands it returns, with simulated delays, and meters what happened.
//! Simulated time is a value in the model; the engine never reads the wall clock inside
//! the model and never uses tokio. Same scenario, dataset and seed → byte-identical
//! report (except the `run` block, which measures the run itself).

pub mod engine;
pub mod generate;
pub mod report;
pub mod scenario;
pub mod series;
pub mod transform;

/// Demand datasets (SPEC §4), shared with the controller's export.
pub use conductor_config::dataset;
/// German holidays, shared with the forecaster.
pub use conductor_forecast::calendar;
/// Durations such as `15m`, shared with the forecaster.
pub use conductor_forecast::duration;
/// The nightly forecast, made as the controller makes it.
pub use conductor_forecast::nightly as forecasting;
/// RFC 3339 in files, milliseconds inside; shared with the forecaster.
pub use conductor_forecast::timefmt;

/// One complete run: transforms the dataset, replays it, and says what the transforms did.
pub fn simulate(
    scenario: &scenario::Scenario,
    dataset: &dataset::Dataset,
    seed: u64,
    series_step: Option<conductor_core::Millis>,
    progress: engine::Progress<'_>,
) -> (engine::Outcome, Vec<transform::Effect>) {
    if scenario.transforms.is_empty() {
        return (engine::run_with(scenario, dataset, seed, series_step, progress), Vec::new());
    }
    let (transformed, effects) = transform::apply(dataset, &scenario.transforms, seed);
    (engine::run_with(scenario, &transformed, seed, series_step, progress), effects)
}

/// Checks a forecast document (schema `conductor.forecast/1`); for the controller's upload.
pub fn forecast_document(text: &str) -> Result<(), String> {
    conductor_forecast::ForecastDocument::from_json(text).map(|_| ())
}
