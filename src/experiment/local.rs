//! `--backend local`: the replicas are child processes (`starvation serve`, or the .NET
//! workload with `--workload dotnet`) sharing one loopback port, started and scaled by the local orchestrator; the scaler runs in this process and the
//! load generator too, its counters recorded each second by a [`LoadRecorder`].

use anyhow::Context as _;
use chrono::Utc;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::SERVICE;
use super::record::LoadRecorder;
use super::runner::{Backend, LoadEnd, RunContext, RunningLoad};
use super::{LoadKind, WorkloadKind};
use crate::orchestrator::local::{LocalConfig, LocalOrchestrator, ReplicaProgram};
use crate::orchestrator::{Bounds, Orchestrator};
use crate::scaler::controller::{ControllerConfig, Event};
use crate::scaler::policy::PolicyConfig;

/// What every replica of this experiment runs: the .NET workload `sut` (found and built when
/// the experiment was planned) seeing `processors` processors, else `starvation serve` (this
/// executable).
pub fn replica_program(
    sut: Option<&crate::dotnet::Sut>,
    processors: u32,
) -> anyhow::Result<ReplicaProgram> {
    Ok(match sut {
        None => ReplicaProgram::serve(
            std::env::current_exe().context("locating the starvation executable")?,
        ),
        Some(sut) => {
            let (path, lead_args) = sut.command();
            ReplicaProgram {
                path,
                lead_args,
                env: crate::dotnet::Sut::env(processors),
            }
        }
    })
}

/// Local replicas for one run.
pub struct LocalBackend {
    /// What the replicas run.
    program: ReplicaProgram,
    deployed: Option<Deployed>,
    scaler: Option<crate::scaler::Server>,
}

struct Deployed {
    listen: SocketAddr,
    data: PathBuf,
    orchestrator: Arc<dyn Orchestrator>,
}

impl LocalBackend {
    pub fn new(program: ReplicaProgram) -> LocalBackend {
        LocalBackend {
            program,
            deployed: None,
            scaler: None,
        }
    }

    fn deployed(&self) -> anyhow::Result<&Deployed> {
        self.deployed
            .as_ref()
            .context("the local replicas are not deployed")
    }
}

impl Backend for LocalBackend {
    fn service(&self) -> String {
        SERVICE.into()
    }

