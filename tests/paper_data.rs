//! The paper's own files are read without loss: every export JSON in the paper's
//! `pair_N/<run>/` layout and every 100-run mean CSV, compared with an independent parse.

mod common;

use serde_json::Value;
use starvation::figures::read_mean_data;
use starvation::results::metrics;
use starvation::results::promjson::read_export;
use starvation::results::runmeta::{Role, discover};
use std::path::{Path, PathBuf};

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_paper_export_reads_without_loss() {
    let exports = files_with_suffix(
        &common::reference_dir().join("paper-exports"),
        "_export.json",
    );
    assert_eq!(exports.len(), 21, "10 baseline + 11 scaled export files");
    let mut samples = 0;
    for path in &exports {
        let ours = read_export(path).unwrap_or_else(|e| panic!("{e}"));
        let theirs: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(theirs["status"], "success");
        let result = theirs["data"]["result"].as_array().unwrap();
        let series = ours.series().unwrap();
        assert_eq!(series.len(), result.len(), "{}", path.display());
        for (s, r) in series.iter().zip(result) {
            let labels = r["metric"].as_object().unwrap();
            assert_eq!(s.metric.len(), labels.len());
            for (k, v) in labels {
                assert_eq!(s.metric[k], v.as_str().unwrap(), "{}", path.display());
            }
            let values = r["values"].as_array().unwrap();
            assert_eq!(s.values.len(), values.len(), "{}", path.display());
            for (p, v) in s.values.iter().zip(values) {
                assert_eq!(p.ts, v[0].as_f64().unwrap());
                let raw = v[1].as_str().unwrap();
                assert_eq!(p.raw, raw);
                assert_eq!(p.value.to_bits(), raw.parse::<f64>().unwrap().to_bits());
                samples += 1;
            }
        }
        // Re-serialising gives back the same document.
        let again: Value = serde_json::to_value(&ours).unwrap();
        assert_eq!(again, theirs, "{}", path.display());
    }
    assert!(samples > 500, "read {samples} samples");
}

#[test]
fn paper_pair_is_paired_by_scale_event() {
    let root = common::reference_dir().join("paper-exports");
    let pairs = discover(&root).unwrap();
    assert!(pairs.unplaced.is_empty(), "{:?}", pairs.unplaced);
    let complete = pairs.complete();
    assert_eq!(complete.len(), 1);
    let (b, s) = complete[0];
    assert_eq!(b.role, Role::Baseline);
    assert!(
        b.path.ends_with("pair_1/2024-03-25_16-14-58"),
        "{}",
        b.path.display()
    );
    assert!(
        s.path.ends_with("pair_1/2024-03-25_16-18-13"),
        "{}",
        s.path.display()
    );
    assert_eq!(s.pair, 1);
}

fn parse_csv_independently(path: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value"), "{}", path.display());
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_paper_mean_reads_without_loss() {
    let means = common::reference_dir().join("paper-means");
    let data = read_mean_data(&means).unwrap();
    let mut checked = 0;
    for (role, dir) in [(Role::Baseline, "initial"), (Role::Scaled, "scaled")] {
        let files = files_with_suffix(&means.join(dir), "_export_mean_values.csv");
        assert_eq!(files.len(), 6);
        for f in files {
            let name = f.file_name().unwrap().to_str().unwrap();
            let stem = name.strip_suffix("_export_mean_values.csv").unwrap();
            let spec = metrics::find(stem).unwrap_or_else(|| panic!("unknown metric file {name}"));
            let ours = data.get(role, spec.readable).unwrap();
            let theirs = parse_csv_independently(&f);
            assert_eq!(ours.len(), theirs.len(), "{}", f.display());
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a.0.to_bits(), b.0.to_bits());
                assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
    // The paper's node CPU file name maps to the export's name.
    assert!(data.get(Role::Baseline, metrics::NODE_CPU).is_some());
}

#[test]
fn aggregating_the_paper_pair_reproduces_its_samples() {
    let root = common::reference_dir().join("paper-exports");
    let out = tempfile::tempdir().unwrap();
    let summary = starvation::results::aggregate::aggregate(&root, out.path()).unwrap();
    assert_eq!(
        (
            summary.baseline_runs,
            summary.scaled_runs,
            summary.complete_pairs
        ),
        (1, 1, 1)
    );
    // One run per role: the mean curve is the run's own series, offset from its first sample.
    let json: Value = serde_json::from_slice(
        &std::fs::read(root.join("pair_1/2024-03-25_16-18-13/Busy_Worker_Threads_export.json"))
            .unwrap(),
    )
    .unwrap();
    let values = json["data"]["result"][0]["values"].as_array().unwrap();
    let t0 = values[0][0].as_f64().unwrap();
    let expected: Vec<(f64, f64)> = values
        .iter()
        .map(|v| {
            (
                v[0].as_f64().unwrap() - t0,
                v[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let got = parse_csv_independently(
        &out.path()
            .join("scaled/Busy_Worker_Threads_export_mean_values.csv"),
    );
    assert_eq!(got, expected);
    // Scale event 1711383367, first queue-length sample 1711383348.
    assert_eq!(summary.scale_events.per_run, vec![(1, 19.0)]);
    assert_eq!(summary.scale_window_s, Some((19.0, 19.0)));
    // The baseline failed 49 requests, the scaled run none (its export is empty).
    assert_eq!(summary.requests_baseline.failed_sum, Some(49.0));
    assert_eq!(summary.requests_scaled.failed_sum, Some(0.0));
    let failed = summary
        .metrics
        .iter()
        .find(|m| m.metric == "Failed Requests")
        .unwrap();
    assert_eq!(failed.scaled.as_ref().map(|c| c.peak), Some(0.0));
    assert_eq!(
        failed.paired_peak_diff.as_ref().map(|d| d.median),
        Some(-49.0)
    );
    let l = summary.p99_latency.unwrap();
    assert!(l.baseline_peak_s > l.scaled_peak_s);
    assert!(out.path().join("summary.md").exists());
}
