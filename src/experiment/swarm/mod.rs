//! `starvation experiment --backend swarm`: each run deploys the stack of `deploy/` (as built
//! into this binary) under its own name, runs `starvation load` in a container on the stack's
//! network with remote write to the stack's Prometheus (like the paper's k6), exports from that
//! Prometheus, and removes the stack, waiting until nothing of it is left. See
//! `docs/experiment.md`.
//!
//! Stacks are a docker CLI feature (there is no Engine API for `docker stack deploy`), so the
//! deployment goes through the CLI; the replica count is read through the Engine API like the
//! scaler does.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::{State, record};
use crate::orchestrator::Orchestrator as _;
use crate::results::metrics as m;
use crate::results::runmeta::{Role, RunMeta, ScaleEvent};

const COMPOSE: &str = include_str!("../../deploy/docker-compose.yml");
const PROMETHEUS_YML: &str = include_str!("../../deploy/prometheus/prometheus.yml");
const ALERTMANAGER_YML: &str = include_str!("../../deploy/alertmanager/alertmanager.yml");

/// Ports the stack publishes on the host (deploy/docker-compose.yml; a unit test keeps them).
pub const PROMETHEUS_PORT: u16 = 9090;
pub const PUSHGATEWAY_PORT: u16 = 9091;
pub const ALERTMANAGER_PORT: u16 = 9093;
pub const SCALER_PORT: u16 = 5001;

/// The secret the scaler and Alertmanager share (`external: true` in the stack file).
pub const SECRET: &str = "alertapi_token";
/// Images the stack runs, without their tag.
pub const IMAGES: [&str; 5] = [
    "starvation",
    "starvation/prometheus",
    "starvation/pushgateway",
    "starvation/alertmanager",
    "starvation/node-exporter",
];
/// How long a deployment may take to become ready, and a removal to finish.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);

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

// ---------------------------------------------------------------------------------------------
// The docker CLI

fn docker_cmd(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("docker");
    c.args(args).stdin(std::process::Stdio::null());
    c
}

/// `docker ARGS`: stdout on success, else an error with the command and its stderr.
fn docker_sync(args: &[&str]) -> anyhow::Result<String> {
    let out = docker_cmd(args).output().map_err(|e| {
        anyhow::anyhow!(
            "--backend swarm needs the docker CLI ({e}); install it (`apt-get install docker.io`)"
        )
    })?;
    anyhow::ensure!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`docker_sync`] off the async runtime's threads.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        docker_sync(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await?
}

/// Non-empty output lines.
fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Preflight

/// Everything the swarm backend needs, checked before anything is created: the docker CLI and
/// Engine, an active Swarm whose node this is a manager, the five images, and the stack's host
/// ports free.
pub fn preflight(opts: &SwarmOpts) -> anyhow::Result<()> {
    let info = docker_sync(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ])
    .context("--backend swarm: cannot talk to the Docker Engine; is it running, and may this user use it (group docker)?")?;
    match info.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["active", "true"] => {}
        ["active", _] => anyhow::bail!(
            "--backend swarm: this node is a Swarm worker; run the experiment on a manager \
             (stacks are deployed and scaled through a manager)"
        ),
        [state, ..] => anyhow::bail!(
            "--backend swarm: this Docker Engine is not in a Swarm (state {state}); create one \
             with `docker swarm init --advertise-addr 127.0.0.1` (or join one as a manager)"
        ),
        [] => anyhow::bail!("--backend swarm: `docker info` said nothing about the Swarm"),
    }
    let missing: Vec<String> = IMAGES
        .iter()
        .map(|i| format!("{i}:{}", opts.tag()))
        .filter(|i| docker_sync(&["image", "inspect", "--format", "{{.Id}}", i]).is_err())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "--backend swarm: image(s) {} not found on this node (no registry is used: nothing is \
             pulled); build them with:\n    deploy/build-images.sh --all --tag starvation:{}\n\
             (or choose the tag you built with --swarm-tag)",
            missing.join(", "),
            opts.tag()
        );
    }
    let busy: Vec<String> = host_ports(&stack_doc(kernel_has_ipvs())?)
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

