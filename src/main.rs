//! `conductor`: the one command line of the project. It parses arguments, does the IO and
//! hands over to the crates; it holds no domain logic.

mod forecast_cmd;
mod progress;
mod tune_cmd;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use conductor_sim::dataset::Dataset;
use conductor_sim::generate::{self, GenConfig};
use conductor_sim::report::{Report, RunInfo};
use conductor_workbench::study::Study;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "conductor",
    version,
    about = "Pay-per-play Minecraft hosting: the twin, the forecaster and the controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a dataset against a scenario's fleet and policy; print KPIs, write a JSON report.
    Sim(SimArgs),
    /// Create and check demand datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Forecast 48 h of demand per tier (the nightly job), or backtest models.
    Forecast(Box<forecast_cmd::ForecastArgs>),
    /// Search a scenario's knobs over training datasets (particle swarm), constrained against
    /// the reference on the same data; report the winner on held-out datasets. Resumable.
    Tune(tune_cmd::TuneArgs),
    /// Run the live controller: PostgreSQL, Docker nodes, Hetzner Cloud, the HTTP API.
    Serve {
        /// The controller's configuration (see controller.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a gateway: the players' one Minecraft address (routes by host name, answers status
    /// pings without waking, wakes pay-per-use servers on join). Reads `[gateway]`.
    Gateway {
        /// A file with a `[gateway]` section (the controller's own, or one of its own).
        #[arg(long)]
        config: PathBuf,
    },
    /// Write a controller's event log as a demand dataset (SPEC §4) for the twin.
    Export(ExportArgs),
    /// The price calculator: what a plan costs per minute and per month of play, and the
    /// saving against a fixed monthly price.
    Price(PriceArgs),
    /// The fleet's certificate authority: make its key, print its certificate.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Fleet nodes: print the cloud-init that prepares a VM snapshot.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Serve a local fake of the Hetzner Cloud API (for local runs and tests).
    FakeHetzner {
        #[arg(long, default_value_t = 8081)]
        port: u16,
        /// Answer every N-th request with 503 (a flaky cloud; 0: never).
        #[arg(long, default_value_t = 0)]
        fail_every: u32,
        /// Delay every N-th request by --slow-ms (0: never).
        #[arg(long, default_value_t = 0)]
        slow_every: u32,
        #[arg(long, default_value_t = 2000)]
        slow_ms: u64,
    },
}

