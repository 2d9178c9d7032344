//! The Swarm orchestrator against a scripted Engine.

use super::*;
use crate::orchestrator::BoundsOverride;
use bollard::models::{
    ObjectVersion, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use std::collections::HashMap;
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

    /// Tasks, nodes and leadership are not scripted: readiness stays unknown.
    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { Err(ApiError::Other(format!("GET {path} is not scripted"))) })
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
    assert!(matches!(err, OrchestratorError::Backend(ref m) if m.contains("permission denied")));
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
    assert!(matches!(o.status("nope").await, Err(OrchestratorError::NotFound(s)) if s == "nope"));
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
            restore: true,
            tasks: None,
            ceiling: None,
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
        flag_from_labels("web", Some(&labels), LABEL_DRY_RUN, false)
    };
    assert!(dry(" True ").unwrap());
    assert!(!dry("false").unwrap());
    assert!(!flag_from_labels("web", None, LABEL_DRY_RUN, false).unwrap());
    assert!(flag_from_labels("web", None, LABEL_RESTORE, true).unwrap());
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
