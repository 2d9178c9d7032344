//! `starvation experiment --backend swarm` on this machine's real one-node Swarm: one short pair,
//! each run on its own freshly deployed stack; the scaled run scales and beats the baseline, every
//! artifact is there and readable by `aggregate` and `figures`, and afterwards the Swarm holds
//! exactly what it held before (no service, container, network, config, volume, secret or node
//! label of the experiment left).

mod common;

use common::starvation_bin;
use starvation::results::metrics::{Kind, METRICS};
use starvation::results::runmeta::RunMeta;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "experiment_swarm";

/// A short spike (50 s of load): enough to starve one replica, scale it once or twice and let
/// the new replicas take their share before the load ends.
const PROFILE: &str = r#"
name = "swarm-test"
stages = "20:10s,35:25s,35:15s"
block_ms = 2000
min_threads = 1
initial_replicas = 1
max_replicas = 3
cooldown_s = 10
timeout_s = 30
graceful_stop_s = 5
pre_allocated_vus = 50
max_vus = 1000
serve_args = ["--starvation-delay", "2s"]
"#;

fn starvation(args: &[&str]) {
    let out = Command::new(starvation_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "starvation {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs a Docker Engine in a one-node Swarm: docker swarm init --advertise-addr 127.0.0.1 (.ci/run does)"]
fn a_pair_on_a_real_swarm() {
    let node = common::swarm_node(TEST);
    let tag = format!("exp-{}", std::process::id());
    let _images = common::RemoveImages(common::stack_images(&tag));
    common::build_stack_images(&tag);
    let before = common::swarm_snapshot(&node);

    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("swarm-test.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let out = tmp.path().join("exp");
    let started = Instant::now();
    let child = Command::new(starvation_bin())
        .args(["experiment", "--backend", "swarm", "--runs", "1"])
        .args([
            "--swarm-tag",
            &tag,
            "--profile",
            path(&profile),
            "--out",
            path(&out),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = common::Proc::new(child, "experiment");
    let status = p
        .wait_for(Duration::from_secs(600))
        .expect("a swarm pair finishes within 10 minutes");
    eprintln!("swarm pair took {:.0} s", started.elapsed().as_secs_f64());
    let after = common::swarm_snapshot(&node);
    assert!(status.success(), "experiment failed: {status}");
    assert_eq!(before, after, "the experiment left something on the Swarm");

    // A scale event in the scaled run, none in the baseline.
    let meta =
        |role: &str| RunMeta::read(&out.join(format!("runs/pair_1/{role}/run.json"))).unwrap();
    assert!(meta("baseline").scale_events.is_empty());
    let scaled = meta("scaled");
    assert!(!scaled.scale_events.is_empty(), "{scaled:?}");
    let run = |role: &str, f: &str| out.join(format!("runs/pair_1/{role}/{f}"));
    assert!(run("scaled", "Scale_event_export.json").exists());
    assert!(!run("baseline", "Scale_event_export.json").exists());

    // Every export present and readable, and not empty, in both runs.
    for role in ["baseline", "scaled"] {
        for spec in METRICS.iter().filter(|s| s.kind != Kind::ScaleEvent) {
            let f = run(role, &spec.json_file());
            let r = starvation::results::promjson::read_export(&f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            // No failed request means no `expected_response="false"` series (as with k6).
            if spec.readable != starvation::results::metrics::FAILED_REQUESTS {
                assert!(!r.is_empty(), "{} is empty", f.display());
            }
        }
        // The same files, with the same schema, as the local backend's.
        common::experiment::assert_run_files(
            &out.join(format!("runs/pair_1/{role}")),
            role == "scaled",
        );
    }
    let alerts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run("scaled", "alerts.json")).unwrap()).unwrap();
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "firing"),
        "{alerts}"
    );

    // The report: scaling helped.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let (b, s) = (&report["baseline"], &report["scaled"]);
    eprintln!(
        "baseline: p99 peak {:.2} s, queue peak {}; scaled: p99 peak {:.2} s, queue peak {}, \
         first scale {} s, replicas {}",
        b["p99_peak_s"].as_f64().unwrap(),
        b["queue_peak"],
        s["p99_peak_s"].as_f64().unwrap(),
        s["queue_peak"],
        s["first_scale_s"],
        s["per_run"][0]["replicas_over_time"]
    );
    assert!(
        s["p99_peak_s"].as_f64() < b["p99_peak_s"].as_f64(),
        "scaled p99 peak is not below the baseline's: {report}"
    );
    assert_eq!(report["backend"], "swarm");
    assert!(out.join("report.md").exists());

    // The run folders read like exported runs.
    let agg = tmp.path().join("agg");
    let figs = tmp.path().join("figs");
    starvation(&[
        "aggregate",
        "--runs",
        path(&out.join("runs")),
        "--out",
        path(&agg),
    ]);
    starvation(&["figures", "--data", path(&agg), "--out", path(&figs)]);
    assert!(figs.join("Stacked_Figures.png").exists());
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
