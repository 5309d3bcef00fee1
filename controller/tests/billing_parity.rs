//! The controller charges what the twin predicts: a twin run lists every span its servers
//! ran or slept; the same spans, as the events the live engine records
//! (`server.started`, `server.slept`, `server.placed`), go through the controller's metering
//! (`billing::Usage`, one-minute windows metered hour by hour, posted to the ledger). The
//! charges must equal the twin's active and sleeping revenue exactly (so to the cent), per
//! phase and in total.

use conductor_controller::billing::{post_charges, Usage};
use conductor_controller::store::{Money, NewServer, Store};
use conductor_controller::MemoryStore;
use conductor_core::model::CostMode;
use conductor_core::time::{HOUR, MINUTE};
use conductor_sim::dataset::Dataset;
use conductor_sim::generate::GenConfig;
use conductor_sim::scenario::Scenario;

mod common;

#[tokio::test(flavor = "current_thread")]
async fn the_controller_charges_what_the_twin_predicts() {
    let dir = std::env::temp_dir().join(format!("conductor-billing-parity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gen = GenConfig { servers: 300, days: 2, seed: 21, ..GenConfig::default() };
    let (data, text) = common::twin_fixture(&dir, "billing-parity", &gen);
    let path = dir.join("scenario.toml");
    std::fs::write(&path, &text).unwrap();
    let scenario = Scenario::load(&path).unwrap();
    let dataset = Dataset::load(&data).unwrap();
    let twin = conductor_sim::engine::run_logging_usage(&scenario, &dataset, gen.seed);
    let spans = twin.usage.clone().unwrap();
    let (start, end) = twin.window;
    assert!(spans.iter().any(|s| !s.running), "the run must have sleeping servers");

    // The controller's view: owners and servers in a store, events per server.
    let store = MemoryStore::new();
    let mut owners = Vec::new();
    for name in &dataset.owners {
        owners.push(store.create_owner(name, start).await.unwrap().id);
    }
    let mut usage = Vec::new();
    for s in &dataset.servers {
        let new = NewServer {
            owner: owners[s.owner as usize],
            name: s.id.clone(),
            ram_mib: s.ram_mib,
            disk_mb: s.disk_mb,
            pay_per_use: s.pay_per_use,
            cost_mode: CostMode::Off,
        };
        let id = store.create_server(new, start).await.unwrap().id;
        usage.push(Usage::new(owners[s.owner as usize], id, s.ram_mib, s.disk_mb));
    }
    // Spans → events: a start opens a running span, a stop (`slept`) closes it and opens a
    // sleeping one, a placement or the archive closes that. At one instant closes go first.
    let mut events: Vec<(usize, conductor_core::Millis, u8, &str)> = Vec::new();
    for sp in &spans {
        let i = sp.server.0 as usize;
        events.push((i, sp.from, 1, if sp.running { "server.started" } else { "server.slept" }));
        let followed = spans.iter().any(|o| o.server == sp.server && o.from == sp.to && !o.running);
        if sp.to < end && !(sp.running && followed) {
            events.push((i, sp.to, 0, "server.placed"));
        }
    }
    events.sort_by_key(|e| (e.1, e.2, e.0));

    // Metering hour by hour (one-minute windows), as the engine does tick by tick.
    let prices = &scenario.prices;
    let mut next = 0;
    let mut hour = start;
    while hour < end {
        let to = (hour + HOUR).min(end);
        while next < events.len() && events[next].1 < to {
            let (i, at, _, kind) = events[next];
            usage[i].on(kind, at);
            next += 1;
        }
        for u in &mut usage {
            let windows = u.windows(hour, to, MINUTE);
            post_charges(&store, &windows, prices, to).await.unwrap();
            u.fold(to);
        }
        hour = to;
    }

    let mut charged = [Money::ZERO; 2];
    for &o in &owners {
        for e in store.ledger(o, 0, u32::MAX).await.unwrap() {
            if e.server.is_some() {
                charged[usize::from(e.data["phase"] == "sleeping")] -= e.amount;
            }
        }
    }
    assert_eq!(charged[0], twin.active_revenue, "active: controller vs twin");
    assert_eq!(charged[1], twin.sleeping_revenue, "sleeping: controller vs twin");
    assert_eq!((charged[0] + charged[1]).round_dp(2), twin.revenue().round_dp(2), "to the cent");
    assert!(twin.active_revenue > Money::from(10), "a meaningful amount: {}", twin.active_revenue);
    eprintln!(
        "billing parity: {} spans, active {} EUR, sleeping {} EUR, equal in both",
        spans.len(),
        twin.active_revenue,
        twin.sleeping_revenue
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
