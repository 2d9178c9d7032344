//! What one run records besides the monitor: the load generator's counters and latency
//! histograms, the machine's CPU, the replica count; and writing it all as the export's
//! Prometheus `query_range` JSON files.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use crate::load::histogram::{NativeHistogram, upper_bound};
use crate::load::{Live, Snapshot};
use crate::results::metrics::{self as m};
use crate::results::promjson::{MatrixData, QueryRangeResponse, Sample, Series};
use crate::results::runmeta::{Role, RunMeta, ScaleEvent};
use chrono::{DateTime, Utc};

/// Window of the p99 and average request duration (the export's `[15s]`).
pub const WINDOW_S: f64 = 15.0;

/// Per-second series of one run, keyed by the export's readable metric names.
#[derive(Debug, Default, Clone)]
pub struct LoadSeries {
    pub points: BTreeMap<&'static str, Vec<(f64, f64)>>,
    window: VecDeque<(f64, NativeHistogram)>,
    cpu_prev: Option<(u64, u64)>,
}

fn merged(snap: &Snapshot) -> NativeHistogram {
    let mut h = NativeHistogram::default();
    for s in snap.requests.values() {
        h.count += s.duration.count;
        h.sum += s.duration.sum;
        h.zero_count += s.duration.zero_count;
        for (i, c) in &s.duration.buckets {
            *h.buckets.entry(*i).or_default() += c;
        }
    }
    h
}

/// The `q` quantile of the difference `now − then` (None without observations).
pub fn window_quantile(now: &NativeHistogram, then: &NativeHistogram, q: f64) -> Option<f64> {
    let zero = now.zero_count.saturating_sub(then.zero_count);
    let buckets: Vec<(i32, u64)> = now
        .buckets
        .iter()
        .map(|(i, c)| (*i, c.saturating_sub(*then.buckets.get(i).unwrap_or(&0))))
        .filter(|(_, c)| *c > 0)
        .collect();
    let total = zero + buckets.iter().map(|(_, c)| c).sum::<u64>();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    if rank <= zero as f64 {
        return Some(0.0);
    }
    let mut seen = zero as f64;
    for (i, c) in &buckets {
        if seen + *c as f64 >= rank {
            // Interpolate inside the bucket (exponential, like Prometheus for native buckets).
            let lo = upper_bound(i - 1, now.schema);
            let hi = upper_bound(*i, now.schema);
            let frac = ((rank - seen) / *c as f64).clamp(0.0, 1.0);
            return Some(lo * (hi / lo).powf(frac));
        }
        seen += *c as f64;
    }
    buckets.last().map(|(i, _)| upper_bound(*i, now.schema))
}

fn proc_stat_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let user = *v.first()? + v.get(1).copied().unwrap_or(0);
    // Guest time is already counted in user.
    let total = v.iter().take(8).sum();
    Some((user, total))
}

/// Append `(ts, v)` to the series `k`; a second sample at the same timestamp replaces the first
/// (the last tick after the load ends can round to the second of the tick before it).
fn put(points: &mut BTreeMap<&'static str, Vec<(f64, f64)>>, k: &'static str, ts: f64, v: f64) {
    let series = points.entry(k).or_default();
    match series.last_mut() {
        Some(last) if last.0 == ts => last.1 = v,
        _ => series.push((ts, v)),
    }
}

