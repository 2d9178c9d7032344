//! What `aggregate` computed, as `summary.json` (these types, serialised) and `summary.md`.

use super::load::LeftOut;
use crate::results::fsutil::py_float;
use crate::results::metrics;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Statistics of one offset slot across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotStats {
    pub offset_s: f64,
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p5: f64,
    pub p95: f64,
}

/// Peak and mean of a mean curve, and the spread of the runs' own peaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveStats {
    pub runs: usize,
    /// Peak of the per-offset mean curve.
    pub peak: f64,
    pub peak_at_s: f64,
    pub mean: f64,
    /// Quartiles of each run's own peak.
    pub run_peak_p25: f64,
    pub run_peak_median: f64,
    pub run_peak_p75: f64,
}

/// The median of per-pair differences (scaled − baseline) with a bootstrap 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    pub pairs: usize,
    pub median: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub metric: String,
    pub file_stem: String,
    pub combine: metrics::Combine,
    pub baseline: Option<CurveStats>,
    pub scaled: Option<CurveStats>,
    /// Per pair: peak of the scaled run − peak of the baseline run.
    pub paired_peak_diff: Option<PairedDiff>,
    /// Per pair: mean of the scaled run − mean of the baseline run.
    pub paired_mean_diff: Option<PairedDiff>,
    /// NaN/±Inf samples skipped, over all runs.
    pub nonfinite_skipped: usize,
    /// Runs in which a replica's second series (direct scrape beside the Pushgateway's) was
    /// dropped.
    pub runs_with_duplicate_series: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub baseline_peak_s: f64,
    pub scaled_peak_s: f64,
    /// (baseline − scaled) / baseline × 100, on the peaks of the mean p99 curves.
    pub peak_reduction_pct: f64,
    pub baseline_mean_s: f64,
    pub scaled_mean_s: f64,
    pub mean_reduction_pct: f64,
}

