//! `aggregate` on synthetic runs whose means, medians and 5–95 % bands are computed here,
//! independently of the crate, from the values the test generated.

use serde_json::json;
use starvation::results::aggregate::aggregate;
use std::collections::BTreeMap;
use std::path::Path;

const STEP: f64 = 5.0;

/// A small deterministic generator (LCG), so the test data is fixed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
}

fn matrix(series: Vec<(serde_json::Value, Vec<(f64, f64)>)>) -> serde_json::Value {
    let result: Vec<_> = series
        .into_iter()
        .map(|(metric, pts)| {
            let values: Vec<_> = pts
                .iter()
                .map(|&(t, v)| json!([t, format!("{v}")]))
                .collect();
            json!({"metric": metric, "values": values})
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
}

fn write(dir: &Path, file: &str, v: &serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Expected per (role, metric): slot → values of every run.
type Expected = BTreeMap<(&'static str, &'static str), BTreeMap<i64, Vec<f64>>>;

struct Run {
    queue: Vec<(f64, f64)>, // per slot combined (sum of two replicas)
    cpu: Vec<(f64, f64)>,   // mean of two replicas
    p99: Vec<(f64, f64)>,
    failed: f64,
    first_scale_s: Option<f64>,
}

/// Write one run's exports into `dir`; return what aggregate must see.
fn make_run(dir: &Path, rng: &mut Lcg, t0: f64, slots: usize, scaled: bool, paper: bool) -> Run {
    let level = if scaled { 10.0 } else { 30.0 };
    let mut qa = Vec::new();
    let mut qb = Vec::new();
    let mut ca = Vec::new();
    let mut cb = Vec::new();
    let mut p99 = Vec::new();
    let mut run = Run {
        queue: vec![],
        cpu: vec![],
        p99: vec![],
        failed: 0.0,
        first_scale_s: None,
    };
    for i in 0..slots {
        // Jitter under half a step: every sample still lands in slot i.
        let t = t0
            + i as f64 * STEP
            + if i == 0 {
                0.0
            } else {
                (rng.next() - 0.5) * 2.0
            };
        let a = (level * rng.next()).round();
        let b = (level * rng.next()).round();
        let c1 = 100.0 * rng.next();
        let c2 = 100.0 * rng.next();
        let lat = level * rng.next() + i as f64;
        qa.push((t, a));
        qb.push((t, b));
        ca.push((t, c1));
        cb.push((t, c2));
        p99.push((t, lat));
        let off = i as f64 * STEP;
        run.queue.push((off, a + b));
        run.cpu.push((off, (c1 + c2) / 2.0));
        run.p99.push((off, lat));
    }
    let r1 = json!({"__name__": "system_runtime_threadpool_queue_length", "instance": "r1"});
    let r2 = json!({"__name__": "system_runtime_threadpool_queue_length", "instance": "r2"});
    write(
        dir,
        "System_Runtime_ThreadPool_Queue_Length_export.json",
        &matrix(vec![(r1.clone(), qa), (r2.clone(), qb)]),
    );
    write(
        dir,
        "System_Runtime_CPU_Usage_export.json",
        &matrix(vec![(r1, ca), (r2, cb)]),
    );
    write(
        dir,
        "Request_Duration_export.json",
        &matrix(vec![(json!({"testid": "x"}), p99)]),
    );
    let failed = if scaled {
        0.0
    } else {
        (10.0 * rng.next()).round() + 1.0
    };
    run.failed = failed;
    let failed_series = if failed > 0.0 {
        vec![(json!({"testid": "x"}), vec![(t0, 0.0), (t0 + STEP, failed)])]
    } else {
        vec![]
    };
    write(dir, "Failed_Requests_export.json", &matrix(failed_series));
    if scaled {
        let at = 15.0 + (20.0 * rng.next()).round();
        if paper {
            write(
                dir,
                "Scale_event_export.json",
                &matrix(vec![(
                    json!({"__name__": "alert_endpoint_call"}),
                    vec![(t0 + at, 1.0)],
                )]),
            );
        }
        run.first_scale_s = Some(at);
    }
    run
}

fn quantile(v: &[f64], q: f64) -> f64 {
    // numpy "linear": position q·(n−1) between order statistics.
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = q * (s.len() as f64 - 1.0);
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    if i + 1 < s.len() {
        s[i] * (1.0 - frac) + s[i + 1] * frac
    } else {
        s[i]
    }
}

fn read_rows(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn means_medians_and_bands_match_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let runs_dir = tmp.path().join("runs");
    let mut rng = Lcg(7);
    let mut expected: Expected = BTreeMap::new();
    let mut per_pair_p99_peaks: Vec<(f64, f64)> = Vec::new();
    let mut firsts = Vec::new();
    let mut failed_baseline = 0.0;
    for pair in 1..=7u32 {
        let paper = pair <= 4;
        let mut peaks = (0.0, 0.0);
        for scaled in [false, true] {
            // Different lengths, so the number of runs per slot varies at the end.
            let slots = 20 + (pair as usize % 3) + scaled as usize;
            let t0 = 1_700_000_000.0 + pair as f64 * 1000.0 + if scaled { 400.0 } else { 0.0 };
            let dir = if paper {
                // Folder order within pair_N: the baseline first.
                runs_dir.join(format!("pair_{pair}")).join(if scaled {
                    "2026-01-01_10-05-00"
                } else {
                    "2026-01-01_10-00-00"
                })
            } else {
                runs_dir
                    .join("ours")
                    .join(format!("run-{pair}-{}", if scaled { "s" } else { "b" }))
            };
            let run = make_run(&dir, &mut rng, t0, slots, scaled, paper);
            if !paper {
                let start = chrono::DateTime::from_timestamp(t0 as i64, 0).unwrap();
                let mut meta = json!({
                    "format": "starvation-run/1",
                    "role": if scaled { "scaled" } else { "baseline" },
                    "pair": pair,
                    "start": start.to_rfc3339(),
                });
                if let Some(at) = run.first_scale_s {
                    let at = start + chrono::Duration::seconds(at as i64);
                    let later = at + chrono::Duration::seconds(30);
                    meta["scale_events"] = json!([
                        {"at": later.to_rfc3339(), "from": 2, "to": 3},
                        {"at": at.to_rfc3339(), "from": 1, "to": 2}
                    ]);
                }
                std::fs::write(dir.join("run.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
            }
            let role = if scaled { "scaled" } else { "baseline" };
            for (metric, pts) in [("queue", &run.queue), ("cpu", &run.cpu), ("p99", &run.p99)] {
                let slots = expected.entry((role, metric)).or_default();
                for &(off, v) in pts {
                    slots.entry((off / STEP) as i64).or_default().push(v);
                }
            }
            let peak = run.p99.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            if scaled {
                peaks.1 = peak;
                firsts.push(run.first_scale_s.unwrap());
            } else {
                peaks.0 = peak;
                failed_baseline += run.failed;
            }
        }
        per_pair_p99_peaks.push(peaks);
    }

    let out = tmp.path().join("out");
    let summary = aggregate(&runs_dir, &out).unwrap();
    assert_eq!(
        (
            summary.baseline_runs,
            summary.scaled_runs,
            summary.complete_pairs
        ),
        (7, 7, 7)
    );
    assert!(summary.unplaced.is_empty(), "{:?}", summary.unplaced);

    let files = [
        ("queue", "System_Runtime_ThreadPool_Queue_Length"),
        ("cpu", "System_Runtime_CPU_Usage"),
        ("p99", "Request_Duration"),
    ];
    let mut mean_peaks = BTreeMap::new();
    for role in ["baseline", "scaled"] {
        for (key, stem) in files {
            let exp = &expected[&(role, key)];
            let means = read_rows(
                &out.join(role)
                    .join(format!("{stem}_export_mean_values.csv")),
            );
            let stats = read_rows(&out.join(role).join(format!("{stem}_export_stats.csv")));
            assert_eq!(means.len(), exp.len(), "{role} {stem}");
            assert_eq!(stats.len(), exp.len());
            let mut peak = f64::MIN;
            for ((slot, vals), (m, s)) in exp.iter().zip(means.iter().zip(&stats)) {
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                peak = peak.max(mean);
                assert_eq!(m[0], *slot as f64 * STEP);
                assert!(
                    close(m[1], mean),
                    "{role} {stem} slot {slot}: {} vs {mean}",
                    m[1]
                );
                assert_eq!(s[0], *slot as f64 * STEP);
                assert_eq!(s[1], vals.len() as f64, "n at slot {slot}");
                assert!(close(s[2], mean));
                assert!(
                    close(s[3], quantile(vals, 0.5)),
                    "median {role} {stem} slot {slot}"
                );
                assert!(
                    close(s[4], quantile(vals, 0.05)),
                    "p5 {role} {stem} slot {slot}"
                );
                assert!(
                    close(s[5], quantile(vals, 0.95)),
                    "p95 {role} {stem} slot {slot}"
                );
            }
            // The tail slots hold fewer runs than the head ones.
            assert!(stats.last().unwrap()[1] < stats[0][1]);
            mean_peaks.insert((role, key), peak);
        }
    }

    // p99 reduction from the peaks of the mean curves.
    let l = summary.p99_latency.as_ref().unwrap();
    let (bp, sp) = (
        mean_peaks[&("baseline", "p99")],
        mean_peaks[&("scaled", "p99")],
    );
    assert!(close(l.baseline_peak_s, bp) && close(l.scaled_peak_s, sp));
    assert!(close(l.peak_reduction_pct, (bp - sp) / bp * 100.0));

    // Median paired difference of the p99 peaks, with a bootstrap interval around it.
    let diffs: Vec<f64> = per_pair_p99_peaks.iter().map(|(b, s)| s - b).collect();
    let m = summary
        .metrics
        .iter()
        .find(|m| m.metric == "Request Duration")
        .unwrap();
    let d = m.paired_peak_diff.as_ref().unwrap();
    assert_eq!(d.pairs, 7);
    assert!(close(d.median, quantile(&diffs, 0.5)));
    assert!(d.ci95_low <= d.median && d.median <= d.ci95_high, "{d:?}");
    // Deterministic: the same input gives the same summary.
    let again = aggregate(&runs_dir, &tmp.path().join("out2")).unwrap();
    assert_eq!(again.metrics, summary.metrics);

    // Scale events: paper layout from Scale_event_export.json, ours from run.json (earliest).
    let min = firsts.iter().cloned().fold(f64::MAX, f64::min);
    let max = firsts.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(summary.scale_window_s, Some((min, max)));
    assert_eq!(summary.scale_events.runs_with_event, 7);
    assert_eq!(summary.requests_baseline.failed_sum, Some(failed_baseline));
    assert_eq!(summary.requests_scaled.failed_sum, Some(0.0));

    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| Request Duration |"), "{md}");
    let js: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(js["complete_pairs"], 7);
}

#[test]
fn bad_inputs_name_the_file_or_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = aggregate(&tmp.path().join("nope"), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--runs") && err.contains("nope"), "{err}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = aggregate(&empty, &out).unwrap_err().to_string();
    assert!(err.contains("no runs found"), "{err}");

    let broken = tmp.path().join("broken/pair_1/a");
    write(
        &broken,
        "Busy_Worker_Threads_export.json",
        &json!({"status": "success"}),
    );
    std::fs::write(broken.join("Busy_Worker_Threads_export.json"), b"{not json").unwrap();
    let err = aggregate(&tmp.path().join("broken"), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Busy_Worker_Threads_export.json"), "{err}");

    let badmeta = tmp.path().join("badmeta/run");
    std::fs::create_dir_all(&badmeta).unwrap();
    std::fs::write(
        badmeta.join("run.json"),
        br#"{"format":"starvation-run/1","role":"both","pair":1,"start":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let err = aggregate(&tmp.path().join("badmeta"), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("run.json") && err.contains("both"), "{err}");
}

#[test]
fn a_pair_directory_with_three_runs_is_reported_not_guessed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Lcg(1);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        make_run(
            &tmp.path().join("runs/pair_1").join(name),
            &mut rng,
            1e9 + i as f64 * 500.0,
            5,
            false,
            true,
        );
    }
    make_run(
        &tmp.path().join("runs/pair_2/a"),
        &mut rng,
        2e9,
        5,
        false,
        true,
    );
    make_run(
        &tmp.path().join("runs/pair_2/b"),
        &mut rng,
        2e9 + 400.0,
        5,
        true,
        true,
    );
    let s = aggregate(&tmp.path().join("runs"), &tmp.path().join("out")).unwrap();
    assert_eq!(s.complete_pairs, 1);
    assert_eq!(s.unplaced.len(), 3);
    assert!(
        s.unplaced[0].reason.contains("exactly two"),
        "{:?}",
        s.unplaced
    );
}

/// NaN and ±Inf samples (Prometheus writes them as `"NaN"`, `"+Inf"`, `"-Inf"`) are skipped and
/// counted: no mean, CSV or summary holds `inf` or `nan`.
#[test]
fn nonfinite_samples_are_skipped_and_counted_never_averaged() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let p99 = |vals: &[&str]| {
        let values: Vec<_> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| json!([1000.0 + 5.0 * i as f64, v]))
            .collect();
        json!({"status": "success", "data": {"resultType": "matrix",
            "result": [{"metric": {"testid": "t"}, "values": values}]}})
    };
    write(
        &runs.join("pair_1/a_base"),
        "Request_Duration_export.json",
        &p99(&["1.5", "NaN", "+Inf", "2.5"]),
    );
    write(
        &runs.join("pair_1/b_scaled"),
        "Request_Duration_export.json",
        &p99(&["0.5", "-Inf", "1.0", "NaN"]),
    );
    let out = tmp.path().join("out");
    let s = aggregate(&runs, &out).unwrap();
    let m = s
        .metrics
        .iter()
        .find(|m| m.metric == "Request Duration")
        .unwrap();
    assert_eq!(m.nonfinite_skipped, 4);
    assert_eq!(m.baseline.as_ref().unwrap().peak, 2.5);
    assert_eq!(m.scaled.as_ref().unwrap().peak, 1.0);
    let base =
        std::fs::read_to_string(out.join("baseline/Request_Duration_export_mean_values.csv"))
            .unwrap();
    assert_eq!(base, "timestamp,value\n0.0,1.5\n15.0,2.5\n");
    for f in [
        "scaled/Request_Duration_export_mean_values.csv",
        "scaled/Request_Duration_export_stats.csv",
    ] {
        let text = std::fs::read_to_string(out.join(f)).unwrap().to_lowercase();
        assert!(!text.contains("inf"), "{f}: {text}");
        assert!(!text.contains("nan"), "{f}: {text}");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("NaN and ±Inf samples are skipped: 4 skipped"),
        "{md}"
    );
}
