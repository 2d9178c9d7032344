//! The open-model runner: walks the schedule, hands each iteration to a free VU or drops it,
//! grows the VU pool one at a time up to `max_vus`, and records everything in a [`Live`] handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::http::Client;
pub use super::live::{Live, Outcome, RequestKey, RequestSeries, Snapshot};
use super::schedule::Schedule;
use super::summary::Summary;
use super::timeseries::TimeSeries;

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
    client: Arc<Client>,
}

impl Runner {
    pub fn new(schedule: Schedule, config: RunConfig) -> Result<Self, RunError> {
        let client = Arc::new(Client::new(&config)?);
        let live = Live::new(schedule, config);
        Ok(Self { live, client })
    }

    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// Runs to the end of the stages (plus graceful stop for what is still running) or until
    /// `cancel` fires. A cancelled
    /// run aborts what is in flight and returns the partial report with `stopped_by_user`.
    pub async fn run(self, cancel: CancellationToken) -> Report {
        let live = self.live;
        let start = tokio::time::Instant::now();
        live.mark_start(start.into_std());
        let (mut tasks, mut cancelled) =
            schedule_loop(live.clone(), self.client.clone(), cancel.clone(), start).await;
        if !cancelled {
            // As k6: the executor runs to the end of its stages even when its last iteration
            // started earlier (a ramp down to 0), and only iterations still running then get
            // the graceful stop.
            let end = start + live.schedule().duration();
            let graceful = live.config().graceful_stop;
            let drain = async {
                tokio::time::sleep_until(end).await;
                let _ = tokio::time::timeout(graceful, async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
            };
            tokio::select! {
                _ = cancel.cancelled() => cancelled = true,
                _ = drain => {}
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
/// `std::thread::sleep` was more precise at the median but cost ~50 % more CPU per request,
/// dropped more under load and had a worse p99, see docs/load.md).
async fn schedule_loop(
    live: Live,
    client: Arc<Client>,
    cancel: CancellationToken,
    start: tokio::time::Instant,
) -> (JoinSet<()>, bool) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let schedule = live.schedule().clone();
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
                let outcome = client.get().await;
                live.finish(offset, sent.elapsed(), outcome);
            });
        }
    }
    (tasks, cancel.is_cancelled())
}
