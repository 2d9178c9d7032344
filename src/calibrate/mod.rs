//! `starvation calibrate`: fit the pool's starvation delay to a busy-worker curve — the paper's
//! baseline mean, or the .NET 8 runtime's from a `compare` folder ([`reference`]) — by least
//! squares over simulated runs of the profile ([`sim`], the serve command's own pool rules). Only that one curve
//! is fitted; queue length, p99 and the time to first scale stay free to validate the fit
//! (the report's Fidelity section).

pub mod reference;
pub mod sim;

use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::experiment::Profile;
use crate::figures::{Series, read_mean_csv};
use crate::results::metrics as m;
use crate::results::runmeta::Role;
use crate::results::stats::{nrmse, peak};
use crate::util::parse_duration;
use crate::workload::pool::PoolConfig;
use sim::{Scenario, Trace, simulate};

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Fit the pool's --starvation-delay to a busy-worker-thread curve, the paper's \
baseline mean (default) or the .NET 8 runtime's under the same profile (--reference, from \
`starvation compare`), by least squares over simulated runs of the profile, and print the fit \
and its error."
)]
pub struct Opts {
    /// The paper's raw exports (`paired_metric_exports/`, one folder per pair), aggregated here
    /// by our own `aggregate`. Default: the mean curve shipped in the binary, from the same
    /// aggregate of the same 98 pairs (scripts/paper-raw-summary.sh).
    #[arg(long, value_name = "DIR", conflicts_with = "reference")]
    pub runs: Option<PathBuf>,

    /// Fit to the .NET 8 runtime instead of the paper: a `starvation compare --scenario
    /// profile:NAME --out DIR` folder of the same profile; its .NET side's busy-thread curve,
    /// averaged over its runs, is the target. The model's pool runs .NET's own constants, so a
    /// faithful model fits near .NET's 500 ms here.
    #[arg(long, value_name = "DIR")]
    pub reference: Option<PathBuf>,

    /// The profile whose load, block time, min threads, timeout, VUs and other pool flags
    /// (`serve_args`) the simulated replica uses: `paper`, `quick` or a TOML file. Its own
    /// --starvation-delay is reported beside the fit.
    #[arg(long, default_value = "paper")]
    pub profile: String,

    /// Smallest starvation delay tried.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub delay_min: Duration,

    /// Largest starvation delay tried.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub delay_max: Duration,

    /// Spacing of the delays tried (the loss is flat between gate ticks, so a grid, not a
    /// gradient, finds its minimum).
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub delay_step: Duration,

    /// Simulated runs per delay, each with hill climbing's random sample intervals seeded
    /// differently (seeds 0..N); their busy curves are averaged.
    #[arg(long, default_value_t = 5)]
    pub repeats: u32,

    /// Which part of the paper's curve the fit compares. `rise`: the offsets up to the curve's
    /// peak, where the pool's injection sets how fast busy threads grow. `whole`: every offset,
    /// including the fall after the load's peak, where busy threads follow the backlog as it
    /// drains, i.e. the queue, which is meant to validate the fit rather than be fitted.
    #[arg(long, value_enum, default_value_t = Window::Rise)]
    pub window: Window,

    /// Also write the fit, both curves and the loss over the grid as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Rise,
    Whole,
}

/// Delays whose loss is within this share of the least loss tie with it (the gate's phase
/// moves the loss by a few thousandths inside one tick's plateau).
const TIE: f64 = 0.01;

/// The result of one calibration.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub profile: String,
    /// Where the target curve came from.
    pub target: String,
    /// The fitted value: the middle of the delays that share the least loss.
    pub starvation_delay_s: f64,
    /// Every delay tried in `[best_from_s, best_to_s]` gives the same least loss.
    pub best_from_s: f64,
    pub best_to_s: f64,
    pub window: Window,
    /// RMSE over the window's offsets, in threads, and divided by the paper's peak.
    pub rmse_threads: f64,
    pub nrmse: f64,
    /// NRMSE over every offset of the paper's curve, whatever the window.
    pub nrmse_whole: f64,
    pub peak: f64,
    pub peak_at_s: f64,
    pub paper_peak: f64,
    pub paper_peak_at_s: f64,
    /// The profile's own delay and its errors (window, whole), for comparison.
    pub profile_delay_s: f64,
    pub profile_nrmse: f64,
    pub profile_nrmse_whole: f64,
    pub fitted: Series,
    pub paper: Series,
    /// `(delay_s, nrmse)` over the grid.
    pub loss: Vec<(f64, f64)>,
}

