//! Docker Swarm through the Engine API (bollard): replicas of a replicated service, scaling it,
//! and the services labelled `starvation.managed=true`.
//!
//! Scaling is the Engine's optimistic-concurrency protocol: inspect the service, change only
//! `Mode.Replicated.Replicas` in the inspected spec, send the whole spec back with the inspected
//! `Version.Index`. When someone else updated the service in between, the Engine answers
//! "update out of sequence"; then re-inspect and try again, a bounded number of times.
//!
//! The spec makes that round trip as the Engine's raw JSON, never through bollard's models:
//! they drop what they do not know or misname (bollard-stubs 1.53 calls the container spec's
//! `Healthcheck` `HealthCheck`), and a spec sent back without its healthcheck makes Swarm
//! restart every task on each scale. bollard serves the read-only calls.
//!
//! The Engine calls sit behind [`ServiceApi`] so the retry and spec-mutation logic is tested
//! with a scripted fake, and so an integration test can inject an out-of-band update between
//! the inspect and the update.

mod engine;
mod labels;
mod placement;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{Service, ServiceSpec};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;

use super::{Orchestrator, OrchestratorError, ServiceStatus};
pub use engine::{ApiError, EngineApi, ServiceApi};
pub use labels::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Updates attempted in total before giving up with [`OrchestratorError::Conflict`].
    pub attempts: u32,
    /// Wait before the second attempt; doubles per attempt (at most 2 s), plus up to 50 % jitter.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            backoff: Duration::from_millis(25),
        }
    }
}

impl Retry {
    fn delay(&self, failed_attempt: u32) -> Duration {
        let base = (self.backoff * 2u32.saturating_pow(failed_attempt.saturating_sub(1)))
            .min(Duration::from_secs(2));
        // Jitter so two writers that collided do not collide again in lockstep.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        base + base.mul_f64(f64::from(nanos % 500) / 1000.0)
    }
}

/// [`Orchestrator`] for Docker Swarm services.
#[derive(Clone)]
pub struct SwarmOrchestrator {
    api: Arc<dyn ServiceApi>,
    retry: Retry,
    /// The last leadership answer and when it was had: asked at most every `LEADER_TTL`.
    leader: Arc<Mutex<Option<Leadership>>>,
}

/// When leadership was asked, and the answer (`Err`: why this Engine is not the leader).
type Leadership = (Instant, Result<(), String>);

/// How long a leadership answer is trusted; a new leader takes over within it (Alertmanager
/// retries meanwhile).
const LEADER_TTL: Duration = Duration::from_secs(2);

impl SwarmOrchestrator {
    /// Connects to the Engine (`DOCKER_HOST` or the unix socket).
    pub async fn connect() -> Result<SwarmOrchestrator, OrchestratorError> {
        Ok(SwarmOrchestrator::with_api(EngineApi::connect().await?))
    }