impl LoadSeries {
    /// Record one second: the load generator's snapshot, node CPU (user %), replicas.
    pub fn tick(&mut self, ts: f64, live: &Live, replicas: Option<usize>) {
        let snap = live.snapshot();
        let mut push = |k: &'static str, v: f64| put(&mut self.points, k, ts, v);
        let (mut ok, mut bad) = (0u64, 0u64);
        for (key, s) in &snap.requests {
            if key.expected_response {
                ok += s.count;
            } else {
                bad += s.count;
            }
        }
        push(m::TOTAL_REQUESTS, (ok + bad) as f64);
        push(m::SUCCESSFUL_REQUESTS, ok as f64);
        push(m::FAILED_REQUESTS, bad as f64);
        push(m::DROPPED_ITERATIONS, snap.dropped as f64);
        if let Some(r) = replicas {
            push(REPLICAS, r as f64);
        }
        let h = merged(&snap);
        self.window.push_back((ts, h.clone()));
        while self.window.front().is_some_and(|(t, _)| ts - *t > WINDOW_S) {
            self.window.pop_front();
        }
        let then = self
            .window
            .front()
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        let p99 = window_quantile(&h, &then, 0.99).unwrap_or(0.0);
        let count = h.count.saturating_sub(then.count);
        let avg = if count > 0 {
            (h.sum - then.sum) / count as f64
        } else {
            0.0
        };
        put(&mut self.points, m::REQUEST_DURATION_P99, ts, p99);
        put(&mut self.points, m::AVG_REQUEST_DURATION, ts, avg);
        if let Some(now) = proc_stat_cpu() {
            if let Some((u0, t0)) = self.cpu_prev {
                let dt = now.1.saturating_sub(t0);
                if dt > 0 {
                    let pct = 100.0 * now.0.saturating_sub(u0) as f64 / dt as f64;
                    put(&mut self.points, m::NODE_CPU, ts, pct);
                }
            }
            self.cpu_prev = Some(now);
        }
    }
}

/// Replica count over time (not one of the paper's exports; `Replicas_export.json`).
pub const REPLICAS: &str = "Replicas";

/// A `query_range` response holding `series`.
pub fn response(series: Vec<Series>) -> QueryRangeResponse {
    QueryRangeResponse {
        status: "success".into(),
        data: Some(MatrixData {
            result_type: "matrix".into(),
            result: series,
        }),
        error_type: None,
        error: None,
        warnings: Vec::new(),
    }
}

pub fn series(labels: BTreeMap<String, String>, points: &[(f64, f64)]) -> Series {
    Series {
        metric: labels,
        values: points.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

/// Write `<Readable_Name>_export.json`.
pub fn write_export(dir: &Path, readable: &str, series: Vec<Series>) -> anyhow::Result<()> {
    let path = dir.join(format!("{}_export.json", readable.replace(' ', "_")));
    let json = serde_json::to_vec(&response(series))?;
    crate::results::fsutil::write_atomic(&path, &json)?;
    Ok(())
}

/// A finished run's side files, `alerts.json` and `load_summary.json`, and its `RunMeta`, which
/// the caller writes last (a run folder with `run.json` is a finished run).
#[allow(clippy::too_many_arguments)]
pub fn write_run_files(
    dir: &Path,
    alerts: serde_json::Value,
    summary: &impl serde::Serialize,
    role: Role,
    pair: u32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    scale_events: Vec<ScaleEvent>,
) -> anyhow::Result<RunMeta> {
    crate::results::fsutil::write_atomic(
        &dir.join("alerts.json"),
        &serde_json::to_vec_pretty(&alerts)?,
    )?;
    crate::results::fsutil::write_atomic(
        &dir.join("load_summary.json"),
        &serde_json::to_vec_pretty(summary)?,
    )?;
    let mut meta = RunMeta::new(role, pair, start);
    meta.end = Some(end);
    meta.step_s = Some(1.0);
    meta.testid = Some(crate::load::DEFAULT_TESTID.into());
    meta.scale_events = scale_events;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_tick_in_the_same_second_replaces_the_first() {
        let mut points = BTreeMap::new();
        put(&mut points, m::TOTAL_REQUESTS, 59.0, 400.0);
        put(&mut points, m::TOTAL_REQUESTS, 60.0, 430.0);
        put(&mut points, m::TOTAL_REQUESTS, 60.0, 435.0);
        assert_eq!(
            points[m::TOTAL_REQUESTS],
            vec![(59.0, 400.0), (60.0, 435.0)]
        );
    }

    #[test]
    fn window_quantile_of_a_difference() {
        let mut then = NativeHistogram::default();
        for _ in 0..100 {
            then.observe(10.0);
        }
        let mut now = then.clone();
        for _ in 0..99 {
            now.observe(0.1);
        }
        now.observe(2.0);
        let p50 = window_quantile(&now, &then, 0.5).unwrap();
        assert!((0.09..=0.11).contains(&p50), "{p50}");
        let p100 = window_quantile(&now, &then, 1.0).unwrap();
        assert!((1.9..=2.1).contains(&p100), "{p100}");
        assert_eq!(window_quantile(&then, &then, 0.99), None);
    }
}
