//! The comparison's numbers, as pure functions of the runs: per curve its peak, time of peak,
//! values at the checkpoints and the model's NRMSE against .NET; the load's totals; over runs
//! the mean of each side with a 95 % percentile-bootstrap interval, the model/.NET ratio and
//! issue 28's goal.

use serde::Serialize;

use super::scenario::Checkpoints;
use super::side::{Point, SideRun};
use crate::results::stats::{BOOTSTRAP_SEED, bootstrap_mean_ci, mean, nrmse, peak};

/// Bootstrap resamples of every interval (fixed seed: [`BOOTSTRAP_SEED`]).
pub const RESAMPLES: usize = 2000;
/// The intervals' level.
pub const LEVEL: f64 = 0.95;

/// A curve both sides have, one value per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Curve {
    Busy,
    Threads,
    Queue,
    P50,
    P99,
}

impl Curve {
    pub const ALL: [Curve; 5] = [
        Curve::Busy,
        Curve::Threads,
        Curve::Queue,
        Curve::P50,
        Curve::P99,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Curve::Busy => "busy threads",
            Curve::Threads => "pool threads",
            Curve::Queue => "queue (work items)",
            Curve::P50 => "p50 latency (s)",
            Curve::P99 => "p99 latency (s)",
        }
    }

    pub fn value(self, p: &Point) -> Option<f64> {
        match self {
            Curve::Busy => p.pool.map(|r| r.busy),
            Curve::Threads => p.pool.map(|r| r.threads),
            Curve::Queue => p.pool.map(|r| r.queue),
            Curve::P50 => p.p50_s,
            Curve::P99 => p.p99_s,
        }
    }

    fn is_latency(self) -> bool {
        matches!(self, Curve::P50 | Curve::P99)
    }
}

/// One row of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "metric")]
pub enum Metric {
    Peak {
        curve: Curve,
    },
    /// Seconds after the load started (the first second at the peak).
    PeakTime {
        curve: Curve,
    },
    At {
        curve: Curve,
        t_s: f64,
    },
    /// The model's curve against .NET's, normalised by the range of .NET's.
    Nrmse {
        curve: Curve,
    },
    Completed,
    Dropped,
    Failed,
    /// Seconds from the load's start to its end (a burst: the last answer).
    LoadEnd,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Peak { curve } => write!(f, "{}: peak", curve.label()),
            Metric::PeakTime { curve } => write!(f, "{}: time of peak (s)", curve.label()),
            Metric::At { curve, t_s } => write!(f, "{} at {t_s} s", curve.label()),
            Metric::Nrmse { curve } => write!(f, "{}: NRMSE vs .NET", curve.label()),
            Metric::Completed => f.write_str("completed (200)"),
            Metric::Dropped => f.write_str("dropped (no free VU)"),
            Metric::Failed => f.write_str("failed (errors, timeouts, cut)"),
            Metric::LoadEnd => f.write_str("load end (s)"),
        }
    }
}

/// Issue 28's goal for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The model's mean within ± this percent of .NET's (equal when .NET's is 0).
    WithinPercent(f64),
    /// The model's mean at most this.
    AtMost(f64),
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Goal::WithinPercent(p) => write!(f, "±{p} %"),
            Goal::AtMost(x) => write!(f, "≤ {x}"),
        }
    }
}

impl Goal {
    fn met(self, dotnet: Option<f64>, model: f64) -> Option<bool> {
        match self {
            Goal::AtMost(x) => Some(model <= x),
            Goal::WithinPercent(p) => {
                let d = dotnet?;
                Some(if d == 0.0 {
                    model == 0.0
                } else {
                    (model - d).abs() <= p / 100.0 * d.abs() + 1e-9
                })
            }
        }
    }
}

/// The goal of a metric (issue 28), if it has one.
pub fn goal(metric: Metric) -> Option<Goal> {
    match metric {
        Metric::Nrmse { curve: Curve::Busy } => Some(Goal::AtMost(0.15)),
        Metric::At {
            curve: Curve::Busy, ..
        } => Some(Goal::WithinPercent(20.0)),
        Metric::Peak {
            curve: Curve::Queue,
        } => Some(Goal::WithinPercent(30.0)),
        Metric::Peak { curve: Curve::P99 } => Some(Goal::WithinPercent(20.0)),
        Metric::Completed | Metric::Dropped => Some(Goal::WithinPercent(10.0)),
        _ => None,
    }
}

/// One side's value over the runs that have one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    /// The 95 % percentile-bootstrap interval of the mean (the value itself for one run).
    pub lo: f64,
    pub hi: f64,
    /// Runs that had a value.
    pub n: usize,
}

