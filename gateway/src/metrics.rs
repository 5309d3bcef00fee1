//! Prometheus metrics of one gateway, served on their own port as text.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Backend connect latency buckets, milliseconds.
pub const CONNECT_BUCKETS_MS: [f64; 9] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

#[derive(Default)]
pub struct Metrics {
    /// Open connections by state (`handshake`, `status`, `holding`, `proxied`).
    pub open: Mutex<BTreeMap<&'static str, i64>>,
    /// Counters by name and label value.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    connect_buckets: [AtomicU64; CONNECT_BUCKETS_MS.len()],
    connect_count: AtomicU64,
    connect_sum_us: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub routes: AtomicI64,
}

impl Metrics {
    pub fn count(&self, name: &'static str, label: &str) {
        *self.counters.lock().unwrap().entry((name, label.to_owned())).or_default() += 1;
    }

    pub fn get(&self, name: &'static str, label: &str) -> u64 {
        self.counters.lock().unwrap().get(&(name, label.to_owned())).copied().unwrap_or(0)
    }

    pub fn enter(&self, state: &'static str) {
        *self.open.lock().unwrap().entry(state).or_default() += 1;
    }

    pub fn leave(&self, state: &'static str) {
        *self.open.lock().unwrap().entry(state).or_default() -= 1;
    }

    pub fn connect_latency(&self, d: std::time::Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        for (i, b) in CONNECT_BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.connect_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.connect_count.fetch_add(1, Ordering::Relaxed);
        self.connect_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP conductor_gateway_connections open connections by state\n");
        out.push_str("# TYPE conductor_gateway_connections gauge\n");
        for (state, n) in self.open.lock().unwrap().iter() {
            let _ = writeln!(out, "conductor_gateway_connections{{state=\"{state}\"}} {n}");
        }
        let help = [
            ("conductor_gateway_accepted_total", "", "connections accepted"),
            ("conductor_gateway_status_total", "kind", "status answers by kind"),
            ("conductor_gateway_wakes_total", "", "wake calls made"),
            ("conductor_gateway_holds_total", "outcome", "joins held while a server woke"),
            ("conductor_gateway_rejects_total", "reason", "connections refused by reason"),
            ("conductor_gateway_logins_total", "outcome", "logins by outcome"),
        ];
        let counters = self.counters.lock().unwrap();
        for (name, label, what) in help {
            let _ = writeln!(out, "# HELP {name} {what}\n# TYPE {name} counter");
            for ((n, v), c) in counters.iter() {
                if *n == name {
                    if label.is_empty() {
                        let _ = writeln!(out, "{name} {c}");
                    } else {
                        let _ = writeln!(out, "{name}{{{label}=\"{v}\"}} {c}");
                    }
                }
            }
        }
        let name = "conductor_gateway_backend_connect_seconds";
        let _ = writeln!(out, "# HELP {name} time to connect to a server's backend");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, b) in CONNECT_BUCKETS_MS.iter().enumerate() {
            let n = self.connect_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", b / 1000.0);
        }
        let count = self.connect_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.connect_sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        let _ = writeln!(
            out,
            "# HELP conductor_gateway_bytes_total bytes spliced, by direction\n# TYPE conductor_gateway_bytes_total counter\nconductor_gateway_bytes_total{{direction=\"up\"}} {}\nconductor_gateway_bytes_total{{direction=\"down\"}} {}",
            self.bytes_up.load(Ordering::Relaxed),
            self.bytes_down.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP conductor_gateway_routes servers in the route table\n# TYPE conductor_gateway_routes gauge\nconductor_gateway_routes {}",
            self.routes.load(Ordering::Relaxed)
        );
        out
    }
}