/// The paper's baseline busy-worker mean curve: aggregated from `runs`, or the shipped one.
pub fn target_curve(runs: Option<&std::path::Path>) -> anyhow::Result<(Series, String)> {
    let Some(runs) = runs else {
        let curve = crate::experiment::report::paper_curve(Role::Baseline, m::BUSY_WORKER_THREADS)?;
        return Ok((curve, "assets/paper-raw-means (shipped)".into()));
    };
    anyhow::ensure!(
        runs.is_dir(),
        "--runs {}: not a folder; give the paper's paired_metric_exports/ (one pair_N/ per pair)",
        runs.display()
    );
    let tmp = tempfile::tempdir()?;
    crate::results::aggregate::aggregate(runs, tmp.path())
        .map_err(|e| anyhow::anyhow!("--runs {}: {e}", runs.display()))?;
    let path = tmp
        .path()
        .join(Role::Baseline.as_str())
        .join(m::spec(m::BUSY_WORKER_THREADS).mean_file());
    anyhow::ensure!(
        path.exists(),
        "--runs {}: no baseline {} export in any run",
        runs.display(),
        m::BUSY_WORKER_THREADS
    );
    Ok((read_mean_csv(&path)?, runs.display().to_string()))
}

/// The profile's pool constants (its `serve_args` parsed as `serve` would) and its scenario.
pub fn profile_model(p: &Profile, until: Duration) -> anyhow::Result<(PoolConfig, Scenario)> {
    let mut args = vec![
        "serve".to_string(),
        "--block-ms".into(),
        p.block_ms.to_string(),
        "--min-threads".into(),
        p.min_threads.to_string(),
    ];
    args.extend(p.serve_args.iter().cloned());
    let serve = crate::workload::Opts::try_parse_from(&args)
        .map_err(|e| anyhow::anyhow!("the profile's serve_args: {e}"))?;
    let pool = serve.pool_config()?;
    let scenario = Scenario {
        schedule: p.schedule()?,
        block: Duration::from_millis(p.block_ms),
        timeout: Duration::from_secs(p.timeout_s),
        max_vus: p.max_vus,
        gate_latency: sim::GATE_LATENCY,
        step: Duration::from_secs(5),
        until,
    };
    Ok((pool, scenario))
}

/// The busy curve averaged over `repeats` seeds of hill climbing's random sample intervals.
pub fn mean_busy(pool: &PoolConfig, scenario: &Scenario, repeats: u32) -> Series {
    let repeats = repeats.max(1);
    let traces: Vec<Trace> = (0..repeats)
        .map(|i| {
            let seeded = PoolConfig {
                seed: u64::from(i),
                ..pool.clone()
            };
            simulate(&seeded, scenario)
        })
        .collect();
    traces[0]
        .busy
        .iter()
        .enumerate()
        .map(|(k, &(t, _))| {
            let sum: f64 = traces.iter().map(|tr| tr.busy[k].1).sum();
            (t, sum / repeats as f64)
        })
        .collect()
}