// ---------------------------------------------------------------------------------------------
// The stack file

/// Swarm's routing mesh and its service VIPs are IPVS: without the kernel's `ip_vs` module
/// (`/proc/net/ip_vs` missing and `modprobe ip_vs` failing) published ports and VIPs silently
/// do not answer.
pub fn kernel_has_ipvs() -> bool {
    Path::new("/proc/net/ip_vs").exists()
        || std::process::Command::new("modprobe")
            .arg("ip_vs")
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The stack for a kernel without IPVS: `endpoint_mode: dnsrr` on every service, the
/// single-replica services' ports published in host mode, and no published port for the
/// workload (several replicas on one node cannot share a host port; reach it inside the
/// overlay network).
pub fn use_dnsrr(doc: &mut Value) -> anyhow::Result<()> {
    let services = doc["services"]
        .as_object_mut()
        .context("the stack file has no services")?;
    for (name, svc) in services.iter_mut() {
        let svc = svc
            .as_object_mut()
            .with_context(|| format!("service {name} is not a map"))?;
        svc.entry("deploy").or_insert(json!({}))["endpoint_mode"] = "dnsrr".into();
        let Some(ports) = svc.remove("ports") else {
            continue;
        };
        if name == "webserver" {
            continue;
        }
        let host_mode = ports
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let (published, target) = p
                    .as_str()
                    .and_then(|p| p.split_once(':'))
                    .with_context(|| format!("service {name}: port {p} is not \"HOST:TARGET\""))?;
                Ok(json!({
                    "target": target.parse::<u16>()?,
                    "published": published.parse::<u16>()?,
                    "protocol": "tcp",
                    "mode": "host",
                }))
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        svc.insert("ports".into(), host_mode.into());
    }
    Ok(())
}

/// The embedded stack file without Grafana (no image can be built for it here), in the
/// variant this kernel can run.
fn stack_doc(ipvs: bool) -> anyhow::Result<Value> {
    let mut doc: Value = serde_norway::from_str(COMPOSE).context("the embedded stack file")?;
    if let Some(s) = doc["services"].as_object_mut() {
        s.remove("grafana");
    }
    if let Some(c) = doc["configs"].as_object_mut() {
        c.retain(|k, _| !k.starts_with("grafana") && !k.starts_with("dashboard"));
    }
    if !ipvs {
        use_dnsrr(&mut doc)?;
    }
    Ok(doc)
}

/// Host ports a stack file publishes (`"H:T"` strings and long-syntax maps).
fn host_ports(doc: &Value) -> Vec<u16> {
    let services = doc["services"].as_object().into_iter().flatten();
    let ports = services.flat_map(|(_, s)| s["ports"].as_array().cloned().unwrap_or_default());
    ports
        .filter_map(|p| match &p {
            Value::String(s) => s.split_once(':')?.0.parse().ok(),
            _ => p["published"].as_u64().and_then(|v| u16::try_from(v).ok()),
        })
        .collect()
}

/// What a run deploys: the stack file's variant for this kernel, adapted to the profile and
/// the run's role (scaled: the scaler with the profile's bounds and cooldown, no scale-down;
/// baseline: no scaler), with its config files in `dir`.
fn stack_for_run(st: &State, role: Role, dir: &Path, ipvs: bool) -> anyhow::Result<Value> {
    let p = &st.profile;
    let mut doc = stack_doc(ipvs)?;
    let svc = &mut doc["services"];
    let mut serve: Vec<String> = [
        "serve",
        "--listen",
        "0.0.0.0:5000",
        "--data-dir",
        "/data",
        "--push-interval",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    serve.extend([
        "--block-ms".into(),
        p.block_ms.to_string(),
        "--min-threads".into(),
        p.min_threads.to_string(),
    ]);
    serve.extend(p.serve_args.iter().cloned());
    svc["webserver"]["command"] = json!(serve);
    let deploy = &mut svc["webserver"]["deploy"];
    deploy["replicas"] = json!(p.initial_replicas);
    deploy["labels"]["starvation.min"] = json!(p.initial_replicas.to_string());
    deploy["labels"]["starvation.max"] = json!(p.max_replicas.to_string());
    match role {
        Role::Scaled => {
            let cmd = svc["alertapi"]["command"]
                .as_array_mut()
                .context("the stack file's alertapi has no command list")?;
            for a in [
                format!("--min={}", p.initial_replicas),
                format!("--max={}", p.max_replicas),
                format!("--cooldown={}s", p.cooldown_s),
                "--no-scale-down".into(),
            ] {
                cmd.push(a.into());
            }
        }
        // The paper's baseline: the stack without the scaler (Alertmanager's webhook fails).
        Role::Baseline => {
            if let Some(s) = svc.as_object_mut() {
                s.remove("alertapi");
            }
        }
    }
    for (key, file) in [
        ("prometheus_yml", "prometheus.yml"),
        ("alert_rules_yml", "alert_rules.yml"),
        ("alertmanager_yml", "alertmanager.yml"),
    ] {
        doc["configs"][key]["file"] = dir.join(file).display().to_string().into();
    }
    Ok(doc)
}

/// Write the run's stack (compose file, Prometheus, rules, Alertmanager) into `dir`.
fn write_stack(st: &State, role: Role, dir: &Path, ipvs: bool) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let doc = stack_for_run(st, role, dir, ipvs)?;
    for (file, text) in [
        ("prometheus.yml", PROMETHEUS_YML),
        ("alert_rules.yml", st.rules.as_str()),
        ("alertmanager.yml", ALERTMANAGER_YML),
    ] {
        std::fs::write(dir.join(file), text)?;
    }
    let compose = dir.join("docker-compose.yml");
    std::fs::write(&compose, serde_norway::to_string(&doc)?)?;
    Ok(compose)
}

// ---------------------------------------------------------------------------------------------
// One deployment and its teardown

/// What a run changed on the Swarm, so teardown removes exactly that.
struct Deployment {
    stack: String,
    node: String,
    label_added: bool,
    secret_created: bool,
    deployed: bool,
    load_container: Option<String>,
}

impl Deployment {
    fn namespace_filter(&self) -> String {
        format!("label=com.docker.stack.namespace={}", self.stack)
    }

    /// Services, containers, networks, configs and volumes of the stack still present.
    async fn leftovers(&self) -> Vec<String> {
        let filter = self.namespace_filter();
        let mut left = Vec::new();
        for kind in ["service", "container", "network", "config", "volume"] {
            let listed = match kind {
                "container" => docker(&["ps", "-aq", "--filter", &filter]).await,
                _ => docker(&[kind, "ls", "-q", "--filter", &filter]).await,
            };
            match listed {
                Ok(out) => left.extend(lines(&out).into_iter().map(|id| format!("{kind} {id}"))),
                Err(e) => left.push(format!("{kind}s unknown: {e:#}")),
            }
        }
        left
    }

    /// Remove everything this run created and wait until it is gone. Errors name what is left.
    async fn teardown(&mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Some(c) = self.load_container.take()
            && let Err(e) = docker(&["rm", "-f", &c]).await
        {
            problems.push(format!("{e:#}"));
        }
        if self.deployed {
            if let Err(e) = docker(&["stack", "rm", &self.stack]).await {
                problems.push(format!("{e:#}"));
            }
            // Removal is asynchronous: tasks stop, then networks and configs can go. The stack's
            // named volumes outlive `docker stack rm`; they go once no container uses them.
            let deadline = Instant::now() + REMOVE_TIMEOUT;
            loop {
                let left = self.leftovers().await;
                let volumes_only = left.iter().all(|l| l.starts_with("volume "));
                if volumes_only {
                    for v in &left {
                        let _ = docker(&["volume", "rm", &v["volume ".len()..]]).await;
                    }
                }
                let left = self.leftovers().await;
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "stack {} not gone after {REMOVE_TIMEOUT:?}: {}; remove by hand with \
                         `docker stack rm {}` and `docker volume rm`",
                        self.stack,
                        left.join(", "),
                        self.stack
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            self.deployed = false;
        }
        if std::mem::take(&mut self.secret_created)
            && let Err(e) = docker(&["secret", "rm", SECRET]).await
        {
            problems.push(format!("{e:#}"));
        }
        if std::mem::take(&mut self.label_added)
            && let Err(e) = docker(&["node", "update", "--label-rm", "role", &self.node]).await
        {
            problems.push(format!("{e:#}"));
        }
        anyhow::ensure!(
            problems.is_empty(),
            "removing the run's stack: {}",
            problems.join("; ")
        );
        Ok(())
    }
}

/// Placement for this Swarm: the stack puts the workload on `role=worker` nodes and the rest
/// on `role=${MASTER_ROLE}` (the scaler also on a manager). With labelled nodes of both roles
/// the paper's placement is used; a single node is labelled `role=worker` if it has no role
/// and everything runs there (`MASTER_ROLE=worker`). Returns MASTER_ROLE.
async fn place(dep: &mut Deployment) -> anyhow::Result<&'static str> {
    dep.node = docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .await?
        .trim()
        .to_string();
    let ids = lines(&docker(&["node", "ls", "-q"]).await?);
    let mut args = vec![
        "node",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"role\"}}",
    ];
    args.extend(ids.iter().map(String::as_str));
    let roles = lines(&docker(&args).await?);
    let has = |r: &str| roles.iter().any(|x| x == r);
    if has("worker") && has("master") {
        return Ok("master");
    }
    let mine = docker(&[
        "node",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"role\"}}",
        &dep.node,
    ])
    .await?;
    match mine.trim() {
        "" => {
            docker(&["node", "update", "--label-add", "role=worker", &dep.node]).await?;
            dep.label_added = true;
            Ok("worker")
        }
        "worker" => Ok("worker"),
        other => anyhow::bail!(
            "this node is labelled role={other} and no node is labelled role=worker, so the \
             workload has nowhere to run; label a node: `docker node update --label-add \
             role=worker <node>` (on a single node: remove this node's role label)"
        ),
    }
}

/// Create the scaler's secret if the Swarm has none.
async fn ensure_secret(dep: &mut Deployment) -> anyhow::Result<()> {
    if docker(&["secret", "inspect", SECRET]).await.is_ok() {
        return Ok(());
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom for the scaler's token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let created = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut child = docker_cmd(&["secret", "create", SECRET, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, token.as_bytes())?;
        }
        anyhow::ensure!(
            child.wait()?.success(),
            "`docker secret create {SECRET}` failed"
        );
        Ok(())
    })
    .await?;
    created?;
    dep.secret_created = true;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Waiting and Prometheus

