//! The scaler as a Swarm operator meets it, on this machine's real one-node Swarm: a stack of
//! FROM-scratch services deployed with `docker stack deploy`, the scaler in-process on the real
//! Engine API, and webhooks as Alertmanager sends them.
//!
//! - readiness: a service whose healthcheck has not passed has a task `starting`, not ready;
//!   an alert for it is answered by that task (nothing added), while a healthy one scales;
//! - placement: `max_replicas_per_node: 1` on one node caps the service at 1, and a task no node
//!   can take (`no suitable node`) blocks adding, said in the decision and the metrics;
//! - shadow mode (`starvation.dry-run=true`): the decision is reported, the Engine unchanged;
//! - `docker stack deploy` again resets a scaled service to the stack file's count: the scaler
//!   sees the Engine's update event and restores its count;
//! - leadership: this node is the leader, so the scaler acts (a follower answering 503 needs a
//!   second manager: tests/scaler_http.rs covers it with a scripted orchestrator).
//!
//! Everything is removed afterwards, also when the test fails.

mod common;

use common::{docker, docker_ok, start_scaler};
use starvation::orchestrator::Orchestrator;
use starvation::orchestrator::swarm::SwarmOrchestrator;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST: &str = "scaler_swarm_ops";

/// Removes the stack and the image, also when the test panics.
struct Cleanup {
    stack: String,
    tag: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.stack]);
        let filter = format!("label=com.docker.stack.namespace={}", self.stack);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (_, left) = docker(&["ps", "-aq", "--filter", &filter]);
            let (_, nets) = docker(&["network", "ls", "-q", "--filter", &filter]);
            if left.trim().is_empty() && nets.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

/// A stack of four services from one image; `serve` needs no traffic here, only its health.
fn stack_file(image: &str) -> String {
    let service = |labels: &str, extra: &str, health_url: &str| {
        format!(
            r#"
    image: {image}
    command: ["serve", "--listen", "0.0.0.0:5000", "--block-ms", "0"]
    healthcheck:
      test: ["CMD", "/starvation", "probe", "--timeout", "1s", "{health_url}"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 600s
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
      labels:
        starvation.test: {TEST}
{labels}{extra}"#
        )
    };
    let ok = "http://127.0.0.1:5000/healthz";
    format!(
        "version: \"3.8\"\nservices:\n  healthy:{}\n  sick:{}\n  placed:{}\n  shadow:{}\n",
        service("", "", ok),
        // Port 1 never answers: within start_period the task stays `starting`.
        service("", "", "http://127.0.0.1:1/"),
        service(
            "",
            "      placement:\n        max_replicas_per_node: 1\n",
            ok
        ),
        service("        starvation.dry-run: \"true\"\n", "", ok),
    )
}

/// `docker service inspect` field of a service.
fn inspect(service: &str, format: &str) -> String {
    docker_ok(&["service", "inspect", service, "--format", format])
        .trim()
        .to_owned()
}

fn spec_replicas(service: &str) -> u32 {
    inspect(service, "{{.Spec.Mode.Replicated.Replicas}}")
        .parse()
        .unwrap()
}

/// The (state, error) of every task of `service` meant to run.
fn task_states(service: &str) -> Vec<(String, String)> {
    let out = docker_ok(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--no-trunc",
        "--format",
        "{{.CurrentState}}|{{.Error}}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (state, err) = l.split_once('|').unwrap_or((l, ""));
            let word = state.split_whitespace().next().unwrap_or("").to_lowercase();
            (word, err.to_owned())
        })
        .collect()
}

