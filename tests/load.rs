//! Integration tests of `starvation load` against in-process servers on 127.0.0.1:0, a scripted
//! remote-write receiver, and a real Prometheus (Debian `prometheus`).

mod common;

use common::prometheus::{Prometheus, start_prometheus};
use common::{Proc, free_port};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::get, routing::post};
use clap::Parser;
use starvation::load::{self, Opts, Plan, remote_write};
use tokio_util::sync::CancellationToken;

/// An in-process server that stops when dropped.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Serves `GET /` with `status` after `delay(n)` for the n-th request (0-based).
async fn serve(
    status: StatusCode,
    delay: impl Fn(u64) -> Duration + Send + Sync + 'static,
) -> Server {
    let hits = Arc::new(AtomicU64::new(0));
    let delay = Arc::new(delay);
    let app = Router::new().route(
        "/",
        get({
            let hits = hits.clone();
            move || {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let d = delay(n);
                async move {
                    tokio::time::sleep(d).await;
                    (status, "ok")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { addr, hits, task }
}

/// `starvation load ARGS`; the end summary goes to /dev/null unless the test asks for it
/// (printed from a runtime thread, it would land in the test log).
fn opts(args: &[&str]) -> Opts {
    let mut all = vec!["load", "--no-progress"];
    if !args.contains(&"--summary") {
        all.extend_from_slice(&["--summary", "/dev/null"]);
    }
    all.extend_from_slice(args);
    Opts::try_parse_from(all).unwrap()
}

async fn run_args(args: &[&str]) -> load::Report {
    let plan = Plan::from_opts(&opts(args)).unwrap();
    load::run_plan(plan, CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_iterations_when_no_vu_is_free() {
    // One VU, 500 ms per request, an iteration every 350 ms (20 per 7 s) for 2.9 s: iterations
    // at 0.35, 0.70, ... 2.80 s. Each request holds the VU over the next start, so every second
    // one finds it busy and is dropped; with --max-vus 1 the pool cannot grow.
    let server = serve(StatusCode::OK, |_| Duration::from_millis(500)).await;
    let report = run_args(&[
        "--url",
        &server.url(),
        "--stages",
        "20:2900ms",
        "--start-rate",
        "20",
        "--time-unit",
        "7s",
        "--pre-allocated-vus",
        "1",
        "--max-vus",
        "1",
    ])
    .await;
    let s = &report.summary;
    assert_eq!(s.expected_iterations, 8);
    assert_eq!(s.scheduled, 8);
    assert_eq!(s.started, 4, "{s:#?}");
    assert_eq!(s.dropped, 4, "{s:#?}");
    assert_eq!(s.completed, 4);
    assert_eq!(s.failed, 0);
    assert_eq!(s.vus_max, 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);
    assert!(s.service_time.min_ms >= 500.0, "{:?}", s.service_time);
    // The series accounts for every drop in the second it was scheduled.
    let dropped: u64 = report.series.rows.iter().map(|r| r.dropped).sum();
    assert_eq!(dropped, 4);
    assert_eq!(report.series.total_scheduled(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vus_grow_one_at_a_time_after_a_drop() {
    // Same timing with --max-vus 3: the first busy start is dropped and adds one VU; two VUs
    // then cover a 500 ms request every 350 ms, so nothing else drops and the pool stops at 2.
    let server = serve(StatusCode::OK, |_| Duration::from_millis(500)).await;
    let report = run_args(&[
        "--url",
        &server.url(),
        "--stages",
        "20:2900ms",
        "--start-rate",
        "20",
        "--time-unit",
        "7s",
        "--pre-allocated-vus",
        "1",
        "--max-vus",
        "3",
    ])
    .await;
    let s = &report.summary;
    assert_eq!(s.dropped, 1, "{s:#?}");
    assert_eq!(s.started, 7);
    assert_eq!(s.vus_max, 2);
    assert_eq!(s.vus_peak_busy, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_latency_and_series_consistently() {
    let server = serve(StatusCode::OK, |n| Duration::from_millis(5 + n % 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let series = dir.path().join("series.csv");
    load::run(opts(&[
        "--url",
        &server.url(),
        "--stages",
        "40:2s,0:1s",
        "--start-rate",
        "0",
        "--summary",
        summary.to_str().unwrap(),
        "--format",
        "json",
        "--series",
        series.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    // Area: 0 -> 40 over 2 s = 40, 40 -> 0 over 1 s = 20; the 60th would start exactly at the
    // end, which k6 does not start.
    assert_eq!(v["expected_iterations"], 59);
    assert_eq!(v["scheduled"], 59);
    assert_eq!(v["completed"], 59);
    assert_eq!(v["requests"], 59);
    assert_eq!(v["checks_passed"], 59);
    assert_eq!(v["dropped"], 0);
    assert_eq!(server.hits.load(Ordering::SeqCst), 59);
    let p50 = v["service_time"]["p50_ms"].as_f64().unwrap();
    assert!((5.0..100.0).contains(&p50), "{p50}");
    // Response time counts from the scheduled start, so it is never below the service time.
    assert!(
        v["response_time"]["min_ms"].as_f64().unwrap()
            >= v["service_time"]["min_ms"].as_f64().unwrap()
    );

    let csv = std::fs::read_to_string(&series).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "second,target_rate,scheduled,started,completed,failed,dropped,in_flight,p50_ms,p99_ms"
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let col = |i: usize| -> u64 { rows.iter().map(|r| r[i].parse::<u64>().unwrap()).sum() };
    assert_eq!(col(2), 59, "scheduled");
    assert_eq!(col(3), 59, "started");
    assert_eq!(col(4), 59, "completed");
    assert_eq!(rows.last().unwrap()[7], "0", "nothing in flight at the end");
    // Rising rate: area 10 after 1 s of a 0 -> 40 over 2 s ramp; the 10th start is exactly at
    // 1.000 s and so belongs to second 1.
    assert_eq!(rows[0][2], "9");
    assert_eq!(rows[0][1], "10.000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_errors_and_goes_on() {
    // Unexpected status.
    let unavailable = serve(StatusCode::SERVICE_UNAVAILABLE, |_| Duration::ZERO).await;
    let s = run_args(&[
        "--url",
        &unavailable.url(),
        "--stages",
        "10:1050ms",
        "--start-rate",
        "10",
    ])
    .await
    .summary;
    assert_eq!(s.completed, 10);
    assert_eq!(s.failed, 10);
    assert_eq!(s.errors.unexpected_status, 10);
    assert_eq!(s.checks_failed, 10);

    // Timeout.
    let slow = serve(StatusCode::OK, |_| Duration::from_secs(5)).await;
    let s = run_args(&[
        "--url",
        &slow.url(),
        "--stages",
        "5:1100ms",
        "--start-rate",
        "5",
        "--timeout",
        "200ms",
    ])
    .await
    .summary;
    assert_eq!(s.errors.timeout, 5, "{s:#?}");
    assert_eq!(s.failed, 5);

    // Connection refused: a port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let s = run_args(&[
        "--url",
        &refused_url,
        "--stages",
        "5:1100ms",
        "--start-rate",
        "5",
    ])
    .await
    .summary;
    assert_eq!(s.errors.connect_refused, 5, "{s:#?}");

    // Reset: accept and close without answering.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_url = format!("http://{}/", rude.local_addr().unwrap());
    let rude_task = tokio::spawn(async move {
        loop {
            let (sock, _) = rude.accept().await.unwrap();
            let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
            drop(sock);
        }
    });
    let s = run_args(&[
        "--url",
        &rude_url,
        "--stages",
        "5:1100ms",
        "--start-rate",
        "5",
    ])
    .await
    .summary;
    rude_task.abort();
    assert_eq!(s.errors.reset, 5, "{s:#?}");
    assert_eq!(s.completed, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_before_sending_and_names_the_flag() {
    let server = serve(StatusCode::OK, |_| Duration::ZERO).await;
    let url = server.url();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--url", &url, "--stages", "15:30"], "--stages"),
        (vec!["--url", &url, "--stages", "fast:30s"], "--stages"),
        (vec!["--url", &url, "--stages", ""], "--stages"),
        (
            vec![
                "--url",
                &url,
                "--pre-allocated-vus",
                "60",
                "--max-vus",
                "50",
            ],
            "--max-vus",
        ),
        (vec!["--url", "not a url"], "--url"),
        (vec!["--url", "ftp://127.0.0.1/x"], "--url"),
        (vec!["--url", &url, "--tag", "no-equals"], "--tag"),
        (
            vec!["--url", &url, "--remote-write", "nope"],
            "--remote-write",
        ),
        (vec!["--url", &url, "--start-rate=-1"], "--start-rate"),
        (vec!["--url", &url, "--time-unit", "0s"], "--time-unit"),
        (
            vec![
                "--url",
                &url,
                "--stages",
                "5:1s",
                "--summary",
                "/nonexistent/dir/s.json",
            ],
            "--summary",
        ),
    ];
    for (args, flag) in cases {
        let err = load::run(opts(&args)).await.unwrap_err();
        assert!(format!("{err:#}").contains(flag), "{args:?}: {err:#}");
    }
    // Unparsable durations are refused by the parser itself.
    assert!(Opts::try_parse_from(["load", "--timeout", "soon"]).is_err());
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_early_with_a_partial_summary() {
    let server = serve(StatusCode::OK, |_| Duration::from_millis(5)).await;
    let plan = Plan::from_opts(&opts(&[
        "--url",
        &server.url(),
        "--stages",
        "20:60s",
        "--start-rate",
        "20",
    ]))
    .unwrap();
    let cancel = CancellationToken::new();
    let runner = load::Runner::new(plan.schedule, plan.config).unwrap();
    let live = runner.live();
    let run = tokio::spawn(runner.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(live.snapshot().started > 0);
    cancel.cancel();
    let report = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stops promptly")
        .unwrap();
    let s = report.summary;
    assert!(s.stopped_by_user);
    assert_eq!(s.expected_iterations, 1199);
    assert!(s.scheduled > 0 && s.scheduled < 200, "{}", s.scheduled);
    assert_eq!(s.started, s.completed + s.interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_partial_summary_and_exits_130() {
    stop_with_signal("-INT").await;
}

/// `docker stop`, systemd and CI stop with SIGTERM: the same partial summary and exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_prints_partial_summary_and_exits_130() {
    stop_with_signal("-TERM").await;
}

async fn stop_with_signal(signal: &str) {
    let server = serve(StatusCode::OK, |_| Duration::from_millis(5)).await;
    let mut child = Proc::new(
        Command::new(env!("CARGO_BIN_EXE_starvation"))
            .args([
                "load",
                "--no-progress",
                "--url",
                &server.url(),
                "--stages",
                "10:60s",
            ])
            .args(["--start-rate", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        "load",
    );
    // Wait until it has sent something, then interrupt.
    for _ in 0..100 {
        if server.hits.load(Ordering::SeqCst) > 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| panic!("does not exit after kill {signal}"));
    assert_eq!(status.code(), Some(130));
    let mut out = String::new();
    std::io::Read::read_to_string(child.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("stopped early"), "{out}");
    assert!(out.contains("of 599 planned"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_serves_k6_series() {
    let server = serve(StatusCode::OK, |_| Duration::ZERO).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = tokio::spawn(load::run(opts(&[
        "--url",
        &server.url(),
        "--stages",
        "10:2s",
        "--start-rate",
        "10",
        "--metrics-listen",
        &listen,
        "--tag",
        "testid=metrics",
        "--tag",
        "team=a",
    ])));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    run.await.unwrap().unwrap();
    assert!(body.contains("# TYPE k6_http_reqs_total counter"), "{body}");
    let reqs = body
        .lines()
        .find(|l| l.starts_with("k6_http_reqs_total{"))
        .unwrap();
    assert!(reqs.contains("testid=\"metrics\""), "{reqs}");
    assert!(reqs.contains("team=\"a\""), "{reqs}");
    assert!(reqs.contains("status=\"200\""), "{reqs}");
    assert!(reqs.contains("expected_response=\"true\""), "{reqs}");
    for name in [
        "k6_iterations_total",
        "k6_dropped_iterations_total{",
        "k6_vus{",
        "k6_vus_max{",
        "k6_http_req_failed_rate{",
        "k6_checks_rate{",
        "k6_http_req_duration_seconds_bucket{",
        "k6_http_req_duration_seconds_count{",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
}

/// What a scripted remote-write receiver saw.
#[derive(Default)]
struct Received {
    requests: Vec<remote_write::prompb::WriteRequest>,
    rejected_native: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_falls_back_to_classic_when_native_is_rejected() {
    // A receiver that refuses any request holding a native histogram, like Prometheus without
    // the native-histograms feature.
    let seen = Arc::new(std::sync::Mutex::new(Received::default()));
    async fn write(State(seen): State<Arc<std::sync::Mutex<Received>>>, body: Bytes) -> StatusCode {
        let req = remote_write::decode(&body).unwrap();
        let mut seen = seen.lock().unwrap();
        if req.timeseries.iter().any(|t| !t.histograms.is_empty()) {
            seen.rejected_native += 1;
            return StatusCode::BAD_REQUEST;
        }
        seen.requests.push(req);
        StatusCode::NO_CONTENT
    }
    let app = Router::new()
        .route("/api/v1/write", post(write))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rw = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let server = serve(StatusCode::OK, |_| Duration::from_millis(2)).await;
    load::run(opts(&[
        "--url",
        &server.url(),
        "--stages",
        "10:2050ms",
        "--start-rate",
        "10",
        "--remote-write",
        &rw,
        "--remote-write-interval",
        "500ms",
        "--tag",
        "testid=fallback",
    ]))
    .await
    .unwrap();
    receiver.abort();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.rejected_native, 1, "native tried once, then given up");
    let name = |t: &remote_write::prompb::TimeSeries| {
        t.labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value.clone())
            .unwrap()
    };
    let last_value = |metric: &str| -> Option<f64> {
        seen.requests
            .iter()
            .flat_map(|r| r.timeseries.iter())
            .filter(|t| name(t) == metric)
            .map(|t| t.samples[0].value)
            .next_back()
    };
    assert_eq!(last_value("k6_http_reqs_total"), Some(20.0));
    assert_eq!(last_value("k6_iterations_total"), Some(20.0));
    assert_eq!(last_value("k6_http_req_duration_seconds_count"), Some(20.0));
    assert_eq!(last_value("k6_dropped_iterations_total"), Some(0.0));
    assert_eq!(last_value("k6_checks_rate"), Some(1.0));
    assert!(last_value("k6_vus_max").is_some());
    // Every series carries the test id; labels are sorted with __name__ first.
    for r in &seen.requests {
        for t in &r.timeseries {
            assert_eq!(t.labels[0].name, "__name__");
            assert!(t.labels.windows(2).all(|w| w[0].name < w[1].name));
            assert!(
                t.labels
                    .iter()
                    .any(|l| l.name == "testid" && l.value == "fallback"),
                "{t:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real Prometheus.

/// The Prometheus binary: `$STARVATION_PROMETHEUS` or the Debian package's.
/// Runs a short load with remote write to `prom`; returns the summary JSON.
async fn load_into(prom: &Prometheus, testid: &str) -> (serde_json::Value, u64) {
    // 10..19 ms, spread so the p99 is a real tail value.
    let server = serve(StatusCode::OK, |n| Duration::from_millis(10 + (n * 7) % 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    load::run(opts(&[
        "--url",
        &server.url(),
        "--stages",
        // area 120; the 120th would start exactly at the end, and is not started (as in k6)
        "30:4s",
        "--start-rate",
        "30",
        "--remote-write",
        &format!("{}/api/v1/write", prom.base),
        "--remote-write-interval",
        "1s",
        "--tag",
        &format!("testid={testid}"),
        "--summary",
        summary.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .await
    .unwrap();
    let v = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (v, server.hits.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: apt-get install prometheus (.ci/run does)"]
async fn prometheus_receives_k6_series_and_native_histogram() {
    let prom = start_prometheus(true).await;
    let (summary, hits) = load_into(&prom, "rwtest").await;
    assert_eq!(summary["requests"], 119);
    assert_eq!(hits, 119);

    let total = prom
        .scalar("sum by(testid)(k6_http_reqs_total{testid=\"rwtest\"})")
        .await;
    assert_eq!(total, 119.0);
    let ok = prom
        .scalar("sum by(testid)(k6_http_reqs_total{testid=\"rwtest\",expected_response=\"true\"})")
        .await;
    assert_eq!(ok, 119.0);
    let iterations = prom
        .scalar("sum(k6_iterations_total{testid=\"rwtest\"})")
        .await;
    assert_eq!(iterations, 119.0);

    let p99 = prom
        .scalar(
            "histogram_quantile(0.99, sum by(testid)(rate(k6_http_req_duration_seconds{testid=\"rwtest\"}[15s])))",
        )
        .await;
    let own = summary["service_time"]["p99_ms"].as_f64().unwrap() / 1000.0;
    eprintln!("p99: prometheus {p99:.6} s, generator {own:.6} s");
    assert!(
        (p99 - own).abs() <= 0.05 * own,
        "prometheus p99 {p99} s vs generator p99 {own} s"
    );
    let count = prom
        .scalar("histogram_count(sum(k6_http_req_duration_seconds{testid=\"rwtest\"}))")
        .await;
    assert_eq!(count, 119.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: apt-get install prometheus (.ci/run does)"]
async fn prometheus_without_native_histograms_gets_classic_series() {
    let prom = start_prometheus(false).await;
    let (summary, _) = load_into(&prom, "classic").await;
    let total = prom
        .scalar("sum by(testid)(k6_http_reqs_total{testid=\"classic\"})")
        .await;
    assert_eq!(total, 119.0);
    let count = prom
        .scalar("sum(k6_http_req_duration_seconds_count{testid=\"classic\"})")
        .await;
    assert_eq!(count, 119.0);
    let sum = prom
        .scalar("sum(k6_http_req_duration_seconds_sum{testid=\"classic\"})")
        .await;
    let mean_ms = summary["service_time"]["mean_ms"].as_f64().unwrap();
    assert!((sum / 119.0 * 1000.0 - mean_ms).abs() < 0.05 * mean_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_interrupts_what_is_still_running() {
    let server = serve(StatusCode::OK, |_| Duration::from_secs(3)).await;
    let began = std::time::Instant::now();
    let report = run_args(&[
        "--url",
        &server.url(),
        "--stages",
        "4:1100ms",
        "--start-rate",
        "4",
        "--graceful-stop",
        "300ms",
    ])
    .await;
    let s = &report.summary;
    assert_eq!(s.started, 4);
    assert_eq!(s.completed, 0);
    assert_eq!(s.interrupted, 4, "{s:#?}");
    assert!(!s.stopped_by_user);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "did not wait for the requests"
    );
    assert_eq!(report.series.rows.last().unwrap().in_flight, 0);
}

#[test]
fn k6_script_matches_the_default_profile() {
    let js = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/paper-spike.k6.js"
    ))
    .unwrap();
    let stages: Vec<String> = js
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("{ target: ")?;
            let (target, rest) = rest.split_once(", duration: '")?;
            let (duration, _) = rest.split_once('\'')?;
            Some(format!("{target}:{duration}"))
        })
        .collect();
    assert_eq!(stages.join(","), load::PAPER_STAGES);
    for setting in [
        "executor: 'ramping-arrival-rate'",
        "startRate: Number(env('START_RATE', 1)),",
        "timeUnit: env('TIME_UNIT', '1s'),",
        "preAllocatedVUs: Number(env('PRE_ALLOCATED_VUS', 50)),",
        "maxVUs: Number(env('MAX_VUS', 1000)),",
        "gracefulStop: env('GRACEFUL_STOP', '30s'),",
        "testid: env('TESTID', 'threadloadtest')",
        "env('TIMEOUT', '60s')",
        "/test-threadpool",
        "Number(env('EXPECT_STATUS', 200))",
    ] {
        assert!(js.contains(setting), "{setting} missing from the k6 script");
    }
    let defaults = Plan::from_opts(&opts(&[])).unwrap();
    assert_eq!(defaults.schedule.start_rate(), 1.0);
    assert_eq!(defaults.schedule.time_unit(), Duration::from_secs(1));
}
