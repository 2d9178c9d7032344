//! What a running load has done so far, recorded without a shared lock on the request path.
//!
//! The VU count is what the scheduler decides on, so it is atomic and exact. Everything else a
//! request records (counters, HDR and native histograms, the per-second buckets) goes into the
//! [`Shard`] of the runtime thread it finishes on: each thread has its own, so two requests
//! finishing on two threads never wait for each other, and the lock a shard has is only ever
//! contended by an observer (a snapshot, about once a second) merging them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use super::histogram::NativeHistogram;
use super::runner::RunConfig;
use super::schedule::Schedule;
use super::summary::{ErrorCounts, LatencyStats, Summary};
use super::timeseries::{SecondBucket, TimeSeries};

/// How one iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A response arrived with this status.
    Status(u16),
    ConnectRefused,
    Timeout,
    Reset,
    OtherError,
}

impl Outcome {
    /// The status k6 reports (0 when no response arrived).
    pub fn status(self) -> u16 {
        match self {
            Outcome::Status(s) => s,
            _ => 0,
        }
    }
}

/// Labels of one `k6_http_reqs_total` / `k6_http_req_duration_seconds` series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    pub status: u16,
    pub expected_response: bool,
}

/// Per-label-set request counters and duration histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestSeries {
    pub count: u64,
    pub duration: NativeHistogram,
}

/// Point-in-time copy of the live counters, for progress, remote write and `/metrics`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub elapsed: Duration,
    /// Wall-clock time of the snapshot.
    pub at: SystemTime,
    pub scheduled: u64,
    pub started: u64,
    /// Iterations that finished (response or error).
    pub completed: u64,
    pub failed: u64,
    pub dropped: u64,
    pub interrupted: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub vus: u64,
    pub vus_max: u64,
    pub in_flight: u64,
    pub errors: ErrorCounts,
    /// p99 of the service time so far, milliseconds.
    pub p99_ms: f64,
    pub requests: BTreeMap<RequestKey, RequestSeries>,
}

/// What one thread recorded.
#[derive(Default)]
struct Shard {
    scheduled: u64,
    started: u64,
    completed: u64,
    failed: u64,
    dropped: u64,
    interrupted: u64,
    checks_passed: u64,
    checks_failed: u64,
    errors: ErrorCounts,
    service: Option<Histogram<u64>>,
    response: Option<Histogram<u64>>,
    lag: Option<Histogram<u64>>,
    requests: BTreeMap<RequestKey, RequestSeries>,
    seconds: Vec<SecondBucket>,
}

impl Shard {
    fn bucket(&mut self, offset: Duration) -> &mut SecondBucket {
        let s = offset.as_secs() as usize;
        if self.seconds.len() <= s {
            self.seconds.resize_with(s + 1, SecondBucket::default);
        }
        &mut self.seconds[s]
    }