#[derive(Args)]
struct SimArgs {
    /// Scenario file (TOML); with [[variant]] blocks or a [sweep], many runs in parallel.
    #[arg(required_unless_present = "compare")]
    scenario: Option<PathBuf>,
    /// Use this dataset directory instead of the scenario's (every variant).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Use this seed instead of the scenario's (replications count up from it).
    #[arg(long)]
    seed: Option<u64>,
    /// Single run without --out-dir: where to write the JSON report
    /// [default: runs/<scenario name>-seed<seed>.json].
    #[arg(long, conflicts_with = "out_dir")]
    out: Option<PathBuf>,
    /// Write reports (JSON, Markdown, HTML), time series and plots into this directory
    /// [default for sweeps: runs/<scenario name>].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also write each run's time series as CSV (besides Parquet).
    #[arg(long)]
    series_csv: bool,
    /// Runs in parallel [default: one per core].
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Compare two run reports (report.json files or run directories) side by side.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["scenario", "dataset", "seed", "out"])]
    compare: Option<Vec<PathBuf>>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// The controller's API, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    from: String,
    /// Start of the window: RFC 3339, or a duration before --until (e.g. 7d).
    #[arg(long)]
    since: String,
    /// End of the window: RFC 3339 [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Dataset directory to write (created).
    #[arg(long)]
    out: PathBuf,
    /// Admin token [default: the CONDUCTOR_TOKEN environment variable].
    #[arg(long, env = "CONDUCTOR_TOKEN", hide_env_values = true)]
    token: String,
    /// The dataset's IANA time zone (the twin's nightly forecast runs at 03:00 in it).
    #[arg(long, default_value = "Europe/Berlin")]
    timezone: String,
    /// The dataset's name [default: the output directory's name].
    #[arg(long)]
    name: Option<String>,
    /// Replace a dataset already in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct PriceArgs {
    /// Plan RAM in MiB.
    #[arg(long)]
    ram_mib: u32,
    /// World and mods on disk, GB.
    #[arg(long, default_value_t = 0.0)]
    disk_gb: f64,
    /// Play time per week, hours (0–168).
    #[arg(long)]
    hours_per_week: f64,
    /// A competitor's monthly price for the same plan, EUR.
    #[arg(long)]
    competitor_eur: Option<String>,
    /// Take the prices from this scenario's [prices] [default: SPEC §8 prices].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Print the JSON the API's /v1/price returns.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Write a new CA key (PKCS#8 PEM, mode 0600) for `[controller.pki] ca_key`.
    Init {
        /// Where to write it (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the CA certificate of the controller's `[controller.pki]` (derived from its key).
    Ca {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Print the cloud-init that prepares a VM to be snapshotted (engine and the configured
    /// images, no certificates); boot a VM with it, snapshot it once it is off, then set
    /// `image = "snapshot:<id>"` in `[controller.cloud]`.
    Image {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Generate a synthetic dataset with realistic demand (seeded, reproducible).
    Generate(GenerateArgs),
    /// Validate a dataset and print what it holds.
    Check {
        /// Dataset directory.
        dir: PathBuf,
    },
    /// Write a copy of a dataset with `[[transform]]` blocks applied (growth, a spike, a
    /// shift, …; as in a scenario, seeded): a what-if as data of its own.
    Transform {
        /// Dataset directory.
        dir: PathBuf,
        /// A TOML file of `[[transform]]` blocks.
        #[arg(long)]
        transforms: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct GenerateArgs {
    /// Number of customer servers.
    #[arg(long, default_value_t = 1000)]
    servers: usize,
    /// Length of the window in days.
    #[arg(long, default_value_t = 14)]
    days: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// First local day of the window (YYYY-MM-DD).
    #[arg(long, default_value = "2025-10-06")]
    start: String,
    /// IANA time zone of the calendar.
    #[arg(long, default_value = "Europe/Berlin")]
    timezone: String,
    /// Multiplier on every server's session rate.
    #[arg(long, default_value_t = 1.0)]
    activity: f64,
    /// Share of servers (0 to 1) with a weekly routine (friend groups that play on fixed
    /// evenings, with lapses); 0 is irregular play only.
    #[arg(long, default_value_t = 0.0)]
    habits: f64,
    /// Output directory (created).
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim(args),
        Command::Dataset(DatasetCommand::Generate(args)) => dataset_generate(args),
        Command::Dataset(DatasetCommand::Transform { dir, transforms, seed, out }) => {
            dataset_transform(&dir, &transforms, seed, &out)
        }
        Command::Dataset(DatasetCommand::Check { dir }) => dataset_check(&dir),
        Command::Forecast(args) => forecast_cmd::run(*args),
        Command::Tune(args) => tune_cmd::run(args),
        Command::Serve { config } => serve(&config),
        Command::Gateway { config } => gateway(&config),
        Command::Export(args) => export(args),
        Command::Price(args) => price(args),
        Command::Pki(PkiCommand::Init { out }) => pki_init(&out),
        Command::Pki(PkiCommand::Ca { config }) => pki_ca(&config),
        Command::Node(NodeCommand::Image { config }) => node_image(&config),
        Command::FakeHetzner { port, fail_every, slow_every, slow_ms } => {
            let b =
                conductor_controller::fake_hetzner::Behaviour { fail_every, slow_every, slow_ms, ..Default::default() };
            fake_hetzner(port, b)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn pki_init(out: &Path) -> Result<()> {
    use std::io::Write;
    let key = conductor_controller::pki::Pki::generate_key()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| format!("creating {}", out.display()))?;
    file.write_all(key.expose().as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote the fleet CA key to {} (keep it secret; back it up)", out.display());
    Ok(())
}

fn pki_ca(config: &Path) -> Result<()> {
    let cfg = conductor_controller::config::ControllerConfig::load(config)?;
    let pki = cfg.pki.ok_or_else(|| anyhow::anyhow!("{}: no [controller.pki] section", config.display()))?;
    print!("{}", pki.ca_pem());
    Ok(())
}

fn node_image(config: &Path) -> Result<()> {
    let cfg = conductor_controller::config::ControllerConfig::load(config)?;
    let c = &cfg.controller;
    let images = cfg.images();
    let vars = conductor_controller::bootstrap::Vars {
        ca_pem: String::new(),
        cert_pem: String::new(),
        key_pem: conductor_controller::pki::Secret::new(String::new()),
        docker_port: c.cloud.as_ref().map_or(2376, |cc| cc.docker_port),
        controller_cidrs: Vec::new(),
        gateway_cidrs: Vec::new(),
        images,
    };
    let text =
        conductor_controller::bootstrap::render("prepare.yaml", conductor_controller::bootstrap::PREPARE, &vars)?;
    print!("{}", text.expose());
    Ok(())
}

fn sim(args: SimArgs) -> Result<()> {
    if let Some(pair) = &args.compare {
        return compare(&pair[0], &pair[1], args.out_dir.as_deref());
    }
    let file = args.scenario.as_deref().expect("clap requires a scenario without --compare");
    let mut study = Study::load(file)?;
    for d in &mut study.designs {
        if let Some(dir) = &args.dataset {
            d.scenario.dataset = dir.clone();
        }
    }
    if let Some(seed) = args.seed {
        let n = study.seeds.len() as u64;
        study.seeds = (0..n).map(|k| seed.wrapping_add(k)).collect();
    }
    if args.series_csv {
        study.output.csv = true;
    }
    if study.is_sweep || args.out_dir.is_some() {
        return sim_study(&study, &args);
    }
    let wall = Instant::now();
    let scenario = study.designs.swap_remove(0).scenario;
    let seed = study.seeds[0];
    let loading = Instant::now();
    let dataset =
        Dataset::load(&scenario.dataset).with_context(|| format!("loading dataset {}", scenario.dataset.display()))?;
    let load_s = loading.elapsed().as_secs_f64();
    scenario.check_against(&dataset)?;

    let mut bar = progress::delayed_bar(args.quiet);
    let replaying = Instant::now();
    let (outcome, effects) =
        conductor_sim::simulate(&scenario, &dataset, seed, None, &mut |fraction| bar.update(fraction));
    bar.finish();
    let replay_s = replaying.elapsed().as_secs_f64();

    let run = RunInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        wall_s: wall.elapsed().as_secs_f64(),
        load_s,
        replay_s,
        events_per_s: outcome.events as f64 / replay_s.max(1e-9),
        peak_rss_mib: peak_rss_mib(),
    };
    let mut report = Report::new(&scenario, &dataset, seed, &outcome, run);
    report.transforms = effects;
    let out =
        args.out.unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-seed{seed}.json", sanitize(&scenario.name))));
    write_file(&out, &report.to_json())?;
    if !args.quiet {
        print!("{}", report.summary());
        println!("report    {}", out.display());
    }
    Ok(())
}

/// Variants and sweeps (or one run with --out-dir): validated completely, then run in
/// parallel with one progress bar.
fn sim_study(study: &Study, args: &SimArgs) -> Result<()> {
    let wall = Instant::now();
    let out = args.out_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(sanitize(&study.name)));
    // Everything that can fail before the runs fails here.
    conductor_workbench::prepare_output(&out)?;
    let datasets = conductor_workbench::load_datasets(study)?;
    let total = (study.designs.len() * study.seeds.len()) as u64;
    let bar = progress::counting_bar(args.quiet, total, "runs [{bar:40}] {pos}/{len}, {elapsed} elapsed, eta {eta}");
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.jobs {
        if n == 0 {
            bail!("--jobs must be at least 1");
        }
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting the worker threads")?;
    let done = || bar.inc(1);
    let outcome = pool.install(|| conductor_workbench::run_study(study, &datasets, &out, &done))?;
    bar.finish_and_clear();
    if args.quiet {
        return Ok(());
    }
    match &outcome.sweep {
        Some(sweep) => {
            println!(
                "{}: {} designs × {} seed(s) = {} runs in {:.1} s",
                study.name,
                study.designs.len(),
                study.seeds.len(),
                total,
                wall.elapsed().as_secs_f64()
            );
            let objective = &sweep.objective.metric;
            let mut best: Vec<_> = sweep.designs.iter().collect();
            best.sort_by_key(|d| d.standing.rank);
            for d in best.iter().take(5) {
                println!(
                    "  #{:<3} {:<40} {objective} {:>10.2}  p95 {:>6.1} s  {}{}",
                    d.standing.rank,
                    d.name,
                    d.mean[objective],
                    d.mean["start_wait_p95_s"],
                    if d.standing.feasible { "feasible" } else { "breaks a constraint" },
                    if d.standing.pareto { ", Pareto" } else { "" }
                );
            }
        }
        None => {
            if let Some(r) = outcome.runs.first() {
                print!("{}", r.report.summary());
            }
        }
    }
    for f in &outcome.files {
        println!("wrote     {}", f.display());
    }
    Ok(())
}

fn compare(a: &Path, b: &Path, out: Option<&Path>) -> Result<()> {
    let (doc, lines) = conductor_workbench::compare(a, b)?;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), doc.markdown().as_bytes());
    if let Some(out) = out {
        conductor_workbench::prepare_output(out)?;
        let formats = conductor_workbench::plots::Formats { png: true, svg: true };
        conductor_workbench::write_compare(out, doc, lines, formats)?;
        println!("wrote     {}", out.join("compare.html").display());
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn serve(config: &Path) -> Result<()> {
    let cfg = conductor_controller::config::ControllerConfig::load(config)?;
    runtime()?.block_on(async {
        tokio::select! {
            r = conductor_controller::serve::serve(cfg) => r.map_err(|e| anyhow::anyhow!("{e}")),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("conductor: stopping (interrupted)");
                Ok(())
            }
        }
    })
}

fn gateway(config: &Path) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = conductor_gateway::config::GatewayConfig::load(config, &env)?;
    runtime()?.block_on(async {
        tokio::select! {
            r = conductor_gateway::run(cfg) => r.map_err(|e| anyhow::anyhow!("{e}")),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("gateway: stopping (interrupted)");
                Ok(())
            }
        }
    })
}

fn export(args: ExportArgs) -> Result<()> {
    use conductor_sim::timefmt::{format_rfc3339, parse_rfc3339};
    let until = match &args.until {
        Some(t) => parse_rfc3339(t).map_err(|e| anyhow::anyhow!("--until {t:?}: {e}"))?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let since = match parse_rfc3339(&args.since) {
        Ok(t) => t,
        Err(_) => {
            let back = conductor_sim::duration::parse_duration(&args.since).map_err(|e| {
                anyhow::anyhow!("--since {:?}: expected RFC 3339 or a duration such as 7d ({e})", args.since)
            })?;
            until - back
        }
    };
    if args.timezone.parse::<chrono_tz::Tz>().is_err() {
        bail!("--timezone {:?}: unknown IANA time zone", args.timezone);
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.out.file_name().map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned()));
    let (servers, events) = runtime()?
        .block_on(conductor_controller::export::fetch(&args.from, &args.token))
        .context("reading the controller's API")?;
    let meta = conductor_controller::export::MetaInfo {
        name,
        timezone: args.timezone.clone(),
        source: format!(
            "conductor export --from {} (event log up to seq {})",
            args.from,
            events.last().map_or(0, |e| e.seq)
        ),
    };
    let export = conductor_controller::export::build(&servers, &events, since, until, &meta)?;
    export.write(&args.out, args.force)?;
    // What was written must read back as a valid dataset: nothing lost on the way.
    let dataset =
        Dataset::load(&args.out).map_err(|e| anyhow::anyhow!("{e}")).context("checking the written dataset")?;
    println!(
        "{}: {} servers, {} sessions, {} → {} ({} sessions still open at the end, {} lengthened to 1 s)",
        args.out.display(),
        dataset.servers.len(),
        dataset.sessions.len(),
        format_rfc3339(since),
        format_rfc3339(until),
        export.still_open,
        export.lengthened
    );
    Ok(())
}

fn price(args: PriceArgs) -> Result<()> {
    let prices = match &args.scenario {
        Some(path) => conductor_sim::scenario::Scenario::load(path).map_err(|e| anyhow::anyhow!("{e}"))?.prices,
        None => conductor_core::Prices::default(),
    };
    let competitor = match &args.competitor_eur {
        Some(c) => Some(
            c.parse::<conductor_core::Money>()
                .ok()
                .filter(|m| !m.is_sign_negative())
                .ok_or_else(|| anyhow::anyhow!("--competitor-eur {c:?}: expected an amount such as 12.99"))?,
        ),
        None => None,
    };
    let q = conductor_controller::billing::quote_checked(
        args.ram_mib,
        args.disk_gb,
        args.hours_per_week,
        competitor,
        &prices,
    )
    .map_err(|e| anyhow::anyhow!("--{}", e.replace('_', "-")))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&q)?);
        return Ok(());
    }
    let f = |k: &str| q[k].as_str().unwrap_or("-").to_owned();
    println!(
        "{} MiB, {} GB, {} h of play a week (prices: active {} EUR/GiB-h, sleeping {} EUR/GB-month)",
        args.ram_mib, args.disk_gb, args.hours_per_week, prices.active_per_gib_hour, prices.sleeping_per_gb_month
    );
    println!("  per minute of play    {:>12} EUR", f("per_minute_active"));
    println!("  per hour of play      {:>12} EUR", f("per_hour_active"));
    println!("  per day asleep        {:>12} EUR", f("per_day_sleeping"));
    println!("  a month: playing      {:>12} EUR", f("month_active"));
    println!("           asleep       {:>12} EUR", f("month_sleeping"));
    println!("           total        {:>12} EUR  (invoice: {} EUR)", f("month_total"), f("month_total_cents"));
    println!("  always on, a month    {:>12} EUR", f("month_always_on"));
    if competitor.is_some() {
        println!(
            "  saving vs {} EUR/month {:>9} EUR  ({} %)",
            f("competitor_month"),
            f("saving_month"),
            f("saving_percent")
        );
    }
    Ok(())
}

