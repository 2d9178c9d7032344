//! The open-model runner: walks the schedule, hands each iteration to a free VU or drops it,
//! grows the VU pool one at a time up to `max_vus`, and records everything in a [`Live`] handle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::histogram::NativeHistogram;
use super::schedule::Schedule;
use super::summary::{ErrorCounts, LatencyStats, Summary};
use super::timeseries::{SecondBucket, TimeSeries};

/// What the runner needs besides the schedule.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub url: url::Url,
    pub pre_allocated_vus: u64,
    pub max_vus: u64,
    pub graceful_stop: Duration,
    pub timeout: Duration,
    pub expect_status: u16,
    /// Tags added to every series (k6 `tags`), e.g. `testid=threadloadtest`.
    pub tags: Vec<(String, String)>,
}

/// Failures that stop a run before it sends anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    RemoteWrite(#[from] super::remote_write::RemoteWriteError),
}

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

pub(crate) struct Recorder {
    started_at: Instant,
    wall_start: SystemTime,
    scheduled: u64,
    started: u64,
    completed: u64,
    failed: u64,
    dropped: u64,
    interrupted: u64,
    checks_passed: u64,
    checks_failed: u64,
    vus_busy: u64,
    vus_total: u64,
    vus_peak_busy: u64,
    errors: ErrorCounts,
    service: Histogram<u64>,
    response: Histogram<u64>,
    lag: Histogram<u64>,
    requests: BTreeMap<RequestKey, RequestSeries>,
    seconds: Vec<SecondBucket>,
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

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

impl Recorder {
    fn new(pre_allocated: u64, expect_status: u16) -> Self {
        // The series of successful requests exists from the start with zero counts, so a
        // remote-write receiver sees it begin at 0 and rate() covers the first requests too.
        let mut requests = BTreeMap::new();
        requests.insert(
            RequestKey {
                status: expect_status,
                expected_response: true,
            },
            RequestSeries::default(),
        );
        Self {
            started_at: Instant::now(),
            wall_start: SystemTime::now(),
            scheduled: 0,
            started: 0,
            completed: 0,
            failed: 0,
            dropped: 0,
            interrupted: 0,
            checks_passed: 0,
            checks_failed: 0,
            vus_busy: 0,
            vus_total: pre_allocated,
            vus_peak_busy: 0,
            errors: ErrorCounts::default(),
            service: hist(),
            response: hist(),
            lag: hist(),
            requests,
            seconds: Vec::new(),
        }
    }

    fn bucket(&mut self, offset: Duration) -> &mut SecondBucket {
        let s = offset.as_secs() as usize;
        while self.seconds.len() <= s {
            self.seconds.push(SecondBucket::default());
        }
        &mut self.seconds[s]
    }
}

/// Cheap clonable handle on a running (or finished) load: counters, histograms, time series.
#[derive(Clone)]
pub struct Live {
    inner: Arc<Mutex<Recorder>>,
    schedule: Arc<Schedule>,
    config: Arc<RunConfig>,
    /// Iterations the whole schedule starts.
    expected: u64,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Current counters.
    pub fn snapshot(&self) -> Snapshot {
        let r = self.lock();
        Snapshot {
            elapsed: r.started_at.elapsed(),
            at: SystemTime::now(),
            scheduled: r.scheduled,
            started: r.started,
            completed: r.completed,
            failed: r.failed,
            dropped: r.dropped,
            interrupted: r.interrupted,
            checks_passed: r.checks_passed,
            checks_failed: r.checks_failed,
            vus: r.vus_busy,
            vus_max: r.vus_total,
            in_flight: r.started - r.completed - r.interrupted,
            errors: r.errors.clone(),
            p99_ms: r.service.value_at_quantile(0.99) as f64 / 1000.0,
            requests: r.requests.clone(),
        }
    }

    /// Per-second series so far.
    pub fn series(&self) -> TimeSeries {
        let r = self.lock();
        TimeSeries::from_buckets(&r.seconds, &self.schedule)
    }

    /// The end-of-run summary built from the counters so far.
    pub fn summary(&self, interrupted_by_user: bool) -> Summary {
        let r = self.lock();
        let elapsed = r.started_at.elapsed();
        // Over the scheduling window: the drain after the last start does not count.
        let secs = elapsed
            .min(self.schedule.duration())
            .as_secs_f64()
            .max(1e-9);
        Summary {
            url: self.config.url.to_string(),
            started_at: chrono::DateTime::<chrono::Utc>::from(r.wall_start).to_rfc3339(),
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
            vus_max: r.vus_total,
            vus_peak_busy: r.vus_peak_busy,
            errors: r.errors.clone(),
            service_time: LatencyStats::from_hist(&r.service),
            response_time: LatencyStats::from_hist(&r.response),
            start_lag: LatencyStats::from_hist(&r.lag),
        }
    }

    /// Exact p-quantile of the service time so far, in seconds (HDR, 3 significant digits).
    pub fn service_quantile(&self, q: f64) -> f64 {
        self.lock().service.value_at_quantile(q) as f64 / 1e6
    }

    /// Try to start an iteration scheduled at `offset`. Returns false when it was dropped; then
    /// the pool grows by one VU if it may.
    fn try_start(&self, offset: Duration) -> bool {
        let mut r = self.lock();
        let now = r.started_at.elapsed();
        r.scheduled += 1;
        r.bucket(offset).scheduled += 1;
        if r.vus_busy < r.vus_total {
            r.vus_busy += 1;
            r.vus_peak_busy = r.vus_peak_busy.max(r.vus_busy);
            r.started += 1;
            let lag = now.saturating_sub(offset);
            record(&mut r.lag, micros(lag));
            r.bucket(now).started += 1;
            true
        } else {
            r.dropped += 1;
            r.bucket(offset).dropped += 1;
            if r.vus_total < self.config.max_vus {
                // k6 initialises one unplanned VU at a time in the background; ours are free to
                // make, so the next iteration can use it.
                r.vus_total += 1;
            }
            false
        }
    }

