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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{Service, ServiceSpec};
use bollard::query_parameters::ListServicesOptions;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{BoundsOverride, Orchestrator, OrchestratorError, ServiceStatus};

/// Services carrying `starvation.managed=true` are the ones [`Orchestrator::services`] lists.
pub const LABEL_MANAGED: &str = "starvation.managed";
pub const LABEL_MIN: &str = "starvation.min";
pub const LABEL_MAX: &str = "starvation.max";
pub const LABEL_STEP: &str = "starvation.step";
pub const LABEL_DRY_RUN: &str = "starvation.dry-run";

/// What an Engine API call reported, reduced to what scaling decides on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such service")]
    NotFound,
    /// The version sent with an update is not the service's current one.
    #[error("{0}")]
    OutOfSequence(String),
    #[error("{0}")]
    Other(String),
}

impl From<bollard::errors::Error> for ApiError {
    fn from(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => ApiError::NotFound,
            bollard::errors::Error::DockerResponseServerError { message, .. }
                if message.contains("update out of sequence") =>
            {
                ApiError::OutOfSequence(message)
            }
            other => ApiError::Other(other.to_string()),
        }
    }
}

/// The Engine API calls the Swarm orchestrator makes. [`EngineApi`] is the real one.
pub trait ServiceApi: Send + Sync + 'static {
    /// `GET /services/{id or name}`: the service object exactly as the Engine sent it.
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// `POST /services/{id}/update?version={version}` with the whole spec, as raw JSON.
    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// `GET /services?filters={"label":[label]}`; `label` is `key` or `key=value`.
    fn list_labelled<'a>(&'a self, label: &'a str)
    -> BoxFuture<'a, Result<Vec<Service>, ApiError>>;

    /// Where the API is, for logs ("unix:///var/run/docker.sock").
    fn endpoint(&self) -> String;
}

/// Shared APIs: keep an `Arc` to a fake (or a wrapper) and give the orchestrator a clone.
impl<T: ServiceApi + ?Sized> ServiceApi for Arc<T> {
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        (**self).inspect(service)
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        (**self).update(service_id, version, spec)
    }

    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Service>, ApiError>> {
        (**self).list_labelled(label)
    }

    fn endpoint(&self) -> String {
        (**self).endpoint()
    }
}

/// The Docker Engine API over the unix socket, or wherever `DOCKER_HOST` points.
#[derive(Debug, Clone)]
pub struct EngineApi {
    docker: Docker,
    endpoint: String,
    /// For the raw JSON calls: a client bound to the socket (or TCP host) and the versioned
    /// base URL, `http://docker/v1.41`.
    raw: reqwest::Client,
    raw_base: String,
}

impl EngineApi {
    /// Connects like the docker CLI does (`DOCKER_HOST`, else the default unix socket) and
    /// negotiates the API version down to what the Engine speaks (20.10 speaks 1.41).
    pub async fn connect() -> Result<EngineApi, OrchestratorError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let fail = |e: &dyn std::fmt::Display| {
            OrchestratorError::Backend(format!("Docker at {endpoint}: {e}"))
        };
        let docker = Docker::connect_with_defaults()
            .map_err(|e| fail(&e))?
            .negotiate_version()
            .await
            .map_err(|e| fail(&e))?;
        let (builder, host) = if let Some(path) = endpoint.strip_prefix("unix://") {
            (
                reqwest::Client::builder().unix_socket(path),
                "docker".to_string(),
            )
        } else if let Some(addr) = endpoint.strip_prefix("tcp://") {
            (reqwest::Client::builder(), addr.to_string())
        } else {
            return Err(fail(
                &"only unix:// and tcp:// (plain HTTP) DOCKER_HOST are supported",
            ));
        };
        let raw = builder
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| fail(&e))?;
        let v = docker.client_version();
        let raw_base = format!("http://{host}/v{}.{}", v.major_version, v.minor_version);
        Ok(EngineApi {
            docker,
            endpoint,
            raw,
            raw_base,
        })
    }

    /// The bollard client, for callers that need more of the API (tests, deploy).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Send a request; a JSON answer on success, else the Engine's `message` as an error.
    async fn raw_call(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Other(format!("{} unreachable: {e}", self.endpoint)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Other(format!("reading the Engine's answer: {e}")))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(match status.as_u16() {
            404 => ApiError::NotFound,
            _ if message.contains("update out of sequence") => ApiError::OutOfSequence(message),
            code => ApiError::Other(format!("HTTP {code}: {message}")),
        })
    }
}

