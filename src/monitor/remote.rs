//! Reading a run back from a real Prometheus and Alertmanager: the export queries at a 1 s step,
//! the alerts from Prometheus' `ALERTS` series, the failed webhooks from Alertmanager's own
//! counter. [`PrometheusReader`] is shared by the local processes ([`super::prometheus`]) and
//! [`RemotePrometheus`], the monitor of a Swarm run: the stack's own Prometheus, which the
//! backend deploys and wires (its Alertmanager already notifies the stack's scaler).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::time::Duration;

use super::{AlertEvent, Monitor, Recording, unix_s};
use crate::results::export::query_range;
use crate::results::metrics::{Kind, MetricSpec};
use crate::results::promjson::Series;
use crate::scaler::alert::Status;

/// The pushed gauges come in through the Pushgateway as job `webserver` (the paper's path). A
/// stack's Prometheus also scrapes each replica directly (job `webserver_direct`): without the
/// selector a sum would count every replica twice.
const GAUGE_SELECTOR: &str = "{job=\"webserver\"}";

/// The PromQL a Prometheus monitor runs for `spec`: a bare gauge name gets [`GAUGE_SELECTOR`];
/// every other query is the export's, test id filled in.
pub fn query_for(spec: &MetricSpec) -> String {
    let bare = spec
        .query
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if spec.kind == Kind::Gauge && bare {
        format!("{}{GAUGE_SELECTOR}", spec.query)
    } else {
        spec.promql(crate::load::DEFAULT_TESTID)
    }
}

/// A Prometheus and its Alertmanager, by base URL.
#[derive(Debug, Clone)]
pub struct PrometheusReader {
    pub prometheus: String,
    pub alertmanager: String,
    client: reqwest::Client,
}