/// Poll `check` every 500 ms until it answers, `timeout` passes or the run is cancelled.
async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::select! {
            _ = cancel.cancelled() => return Err(crate::Interrupted.into()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn is_up(http: &reqwest::Client, url: &str) -> Option<()> {
    let r = http.get(url).send().await.ok()?;
    r.status().is_success().then_some(())
}

/// An instant query's result vector (empty on any failure).
async fn prom_query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Vec<Value> {
    let Ok(r) = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Until the stack answers: Prometheus, Pushgateway, Alertmanager, the scaler (scaled runs),
/// every replica's gauges and node-exporter in Prometheus.
async fn wait_ready(
    http: &reqwest::Client,
    opts: &SwarmOpts,
    stack: &str,
    role: Role,
    replicas: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let hint =
        |svc: &str| format!("the stack's {svc} (see `docker service ps {stack}_{svc} --no-trunc`)");
    let mut endpoints = vec![
        ("prometheus", opts.url(PROMETHEUS_PORT) + "/-/ready"),
        ("pushgateway", opts.url(PUSHGATEWAY_PORT) + "/-/ready"),
        ("alertmanager", opts.url(ALERTMANAGER_PORT) + "/-/ready"),
    ];
    if role == Role::Scaled {
        endpoints.push(("alertapi", opts.url(SCALER_PORT) + "/healthz"));
    }
    for (svc, url) in endpoints {
        wait_for(&hint(svc), READY_TIMEOUT, cancel, async || {
            is_up(http, &url).await
        })
        .await?;
    }
    let prometheus = opts.url(PROMETHEUS_PORT);
    let gauges = format!(
        "count(system_runtime_threadpool_queue_length{{job=\"webserver\",service=\"{stack}_webserver\"}})"
    );
    let what = format!("{} reporting its gauges to Prometheus", hint("webserver"));
    wait_for(&what, READY_TIMEOUT, cancel, async || {
        let r = prom_query(http, &prometheus, &gauges).await;
        let n = r.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
        (n >= replicas as f64).then_some(())
    })
    .await?;
    wait_for(&hint("node-exporter"), READY_TIMEOUT, cancel, async || {
        let r = prom_query(http, &prometheus, "up{job=\"node-exporter\"} == 1").await;
        (!r.is_empty()).then_some(())
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The run

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
    let mut dep = Deployment {
        stack,
        node: String::new(),
        label_added: false,
        secret_created: false,
        deployed: false,
        load_container: None,
    };
    let res = deploy_and_measure(st, pair, role, dir, cancel, bar, label, &mut dep).await;
    bar.set_message(format!("{label}: removing stack {}", dep.stack));
    let removed = dep.teardown().await;
    // Ctrl-C also reaches a docker CLI running at that moment, so whatever failed then is the
    // interruption.
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
    let master_role = place(dep).await?;
    ensure_secret(dep).await?;
    let ipvs = kernel_has_ipvs();
    let compose = write_stack(st, role, &dir.join("stack"), ipvs)?;
    let compose_s = compose.display().to_string();
    let deploy = tokio::process::Command::new("docker")
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .args([&compose_s, &stack])
        .env("TAG", opts.tag())
        .env("STACK_NAME", &stack)
        .env("MASTER_ROLE", master_role)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running docker stack deploy")?;
    // Set before checking: a failed deploy may still have created part of the stack.
    dep.deployed = true;
    anyhow::ensure!(
        deploy.status.success(),
        "docker stack deploy -c {compose_s} {stack}: {}",
        String::from_utf8_lossy(&deploy.stderr).trim()
    );

    bar.set_message(format!("{label}: waiting for {stack}"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    wait_ready(&http, opts, &stack, role, p.initial_replicas, cancel).await?;

    bar.set_message(format!("{label}: load"));
    let load = format!("{stack}-load");
    let network = format!("{stack}_starvation");
    let image = format!("starvation:{}", opts.tag());
    let args: Vec<String> = [
        "run",
        "-d",
        "--name",
        &load,
        "--network",
        &network,
        &image,
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
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>()).await?;

    // Every second until the load exits: the replica count (Engine API) and the progress bar.
    let swarm = crate::orchestrator::swarm::SwarmOrchestrator::connect().await?;
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
        let state = docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &load,
        ])
        .await?;
        if let Some(code) = state.trim().strip_prefix("exited ") {
            break code.to_string();
        }
    };
    let times = docker(&[
        "inspect",
        "--format",
        "{{.State.StartedAt}} {{.State.FinishedAt}}",
        &load,
    ])
    .await?;
    let (start, end) = parse_times(&times)?;
    let stdout = docker_logs_stdout(&load).await?;
    anyhow::ensure!(
        exit == "0",
        "the load container exited with {exit}; its summary/log:\n{stdout}"
    );
    let summary: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("the load's JSON summary is unreadable:\n{stdout}"))?;

    // The last remote write lands at the end; give Prometheus a few scrapes and evaluations.
    bar.set_message(format!("{label}: exporting"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let prometheus = opts.url(PROMETHEUS_PORT);
    export(&prometheus, start, end, dir).await?;
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
            let v = get_json(&http, &url)
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
    let scale = scale_events(&scaler_events);
    let alerts = json!({
        "source": format!("Prometheus ALERTS of stack {stack}, 1 s resolution"),
        "alerts": alerts,
        "scaler_events": scaler_events,
    });
    super::record::write_run_files(dir, alerts, &summary, role, pair, start, end, scale)
}

/// `StartedAt FinishedAt` of `docker inspect`.
fn parse_times(s: &str) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |t: &str| -> anyhow::Result<DateTime<Utc>> {
        Ok(DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("docker inspect: time {t:?}"))?
            .with_timezone(&Utc))
    };
    let mut parts = s.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Ok((parse(a)?, parse(b)?)),
        _ => anyhow::bail!("docker inspect: no start and finish times in {s:?}"),
    }
}

/// A container's stdout only (the load writes its summary there and logs to stderr).
async fn docker_logs_stdout(container: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(["logs", container])
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "docker logs {container}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The export's query list adapted to the stack's Prometheus: the replicas' gauges as pushed
/// (`job="webserver"`, the paper's path; Prometheus also scrapes every replica directly, under
/// `job="webserver_direct"`, and the sum would count each replica twice), and `Scale event`
/// only where the scaler counted a scale action (its `/metrics` shows the counter at 0 too).
static STACK_SPECS: std::sync::LazyLock<Vec<m::MetricSpec>> = std::sync::LazyLock::new(|| {
    m::METRICS
        .iter()
        .map(|s| match s.kind {
            m::Kind::ScaleEvent => m::MetricSpec {
                query: "max without(instance) (alert_endpoint_call) > 0",
                ..*s
            },
            m::Kind::Gauge if s.query.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                m::MetricSpec {
                    // Built once per process (MetricSpec holds &'static str).
                    query: String::leak(format!("{}{{job=\"webserver\"}}", s.query)),
                    ..*s
                }
            }
            _ => *s,
        })
        .collect()
});

/// The export's query list ([`STACK_SPECS`]) over the load, 1 s step.
async fn export(
    prometheus: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    dir: &Path,
) -> anyhow::Result<()> {
    let specs = &*STACK_SPECS;
    let req = crate::results::export::ExportRequest {
        prometheus: prometheus.to_string(),
        // Whole seconds around the load, so the 1 s steps cover all of it.
        start: DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start),
        end: DateTime::from_timestamp(end.timestamp() + 2, 0).unwrap_or(end),
        step: Duration::from_secs(1),
        testid: crate::load::DEFAULT_TESTID.into(),
        out: dir.to_path_buf(),
        timeout: Duration::from_secs(30),
    };
    let report = crate::results::export::export_specs(&req, specs).await?;
    anyhow::ensure!(
        report.ok(),
        "exporting from the stack's Prometheus ({prometheus}): {}",
        report
            .failures
            .iter()
            .map(|(name, e)| format!("{name}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // An empty gauge is not an error (the figures show a gap) but must not go unnoticed. (An
    // empty counter is a count of zero: k6 sends no `expected_response="false"` series either
    // when nothing failed.)
    for spec in specs.iter().filter(|s| s.kind == m::Kind::Gauge) {
        let path = dir.join(spec.json_file());
        if crate::results::promjson::read_export(&path).is_ok_and(|r| r.is_empty()) {
            tracing::warn!(
                "{}: the stack's Prometheus had no samples for {:?} during the load",
                spec.readable,
                spec.query
            );
        }
    }
    Ok(())
}

/// The scaler's decisions (`GET /events`) that changed the replica count.
fn scale_events(events: &[Value]) -> Vec<ScaleEvent> {
    events
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| a != "none"))
        .filter_map(|e| {
            Some(ScaleEvent {
                at: DateTime::parse_from_rfc3339(e["time"].as_str()?)
                    .ok()?
                    .with_timezone(&Utc),
                from: e["from"].as_u64().and_then(|v| u32::try_from(v).ok()),
                to: e["to"].as_u64().and_then(|v| u32::try_from(v).ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            format: "starvation-experiment/1".into(),
            runs: 1,
            profile: super::super::Profile::quick(),
            rules: crate::monitor::rules::DEFAULT_RULES.into(),
            started: Utc::now(),
            backend: super::super::BackendKind::Swarm,
            monitor: super::super::MonitorKind::Prometheus,
            swarm: SwarmOpts::default(),
        }
    }

    #[test]
    fn the_stack_publishes_the_ports_the_runner_uses() {
        let mut ports = host_ports(&stack_doc(false).unwrap());
        ports.sort();
        assert_eq!(
            ports,
            [
                SCALER_PORT,
                PROMETHEUS_PORT,
                PUSHGATEWAY_PORT,
                ALERTMANAGER_PORT
            ]
        );
        // With IPVS the workload is published through the routing mesh too.
        assert!(host_ports(&stack_doc(true).unwrap()).contains(&5000));
    }

    #[test]
    fn runs_get_the_profile_and_the_scaler_only_when_scaled() {
        let dir = Path::new("/x/stack");
        let st = state();
        let scaled = stack_for_run(&st, Role::Scaled, dir, false).unwrap();
        let web = &scaled["services"]["webserver"];
        let cmd: Vec<&str> = web["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            cmd.windows(2).any(|w| w == ["--block-ms", "2000"]),
            "{cmd:?}"
        );
        assert!(cmd.ends_with(&["--starvation-delay", "2s"]), "{cmd:?}");
        assert_eq!(web["deploy"]["replicas"], 1);
        assert_eq!(web["deploy"]["labels"]["starvation.max"], "5");
        assert_eq!(web["deploy"]["endpoint_mode"], "dnsrr");
        let alertapi = scaled["services"]["alertapi"]["command"].to_string();
        for flag in ["--cooldown=10s", "--no-scale-down", "--max=5", "--min=1"] {
            assert!(alertapi.contains(flag), "{alertapi}");
        }
        assert!(scaled["services"].get("grafana").is_none());
        // The healthcheck stays: the scaler sends the spec back as the Engine's JSON.
        assert!(web.get("healthcheck").is_some());
        assert_eq!(
            scaled["configs"]["alert_rules_yml"]["file"],
            "/x/stack/alert_rules.yml"
        );
        assert_eq!(
            scaled["configs"].as_object().unwrap().len(),
            3,
            "{}",
            scaled["configs"]
        );
        let baseline = stack_for_run(&st, Role::Baseline, dir, false).unwrap();
        assert!(baseline["services"].get("alertapi").is_none());
    }

    #[test]
    fn stack_exports_count_each_replica_once() {
        let q = |name: &str| {
            STACK_SPECS
                .iter()
                .find(|s| s.readable == name)
                .unwrap()
                .query
        };
        assert_eq!(
            q(m::QUEUE_LENGTH),
            "system_runtime_threadpool_queue_length{job=\"webserver\"}"
        );
        assert_eq!(q(m::NODE_CPU), m::spec(m::NODE_CPU).query);
        assert!(q(m::SCALE_EVENT).ends_with("> 0"));
    }

    #[test]
    fn scale_events_are_the_decisions_that_acted() {
        let events = vec![
            json!({"time": "2026-01-01T00:00:10Z", "action": "scale_up", "from": 1, "to": 2}),
            json!({"time": "2026-01-01T00:00:11Z", "action": "none", "from": 2, "to": 2}),
        ];
        let ev = scale_events(&events);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].from, ev[0].to), (Some(1), Some(2)));
    }

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
