//! The stack a run deploys: `deploy/docker-compose.yml` as built into this binary, adapted to
//! this kernel, the profile and the run's role; and the two docker CLI calls stacks need
//! (there is no Engine API for `docker stack deploy` / `docker stack rm`).

use anyhow::Context as _;
use serde_json::{Value, json};
use std::path::Path;

use crate::experiment::{Profile, WorkloadKind};
use crate::results::runmeta::Role;

const COMPOSE: &str = include_str!("../../../deploy/docker-compose.yml");
/// The override that makes the workload the .NET service (`--workload dotnet`).
const COMPOSE_DOTNET: &str = include_str!("../../../deploy/docker-compose.dotnet.yml");
const PROMETHEUS_YML: &str = include_str!("../../../deploy/prometheus/prometheus.yml");
const ALERTMANAGER_YML: &str = include_str!("../../../deploy/alertmanager/alertmanager.yml");

/// Ports a run's stack publishes on the manager ([`publish_on_manager`]; deploy/'s stack file
/// publishes none of them).
pub const PROMETHEUS_PORT: u16 = 9090;
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
/// The workload's image with `--workload dotnet` (deploy/build-images.sh --dotnet), without its
/// tag; the stack still needs [`IMAGES`] (the load runs from `starvation`).
pub const DOTNET_IMAGE: &str = "starvation/dotnet";
/// Labels of [`DOTNET_IMAGE`]: the Microsoft.NETCore.App version in it, and the hash of the
/// C# source it was compiled from (`dotnet::build::source_hash`).
pub const DOTNET_RUNTIME_LABEL: &str = "starvation.dotnet.runtime";
pub const DOTNET_SOURCE_LABEL: &str = "starvation.dotnet.source";

/// The docker CLI, for stacks only.
const CLI: &str = "docker";

/// What the local kernel (the node's, for a machine that is its own manager) can do for a
/// stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// IPVS, for the routing mesh and service VIPs ([`kernel_has_ipvs`]).
    pub ipvs: bool,
    /// IPsec ESP with AES-GCM, for `encrypted` overlays ([`kernel_has_esp`]).
    pub esp: bool,
}

impl Kernel {
    pub fn detect() -> Kernel {
        Kernel {
            ipvs: kernel_has_ipvs(),
            esp: kernel_has_esp(),
        }
    }
}

/// Docker encrypts an overlay with ESP and `rfc4106(gcm(aes))`. A kernel built without them
/// (`/proc/config.gz` says `# CONFIG_INET_ESP is not set` or `# CONFIG_CRYPTO_GCM is not set`,
/// as on the development VMs) creates the network without error but drops every packet
/// between nodes (dockerd: "Failed Adding rSA…: function not implemented"). Without a
/// readable config the kernel is taken to have them.
pub fn kernel_has_esp() -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open("/proc/config.gz") else {
        return true;
    };
    let mut config = String::new();
    if flate2::read::GzDecoder::new(file)
        .read_to_string(&mut config)
        .is_err()
    {
        return true;
    }
    esp_in_config(&config)
}

fn esp_in_config(config: &str) -> bool {
    let has = |key: &str| {
        config
            .lines()
            .any(|l| l == format!("{key}=y") || l == format!("{key}=m"))
    };
    has("CONFIG_INET_ESP") && has("CONFIG_CRYPTO_GCM")
}

/// The stack for a kernel without ESP: its overlays unencrypted (else no traffic would cross
/// nodes at all).
pub fn use_plain_overlays(doc: &mut Value) {
    if let Some(nets) = doc["networks"].as_object_mut() {
        for net in nets.values_mut() {
            if let Some(opts) = net["driver_opts"].as_object_mut() {
                opts.remove("encrypted");
                if opts.is_empty() {
                    net.as_object_mut().map(|n| n.remove("driver_opts"));
                }
            }
        }
    }
}

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
                if let Some(long) = p.as_object() {
                    // Long syntax (publish_on_manager's): already a map; only its mode changes.
                    let mut long = long.clone();
                    long.insert("mode".into(), "host".into());
                    return Ok(Value::Object(long));
                }
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

/// The explicit opt-in the experiment (and the stack's end-to-end test) needs to read the stack
/// from this machine: Prometheus, Alertmanager and the scaler (if deployed) published in host
/// mode on the node that runs them (the manager: `MASTER_ROLE`). Swarm
/// cannot bind a published port to one address (`host_ip` is refused: its port config has no
/// such field), so they listen on every address of that node: keep them behind its firewall.
pub fn publish_on_manager(doc: &mut Value) -> anyhow::Result<()> {
    let services = doc["services"]
        .as_object_mut()
        .context("the stack file has no services")?;
    for (name, port) in [
        ("prometheus", PROMETHEUS_PORT),
        ("alertmanager", ALERTMANAGER_PORT),
        ("alertapi", SCALER_PORT),
    ] {
        let Some(svc) = services.get_mut(name).and_then(Value::as_object_mut) else {
            continue;
        };
        svc.insert(
            "ports".into(),
            json!([{"target": port, "published": port, "protocol": "tcp", "mode": "host"}]),
        );
    }
    Ok(())
}

/// The embedded stack file (Grafana is an opt-in file of its own), in the variant this kernel
/// can run.
pub(super) fn stack_doc(kernel: Kernel) -> anyhow::Result<Value> {
    let mut doc: Value = serde_norway::from_str(COMPOSE).context("the embedded stack file")?;
    if !kernel.ipvs {
        use_dnsrr(&mut doc)?;
    }
    if !kernel.esp {
        use_plain_overlays(&mut doc);
    }
    Ok(doc)
}

