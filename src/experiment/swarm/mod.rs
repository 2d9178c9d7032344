//! `starvation experiment --backend swarm`: each run deploys the stack of `deploy/` (as built
//! into this binary) under its own name, runs `starvation load` in a container on the stack's
//! network with remote write to the stack's Prometheus (like the paper's k6), exports from that
//! Prometheus, and removes the stack, waiting until nothing of it is left. See
//! `docs/experiment.md`.
//!
//! Every Engine call goes through the Engine API ([`engine`]); stacks are a docker CLI feature
//! (there is no Engine API for `docker stack deploy`), so only deploying and removing the stack
//! runs the CLI ([`stack`]).

mod deployment;
pub mod engine;
mod measure;
pub mod stack;

use anyhow::Context as _;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{State, record};
use crate::orchestrator::Orchestrator as _;
use crate::results::runmeta::{Role, RunMeta};
use deployment::Deployment;
use engine::Engine;
pub use stack::{
    ALERTMANAGER_PORT, IMAGES, PROMETHEUS_PORT, PUSHGATEWAY_PORT, SCALER_PORT, SECRET,
    kernel_has_ipvs, use_dnsrr,
};

/// The swarm backend's flags. Saved in `experiment.json`; on `--resume` a flag given again
/// replaces the saved value.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct SwarmOpts {
    /// --backend swarm: tag of the stack's images (starvation:TAG, starvation/prometheus:TAG,
    /// ...), as built by `deploy/build-images.sh --all --tag starvation:TAG`. Default dev.
    #[arg(long = "swarm-tag", value_name = "TAG", env = "STARVATION_SWARM_TAG")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// --backend swarm: the host at which this machine reaches the stack's published ports
    /// (Prometheus 9090, Pushgateway 9091, Alertmanager 9093, scaler 5001). Default 127.0.0.1
    /// (this machine is the manager the stack publishes on).
    #[arg(
        long = "swarm-host",
        value_name = "HOST",
        env = "STARVATION_SWARM_HOST"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl SwarmOpts {
    pub fn tag(&self) -> &str {
        self.tag.as_deref().unwrap_or("dev")
    }

    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("127.0.0.1")
    }

    /// The saved flags, each replaced by the one given on `--resume` if any.
    pub fn resumed(&self, given: &SwarmOpts) -> SwarmOpts {
        SwarmOpts {
            tag: given.tag.clone().or_else(|| self.tag.clone()),
            host: given.host.clone().or_else(|| self.host.clone()),
        }
    }

    fn url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.host())
    }
}

/// Everything the swarm backend needs, checked before anything is created: the docker CLI (for
/// stacks) and the Engine, an active Swarm whose node this is a manager, the five images, and
/// the stack's host ports free.
pub async fn preflight(opts: &SwarmOpts) -> anyhow::Result<()> {
    anyhow::ensure!(
        stack::cli_on_path(),
        "--backend swarm needs the docker CLI to deploy stacks (there is no Engine API for \
         them), and there is no `docker` on PATH; install it (`apt-get install docker.io`)"
    );
    let engine = Engine::connect().await?;
    engine.manager_node().await?;
    let images: Vec<String> = IMAGES
        .iter()
        .map(|i| format!("{i}:{}", opts.tag()))
        .collect();
    let missing = engine.missing_images(&images).await?;
    if !missing.is_empty() {
        anyhow::bail!(
            "--backend swarm: image(s) {} not found on this node (no registry is used: nothing is \
             pulled); build them with:\n    deploy/build-images.sh --all --tag starvation:{}\n\
             (or choose the tag you built with --swarm-tag)",
            missing.join(", "),
            opts.tag()
        );
    }
    let busy: Vec<String> = stack::host_ports(&stack::stack_doc(kernel_has_ipvs())?)
        .into_iter()
        .filter(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_err())
        .map(|p| p.to_string())
        .collect();
    anyhow::ensure!(
        busy.is_empty(),
        "--backend swarm: the stack publishes port(s) {} on this machine, but they are in use \
         (another stack? see `docker stack ls`, `ss -ltnp`); free them first",
        busy.join(", ")
    );
    Ok(())
}

