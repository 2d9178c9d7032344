//! `starvation load` at its edges, the defects a bad-input probe found: an absurd rate, a
//! remote-write endpoint that never answers, SIGTERM with requests in flight, an output file that
//! cannot be written. Each runs the real binary against real servers on loopback port 0.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use common::Proc;

/// `GET /` answers 200 after `delay`; counts requests.
async fn server(delay: Duration) -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/",
        get({
            let hits = hits.clone();
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(delay).await;
                    "ok"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// A TCP endpoint that accepts connections and never answers (nor closes them).
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

fn load(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_starvation"));
    cmd.args(["load", "--no-progress"]).args(args);
    cmd
}

/// Waits for the process to exit, at most `limit` (then kills it and fails).
async fn wait(p: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let at = Instant::now();
    while at.elapsed() < limit {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} still running after {limit:?}:\n{}", p.name, p.stderr());
}

fn stdout(p: &mut Proc) -> String {
    let mut out = String::new();
    std::io::Read::read_to_string(p.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_rate_is_refused_at_once_and_sends_nothing() {
    let (url, hits) = server(Duration::ZERO).await;
    let child = load(&["--url", &url, "--stages", "99999999999999999999:1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = Proc::new(child, "load");
    // Before the fix planning walked 1e20 iterations: this wait would never end.
    let status = wait(&mut p, Duration::from_secs(30)).await;
    assert!(!status.success());
    let err = p.stderr();
    assert!(
        err.contains("--stages: stage 1: 1.000e20 iterations/s is above the most"),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_endpoint_that_never_answers_costs_pushes_not_load() {
    let (url, hits) = server(Duration::ZERO).await;
    let rw = black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let args = [
        "--url",
        &url,
        "--stages",
        "20:1050ms",
        "--start-rate",
        "20",
        "--remote-write",
        &rw,
        "--remote-write-interval",
        "100ms",
        "--format",
        "json",
        "--summary",
        summary.to_str().unwrap(),
    ];
    let at = Instant::now();
    let child = load(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = Proc::new(child, "load");
    // The first request must not wait for the first push (it used to wait 20 s).
    while hits.load(Ordering::SeqCst) == 0 {
        assert!(
            at.elapsed() < Duration::from_secs(10),
            "no request yet:\n{}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first_request = at.elapsed();
    // 1 s of load, then at most the 3 s final flush; it used to take a minute.
    let status = wait(&mut p, Duration::from_secs(30)).await;
    let total = at.elapsed();
    assert!(status.success(), "{}", p.stderr());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["completed"], 20, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    assert_eq!(hits.load(Ordering::SeqCst), 20);
    let err = p.stderr();
    assert!(err.contains("not every push was delivered"), "{err}");
    assert!(err.contains("dropped="), "{err}");
    assert!(
        first_request < Duration::from_secs(5) && total < Duration::from_secs(15),
        "first request after {first_request:?}, exit after {total:?}:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_requests_in_flight_reports_them_as_interrupted_errors() {
    // Every request takes 30 s: at SIGTERM every started one is in flight.
    let (url, hits) = server(Duration::from_secs(30)).await;
    let rw = black_hole().await;
    let child = load(&[
        "--url",
        &url,
        "--stages",
        "10:60s",
        "--start-rate",
        "10",
        "--remote-write",
        &rw,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut p = Proc::new(child, "load");
    let at = Instant::now();
    while hits.load(Ordering::SeqCst) < 5 {
        assert!(at.elapsed() < Duration::from_secs(20), "{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    let status = wait(&mut p, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(130), "{}", p.stderr());
    let out = stdout(&mut p);
    assert!(out.contains("stopped early"), "{out}");
    let line = out.lines().find(|l| l.contains("errors ...")).unwrap();
    let total: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(total >= 5, "interrupted requests are errors: {line}");
    assert!(line.contains(&format!("(interrupted {total},")), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_write_error_names_the_file_and_a_failed_run_leaves_no_partial_file() {
    let (url, _hits) = server(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let child = load(&[
        "--url",
        &url,
        "--stages",
        "5:1s",
        "--start-rate",
        "5",
        "--series",
        "/dev/full",
        "--summary",
        summary.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut p = Proc::new(child, "load");
    let status = wait(&mut p, Duration::from_secs(30)).await;
    assert!(!status.success());
    let err = p.stderr();
    assert!(err.contains("--series: writing /dev/full"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    // The summary was complete before the series failed; nothing else is beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["summary.json"], "no temporary file left behind");
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("load summary")
    );
}
