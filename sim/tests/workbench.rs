//! What-if transforms (each on a tiny dataset, with exact expectations) and the time series
//! the twin samples for the workbench.

mod common;
use common::*;
use conductor_core::Tier;
use conductor_sim::dataset::Dataset;
use conductor_sim::transform::{apply, Transform};

fn parse_transforms(text: &str) -> Vec<Transform> {
    scenario(&format!("[policy]\nkind = \"fixed\"\n[[fleet.dedicated]]\ntype = \"tiny\"\n{text}")).transforms
}

fn three() -> Dataset {
    dataset(
        h(24),
        &[srv("a", 2048, 1.0, true), srv("b", 6144, 5.0, false), srv("c", 12288, 20.0, true)],
        &[("a", h(1), h(2)), ("b", h(3), h(5)), ("c", h(6), h(7)), ("a", h(10), h(11))],
    )
}

fn ids(ds: &Dataset) -> Vec<&str> {
    ds.servers.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn scaling_by_two_duplicates_every_session_onto_clone_servers() {
    let t = parse_transforms("[[transform]]\nkind = \"scale\"\nfactor = 2");
    let (ds, effects) = apply(&three(), &t, 1);
    assert_eq!(ids(&ds), vec!["a", "b", "c", "a~1", "b~1", "c~1"]);
    assert_eq!(ds.sessions.len(), 8);
    // Clones own their own (cloned) owners and copy the plan.
    assert_eq!(ds.owners.len(), 6);
    assert_eq!(ds.servers[3].ram_mib, 2048);
    assert_eq!(ds.servers[4].owner, 4);
    // a's two sessions both went to a~1.
    let a1: Vec<_> = ds.sessions.iter().filter(|s| s.server == 3).map(|s| (s.start - T0, s.end - T0)).collect();
    assert_eq!(a1, vec![(h(1), h(2)), (h(10), h(11))]);
    assert_eq!(effects[0].sessions_before, 4);
    assert_eq!(effects[0].sessions_after, 8);
    assert_eq!((effects[0].session_hours_before, effects[0].session_hours_after), (5.0, 10.0));
}

#[test]
fn scaling_by_zero_removes_all_demand_and_fractions_are_seeded() {
    let t = parse_transforms("[[transform]]\nkind = \"scale\"\nfactor = 0");
    let (ds, _) = apply(&three(), &t, 1);
    assert!(ds.sessions.is_empty());
    // 0.5: each session kept with probability ½ — the same seed gives the same choice.
    let t = parse_transforms("[[transform]]\nkind = \"scale\"\nfactor = 0.5");
    let big = dataset(
        h(24),
        &[srv("a", 2048, 1.0, true)],
        &(0..200).map(|i| ("a", m(i * 5), m(i * 5 + 1))).collect::<Vec<_>>(),
    );
    let (x, _) = apply(&big, &t, 9);
    let (y, _) = apply(&big, &t, 9);
    assert_eq!(x.sessions, y.sessions);
    assert!((70..=130).contains(&x.sessions.len()), "about half of 200 kept, got {}", x.sessions.len());
}

#[test]
fn growth_compounds_per_week_from_the_window_start() {
    // +100 % per week over a 3-week window: factor 1 at the start, 2 after a week, 4 after two.
    let sessions: Vec<(&str, i64, i64)> =
        vec![("a", 0, h(1)), ("a", h(7 * 24), h(7 * 24 + 1)), ("a", h(14 * 24), h(14 * 24 + 1))];
    let ds = dataset(h(21 * 24), &[srv("a", 2048, 1.0, true)], &sessions);
    let t = parse_transforms("[[transform]]\nkind = \"growth\"\npercent_per_week = 100");
    let (out, _) = apply(&ds, &t, 3);
    let at = |start: i64| out.sessions.iter().filter(|s| s.start - T0 == start).count();
    assert_eq!((at(0), at(h(7 * 24)), at(h(14 * 24))), (1, 2, 4));
}

#[test]
fn a_spike_adds_new_owners_each_playing_once_within_the_window() {
    let t = parse_transforms(
        "[[transform]]\nkind = \"spike\"\nat = \"2025-01-06T18:00:00Z\"\nwithin = \"2h\"\nservers = 50\ntier = \"medium\"\nsession = \"90m\"\nplayers = 4",
    );
    let (ds, effects) = apply(&three(), &t, 5);
    assert_eq!(ds.servers.len(), 53);
    assert_eq!(ds.owners.len(), 53);
    let new: Vec<_> = ds.sessions.iter().filter(|s| s.server >= 3).collect();
    assert_eq!(new.len(), 50);
    for s in &new {
        let server = &ds.servers[s.server as usize];
        assert_eq!((server.ram_mib, server.disk_mb, server.pay_per_use), (6144, 6000, true));
        assert!(s.start >= T0 + h(18) && s.start < T0 + h(20));
        assert_eq!((s.end - s.start, s.players), (m(90), 4));
        assert_eq!(server.created_at, s.start, "a sign-up at the first play");
    }
    assert_eq!(effects[0].servers_after, 53);
}

#[test]
fn shift_moves_sessions_and_clips_them_to_the_window() {
    let t = parse_transforms("[[transform]]\nkind = \"shift\"\nby = \"-90m\"");
    let (ds, _) = apply(&three(), &t, 1);
    let spans: Vec<_> = ds.sessions.iter().map(|s| (s.start - T0, s.end - T0)).collect();
    // a [1h,2h) → [0,30m) after clipping at the window start.
    assert_eq!(spans, vec![(0, m(30)), (m(90), m(210)), (m(270), m(330)), (m(510), m(570))]);
    let t = parse_transforms("[[transform]]\nkind = \"shift\"\nby = \"23h\"");
    let (ds, _) = apply(&three(), &t, 1);
    // Everything moves past the 24 h window end (a [1h,2h) → [24h,25h) is clipped to nothing).
    assert!(ds.sessions.is_empty());
}

#[test]
fn stretch_multiplies_session_lengths_from_their_start() {
    let t = parse_transforms("[[transform]]\nkind = \"stretch\"\nfactor = 1.5");
    let (ds, effects) = apply(&three(), &t, 1);
    let spans: Vec<_> = ds.sessions.iter().map(|s| (s.start - T0, s.end - T0)).collect();
    assert_eq!(spans, vec![(h(1), m(150)), (h(3), h(6)), (h(6), m(450)), (h(10), m(690))]);
    assert_eq!(effects[0].session_hours_after, 7.5);
}

#[test]
fn tier_mix_moves_servers_to_the_target_shares() {
    let servers: Vec<Srv> =
        (0..10).map(|i| srv(Box::leak(format!("s{i}").into_boxed_str()), 2048, 1.0, true)).collect();
    let ds = dataset(h(24), &servers, &[]);
    let t = parse_transforms("[[transform]]\nkind = \"tier-mix\"\nsmall = 0.5\nmedium = 0.3\nlarge = 0.2");
    let (out, _) = apply(&ds, &t, 4);
    let count = |tier| out.servers.iter().filter(|s| Tier::of_ram_mib(s.ram_mib) == tier).count();
    assert_eq!((count(Tier::Small), count(Tier::Medium), count(Tier::Large)), (5, 3, 2));
    // Empty tiers get the default plans: 6 GiB medium, 12 GiB large.
    assert!(out.servers.iter().all(|s| [2048, 6144, 12288].contains(&s.ram_mib)));
}

#[test]
fn pay_per_use_share_flips_just_enough_servers() {
    let t = parse_transforms("[[transform]]\nkind = \"pay-per-use\"\nshare = 1.0");
    let (ds, _) = apply(&three(), &t, 1);
    assert!(ds.servers.iter().all(|s| s.pay_per_use));
    let t = parse_transforms("[[transform]]\nkind = \"pay-per-use\"\nshare = 0.34");
    let (ds, _) = apply(&three(), &t, 1);
    // round(0.34 × 3) = 1 pay-per-use server: one of a and c was flipped, b untouched.
    assert_eq!(ds.servers.iter().filter(|s| s.pay_per_use).count(), 1);
    assert!(!ds.servers[1].pay_per_use);
}

#[test]
fn a_price_change_sets_prices_and_moves_demand_by_the_elasticity() {
    // Active price 0.02 → 0.04 with elasticity 1: demand × (2)^−1 = 0.5.
    let sc = scenario(
        "[policy]\nkind = \"fixed\"\n[[fleet.dedicated]]\ntype = \"tiny\"\n[[transform]]\nkind = \"prices\"\nactive_eur_per_gib_hour = 0.04\npromo_credit_eur = 2\nelasticity = 1",
    );
    assert_eq!(sc.prices.active_per_gib_hour, d("0.04"));
    assert_eq!(sc.prices.promo_credit, d("2"));
    match &sc.transforms[0] {
        Transform::Elastic { factor, description } => {
            assert!((factor - 0.5).abs() < 1e-12);
            assert!(description.contains("elasticity 1"), "{description}");
        }
        other => panic!("expected an elastic demand change, got {other:?}"),
    }
    // Without elasticity the demand is untouched.
    let sc = scenario(
        "[policy]\nkind = \"fixed\"\n[[fleet.dedicated]]\ntype = \"tiny\"\n[[transform]]\nkind = \"prices\"\nactive_eur_per_gib_hour = 0.04",
    );
    let (ds, _) = apply(&three(), &sc.transforms, 1);
    assert_eq!(ds.sessions, three().sessions);
}

#[test]
fn transforms_apply_in_file_order_and_the_report_records_them() {
    let sc = scenario(
        "[policy]\nkind = \"fixed\"\n[[fleet.dedicated]]\ntype = \"tiny\"\n[[transform]]\nkind = \"scale\"\nfactor = 2\n[[transform]]\nkind = \"stretch\"\nfactor = 2",
    );
    let ds = three();
    let (o, effects) = conductor_sim::simulate(&sc, &ds, 1, None, &mut |_| {});
    assert_eq!(effects.len(), 2);
    assert_eq!((effects[0].session_hours_after, effects[1].session_hours_after), (10.0, 20.0));
    // 8 sessions, none merging (each server's sessions are far apart): 8 requests.
    assert_eq!(o.requests, 8);
    let mut report = conductor_sim::report::Report::new(&sc, &ds, 1, &o, Default::default());
    report.transforms = effects;
    let json = report.to_json();
    assert!(json.contains("\"transforms\"") && json.contains("scale demand × 2"), "{json}");
}

#[test]
fn bad_transforms_name_their_key() {
    let bad = [
        ("kind = \"scale\"\nfactor = -1", "transform[0].factor"),
        ("kind = \"growth\"\npercent_per_week = -100", "transform[0].percent_per_week"),
        ("kind = \"spike\"\nat = \"yesterday\"\nwithin = \"1h\"\nservers = 3", "transform[0].at"),
        (
            "kind = \"spike\"\nat = \"2025-01-06T18:00:00Z\"\nwithin = \"1h\"\nservers = 3\ntier = \"huge\"",
            "transform[0].tier",
        ),
        ("kind = \"pay-per-use\"\nshare = 1.5", "transform[0].share"),
        ("kind = \"tier-mix\"\nsmall = 0\nmedium = 0\nlarge = 0", "transform[0].small"),
        ("kind = \"stretch\"\nfactor = 0", "transform[0].factor"),
        ("kind = \"scale\"\nfactr = 2", "transform[0]"),
        ("kind = \"teleport\"", "transform[0]"),
    ];
    for (body, key) in bad {
        let text = format!("name = \"t\"\ndataset = \"x\"\n[policy]\nkind = \"fixed\"\n[[fleet.dedicated]]\ntype = \"tiny\"\n[[transform]]\n{body}\n{TYPES}");
        let e = conductor_sim::scenario::Scenario::parse(std::path::Path::new("t.toml"), &text)
            .expect_err(body)
            .to_string();
        assert!(e.contains(key), "{body}: {e}");
    }
}

#[test]
fn the_series_samples_the_fleet_every_step() {
    // One 4 GiB server asks at 10 min and runs until 40 min on a fixed tiny node (8 GiB usable).
    let ds = dataset(h(1), &[srv("a", 4096, 1.0, false)], &[("a", m(10), m(40))]);
    let sc = scenario("[[fleet.dedicated]]\ntype = \"tiny\"\n[policy]\nkind = \"fixed\"");
    let o = conductor_sim::engine::run_with(&sc, &ds, 1, Some(m(5)), &mut |_| {});
    let s = o.series.clone().expect("a series was asked for");
    assert_eq!(s.len(), 12);
    assert_eq!(s.t[0], T0);
    assert_eq!(s.t[11], T0 + m(55));
    let demand = s.column("demand_gib").unwrap();
    // A sample at t is taken before the events at t: the one at 10 m misses the request
    // made at 10 m, the one at 40 m still sees the server the stop at 40 m removes.
    assert_eq!(demand, &[0.0, 0.0, 0.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 0.0, 0.0, 0.0]);
    let running = s.column("running_servers").unwrap();
    assert_eq!(running[3], 1.0, "running since 10 m 20 s");
    assert_eq!(s.column("sleeping_servers").unwrap()[8..10], [0.0, 1.0]);
    assert_eq!(s.column("usable_dedicated_gib").unwrap()[0], 8.0);
    // Cost rate: 72 EUR/month ÷ 720 h = 0.1 EUR/h; revenue at 15 m: 4 GiB × 0.02 = 0.08 EUR/h.
    assert!((s.column("cost_rate_eur_per_h").unwrap()[0] - 0.1).abs() < 1e-12);
    assert!((s.column("revenue_rate_eur_per_h").unwrap()[3] - 0.08).abs() < 1e-12);
    assert!(s.column("forecast_gib").unwrap().iter().all(|v| v.is_nan()), "no forecast in this scenario");
    // Sampling changes nothing the run measures.
    let plain = conductor_sim::engine::run(&sc, &ds, 1, &mut |_| {});
    assert_eq!(format!("{:?}", plain.waits), format!("{:?}", o.waits));
    assert_eq!(plain.revenue(), o.revenue());
}
