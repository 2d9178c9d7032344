//! The fidelity goals: six figures of ours beside the paper's raw value and the range we aim
//! for (±30 % of the paper's peaks, first scale inside the paper's 15–50 s, p99-peak ratio
//! within ±0.1 of the paper's), each with a percentile-bootstrap 95 % interval over the runs.
//! A peak is the peak of the mean curve, as the paper's are, so a resample is a set of runs
//! drawn with replacement whose mean curve is rebuilt and its peak taken.

use serde::Serialize;

use crate::results::aggregate::{RunData, load_run, slot_stats};
use crate::results::metrics as m;
use crate::results::runmeta::{Pairs, Role};
use crate::results::stats::{self, BOOTSTRAP_SEED, SplitMix64, peak};

/// The offsets of the mean curves (the aggregate's step).
const STEP_S: f64 = 5.0;
const RESAMPLES: usize = 2000;
/// The paper's first scale events in its raw data: the range most fall in, and the median.
const PAPER_FIRST_SCALE_S: (f64, f64, f64) = (15.0, 35.0, 50.0);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    pub what: String,
    /// Ours over all runs; `None` when the runs lack the metric.
    pub ours: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    pub paper: f64,
    pub target_low: f64,
    pub target_high: f64,
    pub met: Option<bool>,
}

impl Goal {
    fn new(
        what: &str,
        ours: Option<f64>,
        ci95: Option<(f64, f64)>,
        paper: f64,
        range: (f64, f64),
    ) -> Goal {
        Goal {
            what: what.into(),
            ours,
            ci95,
            paper,
            target_low: range.0,
            target_high: range.1,
            met: ours.map(|v| range.0 <= v && v <= range.1),
        }
    }
}

fn mean_peak(runs: &[&RunData], metric: &str) -> Option<f64> {
    let curve: Vec<(f64, f64)> = slot_stats(runs, metric, STEP_S)
        .iter()
        .map(|s| (s.offset_s, s.mean))
        .collect();
    peak(&curve).map(|p| p.1)
}

/// Percentile 95 % interval of `stat` over resamples of both roles' runs.
fn bootstrap(
    base: &[RunData],
    scaled: &[RunData],
    stat: impl Fn(&[&RunData], &[&RunData]) -> Option<f64>,
) -> Option<(f64, f64)> {
    stats::bootstrap_ci(RESAMPLES, 0.95, BOOTSTRAP_SEED, |rng| {
        stat(&draw(rng, base), &draw(rng, scaled))
    })
}

fn draw<'a>(rng: &mut SplitMix64, runs: &'a [RunData]) -> Vec<&'a RunData> {
    (0..runs.len())
        .map(|_| &runs[rng.index(runs.len())])
        .collect()
}

fn all(runs: &[RunData]) -> Vec<&RunData> {
    runs.iter().collect()
}

fn load(pairs: &Pairs, role: Role) -> anyhow::Result<Vec<RunData>> {
    pairs
        .runs(role)
        .into_iter()
        .map(|r| Ok(load_run(r, STEP_S)?))
        .collect()
}

