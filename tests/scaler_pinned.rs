//! A service pinned at its max is reported to a real Alertmanager (Debian's
//! prometheus-alertmanager on a free loopback port): `alertapi --alertmanager URL` posts
//! `ScalerPinnedAtMax{service}` while the load wants more than max, and resolves it once the
//! service is below max again. The orchestrator is a scripted fake (this is about the alert).

mod common;

use common::{FakeOrchestrator, Proc, external, fire_alert, free_port, start_scaler, wait_http_ok};
use starvation::orchestrator::Orchestrator;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "scaler_pinned";

/// Alertmanager with one receiver that sends nowhere, on a free loopback port.
async fn start_alertmanager(dir: &std::path::Path) -> (Proc, String) {
    let bin = external("prometheus-alertmanager", "prometheus-alertmanager", TEST);
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // A lone instance: no gossip port.
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus-alertmanager");
    let proc = Proc::new(child, "alertmanager");
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(20)).await;
    (proc, url)
}

/// The active `ScalerPinnedAtMax` alerts Alertmanager holds.
async fn pinned_alerts(alertmanager: &str) -> Vec<serde_json::Value> {
    let alerts: Vec<serde_json::Value> = reqwest::get(format!(
        "{alertmanager}/api/v2/alerts?filter=alertname%3D%22ScalerPinnedAtMax%22"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    alerts
        .into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

async fn wait_for_alerts(alertmanager: &str, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = pinned_alerts(alertmanager).await;
        if alerts.len() == want {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{TEST}: {} ScalerPinnedAtMax alerts, want {want}: {alerts:#?}",
            alerts.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Alertmanager: apt-get install prometheus-alertmanager (.ci/run does)"]
async fn a_service_pinned_at_max_is_an_alert_in_alertmanager_until_it_is_below_max() {
    let dir = tempfile::tempdir().unwrap();
    let (_alertmanager, url) = start_alertmanager(dir.path()).await;
    let fake = FakeOrchestrator::new(3);
    let server = start_scaler(
        &[
            "--default-service",
            "web",
            "--max",
            "3",
            "--alertmanager",
            &url,
        ],
        None,
        fake.clone(),
    )
    .await;
    let addr = server.local_addr();
    assert!(pinned_alerts(&url).await.is_empty());

    // At max 3 and a new alert fires: the load wants more than max.
    let (status, d) = fire_alert(addr, "fp1", "web").await;
    assert_eq!(status, 200);
    assert!(
        d["reason"].as_str().unwrap().contains("already at max 3"),
        "{d}"
    );
    let alerts = wait_for_alerts(&url, 1).await;
    assert_eq!(alerts[0]["labels"]["service"], "web", "{alerts:#?}");
    assert_eq!(alerts[0]["labels"]["severity"], "warning");
    let summary = alerts[0]["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("pinned at its max of 3"), "{summary}");
    // The scaler's own alert, routed back to it by Alertmanager, is not load: nothing happens.
    let mut own = common::webhook("firing", "fp-own", "2026-12-07T10:00:00Z", "web");
    own["alerts"][0]["labels"]["alertname"] = "ScalerPinnedAtMax".into();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .json(&own)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body.get("decisions")
            .is_some_and(|d| d.as_array().unwrap().is_empty()),
        "{body}"
    );
    // A repeat at max says nothing new: the alert stays.
    assert_eq!(fire_alert(addr, "fp1", "web").await.0, 200);
    assert_eq!(wait_for_alerts(&url, 1).await.len(), 1);

    // Below max again (someone scaled it down; a new alert scales 1 -> 2 of 3): resolved.
    fake.scale("web", 1).await.unwrap();
    let (_, d) = fire_alert(addr, "fp2", "web").await;
    assert_eq!(d["to"], 2, "{d}");
    wait_for_alerts(&url, 0).await;
    server.shutdown().await.unwrap();
}
