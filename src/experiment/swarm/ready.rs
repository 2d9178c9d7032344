//! The stack seen over HTTP from this machine: waiting until it answers (its monitoring, every
//! replica reporting its gauges, node-exporter; the scaler in scaled runs).

use serde_json::Value;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::SwarmOpts;
use super::stack::{ALERTMANAGER_PORT, PROMETHEUS_PORT, SCALER_PORT};

/// How long a deployment may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Poll `check` every 500 ms until it answers, `timeout` passes or the run is cancelled.
async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    mut check: impl FnMut() -> F,
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

fn hint(stack: &str, svc: &str) -> String {
    format!("the stack's {svc} (see `docker service ps {stack}_{svc} --no-trunc`)")
}

/// Until the stack answers: Prometheus, Alertmanager, every replica's gauges (through the
/// Pushgateway, which only the replicas, the scaler and Prometheus reach) and node-exporter in
/// Prometheus.
pub(super) async fn wait_ready(
    http: &reqwest::Client,
    opts: &SwarmOpts,
    stack: &str,
    replicas: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let hint = |svc: &str| hint(stack, svc);
    let endpoints = [
        ("prometheus", opts.url(PROMETHEUS_PORT) + "/-/ready"),
        ("alertmanager", opts.url(ALERTMANAGER_PORT) + "/-/ready"),
    ];
    for (svc, url) in endpoints {
        wait_for(&hint(svc), READY_TIMEOUT, cancel, || async {
            is_up(http, &url).await
        })
        .await?;
    }
    let prometheus = opts.url(PROMETHEUS_PORT);
    let gauges = format!(
        "count(system_runtime_threadpool_queue_length{{job=\"webserver\",service=\"{stack}_webserver\"}})"
    );
    let what = format!("{} reporting its gauges to Prometheus", hint("webserver"));
    wait_for(&what, READY_TIMEOUT, cancel, || async {
        let r = prom_query(http, &prometheus, &gauges).await;
        let n = r.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
        (n >= replicas as f64).then_some(())
    })
    .await?;
    wait_for(&hint("node-exporter"), READY_TIMEOUT, cancel, || async {
        let r = prom_query(http, &prometheus, "up{job=\"node-exporter\"} == 1").await;
        (!r.is_empty()).then_some(())
    })
    .await
}

/// Until the stack's scaler answers (scaled runs deploy it with the stack).
pub(super) async fn wait_scaler(
    http: &reqwest::Client,
    opts: &SwarmOpts,
    stack: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let url = opts.url(SCALER_PORT) + "/healthz";
    wait_for(&hint(stack, "alertapi"), READY_TIMEOUT, cancel, || async {
        is_up(http, &url).await
    })
    .await
}
