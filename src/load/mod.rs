//! `starvation load`: an open-model spike-test generator with k6's `ramping-arrival-rate`
//! semantics and k6-compatible Prometheus output. See `docs/load.md`.
//!
//! Library use (what the experiment runner does in-process):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use starvation::load::{Plan, Runner, Schedule};
//! use tokio_util::sync::CancellationToken;
//!
//! let plan = Plan::new(Schedule::paper(), Plan::config_for("http://127.0.0.1:5000/test-threadpool")?)?;
//! let runner = Runner::new(plan.schedule, plan.config)?;
//! let live = runner.live(); // snapshot() / series() while it runs
//! let report = runner.run(CancellationToken::new()).await;
//! println!("{} dropped, p99 {} ms", report.summary.dropped, report.summary.service_time.p99_ms);
//! # let _ = live; Ok(()) }
//! ```

pub mod histogram;
pub mod http;
pub mod k6;
pub mod live;
pub mod metrics;
pub mod pusher;
pub mod remote_write;
pub mod runner;
pub mod schedule;
pub mod summary;
pub mod timeseries;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

pub use pusher::{PushStats, Pusher};
pub use remote_write::RemoteWriter;
pub use runner::{Live, Outcome, Report, RunConfig, RunError, Runner, Snapshot};
pub use schedule::{Schedule, ScheduleError, Stage, parse_stages};
pub use summary::{ErrorCounts, Format, LatencyStats, Summary};
pub use timeseries::{SecondRow, TimeSeries};

/// The paper's k6 stages.
pub const PAPER_STAGES: &str = "15:30s,20:30s,30:30s,35:30s,5:30s";
/// The tag the paper's k6 script put on every sample.
pub const DEFAULT_TESTID: &str = "threadloadtest";

/// Command-line options of `starvation load`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "load",
    about = "Open-model spike test with k6 ramping-arrival-rate semantics"
)]
pub struct Opts {
    /// URL every iteration GETs.
    #[arg(
        long,
        env = "STARVATION_LOAD_URL",
        default_value = "http://127.0.0.1:5000/test-threadpool"
    )]
    pub url: String,

    /// Stages as TARGET:DURATION,... (TARGET iterations per --time-unit, reached linearly over
    /// DURATION). Default: the paper's profile.
    #[arg(long, default_value = PAPER_STAGES)]
    pub stages: String,

    /// Rate at the start of the first stage, iterations per --time-unit.
    #[arg(long, default_value_t = 1.0)]
    pub start_rate: f64,

    /// Time unit of the rates (k6 `timeUnit`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub time_unit: Duration,

    /// VUs allocated before the run (k6 `preAllocatedVUs`).
    #[arg(long, default_value_t = 50)]
    pub pre_allocated_vus: u64,

    /// Most VUs the pool may grow to, one at a time when an iteration is dropped (k6 `maxVUs`).
    #[arg(long, default_value_t = 1000)]
    pub max_vus: u64,

    /// How long in-flight iterations may finish after the last stage before they are
    /// interrupted (k6 `gracefulStop`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub graceful_stop: Duration,

    /// Per-request timeout (k6 `timeout`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Status the check expects; any other status or error counts as failed.
    #[arg(long, default_value_t = 200)]
    pub expect_status: u16,

    /// Tag KEY=VALUE added to every series (repeatable). `testid=threadloadtest` is added
    /// unless a testid tag is given.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Write the end summary to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,

    /// Format of the end summary.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Write the per-second time series as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub series: Option<PathBuf>,

    /// Prometheus remote-write endpoint (e.g. http://127.0.0.1:9090/api/v1/write) that receives
    /// k6's series every --remote-write-interval.
    #[arg(long, env = "STARVATION_LOAD_REMOTE_WRITE", value_name = "URL")]
    pub remote_write: Option<String>,

    /// How often to push to --remote-write (k6 pushes every 5 s).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub remote_write_interval: Duration,

    /// Serve the same series as /metrics on ADDR (e.g. 127.0.0.1:5665).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Do not draw the live progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Bad input, found before anything is sent. Messages name the flag.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("--url: `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("--max-vus ({max}) is less than --pre-allocated-vus ({pre})")]
    VusOrder { max: u64, pre: u64 },
    #[error("--max-vus must be at least 1")]
    NoVus,
    #[error("--tag: `{0}` is not KEY=VALUE with KEY a Prometheus label name")]
    Tag(String),
    #[error("--timeout must be longer than zero")]
    Timeout,
    #[error("--expect-status: {0} is not an HTTP status (100-599)")]
    ExpectStatus(u16),
    #[error("--remote-write: `{url}`: {reason}")]
    RemoteWrite { url: String, reason: String },
    #[error("--remote-write-interval must be longer than zero")]
    RemoteWriteInterval,
}

