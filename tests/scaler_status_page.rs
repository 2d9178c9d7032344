//! The scaler's status page, loaded in headless Chromium (Debian `chromium`).

mod common;

use common::{FakeOrchestrator, external, start_scaler, webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a headless browser: apt-get install chromium (.ci/run does)"]
async fn status_page_shows_services_replicas_alerts_and_decisions_in_a_browser() {
    let test = "status_page_shows_services_replicas_alerts_and_decisions_in_a_browser";
    let chromium = external("chromium", "chromium", test);
    let fake = FakeOrchestrator::new(1);
    let server = start_scaler(
        &[
            "--allow",
            "web",
            "--allow",
            "api",
            "--default-service",
            "web",
            "--max",
            "5",
        ],
        None,
        fake.clone(),
    )
    .await;
    let addr = server.local_addr();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .json(&webhook("firing", "fp1", "2026-11-22T10:00:00Z", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/");
    let out = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("chromium finished within 60 s")
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What a person sees: both services, web at 2 replicas with its firing alert, the decision.
    assert!(dom.contains("<h1>starvation scaler</h1>"), "{dom}");
    let row = |service: &str| {
        let start = dom
            .find(&format!("data-service=\"{service}\""))
            .unwrap_or_else(|| panic!("no row for {service}: {dom}"));
        dom[start..start + dom[start..].find("</tr>").unwrap()].to_owned()
    };
    let web = row("web");
    assert!(web.contains("<td class=\"replicas\">2</td>"), "{web}");
    assert!(
        web.contains("<td>1</td><td>5</td><td>1</td>"),
        "bounds min/max/step: {web}"
    );
    assert!(web.contains("ThreadPoolStarvation"), "{web}");
    let api = row("api");
    assert!(
        api.contains("<td class=\"replicas\">1</td>") && api.contains("none"),
        "{api}"
    );
    assert!(dom.contains("1 → 2"), "the decision row: {dom}");
    assert!(dom.contains("<td>scale up</td>"), "{dom}");
    assert!(dom.contains("<b id=\"scale-events\">1</b>"), "{dom}");
    server.shutdown().await.unwrap();
}
