//! What watches an experiment's replicas, behind one seam ([`Monitor`]): the embedded monitor
//! ([`embedded`]: a Pushgateway-style receiver, the alert rules of
//! `deploy/prometheus/alert_rules.yml` evaluated every second over the PromQL subset of
//! [`rules`], Prometheus' alert state machine here, Alertmanager's dispatcher in [`dispatch`]
//! posting v4 webhooks to the scaler),
//! real Prometheus, Pushgateway and Alertmanager as local processes ([`prometheus`]), or a
//! Prometheus someone else runs, the Swarm stack's ([`remote`]).

pub mod dispatch;
pub mod embedded;
pub mod prometheus;
pub mod receiver;
pub mod remote;
pub mod rules;
pub mod text_format;

use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;

use crate::results::metrics::MetricSpec;
use crate::results::promjson::Series;
use crate::scaler::alert::{Alert, Notification, Status};
pub use embedded::{Embedded, MonitorConfig};
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

/// A notification-worthy change of one alert, kept for the run's record (`alerts.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertEvent {
    pub at: DateTime<Utc>,
    pub alert: String,
    pub status: Status,
    /// The rule's value when it changed (None where the monitor cannot tell: Prometheus'
    /// `ALERTS` series does not carry it).
    pub value: Option<f64>,
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
            let results = rules::eval(&rule.query, samples, unix_s(now));
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

/// The Alertmanager v4 payload for the alerts of one aggregation group (`group` holds its
/// `group_by` labels), as Alertmanager's webhook builds it: firing if any alert fires, the
/// labels and annotations every alert shares.
pub fn notification(receiver: &str, group: &Labels, alerts: Vec<Alert>) -> Notification {
    let status = if alerts.iter().any(|a| a.status == Status::Firing) {
        Status::Firing
    } else {
        Status::Resolved
    };
    let common = |field: fn(&Alert) -> &BTreeMap<String, String>| {
        let mut shared = alerts.first().map(field).cloned().unwrap_or_default();
        for a in alerts.iter().skip(1) {
            shared.retain(|k, v| field(a).get(k) == Some(v));
        }
        shared
    };
    let common_labels = common(|a| &a.labels);
    let common_annotations = common(|a| &a.annotations);
    let key: Vec<String> = group.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    Notification {
        version: "4".into(),
        // The root route's key is `{}`.
        group_key: format!("{{}}:{{{}}}", key.join(", ")),
        status,
        receiver: receiver.into(),
        group_labels: group.clone(),
        common_labels,
        common_annotations,
        external_url: "starvation://monitor/embedded".into(),
        alerts,
        truncated_alerts: 0,
    }
}