    pub fn with_api(api: impl ServiceApi) -> SwarmOrchestrator {
        SwarmOrchestrator {
            api: Arc::new(api),
            retry: Retry::default(),
            leader: Arc::new(Mutex::new(None)),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> SwarmOrchestrator {
        self.retry = retry;
        self
    }

    /// `/info` and this node's `/nodes/{id}`: is this Engine the Swarm leader? An Engine that
    /// does not answer is an error (no answer is cached), not a "no".
    async fn ask_leadership(&self) -> Result<Result<(), String>, OrchestratorError> {
        let fail = |e: ApiError| OrchestratorError::Backend(format!("Swarm leadership: {e}"));
        let info = self.api.get("/info").await.map_err(fail)?;
        let Some(node_id) = info["Swarm"]["NodeID"].as_str().filter(|id| !id.is_empty()) else {
            return Ok(Err(
                "this scaler's Docker Engine is not part of a Swarm: docker swarm init (or join)"
                    .to_owned(),
            ));
        };
        if info["Swarm"]["ControlAvailable"] != true {
            return Ok(placement::leadership(&info, &serde_json::Value::Null));
        }
        let node = self
            .api
            .get(&format!("/nodes/{}", engine::url_segment(node_id)))
            .await
            .map_err(fail)?;
        Ok(placement::leadership(&info, &node))
    }

    async fn scale_inner(&self, service: &str, replicas: u32) -> Result<(), OrchestratorError> {
        let attempts = self.retry.attempts.max(1);
        for attempt in 1..=attempts {
            let inspected = self
                .api
                .inspect(service)
                .await
                .map_err(|e| api_err(service, e))?;
            let id = inspected["ID"].as_str().unwrap_or(service).to_string();
            let version = inspected["Version"]["Index"]
                .as_u64()
                .ok_or_else(|| backend(service, "the Engine returned no Version.Index"))?;
            let mut spec = inspected
                .get("Spec")
                .filter(|s| s.is_object())
                .cloned()
                .ok_or_else(|| backend(service, "the Engine returned no Spec"))?;
            let current = replicas_in(service, &typed_spec(service, &spec)?)?;
            if current == replicas {
                tracing::debug!(service, replicas, "already at the desired replicas");
                return Ok(());
            }
            set_replicas(&mut spec, replicas);
            match self.api.update(&id, version, spec).await {
                Ok(()) => {
                    tracing::info!(service, from = current, to = replicas, attempt, "scaled");
                    return Ok(());
                }
                Err(ApiError::OutOfSequence(msg)) => {
                    tracing::info!(service, attempt, version, "update lost a race ({msg})");
                    if attempt < attempts {
                        tokio::time::sleep(self.retry.delay(attempt)).await;
                    }
                }
                Err(e) => return Err(api_err(service, e)),
            }
        }
        Err(OrchestratorError::Conflict {
            service: service.to_string(),
            attempts,
        })
    }
}

/// Read a raw spec through bollard's model (reading only; never sent back).
fn typed_spec(service: &str, spec: &Value) -> Result<ServiceSpec, OrchestratorError> {
    serde_json::from_value(spec.clone())
        .map_err(|e| backend(service, &format!("unreadable service spec: {e}")))
}

impl Orchestrator for SwarmOrchestrator {
    fn status<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<ServiceStatus, OrchestratorError>> {
        Box::pin(async move {
            let inspected = self
                .api
                .inspect(service)
                .await
                .map_err(|e| api_err(service, e))?;
            let typed: Service = serde_json::from_value(inspected.clone())
                .map_err(|e| backend(service, &format!("unreadable service: {e}")))?;
            let mut status = status_of(service, &typed)?;
            // Readiness and placement inform decisions but must not stop them: an Engine that
            // cannot list tasks leaves the spec's count as the ready count.
            let id = inspected["ID"].as_str().unwrap_or(service);
            match self.api.get(&placement::tasks_path(id)).await {
                Ok(tasks) => status.tasks = Some(placement::count_tasks(&tasks)),
                Err(e) => tracing::warn!(service, "listing its tasks: {e}"),
            }
            if inspected["Spec"]["TaskTemplate"]["Placement"]["MaxReplicas"].as_u64() > Some(0) {
                match self.api.get("/nodes").await {
                    Ok(nodes) => status.ceiling = placement::ceiling(&inspected["Spec"], &nodes),
                    Err(e) => tracing::warn!(service, "listing the nodes: {e}"),
                }
            }
            Ok(status)
        })
    }

    fn outside_changes(&self) -> Option<BoxStream<'static, Result<String, OrchestratorError>>> {
        Some(Box::pin(self.api.service_updates().map(|r| {
            r.map_err(|e| OrchestratorError::Backend(format!("Docker events: {e}")))
        })))
    }

    fn may_act(&self) -> BoxFuture<'_, Result<(), OrchestratorError>> {
        Box::pin(async move {
            if let Some((at, answer)) = self
                .leader
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                && at.elapsed() < LEADER_TTL
            {
                return answer.map_err(OrchestratorError::NotLeader);
            }
            let answer = self.ask_leadership().await?;
            *self.leader.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now(), answer.clone()));
            answer.map_err(OrchestratorError::NotLeader)
        })
    }

    fn scale<'a>(
        &'a self,
        service: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>> {
        Box::pin(self.scale_inner(service, replicas))
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, OrchestratorError>> {
        Box::pin(async move {
            let label = format!("{LABEL_MANAGED}=true");
            let listed = self.api.list_labelled(&label).await.map_err(|e| {
                OrchestratorError::Backend(format!("listing services ({label}): {e}"))
            })?;
            let mut out = Vec::with_capacity(listed.len());
            for service in &listed {
                let name = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.name.clone())
                    .or_else(|| service.id.clone())
                    .unwrap_or_default();
                match status_of(&name, service) {
                    Ok(status) => out.push(status),
                    // One misconfigured service must not hide the others; scaling it reports
                    // the same error to whoever asks.
                    Err(e) => tracing::warn!(service = name, "not managed: {e}"),
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn describe(&self) -> String {
        format!("swarm ({})", self.api.endpoint())
    }
}

fn backend(service: &str, msg: &str) -> OrchestratorError {
    OrchestratorError::Backend(format!("service {service:?}: {msg}"))
}

fn api_err(service: &str, e: ApiError) -> OrchestratorError {
    match e {
        ApiError::NotFound => OrchestratorError::NotFound(service.to_string()),
        other => backend(service, &format!("Docker Engine API: {other}")),
    }
}

fn status_of(service: &str, inspected: &Service) -> Result<ServiceStatus, OrchestratorError> {
    let spec = inspected
        .spec
        .as_ref()
        .ok_or_else(|| backend(service, "the Engine returned no Spec"))?;
    Ok(ServiceStatus {
        name: spec.name.clone().unwrap_or_else(|| service.to_string()),
        replicas: replicas_in(service, spec)?,
        bounds: bounds_from_labels(service, spec.labels.as_ref())?,
        dry_run: flag_from_labels(service, spec.labels.as_ref(), LABEL_DRY_RUN, false)?,
        restore: flag_from_labels(service, spec.labels.as_ref(), LABEL_RESTORE, true)?,
        tasks: None,
        ceiling: None,
    })
}

/// Desired replicas of a replicated service; global services and jobs are refused.
fn replicas_in(service: &str, spec: &ServiceSpec) -> Result<u32, OrchestratorError> {
    let Some(mode) = spec.mode.as_ref() else {
        // The Engine defaults a service without a mode to one replica.
        return Ok(1);
    };
    if mode.global.is_some() || mode.global_job.is_some() {
        return Err(OrchestratorError::GlobalMode(service.to_string()));
    }
    if mode.replicated_job.is_some() {
        return Err(backend(
            service,
            "is a replicated job (runs to completion) and cannot be scaled",
        ));
    }
    let replicas = mode
        .replicated
        .as_ref()
        .map(|r| r.replicas.unwrap_or(1))
        .unwrap_or(1);
    u32::try_from(replicas).map_err(|_| backend(service, &format!("has {replicas} replicas")))
}

/// Changes `Mode.Replicated.Replicas` and nothing else (call after [`replicas_in`] succeeded).
fn set_replicas(spec: &mut Value, replicas: u32) {
    let mode = object_at(spec, "Mode");
    let replicated = object_at(mode, "Replicated");
    replicated["Replicas"] = Value::from(replicas);
}

/// `value[key]` as an object, created if missing.
fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Value {
    let slot = &mut value[key];
    if !slot.is_object() {
        *slot = Value::Object(Default::default());
    }
    slot
}