/// One run on a freshly deployed stack. The stack is removed before this returns, whatever
/// happened (errors, Ctrl-C).
pub async fn run_one(
    st: &State,
    pair: u32,
    role: Role,
    dir: &Path,
    cancel: &CancellationToken,
    bar: &indicatif::ProgressBar,
    label: &str,
) -> anyhow::Result<()> {
    // Unique per run: removal of the previous stack is asynchronous, and Docker configs are
    // immutable, so names are never reused.
    let stack = format!(
        "sv{pair}{}{}",
        &role.as_str()[..1],
        Utc::now().timestamp_millis() % 100_000_000
    );
    let mut dep = Deployment::new(Engine::connect().await?, stack);
    let res = deploy_and_measure(st, pair, role, dir, cancel, bar, label, &mut dep).await;
    bar.set_message(format!("{label}: removing stack {}", dep.stack));
    let removed = dep.teardown().await;
    // Ctrl-C also reaches a docker CLI (stack deploy/rm) running at that moment, so whatever
    // failed then is the interruption.
    if cancel.is_cancelled() {
        if let Err(t) = removed {
            tracing::error!("{t:#}");
        }
        return Err(crate::Interrupted.into());
    }
    let meta = match (res, removed) {
        (Ok(meta), Ok(())) => meta,
        (Err(e), Err(t)) => return Err(e.context(format!("and then: {t:#}"))),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
    };
    // Written last: a run folder with run.json is a finished run.
    meta.write(dir)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn deploy_and_measure(
    st: &State,
    pair: u32,
    role: Role,
    dir: &Path,
    cancel: &CancellationToken,
    bar: &indicatif::ProgressBar,
    label: &str,
    dep: &mut Deployment,
) -> anyhow::Result<RunMeta> {
    let opts = &st.swarm;
    let p = &st.profile;
    let stack = dep.stack.clone();
    let service = format!("{stack}_webserver");
    bar.set_message(format!("{label}: deploying {stack}"));
    let master_role = dep.place().await?;
    dep.ensure_secret().await?;
    let ipvs = kernel_has_ipvs();
    let compose = stack::write_stack(p, &st.rules, role, &dir.join("stack"), ipvs)?;
    let env = [
        ("TAG", opts.tag()),
        ("STACK_NAME", &stack),
        ("MASTER_ROLE", master_role),
    ];
    let deployed = stack::deploy(&compose, &stack, &env).await;
    // Set before checking: a failed deploy may still have created part of the stack.
    dep.deployed = true;
    deployed?;

    bar.set_message(format!("{label}: waiting for {stack}"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    measure::wait_ready(&http, opts, &stack, role, p.initial_replicas, cancel).await?;

    bar.set_message(format!("{label}: load"));
    let load = format!("{stack}-load");
    let network = format!("{stack}_starvation");
    let image = format!("starvation:{}", opts.tag());
    let args: Vec<String> = [
        "load",
        "--url",
        "http://webserver:5000/test-threadpool",
        "--remote-write",
        "http://prometheus:9090/api/v1/write",
        "--format",
        "json",
        "--no-progress",
        "--stages",
        &p.stages,
    ]
    .map(String::from)
    .into_iter()
    .chain([
        format!("--start-rate={}", p.start_rate),
        format!("--timeout={}s", p.timeout_s),
        format!("--graceful-stop={}s", p.graceful_stop_s),
        format!("--pre-allocated-vus={}", p.pre_allocated_vus),
        format!("--max-vus={}", p.max_vus),
    ])
    .collect();
    dep.load_container = Some(load.clone());
    dep.engine
        .run_container(&load, &image, &network, &args)
        .await?;

    // Every second until the load exits: the replica count and the progress bar.
    let swarm = dep.engine.orchestrator();
    let mut replicas: Vec<(f64, f64)> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let exit = loop {
        tokio::select! {
            _ = cancel.cancelled() => return Err(crate::Interrupted.into()),
            _ = ticker.tick() => {}
        }
        let now = (Utc::now().timestamp_millis() as f64 / 1000.0).round();
        match swarm.status(&service).await {
            Ok(s) => replicas.push((now, s.replicas as f64)),
            Err(e) => tracing::warn!("replicas of {service}: {e}"),
        }
        bar.inc(1);
        if let Some(code) = dep.engine.exit_code(&load).await? {
            break code;
        }
    };
    let (start, end) = dep.engine.container_times(&load).await?;
    let stdout = dep.engine.container_stdout(&load).await?;
    anyhow::ensure!(
        exit == 0,
        "the load container exited with {exit}; its summary/log:\n{stdout}"
    );
    let summary: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("the load's JSON summary is unreadable:\n{stdout}"))?;

    // The last remote write lands at the end; give Prometheus a few scrapes and evaluations.
    bar.set_message(format!("{label}: exporting"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let prometheus = opts.url(PROMETHEUS_PORT);
    measure::export(&prometheus, start, end, dir).await?;
    record::write_export(
        dir,
        record::REPLICAS,
        vec![record::series(
            BTreeMap::from([("service".to_string(), service.clone())]),
            &replicas,
        )],
    )?;
    let scaler_events = match role {
        Role::Scaled => {
            let url = opts.url(SCALER_PORT) + "/events";
            let v = measure::get_json(&http, &url)
                .await
                .with_context(|| format!("the scaler's decisions: no answer from {url}"))?;
            v["events"].as_array().cloned().unwrap_or_default()
        }
        Role::Baseline => Vec::new(),
    };
    let alerts = crate::monitor::prometheus::read_alerts(
        &http,
        &prometheus,
        start.timestamp() as f64,
        end.timestamp() as f64 + 2.0,
    )
    .await?;
    let scale = measure::scale_events(&scaler_events);
    let alerts = json!({
        "source": format!("Prometheus ALERTS of stack {stack}, 1 s resolution"),
        "alerts": alerts,
        "scaler_events": scaler_events,
    });
    super::record::write_run_files(dir, alerts, &summary, role, pair, start, end, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_keeps_saved_flags_unless_given_again() {
        let saved = SwarmOpts {
            tag: Some("a".into()),
            host: None,
        };
        let given = SwarmOpts {
            tag: None,
            host: Some("10.0.0.1".into()),
        };
        let r = saved.resumed(&given);
        assert_eq!((r.tag(), r.host()), ("a", "10.0.0.1"));
        assert_eq!(SwarmOpts::default().tag(), "dev");
    }
}