/// The seam between an experiment run and what watches its replicas: the embedded monitor,
/// real Prometheus, Pushgateway and Alertmanager processes, or the Prometheus of a Swarm stack.
/// The runner calls `start`, then `collect` once after the load, and `stop` on every path.
pub trait Monitor: Send {
    /// What watches, for `alerts.json` and logs.
    fn describe(&self) -> String;
    /// Start watching (a monitor another party runs: nothing to do).
    fn start(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// The URL to give replicas as `--pushgateway` (None: the backend wires its own).
    fn pushgateway_url(&self) -> Option<String>;
    /// Notify the scaler at `url` from now on.
    fn set_webhook<'a>(&'a mut self, url: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// What was recorded over `[start, end]`: the series of `specs` (1 s step), the alerts
    /// and the failed webhook deliveries.
    fn collect<'a>(
        &'a mut self,
        specs: &'a [MetricSpec],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<Recording>>;
    /// Stop whatever `start` started (idempotent).
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}

/// What a monitor recorded for one run.
#[derive(Debug, Default, Clone)]
pub struct Recording {
    /// The series of each requested metric, by its readable name.
    pub exports: BTreeMap<&'static str, Vec<Series>>,
    pub alerts: Vec<AlertEvent>,
    /// Webhook deliveries that failed (logged; the run goes on).
    pub webhook_failures: u64,
}

/// Unix seconds.
pub fn unix_s(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
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

    /// The queue of one replica that pushed at `at`, with the `push_time_seconds` the
    /// Pushgateway (and the embedded receiver) adds, which the rules' staleness filter reads.
    fn pushed(service: &str, v: f64, at: DateTime<Utc>) -> Vec<Sample> {
        let q = queue(service, v);
        let mut labels = q.labels.clone();
        labels.insert("__name__".into(), "push_time_seconds".into());
        vec![
            q,
            Sample {
                labels,
                value: unix_s(at),
            },
        ]
    }

    /// A replica killed mid-starvation leaves its last push behind (the Pushgateway keeps the
    /// group): once the push is 5 s old its queue no longer counts and the alert resolves.
    #[test]
    fn a_dead_replicas_last_push_stops_counting_after_5_s() {
        let rules = parse_rules(rules::DEFAULT_RULES).unwrap();
        let mut st = AlertStates::new(rules);
        let t0 = Utc::now();
        let at = |s: f64| t0 + chrono::Duration::milliseconds((s * 1000.0) as i64);
        let fired = st.step(&pushed("web", 50.0, at(0.0)), at(0.0));
        assert_eq!(fired.len(), 1, "the spike fires at once: {fired:?}");
        // No push after t=0: its group still says 50.
        assert!(st.step(&pushed("web", 50.0, at(0.0)), at(4.9)).is_empty());
        let resolved = st.step(&pushed("web", 50.0, at(0.0)), at(5.0));
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].status, Status::Resolved);
        assert_eq!(resolved[0].name(), "ThreadPoolSpike");
    }

    #[test]
    fn pending_firing_resolved_with_for() {
        let rules = parse_rules(rules::DEFAULT_RULES).unwrap();
        let mut st = AlertStates::new(rules);
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        // 30 > 20 but not > 40: Starvation pending, Spike quiet.
        assert!(st.step(&pushed("web", 30.0, at(0)), at(0)).is_empty());
        assert!(st.step(&pushed("web", 30.0, at(4)), at(4)).is_empty());
        let fired = st.step(&pushed("web", 31.0, at(5)), at(5));
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
        assert!(st.step(&pushed("web", 35.0, at(6)), at(6)).is_empty());
        // Spike fires at once (no `for`).
        let spike = st.step(&pushed("web", 45.0, at(7)), at(7));
        assert_eq!(spike.len(), 1);
        assert_eq!(spike[0].name(), "ThreadPoolSpike");
        assert_ne!(spike[0].fingerprint, fp);
        // Below both: both resolve, same fingerprint and startsAt.
        let resolved = st.step(&pushed("web", 3.0, at(8)), at(8));
        assert_eq!(resolved.len(), 2);
        let starv = resolved
            .iter()
            .find(|a| a.name() == "ThreadPoolStarvation")
            .unwrap();
        assert_eq!(starv.status, Status::Resolved);
        assert_eq!(starv.fingerprint, fp);
        assert_eq!(starv.starts_at, starts);
        // A dip before `for` elapses resets pending.
        assert!(st.step(&pushed("web", 30.0, at(10)), at(10)).is_empty());
        assert!(st.step(&pushed("web", 3.0, at(12)), at(12)).is_empty());
        assert!(st.step(&pushed("web", 30.0, at(14)), at(14)).is_empty());
        assert!(st.step(&pushed("web", 30.0, at(18)), at(18)).is_empty());
        let again = st.step(&pushed("web", 30.0, at(19)), at(19));
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].starts_at, starts);
        assert_eq!(again[0].fingerprint, fp);
        // The payload parses as the scaler expects.
        let group: Labels = [("alertname", "ThreadPoolStarvation"), ("service", "web")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let body = serde_json::to_vec(&notification("alertapi", &group, again)).unwrap();
        let n = crate::scaler::alert::parse(&body).unwrap();
        assert_eq!(n.status, Status::Firing);
        assert_eq!(
            n.group_key,
            r#"{}:{alertname="ThreadPoolStarvation", service="web"}"#
        );
        assert_eq!(n.common_labels["severity"], "critical");
        assert_eq!(n.common_annotations["value"], "30");
    }
}
