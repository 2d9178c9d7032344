//! Docker Swarm through the Engine API (bollard): replicas of a replicated service, scaling it,
//! and the services labelled `starvation.managed=true`.
//!
//! Scaling is the Engine's optimistic-concurrency protocol: inspect the service, change only
//! `Mode.Replicated.Replicas` in the inspected spec, send the whole spec back with the inspected
//! `Version.Index`. When someone else updated the service in between, the Engine answers
//! "update out of sequence"; then re-inspect and try again, a bounded number of times.
//!
//! The Engine calls sit behind [`ServiceApi`] so the retry and spec-mutation logic is tested
//! with a scripted fake, and so an integration test can inject an out-of-band update between
//! the inspect and the update.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{Service, ServiceSpec};
use bollard::query_parameters::{ListServicesOptions, UpdateServiceOptions};
use futures::future::BoxFuture;

use super::{BoundsOverride, Orchestrator, OrchestratorError, ServiceStatus};

/// Services carrying `starvation.managed=true` are the ones [`Orchestrator::services`] lists.
pub const LABEL_MANAGED: &str = "starvation.managed";
pub const LABEL_MIN: &str = "starvation.min";
pub const LABEL_MAX: &str = "starvation.max";
pub const LABEL_STEP: &str = "starvation.step";

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
    /// `GET /services/{id or name}`.
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Service, ApiError>>;

    /// `POST /services/{id}/update?version={version}` with the whole spec.
    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: ServiceSpec,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// `GET /services?filters={"label":[label]}`; `label` is `key` or `key=value`.
    fn list_labelled<'a>(&'a self, label: &'a str)
    -> BoxFuture<'a, Result<Vec<Service>, ApiError>>;

    /// Where the API is, for logs ("unix:///var/run/docker.sock").
    fn endpoint(&self) -> String;
}

/// Shared APIs: keep an `Arc` to a fake (or a wrapper) and give the orchestrator a clone.
impl<T: ServiceApi + ?Sized> ServiceApi for Arc<T> {
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Service, ApiError>> {
        (**self).inspect(service)
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: ServiceSpec,
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
}

impl EngineApi {
    /// Connects like the docker CLI does (`DOCKER_HOST`, else the default unix socket) and
    /// negotiates the API version down to what the Engine speaks (20.10 speaks 1.41).
    pub async fn connect() -> Result<EngineApi, OrchestratorError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let docker = Docker::connect_with_defaults()
            .map_err(|e| OrchestratorError::Backend(format!("Docker at {endpoint}: {e}")))?
            .negotiate_version()
            .await
            .map_err(|e| OrchestratorError::Backend(format!("Docker at {endpoint}: {e}")))?;
        Ok(EngineApi { docker, endpoint })
    }

    /// The bollard client, for callers that need more of the API (tests, deploy).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

impl ServiceApi for EngineApi {
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Service, ApiError>> {
        Box::pin(async move { Ok(self.docker.inspect_service(service, None).await?) })
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: ServiceSpec,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            // The Engine's version is a uint64; the generated query parameter is an i32.
            let version = i32::try_from(version).map_err(|_| {
                ApiError::Other(format!(
                    "service version {version} does not fit the API client's version parameter"
                ))
            })?;
            let options = UpdateServiceOptions {
                version,
                ..Default::default()
            };
            let response = self
                .docker
                .update_service(service_id, spec, options, None)
                .await?;
            for warning in response.warnings.unwrap_or_default() {
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
            let id = inspected.id.clone().unwrap_or_else(|| service.to_string());
            let version = inspected
                .version
                .as_ref()
                .and_then(|v| v.index)
                .ok_or_else(|| backend(service, "the Engine returned no Version.Index"))?;
            let mut spec = inspected
                .spec
                .ok_or_else(|| backend(service, "the Engine returned no Spec"))?;
            let current = replicas_in(service, &spec)?;
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
            status_of(service, &inspected)
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
fn set_replicas(spec: &mut ServiceSpec, replicas: u32) {
    let mode = spec.mode.get_or_insert_with(Default::default);
    let replicated = mode.replicated.get_or_insert_with(Default::default);
    replicated.replicas = Some(i64::from(replicas));
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
        service: Option<Service>,
        /// Forced answers to the next updates; `None` = check the version normally.
        script: VecDeque<Option<ApiError>>,
        /// Every update received: (id, version, spec).
        updates: Vec<(String, u64, ServiceSpec)>,
        inspects: usize,
        /// On update, someone else bumps the version first this many times.
        races: u32,
    }

    impl Fake {
        fn with(service: Service) -> Fake {
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
        fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Service, ApiError>> {
            Box::pin(async move {
                let mut st = self.state.lock().unwrap();
                st.inspects += 1;
                match &st.service {
                    Some(s)
                        if s.id.as_deref() == Some(name)
                            || s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name) =>
                    {
                        Ok(s.clone())
                    }
                    _ => Err(ApiError::NotFound),
                }
            })
        }

        fn update<'a>(
            &'a self,
            id: &'a str,
            version: u64,
            spec: ServiceSpec,
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
                if svc.id.as_deref() != Some(id) {
                    return Err(ApiError::NotFound);
                }
                if svc.version.as_ref().unwrap().index != Some(version) {
                    return Err(ApiError::OutOfSequence(
                        "rpc error: code = Unknown desc = update out of sequence".into(),
                    ));
                }
                svc.spec = Some(spec);
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
                    .filter(|s| {
                        s.spec
                            .as_ref()
                            .and_then(|s| s.labels.as_ref()?.get(k).cloned())
                            == Some(v.to_string())
                    })
                    .cloned()
                    .collect())
            })
        }

        fn endpoint(&self) -> String {
            "fake://".into()
        }
    }

    fn bump(s: &mut Service) {
        let v = s.version.get_or_insert_with(Default::default);
        v.index = Some(v.index.unwrap_or(0) + 1);
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
        let original = service(replicated(1), &[("starvation.max", "3")]);
        let fake = Arc::new(Fake::with(original.clone()));
        orch(&fake).scale("web", 2).await.unwrap();

        let st = fake.state.lock().unwrap();
        assert_eq!(st.updates.len(), 1);
        let (id, version, sent) = &st.updates[0];
        assert_eq!(id, "svc-id-1", "updates go to the inspected ID");
        assert_eq!(*version, 41);
        let mut expected = original.spec.clone().unwrap();
        expected.mode = Some(replicated(2));
        assert_eq!(sent, &expected, "only Mode.Replicated.Replicas may change");
        // The same holds on the wire: the JSON differs in exactly one place.
        let before = serde_json::to_value(original.spec.as_ref().unwrap()).unwrap();
        let mut after = serde_json::to_value(sent).unwrap();
        after["Mode"]["Replicated"]["Replicas"] = before["Mode"]["Replicated"]["Replicas"].clone();
        assert_eq!(before, after);
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
        assert_eq!(replicas_in("web", now.spec.as_ref().unwrap()).unwrap(), 3);
        assert_eq!(now.version.as_ref().unwrap().index, Some(44));
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
