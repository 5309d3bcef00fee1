//! Models on synthetic series with known daily and weekly seasons.

use conductor_core::time::MINUTE;
use conductor_forecast::{fit_predict, ModelKind, ModelSpec, Series};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

const STEP: i64 = 15 * MINUTE;
const DAY: usize = 96;
const WEEK: usize = 7 * DAY;

/// 10 + a daily wave (amplitude 3) + a weekly wave (amplitude 2) + a weekend lift.
fn truth(t: usize) -> f64 {
    let tau = std::f64::consts::TAU;
    let day = (t % DAY) as f64 / DAY as f64;
    let week = (t % WEEK) as f64 / WEEK as f64;
    let weekend = if (t % WEEK) / DAY >= 5 { 1.5 } else { 0.0 };
    10.0 + 3.0 * (tau * day).sin() + 2.0 * (tau * week).cos() + weekend
}

fn series(weeks: usize, sigma: f64, seed: u64) -> (Series, Vec<f64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma.max(1e-12)).unwrap();
    let n = weeks * WEEK;
    let values = (0..n).map(|t| truth(t) + if sigma > 0.0 { noise.sample(&mut rng) } else { 0.0 }).collect();
    let future = (n..n + 2 * DAY).map(truth).collect();
    (Series::new("synthetic", 0, STEP, values), future)
}

/// The same with a level that wanders (a random walk), as real demand's does.
fn wandering(weeks: usize, seed: u64) -> Series {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 1.0).unwrap();
    let drift = Normal::new(0.0, 0.05).unwrap();
    let mut level = 0.0;
    let values = (0..weeks * WEEK)
        .map(|t| {
            level += drift.sample(&mut rng);
            truth(t) + level + noise.sample(&mut rng)
        })
        .collect();
    Series::new("wandering", 0, STEP, values)
}

fn mae(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

#[test]
fn mstl_recovers_the_signal_far_below_the_noise() {
    let sigma = 1.0;
    let (history, future) = series(8, sigma, 1);
    // The noise alone has a mean absolute value of 0.8 σ; the forecast's error against the
    // noise-free truth must be well below it. With 8 weeks the weekly pattern is estimated
    // from 8 samples per 15-minute phase, so smoothing over cycles decides the floor: wide
    // seasonal windows (right for a stationary series) reach ≈ 0.29 σ, the default windows
    // (right for drifting real demand) ≈ 0.40 σ (BENCHMARKS.md).
    let wide = ModelSpec { windows: (61, 31), ..ModelSpec::new(ModelKind::Mstl) };
    let err = mae(&fit_predict(wide, &history, 2 * DAY).unwrap().mean, &future);
    assert!(err < 0.35 * sigma, "MSTL (61,31) MAE against the truth {err:.3} (σ = {sigma})");
    let p = fit_predict(ModelSpec::new(ModelKind::Mstl), &history, 2 * DAY).unwrap();
    let err = mae(&p.mean, &future);
    assert!(err < 0.5 * sigma, "MSTL MAE against the truth {err:.3} (σ = {sigma})");
    // The 95 % interval covers nearly all of a fresh noisy week.
    assert!(p.lo95.iter().zip(&p.hi95).all(|(l, h)| l < h));
}

#[test]
fn seasonal_naive_recovers_a_noise_free_signal_exactly() {
    let (history, future) = series(3, 0.0, 2);
    let p = fit_predict(ModelSpec::new(ModelKind::SeasonalNaiveWeek), &history, 2 * DAY).unwrap();
    assert!(mae(&p.mean, &future) < 1e-9);
    // A daily naive cannot know the weekly wave: it is measurably off.
    let d = fit_predict(ModelSpec::new(ModelKind::SeasonalNaiveDay), &history, 2 * DAY).unwrap();
    assert!(mae(&d.mean, &future) > 0.01);
}

#[test]
fn log_transform_keeps_forecasts_positive_and_recovers_the_signal() {
    let (history, future) = series(8, 0.3, 3);
    let p = fit_predict(ModelSpec::new(ModelKind::Mstl).log(true), &history, 2 * DAY).unwrap();
    assert!(p.lo95.iter().all(|&v| v >= 0.0));
    assert!(mae(&p.mean, &future) < 0.25, "{}", mae(&p.mean, &future));
}

#[test]
fn intervals_widen_with_the_horizon() {
    let history = wandering(6, 4);
    for &kind in ModelKind::ALL {
        // Two weeks ahead so that seasonal naive crosses a season boundary.
        let p = fit_predict(ModelSpec::new(kind), &history, 2 * WEEK).unwrap();
        let width = |i: usize| p.hi95[i] - p.lo95[i];
        let (first, last) = (width(0), width(2 * WEEK - 1));
        assert!(last > first * 1.1, "{kind:?}: 95 % width {first:.3} at h=1, {last:.3} at h=2 weeks");
        assert!((0..p.len()).all(|i| p.lo95[i] <= p.lo80[i] && p.lo80[i] <= p.hi80[i] && p.hi80[i] <= p.hi95[i]));
    }
}

#[test]
fn too_little_history_gives_a_clear_error_and_no_forecast() {
    let (history, _) = series(1, 1.0, 5);
    let e = fit_predict(ModelSpec::new(ModelKind::Mstl), &history, DAY).unwrap_err();
    assert!(e.to_string().contains("too little history for a weekly season"), "{e}");
    let negative = Series::new("neg", 0, STEP, (0..2 * WEEK).map(|t| truth(t) - 11.0).collect());
    let e = fit_predict(ModelSpec::new(ModelKind::Mstl).log(true), &negative, DAY).unwrap_err();
    assert!(e.to_string().contains("log transform needs a series without negative values"), "{e}");
}
