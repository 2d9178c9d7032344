//! `starvation aggregate`: find runs, pair each baseline with its scaled run, align samples by
//! offset from each run's first sample at the step, and write the paper's mean datasets
//! (`<name>_export_mean_values.csv`, `timestamp,value`), extended statistics
//! (`<name>_export_stats.csv`, `timestamp,n,mean,median,p5,p95`) and a summary (`summary.json`,
//! `summary.md`).

use super::ResultsError;
use super::fsutil::{ensure_dir, py_float, write_atomic};
use super::metrics::{self, Kind, METRICS, MetricSpec, combine_series};
use super::promjson::read_export;
use super::runmeta::{self, Pairs, Role, RunDir};
use super::stats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pair runs and compute mean datasets and a summary.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AGGREGATE_AFTER_HELP)]
pub struct AggregateOpts {
    /// Directory holding the runs: `pair_N/<run>/` (the paper's layout) or run directories with
    /// a `run.json`, at most three levels down.
    #[arg(long)]
    pub runs: PathBuf,
    /// Output directory: baseline/ and scaled/ mean datasets, summary.json, summary.md.
    #[arg(long)]
    pub out: PathBuf,
    /// Alignment step: each sample goes to the nearest multiple of STEP after the run's first.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Bootstrap resamples for the 95 % interval of the median paired difference.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Bootstrap seed (fixed by default, so summaries are reproducible).
    #[arg(long, default_value_t = stats::BOOTSTRAP_SEED)]
    pub seed: u64,
}

const AGGREGATE_AFTER_HELP: &str = "Pairing: a run directory with run.json is placed by its role and pair; \
otherwise in pair_N/ the run with a non-empty Scale_event_export.json is the scaled one, and when that \
does not decide, folder order does (first = baseline). Means use every run of a role; paired \
differences use complete pairs only. Series of several replicas are first combined per metric as \
`starvation export --help` lists.";

/// One run's combined, aligned series.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub role: Role,
    pub pair: u32,
    /// readable metric name → (offset_s, value), sorted by offset.
    pub aligned: BTreeMap<&'static str, Vec<(f64, f64)>>,
    /// Seconds from the run's reference start to its first scale event.
    pub first_scale_s: Option<f64>,
}

/// Align a combined series: offset = step × round((t − t₀) / step), t₀ its first sample. Two
/// samples landing in one slot keep the later one.
pub fn align(points: &[(f64, f64)], step: f64) -> Vec<(f64, f64)> {
    let Some(&(t0, _)) = points.first() else {
        return Vec::new();
    };
    let mut slots: BTreeMap<i64, f64> = BTreeMap::new();
    for &(t, v) in points {
        slots.insert(((t - t0) / step).round() as i64, v);
    }
    slots
        .into_iter()
        .map(|(k, v)| (k as f64 * step, v))
        .collect()
}

fn find_file(dir: &Path, spec: &MetricSpec) -> Option<PathBuf> {
    spec.stems()
        .into_iter()
        .map(|s| dir.join(format!("{s}_export.json")))
        .find(|p| p.exists())
}

/// Read and align every metric of one run.
pub fn load_run(run: &RunDir, step: f64) -> Result<RunData, ResultsError> {
    let mut aligned = BTreeMap::new();
    let mut raw: BTreeMap<&'static str, Vec<(f64, f64)>> = BTreeMap::new();
    for spec in METRICS {
        let Some(path) = find_file(&run.path, spec) else {
            continue;
        };
        let resp = read_export(&path)?;
        let combined = combine_series(resp.series().unwrap_or(&[]), spec.combine);
        aligned.insert(spec.readable, align(&combined, step));
        raw.insert(spec.readable, combined);
    }
    // Reference start for scale events: run.json's start; else the first queue-length sample
    // (the metric the alert watches); else the earliest first sample of any gauge.
    let t0 = run
        .meta
        .as_ref()
        .map(|m| m.start.timestamp_millis() as f64 / 1000.0)
        .or_else(|| {
            raw.get(metrics::QUEUE_LENGTH)
                .and_then(|v| v.first())
                .map(|p| p.0)
        })
        .or_else(|| {
            METRICS
                .iter()
                .filter(|m| m.kind == Kind::Gauge)
                .filter_map(|m| raw.get(m.readable)?.first().map(|p| p.0))
                .min_by(|a, b| a.total_cmp(b))
        });
    let first_event = match run.meta.as_ref().filter(|m| !m.scale_events.is_empty()) {
        Some(m) => m
            .scale_events
            .iter()
            .map(|e| e.at.timestamp_millis() as f64 / 1000.0)
            .min_by(|a, b| a.total_cmp(b)),
        None => raw
            .get(metrics::SCALE_EVENT)
            .and_then(|v| v.iter().find(|p| p.1 > 0.0))
            .map(|p| p.0),
    };
    let first_scale_s = match (first_event, t0) {
        (Some(e), Some(t0)) => Some(e - t0),
        _ => None,
    };
    Ok(RunData {
        dir: run.path.clone(),
        role: run.role,
        pair: run.pair,
        aligned,
        first_scale_s,
    })
}

