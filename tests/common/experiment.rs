//! Running `starvation experiment` in tests, and the checks every backend's quick pair must
//! pass.

use super::{Proc, starvation_bin};
use starvation::results::runmeta::RunMeta;
use std::path::Path;
use std::process::{Command, Stdio};

/// `starvation experiment ARGS` with stdout piped, killed on drop.
pub fn experiment(args: &[&str]) -> Proc {
    let child = Command::new(starvation_bin())
        .arg("experiment")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting starvation experiment");
    Proc::new(child, "experiment")
}

/// Processes (other than this test) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
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

pub fn meta(out: &Path, pair: u32, role: &str) -> RunMeta {
    RunMeta::read(&out.join(format!("runs/pair_{pair}/{role}/run.json"))).unwrap()
}

/// A finished quick pair in `out`: a scale event in the scaled run and none in the baseline,
/// every export readable, scaled p99 below baseline p99, the report and figures present, and
/// the runs readable again by `aggregate` and `figures` (written below `scratch`).
pub fn assert_quick_pair(out: &Path, scratch: &Path) {
    // A scale event in the scaled run and none in the baseline.
    let baseline = meta(out, 1, "baseline");
    let scaled = meta(out, 1, "scaled");
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
    let agg = scratch.join("agg");
    let summary = starvation::results::aggregate::aggregate(&out.join("runs"), &agg).unwrap();
    assert_eq!(summary.complete_pairs, 1);
    assert_eq!(summary.scale_events.runs_with_event, 1);
    let data = starvation::figures::read_mean_data(&agg).unwrap();
    let figs = starvation::figures::draw_all(
        &data,
        &scratch.join("figs"),
        &[starvation::figures::Format::Png],
        &starvation::figures::recorded_marks(&agg).unwrap(),
    )
    .unwrap();
    assert!(!figs.is_empty());
}
