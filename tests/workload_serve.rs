//! `starvation serve` against real HTTP clients: starvation, injection, gauges, store failures,
//! drain on SIGTERM, and bad flags.

mod common;

use clap::Parser;
use common::{sample, spawn_serve};
use starvation::workload::store::SqliteStore;
use starvation::workload::{Opts, Server};
use std::time::{Duration, Instant};

async fn start(args: &[&str]) -> Server {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start(Opts::try_parse_from(all).unwrap())
        .await
        .unwrap()
}

/// A server whose goal moves only by starvation injection (hill climbing off).
async fn start_gate_only(min_threads: u32, block_ms: u64, data_dir: &std::path::Path) -> Server {
    let (min, block) = (min_threads.to_string(), block_ms.to_string());
    let data_dir = data_dir.to_str().unwrap();
    start(&[
        "--min-threads",
        &min,
        "--block-ms",
        &block,
        "--no-hill-climbing",
        "--data-dir",
        data_dir,
    ])
    .await
}

/// Fires `n` concurrent `/test-threadpool` requests and waits for all; every one must succeed.
async fn burst(client: &reqwest::Client, base: &str, n: usize) {
    let requests = (0..n).map(|_| client.get(format!("{base}/test-threadpool")).send());
    for r in futures::future::join_all(requests).await {
        assert_eq!(r.unwrap().status(), 200);
    }
}

async fn metrics(client: &reqwest::Client, base: &str) -> String {
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// .NET 8's gate injects when the pool made no progress (no request taken, no item completed)
/// for more than 500 ms. Fully starved, the injected worker stamps the clock as it takes the
/// request, so the next tick finds it exactly 500 ms old, not older: one thread a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starved_pool_gains_one_thread_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_gate_only(1, 6000, dir.path()).await;
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::new();
    let burst_start = Instant::now();
    let requests = tokio::spawn({
        let (client, base) = (client.clone(), base.clone());
        async move { burst(&client, &base, 8).await }
    });
    // No item completes before 6 s: read the injections just before.
    let mut text = metrics(&client, &base).await;
    while burst_start.elapsed() < Duration::from_millis(5800) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = metrics(&client, &base).await;
    }
    let injections = sample(&text, "threadpool_starvation_injections_total").unwrap();
    let busy = sample(&text, "busy_worker_threads").unwrap();
    assert!(
        (4.0..=6.0).contains(&injections),
        "expected ~1 injection a second for 5.8 s, got {injections}"
    );
    assert_eq!(busy, 1.0 + injections, "each injection releases one thread");
    assert!(sample(&text, "system_runtime_threadpool_queue_length").unwrap() >= 1.0);
    requests.await.unwrap();
    let text = metrics(&client, &base).await;
    // Each request is the item and the inlined `Task.Run`: two completions.
    assert_eq!(
        sample(&text, "threadpool_completed_items_total"),
        Some(16.0)
    );
    assert_eq!(sample(&text, "busy_worker_threads"), Some(0.0));
    assert_eq!(sample(&text, "available_worker_threads"), Some(32767.0));
    assert_eq!(sample(&text, "max_worker_threads"), Some(32767.0));
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{route="/test-threadpool",status="200"}"#
        ),
        Some(8.0)
    );
    assert_eq!(SqliteStore::open(dir.path()).unwrap().count().unwrap(), 8);
    server.shutdown().await.unwrap();
}

/// The same clock is written after every completed item: short items completing every 300 ms
/// keep every gate tick younger than 500 ms, so a backlog of 38 waits for the two threads
/// without a single injection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_keep_the_gate_from_injecting() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_gate_only(2, 300, dir.path()).await;
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::new();
    let watcher = tokio::spawn({
        let (client, base) = (client.clone(), base.clone());
        async move {
            let mut peak_queue: f64 = 0.0;
            loop {
                let text = metrics(&client, &base).await;
                let queue = sample(&text, "system_runtime_threadpool_queue_length").unwrap();
                peak_queue = peak_queue.max(queue);
                if peak_queue > 0.0 && queue == 0.0 {
                    return peak_queue;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let burst_start = Instant::now();
    burst(&client, &base, 40).await;
    let took = burst_start.elapsed();
    assert!(
        watcher.await.unwrap() >= 20.0,
        "the burst backs up the queue"
    );
    let text = metrics(&client, &base).await;
    assert_eq!(
        sample(&text, "threadpool_starvation_injections_total"),
        Some(0.0)
    );
    // 40 items of 300 ms on two threads.
    assert!(took >= Duration::from_millis(5700), "{took:?}");
    assert_eq!(
        sample(&text, "threadpool_completed_items_total"),
        Some(80.0)
    );
    let health: serde_json::Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["pool"]["goal"].as_f64().unwrap(), 2.0);
    assert_eq!(SqliteStore::open(dir.path()).unwrap().count().unwrap(), 40);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_answers_503_and_the_service_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = start(&["--block-ms", "0", "--data-dir", data_dir]).await;
    let base = format!("http://{}", server.local_addr());
    let ok = reqwest::get(format!("{base}/test-threadpool"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    // Break the store behind the service's back.
    let conn = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("DROP TABLE test_data").unwrap();
    let failed = reqwest::get(format!("{base}/test-threadpool"))
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    let body: serde_json::Value = failed.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("storing the document failed")
    );

    // The health check asks the store itself: a table gone is unhealthy (it answered 200).
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("no such table: test_data"), "{error}");
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&text, "store_failures_total"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{route="/test-threadpool",status="503"}"#
        ),
        Some(1.0)
    );
    server.shutdown().await.unwrap();
}

/// No MongoDB server can be installed here; an unreachable one is what a real check must see.
/// (The driver connects lazily, so `/healthz` answered 200 while every insert answered 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mongodb_makes_healthz_fail_within_the_healthcheck_timeout() {
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("mongodb://{}", refusing.local_addr().unwrap());
    drop(refusing);
    let server = start(&["--block-ms", "0", "--mongodb-uri", &uri]).await;
    let base = format!("http://{}", server.local_addr());
    let asked = Instant::now();
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    let took = asked.elapsed();
    assert_eq!(health.status(), 503);
    // The stack's healthcheck gives /healthz 3 s.
    assert!(took < Duration::from_secs(3), "{took:?}");
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert!(
        body["store"].as_str().unwrap().starts_with("mongodb "),
        "{body}"
    );
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("did not answer within 2s"), "{error}");
    let insert = reqwest::get(format!("{base}/test-threadpool"))
        .await
        .unwrap();
    assert_eq!(insert.status(), 503);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = spawn_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--block-ms",
        "1500",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let url = format!("http://{addr}/test-threadpool");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = proc.pid();
    let waiter = tokio::task::spawn_blocking(move || {
        let status = proc.terminate(Duration::from_secs(15));
        (proc, status)
    });
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the in-flight request finishes");
    let (_proc, status) = waiter.await.unwrap();
    let status = status.unwrap_or_else(|| panic!("pid {pid} did not exit after SIGTERM"));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "no longer serving"
    );
}

