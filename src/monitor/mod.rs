//! The embedded monitor of `starvation experiment --monitor embedded`: a Pushgateway-style
//! receiver the replicas push their gauges to, a sampler that evaluates the alert rules of
//! `deploy/prometheus/alert_rules.yml` every second (the PromQL subset of [`rules`]), an alert
//! state machine (pending → firing after `for` → resolved) and Alertmanager v4 webhooks to the
//! scaler. Every sample is kept so the run can be stored as Prometheus `query_range` JSON.

pub mod prometheus;
pub mod receiver;
pub mod rules;

use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::scaler::alert::{Alert, Notification, Status};
use futures::future::BoxFuture;
pub use rules::{Labels, Rule, Sample, parse_rules};

/// One alert's state.
#[derive(Debug, Clone)]
struct Active {
    labels: Labels,
    active_since: DateTime<Utc>,
    firing_since: Option<DateTime<Utc>>,
    value: f64,
}

/// A notification-worthy change of one alert, kept for the run's record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertEvent {
    pub at: DateTime<Utc>,
    pub alert: String,
    pub status: String,
    pub value: f64,
    pub labels: Labels,
}

/// Prometheus' alert state machine over the rules.
#[derive(Debug)]
pub struct AlertStates {
    rules: Vec<Rule>,
    active: Vec<BTreeMap<Labels, Active>>,
}

/// Stable per label set: FNV-1a over the sorted labels, hex (like Alertmanager's fingerprints).
pub fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl AlertStates {
    pub fn new(rules: Vec<Rule>) -> Self {
        let active = rules.iter().map(|_| BTreeMap::new()).collect();
        AlertStates { rules, active }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Evaluate every rule on `samples` at `now`; returns the alerts that started firing or
    /// resolved (what Alertmanager would notify).
    pub fn step(&mut self, samples: &[Sample], now: DateTime<Utc>) -> Vec<Alert> {
        let mut out = Vec::new();
        for (rule, active) in self.rules.iter().zip(self.active.iter_mut()) {
            let results = rules::eval(&rule.query, samples);
            let mut seen = Vec::new();
            for r in results {
                let mut labels = r.labels.clone();
                labels.remove("__name__");
                for (k, v) in &rule.labels {
                    labels.insert(k.clone(), v.clone());
                }
                labels.insert("alertname".into(), rule.name.clone());
                seen.push(labels.clone());
                let a = active.entry(labels.clone()).or_insert(Active {
                    labels,
                    active_since: now,
                    firing_since: None,
                    value: r.value,
                });
                a.value = r.value;
                let elapsed = (now - a.active_since).to_std().unwrap_or_default();
                if a.firing_since.is_none() && elapsed >= rule.for_ {
                    a.firing_since = Some(now);
                    out.push(to_alert(rule, a, Status::Firing, now));
                }
            }
            let gone: Vec<Labels> = active
                .keys()
                .filter(|k| !seen.contains(k))
                .cloned()
                .collect();
            for k in gone {
                let a = active.remove(&k).expect("key just listed");
                if a.firing_since.is_some() {
                    out.push(to_alert(rule, &a, Status::Resolved, now));
                }
            }
        }
        out
    }

    /// Alerts firing now (resolved by the caller at the end of a run if it wants).
    pub fn firing(&self) -> Vec<Alert> {
        let now = Utc::now();
        self.rules
            .iter()
            .zip(&self.active)
            .flat_map(|(rule, active)| {
                active
                    .values()
                    .filter(|a| a.firing_since.is_some())
                    .map(move |a| to_alert(rule, a, Status::Firing, now))
            })
            .collect()
    }
}

fn to_alert(rule: &Rule, a: &Active, status: Status, now: DateTime<Utc>) -> Alert {
    let annotations = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), rules::render(v, &a.labels, a.value)))
        .collect();
    Alert {
        status,
        labels: a.labels.clone(),
        annotations,
        // startsAt is when the alert started firing: fixed for the episode.
        starts_at: rfc3339(a.firing_since.unwrap_or(a.active_since)),
        ends_at: match status {
            Status::Resolved => rfc3339(now),
            Status::Firing => "0001-01-01T00:00:00Z".into(),
        },
        generator_url: "starvation://monitor/embedded".into(),
        fingerprint: fingerprint(&a.labels),
    }
}

