//! Pushes the gauges to a Pushgateway on a fixed interval, independent of requests (the
//! original pushed only when a request finished, so under starvation its queue metric lagged by
//! the very latency it should detect). Each replica owns its grouping key and deletes it on exit.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::App;

pub struct Pusher {
    client: reqwest::Client,
    /// `<gateway>/metrics/job/webserver/instance/<instance>/service/<service>`
    group_url: String,
    interval: Duration,
}

impl Pusher {
    pub fn new(gateway: &str, instance: &str, service: &str, interval: Duration) -> Pusher {
        let group_url = crate::util::push_group_url(gateway, instance, service);
        let client = reqwest::Client::builder()
            .timeout(interval.max(Duration::from_secs(2)))
            .build()
            .expect("a client with only a timeout set always builds");
        Pusher {
            client,
            group_url,
            interval,
        }
    }

    pub fn group_url(&self) -> &str {
        &self.group_url
    }

    /// Push until cancelled, then delete the group.
    pub async fn run(self, app: Arc<App>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = FailureLog::default();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            app.refresh_metrics();
            let body = app.metrics.encode_for_push();
            if let Err(e) = self.push(body).await {
                app.metrics.push_failures.inc();
                failures.record(&e);
            }
        }
        let shown = crate::util::redact::url(&self.group_url);
        match self.delete().await {
            Ok(()) => tracing::info!("deleted Pushgateway group {shown}"),
            Err(e) => tracing::warn!("could not delete Pushgateway group {shown}: {e}"),
        }
    }

    /// PUT replaces the whole group, so a gauge that disappears does not linger.
    async fn push(&self, body: String) -> Result<(), String> {
        let resp = self
            .client
            .put(&self.group_url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        check(resp).await
    }

    pub async fn delete(&self) -> Result<(), String> {
        let resp = self
            .client
            .delete(&self.group_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        check(resp).await
    }
}

async fn check(resp: reqwest::Response) -> Result<(), String> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!("HTTP {status}: {}", text.trim()))
}

/// Logs the first failure at once, then at most one summary every 30 s.
#[derive(Default)]
struct FailureLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    fn record(&mut self, error: &str) {
        let now = Instant::now();
        match self.last_logged {
            Some(t) if now - t < Duration::from_secs(30) => self.suppressed += 1,
            _ => {
                tracing::warn!(
                    "Pushgateway push failed: {error} ({} more failures since the last report)",
                    self.suppressed
                );
                self.last_logged = Some(now);
                self.suppressed = 0;
            }
        }
    }
}
