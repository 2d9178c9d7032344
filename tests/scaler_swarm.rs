//! The Swarm orchestrator against this machine's real Docker Engine (one-node swarm): a
//! FROM-scratch image of the static binary, a replicated service scaled 1 → 2 through
//! `SwarmOrchestrator::scale` until the Engine API shows 2 running tasks, an out-of-band update
//! injected between the orchestrator's inspect and update (the retry must win without losing
//! the other writer's change), and a global-mode service refused. Everything the test creates is
//! removed afterwards, also when it fails.
//!
//! `STARVATION_SWARM_SCALE_RUNS=N` repeats the timed scale-up N times (default 3) and prints
//! the time from the `scale()` call to the new task `running`.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, LocalNodeState, NetworkAttachmentConfig,
    NetworkCreateRequest, ResourceObject, Service, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListServicesOptions,
    ListTasksOptions, LogsOptions, RemoveImageOptions,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use starvation::orchestrator::swarm::{ApiError, EngineApi, ServiceApi, SwarmOrchestrator};
use starvation::orchestrator::{Orchestrator, OrchestratorError};

const TEST: &str = "scaler_swarm";

/// The Engine of a one-node Swarm, or the test fails saying what to do.
async fn engine() -> EngineApi {
    common::external("docker", "docker.io", TEST);
    match EngineApi::connect().await {
        Err(e) => panic!("{TEST}: no Docker Engine: {e}"),
        Ok(api) => match api.docker().info().await {
            Err(e) => panic!("{TEST}: no Docker Engine: {e}"),
            Ok(info) => {
                let state = info.swarm.and_then(|s| s.local_node_state);
                assert_eq!(
                    state,
                    Some(LocalNodeState::ACTIVE),
                    "{TEST}: this Engine is not in a swarm: \
                     run `docker swarm init --advertise-addr 127.0.0.1`"
                );
                api
            }
        },
    }
}

/// Leftovers of runs that were killed before their guard ran (SIGKILL, timeout): services and
/// image tags of this test older than 30 minutes (younger ones may belong to a parallel run).
async fn sweep_stale(docker: &Docker) {
    let cutoff = chrono::Utc::now() - chrono::Duration::minutes(30);
    let options = ListServicesOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("starvation.test={TEST}")],
        )])),
        status: None,
    };
    for service in docker
        .list_services(Some(options))
        .await
        .unwrap_or_default()
    {
        let created = service
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let (Some(id), Some(created)) = (service.id, created)
            && created < cutoff
        {
            eprintln!("removing stale service {id} from an earlier run");
            let _ = docker.delete_service(&id).await;
        }
    }
    let options = ListNetworksOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("starvation.test={TEST}")],
        )])),
    };
    for network in docker
        .list_networks(Some(options))
        .await
        .unwrap_or_default()
    {
        let created = network
            .created
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let (Some(id), Some(created)) = (network.id, created)
            && created < cutoff
        {
            eprintln!("removing stale network {id} from an earlier run");
            let _ = docker.remove_network(&id).await;
        }
    }
    let options = ListImagesOptions {
        filters: Some(HashMap::from([(
            "reference".to_string(),
            vec!["starvation:swarm-test-*".to_string()],
        )])),
        ..Default::default()
    };
    match docker.list_images(Some(options)).await {
        Ok(images) => {
            for image in images.iter().filter(|i| i.created < cutoff.timestamp()) {
                for tag in &image.repo_tags {
                    eprintln!("removing stale image {tag} from an earlier run");
                    let _ = docker
                        .remove_image(tag, None::<RemoveImageOptions>, None)
                        .await;
                }
            }
        }
        Err(e) => eprintln!("listing stale images: {e}"),
    }
}

/// Removes the services and the image the test created, even when it panics: Drop runs the
/// async cleanup on its own thread and runtime.
struct Cleanup {
    docker: Docker,
    services: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    image: Mutex<Option<String>>,
}

impl Cleanup {
    fn service(&self, name: &str) {
        self.services.lock().unwrap().push(name.to_string());
    }