/// Statistics of one offset slot across runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotStats {
    pub offset_s: f64,
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p5: f64,
    pub p95: f64,
}

/// Per offset, the statistics of `metric` across `runs` (runs lacking a slot do not count in it).
pub fn slot_stats(runs: &[&RunData], metric: &str, step: f64) -> Vec<SlotStats> {
    let mut by_slot: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in runs {
        if let Some(points) = r.aligned.get(metric) {
            for &(off, v) in points {
                by_slot
                    .entry((off / step).round() as i64)
                    .or_default()
                    .push(v);
            }
        }
    }
    by_slot
        .into_iter()
        .map(|(k, mut vals)| {
            vals.sort_by(|a, b| a.total_cmp(b));
            SlotStats {
                offset_s: k as f64 * step,
                n: vals.len(),
                mean: stats::mean(&vals).unwrap_or(f64::NAN),
                median: stats::quantile_sorted(&vals, 0.5),
                p5: stats::quantile_sorted(&vals, 0.05),
                p95: stats::quantile_sorted(&vals, 0.95),
            }
        })
        .collect()
}

/// Peak and mean of a mean curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveStats {
    pub runs: usize,
    pub peak: f64,
    pub peak_at_s: f64,
    pub mean: f64,
}

fn curve_stats(slots: &[SlotStats], runs: usize) -> Option<CurveStats> {
    let best = slots.iter().max_by(|a, b| a.mean.total_cmp(&b.mean))?;
    Some(CurveStats {
        runs,
        peak: best.mean,
        peak_at_s: best.offset_s,
        mean: slots.iter().map(|s| s.mean).sum::<f64>() / slots.len() as f64,
    })
}

/// The median of per-pair differences (scaled − baseline) with a bootstrap 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedDiff {
    pub pairs: usize,
    pub median: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

