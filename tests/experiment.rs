//! `starvation experiment` on its default path (local replicas, embedded monitor): the quick
//! profile end to end, interrupt and resume, and the rule subset.

mod common;

use common::experiment::{assert_quick_pair, experiment, meta, processes_mentioning};
use common::starvation_bin;
use starvation::experiment::Profile;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

    assert_quick_pair(&out, tmp.path());
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

    // Without --resume the folder is refused; with it the experiment completes. A bad flag is
    // reported as the bad flag, not as the folder.
    let mut again = experiment(&["--profile", profile, "--out", out_s]);
    let st = again.wait_for(Duration::from_secs(30)).unwrap();
    assert!(!st.success());
    for (flag, value) in [("--runs", "0"), ("--profile", "nonsense")] {
        let o = Command::new(starvation_bin())
            .args(["experiment", flag, value, "--out", out_s])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            err.contains(flag) && !err.contains("already holds"),
            "{err}"
        );
    }
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

/// The README's first command twice in one folder: two dated experiments and `latest` at the
/// second. And in each, the report's request counts are the sums of its runs'
/// `load_summary.json`, counter by counter, as are the exports' and the aggregate's totals.
#[test]
fn running_twice_makes_two_experiments_whose_counts_match_the_load_summaries() {
    let cwd = tempfile::tempdir().unwrap();
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiment-counts.toml"
    );
    let mut folders = Vec::new();
    for _ in 0..2 {
        let o = Command::new(starvation_bin())
            .args(["experiment", "--profile", profile])
            .current_dir(cwd.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let latest = std::fs::read_link(cwd.path().join("experiment/latest")).unwrap();
        folders.push(cwd.path().join("experiment").join(latest));
    }
    assert_ne!(
        folders[0], folders[1],
        "the second run reused the first folder"
    );
    for out in &folders {
        assert!(out.join("report.md").exists(), "{}", out.display());
        assert_counts_match(out);
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The last value of a counter export.
fn last_export_value(dir: &Path, file: &str) -> u64 {
    let r = starvation::results::promjson::read_export(&dir.join(file)).unwrap();
    let c = starvation::results::metrics::combine_series(
        r.series().unwrap(),
        starvation::results::metrics::Combine::Sum,
    );
    c.points.last().map(|p| p.1).unwrap_or(0.0) as u64
}

fn assert_counts_match(out: &Path) {
    let report = json(&out.join("report.json"));
    let summary = json(&out.join("aggregate/summary.json"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for role in ["baseline", "scaled"] {
        let dir = out.join(format!("runs/pair_1/{role}"));
        let load = json(&dir.join("load_summary.json"));
        let get = |k: &str| load[k].as_u64().unwrap();
        let expected = [
            ("scheduled", get("scheduled")),
            ("started", get("started")),
            ("completed", get("completed")),
            ("succeeded", get("completed") - get("failed")),
            ("failed", get("failed")),
            ("timed_out", load["errors"]["timeout"].as_u64().unwrap()),
            ("interrupted", get("interrupted")),
            ("dropped", get("dropped")),
        ];
        for (k, v) in expected {
            assert_eq!(report[role]["requests"][k], v, "{role} {k}: {report:#}");
        }
        // This profile loses requests to time-outs and drops.
        assert!(
            get("dropped") > 0 && load["errors"]["timeout"].as_u64().unwrap() > 0,
            "{load}"
        );
        // The exports end with the load generator's own totals (no doubled last sample) …
        assert_eq!(
            last_export_value(&dir, "Total_Requests_export.json"),
            get("requests"),
            "{role}"
        );
        assert_eq!(
            last_export_value(&dir, "Failed_Requests_export.json"),
            get("failed"),
            "{role}"
        );
        assert_eq!(
            last_export_value(&dir, "Dropped_Iterations_export.json"),
            get("dropped"),
            "{role}"
        );
        // … and so does the aggregate.
        let req = &summary[format!("requests_{role}")];
        assert_eq!(
            req["total_mean"].as_f64(),
            Some(get("requests") as f64),
            "{role}: {req}"
        );
        assert_eq!(
            req["dropped_sum"].as_f64(),
            Some(get("dropped") as f64),
            "{role}: {req}"
        );
    }
    for row in [
        "| of which timed out |",
        "| interrupted (in flight",
        "| dropped (never sent",
    ] {
        assert!(md.contains(row), "report.md lacks {row:?}:\n{md}");
    }
    assert!(!md.contains(".0 |"), "a count printed as a float:\n{md}");
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

/// Issue 26 point 14: a profile that cannot run is refused before anything is created, and the
/// error names the key.
#[test]
fn profiles_that_cannot_run_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiment-tiny.toml"
    ))
    .unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "block_ms = 500",
            "block_ms = 700000",
            "block_ms = 700000: at most 600000",
        ),
        (
            "stages = \"10:4s,15:4s\"",
            "stages = \"10:18446744073709551615s\"",
            "longer than the 24 h a run may take",
        ),
        (
            "max_replicas = 2",
            "max_replicas = 10000",
            "max_replicas = 10000: at most 100",
        ),
        (
            "stages = \"10:4s,15:4s\"",
            "stages = \"0:1s\"",
            "starts no iteration",
        ),
        (
            "max_vus = 200",
            "max_vus = 200\nserve_args = [\"--io-model\", \"bogus\"]",
            "serve_args = [\"--io-model\", \"bogus\"]: a replica would refuse them",
        ),
    ];
    for (i, (from, to, expected)) in cases.iter().enumerate() {
        assert!(tiny.contains(from), "{from}");
        let profile = tmp.path().join(format!("p{i}.toml"));
        std::fs::write(&profile, tiny.replace(from, to)).unwrap();
        let out = tmp.path().join(format!("exp{i}"));
        let o = Command::new(starvation_bin())
            .args(["experiment", "--profile"])
            .arg(&profile)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{to} accepted");
        assert!(err.contains(expected), "{to}: {err}");
        assert!(!out.exists(), "{to}: the folder was created");
    }
}

/// Issue 26 point 12: variables in the shell do not reach the experiment's replicas. A MongoDB
/// URI there used to switch every replica to MongoDB (every request failed); an I/O model
/// there would now make every replica refuse to start. The store is recorded in run.json.
#[test]
fn the_shell_environment_does_not_switch_the_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let o = Command::new(starvation_bin())
        .args(["experiment", "--runs", "1", "--profile"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/experiment-tiny.toml"
        ))
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .env(
            "STARVATION_MONGODB_URI",
            "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100",
        )
        .env("STARVATION_IO_MODEL", "bogus")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for role in ["baseline", "scaled"] {
        let run = out.join("runs/pair_1").join(role);
        assert_eq!(json(&run.join("run.json"))["store"], "sqlite", "{role}");
        let summary = json(&run.join("load_summary.json"));
        assert!(
            summary["completed"].as_u64().unwrap() > 0,
            "{role}: {summary}"
        );
        assert_eq!(
            summary["errors"]["unexpected_status"], 0,
            "{role}: the replicas answered errors: {summary}"
        );
    }
}
