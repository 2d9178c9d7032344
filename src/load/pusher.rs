//! Remote write in the background: the load never waits for the monitoring endpoint.
//!
//! A ticker takes a snapshot every interval and hands it to a sender task through a queue of
//! [`QUEUE`] pushes. When the endpoint is slow or never answers the queue fills, and further
//! snapshots are dropped and counted instead of delaying anything. At the end the final
//! counters are queued and the sender gets [`FINAL_FLUSH`] to deliver what is left; whatever
//! has not gone by then is dropped and counted too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::remote_write::{RemoteWriteError, RemoteWriter};
use super::runner::{Live, RunConfig, Snapshot};

/// Pushes that may wait for the endpoint at once.
pub const QUEUE: usize = 4;
/// How long the end of a run waits for the last pushes to be delivered.
pub const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// What happened to the pushes of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Snapshots the endpoint accepted.
    pub sent: u64,
    /// Snapshots sent but refused or failed (logged one by one).
    pub failed: u64,
    /// Snapshots never sent: the queue was full or the final flush ran out of time.
    pub dropped: u64,
    /// Whether the duration histogram still went out as a native histogram at the end.
    pub native: bool,
}

#[derive(Default)]
struct Counters {
    /// Snapshots taken for pushing (queued or refused by a full queue).
    offered: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    /// Set once the writer has fallen back to the classic histogram.
    classic: AtomicBool,
}

/// A running background pusher; [`Pusher::finish`] ends it.
pub struct Pusher {
    counters: Arc<Counters>,
    ticker: JoinHandle<()>,
    sender: JoinHandle<()>,
    stop: CancellationToken,
}

impl Pusher {
    /// Starts pushing `live` to `url` every `interval`. The first push (zero counters, taken
    /// now) is queued before this returns, so it carries a timestamp before the first request.
    pub fn start(url: url::Url, live: Live, interval: Duration) -> Result<Self, RemoteWriteError> {
        // A push older than a few intervals is worth little: do not let one hang for long.
        let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
        let writer = RemoteWriter::new(url, timeout)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel::<Snapshot>(QUEUE);
        let offer = {
            let counters = counters.clone();
            move |tx: &mpsc::Sender<Snapshot>, snap: Snapshot| {
                counters.offered.fetch_add(1, Ordering::Relaxed);
                // A full queue means the endpoint is behind: drop this one (counted in finish).
                let _ = tx.try_send(snap);
            }
        };
        offer(&tx, live.snapshot());
        let stop = CancellationToken::new();
        let config = live.config().clone();
        let ticker = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // immediate: the first push is already queued
                loop {
                    let last = tokio::select! {
                        _ = tick.tick() => false,
                        _ = stop.cancelled() => true,
                    };
                    offer(&tx, live.snapshot());
                    if last {
                        return; // dropping tx ends the sender once the queue is empty
                    }
                }
            })
        };
        let sender = tokio::spawn(send_all(writer, config, rx, counters.clone()));
        Ok(Self {
            counters,
            ticker,
            sender,
            stop,
        })
    }

    /// Queues the final counters and waits up to [`FINAL_FLUSH`] for the queue to empty.
    pub async fn finish(self) -> PushStats {
        self.stop.cancel();
        let _ = self.ticker.await;
        let mut sender = self.sender;
        if tokio::time::timeout(FINAL_FLUSH, &mut sender)
            .await
            .is_err()
        {
            sender.abort();
        }
        let c = &self.counters;
        let (sent, failed) = (
            c.sent.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
        );
        PushStats {
            sent,
            failed,
            // Refused by a full queue, or still queued when the flush ran out of time.
            dropped: c
                .offered
                .load(Ordering::Relaxed)
                .saturating_sub(sent + failed),
            native: !c.classic.load(Ordering::Relaxed),
        }
    }
}

async fn send_all(
    mut writer: RemoteWriter,
    config: RunConfig,
    mut rx: mpsc::Receiver<Snapshot>,
    c: Arc<Counters>,
) {
    while let Some(snap) = rx.recv().await {
        let result = writer.push(&snap, &config).await;
        c.classic.store(!writer.native(), Ordering::Relaxed);
        match result {
            Ok(_) => c.sent.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!("{e}");
                c.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
