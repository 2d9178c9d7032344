//! `starvation experiment` on its default path (local replicas, embedded monitor): the quick
//! profile end to end, interrupt and resume, and the rule subset.

mod common;

use common::{Proc, starvation_bin};
use starvation::experiment::Profile;
use starvation::results::runmeta::RunMeta;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn experiment(args: &[&str]) -> Proc {
    let child = Command::new(starvation_bin())
        .arg("experiment")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting starvation experiment");
    Proc {
        child,
        name: "experiment".into(),
    }
}

/// Processes (other than this test) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push((pid, cmd));
        }
    }
    found
}

fn meta(out: &Path, pair: u32, role: &str) -> RunMeta {
    RunMeta::read(&out.join(format!("runs/pair_{pair}/{role}/run.json"))).unwrap()
}

#[test]
fn quick_profile_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let out_s = out.to_str().unwrap();
    let started = Instant::now();
    let mut p = experiment(&["--profile", "quick", "--out", out_s]);
    let status = p
        .wait_for(Duration::from_secs(300))
        .expect("a quick pair finishes within 5 minutes");
    assert!(status.success(), "experiment failed: {status}");
    eprintln!("quick pair took {:?}", started.elapsed());
    assert!(processes_mentioning(out_s).is_empty(), "left running");

    // A scale event in the scaled run and none in the baseline.
    let baseline = meta(&out, 1, "baseline");
    let scaled = meta(&out, 1, "scaled");
    assert!(baseline.scale_events.is_empty(), "{baseline:?}");
    assert!(!scaled.scale_events.is_empty(), "{scaled:?}");
    assert!(
        out.join("runs/pair_1/scaled/Scale_event_export.json")
            .exists()
    );
    assert!(
        !out.join("runs/pair_1/baseline/Scale_event_export.json")
            .exists()
    );

    // Every export present in both runs.
    for role in ["baseline", "scaled"] {
        for spec in starvation::results::metrics::METRICS {
            if spec.kind == starvation::results::metrics::Kind::ScaleEvent {
                continue;
            }
            let f = out.join(format!("runs/pair_1/{role}/{}", spec.json_file()));
            let r = starvation::results::promjson::read_export(&f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(!r.is_empty(), "{} is empty", f.display());
        }
        for f in ["alerts.json", "load_summary.json", "Replicas_export.json"] {
            assert!(out.join(format!("runs/pair_1/{role}/{f}")).exists(), "{f}");
        }
    }

    // The report: scaled p99 below baseline p99, both sides present.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let b = report["baseline"]["p99_peak_s"].as_f64().unwrap();
    let s = report["scaled"]["p99_peak_s"].as_f64().unwrap();
    eprintln!("p99 peak: baseline {b:.2} s, scaled {s:.2} s");
    assert!(s < b, "scaled p99 {s} is not below baseline p99 {b}");
    assert!(report["baseline"]["queue_peak"].as_f64().unwrap() > 20.0);
    assert_eq!(report["scaled"]["runs_with_scale_event"], 1);
    assert_eq!(report["baseline"]["runs_with_scale_event"], 0);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "| p99 request duration, peak |",
        "≈ 64 s",
        "≈ 48",
        "Replicas over time",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    assert!(out.join("figures/Stacked_Figures.png").exists());
    assert!(out.join("figures/Thread_Response_CPU.png").exists());
    assert!(out.join("aggregate/summary.json").exists());

    // The runs read like exported runs: aggregate and figures work on them again.
    let agg = tmp.path().join("agg");
    let summary = starvation::results::aggregate::aggregate(&out.join("runs"), &agg).unwrap();
    assert_eq!(summary.complete_pairs, 1);
    assert_eq!(summary.scale_events.runs_with_event, 1);
    let data = starvation::figures::read_mean_data(&agg).unwrap();
    let figs = starvation::figures::draw_all(
        &data,
        &tmp.path().join("figs"),
        &[starvation::figures::Format::Png],
        None,
    )
    .unwrap();
    assert!(!figs.is_empty());
}

#[test]
fn interrupt_leaves_nothing_running_and_resume_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let out_s = out.to_str().unwrap();
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiment-tiny.toml"
    );
    let mut p = experiment(&["--profile", profile, "--out", out_s]);
    // Wait until the baseline's replica runs, then let the load go for a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_mentioning(&format!("{out_s}/runs/pair_1/baseline")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the baseline replica never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(p.pid(), libc::SIGINT) };
    let status = p
        .wait_for(Duration::from_secs(60))
        .expect("exits after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{status}");
    std::thread::sleep(Duration::from_millis(300));
    let left = processes_mentioning(out_s);
    assert!(left.is_empty(), "left running: {left:?}");
    let marker = out.join("runs/pair_1/baseline/INTERRUPTED");
    assert!(marker.exists(), "the interrupted run is marked");
    assert!(!out.join("runs/pair_1/baseline/run.json").exists());
    assert!(!out.join("report.md").exists());

    // Without --resume the folder is refused; with it the experiment completes.
    let mut again = experiment(&["--profile", profile, "--out", out_s]);
    let st = again.wait_for(Duration::from_secs(30)).unwrap();
    assert!(!st.success());
    let mut resumed = experiment(&["--resume", "--out", out_s]);
    let st = resumed
        .wait_for(Duration::from_secs(180))
        .expect("the resumed experiment finishes");
    assert!(st.success(), "{st}");
    assert!(!marker.exists());
    meta(&out, 1, "baseline");
    meta(&out, 1, "scaled");
    assert!(out.join("report.md").exists());
    assert!(out.join("report.json").exists());
    assert!(processes_mentioning(out_s).is_empty());
}

#[test]
fn every_deploy_rule_is_accepted() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alert_rules.yml"
    ))
    .unwrap();
    let rules = starvation::monitor::parse_rules(&text).unwrap();
    assert_eq!(rules.len(), 2);
    // The embedded copy is the file in deploy/.
    assert_eq!(text, starvation::monitor::rules::DEFAULT_RULES);
}

#[test]
fn unsupported_rules_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Rate\n        expr: rate(x[1m]) > 1\n",
    )
    .unwrap();
    let out = tmp.path().join("exp");
    let o = Command::new(starvation_bin())
        .args(["experiment", "--profile", "quick", "--rules"])
        .arg(&rules)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--monitor prometheus"), "{err}");
    assert!(err.contains("rate"), "{err}");
    assert!(
        !out.exists(),
        "nothing is written before the rules are checked"
    );
}

/// The swarm backend checks before it creates anything: a wrong monitor, or (on any machine)
/// missing images, no Swarm or no Docker, each with what to do.
#[test]
fn swarm_backend_refuses_what_cannot_run_before_creating_anything() {
    let run = |args: &[&str]| {
        let o = Command::new(starvation_bin())
            .arg("experiment")
            .args(args)
            .args(["--out", "/nonexistent/never-created"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&["--backend", "swarm", "--monitor", "embedded"]);
    assert!(err.contains("drop --monitor"), "{err}");
    let err = run(&["--backend", "swarm", "--swarm-tag", "no-such-tag-42"]);
    assert!(
        err.contains("deploy/build-images.sh --all --tag starvation:no-such-tag-42")
            || err.contains("docker swarm init")
            || err.contains("Docker Engine")
            || err.contains("docker CLI"),
        "{err}"
    );
    assert!(!Path::new("/nonexistent/never-created").exists());
}

#[test]
fn example_scenario_is_valid() {
    let p = Profile::from_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/experiment-example.toml"
    )))
    .unwrap();
    assert_eq!(p.name, "example");
    Profile::from_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiment-tiny.toml"
    )))
    .unwrap();
}
