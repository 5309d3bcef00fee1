//! `conductor tune`: searches a scenario's knobs (the ones a tune file names, with ranges) to
//! maximise an objective summed over a set of training datasets, subject to constraints
//! against the reference policy on the same data, with argmin's particle swarm; then judges
//! the winner on datasets the search never saw.
//!
//! Resumable: every evaluation is appended to `evaluations.jsonl` in the output directory.
//! The swarm is seeded, so a rerun proposes the same points and takes the ones already
//! evaluated from that file instead of simulating them again.

use crate::doc::Doc;
use crate::metrics;
use crate::study::set;
use argmin::core::{CostFunction, Executor};
use argmin::solver::particleswarm::ParticleSwarm;
use conductor_sim::dataset::Dataset;
use conductor_sim::report::{Report, RunInfo};
use conductor_sim::scenario::Scenario;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use toml::{Table, Value};

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("{path}: {key}: {message}")]
    Key { path: PathBuf, key: String, message: String },
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> TuneError {
    TuneError::Other(e.to_string())
}

/// How a knob's value is written into the scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnobKind {
    /// A float rounded to `step`.
    Float {
        step: f64,
    },
    Integer,
    Bool,
    /// One of `values` (strings), chosen by the range's index.
    Choice(Vec<String>),
}

#[derive(Clone, Debug, Serialize)]
pub struct Knob {
    pub key: String,
    pub from: f64,
    pub to: f64,
    pub kind: KnobKind,
}

impl Knob {
    /// The value at `u` ∈ [0, 1] of the range, as written into the scenario.
    fn value(&self, u: f64) -> Value {
        let x = self.from + u.clamp(0.0, 1.0) * (self.to - self.from);
        match &self.kind {
            KnobKind::Float { step } => Value::Float(((x / step).round() * step * 1e9).round() / 1e9),
            KnobKind::Integer => Value::Integer(x.round() as i64),
            KnobKind::Bool => Value::Boolean(x >= 0.5),
            KnobKind::Choice(values) => Value::String(values[(x.round() as usize).min(values.len() - 1)].clone()),
        }
    }

    /// The point of the unit cube that gives `value` (as [`Knob::value`] writes it).
    fn position(&self, value: &str) -> f64 {
        let n: f64 = match (&self.kind, value) {
            (KnobKind::Bool, "true") => 1.0,
            (KnobKind::Bool, _) => 0.0,
            (KnobKind::Choice(values), v) => {
                values.iter().position(|c| Value::String(c.clone()).to_string() == v).unwrap_or(0) as f64
            }
            (_, v) => v.parse().unwrap_or(self.from),
        };
        ((n - self.from) / (self.to - self.from)).clamp(0.0, 1.0)
    }
}

