//! The embedded monitor (`--monitor embedded`, the default): the replicas push their gauges to
//! its Pushgateway-style receiver on a free loopback port, a sampler evaluates the alert rules
//! every second and hands the alerts that change state to an emulated Alertmanager dispatcher
//! ([`super::dispatch`]: the route of `deploy/alertmanager/alertmanager.yml`), which posts v4
//! webhooks on Alertmanager's schedule; every sample is kept so the run can be stored as
//! Prometheus `query_range` JSON.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::dispatch::{Dispatcher, Route};
use super::{AlertEvent, AlertStates, Labels, Monitor, Recording, Rule, receiver};
use crate::results::metrics::MetricSpec;
use crate::results::promjson::{Sample, Series};
use crate::scaler::alert::Notification;

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub rules: Vec<Rule>,
    /// The scaler's `/alert` URL; `None` evaluates rules without notifying (baseline runs).
    pub webhook: Option<String>,
    pub token: Option<String>,
    pub interval: Duration,
    /// How notifications are grouped and timed ([`Route::deployed`]: deploy/'s Alertmanager).
    pub route: Route,
}

/// Every sample the sampler saw: label set (with `__name__`) → (unix seconds, value).
type Samples = BTreeMap<Labels, Vec<(f64, f64)>>;

/// What the sampler hands back when it stops.
#[derive(Debug, Default)]
struct Recorded {
    samples: Samples,
    alerts: Vec<AlertEvent>,
    webhook_failures: u64,
}

/// The embedded monitor: configured by [`Embedded::new`], running after [`Monitor::start`].
pub struct Embedded {
    cfg: MonitorConfig,
    running: Option<Running>,
}

struct Running {
    addr: SocketAddr,
    webhook: Arc<Mutex<Option<String>>>,
    stop_sampling: CancellationToken,
    stop_serving: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
    /// Taken by `collect`; the receiver keeps answering until `stop`, so replicas that stop
    /// afterwards can still delete their groups.
    sampling: Option<tokio::task::JoinHandle<Recorded>>,
}

impl Running {
    async fn stop_sampling(&mut self) -> Recorded {
        self.stop_sampling.cancel();
        match self.sampling.take() {
            Some(s) => s.await.unwrap_or_default(),
            None => Recorded::default(),
        }
    }

    async fn stop(mut self) {
        self.stop_sampling().await;
        self.stop_serving.cancel();
        let _ = self.serving.await;
    }
}

impl Embedded {
    pub fn new(cfg: MonitorConfig) -> Embedded {
        Embedded { cfg, running: None }
    }

    /// Bind the receiver on a free loopback port and start sampling.
    async fn bind(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let groups: receiver::Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop_serving = CancellationToken::new();
        let serve = axum::serve(listener, receiver::router(groups.clone()))
            .with_graceful_shutdown(stop_serving.clone().cancelled_owned());
        let serving = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!("monitor receiver: {e}");
            }
        });
        let webhook = Arc::new(Mutex::new(self.cfg.webhook.clone()));
        let stop_sampling = CancellationToken::new();
        let sampling = tokio::spawn(sample_loop(
            self.cfg.clone(),
            webhook.clone(),
            groups,
            stop_sampling.clone(),
        ));
        self.running = Some(Running {
            addr,
            webhook,
            stop_sampling,
            stop_serving,
            serving,
            sampling: Some(sampling),
        });
        Ok(())
    }

    /// Where to post notifications from now on (`None`: nowhere).
    pub fn set_webhook(&self, url: Option<String>) {
        if let Some(r) = &self.running {
            *r.webhook.lock().unwrap_or_else(|e| e.into_inner()) = url;
        }
    }
}

impl Monitor for Embedded {
    fn describe(&self) -> String {
        "the embedded monitor (1 s samples of the pushed gauges, rules evaluated in-process)".into()
    }

    fn start(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.bind())
    }

    fn pushgateway_url(&self) -> Option<String> {
        self.running.as_ref().map(|r| format!("http://{}", r.addr))
    }

    fn set_webhook<'a>(&'a mut self, url: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Embedded::set_webhook(self, Some(url.to_string()));
        Box::pin(async { Ok(()) })
    }

    fn collect<'a>(
        &'a mut self,
        specs: &'a [MetricSpec],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<Recording>> {
        Box::pin(async move {
            let Some(running) = self.running.as_mut() else {
                anyhow::bail!("the embedded monitor was not running");
            };
            let rec = running.stop_sampling().await;
            let window = (super::unix_s(start).round(), super::unix_s(end).round());
            Ok(Recording {
                exports: exports(&rec.samples, specs, window),
                alerts: rec.alerts,
                webhook_failures: rec.webhook_failures,
            })
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(r) = self.running.take() {
                r.stop().await;
            }
        })
    }
}

