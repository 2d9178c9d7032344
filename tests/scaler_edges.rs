//! The scaler under hostile and broken input, on real servers bound to port 0: the token is
//! checked before a byte of the body is read, slow bodies time out, floods of alerts cost linear
//! time and bounded memory, nonsense values are refused, reads need the token off loopback,
//! absurd alert times are read as Alertmanager reads them.

mod common;

use common::{
    FakeOrchestrator, Proc, free_port, get_text, rss_bytes, spawn_listening, start_scaler,
    starvation_bin, webhook,
};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const T1: &str = "2026-11-22T10:00:00Z";
const TOKEN: &str = "s3cret-token";

/// The real `alertapi` binary (local orchestrator, one replica) with a token.
fn spawn_alertapi(dir: &std::path::Path) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(starvation_bin());
    cmd.current_dir(dir)
        .env("STARVATION_ALERTAPI_TOKEN", TOKEN)
        .args([
            "alertapi",
            "--listen",
            "127.0.0.1:0",
            "--orchestrator",
            "local",
        ])
        .args(["--default-service", "web", "--local-serve-arg=--block-ms=0"])
        .args(["--local-listen", &format!("127.0.0.1:{}", free_port())]);
    spawn_listening(cmd, "starvation alertapi")
}

fn upload_head(token: Option<&str>, length: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /alert HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[test]
fn the_token_is_checked_before_the_body_and_refused_uploads_cost_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, addr) = spawn_alertapi(dir.path());

    // Headers alone, a 1 MiB body announced and never sent: answered 401 at once.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(upload_head(None, 1024 * 1024).as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .expect("no answer before the body: the body is read before the token");
    assert_eq!(&head, b"HTTP/1.1 401");

    // 300 unauthenticated uploads of 512 KiB each (of a claimed 1 MiB), as the probe sent.
    let before = rss_bytes(proc.pid());
    let chunk = vec![b'x'; 64 * 1024];
    let uploads: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(upload_head(None, 1024 * 1024).as_bytes());
            for _ in 0..8 {
                if s.write_all(&chunk).is_err() {
                    break; // refused and closed: what we want
                }
            }
            s
        })
        .collect();
    let during = rss_bytes(proc.pid());
    drop(uploads);
    let grown = during.saturating_sub(before) as f64 / 1e6;
    eprintln!(
        "RSS {:.1} MB before, {:.1} MB with 300 refused uploads (+{grown:.1} MB)",
        before as f64 / 1e6,
        during as f64 / 1e6
    );
    assert!(grown < 40.0, "RSS grew {grown:.1} MB for refused uploads");
}

#[test]
fn slow_authenticated_bodies_time_out_and_hold_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, addr) = spawn_alertapi(dir.path());
    let before = rss_bytes(proc.pid());
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(upload_head(Some(TOKEN), 1024 * 1024).as_bytes())
                .unwrap();
            s.write_all(&vec![b' '; 256 * 1024]).unwrap();
            s
        })
        .collect();
    let during = rss_bytes(proc.pid());
    // Each is answered 408 (or closed) once the body timeout (10 s) passes, never kept.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() {
            assert_eq!(&head, b"HTTP/1.1 408");
        }
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(25),
        "{took:?}"
    );
    let grown = during.saturating_sub(before) as f64 / 1e6;
    eprintln!("40 slow bodies: RSS +{grown:.1} MB, all ended after {took:?}");
    assert!(grown < 40.0, "RSS grew {grown:.1} MB for 40 slow bodies");
    // Still serving.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

fn alerts(n: usize, name: &str) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({"status": "firing", "labels": {"alertname": name},
                   "startsAt": T1, "fingerprint": format!("{i:x}")})
        })
        .collect();
    json!({"version": "4", "status": "firing", "alerts": alerts})
}

