//! The per-second time series of a run.

use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::schedule::Schedule;

/// Raw counters for one second of the run (index = whole seconds since the start).
#[derive(Debug, Clone, Default)]
pub struct SecondBucket {
    /// Iterations whose scheduled start falls in this second.
    pub scheduled: u64,
    /// Iterations that actually started in this second.
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Iterations scheduled in this second that found no free VU.
    pub dropped: u64,
    /// Iterations aborted (graceful stop or Ctrl-C) in this second.
    pub interrupted: u64,
    service: Option<Histogram<u64>>,
}

impl SecondBucket {
    pub(crate) fn record_service(&mut self, micros: u64) {
        let h = self
            .service
            .get_or_insert_with(|| Histogram::new(2).expect("valid sigfig"));
        super::live::record(h, micros);
    }

    /// Adds `other`'s counts and service times to these.
    pub(crate) fn merge(&mut self, other: &SecondBucket) {
        self.scheduled += other.scheduled;
        self.started += other.started;
        self.completed += other.completed;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.interrupted += other.interrupted;
        if let Some(theirs) = &other.service {
            match &mut self.service {
                Some(mine) => mine
                    .add(theirs)
                    .expect("auto-resizing histograms always add"),
                None => self.service = Some(theirs.clone()),
            }
        }
    }

    fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.service
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// One row of the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecondRow {
    /// Seconds since the start of the run (the row covers [second, second + 1)).
    pub second: u64,
    /// Scheduled rate at the middle of the second, iterations per second.
    pub target_rate: f64,
    pub scheduled: u64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Iterations in flight at the end of the second.
    pub in_flight: u64,
    /// Service-time quantiles of the requests that completed in this second (ms).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Per-second series, one row per second from 0 to the last second with activity.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimeSeries {
    pub rows: Vec<SecondRow>,
}

impl TimeSeries {
    pub(crate) fn from_buckets(buckets: &[SecondBucket], schedule: &Schedule) -> Self {
        let mut in_flight: i64 = 0;
        let rows = buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                in_flight += b.started as i64 - b.completed as i64 - b.interrupted as i64;
                SecondRow {
                    second: i as u64,
                    target_rate: schedule
                        .rate_at(std::time::Duration::from_secs_f64(i as f64 + 0.5)),
                    scheduled: b.scheduled,
                    started: b.started,
                    completed: b.completed,
                    failed: b.failed,
                    dropped: b.dropped,
                    in_flight: in_flight.max(0) as u64,
                    p50_ms: b.quantile_ms(0.5),
                    p99_ms: b.quantile_ms(0.99),
                }
            })
            .collect();
        Self { rows }
    }

    /// CSV with a header row; empty quantiles are empty cells.
    pub fn write_csv<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        writeln!(
            w,
            "second,target_rate,scheduled,started,completed,failed,dropped,in_flight,p50_ms,p99_ms"
        )?;
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        for r in &self.rows {
            writeln!(
                w,
                "{},{:.3},{},{},{},{},{},{},{},{}",
                r.second,
                r.target_rate,
                r.scheduled,
                r.started,
                r.completed,
                r.failed,
                r.dropped,
                r.in_flight,
                opt(r.p50_ms),
                opt(r.p99_ms)
            )?;
        }
        Ok(())
    }

    pub fn total_scheduled(&self) -> u64 {
        self.rows.iter().map(|r| r.scheduled).sum()
    }
}
