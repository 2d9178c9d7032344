//! After the runs: aggregate, figures, and `report.md` + `report.json`.

use serde::Serialize;
use std::path::Path;

use super::State;
use crate::results::aggregate::load_run;
use crate::results::metrics as m;
use crate::results::runmeta::{Role, discover};

/// The paper's headline numbers (100 paired runs).
pub const PAPER_BASELINE_P99_S: f64 = 64.0;
pub const PAPER_BASELINE_QUEUE_PEAK: f64 = 48.0;
pub const PAPER_SCALED_P99_S: f64 = 2.6;
pub const PAPER_SCALED_QUEUE_PEAK: f64 = 25.0;

/// One run's numbers.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunNumbers {
    pub pair: u32,
    pub p99_peak_s: f64,
    pub p99_end_s: f64,
    pub queue_peak: f64,
    pub threads_peak: f64,
    pub busy_peak: f64,
    pub total_requests: f64,
    pub failed_requests: f64,
    pub dropped_iterations: f64,
    pub first_scale_s: Option<f64>,
    pub scale_events: usize,
    pub replicas_max: f64,
    /// (seconds from start, replicas) at every change, from the start.
    pub replicas_over_time: Vec<(f64, f64)>,
}

/// Means over the runs of one role.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RoleNumbers {
    pub runs: usize,
    pub p99_peak_s: f64,
    pub p99_end_s: f64,
    pub queue_peak: f64,
    pub threads_peak: f64,
    pub busy_peak: f64,
    pub total_requests: f64,
    pub failed_requests: f64,
    pub dropped_iterations: f64,
    pub runs_with_scale_event: usize,
    pub first_scale_s: Option<f64>,
    pub replicas_max: f64,
    pub per_run: Vec<RunNumbers>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: String,
    pub generated: chrono::DateTime<chrono::Utc>,
    pub starvation_version: String,
    pub backend: String,
    pub monitor: String,
    pub state: State,
    pub baseline: RoleNumbers,
    pub scaled: RoleNumbers,
    pub paper: serde_json::Value,
    /// Scale events in every scaled run and none in any baseline run, and the scaled p99 peak
    /// below the baseline's.
    pub verdict_scaling_helped: bool,
    pub machine: Machine,
    pub figures: Vec<String>,
}

fn series(points: Option<&Vec<(f64, f64)>>) -> &[(f64, f64)] {
    points.map(Vec::as_slice).unwrap_or(&[])
}

fn peak(p: &[(f64, f64)]) -> f64 {
    p.iter().map(|x| x.1).fold(0.0, f64::max)
}

fn last(p: &[(f64, f64)]) -> f64 {
    p.last().map(|x| x.1).unwrap_or(0.0)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn read_replicas(dir: &Path) -> Vec<(f64, f64)> {
    let p = dir.join(format!("{}_export.json", super::record::REPLICAS));
    let Ok(r) = crate::results::promjson::read_export(&p) else {
        return Vec::new();
    };
    let Ok(s) = r.series() else {
        return Vec::new();
    };
    s.first()
        .map(|s| s.values.iter().map(|v| (v.ts, v.value)).collect())
        .unwrap_or_default()
}

fn role_numbers(runs_dir: &Path, role: Role) -> anyhow::Result<RoleNumbers> {
    let pairs = discover(runs_dir)?;
    let mut per_run = Vec::new();
    for run in pairs.runs(role) {
        let d = load_run(run, 1.0)?;
        let p99 = series(d.aligned.get(m::REQUEST_DURATION_P99));
        let start = run
            .meta
            .as_ref()
            .map(|m| m.start.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0);
        let mut over_time: Vec<(f64, f64)> = Vec::new();
        for (t, v) in read_replicas(&run.path) {
            if over_time.last().is_none_or(|l| l.1 != v) {
                over_time.push(((t - start).max(0.0).round(), v));
            }
        }
        per_run.push(RunNumbers {
            pair: run.pair,
            p99_peak_s: peak(p99),
            p99_end_s: p99
                .iter()
                .rev()
                .find(|x| x.1 > 0.0)
                .map(|x| x.1)
                .unwrap_or(0.0),
            queue_peak: peak(series(d.aligned.get(m::QUEUE_LENGTH))),
            threads_peak: peak(series(d.aligned.get(m::PROCESS_THREADS))),
            busy_peak: peak(series(d.aligned.get(m::BUSY_WORKER_THREADS))),
            total_requests: last(series(d.aligned.get(m::TOTAL_REQUESTS))),
            failed_requests: last(series(d.aligned.get(m::FAILED_REQUESTS))),
            dropped_iterations: last(series(d.aligned.get(m::DROPPED_ITERATIONS))),
            first_scale_s: d.first_scale_s,
            scale_events: run.meta.as_ref().map(|m| m.scale_events.len()).unwrap_or(0),
            replicas_max: over_time.iter().map(|x| x.1).fold(0.0, f64::max),
            replicas_over_time: over_time,
        });
    }
    let firsts: Vec<f64> = per_run.iter().filter_map(|r| r.first_scale_s).collect();
    Ok(RoleNumbers {
        runs: per_run.len(),
        p99_peak_s: mean(per_run.iter().map(|r| r.p99_peak_s)),
        p99_end_s: mean(per_run.iter().map(|r| r.p99_end_s)),
        queue_peak: mean(per_run.iter().map(|r| r.queue_peak)),
        threads_peak: mean(per_run.iter().map(|r| r.threads_peak)),
        busy_peak: mean(per_run.iter().map(|r| r.busy_peak)),
        total_requests: mean(per_run.iter().map(|r| r.total_requests)),
        failed_requests: mean(per_run.iter().map(|r| r.failed_requests)),
        dropped_iterations: mean(per_run.iter().map(|r| r.dropped_iterations)),
        runs_with_scale_event: per_run.iter().filter(|r| r.scale_events > 0).count(),
        first_scale_s: (!firsts.is_empty()).then(|| mean(firsts.iter().copied())),
        replicas_max: mean(per_run.iter().map(|r| r.replicas_max)),
        per_run,
    })
}

fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    Machine {
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model,
        memory_gib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os: read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default(),
    }
}

