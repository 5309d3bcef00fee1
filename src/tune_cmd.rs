//! `conductor tune`: the tuner's command line (progress, output files); the search itself is
//! `conductor_workbench::tune`.

use anyhow::{Context, Result};
use clap::Args;
use conductor_workbench::tune::{self, Search, Tune};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct TuneArgs {
    /// The tune file: scenario, reference, training and held-out datasets, knobs with ranges.
    file: PathBuf,
    /// Output directory [default: runs/tune-<name>]; an earlier search there is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Discard an earlier search's evaluations in the output directory.
    #[arg(long)]
    fresh: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: TuneArgs) -> Result<()> {
    let wall = Instant::now();
    let tune = Tune::load(&args.file)?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("tune-{}", tune.name)));
    let total = tune.particles as u64 * (tune.iterations + 1);
    let bar = crate::progress::counting_bar(
        args.quiet,
        total,
        "points [{bar:30}] {pos}/{len}, {elapsed} elapsed, eta {eta}  {msg}",
    );
    let progress = |n: u64, best: f64| {
        bar.set_position(n);
        bar.set_message(format!("best {best:.2}"));
    };
    let search = Search::open(&tune, &out, args.fresh, &progress)?;
    let (report, table) = tune::run(&search)?;
    bar.finish_and_clear();
    let (fresh, cached) = *search.counts.lock().expect("counts");
    let doc = tune::document(&report);
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write("tune.json", serde_json::to_string_pretty(&report)?)?;
    write("tune.md", doc.markdown())?;
    write("tune.html", doc.html())?;
    let header = format!(
        "# Chosen by `conductor tune {}` ({} points; tune.md beside this file has every dataset).\n",
        args.file.display(),
        report.evaluations,
    );
    // The base scenario's relative paths are relative to its own directory: rewritten
    // relative to the output directory, so that best.toml works where it is written and can
    // be moved beside the base (or committed) with the tree it names.
    let mut table = table;
    let base = tune.scenario_path.parent().unwrap_or(Path::new("."));
    for key in ["dataset", "catalogue"] {
        if let Some(toml::Value::String(p)) = table.get(key) {
            if Path::new(p).is_relative() {
                let target = base.join(p);
                let rewritten = relative(&target, &out).unwrap_or(target);
                table.insert(key.into(), toml::Value::String(rewritten.display().to_string()));
            }
        }
    }
    write("best.toml", header + &toml::to_string(&table)?)?;
    if !args.quiet {
        println!(
            "{}: {} points ({fresh} replayed, {cached} from {}), {:.1} s; {} feasible",
            tune.name,
            report.evaluations,
            out.join("evaluations.jsonl").display(),
            wall.elapsed().as_secs_f64(),
            report.feasible
        );
        for (k, v) in &report.best {
            println!("  {k} = {v}");
        }
        print!("{}", doc.markdown().split("## Training").nth(1).map(|s| format!("## Training{s}")).unwrap_or_default());
        println!("wrote {}/{{tune.json,tune.md,tune.html,best.toml}}", out.display());
    }
    Ok(())
}

/// `target` as a path relative to the directory `from` (both must exist); `None` when either
/// cannot be resolved.
fn relative(target: &Path, from: &Path) -> Option<PathBuf> {
    let (target, from) = (target.canonicalize().ok()?, from.canonicalize().ok()?);
    let (t, f): (Vec<Component>, Vec<Component>) = (target.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut rel: PathBuf = std::iter::repeat_n(Component::ParentDir, f.len() - common).collect();
    rel.extend(&t[common..]);
    Some(if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel })
}
