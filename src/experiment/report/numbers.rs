//! The numbers of the report, read back from the run folders: the curves' peaks from the
//! exports, the request counts from each run's `load_summary.json` (what the load generator
//! itself counted, so the report can never disagree with it).

use serde::Serialize;
use std::path::Path;

use crate::load::Summary as LoadSummary;
use crate::results::aggregate::load_run;
use crate::results::metrics as m;
use crate::results::runmeta::{Pairs, Role};

/// What happened to the requests of a run (or, summed, of several), from `load_summary.json`.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Iterations the schedule started or tried to (`started + dropped`).
    pub scheduled: u64,
    /// Requests sent.
    pub started: u64,
    /// Requests that ended with a response or an error.
    pub completed: u64,
    /// Completed with the expected status.
    pub succeeded: u64,
    /// Completed with an error or an unexpected status (time-outs included).
    pub failed: u64,
    /// Of the failed: no response within the time-out.
    pub timed_out: u64,
    /// Still in flight when the load ended (graceful stop or Ctrl-C); never answered.
    pub interrupted: u64,
    /// Never sent: no free VU when their time came.
    pub dropped: u64,
}

impl RequestCounts {
    pub fn from_summary(s: &LoadSummary) -> Self {
        RequestCounts {
            scheduled: s.scheduled,
            started: s.started,
            completed: s.completed,
            succeeded: s.completed.saturating_sub(s.failed),
            failed: s.failed,
            timed_out: s.errors.timeout,
            interrupted: s.interrupted,
            dropped: s.dropped,
        }
    }

    fn add(&mut self, o: &Self) {
        self.scheduled += o.scheduled;
        self.started += o.started;
        self.completed += o.completed;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.timed_out += o.timed_out;
        self.interrupted += o.interrupted;
        self.dropped += o.dropped;
    }
}

/// One run's numbers.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunNumbers {
    pub pair: u32,
    pub p99_peak_s: f64,
    pub p99_end_s: f64,
    pub queue_peak: f64,
    pub threads_peak: f64,
    pub busy_peak: f64,
    pub requests: RequestCounts,
    pub first_scale_s: Option<f64>,
    pub scale_events: usize,
    pub replicas_max: f64,
    /// (seconds from start, replicas) at every change, from the start.
    pub replicas_over_time: Vec<(f64, f64)>,
    /// Which node ran what (runs on a multi-node orchestrator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<super::placement::PlacementNumbers>,
}

/// Means over the runs of one role; request counts summed over them.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RoleNumbers {
    pub runs: usize,
    pub p99_peak_s: f64,
    pub p99_end_s: f64,
    pub queue_peak: f64,
    pub threads_peak: f64,
    pub busy_peak: f64,
    /// Sums over the runs of this role.
    pub requests: RequestCounts,
    pub runs_with_scale_event: usize,
    pub first_scale_s: Option<f64>,
    pub replicas_max: f64,
    pub per_run: Vec<RunNumbers>,
}

fn series(points: Option<&Vec<(f64, f64)>>) -> &[(f64, f64)] {
    points.map(Vec::as_slice).unwrap_or(&[])
}

fn peak(p: &[(f64, f64)]) -> f64 {
    p.iter().map(|x| x.1).fold(0.0, f64::max)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn read_replicas(dir: &Path) -> Vec<(f64, f64)> {
    let p = dir.join(format!("{}_export.json", super::super::record::REPLICAS));
    let Ok(r) = crate::results::promjson::read_export(&p) else {
        return Vec::new();
    };
    let Ok(s) = r.series() else {
        return Vec::new();
    };
    s.first()
        .map(|s| s.values.iter().map(|v| (v.ts, v.value)).collect())
        .unwrap_or_default()
}

/// The run's `load_summary.json`.
pub fn read_load_summary(dir: &Path) -> anyhow::Result<LoadSummary> {
    let p = dir.join("load_summary.json");
    let bytes = std::fs::read(&p).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; the run is incomplete: redo it with `starvation experiment --resume`",
            p.display()
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a load summary: {e}", p.display()))
}

pub fn role_numbers(pairs: &Pairs, role: Role) -> anyhow::Result<RoleNumbers> {
    let mut per_run = Vec::new();
    for run in pairs.runs(role) {
        let d = load_run(run, 1.0)?;
        let p99 = series(d.aligned.get(m::REQUEST_DURATION_P99));
        let start = run
            .meta
            .as_ref()
            .map(|m| m.start.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0);
        let mut over_time: Vec<(f64, f64)> = Vec::new();
        for (t, v) in read_replicas(&run.path) {
            if over_time.last().is_none_or(|l| l.1 != v) {
                over_time.push(((t - start).max(0.0).round(), v));
            }
        }
        per_run.push(RunNumbers {
            pair: run.pair,
            p99_peak_s: peak(p99),
            p99_end_s: p99
                .iter()
                .rev()
                .find(|x| x.1 > 0.0)
                .map(|x| x.1)
                .unwrap_or(0.0),
            queue_peak: peak(series(d.aligned.get(m::QUEUE_LENGTH))),
            threads_peak: peak(series(d.aligned.get(m::PROCESS_THREADS))),
            busy_peak: peak(series(d.aligned.get(m::BUSY_WORKER_THREADS))),
            requests: RequestCounts::from_summary(&read_load_summary(&run.path)?),
            first_scale_s: d.first_scale_s,
            scale_events: run.meta.as_ref().map(|m| m.scale_events.len()).unwrap_or(0),
            replicas_max: over_time.iter().map(|x| x.1).fold(0.0, f64::max),
            replicas_over_time: over_time,
            placement: run
                .meta
                .as_ref()
                .and_then(super::placement::placement_numbers),
        });
    }
    let firsts: Vec<f64> = per_run.iter().filter_map(|r| r.first_scale_s).collect();
    let mut requests = RequestCounts::default();
    for r in &per_run {
        requests.add(&r.requests);
    }
    Ok(RoleNumbers {
        runs: per_run.len(),
        p99_peak_s: mean(per_run.iter().map(|r| r.p99_peak_s)),
        p99_end_s: mean(per_run.iter().map(|r| r.p99_end_s)),
        queue_peak: mean(per_run.iter().map(|r| r.queue_peak)),
        threads_peak: mean(per_run.iter().map(|r| r.threads_peak)),
        busy_peak: mean(per_run.iter().map(|r| r.busy_peak)),
        requests,
        runs_with_scale_event: per_run.iter().filter(|r| r.scale_events > 0).count(),
        first_scale_s: (!firsts.is_empty()).then(|| mean(firsts.iter().copied())),
        replicas_max: mean(per_run.iter().map(|r| r.replicas_max)),
        per_run,
    })
}
