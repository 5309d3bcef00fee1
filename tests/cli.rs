//! End-to-end tests of the `conductor` command line: what a user types, what they get.

mod common;
use common::*;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The SPEC §10 KPI names, exactly.
const KPIS: [&str; 21] = [
    "infra_cost_eur",
    "dedicated_cost_eur",
    "cloud_cost_eur",
    "storage_cost_eur",
    "revenue_eur",
    "promo_credit_eur",
    "margin_eur",
    "starts",
    "starts_abandoned",
    "start_wait_p50_s",
    "start_wait_p95_s",
    "start_wait_p99_s",
    "start_wait_max_s",
    "cloud_vms_created",
    "cloud_vm_hours_billed",
    "peak_cloud_vms",
    "start_queue_wait_p95_s",
    "starts_restored",
    "migrations",
    "events",
    "seed",
];

#[test]
fn generate_then_simulate_with_overrides() {
    let dir = temp_dir("cli-e2e");
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    let msg =
        ok(&conductor(&["dataset", "generate", "--servers", "200", "--days", "3", "--seed", "9", "--out", data_s]));
    assert!(msg.contains("200 servers"), "{msg}");
    let msg = ok(&conductor(&["dataset", "check", data_s]));
    assert!(msg.contains("valid"), "{msg}");

    let report = dir.join("report.json");
    let stdout = ok(&conductor(&[
        "sim",
        "scenarios/reference.toml",
        "--dataset",
        data_s,
        "--out",
        report.to_str().unwrap(),
        "--seed",
        "3",
    ]));
    // The summary table names the headline figures.
    for word in ["revenue", "infra cost", "margin", "start wait p50/p95/p99/max", "report"] {
        assert!(stdout.contains(word), "summary lacks {word}:\n{stdout}");
    }
    let json = read_json(&report);
    let kpis = json["kpis"].as_object().unwrap();
    let mut names: Vec<&str> = kpis.keys().map(String::as_str).collect();
    let mut expected = KPIS.to_vec();
    names.sort();
    expected.sort();
    assert_eq!(names, expected, "kpis are exactly SPEC §10");
    // …and written in the SPEC's order.
    let text = std::fs::read_to_string(&report).unwrap();
    let text = &text[text.find("\"kpis\"").unwrap()..];
    let at: Vec<usize> = KPIS.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "kpis out of SPEC order");
    assert_eq!(json["kpis"]["seed"], 3);
    assert_eq!(json["dataset"]["servers"], 200);
    for key in ["wall_s", "events_per_s", "version"] {
        assert!(json["run"].get(key).is_some(), "run lacks {key}");
    }
    // The identities of §10 hold on the written numbers.
    let dec = |k: &str| rust_decimal::Decimal::from_str_exact(&kpis[k].to_string()).unwrap();
    assert_eq!(dec("infra_cost_eur"), dec("dedicated_cost_eur") + dec("cloud_cost_eur") + dec("storage_cost_eur"));
    assert_eq!(dec("margin_eur"), dec("revenue_eur") - dec("infra_cost_eur") - dec("promo_credit_eur"));
    assert!(kpis["starts"].as_u64().unwrap() > 0);

    // Determinism through the CLI: the same run again gives the same report but for `run`.
    let again = dir.join("again.json");
    ok(&conductor(&[
        "sim",
        "scenarios/reference.toml",
        "--dataset",
        data_s,
        "--out",
        again.to_str().unwrap(),
        "--seed",
        "3",
        "-q",
    ]));
    let mut a = json.clone();
    let mut b = read_json(&again);
    a.as_object_mut().unwrap().remove("run");
    b.as_object_mut().unwrap().remove("run");
    assert_eq!(a, b);
}