async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_alerts_in_one_webhook_scale_once_with_a_short_reason() {
    let fake = FakeOrchestrator::new(1);
    let server = start_scaler(&["--default-service", "web"], None, fake.clone()).await;
    // Compact alerts, so 10,000 fit the 1 MiB body limit.
    let body = alerts(10_000, "S");
    assert!(body.to_string().len() < 1024 * 1024);
    let start = Instant::now();
    let (status, decision) = post(server.local_addr(), None, &body).await;
    eprintln!(
        "10,000 alerts handled in {:?} (debug build)",
        start.elapsed()
    );
    assert_eq!(status, 200, "{decision}");
    assert_eq!(
        (decision["from"].as_u64(), decision["to"].as_u64()),
        (Some(1), Some(2))
    );
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.len() < 300 && reason.contains("10000 firing alerts"),
        "{reason}"
    );
    assert!(
        reason.contains("9999 held back by the cooldown"),
        "{reason}"
    );
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_the_status_page_stay_small_under_floods_of_long_names() {
    let fake = FakeOrchestrator::new(1);
    let server = start_scaler(
        &["--default-service", "web", "--max", "3"],
        None,
        fake.clone(),
    )
    .await;
    let addr = server.local_addr();
    for round in 0..30 {
        let mut body = alerts(1000, &format!("{round}{}", "N".repeat(10_000)));
        for (i, a) in body["alerts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            a["labels"]["alertname"] = format!("{round}-{i}-{}", "N".repeat(500)).into();
            a["fingerprint"] = format!("{round}-{i}").into();
        }
        assert_eq!(post(addr, None, &body).await.0, 200);
    }
    let events = get_text(&format!("http://{addr}/events")).await;
    let page = get_text(&format!("http://{addr}/")).await;
    eprintln!(
        "after 30,000 alerts: /events {} bytes, status page {} bytes",
        events.len(),
        page.len()
    );
    assert!(events.len() < 200_000, "/events is {} bytes", events.len());
    assert!(
        page.len() < 100_000,
        "the status page is {} bytes",
        page.len()
    );
    assert!(
        page.contains(" more"),
        "the page names how many firing alerts it leaves out"
    );
    let parsed: serde_json::Value = serde_json::from_str(&events).unwrap();
    for e in parsed["events"].as_array().unwrap() {
        assert!(e["alerts"].as_array().unwrap().len() <= 11, "{e}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_never_resolved_expires_and_the_service_scales_down() {
    let fake = FakeOrchestrator::new(1);
    let args = [
        "--default-service",
        "web",
        "--firing-ttl",
        "1s",
        "--scale-down-delay",
        "1s",
    ];
    let server = start_scaler(&args, None, fake.clone()).await;
    let (status, _) = post(
        server.local_addr(),
        None,
        &webhook("firing", "fp1", T1, "web"),
    )
    .await;
    assert_eq!((status, fake.replicas("web")), (200, 2));
    // No resolve ever comes: forgotten after 1 s, stepped down 1 s later.
    let deadline = Instant::now() + Duration::from_secs(15);
    while fake.replicas("web") != 1 {
        assert!(Instant::now() < deadline, "never scaled down after the TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await.unwrap();
}

/// Issue 26.3 over HTTP. A `startsAt` in the far future outranked every later resolve, so the
/// alert stayed firing for `--firing-ttl` (1 h) and the service never scaled down; a `firing`
/// alert whose `endsAt` had passed (resolved, for Alertmanager) scaled up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_starts_and_past_ends_are_read_as_alertmanager_does() {
    let fake = FakeOrchestrator::new(1);
    let args = [
        "--default-service",
        "web",
        "--cooldown",
        "0s",
        "--scale-down-delay",
        "1s",
    ];
    let server = start_scaler(&args, None, fake.clone()).await;
    let addr = server.local_addr();
    let at = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (status, d) = post(
        addr,
        None,
        &webhook("firing", "fp1", "2099-01-01T00:00:00Z", "web"),
    )
    .await;
    assert_eq!((status, fake.replicas("web")), (200, 2), "{d}");
    // A later episode's resolve, with its earlier startsAt and its endsAt.
    let mut resolve = webhook("resolved", "fp1", &at(-2), "web");
    resolve["alerts"][0]["endsAt"] = at(-1).into();
    let (status, d) = post(addr, None, &resolve).await;
    assert_eq!(status, 200, "{d}");
    let resolved_at = Instant::now();
    while fake.replicas("web") != 1 {
        assert!(
            resolved_at.elapsed() < Duration::from_secs(10),
            "the resolve did not end the far-future alert: no scale-down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("scaled down {:?} after the resolve", resolved_at.elapsed());
    // Says firing, ended a minute ago: resolved, as Alertmanager reads it. No scale-up.
    let mut stale = webhook("firing", "fp2", &at(-120), "web");
    stale["alerts"][0]["endsAt"] = at(-60).into();
    let (status, d) = post(addr, None, &stale).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["action"], "none", "{d}");
    assert!(d["reason"].as_str().unwrap().starts_with("resolved"), "{d}");
    assert_eq!(fake.replicas("web"), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proportional_policy_refuses_nonsense_values() {
    let fake = FakeOrchestrator::new(1);
    let args = [
        "--default-service",
        "web",
        "--policy",
        "proportional",
        "--cooldown",
        "0s",
    ];
    let server = start_scaler(&args, None, fake.clone()).await;
    let addr = server.local_addr();
    for (i, bad) in ["NaN", "-1", "inf", "-inf", "many"].iter().enumerate() {
        let mut body = webhook("firing", &format!("fp{i}"), T1, "web");
        body["alerts"][0]["annotations"]["value"] = (*bad).into();
        let (status, answer) = post(addr, None, &body).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("annotation `value`") && error.contains(bad),
            "{error}"
        );
    }
    assert_eq!(fake.scale_calls.load(Ordering::SeqCst), 0);
    let mut huge = webhook("firing", "big", T1, "web");
    huge["alerts"][0]["annotations"]["value"] = "1e308".into();
    let (status, answer) = post(addr, None, &huge).await;
    // Capped by HPA's default scale-up policy (max(100 %, +4) per 15 s), well below max 10.
    assert_eq!((status, answer["to"].as_u64()), (200, Some(5)), "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.len() < 150 && reason.contains("1.000e308"),
        "{answer}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_ones_scheme_case_field_names_and_replicas_from_the_start() {
    let fake = FakeOrchestrator::new(3);
    let server = start_scaler(&["--default-service", "web"], Some(TOKEN), fake.clone()).await;
    let addr = server.local_addr();
    // The gauge is there before any decision.
    let metrics = get_text(&format!("http://{addr}/metrics")).await;
    assert!(
        metrics.contains("starvation_service_replicas{service=\"web\"} 3"),
        "{metrics}"
    );
    // `bearer` in lower case is the same scheme.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .header("authorization", format!("bearer {TOKEN}"))
        .json(&webhook("firing", "fp1", T1, "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A wrong type names its field.
    let mut bad = webhook("firing", "fp2", T1, "web");
    bad["status"] = 5.into();
    let (status, answer) = post(addr, Some(TOKEN), &bad).await;
    let error = answer["error"].as_str().unwrap();
    assert_eq!(status, 400);
    assert!(
        error.contains("`status`") && error.contains("integer `5`"),
        "{error}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_token_off_loopback_unless_public() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    for (public, anonymous) in [(false, 401), (true, 200)] {
        let mut args = vec![
            "alertapi",
            "--listen",
            "0.0.0.0:0",
            "--default-service",
            "web",
        ];
        args.extend(["--token-file", token_file.to_str().unwrap()]);
        if public {
            args.push("--public-reads");
        }
        let opts = starvation::scaler::Opts::try_parse_from(args).unwrap();
        let access = opts.access().unwrap();
        assert_eq!(access.protect_reads, !public);
        let cfg = opts.controller_config().unwrap();
        let server = starvation::scaler::Server::start(
            opts.listen,
            access,
            opts.limits.clone(),
            FakeOrchestrator::new(1),
            cfg,
        )
        .await
        .unwrap();
        let port = server.local_addr().port();
        let client = reqwest::Client::new();
        for path in ["/", "/events", "/metrics"] {
            let url = format!("http://127.0.0.1:{port}{path}");
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status().as_u16(), anonymous, "{path} public={public}");
            let r = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path} with the token");
        }
        let health = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status().as_u16(), 200);
        server.shutdown().await.unwrap();
    }
}
