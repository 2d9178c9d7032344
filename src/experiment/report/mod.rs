//! After the runs: aggregate, figures, and `report.md` + `report.json`.

mod comparison;
mod dotnet;
mod fidelity;
mod goals;
mod markdown;
mod numbers;
mod paper;
mod placement;

pub use comparison::PaperComparison;
pub use dotnet::{DotnetComparison, DotnetGoal, DotnetRow, dotnet_comparison};
pub use fidelity::{Fidelity, FidelityRow, fidelity, paper_curve};
pub use goals::{Goal, goals};
pub use markdown::render_markdown;
pub use numbers::{RequestCounts, RoleNumbers, RunNumbers, read_load_summary, role_numbers};
pub use paper::*;
pub use placement::{NodeDown, PlacementNumbers, per_node_timeline, placement_numbers};

use serde::Serialize;
use std::path::Path;

use super::State;
use crate::results::runmeta::Role;

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
    /// What the replicas ran, e.g. `model` or `dotnet (Microsoft.NETCore.App 8.0.4)`.
    pub workload: String,
    pub state: State,
    pub baseline: RoleNumbers,
    pub scaled: RoleNumbers,
    /// The paper's headline (published mean curves, 100 runs).
    pub paper: serde_json::Value,
    /// The paper's published raw exports, read by our own aggregate.
    pub paper_raw: RawNumbers,
    /// Our mean curves against the paper's raw mean curves (validation, nothing fitted) and the
    /// fidelity goals, each with a bootstrap 95 % interval over the runs; or, for a profile
    /// whose load is not the paper's, why not. Serialised as the keys `fidelity` and `goals`.
    #[serde(flatten)]
    pub paper_comparison: PaperComparison,
    /// With `--reference`: the baseline's mean curves against the .NET side of that compare
    /// folder ("Model vs .NET 8"); absent without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dotnet_reference: Option<DotnetComparison>,
    /// Scale events in every scaled run and none in any baseline run, and the scaled p99 peak
    /// at least 5 % below the baseline's ([`VERDICT_P99_RATIO`]).
    pub verdict_scaling_helped: bool,
    pub machine: Machine,
    pub figures: Vec<String>,
}

/// The scaled p99 peak must be below this share of the baseline's for the verdict: two peaks
/// both held at the request timeout differ by noise, not by scaling.
pub const VERDICT_P99_RATIO: f64 = 0.95;

