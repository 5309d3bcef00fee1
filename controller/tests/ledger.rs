//! Property tests of metering into the ledger: for random interleavings of metering runs
//! (overlapping ranges, retries of windows already charged, two workers at once) and top-ups
//! (some replayed), the balance always equals grants + top-ups − charges, no window is charged
//! twice, and once every window is metered each server's charges sum to the exact rating of
//! its total usage. Against the memory store (many seeds) and PostgreSQL (real concurrency).

use conductor_controller::billing::{post_charges, Phase, WindowUsage};
use conductor_controller::store::{EntryKind, Money, NewEntry, NewServer, Store};
use conductor_controller::{MemoryStore, PgStore};
use conductor_core::billing::{rate, Prices, MIB_MS_PER_GIB_HOUR};
use conductor_core::model::CostMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

mod common;

const T0: i64 = 1_760_000_000_000;
const WINDOW: i64 = 60_000;
const WINDOWS: usize = 40;

/// Each server's active usage (MiB·ms) per window: idle, part of a window, or whole ones.
fn usage(rng: &mut StdRng, servers: &[(i64, u32)]) -> Vec<Vec<u128>> {
    servers
        .iter()
        .map(|&(_, ram)| {
            (0..WINDOWS)
                .map(|_| match rng.random_range(0..4) {
                    0 => 0,
                    1 => u128::from(ram) * rng.random_range(1..WINDOW as u128),
                    _ => u128::from(ram) * WINDOW as u128,
                })
                .collect()
        })
        .collect()
}

fn windows(owner: i64, servers: &[(i64, u32)], q: &[Vec<u128>], range: std::ops::Range<usize>) -> Vec<WindowUsage> {
    let mut out = Vec::new();
    for (i, &(server, _)) in servers.iter().enumerate() {
        for k in range.clone() {
            out.push(WindowUsage {
                owner,
                server,
                phase: Phase::Active,
                window_start: T0 + k as i64 * WINDOW,
                before: q[i][..k].iter().sum(),
                during: q[i][k],
            });
        }
    }
    out
}

async fn property<S: Store>(store: &S, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let prices = Prices::default();
    let owner = store.create_owner(&format!("o{seed}"), T0).await.unwrap().id;
    let mut servers = Vec::new();
    for (i, ram) in [1024u32, 3072, 6144].into_iter().enumerate() {
        let new = NewServer {
            owner,
            name: format!("s{i}"),
            ram_mib: ram,
            disk_mb: 1000,
            pay_per_use: true,
            cost_mode: CostMode::Off,
        };
        servers.push((store.create_server(new, T0).await.unwrap().id, ram));
    }
    let q = usage(&mut rng, &servers);
    let credit = |kind, amount: Money, key: String| NewEntry {
        owner,
        kind,
        amount,
        key,
        at: T0,
        server: None,
        window_start: None,
        data: json!({}),
    };
    store.post(credit(EntryKind::Grant, Money::from(5), format!("grant:{owner}"))).await.unwrap();

    let mut credits = Money::from(5);
    let mut topups: Vec<(String, Money)> = Vec::new();
    let mut covered: BTreeSet<(usize, usize)> = BTreeSet::new(); // (server index, window)
    let mut closed = 0; // windows [0, closed) have ended
    for _ in 0..50 {
        match rng.random_range(0..5) {
            0 => closed = (closed + rng.random_range(1..6)).min(WINDOWS),
            1 | 2 if closed > 0 => {
                // A run over some closed windows (often ones charged before: a retry), and
                // sometimes a second worker over an overlapping range at the same time.
                let a = rng.random_range(0..closed);
                let b = rng.random_range(a + 1..=closed);
                let first = windows(owner, &servers, &q, a..b);
                if rng.random_bool(0.5) {
                    let c = rng.random_range(0..=a);
                    let second = windows(owner, &servers, &q, c..b);
                    let (x, y) = tokio::join!(
                        post_charges(store, &first, &prices, T0),
                        post_charges(store, &second, &prices, T0)
                    );
                    let (x, y) = (x.unwrap(), y.unwrap());
                    // Both runs saw every window with a charge; each was booked once.
                    let booked = x.iter().chain(&y).filter(|p| p.new).count();
                    let distinct: BTreeSet<&str> = x.iter().chain(&y).map(|p| p.entry.key.as_str()).collect();
                    assert!(booked <= distinct.len());
                    covered.extend((0..servers.len()).flat_map(|i| (c..b).map(move |k| (i, k))));
                } else {
                    post_charges(store, &first, &prices, T0).await.unwrap();
                }
                covered.extend((0..servers.len()).flat_map(|i| (a..b).map(move |k| (i, k))));
            }
            3 if !topups.is_empty() && rng.random_bool(0.5) => {
                // A replayed payment notification: nothing changes.
                let (key, amount) = topups[rng.random_range(0..topups.len())].clone();
                let p = store.post(credit(EntryKind::Topup, amount, key)).await.unwrap();
                assert!(!p.new);
            }
            _ => {
                let amount = Money::new(rng.random_range(1..5000), 2);
                let key = format!("topup:{owner}:{}", topups.len());
                assert!(store.post(credit(EntryKind::Topup, amount, key.clone())).await.unwrap().new);
                credits += amount;
                topups.push((key, amount));
            }
        }
        // The invariant, after every step.
        let charged: Money =
            covered.iter().map(|&(i, k)| windows(owner, &servers[i..=i], &q[i..=i], k..k + 1)[0].charge(&prices)).sum();
        let balance = store.balance(owner).await.unwrap();
        assert_eq!(balance, credits - charged, "seed {seed}: balance = grants + top-ups − charges");
        let ledger = store.ledger(owner, 0, 100_000).await.unwrap();
        assert_eq!(ledger.iter().map(|e| e.amount).sum::<Money>(), balance);
        let mut keys: HashMap<&str, usize> = HashMap::new();
        for e in &ledger {
            *keys.entry(e.key.as_str()).or_default() += 1;
        }
        assert!(keys.values().all(|&n| n == 1), "seed {seed}: a key booked twice");
    }
    // Everything metered: each server's charges are the exact rating of its total usage.
    post_charges(store, &windows(owner, &servers, &q, 0..WINDOWS), &prices, T0).await.unwrap();
    let ledger = store.ledger(owner, 0, 100_000).await.unwrap();
    for (i, &(server, _)) in servers.iter().enumerate() {
        let sum: Money = ledger.iter().filter(|e| e.server == Some(server)).map(|e| -e.amount).sum();
        let exact = rate(q[i].iter().sum(), prices.active_per_gib_hour, MIB_MS_PER_GIB_HOUR);
        assert_eq!(sum, exact, "seed {seed}, server {server}: no drift");
        let windows: BTreeSet<_> = ledger.iter().filter(|e| e.server == Some(server)).map(|e| e.window_start).collect();
        assert_eq!(windows.len(), ledger.iter().filter(|e| e.server == Some(server)).count());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn metering_interleavings_against_memory() {
    let store = MemoryStore::new();
    for seed in 0..40 {
        property(&store, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metering_interleavings_against_postgres_with_concurrent_workers() {
    let Some(store): Option<PgStore> = common::fresh_pg("ledger").await else { return };
    for seed in 100..106 {
        property(&store, seed).await;
    }
}
