//! End to end on this machine's real one-node Swarm: build every image from scratch, deploy
//! `deploy/docker-compose.yml` (single-node variant), starve the workload with `starvation load`, and
//! watch the whole loop: Prometheus sees every replica, ThreadPoolStarvation fires,
//! Alertmanager calls the scaler with its token, the scaler scales through the Engine API, the
//! new task serves; then (issue 26.2) a starved task SIGKILLed stops counting within 10 s, is
//! replaced, and the scaler does not climb on its last gauges; then `docker stack rm` leaves
//! nothing behind.
//!
//! Grafana has no Debian package and no registry is reachable here, so its service is removed
//! right after the deploy (its files are validated by deploy/check.sh and tests/deploy_files.rs).

mod common;
#[path = "swarm_stack/kill.rs"]
mod kill;

use common::{docker, docker_ok};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

const TEST: &str = "swarm_stack";

/// Removes what the test made, also when it fails: the stack (and waits for its tasks,
/// networks, configs and named volumes to go), the secret and the node label if the test added
/// them, the images.
struct Cleanup {
    stack: String,
    tag: String,
    node: String,
    secret_created: bool,
    label_added: bool,
    stack_file: std::path::PathBuf,
    load_containers: Vec<String>,
}

impl Cleanup {
    fn leftovers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.stack.namespace={}", self.stack);
        let mut left = vec![];
        for kind in [
            vec!["service", "ls", "-q"],
            vec!["network", "ls", "-q"],
            vec!["config", "ls", "-q"],
            vec!["ps", "-aq"],
            vec!["volume", "ls", "-q"],
        ] {
            let mut args = kind.clone();
            args.extend(["--filter", &filter]);
            let (_, out) = docker(&args);
            left.extend(
                out.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("{} {l}", kind[0])),
            );
        }
        left
    }

    fn remove_stack(&self) -> Vec<String> {
        docker(&["stack", "rm", &self.stack]);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = self.leftovers();
            // Named volumes outlive `docker stack rm`: they go once no container uses them.
            if left.iter().all(|l| l.starts_with("volume ")) {
                for v in &left {
                    docker(&["volume", "rm", &v["volume ".len()..]]);
                }
            }
            let left = self.leftovers();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.load_containers {
            docker(&["rm", "-f", name]);
        }
        let left = self.remove_stack();
        let _ = std::fs::remove_file(&self.stack_file);
        if !left.is_empty() {
            eprintln!("{TEST}: still present after docker stack rm: {left:?}");
        }
        if self.secret_created {
            docker(&["secret", "rm", "alertapi_token"]);
        }
        if self.label_added {
            docker(&["node", "update", "--label-rm", "role", &self.node]);
        }
        for image in common::stack_images(&self.tag) {
            docker(&["image", "rm", "-f", &image]);
        }
    }
}

/// The stack file as deployed, plus the explicit opt-in that publishes its monitoring and
/// scaler on this manager (`experiment::swarm::publish_on_manager`; deploy/'s file publishes
/// only the workload). Swarm's routing mesh and its service VIPs are IPVS: without the kernel's
/// ip_vs module they cannot work. On such a kernel (this VM's has none) the test deploys the
/// experiment runner's dnsrr/host-port variant (`experiment::swarm::use_dnsrr`) and reaches the
/// workload from inside the overlay network.
fn stack_file_for_this_kernel(root: &str, stack: &str) -> std::path::PathBuf {
    use starvation::experiment::swarm::{kernel_has_ipvs, publish_on_manager, use_dnsrr};
    let original = std::path::Path::new(root).join("deploy/docker-compose.yml");
    let text = std::fs::read_to_string(&original).unwrap();
    let mut doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    publish_on_manager(&mut doc).unwrap();
    if !kernel_has_ipvs() {
        eprintln!(
            "\n*** {TEST}: this kernel ({}) has no ip_vs module (/proc/net/ip_vs is missing and \
             `modprobe ip_vs` fails), so Swarm's routing mesh and VIPs cannot work here: \
             deploying with endpoint_mode dnsrr and host-mode ports instead ***\n",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        );
        use_dnsrr(&mut doc).unwrap();
    }
    // Beside the original, so its relative config paths still resolve.
    let variant = std::path::Path::new(root).join(format!("deploy/.{stack}-test.yml"));
    std::fs::write(&variant, serde_norway::to_string(&doc).unwrap()).unwrap();
    variant
}

async fn get_json(url: &str) -> Option<serde_json::Value> {
    get_json_as(url, None).await
}