#[test]
fn bad_flags_fail_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for (args, needle) in [
        (
            vec!["--min-threads", "8", "--max-threads", "2"],
            "--min-threads",
        ),
        (vec!["--push-interval", "0s"], "--push-interval"),
        (vec!["--data-dir", file.to_str().unwrap()], "--data-dir"),
        (vec!["--mongodb-uri", "http://nope"], "--mongodb-uri"),
        (vec!["--pushgateway", "::"], "--pushgateway"),
        // Every request would hang for ever.
        (vec!["--block-ms", "18446744073709551615"], "--block-ms"),
        (vec!["--max-connections", "0"], "--max-connections"),
    ] {
        let out = std::process::Command::new(common::starvation_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing started for {args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_health_by_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&["--data-dir", dir.path().to_str().unwrap()]).await;
    let probe = |url: String| {
        std::process::Command::new(common::starvation_bin())
            .args(["probe", &url, "--timeout", "2s"])
            .output()
            .unwrap()
    };
    let ok = probe(format!("http://{}/healthz", server.local_addr()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = probe(format!("http://{}/nope", server.local_addr()));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    // tcp:// only connects (the .NET workload's healthcheck on Swarm).
    let tcp = probe(format!("tcp://{}", server.local_addr()));
    assert!(
        tcp.status.success(),
        "{}",
        String::from_utf8_lossy(&tcp.stderr)
    );
    server.shutdown().await.unwrap();
    let down = probe(format!("http://127.0.0.1:{}/healthz", common::free_port()));
    assert!(!down.status.success());
    let down = probe(format!("tcp://127.0.0.1:{}", common::free_port()));
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("connecting to 127.0.0.1:"));
}

/// `--io-model dotnet`: a 40-request burst that arrives while the only pool thread is blocked
/// waits in the socket engine's queue, which the pool's queue-length gauge does not count (it
/// holds the engine's one work item), while the socket-engine gauge shows it; once a thread is
/// free the engine reads them and every request ends 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_dotnet_io_model_the_backlog_hides_from_the_pool_queue_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[
        "--io-model",
        "dotnet",
        "--min-threads",
        "1",
        "--block-ms",
        "300",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::new();
    let gauges = async |client: &reqwest::Client| {
        let text = client.get(format!("{base}/metrics")).send().await.unwrap();
        let text = text.text().await.unwrap();
        let g = |name| sample(&text, name).unwrap();
        (
            g("system_runtime_threadpool_queue_length"),
            g("socket_engine_queue_length"),
            g("busy_worker_threads"),
        )
    };
    // Occupy the one pool thread.
    let first = tokio::spawn(client.get(format!("{base}/test-threadpool")).send());
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauges(&client).await.2 < 1.0 {
        assert!(Instant::now() < deadline, "the first request never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The burst, while that thread sleeps.
    let burst = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let requests = (0..40).map(|_| client.get(format!("{base}/test-threadpool")).send());
            futures::future::join_all(requests).await
        })
    };
    let mut samples = vec![];
    let started = Instant::now();
    loop {
        let g = gauges(&client).await;
        samples.push(g);
        if (samples.len() > 5 && g == (0.0, 0.0, 0.0))
            || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    for r in burst.await.unwrap() {
        assert_eq!(r.unwrap().status(), 200);
    }
    // While the thread slept: (nearly) the whole burst waited in the engine, and the pool's
    // queue held only the engine's work item.
    let hidden = samples
        .iter()
        .filter(|(queue, engine, _)| *engine >= 30.0 && *queue <= 1.0)
        .count();
    assert!(
        hidden > 0,
        "no moment with the burst in the engine and the pool queue at <= 1: {samples:?}"
    );
    // Then the engine read them: the pool's queue shows them once a thread was free.
    let peak_queue = samples.iter().map(|s| s.0).fold(0.0, f64::max);
    assert!(peak_queue >= 30.0, "{samples:?}");
    assert_eq!(samples.last().unwrap(), &(0.0, 0.0, 0.0), "{samples:?}");
    server.shutdown().await.unwrap();
}
