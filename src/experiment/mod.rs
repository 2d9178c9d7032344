//! `starvation experiment`: the paper's experiment in one command. Each pair is a baseline run
//! (scaler off) then a scaled run (scaler on, no scale-down), each on a fresh deployment (fresh
//! replicas, pool state and data directory) under the same load. Afterwards: aggregate, figures
//! and `report.md`/`report.json`. See `docs/experiment.md`.

pub mod profile;
pub mod record;
pub mod report;
pub mod swarm;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::monitor::prometheus::PrometheusMonitor;
use crate::monitor::{self, Embedded, Monitor, MonitorConfig};
use crate::orchestrator::Orchestrator;
use crate::orchestrator::local::{LocalConfig, LocalOrchestrator};
use crate::results::metrics as m;
use crate::results::runmeta::{Role, ScaleEvent};
pub use profile::Profile;

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

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Pairs of runs (baseline + scaled), at least 1. Default 1 (on --resume: as first given).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// `paper`, `quick` (the same shape, about two minutes a pair) or a TOML file
    /// (see scenarios/experiment-example.toml). On --resume: as first given.
    #[arg(long)]
    pub profile: Option<String>,
    /// Where the replicas run. Default local (on --resume: as first given).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// What watches them and fires the alerts. Default embedded with --backend local; the swarm
    /// backend always uses the stack's own Prometheus (on --resume: as first given).
    #[arg(long, value_enum)]
    pub monitor: Option<MonitorKind>,
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
    #[command(flatten)]
    pub swarm: swarm::SwarmOpts,
}

/// The experiment's plan, saved in `experiment.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: String,
    pub runs: u32,
    pub profile: Profile,
    /// The rule file's text (so a resumed experiment evaluates the same rules).
    pub rules: String,
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub backend: BackendKind,
    #[serde(default)]
    pub monitor: MonitorKind,
    #[serde(default)]
    pub swarm: swarm::SwarmOpts,
}

const STATE_FORMAT: &str = "starvation-experiment/1";

/// `runs/pair_N/<role>`.
pub fn run_dir(out: &Path, pair: u32, role: Role) -> PathBuf {
    out.join("runs")
        .join(format!("pair_{pair}"))
        .join(role.as_str())
}

fn is_finished(dir: &Path) -> bool {
    dir.join(crate::results::runmeta::RUN_META_FILE).exists()
}

/// The monitor a backend runs with: `--monitor` if it fits the backend, else its default.
fn monitor_for(backend: BackendKind, monitor: Option<MonitorKind>) -> anyhow::Result<MonitorKind> {
    match (backend, monitor) {
        (BackendKind::Local, m) => Ok(m.unwrap_or_default()),
        (BackendKind::Swarm, None | Some(MonitorKind::Prometheus)) => Ok(MonitorKind::Prometheus),
        (BackendKind::Swarm, Some(MonitorKind::Embedded)) => anyhow::bail!(
            "--backend swarm --monitor embedded: the swarm backend is watched by the stack's own \
             Prometheus; drop --monitor (or say --monitor prometheus)"
        ),
    }
}

/// The parent of the dated default output folders, and its `latest` link.
pub const DEFAULT_OUT_ROOT: &str = "experiment";
pub const LATEST_LINK: &str = "latest";

