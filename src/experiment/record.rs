//! What one run records and the one writer of a run folder. Besides the monitor: an
//! in-process load generator's counters and latency histograms and the machine's CPU
//! ([`LoadRecorder`]), the replica count, the scaler's decisions. [`write_run`] stores every
//! run, whatever its backend and monitor, as the same files: each export as Prometheus
//! `query_range` JSON and its CSV, `alerts.json`, `load_summary.json`, then `run.json`.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use super::runner::{LoadEnd, RunContext};
use crate::load::histogram::{NativeHistogram, upper_bound};
use crate::load::{Live, Snapshot};
use crate::monitor::{AlertEvent, Recording, unix_s};
use crate::results::metrics::{self as m, Combine, Kind, MetricSpec};
use crate::results::placement::Placement;
use crate::results::promjson::{MatrixData, QueryRangeResponse, Sample, Series};
use crate::results::runmeta::{Role, RunMeta, ScaleEvent};
use crate::scaler::controller::Event;
use crate::scaler::policy::Action;
use chrono::{DateTime, Utc};

/// Window of the p99 and average request duration (the export's `[15s]`).
pub const WINDOW_S: f64 = 15.0;

/// Per-second series of the load generator, keyed by the export's readable metric names: what
/// k6 would remote-write, computed here from its counters (the built-in generator's live ones,
/// or what real k6 has written to its JSON output so far).
pub struct LoadRecorder {
    source: Box<dyn FnMut() -> Snapshot + Send>,
    pub points: BTreeMap<&'static str, Vec<(f64, f64)>>,
    window: VecDeque<(f64, NativeHistogram)>,
    cpu_prev: Option<(u64, u64)>,
}

fn merged(snap: &Snapshot) -> NativeHistogram {
    let mut h = NativeHistogram::default();
    for s in snap.requests.values() {
        h.merge(&s.duration);
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

/// Append `(ts, v)`; a second sample at the same timestamp replaces the first (the last tick
/// after the load ends can round to the second of the tick before it).
pub fn put(series: &mut Vec<(f64, f64)>, ts: f64, v: f64) {
    match series.last_mut() {
        Some(last) if last.0 == ts => last.1 = v,
        _ => series.push((ts, v)),
    }
}

impl LoadRecorder {
    /// The exports a recorder measures itself (the monitor is not asked for them).
    pub const MEASURES: [&str; 7] = [
        m::TOTAL_REQUESTS,
        m::SUCCESSFUL_REQUESTS,
        m::FAILED_REQUESTS,
        m::DROPPED_ITERATIONS,
        m::REQUEST_DURATION_P99,
        m::AVG_REQUEST_DURATION,
        m::NODE_CPU,
    ];

    /// Records the built-in generator's live counters.
    pub fn new(live: Live) -> LoadRecorder {
        Self::from_source(move || live.snapshot())
    }

    /// Records whatever `source` says the counters are, each tick.
    pub fn from_source(source: impl FnMut() -> Snapshot + Send + 'static) -> LoadRecorder {
        LoadRecorder {
            source: Box::new(source),
            points: BTreeMap::new(),
            window: VecDeque::new(),
            cpu_prev: None,
        }
    }

    /// Record one second: the load generator's snapshot and node CPU (user %).
    pub fn tick(&mut self, ts: f64) {
        let snap = (self.source)();
        let points = &mut self.points;
        let mut push = |k: &'static str, v: f64| put(points.entry(k).or_default(), ts, v);
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
        push(m::REQUEST_DURATION_P99, p99);
        push(m::AVG_REQUEST_DURATION, avg);
        if let Some(now) = proc_stat_cpu() {
            if let Some((u0, t0)) = self.cpu_prev {
                let dt = now.1.saturating_sub(t0);
                if dt > 0 {
                    let pct = 100.0 * now.0.saturating_sub(u0) as f64 / dt as f64;
                    push(m::NODE_CPU, pct);
                }
            }
            self.cpu_prev = Some(now);
        }
    }
}

/// Replica count over time (not one of the paper's exports; `Replicas_export.json`).
pub const REPLICAS: &str = "Replicas";

/// How `Replicas_export.csv` combines its series.
const REPLICAS_SPEC: MetricSpec = MetricSpec {
    readable: REPLICAS,
    aliases: &[],
    query: "replicas",
    combine: Combine::Sum,
    kind: Kind::Gauge,
    unit: "Replicas",
};

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

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `alerts.json`: every alert transition the monitor saw, its failed webhook deliveries and
/// the scaler's decisions. The same type for every backend and monitor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// Which monitor saw the alerts, and at what resolution.
    pub source: String,
    pub alerts: Vec<AlertEvent>,
    pub webhook_failures: u64,
    /// Every decision of the scaler (none in a baseline run), also those that changed nothing.
    pub scaler_events: Vec<Event>,
}

pub const ALERTS_FILE: &str = "alerts.json";
pub const LOAD_SUMMARY_FILE: &str = "load_summary.json";

/// What the runner gathered, before it is shaped into a [`RunRecord`].
pub struct Collected {
    pub load: LoadEnd,
    pub recorder: Option<LoadRecorder>,
    /// Replicas sampled each second (unix seconds, count).
    pub replicas: Vec<(f64, f64)>,
    pub service: String,
    pub monitor: Recording,
    pub source: String,
    pub events: Vec<Event>,
    /// Which node ran what (backends that place replicas on nodes).
    pub placement: Option<Placement>,
}

/// One finished run, as [`write_run`] stores it.
pub struct RunRecord {
    pub role: Role,
    pub pair: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Series by readable export name (`Total Requests`, …, `Replicas`, `Scale event`).
    pub exports: BTreeMap<&'static str, Vec<Series>>,
    pub alerts: AlertsFile,
    pub summary: crate::load::Summary,
    pub scale_events: Vec<ScaleEvent>,
    pub placement: Option<Placement>,
    /// The replicas' store (`sqlite`, `mongodb`, `none`).
    pub store: String,
    /// What the replicas ran (`model`, `dotnet`) and, for .NET, the runtime's version.
    pub workload: String,
    pub runtime: Option<String>,
}

impl RunRecord {
    pub fn assemble(run: &RunContext<'_>, c: Collected) -> RunRecord {
        let mut exports = c.monitor.exports;
        if let Some(rec) = c.recorder {
            let testid = crate::load::DEFAULT_TESTID;
            for (name, pts) in rec.points {
                let l = if name == m::NODE_CPU {
                    labels(&[("instance", "localhost")])
                } else {
                    labels(&[("testid", testid)])
                };
                exports.insert(name, vec![series(l, &pts)]);
            }
        }
        let service = labels(&[("service", &c.service)]);
        exports.insert(REPLICAS, vec![series(service, &c.replicas)]);
        let scale_events: Vec<ScaleEvent> = c
            .events
            .iter()
            .filter(|e| e.decision.action != Action::None)
            .map(|e| ScaleEvent {
                at: e.time,
                from: Some(e.decision.from),
                to: Some(e.decision.to),
            })
            .collect();
        if !scale_events.is_empty() {
            // `alert_endpoint_call`: scale actions so far, from the first one on.
            let pts: Vec<(f64, f64)> = c
                .replicas
                .iter()
                .map(|&(t, _)| {
                    let n = scale_events.iter().filter(|e| unix_s(e.at) <= t).count();
                    (t, n as f64)
                })
                .filter(|p| p.1 > 0.0)
                .collect();
            let l = labels(&[("__name__", "alert_endpoint_call"), ("service", &c.service)]);
            exports.insert(m::SCALE_EVENT, vec![series(l, &pts)]);
        }
        // Every export is written, empty or not, so every run folder holds the same files. An
        // empty gauge is not an error (the figures show a gap) but must not go unnoticed. (An
        // empty counter is a count of zero: k6 sends no `expected_response="false"` series
        // either when nothing failed.)
        for spec in m::METRICS.iter().filter(|s| s.kind != Kind::ScaleEvent) {
            if !exports.contains_key(spec.readable) {
                if spec.kind == Kind::Gauge {
                    tracing::warn!("{}: no samples during the load", spec.readable);
                }
                exports.insert(spec.readable, Vec::new());
            }
        }
        RunRecord {
            role: run.role,
            pair: run.pair,
            start: c.load.start,
            end: c.load.end,
            exports,
            alerts: AlertsFile {
                source: c.source,
                alerts: c.monitor.alerts,
                webhook_failures: c.monitor.webhook_failures,
                scaler_events: c.events,
            },
            summary: c.load.summary,
            scale_events,
            placement: c.placement,
            store: match run.state.workload {
                super::WorkloadKind::Model => run.profile().store_kind().as_str().into(),
                super::WorkloadKind::Dotnet => "none".into(),
            },
            workload: run.state.workload.as_str().into(),
            runtime: run
                .state
                .dotnet_runtime
                .as_ref()
                .map(|v| format!("Microsoft.NETCore.App {v}")),
        }
    }
}

/// The spec an export is written under (its file names and CSV combination).
fn spec_of(readable: &str) -> Option<&'static MetricSpec> {
    m::METRICS
        .iter()
        .find(|s| s.readable == readable)
        .or((readable == REPLICAS).then_some(&REPLICAS_SPEC))
}

