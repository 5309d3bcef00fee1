//! Differential test: `conductor sim` with the reference policy against an independent
//! Python model of SPEC §11 (tests/refmodel/ref.py, written from the SPEC alone). Every KPI
//! but `events` (which counts the engine's own bookkeeping) must be identical.

mod common;
use common::*;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd.current_dir(ROOT).output().expect("command runs");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A scenario with the reference policy on `dedicated` AX41 and up to `max_vms` cpx32.
fn scenario(dir: &Path, dedicated: u32, max_vms: u32) -> PathBuf {
    let path = dir.join("scenario.toml");
    let text = format!(
        "name = \"refmodel\"\nseed = 1\ndataset = \"unused\"\ncatalogue = \"{ROOT}/scenarios/catalogue.toml\"\n\
         [[fleet.dedicated]]\ntype = \"AX41\"\ncount = {dedicated}\n\
         [fleet.cloud]\ntype = \"cpx32\"\nmax_vms = {max_vms}\n[policy]\nkind = \"reference\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// KPIs as exact decimal strings (money may be written `35.92` or `35.920000`).
fn normalise(kpis: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kpis
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "events")
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let d = rust_decimal::Decimal::from_str_exact(&text).map(|d| d.normalize().to_string()).unwrap_or(text);
            (k.clone(), d)
        })
        .collect();
    out.sort();
    out
}

fn compare(name: &str, dataset: &Path, dedicated: u32, max_vms: u32) {
    let dir = temp_dir(name);
    let report = dir.join("report.json");
    run(Command::new(env!("CARGO_BIN_EXE_conductor")).args([
        "sim".as_ref(),
        scenario(&dir, dedicated, max_vms).as_os_str(),
        "--dataset".as_ref(),
        dataset.as_os_str(),
        "--out".as_ref(),
        report.as_os_str(),
        "-q".as_ref(),
    ]));
    let ours: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let model = run(Command::new("python3").args([
        "tests/refmodel/ref.py".as_ref(),
        dataset.as_os_str(),
        "--dedicated".as_ref(),
        dedicated.to_string().as_ref(),
        "--max-vms".as_ref(),
        max_vms.to_string().as_ref(),
    ]));
    let model: Value = serde_json::from_str(&model).expect("the model prints JSON");
    let (ours, model) = (normalise(&ours["kpis"]), normalise(&model));
    assert_eq!(ours, model, "{name}: conductor (left) and the independent model (right) disagree");
}

#[test]
fn the_demo_matches_the_independent_model() {
    compare("demo", &Path::new(ROOT).join("datasets/demo"), 2, 20);
}

#[test]
fn hand_made_cases_match_the_independent_model() {
    let cases = Path::new(ROOT).join("tests/refmodel/cases");
    for (case, dedicated, max_vms) in
        [("c1_single", 2, 20), ("c2_queue", 1, 0), ("c3_vm", 1, 1), ("c4_promo_ppu", 2, 20), ("c5_ties", 1, 0)]
            .into_iter()
            // No dedicated node: VMs only, and the control plane's own VM (SPEC §5).
            .chain([("c3_vm", 0, 3)])
    {
        compare(case, &cases.join(case), dedicated, max_vms);
    }
}

#[test]
fn generated_and_overloaded_datasets_match_the_independent_model() {
    // Seeds and activities chosen to cover a comfortable fleet, a saturated one (queues,
    // abandonments, all VMs in use) and a scale-down-heavy one.
    for (seed, activity, dedicated, max_vms) in [(21, "1", 1, 6), (22, "4", 1, 4), (23, "0.5", 1, 10)] {
        let dir = temp_dir(&format!("refmodel-gen-{seed}"));
        let data = dir.join("data");
        run(Command::new(env!("CARGO_BIN_EXE_conductor")).args([
            "dataset",
            "generate",
            "--servers",
            "400",
            "--days",
            "4",
            "--seed",
            &seed.to_string(),
            "--activity",
            activity,
            "--out",
            data.to_str().unwrap(),
        ]));
        compare(&format!("generated seed {seed}"), &data, dedicated, max_vms);
    }
}