fn paired_diff(diffs: &[f64], resamples: usize, seed: u64) -> Option<PairedDiff> {
    let median = stats::median(diffs)?;
    let (lo, hi) = stats::bootstrap_median_ci(diffs, resamples, 0.95, seed)?;
    Some(PairedDiff {
        pairs: diffs.len(),
        median,
        ci95_low: lo,
        ci95_high: hi,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RequestSummary {
    pub runs: usize,
    pub total_mean: Option<f64>,
    pub failed_mean: Option<f64>,
    pub failed_sum: Option<f64>,
    pub runs_with_failures: usize,
    pub dropped_mean: Option<f64>,
    pub dropped_sum: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleEventSummary {
    pub scaled_runs: usize,
    pub runs_with_event: usize,
    pub first_scale_min_s: Option<f64>,
    pub first_scale_median_s: Option<f64>,
    pub first_scale_max_s: Option<f64>,
    /// (pair, seconds from run start to its first scale event).
    pub per_run: Vec<(u32, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unplaced {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything `aggregate` computed; written as `summary.json` and rendered as `summary.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

fn last_value(r: &RunData, metric: &str) -> Option<f64> {
    r.aligned
        .get(metric)
        .map(|v| v.last().map(|p| p.1).unwrap_or(0.0))
}

fn request_summary(runs: &[&RunData]) -> RequestSummary {
    let collect = |m: &str| -> Vec<f64> { runs.iter().filter_map(|r| last_value(r, m)).collect() };
    let total = collect(metrics::TOTAL_REQUESTS);
    let failed = collect(metrics::FAILED_REQUESTS);
    let dropped = collect(metrics::DROPPED_ITERATIONS);
    let sum = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>());
    RequestSummary {
        runs: runs.len(),
        total_mean: stats::mean(&total),
        failed_mean: stats::mean(&failed),
        failed_sum: sum(&failed),
        runs_with_failures: failed.iter().filter(|&&f| f > 0.0).count(),
        dropped_mean: stats::mean(&dropped),
        dropped_sum: sum(&dropped),
    }
}

fn reduction(b: f64, s: f64) -> f64 {
    if b == 0.0 { 0.0 } else { (b - s) / b * 100.0 }
}

/// Aggregate all runs under `runs_dir` into `out_dir` and return the summary.
pub fn aggregate(runs_dir: &Path, out_dir: &Path) -> Result<Summary, ResultsError> {
    aggregate_with(
        runs_dir,
        out_dir,
        Duration::from_secs(5),
        2000,
        stats::BOOTSTRAP_SEED,
    )
}

/// [`aggregate`] with every knob.
pub fn aggregate_with(
    runs_dir: &Path,
    out_dir: &Path,
    step: Duration,
    resamples: usize,
    seed: u64,
) -> Result<Summary, ResultsError> {
    let step_s = step.as_secs_f64();
    if step_s <= 0.0 {
        return Err(ResultsError::Usage(
            "--step must be positive (e.g. 5s)".into(),
        ));
    }
    let pairs: Pairs = runmeta::discover(runs_dir)?;
    let all: Vec<&RunDir> = pairs
        .runs(Role::Baseline)
        .into_iter()
        .chain(pairs.runs(Role::Scaled))
        .collect();
    if all.is_empty() {
        return Err(ResultsError::Usage(format!(
            "--runs {}: no runs found (looked for directories with *_export.json files or run.json, up to three levels down)",
            runs_dir.display()
        )));
    }
    let bar = super::fsutil::progress_bar(all.len() as u64, "reading runs");
    let mut data: Vec<RunData> = Vec::with_capacity(all.len());
    for r in &all {
        super::fsutil::check_cancel()?;
        data.push(load_run(r, step_s)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let by_role =
        |role: Role| -> Vec<&RunData> { data.iter().filter(|r| r.role == role).collect() };
    let (base, scaled) = (by_role(Role::Baseline), by_role(Role::Scaled));

    ensure_dir(out_dir, "--out")?;
    let mut metric_summaries = Vec::new();
    let mut mean_curves: BTreeMap<(&str, Role), Vec<SlotStats>> = BTreeMap::new();
    for spec in METRICS {
        if spec.kind == Kind::ScaleEvent {
            continue;
        }
        let mut side_stats = [None, None];
        for (i, (role, runs)) in [(Role::Baseline, &base), (Role::Scaled, &scaled)]
            .into_iter()
            .enumerate()
        {
            super::fsutil::check_cancel()?;
            let slots = slot_stats(runs, spec.readable, step_s);
            let with_data = runs
                .iter()
                .filter(|r| r.aligned.contains_key(spec.readable))
                .count();
            if slots.is_empty() {
                // A counter exported with no series (the paper's empty Failed_Requests) counted
                // nothing: zero, though there is no curve to write.
                if spec.kind == Kind::Counter && with_data > 0 {
                    side_stats[i] = Some(CurveStats {
                        runs: with_data,
                        peak: 0.0,
                        peak_at_s: 0.0,
                        mean: 0.0,
                    });
                }
                continue;
            }
            let dir = out_dir.join(role.as_str());
            ensure_dir(&dir, "--out")?;
            write_atomic(&dir.join(spec.mean_file()), mean_csv(&slots).as_bytes())?;
            write_atomic(&dir.join(spec.stats_file()), stats_csv(&slots).as_bytes())?;
            side_stats[i] = curve_stats(&slots, with_data);
            mean_curves.insert((spec.readable, role), slots);
        }
        let per_run = |r: &RunData, f: fn(&[(f64, f64)]) -> Option<f64>| {
            let v = r.aligned.get(spec.readable)?;
            if v.is_empty() && spec.kind == Kind::Counter {
                return Some(0.0);
            }
            f(v)
        };
        let peak = |v: &[(f64, f64)]| v.iter().map(|p| p.1).reduce(f64::max);
        let avg = |v: &[(f64, f64)]| stats::mean(&v.iter().map(|p| p.1).collect::<Vec<_>>());
        let mut peak_diffs = Vec::new();
        let mut mean_diffs = Vec::new();
        for (b, s) in pairs.complete() {
            let bd = data.iter().find(|d| d.dir == b.path);
            let sd = data.iter().find(|d| d.dir == s.path);
            if let (Some(bd), Some(sd)) = (bd, sd) {
                if let (Some(x), Some(y)) = (per_run(bd, peak), per_run(sd, peak)) {
                    peak_diffs.push(y - x);
                }
                if let (Some(x), Some(y)) = (per_run(bd, avg), per_run(sd, avg)) {
                    mean_diffs.push(y - x);
                }
            }
        }
        let [b, s] = side_stats;
        if b.is_none() && s.is_none() {
            continue;
        }
        metric_summaries.push(MetricSummary {
            metric: spec.readable.to_string(),
            file_stem: spec.stem(),
            combine: spec.combine,
            baseline: b,
            scaled: s,
            paired_peak_diff: paired_diff(&peak_diffs, resamples, seed),
            paired_mean_diff: paired_diff(&mean_diffs, resamples, seed),
        });
    }

    let p99_latency = metric_summaries
        .iter()
        .find(|m| m.metric == metrics::REQUEST_DURATION_P99)
        .and_then(|m| Some((m.baseline.as_ref()?, m.scaled.as_ref()?)))
        .map(|(b, s)| LatencySummary {
            baseline_peak_s: b.peak,
            scaled_peak_s: s.peak,
            peak_reduction_pct: reduction(b.peak, s.peak),
            baseline_mean_s: b.mean,
            scaled_mean_s: s.mean,
            mean_reduction_pct: reduction(b.mean, s.mean),
        });

    let mut per_run: Vec<(u32, f64)> = scaled
        .iter()
        .filter_map(|r| Some((r.pair, r.first_scale_s?)))
        .collect();
    per_run.sort_by_key(|p| p.0);
    let firsts: Vec<f64> = per_run.iter().map(|p| p.1).collect();
    let min = firsts.iter().cloned().reduce(f64::min);
    let max = firsts.iter().cloned().reduce(f64::max);
    let scale_events = ScaleEventSummary {
        scaled_runs: scaled.len(),
        runs_with_event: firsts.len(),
        first_scale_min_s: min,
        first_scale_median_s: stats::median(&firsts),
        first_scale_max_s: max,
        per_run,
    };

    let summary = Summary {
        runs_dir: runs_dir.to_path_buf(),
        step_s,
        baseline_runs: base.len(),
        scaled_runs: scaled.len(),
        complete_pairs: pairs.complete().len(),
        bootstrap_resamples: resamples,
        bootstrap_seed: seed,
        metrics: metric_summaries,
        p99_latency,
        requests_baseline: request_summary(&base),
        requests_scaled: request_summary(&scaled),
        scale_window_s: min.zip(max),
        scale_events,
        unplaced: pairs
            .unplaced
            .iter()
            .map(|(p, r)| Unplaced {
                path: p.clone(),
                reason: r.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    write_atomic(&out_dir.join("summary.json"), &json)?;
    write_atomic(
        &out_dir.join("summary.md"),
        render_markdown(&summary).as_bytes(),
    )?;
    Ok(summary)
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
    m.push_str("| metric | combine | baseline peak | scaled peak | baseline mean | scaled mean | Δ peak (median [95 % CI]) | Δ mean (median [95 % CI]) |\n");
    m.push_str("|---|---|---:|---:|---:|---:|---|---|\n");
    for x in &s.metrics {
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            x.metric,
            x.combine.describe(),
            f(x.baseline.as_ref().map(|c| c.peak)),
            f(x.scaled.as_ref().map(|c| c.peak)),
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
        "\n## Scale events\n\n{} of {} scaled runs recorded a scale event. Time to the first one: min {} s, median {} s, max {} s.\n",
        e.runs_with_event,
        e.scaled_runs,
        f(e.first_scale_min_s),
        f(e.first_scale_median_s),
        f(e.first_scale_max_s)
    ));
    if !s.unplaced.is_empty() {
        m.push_str("\n## Runs not used\n\n");
        for u in &s.unplaced {
            m.push_str(&format!("- `{}`: {}\n", u.path.display(), u.reason));
        }
    }
    m
}

pub async fn run(opts: AggregateOpts) -> anyhow::Result<()> {
    let summary = super::run_blocking_interruptible(
        move || {
            aggregate_with(&opts.runs, &opts.out, opts.step, opts.resamples, opts.seed)
                .map(|s| (s, opts.out))
        },
        |e| matches!(e, ResultsError::Interrupted),
    )
    .await?;
    let (s, out) = summary;
    println!(
        "aggregated {} baseline and {} scaled runs ({} complete pairs) into {}",
        s.baseline_runs,
        s.scaled_runs,
        s.complete_pairs,
        out.display()
    );
    if let Some(l) = &s.p99_latency {
        println!(
            "p99 latency peak {:.2} s -> {:.2} s ({:.1} % lower)",
            l.baseline_peak_s, l.scaled_peak_s, l.peak_reduction_pct
        );
    }
    for u in &s.unplaced {
        eprintln!("warning: not used: {}: {}", u.path.display(), u.reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_rounds_to_step_from_first_sample() {
        let pts = [(100.0, 1.0), (105.2, 2.0), (109.9, 3.0), (130.0, 4.0)];
        assert_eq!(
            align(&pts, 5.0),
            vec![(0.0, 1.0), (5.0, 2.0), (10.0, 3.0), (30.0, 4.0)]
        );
        assert!(align(&[], 5.0).is_empty());
    }
}
