//! The analyst's workbench around the twin: a study (one scenario, or variants and sweeps of
//! it) is validated completely, run in parallel (rayon), ranked by its objective, and written
//! out as JSON, Markdown and self-contained HTML reports with plots and Parquet time series.
//!
//! Nothing here decides anything about a fleet: every run is `conductor_sim::simulate`.

pub mod doc;
pub mod metrics;
pub mod plots;
pub mod series_io;
pub mod study;
pub mod tune;

use conductor_sim::dataset::Dataset;
use conductor_sim::report::{Report, RunInfo};
use doc::Doc;
use metrics::Standing;
use plots::Formats;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use study::{Study, StudyError};

pub const SWEEP_REPORT_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error("loading dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },
    #[error("output directory {path}: {message}")]
    Output { path: PathBuf, message: String },
    #[error("{0}")]
    Write(String),
}

/// One run of one design with one seed.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub design: usize,
    pub seed: u64,
    pub report: Report,
    pub metrics: BTreeMap<String, f64>,
    /// Its own directory, relative to the study's output directory ("" for a single run).
    pub dir: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct RunSummary {
    pub seed: u64,
    pub dir: String,
    pub kpis: conductor_sim::report::Kpis,
}

#[derive(Serialize, Debug, Clone)]
pub struct DesignResult {
    pub name: String,
    pub overrides: BTreeMap<String, String>,
    #[serde(flatten)]
    pub standing: Standing,
    /// Mean over the replications, and the half-width of its 95 % confidence interval.
    pub mean: BTreeMap<String, f64>,
    pub ci95: BTreeMap<String, f64>,
    /// Start waits at percentiles 0..=100, averaged over the replications.
    pub wait_percentiles_s: Vec<f64>,
    pub runs: Vec<RunSummary>,
}

#[derive(Serialize, Debug, Clone)]
pub struct SweepReport {
    pub report_format: u32,
    pub study: String,
    pub file: String,
    pub version: String,
    pub seeds: Vec<u64>,
    pub objective: metrics::Objective,
    pub constraints: Vec<String>,
    pub pareto: (String, String),
    /// Design names, best first.
    pub ranking: Vec<String>,
    pub designs: Vec<DesignResult>,
}

/// What a study run produced.
pub struct StudyOutcome {
    pub runs: Vec<RunResult>,
    pub sweep: Option<SweepReport>,
    /// Files written at the top of the output directory.
    pub files: Vec<PathBuf>,
}

