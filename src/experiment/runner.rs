//! One run of an experiment, wherever it runs: the sequence start monitor → deploy → scaler
//! (scaled runs) → load → collect → teardown, over two seams. [`Backend`] is where the replicas
//! run (local processes, a Swarm stack); [`Monitor`] is who watches them (the embedded monitor,
//! local Prometheus processes, the stack's Prometheus). The runner knows neither: it drives the
//! sequence, samples the replica count each second, stops on Ctrl-C, and on every path tears
//! down what was started. What it returns, [`RunRecord`], is written by one writer
//! ([`record::write_run`]) whatever the combination.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::record::{self, LoadRecorder, RunRecord};
use super::{Profile, State};
use crate::monitor::{Monitor, unix_s};
use crate::results::metrics::{self as m, Kind, MetricSpec};
use crate::results::placement::Placement;
use crate::results::runmeta::Role;
use crate::scaler::controller::Event;

/// What one run needs to know: the experiment's plan, which run this is, where it writes,
/// the Ctrl-C token and the progress bar.
pub struct RunContext<'a> {
    pub state: &'a State,
    pub pair: u32,
    pub role: Role,
    pub dir: &'a Path,
    pub cancel: &'a CancellationToken,
    pub bar: &'a indicatif::ProgressBar,
    /// `pair 1/3 scaled`, the progress bar's prefix.
    pub label: &'a str,
}

impl RunContext<'_> {
    pub fn profile(&self) -> &Profile {
        &self.state.profile
    }

    /// Show what the run does now.
    pub fn say(&self, what: &str) {
        self.bar.set_message(format!("{}: {what}", self.label));
    }
}

/// The load generator of a run, once started.
pub struct RunningLoad {
    /// Resolves when the load has finished (after its graceful stop).
    pub done: BoxFuture<'static, anyhow::Result<LoadEnd>>,
    /// The per-second recorder of a load generator in this process; None when the load's
    /// metrics reach the monitor instead (remote write into the stack's Prometheus).
    pub recorder: Option<LoadRecorder>,
}

/// What a finished load reports.
pub struct LoadEnd {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: crate::load::Summary,
}

