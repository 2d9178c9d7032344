//! The stack seen over HTTP from this machine: waiting until it answers, and exporting the run
//! from its Prometheus and its scaler.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::SwarmOpts;
use super::stack::{ALERTMANAGER_PORT, PROMETHEUS_PORT, PUSHGATEWAY_PORT, SCALER_PORT};
use crate::results::metrics as m;
use crate::results::runmeta::{Role, ScaleEvent};

/// How long a deployment may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Poll `check` every 500 ms until it answers, `timeout` passes or the run is cancelled.
async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::select! {
            _ = cancel.cancelled() => return Err(crate::Interrupted.into()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

pub(super) async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn is_up(http: &reqwest::Client, url: &str) -> Option<()> {
    let r = http.get(url).send().await.ok()?;
    r.status().is_success().then_some(())
}

/// An instant query's result vector (empty on any failure).
async fn prom_query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Vec<Value> {
    let Ok(r) = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Until the stack answers: Prometheus, Pushgateway, Alertmanager, the scaler (scaled runs),
/// every replica's gauges and node-exporter in Prometheus.
pub(super) async fn wait_ready(
    http: &reqwest::Client,
    opts: &SwarmOpts,
    stack: &str,
    role: Role,
    replicas: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let hint =
        |svc: &str| format!("the stack's {svc} (see `docker service ps {stack}_{svc} --no-trunc`)");
    let mut endpoints = vec![
        ("prometheus", opts.url(PROMETHEUS_PORT) + "/-/ready"),
        ("pushgateway", opts.url(PUSHGATEWAY_PORT) + "/-/ready"),
        ("alertmanager", opts.url(ALERTMANAGER_PORT) + "/-/ready"),
    ];
    if role == Role::Scaled {
        endpoints.push(("alertapi", opts.url(SCALER_PORT) + "/healthz"));
    }
    for (svc, url) in endpoints {
        wait_for(&hint(svc), READY_TIMEOUT, cancel, async || {
            is_up(http, &url).await
        })
        .await?;
    }
    let prometheus = opts.url(PROMETHEUS_PORT);
    let gauges = format!(
        "count(system_runtime_threadpool_queue_length{{job=\"webserver\",service=\"{stack}_webserver\"}})"
    );
    let what = format!("{} reporting its gauges to Prometheus", hint("webserver"));
    wait_for(&what, READY_TIMEOUT, cancel, async || {
        let r = prom_query(http, &prometheus, &gauges).await;
        let n = r.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
        (n >= replicas as f64).then_some(())
    })
    .await?;
    wait_for(&hint("node-exporter"), READY_TIMEOUT, cancel, async || {
        let r = prom_query(http, &prometheus, "up{job=\"node-exporter\"} == 1").await;
        (!r.is_empty()).then_some(())
    })
    .await
}

/// The export's query list adapted to the stack's Prometheus: the replicas' gauges as pushed
/// (`job="webserver"`, the paper's path; Prometheus also scrapes every replica directly, under
/// `job="webserver_direct"`, and the sum would count each replica twice), and `Scale event`
/// only where the scaler counted a scale action (its `/metrics` shows the counter at 0 too).
static STACK_SPECS: std::sync::LazyLock<Vec<m::MetricSpec>> = std::sync::LazyLock::new(|| {
    m::METRICS
        .iter()
        .map(|s| match s.kind {
            m::Kind::ScaleEvent => m::MetricSpec {
                query: "max without(instance) (alert_endpoint_call) > 0",
                ..*s
            },
            m::Kind::Gauge if s.query.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                m::MetricSpec {
                    // Built once per process (MetricSpec holds &'static str).
                    query: String::leak(format!("{}{{job=\"webserver\"}}", s.query)),
                    ..*s
                }
            }
            _ => *s,
        })
        .collect()
});

/// The export's query list ([`STACK_SPECS`]) over the load, 1 s step.
pub(super) async fn export(
    prometheus: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    dir: &Path,
) -> anyhow::Result<()> {
    let specs = &*STACK_SPECS;
    let req = crate::results::export::ExportRequest {
        prometheus: prometheus.to_string(),
        // Whole seconds around the load, so the 1 s steps cover all of it.
        start: DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start),
        end: DateTime::from_timestamp(end.timestamp() + 2, 0).unwrap_or(end),
        step: Duration::from_secs(1),
        testid: crate::load::DEFAULT_TESTID.into(),
        out: dir.to_path_buf(),
        timeout: Duration::from_secs(30),
    };
    let report = crate::results::export::export_specs(&req, specs).await?;
    anyhow::ensure!(
        report.ok(),
        "exporting from the stack's Prometheus ({prometheus}): {}",
        report
            .failures
            .iter()
            .map(|(name, e)| format!("{name}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // An empty gauge is not an error (the figures show a gap) but must not go unnoticed. (An
    // empty counter is a count of zero: k6 sends no `expected_response="false"` series either
    // when nothing failed.)
    for spec in specs.iter().filter(|s| s.kind == m::Kind::Gauge) {
        let path = dir.join(spec.json_file());
        if crate::results::promjson::read_export(&path).is_ok_and(|r| r.is_empty()) {
            tracing::warn!(
                "{}: the stack's Prometheus had no samples for {:?} during the load",
                spec.readable,
                spec.query
            );
        }
    }
    Ok(())
}

/// The scaler's decisions (`GET /events`) that changed the replica count.
pub(super) fn scale_events(events: &[Value]) -> Vec<ScaleEvent> {
    events
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| a != "none"))
        .filter_map(|e| {
            Some(ScaleEvent {
                at: DateTime::parse_from_rfc3339(e["time"].as_str()?)
                    .ok()?
                    .with_timezone(&Utc),
                from: e["from"].as_u64().and_then(|v| u32::try_from(v).ok()),
                to: e["to"].as_u64().and_then(|v| u32::try_from(v).ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stack_exports_count_each_replica_once() {
        let q = |name: &str| {
            STACK_SPECS
                .iter()
                .find(|s| s.readable == name)
                .unwrap()
                .query
        };
        assert_eq!(
            q(m::QUEUE_LENGTH),
            "system_runtime_threadpool_queue_length{job=\"webserver\"}"
        );
        assert_eq!(q(m::NODE_CPU), m::spec(m::NODE_CPU).query);
        assert!(q(m::SCALE_EVENT).ends_with("> 0"));
    }

    #[test]
    fn scale_events_are_the_decisions_that_acted() {
        let events = vec![
            json!({"time": "2026-01-01T00:00:10Z", "action": "scale_up", "from": 1, "to": 2}),
            json!({"time": "2026-01-01T00:00:11Z", "action": "none", "from": 2, "to": 2}),
        ];
        let ev = scale_events(&events);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].from, ev[0].to), (Some(1), Some(2)));
    }
}