fn fake_hetzner(port: u16, behaviour: conductor_controller::fake_hetzner::Behaviour) -> Result<()> {
    runtime()?.block_on(async {
        let fake = conductor_controller::fake_hetzner::FakeHetzner::new(behaviour);
        let url = fake.serve(port).await?;
        println!("fake Hetzner Cloud API on {url} (any token)");
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}

fn dataset_transform(dir: &std::path::Path, file: &std::path::Path, seed: u64, out: &std::path::Path) -> Result<()> {
    let ds =
        conductor_sim::dataset::Dataset::load(dir).with_context(|| format!("loading dataset {}", dir.display()))?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let transforms = conductor_sim::scenario::parse_transforms(file, &text)?;
    let (changed, effects) = conductor_sim::transform::apply(&ds, &transforms, seed);
    let mut meta = conductor_sim::dataset::raw_meta(dir).map_err(anyhow::Error::msg)?;
    meta.name = out.file_name().map_or(meta.name.clone(), |n| n.to_string_lossy().into_owned());
    let done: Vec<String> = effects.iter().map(|e| e.transform.clone()).collect();
    meta.source = format!(
        "{} — transformed by: conductor dataset transform {} --transforms {} --seed {seed} ({})",
        meta.source,
        dir.display(),
        file.display(),
        done.join("; ")
    );
    changed.write(out, &meta).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {}: {} servers, {} sessions ({})",
        out.display(),
        changed.servers.len(),
        changed.sessions.len(),
        done.join("; ")
    );
    Ok(())
}

fn dataset_generate(args: GenerateArgs) -> Result<()> {
    let start = chrono_date(&args.start).with_context(|| format!("--start {:?}: expected YYYY-MM-DD", args.start))?;
    let timezone =
        args.timezone.parse().map_err(|_| anyhow::anyhow!("--timezone {:?}: unknown IANA time zone", args.timezone))?;
    if args.servers == 0 || args.days == 0 {
        bail!("--servers and --days must be positive");
    }
    if !(args.activity.is_finite() && args.activity >= 0.0) {
        bail!("--activity must be a non-negative number");
    }
    if !(0.0..=1.0).contains(&args.habits) {
        bail!("--habits must be a share from 0 to 1, got {}", args.habits);
    }
    let cfg = GenConfig {
        servers: args.servers,
        days: args.days,
        seed: args.seed,
        start,
        timezone,
        activity: args.activity,
        habits: args.habits,
    };
    let generated = generate::generate(&cfg);
    let how = format!(
        "conductor dataset generate --servers {} --days {} --seed {} --start {} --timezone {} --activity {} --habits {} --out {}",
        cfg.servers,
        cfg.days,
        cfg.seed,
        cfg.start,
        args.timezone,
        cfg.activity,
        cfg.habits,
        args.out.display()
    );
    generate::write(&args.out, &cfg, &generated, &how).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {}: {} servers, {} sessions, {} days",
        args.out.display(),
        generated.servers.len(),
        generated.sessions.len(),
        cfg.days
    );
    Ok(())
}

fn dataset_check(dir: &Path) -> Result<()> {
    let ds = Dataset::load(dir).with_context(|| format!("checking dataset {}", dir.display()))?;
    println!("{}", ds.meta);
    println!("{} servers, {} owners, {} sessions: valid", ds.servers.len(), ds.owners.len(), ds.sessions.len());
    Ok(())
}

fn chrono_date(s: &str) -> Result<chrono::NaiveDate> {
    Ok(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")?)
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