impl Estimate {
    pub fn of(values: &[f64]) -> Option<Estimate> {
        let m = mean(values)?;
        let (lo, hi) = bootstrap_mean_ci(values, RESAMPLES, LEVEL, BOOTSTRAP_SEED)?;
        Some(Estimate {
            mean: m,
            lo,
            hi,
            n: values.len(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub metric: Metric,
    /// `metric` as the table shows it.
    pub label: String,
    pub dotnet: Option<Estimate>,
    pub model: Option<Estimate>,
    /// Model mean over .NET mean.
    pub ratio: Option<f64>,
    pub goal: Option<Goal>,
    pub within_goal: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub runs: usize,
    /// Seconds after the load started.
    pub checkpoints_s: Vec<f64>,
    pub rows: Vec<Row>,
}

impl Summary {
    pub fn get(&self, metric: Metric) -> Option<&Row> {
        self.rows.iter().find(|r| r.metric == metric)
    }

    /// The goals met and the goals with a verdict.
    pub fn goals_met(&self) -> (usize, usize) {
        let judged = self.rows.iter().filter_map(|r| r.within_goal);
        let (met, all) = judged.fold((0, 0), |(m, a), ok| (m + usize::from(ok), a + 1));
        (met, all)
    }
}

/// One .NET run and the model run after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPair {
    /// 1-based.
    pub run: u32,
    pub dotnet: SideRun,
    pub model: SideRun,
}

/// `run`'s curve over `len` seconds: after the run's last point the pool is idle (the run was
/// read until busy and queue were 0), so busy and queue are 0 there and the thread count stays
/// at its last reading; latency has no value there.
pub fn extended(run: &SideRun, curve: Curve, len: usize) -> Vec<(f64, f64)> {
    let mut c = run.curve(|p| curve.value(p));
    if curve.is_latency() {
        return c;
    }
    let hold = match curve {
        Curve::Threads => c.last().map_or(0.0, |p| p.1),
        _ => 0.0,
    };
    c.extend((run.points.len()..len).map(|k| (k as f64, hold)));
    c
}

/// The value of `curve` at second `t`, if it has one there.
pub fn at(curve: &[(f64, f64)], t: f64) -> Option<f64> {
    curve.iter().find(|p| p.0 == t).map(|p| p.1)
}

/// Max minus min of a curve's values.
fn range(curve: &[(f64, f64)]) -> f64 {
    let (lo, hi) = curve
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if lo.is_finite() { hi - lo } else { 0.0 }
}

/// The model's NRMSE against .NET over the seconds both have, normalised by .NET's range
/// (`None` when .NET's curve is flat or they share no second).
pub fn nrmse_vs_dotnet(model: &[(f64, f64)], dotnet: &[(f64, f64)]) -> Option<f64> {
    nrmse(model, dotnet, range(dotnet))
}

/// One pair's value of `metric` on each side (`(dotnet, model)`).
fn pair_values(pair: &RunPair, metric: Metric) -> (Option<f64>, Option<f64>) {
    let len = pair.dotnet.points.len().max(pair.model.points.len());
    let both = |curve: Curve| {
        (
            extended(&pair.dotnet, curve, len),
            extended(&pair.model, curve, len),
        )
    };
    let totals = |f: fn(&super::side::Totals) -> u64| {
        (
            Some(f(&pair.dotnet.totals) as f64),
            Some(f(&pair.model.totals) as f64),
        )
    };
    match metric {
        Metric::Peak { curve } => {
            let (d, m) = both(curve);
            (peak(&d).map(|p| p.1), peak(&m).map(|p| p.1))
        }
        Metric::PeakTime { curve } => {
            let (d, m) = both(curve);
            (peak(&d).map(|p| p.0), peak(&m).map(|p| p.0))
        }
        Metric::At { curve, t_s } => {
            let (d, m) = both(curve);
            (at(&d, t_s), at(&m, t_s))
        }
        Metric::Nrmse { curve } => {
            let (d, m) = both(curve);
            (None, nrmse_vs_dotnet(&m, &d))
        }
        Metric::Completed => totals(|t| t.completed),
        Metric::Dropped => totals(|t| t.dropped),
        Metric::Failed => totals(|t| t.failed),
        Metric::LoadEnd => (Some(pair.dotnet.load_s), Some(pair.model.load_s)),
    }
}

/// The rows of a comparison with these checkpoints (seconds after the load started).
pub fn metrics(checkpoints_s: &[f64]) -> Vec<Metric> {
    let mut all = Vec::new();
    for curve in Curve::ALL {
        all.push(Metric::Peak { curve });
        all.push(Metric::PeakTime { curve });
        all.extend(checkpoints_s.iter().map(|&t_s| Metric::At { curve, t_s }));
        all.push(Metric::Nrmse { curve });
    }
    all.extend([
        Metric::Completed,
        Metric::Dropped,
        Metric::Failed,
        Metric::LoadEnd,
    ]);
    all
}

/// Every metric over the runs: each side's mean and interval, the ratio, the goal.
pub fn summarize(runs: &[RunPair], checkpoints: &Checkpoints) -> Summary {
    let lengths: Vec<f64> = runs.iter().map(|p| p.dotnet.load_s).collect();
    let checkpoints_s = checkpoints.resolve(&lengths);
    let rows = metrics(&checkpoints_s)
        .into_iter()
        .map(|metric| {
            let (mut d, mut m) = (Vec::new(), Vec::new());
            for pair in runs {
                let (dv, mv) = pair_values(pair, metric);
                d.extend(dv);
                m.extend(mv);
            }
            let (dotnet, model) = (Estimate::of(&d), Estimate::of(&m));
            let ratio = match (dotnet, model) {
                (Some(d), Some(m)) if d.mean != 0.0 => Some(m.mean / d.mean),
                _ => None,
            };
            let goal = goal(metric);
            let within_goal = goal
                .zip(model)
                .and_then(|(g, m)| g.met(dotnet.map(|d| d.mean), m.mean));
            Row {
                metric,
                label: metric.to_string(),
                dotnet,
                model,
                ratio,
                goal,
                within_goal,
            }
        })
        .collect();
    Summary {
        runs: runs.len(),
        checkpoints_s,
        rows,
    }
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
