//! `starvation aggregate`: find runs, pair each baseline with its scaled run, align samples by
//! offset from each run's first sample at the step, and write the paper's mean datasets
//! (`<name>_export_mean_values.csv`, `timestamp,value`), extended statistics
//! (`<name>_export_stats.csv`, `timestamp,n,mean,median,p5,p95`) and a summary (`summary.json`,
//! `summary.md`).

mod load;
mod summary;

pub use load::{LeftOut, RunData, align, foreign_series, load_run};
pub use summary::*;

use super::ResultsError;
use super::fsutil::ensure_dir;
use super::metrics::{self, Kind, METRICS};
use super::output_dir::OutputDir;
use super::runmeta::{self, Pairs, Role, RunDir};
use super::stats;
use crate::util::write_atomic;
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
    /// Output directory: baseline/ and scaled/ mean datasets, summary.json, summary.md. Built
    /// aside, then each file put in place; the files of an earlier aggregate here (listed in its
    /// .starvation-output.json) are replaced or removed, any other file is kept, and a name
    /// clash with one is refused. Must not be --runs or inside it.
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
`starvation export --help` lists, with these rules: a repeated timestamp in one series keeps its last \
sample (a counter is never summed with itself); NaN and ±Inf samples are skipped and counted; one \
replica seen through the Pushgateway (exported_instance/exported_job) and a direct scrape \
(instance/job) counts once, the Pushgateway's sample winning. A Request_Duration export holding \
per-status series (another query overwrote the p99, as in the paper's pairs 101-103) is left out of \
the p99. What was merged, skipped and left out is listed in summary.md and on stderr.";

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

fn curve_stats(slots: &[SlotStats], run_peaks: &[f64]) -> Option<CurveStats> {
    let best = slots.iter().max_by(|a, b| a.mean.total_cmp(&b.mean))?;
    let q = |p| stats::quantile(run_peaks, p).unwrap_or(0.0);
    Some(CurveStats {
        runs: run_peaks.len(),
        peak: best.mean,
        peak_at_s: best.offset_s,
        mean: slots.iter().map(|s| s.mean).sum::<f64>() / slots.len() as f64,
        run_peak_p25: q(0.25),
        run_peak_median: q(0.5),
        run_peak_p75: q(0.75),
    })
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

/// Who owns an aggregate output folder (its manifest says so).
const OWNER: &str = "starvation aggregate";

/// `--out` equal to `--runs` or inside it would mix the means into the runs.
fn refuse_out_inside_runs(runs: &Path, out: &Path) -> Result<(), ResultsError> {
    let (runs_abs, out_abs) = (resolved(runs), resolved(out));
    if out_abs.starts_with(&runs_abs) {
        return Err(ResultsError::Usage(format!(
            "--out {} is {} --runs {}: the output would land among the runs it reads; pass a folder outside --runs",
            out.display(),
            if out_abs == runs_abs {
                "the same folder as"
            } else {
                "inside"
            },
            runs.display()
        )));
    }
    Ok(())
}

/// `p` made absolute with symlinks resolved as far as it exists.
fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
    let mut out = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
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
    refuse_out_inside_runs(runs_dir, out_dir)?;
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

    // Everything is written aside; commit puts it in place of the last aggregate's files.
    let staged = OutputDir::new(out_dir, "--out", OWNER)?;
    let out = staged.path();
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
                    side_stats[i] = curve_stats(
                        &[SlotStats {
                            offset_s: 0.0,
                            n: with_data,
                            mean: 0.0,
                            median: 0.0,
                            p5: 0.0,
                            p95: 0.0,
                        }],
                        &vec![0.0; with_data],
                    );
                }
                continue;
            }
            let run_peaks: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.aligned.get(spec.readable))
                .filter_map(|v| v.iter().map(|p| p.1).reduce(f64::max))
                .collect();
            let dir = out.join(role.as_str());
            ensure_dir(&dir, "--out")?;
            write_atomic(&dir.join(spec.mean_file()), mean_csv(&slots).as_bytes())?;
            write_atomic(&dir.join(spec.stats_file()), stats_csv(&slots).as_bytes())?;
            side_stats[i] = curve_stats(&slots, &run_peaks);
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
            nonfinite_skipped: data
                .iter()
                .filter_map(|r| r.nonfinite.get(spec.readable))
                .sum(),
            runs_with_duplicate_series: data
                .iter()
                .filter(|r| r.duplicate_series.contains_key(spec.readable))
                .count(),
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
        events_s: {
            let mut all: Vec<f64> = scaled
                .iter()
                .flat_map(|r| r.scale_events_s.iter().copied())
                .collect();
            all.sort_by(|a, b| a.total_cmp(b));
            all
        },
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
        left_out: data.iter().flat_map(|r| r.left_out.clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    write_atomic(&out.join("summary.json"), &json)?;
    write_atomic(
        &out.join("summary.md"),
        render_markdown(&summary).as_bytes(),
    )?;
    super::fsutil::check_cancel()?;
    staged.commit()?;
    Ok(summary)
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
    for l in &s.left_out {
        eprintln!("warning: left out: {}: {}", l.run.display(), l.reason);
    }
    let dup: usize = s.metrics.iter().map(|m| m.runs_with_duplicate_series).sum();
    if dup > 0 {
        eprintln!(
            "note: {dup} exports held one replica twice (Pushgateway and direct scrape); counted once"
        );
    }
    let nonfinite: usize = s.metrics.iter().map(|m| m.nonfinite_skipped).sum();
    if nonfinite > 0 {
        eprintln!("note: {nonfinite} NaN/Inf samples skipped");
    }
    Ok(())
}
