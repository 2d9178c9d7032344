//! Issue 26.2 on the local backend with real Prometheus, Pushgateway and Alertmanager (the
//! processes of `--monitor prometheus`, configured from `deploy/`) and the scaler with its
//! Prometheus reconciliation: a replica SIGKILLed while starved could not delete its
//! Pushgateway group, so its last queue counted forever — both alerts kept firing, the
//! reconciliation climbed to max and stayed, and the dead replica was not replaced. Now its
//! gauges stop counting within seconds and it is replaced; the scaler then pointed at the
//! stack has nothing to climb on.

mod common;

use common::prometheus::monitor_prometheus_url;
use common::{free_port, start_scaler, starvation_bin};
use starvation::monitor::Monitor;
use starvation::monitor::prometheus::{BINARIES, PrometheusMonitor};
use starvation::monitor::rules::DEFAULT_RULES;
use starvation::orchestrator::Orchestrator;
use starvation::orchestrator::local::{LocalConfig, LocalOrchestrator};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST: &str = "a_starved_replica_killed_stops_counting_is_replaced_and_the_scaler_holds";

/// The queue of `instance` as the alert rules see it (only while its last push is fresh).
fn counted_queue(instance: &str) -> String {
    format!(
        r#"system_runtime_threadpool_queue_length{{job="webserver",instance="{instance}"}} and on (instance, service) (push_time_seconds{{job="webserver"}} > time() - 5)"#
    )
}

/// The values of an instant query's series (none: empty).
async fn query(prometheus: &str, q: &str) -> Vec<f64> {
    common::prometheus::api_at(prometheus, "/api/v1/query", &[("query", q)]).await["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus, Pushgateway, Alertmanager: apt-get install prometheus prometheus-pushgateway prometheus-alertmanager (.ci/run does)"]
async fn a_starved_replica_killed_stops_counting_is_replaced_and_the_scaler_holds() {
    for (bin, package) in BINARIES {
        common::external(bin, package, TEST);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut monitor = PrometheusMonitor::new(dir.path(), DEFAULT_RULES);
    monitor.start().await.unwrap();
    let gateway = monitor.pushgateway_url().unwrap();
    let prometheus = monitor_prometheus_url(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let local = Arc::new(
        LocalOrchestrator::start(
            LocalConfig {
                service: "webserver".into(),
                program: starvation_bin().into(),
                listen: listen.parse().unwrap(),
                serve_args: [
                    "--block-ms",
                    "60000",
                    "--min-threads",
                    "1",
                    "--pushgateway",
                    &gateway,
                    "--push-interval",
                    "1s",
                    "--data-dir",
                    data.to_str().unwrap(),
                ]
                .map(String::from)
                .into(),
                stop_timeout: Duration::from_secs(2),
                log_filter: Some("warn".into()),
            },
            1,
        )
        .await
        .unwrap(),
    );
    // Starve the only replica: 60 requests that each hold a pool thread for a minute.
    let client = reqwest::Client::new();
    let load: Vec<_> = (0..60)
        .map(|_| {
            tokio::spawn(
                client
                    .get(format!("http://{listen}/test-threadpool"))
                    .send(),
            )
        })
        .collect();
    until(
        "webserver-1's queue above 40 in Prometheus",
        Duration::from_secs(30),
        async || {
            query(&prometheus, &counted_queue("webserver-1"))
                .await
                .first()
                .is_some_and(|q| *q > 40.0)
        },
    )
    .await;
    let victim = local.pids().await[0];
    // SAFETY: kill(2) on a child of this test's orchestrator.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    for l in load {
        l.abort();
    }

    let stopped = until(
        "the dead replica's queue stops counting",
        Duration::from_secs(10),
        async || {
            query(&prometheus, &counted_queue("webserver-1"))
                .await
                .is_empty()
        },
    )
    .await;
    let resolved = until(
        "both alerts resolve in Prometheus",
        Duration::from_secs(10),
        async || {
            query(&prometheus, r#"ALERTS{alertstate="firing"}"#)
                .await
                .is_empty()
        },
    )
    .await;
    let replaced = until(
        "the dead replica replaced",
        Duration::from_secs(10),
        async || {
            let pids = local.pids().await;
            !pids.is_empty() && !pids.contains(&victim)
        },
    )
    .await;
    assert_eq!(
        local.pids().await.len(),
        1,
        "one replica, as before the kill"
    );
    let pushing = until(
        "the new replica pushes",
        Duration::from_secs(10),
        async || {
            !query(&prometheus, &counted_queue("webserver-2"))
                .await
                .is_empty()
        },
    )
    .await;
    eprintln!(
        "after the SIGKILL: its queue stopped counting in {stopped:?}, alerts resolved {resolved:?} \
         later, replaced {replaced:?} later, the new replica counted {pushing:?} later"
    );
    // The scaler, with its Prometheus reconciliation, pointed at what is left: nothing to
    // climb on (before: the dead replica's 50 kept both alerts firing and the reconciliation
    // at 3 replicas for as long as the Pushgateway ran).
    let server = start_scaler(
        &[
            "--default-service",
            "webserver",
            "--max",
            "4",
            "--cooldown",
            "0s",
            "--scale-down-delay",
            "2s",
            "--prometheus",
            &prometheus,
            "--reconcile-every",
            "1s",
            "--scale-down-window",
            "2s",
        ],
        None,
        local.clone(),
    )
    .await;
    monitor
        .set_webhook(&format!("http://{}/alert", server.local_addr()))
        .await
        .unwrap();

    let replicas = async || local.status("webserver").await.unwrap().replicas;
    let watching = Instant::now();
    while watching.elapsed() < Duration::from_secs(10) {
        assert_eq!(
            replicas().await,
            1,
            "climbed: {:?}",
            server.controller().events()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = server.controller().events();
    assert!(
        events.iter().all(|e| e.decision.to <= 1),
        "no scale-up: {events:?}"
    );
    server.shutdown().await.unwrap();
    local.shutdown().await;
    monitor.stop().await;
}