/// Grid search of the starvation delay against `paper`.
pub fn fit(opts: &Opts, profile: &Profile, paper: &Series, target: String) -> anyhow::Result<Fit> {
    anyhow::ensure!(
        !opts.delay_step.is_zero() && opts.delay_min <= opts.delay_max && !opts.delay_min.is_zero(),
        "--delay-min must be above zero and at most --delay-max, and --delay-step above zero (got {:?}..{:?} by {:?})",
        opts.delay_min,
        opts.delay_max,
        opts.delay_step
    );
    let (paper_at, paper_peak) =
        peak(paper).ok_or_else(|| anyhow::anyhow!("the target curve is empty"))?;
    let until = Duration::from_secs_f64(paper.last().map(|p| p.0).unwrap_or(0.0).max(0.0));
    let (base, scenario) = profile_model(profile, until)?;
    let fitted_part: Series = match opts.window {
        Window::Rise => paper.iter().copied().filter(|p| p.0 <= paper_at).collect(),
        Window::Whole => paper.clone(),
    };
    // (window error, whole error, curve)
    let error = |delay: Duration| -> (f64, f64, Series) {
        let pool = PoolConfig {
            starvation_delay: delay,
            ..base.clone()
        };
        let curve = mean_busy(&pool, &scenario, opts.repeats);
        let e = |target: &Series| nrmse(&curve, target, paper_peak).unwrap_or(f64::INFINITY);
        (e(&fitted_part), e(paper), curve)
    };
    let mut loss = Vec::new();
    let mut d = opts.delay_min;
    while d <= opts.delay_max {
        loss.push((d.as_secs_f64(), error(d).0));
        d += opts.delay_step;
    }
    let best = loss.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
    anyhow::ensure!(
        best.is_finite(),
        "no delay gave a curve to compare with the paper's"
    );
    // The run of grid points tied with the least loss that holds the first minimum.
    let tied = |l: &(f64, f64)| l.1 <= best * (1.0 + TIE) + 1e-12;
    let first = loss.iter().position(tied).unwrap_or(0);
    let last = first + loss[first..].iter().take_while(|l| tied(l)).count() - 1;
    let (from, to) = (loss[first].0, loss[last].0);
    let fitted_delay = Duration::from_millis((((from + to) / 2.0) * 1000.0).round() as u64);
    let (nrmse_fit, nrmse_whole, fitted) = error(fitted_delay);
    let (at, pk) = peak(&fitted).unwrap_or((0.0, 0.0));
    let profile_delay = base.starvation_delay;
    let (profile_nrmse, profile_nrmse_whole, _) = error(profile_delay);
    Ok(Fit {
        profile: profile.name.clone(),
        target,
        starvation_delay_s: fitted_delay.as_secs_f64(),
        best_from_s: from,
        best_to_s: to,
        window: opts.window,
        rmse_threads: nrmse_fit * paper_peak,
        nrmse: nrmse_fit,
        nrmse_whole,
        peak: pk,
        peak_at_s: at,
        paper_peak,
        paper_peak_at_s: paper_at,
        profile_delay_s: profile_delay.as_secs_f64(),
        profile_nrmse,
        profile_nrmse_whole,
        fitted,
        paper: paper.clone(),
        loss,
    })
}

/// What the terminal shows: the fit, its error, and both curves every 10 s.
pub fn render(fit: &Fit) -> String {
    let mut s = format!(
        "target: baseline {} mean curve of {}, fitted over {}\nprofile: {}\n\nfitted --starvation-delay {:.2}s (every delay in {:.2}–{:.2} s fits as well: the gate ticks in steps)\nfit error: RMSE {:.2} threads, NRMSE {:.3} (RMSE / paper peak); over the whole curve NRMSE {:.3}\npeak: {:.1} at {:.0} s (paper {:.1} at {:.0} s)\nthe profile's own delay {:.2} s: NRMSE {:.3}, whole curve {:.3}\n\n offset s   fitted    paper\n",
        m::BUSY_WORKER_THREADS,
        fit.target,
        match fit.window {
            Window::Rise => format!(
                "its rise (offsets up to its peak at {:.0} s)",
                fit.paper_peak_at_s
            ),
            Window::Whole => "every offset".to_string(),
        },
        fit.profile,
        fit.starvation_delay_s,
        fit.best_from_s,
        fit.best_to_s,
        fit.rmse_threads,
        fit.nrmse,
        fit.nrmse_whole,
        fit.peak,
        fit.peak_at_s,
        fit.paper_peak,
        fit.paper_peak_at_s,
        fit.profile_delay_s,
        fit.profile_nrmse,
        fit.profile_nrmse_whole,
    );
    for &(t, ours) in fit
        .fitted
        .iter()
        .filter(|p| (p.0 as u64).is_multiple_of(10))
    {
        let theirs = fit
            .paper
            .iter()
            .find(|p| (p.0 - t).abs() < 1e-6)
            .map(|p| format!("{:8.1}", p.1))
            .unwrap_or_else(|| "       —".into());
        s.push_str(&format!("{t:9.0} {ours:8.1} {theirs}\n"));
    }
    s
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let profile = Profile::resolve(&opts.profile)?;
    let (paper, target) = match &opts.reference {
        Some(dir) => reference::dotnet_busy_curve(dir, &profile)?,
        None => target_curve(opts.runs.as_deref())?,
    };
    let json = opts.json.clone();
    // Hundreds of simulated runs: CPU work, off the async threads.
    let fit = tokio::task::spawn_blocking(move || fit(&opts, &profile, &paper, target)).await??;
    print!("{}", render(&fit));
    if let Some(path) = &json {
        crate::util::write_atomic(path, &serde_json::to_vec_pretty(&fit)?)
            .map_err(|e| anyhow::anyhow!("--json {}: {e}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
