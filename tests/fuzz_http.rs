//! Fuzz-style tests on stable Rust (proptest): arbitrary and mutated bodies sent over real HTTP
//! to the scaler's webhook and to the embedded monitor's push receiver. Every answer is a 2xx or
//! a 4xx, never a 5xx or a dropped connection, and the server keeps serving.

mod common;

use common::{FakeOrchestrator, start_scaler, webhook};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::net::SocketAddr;

const T1: &str = "2026-11-22T10:00:00Z";

/// Bytes to send: arbitrary ones, or a valid payload with bytes flipped, cut or spliced in.
fn bodies(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        (proptest::collection::vec((0..n, any::<u8>()), 1..8)).prop_map({
            let valid = valid.clone();
            move |flips| {
                let mut b = valid.clone();
                for (i, byte) in flips {
                    b[i] = byte;
                }
                b
            }
        }),
        (0..n).prop_map({
            let valid = valid.clone();
            move |cut| valid[..cut].to_vec()
        }),
        (0..n, "[\\[\\]{}\",:0-9a-z\\\\ -]{0,12}").prop_map(move |(at, junk)| {
            let mut b = valid.clone();
            b.splice(at..at, junk.bytes());
            b
        }),
    ]
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> u16 {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers every request")
        .status()
        .as_u16()
}

fn fuzz(cases: u32, valid: Vec<u8>, send: impl Fn(Vec<u8>) -> u16) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(&bodies(valid), |body| {
            let status = send(body.clone());
            prop_assert!(
                (200..500).contains(&status),
                "HTTP {status} for {:?}",
                String::from_utf8_lossy(&body)
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_webhook_answers_any_body_with_2xx_or_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = FakeOrchestrator::new(1);
    let server = rt.block_on(start_scaler(
        &["--default-service", "web", "--policy", "proportional"],
        None,
        fake.clone(),
    ));
    let url = format!("http://{}/alert", server.local_addr());
    let client = reqwest::Client::new();
    let valid = webhook("firing", "fp1", T1, "web").to_string().into_bytes();
    fuzz(1500, valid.clone(), |body| {
        rt.block_on(post(&client, &url, body))
    });
    // Still deciding correctly afterwards.
    assert_eq!(rt.block_on(post(&client, &url, valid)), 200);
    rt.block_on(server.shutdown()).unwrap();
}

#[test]
fn the_push_receiver_answers_any_body_with_2xx_or_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let groups = starvation::monitor::receiver::Shared::default();
    let addr: SocketAddr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = starvation::monitor::receiver::router(groups.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let url = format!("http://{addr}/metrics/job/webserver/instance/a/service/web");
    let client = reqwest::Client::new();
    let valid =
        b"# TYPE q gauge\nq{x=\"a,b\\\"c\"} 3\nbusy_worker_threads 2 1700000000000\n".to_vec();
    fuzz(1500, valid.clone(), |body| {
        rt.block_on(post(&client, &url, body))
    });
    assert_eq!(rt.block_on(post(&client, &url, valid)), 200);
    let samples = groups.lock().unwrap().samples(std::time::Instant::now());
    assert!(
        samples
            .iter()
            .any(|s| s.labels["__name__"] == "q" && s.labels["x"] == "a,b\"c")
    );
}
