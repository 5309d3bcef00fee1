//! The shipped `controller.example.toml` loads, and its billing knobs reach the engine.

use conductor_controller::config::ControllerConfig;

fn example(extra: &[(&str, &str)]) -> Result<ControllerConfig, String> {
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
    let path = std::env::temp_dir().join(format!("conductor-example-{}-{}.toml", std::process::id(), extra.len()));
    std::fs::write(&path, text).unwrap();
    let cfg = ControllerConfig::load(&path).map_err(|e| e.to_string());
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
    assert_eq!(live.billing.prices.promo_credit, cfg.scenario.prices.promo_credit);
    let cfg = example(&[("# promo_expiry_days = 90", "promo_expiry_days = 90")]).unwrap();
    assert_eq!(conductor_controller::serve::live_config(&cfg).unwrap().billing.promo_expiry, Some(90 * 86_400_000));
    let e = example(&[("billing_window_s = 60", "billing_window_s = 0")]).err().unwrap();
    assert!(e.contains("billing_window_s"), "{e}");
    let e = example(&[("warn_hours = 24", "warn_hours = \"soon\"")]).err().unwrap();
    assert!(e.contains("controller.warn_hours"), "{e}");
}