fn opt_s(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} s")).unwrap_or_else(|| "—".into())
}

fn timeline(r: &RoleNumbers) -> String {
    r.per_run
        .iter()
        .map(|run| {
            let steps: Vec<String> = run
                .replicas_over_time
                .iter()
                .map(|(t, v)| format!("{v:.0}@{t:.0}s"))
                .collect();
            format!("pair {}: {}", run.pair, steps.join(" → "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn render_markdown(r: &Report) -> String {
    let (b, s) = (&r.baseline, &r.scaled);
    let p = &r.state.profile;
    let mut md = String::new();
    md.push_str("# starvation experiment report\n\n");
    md.push_str(&format!(
        "{} pair(s), profile `{}`, backend {}, monitor {}; generated {}.\n\n",
        r.state.runs,
        p.name,
        r.backend,
        r.monitor,
        r.generated.to_rfc3339()
    ));
    md.push_str(&format!(
        "**Verdict:** {}\n\n",
        if r.verdict_scaling_helped {
            "scaling helped — every scaled run scaled out, no baseline run did, and the scaled p99 peak is below the baseline's."
        } else {
            "NOT shown — see the table: a scaled run did not scale, a baseline run did, or the scaled p99 peak is not below the baseline's."
        }
    ));
    md.push_str("## Summary (mean over runs)\n\n");
    md.push_str(
        "| | baseline | scaled | paper baseline | paper scaled |\n|---|---:|---:|---:|---:|\n",
    );
    let whole = |v: f64| format!("{v:.0}");
    // (row, baseline, scaled, paper baseline, paper scaled)
    let rows: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "p99 request duration, peak",
            format!("{:.2} s", b.p99_peak_s),
            format!("{:.2} s", s.p99_peak_s),
            "≈ 64 s",
            "≈ 2.6 s",
        ),
        (
            "p99 request duration, at end",
            format!("{:.2} s", b.p99_end_s),
            format!("{:.2} s", s.p99_end_s),
            "",
            "",
        ),
        (
            "thread-pool queue, peak",
            whole(b.queue_peak),
            whole(s.queue_peak),
            "≈ 48",
            "≈ 25",
        ),
        (
            "process threads, peak (all replicas)",
            whole(b.threads_peak),
            whole(s.threads_peak),
            "",
            "",
        ),
        (
            "busy worker threads, peak",
            whole(b.busy_peak),
            whole(s.busy_peak),
            "",
            "",
        ),
        (
            "requests",
            whole(b.total_requests),
            whole(s.total_requests),
            "",
            "",
        ),
        (
            "failed requests",
            whole(b.failed_requests),
            whole(s.failed_requests),
            "",
            "",
        ),
        (
            "dropped iterations",
            whole(b.dropped_iterations),
            whole(s.dropped_iterations),
            "",
            "",
        ),
        (
            "runs with a scale event",
            format!("{}/{}", b.runs_with_scale_event, b.runs),
            format!("{}/{}", s.runs_with_scale_event, s.runs),
            "0",
            "all",
        ),
        (
            "time to first scale",
            opt_s(b.first_scale_s),
            opt_s(s.first_scale_s),
            "",
            "≈ 24 s",
        ),
        (
            "replicas, most",
            format!("{:.1}", b.replicas_max),
            format!("{:.1}", s.replicas_max),
            "1",
            "",
        ),
    ];
    for (name, base, scaled, paper_base, paper_scaled) in rows {
        md.push_str(&format!(
            "| {name} | {base} | {scaled} | {paper_base} | {paper_scaled} |\n"
        ));
    }
    md.push_str("\nReplicas over time (count@seconds from load start):\n\n");
    md.push_str(&format!("- baseline: {}\n", timeline(b)));
    md.push_str(&format!("- scaled: {}\n\n", timeline(s)));
    md.push_str("## Figures\n\n");
    for f in &r.figures {
        md.push_str(&format!("![{f}]({f})\n\n"));
    }
    md.push_str("## Configuration\n\n```toml\n");
    md.push_str(&p.to_toml());
    md.push_str("```\n\nRuns: `runs/pair_N/{baseline,scaled}/` (exports as Prometheus `query_range` JSON, `run.json`, `alerts.json`, `load_summary.json`); mean datasets: `aggregate/`.\n\n");
    md.push_str("## Software and machine\n\n");
    md.push_str(&format!(
        "- starvation {}\n- {}\n- {} ({} CPUs, {} GiB), kernel {}, host {}\n",
        r.starvation_version,
        r.machine.os,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.memory_gib,
        r.machine.kernel,
        r.machine.hostname
    ));
    md
}

/// Aggregate, draw, and write the report; returns lines for the terminal.
pub fn finish(out: &Path, st: &State) -> anyhow::Result<Vec<String>> {
    let runs_dir = out.join("runs");
    let agg = out.join("aggregate");
    crate::results::aggregate::aggregate(&runs_dir, &agg)?;
    let figs = out.join("figures");
    let data = crate::figures::read_mean_data(&agg)?;
    let marks = crate::figures::recorded_marks(&agg)?;
    let written = crate::figures::draw_all(&data, &figs, &[crate::figures::Format::Png], &marks)?;
    let figures: Vec<String> = written
        .iter()
        .filter_map(|p| p.strip_prefix(out).ok())
        .map(|p| p.display().to_string())
        .collect();
    let baseline = role_numbers(&runs_dir, Role::Baseline)?;
    let scaled = role_numbers(&runs_dir, Role::Scaled)?;
    let verdict = scaled.runs > 0
        && scaled.runs_with_scale_event == scaled.runs
        && baseline.runs_with_scale_event == 0
        && scaled.p99_peak_s < baseline.p99_peak_s;
    let report = Report {
        format: "starvation-report/1".into(),
        generated: chrono::Utc::now(),
        starvation_version: env!("CARGO_PKG_VERSION").into(),
        backend: st.backend.as_str().into(),
        monitor: st.monitor.as_str().into(),
        state: st.clone(),
        baseline,
        scaled,
        paper: serde_json::json!({
            "runs": 100,
            "baseline": {"p99_peak_s": PAPER_BASELINE_P99_S, "queue_peak": PAPER_BASELINE_QUEUE_PEAK},
            "scaled": {"p99_s": PAPER_SCALED_P99_S, "queue_peak": PAPER_SCALED_QUEUE_PEAK},
        }),
        verdict_scaling_helped: verdict,
        machine: machine(),
        figures,
    };
    crate::results::fsutil::write_atomic(
        &out.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let md = render_markdown(&report);
    crate::results::fsutil::write_atomic(&out.join("report.md"), md.as_bytes())?;
    Ok(vec![
        format!(
            "baseline: p99 peak {:.2} s, queue peak {:.0}; scaled: p99 peak {:.2} s, queue peak {:.0}, first scale {}",
            report.baseline.p99_peak_s,
            report.baseline.queue_peak,
            report.scaled.p99_peak_s,
            report.scaled.queue_peak,
            opt_s(report.scaled.first_scale_s)
        ),
        format!("report: {}", out.join("report.md").display()),
    ])
}