async fn get_json_as(url: &str, token: Option<&str>) -> Option<serde_json::Value> {
    let mut req = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{TEST}: timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn prom_query(expr: &str) -> Vec<serde_json::Value> {
    let url = format!(
        "http://127.0.0.1:9090/api/v1/query?query={}",
        url_escape(expr)
    );
    get_json(&url)
        .await
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Docker Engine in a one-node Swarm: docker swarm init --advertise-addr 127.0.0.1 (.ci/run does)"]
async fn the_stack_detects_starvation_and_scales_on_a_real_swarm() {
    let node = common::swarm_node(TEST);
    let root = env!("CARGO_MANIFEST_DIR");
    let unique = std::process::id();
    let stack = format!("e2e{unique}");
    let tag = format!("e2e-{unique}");
    let service = format!("{stack}_webserver");

    // Single-node variant: this node runs both roles (role=worker, MASTER_ROLE=worker).
    let (_, labels) = docker(&[
        "node",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &node,
    ]);
    let label_added = !labels.contains("\"role\"");
    assert!(
        label_added || labels.contains("\"role\":\"worker\""),
        "this node has a role label other than worker ({labels}); the single-node variant needs role=worker"
    );
    if label_added {
        docker_ok(&["node", "update", "--label-add", "role=worker", &node]);
    }
    let (secret_exists, _) = docker(&["secret", "inspect", "alertapi_token"]);
    let mut cleanup = Cleanup {
        stack: stack.clone(),
        tag: tag.clone(),
        node: node.clone(),
        secret_created: false,
        label_added,
        stack_file: Default::default(),
        load_containers: vec![],
    };
    // The token, when this test created the secret (a pre-existing secret's cannot be read).
    let mut known_token = None;
    if !secret_exists {
        let token = format!("e2e-token-{unique}-{}", Instant::now().elapsed().as_nanos());
        known_token = Some(token.clone());
        let mut child = Command::new("docker")
            .args(["secret", "create", "alertapi_token", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(token.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        cleanup.secret_created = true;
    }

    // Every image from scratch, nothing pulled.
    common::build_stack_images(&tag);
    let sizes = docker_ok(&[
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.Size}}",
    ]);
    let sizes: Vec<&str> = sizes
        .lines()
        .filter(|l| l.contains(&format!(":{tag} ")))
        .collect();
    eprintln!("image sizes: {sizes:?}");
    assert_eq!(sizes.len(), 5, "{sizes:?}");

    let stack_file = stack_file_for_this_kernel(root, &stack);
    cleanup.stack_file = stack_file.clone();
    let deploy = Command::new("docker")
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(&stack_file)
        .arg(&stack)
        .env("TAG", &tag)
        .env("STACK_NAME", &stack)
        .env("CONFIG_VERSION", &stack)
        .env("MASTER_ROLE", "worker")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        deploy.status.success(),
        "stack deploy: {}",
        String::from_utf8_lossy(&deploy.stderr)
    );

    for (what, url) in [
        ("prometheus", "http://127.0.0.1:9090/-/ready"),
        ("alertmanager", "http://127.0.0.1:9093/-/ready"),
        ("alertapi", "http://127.0.0.1:5001/healthz"),
    ] {
        wait_for(what, Duration::from_secs(120), async || {
            reqwest::get(url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
    }
    // The replica's gauges reach Prometheus through the Pushgateway, labelled with its service.
    let queue_expr = format!(
        "system_runtime_threadpool_queue_length{{job=\"webserver\",service=\"{service}\"}}"
    );
    wait_for(
        "the replica's gauges in Prometheus",
        Duration::from_secs(90),
        async || (prom_query(&queue_expr).await.len() == 1).then_some(()),
    )
    .await;

    // Starve it like the paper: `starvation load` ramps an open-model load inside the stack's
    // network against one replica with one min thread whose requests block 2 s each.
    let load_name = format!("{stack}-load");
    cleanup.load_containers.push(load_name.clone());
    let load_start = chrono::Utc::now();
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &load_name,
        "--network",
        &format!("{stack}_starvation"),
        &format!("starvation:{tag}"),
        "load",
        "--url",
        "http://webserver:5000/test-threadpool",
        "--stages",
        "20:10s,35:40s",
        // The pool gains threads as .NET 8's does (about one a second, then by hill climbing),
        // so the backlog outlives the load by more than k6's default 30 s: let it drain.
        "--graceful-stop",
        "120s",
        "--timeout",
        "150s",
    ]);

    // The alert fires, Alertmanager calls the scaler, the scaler scales through the Engine API.
    let firing = wait_for(
        "a thread-pool alert firing",
        Duration::from_secs(60),
        async || {
            let alerts = prom_query("ALERTS{alertstate=\"firing\"}").await;
            alerts
                .into_iter()
                .find(|a| a["metric"]["service"] == service.as_str())
        },
    )
    .await;
    eprintln!("firing: {}", firing["metric"]);
    // On the stack's 0.0.0.0 listen the scaler's reads need the token.
    let events_url = "http://127.0.0.1:5001/events";
    let anonymous = reqwest::get(events_url).await.unwrap().status();
    assert_eq!(anonymous, reqwest::StatusCode::UNAUTHORIZED);
    let event = if let Some(token) = known_token.as_deref() {
        let event = wait_for(
            "the scaler's scale-up",
            Duration::from_secs(60),
            async || {
                let events = get_json_as(events_url, Some(token)).await?;
                events["events"]
                    .as_array()?
                    .iter()
                    .find(|e| e["action"] == "scale_up")
                    .cloned()
            },
        )
        .await;
        assert_eq!(event["service"], service.as_str());
        assert_eq!(
            (event["from"].as_u64(), event["to"].as_u64()),
            (Some(1), Some(2)),
            "{event}"
        );
        assert!(
            event["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "ThreadPoolStarvation" || a == "ThreadPoolSpike"),
            "{event}"
        );
        Some(event)
    } else {
        eprintln!(
            "the alertapi_token secret predates this test and its token cannot be read: the \
             scale-up is checked from the service's replicas alone"
        );
        wait_for(
            "the scaler's scale-up",
            Duration::from_secs(60),
            async || {
                let r = docker_ok(&[
                    "service",
                    "inspect",
                    "--format",
                    "{{.Spec.Mode.Replicated.Replicas}}",
                    &service,
                ]);
                (r.trim() == "2").then_some(())
            },
        )
        .await;
        None
    };
    let replicas = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        &service,
    ]);
    assert_eq!(replicas.trim(), "2");

    // The new task runs and reports under its own instance...
    let instances = wait_for(
        "two replicas reporting to Prometheus",
        Duration::from_secs(90),
        async || {
            let series = prom_query(&queue_expr).await;
            let set: BTreeSet<String> = series
                .iter()
                .filter_map(|s| s["metric"]["instance"].as_str().map(String::from))
                .collect();
            (set.len() == 2).then_some(set)
        },
    )
    .await;
    let new_task_reporting = chrono::Utc::now();
    eprintln!("replicas reporting: {instances:?}");
    // ...and receives traffic: both replicas' own request counters (scraped directly) grow.
    let serving = wait_for("both replicas serving requests", Duration::from_secs(90), async || {
        let series = prom_query(
            "increase(http_requests_total{job=\"webserver_direct\",route=\"/test-threadpool\",status=\"200\"}[30s]) > 0",
        )
        .await;
        (series.len() >= 2).then_some(series.len())
    })
    .await;
    eprintln!("replicas serving: {serving}");
    let load_exit = wait_for("the load to finish", Duration::from_secs(240), async || {
        let (_, state) = docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &load_name,
        ]);
        state.trim().strip_prefix("exited ").map(str::to_owned)
    })
    .await;
    let (_, load_log) = docker(&["logs", &load_name]);
    assert_eq!(load_exit, "0", "load failed:\n{load_log}");
    assert!(load_log.contains("errors ............. 0"), "{load_log}");

    // Both alerts mean what they say: the starvation alert fired too (queue above 20 for 5 s).
    let starvation_fired = prom_query(&format!(
        "max_over_time(ALERTS{{alertname=\"ThreadPoolStarvation\",alertstate=\"firing\",service=\"{service}\"}}[5m])"
    ))
    .await;
    assert_eq!(
        starvation_fired.len(),
        1,
        "ThreadPoolStarvation never fired"
    );
    // The scaler pushed the original's `alert_endpoint_call` (the paper's "Scale event" export);
    // the pushed series carries no instance (the direct scrape of the scaler has one).
    let scale_event = prom_query("alert_endpoint_call{job=\"alertapi\"}").await;
    assert!(
        scale_event.iter().any(|s| s["metric"]["instance"].is_null()
            && s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)),
        "alert_endpoint_call not pushed: {scale_event:?}"
    );

    // Times for the closing note.
    let crossed = prom_query(&format!(
        "min_over_time(timestamp(sum by (service) ({queue_expr}) > 20)[5m:1s])"
    ))
    .await;
    let event_time =
        event.and_then(|e| chrono::DateTime::parse_from_rfc3339(e["time"].as_str()?).ok());
    if let (Some(t), Some(event_time)) = (
        crossed
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok()),
        event_time,
    ) {
        eprintln!(
            "queue > 20 at {:.1} s after the load started; scaler call {:.1} s after the crossing; \
             new task reporting {:.1} s after the call",
            t - load_start.timestamp_millis() as f64 / 1000.0,
            event_time.timestamp_millis() as f64 / 1000.0 - t,
            (new_task_reporting - event_time.with_timezone(&chrono::Utc)).num_milliseconds() as f64
                / 1000.0
        );
    }

    // Issue 26.2 on Swarm: a starved task SIGKILLed stops counting, is replaced, and the scaler
    // does not climb on its last gauges.
    kill::a_killed_starved_task_stops_counting(
        &stack,
        &tag,
        &service,
        known_token.as_deref(),
        &mut cleanup,
    )
    .await;

    let left = cleanup.remove_stack();
    assert!(left.is_empty(), "docker stack rm left {left:?}");
}
