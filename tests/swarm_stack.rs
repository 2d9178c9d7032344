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
    let load_exit = wait_for("the load to finish", Duration::from_secs(150), async || {
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
    a_killed_starved_task_stops_counting(
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

/// The alert rules' signal per replica, as the stack's Prometheus loaded it: the
/// ThreadPoolSpike rule's query (`sum by (service) (SIGNAL) > 40`, from `/api/v1/rules`) with
/// its threshold and sum taken off, so the test evaluates exactly what the deployed rule sums
/// (with `deploy/prometheus/alert_rules.yml`: the queue of the replicas whose last push is under
/// 5 s old).
async fn rules_signal_per_replica() -> String {
    use promql_parser::parser::{self, Expr};
    let rules = get_json("http://127.0.0.1:9090/api/v1/rules")
        .await
        .expect("Prometheus' rules");
    let query = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["name"] == "ThreadPoolSpike")
        .and_then(|r| r["query"].as_str())
        .unwrap_or_else(|| panic!("no ThreadPoolSpike rule loaded: {rules}"))
        .to_owned();
    let unparen = |mut e: Expr| {
        while let Expr::Paren(p) = e {
            e = *p.expr;
        }
        e
    };
    let e = parser::parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let Expr::Binary(threshold) = unparen(e) else {
        panic!("ThreadPoolSpike is not `sum by (service) (...) > N`: {query}")
    };
    let Expr::Aggregate(sum) = unparen(*threshold.lhs) else {
        panic!("ThreadPoolSpike is not `sum by (service) (...) > N`: {query}")
    };
    unparen(*sum.expr).to_string()
}

/// An instant query's series as instance → value; `None` when Prometheus did not answer, which
/// is never read as "no series".
async fn by_instance(expr: &str) -> Option<std::collections::BTreeMap<String, f64>> {
    let url = format!(
        "http://127.0.0.1:9090/api/v1/query?query={}",
        url_escape(expr)
    );
    let v = get_json(&url).await?;
    if v["status"] != "success" {
        return None;
    }
    Some(
        v["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| {
                let instance = s["metric"]["instance"].as_str().unwrap_or("").to_owned();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (instance, value)
            })
            .collect(),
    )
}

fn desired_replicas(service: &str) -> u64 {
    let r = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        service,
    ]);
    r.trim().parse().unwrap_or_else(|_| panic!("replicas: {r}"))
}

/// The service's tasks Swarm wants running: (task id, slot `<service>.<n>`, current state).
fn tasks_meant_to_run(service: &str) -> Vec<(String, String, String)> {
    let (ok, out) = docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.ID}} {{.Name}} {{.CurrentState}}",
        service,
    ]);
    if !ok {
        return vec![];
    }
    out.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some((
                it.next()?.to_owned(),
                it.next()?.to_owned(),
                it.next()?.to_owned(),
            ))
        })
        .collect()
}

/// One running container of the service: (container id, instance it pushes as, task id, slot,
/// address on the stack's network).
struct Task {
    container: String,
    instance: String,
    task: String,
    slot: String,
    address: String,
}

fn running_tasks(stack: &str, service: &str) -> Vec<Task> {
    let ids = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--filter",
        "status=running",
    ]);
    ids.split_whitespace()
        .filter_map(|id| {
            let format = format!(
                "{{{{.Config.Hostname}}}} {{{{index .Config.Labels \"com.docker.swarm.task.id\"}}}} \
                 {{{{index .Config.Labels \"com.docker.swarm.task.name\"}}}} \
                 {{{{(index .NetworkSettings.Networks \"{stack}_starvation\").IPAddress}}}}"
            );
            let (ok, out) = docker(&["inspect", "--format", &format, id]);
            let mut it = out.split_whitespace();
            let (host, task, name, address) = (it.next()?, it.next()?, it.next()?, it.next()?);
            // The task's name is `<service>.<slot>.<task id>`.
            let slot = name.strip_suffix(&format!(".{task}"))?;
            ok.then(|| Task {
                container: id.to_owned(),
                // `serve`'s default instance: the hostname (the container's, unique per task)
                // and the port.
                instance: format!("{host}:5000"),
                task: task.to_owned(),
                slot: slot.to_owned(),
                address: address.to_owned(),
            })
        })
        .collect()
}

