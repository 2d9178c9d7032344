//! The scaler's webhook over real HTTP: every status code, dedupe under concurrency, events,
//! metrics and the audit log. The orchestrator is a scripted fake here; see scaler_local.rs and
//! scaler_swarm.rs for real ones.

mod common;

use common::{FakeOrchestrator, start_scaler, webhook};
use std::sync::atomic::Ordering;

const T1: &str = "2026-11-22T10:00:00Z";

async fn post(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_code_and_the_decision_body() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let fake = FakeOrchestrator::new(1);
    let server = start_scaler(
        &[
            "--default-service",
            "web",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        Some("s3cret"),
        fake.clone(),
    )
    .await;
    let addr = server.local_addr();
    let firing = webhook("firing", "fp1", T1, "web").to_string().into_bytes();

    // 401: no token, wrong token.
    let (status, body) = post(addr, None, firing.clone()).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    assert_eq!(post(addr, Some("s3cret-not"), firing.clone()).await.0, 401);
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 0);

    // 400: not JSON, missing field.
    let (status, body) = post(addr, Some("s3cret"), b"{oops".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("malformed"));
    let mut bad = webhook("firing", "fp1", T1, "web");
    bad["alerts"][0].as_object_mut().unwrap().remove("startsAt");
    let (status, body) = post(addr, Some("s3cret"), bad.to_string().into_bytes()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("startsAt"),
        "{body}"
    );

    // 403: a service outside the allow-list.
    let other = webhook("firing", "fp9", T1, "database")
        .to_string()
        .into_bytes();
    let (status, body) = post(addr, Some("s3cret"), other).await;
    assert_eq!(status, 403);
    assert!(
        body["error"].as_str().unwrap().contains("allow-list"),
        "{body}"
    );

    // 413: over 1 MiB.
    let (status, body) = post(addr, Some("s3cret"), vec![b' '; 1024 * 1024 + 10]).await;
    assert_eq!(status, 413);
    assert!(body["error"].as_str().unwrap().contains("larger than"));

    // 503 when the orchestrator fails; nothing is remembered, so Alertmanager's retry acts.
    fake.fail.store(true, Ordering::SeqCst);
    let (status, body) = post(addr, Some("s3cret"), firing.clone()).await;
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("engine unreachable")
    );
    fake.fail.store(false, Ordering::SeqCst);

    // 200 with the decision; the retry of the same alert is a no-op.
    let (status, body) = post(addr, Some("s3cret"), firing.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["service"], "web");
    assert_eq!(
        (body["from"].as_u64(), body["to"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(body["action"], "scale_up");
    let (status, body) = post(addr, Some("s3cret"), firing.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["action"], "none");
    assert!(body["reason"].as_str().unwrap().contains("duplicate"));
    // Resolved never scales up.
    let resolved = webhook("resolved", "fp1", T1, "web")
        .to_string()
        .into_bytes();
    let (_, body) = post(addr, Some("s3cret"), resolved).await;
    assert_eq!(body["action"], "none");
    assert!(body["reason"].as_str().unwrap().contains("resolved"));
    assert_eq!(fake.replicas("web"), 2);
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 1);

    // Events, metrics, audit log agree.
    let events: serde_json::Value = reqwest::get(format!("http://{addr}/events"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["scale_up", "none", "none"]);
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "alert_endpoint_call 1",
        r#"starvation_webhook_requests_total{outcome="unauthorized"} 2"#,
        r#"starvation_webhook_requests_total{outcome="bad_request"} 2"#,
        r#"starvation_webhook_requests_total{outcome="forbidden"} 1"#,
        r#"starvation_webhook_requests_total{outcome="too_large"} 1"#,
        r#"starvation_webhook_requests_total{outcome="orchestrator_error"} 1"#,
        r#"starvation_webhook_requests_total{outcome="ok"} 3"#,
        r#"starvation_scale_events_total{service="web",direction="up",reason="step"} 1"#,
        r#"starvation_service_replicas{service="web"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    let audit_lines = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(audit_lines.lines().count(), 3);
    let first: serde_json::Value =
        serde_json::from_str(audit_lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["action"], "scale_up");
    assert_eq!(first["alerts"][0], "ThreadPoolStarvation");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_copies_scale_exactly_one_step() {
    let fake = FakeOrchestrator::new(1);
    let server = start_scaler(&["--default-service", "web"], Some("t"), fake.clone()).await;
    let addr = server.local_addr();
    let body = webhook("firing", "fp-burst", T1, "web").to_string();
    let client = reqwest::Client::new();
    let calls = (0..200).map(|_| {
        client
            .post(format!("http://{addr}/alert"))
            .bearer_auth("t")
            .body(body.clone())
            .send()
    });
    let mut scaled = 0;
    for r in futures::future::join_all(calls).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        let d: serde_json::Value = r.json().await.unwrap();
        if d["action"] == "scale_up" {
            scaled += 1;
        }
    }
    assert_eq!(scaled, 1);
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 1);
    assert_eq!(fake.replicas("web"), 2);
    server.shutdown().await.unwrap();
}

#[test]
fn non_loopback_without_token_refuses_to_start() {
    let out = std::process::Command::new(common::starvation_bin())
        .args([
            "alertapi",
            "--listen",
            "0.0.0.0:0",
            "--orchestrator",
            "local",
            "--default-service",
            "web",
        ])
        .env_remove("STARVATION_ALERTAPI_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--insecure-no-auth") && stderr.contains("--token-file"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing started");
}

/// Several scaler replicas may run on several managers: the ones not on the leader answer 503
/// (Alertmanager retries) and change nothing, and their periodic checks do nothing either; the
/// retry that reaches the leader acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_off_the_leader_answers_503_and_scales_nothing() {
    let fake = FakeOrchestrator::new(1);
    fake.follower.store(true, Ordering::SeqCst);
    let server = start_scaler(&["--default-service", "web"], None, fake.clone()).await;
    let addr = server.local_addr();
    let firing = webhook("firing", "fp1", T1, "web").to_string().into_bytes();
    let (status, body) = post(addr, None, firing.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not the leader"),
        "{body}"
    );
    let metrics = common::get_text(&format!("http://{addr}/metrics")).await;
    assert_eq!(
        common::sample(
            &metrics,
            "starvation_webhook_requests_total{outcome=\"not_leader\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 0);
    assert_eq!(fake.replicas("web"), 1);

    // Leadership moves here: Alertmanager's retry of the same alert acts, once.
    fake.follower.store(false, Ordering::SeqCst);
    let (status, body) = post(addr, None, firing.clone()).await;
    assert_eq!((status, body["to"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(post(addr, None, firing).await.1["action"], "none");
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 1);
}