#[test]
fn a_bad_scenario_fails_with_the_key_and_writes_no_report() {
    let dir = temp_dir("cli-bad-scenario");
    let scenario = dir.join("bad.toml");
    std::fs::write(
        &scenario,
        "name = \"x\"\ndataset = \"../nowhere\"\n[policy]\nkind = \"reference\"\ncooldown_s = 10\n",
    )
    .unwrap();
    let report = dir.join("report.json");
    let out = conductor(&["sim", scenario.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml: key `policy.cooldown_s`: the reference policy is pinned"), "{err}");
    assert!(!report.exists());
}

#[test]
fn a_bad_dataset_fails_with_file_and_line_and_writes_no_report() {
    let dir = temp_dir("cli-bad-dataset");
    let data = dir.join("data");
    ok(&conductor(&["dataset", "generate", "--servers", "20", "--days", "2", "--out", data.to_str().unwrap()]));
    let sessions = data.join("sessions.csv");
    let mut text = std::fs::read_to_string(&sessions).unwrap();
    text.push_str("s00001,2025-10-06T10:00:00Z,2025-10-06T09:00:00Z,2\n");
    let line = text.lines().count();
    std::fs::write(&sessions, text).unwrap();
    let report = dir.join("report.json");
    let out = conductor(&[
        "sim",
        "scenarios/reference.toml",
        "--dataset",
        data.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("sessions.csv:{line}: column `end`: end 2025-10-06T09:00:00Z is not after start")),
        "{err}"
    );
    assert!(!report.exists());
}

#[test]
fn the_shipped_demo_runs_with_the_reference_scenario() {
    let dir = temp_dir("cli-demo");
    let report = dir.join("r.json");
    ok(&conductor(&["sim", "scenarios/reference.toml", "--out", report.to_str().unwrap(), "-q"]));
    let json = read_json(&report);
    assert_eq!(json["dataset"]["name"], "demo");
    assert_eq!(json["kpis"]["seed"], 1);
}

#[test]
fn the_shipped_pricing_what_if_runs_as_is_and_compares() {
    let dir = temp_dir("pricing");
    let out = dir.join("pricing");
    let stdout =
        ok(&conductor(&["sim", "scenarios/whatif-pricing.toml", "--out-dir", out.to_str().unwrap(), "-j", "2"]));
    // 6 designs (base and 5 variants) × 2 seeds; the best five listed.
    assert!(stdout.contains("6 designs × 2 seed(s) = 12 runs"), "{stdout}");
    assert!(stdout.contains("#1 "), "{stdout}");
    let sweep = read_json(&out.join("report.json"));
    assert_eq!(sweep["designs"].as_array().unwrap().len(), 6);
    assert_eq!(sweep["ranking"].as_array().unwrap().len(), 6);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h2>Ranking</h2>") && html.contains("shout-out"));
    // The spike variant records its transform in its run report.
    let spike = read_json(&out.join("runs/006-shout-out-300-sign-ups-in-2-h-seed7/report.json"));
    assert_eq!(spike["transforms"][0]["servers_after"], 1300);
    let base = out.join("runs/001-base-seed7");
    assert!(base.join("series.parquet").is_file() && base.join("capacity.png").is_file());

    let cmp = dir.join("cmp");
    let stdout = ok(&conductor(&[
        "sim",
        "--compare",
        base.to_str().unwrap(),
        out.join("runs/002-active-0.025-25-seed7").to_str().unwrap(),
        "--out-dir",
        cmp.to_str().unwrap(),
    ]));
    assert!(stdout.contains("| margin_eur |") && stdout.contains("B − A"), "{stdout}");
    assert!(cmp.join("compare.html").is_file() && cmp.join("waits.png").is_file());
}

#[test]
fn a_bad_sweep_fails_before_any_run_and_writes_nothing() {
    let dir = temp_dir("bad-sweep");
    let file = dir.join("bad.toml");
    let text = std::fs::read_to_string("scenarios/sweep-thresholds.toml")
        .unwrap()
        .replace("../datasets/demo", &format!("{}/datasets/demo", env!("CARGO_MANIFEST_DIR")))
        .replace("\"catalogue.toml\"", &format!("\"{}/scenarios/catalogue.toml\"", env!("CARGO_MANIFEST_DIR")))
        .replace("from = 0.70", "from = 0.99");
    std::fs::write(&file, text).unwrap();
    let out = dir.join("out");
    let r = conductor(&["sim", file.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("sweep.param[0].to") && err.contains("inverted"), "{err}");
    assert!(!out.exists(), "nothing written for a study that cannot run");
}

#[test]
fn the_price_calculator_prints_the_quote_and_names_bad_input() {
    let out = conductor(&[
        "price",
        "--ram-mib",
        "4096",
        "--disk-gb",
        "10",
        "--hours-per-week",
        "10",
        "--competitor-eur",
        "12.99",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["month_total"], "4.369047");
    assert_eq!(v["saving_percent"], "66.4");
    // The readable table.
    let text = ok(&conductor(&["price", "--ram-mib", "4096", "--hours-per-week", "10"]));
    assert!(text.contains("0.001333 EUR") && text.contains("57.6 EUR"), "{text}");
    let out = conductor(&["price", "--ram-mib", "4096", "--hours-per-week", "1", "--competitor-eur=-3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--competitor-eur"));
    let out = conductor(&["price", "--ram-mib", "0", "--hours-per-week", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ram-mib: 1 to 1048576"), "{out:?}");
}

#[test]
fn the_fleet_ca_is_made_once_and_the_snapshot_preparation_is_printed() {
    let dir = temp_dir("pki-cli");
    let key = dir.join("ca-key.pem");
    ok(&conductor(&["pki", "init", "--out", key.to_str().unwrap()]));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "the key is private");
    let again = conductor(&["pki", "init", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success(), "an existing key is never overwritten");
    assert!(String::from_utf8_lossy(&again.stderr).contains("ca-key.pem"));

    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/controller.example.toml")).unwrap();
    let config = example
        .replace("admin_token_env = \"CONDUCTOR_ADMIN_TOKEN\"", "admin_token = \"local-admin-token-123\"")
        .replace(
            "catalogue = \"scenarios/catalogue.toml\"",
            &format!("catalogue = \"{root}/scenarios/catalogue.toml\""),
        )
        .replace(
            "vm_docker = \"unix:///run/podman/podman.sock\"",
            &format!("controller_cidrs = [\"10.0.0.2/32\"]\n\n[controller.pki]\nca_key = \"{}\"", key.display()),
        );
    let file = dir.join("controller.toml");
    std::fs::write(&file, config).unwrap();
    let ca = ok(&conductor(&["pki", "ca", "--config", file.to_str().unwrap()]));
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(ok(&conductor(&["pki", "ca", "--config", file.to_str().unwrap()])).lines().count(), ca.lines().count());
    let image = ok(&conductor(&["node", "image", "--config", file.to_str().unwrap()]));
    assert!(image.starts_with("#cloud-config"), "{image}");
    assert!(image.contains("docker pull "), "{image}");
    assert!(!image.contains("PRIVATE KEY"), "no key in a snapshot");
}

/// `conductor dataset transform`: growth and a spike written as a dataset of their own (it
/// loads, the spike's servers are there, `meta.toml` says how it was made); a bad block is
/// named by its key, a price change refused.
#[test]
fn a_dataset_transformed_is_a_dataset_of_its_own() {
    let dir = temp_dir("transform");
    let (base, out, file) = (dir.join("base"), dir.join("spiked"), dir.join("what-if.toml"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    ok(&conductor(&["dataset", "generate", "--servers", "200", "--days", "14", "--seed", "4", "--out", &s(&base)]));
    std::fs::write(
        &file,
        "[[transform]]\nkind = \"growth\"\npercent_per_week = 20\n\n[[transform]]\nkind = \"spike\"\nat = \"2025-10-11T18:00:00+02:00\"\nwithin = \"2h\"\nservers = 60\n",
    )
    .unwrap();
    let printed = ok(&conductor(&[
        "dataset",
        "transform",
        &s(&base),
        "--transforms",
        &s(&file),
        "--seed",
        "3",
        "--out",
        &s(&out),
    ]));
    assert!(printed.contains("spike: 60 sign-ups"), "{printed}");
    let rows = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap().lines().count();
    // Growth adds servers too (new ones, as a growing business gets); the spike adds 60.
    assert!(rows(&out, "servers.csv") >= rows(&base, "servers.csv") + 60);
    ok(&conductor(&["dataset", "check", &s(&out)]));
    let meta = std::fs::read_to_string(out.join("meta.toml")).unwrap();
    assert!(meta.contains("transformed by: conductor dataset transform") && meta.contains("spike"), "{meta}");
    assert!(rows(&out, "sessions.csv") > rows(&base, "sessions.csv") + 60, "growth and the spike add sessions");

    std::fs::write(&file, "[[transform]]\nkind = \"growth\"\npercent_per_week = -150\n").unwrap();
    let bad = conductor(&["dataset", "transform", &s(&base), "--transforms", &s(&file), "--out", &s(&dir.join("x"))]);
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && e.contains("transform[0].percent_per_week"), "{e}");
    std::fs::write(&file, "[[transform]]\nkind = \"prices\"\nactive_eur_per_gib_hour = 0.03\nelasticity = 0.5\n")
        .unwrap();
    let bad = conductor(&["dataset", "transform", &s(&base), "--transforms", &s(&file), "--out", &s(&dir.join("x"))]);
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && e.contains("a price change belongs in a scenario"), "{e}");
    assert!(!dir.join("x").exists(), "nothing written on an error");
}

/// `conductor tune` as a user runs it: datasets made with the CLI, a base scenario with
/// paths relative to itself, the outputs written; the `best.toml` it writes names its
/// catalogue and dataset relative to where it is, runs from anywhere, and replays a held-out
/// dataset to exactly the figures `tune.json` reports for it.
#[test]
fn tune_writes_a_best_toml_that_reproduces_its_held_out_figures() {
    let dir = temp_dir("cli-tune");
    for (name, seed) in [("a", "31"), ("b", "32"), ("c", "33")] {
        let out = dir.join("data").join(name);
        ok(&conductor(&[
            "dataset",
            "generate",
            "--servers",
            "120",
            "--days",
            "3",
            "--seed",
            seed,
            "--habits",
            "0.5",
            "--out",
            out.to_str().unwrap(),
        ]));
    }
    std::fs::copy("scenarios/catalogue.toml", dir.join("catalogue.toml")).unwrap();
    let tune_dir = dir.join("tune");
    std::fs::create_dir_all(&tune_dir).unwrap();
    let reference = std::fs::read_to_string("scenarios/reference.toml")
        .unwrap()
        .replace("\"../datasets/demo\"", "\"../data/a\"")
        .replace("\"catalogue.toml\"", "\"../catalogue.toml\"");
    std::fs::write(tune_dir.join("reference.toml"), reference).unwrap();
    std::fs::write(
        tune_dir.join("base.toml"),
        "name = \"base\"\nseed = 1\ndataset = \"../data/a\"\ncatalogue = \"../catalogue.toml\"\n\
         [[fleet.dedicated]]\ntype = \"AX41\"\ncount = 1\n[fleet.cloud]\ntype = \"cpx32\"\nmax_vms = 8\n\
         [policy]\nkind = \"custom\"\n",
    )
    .unwrap();
    std::fs::write(
        tune_dir.join("t.tune.toml"),
        "scenario = \"base.toml\"\nreference = \"reference.toml\"\ntrain = [\"../data/a\", \"../data/b\"]\n\
         holdout = [\"../data/c\"]\nobjective = \"margin_eur\"\nconstraints = [\"starts_abandoned <= reference\"]\n\
         [search]\nparticles = 3\niterations = 2\n[[knob]]\nkey = \"fleet.dedicated[0].count\"\nfrom = 0\nto = 3\n\
         integer = true\n",
    )
    .unwrap();
    let out = dir.join("out");
    ok(&conductor(&["tune", tune_dir.join("t.tune.toml").to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]));
    for f in ["tune.json", "tune.md", "tune.html", "best.toml", "evaluations.jsonl"] {
        assert!(out.join(f).exists(), "tune wrote no {f}");
    }
    let best = std::fs::read_to_string(out.join("best.toml")).unwrap();
    assert!(best.contains("catalogue = \"../catalogue.toml\""), "catalogue not relative to best.toml:\n{best}");
    assert!(best.contains("dataset = \"../data/a\""), "dataset not relative to best.toml:\n{best}");
    let settings: Vec<&str> = best.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!settings.iter().any(|l| l.contains(dir.to_str().unwrap())), "best.toml holds an absolute path:\n{best}");

    let tuned = read_json(&out.join("tune.json"));
    let held_out = &tuned["holdout"][0];
    assert!(held_out["dataset"].as_str().unwrap().ends_with("data/c"), "{held_out}");
    let report = dir.join("best-on-c.json");
    ok(&conductor(&[
        "sim",
        out.join("best.toml").to_str().unwrap(),
        "--dataset",
        dir.join("data/c").to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "-q",
    ]));
    let replayed = read_json(&report);
    for k in ["margin_eur", "start_wait_p95_s", "starts_abandoned"] {
        let (got, want) = (replayed["kpis"][k].to_string(), held_out["design"][k].as_f64().unwrap());
        assert_eq!(got.parse::<f64>().unwrap(), want, "{k}: best.toml replays {got}, tune.json says {want}");
    }
}

/// `scenarios/best.toml`'s comment is a promise: its table of held-out datasets is what
/// `bench/validation.sh` gives for best.toml and the reference (margin to the cent, waits to
/// the tenth of a second, abandoned starts exactly), and on every held-out generated dataset
/// the goal holds — margin ≥ the reference's, p95 total wait and abandoned starts ≤
/// half the reference's. The demo's line is checked against `conductor sim` on it.
#[test]
fn best_toml_held_out_table_is_what_the_validation_suite_gives() {
    let dir = temp_dir("cli-validation");
    let out = std::process::Command::new("bash")
        .args(["bench/validation.sh", "scenarios/reference.toml", "scenarios/best.toml"])
        .env("CONDUCTOR_BIN", env!("CARGO_BIN_EXE_conductor"))
        .env("CONDUCTOR_VALIDATION", &dir)
        .output()
        .unwrap();
    let table = ok(&out);
    // | dataset | design | margin | p95 | p95 queue | abandoned | restored | starts |
    let mut figures = std::collections::BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| v")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let f: Vec<f64> = cells[2..6].iter().map(|c| c.parse().unwrap()).collect();
        figures.insert((cells[0][..2].to_string(), cells[1].to_string()), f);
    }
    for design in ["reference", "best"] {
        let report = dir.join(format!("demo.{design}.json"));
        let scenario = format!("scenarios/{design}.toml");
        ok(&conductor(&["sim", &scenario, "--out", report.to_str().unwrap(), "-q"]));
        let k = &read_json(&report)["kpis"];
        let f = ["margin_eur", "start_wait_p95_s", "start_queue_wait_p95_s", "starts_abandoned"]
            .map(|m| k[m].to_string().trim_matches('"').parse::<f64>().unwrap());
        figures.insert(("datasets/demo".to_string(), design.to_string()), f.to_vec());
    }

    // "#   v3 routines, 5k × 4 w    6847.71 / 1188.03  164.8 / 589.0   0 / 549      43 / 11977"
    let comment = std::fs::read_to_string("scenarios/best.toml").unwrap();
    let rows: Vec<&str> = comment
        .lines()
        .skip_while(|l| !l.contains("held out") || !l.contains("abandoned"))
        .skip(1)
        .take_while(|l| l.trim() != "#")
        .collect();
    assert!(rows.len() >= 4, "no held-out table in best.toml's comment: {rows:?}");
    for row in rows {
        let row = row.trim_start_matches('#').trim();
        let (label, numbers) = row.split_once("  ").unwrap();
        let n: Vec<f64> = numbers.split_whitespace().filter(|t| *t != "/").map(|t| t.parse().unwrap()).collect();
        assert_eq!(n.len(), 8, "{row}");
        let key = if label.starts_with("datasets/demo") { "datasets/demo".to_string() } else { label[..2].to_string() };
        let (best, reference) =
            (&figures[&(key.clone(), "best".to_string())], &figures[&(key.clone(), "reference".to_string())]);
        for (i, (what, tolerance)) in
            [("margin", 0.005), ("p95 wait", 0.05), ("p95 queue wait", 0.05), ("abandoned", 0.0)].iter().enumerate()
        {
            assert!((n[2 * i] - best[i]).abs() <= *tolerance, "{key} {what}: comment {}, suite {}", n[2 * i], best[i]);
            assert!(
                (n[2 * i + 1] - reference[i]).abs() <= *tolerance,
                "{key} reference {what}: comment {}, suite {}",
                n[2 * i + 1],
                reference[i]
            );
        }
        if key != "datasets/demo" {
            assert!(best[0] >= reference[0], "{key}: margin {} below the reference's {}", best[0], reference[0]);
            assert!(
                best[1] <= reference[1] / 2.0,
                "{key}: p95 {} above half the reference's {}",
                best[1],
                reference[1]
            );
            assert!(best[3] <= reference[3] / 2.0, "{key}: abandoned {} above half of {}", best[3], reference[3]);
        }
    }
}
