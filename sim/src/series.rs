//! Time series of a run: the fleet's state sampled every `step` (default 1 minute), for
//! plots and for analysts (written as Parquet or CSV by the workbench).
//!
//! A sample at `t` is the state after every event before `t` and none at `t`. Rates are
//! instantaneous (EUR per hour at that moment, as floats for plotting); the exact totals are
//! the report's KPIs.

use conductor_core::Millis;

/// Columns in file order: name and meaning (with unit). `docs/series.md` repeats this list.
pub const COLUMNS: &[(&str, &str)] = &[
    ("demand_gib", "plan RAM wanted: starting, running and queued servers (GiB)"),
    ("reserved_dedicated_gib", "RAM reserved by servers and jobs on dedicated nodes (GiB)"),
    ("reserved_cloud_gib", "RAM reserved by servers on cloud VMs (GiB)"),
    ("usable_dedicated_gib", "usable RAM (RAM − reserve) of ready dedicated nodes (GiB)"),
    ("usable_cloud_gib", "usable RAM of ready cloud VMs (GiB)"),
    ("vms_existing", "cloud VMs that exist (billed): provisioning, ready or draining"),
    ("vms_provisioning", "cloud VMs still provisioning"),
    ("queue_length", "start requests waiting for room"),
    ("running_servers", "servers running"),
    ("sleeping_servers", "servers sleeping on a node's disk"),
    ("cost_rate_eur_per_h", "fleet cost rate: dedicated monthly prices ÷ 720 h + existing VMs × hourly price"),
    ("revenue_rate_eur_per_h", "revenue rate: running plan RAM × active price + sleeping disk × sleeping price"),
    ("forecast_gib", "forecast mean of peak demand for this 15-min step (empty without a forecast)"),
    ("forecast_p90_gib", "forecast 90 % quantile of peak demand (empty without a forecast)"),
    ("actual_peak_gib", "actual peak demand of this 15-min step, what the forecast predicts (empty without one)"),
];

/// Sampled series, one value per column per sample (NaN where a column does not apply).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub step: Millis,
    pub t: Vec<Millis>,
    /// `values[c][k]`: column `COLUMNS[c]` at sample `k`.
    pub values: Vec<Vec<f64>>,
}

impl Series {
    pub fn new(step: Millis) -> Series {
        Series { step, t: Vec::new(), values: vec![Vec::new(); COLUMNS.len()] }
    }

    pub fn push(&mut self, t: Millis, row: [f64; COLUMNS_LEN]) {
        self.t.push(t);
        for (c, v) in row.into_iter().enumerate() {
            self.values[c].push(v);
        }
    }

    pub fn column(&self, name: &str) -> Option<&[f64]> {
        COLUMNS.iter().position(|(n, _)| *n == name).map(|c| self.values[c].as_slice())
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
}

pub const COLUMNS_LEN: usize = 15;
const _: () = assert!(COLUMNS.len() == COLUMNS_LEN);
