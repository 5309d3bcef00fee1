//! A study: one scenario file, possibly with `[[variant]]` blocks, a `[sweep]`, an
//! `[objective]` and `[output]` settings, expanded into designs (one scenario each) and
//! validated completely before anything runs.

use crate::metrics::{self, Constraint, Objective};
use conductor_core::Millis;
use conductor_sim::scenario::{Scenario, ScenarioError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{path}: {key}: {message}")]
    Key { path: PathBuf, key: String, message: String },
    /// A design's merged scenario is invalid (line numbers would point into the merged text,
    /// not the file, so they are left out).
    #[error("{path}: variant {variant:?}: {message}")]
    Variant { path: PathBuf, variant: String, message: String },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One point of the study: a named scenario and the overrides that made it.
#[derive(Clone, Debug)]
pub struct Design {
    pub name: String,
    /// (key path, value as written) applied to the base scenario, in order.
    pub overrides: Vec<(String, String)>,
    pub scenario: Scenario,
}

/// Output settings (`[output]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub series_step: Millis,
    pub parquet: bool,
    pub csv: bool,
    pub png: bool,
    pub svg: bool,
    /// Reports, series and plots for every run (not only the sweep's summary).
    pub per_run: bool,
}

impl Default for Output {
    fn default() -> Self {
        Output { series_step: 60_000, parquet: true, csv: false, png: true, svg: true, per_run: true }
    }
}

