//! The shipped `controller.example.toml` loads, and its billing and healing knobs reach the
//! engine.

use conductor_controller::config::ControllerConfig;

fn example(extra: &[(&str, &str)]) -> Result<ControllerConfig, String> {
    example_in(extra, &conductor_config::process_env)
}

/// The example with `extra` replacements, its `*_env` keys looked up in `env`.
fn example_in(extra: &[(&str, &str)], env: conductor_config::Env<'_>) -> Result<ControllerConfig, String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut text = std::fs::read_to_string(format!("{root}/controller.example.toml")).unwrap();
    text =
        text.replace("admin_token_env = \"CONDUCTOR_ADMIN_TOKEN\"", "admin_token = \"local-admin-token-123\"").replace(
            "catalogue = \"scenarios/catalogue.toml\"",
            &format!("catalogue = \"{root}/scenarios/catalogue.toml\""),
        );
    for (from, to) in extra {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    // One file per call: the tests run in parallel.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("conductor-example-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let cfg = ControllerConfig::load_in(&path, env).map_err(|e| e.to_string());
    std::fs::remove_file(&path).unwrap();
    cfg
}

#[test]
fn the_example_configuration_loads_with_its_billing_knobs() {
    let cfg = example(&[]).unwrap();
    assert_eq!((cfg.controller.billing_window_s, cfg.controller.warn_hours), (60, 24.0));
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    assert_eq!(live.billing.window, 60_000);
    assert_eq!(live.billing.warn_before, 24 * 3_600_000);
    assert_eq!(live.billing.prices.promo_credit, cfg.shared.prices.promo_credit);
    let cfg = example(&[("# promo_expiry_days = 90", "promo_expiry_days = 90")]).unwrap();
    assert_eq!(conductor_controller::serve::live_config(&cfg).unwrap().billing.promo_expiry, Some(90 * 86_400_000));
    let e = example(&[("billing_window_s = 60", "billing_window_s = 0")]).err().unwrap();
    assert!(e.contains("billing_window_s"), "{e}");
    let e = example(&[("warn_hours = 24", "warn_hours = \"soon\"")]).err().unwrap();
    assert!(e.contains("controller.warn_hours"), "{e}");
}

#[test]
fn the_healing_knobs_reach_the_engine_and_the_core() {
    let cfg = example(&[
        ("start_timeout_s = 300", "start_timeout_s = 120"),
        ("unreachable_after_s = 15", "unreachable_after_s = 7"),
        ("# ops_webhook = ", "ops_webhook = "),
        ("# crash_limit = 3", "crash_limit = 5"),
    ])
    .unwrap();
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    assert_eq!(live.healing.start_timeout, 120_000);
    assert_eq!(live.healing.unreachable_after, 7_000);
    assert_eq!(live.healing.crash_grace, 60_000);
    assert_eq!(live.healing.gc_grace, 300_000);
    assert!(live.healing.ops_webhook.as_deref().is_some_and(|u| u.starts_with("https://")));
    assert_eq!((live.scheduler.crash_limit, live.scheduler.crash_window), (5, 600_000));
    let e = example(&[("# crash_limit = 3", "crash_limit = 0")]).err().unwrap();
    assert!(e.contains("lifecycle.crash_limit"), "{e}");
}

#[test]
fn the_example_s_archive_store_is_a_directory_or_an_s3_bucket_with_credentials_from_the_environment() {
    let cfg = example(&[]).unwrap();
    assert!(cfg.controller.archive_s3.is_none());
    assert_eq!(cfg.controller.max_copies, 2);
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    assert!(live.archive.what.starts_with("dir:"), "{}", live.archive.what);
    assert_eq!((live.healing.max_copies, live.game.port_base), (2, Some(30000)));
    // The commented S3 section, switched on.
    let s3 = [
        ("# [controller.archive_s3]", "[controller.archive_s3]"),
        ("# bucket = \"worlds\"", "bucket = \"worlds\""),
        ("# endpoint = \"https://fsn1.your-objectstorage.com\"", "endpoint = \"https://fsn1.your-objectstorage.com\""),
        ("# region = \"fsn1\"", "region = \"fsn1\""),
        ("# access_key_env = \"CONDUCTOR_S3_ACCESS_KEY\"", "access_key_env = \"CONDUCTOR_TEST_CFG_S3_KEY\""),
        ("# secret_key_env = \"CONDUCTOR_S3_SECRET_KEY\"", "secret_key_env = \"CONDUCTOR_TEST_CFG_S3_SECRET\""),
    ];
    let cfg = example(&s3).unwrap();
    assert_eq!(cfg.controller.archive_s3.as_ref().map(|s| s.bucket.as_str()), Some("worlds"));
    // Without the credentials in the environment: a clear error naming the variable.
    let e = conductor_controller::serve::live_config(&cfg).err().unwrap().to_string();
    assert!(e.contains("CONDUCTOR_TEST_CFG_S3_KEY is not set"), "{e}");
    let e = example(&[("# [controller.archive_s3]", "[controller.archive_s3]\ncolour = 1")]).err().unwrap();
    assert!(e.contains("archive_s3"), "{e}");
}

#[test]
fn the_backup_and_quota_knobs_reach_the_engine() {
    let cfg = example(&[("every_h = 6", "every_h = 2"), ("keep_daily = 7", "keep_daily = 10")]).unwrap();
    let w = conductor_controller::serve::live_config(&cfg).unwrap().worlds;
    assert!(w.backup_on_stop);
    assert_eq!((w.backup_every_h, w.hard_quota_pct), (2, 150));
    assert_eq!((w.retention.last, w.retention.daily, w.retention.weekly), (3, 10, 4));
    let e = example(&[("hard_quota_pct = 150", "hard_quota_pct = 90")]).err().unwrap();
    assert!(e.contains("controller.hard_quota_pct: at least 100"), "{e}");
    let e = example(&[("keep_weekly = 4", "keep_weekly = 4\nkeep_monthly = 2")]).err().unwrap();
    assert!(e.contains("controller.backups") && e.contains("keep_monthly"), "{e}");
}

/// Per-VM mode: no shared `vm_docker`, certificates from `[controller.pki]`; what is missing
/// or malformed is named by its key.
#[test]
fn per_vm_mode_needs_the_ca_and_the_controllers_addresses() {
    let key = conductor_controller::pki::Pki::generate_key().unwrap();
    let key_file = std::env::temp_dir().join(format!("conductor-ca-{}.pem", std::process::id()));
    std::fs::write(&key_file, key.expose()).unwrap();
    let shared = "vm_docker = \"unix:///run/podman/podman.sock\"";
    let per_vm = format!(
        "network = \"conductor\"\ncontroller_cidrs = [\"10.0.0.2/32\"]\ngateway_cidrs = [\"10.0.1.0/24\"]\n\n[controller.pki]\nca_key = \"{}\"",
        key_file.display()
    );
    let cfg = example(&[(shared, &per_vm)]).unwrap();
    assert!(cfg.pki.as_ref().unwrap().ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(cfg.cloud_init.as_ref().unwrap().0, "vm.yaml");
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    let cloud = live.cloud.as_ref().unwrap();
    assert!(cloud.bootstrap_marker);
    // Each VM's user data carries a certificate of its own, under this CA.
    let a = (cloud.user_data)("vm-a").unwrap().unwrap();
    let b = (cloud.user_data)("vm-b").unwrap().unwrap();
    assert!(a.starts_with("#cloud-config") && a != b);
    assert!(format!("{:?}", cfg.controller.pki).contains("ca_key") && !format!("{:?}", cfg.pki).contains("PRIVATE"));

    let e = example(&[(shared, "network = \"conductor\"")]).err().unwrap();
    assert!(e.contains("[controller.pki]"), "{e}");
    let no_cidrs = per_vm.replace("controller_cidrs = [\"10.0.0.2/32\"]\n", "");
    let e = example(&[(shared, &no_cidrs)]).err().unwrap();
    assert!(e.contains("controller.cloud.controller_cidrs: required"), "{e}");
    let bad = per_vm.replace("10.0.1.0/24", "10.0.1.0");
    let e = example(&[(shared, &bad)]).err().unwrap();
    assert!(e.contains("controller.cloud.gateway_cidrs") && e.contains("\"10.0.1.0\""), "{e}");
    let snap = example(&[(shared, &per_vm), ("image = \"ubuntu-24.04\"", "image = \"snapshot:123456\"")]).unwrap();
    assert_eq!(snap.cloud_init.as_ref().unwrap().0, "attach.yaml");
    let labels = example(&[(shared, &per_vm), ("image = \"ubuntu-24.04\"", "image = \"snapshot:conductor-node=v3\"")]);
    assert_eq!(labels.unwrap().cloud_init.unwrap().0, "attach.yaml", "a snapshot by its labels");
    let e =
        example(&[(shared, &per_vm), ("image = \"ubuntu-24.04\"", "image = \"snapshot:the latest\"")]).err().unwrap();
    assert!(e.contains("controller.cloud.image") && e.contains("label selector"), "{e}");
    let missing = per_vm.replace(&key_file.display().to_string(), "/nonexistent/ca.pem");
    let e = example(&[(shared, &missing)]).err().unwrap();
    assert!(e.contains("controller.pki.ca_key") && e.contains("/nonexistent/ca.pem"), "{e}");
    let _ = std::fs::remove_file(key_file);
}

#[test]
fn a_remote_node_names_the_address_its_game_ports_are_reached_at() {
    let remote = "docker = \"tls://10.0.0.5:2376\"\ntls_ca = \"ca.pem\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"";
    let e = example(&[("docker = \"unix:///run/podman/podman.sock\"\nhost = \"127.0.0.1\"", remote)]).err().unwrap();
    assert!(e.contains("controller.node[0].host: required for a remote node (ded-1)"), "{e}");
    let cfg = example(&[("host = \"127.0.0.1\"", "")]).unwrap();
    assert_eq!(cfg.controller.node[0].game_host(), "127.0.0.1", "a local socket defaults to loopback");
}

/// Templates: the example's two reach the engine; a bad one is named by its key path.
#[test]
fn templates_load_with_their_default_and_bad_ones_are_named_by_key() {
    let cfg = example(&[]).unwrap();
    let names: Vec<&str> = cfg.templates.by_name.keys().map(String::as_str).collect();
    assert_eq!(names, ["standin", "standin-rcon"]);
    assert_eq!(cfg.templates.default, "standin");
    assert_eq!(cfg.images(), ["localhost/conductor-standin:test"]);
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    assert_eq!(live.templates.of(None).env(1024).last().unwrap(), "JVM_OPTS=-Xms768M -Xmx768M");

    let e = example(&[("default_template = \"standin\"", "default_template = \"paper\"")]).err().unwrap();
    assert!(e.contains("controller.default_template: \"paper\" is not a template"), "{e}");
    let e = example(&[("memory_headroom_mib = 256 ", "memory_headroom_mib = 256\nheap = 1 ")]).err().unwrap();
    assert!(e.contains("controller.templates") && e.contains("unknown field `heap`"), "{e}");
    let e = example(&[("stop_signal = \"SIGINT\"", "stop_signal = \"INT\"")]).err().unwrap();
    assert!(e.contains("controller.templates.standin-rcon.stop_signal"), "{e}");
    let e = example(&[("helper_image = \"localhost/conductor-standin:test\"", "")]).err().unwrap();
    assert!(e.contains("controller.helper_image: required"), "{e}");
    // A plain image is the template "default", and the default without default_template.
    let plain = example(&[("default_template = \"standin\"", "image = \"localhost/conductor-standin:test\"")]).unwrap();
    assert_eq!(plain.templates.default, "default");
    assert!(plain.templates.of(None).env(1024).is_empty(), "the image as it is");
}

/// Twin-only sections are refused in a controller config, named by key; a twin scenario with
/// a `[controller]` section is refused by the twin.
#[test]
fn twin_only_sections_are_refused_by_the_controller_and_controller_keys_by_the_twin() {
    for (section, key) in [
        ("[window]\nstart = \"2025-01-01T00:00:00Z\"\nend = \"2025-01-02T00:00:00Z\"", "window"),
        ("[[transform]]\nkind = \"scale-demand\"\nfactor = 2", "transform"),
        ("[[upgrades]]\nserver = \"s1\"\nat = \"2025-01-01T00:00:00Z\"\nram_gib = 4", "upgrades"),
        ("[failures]\nrate_per_node_per_30d = 1", "failures"),
        ("[jobs]\nper_day = 3", "jobs"),
    ] {
        let e = example(&[("[lifecycle]", &format!("{section}\n\n[lifecycle]"))]).err().unwrap();
        assert!(e.contains(&format!("key `{key}`: twin-only (")), "{key}: {e}");
        assert!(e.contains("a controller config does not take it (line "), "{key}: {e}");
    }
    let e = example(&[("catalogue = ", "dataset = \"datasets/demo\"\ncatalogue = ")]).err().unwrap();
    assert!(e.contains("key `dataset`: twin-only (the recorded demand"), "{e}");
    let e = example(&[("[lifecycle]", "[lifecycle]\ndelays_from = \"dataset\"")]).err().unwrap();
    assert!(e.contains("key `lifecycle.delays_from`: twin-only"), "{e}");
    let staging = "[policy]\nkind = \"custom\"\n[policy.staging]\nbudget = 5";
    let e = example(&[("[policy]\nkind = \"reference\"", staging)]).err().unwrap();
    assert!(e.contains("key `policy.staging`: twin-only for now") && e.contains("(line "), "{e}");

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/scenarios/reference.toml")).unwrap();
    let with_controller = format!("{text}\n[controller]\nmode = \"observe\"\n");
    let path = std::path::Path::new(root).join("scenarios/reference.toml");
    let e = conductor_sim::scenario::Scenario::parse(&path, &with_controller).unwrap_err().to_string();
    let line = with_controller.lines().position(|l| l == "[controller]").unwrap() + 1;
    assert!(
        e.contains(&format!(
            "key `controller`: live-only (the live controller's settings): a twin scenario does not take it (line {line})"
        )),
        "{e}"
    );
    let with_gateway = format!("{text}\n[gateway]\nlisten = \"0.0.0.0:25565\"\n");
    let e = conductor_sim::scenario::Scenario::parse(&path, &with_gateway).unwrap_err().to_string();
    assert!(e.contains("key `gateway`: live-only"), "{e}");
    // A typo at the top level is still an unknown key, for both readers.
    let e = conductor_sim::scenario::Scenario::parse(&path, &format!("{text}\nfleeet = 1\n")).unwrap_err().to_string();
    assert!(e.contains("unknown field `fleeet`"), "{e}");
    let e = example(&[("catalogue = ", "fleeet = 1\ncatalogue = ")]).err().unwrap();
    assert!(e.contains("unknown field `fleeet`"), "{e}");
}

/// Secrets named by `*_env` keys come from the environment the loader is given, not the
/// process's: a map here.
#[test]
fn the_environment_is_passed_in_as_a_value() {
    let env = |name: &str| (name == "TEST_ADMIN").then(|| "an-admin-token-from-a-map".to_owned());
    let admin_env = [("admin_token = \"local-admin-token-123\"", "admin_token_env = \"TEST_ADMIN\"")];
    assert_eq!(example_in(&admin_env, &env).unwrap().admin_token, "an-admin-token-from-a-map");
    let e = example_in(&admin_env, &|_| None).err().unwrap();
    assert!(e.contains("controller.admin_token_env: environment variable TEST_ADMIN is not set"), "{e}");
}

#[test]
fn the_nightly_forecast_is_set_up_when_a_policy_reads_one_and_bad_knobs_are_named() {
    assert!(example(&[]).unwrap().forecast.is_none(), "the reference policy reads no forecast");
    let predictive = "kind = \"custom\"\n\n[policy.predictive]\nsource = \"mstl\"\nshadow = true";
    let with = |forecast: &str| {
        example(&[
            ("kind = \"reference\"", predictive),
            ("[[controller.node]]", &format!("[controller.forecast]\n{forecast}\n\n[[controller.node]]")),
        ])
    };
    let cfg = with("at = \"02:30\"\ntimezone = \"Europe/Berlin\"\nwindow_days = 21").unwrap();
    let f = cfg.forecast.clone().unwrap();
    assert_eq!((f.at, f.timezone, f.window), ((2, 30), chrono_tz::Europe::Berlin, 21 * 86_400_000));
    assert_eq!(f.max_age, 30 * 3_600_000, "the default");
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    assert_eq!(live.forecast, Some(f), "the setup reaches the engine");
    assert_eq!(live.scheduler.scaling.policies[1].shadow(), Some(true));
    for (knob, says) in [
        ("at = \"3:00\"", "controller.forecast.at: \"HH:MM\""),
        ("at = \"25:00\"", "controller.forecast.at"),
        ("timezone = \"Mars/Olympus\"", "controller.forecast.timezone: unknown time zone"),
        ("window_days = 10", "controller.forecast.window_days: at least 14"),
        ("max_age_h = 0", "controller.forecast.max_age_h"),
        ("every_h = 2", "controller.forecast.every_h"),
    ] {
        let e = with(knob).err().unwrap();
        assert!(e.contains(says), "{knob}: {e}");
    }
    let e = example(&[("kind = \"reference\"", &predictive.replace("mstl", "perfect"))]).err().unwrap();
    assert!(e.contains("policy.predictive.source: \"perfect\" is the future itself"), "{e}");
    let sp = "kind = \"custom\"\n\n[policy.spare_pool]\nsize = 1\nshadow = true";
    let cfg = example(&[("kind = \"reference\"", sp)]).unwrap();
    assert_eq!(cfg.shared.scheduler.scaling.policies[1].shadow(), Some(true), "a spare pool can shadow");
    assert!(cfg.forecast.is_none(), "a fixed pool reads no forecast");
}

#[test]
fn the_jobs_knobs_reach_the_engine_and_bad_ones_are_named() {
    let with =
        |jobs: &str| example(&[("[[controller.node]]", &format!("[controller.jobs]\n{jobs}\n\n[[controller.node]]"))]);
    let cfg =
        with("images = [\"render:1\"]\nprice_per_gib_hour = \"0.015\"\nmax_duration_h = 6\nnotice_s = 90").unwrap();
    let live = conductor_controller::serve::live_config(&cfg).unwrap();
    assert_eq!(live.jobs.images, ["render:1"]);
    assert_eq!(live.jobs.price_per_gib_hour, rust_decimal::Decimal::new(15, 3));
    assert_eq!(live.jobs.max_duration, 6 * 3_600_000);
    assert_eq!(live.scheduler.job_notice, 90_000, "the core gives notice this long");
    for (knob, says) in [
        ("price_per_gib_hour = \"-1\"", "controller.jobs.price_per_gib_hour"),
        ("price_per_gib_hour = \"cheap\"", "controller.jobs.price_per_gib_hour"),
        ("max_duration_h = 0", "controller.jobs.max_duration_h"),
        ("imgs = []", "controller.jobs.imgs"),
    ] {
        let e = with(knob).err().unwrap();
        assert!(e.contains(says), "{knob}: {e}");
    }
}