impl ServiceApi for EngineApi {
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = format!("{}/services/{}", self.raw_base, url_segment(service));
            self.raw_call(self.raw.get(url)).await
        })
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let url = format!(
                "{}/services/{}/update",
                self.raw_base,
                url_segment(service_id)
            );
            let req = self
                .raw
                .post(url)
                .query(&[("version", version)])
                .json(&spec);
            let answer = self.raw_call(req).await?;
            for warning in answer["Warnings"].as_array().into_iter().flatten() {
                tracing::warn!(service = service_id, "Docker: {warning}");
            }
            Ok(())
        })
    }

    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Service>, ApiError>> {
        Box::pin(async move {
            let options = ListServicesOptions {
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![label.to_string()],
                )])),
                status: None,
            };
            Ok(self.docker.list_services(Some(options)).await?)
        })
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
}

/// A service name or ID as one URL path segment.
fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How scaling retries an update that lost a race with another writer.
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
}

impl SwarmOrchestrator {
    /// Connects to the Engine (`DOCKER_HOST` or the unix socket).
    pub async fn connect() -> Result<SwarmOrchestrator, OrchestratorError> {
        Ok(SwarmOrchestrator::with_api(EngineApi::connect().await?))
    }

    pub fn with_api(api: impl ServiceApi) -> SwarmOrchestrator {
        SwarmOrchestrator {
            api: Arc::new(api),
            retry: Retry::default(),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> SwarmOrchestrator {
        self.retry = retry;
        self
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
            let typed: Service = serde_json::from_value(inspected)
                .map_err(|e| backend(service, &format!("unreadable service: {e}")))?;
            status_of(service, &typed)
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
        dry_run: dry_run_from_labels(service, spec.labels.as_ref())?,
    })
}

/// `starvation.dry-run`: `true` or `false` (absent: false).
pub fn dry_run_from_labels(
    service: &str,
    labels: Option<&HashMap<String, String>>,
) -> Result<bool, OrchestratorError> {
    let Some(value) = labels.and_then(|l| l.get(LABEL_DRY_RUN)) else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(OrchestratorError::BadLabel {
            service: service.to_string(),
            label: LABEL_DRY_RUN.to_string(),
            value: value.clone(),
            expected: "true or false",
        }),
    }
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

/// `starvation.min|max|step` labels; each must be a positive integer.
pub fn bounds_from_labels(
    service: &str,
    labels: Option<&HashMap<String, String>>,
) -> Result<BoundsOverride, OrchestratorError> {
    let get = |label: &str| -> Result<Option<u32>, OrchestratorError> {
        let Some(value) = labels.and_then(|l| l.get(label)) else {
            return Ok(None);
        };
        match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(OrchestratorError::BadLabel {
                service: service.to_string(),
                label: label.to_string(),
                value: value.clone(),
                expected: "a positive integer",
            }),
        }
    };
    Ok(BoundsOverride {
        min: get(LABEL_MIN)?,
        max: get(LABEL_MAX)?,
        step: get(LABEL_STEP)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ObjectVersion, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    };
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A scripted Engine: one service whose version moves on every accepted update; the update
    /// answers come from a script (default: accept when the version is current).
    #[derive(Default)]
    struct Fake {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        /// The service as the Engine would send it (raw JSON).
        service: Option<Value>,
        /// Forced answers to the next updates; `None` = check the version normally.
        script: VecDeque<Option<ApiError>>,
        /// Every update received: (id, version, spec).
        updates: Vec<(String, u64, Value)>,
        inspects: usize,
        /// On update, someone else bumps the version first this many times.
        races: u32,
    }

    impl Fake {
        fn with(service: Service) -> Fake {
            Fake::raw(serde_json::to_value(service).unwrap())
        }
        fn raw(service: Value) -> Fake {
            let fake = Fake::default();
            fake.state.lock().unwrap().service = Some(service);
            fake
        }
        fn script(self, answers: impl IntoIterator<Item = Option<ApiError>>) -> Fake {
            self.state.lock().unwrap().script.extend(answers);
            self
        }
        fn races(self, n: u32) -> Fake {
            self.state.lock().unwrap().races = n;
            self
        }
    }

    impl ServiceApi for Fake {
        fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                let mut st = self.state.lock().unwrap();
                st.inspects += 1;
                match &st.service {
                    Some(s) if s["ID"] == name || s["Spec"]["Name"] == name => Ok(s.clone()),
                    _ => Err(ApiError::NotFound),
                }
            })
        }

        fn update<'a>(
            &'a self,
            id: &'a str,
            version: u64,
            spec: Value,
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async move {
                let mut st = self.state.lock().unwrap();
                st.updates.push((id.to_string(), version, spec.clone()));
                if st.races > 0 {
                    st.races -= 1;
                    bump(st.service.as_mut().unwrap());
                }
                if let Some(Some(e)) = st.script.pop_front() {
                    return Err(e);
                }
                let svc = st.service.as_mut().unwrap();
                if svc["ID"] != id {
                    return Err(ApiError::NotFound);
                }
                if svc["Version"]["Index"].as_u64() != Some(version) {
                    return Err(ApiError::OutOfSequence(
                        "rpc error: code = Unknown desc = update out of sequence".into(),
                    ));
                }
                svc["Spec"] = spec;
                bump(svc);
                Ok(())
            })
        }

        fn list_labelled<'a>(
            &'a self,
            label: &'a str,
        ) -> BoxFuture<'a, Result<Vec<Service>, ApiError>> {
            Box::pin(async move {
                let (k, v) = label.split_once('=').unwrap();
                let st = self.state.lock().unwrap();
                Ok(st
                    .service
                    .iter()
                    .filter(|s| s["Spec"]["Labels"][k] == v)
                    .map(|s| serde_json::from_value(s.clone()).unwrap())
                    .collect())
            })
        }

        fn endpoint(&self) -> String {
            "fake://".into()
        }
    }

    fn bump(s: &mut Value) {
        let index = s["Version"]["Index"].as_u64().unwrap_or(0);
        s["Version"]["Index"] = (index + 1).into();
    }

    fn service(mode: ServiceSpecMode, labels: &[(&str, &str)]) -> Service {
        Service {
            id: Some("svc-id-1".into()),
            version: Some(ObjectVersion { index: Some(41) }),
            spec: Some(ServiceSpec {
                name: Some("web".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some("starvation:dev".into()),
                        args: Some(vec!["serve".into(), "--block-ms".into(), "0".into()]),
                        env: Some(vec!["A=1".into()]),
                        ..Default::default()
                    }),
                    force_update: Some(3),
                    ..Default::default()
                }),
                mode: Some(mode),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn replicated(n: i64) -> ServiceSpecMode {
        ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
            ..Default::default()
        }
    }

    fn global() -> ServiceSpecMode {
        ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        }
    }

    fn orch(fake: &Arc<Fake>) -> SwarmOrchestrator {
        SwarmOrchestrator::with_api(fake.clone()).with_retry(Retry {
            attempts: 5,
            backoff: Duration::from_millis(1),
        })
    }

    #[tokio::test]
    async fn scale_changes_only_the_replicas_and_sends_the_inspected_version() {
        let mut original =
            serde_json::to_value(service(replicated(1), &[("starvation.max", "3")])).unwrap();
        // Fields as the Engine names them, which bollard's models drop or misname: they must
        // survive the round trip (a spec without its healthcheck restarts every task).
        let container = &mut original["Spec"]["TaskTemplate"]["ContainerSpec"];
        container["Healthcheck"] =
            serde_json::json!({"Test": ["CMD", "/probe"], "Interval": 5_000_000_000u64});
        container["SomeFutureField"] = serde_json::json!({"kept": true});
        let fake = Arc::new(Fake::raw(original.clone()));
        orch(&fake).scale("web", 2).await.unwrap();

        let st = fake.state.lock().unwrap();
        assert_eq!(st.updates.len(), 1);
        let (id, version, sent) = &st.updates[0];
        assert_eq!(id, "svc-id-1", "updates go to the inspected ID");
        assert_eq!(*version, 41);
        // The JSON differs from the inspected spec in exactly one place.
        assert_eq!(sent["Mode"]["Replicated"]["Replicas"], 2);
        let mut expected = original["Spec"].clone();
        expected["Mode"]["Replicated"]["Replicas"] = 2.into();
        assert_eq!(sent, &expected, "only Mode.Replicated.Replicas may change");
        assert_eq!(
            sent["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"][1],
            "/probe"
        );
    }

    #[tokio::test]
    async fn a_spec_without_mode_gets_one() {
        let mut raw = serde_json::to_value(service(replicated(1), &[])).unwrap();
        raw["Spec"].as_object_mut().unwrap().remove("Mode");
        let fake = Arc::new(Fake::raw(raw));
        orch(&fake).scale("web", 3).await.unwrap();
        let st = fake.state.lock().unwrap();
        assert_eq!(
            st.updates[0].2["Mode"],
            serde_json::json!({"Replicated": {"Replicas": 3}})
        );
    }

    #[tokio::test]
    async fn conflict_twice_then_success_retries_with_fresh_versions() {
        let fake = Arc::new(Fake::with(service(replicated(1), &[])).races(2));
        orch(&fake).scale("web", 3).await.unwrap();

        let st = fake.state.lock().unwrap();
        let versions: Vec<u64> = st.updates.iter().map(|u| u.1).collect();
        assert_eq!(
            versions,
            [41, 42, 43],
            "each retry re-inspects and sends the new version"
        );
        assert_eq!(st.inspects, 3);
        let now = st.service.as_ref().unwrap();
        assert_eq!(
            replicas_in("web", &typed_spec("web", &now["Spec"]).unwrap()).unwrap(),
            3
        );
        assert_eq!(now["Version"]["Index"], 44);
    }

    #[tokio::test]
    async fn endless_conflicts_end_in_conflict_after_the_bound() {
        let fake = Arc::new(Fake::with(service(replicated(1), &[])).races(100));
        let err = orch(&fake).scale("web", 2).await.unwrap_err();
        assert!(
            matches!(err, OrchestratorError::Conflict { ref service, attempts: 5 } if service == "web"),
            "{err:?}"
        );
        assert_eq!(fake.state.lock().unwrap().updates.len(), 5);
    }

    #[tokio::test]
    async fn other_update_errors_are_not_retried() {
        let fake = Arc::new(
            Fake::with(service(replicated(1), &[]))
                .script([Some(ApiError::Other("rpc error: permission denied".into()))]),
        );
        let err = orch(&fake).scale("web", 2).await.unwrap_err();
        assert!(
            matches!(err, OrchestratorError::Backend(ref m) if m.contains("permission denied"))
        );
        assert_eq!(fake.state.lock().unwrap().updates.len(), 1);
    }

    #[tokio::test]
    async fn global_mode_is_refused_without_an_update() {
        let fake = Arc::new(Fake::with(service(global(), &[])));
        let o = orch(&fake);
        let err = o.scale("web", 2).await.unwrap_err();
        assert!(matches!(err, OrchestratorError::GlobalMode(ref s) if s == "web"));
        assert!(err.to_string().contains("global mode"));
        assert!(matches!(
            o.status("web").await.unwrap_err(),
            OrchestratorError::GlobalMode(_)
        ));
        assert!(fake.state.lock().unwrap().updates.is_empty());
    }

    #[tokio::test]
    async fn missing_service_is_not_found() {
        let fake = Arc::new(Fake::with(service(replicated(1), &[])));
        let o = orch(&fake);
        assert!(
            matches!(o.status("nope").await, Err(OrchestratorError::NotFound(s)) if s == "nope")
        );
        assert!(matches!(
            o.scale("nope", 2).await,
            Err(OrchestratorError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn scaling_to_the_current_count_sends_nothing() {
        let fake = Arc::new(Fake::with(service(replicated(2), &[])));
        orch(&fake).scale("web", 2).await.unwrap();
        assert!(fake.state.lock().unwrap().updates.is_empty());
    }

    #[tokio::test]
    async fn status_reads_replicas_and_bound_labels() {
        let labels = [
            ("starvation.managed", "true"),
            ("starvation.min", "2"),
            ("starvation.max", " 8 "),
            ("com.example.other", "x"),
        ];
        let fake = Arc::new(Fake::with(service(replicated(4), &labels)));
        let st = orch(&fake).status("svc-id-1").await.unwrap();
        assert_eq!(
            st,
            ServiceStatus {
                name: "web".into(),
                replicas: 4,
                bounds: BoundsOverride {
                    min: Some(2),
                    max: Some(8),
                    step: None
                },
                dry_run: false,
            }
        );
    }

    #[test]
    fn bad_labels_name_the_label_and_value() {
        for (label, value) in [
            ("starvation.max", "ten"),
            ("starvation.min", "0"),
            ("starvation.step", "-1"),
            ("starvation.step", ""),
            ("starvation.max", "1.5"),
        ] {
            let labels = HashMap::from([(label.to_string(), value.to_string())]);
            let err = bounds_from_labels("web", Some(&labels)).unwrap_err();
            match &err {
                OrchestratorError::BadLabel {
                    service,
                    label: l,
                    value: v,
                    ..
                } => {
                    assert_eq!(
                        (service.as_str(), l.as_str(), v.as_str()),
                        ("web", label, value)
                    );
                }
                other => panic!("{label}={value:?}: {other:?}"),
            }
            assert!(err.to_string().contains(label), "{err}");
        }
        assert_eq!(
            bounds_from_labels("web", None).unwrap(),
            BoundsOverride::default()
        );
        let dry = |v: &str| {
            let labels = HashMap::from([(LABEL_DRY_RUN.to_string(), v.to_string())]);
            dry_run_from_labels("web", Some(&labels))
        };
        assert!(dry(" True ").unwrap());
        assert!(!dry("false").unwrap());
        assert!(!dry_run_from_labels("web", None).unwrap());
        let err = dry("yes").unwrap_err().to_string();
        assert!(
            err.contains("starvation.dry-run") && err.contains("true or false"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn services_lists_managed_replicated_services() {
        let fake = Arc::new(Fake::with(service(
            replicated(3),
            &[("starvation.managed", "true"), ("starvation.step", "2")],
        )));
        let list = orch(&fake).services().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "web");
        assert_eq!(list[0].replicas, 3);
        assert_eq!(list[0].bounds.step, Some(2));

        let unmanaged = Arc::new(Fake::with(service(replicated(3), &[])));
        assert!(orch(&unmanaged).services().await.unwrap().is_empty());
        let global = Arc::new(Fake::with(service(
            global(),
            &[("starvation.managed", "true")],
        )));
        assert!(orch(&global).services().await.unwrap().is_empty());
    }

    #[test]
    fn out_of_sequence_is_recognised_from_the_engine_error() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "rpc error: code = Unknown desc = update out of sequence".into(),
        };
        assert!(matches!(ApiError::from(e), ApiError::OutOfSequence(_)));
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "service web not found".into(),
        };
        assert!(matches!(ApiError::from(e), ApiError::NotFound));
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 503,
            message: "This node is not a swarm manager.".into(),
        };
        let mapped = api_err("web", ApiError::from(e));
        assert!(
            matches!(mapped, OrchestratorError::Backend(ref m) if m.contains("not a swarm manager")),
            "{mapped:?}"
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let r = Retry {
            attempts: 5,
            backoff: Duration::from_millis(20),
        };
        for (attempt, base) in [(1, 20), (2, 40), (3, 80)] {
            let d = r.delay(attempt);
            assert!(d >= Duration::from_millis(base), "{d:?}");
            assert!(d < Duration::from_millis(base * 3 / 2 + 1), "{d:?}");
        }
    }
}
