//! Cost of one metering step of the live controller at the scale of the tick benchmark:
//! 20,000 servers, 8,000 running (2–8 GiB), 8,000 asleep (5 GB), the rest archived or new.
//! 1. The computation (every server's usage in the window, rated with the core's
//!    `window_charge`, then folded): timed over 300 one-minute windows.
//! 2. Posting one window's charges to PostgreSQL (one transaction each, insert-if-absent and
//!    the balance update), when `CONDUCTOR_TEST_PG` names a server (as in the tests): the
//!    sustained rate, against the 16,000 charges a minute this fleet makes.
//!
//! `cargo bench -p conductor-controller --bench metering`.

use conductor_controller::billing::{post_charges, Usage};
use conductor_controller::store::{NewServer, Store};
use conductor_core::billing::Prices;
use conductor_core::model::CostMode;
use conductor_core::time::MINUTE;
use std::time::Instant;

const T0: i64 = 1_760_000_000_000;

fn fleet() -> Vec<Usage> {
    let plans = [2048u32, 3072, 4096, 6144, 8192];
    (0..20_000)
        .map(|i| {
            let mut u = Usage::new(1 + i as i64 % 5_000, 1 + i as i64, plans[i % plans.len()], 5000);
            match i % 5 {
                0 | 1 => u.on("server.started", T0 - 3_600_000),
                2 | 3 => u.on("server.slept", T0 - 3_600_000),
                _ => {}
            }
            u
        })
        .collect()
}

fn main() {
    let prices = Prices::default();
    let mut usage = fleet();
    let mut times = Vec::new();
    let mut charges = 0;
    for k in 0..300 {
        let (from, to) = (T0 + k * MINUTE, T0 + (k + 1) * MINUTE);
        let start = Instant::now();
        for u in &mut usage {
            let w = u.windows(from, to, MINUTE);
            charges += w.iter().filter(|x| !x.charge(&prices).is_zero()).count();
            u.fold(to);
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "compute: {} windows × 20000 servers, {} charges/window: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        charges / times.len(),
        q(0.5),
        q(0.99),
        times[times.len() - 1]
    );

    let Ok(admin) = std::env::var("CONDUCTOR_TEST_PG") else {
        println!("posting: skipped (set CONDUCTOR_TEST_PG, as `bash .ci/postgres.sh` prints it)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let db = format!("conductor_bench_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}")).execute(&mut c).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut c).await.unwrap();
        let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
        let store = conductor_controller::PgStore::connect(&url).await.unwrap();
        // 100 owners with 20 servers each: 2,000 servers, one window of their charges.
        let mut usage = Vec::new();
        for o in 0..100 {
            let owner = store.create_owner(&format!("o{o}"), T0).await.unwrap().id;
            for s in 0..20 {
                let new = NewServer {
                    owner,
                    name: format!("s{s}"),
                    ram_mib: 4096,
                    disk_mb: 5000,
                    pay_per_use: true,
                    cost_mode: CostMode::Off,
                };
                let id = store.create_server(new, T0).await.unwrap().id;
                let mut u = Usage::new(owner, id, 4096, 5000);
                u.on(if s % 2 == 0 { "server.started" } else { "server.slept" }, T0);
                usage.push(u);
            }
        }
        let windows: Vec<_> = usage.iter().flat_map(|u| u.windows(T0, T0 + MINUTE, MINUTE)).collect();
        let start = Instant::now();
        let posted = post_charges(&store, &windows, &prices, T0 + MINUTE).await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        // The same window again (a retry after a crash): every key is found, nothing booked.
        let start = Instant::now();
        let again = post_charges(&store, &windows, &prices, T0 + MINUTE).await.unwrap();
        let retry = start.elapsed().as_secs_f64();
        assert!(again.iter().all(|p| !p.new));
        println!(
            "posting: {} charges in {:.2} s = {:.0} charges/s (retry of the window: {:.0}/s); \
             20,000 servers make ~16,000 charges a minute = {:.0}/s",
            posted.len(),
            secs,
            posted.len() as f64 / secs,
            again.len() as f64 / retry,
            16_000.0 / 60.0
        );
        drop(store);
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut c).await.unwrap();
    });
}
