//! Shadow mode: a service labelled `starvation.dry-run=true` (or every service with
//! `--dry-run`) gets its decisions computed, answered, logged and exported, and is never scaled.

mod common;

use common::{FakeOrchestrator, get_text, start_scaler, webhook};
use std::sync::atomic::Ordering;

const T1: &str = "2026-11-22T10:00:00Z";

async fn fire(addr: std::net::SocketAddr, fingerprint: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .json(&webhook("firing", fingerprint, T1, "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_decides_reports_and_scales_nothing() {
    for by_flag in [false, true] {
        let fake = FakeOrchestrator::new(1);
        fake.dry_run.store(!by_flag, Ordering::SeqCst);
        let mut args = vec!["--default-service", "web", "--cooldown", "0s", "--max", "3"];
        if by_flag {
            args.push("--dry-run");
        }
        let server = start_scaler(&args, None, fake.clone()).await;
        let addr = server.local_addr();
        let d = fire(addr, "fp1").await;
        assert_eq!(
            (d["action"].as_str(), d["to"].as_u64()),
            (Some("scale_up"), Some(2)),
            "{d}"
        );
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .starts_with("dry run, nothing scaled"),
            "{d}"
        );
        assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 0);
        assert_eq!(fake.replicas("web"), 1);
        let metrics = get_text(&format!("http://{addr}/metrics")).await;
        for line in [
            r#"starvation_desired_replicas{service="web"} 2"#,
            r#"starvation_scaling_blocked{service="web",reason="dry_run"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
        // The episode is remembered as a real decision would be: its repeat is a duplicate.
        assert_eq!(fire(addr, "fp1").await["action"], "none");

        let events: serde_json::Value = reqwest::get(format!("http://{addr}/events"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(events["events"][0]["dry_run"], true, "{events}");
        let metrics = get_text(&format!("http://{addr}/metrics")).await;
        for line in [
            r#"starvation_desired_replicas{service="web"} 1"#,
            r#"starvation_scaling_blocked{service="web",reason="dry_run"} 0"#,
            r#"starvation_service_replicas{service="web"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
        assert!(metrics.contains("alert_endpoint_call 0"), "{metrics}");
        server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_pinned_at_max_is_reported_blocked() {
    let fake = FakeOrchestrator::new(3);
    let server = start_scaler(
        &["--default-service", "web", "--max", "3"],
        None,
        fake.clone(),
    )
    .await;
    let d = fire(server.local_addr(), "fp1").await;
    assert_eq!(d["action"], "none");
    let metrics = get_text(&format!("http://{}/metrics", server.local_addr())).await;
    assert!(
        metrics.contains(r#"starvation_scaling_blocked{service="web",reason="at_max"} 1"#),
        "{metrics}"
    );
    server.shutdown().await.unwrap();
}
