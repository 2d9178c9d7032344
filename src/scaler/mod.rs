//! `starvation alertapi`: the scaler Alertmanager calls. It scales a service up on a new firing
//! alert, down after a quiet period, within bounds, one decision at a time per service, through
//! an [`Orchestrator`](crate::orchestrator::Orchestrator) (Docker Swarm or local processes).

pub mod alert;
pub mod behavior;
pub mod capacity;
pub mod controller;
pub mod http;
pub mod metrics;
pub mod pinned;
pub mod policy;
pub mod reconcile;
pub mod restore;

use anyhow::Context;
use clap::Parser;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::orchestrator::local::{LocalConfig, LocalOrchestrator};
use crate::orchestrator::{Bounds, Orchestrator};
use controller::{Controller, ControllerConfig};
use http::Access;
use policy::{PolicyConfig, PolicyKind};

use crate::util::http_server::ServerLimits;
use crate::util::parse_duration;

/// The environment variable holding the bearer token (the only place besides --token-file;
/// never passed on to local replicas).
pub const TOKEN_ENV: &str = "STARVATION_ALERTAPI_TOKEN";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Docker Swarm services through the Engine API (unix socket or DOCKER_HOST).
    Swarm,
    /// `starvation serve` child processes on this machine sharing --local-listen.
    Local,
}

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Run the scaler: an Alertmanager webhook receiver (POST /alert) that scales \
services on Docker Swarm or local processes, with bounds, dedupe, cooldown, scale-down and auth."
)]
pub struct Opts {
    /// Address to listen on (the paper's AlertAPI used port 5001). A non-loopback address needs
    /// a token (--token-file or STARVATION_ALERTAPI_TOKEN) or --insecure-no-auth.
    #[arg(
        long,
        env = "STARVATION_ALERTAPI_LISTEN",
        default_value = "0.0.0.0:5001"
    )]
    pub listen: SocketAddr,

    /// What runs the replicas.
    #[arg(long, value_enum, default_value = "swarm")]
    pub orchestrator: Backend,

    /// A service the scaler may scale (repeatable). Alerts for any other service get 403.
    /// Default: --default-service alone.
    #[arg(long = "allow", value_name = "SERVICE")]
    pub allow: Vec<String>,

    /// The service for alerts without a `service` label (e.g. threadpool_webserver).
    #[arg(long, env = "STARVATION_DEFAULT_SERVICE")]
    pub default_service: Option<String>,

    /// step: +--step per new firing alert. proportional: Kubernetes HPA's
    /// ceil(value / --target) from the alert's `value` annotation, with --tolerance.
    #[arg(long, value_enum, default_value = "step")]
    pub policy: PolicyKind,

    /// Per-replica target of the alert's `value` annotation (proportional policy); e.g. a
    /// queue-length target of 20 per replica.
    #[arg(long, default_value_t = policy::DEFAULT_TARGET)]
    pub target: f64,

    /// Proportional decisions: no change while |value per replica / target - 1| <= tolerance
    /// (HPA's 0.1). The per-direction flags override it.
    #[arg(long, default_value_t = policy::DEFAULT_TOLERANCE)]
    pub tolerance: f64,

    /// Tolerance for scaling up (default: --tolerance).
    #[arg(long)]
    pub scale_up_tolerance: Option<f64>,

    /// Tolerance for scaling down (default: --tolerance).
    #[arg(long)]
    pub scale_down_tolerance: Option<f64>,

    /// HPA's scale-up stabilization window: a proportional scale-up applies the lowest
    /// recommendation of this window.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub scale_up_window: Duration,

    /// HPA's scale-down stabilization window: a proportional scale-down (reconciliation)
    /// applies the highest recommendation of this window.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub scale_down_window: Duration,

    /// HPA's scale-up policies, TYPE:VALUE:PERIOD with TYPE Pods or Percent (HPA's default:
    /// double or add four every 15 s, whichever is more).
    #[arg(long, default_value = "Percent:100:15s,Pods:4:15s")]
    pub scale_up_policies: behavior::Policies,

    /// HPA's scale-down policies (default: up to all of them every 15 s).
    #[arg(long, default_value = "Percent:100:15s")]
    pub scale_down_policies: behavior::Policies,

    /// Which scale-up policy applies: the one allowing the most change, the least, or none.
    #[arg(long, value_enum, default_value = "max")]
    pub scale_up_select: behavior::Select,

    /// Which scale-down policy applies (disabled: never scale down proportionally).
    #[arg(long, value_enum, default_value = "max")]
    pub scale_down_select: behavior::Select,

    /// Reconcile from this Prometheus (e.g. http://prometheus:9090): every --reconcile-every,
    /// each allowed service's --query is decided by HPA's formula and behavior, up and down, so
    /// a lost or held-back notification cannot stall scaling. Scale-down is then the loop's.
    #[arg(long, env = "STARVATION_PROMETHEUS_URL")]
    pub prometheus: Option<String>,

    /// The reconciliation query, `{service}` standing for the service; one number (the total
    /// for the service, --target per replica).
    #[arg(long, default_value = reconcile::DEFAULT_QUERY)]
    pub query: String,

    /// How often the reconciliation runs.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub reconcile_every: Duration,

    /// Replicas added per scale-up and removed per scale-down (service label
    /// `starvation.step` overrides).
    #[arg(long, default_value_t = 1)]
    pub step: u32,

    /// Never fewer replicas than this (service label `starvation.min` overrides).
    #[arg(long, default_value_t = 1)]
    pub min: u32,

    /// Never more replicas than this (service label `starvation.max` overrides).
    #[arg(long, default_value_t = 10)]
    pub max: u32,

    /// Minimum time between two scale-ups of one service.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub cooldown: Duration,

    /// After an alert resolves, how long no alert may fire for the service before it is
    /// scaled down by one step (and again after each further quiet period).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub scale_down_delay: Duration,

    /// Never scale down (for experiments that measure scale-up alone).
    #[arg(long)]
    pub no_scale_down: bool,

    /// Shadow mode for every service: decisions are computed, logged, exported and shown, and
    /// nothing is scaled (one service: its label `starvation.dry-run=true`).
    #[arg(long)]
    pub dry_run: bool,

    /// A firing alert neither re-sent nor resolved for this long is forgotten as if resolved
    /// (a lost resolve, an Alertmanager restart), so the scale-down clock can start. Keep it
    /// above Alertmanager's repeat_interval (deploy/'s: 1m; Alertmanager's default: 4h).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub firing_ttl: Duration,

    /// An alert that fires again within this long after its resolve continues its episode:
    /// a rule without `for` flapping around its threshold scales once, not once per flap.
    /// 0s makes every re-fire a new episode.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub flap_window: Duration,

    /// File holding the bearer token Alertmanager must send (e.g. a Docker secret).
    #[arg(long, env = "STARVATION_ALERTAPI_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Refused: a token on the command line is readable by every user of the machine (`ps`,
    /// /proc/PID/cmdline). The flag exists only to say so; the token comes from --token-file
    /// or the environment variable STARVATION_ALERTAPI_TOKEN.
    #[arg(long = "token", value_name = "TOKEN", hide = true)]
    pub token_on_command_line: Option<String>,

    /// Accept webhooks without a token even on a non-loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// Serve GET /, /events and /metrics without the token even on a non-loopback address.
    /// By default they need it there (they show service and alert names); /healthz never does.
    #[arg(long)]
    pub public_reads: bool,

    #[command(flatten)]
    pub limits: ServerLimits,

    /// Push `alert_endpoint_call` to this Pushgateway (job=alertapi) on every scale event,
    /// like the original, so the paper's "Scale event" export works.
    #[arg(long, env = "STARVATION_PUSHGATEWAY")]
    pub pushgateway: Option<String>,

    /// Post an alert `ScalerPinnedAtMax{service}` to this Alertmanager (its base URL, e.g.
    /// http://alertmanager:9093) while a service is pinned at its max (the load wants more),
    /// resolved once the service is below its max again. Default: none.
    #[arg(long, env = "STARVATION_ALERTMANAGER")]
    pub alertmanager: Option<String>,

    /// Append every decision as a JSON line to this file.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,

    /// Decisions kept for GET /events and the status page.
    #[arg(long, default_value_t = controller::DEFAULT_EVENTS_KEPT)]
    pub events: usize,

    /// Local orchestrator: the address all replicas share (SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub local_listen: SocketAddr,

    /// Local orchestrator: replicas started at launch.
    #[arg(long, default_value_t = 1)]
    pub local_replicas: u32,

    /// Local orchestrator: an extra `starvation serve` argument for every replica
    /// (repeatable), e.g. --local-serve-arg=--block-ms=2000. A replica that dies is replaced,
    /// and its group deleted from its --pushgateway.
    #[arg(
        long = "local-serve-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pub local_serve_args: Vec<String>,
}