/// Host ports a stack file publishes (`"H:T"` strings and long-syntax maps).
pub(super) fn host_ports(doc: &Value) -> Vec<u16> {
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
/// baseline: no scaler), its monitoring published on the manager, with its config files in
/// `dir`.
pub(super) fn stack_for_run(
    p: &Profile,
    workload: WorkloadKind,
    role: Role,
    dir: &Path,
    kernel: Kernel,
) -> anyhow::Result<Value> {
    let mut doc = stack_doc(kernel)?;
    let svc = &mut doc["services"];
    match workload {
        WorkloadKind::Model => {
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
            serve.extend(p.replica_args());
            svc["webserver"]["command"] = json!(serve);
        }
        WorkloadKind::Dotnet => use_dotnet(&mut svc["webserver"], p)?,
    }
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
                format!("--flap-window={}s", p.flap_window_s),
                "--no-scale-down".into(),
                // The run reads the decisions from /events; the secret may predate the run,
                // so its token is not known here.
                "--public-reads".into(),
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
    publish_on_manager(&mut doc)?;
    for (key, file) in [
        ("prometheus_yml", "prometheus.yml"),
        ("alert_rules_yml", "alert_rules.yml"),
        ("alertmanager_yml", "alertmanager.yml"),
    ] {
        doc["configs"][key]["file"] = dir.join(file).display().to_string().into();
    }
    Ok(doc)
}

/// Compose's merge of an override file (`docker stack deploy -c base -c override`): maps
/// merge key by key, anything else (a command list, a string) is replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.as_str()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The workload as the .NET service: `deploy/docker-compose.dotnet.yml` merged into the
/// stack's `webserver`, then the profile's blocking time, minimum threads and processors (the
/// model's `serve_args` do not apply: the runtime has its own pool).
fn use_dotnet(web: &mut Value, p: &Profile) -> anyhow::Result<()> {
    let over: Value =
        serde_norway::from_str(COMPOSE_DOTNET).context("the embedded .NET stack override")?;
    merge(web, &over["services"]["webserver"]);
    let profile_args = p.dotnet_args();
    let set_by_profile = |a: &str| {
        let flag = a.split_once('=').map_or(a, |(f, _)| f);
        profile_args.iter().any(|x| x == flag)
    };
    let mut cmd: Vec<Value> = web["command"]
        .as_array()
        .context("the .NET override's webserver has no command list")?
        .iter()
        .filter(|a| !a.as_str().is_some_and(set_by_profile))
        .cloned()
        .collect();
    cmd.extend(["--push-interval", "1s"].map(Value::from));
    cmd.extend(profile_args.into_iter().map(Value::from));
    web["command"] = cmd.into();
    web["environment"]["DOTNET_PROCESSOR_COUNT"] = p.dotnet_processors.to_string().into();
    Ok(())
}

/// Write the run's stack (compose file, Prometheus, `rules`, Alertmanager) into `dir`. The
/// returned compose file is the one to deploy: a private temporary file (mode 0600, removed
/// when dropped), since the workload's command holds the profile's `serve_args` as given
/// (a MongoDB URI with its password). The record kept in `dir/docker-compose.yml` has them
/// redacted.
pub(super) fn write_stack(
    profile: &Profile,
    workload: WorkloadKind,
    rules: &str,
    role: Role,
    dir: &Path,
    kernel: Kernel,
) -> anyhow::Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut doc = stack_for_run(profile, workload, role, dir, kernel)?;
    for (file, text) in [
        ("prometheus.yml", PROMETHEUS_YML),
        ("alert_rules.yml", rules),
        ("alertmanager.yml", ALERTMANAGER_YML),
    ] {
        std::fs::write(dir.join(file), text)?;
    }
    let mut deployed = tempfile::Builder::new()
        .prefix(".docker-compose-")
        .suffix(".yml")
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut deployed, serde_norway::to_string(&doc)?.as_bytes())?;
    redact_command(&mut doc["services"]["webserver"]["command"]);
    std::fs::write(
        dir.join("docker-compose.yml"),
        serde_norway::to_string(&doc)?,
    )?;
    Ok(deployed)
}

/// A service's `command` list with its secrets redacted.
fn redact_command(command: &mut Value) {
    if let Some(list) = command.as_array() {
        let args: Vec<String> = list
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect();
        *command = json!(crate::util::redact::args(&args));
    }
}

// ---------------------------------------------------------------------------------------------
// The docker CLI, for stacks only

/// Whether the docker CLI is on `PATH` (looked for, not run: it is needed only to deploy).
pub(super) fn cli_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let cli = dir.join(CLI);
            std::fs::metadata(&cli).is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                    && m.is_file()
            })
        })
    })
}

/// `docker ARGS` with `env` added, stdin null: Ok on success, else an error with the command
/// and its stderr.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let shown = format!("{CLI} {}", args.join(" "));
    let out = tokio::process::Command::new(CLI)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!(
                "running `{shown}`: --backend swarm needs the docker CLI for stacks; install it \
                 (`apt-get install docker.io`)"
            )
        })?;
    anyhow::ensure!(
        out.status.success(),
        "`{shown}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `docker stack deploy` of `compose` as `stack`, with `env` (the stack file's variables) set;
/// images are used as they are on the nodes (no registry).
pub async fn deploy(compose: &Path, stack: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    let compose = compose.display().to_string();
    let args = [
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        &compose,
        stack,
    ];
    cli(&args, env).await
}

/// `docker stack rm`: asks the Swarm to remove the stack (removal goes on afterwards).
pub async fn remove(stack: &str) -> anyhow::Result<()> {
    cli(&["stack", "rm", stack], &[]).await
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