/// `metric <= factor × reference` (or `>=`), per dataset; or against a plain number.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Constraint {
    pub metric: String,
    pub at_most: bool,
    /// A multiple of the reference's figure on the same dataset, or an absolute bound.
    pub factor: Option<f64>,
    pub bound: f64,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let expected =
            || format!("expected `metric <= 0.5 * reference`, `metric >= reference` or `metric <= 30`, got {text:?}");
        let (metric, at_most, rhs) = if let Some((m, r)) = text.split_once("<=") {
            (m, true, r)
        } else if let Some((m, r)) = text.split_once(">=") {
            (m, false, r)
        } else {
            return Err(expected());
        };
        let metric = metric.trim().to_owned();
        if !metrics::NAMES.contains(&metric.as_str()) {
            return Err(format!("unknown metric {metric:?} (known: {})", metrics::NAMES.join(", ")));
        }
        let rhs = rhs.trim();
        let (factor, bound) = match rhs.strip_suffix("reference").map(str::trim) {
            Some("") => (Some(1.0), 0.0),
            Some(f) => {
                let f = f.strip_suffix('*').or_else(|| f.strip_suffix('×')).ok_or_else(expected)?.trim();
                (Some(f.parse().map_err(|_| expected())?), 0.0)
            }
            None => (None, rhs.parse().map_err(|_| expected())?),
        };
        Ok(Constraint { metric, at_most, factor, bound })
    }

    /// The bound on one dataset, given the reference's metrics there.
    fn bound_on(&self, reference: &BTreeMap<String, f64>) -> f64 {
        match self.factor {
            Some(f) => f * reference.get(&self.metric).copied().unwrap_or(0.0),
            None => self.bound,
        }
    }

    /// How far `x` is from the bound, relative to it (0 when it holds).
    pub fn violation(&self, x: f64, reference: &BTreeMap<String, f64>) -> f64 {
        let b = self.bound_on(reference);
        let over = if self.at_most { x - b } else { b - x };
        if over <= 0.0 {
            0.0
        } else {
            over / b.abs().max(1.0)
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.at_most { "≤" } else { "≥" };
        match self.factor {
            Some(1.0) => write!(f, "{} {op} reference", self.metric),
            Some(k) => write!(f, "{} {op} {k} × reference", self.metric),
            None => write!(f, "{} {op} {}", self.metric, self.bound),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawTune {
    name: Option<String>,
    scenario: PathBuf,
    reference: PathBuf,
    train: Vec<PathBuf>,
    holdout: Vec<PathBuf>,
    seed: Option<u64>,
    #[serde(default)]
    search: RawSearch,
    objective: Option<String>,
    constraints: Option<Vec<String>>,
    #[serde(default)]
    knob: Vec<RawKnob>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    particles: Option<usize>,
    iterations: Option<u64>,
    seed: Option<u64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawKnob {
    key: String,
    #[serde(default)]
    from: f64,
    #[serde(default)]
    to: f64,
    /// A choice among strings (from and to are then not given).
    values: Option<Vec<String>>,
    #[serde(default)]
    integer: bool,
    #[serde(default)]
    bool: bool,
    step: Option<f64>,
}

/// A tune file, validated.
#[derive(Clone, Debug)]
pub struct Tune {
    pub name: String,
    pub file: PathBuf,
    pub scenario_path: PathBuf,
    pub scenario: Table,
    pub reference_path: PathBuf,
    pub reference: Table,
    pub train: Vec<PathBuf>,
    pub holdout: Vec<PathBuf>,
    pub seed: u64,
    pub objective: String,
    pub constraints: Vec<Constraint>,
    pub knobs: Vec<Knob>,
    pub particles: usize,
    pub iterations: u64,
    pub search_seed: u64,
}

impl Tune {
    pub fn load(path: &Path) -> Result<Tune, TuneError> {
        let text = std::fs::read_to_string(path).map_err(|e| other(format!("reading {}: {e}", path.display())))?;
        let key = |key: &str, message: String| TuneError::Key { path: path.into(), key: key.into(), message };
        let raw: RawTune = {
            let de = toml::Deserializer::new(&text);
            serde_path_to_error::deserialize(de).map_err(|e| key(&e.path().to_string(), e.inner().to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { dir.join(p) };
        let read_table = |k: &str, p: &Path| -> Result<Table, TuneError> {
            let t = std::fs::read_to_string(p).map_err(|e| key(k, format!("reading {}: {e}", p.display())))?;
            t.parse::<Table>().map_err(|e| key(k, format!("{}: {e}", p.display())))
        };
        let (scenario_path, reference_path) = (abs(&raw.scenario), abs(&raw.reference));
        let scenario = read_table("scenario", &scenario_path)?;
        let reference = read_table("reference", &reference_path)?;
        let train: Vec<PathBuf> = raw.train.iter().map(|p| abs(p)).collect();
        let holdout: Vec<PathBuf> = raw.holdout.iter().map(|p| abs(p)).collect();
        if train.is_empty() {
            return Err(key("train", "name at least one dataset to tune on".into()));
        }
        if holdout.is_empty() {
            return Err(key("holdout", "name at least one dataset the search must not see".into()));
        }
        if let Some(p) = train.iter().find(|p| holdout.contains(p)) {
            return Err(key("holdout", format!("{} is also a training dataset", p.display())));
        }
        for (k, list) in [("train", &train), ("holdout", &holdout)] {
            if let Some(p) = list.iter().find(|p| !p.join("meta.toml").is_file()) {
                return Err(key(k, format!("{} is not a dataset (no meta.toml)", p.display())));
            }
        }
        let objective = raw.objective.unwrap_or_else(|| "margin_eur".into());
        if !metrics::NAMES.contains(&objective.as_str()) {
            return Err(key("objective", format!("unknown metric {objective:?}")));
        }
        let constraints = raw
            .constraints
            .unwrap_or_else(|| vec!["start_wait_p95_s <= reference".into(), "starts_abandoned <= reference".into()])
            .iter()
            .enumerate()
            .map(|(i, c)| Constraint::parse(c).map_err(|m| key(&format!("constraints[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.knob.is_empty() {
            return Err(key("knob", "name at least one [[knob]] to search".into()));
        }
        let mut knobs = Vec::new();
        for (i, k) in raw.knob.iter().enumerate() {
            let at = format!("knob[{i}]");
            if let Some(values) = &k.values {
                if values.len() < 2 || k.integer || k.bool || k.step.is_some() || k.from != 0.0 || k.to != 0.0 {
                    return Err(key(&at, "a choice knob has two or more values and nothing else".into()));
                }
                let to = (values.len() - 1) as f64;
                knobs.push(Knob { key: k.key.clone(), from: 0.0, to, kind: KnobKind::Choice(values.clone()) });
                continue;
            }
            if k.from.partial_cmp(&k.to) != Some(std::cmp::Ordering::Less) {
                return Err(key(&at, format!("expected from < to, got {} and {}", k.from, k.to)));
            }
            let kind = match (k.integer, k.bool, k.step) {
                (true, true, _) => return Err(key(&at, "a knob is an integer or a bool, not both".into())),
                (true, false, None) => KnobKind::Integer,
                (false, true, None) => KnobKind::Bool,
                (false, false, step) => {
                    let step = step.unwrap_or((k.to - k.from) / 100.0);
                    if step <= 0.0 {
                        return Err(key(&format!("{at}.step"), "expected a positive step".into()));
                    }
                    KnobKind::Float { step }
                }
                (_, _, Some(_)) => return Err(key(&format!("{at}.step"), "only float knobs have a step".into())),
            };
            knobs.push(Knob { key: k.key.clone(), from: k.from, to: k.to, kind });
        }
        let tune = Tune {
            name: raw
                .name
                .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
            file: path.into(),
            scenario_path,
            scenario,
            reference_path,
            reference,
            train,
            holdout,
            seed: raw.seed.unwrap_or(1),
            objective,
            constraints,
            knobs,
            particles: raw.search.particles.unwrap_or(8).max(2),
            iterations: raw.search.iterations.unwrap_or(10),
            search_seed: raw.search.seed.unwrap_or(1),
        };
        // Every knob's key must be settable at both ends of its range, and the middle of the
        // space a valid scenario (a typo in a key is an unknown key there). Other points may
        // be invalid (knobs interact: down below up); the search skips those.
        for (i, _) in tune.knobs.iter().enumerate() {
            for u in [0.0, 1.0] {
                let mut x = vec![0.5; tune.knobs.len()];
                x[i] = u;
                tune.table_at(&x).map_err(|m| key(&format!("knob[{i}]"), m))?;
            }
        }
        let middle = vec![0.5; tune.knobs.len()];
        if let Err(m) = tune.scenario_at(&middle, &tune.train[0]) {
            let culprit = tune.knobs.iter().position(|k| m.contains(&k.key)).unwrap_or(0);
            return Err(key(&format!("knob[{culprit}]"), format!("at the middle of the ranges: {m}")));
        }
        tune.reference_on(&tune.train[0]).map_err(|m| key("reference", m))?;
        Ok(tune)
    }

    /// The knob values at a point of the unit cube, as written into the scenario.
    pub fn values(&self, x: &[f64]) -> Vec<Value> {
        self.knobs.iter().zip(x).map(|(k, &u)| k.value(u)).collect()
    }

    /// The tuned scenario's table at `x`.
    pub fn table_at(&self, x: &[f64]) -> Result<Table, String> {
        let mut t = self.scenario.clone();
        for (k, v) in self.knobs.iter().zip(self.values(x)) {
            set(&mut t, &k.key, v).map_err(|e| format!("{}: {e}", k.key))?;
        }
        Ok(t)
    }

    fn parse_on(path: &Path, mut t: Table, dataset: &Path) -> Result<Scenario, String> {
        t.insert("dataset".into(), Value::String(dataset.display().to_string()));
        let text = toml::to_string(&t).map_err(|e| e.to_string())?;
        Scenario::parse(path, &text).map_err(|e| e.to_string())
    }

    pub fn scenario_at(&self, x: &[f64], dataset: &Path) -> Result<Scenario, String> {
        Self::parse_on(&self.scenario_path, self.table_at(x)?, dataset)
    }

    pub fn reference_on(&self, dataset: &Path) -> Result<Scenario, String> {
        Self::parse_on(&self.reference_path, self.reference.clone(), dataset)
    }
}

/// Metrics by name.
type Metrics = BTreeMap<String, f64>;

/// One replay's metrics.
pub fn replay(scenario: &Scenario, dataset: &Dataset, seed: u64) -> BTreeMap<String, f64> {
    let (outcome, _) = conductor_sim::simulate(scenario, dataset, seed, None, &mut |_| {});
    // The run's timings are not metrics (and would make the cache nondeterministic).
    metrics::of_report(&Report::new(scenario, dataset, seed, &outcome, RunInfo::default()))
}

/// One evaluated point: the knob values (the cache key) and the metrics per dataset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// `reference` or `design`.
    pub what: String,
    pub values: Vec<String>,
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
}

/// How a design did against the reference on a set of datasets.
#[derive(Clone, Debug, Serialize)]
pub struct Score {
    pub objective: f64,
    /// Σ relative violations over datasets and constraints (0: feasible).
    pub violation: f64,
}

/// The search's state: the cache of evaluations, the datasets, progress.
pub struct Search<'a> {
    pub tune: &'a Tune,
    datasets: BTreeMap<PathBuf, Dataset>,
    cache: Mutex<BTreeMap<(String, Vec<String>), Evaluation>>,
    log: Mutex<std::fs::File>,
    /// (evaluated now, taken from the file), and a callback after each point.
    pub counts: Mutex<(u64, u64)>,
    progress: &'a (dyn Fn(u64, f64) + Sync),
    best: Mutex<f64>,
    /// Points whose scenario is invalid, and why (not simulated).
    pub invalid: Mutex<BTreeMap<Vec<String>, String>>,
}

fn key_of(values: &[Value]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl<'a> Search<'a> {
    /// Opens (or resumes from) `out/evaluations.jsonl`; `fresh` discards it.
    pub fn open(
        tune: &'a Tune,
        out: &Path,
        fresh: bool,
        progress: &'a (dyn Fn(u64, f64) + Sync),
    ) -> Result<Self, TuneError> {
        std::fs::create_dir_all(out).map_err(|e| other(format!("creating {}: {e}", out.display())))?;
        let path = out.join("evaluations.jsonl");
        let header = serde_json::json!({
            "knobs": tune.knobs.iter().map(|k| &k.key).collect::<Vec<_>>(),
            "scenario": toml::to_string(&tune.scenario).unwrap_or_default(),
            "reference": toml::to_string(&tune.reference).unwrap_or_default(),
            "seed": tune.seed,
        })
        .to_string();
        let mut cache = BTreeMap::new();
        if path.exists() && !fresh {
            let text = std::fs::read_to_string(&path).map_err(|e| other(format!("reading {}: {e}", path.display())))?;
            let mut lines = text.lines();
            if lines.next() != Some(header.as_str()) {
                return Err(other(format!(
                    "{} is from another search (other knobs, scenario, reference or seed): pass --fresh to start over",
                    path.display()
                )));
            }
            for (n, line) in lines.enumerate() {
                // A line cut short by an interrupted run is the only one that may not parse.
                let Ok(e) = serde_json::from_str::<Evaluation>(line) else {
                    eprintln!("{}:{}: an unfinished line, ignored", path.display(), n + 2);
                    continue;
                };
                cache.insert((e.what.clone(), e.values.clone()), e);
            }
        } else {
            std::fs::write(&path, format!("{header}\n"))
                .map_err(|e| other(format!("writing {}: {e}", path.display())))?;
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| other(format!("{}: {e}", path.display())))?;
        let mut datasets = BTreeMap::new();
        for p in tune.train.iter().chain(&tune.holdout) {
            let ds = Dataset::load(p).map_err(|e| other(format!("{}: {e}", p.display())))?;
            datasets.insert(p.clone(), ds);
        }
        Ok(Search {
            tune,
            datasets,
            cache: Mutex::new(cache),
            log: Mutex::new(log),
            counts: Mutex::new((0, 0)),
            progress,
            best: Mutex::new(f64::INFINITY),
            invalid: Mutex::new(BTreeMap::new()),
        })
    }

    /// The metrics of `what` (a design at `x`, or the reference) on `sets`, from the cache or
    /// replayed (datasets in parallel) and appended to it.
    pub fn evaluate(
        &self,
        x: Option<&[f64]>,
        sets: &[PathBuf],
    ) -> Result<BTreeMap<String, BTreeMap<String, f64>>, String> {
        let (what, values) = match x {
            Some(x) => ("design", key_of(&self.tune.values(x))),
            None => ("reference", Vec::new()),
        };
        let k = (what.to_owned(), values.clone());
        let known = self.cache.lock().expect("cache").get(&k).cloned();
        let mut e = known.unwrap_or(Evaluation { what: what.into(), values, metrics: BTreeMap::new() });
        let missing: Vec<&PathBuf> =
            sets.iter().filter(|p| !e.metrics.contains_key(&p.display().to_string())).collect();
        if missing.is_empty() {
            self.counts.lock().expect("counts").1 += u64::from(x.is_some());
        } else {
            let runs: Vec<Result<(String, Metrics), String>> = missing
                .par_iter()
                .map(|p| {
                    let sc = match x {
                        Some(x) => self.tune.scenario_at(x, p)?,
                        None => self.tune.reference_on(p)?,
                    };
                    Ok((p.display().to_string(), replay(&sc, &self.datasets[*p], self.tune.seed)))
                })
                .collect();
            for r in runs {
                let (p, m) = r?;
                e.metrics.insert(p, m);
            }
            let line = serde_json::to_string(&e).map_err(|e| e.to_string())?;
            writeln!(self.log.lock().expect("log"), "{line}").map_err(|e| e.to_string())?;
            self.counts.lock().expect("counts").0 += u64::from(x.is_some());
            self.cache.lock().expect("cache").insert(k, e.clone());
        }
        Ok(sets.iter().map(|p| (p.display().to_string(), e.metrics[&p.display().to_string()].clone())).collect())
    }

    /// The objective (summed) and the constraint violations of a design on `sets`.
    pub fn score(
        &self,
        design: &BTreeMap<String, BTreeMap<String, f64>>,
        reference: &BTreeMap<String, BTreeMap<String, f64>>,
    ) -> Score {
        let mut s = Score { objective: 0.0, violation: 0.0 };
        for (p, m) in design {
            s.objective += m.get(&self.tune.objective).copied().unwrap_or(0.0);
            for c in &self.tune.constraints {
                s.violation += c.violation(m.get(&c.metric).copied().unwrap_or(0.0), &reference[p]);
            }
        }
        s
    }

    /// All design evaluations on the training sets, best first: feasible ones by objective,
    /// then the rest by violation.
    pub fn ranked(&self) -> Vec<(Vec<String>, Score)> {
        let reference = self.evaluate(None, &self.tune.train).unwrap_or_default();
        let cache = self.cache.lock().expect("cache");
        let train: Vec<String> = self.tune.train.iter().map(|p| p.display().to_string()).collect();
        let mut out: Vec<(Vec<String>, Score)> = cache
            .values()
            .filter(|e| e.what == "design" && train.iter().all(|p| e.metrics.contains_key(p)))
            .map(|e| {
                let m: BTreeMap<String, BTreeMap<String, f64>> =
                    train.iter().map(|p| (p.clone(), e.metrics[p].clone())).collect();
                (e.values.clone(), self.score(&m, &reference))
            })
            .collect();
        out.sort_by(|a, b| {
            let fa = a.1.violation == 0.0;
            let fb = b.1.violation == 0.0;
            fb.cmp(&fa)
                .then(if fa {
                    b.1.objective.total_cmp(&a.1.objective)
                } else {
                    a.1.violation.total_cmp(&b.1.violation)
                })
                .then(a.0.cmp(&b.0))
        });
        out
    }
}

/// What the swarm minimises: −objective, plus a penalty far larger than any objective for
/// each unit of constraint violation.
struct Problem<'s, 'a> {
    search: &'s Search<'a>,
    reference: BTreeMap<String, BTreeMap<String, f64>>,
}

const PENALTY: f64 = 1e7;
const INVALID: f64 = 1e15;

impl CostFunction for Problem<'_, '_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let tune = self.search.tune;
        // A point whose knobs make an invalid scenario (say down ≥ up) is the worst of all.
        let cost = if let Err(why) = tune.scenario_at(x, &tune.train[0]) {
            self.search.invalid.lock().expect("invalid").insert(key_of(&tune.values(x)), why);
            INVALID
        } else {
            let m = self.search.evaluate(Some(x), &tune.train).map_err(argmin::core::Error::msg)?;
            let s = self.search.score(&m, &self.reference);
            -s.objective + PENALTY * s.violation
        };
        let mut best = self.search.best.lock().expect("best");
        *best = best.min(cost);
        let (fresh, cached) = *self.search.counts.lock().expect("counts");
        let invalid = self.search.invalid.lock().expect("invalid").len() as u64;
        (self.search.progress)(fresh + cached + invalid, -*best);
        Ok(cost)
    }
}

/// The search's result: the winner and its figures on every dataset beside the reference's.
#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    pub name: String,
    pub file: String,
    pub objective: String,
    pub constraints: Vec<String>,
    pub knobs: Vec<Knob>,
    pub evaluations: u64,
    pub feasible: usize,
    /// Points not simulated because their knobs made an invalid scenario, with the reason.
    pub invalid: Vec<(Vec<String>, String)>,
    /// The winner's knob values (as written into the scenario).
    pub best: Vec<(String, String)>,
    pub best_score: Score,
    pub train: Vec<DatasetRow>,
    pub holdout: Vec<DatasetRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetRow {
    pub dataset: String,
    pub design: BTreeMap<String, f64>,
    pub reference: BTreeMap<String, f64>,
    /// Every constraint holds on this dataset.
    pub holds: bool,
}

/// Runs the swarm (`particles × (iterations + 1)` points), then replays the winner and the
/// reference on the held-out datasets.
pub fn run(search: &Search<'_>) -> Result<(TuneReport, Table), TuneError> {
    let tune = search.tune;
    let reference = search.evaluate(None, &tune.train).map_err(other)?;
    let d = tune.knobs.len();
    let bounds = (vec![0.0; d], vec![1.0; d]);
    let solver = ParticleSwarm::new(bounds, tune.particles)
        .with_rng_generator(rand_chacha::ChaCha8Rng::seed_from_u64(tune.search_seed));
    Executor::new(Problem { search, reference: reference.clone() }, solver)
        .configure(|s| s.max_iters(tune.iterations))
        .run()
        .map_err(other)?;
    let ranked = search.ranked();
    let (values, best_score) = ranked.first().cloned().ok_or_else(|| other("no design was evaluated"))?;
    // The winner's point: knob values back to the unit cube (exact for the values it had).
    let x: Vec<f64> = tune.knobs.iter().zip(&values).map(|(k, v)| k.position(v)).collect();
    let rows = |sets: &[PathBuf]| -> Result<Vec<DatasetRow>, TuneError> {
        let design = search.evaluate(Some(&x), sets).map_err(other)?;
        let reference = search.evaluate(None, sets).map_err(other)?;
        Ok(sets
            .iter()
            .map(|p| {
                let k = p.display().to_string();
                let holds = tune
                    .constraints
                    .iter()
                    .all(|c| c.violation(design[&k].get(&c.metric).copied().unwrap_or(0.0), &reference[&k]) == 0.0);
                DatasetRow { dataset: k.clone(), design: design[&k].clone(), reference: reference[&k].clone(), holds }
            })
            .collect())
    };
    let train = rows(&tune.train)?;
    let holdout = rows(&tune.holdout)?;
    let (fresh, cached) = *search.counts.lock().expect("counts");
    let report = TuneReport {
        name: tune.name.clone(),
        file: tune.file.display().to_string(),
        objective: tune.objective.clone(),
        constraints: tune.constraints.iter().map(|c| c.to_string()).collect(),
        knobs: tune.knobs.clone(),
        evaluations: fresh + cached,
        feasible: ranked.iter().filter(|r| r.1.violation == 0.0).count(),
        invalid: search.invalid.lock().expect("invalid").iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        best: tune.knobs.iter().map(|k| k.key.clone()).zip(values).collect(),
        best_score,
        train,
        holdout,
    };
    Ok((report, tune.table_at(&x).map_err(other)?))
}

/// The report as a document: the winner's knobs, and per dataset its figures beside the
/// reference's (margin, p95 total and queue wait, abandoned starts).
pub fn document(r: &TuneReport) -> Doc {
    let mut doc = Doc::new(format!("Tune: {}", r.name));
    doc.p(format!(
        "{} points evaluated on the training datasets ({} feasible, {} invalid and not run); maximised: Σ {}; constraints on every training dataset: {}.",
        r.evaluations,
        r.feasible,
        r.invalid.len(),
        r.objective,
        r.constraints.join(", ")
    ));
    doc.h(2, "Winner");
    doc.table(
        &["knob", "value", "range"],
        r.best
            .iter()
            .zip(&r.knobs)
            .map(|((k, v), kn)| vec![k.clone(), v.clone(), format!("{} – {}", kn.from, kn.to)])
            .collect(),
    );
    let metrics = ["margin_eur", "start_wait_p95_s", "start_queue_wait_p95_s", "starts_abandoned"];
    for (title, rows) in
        [("Training datasets (searched)", &r.train), ("Held-out datasets (never seen by the search)", &r.holdout)]
    {
        doc.h(2, title);
        let mut table = Vec::new();
        for row in rows {
            let name =
                Path::new(&row.dataset).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let mut cells = vec![name];
            for m in metrics {
                let (a, b) = (row.design.get(m).copied().unwrap_or(0.0), row.reference.get(m).copied().unwrap_or(0.0));
                cells.push(format!("{a:.2} / {b:.2}"));
            }
            cells.push(if row.holds { "yes".into() } else { "no".into() });
            table.push(cells);
        }
        doc.table(
            &[
                "dataset",
                "margin EUR (tuned / reference)",
                "p95 wait s",
                "p95 queue wait s",
                "abandoned",
                "constraints hold",
            ],
            table,
        );
    }
    doc
}