/// Every scaled run scaled out, no baseline run did, and the scaled p99 peak is clearly lower.
fn scaling_helped(baseline: &RoleNumbers, scaled: &RoleNumbers) -> bool {
    scaled.runs > 0
        && scaled.runs_with_scale_event == scaled.runs
        && baseline.runs_with_scale_event == 0
        && scaled.p99_peak_s < VERDICT_P99_RATIO * baseline.p99_peak_s
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
    let pairs = crate::results::runmeta::discover(&runs_dir)?;
    let baseline = role_numbers(&pairs, Role::Baseline)?;
    let scaled = role_numbers(&pairs, Role::Scaled)?;
    let verdict = scaling_helped(&baseline, &scaled);
    let report = Report {
        format: "starvation-report/1".into(),
        generated: chrono::Utc::now(),
        starvation_version: env!("CARGO_PKG_VERSION").into(),
        backend: st.backend.as_str().into(),
        monitor: st.monitor.as_str().into(),
        workload: match &st.dotnet_runtime {
            Some(v) => format!("{} (Microsoft.NETCore.App {v})", st.workload.as_str()),
            None => st.workload.as_str().into(),
        },
        state: st.clone(),
        baseline,
        scaled,
        paper: serde_json::json!({
            "runs": 100,
            "baseline": {"p99_peak_s": PAPER_BASELINE_P99_S, "queue_peak": PAPER_BASELINE_QUEUE_PEAK},
            "scaled": {"p99_s": PAPER_SCALED_P99_S, "queue_peak": PAPER_SCALED_QUEUE_PEAK},
        }),
        paper_raw: paper_raw(),
        paper_comparison: PaperComparison::of(&st.profile, &agg, &pairs)?,
        dotnet_reference: st
            .reference
            .as_deref()
            .map(|r| dotnet_comparison(&agg, r, &st.profile))
            .transpose()?,
        verdict_scaling_helped: verdict,
        machine: machine(),
        figures,
    };
    crate::util::write_atomic(
        &out.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let md = render_markdown(&report);
    crate::util::write_atomic(&out.join("report.md"), md.as_bytes())?;
    Ok(vec![
        format!(
            "baseline: p99 peak {:.2} s, queue peak {:.0}; scaled: p99 peak {:.2} s, queue peak {:.0}, first scale {}",
            report.baseline.p99_peak_s,
            report.baseline.queue_peak,
            report.scaled.p99_peak_s,
            report.scaled.queue_peak,
            markdown::opt_s(report.scaled.first_scale_s)
        ),
        report.paper_comparison.summary_line(),
        format!("report: {}", out.join("report.md").display()),
    ])
}

#[cfg(test)]
mod verdict_tests {
    use super::*;

    fn role(p99: f64, runs: usize, scaled_runs: usize) -> RoleNumbers {
        RoleNumbers {
            runs,
            p99_peak_s: p99,
            p99_end_s: p99,
            queue_peak: 0.0,
            threads_peak: 0.0,
            busy_peak: 0.0,
            requests: Default::default(),
            runs_with_scale_event: scaled_runs,
            first_scale_s: None,
            replicas_max: 1.0,
            per_run: Vec::new(),
        }
    }

    fn report(dotnet_reference: Option<DotnetComparison>) -> Report {
        let quick = crate::experiment::Profile::quick();
        Report {
            format: "starvation-report/1".into(),
            generated: chrono::Utc::now(),
            starvation_version: "0".into(),
            backend: "local".into(),
            monitor: "embedded".into(),
            workload: "model".into(),
            state: State {
                format: "starvation-experiment/1".into(),
                runs: 1,
                profile: quick.clone(),
                rules: String::new(),
                started: chrono::Utc::now(),
                backend: Default::default(),
                monitor: Default::default(),
                swarm: Default::default(),
                load: Default::default(),
                workload: Default::default(),
                dotnet: Default::default(),
                dotnet_runtime: None,
                reference: None,
            },
            baseline: role(1.0, 1, 0),
            scaled: role(1.0, 1, 1),
            paper: serde_json::Value::Null,
            paper_raw: paper_raw(),
            paper_comparison: PaperComparison::NotComparable(
                quick.comparable_with_paper().unwrap_err(),
            ),
            dotnet_reference,
            verdict_scaling_helped: false,
            machine: machine(),
            figures: Vec::new(),
        }
    }

    #[test]
    fn the_model_vs_dotnet_section_only_with_a_reference() {
        let md = render_markdown(&report(None));
        assert!(!md.contains("Model vs .NET 8"), "{md}");
        let json = serde_json::to_value(report(None)).unwrap();
        assert!(json.get("dotnet_reference").is_none());
        let d = DotnetComparison {
            reference: "cmp".into(),
            runtime: "8.0.4".into(),
            dotnet_runs: 3,
            rows: vec![DotnetRow {
                metric: crate::results::metrics::BUSY_WORKER_THREADS.into(),
                peak: 6.0,
                peak_at_s: 40.0,
                dotnet_peak: 5.0,
                dotnet_peak_at_s: 42.0,
                nrmse: Some(0.1234),
                goal: DotnetGoal::NrmseAtMost(0.15),
                met: Some(true),
            }],
        };
        let md = render_markdown(&report(Some(d.clone())));
        assert!(md.contains("## Model vs .NET 8\n"), "{md}");
        assert!(
            md.contains(
                "| Busy Worker Threads | 6 | 40 s | 5 | 42 s | 0.12 | NRMSE ≤ 0.15 | yes |"
            ),
            "{md}"
        );
        let json = serde_json::to_value(report(Some(d))).unwrap();
        assert_eq!(
            json["dotnet_reference"]["rows"][0]["goal"]["kind"],
            "nrmse_at_most"
        );
    }

    #[test]
    fn two_peaks_held_at_the_timeout_are_not_a_win() {
        // The .NET workload's quick pair: both p99 peaks at the 30 s timeout.
        assert!(!scaling_helped(&role(30.64, 1, 0), &role(30.63, 1, 1)));
        assert!(scaling_helped(&role(24.54, 1, 0), &role(15.26, 1, 1)));
        assert!(!scaling_helped(&role(24.54, 1, 1), &role(15.26, 1, 1)));
        assert!(!scaling_helped(&role(24.54, 1, 0), &role(15.26, 2, 1)));
    }
}
