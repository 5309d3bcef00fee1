//! Decision cost of the live controller's tick (issue 6 target: under 10 ms for 200 nodes
//! and 20,000 servers). 150 dedicated AX41 and 50 ready VMs (the VM limit) know 20,000
//! servers; 6,400 ask to start: as many as fit run (≈ 2,100), the rest wait in the queue,
//! so stops trigger real queue scans. One iteration is a scaling tick (`Timer::Tick`: every
//! policy looks at the fleet) plus one start request and one stop — what a controller tick
//! asks of the core. `cargo bench -p conductor-core --bench tick`.

use conductor_core::catalogue::Reserve;
use conductor_core::model::CostMode;
use conductor_core::scheduler::Outbox;
use conductor_core::{CloudType, DedicatedType, Residence, Scheduler, SchedulerConfig, ServerId, ServerSpec, Timer};
use rust_decimal::Decimal;
use std::time::Instant;

fn main() {
    let vm = CloudType {
        name: "cx43".into(),
        ram_mib: 16384,
        cores: 8,
        disk_gb: 160,
        disk_reserve_gb: 0,
        hourly_eur: Decimal::new(21, 3),
        monthly_cap_eur: Decimal::new(1399, 2),
        reserve: Reserve::Percent(Decimal::from(15)),
    };
    let ax41 = DedicatedType {
        name: "AX41".into(),
        ram_mib: 65536,
        cores: 6,
        disk_gb: 1024,
        disk_reserve_gb: 0,
        monthly_eur: Decimal::from(70),
        reserve: Reserve::Mib(2300),
    };
    let dedicated = vec![ax41; 150];
    let mut sch = Scheduler::new(SchedulerConfig::reference(vm, 50), &dedicated, Vec::new());
    let plans = [2048u32, 3072, 4096, 6144, 8192];
    let servers: Vec<ServerId> = (0..20_000)
        .map(|i| {
            sch.add_server(ServerSpec {
                ram_mib: plans[i % plans.len()],
                disk_mb: 5000,
                pay_per_use: true,
                cost_mode: CostMode::Off,
            })
        })
        .collect();
    for _ in 0..50 {
        sch.adopt_vm(true, 0).expect("a VM type");
    }
    let mut out = Outbox::default();
    let mut now = 1_000_000;
    // 6,400 requests: placed ones boot at once, the others queue.
    for &s in &servers[..6_400] {
        sch.request_start(now, s, &mut out);
    }
    let placed: Vec<conductor_core::Command> = out.commands.drain(..).collect();
    for c in placed {
        if let conductor_core::Command::Place { server, placement, .. } = c {
            sch.boot_complete(now, server, placement, &mut out);
        }
    }
    out.clear();
    println!(
        "fleet: {} nodes, {} servers, {} running, {} queued",
        sch.nodes().len(),
        sch.server_count(),
        servers.iter().filter(|&&s| matches!(sch.residence(s), Residence::Running { .. })).count(),
        sch.queue_len()
    );
    let mut samples = Vec::new();
    for i in 0..2_000usize {
        let next = 6_400 + i;
        now += 1_000;
        let started = Instant::now();
        sch.timer(now, Timer::Tick, &mut out);
        sch.request_start(now, servers[next % servers.len()], &mut out);
        sch.wanted_end(now, servers[i % 6_000], &mut out);
        samples.push(started.elapsed());
        out.clear();
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "tick (Tick + a request + a stop): median {:?}, p99 {:?}, max {:?} over {} iterations",
        at(0.5),
        at(0.99),
        samples[samples.len() - 1],
        samples.len()
    );
}
