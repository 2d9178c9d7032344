//! `report.md`: the verdict, our numbers beside the paper's (headline and raw data), where the
//! requests went, replicas over time, figures, configuration, machine.

use super::{PaperComparison, Report, RoleNumbers};
use crate::experiment::Profile;

pub(super) fn opt_s(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} s")).unwrap_or_else(|| "—".into())
}

/// A count or a mean of counts: whole numbers print as integers ("3", not "3.0").
fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn timeline(r: &RoleNumbers) -> String {
    r.per_run
        .iter()
        .map(|run| {
            let steps: Vec<String> = run
                .replicas_over_time
                .iter()
                .map(|(t, v)| format!("{}@{t:.0}s", num(*v)))
                .collect();
            format!("pair {}: {}", run.pair, steps.join(" → "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Rows of the summary table: (what, baseline, scaled, paper headline b/s, paper raw data b/s).
fn summary_rows(r: &Report) -> Vec<[String; 7]> {
    let (b, s, raw) = (&r.baseline, &r.scaled, &r.paper_raw);
    let secs = |v: f64| format!("{v:.2} s");
    let whole = |v: f64| format!("{v:.0}");
    let e = String::new;
    vec![
        [
            "p99 request duration, peak".into(),
            secs(b.p99_peak_s),
            secs(s.p99_peak_s),
            "≈ 64 s".into(),
            "≈ 2.6 s".into(),
            format!(
                "{} (mean curve); runs' own: median {}",
                secs(raw.baseline.p99_peak_s),
                secs(raw.baseline.p99_run_peak_median_s)
            ),
            format!(
                "{} (mean curve); runs' own: median {}",
                secs(raw.scaled.p99_peak_s),
                secs(raw.scaled.p99_run_peak_median_s)
            ),
        ],
        [
            "p99 request duration, at end".into(),
            secs(b.p99_end_s),
            secs(s.p99_end_s),
            e(),
            e(),
            e(),
            e(),
        ],
        [
            "thread-pool queue, peak".into(),
            whole(b.queue_peak),
            whole(s.queue_peak),
            "≈ 48".into(),
            "≈ 25".into(),
            whole(raw.baseline.queue_peak),
            whole(raw.scaled.queue_peak),
        ],
        [
            "process threads, peak (all replicas)".into(),
            whole(b.threads_peak),
            whole(s.threads_peak),
            e(),
            e(),
            whole(raw.baseline.threads_peak),
            whole(raw.scaled.threads_peak),
        ],
        [
            "busy worker threads, peak".into(),
            whole(b.busy_peak),
            whole(s.busy_peak),
            e(),
            e(),
            whole(raw.baseline.busy_peak),
            whole(raw.scaled.busy_peak),
        ],
        [
            "runs with a scale event".into(),
            format!("{}/{}", b.runs_with_scale_event, b.runs),
            format!("{}/{}", s.runs_with_scale_event, s.runs),
            "0".into(),
            "all".into(),
            "0".into(),
            format!("{}/{}", raw.runs_with_scale_event, raw.scaled.runs),
        ],
        [
            "time to first scale".into(),
            opt_s(b.first_scale_s),
            opt_s(s.first_scale_s),
            e(),
            "≈ 24 s".into(),
            e(),
            format!(
                "median {:.0} s ({:.0}–{:.0} s)",
                raw.first_scale_median_s, raw.first_scale_min_s, raw.first_scale_max_s
            ),
        ],
        [
            "replicas, most".into(),
            num(b.replicas_max),
            num(s.replicas_max),
            "1".into(),
            e(),
            e(),
            e(),
        ],
    ]
}

fn requests_table(r: &Report) -> String {
    let (b, s) = (&r.baseline.requests, &r.scaled.requests);
    let rows = [
        ("iterations scheduled", b.scheduled, s.scheduled),
        ("requests sent", b.started, s.started),
        (
            "answered with the expected status",
            b.succeeded,
            s.succeeded,
        ),
        (
            "failed (error or unexpected status, time-outs included)",
            b.failed,
            s.failed,
        ),
        ("of which timed out", b.timed_out, s.timed_out),
        (
            "interrupted (in flight when the load ended, never answered)",
            b.interrupted,
            s.interrupted,
        ),
        ("dropped (never sent: no free VU)", b.dropped, s.dropped),
    ];
    let mut md = format!(
        "## Requests (sums over {} baseline and {} scaled runs, from each run's `load_summary.json`)\n\n| | baseline | scaled |\n|---|---:|---:|\n",
        r.baseline.runs, r.scaled.runs
    );
    for (name, x, y) in rows {
        md.push_str(&format!("| {name} | {x} | {y} |\n"));
    }
    md.push('\n');
    md
}

pub fn render_markdown(r: &Report) -> String {
    let (b, s) = (&r.baseline, &r.scaled);
    let p = &r.state.profile;
    let mut md = String::new();
    md.push_str("# starvation experiment report\n\n");
    md.push_str(&format!(
        "{} pair(s), profile `{}`, workload {}, backend {}, monitor {}; generated {}.\n\n",
        r.state.runs,
        p.name,
        r.workload,
        r.backend,
        r.monitor,
        r.generated.to_rfc3339()
    ));
    md.push_str(&format!(
        "**Verdict:** {}\n\n",
        if r.verdict_scaling_helped {
            "scaling helped — every scaled run scaled out, no baseline run did, and the scaled p99 peak is at least 5 % below the baseline's."
        } else {
            "NOT shown — see the table: a scaled run did not scale, a baseline run did, or the scaled p99 peak is not at least 5 % below the baseline's (two peaks held at the request timeout are equal)."
        }
    ));
    md.push_str("## Summary (mean over runs)\n\n");
    md.push_str(
        "| | baseline | scaled | paper headline, baseline | paper headline, scaled | paper raw data, baseline | paper raw data, scaled |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in summary_rows(r) {
        md.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    md.push_str(&format!(
        "\nThe paper's two sets of numbers differ. *Headline*: its published 100-run mean curves. \
         *Raw data*: its published exports ({} complete pairs) read by our own `starvation aggregate` \
         (one series per replica, {} overwritten p99 files left out: {}); a plain per-offset mean of \
         those exports does not reproduce the published curves.\n\n",
        r.paper_raw.complete_pairs,
        r.paper_raw.left_out.len(),
        r.paper_raw.left_out.join(", ")
    ));
    md.push_str(&requests_table(r));
    md.push_str("Replicas over time (count@seconds from load start):\n\n");
    md.push_str(&format!("- baseline: {}\n", timeline(b)));
    md.push_str(&format!("- scaled: {}\n\n", timeline(s)));
    md.push_str(&super::placement::placement_section(r));
    md.push_str(&paper_section(
        &r.paper_comparison,
        p,
        r.baseline.runs.min(r.scaled.runs),
    ));
    if let Some(d) = &r.dotnet_reference {
        md.push_str(&dotnet_section(d, r.baseline.runs));
    }
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

/// The Fidelity section and its Goals for the paper's load; for another, why they are absent
/// and how to compare it (`runs`: pairs a role).
fn paper_section(c: &PaperComparison, profile: &Profile, runs: usize) -> String {
    match c {
        PaperComparison::Compared { fidelity, goals } => {
            fidelity_table(fidelity) + &goals_table(goals, runs)
        }
        PaperComparison::NotComparable(why) => format!(
            "## Fidelity\n\nNot comparable with the paper: {why}. Run `--profile paper` to compare, \
             or compare the model with the .NET 8 runtime under this load: {}.\n\n\
             ### Goals\n\nNone assessed: the goals are the paper's figures, and this profile's load \
             is not the paper's.\n\n",
            compare_command(profile)
        ),
    }
}

/// The `starvation compare` command that runs this profile's load on both.
fn compare_command(p: &Profile) -> String {
    if *p == Profile::quick() {
        "`starvation compare --scenario profile:quick`".into()
    } else {
        "`starvation compare --scenario profile:FILE.toml` with this profile (its TOML is under \
         Configuration below)"
            .into()
    }
}

/// The Fidelity section: our mean curves beside the paper's raw mean curves.
fn fidelity_table(f: &super::Fidelity) -> String {
    let mut md = String::from(
        "## Fidelity\n\nOur mean curves against the paper's (its published pairs read by our own \
         `aggregate`); nothing here is fitted. NRMSE: root-mean-square difference over the common \
         offsets, divided by the paper curve's peak.\n\n\
         | metric | run | peak | at | paper peak | paper at | NRMSE |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for row in &f.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} s | {} | {} s | {:.2} |\n",
            row.metric,
            row.role.as_str(),
            short(row.peak),
            num(row.peak_at_s),
            short(row.paper_peak),
            num(row.paper_peak_at_s),
            row.nrmse
        ));
    }
    md.push_str(&format!(
        "\nScaled / baseline p99 peak: {} (paper {:.2}).\n\n",
        f.p99_peak_ratio
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "–".into()),
        f.paper_p99_peak_ratio
    ));
    md
}

/// The goals: ours with its bootstrap interval, the paper's value, the range aimed for.
fn goals_table(goals: &[super::Goal], runs: usize) -> String {
    let mut md = format!(
        "### Goals\n\nOurs with a percentile-bootstrap 95 % interval over the runs ({runs} a role; \
         a resample redraws the runs and rebuilds the mean curve), the paper's raw value, and \
         the range aimed for.\n\n| goal | ours | 95 % interval | paper | aim | met |\n|---|---:|---:|---:|---:|---|\n"
    );
    let v = |x: Option<f64>| x.map(short).unwrap_or_else(|| "–".into());
    for g in goals {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {}–{} | {} |\n",
            g.what,
            v(g.ours),
            g.ci95
                .map(|(a, b)| format!("{}–{}", short(a), short(b)))
                .unwrap_or_else(|| "–".into()),
            short(g.paper),
            short(g.target_low),
            short(g.target_high),
            match g.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "–",
            }
        ));
    }
    md.push('\n');
    md
}

/// "Model vs .NET 8": the baseline's mean curves against a compare folder's .NET side
/// (`runs`: baseline runs).
fn dotnet_section(d: &super::DotnetComparison, runs: usize) -> String {
    let mut md = format!(
        "## Model vs .NET 8\n\nOur baseline mean curves ({runs} run(s), one replica, no scaling) \
         against the .NET {} runtime's mean curves ({} run(s)) in the reference run `{}` \
         (`starvation compare`, same profile). NRMSE: root-mean-square difference over the common \
         seconds, divided by the .NET curve's range. p99 in seconds on both sides.\n\n\
         | metric | peak | at | .NET peak | .NET at | NRMSE | goal | met |\n\
         |---|---:|---:|---:|---:|---:|---|---|\n",
        d.runtime, d.dotnet_runs, d.reference
    );
    for row in &d.rows {
        md.push_str(&format!(
            "| {} | {} | {} s | {} | {} s | {} | {} | {} |\n",
            row.metric,
            short(row.peak),
            num(row.peak_at_s),
            short(row.dotnet_peak),
            num(row.dotnet_peak_at_s),
            row.nrmse
                .map(|n| format!("{n:.2}"))
                .unwrap_or_else(|| "–".into()),
            row.goal,
            match row.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "–",
            }
        ));
    }
    md.push('\n');
    md
}