/// Where the replicas run. Every method may be called at most once per run, in this order;
/// `teardown` is called on every path and must remove whatever the others created.
pub trait Backend: Send {
    /// The service whose replicas are counted (the `service` label of `Replicas`).
    fn service(&self) -> String;
    /// Fresh replicas for this run (fresh pool state and data), pushing their gauges to
    /// `pushgateway` where the monitor gives one.
    fn deploy<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
        pushgateway: Option<String>,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Scaled runs: start the scaler; the URL the monitor must notify, if the runner wires it
    /// (None: the backend wired it, e.g. the stack's Alertmanager).
    fn start_scaler<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>>;
    /// Start the profile's load against the replicas.
    fn start_load<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<RunningLoad>>;
    /// Replicas running now (None if it cannot tell this second).
    fn replicas(&self) -> BoxFuture<'_, Option<u32>>;
    /// Each second of the load, after `replicas`: note where the replicas run, for backends
    /// that place them on nodes (the others do nothing).
    fn observe(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// After the load, before the scaler stops: which node ran what (None when everything
    /// runs on this machine).
    fn placement(&mut self) -> BoxFuture<'_, Option<Placement>> {
        Box::pin(async { None })
    }
    /// Stop the scaler, if one runs; the decisions it made.
    fn stop_scaler(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<Event>>>;
    /// Remove everything this run created (idempotent).
    fn teardown(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// Run one run on `backend`, watched by `monitor`. Whatever happens (an error in any phase,
/// Ctrl-C), the backend is torn down and the monitor stopped before this returns; an
/// interruption is `Err(Interrupted)`.
pub async fn run_one(
    run: &RunContext<'_>,
    backend: &mut dyn Backend,
    monitor: &mut dyn Monitor,
) -> anyhow::Result<RunRecord> {
    let res = sequence(run, backend, monitor).await;
    run.say("teardown");
    let removed = backend.teardown().await;
    monitor.stop().await;
    // Ctrl-C also reaches child processes (a docker CLI, a replica) running at that moment:
    // whatever failed then is the interruption.
    if run.cancel.is_cancelled() {
        if let Err(e) = removed {
            tracing::error!("{e:#}");
        }
        return Err(crate::Interrupted.into());
    }
    match (res, removed) {
        (Ok(rec), Ok(())) => Ok(rec),
        (Err(e), Err(t)) => Err(e.context(format!("and then, tearing down: {t:#}"))),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
    }
}

/// `fut`, then stop if Ctrl-C came meanwhile. Phases run to their end (a half-done deployment
/// is harder to tear down than a whole one); the long waits inside them watch the token.
async fn phase<T>(
    run: &RunContext<'_>,
    what: &str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    run.say(what);
    let v = fut.await?;
    if run.cancel.is_cancelled() {
        return Err(crate::Interrupted.into());
    }
    Ok(v)
}

async fn sequence(
    run: &RunContext<'_>,
    backend: &mut dyn Backend,
    monitor: &mut dyn Monitor,
) -> anyhow::Result<RunRecord> {
    phase(run, "starting the monitor", monitor.start()).await?;
    let pushgateway = monitor.pushgateway_url();
    phase(run, "deploying", backend.deploy(run, pushgateway)).await?;
    if run.role == Role::Scaled {
        let hook = phase(run, "starting the scaler", backend.start_scaler(run)).await?;
        if let Some(url) = hook {
            phase(run, "wiring the scaler", monitor.set_webhook(&url)).await?;
        }
    }
    let load = phase(run, "starting the load", backend.start_load(run)).await?;
    run.say("load");
    let (end, recorder, replicas) = drive(run, &mut *backend, load).await?;
    run.say("reading the placement");
    let placement = backend.placement().await;
    let events = phase(run, "stopping the scaler", backend.stop_scaler()).await?;
    let specs = monitor_specs(recorder.is_some());
    let rec = phase(
        run,
        "collecting",
        monitor.collect(&specs, end.start, end.end),
    )
    .await?;
    let service = backend.service();
    Ok(RunRecord::assemble(
        run,
        record::Collected {
            load: end,
            recorder,
            replicas,
            service,
            monitor: rec,
            source: monitor.describe(),
            events,
            placement,
        },
    ))
}

/// Until the load ends: every second, the recorder's tick and the replica count.
async fn drive(
    run: &RunContext<'_>,
    backend: &mut dyn Backend,
    load: RunningLoad,
) -> anyhow::Result<(LoadEnd, Option<LoadRecorder>, Vec<(f64, f64)>)> {
    let RunningLoad {
        mut done,
        mut recorder,
    } = load;
    let mut replicas = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            _ = run.cancel.cancelled() => return Err(crate::Interrupted.into()),
            r = &mut done => break r?,
            _ = ticker.tick() => {
                sample(backend, &mut replicas, &mut recorder).await;
                run.bar.inc(1);
            }
        }
    };
    sample(backend, &mut replicas, &mut recorder).await;
    Ok((end, recorder, replicas))
}

/// One second: the recorder's tick, the replica count and where the replicas run.
async fn sample(
    backend: &mut dyn Backend,
    replicas: &mut Vec<(f64, f64)>,
    recorder: &mut Option<LoadRecorder>,
) {
    let ts = unix_s(Utc::now()).round();
    if let Some(r) = recorder {
        r.tick(ts);
    }
    if let Some(n) = backend.replicas().await {
        record::put(replicas, ts, n as f64);
    }
    backend.observe().await;
}

/// What the monitor is asked for: every export except the scale events (from the scaler's
/// own decisions) and what an in-process load recorder measured itself.
fn monitor_specs(recorded_here: bool) -> Vec<MetricSpec> {
    m::METRICS
        .iter()
        .filter(|s| s.kind != Kind::ScaleEvent)
        .filter(|s| !(recorded_here && LoadRecorder::MEASURES.contains(&s.readable)))
        .copied()
        .collect()
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