    fn finish(&self, offset: Duration, service: Duration, outcome: Outcome) {
        let mut r = self.lock();
        let now = r.started_at.elapsed();
        r.vus_busy -= 1;
        r.completed += 1;
        let expected = outcome == Outcome::Status(self.config.expect_status);
        if expected {
            r.checks_passed += 1;
        } else {
            r.failed += 1;
            r.checks_failed += 1;
            match outcome {
                Outcome::Status(_) => r.errors.unexpected_status += 1,
                Outcome::ConnectRefused => r.errors.connect_refused += 1,
                Outcome::Timeout => r.errors.timeout += 1,
                Outcome::Reset => r.errors.reset += 1,
                Outcome::OtherError => r.errors.other += 1,
            }
        }
        record(&mut r.service, micros(service));
        record(&mut r.response, micros(now.saturating_sub(offset)));
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

    fn interrupt(&self, n: u64) {
        let mut r = self.lock();
        let now = r.started_at.elapsed();
        r.interrupted += n;
        r.vus_busy = r.vus_busy.saturating_sub(n);
        r.bucket(now).interrupted += n;
    }
}

/// Everything a finished run produced.
#[derive(Debug, Clone)]
pub struct Report {
    pub summary: Summary,
    pub series: TimeSeries,
}

/// Runs one [`super::Plan`]. Create it, take [`Runner::live`] handles for observers, then
/// [`Runner::run`].
pub struct Runner {
    live: Live,
    client: reqwest::Client,
}

impl Runner {
    pub fn new(schedule: Schedule, config: RunConfig) -> Result<Self, RunError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(config.max_vus as usize)
            .user_agent(concat!("starvation-load/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let expected = schedule.total_iterations();
        let live = Live {
            expected,
            inner: Arc::new(Mutex::new(Recorder::new(
                config.pre_allocated_vus,
                config.expect_status,
            ))),
            schedule: Arc::new(schedule),
            config: Arc::new(config),
        };
        Ok(Self { live, client })
    }

    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// Runs the schedule to its end (plus graceful stop) or until `cancel` fires. A cancelled
    /// run aborts what is in flight and returns the partial report with `stopped_by_user`.
    pub async fn run(self, cancel: CancellationToken) -> Report {
        let live = self.live;
        let start = tokio::time::Instant::now();
        {
            let mut r = live.lock();
            r.started_at = start.into_std();
            r.wall_start = SystemTime::now();
        }
        let (mut tasks, mut cancelled) =
            schedule_loop(live.clone(), self.client.clone(), cancel.clone(), start).await;
        if !cancelled {
            let drain = async { while tasks.join_next().await.is_some() {} };
            tokio::select! {
                _ = cancel.cancelled() => cancelled = true,
                _ = tokio::time::timeout(live.config.graceful_stop, drain) => {}
            }
        }
        // Whatever is still running is past graceful stop or cancelled: interrupt it.
        tasks.abort_all();
        let mut aborted = 0;
        while let Some(res) = tasks.join_next().await {
            if res.is_err_and(|e| e.is_cancelled()) {
                aborted += 1;
            }
        }
        if aborted > 0 {
            live.interrupt(aborted);
        }
        Report {
            summary: live.summary(cancelled),
            series: live.series(),
        }
    }
}

/// Walks the schedule in real time, starting or dropping each iteration. It runs on the
/// runtime (tokio's timer wakes at most a millisecond late; a dedicated thread with
/// `std::thread::sleep` was more precise at the median but cost ~40 % more CPU per request,
/// dropped more under load and had a worse p99, see docs/load.md).
async fn schedule_loop(
    live: Live,
    client: reqwest::Client,
    cancel: CancellationToken,
    start: tokio::time::Instant,
) -> (JoinSet<()>, bool) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let schedule = live.schedule.clone();
    for offset in schedule.iter() {
        let at = start + offset;
        if cancel.is_cancelled() {
            return (tasks, true);
        }
        if tokio::time::Instant::now() < at {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return (tasks, true),
                _ = tokio::time::sleep_until(at) => {}
            }
        } else {
            // Behind schedule: let the request tasks on this worker run now and then.
            tokio::task::consume_budget().await;
        }
        // Reap finished tasks so the set does not grow with the run length.
        while tasks.try_join_next().is_some() {}
        if live.try_start(offset) {
            let live = live.clone();
            let client = client.clone();
            tasks.spawn(async move {
                let sent = Instant::now();
                let outcome = request(&client, &live.config.url).await;
                live.finish(offset, sent.elapsed(), outcome);
            });
        }
    }
    (tasks, cancel.is_cancelled())
}

async fn request(client: &reqwest::Client, url: &url::Url) -> Outcome {
    match client.get(url.clone()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(_) => Outcome::Status(status),
                Err(e) => classify(&e),
            }
        }
        Err(e) => classify(&e),
    }
}

/// Maps a client error to the error classes the summary counts.
pub fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        return Outcome::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Outcome::ConnectRefused,
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    return Outcome::Reset;
                }
                TimedOut => return Outcome::Timeout,
                _ => {}
            }
        }
        let text = err.to_string();
        if text.contains("connection closed") || text.contains("reset") {
            return Outcome::Reset;
        }
        source = err.source();
    }
    // e.g. no route to host, DNS failure, a malformed response
    Outcome::OtherError
}