    fn deploy<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
        pushgateway: Option<String>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let p = run.profile();
            let pushgateway =
                pushgateway.context("the local backend needs a monitor with a Pushgateway")?;
            let port = crate::util::free_loopback_port()?;
            let listen: SocketAddr = ([127, 0, 0, 1], port).into();
            let data = run.dir.join("data");
            let mut serve_args: Vec<String> = vec![
                "--pushgateway".into(),
                pushgateway,
                "--push-interval".into(),
                "1s".into(),
            ];
            match run.state.workload {
                WorkloadKind::Model => {
                    serve_args.extend(["--data-dir".into(), data.display().to_string()]);
                    serve_args.extend(p.replica_args());
                }
                // No store: no database driver can be installed for it (docs/dotnet.md).
                WorkloadKind::Dotnet => serve_args.extend(p.dotnet_args()),
            }
            let cfg = LocalConfig {
                service: SERVICE.into(),
                program: self.program.clone(),
                listen,
                serve_args,
                stop_timeout: Duration::from_secs(5),
                log_filter: None,
            };
            let orch = LocalOrchestrator::start(cfg, p.initial_replicas)
                .await
                .map_err(|e| anyhow::anyhow!("starting the replicas: {e}"))?;
            self.deployed = Some(Deployed {
                listen,
                data,
                orchestrator: Arc::new(orch),
            });
            Ok(())
        })
    }

    fn start_scaler<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async move {
            let p = run.profile();
            let orch = self.deployed()?.orchestrator.clone();
            let cfg = ControllerConfig::one_service(
                SERVICE,
                Bounds {
                    min: p.initial_replicas,
                    max: p.max_replicas,
                    step: 1,
                },
                // Scale-up alone is measured: no scale-down during a run.
                PolicyConfig {
                    flap_window: Duration::from_secs(p.flap_window_s),
                    ..PolicyConfig::step(Duration::from_secs(p.cooldown_s), false)
                },
            );
            let s = crate::scaler::Server::start(
                ([127, 0, 0, 1], 0).into(),
                Default::default(),
                Default::default(),
                orch,
                cfg,
            )
            .await
            .context("starting the scaler")?;
            let url = format!("http://{}/alert", s.local_addr());
            self.scaler = Some(s);
            Ok(Some(url))
        })
    }

    fn start_load<'a>(
        &'a mut self,
        run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<RunningLoad>> {
        Box::pin(async move {
            let p = run.profile();
            let url = format!("http://{}/test-threadpool", self.deployed()?.listen);
            let mut config = crate::load::Plan::config_for(&url)?;
            config.timeout = Duration::from_secs(p.timeout_s);
            config.graceful_stop = Duration::from_secs(p.graceful_stop_s);
            config.pre_allocated_vus = p.pre_allocated_vus;
            config.max_vus = p.max_vus;
            let plan = crate::load::Plan::new(p.schedule()?, config)?;
            if run.state.load == LoadKind::K6 {
                return start_k6(&plan);
            }
            let runner = crate::load::Runner::new(plan.schedule, plan.config)?;
            let recorder = LoadRecorder::new(runner.live());
            let start = Utc::now();
            let running = tokio::spawn(runner.run(run.cancel.child_token()));
            let done = Box::pin(async move {
                let report = running.await.context("the load generator panicked")?;
                Ok(LoadEnd {
                    start,
                    end: Utc::now(),
                    summary: report.summary,
                })
            });
            Ok(RunningLoad {
                done,
                recorder: Some(recorder),
            })
        })
    }

    fn replicas(&self) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async move {
            let orch = &self.deployed.as_ref()?.orchestrator;
            orch.status(SERVICE).await.ok().map(|s| s.replicas)
        })
    }

    fn stop_scaler(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<Event>>> {
        Box::pin(async move {
            let Some(s) = self.scaler.take() else {
                return Ok(Vec::new());
            };
            let events = s.controller().events();
            s.shutdown().await.context("stopping the scaler")?;
            Ok(events)
        })
    }

    /// The scaler first (it scales through the replicas' orchestrator), then the replicas,
    /// then their data.
    fn teardown(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(s) = self.scaler.take()
                && let Err(e) = s.shutdown().await
            {
                tracing::warn!("scaler shutdown: {e:#}");
            }
            if let Some(d) = self.deployed.take() {
                d.orchestrator.shutdown().await;
                let _ = std::fs::remove_dir_all(&d.data);
            }
            Ok(())
        })
    }
}

/// The real k6 on `plan`; its JSON output, read each second, feeds the recorder. Its files live
/// in a temporary folder that goes with the recorder (k6 is killed if the run is dropped
/// early): the recorder's last tick, after k6 has exited, reads k6's final samples from it.
fn start_k6(plan: &crate::load::Plan) -> anyhow::Result<RunningLoad> {
    let dir = tempfile::Builder::new()
        .prefix("starvation-k6-")
        .tempdir()
        .context("a folder for k6's output")?;
    let k6 = crate::load::k6::K6Run::spawn(plan, dir.path())?;
    let mut tail = k6.tail();
    let recorder = LoadRecorder::from_source(move || {
        let _output = &dir;
        tail.snapshot()
    });
    let start = Utc::now();
    let done = Box::pin(async move {
        let summary = k6.wait().await?;
        Ok(LoadEnd {
            start,
            end: Utc::now(),
            summary,
        })
    });
    Ok(RunningLoad {
        done,
        recorder: Some(recorder),
    })
}