    fn merge_into(&self, all: &mut Shard) {
        all.scheduled += self.scheduled;
        all.started += self.started;
        all.completed += self.completed;
        all.failed += self.failed;
        all.dropped += self.dropped;
        all.interrupted += self.interrupted;
        all.checks_passed += self.checks_passed;
        all.checks_failed += self.checks_failed;
        all.errors.add(&self.errors);
        for (mine, theirs) in [
            (&mut all.service, &self.service),
            (&mut all.response, &self.response),
            (&mut all.lag, &self.lag),
        ] {
            if let Some(h) = theirs {
                mine.get_or_insert_with(hist)
                    .add(h)
                    .expect("auto-resizing histograms always add");
            }
        }
        for (key, s) in &self.requests {
            let series = all.requests.entry(*key).or_default();
            series.count += s.count;
            series.duration.merge(&s.duration);
        }
        if all.seconds.len() < self.seconds.len() {
            all.seconds
                .resize_with(self.seconds.len(), SecondBucket::default);
        }
        for (mine, theirs) in all.seconds.iter_mut().zip(&self.seconds) {
            mine.merge(theirs);
        }
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

/// Records into an auto-resizing histogram (which `saturating_record` would clamp instead).
pub(crate) fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

fn record_in(h: &mut Option<Histogram<u64>>, v: u64) {
    record(h.get_or_insert_with(hist), v);
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

thread_local! {
    /// This thread's shard number, handed out round-robin on first use.
    static SHARD_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}
static NEXT_SHARD_INDEX: AtomicUsize = AtomicUsize::new(0);

fn shard_index() -> usize {
    SHARD_INDEX.with(|i| match i.get() {
        Some(n) => n,
        None => {
            let n = NEXT_SHARD_INDEX.fetch_add(1, Ordering::Relaxed);
            i.set(Some(n));
            n
        }
    })
}

/// The shared state behind a [`Live`] handle.
struct State {
    /// When the run started (reset by [`Live::mark_start`]).
    start: Mutex<(Instant, SystemTime)>,
    /// Read on the request path without the lock above: nanoseconds from `base`.
    start_ns: AtomicU64,
    base: Instant,
    vus_busy: AtomicU64,
    vus_total: AtomicU64,
    vus_peak_busy: AtomicU64,
    shards: Box<[Mutex<Shard>]>,
}

/// Cheap clonable handle on a running (or finished) load: counters, histograms, time series.
#[derive(Clone)]
pub struct Live {
    state: Arc<State>,
    schedule: Arc<Schedule>,
    config: Arc<RunConfig>,
    /// Iterations the whole schedule starts.
    expected: u64,
}

impl Live {
    pub(crate) fn new(schedule: Schedule, config: RunConfig) -> Self {
        // One shard per runtime worker, and one for the scheduler's thread when it is apart.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut first = Shard::default();
        // The series of successful requests exists from the start with zero counts, so a
        // remote-write receiver sees it begin at 0 and rate() covers the first requests too.
        first.requests.insert(
            RequestKey {
                status: config.expect_status,
                expected_response: true,
            },
            RequestSeries::default(),
        );
        let mut shards = vec![Mutex::new(first)];
        shards.extend((0..threads).map(|_| Mutex::new(Shard::default())));
        let now = Instant::now();
        Live {
            expected: schedule.total_iterations(),
            state: Arc::new(State {
                start: Mutex::new((now, SystemTime::now())),
                start_ns: AtomicU64::new(0),
                base: now,
                vus_busy: AtomicU64::new(0),
                vus_total: AtomicU64::new(config.pre_allocated_vus),
                vus_peak_busy: AtomicU64::new(0),
                shards: shards.into_boxed_slice(),
            }),
            schedule: Arc::new(schedule),
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Iterations the whole schedule starts.
    pub fn expected_iterations(&self) -> u64 {
        self.expected
    }

    /// The run starts now (offsets count from here).
    pub(crate) fn mark_start(&self, at: Instant) {
        let s = &self.state;
        *lock(&s.start) = (at, SystemTime::now());
        let ns = at.saturating_duration_since(s.base).as_nanos() as u64;
        s.start_ns.store(ns, Ordering::Release);
    }

    /// Time since the run's start.
    fn elapsed(&self) -> Duration {
        let s = &self.state;
        let start = s.base + Duration::from_nanos(s.start_ns.load(Ordering::Acquire));
        start.elapsed()
    }

    /// This thread's shard.
    fn shard(&self) -> MutexGuard<'_, Shard> {
        let shards = &self.state.shards;
        lock(&shards[shard_index() % shards.len()])
    }

    /// Every shard added up.
    fn merged(&self) -> Shard {
        let mut all = Shard::default();
        for s in self.state.shards.iter() {
            lock(s).merge_into(&mut all);
        }
        all
    }

    /// Current counters.
    pub fn snapshot(&self) -> Snapshot {
        let r = self.merged();
        let s = &self.state;
        Snapshot {
            elapsed: self.elapsed(),
            at: SystemTime::now(),
            scheduled: r.scheduled,
            started: r.started,
            completed: r.completed,
            failed: r.failed,
            dropped: r.dropped,
            interrupted: r.interrupted,
            checks_passed: r.checks_passed,
            checks_failed: r.checks_failed,
            vus: s.vus_busy.load(Ordering::Relaxed),
            vus_max: s.vus_total.load(Ordering::Relaxed),
            in_flight: r.started.saturating_sub(r.completed + r.interrupted),
            errors: r.errors.clone(),
            p99_ms: r
                .service
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0),
            requests: r.requests,
        }
    }

    /// Per-second series so far.
    pub fn series(&self) -> TimeSeries {
        TimeSeries::from_buckets(&self.merged().seconds, &self.schedule)
    }

    /// The end-of-run summary built from the counters so far.
    pub fn summary(&self, interrupted_by_user: bool) -> Summary {
        let r = self.merged();
        let wall_start = lock(&self.state.start).1;
        let elapsed = self.elapsed();
        // Over the scheduling window: the drain after the last start does not count.
        let secs = elapsed
            .min(self.schedule.duration())
            .as_secs_f64()
            .max(1e-9);
        let stats = |h: &Option<Histogram<u64>>| {
            h.as_ref()
                .map_or_else(LatencyStats::default, LatencyStats::from_hist)
        };
        Summary {
            url: crate::util::redact::url(self.config.url.as_str()),
            started_at: chrono::DateTime::<chrono::Utc>::from(wall_start).to_rfc3339(),
            duration_s: elapsed.as_secs_f64(),
            stopped_by_user: interrupted_by_user,
            expected_iterations: self.expected,
            scheduled: r.scheduled,
            started: r.started,
            completed: r.completed,
            failed: r.failed,
            dropped: r.dropped,
            interrupted: r.interrupted,
            checks_passed: r.checks_passed,
            checks_failed: r.checks_failed,
            requests: r.requests.values().map(|s| s.count).sum(),
            achieved_rate: r.started as f64 / secs,
            vus_max: self.state.vus_total.load(Ordering::Relaxed),
            vus_peak_busy: self.state.vus_peak_busy.load(Ordering::Relaxed),
            errors: r.errors,
            service_time: stats(&r.service),
            response_time: stats(&r.response),
            start_lag: stats(&r.lag),
        }
    }

    /// Try to start an iteration scheduled at `offset` (only the scheduler calls this). Returns
    /// false when it was dropped; then the pool grows by one VU if it may.
    pub(crate) fn try_start(&self, offset: Duration) -> bool {
        let s = &self.state;
        let now = self.elapsed();
        let busy = s.vus_busy.load(Ordering::Acquire);
        let total = s.vus_total.load(Ordering::Relaxed);
        // Only finishing requests lower `busy` meanwhile: a free VU seen here stays free.
        let free = busy < total;
        if free {
            let busy = s.vus_busy.fetch_add(1, Ordering::AcqRel) + 1;
            s.vus_peak_busy.fetch_max(busy, Ordering::Relaxed);
        } else if total < self.config.max_vus {
            // k6 initialises one unplanned VU at a time in the background; ours are free to
            // make, so the next iteration can use it.
            s.vus_total.fetch_add(1, Ordering::Relaxed);
        }
        let mut r = self.shard();
        r.scheduled += 1;
        r.bucket(offset).scheduled += 1;
        if free {
            r.started += 1;
            record_in(&mut r.lag, micros(now.saturating_sub(offset)));
            r.bucket(now).started += 1;
        } else {
            r.dropped += 1;
            r.bucket(offset).dropped += 1;
        }
        free
    }

    pub(crate) fn finish(&self, offset: Duration, service: Duration, outcome: Outcome) {
        let now = self.elapsed();
        let expected = outcome == Outcome::Status(self.config.expect_status);
        {
            let mut r = self.shard();
            r.completed += 1;
            if expected {
                r.checks_passed += 1;
            } else {
                r.failed += 1;
                r.checks_failed += 1;
                r.errors.count(outcome);
            }
            record_in(&mut r.service, micros(service));
            record_in(&mut r.response, micros(now.saturating_sub(offset)));
            let key = RequestKey {
                status: outcome.status(),
                expected_response: expected,
            };
            let series = r.requests.entry(key).or_default();
            series.count += 1;
            series.duration.observe(service.as_secs_f64());
            let b = r.bucket(now);
            b.completed += 1;
            if !expected {
                b.failed += 1;
            }
            b.record_service(micros(service));
        }
        // After the record: whoever sees the VU free sees this iteration finished.
        self.state.vus_busy.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn interrupt(&self, n: u64) {
        let now = self.elapsed();
        {
            let mut r = self.shard();
            r.interrupted += n;
            r.bucket(now).interrupted += n;
        }
        let busy = &self.state.vus_busy;
        let _ = busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
            Some(b.saturating_sub(n))
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