/// The series of each spec that names one metric (`__name__`), inside `window`. The embedded
/// monitor holds only what replicas pushed: specs with other queries get nothing.
fn exports(
    samples: &Samples,
    specs: &[MetricSpec],
    (t0, t1): (f64, f64),
) -> BTreeMap<&'static str, Vec<Series>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let series: Vec<Series> = samples
            .iter()
            .filter(|(l, _)| l.get("__name__").map(String::as_str) == Some(spec.query))
            .map(|(labels, pts)| Series {
                metric: labels.clone(),
                values: pts
                    .iter()
                    .filter(|(t, _)| *t >= t0 && *t <= t1)
                    .map(|&(t, v)| Sample::new(t, v))
                    .collect(),
            })
            .filter(|s| !s.values.is_empty())
            .collect();
        if !series.is_empty() {
            out.insert(spec.readable, series);
        }
    }
    out
}

async fn post(client: &reqwest::Client, cfg: &MonitorConfig, url: &str, n: &Notification) -> bool {
    let mut req = client.post(url).json(n);
    if let Some(t) = &cfg.token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::warn!("webhook {url}: HTTP {}", r.status());
            false
        }
        Err(e) => {
            tracing::warn!("webhook {url}: {e}");
            false
        }
    }
}

async fn sample_loop(
    cfg: MonitorConfig,
    webhook: Arc<Mutex<Option<String>>>,
    groups: receiver::Shared,
    stop: CancellationToken,
) -> Recorded {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client with only a timeout set always builds");
    let mut states = AlertStates::new(cfg.rules.clone());
    let mut rec = Recorded::default();
    // Rules and dispatcher run on the ticks' scheduled times, as Prometheus evaluates on its
    // own: a tick woken a millisecond early must not hold `for` or `group_wait` a whole tick.
    let (origin, origin_utc) = (tokio::time::Instant::now(), Utc::now());
    let mut dispatcher = Dispatcher::new(cfg.route.clone(), origin_utc);
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            _ = stop.cancelled() => break,
            t = ticker.tick() => t,
        };
        let now = origin_utc
            + chrono::Duration::from_std(tick.duration_since(origin)).unwrap_or_default();
        let ts = super::unix_s(now).round();
        let samples = groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples(Instant::now());
        for s in &samples {
            rec.samples
                .entry(s.labels.clone())
                .or_default()
                .push((ts, s.value));
        }
        for a in states.step(&samples, now) {
            rec.alerts.push(AlertEvent {
                at: now,
                alert: a.name().to_string(),
                status: a.status,
                value: a.value().ok().flatten(),
                labels: a.labels.clone(),
            });
            tracing::info!(
                "alert {} {:?} ({})",
                a.name(),
                a.status,
                a.annotations
                    .get("summary")
                    .map(String::as_str)
                    .unwrap_or("")
            );
            dispatcher.insert(a, now);
        }
        // Due notifications go out even with no webhook set (baseline runs): to nobody, as
        // Alertmanager with a receiver that has no webhook.
        let due = dispatcher.on_tick(now);
        let url = webhook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(url) = url {
            for n in &due {
                if !post(&client, &cfg, &url, n).await {
                    rec.webhook_failures += 1;
                }
            }
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::metrics as m;

    #[test]
    fn exports_keep_the_pushed_gauges_inside_the_window() {
        let mut samples = Samples::new();
        let mut labels = Labels::new();
        labels.insert("__name__".into(), "busy_worker_threads".into());
        labels.insert("job".into(), "webserver".into());
        samples.insert(
            labels,
            vec![(9.0, 1.0), (10.0, 2.0), (11.0, 3.0), (12.0, 4.0)],
        );
        let specs = [
            *m::spec(m::BUSY_WORKER_THREADS),
            *m::spec(m::TOTAL_REQUESTS),
        ];
        let got = exports(&samples, &specs, (10.0, 11.0));
        let busy = &got[m::BUSY_WORKER_THREADS];
        assert_eq!(busy.len(), 1);
        let pts: Vec<(f64, f64)> = busy[0].values.iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(pts, [(10.0, 2.0), (11.0, 3.0)]);
        assert!(
            !got.contains_key(m::TOTAL_REQUESTS),
            "not a pushed gauge: nothing"
        );
    }
}
