//! The Docker Engine calls of the swarm backend, through the Engine API (bollard), on the
//! connection the scaler uses ([`EngineApi`]). Stacks have no Engine API: `docker stack deploy`
//! and `docker stack rm` are in [`super::stack`].

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, HostConfig, SecretSpec};
use bollard::models::{LocalNodeState, NodeSpec, SwarmInfo};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListConfigsOptions, ListContainersOptions, ListNetworksOptions,
    ListSecretsOptions, ListServicesOptions, ListVolumesOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UpdateNodeOptions,
};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use crate::orchestrator::swarm::{EngineApi, ServiceApi as _, SwarmOrchestrator};

/// Node updates attempted before a version conflict is an error.
const NODE_UPDATE_ATTEMPTS: u32 = 5;

/// The local Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    api: EngineApi,
}

/// The Engine answered 404.
fn not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The Engine refused a node update made with a stale version.
fn out_of_sequence(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { message, .. }
        if message.contains("update out of sequence"))
}

/// `{"label": ["com.docker.stack.namespace=<stack>"]}`.
fn namespace_filter(stack: &str) -> Option<HashMap<String, Vec<String>>> {
    Some(HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.stack.namespace={stack}")],
    )]))
}

/// "KIND ID" per listed object, or a line saying the listing failed.
fn leftover<T>(
    kind: &str,
    listed: Result<Vec<T>, BollardError>,
    id: impl Fn(T) -> Option<String>,
) -> Vec<String> {
    match listed {
        Ok(objects) => objects
            .into_iter()
            .filter_map(id)
            .map(|id| format!("{kind} {id}"))
            .collect(),
        Err(e) => vec![format!("{kind}s unknown: listing them failed: {e}")],
    }
}

/// The node id in `GET /info`'s Swarm part, if the node is an active manager.
fn manager_id(swarm: SwarmInfo) -> anyhow::Result<String> {
    match (swarm.local_node_state, swarm.control_available) {
        (Some(LocalNodeState::ACTIVE), Some(true)) => {
            let id = swarm.node_id.filter(|id| !id.is_empty());
            id.context("--backend swarm: the Engine is a Swarm manager but gave no node id")
        }
        (Some(LocalNodeState::ACTIVE), _) => anyhow::bail!(
            "--backend swarm: this node is a Swarm worker; run the experiment on a manager \
             (stacks are deployed and scaled through a manager)"
        ),
        (state, _) => anyhow::bail!(
            "--backend swarm: this Docker Engine is not in a Swarm (state {}); create one with \
             `docker swarm init --advertise-addr 127.0.0.1` (or join one as a manager)",
            state.map_or("unknown".into(), |s| s.to_string())
        ),
    }
}

/// A time of a container's state (RFC 3339, nanoseconds, as the Engine writes them).
fn parse_time(what: &str, t: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    let t = t.with_context(|| format!("the Engine gave no {what}"))?;
    Ok(DateTime::parse_from_rfc3339(t)
        .with_context(|| format!("the Engine's {what} {t:?} is not an RFC 3339 time"))?
        .with_timezone(&Utc))
}

impl Engine {
    /// Connect to the local Engine (`DOCKER_HOST`, else the default unix socket), with the API
    /// version negotiated down to what the Engine speaks.
    pub async fn connect() -> anyhow::Result<Engine> {
        let api = EngineApi::connect().await.context(
            "--backend swarm: cannot talk to the Docker Engine; is it running (`systemctl start \
             docker`), and may this user use it (join group docker: `usermod -aG docker $USER`, \
             then log in again)?",
        )?;
        Ok(Engine { api })
    }

    fn docker(&self) -> &Docker {
        self.api.docker()
    }

    /// The scaler's view of the same Engine (replica counts).
    pub fn orchestrator(&self) -> SwarmOrchestrator {
        SwarmOrchestrator::with_api(self.api.clone())
    }

    /// This node's id, if it is an active Swarm manager.
    pub async fn manager_node(&self) -> anyhow::Result<String> {
        let info = self
            .docker()
            .info()
            .await
            .context("--backend swarm: asking the Docker Engine about its Swarm (GET /info)")?;
        manager_id(info.swarm.unwrap_or_default())
    }