/// A new dated folder under `root` (`2026-12-01_22-38-04`, `-2` … if taken).
fn new_dated_dir(root: &Path) -> PathBuf {
    let stamp = Utc::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    let mut dir = root.join(&stamp);
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// Point `root/latest` at `dir` (a relative symlink, replaced atomically).
fn link_latest(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let Some(name) = dir.file_name() else {
        return Ok(());
    };
    let link = root.join(LATEST_LINK);
    let tmp = root.join(format!(".{LATEST_LINK}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &link))
        .with_context(|| format!("pointing {} at {}", link.display(), dir.display()))
}

/// The experiment's plan and its folder: read back on --resume, else checked and written.
/// Every flag is checked before the output folder is looked at, so a bad flag is reported as
/// the bad flag.
async fn prepare(opts: &Opts) -> anyhow::Result<(State, PathBuf)> {
    if opts.resume {
        let out = opts
            .out
            .clone()
            .unwrap_or_else(|| Path::new(DEFAULT_OUT_ROOT).join(LATEST_LINK));
        return Ok((resume_state(opts, &out).await?, out));
    }
    let profile = Profile::resolve(opts.profile.as_deref().unwrap_or("paper"))?;
    let rules_path = opts.rules.clone().or_else(|| profile.rules.clone());
    let rules = match &rules_path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("--rules {}: cannot read it", p.display()))?,
        None => monitor::rules::DEFAULT_RULES.to_string(),
    };
    let backend = opts.backend.unwrap_or_default();
    let monitor_kind = monitor_for(backend, opts.monitor)?;
    // Refuse what cannot run before anything starts: rules the embedded monitor cannot
    // evaluate, missing Prometheus binaries, no Swarm.
    match (backend, monitor_kind) {
        (BackendKind::Local, MonitorKind::Embedded) => {
            monitor::parse_rules(&rules)?;
        }
        (BackendKind::Local, MonitorKind::Prometheus) => {
            monitor::prometheus::check_binaries()?;
            monitor::prometheus::check_rules(&rules)?;
        }
        (BackendKind::Swarm, _) => {
            monitor::prometheus::check_rules(&rules)?;
            swarm::preflight(&opts.swarm).await?;
        }
    }
    let out = match &opts.out {
        Some(out) => {
            if out.join(STATE_FILE).exists() || out.join("runs").exists() {
                anyhow::bail!(
                    "--out {} already holds an experiment: continue it with --resume --out {0}, \
                     or choose another --out (without --out, each experiment gets a new folder)",
                    out.display()
                );
            }
            out.clone()
        }
        None => new_dated_dir(Path::new(DEFAULT_OUT_ROOT)),
    };
    let st = State {
        format: STATE_FORMAT.into(),
        runs: opts.runs.unwrap_or(1),
        profile,
        rules,
        started: Utc::now(),
        backend,
        monitor: monitor_kind,
        swarm: opts.swarm.clone(),
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("--out {}: cannot create it", out.display()))?;
    crate::results::fsutil::write_atomic(&out.join(STATE_FILE), &serde_json::to_vec_pretty(&st)?)?;
    if opts.out.is_none() {
        link_latest(Path::new(DEFAULT_OUT_ROOT), &out)?;
    }
    Ok((st, out))
}

/// The saved plan of the experiment in `out`, checked against the flags given with --resume.
async fn resume_state(opts: &Opts, out: &Path) -> anyhow::Result<State> {
    let state_path = out.join(STATE_FILE);
    let bytes = std::fs::read(&state_path).with_context(|| {
        format!(
            "--resume: no experiment to continue in {} (no {STATE_FILE})",
            out.display()
        )
    })?;
    let mut st: State = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: unreadable", state_path.display()))?;
    anyhow::ensure!(
        st.format == STATE_FORMAT,
        "{}: format {:?}, this version reads {STATE_FORMAT:?}",
        state_path.display(),
        st.format
    );
    if let Some(p) = &opts.profile {
        let given = Profile::resolve(p)?;
        anyhow::ensure!(
            given == st.profile,
            "--resume --profile {p}: differs from the profile this experiment started with; \
             drop --profile to continue it, or start a new experiment"
        );
    }
    if let Some(r) = opts.runs {
        st.runs = r;
    }
    if opts.backend.is_some_and(|b| b != st.backend)
        || opts.monitor.is_some_and(|m| m != st.monitor)
    {
        anyhow::bail!(
            "--resume: this experiment started with --backend {} --monitor {}; drop \
             --backend/--monitor to continue it, or start a new experiment",
            st.backend.as_str(),
            st.monitor.as_str()
        );
    }
    if st.monitor == MonitorKind::Embedded {
        monitor::parse_rules(&st.rules)?;
    }
    st.swarm = st.swarm.resumed(&opts.swarm);
    if st.backend == BackendKind::Swarm {
        swarm::preflight(&st.swarm).await?;
    }
    Ok(st)
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
    let (st, out) = prepare(&opts).await?;
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
    let program = std::env::current_exe().context("locating the starvation executable")?;
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
            bar.set_message(format!("{label}: starting"));
            let before = bar.position();
            let res = match st.backend {
                BackendKind::Local => {
                    run_one(&st, &program, pair, role, &dir, &cancel, &bar, &label).await
                }
                BackendKind::Swarm => {
                    swarm::run_one(&st, pair, role, &dir, &cancel, &bar, &label).await
                }
            };
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

fn unix_s(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// One run on a fresh deployment. Everything it starts is stopped before it returns.
#[allow(clippy::too_many_arguments)]
async fn run_one(
    st: &State,
    program: &Path,
    pair: u32,
    role: Role,
    dir: &Path,
    cancel: &CancellationToken,
    bar: &indicatif::ProgressBar,
    label: &str,
) -> anyhow::Result<()> {
    let p = &st.profile;
    let mon: Box<dyn Monitor> = match st.monitor {
        MonitorKind::Embedded => Box::new(
            Embedded::start(MonitorConfig {
                rules: monitor::parse_rules(&st.rules)?,
                webhook: None,
                token: None,
                interval: Duration::from_secs(1),
            })
            .await?,
        ),
        MonitorKind::Prometheus => {
            bar.set_message(format!("{label}: starting Prometheus"));
            Box::new(PrometheusMonitor::start(&dir.join("monitor"), &st.rules).await?)
        }
    };
    let gauges: Vec<&str> = m::METRICS
        .iter()
        .filter(|s| s.kind == m::Kind::Gauge)
        .map(|s| s.query)
        .collect();
    let port = crate::child::free_loopback_port()?;
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let data = dir.join("data");
    let serve_args: Vec<String> = vec![
        "--block-ms".into(),
        p.block_ms.to_string(),
        "--min-threads".into(),
        p.min_threads.to_string(),
        "--pushgateway".into(),
        mon.pushgateway_url(),
        "--push-interval".into(),
        "1s".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ]
    .into_iter()
    .chain(p.serve_args.iter().cloned())
    .collect();
    let orch = match LocalOrchestrator::start(
        LocalConfig {
            service: SERVICE.into(),
            program: program.to_path_buf(),
            listen,
            serve_args,
            stop_timeout: Duration::from_secs(5),
            log_filter: None,
        },
        p.initial_replicas,
    )
    .await
    {
        Ok(o) => Arc::new(o),
        Err(e) => {
            let _ = mon.finish(&[], 0.0, 0.0).await;
            return Err(anyhow::anyhow!("starting the replicas: {e}"));
        }
    };
    let scaler = if role == Role::Scaled {
        let started = async {
            let cfg = crate::scaler::controller::ControllerConfig::one_service(
                SERVICE,
                crate::orchestrator::Bounds {
                    min: p.initial_replicas,
                    max: p.max_replicas,
                    step: 1,
                },
                // Scale-up alone is measured: no scale-down during a run.
                crate::scaler::policy::PolicyConfig::step(Duration::from_secs(p.cooldown_s), false),
            );
            let o: Arc<dyn Orchestrator> = orch.clone();
            crate::scaler::Server::start(([127, 0, 0, 1], 0).into(), None, o, cfg).await
        }
        .await;
        let started = match started {
            Ok(s) => {
                let url = format!("http://{}/alert", s.local_addr());
                match mon.set_webhook(Some(&url)).await {
                    Ok(()) => Ok(s),
                    Err(e) => {
                        let _ = s.shutdown().await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e.context("starting the scaler")),
        };
        match started {
            Ok(s) => Some(s),
            Err(e) => {
                orch.shutdown().await;
                let _ = mon.finish(&[], 0.0, 0.0).await;
                return Err(e);
            }
        }
    } else {
        None
    };

    bar.set_message(format!("{label}: load"));
    let outcome = drive_load(p, listen, &orch, cancel, bar).await;

    // Teardown, whatever happened.
    bar.set_message(format!("{label}: teardown"));
    let events = match scaler {
        Some(s) => {
            let ev = s.controller().events();
            if let Err(e) = s.shutdown().await {
                tracing::warn!("scaler shutdown: {e:#}");
            }
            ev
        }
        None => Vec::new(),
    };
    // Replicas first, so they can delete their groups from the monitor's receiver.
    orch.shutdown().await;
    let (start, end, load, summary) = match outcome {
        Ok(o) if !cancel.is_cancelled() => o,
        other => {
            let _ = mon.finish(&[], 0.0, 0.0).await;
            other?;
            return Err(crate::Interrupted.into());
        }
    };
    let (t0, t1) = (unix_s(start).round(), unix_s(end).round());
    let rec = mon.finish(&gauges, t0, t1).await?;
    let _ = std::fs::remove_dir_all(&data);

    // Store the run like an export.
    bar.set_message(format!("{label}: writing"));
    for spec in m::METRICS.iter().filter(|s| s.kind == m::Kind::Gauge) {
        let raw: Vec<_> = rec
            .series
            .iter()
            .filter(|(l, _)| l.get("__name__").map(String::as_str) == Some(spec.query))
            .map(|(l, pts)| record::series(l.clone(), pts))
            .collect();
        if !raw.is_empty() {
            record::write_export(dir, spec.readable, raw)?;
        }
    }
    let testid = crate::load::DEFAULT_TESTID;
    for (name, pts) in &load.points {
        let mut labels = std::collections::BTreeMap::new();
        if *name == m::NODE_CPU {
            labels.insert("instance".to_string(), "localhost".to_string());
        } else if *name == record::REPLICAS {
            labels.insert("service".to_string(), SERVICE.to_string());
        } else {
            labels.insert("testid".to_string(), testid.to_string());
        }
        record::write_export(dir, name, vec![record::series(labels, pts)])?;
    }
    let scale_events: Vec<ScaleEvent> = events
        .iter()
        .filter(|e| e.decision.action != crate::scaler::policy::Action::None)
        .map(|e| ScaleEvent {
            at: e.time,
            from: Some(e.decision.from),
            to: Some(e.decision.to),
        })
        .collect();
    if !scale_events.is_empty() {
        // `alert_endpoint_call`: scale actions so far, from the first one on.
        let ticks: Vec<f64> = load
            .points
            .get(m::TOTAL_REQUESTS)
            .map(|v| v.iter().map(|p| p.0).collect())
            .unwrap_or_default();
        let pts: Vec<(f64, f64)> = ticks
            .iter()
            .map(|&t| {
                let n = scale_events.iter().filter(|e| unix_s(e.at) <= t).count();
                (t, n as f64)
            })
            .filter(|p| p.1 > 0.0)
            .collect();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("__name__".to_string(), "alert_endpoint_call".to_string());
        labels.insert("service".to_string(), SERVICE.to_string());
        record::write_export(dir, m::SCALE_EVENT, vec![record::series(labels, &pts)])?;
    }
    let alerts = serde_json::json!({
        "alerts": rec.alerts,
        "webhook_failures": rec.webhook_failures,
        "scaler_events": events,
    });
    let meta =
        record::write_run_files(dir, alerts, &summary, role, pair, start, end, scale_events)?;
    // Written last: a run folder with run.json is a finished run.
    meta.write(dir)?;
    Ok(())
}

type LoadOutcome = (
    DateTime<Utc>,
    DateTime<Utc>,
    record::LoadSeries,
    crate::load::Summary,
);

/// Replicas running now, read through the orchestrator seam (None if it cannot tell).
async fn replicas(orch: &dyn Orchestrator) -> Option<usize> {
    orch.status(SERVICE).await.ok().map(|s| s.replicas as usize)
}

/// Run the load against the replicas, recording each second.
async fn drive_load(
    p: &Profile,
    listen: std::net::SocketAddr,
    orch: &Arc<LocalOrchestrator>,
    cancel: &CancellationToken,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<LoadOutcome> {
    let url = format!("http://{listen}/test-threadpool");
    let mut config = crate::load::Plan::config_for(&url)?;
    config.timeout = Duration::from_secs(p.timeout_s);
    config.graceful_stop = Duration::from_secs(p.graceful_stop_s);
    config.pre_allocated_vus = p.pre_allocated_vus;
    config.max_vus = p.max_vus;
    let plan = crate::load::Plan::new(p.schedule()?, config)?;
    let runner = crate::load::Runner::new(plan.schedule, plan.config)?;
    let live = runner.live();
    let start = Utc::now();
    let mut running = tokio::spawn(runner.run(cancel.child_token()));
    let mut series = record::LoadSeries::default();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let report = loop {
        tokio::select! {
            r = &mut running => break r.context("the load generator panicked")?,
            _ = ticker.tick() => {
                let ts = (unix_s(Utc::now())).round();
                series.tick(ts, &live, replicas(orch.as_ref()).await);
                bar.inc(1);
            }
        }
    };
    let end = Utc::now();
    series.tick(unix_s(end).round(), &live, replicas(orch.as_ref()).await);
    Ok((start, end, series, report.summary))
}
