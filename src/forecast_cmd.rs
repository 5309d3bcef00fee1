//! `conductor forecast`: the nightly job (forecast document) and `conductor forecast
//! backtest` (metrics table per model, optional CSV dump of every forecast).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use conductor_core::Millis;
use conductor_forecast::aggregate::{self, STEP};
use conductor_forecast::backtest::Plan;
use conductor_forecast::document::{ForecastDocument, SCHEMA};
use conductor_forecast::duration::{format_duration, parse_duration};
use conductor_forecast::model::{Covariates, TrendKind, DEFAULT_TREND, DEFAULT_WINDOWS};
use conductor_forecast::pipeline::{self, Choice};
use conductor_forecast::timefmt::{format_rfc3339, parse_rfc3339};
use conductor_forecast::{ModelKind, ModelSpec, Series};
use conductor_sim::dataset::Dataset;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ForecastArgs {
    #[command(subcommand)]
    action: Option<ForecastAction>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum ForecastAction {
    /// Rolling-origin backtest of models on one series; prints a metrics table per model.
    Backtest(Box<BacktestArgs>),
    /// Backtest of the wake predictor (which servers start in the next hours) on a
    /// dataset: Brier score beside the base rate's, precision and recall of the top
    /// `--budget` servers at each origin. Prints JSON.
    Wake(WakeArgs),
}

#[derive(Args)]
struct WakeArgs {
    /// A demand dataset directory.
    #[arg(long)]
    dataset: PathBuf,
    /// The window each prediction covers.
    #[arg(long, default_value = "6h")]
    horizon: String,
    /// Past weeks looked at (the first origin is this long after the dataset's start).
    #[arg(long, default_value_t = 4)]
    weeks: u32,
    /// A week this many weeks back weighs half.
    #[arg(long, default_value_t = 3.0)]
    half_life_weeks: f64,
    /// Shrinkage towards each server's base rate, in weeks of evidence.
    #[arg(long, default_value_t = 4.0)]
    prior_weeks: f64,
    /// Time between origins.
    #[arg(long, default_value = "6h")]
    every: String,
    /// Servers a staging policy would copy at each origin.
    #[arg(long, default_value_t = 20)]
    budget: usize,
}

/// `conductor forecast wake`: the predictor scored on the dataset's own starts.
fn wake(a: WakeArgs) -> Result<()> {
    let ds = Dataset::load(&a.dataset).with_context(|| format!("loading dataset {}", a.dataset.display()))?;
    let horizon = parse_duration(&a.horizon).map_err(|e| anyhow::anyhow!("--horizon: {e}"))?;
    let every = parse_duration(&a.every).map_err(|e| anyhow::anyhow!("--every: {e}"))?;
    if horizon <= 0 || every <= 0 || a.weeks == 0 {
        bail!("--horizon, --every and --weeks must be positive");
    }
    if !(a.half_life_weeks > 0.0 && a.prior_weeks >= 0.0) {
        bail!("--half-life-weeks must be positive and --prior-weeks not negative");
    }
    let model = conductor_forecast::wake::WakeModel {
        horizon,
        weeks: a.weeks,
        half_life_weeks: a.half_life_weeks,
        prior_weeks: a.prior_weeks,
    };
    // A server's starts: the first session of each wanted interval (what wakes it).
    let mut starts = vec![Vec::new(); ds.servers.len()];
    for iv in conductor_sim::dataset::wanted_intervals(&ds, 5 * conductor_core::time::MINUTE) {
        starts[iv.server as usize].push(iv.start);
    }
    for s in &mut starts {
        s.sort_unstable();
    }
    let from = ds.meta.start + i64::from(a.weeks) * 7 * conductor_core::time::DAY;
    if from + horizon > ds.meta.end {
        bail!("{}: shorter than --weeks {} plus --horizon {}", a.dataset.display(), a.weeks, a.horizon);
    }
    let r = model.backtest(&starts, ds.meta.timezone, (from, ds.meta.end), every, a.budget);
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(())
}

/// Where the history comes from.
#[derive(Args, Clone)]
struct Source {
    /// A controller config: the history is its PostgreSQL event log, the model its policy's
    /// `source`, and the forecast is stored there for the running controller to use — what
    /// the daemon's nightly job does (`[controller.forecast]`), for a cron job.
    #[arg(long, conflicts_with_all = ["dataset", "series"])]
    from_db: Option<PathBuf>,
    /// A demand dataset directory (aggregated to 15-minute series).
    #[arg(long, conflicts_with = "series")]
    dataset: Option<PathBuf>,
    /// A regular series as CSV with a header and rows `timestamp,value` (RFC 3339).
    #[arg(long)]
    series: Option<PathBuf>,
    /// Pay-per-use idle timeout used to build wanted intervals from a dataset.
    #[arg(long, default_value = "5m")]
    idle_timeout: String,
    /// Sleep window (servers asleep longer are archived) for the sleeping-disk series.
    #[arg(long, default_value = "48h")]
    sleep_window: String,
    /// Known events (e.g. game updates) as CSV `name,start,end` (RFC 3339); Prophet uses
    /// them as holidays.
    #[arg(long)]
    events: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    source: Source,
    /// The forecast is made at this instant (RFC 3339): only history before it is used, the
    /// first step is the first one at or after it. Default: the end of the history.
    #[arg(long)]
    at: Option<String>,
    /// Dataset series to forecast, comma-separated [default: RAM per tier and total, CPU
    /// cores, sleeping disk, players].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// `auto` (best backtest MASE per series) or one of mstl, snaive-week, snaive-day.
    #[arg(long, default_value = "auto")]
    model: String,
    /// Fit on ln(1 + y): for positive series with multiplicative seasons.
    #[arg(long)]
    log: bool,
    #[arg(long, default_value = "48h")]
    horizon: String,
    /// History the models are fitted on (the most recent part).
    #[arg(long, default_value = "8w")]
    window: String,
    /// Where to write the forecast document (JSON).
    #[arg(long, default_value = "forecast.json")]
    out: PathBuf,
    /// Daily origins of the short backtest whose scores go into the document (and that
    /// `auto` chooses by); 0 skips it.
    #[arg(long, default_value_t = 3)]
    backtest_origins: usize,
    /// MSTL seasonal smoothing windows in cycles: DAILY,WEEKLY (odd, ≥ 7).
    #[arg(long, value_parser = parse_windows)]
    mstl_windows: Option<(usize, usize)>,
    /// MSTL trend freedom: auto or damped.
    #[arg(long, value_parser = TrendKind::parse)]
    mstl_trend: Option<TrendKind>,
}

fn parse_windows(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let n = |p: &str| p.trim().parse::<usize>().ok().filter(|&w| w >= 7 && w % 2 == 1);
    match parts.as_slice() {
        [d, w] => n(d).zip(n(w)).ok_or_else(|| format!("expected two odd numbers ≥ 7 such as 61,31, got {s:?}")),
        _ => Err(format!("expected DAILY,WEEKLY such as 61,31, got {s:?}")),
    }
}

#[derive(Args)]
struct BacktestArgs {
    #[command(flatten)]
    source: Source,
    /// With --dataset: which series [default: ram_gib.total].
    #[arg(long, default_value = "ram_gib.total")]
    name: String,
    #[arg(long, default_value_t = 14)]
    origins: usize,
    #[arg(long, default_value = "24h")]
    every: String,
    #[arg(long, default_value = "8w")]
    window: String,
    #[arg(long, default_value = "48h")]
    horizon: String,
    /// Models to compare, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    #[arg(long)]
    log: bool,
    /// Write every forecast as CSV: model,origin,timestamp,mean,lo80,hi80,lo95,hi95.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// MSTL seasonal smoothing windows in cycles: DAILY,WEEKLY (odd, ≥ 7).
    #[arg(long, value_parser = parse_windows)]
    mstl_windows: Option<(usize, usize)>,
    /// MSTL trend freedom: auto or damped.
    #[arg(long, value_parser = TrendKind::parse)]
    mstl_trend: Option<TrendKind>,
}

const DEFAULT_SERIES: [&str; 7] =
    ["ram_gib.small", "ram_gib.medium", "ram_gib.large", "ram_gib.total", "cpu_cores", "sleeping_disk_gb", "players"];

/// `--from-db`: the controller's nightly job once, now (or `--at`).
fn from_db(config: &std::path::Path, at: Option<Millis>) -> Result<()> {
    let cfg = conductor_controller::config::ControllerConfig::load(config)?;
    let setup = cfg.forecast.clone().with_context(|| {
        format!(
            "{}: no policy reads a forecast ([policy.predictive] or [policy.spare_pool] from_forecast)",
            config.display()
        )
    })?;
    let now = at.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let made = runtime.block_on(async {
        let store = conductor_controller::PgStore::connect(&cfg.controller.database).await?;
        conductor_controller::forecasting::run(&store, &setup, now).await.map_err(anyhow::Error::from)
    })?;
    let f = &made.demand;
    println!(
        "forecast {} from {} sessions of {} servers: {} steps from {}, peak {} MiB (p90); stored for the controller",
        f.source,
        made.sessions,
        made.servers,
        f.mean.len(),
        made.document.origin,
        f.p90.iter().max().copied().unwrap_or(0)
    );
    Ok(())
}

pub fn run(args: ForecastArgs) -> Result<()> {
    match args.action {
        Some(ForecastAction::Backtest(b)) => backtest(*b),
        Some(ForecastAction::Wake(w)) => wake(w),
        None => forecast(args.run),
    }
}

fn steps(text: &str, step: Millis, what: &str) -> Result<usize> {
    let ms = parse_duration(text).map_err(|e| anyhow::anyhow!("--{what}: {e}"))?;
    if ms % step != 0 {
        bail!("--{what} {text} is not a whole number of steps of {}", format_duration(step));
    }
    Ok((ms / step) as usize)
}

/// Series with their units, the end of the history, and the covariates.
type Loaded = (Vec<(Series, &'static str)>, Millis, Covariates);

/// The history as named series with units, the instant it ends, and what models may know
/// beyond it (time zone, sign-ups, events).
fn load(source: &Source, until: Option<Millis>) -> Result<Loaded> {
    let events = match &source.events {
        Some(path) => read_events(path)?,
        None => Vec::new(),
    };
    match (&source.dataset, &source.series) {
        (Some(dir), None) => {
            let ds = Dataset::load(dir).with_context(|| format!("loading dataset {}", dir.display()))?;
            let idle = parse_duration(&source.idle_timeout).map_err(|e| anyhow::anyhow!("--idle-timeout: {e}"))?;
            let sleep = parse_duration(&source.sleep_window).map_err(|e| anyhow::anyhow!("--sleep-window: {e}"))?;
            let from = ds.meta.start;
            let end = until.unwrap_or(ds.meta.end).min(ds.meta.end);
            // Whole steps of the grid anchored at the dataset start.
            let end = from + (end - from).max(0) / STEP * STEP;
            if end <= from {
                bail!("--at {} is before the dataset starts ({})", format_rfc3339(end), format_rfc3339(from));
            }
            let history = ds.history(idle, sleep, end);
            let series = aggregate::aggregate(&history, from, end, STEP);
            let signups = series.iter().find(|s| s.name == "signups_per_hour").cloned();
            let cov = Covariates { timezone: ds.meta.timezone, events, signups };
            let named = series
                .into_iter()
                .map(|s| {
                    let unit = aggregate::unit_of(&s.name);
                    (s, unit)
                })
                .collect();
            Ok((named, end, cov))
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let name = file.file_stem().map_or("series".into(), |s| s.to_string_lossy().into_owned());
            let mut s = Series::parse_csv(&file.display().to_string(), &name, &text)?;
            if let Some(t) = until {
                s = s.slice(s.start, t.min(s.end()));
            }
            let end = s.end();
            Ok((vec![(s, "")], end, Covariates { events, ..Covariates::default() }))
        }
        _ => bail!("give the history with --dataset DIR or --series FILE"),
    }
}

/// Reads `name,start,end` rows (header optional).
fn read_events(path: &std::path::Path) -> Result<Vec<(String, Millis, Millis)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.trim().is_empty() || (i == 0 && fields.first() == Some(&"name")) {
            continue;
        }
        let at = |what: &str, e: String| anyhow::anyhow!("{}:{}: {what}: {e}", path.display(), i + 1);
        let [name, start, end] = fields.as_slice() else {
            return Err(at("row", format!("expected `name,start,end`, got {line:?}")));
        };
        let start = parse_rfc3339(start).map_err(|e| at("start", e))?;
        let end = parse_rfc3339(end).map_err(|e| at("end", e))?;
        if end <= start {
            return Err(at("end", "must be after start".into()));
        }
        events.push((name.to_string(), start, end));
    }
    Ok(events)
}

fn clock() -> impl FnMut() -> f64 {
    let t0 = Instant::now();
    move || t0.elapsed().as_secs_f64()
}

fn forecast(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let at = args.at.as_deref().map(parse_rfc3339).transpose().map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    if let Some(config) = &args.source.from_db {
        return from_db(config, at);
    }
    let (all, end, cov) = load(&args.source, at)?;
    let step = all.first().map(|(s, _)| s.step).context("no series")?;
    let horizon = steps(&args.horizon, step, "horizon")?;
    let window = steps(&args.window, step, "window")?;
    let at = at.unwrap_or(end);
    let first = all[0].0.start;
    // First step at or after `at`, on the history's grid.
    let origin = first + (at - first + step - 1).div_euclid(step) * step;
    let tune = |k: ModelKind| ModelSpec {
        windows: args.mstl_windows.unwrap_or(DEFAULT_WINDOWS),
        trend: args.mstl_trend.unwrap_or(DEFAULT_TREND),
        ..ModelSpec::new(k).log(args.log)
    };
    let choice = match args.model.as_str() {
        "auto" => Choice::Auto(ModelKind::ALL.iter().map(|&k| tune(k)).collect()),
        m => Choice::Fixed(tune(ModelKind::parse(m).map_err(anyhow::Error::msg)?)),
    };
    let wanted: Vec<String> = if !args.only.is_empty() {
        args.only.clone()
    } else if args.source.dataset.is_some() {
        DEFAULT_SERIES.iter().map(|s| s.to_string()).collect()
    } else {
        all.iter().map(|(s, _)| s.name.clone()).collect()
    };
    for w in &wanted {
        if !all.iter().any(|(s, _)| &s.name == w) {
            bail!(
                "--only: unknown series {w:?} (known: {})",
                all.iter().map(|(s, _)| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut doc = ForecastDocument {
        schema: SCHEMA.into(),
        made_at: format_rfc3339(at),
        origin: format_rfc3339(origin),
        step_s: step / 1000,
        horizon_steps: horizon,
        series: Vec::new(),
    };
    let mut tick = clock();
    for (series, unit) in all.iter().filter(|(s, _)| wanted.contains(&s.name)) {
        let (f, _) =
            pipeline::forecast(series, unit, &choice, origin, horizon, window, args.backtest_origins, &cov, &mut tick)?;
        doc.series.push(f);
    }
    super::write_file(&args.out, &doc.to_json())?;
    let mut models: Vec<String> = doc.series.iter().map(|s| s.model.clone()).collect();
    models.sort();
    models.dedup_by(|a, b| a == b);
    let gap =
        if origin > end { format!(", history ends {} earlier", format_duration(origin - end)) } else { String::new() };
    let untested = doc.series.iter().filter(|s| s.backtest.is_none()).count();
    let gap = match untested {
        0 => gap,
        _ if args.backtest_origins == 0 => format!("{gap}; backtest skipped"),
        n => format!("{gap}; {n} series without backtest: history shorter than 2 weeks + horizon"),
    };
    println!(
        "forecast: {} series × {} steps of {} from {} (models: {}{gap}) → {} in {:.2} s",
        doc.series.len(),
        horizon,
        format_duration(step),
        doc.origin,
        models.join(", "),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn backtest(args: BacktestArgs) -> Result<()> {
    let (all, _, cov) = load(&args.source, None)?;
    let series = if args.source.dataset.is_some() {
        all.into_iter().find(|(s, _)| s.name == args.name).map(|(s, _)| s).with_context(|| {
            format!("--name {:?}: unknown series (known: {})", args.name, aggregate::SERIES.map(|(n, _)| n).join(", "))
        })?
    } else {
        all.into_iter().next().context("no series")?.0
    };
    let plan = Plan {
        origins: args.origins,
        every: steps(&args.every, series.step, "every")?,
        window: steps(&args.window, series.step, "window")?,
        horizon: steps(&args.horizon, series.step, "horizon")?,
    };
    let kinds: Vec<ModelKind> = if args.models.is_empty() {
        ModelKind::ALL.to_vec()
    } else {
        args.models.iter().map(|m| ModelKind::parse(m)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?
    };
    let mut tick = clock();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<14} {:>7} {:>7} {:>8} {:>7} {:>7} {:>9} {:>10}",
        "model", "origins", "MASE", "sMAPE%", "cov80", "cov95", "pinball", "fit+pred s"
    );
    let mut dump = String::from("model,origin,timestamp,mean,lo80,hi80,lo95,hi95\n");
    for kind in kinds {
        let spec = ModelSpec {
            windows: args.mstl_windows.unwrap_or(DEFAULT_WINDOWS),
            trend: args.mstl_trend.unwrap_or(DEFAULT_TREND),
            ..ModelSpec::new(kind).log(args.log)
        };
        let run = pipeline::run_backtest(&series, spec, plan, &cov, &mut tick)?;
        let s = run.scores;
        let _ = writeln!(
            table,
            "{:<14} {:>7} {:>7.3} {:>8.2} {:>7.3} {:>7.3} {:>9.4} {:>10.3}",
            spec.label(),
            plan.origins,
            s.mase,
            s.smape,
            s.coverage80,
            s.coverage95,
            s.pinball,
            run.seconds_per_origin
        );
        for (origin, p, _, _) in &run.origins {
            for i in 0..p.len() {
                let _ = writeln!(
                    dump,
                    "{},{},{},{},{},{},{},{}",
                    spec.label(),
                    format_rfc3339(*origin),
                    format_rfc3339(origin + series.step * i as Millis),
                    p.mean[i],
                    p.lo80[i],
                    p.hi80[i],
                    p.lo95[i],
                    p.hi95[i]
                );
            }
        }
    }
    println!(
        "backtest of {} ({} steps of {}): {} origins every {}, window {}, horizon {}",
        series.name,
        series.len(),
        format_duration(series.step),
        plan.origins,
        args.every,
        args.window,
        args.horizon
    );
    print!("{table}");
    if let Some(path) = &args.dump {
        super::write_file(path, &dump)?;
        println!("forecasts written to {}", path.display());
    }
    Ok(())
}
