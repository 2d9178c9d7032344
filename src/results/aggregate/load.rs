//! Reading one run for aggregation: every export combined per metric (the rules of
//! [`combine_series`]), aligned to the step, files that do not hold what their name says left
//! out with the reason, and the run's scale events as offsets from its start.

use crate::results::ResultsError;
use crate::results::metrics::{self, Kind, METRICS, MetricSpec, combine_series};
use crate::results::promjson::{Series, read_export};
use crate::results::runmeta::{Role, RunDir};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Seconds from the run's reference start to every scale event, sorted.
    pub scale_events_s: Vec<f64>,
    /// Files of this run not used, and why.
    pub left_out: Vec<LeftOut>,
    /// readable metric name → NaN/±Inf samples skipped.
    pub nonfinite: BTreeMap<&'static str, usize>,
    /// readable metric name → series dropped as a second path to the same replica.
    pub duplicate_series: BTreeMap<&'static str, usize>,
}

/// A file that was read but not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    pub run: PathBuf,
    pub metric: String,
    pub reason: String,
}

/// Align a combined series: offset = step × round((t − t₀) / step), t₀ its first sample. Two
/// samples landing in one slot keep the later one (for a counter, its value at the slot's end).
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

/// Why a file does not hold what its metric's query returns, if it does not. The p99 query
/// (`histogram_quantile(0.99, sum by(testid)(…))`) gives one series labelled by `testid` only;
/// the paper's exporter also saved `histogram_sum(rate(k6_http_req_duration_seconds[10s]))`,
/// one series per status and not a latency, under the same name, and in some runs that file
/// won (pairs 101–103).
pub fn foreign_series(spec: &MetricSpec, series: &[Series]) -> Option<String> {
    if spec.readable != metrics::REQUEST_DURATION_P99 {
        return None;
    }
    let extra: std::collections::BTreeSet<&str> = series
        .iter()
        .flat_map(|s| s.metric.keys())
        .map(String::as_str)
        .filter(|k| *k != "testid")
        .collect();
    (!extra.is_empty()).then(|| {
        format!(
            "{} holds {} series labelled {} (per status), not the one {{testid}} series of the p99 \
             query: another query overwrote it; left out of the p99",
            spec.json_file(),
            series.len(),
            extra.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Read and align every metric of one run.
pub fn load_run(run: &RunDir, step: f64) -> Result<RunData, ResultsError> {
    let mut data = RunData {
        dir: run.path.clone(),
        role: run.role,
        pair: run.pair,
        aligned: BTreeMap::new(),
        first_scale_s: None,
        scale_events_s: Vec::new(),
        left_out: Vec::new(),
        nonfinite: BTreeMap::new(),
        duplicate_series: BTreeMap::new(),
    };
    let mut raw: BTreeMap<&'static str, Vec<(f64, f64)>> = BTreeMap::new();
    for spec in METRICS {
        let Some(path) = find_file(&run.path, spec) else {
            continue;
        };
        let resp = read_export(&path)?;
        let series = resp.series().unwrap_or(&[]);
        if let Some(reason) = foreign_series(spec, series) {
            data.left_out.push(LeftOut {
                run: run.path.clone(),
                metric: spec.readable.into(),
                reason,
            });
            continue;
        }
        let combined = combine_series(series, spec.combine);
        if combined.nonfinite > 0 {
            data.nonfinite.insert(spec.readable, combined.nonfinite);
        }
        if combined.duplicate_series > 0 {
            data.duplicate_series
                .insert(spec.readable, combined.duplicate_series);
        }
        data.aligned
            .insert(spec.readable, align(&combined.points, step));
        raw.insert(spec.readable, combined.points);
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
    // Every scale event: run.json's list, else each rise of the exported scale-event series.
    let mut events: Vec<f64> = match run.meta.as_ref().filter(|m| !m.scale_events.is_empty()) {
        Some(m) => m
            .scale_events
            .iter()
            .map(|e| e.at.timestamp_millis() as f64 / 1000.0)
            .collect(),
        None => {
            let mut prev = 0.0;
            let mut rises = Vec::new();
            for &(t, v) in raw
                .get(metrics::SCALE_EVENT)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if v > prev {
                    rises.push(t);
                }
                prev = v;
            }
            rises
        }
    };
    events.sort_by(|a, b| a.total_cmp(b));
    if let Some(t0) = t0 {
        data.scale_events_s = events.iter().map(|e| e - t0).collect();
        data.first_scale_s = data.scale_events_s.first().copied();
    }
    Ok(data)
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

    #[test]
    fn a_per_status_p99_file_is_foreign() {
        let p99 = metrics::spec(metrics::REQUEST_DURATION_P99);
        let mut s = Series {
            metric: [("testid".to_string(), "t".to_string())].into(),
            values: vec![],
        };
        assert_eq!(foreign_series(p99, std::slice::from_ref(&s)), None);
        s.metric.insert("status".into(), "200".into());
        let why = foreign_series(p99, &[s.clone()]).unwrap();
        assert!(why.contains("status") && why.contains("left out"), "{why}");
        // Other metrics are not judged by the p99's labels.
        assert_eq!(
            foreign_series(metrics::spec(metrics::TOTAL_REQUESTS), &[s]),
            None
        );
    }
}
