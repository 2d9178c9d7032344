//! `starvation calibrate`: the fit on the paper's curve and its behaviour on bad input.

mod common;

use clap::Parser;
use common::starvation_bin;
use starvation::calibrate::{Opts, fit, target_curve};
use starvation::experiment::Profile;
use std::process::Command;

#[test]
fn the_paper_profile_delay_is_the_fit_of_the_shipped_busy_curve() {
    // A 50 ms grid: the plateau between gate ticks is 250 ms wide, and debug builds are slow.
    let opts = Opts::try_parse_from(["calibrate", "--delay-step", "50ms"]).unwrap();
    let (paper, target) = target_curve(None).unwrap();
    assert!(target.contains("shipped"), "{target}");
    let f = fit(&opts, &Profile::paper(), &paper, target).unwrap();
    // The profile says its delay came from this fit: it must lie in the tied plateau.
    assert!(
        f.best_from_s <= f.profile_delay_s && f.profile_delay_s <= f.best_to_s,
        "profile delay {} s outside the fitted {}–{} s",
        f.profile_delay_s,
        f.best_from_s,
        f.best_to_s
    );
    assert!(f.nrmse < 0.1, "fit error over the rise {}", f.nrmse);
    // The rise is fitted, the fall is not: the whole curve's error is larger.
    assert!(f.nrmse_whole > f.nrmse);
    // No delay on the grid beats the fitted one by more than the tie.
    let best = f.loss.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
    assert!(f.nrmse <= best * 1.02, "{} vs grid best {best}", f.nrmse);
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