    fn network(&self, name: &str) {
        self.networks.lock().unwrap().push(name.to_string());
    }

    async fn run(
        docker: Docker,
        services: Vec<String>,
        networks: Vec<String>,
        image: Option<String>,
    ) {
        for name in &services {
            match docker.delete_service(name).await {
                Ok(()) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => eprintln!("cleanup: removing service {name}: {e}"),
            }
        }
        // Swarm stops and removes the tasks' containers on its own; wait so the image is free.
        let deadline = Instant::now() + Duration::from_secs(60);
        for name in &services {
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![format!("com.docker.swarm.service.name={name}")],
                )])),
                ..Default::default()
            };
            while Instant::now() < deadline {
                match docker.list_containers(Some(options.clone())).await {
                    Ok(list) if list.is_empty() => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    Err(e) => {
                        eprintln!("cleanup: listing containers of {name}: {e}");
                        break;
                    }
                }
            }
        }
        for name in &networks {
            match docker.remove_network(name).await {
                Ok(()) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => eprintln!("cleanup: removing network {name}: {e}"),
            }
        }
        if let Some(image) = image {
            let options = RemoveImageOptions {
                force: true,
                ..Default::default()
            };
            if let Err(e) = docker.remove_image(&image, Some(options), None).await {
                eprintln!("cleanup: removing image {image}: {e}");
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let services = std::mem::take(&mut *self.services.lock().unwrap());
        let networks = std::mem::take(&mut *self.networks.lock().unwrap());
        let image = self.image.lock().unwrap().take();
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(Cleanup::run(docker, services, networks, image))
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup thread panicked");
        }
    }
}

/// Builds the image with deploy/build-images.sh; returns the image ID.
async fn build_image(docker: &Docker, tag: &str) -> String {
    let started = Instant::now();
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(format!("{root}/deploy/build-images.sh"))
        .args(["--profile", "dev", "--tag", tag])
        .current_dir(root)
        .status()
        .expect("running deploy/build-images.sh");
    assert!(status.success(), "deploy/build-images.sh failed: {status}");
    let image = docker
        .inspect_image(tag)
        .await
        .expect("inspecting the image");
    eprintln!(
        "image {tag}: {} bytes, built in {:.1} s",
        image.size.unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    image.id.expect("image ID")
}

/// A spec with about what a stack deploy puts in one (network with aliases, placement,
/// resources, update policy, labels), so a lossy round trip through bollard's models would show.
fn web_spec(name: &str, image: &str, network: &str, mode: ServiceSpecMode) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([
            ("starvation.managed".to_string(), "true".to_string()),
            ("starvation.max".to_string(), "3".to_string()),
            ("starvation.test".to_string(), TEST.to_string()),
        ])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                args: Some(
                    ["serve", "--listen", "0.0.0.0:5000", "--block-ms", "0"]
                        .map(String::from)
                        .to_vec(),
                ),
                env: Some(vec!["RUST_LOG=info".to_string()]),
                labels: Some(HashMap::from([(
                    "starvation.test.container".to_string(),
                    "1".to_string(),
                )])),
                stop_grace_period: Some(10_000_000_000),
                stop_signal: Some("SIGTERM".to_string()),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some(500_000_000),
                    memory_bytes: Some(256 << 20),
                    ..Default::default()
                }),
                reservations: Some(ResourceObject {
                    memory_bytes: Some(16 << 20),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec!["node.role==manager".to_string()]),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_string()),
                aliases: Some(vec!["webserver".to_string()]),
                ..Default::default()
            }]),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                max_attempts: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(mode),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(1_000_000_000),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::VIP),
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