/// Two decimals at most, trailing zeros dropped ("1.02", "64.3", "338").
fn short(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_load_gets_the_fidelity_table_and_the_goals() {
        let md = paper_section(
            &super::super::comparison::compared_example(),
            &Profile::paper(),
            1,
        );
        assert!(
            md.contains("## Fidelity\n\nOur mean curves against the paper's"),
            "{md}"
        );
        assert!(md.contains("| metric | run | peak |"), "{md}");
        assert!(
            md.contains("| goal | ours | 95 % interval | paper | aim | met |"),
            "{md}"
        );
        assert!(
            md.contains("| baseline queue-length peak | 300 | 290–310 | 64 | 44.8–83.2 | no |"),
            "{md}"
        );
        assert!(!md.contains("Not comparable"), "{md}");
    }

    #[test]
    fn another_load_says_not_comparable_instead_of_the_tables() {
        let quick = Profile::quick();
        let c = PaperComparison::NotComparable(quick.comparable_with_paper().unwrap_err());
        let md = paper_section(&c, &quick, 1);
        assert!(
            md.contains(
                "Not comparable with the paper: this profile's load differs from the paper's \
                 (stages `15:10s,20:10s,30:10s,35:10s,5:10s` vs `15:30s,20:30s,30:30s,35:30s,5:30s`). \
                 Run `--profile paper` to compare"
            ),
            "{md}"
        );
        assert!(
            md.contains("`starvation compare --scenario profile:quick`"),
            "{md}"
        );
        assert!(md.contains("### Goals\n\nNone assessed"), "{md}");
        for table in [
            "| metric |",
            "| goal |",
            "| yes |",
            "| no |",
            "Scaled / baseline p99",
        ] {
            assert!(!md.contains(table), "{table:?} in:\n{md}");
        }

        // A TOML profile is named by its file, whose text the report shows.
        let mut own = Profile::paper();
        own.block_ms = 1000;
        let c = PaperComparison::NotComparable(own.comparable_with_paper().unwrap_err());
        let md = paper_section(&c, &own, 1);
        assert!(md.contains("(block time 1000 ms vs 2000 ms)"), "{md}");
        assert!(
            md.contains("--scenario profile:FILE.toml` with this profile"),
            "{md}"
        );
    }

    #[test]
    fn whole_numbers_print_as_integers() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(0.0), "0");
        // Peaks keep their second decimal (a 1.02 s p99 is not "1.0").
        assert_eq!(short(1.02), "1.02");
        assert_eq!(short(64.30), "64.3");
        assert_eq!(short(338.0), "338");
    }
}
