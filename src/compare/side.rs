//! One side's run: the load against it, its pool read every second while the load runs and
//! until the pool is idle again, and what the run gives the comparison ([`SideRun`]).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::CompareError;
use super::sample::PoolReading;
use crate::load::{Plan, Report, Runner, Summary, TimeSeries};

/// After the load ends, how long the pool may take to become idle (busy 0, queue 0) while
/// it is still read; requests the load gave up on may still be running there.
pub const TAIL_MAX: Duration = Duration::from_secs(30);

/// Which workload a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The paper's service on the real .NET 8 runtime (`dotnet/`).
    Dotnet,
    /// `starvation serve`, in process.
    Model,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Dotnet => ".NET 8",
            Side::Model => "model",
        }
    }

    /// Its name in `curves.csv`.
    pub fn key(self) -> &'static str {
        match self {
            Side::Dotnet => "dotnet",
            Side::Model => "model",
        }
    }
}

/// One whole second after the load started, on one side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Seconds after the load started.
    pub t_s: u32,
    /// The pool's reading nearest this second (none if no reading was near it).
    pub pool: Option<PoolReading>,
    /// Median service time of the requests that completed in [t_s, t_s + 1), seconds
    /// (failed ones, timeouts included, count with the time they took).
    pub p50_s: Option<f64>,
    /// 99th percentile of the same, seconds.
    pub p99_s: Option<f64>,
}

/// The load's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Requests answered with 200.
    pub completed: u64,
    /// Requests the load never sent: no free virtual user when they were due (k6's
    /// `dropped_iterations`).
    pub dropped: u64,
    /// Requests sent and not answered with 200: errors, timeouts (the scenario's request
    /// timeout), and requests still running when the load's graceful stop ran out.
    pub failed: u64,
}

impl Totals {
    pub fn of(s: &Summary) -> Totals {
        Totals {
            completed: s.checks_passed,
            dropped: s.dropped,
            failed: s.failed + s.interrupted,
        }
    }
}

/// What one side's run gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideRun {
    pub side: Side,
    /// From the load's start to the pool's idle again (or [`TAIL_MAX`] after the load).
    pub points: Vec<Point>,
    pub totals: Totals,
    /// Seconds from the load's start to its end (for a burst: the last answer).
    pub load_s: f64,
}

impl SideRun {
    /// One curve as `(t_s, value)` pairs, seconds without a value left out.
    pub fn curve(&self, value: impl Fn(&Point) -> Option<f64>) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .filter_map(|p| Some((f64::from(p.t_s), value(p)?)))
            .collect()
    }
}

/// Reads one side's pool.
pub(crate) trait Probe {
    /// Reads the pool now (the model) or what the service wrote since the last call (.NET);
    /// returns the newest reading, for the idle check. `elapsed`: since the load started.
    fn poll(&mut self, elapsed: Duration) -> Result<Option<PoolReading>, CompareError>;
}

/// What [`observe`] saw, before the probe's readings are put on the grid.
pub(crate) struct Observed {
    pub report: Report,
    /// The load's start, on the wall clock (the .NET samples carry wall-clock times).
    pub wall_start: SystemTime,
    pub load_s: f64,
    /// Seconds from the load's start to the last poll.
    pub observed_s: f64,
}

/// Runs `plan`, polling `probe` every second from the load's start, then until the pool is
/// idle (at most [`TAIL_MAX`]). `cancel` stops it with [`CompareError::Interrupted`].
pub(crate) async fn observe(
    plan: Plan,
    cancel: &CancellationToken,
    probe: &mut dyn Probe,
) -> Result<Observed, CompareError> {
    let runner = Runner::new(plan.schedule, plan.config).map_err(CompareError::Load)?;
    let start = tokio::time::Instant::now();
    let wall_start = SystemTime::now();
    let mut ticks = tokio::time::interval_at(start, Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let load = runner.run(cancel.clone());
    tokio::pin!(load);
    let report = loop {
        tokio::select! {
            report = &mut load => break report,
            _ = ticks.tick() => { probe.poll(start.elapsed())?; }
        }
    };
    if report.summary.stopped_by_user || cancel.is_cancelled() {
        return Err(CompareError::Interrupted);
    }
    let load_s = start.elapsed().as_secs_f64();
    let give_up = tokio::time::Instant::now() + TAIL_MAX;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Err(CompareError::Interrupted),
            _ = ticks.tick() => {}
        }
        let idle = probe.poll(start.elapsed())?.is_some_and(|r| r.idle());
        if idle || tokio::time::Instant::now() >= give_up {
            break;
        }
    }
    Ok(Observed {
        report,
        wall_start,
        load_s,
        observed_s: start.elapsed().as_secs_f64(),
    })
}

/// The per-second points of a run: the pool readings on the grid, the latency of the
/// requests that completed in each second.
pub(crate) fn points(pool: &[Option<PoolReading>], series: &TimeSeries) -> Vec<Point> {
    let last_series = series.rows.last().map_or(0, |r| r.second as usize + 1);
    let len = pool.len().max(last_series);
    let mut points: Vec<Point> = (0..len)
        .map(|k| Point {
            t_s: k as u32,
            pool: pool.get(k).copied().flatten(),
            p50_s: None,
            p99_s: None,
        })
        .collect();
    for row in &series.rows {
        let p = &mut points[row.second as usize];
        p.p50_s = row.p50_ms.map(|ms| ms / 1000.0);
        p.p99_s = row.p99_ms.map(|ms| ms / 1000.0);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::SecondRow;

    #[test]
    fn points_join_the_pool_and_the_latency_by_second() {
        let reading = PoolReading {
            busy: 2.0,
            threads: 3.0,
            queue: 1.0,
            work_items: 10.0,
        };
        let row = |second, p99_ms| SecondRow {
            second,
            target_rate: 0.0,
            scheduled: 0,
            started: 0,
            completed: 1,
            failed: 0,
            dropped: 0,
            in_flight: 0,
            p50_ms: p99_ms,
            p99_ms,
        };
        let series = TimeSeries {
            rows: vec![row(0, None), row(1, None), row(2, Some(2500.0))],
        };
        let pts = points(&[Some(reading), None], &series);
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[0].pool, Some(reading));
        assert_eq!(pts[1].pool, None);
        assert_eq!(pts[2].p99_s, Some(2.5));
        let run = SideRun {
            side: Side::Model,
            points: pts,
            totals: Totals::default(),
            load_s: 2.0,
        };
        assert_eq!(run.curve(|p| p.p99_s), vec![(2.0, 2.5)]);
        assert_eq!(run.curve(|p| Some(p.pool?.busy)), vec![(0.0, 2.0)]);
    }
}
