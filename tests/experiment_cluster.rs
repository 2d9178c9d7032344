//! `starvation experiment --backend swarm` on a real three-node Swarm (issue 17): the test
//! brings up its own cluster of Docker-in-Docker nodes (`deploy/cluster.sh --name
//! starvation-cluster-e<pid>`: node1 the manager, role=master; node2 and node3 workers,
//! role=worker), builds the stack's images FROM scratch and copies them into every node
//! (`cluster.sh load`: no registry), and runs one short pair against the manager's Engine,
//! called exactly as on one machine (DOCKER_HOST, --swarm-host, --swarm-tag).
//!
//! While the scaled run goes, the test watches the manager's task list: the workload only on
//! role=worker nodes, Prometheus, Alertmanager, Pushgateway and the scaler only on the manager,
//! and the scaler's scale-up lands a task on a worker. Once the workload is scaled it stops one
//! worker (`docker stop` of its node container, through this machine's Engine): Swarm runs its
//! tasks on the other worker, the run completes, the report shows the node going down and the
//! tasks moving, the scaler kept to its bounds and counted ready tasks only, the new tasks'
//! gauges reached Prometheus across the overlay (their instances are in the exported series),
//! and nothing is lost from the exports. A Drop guard runs `cluster.sh down` on every path.
//!
//! Traffic goes only to loopback and to the nodes' addresses on the network the script creates.

mod common;

use common::cluster::{Cluster, assert_placed_by_role, cluster, read_env, running, short, tasks};
use common::{docker, starvation_bin};
use serde_json::Value;
use starvation::results::placement::Placement;
use starvation::results::promjson::read_export;
use starvation::results::runmeta::RunMeta;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "experiment_cluster";

/// A short spike, long enough after the first scale-up for a worker to be stopped and its
/// tasks to run elsewhere before the load ends (70 s of load).
const MAX_REPLICAS: u32 = 3;
const PROFILE: &str = r#"
name = "cluster-test"
stages = "20:10s,35:25s,35:35s"
block_ms = 2000
min_threads = 1
initial_replicas = 1
max_replicas = 3
cooldown_s = 10
timeout_s = 30
graceful_stop_s = 5
pre_allocated_vus = 50
max_vus = 1000
serve_args = ["--starvation-delay", "2s"]
"#;

/// What the test saw of the scaled run.
#[derive(Default)]
struct Watched {
    stopped: Option<(String, Instant, chrono::DateTime<chrono::Utc>)>,
    /// The stopped node's running workload tasks, and the other worker's, before the stop.
    before: (u32, u32),
    elsewhere_after: Option<Duration>,
    /// Containers of workload tasks that ran on workers (the first 12 hex digits).
    containers: BTreeSet<String>,
    /// (seconds since the scaled stack appeared, running per node) at each change.
    timeline: Vec<(f64, BTreeMap<String, u32>)>,
    scaled_up_on: Option<String>,
}

