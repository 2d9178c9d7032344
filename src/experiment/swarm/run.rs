//! `--backend swarm` behind the runner's [`Backend`] seam: each run deploys the stack of
//! `deploy/` under its own name (the scaler in it for scaled runs only), runs `starvation load`
//! in a container on the stack's network with remote write to the stack's Prometheus (like the
//! paper's k6), reads the replica count through the Engine API, and removes the stack.

use anyhow::Context as _;
use chrono::Utc;
use futures::future::BoxFuture;
use std::time::Duration;

use super::deployment::Deployment;
use super::engine::Engine;
use super::placement::PlacementRecorder;
use super::{SwarmOpts, ready, stack};
use crate::experiment::runner::{Backend, LoadEnd, RunContext, RunningLoad};
use crate::orchestrator::Orchestrator as _;
use crate::results::placement::Placement;
use crate::scaler::controller::Event;

/// How often the load container's state is read.
const LOAD_POLL: Duration = Duration::from_millis(500);

/// The swarm backend for one run.
pub struct SwarmBackend {
    opts: SwarmOpts,
    http: reqwest::Client,
    /// Set by `deploy` (the Engine connection and everything the run created).
    dep: Option<Deployment>,
    /// The stack holds a scaler (scaled runs).
    scaler: bool,
    /// Which node runs what, noted each second of the load.
    placement: Option<PlacementRecorder>,
}

impl SwarmBackend {
    pub fn new(opts: &SwarmOpts) -> anyhow::Result<SwarmBackend> {
        Ok(SwarmBackend {
            opts: opts.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            dep: None,
            scaler: false,
            placement: None,
        })
    }

    fn dep(&mut self) -> anyhow::Result<&mut Deployment> {
        self.dep.as_mut().context("the stack is not deployed")
    }
}

/// Unique per run: removal of the previous stack is asynchronous, and Docker configs are
/// immutable, so names are never reused.
fn stack_name(run: &RunContext<'_>) -> String {
    format!(
        "sv{}{}{}",
        run.pair,
        &run.role.as_str()[..1],
        Utc::now().timestamp_millis() % 100_000_000
    )
}

impl Backend for SwarmBackend {
    fn service(&self) -> String {
        match &self.dep {
            Some(d) => format!("{}_webserver", d.stack),
            None => "webserver".into(),
        }
    }

    fn deploy<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
        _pushgateway: Option<String>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let engine = Engine::connect().await?;
            let dep = self.dep.insert(Deployment::new(engine, stack_name(run)));
            let stack = dep.stack.clone();
            self.placement = Some(PlacementRecorder::new(
                &stack,
                &format!("{stack}_webserver"),
            ));
            run.say(&format!("deploying stack {stack}"));
            let master_role = dep.place().await?;
            dep.ensure_secret().await?;
            let p = run.profile();
            let kernel = stack::Kernel::detect();
            if !kernel.esp {
                run.say(
                    "this kernel has no IPsec ESP with AES-GCM (CONFIG_INET_ESP, CONFIG_CRYPTO_GCM): \
                     the run's overlay networks are not encrypted",
                );
            }
            let compose = stack::write_stack(
                p,
                run.state.workload,
                &run.state.rules,
                run.role,
                &run.dir.join("stack"),
                kernel,
            )?;
            let env = [
                ("TAG", self.opts.tag()),
                ("STACK_NAME", &stack),
                ("MASTER_ROLE", master_role),
                // The stack's config names carry it; the stack name is new for every run.
                ("CONFIG_VERSION", &stack),
            ];
            // Set first: a failed deploy may still have created part of the stack.
            dep.deployed = true;
            stack::deploy(compose.path(), &stack, &env).await?;
            run.say(&format!("waiting for stack {stack}"));
            ready::wait_ready(
                &self.http,
                &self.opts,
                &stack,
                p.initial_replicas,
                run.cancel,
            )
            .await
        })
    }

    /// The stack's scaler was deployed with the stack (its Alertmanager notifies it): wait
    /// until it answers.
    fn start_scaler<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async move {
            let stack = self.dep()?.stack.clone();
            ready::wait_scaler(&self.http, &self.opts, &stack, run.cancel).await?;
            self.scaler = true;
            Ok(None)
        })
    }

    fn start_load<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<RunningLoad>> {
        Box::pin(async move {
            let p = run.profile();
            let image = format!("starvation:{}", self.opts.tag());
            let dep = self.dep()?;
            let name = format!("{}-load", dep.stack);
            let network = format!("{}_starvation", dep.stack);
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
            dep.load_container = Some(name.clone());
            dep.engine
                .run_container(&name, &image, &network, &args)
                .await?;
            let engine = dep.engine.clone();
            Ok(RunningLoad {
                done: Box::pin(wait_load(engine, name)),
                recorder: None,
            })
        })
    }

    fn replicas(&self) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async move {
            let service = self.service();
            // The scaler's view of the run's Engine connection (a clone of it, no new socket).
            let orch = self.dep.as_ref()?.engine.orchestrator();
            match orch.status(&service).await {
                Ok(s) => Some(s.replicas),
                Err(e) => {
                    tracing::warn!("replicas of {service}: {e}");
                    None
                }
            }
        })
    }

    fn observe(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let (Some(dep), Some(rec)) = (&self.dep, &mut self.placement)
                && let Err(e) = rec.observe(&dep.engine).await
            {
                tracing::warn!("where the replicas run: {e:#}");
            }
        })
    }

    fn placement(&mut self) -> BoxFuture<'_, Option<Placement>> {
        Box::pin(async move {
            let (dep, rec) = (self.dep.as_ref()?, self.placement.as_mut()?);
            match rec.finish(&dep.engine).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("which node ran what: {e:#}");
                    None
                }
            }
        })
    }

    /// The stack's scaler goes with the stack; its decisions come from its `/events`.
    fn stop_scaler(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<Event>>> {
        Box::pin(async move {
            if !self.scaler {
                return Ok(Vec::new());
            }
            let url = self.opts.url(stack::SCALER_PORT) + "/events";
            let r = self
                .http
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .with_context(|| format!("the scaler's decisions: no answer from {url}"))?;
            let body: EventsPage = r
                .json()
                .await
                .with_context(|| format!("the scaler's decisions at {url}: unreadable"))?;
            Ok(body.events)
        })
    }

    fn teardown(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            match self.dep.as_mut() {
                Some(d) => d.teardown().await,
                None => Ok(()),
            }
        })
    }
}

/// `GET /events` of the scaler.
#[derive(serde::Deserialize)]
struct EventsPage {
    events: Vec<Event>,
}

/// Until the load container exits: its window (the container's start and finish) and the JSON
/// summary it printed.
async fn wait_load(engine: Engine, name: String) -> anyhow::Result<LoadEnd> {
    let exit = loop {
        if let Some(code) = engine.exit_code(&name).await? {
            break code;
        }
        tokio::time::sleep(LOAD_POLL).await;
    };
    let (start, end) = engine.container_times(&name).await?;
    let stdout = engine.container_stdout(&name).await?;
    anyhow::ensure!(
        exit == 0,
        "the load container exited with {exit}; its summary/log:\n{stdout}"
    );
    let summary = serde_json::from_str(stdout.trim())
        .with_context(|| format!("the load's JSON summary is unreadable:\n{stdout}"))?;
    Ok(LoadEnd {
        start,
        end,
        summary,
    })
}
