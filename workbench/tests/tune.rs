//! `conductor tune` end to end on small generated datasets: the search finds the best point
//! a brute force finds, respects its constraints, is deterministic and resumes from its file;
//! bad tune files fail with their key.

use conductor_workbench::tune::{self, Search, Tune};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A generated dataset (made once, shared by the tests). The tests run on threads of one
/// process, so generation is serialised: two threads writing the same temporary directory
/// would race (one renames it away while the other still writes into it).
fn dataset(name: &str, seed: u64, servers: usize) -> PathBuf {
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = GENERATING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tune-datasets").join(name);
    if !dir.join("sessions.csv").exists() {
        let cfg = conductor_sim::generate::GenConfig {
            servers,
            days: 7,
            seed,
            habits: 0.5,
            ..conductor_sim::generate::GenConfig::default()
        };
        let g = conductor_sim::generate::generate(&cfg);
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        conductor_sim::generate::write(&tmp, &cfg, &g, "workbench tune test").unwrap();
        let _ = std::fs::rename(&tmp, &dir);
    }
    dir
}

/// A scenario and a tune file in `dir`; the knob is the number of AX41 nodes (0–3), next to
/// a cloud of cpx32 VMs.
fn files(dir: &Path, tune_extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let catalogue = root().join("scenarios/catalogue.toml");
    let base = format!(
        "name = \"base\"\nseed = 1\ndataset = \"unused\"\ncatalogue = \"{}\"\n[[fleet.dedicated]]\ntype = \"AX41\"\ncount = 1\n[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 8\n[policy]\nkind = \"custom\"\n",
        catalogue.display()
    );
    std::fs::write(dir.join("base.toml"), base).unwrap();
    std::fs::copy(root().join("scenarios/reference.toml"), dir.join("reference.toml")).unwrap();
    std::fs::write(
        dir.join("reference.toml"),
        std::fs::read_to_string(dir.join("reference.toml"))
            .unwrap()
            .replace("catalogue.toml", &catalogue.display().to_string()),
    )
    .unwrap();
    let text = format!(
        "scenario = \"base.toml\"\nreference = \"reference.toml\"\ntrain = [\"{}\", \"{}\"]\nholdout = [\"{}\"]\n{tune_extra}\n",
        dataset("a", 201, 150).display(),
        dataset("b", 202, 150).display(),
        dataset("c", 203, 150).display(),
    );
    let path = dir.join("t.tune.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const KNOB: &str = "[search]\nparticles = 4\niterations = 3\n[[knob]]\nkey = \"fleet.dedicated[0].count\"\nfrom = 0\nto = 3\ninteger = true\n";

#[test]
fn the_swarm_finds_what_a_brute_force_finds_and_resumes_from_its_file() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tune-search");
    let _ = std::fs::remove_dir_all(&dir);
    let constraint = "constraints = [\"starts_abandoned <= 2 * reference\"]\n";
    let path = files(&dir, &format!("{constraint}{KNOB}"));
    let t = Tune::load(&path).unwrap();
    let out = dir.join("out");
    let progress = |_: u64, _: f64| {};
    let search = Search::open(&t, &out, false, &progress).unwrap();
    let (report, table) = tune::run(&search).unwrap();
    // Brute force over the four counts, on the training datasets, with the same rule.
    let reference = search.evaluate(None, &t.train).unwrap();
    let mut best: Option<(f64, i64)> = None;
    for count in 0..=3 {
        let x = [count as f64 / 3.0];
        let m = search.evaluate(Some(&x), &t.train).unwrap();
        let s = search.score(&m, &reference);
        if s.violation == 0.0 && best.is_none_or(|(o, _)| s.objective > o) {
            best = Some((s.objective, count));
        }
    }
    let (objective, count) = best.expect("some count is feasible");
    assert_eq!(report.best, vec![("fleet.dedicated[0].count".to_string(), count.to_string())]);
    assert!((report.best_score.objective - objective).abs() < 1e-9);
    assert_eq!(report.best_score.violation, 0.0);
    assert_eq!(table["fleet"]["dedicated"][0]["count"].as_integer(), Some(count));
    // Every training row holds the constraint; the held-out row is the winner on unseen data.
    assert!(report.train.iter().all(|r| r.holds));
    assert_eq!(report.holdout.len(), 1);
    assert!(report.holdout[0].dataset.ends_with("/c"));
    assert!(report.evaluations >= 4, "{}", report.evaluations);
    let doc = tune::document(&report).markdown();
    assert!(doc.contains("Held-out datasets") && doc.contains("| c |"), "{doc}");

    // Resumed: the same points come from the file, nothing is replayed, the same winner.
    let again = Search::open(&t, &out, false, &progress).unwrap();
    let (report2, _) = tune::run(&again).unwrap();
    assert_eq!(again.counts.lock().unwrap().0, 0, "nothing replayed");
    assert_eq!(report2.best, report.best);
    assert_eq!(report2.holdout[0].design, report.holdout[0].design);
    // Another range of the same knob reuses what is known: values, not positions, are the key.
    let wider = files(&dir, &format!("{constraint}{}", KNOB.replace("to = 3", "to = 4")));
    let t2 = Tune::load(&wider).unwrap();
    let reuse = Search::open(&t2, &out, false, &progress).unwrap();
    let (report3, _) = tune::run(&reuse).unwrap();
    assert!(reuse.counts.lock().unwrap().1 > 0, "cached points reused");
    assert!(report3.best_score.objective >= report.best_score.objective);
    // Another base scenario makes every cached figure wrong: refused unless --fresh.
    let base = dir.join("base.toml");
    std::fs::write(&base, std::fs::read_to_string(&base).unwrap().replace("max_vms = 8", "max_vms = 9")).unwrap();
    let t3 = Tune::load(&wider).unwrap();
    let e = Search::open(&t3, &out, false, &progress).err().unwrap().to_string();
    assert!(e.contains("another search") && e.contains("--fresh"), "{e}");
    assert!(Search::open(&t3, &out, true, &progress).is_ok());
}

#[test]
fn bad_tune_files_name_their_key() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tune-bad");
    let err = |extra: &str| Tune::load(&files(&dir, extra)).expect_err("refused").to_string();
    let e = err("");
    assert!(e.contains("knob") && e.contains("at least one"), "{e}");
    let e = err(&KNOB.replace("to = 3", "to = 0"));
    assert!(e.contains("knob[0]") && e.contains("from < to"), "{e}");
    let e = err(&KNOB.replace("fleet.dedicated[0].count", "fleet.dedicated[0].cuont"));
    assert!(e.contains("knob[0]") && e.contains("cuont"), "{e}");
    let e = err(&format!("constraints = [\"start_wait_p95 <= reference\"]\n{KNOB}"));
    assert!(e.contains("constraints[0]") && e.contains("unknown metric"), "{e}");
    let e = err(&format!("constraints = [\"start_wait_p95_s < 3\"]\n{KNOB}"));
    assert!(e.contains("constraints[0]") && e.contains("expected"), "{e}");
    let e = err(&format!("objective = \"profit\"\n{KNOB}"));
    assert!(e.contains("objective") && e.contains("profit"), "{e}");
    // A held-out dataset that is also trained on.
    let path = files(&dir, KNOB);
    let text = std::fs::read_to_string(&path).unwrap();
    let a = dataset("a", 201, 150);
    let text = text.replace(
        &format!("holdout = [\"{}\"]", dataset("c", 203, 150).display()),
        &format!("holdout = [\"{}\"]", a.display()),
    );
    std::fs::write(&path, text).unwrap();
    let e = Tune::load(&path).err().unwrap().to_string();
    assert!(e.contains("holdout") && e.contains("also a training dataset"), "{e}");
}

#[test]
fn a_point_whose_knobs_make_an_invalid_scenario_is_skipped_not_fatal() {
    // policy.down up to 0.95 beside the default up (0.85): part of the range is refused by
    // the scenario parser (down must be below up); the search goes on and never picks one.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tune-invalid");
    let _ = std::fs::remove_dir_all(&dir);
    let knob = "[search]\nparticles = 6\niterations = 2\n[[knob]]\nkey = \"policy.down\"\nfrom = 0.3\nto = 0.95\nstep = 0.05\n";
    let path = files(&dir, knob);
    let t = Tune::load(&path).unwrap();
    let progress = |_: u64, _: f64| {};
    let search = Search::open(&t, &dir.join("out"), false, &progress).unwrap();
    let (report, _) = tune::run(&search).unwrap();
    assert!(!report.invalid.is_empty(), "some points were invalid");
    assert!(report.invalid.iter().all(|(_, why)| why.contains("policy.down")), "{:?}", report.invalid);
    let down: f64 = report.best[0].1.parse().unwrap();
    assert!(down < 0.85, "{down}");
}