/// The Alertmanager v4 payload for some alerts of one rule.
pub fn notification(alerts: Vec<Alert>) -> Notification {
    let status = if alerts.iter().any(|a| a.status == Status::Firing) {
        Status::Firing
    } else {
        Status::Resolved
    };
    let name = alerts
        .first()
        .map(|a| a.name().to_string())
        .unwrap_or_default();
    let mut group_labels = BTreeMap::new();
    group_labels.insert("alertname".to_string(), name.clone());
    Notification {
        version: "4".into(),
        group_key: format!("{{}}:{{alertname=\"{name}\"}}"),
        status,
        receiver: "alertapi".into(),
        group_labels: group_labels.clone(),
        common_labels: group_labels,
        common_annotations: BTreeMap::new(),
        external_url: "starvation://monitor/embedded".into(),
        alerts,
        truncated_alerts: 0,
    }
}

/// The seam between an experiment run and what watches its replicas: the embedded monitor or
/// real Prometheus, Pushgateway and Alertmanager processes.
pub trait Monitor: Send + Sync {
    /// The URL to give replicas as `--pushgateway`.
    fn pushgateway_url(&self) -> String;
    /// Where notifications go from now on (`None`: nowhere).
    fn set_webhook<'a>(&'a self, url: Option<&'a str>) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Stop, returning the series named `metrics` (`__name__`) and the alerts over
    /// `[start, end]` (unix seconds).
    fn finish<'a>(
        self: Box<Self>,
        metrics: &'a [&'a str],
        start: f64,
        end: f64,
    ) -> BoxFuture<'a, anyhow::Result<Recording>>;
}

impl Monitor for Embedded {
    fn pushgateway_url(&self) -> String {
        Embedded::pushgateway_url(self)
    }

    fn set_webhook<'a>(&'a self, url: Option<&'a str>) -> BoxFuture<'a, anyhow::Result<()>> {
        Embedded::set_webhook(self, url.map(String::from));
        Box::pin(async { Ok(()) })
    }

    fn finish<'a>(
        self: Box<Self>,
        metrics: &'a [&'a str],
        start: f64,
        end: f64,
    ) -> BoxFuture<'a, anyhow::Result<Recording>> {
        Box::pin(async move {
            let mut rec = self.stop().await;
            rec.series.retain(|labels, points| {
                points.retain(|(t, _)| *t >= start && *t <= end);
                !points.is_empty()
                    && labels
                        .get("__name__")
                        .is_some_and(|n| metrics.contains(&n.as_str()))
            });
            Ok(rec)
        })
    }
}

impl Monitor for prometheus::PrometheusMonitor {
    fn pushgateway_url(&self) -> String {
        prometheus::PrometheusMonitor::pushgateway_url(self)
    }

    fn set_webhook<'a>(&'a self, url: Option<&'a str>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(prometheus::PrometheusMonitor::set_webhook(self, url))
    }

    fn finish<'a>(
        self: Box<Self>,
        metrics: &'a [&'a str],
        start: f64,
        end: f64,
    ) -> BoxFuture<'a, anyhow::Result<Recording>> {
        Box::pin((*self).finish(metrics, start, end))
    }
}

/// What the monitor recorded.
#[derive(Debug, Default, Clone)]
pub struct Recording {
    /// Raw series: label set (with `__name__`) → (unix seconds, value).
    pub series: BTreeMap<Labels, Vec<(f64, f64)>>,
    pub alerts: Vec<AlertEvent>,
    /// Webhook deliveries that failed (logged; the run goes on).
    pub webhook_failures: u64,
}

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub rules: Vec<Rule>,
    /// The scaler's `/alert` URL; `None` evaluates rules without notifying (baseline runs).
    pub webhook: Option<String>,
    pub token: Option<String>,
    pub interval: Duration,
}

/// The running embedded monitor.
pub struct Embedded {
    addr: SocketAddr,
    webhook: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
    sampling: tokio::task::JoinHandle<Recording>,
}

