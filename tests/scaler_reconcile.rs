//! Reconciliation against a real Prometheus: the queue a service reports (remote-written into
//! Prometheus here) is decided by HPA's formula and behavior every --reconcile-every, with no
//! webhook at all: up at once within the rate policies, down after the stabilization window.

mod common;

use common::prometheus::start_prometheus;
use common::{FakeOrchestrator, start_scaler};
use starvation::load::remote_write::{encode, prompb};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Writes the service's queue length, now, into Prometheus, from a replica that pushed it to
/// the Pushgateway `push_age` ago (the `push_time_seconds` Prometheus scrapes with it).
async fn report(base: &str, instance: &str, value: f64, push_age: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let ts = now.as_millis() as i64;
    let label = |name: &str, value: &str| prompb::Label {
        name: name.into(),
        value: value.into(),
    };
    let series = |name: &str, value: f64| prompb::TimeSeries {
        labels: vec![
            label("__name__", name),
            label("instance", instance),
            label("job", "webserver"),
            label("service", "web"),
        ],
        samples: vec![prompb::Sample {
            value,
            timestamp: ts,
        }],
        histograms: vec![],
    };
    let req = prompb::WriteRequest {
        timeseries: vec![
            series("system_runtime_threadpool_queue_length", value),
            series("push_time_seconds", (now - push_age).as_secs_f64()),
        ],
    };
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(encode(&req))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Reports `value` every 200 ms until the fake's replicas reach `want`; the time it took.
async fn until_replicas(
    base: &str,
    fake: &FakeOrchestrator,
    value: f64,
    want: u32,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    while fake.replicas("web") != want {
        assert!(
            start.elapsed() < within,
            "replicas {} after {within:?}, want {want}",
            fake.replicas("web")
        );
        report(base, "web-1", value, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: apt-get install prometheus (.ci/run does)"]
async fn reconciliation_scales_from_prometheus_without_any_webhook() {
    let prom = start_prometheus(false).await;
    let fake = FakeOrchestrator::new(1);
    let args = [
        "--default-service",
        "web",
        "--max",
        "8",
        "--cooldown",
        "0s",
        "--prometheus",
        prom.base.as_str(),
        "--reconcile-every",
        "1s",
        "--scale-down-window",
        "3s",
    ];
    let server = start_scaler(&args, None, fake.clone()).await;

    // 70 queued at 1 replica, target 20 each: ceil(70 / 20) = 4, within max(100 %, +4).
    let took = until_replicas(&prom.base, &fake, 70.0, 4, Duration::from_secs(20)).await;
    eprintln!("reconciliation latency (queue above target -> scale call): {took:?}");
    // 300 queued: 15 wanted, max 8; from 4 the policies allow 8 at once.
    until_replicas(&prom.base, &fake, 300.0, 8, Duration::from_secs(20)).await;
    // The queue drains: down to min only once the 3 s window's recommendations are all low.
    let took = until_replicas(&prom.base, &fake, 0.0, 1, Duration::from_secs(30)).await;
    assert!(
        took >= Duration::from_secs(2),
        "down after {took:?}, inside the window"
    );
    let events = server.controller().events();
    let reasons: Vec<&str> = events.iter().map(|e| e.decision.reason.as_str()).collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("reconcile: ")),
        "{reasons:?}"
    );
    assert!(reasons[0].contains(r#"service="web""#), "{reasons:?}");
    server.shutdown().await.unwrap();
}

/// A replica SIGKILLed mid-starvation leaves its last group (queue 50) in the Pushgateway, which
/// Prometheus goes on scraping with the same `push_time_seconds`: the default query no longer
/// counts it once that push is 5 s old, so reconciliation does not climb on a dead replica's
/// queue (before: 2 -> 4, max, in 16 s, and it stayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: apt-get install prometheus (.ci/run does)"]
async fn a_dead_replicas_last_queue_does_not_drive_reconciliation() {
    let prom = start_prometheus(false).await;
    let fake = FakeOrchestrator::new(2);
    let args = [
        "--default-service",
        "web",
        "--max",
        "4",
        "--cooldown",
        "0s",
        "--prometheus",
        prom.base.as_str(),
        "--reconcile-every",
        "1s",
    ];
    let server = start_scaler(&args, None, fake.clone()).await;
    // The live replica's queue is 0, the dead one's last push (6 s ago) said 50: 50 / 20 would
    // be 3 replicas if it counted.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        report(&prom.base, "web-1", 0.0, Duration::ZERO).await;
        report(&prom.base, "web-dead", 50.0, Duration::from_secs(6)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = server.controller().events();
    assert_eq!(
        fake.replicas("web"),
        2,
        "climbed on a dead replica: {events:?}"
    );
    assert!(
        events.iter().all(|e| e.decision.to <= 2),
        "no scale-up: {events:?}"
    );
    // The same push, fresh, counts: the filter is the push's age, not the instance.
    let took = {
        let start = Instant::now();
        while fake.replicas("web") < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "a live 50 did not scale"
            );
            report(&prom.base, "web-1", 0.0, Duration::ZERO).await;
            report(&prom.base, "web-dead", 50.0, Duration::ZERO).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        start.elapsed()
    };
    eprintln!("a fresh 50 scaled 2 -> 3 after {took:?}");
    server.shutdown().await.unwrap();
}