    /// `GET {path}` (`/nodes`, `/tasks?filters=…`): the Engine's JSON as it sent it.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.api
            .get(path)
            .await
            .map_err(|e| anyhow::anyhow!("GET {path} on the Docker Engine: {e}"))
    }

    /// Of `images` ("name:tag"), those not present locally.
    pub async fn missing_images(&self, images: &[String]) -> anyhow::Result<Vec<String>> {
        let mut missing = Vec::new();
        for image in images {
            match self.docker().inspect_image(image).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => missing.push(image.clone()),
                Err(e) => return Err(e).with_context(|| format!("inspecting image {image}")),
            }
        }
        Ok(missing)
    }

    /// The labels of a local image (`docker build --label`).
    pub async fn image_labels(&self, image: &str) -> anyhow::Result<HashMap<String, String>> {
        let inspect = self
            .docker()
            .inspect_image(image)
            .await
            .with_context(|| format!("inspecting image {image}"))?;
        Ok(inspect.config.and_then(|c| c.labels).unwrap_or_default())
    }

    /// Every node's id and its `role` label (None when unlabelled).
    pub async fn node_roles(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let nodes = self
            .docker()
            .list_nodes(None)
            .await
            .context("listing the Swarm's nodes")?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| {
                let role = n.spec.and_then(|s| s.labels?.remove("role"));
                Some((n.id?, role))
            })
            .collect())
    }

    /// Add (`Some(value)`) or remove (`None`) label `key` on `node`: the node's spec sent back
    /// with the inspected version; another update in between is retried a few times.
    pub async fn set_node_label(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
    ) -> anyhow::Result<()> {
        let what = match value {
            Some(v) => format!("labelling node {node} {key}={v}"),
            None => format!("removing label {key} of node {node}"),
        };
        for attempt in 1.. {
            let inspected = self
                .docker()
                .inspect_node(node)
                .await
                .with_context(|| what.clone())?;
            let version = inspected
                .version
                .and_then(|v| v.index)
                .with_context(|| format!("{what}: the Engine gave no node version"))?;
            let mut spec: NodeSpec = inspected.spec.unwrap_or_default();
            let labels = spec.labels.get_or_insert_default();
            let changed = match value {
                Some(v) => labels.insert(key.into(), v.into()).as_deref() != Some(v),
                None => labels.remove(key).is_some(),
            };
            if !changed {
                return Ok(());
            }
            let options = UpdateNodeOptions {
                version: i64::try_from(version)?,
            };
            match self.docker().update_node(node, spec, options).await {
                Ok(()) => return Ok(()),
                Err(e) if out_of_sequence(&e) && attempt < NODE_UPDATE_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("{what} (attempt {attempt} of {NODE_UPDATE_ATTEMPTS})")
                    });
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// The id of the secret named exactly `name`.
    async fn secret_id(&self, name: &str) -> anyhow::Result<Option<String>> {
        let options = ListSecretsOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        };
        let secrets = self
            .docker()
            .list_secrets(Some(options))
            .await
            .with_context(|| format!("looking for secret {name}"))?;
        Ok(secrets
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
            .and_then(|s| s.id))
    }

    pub async fn secret_exists(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self.secret_id(name).await?.is_some())
    }

    pub async fn create_secret(&self, name: &str, data: &[u8]) -> anyhow::Result<()> {
        let spec = SecretSpec {
            name: Some(name.into()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        self.docker()
            .create_secret(spec)
            .await
            .with_context(|| format!("creating secret {name}"))?;
        Ok(())
    }

    pub async fn remove_secret(&self, name: &str) -> anyhow::Result<()> {
        let id = self
            .secret_id(name)
            .await?
            .with_context(|| format!("removing secret {name}: there is no such secret"))?;
        self.docker().delete_secret(&id).await.with_context(|| {
            format!("removing secret {name}; remove it by hand: `docker secret rm {name}`")
        })
    }

    /// "service ID", "container ID", "network ID", "config ID", "volume NAME" of everything
    /// labelled `com.docker.stack.namespace=<stack>`; a listing that fails adds a line saying so.
    pub async fn stack_leftovers(&self, stack: &str) -> Vec<String> {
        let d = self.docker();
        let filters = namespace_filter(stack);
        let services = d.list_services(Some(ListServicesOptions {
            filters: filters.clone(),
            status: None,
        }));
        let containers = d.list_containers(Some(ListContainersOptions {
            all: true,
            filters: filters.clone(),
            ..Default::default()
        }));
        let networks = d.list_networks(Some(ListNetworksOptions {
            filters: filters.clone(),
        }));
        let configs = d.list_configs(Some(ListConfigsOptions {
            filters: filters.clone(),
        }));
        let volumes = d.list_volumes(Some(ListVolumesOptions { filters }));
        let (services, containers, networks, configs, volumes) =
            tokio::join!(services, containers, networks, configs, volumes);
        let mut left = leftover("service", services, |s| s.id);
        left.extend(leftover("container", containers, |c| c.id));
        left.extend(leftover("network", networks, |n| n.id));
        left.extend(leftover("config", configs, |c| c.id));
        let volumes = volumes.map(|v| v.volumes.unwrap_or_default());
        left.extend(leftover("volume", volumes, |v| Some(v.name)));
        left
    }

    pub async fn remove_volume(&self, name: &str) -> anyhow::Result<()> {
        self.docker()
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .with_context(|| format!("removing volume {name}"))
    }

    /// Create and start a detached container `name` from `image` on `network` running `cmd`
    /// (`docker run -d --name NAME --network NETWORK IMAGE CMD...`).
    pub async fn run_container(
        &self,
        name: &str,
        image: &str,
        network: &str,
        cmd: &[String],
    ) -> anyhow::Result<()> {
        let body = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(cmd.to_vec()),
            host_config: Some(HostConfig {
                network_mode: Some(network.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .docker()
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("creating container {name} from {image} on {network}"))?;
        for warning in created.warnings {
            tracing::warn!(container = name, "Docker: {warning}");
        }
        self.docker()
            .start_container(name, None)
            .await
            .with_context(|| format!("starting container {name} (see `docker logs {name}`)"))
    }

    async fn state(&self, name: &str) -> anyhow::Result<bollard::models::ContainerState> {
        let inspected = self
            .docker()
            .inspect_container(name, None)
            .await
            .with_context(|| format!("inspecting container {name}"))?;
        inspected
            .state
            .with_context(|| format!("container {name}: the Engine gave no state"))
    }

    /// `Some(exit code)` once the container has exited (or is dead), `None` while it runs.
    pub async fn exit_code(&self, name: &str) -> anyhow::Result<Option<i64>> {
        let state = self.state(name).await?;
        Ok(match state.status {
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                Some(state.exit_code.unwrap_or(-1))
            }
            _ => None,
        })
    }

    /// The container's `StartedAt` and `FinishedAt`.
    pub async fn container_times(
        &self,
        name: &str,
    ) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
        let state = self.state(name).await?;
        let started = parse_time("StartedAt", state.started_at.as_deref());
        let finished = parse_time("FinishedAt", state.finished_at.as_deref());
        Ok((
            started.with_context(|| format!("container {name}"))?,
            finished.with_context(|| format!("container {name}"))?,
        ))
    }

    /// Everything the container wrote to stdout (not stderr).
    pub async fn container_stdout(&self, name: &str) -> anyhow::Result<String> {
        let options = LogsOptionsBuilder::default().stdout(true).build();
        let mut logs = std::pin::pin!(self.docker().logs(name, Some(options)));
        let mut out = Vec::new();
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.with_context(|| format!("reading the logs of container {name}"))?;
            if let bollard::container::LogOutput::StdOut { message } = chunk {
                out.extend_from_slice(&message);
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Force-remove; Ok if it does not exist.
    pub async fn remove_container(&self, name: &str) -> anyhow::Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker().remove_container(name, Some(options)).await {
            Err(e) if !not_found(&e) => Err(e).with_context(|| {
                format!("removing container {name}; remove it by hand: `docker rm -f {name}`")
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
