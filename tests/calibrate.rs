//! `starvation calibrate`: the fit on the paper's curve and its behaviour on bad input.

mod common;

use clap::Parser;
use common::starvation_bin;
use starvation::calibrate::{Opts, fit, target_curve};
use starvation::experiment::Profile;
use std::process::Command;

#[test]
fn the_shipped_busy_curve_is_fitted_and_the_paper_profile_runs_dotnets_own_delay() {
    // A 50 ms grid: the plateau between gate ticks is 250 ms wide, and debug builds are slow.
    let opts = Opts::try_parse_from(["calibrate", "--delay-step", "50ms"]).unwrap();
    let (paper, target) = target_curve(None).unwrap();
    assert!(target.contains("shipped"), "{target}");
    let f = fit(&opts, &Profile::paper(), &paper, target).unwrap();
    // No fitted constant any more: the paper profile's pool runs .NET 8's 500 ms.
    assert_eq!(f.profile_delay_s, 0.5);
    assert!(f.profile_nrmse.is_finite() && f.nrmse.is_finite());
    // The fitted value lies in its tied plateau, and no delay on the grid beats it.
    assert!(f.best_from_s <= f.starvation_delay_s && f.starvation_delay_s <= f.best_to_s);
    let best = f.loss.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
    assert!(f.nrmse <= best * 1.02, "{} vs grid best {best}", f.nrmse);
    assert!(f.nrmse <= f.profile_nrmse + 1e-9);
}

/// A `compare --out` folder as `calibrate --reference` reads it: the .NET side's busy curve of
/// the quick profile, here the simulator's own curve at .NET's 500 ms, so the fit must find a
/// delay whose curve matches it.
#[test]
fn calibrates_on_a_dotnet_reference_folder() {
    let quick = Profile::quick();
    let (mut pool, mut scenario) =
        starvation::calibrate::profile_model(&quick, std::time::Duration::from_secs(60)).unwrap();
    scenario.step = std::time::Duration::from_secs(1);
    pool.seed = 0; // the fit's first repeat
    let trace = starvation::calibrate::sim::simulate(&pool, &scenario);
    let tmp = tempfile::tempdir().unwrap();
    let summary = serde_json::json!({
        "scenario": format!("profile quick: stages {}", quick.stages),
        "runtime": "8.0.4", "processors": 1, "block_ms": 2000,
        "model_args": [], "runs": [], "summary": {}
    });
    std::fs::write(tmp.path().join("summary.json"), summary.to_string()).unwrap();
    let mut csv = String::from("run,side,t_s,busy,threads,queue,p50_s,p99_s,work_items\n");
    for (t, busy) in &trace.busy {
        csv.push_str(&format!(
            "1,dotnet,{t},{busy},{busy},0,,,0\n1,model,{t},0,0,0,,,0\n"
        ));
    }
    std::fs::write(tmp.path().join("curves.csv"), csv).unwrap();
    let json = tmp.path().join("fit.json");
    let out = Command::new(starvation_bin())
        .args(["calibrate", "--profile", "quick", "--reference"])
        .arg(tmp.path())
        .args([
            "--delay-max",
            "2s",
            "--delay-step",
            "100ms",
            "--repeats",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(
        f["target"]
            .as_str()
            .unwrap()
            .contains(".NET 8.0.4 runs (1 of them)")
    );
    assert!(f["nrmse"].as_f64().unwrap() < 1e-9, "{}", f["nrmse"]);
    let (from, to) = (
        f["best_from_s"].as_f64().unwrap(),
        f["best_to_s"].as_f64().unwrap(),
    );
    assert!(from <= 0.5 && 0.5 <= to, "500 ms fits: {from}–{to}");
}

#[test]
fn calibrates_on_the_papers_raw_exports_and_writes_the_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("fit.json");
    let runs = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/paper/raw");
    let out = Command::new(starvation_bin())
        .args(["calibrate", "--runs", runs, "--delay-min", "500ms"])
        .args([
            "--delay-max",
            "4s",
            "--delay-step",
            "100ms",
            "--repeats",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("fitted --starvation-delay"), "{stdout}");
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let d = f["starvation_delay_s"].as_f64().unwrap();
    assert!((0.5..=4.0).contains(&d), "{d}");
    assert_eq!(f["loss"].as_array().unwrap().len(), 36);
    assert_eq!(f["target"].as_str().unwrap(), runs);
    // The fitted curve is compared on the paper's offsets and has a real peak.
    assert!(f["paper_peak"].as_f64().unwrap() > 10.0);
}

#[test]
fn bad_input_says_what_is_wrong_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("fit.json");
    for (args, says) in [
        (vec!["--runs", "/nonexistent/exports"], "not a folder"),
        (
            vec!["--delay-min", "3s", "--delay-max", "1s"],
            "--delay-min",
        ),
        (vec!["--profile", "nonsense"], "nonsense"),
        (
            vec!["--reference", "/nonexistent/compare"],
            "cannot read summary.json",
        ),
    ] {
        let out = Command::new(starvation_bin())
            .arg("calibrate")
            .args(&args)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!json.exists(), "{args:?} wrote {}", json.display());
    }
}