impl Opts {
    /// The token and whether reads need it, checked.
    pub fn access(&self) -> anyhow::Result<Access> {
        let token = self.token()?;
        Ok(Access {
            protect_reads: token.is_some() && !self.listen.ip().is_loopback() && !self.public_reads,
            token,
        })
    }

    fn token(&self) -> anyhow::Result<Option<String>> {
        anyhow::ensure!(
            self.token_on_command_line.is_none(),
            "--token: a token on the command line is visible to every user of this machine \
             (ps); put it in a file and pass --token-file FILE, or set {TOKEN_ENV}"
        );
        let from_env = match std::env::var(TOKEN_ENV) {
            Ok(t) => Some(t),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{TOKEN_ENV} is not valid UTF-8")
            }
        };
        let token = match (&self.token_file, from_env) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--token-file {}: cannot read it", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(t)) => Some(t.trim().to_owned()),
            (None, None) => None,
        };
        if let Some(t) = &token {
            anyhow::ensure!(
                !t.is_empty(),
                "the bearer token (--token-file / STARVATION_ALERTAPI_TOKEN) is empty"
            );
        }
        if token.is_none() && !self.listen.ip().is_loopback() && !self.insecure_no_auth {
            anyhow::bail!(
                "--listen {} is reachable from other hosts but no token is set: give --token-file \
                 (or STARVATION_ALERTAPI_TOKEN), listen on 127.0.0.1, or pass --insecure-no-auth",
                self.listen
            );
        }
        Ok(token)
    }

    /// Everything the controller needs, validated.
    pub fn controller_config(&self) -> anyhow::Result<ControllerConfig> {
        anyhow::ensure!(self.step >= 1, "--step must be at least 1");
        anyhow::ensure!(
            self.min <= self.max,
            "--min ({}) is above --max ({})",
            self.min,
            self.max
        );
        anyhow::ensure!(
            self.target > 0.0 && self.target.is_finite(),
            "--target must be a positive number (got {})",
            self.target
        );
        for (flag, t) in [
            ("--tolerance", Some(self.tolerance)),
            ("--scale-up-tolerance", self.scale_up_tolerance),
            ("--scale-down-tolerance", self.scale_down_tolerance),
        ] {
            if let Some(t) = t {
                anyhow::ensure!(
                    (0.0..1.0).contains(&t),
                    "{flag} must be in [0, 1) (got {t})"
                );
            }
        }
        let reconcile = match &self.prometheus {
            None => None,
            Some(raw) => {
                let url = reqwest::Url::parse(raw)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .with_context(|| {
                        format!(
                            "--prometheus {:?} must be an http(s) URL, e.g. http://prometheus:9090",
                            crate::util::redact::url(raw)
                        )
                    })?;
                anyhow::ensure!(
                    self.query.contains("{service}") || self.allow.len() <= 1,
                    "--query must contain {{service}} when several services are allowed"
                );
                anyhow::ensure!(
                    !self.reconcile_every.is_zero(),
                    "--reconcile-every must be greater than zero (e.g. 15s)"
                );
                promql_parser::parser::parse(&self.query.replace("{service}", "x"))
                    .map_err(|e| anyhow::anyhow!("--query {:?} is not PromQL: {e}", self.query))?;
                Some(reconcile::ReconcileConfig {
                    prometheus: url,
                    query: self.query.clone(),
                    every: self.reconcile_every,
                })
            }
        };
        anyhow::ensure!(self.events >= 1, "--events must be at least 1");
        anyhow::ensure!(
            !self.firing_ttl.is_zero(),
            "--firing-ttl must be greater than zero (e.g. 1h)"
        );
        self.limits.check()?;
        let mut allow: BTreeSet<String> = self.allow.iter().cloned().collect();
        if let Some(d) = &self.default_service {
            if self.allow.is_empty() {
                allow.insert(d.clone());
            } else {
                anyhow::ensure!(
                    allow.contains(d),
                    "--default-service {d:?} is not in the --allow list; add --allow {d}"
                );
            }
        }
        anyhow::ensure!(
            !allow.is_empty(),
            "no service to scale: give --allow SERVICE (repeatable) or --default-service SERVICE"
        );
        for (flag, url, example) in [
            (
                "--pushgateway",
                &self.pushgateway,
                "http://pushgateway:9091",
            ),
            (
                "--alertmanager",
                &self.alertmanager,
                "http://alertmanager:9093",
            ),
        ] {
            if let Some(url) = url {
                let ok = reqwest::Url::parse(url)
                    .map(|u| matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(false);
                let shown = crate::util::redact::url(url);
                anyhow::ensure!(
                    ok,
                    "{flag} {shown:?} must be an http(s) URL, e.g. {example}"
                );
            }
        }
        Ok(ControllerConfig {
            policy: PolicyConfig {
                kind: self.policy,
                target: self.target,
                behavior: behavior::Behavior {
                    up: behavior::Rules {
                        stabilization_window: self.scale_up_window,
                        policies: self.scale_up_policies.0.clone(),
                        select: self.scale_up_select,
                        tolerance: self.scale_up_tolerance.unwrap_or(self.tolerance),
                    },
                    down: behavior::Rules {
                        stabilization_window: self.scale_down_window,
                        policies: self.scale_down_policies.0.clone(),
                        select: self.scale_down_select,
                        tolerance: self.scale_down_tolerance.unwrap_or(self.tolerance),
                    },
                },
                reconciling: reconcile.is_some(),
                cooldown: self.cooldown,
                scale_down_delay: self.scale_down_delay,
                scale_down: !self.no_scale_down,
                firing_ttl: self.firing_ttl,
                flap_window: self.flap_window,
            },
            bounds: Bounds {
                min: self.min,
                max: self.max,
                step: self.step,
            },
            allow,
            default_service: self.default_service.clone(),
            events_kept: self.events,
            audit_log: self.audit_log.clone(),
            pushgateway: self.pushgateway.clone(),
            alertmanager: self.alertmanager.clone(),
            reconcile,
            dry_run: self.dry_run,
        })
    }
}

