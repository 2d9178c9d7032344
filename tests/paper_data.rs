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
        &common::paper_fixtures().join("paper-exports"),
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
    let root = common::paper_fixtures().join("paper-exports");
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
    let means = common::paper_fixtures().join("paper-means");
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
    let root = common::paper_fixtures().join("paper-exports");
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

/// `(ts, value)` of the one series in `file` whose `job` label is `job`.
fn series_of_job(file: &Path, job: &str) -> Vec<(f64, f64)> {
    let v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let s = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"]["job"] == job)
        .unwrap_or_else(|| panic!("{}: no {job} series", file.display()));
    s["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap(),
                p[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn raw(pair: &str) -> PathBuf {
    common::paper_fixtures().join("raw").join(pair)
}

/// pair_10: every run's busy-threads export holds the one replica twice, through the
/// Pushgateway and through the direct scrape. Counted once, the Pushgateway's sample winning
/// and the scrape filling the steps the Pushgateway lacks; never their sum.
#[test]
fn one_replica_in_two_series_counts_once() {
    let out = tempfile::tempdir().unwrap();
    let summary = starvation::results::aggregate::aggregate(&raw("pair_10"), out.path()).unwrap();
    assert_eq!(summary.complete_pairs, 1);
    let busy = summary
        .metrics
        .iter()
        .find(|m| m.metric == metrics::BUSY_WORKER_THREADS)
        .unwrap();
    assert_eq!(busy.runs_with_duplicate_series, 2);
    let run = raw("pair_10").join("2024-04-15_07-54-38");
    let file = run.join("Busy_Worker_Threads_export.json");
    let pushed = series_of_job(&file, "pushgateway");
    let scraped = series_of_job(&file, "webserver");
    let mut expected: std::collections::BTreeMap<i64, f64> =
        scraped.iter().map(|&(t, v)| (t as i64, v)).collect();
    expected.extend(pushed.iter().map(|&(t, v)| (t as i64, v)));
    let t0 = *expected.keys().next().unwrap() as f64;
    let expected: Vec<(f64, f64)> = expected
        .into_iter()
        .map(|(t, v)| (t as f64 - t0, v))
        .collect();
    let got = parse_csv_independently(
        &out.path()
            .join("baseline/Busy_Worker_Threads_export_mean_values.csv"),
    );
    assert_eq!(got, expected);
    // The doubled reading is gone: the peak is the larger of the two paths, not their sum.
    let peak_sum = pushed
        .iter()
        .filter_map(|&(t, v)| Some(v + scraped.iter().find(|s| s.0 == t)?.1))
        .fold(0.0, f64::max);
    let peak = busy.baseline.as_ref().unwrap().peak;
    assert!(peak < peak_sum, "peak {peak} vs summed {peak_sum}");
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.contains("Busy Worker Threads (2 runs)"),
        "summary.md does not say what it merged:\n{md}"
    );
}

/// pair_103: the p99 file of both runs holds per-status `histogram_sum(rate(…))` series. They
/// are left out of the p99 (and said so on stderr and in summary.md); the rest is aggregated.
#[test]
fn an_overwritten_p99_file_is_left_out_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("means");
    let o = std::process::Command::new(common::starvation_bin())
        .args(["aggregate", "--runs"])
        .arg(raw("pair_103"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    for run in ["2024-04-16_23-37-40", "2024-04-16_23-40-48"] {
        assert!(
            stderr.contains("left out: ") && stderr.contains(run) && stderr.contains("per status"),
            "stderr does not name {run}:\n{stderr}"
        );
    }
    assert!(!stdout.contains("p99 latency peak"), "{stdout}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("2 files left out"), "{md}");
    assert!(md.contains("2024-04-16_23-37-40"), "{md}");
    assert!(
        !out.join("baseline/Request_Duration_export_mean_values.csv")
            .exists()
    );
    assert!(
        out.join("baseline/System_Runtime_ThreadPool_Queue_Length_export_mean_values.csv")
            .exists()
    );
    // Both pairs together: the p99 comes from pair_10 alone, one run per role.
    let both = tmp.path().join("both");
    let summary = starvation::results::aggregate::aggregate(&raw(""), &both).unwrap();
    assert_eq!(summary.complete_pairs, 2);
    assert_eq!(summary.left_out.len(), 2);
    let p99 = summary
        .metrics
        .iter()
        .find(|m| m.metric == metrics::REQUEST_DURATION_P99)
        .unwrap();
    assert_eq!(p99.baseline.as_ref().unwrap().runs, 1);
    assert_eq!(p99.scaled.as_ref().unwrap().runs, 1);
    // No p99 above a minute: the per-status sums (up to 1700) are not in it.
    assert!(summary.p99_latency.unwrap().baseline_peak_s < 60.0);
}

/// `aggregate` replaces the files it wrote before: nothing of an older aggregation survives, a
/// file it did not write stays, and a failed run leaves the older output as it was.
#[test]
fn aggregate_replaces_its_own_output_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("means");
    starvation::results::aggregate::aggregate(&raw("pair_10"), &out).unwrap();
    let p99_csv = out.join("baseline/Request_Duration_export_mean_values.csv");
    assert!(p99_csv.exists());
    std::fs::write(out.join("precious.txt"), "not the tool's").unwrap();
    starvation::results::aggregate::aggregate(&raw("pair_103"), &out).unwrap();
    assert!(!p99_csv.exists(), "a CSV of the older aggregation survived");
    assert_eq!(
        std::fs::read_to_string(out.join("precious.txt")).unwrap(),
        "not the tool's"
    );

    // A run with a broken export: an error, and the previous output intact.
    let before = std::fs::read(out.join("summary.json")).unwrap();
    let broken = tmp.path().join("broken/pair_1/run_a");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("Busy_Worker_Threads_export.json"), "{not json").unwrap();
    let err = starvation::results::aggregate::aggregate(&tmp.path().join("broken"), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Busy_Worker_Threads_export.json"), "{err}");
    assert_eq!(std::fs::read(out.join("summary.json")).unwrap(), before);
    for dir in [tmp.path(), out.as_path()] {
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".starvation-output.json")
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "staging folders left behind in {}: {names:?}",
            dir.display()
        );
    }
}

fn aggregate_cli(runs: &Path, out: &Path) -> std::process::Output {
    let mut child = std::process::Command::new(common::starvation_bin())
        .args(["aggregate", "--runs"])
        .arg(runs)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang is a failure, not a stuck test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("aggregate did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                v.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

/// Issue 26 point 1: a folder holding a `summary.json` is not therefore the tool's, and
/// `--out` equal to or inside `--runs` is refused; in every case nothing is lost.
#[test]
fn aggregate_never_deletes_or_overwrites_what_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    copy_dir(&raw("pair_10"), &runs.join("pair_10"));
    let runs_before = tree(&runs);

    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("summary.json"), "{}").unwrap();
    std::fs::write(d.join("thesis.tex"), "x").unwrap();
    let o = aggregate_cli(&runs, &d);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("would overwrite summary.json that this command did not write"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(d.join("thesis.tex")).unwrap(), b"x");
    assert_eq!(std::fs::read(d.join("summary.json")).unwrap(), b"{}");
    assert_eq!(
        std::fs::read_dir(&d).unwrap().count(),
        2,
        "nothing added to d"
    );

    for out in [runs.clone(), runs.join("pair_10"), runs.join("means")] {
        let o = aggregate_cli(&runs, &out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "--out {} accepted", out.display());
        assert!(stderr.contains("pass a folder outside --runs"), "{stderr}");
    }
    assert_eq!(tree(&runs), runs_before, "the runs changed");
}

/// Issue 26 point 9: a FIFO among the runs is refused at once (it used to block forever), and an
/// export too large to be one is refused before it is read.
#[test]
fn aggregate_reads_only_regular_files_of_bounded_size() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    copy_dir(&raw("pair_10"), &runs.join("pair_10"));
    let run = std::fs::read_dir(runs.join("pair_10"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let export = run.join("Busy_Worker_Threads_export.json");
    std::fs::remove_file(&export).unwrap();
    let c = std::ffi::CString::new(export.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let o = aggregate_cli(&runs, &tmp.path().join("out"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("Busy_Worker_Threads_export.json: not a regular file (a FIFO)"),
        "{stderr}"
    );

    std::fs::remove_file(&export).unwrap();
    std::fs::File::create(&export)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let o = aggregate_cli(&runs, &tmp.path().join("out"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("2147483648 bytes, more than the 64 MiB"),
        "{stderr}"
    );
    assert!(
        !tmp.path().join("out").exists(),
        "nothing written on an error"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}