/// A validated schedule plus run configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schedule: Schedule,
    pub config: RunConfig,
}

fn parse_http_url(flag_url: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(flag_url).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(url)
}

fn valid_label_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with("__")
}

impl Plan {
    /// Checks a schedule against a configuration.
    pub fn new(schedule: Schedule, config: RunConfig) -> Result<Self, PlanError> {
        if config.max_vus == 0 {
            return Err(PlanError::NoVus);
        }
        if config.max_vus < config.pre_allocated_vus {
            return Err(PlanError::VusOrder {
                max: config.max_vus,
                pre: config.pre_allocated_vus,
            });
        }
        if config.timeout.is_zero() {
            return Err(PlanError::Timeout);
        }
        if !(100..=599).contains(&config.expect_status) {
            return Err(PlanError::ExpectStatus(config.expect_status));
        }
        Ok(Self { schedule, config })
    }

    /// The paper's k6 settings (50 pre-allocated VUs, 1,000 max, 30 s graceful stop, 60 s
    /// timeout, status 200, `testid=threadloadtest`) for `url`.
    pub fn config_for(url: &str) -> Result<RunConfig, PlanError> {
        let url = parse_http_url(url).map_err(|reason| PlanError::Url {
            url: crate::util::redact::url(url),
            reason,
        })?;
        Ok(RunConfig {
            url,
            pre_allocated_vus: 50,
            max_vus: 1000,
            graceful_stop: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            expect_status: 200,
            tags: vec![("testid".into(), DEFAULT_TESTID.into())],
        })
    }

    /// Validates command-line options.
    pub fn from_opts(opts: &Opts) -> Result<Self, PlanError> {
        let url = parse_http_url(&opts.url).map_err(|reason| PlanError::Url {
            url: crate::util::redact::url(&opts.url),
            reason,
        })?;
        let schedule = Schedule::new(opts.start_rate, opts.time_unit, parse_stages(&opts.stages)?)?;
        let mut tags = Vec::new();
        for t in &opts.tags {
            let (k, v) = t
                .split_once('=')
                .filter(|(k, _)| valid_label_name(k))
                .ok_or_else(|| PlanError::Tag(t.clone()))?;
            tags.retain(|(name, _): &(String, String)| name != k);
            tags.push((k.to_string(), v.to_string()));
        }
        if !tags.iter().any(|(k, _)| k == "testid") {
            tags.insert(0, ("testid".into(), DEFAULT_TESTID.into()));
        }
        if let Some(rw) = &opts.remote_write {
            parse_http_url(rw).map_err(|reason| PlanError::RemoteWrite {
                url: crate::util::redact::url(rw),
                reason,
            })?;
            if opts.remote_write_interval.is_zero() {
                return Err(PlanError::RemoteWriteInterval);
            }
        }
        Self::new(
            schedule,
            RunConfig {
                url,
                pre_allocated_vus: opts.pre_allocated_vus,
                max_vus: opts.max_vus,
                graceful_stop: opts.graceful_stop,
                timeout: opts.timeout,
                expect_status: opts.expect_status,
                tags,
            },
        )
    }
}

/// Runs a plan to the end or until `cancel` fires (library entry point without outputs).
pub async fn run_plan(plan: Plan, cancel: CancellationToken) -> Result<Report, RunError> {
    Ok(Runner::new(plan.schedule, plan.config)?.run(cancel).await)
}

/// Optional outputs attached to a run by [`run_plan_with`].
#[derive(Default)]
pub struct Outputs {
    /// Push k6's series to this remote-write endpoint every `Duration`.
    pub remote_write: Option<(url::Url, Duration)>,
    /// Serve `/metrics` on this (already bound) listener while the run lasts.
    pub metrics: Option<tokio::net::TcpListener>,
    /// Draw the progress bar on stderr.
    pub progress: bool,
}

