//! KPIs as numbers, summaries over replications (mean ± 95 % confidence interval), the
//! objective with its constraints, the ranking and the Pareto frontier.

use conductor_sim::report::Report;
use serde::Serialize;
use std::collections::BTreeMap;

/// Every metric a study can rank, constrain or plot: the SPEC §10 KPIs (except the seed)
/// and the report's details that are plain numbers.
pub const NAMES: &[&str] = &[
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
    "active_revenue_eur",
    "control_plane_cost_eur",
    "sleeping_revenue_eur",
    "restores_from_archive",
    "restores_from_node",
    "staged",
    "staged_used",
    "staged_gb",
    "restore_wait_avoided_s",
    "lost_play_minutes",
    "disrupted_player_minutes",
    "recommendations_accepted",
    "jobs_preempted",
    "job_revenue_eur",
];

/// The metrics of one run, by name (money converted to f64 for statistics only; the
/// exact amounts stay in each run's report).
pub fn of_report(r: &Report) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for part in [serde_json::to_value(&r.kpis), serde_json::to_value(&r.details)] {
        if let Ok(serde_json::Value::Object(map)) = part {
            for (k, v) in map {
                if NAMES.contains(&k.as_str()) {
                    if let Some(x) = v.as_f64().or_else(|| v.to_string().parse().ok()) {
                        out.insert(k, x);
                    }
                }
            }
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Objective {
    pub metric: String,
    pub maximise: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
}

/// `metric op bound`, e.g. `start_wait_p95_s <= 30`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Constraint {
    pub metric: String,
    pub op: Op,
    pub bound: f64,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let ops = [("<=", Op::Le), (">=", Op::Ge), ("≤", Op::Le), ("≥", Op::Ge), ("<", Op::Lt), (">", Op::Gt)];
        for (sym, op) in ops {
            if let Some((m, b)) = text.split_once(sym) {
                let bound: f64 = b.trim().parse().map_err(|_| format!("{:?} is not a number in {text:?}", b.trim()))?;
                return Ok(Constraint { metric: m.trim().to_owned(), op, bound });
            }
        }
        Err(format!("expected `metric <= number` (or <, >=, >), got {text:?}"))
    }

    pub fn holds(&self, x: f64) -> bool {
        match self.op {
            Op::Le => x <= self.bound,
            Op::Lt => x < self.bound,
            Op::Ge => x >= self.bound,
            Op::Gt => x > self.bound,
        }
    }

    /// How far `x` is from satisfying the constraint, relative to the bound (0 if it holds).
    pub fn violation(&self, x: f64) -> f64 {
        if self.holds(x) {
            return 0.0;
        }
        (x - self.bound).abs() / self.bound.abs().max(1.0)
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Le => "≤",
            Op::Lt => "<",
            Op::Ge => "≥",
            Op::Gt => ">",
        };
        write!(f, "{} {op} {}", self.metric, self.bound)
    }
}

/// Mean and half-width of the 95 % confidence interval (Student's t; 0 with one value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub ci95: f64,
}

pub fn summarise(xs: &[f64]) -> Summary {
    let n = xs.len();
    if n == 0 {
        return Summary { mean: f64::NAN, ci95: 0.0 };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Summary { mean, ci95: 0.0 };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Summary { mean, ci95: t975(n - 1) * (var / n as f64).sqrt() }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.960)
}

/// Where each design stands: its rank (1 = best), whether it meets every constraint, and
/// whether it is on the Pareto frontier of the two minimised metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Standing {
    pub rank: usize,
    pub feasible: bool,
    pub pareto: bool,
}