/// Requests per run (last value of each cumulative counter), averaged and summed over runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RequestSummary {
    pub runs: usize,
    pub total_mean: Option<f64>,
    pub failed_mean: Option<f64>,
    pub failed_sum: Option<f64>,
    pub runs_with_failures: usize,
    pub dropped_mean: Option<f64>,
    pub dropped_sum: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleEventSummary {
    pub scaled_runs: usize,
    pub runs_with_event: usize,
    pub first_scale_min_s: Option<f64>,
    pub first_scale_median_s: Option<f64>,
    pub first_scale_max_s: Option<f64>,
    /// (pair, seconds from run start to its first scale event).
    pub per_run: Vec<(u32, f64)>,
    /// Every scale event of every scaled run, seconds from its run's start, sorted.
    pub events_s: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unplaced {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything `aggregate` computed; written as `summary.json` and rendered as `summary.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub runs_dir: PathBuf,
    pub step_s: f64,
    pub baseline_runs: usize,
    pub scaled_runs: usize,
    pub complete_pairs: usize,
    pub bootstrap_resamples: usize,
    pub bootstrap_seed: u64,
    pub metrics: Vec<MetricSummary>,
    pub p99_latency: Option<LatencySummary>,
    pub requests_baseline: RequestSummary,
    pub requests_scaled: RequestSummary,
    pub scale_events: ScaleEventSummary,
    /// Earliest to latest first scale event across scaled runs (the figures' grey band).
    pub scale_window_s: Option<(f64, f64)>,
    pub unplaced: Vec<Unplaced>,
    /// Files read but not used, and why.
    pub left_out: Vec<LeftOut>,
}

/// The paper's mean dataset: `timestamp,value`.
pub fn mean_csv(slots: &[SlotStats]) -> String {
    let mut s = String::from("timestamp,value\n");
    for x in slots {
        s.push_str(&format!("{},{}\n", py_float(x.offset_s), py_float(x.mean)));
    }
    s
}

/// The extended dataset: `timestamp,n,mean,median,p5,p95`.
pub fn stats_csv(slots: &[SlotStats]) -> String {
    let mut s = String::from("timestamp,n,mean,median,p5,p95\n");
    for x in slots {
        s.push_str(&format!(
            "{},{},{},{},{},{}\n",
            py_float(x.offset_s),
            x.n,
            py_float(x.mean),
            py_float(x.median),
            py_float(x.p5),
            py_float(x.p95)
        ));
    }
    s
}

fn f(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn diff_cell(d: &Option<PairedDiff>) -> String {
    match d {
        Some(d) => format!("{:+.2} [{:+.2}, {:+.2}]", d.median, d.ci95_low, d.ci95_high),
        None => "–".into(),
    }
}

fn run_peaks(c: &Option<CurveStats>) -> String {
    match c {
        Some(c) => format!(
            "{:.2} [{:.2}–{:.2}]",
            c.run_peak_median, c.run_peak_p25, c.run_peak_p75
        ),
        None => "–".into(),
    }
}

/// `summary.md`.
pub fn render_markdown(s: &Summary) -> String {
    let mut m = String::new();
    m.push_str("# Results summary\n\n");
    m.push_str(&format!(
        "Runs in `{}`: {} baseline, {} scaled, {} complete pairs; step {} s. Paired differences are scaled − baseline per pair, median with a bootstrap 95 % interval ({} resamples, seed {}).\n\n",
        s.runs_dir.display(),
        s.baseline_runs,
        s.scaled_runs,
        s.complete_pairs,
        s.step_s,
        s.bootstrap_resamples,
        s.bootstrap_seed
    ));
    if let Some(l) = &s.p99_latency {
        m.push_str(&format!(
            "**p99 latency**: peak of the mean curve {:.2} s baseline → {:.2} s scaled ({:.1} % lower); mean {:.2} s → {:.2} s ({:.1} % lower).\n\n",
            l.baseline_peak_s, l.scaled_peak_s, l.peak_reduction_pct, l.baseline_mean_s, l.scaled_mean_s, l.mean_reduction_pct
        ));
    }
    m.push_str("Peaks are of the per-offset mean curve; run peaks are the median [p25–p75] of each run's own peak.\n\n");
    m.push_str("| metric | combine | baseline peak | scaled peak | baseline run peaks | scaled run peaks | baseline mean | scaled mean | Δ peak (median [95 % CI]) | Δ mean (median [95 % CI]) |\n");
    m.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for x in &s.metrics {
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            x.metric,
            x.combine.describe(),
            f(x.baseline.as_ref().map(|c| c.peak)),
            f(x.scaled.as_ref().map(|c| c.peak)),
            run_peaks(&x.baseline),
            run_peaks(&x.scaled),
            f(x.baseline.as_ref().map(|c| c.mean)),
            f(x.scaled.as_ref().map(|c| c.mean)),
            diff_cell(&x.paired_peak_diff),
            diff_cell(&x.paired_mean_diff),
        ));
    }
    m.push_str("\n## Requests per run\n\n| | runs | total (mean) | failed (mean) | failed (sum) | runs with failures | dropped (mean) | dropped (sum) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, r) in [
        ("baseline", &s.requests_baseline),
        ("scaled", &s.requests_scaled),
    ] {
        m.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.runs,
            f(r.total_mean),
            f(r.failed_mean),
            f(r.failed_sum),
            r.runs_with_failures,
            f(r.dropped_mean),
            f(r.dropped_sum)
        ));
    }
    let e = &s.scale_events;
    m.push_str(&format!(
        "\n## Scale events\n\n{} of {} scaled runs recorded a scale event ({} events in all). Time to the first one: min {} s, median {} s, max {} s.\n",
        e.runs_with_event,
        e.scaled_runs,
        e.events_s.len(),
        f(e.first_scale_min_s),
        f(e.first_scale_median_s),
        f(e.first_scale_max_s)
    ));
    m.push_str(&data_rules_markdown(s));
    if !s.unplaced.is_empty() {
        m.push_str("\n## Runs not used\n\n");
        for u in &s.unplaced {
            m.push_str(&format!("- `{}`: {}\n", u.path.display(), u.reason));
        }
    }
    m
}

/// How the data was read: the rules that changed what was counted, with their counts.
fn data_rules_markdown(s: &Summary) -> String {
    let mut m = String::from("\n## How the data was read\n\n");
    m.push_str("- Inside one series a timestamp counts once (its last sample); a counter's value in a step is its last sample, never a sum.\n");
    let dup: Vec<String> = s
        .metrics
        .iter()
        .filter(|x| x.runs_with_duplicate_series > 0)
        .map(|x| format!("{} ({} runs)", x.metric, x.runs_with_duplicate_series))
        .collect();
    if dup.is_empty() {
        m.push_str("- No replica was reported twice.\n");
    } else {
        m.push_str(&format!(
            "- One replica reported through two paths (the Pushgateway's series and the direct scrape's) counts once, the Pushgateway's sample winning: {}.\n",
            dup.join(", ")
        ));
    }
    let nonfinite: usize = s.metrics.iter().map(|x| x.nonfinite_skipped).sum();
    m.push_str(&format!(
        "- NaN and ±Inf samples are skipped: {nonfinite} skipped.\n"
    ));
    if s.left_out.is_empty() {
        m.push_str("- No file was left out.\n");
    } else {
        m.push_str(&format!("- {} files left out:\n", s.left_out.len()));
        for l in &s.left_out {
            m.push_str(&format!("  - `{}`: {}\n", l.run.display(), l.reason));
        }
    }
    m
}