/// Issue 26.2 on the one-node Swarm: SIGKILL a starved task; within 10 s its gauges no longer
/// count, the task is replaced, and the scaler does not climb on its last gauges.
///
/// The main load is over, so the phase makes its own starvation on one task only: a burst of
/// 250 requests in 1 s straight to that task's address (nothing is sent after it, so once the
/// task is dead no live replica has a queue). As soon as the rules count its queue above 40,
/// its container gets SIGKILL. It cannot delete its Pushgateway group, so the group (and
/// Prometheus' copy of its gauges) stays: only the rules' staleness filter can stop it counting.
///
/// What the scaler may do: the queue the rules saw was live, so the alerts it fired may still be
/// answered by one step (the cooldown, 15 s, allows no second one within the window); after the
/// alerts resolve and Alertmanager has had its group_interval (5 s) to tell the scaler, no
/// scale-up at all. Had the dead gauges kept counting, both alerts would stay firing, and an alert
/// held back by the cooldown would add a step when it ends.
async fn a_killed_starved_task_stops_counting(
    stack: &str,
    tag: &str,
    service: &str,
    token: Option<&str>,
    cleanup: &mut Cleanup,
) {
    let phase = Instant::now();
    let counted = rules_signal_per_replica().await;
    eprintln!("kill phase: the rules' signal per replica: {counted}");
    let firing_expr = format!(
        "ALERTS{{alertstate=\"firing\",alertname=~\"ThreadPool.*\",service=\"{service}\"}}"
    );
    // Start from quiet: the main load's queues drained and its alerts resolved.
    wait_for(
        "the main load's queues to drain and its alerts to resolve",
        Duration::from_secs(90),
        async || {
            let queues = by_instance(&counted).await?;
            let firing = by_instance(&firing_expr).await?;
            (firing.is_empty() && queues.values().sum::<f64>() <= 20.0).then_some(())
        },
    )
    .await;
    let before = by_instance(&counted).await.unwrap_or_default();
    let target = running_tasks(stack, service)
        .into_iter()
        .find(|t| before.contains_key(&t.instance))
        .unwrap_or_else(|| panic!("no running task of {service} pushes to Prometheus: {before:?}"));
    eprintln!(
        "kill phase: target task {} ({}, instance {}, {})",
        target.task, target.slot, target.instance, target.address
    );

    let burst = format!("{stack}-burst");
    cleanup.load_containers.push(burst.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &burst,
        "--network",
        &format!("{stack}_starvation"),
        &format!("starvation:{tag}"),
        "load",
        "--url",
        &format!("http://{}:5000/test-threadpool", target.address),
        "--stages",
        "250:1s",
        "--start-rate",
        "250",
        "--pre-allocated-vus",
        "250",
        "--max-vus",
        "250",
    ]);
    let queue_at_kill = wait_for(
        "the target's queue above 40 as the rules count it",
        Duration::from_secs(30),
        async || {
            by_instance(&counted)
                .await?
                .get(&target.instance)
                .copied()
                .filter(|q| *q > 40.0)
        },
    )
    .await;

    let desired_at_kill = desired_replicas(service);
    let kill_wall = chrono::Utc::now();
    let killed = Instant::now();
    docker_ok(&["kill", "--signal", "KILL", &target.container]);
    let kill_call = killed.elapsed();

    // Watch, polling, until every fact is in and the window has covered a cooldown after any
    // step (so an alert held back by it would have been released).
    let mut gone: Option<Duration> = None;
    let mut counted_again = false;
    let mut raw_left_at_gone = None;
    let mut replaced: Option<(Duration, String, usize)> = None;
    let mut new_reporting: Option<(Duration, String)> = None;
    let mut resolved: Option<Duration> = None;
    let mut rises: Vec<(Duration, u64)> = vec![];
    let mut max_desired = desired_at_kill;
    loop {
        let t = killed.elapsed();
        if let Some(queues) = by_instance(&counted).await {
            if queues.contains_key(&target.instance) {
                counted_again |= gone.is_some();
            } else if gone.is_none() {
                gone = Some(t);
                // The Pushgateway still holds the dead task's group: the filter is what dropped it.
                raw_left_at_gone = by_instance(&format!(
                    "system_runtime_threadpool_queue_length{{job=\"webserver\",instance=\"{}\"}}",
                    target.instance
                ))
                .await
                .map(|m| m.contains_key(&target.instance));
            }
            if new_reporting.is_none()
                && let Some(new) = queues.keys().find(|i| !before.contains_key(*i))
            {
                new_reporting = Some((t, new.clone()));
            }
        }
        let desired = desired_replicas(service);
        if desired > max_desired {
            max_desired = desired;
            rises.push((t, desired));
        }
        if replaced.is_none() {
            let tasks = tasks_meant_to_run(service);
            if let Some((id, ..)) = tasks.iter().find(|(id, slot, state)| {
                *slot == target.slot && *id != target.task && state.starts_with("Running")
            }) {
                let running = tasks
                    .iter()
                    .filter(|(_, _, s)| s.starts_with("Running"))
                    .count();
                replaced = Some((t, id.clone(), running));
            }
        }
        if let Some(firing) = by_instance(&firing_expr).await {
            if !firing.is_empty() {
                resolved = None;
            } else if resolved.is_none() {
                resolved = Some(t);
            }
        }
        let settled = rises
            .last()
            .is_none_or(|(at, _)| t >= *at + Duration::from_secs(18));
        let done = gone.is_some() && replaced.is_some() && new_reporting.is_some();
        if (t >= Duration::from_secs(25) && done && settled) || t >= Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    docker(&["rm", "-f", &burst]);

    let last_push = by_instance(&format!(
        "push_time_seconds{{job=\"webserver\",instance=\"{}\"}}",
        target.instance
    ))
    .await
    .and_then(|m| m.get(&target.instance).copied());
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    eprintln!(
        "kill phase: queue {queue_at_kill} counted at the kill (docker kill took {:.2} s; last \
         push {}); kill → its gauges no longer counted {} (Pushgateway still holding its group \
         then: {raw_left_at_gone:?}); kill → replacement task running {} ({:?}); kill → \
         replacement reporting {} ({:?}); thread-pool alerts resolved {} after the kill; desired \
         replicas {desired_at_kill} at the kill, rises after it: {rises:?}",
        kill_call.as_secs_f64(),
        last_push.map_or("unknown".to_owned(), |p| format!(
            "{:.1} s before the kill",
            kill_wall.timestamp_millis() as f64 / 1000.0 - p
        )),
        secs(gone),
        secs(replaced.as_ref().map(|r| r.0)),
        replaced.as_ref().map(|r| &r.1),
        secs(new_reporting.as_ref().map(|r| r.0)),
        new_reporting.as_ref().map(|r| &r.1),
        secs(resolved),
    );

    eprintln!("kill phase: {:.0} s in all", phase.elapsed().as_secs_f64());
    // (1) Its gauges stop counting within 10 s, and never count again.
    let gone = gone.expect("the killed task's gauges still counted 60 s after the kill");
    assert!(
        gone <= Duration::from_secs(10),
        "the killed task's gauges counted for {gone:?} after the kill"
    );
    assert!(!counted_again, "the killed task's gauges counted again");
    // (2) Swarm runs a replacement in its slot, and every desired task runs.
    let (_, _, running) = replaced
        .clone()
        .expect("no replacement task running 60 s after the kill");
    assert!(
        running as u64 >= desired_replicas(service).min(desired_at_kill),
        "{running} tasks running after the replacement"
    );
    wait_for(
        "every desired task running",
        Duration::from_secs(30),
        async || {
            let desired = desired_replicas(service) as usize;
            let running = tasks_meant_to_run(service)
                .iter()
                .filter(|(_, _, s)| s.starts_with("Running"))
                .count();
            (running == desired).then_some(())
        },
    )
    .await;
    assert!(new_reporting.is_some(), "the replacement never reported");
    // (3) Nothing left to scale on: the alerts resolve, and stay resolved, once the dead queue
    // stops counting; the scaler takes at most the one step the live queue's alerts allow, and
    // none after it has been told they resolved.
    let resolved = resolved.expect("thread-pool alerts still firing at the end of the window");
    assert!(
        resolved <= Duration::from_secs(15),
        "thread-pool alerts resolved only {resolved:?} after the kill"
    );
    assert!(
        max_desired <= desired_at_kill + 1,
        "the scaler climbed from {desired_at_kill} to {max_desired} after the kill: {rises:?}"
    );
    if let Some(token) = token {
        let events = get_json_as("http://127.0.0.1:5001/events", Some(token))
            .await
            .expect("the scaler's events");
        // The scaler's decisions since the kill, in seconds after it.
        let after_kill: Vec<(f64, &serde_json::Value)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str()?).ok()?;
                let secs = (time.with_timezone(&chrono::Utc) - kill_wall).num_milliseconds();
                (secs >= 0).then_some((secs as f64 / 1000.0, e))
            })
            .collect();
        for (secs, e) in &after_kill {
            eprintln!(
                "kill phase: scaler at +{secs:.1} s: {} {} → {} ({}) {}",
                e["action"], e["from"], e["to"], e["reason"], e["alerts"]
            );
        }
        // Alertmanager told the scaler that nothing fires for the service any more (the policy's
        // reason says `resolved: …` only when no alert of the service is firing in its memory):
        // its scale-down clock runs again. Had the dead gauges kept counting, no resolve would
        // ever come and the service could never scale down.
        let told = after_kill
            .iter()
            .find(|(_, e)| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("resolved:"))
            })
            .map(|(secs, _)| *secs)
            .expect("the scaler was never told the alerts resolved after the kill");
        assert!(
            told <= 20.0,
            "the scaler was told the alerts resolved only {told:.1} s after the kill"
        );
        for (secs, e) in &after_kill {
            assert!(
                e["action"] != "scale_up" || *secs <= told,
                "the scaler scaled up {secs:.1} s after the kill, after it had been told the \
                 alerts resolved ({told:.1} s): {e}"
            );
        }
    }
}
