//! `starvation serve` at its edges, on real servers bound to port 0: a deleted data directory
//! answers 503 and fails `/healthz` instead of losing rows, HEAD does no work, and a drain that
//! cuts requests exits non-zero.

mod common;

use clap::Parser;
use common::spawn_serve;
use starvation::workload::store::SqliteStore;
use starvation::workload::{Opts, Server};
use std::time::Duration;

async fn start(args: &[&str]) -> Server {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--block-ms", "0"];
    all.extend_from_slice(args);
    Server::start(Opts::try_parse_from(all).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_data_directory_answers_503_and_fails_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&["--data-dir", data.to_str().unwrap()]).await;
    let base = format!("http://{}", server.local_addr());
    let ok = reqwest::get(format!("{base}/test-threadpool"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    std::fs::remove_dir_all(&data).unwrap();
    let r = reqwest::get(format!("{base}/test-threadpool"))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("deleted or replaced"), "{error}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "unhealthy", "{health}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_does_not_block_or_insert() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&["--data-dir", dir.path().to_str().unwrap()]).await;
    let url = format!("http://{}/test-threadpool", server.local_addr());
    let client = reqwest::Client::new();
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "GET");
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.count().unwrap(), 0, "HEAD inserted a row");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(store.count().unwrap(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cuts_requests_exits_non_zero_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = spawn_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--block-ms",
        "5000",
        "--drain-timeout",
        "500ms",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let url = format!("http://{addr}/test-threadpool");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await });
    // Poll until the request is in the pool (a busy thread), then stop the service.
    let health = format!("http://{addr}/healthz");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h: serde_json::Value = reqwest::get(&health).await.unwrap().json().await.unwrap();
        if h["pool"]["busy"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = proc.terminate(Duration::from_secs(15));
        (status, proc.stderr())
    });
    let (status, stderr) = status.await.unwrap();
    let status = status.expect("serve did not exit after SIGTERM");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cut 1 requests in flight"), "{stderr}");
    assert!(
        in_flight.await.unwrap().is_err(),
        "the cut request got no answer"
    );
}