#[derive(Clone, Debug)]
pub struct Study {
    pub name: String,
    pub file: PathBuf,
    pub designs: Vec<Design>,
    /// Seeds of the replications (the first is the scenario's seed).
    pub seeds: Vec<u64>,
    pub objective: Objective,
    pub constraints: Vec<Constraint>,
    /// The two metrics of the Pareto frontier, both minimised.
    pub pareto: (String, String),
    pub output: Output,
    /// True when the file holds variants or a sweep (a sweep report is written).
    pub is_sweep: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    #[serde(default = "grid")]
    mode: String,
    samples: Option<u32>,
    #[serde(default = "one")]
    replications: u32,
    #[serde(default = "yes")]
    include_base: bool,
    #[serde(default)]
    param: Vec<RawParam>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawParam {
    key: String,
    values: Option<Vec<Value>>,
    from: Option<Value>,
    to: Option<Value>,
    step: Option<Value>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    maximise: Option<String>,
    minimise: Option<String>,
    #[serde(default)]
    constraints: Vec<String>,
    pareto: Option<(String, String)>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    series_step: Option<String>,
    series: Option<Vec<String>>,
    plots: Option<Vec<String>>,
    per_run: Option<bool>,
}

fn grid() -> String {
    "grid".into()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A variant before the sweep: name, the overrides that made it, the merged table.
type Base = (String, Vec<(String, String)>, Table);

const WORKBENCH_KEYS: [&str; 4] = ["variant", "sweep", "objective", "output"];

impl Study {
    pub fn load(path: &Path) -> Result<Study, StudyError> {
        let text = std::fs::read_to_string(path).map_err(|source| StudyError::Io { path: path.into(), source })?;
        Study::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Study, StudyError> {
        // The base scenario first, from the text as written (errors carry its line numbers).
        let base = Scenario::parse(path, text)?;
        let key_err = |key: &str, message: String| StudyError::Key { path: path.into(), key: key.into(), message };
        let mut table: Table = text.parse().map_err(|e: toml::de::Error| key_err(".", e.to_string()))?;
        let take = |table: &mut Table, key: &str| table.remove(key);
        let variants = take(&mut table, "variant");
        let sweep = take(&mut table, "sweep");
        let objective = take(&mut table, "objective");
        let output = take(&mut table, "output");
        debug_assert!(WORKBENCH_KEYS.iter().all(|k| !table.contains_key(*k)));

        let sweep: RawSweep = match sweep {
            None => RawSweep { replications: 1, include_base: true, mode: grid(), ..RawSweep::default() },
            Some(v) => section(path, "sweep", v)?,
        };
        let objective: RawObjective =
            objective.map_or(Ok(RawObjective::default()), |v| section(path, "objective", v))?;
        let output: RawOutput = output.map_or(Ok(RawOutput::default()), |v| section(path, "output", v))?;
        let output = parse_output(&output, &key_err)?;
        let (objective, constraints, pareto) = parse_objective(&objective, &key_err)?;

        // Variants: each a table deep-merged into the base.
        let mut bases: Vec<Base> = Vec::new();
        let raw_variants = match variants {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(key_err("variant", "expected [[variant]] blocks".into())),
        };
        if sweep.include_base || raw_variants.is_empty() {
            bases.push(("base".into(), Vec::new(), table.clone()));
        }
        for (i, v) in raw_variants.into_iter().enumerate() {
            let Value::Table(mut v) = v else {
                return Err(key_err(&format!("variant[{i}]"), "expected a table".into()));
            };
            let name = match v.remove("name") {
                Some(Value::String(s)) if !s.trim().is_empty() => s,
                _ => return Err(key_err(&format!("variant[{i}].name"), "every variant needs a name".into())),
            };
            if bases.iter().any(|(n, _, _)| *n == name) {
                return Err(key_err(&format!("variant[{i}].name"), format!("{name:?} is used twice")));
            }
            let mut merged = table.clone();
            let mut overrides = Vec::new();
            merge(&mut merged, &v, "", &mut overrides);
            bases.push((name, overrides, merged));
        }

        // Sweep points.
        let points = sweep_points(&sweep, base.seed, &key_err)?;
        let replications = sweep.replications;
        if replications == 0 {
            return Err(key_err("sweep.replications", "expected at least 1".into()));
        }
        let is_sweep = bases.len() > 1 || !points.is_empty() || replications > 1;

        let mut designs = Vec::new();
        let points = if points.is_empty() { vec![Vec::new()] } else { points };
        for (name, overrides, merged) in &bases {
            for point in &points {
                let mut t = merged.clone();
                let mut overrides = overrides.clone();
                for (key, value) in point {
                    set(&mut t, key, value.clone()).map_err(|m| key_err(key, m))?;
                    overrides.push((key.clone(), value.to_string()));
                }
                let design_name = if point.is_empty() {
                    name.clone()
                } else {
                    let p: Vec<String> = point.iter().map(|(k, v)| format!("{}={}", short(k), v)).collect();
                    if name == "base" && bases.len() == 1 {
                        p.join(" ")
                    } else {
                        format!("{name} {}", p.join(" "))
                    }
                };
                let scenario = if overrides.is_empty() {
                    base.clone()
                } else {
                    let text = toml::to_string(&t).expect("a TOML table serializes");
                    Scenario::parse(path, &text).map_err(|e| StudyError::Variant {
                        path: path.into(),
                        variant: design_name.clone(),
                        message: match e {
                            ScenarioError::Key { key, message, .. } => {
                                let message = match message.rfind(" (line ") {
                                    Some(i) if message.ends_with(')') => message[..i].to_owned(),
                                    _ => message,
                                };
                                format!("key `{key}`: {message}")
                            }
                            ScenarioError::Syntax { message, .. } => message,
                            other => other.to_string(),
                        },
                    })?
                };
                designs.push(Design { name: design_name, overrides, scenario });
            }
        }
        let seeds = (0..u64::from(replications)).map(|k| base.seed.wrapping_add(k)).collect();
        Ok(Study {
            name: base.name.clone(),
            file: path.into(),
            designs,
            seeds,
            objective,
            constraints,
            pareto,
            output,
            is_sweep,
        })
    }
}

fn section<T: serde::de::DeserializeOwned>(path: &Path, key: &str, v: Value) -> Result<T, StudyError> {
    serde_path_to_error::deserialize(v).map_err(|e| StudyError::Key {
        path: path.into(),
        key: format!("{key}.{}", e.path()).trim_end_matches(".?").trim_end_matches('.').to_string(),
        message: e.into_inner().to_string(),
    })
}

fn short(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// Deep-merges `over` into `into`, recording the leaf keys it set.
fn merge(into: &mut Table, over: &Table, prefix: &str, overrides: &mut Vec<(String, String)>) {
    for (k, v) in over {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (into.get_mut(k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b, &key, overrides),
            _ => {
                if let Value::Table(b) = v {
                    let mut fresh = Table::new();
                    merge(&mut fresh, b, &key, overrides);
                    into.insert(k.clone(), Value::Table(fresh));
                } else {
                    overrides.push((key, v.to_string()));
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Sets `key` (dotted, with `name[i]` for array elements) in `t`, creating tables on the way.
pub fn set(t: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{key:?} is not a key path such as policy.up"));
    }
    let mut table = t;
    for (n, part) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => {
                let i: usize = rest
                    .strip_suffix(']')
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| format!("bad index in {part:?}"))?;
                (name, Some(i))
            }
            None => (*part, None),
        };
        match index {
            None if last => {
                table.insert(name.to_owned(), value);
                return Ok(());
            }
            None => {
                let entry = table.entry(name.to_owned()).or_insert_with(|| Value::Table(Table::new()));
                table = entry.as_table_mut().ok_or_else(|| format!("{name:?} is not a table"))?;
            }
            Some(i) => {
                let array = table
                    .get_mut(name)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| format!("{name:?} is not an array in the scenario"))?;
                let len = array.len();
                let slot = array.get_mut(i).ok_or_else(|| format!("{name}[{i}] does not exist ({len} elements)"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                table = slot.as_table_mut().ok_or_else(|| format!("{name}[{i}] is not a table"))?;
            }
        }
    }
    Ok(())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// The sweep's points: each a list of (key, value). Grid: the cross product in file order;
/// random: `samples` points drawn with a generator seeded by the scenario's seed.
fn sweep_points(
    sweep: &RawSweep,
    seed: u64,
    key_err: &dyn Fn(&str, String) -> StudyError,
) -> Result<Vec<Vec<(String, Value)>>, StudyError> {
    if sweep.param.is_empty() {
        if sweep.samples.is_some() {
            return Err(key_err("sweep.samples", "a sweep needs [[sweep.param]] entries".into()));
        }
        return Ok(Vec::new());
    }
    let random = match sweep.mode.as_str() {
        "grid" => false,
        "random" => true,
        other => return Err(key_err("sweep.mode", format!("expected \"grid\" or \"random\", got {other:?}"))),
    };
    enum Axis {
        Values(Vec<Value>),
        Range { lo: f64, hi: f64, integer: bool },
    }
    let mut axes = Vec::new();
    for (i, p) in sweep.param.iter().enumerate() {
        let key = |f: &str| format!("sweep.param[{i}].{f}");
        if p.key.trim().is_empty() {
            return Err(key_err(&key("key"), "expected a scenario key path such as policy.up".into()));
        }
        let axis = match (&p.values, &p.from, &p.to) {
            (Some(values), None, None) => {
                if values.is_empty() {
                    return Err(key_err(&key("values"), "the list of values is empty".into()));
                }
                Axis::Values(values.clone())
            }
            (None, Some(from), Some(to)) => {
                let (lo, hi) = match (number(from), number(to)) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => return Err(key_err(&key("from"), "`from` and `to` must be numbers".into())),
                };
                if !(lo.is_finite() && hi.is_finite()) || lo > hi {
                    return Err(key_err(&key("to"), format!("the range is empty or inverted: from {lo} to {hi}")));
                }
                let integer = matches!((from, to), (Value::Integer(_), Value::Integer(_)))
                    && p.step.as_ref().is_none_or(|s| matches!(s, Value::Integer(_)));
                if random {
                    if p.step.is_some() {
                        return Err(key_err(&key("step"), "a random sweep draws from the range: no step".into()));
                    }
                    Axis::Range { lo, hi, integer }
                } else {
                    let step = p.step.as_ref().and_then(number).ok_or_else(|| {
                        key_err(&key("step"), "a grid over a range needs a positive `step` (or use `values`)".into())
                    })?;
                    if !(step > 0.0 && step.is_finite()) {
                        return Err(key_err(&key("step"), format!("expected a positive step, got {step}")));
                    }
                    let n = ((hi - lo) / step + 1e-9).floor() as u64 + 1;
                    if n > 10_000 {
                        return Err(key_err(&key("step"), format!("{n} values: too many for one axis")));
                    }
                    let values = (0..n)
                        .map(|k| {
                            let x = lo + k as f64 * step;
                            if integer {
                                Value::Integer(x.round() as i64)
                            } else {
                                Value::Float((x * 1e9).round() / 1e9)
                            }
                        })
                        .collect();
                    Axis::Values(values)
                }
            }
            _ => {
                return Err(key_err(
                    &key("values"),
                    "give either `values = [...]` or `from`, `to` (and `step` in a grid)".into(),
                ))
            }
        };
        axes.push((p.key.clone(), axis));
    }
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    if random {
        let n = sweep.samples.ok_or_else(|| key_err("sweep.samples", "a random sweep needs `samples`".into()))?;
        if n == 0 {
            return Err(key_err("sweep.samples", "expected at least 1".into()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(7);
        points = (0..n)
            .map(|_| {
                axes.iter()
                    .map(|(k, axis)| {
                        let v = match axis {
                            Axis::Values(vs) => vs[rng.random_range(0..vs.len())].clone(),
                            Axis::Range { lo, hi, integer: true } => {
                                Value::Integer(rng.random_range(*lo as i64..=*hi as i64))
                            }
                            Axis::Range { lo, hi, integer: false } => {
                                let x = if hi > lo { rng.random_range(*lo..=*hi) } else { *lo };
                                Value::Float((x * 1e4).round() / 1e4)
                            }
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .collect();
    } else {
        if sweep.samples.is_some() {
            return Err(key_err("sweep.samples", "only a random sweep takes `samples`".into()));
        }
        for (k, axis) in &axes {
            let Axis::Values(values) = axis else { unreachable!("grid axes are lists") };
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut p = p.clone();
                        p.push((k.clone(), v.clone()));
                        p
                    })
                })
                .collect();
        }
        if points.len() > 100_000 {
            return Err(key_err("sweep.param", format!("{} grid points: too many", points.len())));
        }
    }
    Ok(points)
}

fn parse_output(o: &RawOutput, key_err: &dyn Fn(&str, String) -> StudyError) -> Result<Output, StudyError> {
    let mut out = Output::default();
    if let Some(step) = &o.series_step {
        out.series_step =
            conductor_sim::duration::parse_duration(step).map_err(|m| key_err("output.series_step", m))?;
    }
    if let Some(formats) = &o.series {
        out.parquet = false;
        for f in formats {
            match f.as_str() {
                "parquet" => out.parquet = true,
                "csv" => out.csv = true,
                other => return Err(key_err("output.series", format!("expected parquet or csv, got {other:?}"))),
            }
        }
    }
    if let Some(formats) = &o.plots {
        out.png = false;
        out.svg = false;
        for f in formats {
            match f.as_str() {
                "png" => out.png = true,
                "svg" => out.svg = true,
                other => return Err(key_err("output.plots", format!("expected png or svg, got {other:?}"))),
            }
        }
    }
    if let Some(p) = o.per_run {
        out.per_run = p;
    }
    Ok(out)
}

type ObjectiveParts = (Objective, Vec<Constraint>, (String, String));

fn parse_objective(
    o: &RawObjective,
    key_err: &dyn Fn(&str, String) -> StudyError,
) -> Result<ObjectiveParts, StudyError> {
    let objective = match (&o.maximise, &o.minimise) {
        (Some(_), Some(_)) => return Err(key_err("objective.minimise", "give maximise or minimise, not both".into())),
        (Some(m), None) => Objective { metric: known(m, "objective.maximise", key_err)?, maximise: true },
        (None, Some(m)) => Objective { metric: known(m, "objective.minimise", key_err)?, maximise: false },
        (None, None) => Objective { metric: "margin_eur".into(), maximise: true },
    };
    let mut constraints = Vec::new();
    for (i, c) in o.constraints.iter().enumerate() {
        let key = format!("objective.constraints[{i}]");
        let parsed = Constraint::parse(c).map_err(|m| key_err(&key, m))?;
        known(&parsed.metric, &key, key_err)?;
        constraints.push(parsed);
    }
    let pareto = match &o.pareto {
        Some((a, b)) => (known(a, "objective.pareto[0]", key_err)?, known(b, "objective.pareto[1]", key_err)?),
        None => ("infra_cost_eur".into(), "start_wait_p95_s".into()),
    };
    Ok((objective, constraints, pareto))
}

fn known(metric: &str, key: &str, key_err: &dyn Fn(&str, String) -> StudyError) -> Result<String, StudyError> {
    if metrics::NAMES.contains(&metric) {
        Ok(metric.to_owned())
    } else {
        Err(key_err(key, format!("unknown KPI {metric:?} (known: {})", metrics::NAMES.join(", "))))
    }
}