/// Makes sure `dir` exists and can be written to, before anything runs.
pub fn prepare_output(dir: &Path) -> Result<(), Error> {
    let fail = |message: String| Error::Output { path: dir.into(), message };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let probe = dir.join(".conductor-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("cannot write in it: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Loads every dataset the study's designs use and checks each design against its dataset.
pub fn load_datasets(study: &Study) -> Result<BTreeMap<PathBuf, Dataset>, Error> {
    let mut out = BTreeMap::new();
    for d in &study.designs {
        let path = &d.scenario.dataset;
        if !out.contains_key(path) {
            let ds = Dataset::load(path).map_err(|e| Error::Dataset { path: path.clone(), message: e.to_string() })?;
            out.insert(path.clone(), ds);
        }
        d.scenario.check_against(&out[path]).map_err(|e| Error::Study(StudyError::Scenario(e)))?;
    }
    Ok(out)
}

/// A directory name for a design: letters, digits and dots, other runs of characters as one `-`.
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s: String = s.trim_matches('-').chars().take(60).collect();
    if s.is_empty() {
        "run".into()
    } else {
        s
    }
}

/// Runs every design × seed of `study` on the current rayon pool; `done` is called after each
/// run. Per-run outputs go below `out`. Results come back in design, then seed order.
pub fn run_study(
    study: &Study,
    datasets: &BTreeMap<PathBuf, Dataset>,
    out: &Path,
    done: &(dyn Fn() + Sync),
) -> Result<StudyOutcome, Error> {
    let tasks: Vec<(usize, u64)> =
        (0..study.designs.len()).flat_map(|d| study.seeds.iter().map(move |&s| (d, s))).collect();
    let single = !study.is_sweep;
    let formats = Formats { png: study.output.png, svg: study.output.svg };
    let results: Vec<Result<RunResult, Error>> = tasks
        .par_iter()
        .map(|&(d, seed)| {
            let design = &study.designs[d];
            let dataset = &datasets[&design.scenario.dataset];
            let want_outputs = single || study.output.per_run;
            let dir = if single {
                String::new()
            } else if study.seeds.len() > 1 {
                format!("runs/{:03}-{}-seed{seed}", d + 1, slug(&design.name))
            } else {
                format!("runs/{:03}-{}", d + 1, slug(&design.name))
            };
            let started = Instant::now();
            let step = want_outputs.then_some(study.output.series_step);
            let (outcome, effects) = conductor_sim::simulate(&design.scenario, dataset, seed, step, &mut |_| {});
            let replay_s = started.elapsed().as_secs_f64();
            let run = RunInfo {
                version: env!("CARGO_PKG_VERSION").into(),
                wall_s: replay_s,
                load_s: 0.0,
                replay_s,
                events_per_s: outcome.events as f64 / replay_s.max(1e-9),
                peak_rss_mib: None,
            };
            let mut report = Report::new(&design.scenario, dataset, seed, &outcome, run);
            report.transforms = effects;
            if want_outputs {
                let path = out.join(&dir);
                std::fs::create_dir_all(&path)
                    .map_err(|e| Error::Write(format!("creating {}: {e}", path.display())))?;
                write_run(&path, &report, &design.name, &design.overrides, outcome.series.as_ref(), study, formats)?;
            }
            // A sweep's summary never reads the decision log and a sweep may hold thousands
            // of runs: keeping every log made a 7,776-run study peak at 716 MB.
            if !single {
                report.decisions = Vec::new();
            }
            let metrics = metrics::of_report(&report);
            done();
            Ok(RunResult { design: d, seed, report, metrics, dir })
        })
        .collect();
    let runs: Vec<RunResult> = results.into_iter().collect::<Result<_, _>>()?;
    let mut files = Vec::new();
    let sweep = if study.is_sweep {
        let sweep = summarise(study, &runs);
        files = write_sweep(out, study, &sweep, formats)?;
        Some(sweep)
    } else {
        files.extend(["report.json", "report.md", "report.html"].iter().map(|f| out.join(f)));
        None
    };
    Ok(StudyOutcome { runs, sweep, files })
}

/// Means, confidence intervals, ranking and Pareto marks per design.
pub fn summarise(study: &Study, runs: &[RunResult]) -> SweepReport {
    let mut designs = Vec::new();
    let mut means = Vec::new();
    for (d, design) in study.designs.iter().enumerate() {
        let mine: Vec<&RunResult> = runs.iter().filter(|r| r.design == d).collect();
        let (mut mean, mut ci95) = (BTreeMap::new(), BTreeMap::new());
        for name in metrics::NAMES {
            let xs: Vec<f64> = mine.iter().filter_map(|r| r.metrics.get(*name).copied()).collect();
            let s = metrics::summarise(&xs);
            mean.insert(name.to_string(), s.mean);
            ci95.insert(name.to_string(), s.ci95);
        }
        let n = mine.len().max(1) as f64;
        let mut waits = vec![0.0; 101];
        let mut any = false;
        for r in &mine {
            if r.report.wait_percentiles_s.len() == 101 {
                any = true;
                for (w, x) in waits.iter_mut().zip(&r.report.wait_percentiles_s) {
                    *w += x / n;
                }
            }
        }
        means.push(mean.clone());
        designs.push(DesignResult {
            name: design.name.clone(),
            overrides: design.overrides.iter().cloned().collect(),
            standing: Standing { rank: 0, feasible: false, pareto: false },
            mean,
            ci95,
            wait_percentiles_s: if any { waits } else { Vec::new() },
            runs: mine
                .iter()
                .map(|r| RunSummary { seed: r.seed, dir: r.dir.clone(), kpis: r.report.kpis.clone() })
                .collect(),
        });
    }
    let standings = metrics::rank(&means, &study.objective, &study.constraints, (&study.pareto.0, &study.pareto.1));
    for (d, s) in designs.iter_mut().zip(standings) {
        d.standing = s;
    }
    let mut order: Vec<&DesignResult> = designs.iter().collect();
    order.sort_by_key(|d| d.standing.rank);
    SweepReport {
        report_format: SWEEP_REPORT_FORMAT,
        study: study.name.clone(),
        file: study.file.display().to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        seeds: study.seeds.clone(),
        objective: study.objective.clone(),
        constraints: study.constraints.iter().map(|c| c.to_string()).collect(),
        pareto: study.pareto.clone(),
        ranking: order.iter().map(|d| d.name.clone()).collect(),
        designs,
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::Write(format!("writing {}: {e}", path.display())))
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// One run's files: report.json, series (Parquet/CSV), plots, report.md and report.html.
fn write_run(
    dir: &Path,
    report: &Report,
    design: &str,
    overrides: &[(String, String)],
    series: Option<&conductor_sim::series::Series>,
    study: &Study,
    formats: Formats,
) -> Result<(), Error> {
    write(&dir.join("report.json"), &report.to_json())?;
    let mut d = Doc::new(format!("Twin run: {}", report.scenario.name));
    d.p(format!(
        "Scenario {} ({}) · design {design} · dataset {} ({} servers, {} sessions) · window {} → {} · seed {} · conductor {}",
        report.scenario.name,
        report.scenario.file,
        report.dataset.name,
        report.dataset.servers,
        report.dataset.sessions,
        report.window.start,
        report.window.end,
        report.seed,
        report.run.version
    ));
    if !report.scenario.description.is_empty() {
        d.p(report.scenario.description.clone());
    }
    if !overrides.is_empty() {
        d.h(1, "Overrides");
        d.table(&["key", "value"], overrides.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect());
    }
    if !report.transforms.is_empty() {
        d.h(1, "What-if transforms");
        d.table(
            &["transform", "servers", "sessions", "session hours"],
            report
                .transforms
                .iter()
                .map(|e| {
                    vec![
                        e.transform.clone(),
                        format!("{} → {}", e.servers_before, e.servers_after),
                        format!("{} → {}", e.sessions_before, e.sessions_after),
                        format!("{:.1} → {:.1}", e.session_hours_before, e.session_hours_after),
                    ]
                })
                .collect(),
        );
    }
    d.h(1, "KPIs");
    // In SPEC §10 order (a JSON map would sort them): the metric names up to `events` (the
    // KPIs), and the seed.
    let kpis = serde_json::to_value(&report.kpis).expect("KPIs serialize");
    let count = metrics::NAMES.iter().position(|n| *n == "events").expect("listed") + 1;
    let rows =
        metrics::NAMES[..count].iter().chain(&["seed"]).map(|k| vec![k.to_string(), kpis[*k].to_string()]).collect();
    d.table(&["KPI", "value"], rows);
    d.h(1, "Details");
    let details = serde_json::to_value(&report.details).expect("details serialize");
    let rows = details
        .as_object()
        .map(|m| m.iter().filter(|(_, v)| !v.is_object()).map(|(k, v)| vec![k.clone(), v.to_string()]).collect())
        .unwrap_or_default();
    d.table(&["figure", "value"], rows);
    if !report.details.decisions_by_policy.is_empty() {
        d.h(1, "Decisions by policy");
        d.table(
            &["policy and action", "count"],
            report.details.decisions_by_policy.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect(),
        );
    }
    if let Some(series) = series {
        if study.output.parquet {
            series_io::write_parquet(series, &dir.join("series.parquet")).map_err(Error::Write)?;
        }
        if study.output.csv {
            series_io::write_csv(series, &dir.join("series.csv")).map_err(Error::Write)?;
        }
        d.h(1, "Capacity and demand");
        let start_label = report.window.start.clone();
        let chart =
            plots::Capacity { title: format!("{}: capacity vs demand", report.scenario.name), series, start_label };
        let svg = plots::render(&chart, dir, "capacity", formats).map_err(Error::Write)?;
        d.image(image_file("capacity", formats), "Capacity vs demand, with cloud VMs and the start queue", svg);
        if plots::ForecastVsActual::applies(series) {
            d.h(1, "Forecast vs actual");
            let chart = plots::ForecastVsActual {
                title: format!("{}: forecast vs actual demand", report.scenario.name),
                series,
                start_label: report.window.start.clone(),
            };
            let svg = plots::render(&chart, dir, "forecast", formats).map_err(Error::Write)?;
            d.image(image_file("forecast", formats), "Nightly forecast against the actual peak demand", svg);
        }
        d.p(format!(
            "Time series: {} samples every {} s in {}; columns are documented in docs/workbench.md.",
            series.len(),
            series.step / 1000,
            if study.output.parquet { "series.parquet" } else { "series.csv" }
        ));
    }
    if !report.wait_percentiles_s.is_empty() {
        d.h(1, "Start waits");
        let chart = plots::WaitCdf {
            title: "Start-wait distribution".into(),
            lines: vec![(design.to_string(), report.wait_percentiles_s.clone())],
        };
        let svg = plots::render(&chart, dir, "waits", formats).map_err(Error::Write)?;
        d.image(image_file("waits", formats), "Start-wait CDF", svg);
    }
    write(&dir.join("report.md"), &d.markdown())?;
    write(&dir.join("report.html"), &d.html())
}

fn image_file(stem: &str, f: Formats) -> String {
    if f.png || !f.svg {
        format!("{stem}.png")
    } else {
        format!("{stem}.svg")
    }
}

/// How many designs the per-design plots show (best-ranked first).
const PLOT_DESIGNS: usize = 20;
const CDF_DESIGNS: usize = 8;

fn write_sweep(out: &Path, study: &Study, sweep: &SweepReport, formats: Formats) -> Result<Vec<PathBuf>, Error> {
    let mut json = serde_json::to_string_pretty(sweep).expect("a sweep report serializes");
    json.push('\n');
    write(&out.join("report.json"), &json)?;
    // One row per design: an analyst's table for polars/pandas/spreadsheets.
    let mut csv = String::from("rank,design,feasible,pareto");
    for n in metrics::NAMES {
        csv.push_str(&format!(",{n},{n}_ci95"));
    }
    csv.push('\n');
    for d in &sweep.designs {
        csv.push_str(&format!(
            "{},\"{}\",{},{}",
            d.standing.rank,
            d.name.replace('"', "\"\""),
            d.standing.feasible,
            d.standing.pareto
        ));
        for n in metrics::NAMES {
            csv.push_str(&format!(",{},{}", d.mean[*n], d.ci95[*n]));
        }
        csv.push('\n');
    }
    write(&out.join("summary.csv"), &csv)?;

    let mut ranked: Vec<&DesignResult> = sweep.designs.iter().collect();
    ranked.sort_by_key(|d| d.standing.rank);
    let mut doc = Doc::new(format!("Sweep: {}", sweep.study));
    let runs = sweep.designs.len() * sweep.seeds.len();
    doc.p(format!(
        "Study {} · {} designs × {} seed(s) ({}) = {} runs · conductor {}",
        sweep.file,
        sweep.designs.len(),
        sweep.seeds.len(),
        sweep.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        runs,
        sweep.version
    ));
    let base = &study.designs[0].scenario;
    doc.p(format!(
        "Dataset {} · policy {:?} · placement {:?}",
        base.dataset.display(),
        base.policy,
        base.scheduler.strategy
    ));
    doc.h(1, "Objective");
    doc.p(format!(
        "{} {}{}. Ranked by the mean over seeds: designs meeting every constraint first, then the rest by how far they miss. Pareto frontier: {} vs {} (both minimised).",
        if sweep.objective.maximise { "Maximise" } else { "Minimise" },
        sweep.objective.metric,
        if sweep.constraints.is_empty() {
            String::new()
        } else {
            format!(" subject to {}", sweep.constraints.join(", "))
        },
        sweep.pareto.0,
        sweep.pareto.1
    ));
    doc.h(1, "Ranking");
    let with_ci = sweep.seeds.len() > 1;
    let cell = |d: &DesignResult, m: &str| {
        if with_ci {
            format!("{} ± {}", fmt_num(d.mean[m]), fmt_num(d.ci95[m]))
        } else {
            fmt_num(d.mean[m])
        }
    };
    let mut shown = vec![sweep.objective.metric.clone()];
    for m in ["margin_eur", "infra_cost_eur", "revenue_eur", "start_wait_p95_s", "starts_abandoned", "peak_cloud_vms"]
        .iter()
        .map(|s| s.to_string())
        .chain(study.constraints.iter().map(|c| c.metric.clone()))
    {
        if !shown.contains(&m) {
            shown.push(m);
        }
    }
    let mut headers = vec!["rank", "design", "feasible", "Pareto"];
    headers.extend(shown.iter().map(String::as_str));
    let rows = ranked
        .iter()
        .map(|d| {
            let mut r = vec![
                d.standing.rank.to_string(),
                d.name.clone(),
                if d.standing.feasible { "yes" } else { "no" }.into(),
                if d.standing.pareto { "◆" } else { "" }.into(),
            ];
            r.extend(shown.iter().map(|m| cell(d, m)));
            r
        })
        .collect();
    doc.table(&headers, rows);

    doc.h(1, "Pareto frontier");
    let y_bound = study
        .constraints
        .iter()
        .filter(|c| c.metric == sweep.pareto.1 && matches!(c.op, metrics::Op::Le | metrics::Op::Lt))
        .map(|c| c.bound)
        .reduce(f64::min);
    let pareto = plots::Pareto {
        title: format!("{}: {} vs {}", sweep.study, sweep.pareto.0, sweep.pareto.1),
        x_desc: sweep.pareto.0.clone(),
        y_desc: sweep.pareto.1.clone(),
        points: sweep
            .designs
            .iter()
            .map(|d| plots::ParetoPoint {
                name: d.name.clone(),
                x: d.mean[&sweep.pareto.0],
                y: d.mean[&sweep.pareto.1],
                feasible: d.standing.feasible,
                frontier: d.standing.pareto,
                rank: d.standing.rank,
            })
            .collect(),
        y_bound,
    };
    let svg = plots::render(&pareto, out, "pareto", formats).map_err(Error::Write)?;
    doc.image(image_file("pareto", formats), "Every design on the cost/wait plane; the frontier joined", svg);

    doc.h(1, "Cost and revenue");
    let bars = ranked
        .iter()
        .take(PLOT_DESIGNS)
        .map(|d| plots::CostBar {
            name: format!("#{} {}", d.standing.rank, d.name),
            dedicated: d.mean["dedicated_cost_eur"],
            cloud: d.mean["cloud_cost_eur"],
            storage: d.mean["storage_cost_eur"],
            promo: d.mean["promo_credit_eur"],
            revenue: d.mean["revenue_eur"],
        })
        .collect();
    let costs =
        plots::Costs { title: format!("{}: cost breakdown and revenue (best {PLOT_DESIGNS})", sweep.study), bars };
    let svg = plots::render(&costs, out, "costs", formats).map_err(Error::Write)?;
    doc.image(image_file("costs", formats), "Cost breakdown per design against revenue, best-ranked first", svg);

    doc.h(1, "Start waits");
    let mut lines: Vec<(String, Vec<f64>)> = ranked
        .iter()
        .filter(|d| !d.wait_percentiles_s.is_empty())
        .take(CDF_DESIGNS)
        .map(|d| (format!("#{} {}", d.standing.rank, d.name), d.wait_percentiles_s.clone()))
        .collect();
    if let Some(base) = sweep.designs.iter().find(|d| d.name == "base" && d.standing.rank > CDF_DESIGNS) {
        lines.push((format!("#{} base", base.standing.rank), base.wait_percentiles_s.clone()));
    }
    let cdf = plots::WaitCdf { title: format!("{}: start-wait distribution", sweep.study), lines };
    let svg = plots::render(&cdf, out, "waits", formats).map_err(Error::Write)?;
    doc.image(image_file("waits", formats), "Start-wait CDF of the best-ranked designs", svg);

    doc.h(1, "Designs");
    doc.table(
        &["design", "overrides", "runs"],
        sweep
            .designs
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.overrides.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("; "),
                    d.runs
                        .iter()
                        .map(|r| if r.dir.is_empty() { format!("seed {}", r.seed) } else { r.dir.clone() })
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect(),
    );
    write(&out.join("report.md"), &doc.markdown())?;
    write(&out.join("report.html"), &doc.html())?;
    Ok(["report.json", "summary.csv", "report.md", "report.html"].iter().map(|f| out.join(f)).collect())
}

/// Named wait distributions (percentiles 0..=100), for a CDF plot.
pub type WaitLines = Vec<(String, Vec<f64>)>;

/// Side-by-side comparison of two single-run reports (report.json files or run directories).
pub fn compare(a: &Path, b: &Path) -> Result<(Doc, WaitLines), Error> {
    let load = |p: &Path| -> Result<(PathBuf, serde_json::Value), Error> {
        let file = if p.is_dir() { p.join("report.json") } else { p.to_path_buf() };
        let text =
            std::fs::read_to_string(&file).map_err(|e| Error::Write(format!("reading {}: {e}", file.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Write(format!("{}: not a conductor report: {e}", file.display())))?;
        if v.get("kpis").and_then(|k| k.as_object()).is_none() {
            return Err(Error::Write(format!(
                "{}: not a single-run report (no `kpis`); compare run reports, e.g. runs/001-base/report.json",
                file.display()
            )));
        }
        Ok((file, v))
    };
    let (fa, ra) = load(a)?;
    let (fb, rb) = load(b)?;
    let s = |v: &serde_json::Value, path: &[&str]| {
        let mut x = v;
        for p in path {
            x = &x[*p];
        }
        x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())
    };
    let mut d = Doc::new(format!("Compare: {} vs {}", s(&ra, &["scenario", "name"]), s(&rb, &["scenario", "name"])));
    d.table(
        &["", "A", "B"],
        vec![
            vec!["report".into(), fa.display().to_string(), fb.display().to_string()],
            vec!["scenario".into(), s(&ra, &["scenario", "file"]), s(&rb, &["scenario", "file"])],
            vec!["dataset".into(), s(&ra, &["dataset", "path"]), s(&rb, &["dataset", "path"])],
            vec!["window".into(), s(&ra, &["window", "start"]), s(&rb, &["window", "start"])],
            vec!["seed".into(), s(&ra, &["seed"]), s(&rb, &["seed"])],
            vec!["version".into(), s(&ra, &["run", "version"]), s(&rb, &["run", "version"])],
        ],
    );
    for (title, key) in [("KPIs", "kpis"), ("Details", "details")] {
        d.h(1, title);
        let mut rows = Vec::new();
        if let (Some(ma), Some(mb)) = (ra[key].as_object(), rb[key].as_object()) {
            // KPIs in SPEC §10 order; details as they come (sorted).
            let order: Vec<(&String, &serde_json::Value)> = if key == "kpis" {
                let mut v: Vec<_> = ma.iter().collect();
                v.sort_by_key(|(k, _)| metrics::NAMES.iter().position(|n| n == k).unwrap_or(usize::MAX));
                v
            } else {
                ma.iter().collect()
            };
            for (k, va) in order {
                let vb = &mb.get(k).cloned().unwrap_or(serde_json::Value::Null);
                let (xa, xb) = (num(va), num(vb));
                let (delta, pct) = match (xa, xb) {
                    (Some(x), Some(y)) => {
                        let pct = if x != 0.0 { format!("{:+.1} %", (y - x) / x.abs() * 100.0) } else { String::new() };
                        let delta = y - x;
                        let text = if delta.fract() == 0.0 {
                            format!("{delta:+.0}")
                        } else if delta.abs() < 0.01 {
                            format!("{delta:+.6}")
                        } else {
                            format!("{delta:+.2}")
                        };
                        (if x == y { "=".into() } else { text }, pct)
                    }
                    _ => (if va == vb { "=".into() } else { "≠".into() }, String::new()),
                };
                if va.is_object() {
                    continue;
                }
                rows.push(vec![k.clone(), va.to_string(), vb.to_string(), delta, pct]);
            }
        }
        d.table(&["figure", "A", "B", "B − A", "change"], rows);
    }
    let waits = |v: &serde_json::Value| -> Vec<f64> {
        v["wait_percentiles_s"].as_array().map(|a| a.iter().filter_map(num).collect()).unwrap_or_default()
    };
    let lines = vec![
        (format!("A: {}", s(&ra, &["scenario", "name"])), waits(&ra)),
        (format!("B: {}", s(&rb, &["scenario", "name"])), waits(&rb)),
    ];
    Ok((d, lines.into_iter().filter(|(_, w)| w.len() == 101).collect()))
}

fn num(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().or_else(|| if v.is_number() { v.to_string().parse().ok() } else { None })
}

/// Writes a comparison's Markdown and HTML (with the wait CDFs) into `out`.
pub fn write_compare(out: &Path, mut doc: Doc, lines: Vec<(String, Vec<f64>)>, formats: Formats) -> Result<(), Error> {
    prepare_output(out)?;
    if !lines.is_empty() {
        doc.h(1, "Start waits");
        let svg =
            plots::render(&plots::WaitCdf { title: "Start-wait distribution".into(), lines }, out, "waits", formats)
                .map_err(Error::Write)?;
        doc.image(image_file("waits", formats), "Start-wait CDF, A and B", svg);
    }
    write(&out.join("compare.md"), &doc.markdown())?;
    write(&out.join("compare.html"), &doc.html())
}
