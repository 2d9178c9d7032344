//! The seam between the scaler and whatever runs the replicas: Docker Swarm through the Engine
//! API (`swarm`) or child processes on this machine (`local`).

pub mod child_env;
pub mod local;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub mod swarm;

/// Per-service scaling bounds. Flags give the defaults; an orchestrator may override them per
/// service (Swarm: service labels `starvation.min`, `starvation.max`, `starvation.step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    pub step: u32,
}

/// Overrides an orchestrator found for one service; `None` keeps the flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BoundsOverride {
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub step: Option<u32>,
}

impl Bounds {
    pub fn with(self, o: BoundsOverride) -> Bounds {
        Bounds {
            min: o.min.unwrap_or(self.min),
            max: o.max.unwrap_or(self.max),
            step: o.step.unwrap_or(self.step),
        }
    }
}

/// A service's tasks as readiness counts them (orchestrators that place tasks on nodes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tasks {
    /// Running, and healthy where the service has a healthcheck (Swarm reports such a task
    /// `starting` until its check passes).
    pub ready: u32,
    /// Meant to run, not ready yet (new, pending, assigned, preparing, starting).
    pub starting: u32,
    /// Pending because no node can take them (`no suitable node …`).
    pub unplaceable: u32,
    /// The Engine's reason for one unplaceable task.
    pub unplaceable_reason: Option<String>,
}

/// What an orchestrator knows about one service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Desired replicas as configured (Swarm: `Mode.Replicated.Replicas`).
    pub replicas: u32,
    pub bounds: BoundsOverride,
    /// Shadow mode (Swarm label `starvation.dry-run=true`): decide and report, never scale.
    pub dry_run: bool,
    /// Restore the scaler's count after an outside change lowered it (Swarm label
    /// `starvation.restore=false` opts out).
    pub restore: bool,
    /// Where the tasks are; `None` when every desired replica counts as ready (local).
    pub tasks: Option<Tasks>,
    /// The most replicas the nodes can place (Swarm: `max_replicas_per_node` × the nodes that
    /// satisfy the placement constraints); `None` when unlimited.
    pub ceiling: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("service {0:?} not found")]
    NotFound(String),
    #[error(
        "service {0:?} runs in global mode (one task per node) and cannot be scaled; \
         deploy it with `mode: replicated`"
    )]
    GlobalMode(String),
    #[error("service {service:?}: label {label}={value:?} is not {expected}")]
    BadLabel {
        service: String,
        label: String,
        value: String,
        expected: &'static str,
    },
    #[error("service {service:?}: update still out of sequence after {attempts} attempts")]
    Conflict { service: String, attempts: u32 },
    /// Another scaler instance acts (Swarm: only the one on the leader manager does).
    #[error("{0}")]
    NotLeader(String),
    #[error("{0}")]
    Backend(String),
}

/// Replicas of a service, and scaling it. Implementations must be safe to call concurrently;
/// the scaler serializes decisions per service itself.
pub trait Orchestrator: Send + Sync + 'static {
    fn status<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<ServiceStatus, OrchestratorError>>;

    /// Set the desired replica count (the caller has already applied the bounds).
    fn scale<'a>(
        &'a self,
        service: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>>;

    /// The services this orchestrator manages.
    fn services(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, OrchestratorError>>;

    /// Whether this scaler may act now. Several scaler replicas may run (on several Swarm
    /// managers); only the one whose Engine is the leader acts, the others answer
    /// [`OrchestratorError::NotLeader`] so Alertmanager retries, reaching the leader.
    fn may_act(&self) -> BoxFuture<'_, Result<(), OrchestratorError>> {
        Box::pin(async { Ok(()) })
    }

    /// Services changed by someone else (Swarm: `docker stack deploy` resets replicas to the
    /// stack file's count), by name, as they happen; `None` when nothing else changes them.
    fn outside_changes(&self) -> Option<BoxStream<'static, Result<String, OrchestratorError>>> {
        None
    }

    /// For logs and the status page, e.g. "swarm (unix:///var/run/docker.sock)".
    fn describe(&self) -> String;

    /// Stop the replicas this orchestrator started itself (local processes); an orchestrator
    /// of a cluster it does not own leaves it as it is.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
