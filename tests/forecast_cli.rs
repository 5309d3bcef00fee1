//! `conductor forecast` end to end: the nightly job's document, its exit codes and messages,
//! and the backtest's table and dump.

mod common;
use common::*;

use conductor_forecast::ForecastDocument;
use std::process::Output;

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Hourly series with daily and weekly seasons, `days` long, as `timestamp,value` CSV.
fn series_csv(days: usize) -> String {
    let mut s = String::from("timestamp,value\n");
    for h in 0..days * 24 {
        let t = 1_735_689_600 + h as i64 * 3600; // 2025-01-01T00:00:00Z
        let day = (h % 24) as f64 / 24.0;
        let weekend = if (h / 24) % 7 >= 5 { 20.0 } else { 0.0 };
        let wobble = ((h * 7919) % 13) as f64 / 13.0;
        let v = 100.0 + 30.0 * (std::f64::consts::TAU * day).sin() + weekend + wobble;
        let iso = chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
        s.push_str(&format!("{iso},{v}\n"));
    }
    s
}

#[test]
fn the_nightly_job_writes_a_valid_document_for_the_demo() {
    let dir = temp_dir("fc-demo");
    let out = dir.join("forecast.json");
    let o = conductor(&[
        "forecast",
        "--dataset",
        "datasets/demo",
        "--at",
        "2025-10-20T03:00:00+02:00",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    // One summary line for the cron log.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("forecast: 7 series × 192 steps of 15m from 2025-10-20T01:00:00Z"), "{stdout}");
    let doc = ForecastDocument::from_json(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!((doc.step_s, doc.horizon_steps, doc.origin.as_str()), (900, 192, "2025-10-20T01:00:00Z"));
    let names: Vec<&str> = doc.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ram_gib.small",
            "ram_gib.medium",
            "ram_gib.large",
            "ram_gib.total",
            "cpu_cores",
            "sleeping_disk_gb",
            "players"
        ]
    );
    for s in &doc.series {
        assert_eq!(s.fitted_on.steps, 1344, "two weeks of 15-minute history");
        for p in &s.points {
            assert!(0.0 <= p.lo95 && p.lo95 <= p.lo80 && p.lo80 <= p.hi80 && p.hi80 <= p.hi95, "{}: {p:?}", s.name);
            assert!(p.lo80 <= p.mean && p.mean <= p.hi80 || s.model.contains("log"), "{}: {p:?}", s.name);
        }
    }
}

#[test]
fn a_series_forecast_carries_backtest_scores_and_auto_picks_a_model() {
    let dir = temp_dir("fc-series");
    let csv = dir.join("load.csv");
    std::fs::write(&csv, series_csv(35)).unwrap();
    let out = dir.join("f.json");
    let o = conductor(&["forecast", "--series", csv.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let doc = ForecastDocument::from_json(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!((doc.step_s, doc.horizon_steps), (3600, 48));
    let s = &doc.series[0];
    assert_eq!(s.name, "load");
    let b = s.backtest.as_ref().expect("35 days allow a backtest");
    assert_eq!(b.origins, 3);
    // On a clean seasonal series the chosen model is accurate.
    assert!(b.mase < 1.0, "{:?}", b.scores());
}

#[test]
fn bad_series_fail_with_the_line_and_write_nothing() {
    let dir = temp_dir("fc-bad");
    let out = dir.join("f.json");
    let cases = [
        (
            "gap",
            series_csv(20)
                .lines()
                .enumerate()
                .filter(|(i, _)| *i != 30)
                .map(|(_, l)| format!("{l}\n"))
                .collect::<String>(),
            "load.csv:31: gap: 1 missing step(s)",
        ),
        ("nonnumeric", series_csv(20).replacen(",1", ",x1", 1).replace(",x1", ",lots"), "expected a number, got"),
        (
            "short",
            series_csv(10),
            "too little history for a weekly season: needs at least 2 weeks (336 steps of 1h), has 240",
        ),
    ];
    for (name, body, expected) in cases {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let csv = sub.join("load.csv");
        std::fs::write(&csv, body).unwrap();
        let o = conductor(&["forecast", "--series", csv.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: expected {expected:?} in {stderr}");
        assert!(!out.exists(), "{name}: no forecast written");
    }
}

#[test]
fn backtest_prints_a_table_per_model_and_dumps_every_forecast() {
    let dir = temp_dir("fc-backtest");
    let csv = dir.join("load.csv");
    std::fs::write(&csv, series_csv(40)).unwrap();
    let dump = dir.join("forecasts.csv");
    let o = conductor(&[
        "forecast",
        "backtest",
        "--series",
        csv.to_str().unwrap(),
        "--origins",
        "4",
        "--every",
        "24h",
        "--window",
        "3w",
        "--horizon",
        "48h",
        "--models",
        "mstl,snaive-week,snaive-day",
        "--dump",
        dump.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    for model in ["mstl", "snaive-week", "snaive-day"] {
        assert!(stdout.lines().any(|l| l.starts_with(model)), "no row for {model}:\n{stdout}");
    }
    let text = std::fs::read_to_string(&dump).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("model,origin,timestamp,mean,lo80,hi80,lo95,hi95"));
    // 3 models × 4 origins × 48 steps.
    assert_eq!(lines.count(), 3 * 4 * 48);
    // The last origin is the end of the series minus the horizon: 40 days − 2 days.
    assert!(text.contains("mstl,2025-02-08T00:00:00Z,2025-02-08T00:00:00Z,"), "origins are the first forecast steps");

    let o = conductor(&[
        "forecast",
        "backtest",
        "--series",
        csv.to_str().unwrap(),
        "--origins",
        "30",
        "--window",
        "3w",
        "--models",
        "snaive-week",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text_err(&o).contains("need"), "{}", text_err(&o));
}

fn text_err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The wake predictor's backtest on generated demand with weekly routines and without: with
/// them it beats each server's base rate (Brier) and its top 20 start far more often; without
/// them it is no better than the base rate, and says so.
#[test]
fn the_wake_backtest_finds_routines_where_there_are_some() {
    let dir = temp_dir("wake");
    let score = |habits: &str| {
        let data = dir.join(format!("h{habits}"));
        let gen = conductor(&[
            "dataset",
            "generate",
            "--servers",
            "500",
            "--days",
            "42",
            "--seed",
            "31",
            "--habits",
            habits,
            "--out",
            data.to_str().unwrap(),
        ]);
        assert!(gen.status.success(), "{:?}", text(&gen));
        let out = conductor(&["forecast", "wake", "--dataset", data.to_str().unwrap(), "--weeks", "4"]);
        assert!(out.status.success(), "{:?}", text(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let f = |k: &str| r[k].as_f64().unwrap();
        eprintln!("habits {habits}: {r}");
        (f("brier"), f("brier_base_rate"), f("precision"), r["origins"].as_u64().unwrap())
    };
    let (b, base, p, origins) = score("0.6");
    assert_eq!(origins, 56, "two weeks of six-hour origins after four weeks of history");
    assert!(b < 0.9 * base, "routines: Brier {b} vs the base rate's {base}");
    let (b0, base0, p0, _) = score("0");
    assert!(b0 > 0.97 * base0, "no routines, no skill to claim: {b0} vs {base0}");
    assert!(p > 1.5 * p0, "precision of the top 20: {p} with routines, {p0} without");
    let bad = conductor(&["forecast", "wake", "--dataset", dir.join("h0").to_str().unwrap(), "--weeks", "9"]);
    assert!(!bad.status.success() && text(&bad).1.contains("shorter than --weeks 9"), "{:?}", text(&bad));
}