/// Tasks of `service` the Engine reports in state `running` (and meant to be running).
async fn running_tasks(docker: &Docker, service: &str) -> usize {
    let options = ListTasksOptions {
        filters: Some(HashMap::from([
            ("service".to_string(), vec![service.to_string()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ])),
    };
    let tasks = docker
        .list_tasks(Some(options))
        .await
        .expect("listing tasks");
    tasks
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .count()
}

/// Waits until exactly `n` tasks run; returns when they did.
async fn wait_running(docker: &Docker, service: &str, n: usize, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let running = running_tasks(docker, service).await;
        if running == n {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {running} tasks running, not {n}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's Spec as the Engine stores it, raw (not through bollard's models), so a field
/// the models dropped on the round trip would show up as a difference.
fn raw_spec(service: &str) -> serde_json::Value {
    raw_inspect(service, ".Spec")
}

fn raw_inspect(service: &str, field: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args([
            "service",
            "inspect",
            "--format",
            &format!("{{{{json {field}}}}}"),
            service,
        ])
        .output()
        .expect("docker service inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("spec JSON")
}

/// Passes every call to the Engine; before the first `update` it is armed for, another writer
/// updates the service first (a label, with the same version the orchestrator inspected), so
/// the orchestrator's update arrives out of sequence.
struct OutOfBand {
    inner: EngineApi,
    armed: AtomicBool,
    updates: AtomicU32,
    conflicts: AtomicU32,
}

impl ServiceApi for OutOfBand {
    fn inspect<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, ApiError>> {
        self.inner.inspect(service)
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if self.armed.swap(false, Ordering::SeqCst) {
                let current = self.inner.inspect(service_id).await.unwrap();
                let index = current["Version"]["Index"].as_u64().unwrap();
                let mut other = current["Spec"].clone();
                other["Labels"]["starvation.test.out-of-band"] = "1".into();
                self.inner
                    .update(service_id, index, other)
                    .await
                    .expect("out-of-band update");
            }
            self.updates.fetch_add(1, Ordering::SeqCst);
            let result = self.inner.update(service_id, version, spec).await;
            if let Err(ApiError::OutOfSequence(msg)) = &result {
                eprintln!("engine said: {msg}");
                self.conflicts.fetch_add(1, Ordering::SeqCst);
            }
            result
        })
    }

    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Service>, ApiError>> {
        self.inner.list_labelled(label)
    }

    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<serde_json::Value, ApiError>> {
        self.inner.get(path)
    }

    fn endpoint(&self) -> String {
        self.inner.endpoint()
    }
}

fn p50(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Engine in a one-node Swarm: docker swarm init --advertise-addr 127.0.0.1 (.ci/run does)"]
async fn swarm_scale_retry_and_global_refusal() {
    let api = engine().await;
    let docker = api.docker().clone();
    sweep_stale(&docker).await;
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000
    );
    let tag = format!("starvation:swarm-test-{unique}");
    let web = format!("starvation-test-web-{unique}");
    let global = format!("starvation-test-global-{unique}");
    let net = format!("starvation-test-net-{unique}");
    let cleanup = Cleanup {
        docker: docker.clone(),
        services: Mutex::new(Vec::new()),
        networks: Mutex::new(Vec::new()),
        image: Mutex::new(Some(tag.clone())),
    };

    let image_id = build_image(&docker, &tag).await;
    // By ID, the Engine starts tasks without trying a registry (there is none here); by tag it
    // first tries to pull, fails, and falls back to the local image.
    let by_tag = std::env::var("STARVATION_SWARM_BY_TAG").as_deref() == Ok("1");
    let image_ref = if by_tag { tag.clone() } else { image_id };

    // An overlay network of our own (nothing is sent anywhere else).
    cleanup.network(&net);
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            driver: Some("overlay".to_string()),
            labels: Some(HashMap::from([(
                "starvation.test".to_string(),
                TEST.to_string(),
            )])),
            ..Default::default()
        })
        .await
        .expect("creating the overlay network");

    // A replicated service with one replica, created through the Engine API.
    cleanup.service(&web);
    docker
        .create_service(web_spec(&web, &image_ref, &net, replicated(1)), None)
        .await
        .expect("creating the service");
    // A healthcheck, set the way the Engine names it (bollard's models misname it, so they
    // could neither create it nor send it back): scaling must keep it and restart nothing.
    // (Exec form: the image has no shell for the CLI's --health-cmd.)
    let api = EngineApi::connect().await.unwrap();
    let current = api.inspect(&web).await.unwrap();
    let mut spec = current["Spec"].clone();
    spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"] = serde_json::json!({
        "Test": ["CMD", "/starvation", "probe", "http://127.0.0.1:5000/healthz"],
        "Interval": 2_000_000_000u64,
        "Timeout": 2_000_000_000u64,
        "Retries": 3,
    });
    api.update(
        current["ID"].as_str().unwrap(),
        current["Version"]["Index"].as_u64().unwrap(),
        spec,
    )
    .await
    .expect("adding a healthcheck");
    let running_tasks = || {
        let out = common::docker_ok(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}}",
            &web,
        ]);
        out.lines().map(String::from).collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let first_task = loop {
        let tasks = running_tasks();
        let settled = raw_inspect(&web, ".UpdateStatus.State")
            .as_str()
            .is_none_or(|s| s == "completed");
        if tasks.len() == 1 && settled {
            break tasks[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the healthcheck update never settled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_running(&docker, &web, 1, Duration::from_secs(60)).await;

    let orch = SwarmOrchestrator::connect().await.unwrap();
    assert!(
        orch.describe().starts_with("swarm ("),
        "{}",
        orch.describe()
    );
    let status = orch.status(&web).await.unwrap();
    assert_eq!(status.replicas, 1);
    assert_eq!(status.bounds.max, Some(3));
    assert_eq!((status.bounds.min, status.bounds.step), (None, None));
    let managed = orch.services().await.unwrap();
    assert!(managed.iter().any(|s| s.name == web), "{managed:?}");

    // Scale 1 → 2 through the orchestrator: only the replicas change, and a second task runs.
    let before = raw_spec(&web);
    let t0 = Instant::now();
    orch.scale(&web, 2).await.unwrap();
    let call = t0.elapsed();
    let mut samples = vec![wait_running(&docker, &web, 2, Duration::from_secs(60)).await - t0];
    eprintln!(
        "scale call {call:?}; scale() → 2 tasks running: {:?}",
        samples[0]
    );
    let mut after = raw_spec(&web);
    assert_eq!(after["Mode"]["Replicated"]["Replicas"], 2);
    after["Mode"]["Replicated"]["Replicas"] = before["Mode"]["Replicated"]["Replicas"].clone();
    assert_eq!(
        before, after,
        "scaling changed more than Mode.Replicated.Replicas"
    );
    assert!(before["TaskTemplate"]["ContainerSpec"]["Healthcheck"].is_object());
    assert!(
        running_tasks().contains(&first_task),
        "scaling restarted the running task {first_task}: {:?}",
        running_tasks()
    );
    assert_eq!(orch.status(&web).await.unwrap().replicas, 2);

    // The static binary really serves inside the image.
    let id = docker
        .inspect_service(&web, None)
        .await
        .unwrap()
        .id
        .unwrap();
    let logs: Vec<_> = docker
        .service_logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )
        .collect()
        .await;
    let text: String = logs
        .into_iter()
        .filter_map(Result::ok)
        .map(|l| l.to_string())
        .collect();
    assert!(
        text.contains("listening on http://0.0.0.0:5000"),
        "logs:\n{text}"
    );

    // More timed scale-ups (down to 1, wait, up to 2) for the measurement.
    let runs: usize = std::env::var("STARVATION_SWARM_SCALE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for _ in 1..runs {
        orch.scale(&web, 1).await.unwrap();
        wait_running(&docker, &web, 1, Duration::from_secs(60)).await;
        let t0 = Instant::now();
        orch.scale(&web, 2).await.unwrap();
        samples.push(wait_running(&docker, &web, 2, Duration::from_secs(60)).await - t0);
    }
    eprintln!(
        "scale() → new task running ({}): p50 {:?}, samples {samples:?}",
        if by_tag {
            "image by tag"
        } else {
            "image by ID"
        },
        p50(&samples)
    );

    // A concurrent writer between inspect and update: the retry wins, and keeps its change.
    let oob = std::sync::Arc::new(OutOfBand {
        inner: EngineApi::connect().await.unwrap(),
        armed: AtomicBool::new(true),
        updates: AtomicU32::new(0),
        conflicts: AtomicU32::new(0),
    });
    let racing = SwarmOrchestrator::with_api(oob.clone());
    racing.scale(&web, 3).await.expect("the retry should win");
    // Exactly one conflict is expected; the allocator writing too would add one, not a failure.
    let conflicts = oob.conflicts.load(Ordering::SeqCst);
    assert!(conflicts >= 1, "the injected update caused no conflict");
    assert_eq!(
        oob.updates.load(Ordering::SeqCst),
        conflicts + 1,
        "each conflict, then one successful retry"
    );
    eprintln!("out-of-band update: {conflicts} conflict(s), then the retry won");
    let spec = raw_spec(&web);
    assert_eq!(spec["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(
        spec["Labels"]["starvation.test.out-of-band"], "1",
        "the other writer's change was lost"
    );
    wait_running(&docker, &web, 3, Duration::from_secs(60)).await;

    // The whole path: an Alertmanager webhook to the scaler, which scales through the Engine
    // API within the service's labelled bounds (max 3).
    orch.scale(&web, 2).await.unwrap();
    wait_running(&docker, &web, 2, Duration::from_secs(60)).await;
    let scaler = common::start_scaler(
        &[
            "--allow",
            &web,
            "--default-service",
            &web,
            "--cooldown",
            "0s",
        ],
        Some("tok"),
        std::sync::Arc::new(SwarmOrchestrator::connect().await.unwrap()),
    )
    .await;
    let post = |fingerprint: &'static str| {
        let body = common::webhook("firing", fingerprint, "2026-11-22T10:00:00Z", &web);
        let url = format!("http://{}/alert", scaler.local_addr());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth("tok")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let t0 = Instant::now();
    let d = post("fp-swarm-1").await;
    assert_eq!(
        (d["from"].as_u64(), d["to"].as_u64(), d["action"].as_str()),
        (Some(2), Some(3), Some("scale_up")),
        "{d}"
    );
    let webhook_to_running = wait_running(&docker, &web, 3, Duration::from_secs(60)).await - t0;
    eprintln!("webhook → third task running: {webhook_to_running:?}");
    let d = post("fp-swarm-2").await;
    assert_eq!(d["action"], "none", "label starvation.max=3 holds: {d}");
    assert!(d["reason"].as_str().unwrap().contains("max 3"), "{d}");
    scaler.shutdown().await.unwrap();

    // A global service is refused, and left alone.
    cleanup.service(&global);
    let global_mode = ServiceSpecMode {
        global: Some(HashMap::new()),
        ..Default::default()
    };
    docker
        .create_service(web_spec(&global, &image_ref, &net, global_mode), None)
        .await
        .expect("creating the global service");
    let global_spec = raw_spec(&global);
    let err = orch.scale(&global, 2).await.unwrap_err();
    assert!(
        matches!(err, OrchestratorError::GlobalMode(ref s) if *s == global),
        "{err:?}"
    );
    assert!(matches!(
        orch.status(&global).await.unwrap_err(),
        OrchestratorError::GlobalMode(_)
    ));
    // Untouched: same spec and never updated (an update would have set PreviousSpec). The
    // version is no witness: the allocator bumps it on its own after creation.
    assert_eq!(raw_spec(&global), global_spec);
    assert_eq!(
        raw_inspect(&global, ".PreviousSpec"),
        serde_json::Value::Null
    );
    assert!(
        !orch
            .services()
            .await
            .unwrap()
            .iter()
            .any(|s| s.name == global),
        "a global service is not listed as scalable"
    );

    // A service that does not exist.
    assert!(matches!(
        orch.scale("starvation-test-no-such-service", 2).await,
        Err(OrchestratorError::NotFound(_))
    ));

    drop(cleanup);
    assert!(
        docker.inspect_service(&web, None).await.is_err(),
        "service left behind"
    );
    assert!(
        docker.inspect_image(&tag).await.is_err(),
        "image left behind"
    );
    assert!(
        docker.inspect_network(&net, None).await.is_err(),
        "network left behind"
    );
}
