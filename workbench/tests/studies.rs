//! Studies end to end on the demo dataset (two days of it, to stay quick): sweeps against
//! single runs, reports and their images, Parquet series, bad studies failing before a run.

use conductor_workbench::study::Study;
use conductor_workbench::{load_datasets, prepare_output, run_study};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A scenario file in `dir` (so that `dataset` resolves) over two days of the demo.
fn study_file(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
seed = 3
dataset = "{}"
catalogue = "{}"
[window]
start = "2025-10-08T00:00:00+02:00"
end = "2025-10-10T00:00:00+02:00"
[[fleet.dedicated]]
type = "AX41"
count = 1
[fleet.cloud]
type = "cpx32"
max_vms = 20
[lifecycle]
boot_distribution = {{ kind = "uniform", min_s = 15, max_s = 30 }}
[policy]
kind = "custom"
up = 0.85
{extra}
"#,
        root().join("datasets/demo").display(),
        root().join("scenarios/catalogue.toml").display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("conductor-wb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(study: &Study, out: &Path) -> conductor_workbench::StudyOutcome {
    prepare_output(out).unwrap();
    let ds = load_datasets(study).unwrap();
    run_study(study, &ds, out, &|| {}).unwrap()
}

#[test]
fn a_sweep_over_two_values_equals_the_two_single_runs() {
    let dir = tmp("sweep2");
    let sweep = study_file(
        &dir,
        "sweep",
        "[output]\nper_run = false\n[sweep]\n[[sweep.param]]\nkey = \"policy.up\"\nvalues = [0.7, 0.9]",
    );
    let study = Study::load(&sweep).unwrap();
    assert_eq!(study.designs.len(), 2);
    assert_eq!(study.designs[0].name, "up=0.7");
    let outcome = run(&study, &dir.join("out"));
    for (i, up) in ["0.7", "0.9"].iter().enumerate() {
        let single = study_file(&dir, &format!("single{i}"), "");
        let text = std::fs::read_to_string(&single).unwrap().replace("up = 0.85", &format!("up = {up}"));
        std::fs::write(&single, text).unwrap();
        let one = Study::load(&single).unwrap();
        assert!(!one.is_sweep);
        let r = run(&one, &dir.join(format!("single{i}-out")));
        assert_eq!(outcome.runs[i].report.kpis, r.runs[0].report.kpis, "up = {up}");
    }
    // The two thresholds really differ (otherwise the test above proves little).
    assert_ne!(outcome.runs[0].report.kpis, outcome.runs[1].report.kpis);
}

#[test]
fn a_sweep_writes_ranked_reports_with_plots_and_is_deterministic() {
    let dir = tmp("report");
    let file = study_file(
        &dir,
        "thresholds",
        r#"[sweep]
replications = 2
[[sweep.param]]
key = "policy.up"
from = 0.75
to = 0.95
step = 0.1
[[variant]]
name = "snapshot"
fleet.cloud.image = "snapshot"
[objective]
maximise = "margin_eur"
constraints = ["start_wait_p95_s <= 400", "starts_abandoned <= 1000"]
[output]
series = ["parquet", "csv"]
"#,
    );
    let study = Study::load(&file).unwrap();
    // base and the variant, × 3 thresholds, × 2 seeds.
    assert_eq!(study.designs.len(), 6);
    assert_eq!(study.seeds, vec![3, 4]);
    let out = dir.join("a");
    let outcome = run(&study, &out);
    assert_eq!(outcome.runs.len(), 12);
    let sweep = outcome.sweep.as_ref().unwrap();
    let mut ranks: Vec<usize> = sweep.designs.iter().map(|d| d.standing.rank).collect();
    ranks.sort();
    assert_eq!(ranks, (1..=6).collect::<Vec<_>>());
    assert!(sweep.designs.iter().any(|d| d.standing.pareto));
    // Two seeds: a confidence interval, and the mean of the two runs.
    let d0 = &sweep.designs[0];
    let m: f64 =
        outcome.runs.iter().filter(|r| r.design == 0).map(|r| r.report.kpis.start_wait_p95_s).sum::<f64>() / 2.0;
    assert!((d0.mean["start_wait_p95_s"] - m).abs() < 1e-9);

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for section in [
        "<h2>Objective</h2>",
        "<h2>Ranking</h2>",
        "<h2>Pareto frontier</h2>",
        "<h2>Cost and revenue</h2>",
        "<h2>Start waits</h2>",
        "<h2>Designs</h2>",
    ] {
        assert!(html.contains(section), "report.html lacks {section}");
    }
    assert_eq!(html.matches("<figure><svg").count(), 3, "pareto, costs and waits embedded");
    assert!(!html.contains("<img"), "self-contained: no external images");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("![Every design on the cost/wait plane; the frontier joined](pareto.png)"));
    for f in ["pareto.png", "pareto.svg", "costs.png", "waits.png", "summary.csv", "report.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // PNGs are real images.
    let png = std::fs::read(out.join("pareto.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Every run has its own reports, series and plots.
    let run_dir = out.join(&outcome.runs[0].dir);
    for f in ["report.json", "report.md", "report.html", "series.parquet", "series.csv", "capacity.png", "capacity.svg"]
    {
        assert!(run_dir.join(f).is_file(), "{} missing", run_dir.join(f).display());
    }
    let run_html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    for section in [
        "<h2>KPIs</h2>",
        "<h2>Details</h2>",
        "<h2>Overrides</h2>",
        "<h2>Capacity and demand</h2>",
        "<h2>Start waits</h2>",
    ] {
        assert!(run_html.contains(section), "run report lacks {section}");
    }
    let df = conductor_workbench::series_io::read_parquet(&run_dir.join("series.parquet")).unwrap();
    assert_eq!(df.height(), 2 * 24 * 60, "one sample a minute over two days");
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(names[0], "t");
    assert_eq!(names.len(), 1 + conductor_sim::series::COLUMNS.len());
    assert!(names.contains(&"vms_existing".to_string()));

    // Same study, same seeds: a byte-identical sweep report.
    let again = dir.join("b");
    run(&study, &again);
    assert_eq!(
        std::fs::read_to_string(out.join("report.json")).unwrap(),
        std::fs::read_to_string(again.join("report.json")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("summary.csv")).unwrap(),
        std::fs::read_to_string(again.join("summary.csv")).unwrap()
    );
}

fn error_of(extra: &str) -> String {
    let dir = tmp("bad");
    let file = study_file(&dir, "bad", extra);
    match Study::load(&file) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_studies_fail_before_any_run_with_the_key_path() {
    let cases = [
        ("[[variant]]\nname = \"x\"\npolicy.upp = 0.5", "policy"),
        ("[[variant]]\nname = \"x\"\npolicy.upp = 0.5", "upp"),
        ("[[variant]]\npolicy.up = 0.5", "variant[0].name"),
        ("[sweep]\n[[sweep.param]]\nkey = \"policy.up\"\nvalues = []", "sweep.param[0].values"),
        ("[sweep]\n[[sweep.param]]\nkey = \"policy.up\"\nfrom = 0.9\nto = 0.7\nstep = 0.1", "sweep.param[0].to"),
        ("[sweep]\n[[sweep.param]]\nkey = \"policy.up\"\nfrom = 0.7\nto = 0.9", "sweep.param[0].step"),
        ("[sweep]\n[[sweep.param]]\nkey = \"policy.up\"\nfrom = 0.7\nto = 0.9\nstep = -0.1", "sweep.param[0].step"),
        ("[sweep]\n[[sweep.param]]\nkey = \"policy.bogus\"\nvalues = [1]", "bogus"),
        ("[sweep]\nreplications = 0", "sweep.replications"),
        ("[sweep]\nmode = \"annealing\"\n[[sweep.param]]\nkey = \"policy.up\"\nvalues = [1]", "sweep.mode"),
        ("[sweep]\nmode = \"random\"\n[[sweep.param]]\nkey = \"policy.up\"\nfrom = 0.7\nto = 0.9", "sweep.samples"),
        ("[sweep]\nsteps = 3", "sweep"),
        ("[objective]\nmaximise = \"happiness\"", "objective.maximise"),
        ("[objective]\nconstraints = [\"start_wait_p95_s <= 30\", \"p42_wait <= 1\"]", "objective.constraints[1]"),
        ("[objective]\nconstraints = [\"start_wait_p95_s is small\"]", "objective.constraints[0]"),
        ("[output]\nplots = [\"gif\"]", "output.plots"),
    ];
    for (extra, key) in cases {
        let e = error_of(extra);
        assert!(e.contains(key), "{extra:?}: expected {key:?} in: {e}");
    }
    // An unknown KPI lists the known ones.
    assert!(error_of("[objective]\nminimise = \"cost\"").contains("infra_cost_eur"));
}

#[test]
fn an_unwritable_output_directory_is_refused_before_running() {
    let dir = tmp("unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    let file_in_the_way = dir.join("plain-file");
    std::fs::write(&file_in_the_way, "x").unwrap();
    let e = prepare_output(&file_in_the_way.join("out")).unwrap_err().to_string();
    assert!(e.contains("plain-file/out") && e.contains("cannot create"), "{e}");
}

#[test]
fn random_sweeps_draw_the_same_points_for_the_same_seed() {
    let dir = tmp("random");
    let file = study_file(
        &dir,
        "random",
        "[sweep]\nmode = \"random\"\nsamples = 5\ninclude_base = false\n[[sweep.param]]\nkey = \"policy.up\"\nfrom = 0.7\nto = 0.95\n[[sweep.param]]\nkey = \"policy.cooldown_s\"\nfrom = 60\nto = 900",
    );
    let a = Study::load(&file).unwrap();
    let b = Study::load(&file).unwrap();
    let names = |s: &Study| s.designs.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    assert_eq!(a.designs.len(), 5);
    for d in &a.designs {
        let up: f64 = d.overrides[0].1.parse().unwrap();
        let cooldown: i64 = d.overrides[1].1.parse().unwrap();
        assert!((0.7..=0.95).contains(&up) && (60..=900).contains(&cooldown), "{:?}", d.overrides);
    }
}

#[test]
fn compare_shows_two_runs_side_by_side_with_differences() {
    let dir = tmp("compare");
    let a = study_file(&dir, "a", "");
    let b = study_file(&dir, "b", "");
    let text = std::fs::read_to_string(&b).unwrap().replace("up = 0.85", "up = 0.6");
    std::fs::write(&b, text).unwrap();
    run(&Study::load(&a).unwrap(), &dir.join("ra"));
    run(&Study::load(&b).unwrap(), &dir.join("rb"));
    let (doc, lines) = conductor_workbench::compare(&dir.join("ra"), &dir.join("rb/report.json")).unwrap();
    let md = doc.markdown();
    assert!(md.contains("| infra_cost_eur |"), "{md}");
    assert!(md.contains("B − A"));
    assert_eq!(lines.len(), 2);
    conductor_workbench::write_compare(
        &dir.join("cmp"),
        doc,
        lines,
        conductor_workbench::plots::Formats { png: true, svg: false },
    )
    .unwrap();
    assert!(std::fs::read_to_string(dir.join("cmp/compare.html")).unwrap().contains("<figure><svg"));
    // A sweep report is not a run report: said plainly.
    let e = conductor_workbench::compare(&dir.join("ra"), &dir.join("a.toml")).unwrap_err().to_string();
    assert!(e.contains("not a conductor report"), "{e}");
}

/// Issue 3's shipped results: `scenarios/cheapest.toml` is 29.5 % cheaper than the reference
/// policy on the demo (30 % before it paid the control plane's VM, as its comment says) with no
/// more abandoned starts, `scenarios/fast-starts.toml` has at most half the reference's p95
/// start wait at a higher cost (their comments say so), `scenarios/ablation.toml` starts from
/// that very design, each variant changing something; and issue 18's `scenarios/best.toml`
/// (tuned on generated datasets, never on the demo) halves the reference's p95 wait and
/// abandoned starts on the demo too, at a lower margin there, as its comment and
/// BENCHMARKS.md say.
#[test]
fn the_shipped_designs_do_what_their_comments_say_and_the_ablation_starts_from_cheapest() {
    let dir = tmp("best");
    let single = |name: &str| {
        let study = Study::load(&root().join(format!("scenarios/{name}.toml"))).unwrap();
        assert!(!study.is_sweep, "{name}");
        run(&study, &dir.join(name)).runs[0].report.kpis.clone()
    };
    let reference = single("reference");
    let best = single("cheapest");
    let limit = reference.infra_cost_eur * rust_decimal::Decimal::new(705, 3);
    assert!(best.infra_cost_eur <= limit, "cheapest {} EUR, 70.5 % of the reference {limit}", best.infra_cost_eur);
    assert!(best.starts_abandoned <= reference.starts_abandoned, "{best:?}");
    let tuned = single("best");
    assert!(tuned.start_wait_p95_s <= reference.start_wait_p95_s / 2.0, "{tuned:?}");
    assert!(tuned.starts_abandoned * 2 <= reference.starts_abandoned, "{tuned:?}");
    assert!(tuned.margin_eur < reference.margin_eur, "the demo's margin is lower, as stated: {tuned:?}");
    // The other end of the trade-off, as fast-starts.toml's comment states it.
    let fast = single("fast-starts");
    assert!(
        fast.start_wait_p95_s <= reference.start_wait_p95_s / 2.0
            && fast.starts_abandoned <= reference.starts_abandoned,
        "{fast:?}"
    );
    assert!(fast.infra_cost_eur > reference.infra_cost_eur, "{fast:?}");

    let ablation = Study::load(&root().join("scenarios/ablation.toml")).unwrap();
    assert_eq!(ablation.designs[0].name, "base");
    let outcome = run(&ablation, &dir.join("ablation"));
    assert_eq!(outcome.runs[0].report.kpis, best, "the ablation's base is not cheapest.toml");
    for r in &outcome.runs[1..] {
        assert_ne!(r.report.kpis, best, "{} changes nothing", ablation.designs[r.design].name);
    }
}

/// Every scenario file shipped in `scenarios/` loads and validates (sweeps expanded), so a
/// documented command never starts with a parse error.
#[test]
fn every_shipped_scenario_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") && !path.ends_with("catalogue.toml") {
            let study = Study::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!study.designs.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 15, "only {n} scenario files found");
}