/// Ranks designs by their mean metrics: feasible ones first, by the objective; then the
/// infeasible ones by total relative violation. Ties keep the design order.
pub fn rank(
    means: &[BTreeMap<String, f64>],
    objective: &Objective,
    constraints: &[Constraint],
    pareto: (&str, &str),
) -> Vec<Standing> {
    let get = |i: usize, m: &str| means[i].get(m).copied().unwrap_or(f64::NAN);
    let violation = |i: usize| constraints.iter().map(|c| c.violation(get(i, &c.metric))).sum::<f64>();
    let mut order: Vec<usize> = (0..means.len()).collect();
    let score = |i: usize| {
        let x = get(i, &objective.metric);
        if objective.maximise {
            -x
        } else {
            x
        }
    };
    order.sort_by(|&a, &b| {
        let (va, vb) = (violation(a), violation(b));
        (va > 0.0).cmp(&(vb > 0.0)).then(va.total_cmp(&vb)).then(score(a).total_cmp(&score(b))).then(a.cmp(&b))
    });
    let mut out = vec![Standing { rank: 0, feasible: false, pareto: false }; means.len()];
    for (r, &i) in order.iter().enumerate() {
        out[i].rank = r + 1;
        out[i].feasible = violation(i) == 0.0;
    }
    let points: Vec<(f64, f64)> = (0..means.len()).map(|i| (get(i, pareto.0), get(i, pareto.1))).collect();
    for (i, on) in pareto_front(&points).into_iter().enumerate() {
        out[i].pareto = on;
    }
    out
}

/// Non-dominated points when both coordinates are minimised. Equal points are all kept.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(x, y)| !(x.is_nan() || y.is_nan() || points.iter().any(|&(a, b)| a <= x && b <= y && (a < x || b < y))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn ranking_puts_feasible_designs_first_then_by_objective() {
        let means = vec![
            m(&[("margin_eur", 300.0), ("start_wait_p95_s", 50.0), ("infra_cost_eur", 90.0)]), // infeasible
            m(&[("margin_eur", 200.0), ("start_wait_p95_s", 20.0), ("infra_cost_eur", 100.0)]),
            m(&[("margin_eur", 250.0), ("start_wait_p95_s", 30.0), ("infra_cost_eur", 95.0)]),
            m(&[("margin_eur", 100.0), ("start_wait_p95_s", 40.0), ("infra_cost_eur", 120.0)]), // infeasible, less so
        ];
        let objective = Objective { metric: "margin_eur".into(), maximise: true };
        let c = vec![Constraint::parse("start_wait_p95_s <= 30").unwrap()];
        let s = rank(&means, &objective, &c, ("infra_cost_eur", "start_wait_p95_s"));
        let ranks: Vec<usize> = s.iter().map(|x| x.rank).collect();
        assert_eq!(ranks, vec![4, 2, 1, 3]);
        assert_eq!(s.iter().map(|x| x.feasible).collect::<Vec<_>>(), vec![false, true, true, false]);
        // cost/p95: (90,50) (100,20) (95,30) (120,40): the last is dominated by (100,20).
        assert_eq!(s.iter().map(|x| x.pareto).collect::<Vec<_>>(), vec![true, true, true, false]);
    }

    #[test]
    fn minimising_ranks_low_values_first() {
        let means = vec![m(&[("infra_cost_eur", 3.0)]), m(&[("infra_cost_eur", 1.0)]), m(&[("infra_cost_eur", 2.0)])];
        let objective = Objective { metric: "infra_cost_eur".into(), maximise: false };
        let s = rank(&means, &objective, &[], ("infra_cost_eur", "infra_cost_eur"));
        assert_eq!(s.iter().map(|x| x.rank).collect::<Vec<_>>(), vec![3, 1, 2]);
    }

    #[test]
    fn pareto_keeps_only_non_dominated_points() {
        let pts = [(1.0, 5.0), (2.0, 2.0), (3.0, 3.0), (5.0, 1.0), (2.0, 2.0), (1.0, 6.0)];
        assert_eq!(pareto_front(&pts), vec![true, true, false, true, true, false]);
    }

    #[test]
    fn confidence_interval_uses_students_t() {
        let s = summarise(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        // sd = 1, n = 3, t(2) = 4.303 → 4.303 / √3.
        assert!((s.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(summarise(&[7.0]), Summary { mean: 7.0, ci95: 0.0 });
    }

    #[test]
    fn constraints_parse_and_judge() {
        let c = Constraint::parse(" starts_abandoned<=185 ").unwrap();
        assert_eq!((c.metric.as_str(), c.op, c.bound), ("starts_abandoned", Op::Le, 185.0));
        assert!(c.holds(185.0) && !c.holds(186.0));
        assert!(Constraint::parse("p95 about 30").is_err());
        assert!(Constraint::parse("x <= thirty").is_err());
        assert_eq!(Constraint::parse("margin_eur > 0").unwrap().op, Op::Gt);
    }
}