/// Runs a plan with remote write, `/metrics` and the progress bar as asked, until the end or
/// `cancel`. Remote write gets a zero sample before the first request and the final counters
/// after the last; its failures are logged, never fatal.
pub async fn run_plan_with(
    plan: Plan,
    cancel: CancellationToken,
    outputs: Outputs,
) -> Result<Report, RunError> {
    let total = plan.schedule.duration();
    let runner = Runner::new(plan.schedule, plan.config)?;
    let live = runner.live();
    let stop = CancellationToken::new();

    let metrics_task = outputs.metrics.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "serving /metrics");
        }
        let app = metrics::router(live.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        })
    });
    // Queues a zero sample before the first request, so rate() covers the whole run.
    let pusher = outputs
        .remote_write
        .map(|(url, every)| Pusher::start(url, live.clone(), every))
        .transpose()?;
    let progress_task = outputs
        .progress
        .then(|| tokio::spawn(progress(live.clone(), total, stop.clone())));

    tracing::info!(
        url = %crate::util::redact::url(live.config().url.as_str()),
        iterations = live.expected_iterations(),
        duration = %humantime::format_duration(total),
        "starting load"
    );
    let report = runner.run(cancel).await;
    stop.cancel();
    if let Some(t) = progress_task {
        let _ = t.await;
    }
    if let Some(p) = pusher {
        let s = p.finish().await;
        if s.dropped > 0 || s.failed > 0 {
            tracing::warn!(
                sent = s.sent,
                failed = s.failed,
                dropped = s.dropped,
                "remote write: not every push was delivered (a slow or failing endpoint costs pushes, never load)"
            );
        } else {
            tracing::info!(pushes = s.sent, native = s.native, "remote write done");
        }
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    Ok(report)
}

/// An output file. A regular file is written whole at the end into a temporary file beside
/// `path` (made now, so a path that cannot be written fails before the first request), then
/// renamed into place: an error never leaves half a file behind. Anything else that exists
/// already (`/dev/stdout`, a pipe) is opened now and written in place. Errors name the flag and
/// the file.
struct OutputFile {
    flag: &'static str,
    path: PathBuf,
    target: Target,
}

enum Target {
    Temp(tempfile::TempPath),
    Direct(File),
}

impl OutputFile {
    fn create(path: &Path, flag: &'static str) -> anyhow::Result<Self> {
        let cannot = || format!("{flag}: cannot create {}", path.display());
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        let target = if special {
            Target::Direct(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(cannot)?,
            )
        } else {
            Target::Temp(crate::util::temp_beside(path).with_context(cannot)?)
        };
        Ok(Self {
            flag,
            path: path.to_path_buf(),
            target,
        })
    }

    fn write(
        self,
        fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let what = || format!("{}: writing {}", self.flag, self.path.display());
        let (file, tmp) = match self.target {
            Target::Direct(f) => (f, None),
            Target::Temp(tmp) => (
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&tmp)
                    .with_context(what)?,
                Some(tmp),
            ),
        };
        let mut w = BufWriter::new(file);
        fill(&mut w).and_then(|_| w.flush()).with_context(what)?;
        if let Some(tmp) = tmp {
            w.get_ref().sync_all().with_context(what)?;
            tmp.persist(&self.path)
                .map_err(|e| e.error)
                .with_context(what)?;
        }
        Ok(())
    }
}

/// `starvation load`.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    // Signals first: a SIGTERM or Ctrl-C during setup stops the run too.
    let cancel = CancellationToken::new();
    let signal = crate::util::shutdown_signal()?;
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            signal.await;
            cancel.cancel();
        })
    };
    let plan = Plan::from_opts(&opts)?;
    // Make everything that can fail before the first request goes out.
    let summary_file = opts
        .summary
        .as_deref()
        .map(|p| OutputFile::create(p, "--summary"))
        .transpose()?;
    let series_file = opts
        .series
        .as_deref()
        .map(|p| OutputFile::create(p, "--series"))
        .transpose()?;
    let metrics = match opts.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen: cannot bind {addr}"))?,
        ),
        None => None,
    };
    let remote_write = opts.remote_write.as_deref().map(|u| {
        (
            url::Url::parse(u).expect("validated"),
            opts.remote_write_interval,
        )
    });
    let outputs = Outputs {
        remote_write,
        metrics,
        progress: !opts.no_progress,
    };
    let report = run_plan_with(plan, cancel, outputs).await;
    ctrl_c.abort();
    let report = report?;

    match summary_file {
        Some(f) => f.write(|w| report.summary.write(opts.format, w))?,
        None => {
            let stdout = std::io::stdout();
            report.summary.write(opts.format, stdout.lock())?;
        }
    }
    if let Some(f) = series_file {
        f.write(|w| report.series.write_csv(w))?;
    }
    if report.summary.stopped_by_user {
        return Err(crate::Interrupted.into());
    }
    Ok(())
}