impl PrometheusReader {
    pub fn new(prometheus: String, alertmanager: String) -> anyhow::Result<PrometheusReader> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(PrometheusReader {
            prometheus,
            alertmanager,
            client,
        })
    }

    /// The series of `specs`, the alerts and the webhook failures over `[start, end]` (unix
    /// seconds, whole seconds at a 1 s step).
    pub async fn read(
        &self,
        specs: &[MetricSpec],
        start: f64,
        end: f64,
    ) -> anyhow::Result<Recording> {
        let step = Duration::from_secs(1);
        let mut rec = Recording::default();
        for spec in specs {
            let q = query_for(spec);
            let (_, resp) = query_range(&self.client, &self.prometheus, &q, start, end, step)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "querying {} ({q}) from {}: {e}",
                        spec.readable,
                        self.prometheus
                    )
                })?;
            let series = resp.series().unwrap_or(&[]).to_vec();
            if !series.is_empty() {
                rec.exports.insert(spec.readable, series);
            }
        }
        rec.alerts = self.alerts(start, end).await?;
        rec.webhook_failures = self.webhook_failures().await;
        Ok(rec)
    }

    /// The firing and resolved transitions of every alert over `[start, end]`, from the
    /// `ALERTS` series at a 1 s step.
    pub async fn alerts(&self, start: f64, end: f64) -> anyhow::Result<Vec<AlertEvent>> {
        let step = Duration::from_secs(1);
        let q = "ALERTS{alertstate=\"firing\"}";
        let (_, alerts) = query_range(&self.client, &self.prometheus, q, start, end, step)
            .await
            .map_err(|e| {
                anyhow::anyhow!("querying the alerts (ALERTS) from {}: {e}", self.prometheus)
            })?;
        Ok(alert_events(
            alerts.series().unwrap_or(&[]),
            step.as_secs_f64(),
            end,
        ))
    }

    /// Failed webhook notifications, from Alertmanager's own counter (0 if it cannot tell).
    pub async fn webhook_failures(&self) -> u64 {
        let url = format!("{}/metrics", self.alertmanager);
        let Ok(r) = self.client.get(url).send().await else {
            return 0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with("alertmanager_notifications_failed_total")
                    && l.contains("integration=\"webhook\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Firing and resolved events from `ALERTS{alertstate="firing"}` sampled every `step`: a gap
/// in a series is a resolution, a series still present at `end` is still firing. The rule's
/// value is not in `ALERTS`.
pub fn alert_events(series: &[Series], step: f64, end: f64) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for s in series {
        let mut labels = s.metric.clone();
        labels.remove("__name__");
        labels.remove("alertstate");
        let alert = labels.get("alertname").cloned().unwrap_or_default();
        let event = |t: f64, status: Status| AlertEvent {
            at: DateTime::from_timestamp_millis((t * 1000.0) as i64).unwrap_or_default(),
            alert: alert.clone(),
            status,
            value: None,
            labels: labels.clone(),
        };
        let mut prev: Option<f64> = None;
        for v in &s.values {
            match prev {
                Some(p) if v.ts - p <= step * 1.5 => {}
                Some(p) => {
                    out.push(event(p + step, Status::Resolved));
                    out.push(event(v.ts, Status::Firing));
                }
                None => out.push(event(v.ts, Status::Firing)),
            }
            prev = Some(v.ts);
        }
        if let Some(p) = prev
            && p + step * 1.5 < end
        {
            out.push(event(p + step, Status::Resolved));
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

/// The monitor of a Swarm run: the stack's Prometheus and Alertmanager at their published
/// ports. The stack starts, wires and removes them; this only reads.
pub struct RemotePrometheus {
    reader: PrometheusReader,
    /// The last remote write of the load lands after it ends: read a little past the end.
    settle: Duration,
}

impl RemotePrometheus {
    pub fn new(prometheus: String, alertmanager: String) -> anyhow::Result<RemotePrometheus> {
        Ok(RemotePrometheus {
            reader: PrometheusReader::new(prometheus, alertmanager)?,
            settle: Duration::from_secs(3),
        })
    }
}

impl Monitor for RemotePrometheus {
    fn describe(&self) -> String {
        format!(
            "Prometheus at {} (ALERTS, 1 s resolution)",
            self.reader.prometheus
        )
    }

    fn start(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn pushgateway_url(&self) -> Option<String> {
        None
    }

    fn set_webhook<'a>(&'a mut self, _url: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        // The stack's Alertmanager notifies the stack's scaler already.
        Box::pin(async { Ok(()) })
    }

    fn collect<'a>(
        &'a mut self,
        specs: &'a [MetricSpec],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<Recording>> {
        Box::pin(async move {
            tokio::time::sleep(self.settle).await;
            // Whole seconds around the load, so the 1 s steps cover all of it.
            let (t0, t1) = (unix_s(start).floor(), unix_s(end).floor() + 2.0);
            self.reader.read(specs, t0, t1).await
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::metrics as m;
    use crate::results::promjson::Sample;
    use std::collections::BTreeMap;

    #[test]
    fn gauges_are_read_as_pushed_and_the_rest_as_exported() {
        assert_eq!(
            query_for(m::spec(m::QUEUE_LENGTH)),
            "system_runtime_threadpool_queue_length{job=\"webserver\"}"
        );
        assert_eq!(query_for(m::spec(m::NODE_CPU)), m::spec(m::NODE_CPU).query);
        assert!(query_for(m::spec(m::TOTAL_REQUESTS)).contains("testid=~'threadloadtest'"));
    }

    #[test]
    fn alert_events_from_alerts_series() {
        let mut metric = BTreeMap::new();
        metric.insert("__name__".to_string(), "ALERTS".to_string());
        metric.insert("alertname".to_string(), "ThreadPoolSpike".to_string());
        metric.insert("alertstate".to_string(), "firing".to_string());
        metric.insert("service".to_string(), "webserver".to_string());
        // Firing 100..=102, a gap, firing again 110 to the end (120).
        let values = [100.0, 101.0, 102.0, 110.0, 119.0, 120.0]
            .iter()
            .map(|&t| Sample::new(t, 1.0))
            .collect();
        let events = alert_events(&[Series { metric, values }], 1.0, 120.0);
        let got: Vec<(i64, Status)> = events
            .iter()
            .map(|e| (e.at.timestamp(), e.status))
            .collect();
        // 110 → 119 is a gap too: resolved at 111, firing again at 119, still firing at the end.
        use Status::*;
        assert_eq!(
            got,
            [
                (100, Firing),
                (103, Resolved),
                (110, Firing),
                (111, Resolved),
                (119, Firing)
            ]
        );
        assert_eq!(events[0].alert, "ThreadPoolSpike");
        assert!(!events[0].labels.contains_key("alertstate"));
        assert_eq!(events[0].labels["service"], "webserver");
        assert_eq!(events[0].value, None);
    }
}