/// Write one export as `<Readable_Name>_export.json` and `.csv`.
pub fn write_export(
    dir: &Path,
    spec: &MetricSpec,
    series: Vec<Series>,
    start: f64,
) -> anyhow::Result<()> {
    let resp = response(series);
    let json = serde_json::to_vec(&resp)?;
    crate::util::write_atomic(&dir.join(spec.json_file()), &json)?;
    let csv = crate::results::export::export_csv(spec, &resp, start);
    crate::util::write_atomic(&dir.join(spec.csv_file()), csv.as_bytes())?;
    Ok(())
}

/// Store a finished run in `dir`: every export (JSON and CSV), `alerts.json`,
/// `load_summary.json`, and last `run.json` (a run folder with `run.json` is a finished run).
pub fn write_run(dir: &Path, rec: RunRecord) -> anyhow::Result<()> {
    let start = unix_s(rec.start).floor();
    for (name, series) in rec.exports {
        let spec = spec_of(name).ok_or_else(|| anyhow::anyhow!("no export named {name:?}"))?;
        write_export(dir, spec, series, start)?;
    }
    crate::util::write_atomic(
        &dir.join(ALERTS_FILE),
        &serde_json::to_vec_pretty(&rec.alerts)?,
    )?;
    crate::util::write_atomic(
        &dir.join(LOAD_SUMMARY_FILE),
        &serde_json::to_vec_pretty(&rec.summary)?,
    )?;
    let mut meta = RunMeta::new(rec.role, rec.pair, rec.start);
    meta.end = Some(rec.end);
    meta.step_s = Some(1.0);
    meta.testid = Some(crate::load::DEFAULT_TESTID.into());
    meta.scale_events = rec.scale_events;
    meta.placement = rec.placement;
    meta.store = Some(rec.store);
    meta.workload = Some(rec.workload);
    meta.runtime = rec.runtime;
    meta.write(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_tick_in_the_same_second_replaces_the_first() {
        let mut points = Vec::new();
        put(&mut points, 59.0, 400.0);
        put(&mut points, 60.0, 430.0);
        put(&mut points, 60.0, 435.0);
        assert_eq!(points, vec![(59.0, 400.0), (60.0, 435.0)]);
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