impl Embedded {
    /// Bind the receiver on a free loopback port and start sampling.
    pub async fn start(cfg: MonitorConfig) -> anyhow::Result<Embedded> {
        let groups: receiver::Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let serve = axum::serve(listener, receiver::router(groups.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let serving = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!("monitor receiver: {e}");
            }
        });
        let webhook = Arc::new(Mutex::new(cfg.webhook.clone()));
        let sampling = tokio::spawn(sample_loop(cfg, webhook.clone(), groups, stop.clone()));
        Ok(Embedded {
            addr,
            webhook,
            stop,
            serving,
            sampling,
        })
    }

    /// The URL to give replicas as `--pushgateway`.
    pub fn pushgateway_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where to post notifications from now on (`None`: nowhere).
    pub fn set_webhook(&self, url: Option<String>) {
        *self.webhook.lock().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// Stop sampling and return what was recorded.
    pub async fn stop(self) -> Recording {
        self.stop.cancel();
        let rec = self.sampling.await.unwrap_or_default();
        let _ = self.serving.await;
        rec
    }
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
) -> Recording {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client with only a timeout set always builds");
    let mut states = AlertStates::new(cfg.rules.clone());
    let mut rec = Recording::default();
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Utc::now();
        let ts = (now.timestamp_millis() as f64 / 1000.0).round();
        let samples = groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples(Instant::now());
        for s in &samples {
            rec.series
                .entry(s.labels.clone())
                .or_default()
                .push((ts, s.value));
        }
        let changed = states.step(&samples, now);
        // One notification per rule, like Alertmanager grouping by alertname.
        let mut by_rule: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
        for a in changed {
            rec.alerts.push(AlertEvent {
                at: now,
                alert: a.name().to_string(),
                status: match a.status {
                    Status::Firing => "firing".into(),
                    Status::Resolved => "resolved".into(),
                },
                value: a.value().unwrap_or(f64::NAN),
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
            by_rule.entry(a.name().to_string()).or_default().push(a);
        }
        let url = webhook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(url) = url {
            for (_, alerts) in by_rule {
                if !post(&client, &cfg, &url, &notification(alerts)).await {
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

    fn queue(service: &str, v: f64) -> Sample {
        let mut labels = Labels::new();
        labels.insert(
            "__name__".into(),
            "system_runtime_threadpool_queue_length".into(),
        );
        labels.insert("job".into(), "webserver".into());
        labels.insert("instance".into(), format!("{service}-1"));
        labels.insert("service".into(), service.into());
        Sample { labels, value: v }
    }

    #[test]
    fn pending_firing_resolved_with_for() {
        let rules = parse_rules(rules::DEFAULT_RULES).unwrap();
        let mut st = AlertStates::new(rules);
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        // 30 > 20 but not > 40: Starvation pending, Spike quiet.
        assert!(st.step(&[queue("web", 30.0)], at(0)).is_empty());
        assert!(st.step(&[queue("web", 30.0)], at(4)).is_empty());
        let fired = st.step(&[queue("web", 31.0)], at(5));
        assert_eq!(fired.len(), 1);
        let a = &fired[0];
        assert_eq!(a.name(), "ThreadPoolStarvation");
        assert_eq!(a.status, Status::Firing);
        assert_eq!(a.labels["service"], "web");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.annotations["value"], "31");
        assert!(a.annotations["summary"].contains("web"));
        let fp = a.fingerprint.clone();
        let starts = a.starts_at.clone();
        // Still firing: nothing new.
        assert!(st.step(&[queue("web", 35.0)], at(6)).is_empty());
        // Spike fires at once (no `for`).
        let spike = st.step(&[queue("web", 45.0)], at(7));
        assert_eq!(spike.len(), 1);
        assert_eq!(spike[0].name(), "ThreadPoolSpike");
        assert_ne!(spike[0].fingerprint, fp);
        // Below both: both resolve, same fingerprint and startsAt.
        let resolved = st.step(&[queue("web", 3.0)], at(8));
        assert_eq!(resolved.len(), 2);
        let starv = resolved
            .iter()
            .find(|a| a.name() == "ThreadPoolStarvation")
            .unwrap();
        assert_eq!(starv.status, Status::Resolved);
        assert_eq!(starv.fingerprint, fp);
        assert_eq!(starv.starts_at, starts);
        // A dip before `for` elapses resets pending.
        assert!(st.step(&[queue("web", 30.0)], at(10)).is_empty());
        assert!(st.step(&[queue("web", 3.0)], at(12)).is_empty());
        assert!(st.step(&[queue("web", 30.0)], at(14)).is_empty());
        assert!(st.step(&[queue("web", 30.0)], at(18)).is_empty());
        let again = st.step(&[queue("web", 30.0)], at(19));
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].starts_at, starts);
        assert_eq!(again[0].fingerprint, fp);
        // The payload parses as the scaler expects.
        let body = serde_json::to_vec(&notification(again)).unwrap();
        let n = crate::scaler::alert::parse(&body).unwrap();
        assert_eq!(n.status, Status::Firing);
    }
}