/// A running scaler. [`Server::shutdown`] stops it.
pub struct Server {
    addr: SocketAddr,
    controller: Arc<Controller>,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
    ticking: tokio::task::JoinHandle<()>,
    restoring: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serve the webhook for `orchestrator` (flags already validated into `cfg`).
    pub async fn start(
        listen: SocketAddr,
        access: Access,
        limits: ServerLimits,
        orchestrator: Arc<dyn Orchestrator>,
        cfg: ControllerConfig,
    ) -> anyhow::Result<Server> {
        let controller = Arc::new(Controller::new(orchestrator, cfg)?);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("--listen {listen}: cannot bind"))?;
        let addr = listener.local_addr()?;
        controller.refresh_replicas().await;
        let stop = CancellationToken::new();
        let state = Arc::new(http::ApiState::new(controller.clone(), access));
        let serving = tokio::spawn(crate::util::http_server::serve(
            listener,
            http::router(state),
            limits,
            "alertapi",
            stop.clone(),
        ));
        let ticking = tokio::spawn(controller.clone().run(Duration::from_secs(1), stop.clone()));
        let restoring = tokio::spawn(restore::watch(controller.clone(), stop.clone()));
        Ok(Server {
            addr,
            controller,
            stop,
            serving,
            ticking,
            restoring,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        let _ = self.ticking.await;
        let _ = self.restoring.await;
        self.serving.await?;
        Ok(())
    }
}

async fn swarm_orchestrator() -> anyhow::Result<Arc<dyn Orchestrator>> {
    let swarm = crate::orchestrator::swarm::SwarmOrchestrator::connect()
        .await
        .context("connecting to the Docker Engine (run the scaler on a Swarm manager, with its socket or DOCKER_HOST)")?;
    Ok(Arc::new(swarm))
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let cfg = opts.controller_config()?;
    let access = opts.access()?;
    let signal = crate::util::shutdown_signal()?;
    // Nothing is started before every flag checked out.
    let mut local = None;
    let orchestrator: Arc<dyn Orchestrator> = match opts.orchestrator {
        Backend::Swarm => swarm_orchestrator().await?,
        Backend::Local => {
            let service = opts
                .default_service
                .clone()
                .context("--orchestrator local runs one service: name it with --default-service")?;
            let program = std::env::current_exe().context("locating the starvation executable")?;
            let orch = Arc::new(
                LocalOrchestrator::start(
                    LocalConfig {
                        service,
                        program: program.into(),
                        listen: opts.local_listen,
                        serve_args: opts.local_serve_args.clone(),
                        stop_timeout: Duration::from_secs(35),
                        log_filter: None,
                    },
                    opts.local_replicas.clamp(cfg.bounds.min, cfg.bounds.max),
                )
                .await?,
            );
            local = Some(orch.clone());
            orch
        }
    };
    let server = Server::start(opts.listen, access, opts.limits.clone(), orchestrator, cfg).await?;
    println!("listening on http://{}", server.local_addr());
    signal.await;
    let result = server.shutdown().await;
    if let Some(local) = local {
        local.shutdown().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::controller::ControllerConfig;
    use crate::scaler::policy::{DEFAULT_COOLDOWN, PolicyConfig};

    /// The typed constructor the experiment uses and `alertapi`'s flags agree on every default.
    #[test]
    fn one_service_config_has_the_flags_defaults() {
        let from_flags = Opts::try_parse_from(["alertapi", "--default-service", "web"])
            .unwrap()
            .controller_config()
            .unwrap();
        let typed = ControllerConfig::one_service(
            "web",
            crate::orchestrator::Bounds {
                min: 1,
                max: 10,
                step: 1,
            },
            PolicyConfig::step(DEFAULT_COOLDOWN, true),
        );
        assert_eq!(from_flags, typed);
    }
}