/// The goals for the runs in `pairs`.
pub fn goals(pairs: &Pairs) -> anyhow::Result<Vec<Goal>> {
    let (base, scaled) = (load(pairs, Role::Baseline)?, load(pairs, Role::Scaled)?);
    let paper_peak = |role, metric| -> anyhow::Result<f64> {
        let curve = super::paper_curve(role, metric)?;
        Ok(peak(&curve).map(|p| p.1).unwrap_or(f64::NAN))
    };
    let within_30 = |v: f64| (v * 0.7, v * 1.3);
    let mut out = Vec::new();
    for (what, role, metric) in [
        (
            "baseline queue-length peak",
            Role::Baseline,
            m::QUEUE_LENGTH,
        ),
        (
            "baseline p99 peak (s)",
            Role::Baseline,
            m::REQUEST_DURATION_P99,
        ),
        ("scaled p99 peak (s)", Role::Scaled, m::REQUEST_DURATION_P99),
        (
            "baseline busy-thread peak",
            Role::Baseline,
            m::BUSY_WORKER_THREADS,
        ),
    ] {
        let runs = if role == Role::Baseline {
            &base
        } else {
            &scaled
        };
        let ours = mean_peak(&all(runs), metric);
        let ci = bootstrap(&base, &scaled, |b, s| {
            mean_peak(if role == Role::Baseline { b } else { s }, metric)
        });
        let paper = paper_peak(role, metric)?;
        out.push(Goal::new(what, ours, ci, paper, within_30(paper)));
    }

    let firsts: Vec<f64> = scaled.iter().filter_map(|r| r.first_scale_s).collect();
    let (lo, median, hi) = PAPER_FIRST_SCALE_S;
    out.push(Goal::new(
        "first scale, median over runs (s)",
        stats::median(&firsts),
        stats::bootstrap_median_ci(&firsts, RESAMPLES, 0.95, BOOTSTRAP_SEED),
        median,
        (lo, hi),
    ));

    let ratio = |b: &[&RunData], s: &[&RunData]| {
        let b = mean_peak(b, m::REQUEST_DURATION_P99).filter(|v| *v > 0.0)?;
        Some(mean_peak(s, m::REQUEST_DURATION_P99)? / b)
    };
    let paper_ratio = paper_peak(Role::Scaled, m::REQUEST_DURATION_P99)?
        / paper_peak(Role::Baseline, m::REQUEST_DURATION_P99)?;
    out.push(Goal::new(
        "scaled / baseline p99 peak",
        ratio(&all(&base), &all(&scaled)),
        bootstrap(&base, &scaled, ratio),
        paper_ratio,
        (paper_ratio - 0.1, paper_ratio + 0.1),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(role: Role, p99: &[f64]) -> RunData {
        let mut aligned = BTreeMap::new();
        aligned.insert(
            m::REQUEST_DURATION_P99,
            p99.iter()
                .enumerate()
                .map(|(i, v)| (i as f64 * STEP_S, *v))
                .collect(),
        );
        RunData {
            dir: "x".into(),
            role,
            pair: 1,
            aligned,
            first_scale_s: None,
            scale_events_s: Vec::new(),
            left_out: Vec::new(),
            nonfinite: BTreeMap::new(),
            duplicate_series: BTreeMap::new(),
        }
    }

    #[test]
    fn a_resample_rebuilds_the_mean_curve_before_taking_its_peak() {
        // Peaks at different offsets: the mean curve's peak (6) is below the mean of the
        // run peaks (10), and every resample's peak lies between 6 and 10.
        let base = vec![
            run(Role::Baseline, &[10.0, 2.0]),
            run(Role::Baseline, &[2.0, 10.0]),
        ];
        let all: Vec<&RunData> = base.iter().collect();
        assert_eq!(mean_peak(&all, m::REQUEST_DURATION_P99), Some(6.0));
        let (lo, hi) = bootstrap(&base, &[], |b, _| mean_peak(b, m::REQUEST_DURATION_P99)).unwrap();
        assert_eq!((lo, hi), (6.0, 10.0));
        // A ratio needs both roles; with no scaled runs there is none.
        assert_eq!(
            bootstrap(&base, &[], |_, s| mean_peak(s, m::REQUEST_DURATION_P99)),
            None
        );
    }

    #[test]
    fn a_goal_is_met_inside_its_range_only() {
        let g = Goal::new("x", Some(13.0), None, 10.0, (7.0, 13.0));
        assert_eq!(g.met, Some(true));
        assert_eq!(
            Goal::new("x", Some(13.1), None, 10.0, (7.0, 13.0)).met,
            Some(false)
        );
        assert_eq!(Goal::new("x", None, None, 10.0, (7.0, 13.0)).met, None);
    }
}
