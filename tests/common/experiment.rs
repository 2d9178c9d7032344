//! Running `starvation experiment` in tests, and the checks every backend's quick pair must
//! pass.

use super::{Proc, starvation_bin};
use starvation::results::runmeta::RunMeta;
use std::path::Path;
use std::process::{Command, Stdio};

/// `starvation experiment ARGS` with stdout piped, killed on drop.
pub fn experiment(args: &[&str]) -> Proc {
    experiment_with_env(args, &[])
}

/// `starvation experiment ARGS` with `env` set (after `RUST_LOG=warn`, so it may override it).
pub fn experiment_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let child = Command::new(starvation_bin())
        .arg("experiment")
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
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
        // The same files, with the same schema, from every backend and monitor.
        assert_run_files(&out.join(format!("runs/pair_1/{role}")), role == "scaled");
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
    // Fidelity: the quick load is not the paper's, so the report compares nothing and says why.
    let fidelity = &report["fidelity"];
    assert_eq!(fidelity["comparable"], false, "{fidelity}");
    let reason = fidelity["reason"].as_str().unwrap();
    assert!(reason.contains("stages `15:10s,"), "{reason}");
    assert_eq!(fidelity["differences"][0]["what"], "stages", "{fidelity}");
    assert!(fidelity.get("rows").is_none(), "{fidelity}");
    assert!(report.get("goals").is_none(), "{}", report["goals"]);
    // What the report would compare is still computed right from the files: every metric of
    // both runs against the paper's curves, and the six goals.
    let f = starvation::experiment::report::fidelity(&out.join("aggregate")).unwrap();
    assert_eq!(f.rows.len(), 10, "{f:?}");
    for row in &f.rows {
        assert!(row.nrmse.is_finite() && row.nrmse >= 0.0, "{row:?}");
        assert!(row.paper_peak > 0.0, "{row:?}");
    }
    let ratio = f.p99_peak_ratio.unwrap();
    assert!((ratio - s / b).abs() < 0.2, "{ratio} vs {}", s / b);
    // With one pair a bootstrap interval is the point itself.
    let pairs = starvation::results::runmeta::discover(&out.join("runs")).unwrap();
    let goals = starvation::experiment::report::goals(&pairs).unwrap();
    assert_eq!(goals.len(), 6, "{goals:?}");
    for g in &goals {
        let ours = g.ours.unwrap_or_else(|| panic!("{g:?}"));
        let (lo, hi) = g.ci95.unwrap_or_else(|| panic!("{g:?}"));
        assert!(
            (lo - ours).abs() < 1e-9 && (hi - ours).abs() < 1e-9,
            "{g:?}"
        );
        assert_eq!(
            g.met,
            Some(g.target_low <= ours && ours <= g.target_high),
            "{g:?}"
        );
    }
    let goal_ratio = goals[5].ours.unwrap();
    assert!((goal_ratio - ratio).abs() < 0.01, "{goal_ratio} vs {ratio}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "| p99 request duration, peak |",
        "≈ 64 s",
        "≈ 48",
        "Replicas over time",
        "## Fidelity\n\nNot comparable with the paper: this profile's load differs from the paper's (stages",
        "`starvation compare --scenario profile:quick`",
        "### Goals\n\nNone assessed",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    for table in ["| metric | run | peak |", "| goal | ours |"] {
        assert!(!md.contains(table), "report.md has {table:?}:\n{md}");
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

/// The files of a finished run folder, whatever its backend and monitor: every export as
/// `query_range` JSON and CSV (`Scale event` only where the scaler acted), `Replicas`,
/// `alerts.json`, `load_summary.json` and `run.json`, each with the one schema.
pub fn expected_run_files(scaled_acted: bool) -> Vec<String> {
    use starvation::results::metrics::{Kind, METRICS};
    let mut files: Vec<String> = METRICS
        .iter()
        .filter(|s| s.kind != Kind::ScaleEvent || scaled_acted)
        .flat_map(|s| [s.json_file(), s.csv_file()])
        .collect();
    files.extend(
        [
            "Replicas_export.json",
            "Replicas_export.csv",
            "alerts.json",
            "load_summary.json",
            "run.json",
        ]
        .map(String::from),
    );
    files.sort();
    files
}

/// Assert that `run` holds exactly [`expected_run_files`] (besides the folders `monitor/` and
/// `stack/` where a monitor or a stack keeps its configs), each readable as its one type, the
/// exports labelled alike.
pub fn assert_run_files(run: &Path, scaled_acted: bool) {
    use starvation::results::metrics::{self as m, Kind, METRICS};
    let mut files = Vec::new();
    for e in std::fs::read_dir(run).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            assert!(
                ["monitor", "stack"].contains(&name.as_str()),
                "{}: unexpected folder {name}",
                run.display()
            );
        } else {
            files.push(name);
        }
    }
    files.sort();
    assert_eq!(files, expected_run_files(scaled_acted), "{}", run.display());

    let alerts: starvation::experiment::record::AlertsFile =
        serde_json::from_slice(&std::fs::read(run.join("alerts.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}/alerts.json: {e}", run.display()));
    assert_eq!(alerts.scaler_events.is_empty(), !scaled_acted);
    let _: starvation::load::Summary =
        serde_json::from_slice(&std::fs::read(run.join("load_summary.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}/load_summary.json: {e}", run.display()));
    RunMeta::read(&run.join("run.json")).unwrap();

    // The label each export's series carry, whoever measured them.
    let label_of = |readable: &str| -> &str {
        match METRICS.iter().find(|s| s.readable == readable) {
            Some(s) if s.readable == m::NODE_CPU => "instance",
            Some(s) if s.kind == Kind::Gauge && !s.query.contains('(') => "job",
            Some(s) if s.kind == Kind::ScaleEvent => "service",
            Some(_) => "testid",
            None => "service", // Replicas
        }
    };
    for f in files.iter().filter(|f| f.ends_with("_export.json")) {
        let path = run.join(f);
        let r = starvation::results::promjson::read_export(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let readable = f.trim_end_matches("_export.json").replace('_', " ");
        let label = label_of(&readable);
        for s in r.series().unwrap_or(&[]) {
            assert!(
                s.metric.contains_key(label),
                "{}: a series without `{label}`: {:?}",
                path.display(),
                s.metric
            );
        }
        let csv = std::fs::read_to_string(path.with_extension("csv")).unwrap();
        assert!(
            csv.starts_with("timestamp,offset_s,value\n"),
            "{}",
            path.display()
        );
    }
}

/// Every export of `run` present, readable and non-empty (but failed requests, empty when
/// none failed), and the continuously measured ones (counters, scraped gauges, replicas) covering the
/// load, all series together, without a gap longer than `max_gap_s`. The request durations
/// (p99, average) have no sample while no request completes in their 15 s window, as in
/// Prometheus: their worst gap is printed, not asserted.
pub fn assert_exports_cover_load(run: &Path, meta: &RunMeta, max_gap_s: f64) {
    let (start, end) = (
        meta.start.timestamp() as f64,
        meta.end.unwrap().timestamp() as f64,
    );
    use starvation::results::metrics::{FAILED_REQUESTS, Kind, METRICS};
    use starvation::results::promjson::read_export;
    let mut files: Vec<(String, bool)> = METRICS
        .iter()
        .filter(|s| s.kind != Kind::ScaleEvent && s.readable != FAILED_REQUESTS)
        .map(|s| (s.json_file(), !s.query.contains("histogram")))
        .collect();
    files.push(("Replicas_export.json".into(), true));
    let mut worst_gaps = Vec::new();
    for (f, continuous) in files {
        let path = run.join(&f);
        let r = read_export(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!r.is_empty(), "{} is empty", path.display());
        let mut ts: Vec<f64> = r
            .series()
            .unwrap()
            .iter()
            .flat_map(|s| s.values.iter().map(|v| v.ts))
            .filter(|t| (start..=end).contains(t))
            .collect();
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        assert!(
            !ts.is_empty(),
            "{}: no sample during the load",
            path.display()
        );
        let gaps = [ts[0] - start, end - ts[ts.len() - 1]]
            .into_iter()
            .chain(ts.windows(2).map(|w| w[1] - w[0]));
        let worst = gaps.fold(0.0, f64::max);
        worst_gaps.push(format!(
            "{} {worst:.0} s",
            f.trim_end_matches("_export.json")
        ));
        assert!(
            !continuous || worst <= max_gap_s,
            "{}: a gap of {worst} s in the load's {} s",
            path.display(),
            end - start
        );
    }
    eprintln!(
        "{}: worst gap per export over the load's {:.0} s: {}",
        run.file_name().unwrap().to_string_lossy(),
        end - start,
        worst_gaps.join(", ")
    );
}