/// Live progress bar on stderr until `stop`.
async fn progress(live: Live, total: Duration, stop: CancellationToken) {
    let expected = live.expected_iterations();
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // Achieved rate over the last second: (time, started) samples from about 1 s back.
    let mut window: std::collections::VecDeque<(std::time::Instant, u64)> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let s = live.snapshot();
        let now = std::time::Instant::now();
        window.push_back((now, s.started));
        while window.len() > 5 {
            window.pop_front();
        }
        let (t0, n0) = window[0];
        let dt = now.duration_since(t0).as_secs_f64();
        let achieved = if dt > 0.0 {
            (s.started - n0) as f64 / dt
        } else {
            0.0
        };
        let target = live.schedule().rate_at(s.elapsed);
        bar.set_position((s.elapsed.as_millis() as u64).min(total.as_millis() as u64));
        bar.set_message(format!(
            "{:.0}/{:.0}s  rate {:.1}/{:.1}/s  {}/{} started  in flight {}  p99 {:.1} ms  errors {}  dropped {}",
            s.elapsed.as_secs_f64(),
            total.as_secs_f64(),
            achieved,
            target,
            s.started,
            expected,
            s.in_flight,
            s.p99_ms,
            s.errors.total(),
            s.dropped
        ));
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Opts {
        let mut all = vec!["load"];
        all.extend_from_slice(args);
        Opts::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_are_the_paper_profile() {
        let plan = Plan::from_opts(&parse(&[])).unwrap();
        assert_eq!(plan.schedule, Schedule::paper());
        assert_eq!(plan.schedule.total_iterations(), 3089);
        let c = &plan.config;
        assert_eq!(c.url.as_str(), "http://127.0.0.1:5000/test-threadpool");
        assert_eq!((c.pre_allocated_vus, c.max_vus), (50, 1000));
        assert_eq!(c.graceful_stop, Duration::from_secs(30));
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.expect_status, 200);
        assert_eq!(c.tags, vec![("testid".into(), "threadloadtest".into())]);
        let opts = parse(&[]);
        assert_eq!(opts.remote_write_interval, Duration::from_secs(5));
        assert_eq!(opts.format, Format::Text);
    }

    #[test]
    fn tags_keep_the_default_testid_unless_given() {
        let plan = Plan::from_opts(&parse(&["--tag", "run=3", "--tag", "run=4"])).unwrap();
        assert_eq!(
            plan.config.tags,
            vec![
                ("testid".to_string(), "threadloadtest".to_string()),
                ("run".to_string(), "4".to_string())
            ]
        );
        let plan = Plan::from_opts(&parse(&["--tag", "testid=x"])).unwrap();
        assert_eq!(plan.config.tags, vec![("testid".into(), "x".into())]);
        for bad in ["=v", "1a=v", "__name__=x", "a-b=c"] {
            let err = Plan::from_opts(&parse(&["--tag", bad])).unwrap_err();
            assert!(err.to_string().starts_with("--tag"), "{bad}: {err}");
        }
    }

    #[test]
    fn vu_bounds_are_checked() {
        let err =
            Plan::from_opts(&parse(&["--pre-allocated-vus", "5", "--max-vus", "4"])).unwrap_err();
        assert!(err.to_string().starts_with("--max-vus"), "{err}");
        let err =
            Plan::from_opts(&parse(&["--pre-allocated-vus", "0", "--max-vus", "0"])).unwrap_err();
        assert!(err.to_string().starts_with("--max-vus"), "{err}");
        assert!(Plan::from_opts(&parse(&["--pre-allocated-vus", "0", "--max-vus", "1"])).is_ok());
        let err = Plan::from_opts(&parse(&["--expect-status", "42"])).unwrap_err();
        assert!(err.to_string().starts_with("--expect-status"), "{err}");
        let err = Plan::from_opts(&parse(&["--timeout", "0s"])).unwrap_err();
        assert!(err.to_string().starts_with("--timeout"), "{err}");
    }
}