/// Polls `check` every 200 ms until it holds or `timeout` passes (then fails with `what`).
async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fire(addr: std::net::SocketAddr, fingerprint: &str, service: &str) -> serde_json::Value {
    let (status, body) = common::fire_alert(addr, fingerprint, service).await;
    assert_eq!(status, 200, "webhook for {service}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Engine in a one-node Swarm: docker swarm init --advertise-addr 127.0.0.1 (.ci/run does)"]
async fn readiness_placement_shadow_and_redeploy_on_a_real_swarm() {
    common::swarm_node(TEST);
    // Leftovers of a run that was killed before its guard ran.
    let (_, old) = docker(&["stack", "ls", "--format", "{{.Name}}"]);
    for stack in old.lines().filter(|s| s.starts_with("swarmops")) {
        let _ = docker(&["stack", "rm", stack]);
    }
    let unique = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1000
    );
    let stack = format!("swarmops{unique}");
    let tag = format!("starvation:swarm-ops-{unique}");
    let _cleanup = Cleanup {
        stack: stack.clone(),
        tag: tag.clone(),
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let built = Command::new(format!("{root}/deploy/build-images.sh"))
        .args(["--profile", "dev", "--tag", &tag])
        .current_dir(root)
        .status()
        .expect("running deploy/build-images.sh");
    assert!(built.success(), "deploy/build-images.sh failed: {built}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, stack_file(&tag)).unwrap();
    let file = file.to_str().unwrap();
    // No registry here: never ask one for the image's digest.
    let deploy = || {
        docker_ok(&[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file,
            &stack,
        ])
    };
    deploy();
    let [healthy, sick, placed, shadow] =
        ["healthy", "sick", "placed", "shadow"].map(|s| format!("{stack}_{s}"));

    let swarm = SwarmOrchestrator::connect().await.expect("the Engine");
    swarm
        .may_act()
        .await
        .expect("the only manager of a one-node Swarm is its leader");
    let orchestrator: Arc<dyn Orchestrator> = Arc::new(swarm);
    let mut args = vec!["--cooldown", "1s"];
    for s in [&healthy, &sick, &placed, &shadow] {
        args.extend(["--allow", s.as_str()]);
    }
    let server = start_scaler(&args, None, orchestrator.clone()).await;
    let addr = server.local_addr();

    for s in [&healthy, &placed, &shadow] {
        wait_until(&format!("{s} running"), Duration::from_secs(90), || {
            task_states(s) == [("running".to_owned(), String::new())]
        })
        .await;
    }
    wait_until("the sick task starting", Duration::from_secs(60), || {
        task_states(&sick)
            .first()
            .is_some_and(|(s, _)| s == "starting")
    })
    .await;

    // Readiness: the sick service's one task is still starting, so +1 from 0 ready is covered
    // by the 1 desired; nothing is added.
    let d = fire(addr, "fp-sick", &sick).await;
    assert_eq!(d["action"], "none", "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("counted from 0 ready of 1 desired (1 starting)"),
        "{d}"
    );
    assert_eq!(spec_replicas(&sick), 1);
    // The healthy one scales, and its new task becomes ready.
    let d = fire(addr, "fp-healthy", &healthy).await;
    assert_eq!(
        (d["action"].as_str(), d["to"].as_u64()),
        (Some("scale_up"), Some(2)),
        "{d}"
    );
    wait_until("2 healthy tasks running", Duration::from_secs(60), || {
        task_states(&healthy)
            .iter()
            .filter(|(s, _)| s == "running")
            .count()
            == 2
    })
    .await;

    // Placement: one node × max_replicas_per_node 1 = at most 1.
    let d = fire(addr, "fp-placed", &placed).await;
    assert_eq!(d["action"], "none", "{d}");
    assert!(
        d["reason"].as_str().unwrap().contains("already at max 1"),
        "{d}"
    );
    // Someone scales it by hand: the second task cannot be placed, and the scaler stops adding.
    docker_ok(&["service", "scale", "--detach", &format!("{placed}=2")]);
    wait_until(
        "a task pending with no suitable node",
        Duration::from_secs(30),
        || {
            task_states(&placed)
                .iter()
                .any(|(s, e)| s == "pending" && e.contains("no suitable node"))
        },
    )
    .await;
    let d = fire(addr, "fp-placed-2", &placed).await;
    assert_eq!(d["action"], "none", "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("blocked: no node (1 task pending: no suitable node"),
        "{d}"
    );
    let metrics = common::get_text(&format!("http://{addr}/metrics")).await;
    let blocked = format!("starvation_scaling_blocked{{service=\"{placed}\",reason=\"no_node\"}}");
    assert_eq!(common::sample(&metrics, &blocked), Some(1.0), "{metrics}");
    assert_eq!(spec_replicas(&placed), 2, "the scaler added nothing");

    // Shadow mode: decided and reported, the Engine's spec untouched.
    let d = fire(addr, "fp-shadow", &shadow).await;
    assert_eq!(d["to"], 2, "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("dry run, nothing scaled"),
        "{d}"
    );
    assert_eq!(spec_replicas(&shadow), 1);

    // A redeploy resets `healthy` to the stack file's 1; the scaler puts its 2 back.
    let redeployed = Instant::now();
    deploy();
    let restored = |events: &serde_json::Value| {
        events["events"].as_array().unwrap().iter().any(|e| {
            e["service"] == healthy.as_str()
                && e["reason"].as_str().unwrap_or("").starts_with("restored")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events: serde_json::Value =
            serde_json::from_str(&common::get_text(&format!("http://{addr}/events")).await)
                .unwrap();
        if restored(&events) {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "no restore after the redeploy: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let event = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["service"] == healthy.as_str()
                && e["reason"].as_str().unwrap().starts_with("restored")
        })
        .unwrap();
    assert_eq!(
        (event["from"].as_u64(), event["to"].as_u64()),
        (Some(1), Some(2)),
        "{event}"
    );
    eprintln!(
        "redeploy -> restored in {:.2} s: {}",
        redeployed.elapsed().as_secs_f64(),
        event["reason"]
    );
    assert_eq!(spec_replicas(&healthy), 2);
    // The other services were not scaled by the scaler, so nothing of theirs is restored.
    assert_eq!(spec_replicas(&sick), 1);
    assert_eq!(spec_replicas(&shadow), 1);
    server.shutdown().await.unwrap();
}