/// Until the experiment exits: watch the scaled run's tasks, stop a worker once the workload
/// is scaled, and time until its tasks run on the other worker.
async fn watch(
    p: &mut common::Proc,
    ip: &str,
    cluster_name: &str,
    deadline: Instant,
) -> (std::process::ExitStatus, Watched) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut w = Watched::default();
    let mut first: Option<Instant> = None;
    let mut stop: Option<std::thread::JoinHandle<Duration>> = None;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            if let Some(h) = stop {
                h.join().expect("docker stop");
            }
            return (status, w);
        }
        assert!(
            Instant::now() < deadline,
            "{TEST}: the pair did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (seen, roles, desired) = tasks(&http, ip, "sv1s").await;
        if seen.is_empty() {
            continue;
        }
        let t0 = *first.get_or_insert_with(Instant::now);
        let placed: Vec<(String, String)> = seen
            .iter()
            .filter(|t| t.state == "running")
            .map(|t| (t.service.clone(), t.node.clone()))
            .collect();
        assert_placed_by_role("the manager's task list", &placed, &roles);
        let now = running(&seen);
        for t in seen.iter().filter(|t| short(&t.service) == "webserver") {
            if t.state == "running" && !t.container.is_empty() {
                w.containers.insert(t.container.clone());
            }
        }
        if w.timeline.last().is_none_or(|(_, c)| *c != now) {
            eprintln!(
                "{TEST}: +{:.1} s running per node {now:?}",
                t0.elapsed().as_secs_f64()
            );
            if w.scaled_up_on.is_none() && now.values().sum::<u32>() >= 2 {
                let before = w
                    .timeline
                    .last()
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default();
                w.scaled_up_on = now
                    .iter()
                    .find(|(n, v)| **v > before.get(*n).copied().unwrap_or(0))
                    .map(|(n, _)| n.clone());
            }
            w.timeline.push((t0.elapsed().as_secs_f64(), now.clone()));
        }
        let workers: Vec<String> = roles
            .iter()
            .filter(|(_, r)| *r == "worker")
            .map(|(n, _)| n.clone())
            .collect();
        let scaled_on_both =
            now.values().sum::<u32>() >= 2 && workers.iter().all(|n| now.contains_key(n));
        if w.stopped.is_none() && scaled_on_both {
            // Stop the worker with the most tasks (the later on a tie), in a thread: `docker
            // stop` waits up to 10 s for the node's dockerd, and the watch goes on meanwhile.
            let victim = workers
                .iter()
                .max_by_key(|n| (now[*n], (*n).clone()))
                .unwrap()
                .clone();
            let other = workers.iter().find(|n| **n != victim).unwrap();
            w.before = (now[&victim], now[other]);
            let container = format!("{cluster_name}-{victim}");
            let at = Instant::now();
            w.stopped = Some((victim.clone(), at, chrono::Utc::now()));
            stop = Some(std::thread::spawn(move || {
                let (ok, out) = docker(&["stop", &container]);
                assert!(ok, "docker stop {container}: {out}");
                at.elapsed()
            }));
            eprintln!(
                "{TEST}: +{:.1} s stopping {victim} ({} workload tasks; {} on the other worker)",
                t0.elapsed().as_secs_f64(),
                w.before.0,
                w.before.1
            );
        } else if let Some((victim, at, _)) = w.stopped.clone()
            && w.elsewhere_after.is_none()
        {
            let others: u32 = now
                .iter()
                .filter(|(n, _)| **n != victim)
                .map(|(_, v)| v)
                .sum();
            // The service whole again without the node: every desired replica (a scale-up
            // meanwhile included) running on the other worker.
            let want = desired
                .iter()
                .find(|(n, _)| short(n) == "webserver")
                .map_or(0, |(_, d)| *d);
            if others >= want.max(w.before.0 + w.before.1) && !now.contains_key(&victim) {
                w.elsewhere_after = Some(at.elapsed());
                eprintln!(
                    "{TEST}: {victim} stopped → all {want} desired tasks running elsewhere after {:.1} s",
                    at.elapsed().as_secs_f64()
                );
            }
        }
        if let Some(h) = stop.take_if(|h| h.is_finished()) {
            let took = h.join().expect("docker stop");
            eprintln!(
                "{TEST}: docker stop returned after {:.1} s",
                took.as_secs_f64()
            );
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker: deploy/cluster.sh builds a three-node Swarm from Docker-in-Docker nodes (.ci/run runs it)"]
async fn a_pair_on_a_three_node_swarm_with_a_worker_stopped() {
    common::external("docker", "docker.io", TEST);
    common::external("dockerd", "docker.io", TEST);
    common::external("xtables-nft-multi", "iptables", TEST);
    let (ok, info) = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(ok, "{TEST}: no Docker Engine: {info}");
    let test_started = Instant::now();

    let name = format!("starvation-cluster-e{}", std::process::id());
    let tag = format!("cluster-e{}", std::process::id());
    let mut guard = Cluster {
        test: TEST,
        name: name.clone(),
        tag: tag.clone(),
        down: false,
    };
    common::build_stack_images(&tag);

    let started = Instant::now();
    let (ok, _, err) = cluster(&name, &["up"]);
    assert!(ok, "{TEST}: cluster.sh up failed:\n{err}");
    let up_s = started.elapsed().as_secs_f64();
    eprintln!("{TEST}: cluster.sh up (3 nodes): {up_s:.1} s");
    let env = read_env(&name);
    let manager = env["STARVATION_CLUSTER_MANAGER"].clone();
    let images = common::stack_images(&tag);
    let mut load = vec!["load"];
    load.extend(images.iter().map(String::as_str));
    let started = Instant::now();
    let (ok, _, err) = cluster(&name, &load);
    assert!(ok, "{TEST}: cluster.sh load failed:\n{err}");
    eprintln!(
        "{TEST}: cluster.sh load (5 images): {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The experiment, called as on one machine, against the cluster's manager.
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("cluster-test.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let out = tmp.path().join("exp");
    let started = Instant::now();
    let child = Command::new(starvation_bin())
        .args(["experiment", "--backend", "swarm", "--runs", "1"])
        .args(["--swarm-tag", &tag, "--swarm-host", &manager])
        .args(["--profile", path(&profile), "--out", path(&out)])
        .env("DOCKER_HOST", &env["DOCKER_HOST"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = common::Proc::new(child, "experiment");
    let (status, w) = watch(
        &mut p,
        &manager,
        &name,
        Instant::now() + Duration::from_secs(420),
    )
    .await;
    eprintln!(
        "{TEST}: the pair took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "experiment failed: {status}: {}",
        p.stderr()
    );
    let (victim, _, stopped_at) = w
        .stopped
        .clone()
        .expect("the workload never ran scaled on both workers");
    let elsewhere = w
        .elsewhere_after
        .expect("the stopped worker's tasks never ran elsewhere");
    // The scale-up's new task ran on a worker (the watch checked every running task's node).
    let scaled_up_on = w.scaled_up_on.clone().expect("no scale-up seen");
    eprintln!("{TEST}: the first scale-up's task ran on {scaled_up_on}");
    assert!(["node2", "node3"].contains(&scaled_up_on.as_str()));

    // The record: which node ran what, from the Engine's task list.
    let run = |role: &str| out.join(format!("runs/pair_1/{role}"));
    let meta = |role: &str| RunMeta::read(&run(role).join("run.json")).unwrap();
    for role in ["baseline", "scaled"] {
        let m = meta(role);
        let pl: &Placement = m
            .placement
            .as_ref()
            .unwrap_or_else(|| panic!("{role}: no placement"));
        let roles: BTreeMap<String, String> = pl
            .nodes
            .iter()
            .map(|n| (n.hostname.clone(), n.role.clone().unwrap_or_default()))
            .collect();
        assert_eq!(roles.len(), 3, "{role}: {pl:?}");
        let placed: Vec<(String, String)> = pl
            .tasks
            .iter()
            .map(|t| (t.service.clone(), t.node.clone()))
            .collect();
        assert_placed_by_role(&format!("{role} run.json"), &placed, &roles);
        for svc in ["webserver", "prometheus", "alertmanager", "pushgateway"] {
            assert!(
                placed.iter().any(|(s, _)| short(s) == svc),
                "{role}: no {svc} task: {placed:?}"
            );
        }
        assert_eq!(
            placed.iter().any(|(s, _)| short(s) == "alertapi"),
            role == "scaled",
            "{role}: the scaler runs in scaled runs only"
        );
    }

    // The scaled run: scaled within bounds, the worker's stop recorded, its tasks moved.
    let scaled = meta("scaled");
    assert!(!scaled.scale_events.is_empty(), "{scaled:?}");
    let pl = scaled.placement.clone().unwrap();
    let workers: BTreeSet<&str> = pl
        .nodes
        .iter()
        .filter(|n| n.role.as_deref() == Some("worker"))
        .map(|n| n.hostname.as_str())
        .collect();
    let on_workers: BTreeSet<&str> = pl
        .timeline
        .iter()
        .flat_map(|c| c.running.keys().map(String::as_str))
        .collect();
    assert_eq!(
        on_workers, workers,
        "the workload ran on both workers: {:?}",
        pl.timeline
    );
    let down = pl
        .node_events
        .iter()
        .find(|e| e.node == victim && e.to == "down")
        .unwrap_or_else(|| panic!("no down event of {victim}: {:?}", pl.node_events));
    assert!(down.at > stopped_at);
    let moved = pl.moved();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].node, victim);
    let moved_at = moved[0]
        .elsewhere_at
        .expect("its tasks ran elsewhere within the run");
    let other = workers.iter().find(|n| **n != victim).unwrap();
    assert!(moved[0].to.contains_key(*other), "{moved:?}");
    let stop_to_elsewhere = (moved_at - stopped_at).num_milliseconds() as f64 / 1000.0;
    eprintln!(
        "{TEST}: {victim} stopped → every desired task running on the other worker after {:.1} s (the test's watch); as many tasks more there as {victim} had after {stop_to_elsewhere:.1} s (run.json); {victim} marked down after {:.1} s",
        elsewhere.as_secs_f64(),
        (down.at - stopped_at).num_milliseconds() as f64 / 1000.0
    );
    // Per node timeline, as recorded.
    for c in &pl.timeline {
        eprintln!(
            "{TEST}: scaled run +{:.0} s running per node {:?}",
            (c.at - scaled.start).num_milliseconds() as f64 / 1000.0,
            c.running
        );
    }

    // The scaler kept to its bounds and counted ready tasks only.
    let alerts: Value =
        serde_json::from_slice(&std::fs::read(run("scaled").join("alerts.json")).unwrap()).unwrap();
    for e in alerts["scaler_events"].as_array().unwrap() {
        eprintln!(
            "{TEST}: scaler {} {}→{} {}: {}",
            e["time"], e["from"], e["to"], e["action"], e["reason"]
        );
        let to = e["to"].as_u64().unwrap() as u32;
        assert!((1..=MAX_REPLICAS).contains(&to), "{e}");
        let reason = e["reason"].as_str().unwrap();
        if let Some(counted) = reason.split("counted from ").nth(1) {
            let words: Vec<&str> = counted.split_whitespace().collect();
            let (ready, desired): (u32, u32) =
                (words[0].parse().unwrap(), words[3].parse().unwrap());
            assert!(ready <= desired, "{e}");
        }
    }
    let replicas = read_export(&run("scaled").join("Replicas_export.json")).unwrap();
    let most = replicas.series().unwrap()[0]
        .values
        .iter()
        .map(|v| v.value)
        .fold(0.0, f64::max);
    assert!(
        most >= 2.0 && most <= f64::from(MAX_REPLICAS),
        "replicas peaked at {most}"
    );

    // The new tasks' gauges crossed the overlay to Prometheus: each workload container seen
    // running is an instance of the exported queue length.
    let queue =
        read_export(&run("scaled").join("System_Runtime_ThreadPool_Queue_Length_export.json"))
            .unwrap();
    let instances: BTreeSet<String> = queue
        .series()
        .unwrap()
        .iter()
        .filter_map(|s| s.metric.get("instance").cloned())
        .collect();
    for c in &w.containers {
        assert!(
            instances.iter().any(|i| i.starts_with(c.as_str())),
            "the task of container {c} is not in the exported series: {instances:?}"
        );
    }
    assert!(w.containers.len() >= 3, "{:?}", w.containers);

    // Nothing lost: the same files as any run, every export there and covering the load.
    for role in ["baseline", "scaled"] {
        common::experiment::assert_run_files(&run(role), role == "scaled");
        common::experiment::assert_exports_cover_load(&run(role), &meta(role), 5.0);
    }

    // The report says which node ran what, and the event.
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let rp = &report["scaled"]["per_run"][0]["placement"];
    assert_eq!(rp["nodes_down"][0]["node"], victim.as_str(), "{rp}");
    assert!(rp["nodes_down"][0]["elsewhere_s"].is_number(), "{rp}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Placement (which node ran what)".to_string(),
        "### pair 1 scaled".into(),
        format!("- node {victim}: ready → down at"),
        format!("workload task(s) left {victim}"),
        "| node1 | master | manager | ready |".into(),
    ] {
        assert!(md.contains(&needle), "report.md lacks {needle:?}:\n{md}");
    }
    let section = md
        .split("## Placement")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    eprintln!("{TEST}: report.md placement:\n## Placement{section}");
    eprintln!(
        "{TEST}: baseline p99 peak {} s, scaled p99 peak {} s, first scale {} s",
        report["baseline"]["p99_peak_s"],
        report["scaled"]["p99_peak_s"],
        report["scaled"]["first_scale_s"]
    );

    let left = guard.down();
    assert!(
        left.is_empty(),
        "still present after cluster.sh down: {left:?}"
    );
    eprintln!(
        "{TEST}: whole test {:.0} s",
        test_started.elapsed().as_secs_f64()
    );
}
