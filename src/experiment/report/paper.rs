//! The paper's numbers, two ways: the headline of its published mean curves, and what its
//! published raw exports (98 pairs) say when our own `aggregate` reads them — embedded from
//! `assets/paper-raw-summary.json` (regenerate with `scripts/paper-raw-summary.sh`). The two
//! differ: the published curves cannot be re-derived from the exports.

use serde::Serialize;

use crate::results::aggregate::Summary;
use crate::results::runmeta::Role;

/// The paper's headline (its published 100-run mean curves).
pub const PAPER_BASELINE_P99_S: f64 = 64.0;
pub const PAPER_BASELINE_QUEUE_PEAK: f64 = 48.0;
pub const PAPER_SCALED_P99_S: f64 = 2.6;
pub const PAPER_SCALED_QUEUE_PEAK: f64 = 25.0;

/// `starvation aggregate` over `paper-raw/paired_metric_exports`.
pub const RAW_SUMMARY_JSON: &str = include_str!("../../../assets/paper-raw-summary.json");

/// One side (baseline or scaled) of the paper's raw data.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct RawSide {
    pub runs: usize,
    /// Peak of the per-offset mean p99 curve.
    pub p99_peak_s: f64,
    /// Median of the runs' own p99 peaks.
    pub p99_run_peak_median_s: f64,
    pub queue_peak: f64,
    pub busy_peak: f64,
    pub threads_peak: f64,
    pub total_requests_mean: f64,
    pub failed_requests_mean: f64,
}

/// The paper's raw data as our aggregate reads it.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct RawNumbers {
    pub complete_pairs: usize,
    pub baseline: RawSide,
    pub scaled: RawSide,
    pub runs_with_scale_event: usize,
    pub first_scale_median_s: f64,
    pub first_scale_min_s: f64,
    pub first_scale_max_s: f64,
    /// Files the aggregate left out (overwritten p99 exports), with the reason.
    pub left_out: Vec<String>,
}

fn side(s: &Summary, role: Role) -> Option<RawSide> {
    use crate::results::metrics as m;
    let curve = |name: &str| {
        let x = s.metrics.iter().find(|x| x.metric == name)?;
        match role {
            Role::Baseline => x.baseline.as_ref(),
            Role::Scaled => x.scaled.as_ref(),
        }
    };
    let (runs, requests) = match role {
        Role::Baseline => (s.baseline_runs, &s.requests_baseline),
        Role::Scaled => (s.scaled_runs, &s.requests_scaled),
    };
    let p99 = curve(m::REQUEST_DURATION_P99)?;
    Some(RawSide {
        runs,
        p99_peak_s: p99.peak,
        p99_run_peak_median_s: p99.run_peak_median,
        queue_peak: curve(m::QUEUE_LENGTH)?.peak,
        busy_peak: curve(m::BUSY_WORKER_THREADS)?.peak,
        threads_peak: curve(m::PROCESS_THREADS)?.peak,
        total_requests_mean: requests.total_mean?,
        failed_requests_mean: requests.failed_mean?,
    })
}

/// Read an aggregate `summary.json` into the numbers the report shows.
pub fn raw_numbers(summary_json: &str) -> anyhow::Result<RawNumbers> {
    let s: Summary = serde_json::from_str(summary_json)?;
    let e = &s.scale_events;
    let parsed = (|| {
        Some(RawNumbers {
            complete_pairs: s.complete_pairs,
            baseline: side(&s, Role::Baseline)?,
            scaled: side(&s, Role::Scaled)?,
            runs_with_scale_event: e.runs_with_event,
            first_scale_median_s: e.first_scale_median_s?,
            first_scale_min_s: e.first_scale_min_s?,
            first_scale_max_s: e.first_scale_max_s?,
            // `pair_N/<run>`: the last two parts of each left-out run's path.
            left_out: s
                .left_out
                .iter()
                .filter_map(|l| {
                    let mut parts = l.run.iter().rev();
                    let run = parts.next()?.to_string_lossy();
                    let pair = parts.next()?.to_string_lossy();
                    Some(format!("{pair}/{run}"))
                })
                .collect(),
        })
    })();
    parsed.ok_or_else(|| {
        anyhow::anyhow!("an aggregate summary without the p99, queue, threads or scale events")
    })
}

/// The embedded raw-data numbers.
pub fn paper_raw() -> RawNumbers {
    raw_numbers(RAW_SUMMARY_JSON).expect("assets/paper-raw-summary.json is an aggregate summary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_raw_summary_reads_and_differs_from_the_headline() {
        let raw = paper_raw();
        assert_eq!(raw.complete_pairs, 96);
        // Six overwritten p99 files (pairs 101–103) were left out.
        assert_eq!(raw.left_out.len(), 6, "{:?}", raw.left_out);
        assert!(raw.left_out.iter().all(|l| l.starts_with("pair_10")));
        // One series per replica: busy threads were doubled before (peak 121).
        assert!(raw.baseline.busy_peak < 70.0, "{raw:?}");
        // The published headline cannot be re-derived from the exports.
        assert!(
            raw.baseline.p99_peak_s < PAPER_BASELINE_P99_S / 2.0,
            "{raw:?}"
        );
        assert!(raw.scaled.p99_peak_s > PAPER_SCALED_P99_S * 2.0, "{raw:?}");
    }
}
