//! `starvation experiment --backend swarm`: each run deploys the stack of `deploy/` (as built
//! into this binary) under its own name, runs `starvation load` in a container on the stack's
//! network with remote write to the stack's Prometheus (like the paper's k6), is read back from
//! that Prometheus ([`stack_monitor`]), and removes the stack, waiting until nothing of it is
//! left. See `docs/experiment.md`.
//!
//! Files by concern: the run behind the runner's `Backend` seam ([`run`]), what a run changed
//! and its teardown ([`deployment`]), which node ran what ([`placement`]), waiting for the
//! stack ([`ready`]), the stack file ([`stack`]), and the Engine API ([`engine`], through bollard; stacks are a docker CLI
//! feature, so only deploying and removing the stack runs the CLI).

mod deployment;
pub mod engine;
mod placement;
mod ready;
mod run;
pub mod stack;

use crate::experiment::WorkloadKind;
use crate::monitor::remote::RemotePrometheus;
use engine::Engine;
pub use run::SwarmBackend;
pub use stack::{
    ALERTMANAGER_PORT, DOTNET_IMAGE, DOTNET_RUNTIME_LABEL, DOTNET_SOURCE_LABEL, IMAGES, Kernel,
    PROMETHEUS_PORT, SCALER_PORT, SECRET, kernel_has_esp, kernel_has_ipvs, publish_on_manager,
    use_dnsrr,
};

/// The swarm backend's flags. Saved in `experiment.json`; on `--resume` a flag given again
/// replaces the saved value.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct SwarmOpts {
    /// --backend swarm: tag of the stack's images (starvation:TAG, starvation/prometheus:TAG,
    /// ...), as built by `deploy/build-images.sh --all --tag starvation:TAG` (add --dotnet for
    /// --workload dotnet). Default dev.
    #[arg(long = "swarm-tag", value_name = "TAG", env = "STARVATION_SWARM_TAG")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// --backend swarm: the host at which this machine reaches the ports a run's stack
    /// publishes on the manager (Prometheus 9090, Alertmanager 9093, scaler 5001; host mode, an
    /// opt-in of the experiment's stack only; the Pushgateway never). Default 127.0.0.1 (this
    /// machine is the manager).
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
/// stacks) and the Engine, an active Swarm whose node this is a manager, the five images (and
/// the .NET workload's, built from this binary's C# source, with `--workload dotnet`), and the
/// stack's host ports free. With `--workload dotnet`, returns the image's runtime version.
pub async fn preflight(opts: &SwarmOpts, workload: WorkloadKind) -> anyhow::Result<Option<String>> {
    anyhow::ensure!(
        stack::cli_on_path(),
        "--backend swarm needs the docker CLI to deploy stacks (there is no Engine API for \
         them), and there is no `docker` on PATH; install it (`apt-get install docker.io`)"
    );
    let engine = Engine::connect().await?;
    engine.manager_node().await?;
    let dotnet = workload == WorkloadKind::Dotnet;
    let dotnet_image = format!("{DOTNET_IMAGE}:{}", opts.tag());
    let images: Vec<String> = IMAGES
        .iter()
        .map(|i| format!("{i}:{}", opts.tag()))
        .chain(dotnet.then(|| dotnet_image.clone()))
        .collect();
    let build = format!(
        "deploy/build-images.sh --all{} --tag starvation:{}",
        if dotnet { " --dotnet" } else { "" },
        opts.tag()
    );
    let missing = engine.missing_images(&images).await?;
    if !missing.is_empty() {
        anyhow::bail!(
            "--backend swarm: image(s) {} not found on this node (no registry is used: nothing is \
             pulled); build them with:\n    {build}\n\
             (or choose the tag you built with --swarm-tag)",
            missing.join(", ")
        );
    }
    let runtime = if dotnet {
        Some(dotnet_image_runtime(&engine, &dotnet_image, &build).await?)
    } else {
        None
    };
    let mut doc = stack::stack_doc(Kernel::detect())?;
    publish_on_manager(&mut doc)?;
    let busy: Vec<String> = stack::host_ports(&doc)
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
    Ok(runtime)
}

/// The runtime version in the .NET workload's image, which must hold the service compiled from
/// this binary's C# source (else the run would measure another service than it records).
async fn dotnet_image_runtime(engine: &Engine, image: &str, build: &str) -> anyhow::Result<String> {
    let labels = engine.image_labels(image).await?;
    let want = crate::dotnet::build::source_hash();
    let label = |key: &str| labels.get(key).map(String::as_str).unwrap_or("");
    let source = label(DOTNET_SOURCE_LABEL);
    anyhow::ensure!(
        source == want,
        "--workload dotnet: image {image} holds the .NET workload compiled from other sources \
         (label {DOTNET_SOURCE_LABEL}={source:?}; this starvation's dotnet/*.cs hash to \
         {want:.16}…); rebuild it:\n    {build}"
    );
    let runtime = label(DOTNET_RUNTIME_LABEL);
    anyhow::ensure!(
        runtime.starts_with(&format!("{}.", crate::dotnet::MAJOR)),
        "--workload dotnet: image {image} says its runtime is {runtime:?} (label \
         {DOTNET_RUNTIME_LABEL}), not .NET {}; rebuild it with a .NET {0} runtime:\n    {build}",
        crate::dotnet::MAJOR
    );
    Ok(runtime.to_owned())
}

/// The Prometheus of a run's stack, at its published ports.
pub fn stack_monitor(opts: &SwarmOpts) -> anyhow::Result<RemotePrometheus> {
    RemotePrometheus::new(opts.url(PROMETHEUS_PORT), opts.url(ALERTMANAGER_PORT))
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
