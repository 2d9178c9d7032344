//! The scaler with the local orchestrator and real `starvation serve` processes: 1 -> 3 -> 1,
//! all replicas serving one port, and no process left behind however the scaler ends.

mod common;

use common::{Proc, free_port, start_scaler, starvation_bin, webhook};
use starvation::orchestrator::Orchestrator;
use starvation::orchestrator::local::{LocalConfig, LocalOrchestrator};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn alive(pid: u32) -> bool {
    // Zombies count as gone: read the state from /proc.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut kids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            let after = stat.rsplit(") ").next().unwrap_or("");
            let ppid: u32 = after
                .split(' ')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == pid {
                kids.push(child);
            }
        }
    }
    kids
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_three_to_one_with_real_processes_sharing_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let local = Arc::new(
        LocalOrchestrator::start(
            LocalConfig {
                service: "webserver".into(),
                program: starvation_bin().into(),
                listen: listen.parse().unwrap(),
                serve_args: vec![
                    "--block-ms".into(),
                    "0".into(),
                    "--data-dir".into(),
                    dir.path().to_str().unwrap().into(),
                ],
                stop_timeout: Duration::from_secs(10),
                log_filter: Some("warn".into()),
            },
            1,
        )
        .await
        .unwrap(),
    );
    let server = start_scaler(
        &[
            "--default-service",
            "webserver",
            "--max",
            "3",
            "--cooldown",
            "0s",
            "--scale-down-delay",
            "1s",
        ],
        None,
        local.clone(),
    )
    .await;
    let addr = server.local_addr();
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://{addr}/alert"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let t = "2026-11-22T10:00:00Z";
    let d = post(webhook("firing", "starvation", t, "webserver")).await;
    assert_eq!((d["from"].as_u64(), d["to"].as_u64()), (Some(1), Some(2)));
    let d = post(webhook("firing", "spike", t, "webserver")).await;
    assert_eq!((d["from"].as_u64(), d["to"].as_u64()), (Some(2), Some(3)));
    let d = post(webhook("firing", "another", t, "webserver")).await;
    assert_eq!(d["action"], "none", "max 3 holds: {d}");

    let pids = local.pids().await;
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    let seen = common::instances_serving(&listen, 3).await;
    assert_eq!(
        seen,
        ["webserver-1", "webserver-2", "webserver-3"]
            .map(String::from)
            .into(),
        "all three replicas serve the shared port"
    );

    // Resolved: one step down per quiet second, to min 1; the oldest replica stays.
    post(webhook("resolved", "starvation", t, "webserver")).await;
    post(webhook("resolved", "spike", t, "webserver")).await;
    post(webhook("resolved", "another", t, "webserver")).await;
    wait_until("scale-down to 1", Duration::from_secs(20), async || {
        local.status("webserver").await.unwrap().replicas == 1
    })
    .await;
    assert_eq!(local.pids().await, vec![pids[0]]);
    // A removed replica gets SIGTERM and may take a moment to exit: poll, do not assume.
    wait_until(
        "scaled-down replicas exit",
        Duration::from_secs(10),
        async || !alive(pids[1]) && !alive(pids[2]),
    )
    .await;
    let events: serde_json::Value = reqwest::get(format!("http://{addr}/events"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let downs = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "scale_down")
        .count();
    assert_eq!(downs, 2);

    server.shutdown().await.unwrap();
    local.shutdown().await;
    assert!(!alive(pids[0]), "shutdown stops the last replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_orchestrator_stops_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalOrchestrator::start(
        LocalConfig {
            service: "webserver".into(),
            program: starvation_bin().into(),
            listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            serve_args: vec!["--data-dir".into(), dir.path().to_str().unwrap().into()],
            stop_timeout: Duration::from_secs(5),
            log_filter: Some("warn".into()),
        },
        2,
    )
    .await
    .unwrap();
    let pids = local.pids().await;
    assert_eq!(pids.len(), 2);
    drop(local);
    wait_until("children to exit", Duration::from_secs(10), async || {
        pids.iter().all(|p| !alive(*p))
    })
    .await;
}

/// Runs `starvation alertapi --orchestrator local` as a process; returns it with its children.
fn spawn_scaler(dir: &std::path::Path) -> (Proc, Vec<u32>) {
    let mut child = std::process::Command::new(starvation_bin())
        .args([
            "alertapi",
            "--listen",
            "127.0.0.1:0",
            "--orchestrator",
            "local",
        ])
        .args(["--default-service", "webserver", "--local-replicas", "2"])
        .arg(format!("--local-listen=127.0.0.1:{}", free_port()))
        .arg(format!("--local-serve-arg=--data-dir={}", dir.display()))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let proc = Proc::new(child, "alertapi");
    let kids = children_of(proc.child.id());
    assert_eq!(kids.len(), 2, "two replicas started");
    (proc, kids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_or_sigkill_of_the_scaler_leaves_no_replica_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scaler, kids) = spawn_scaler(dir.path());
    let status = scaler
        .terminate(Duration::from_secs(30))
        .expect("scaler exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        kids.iter().all(|p| !alive(*p)),
        "SIGTERM stopped every replica"
    );

    // Even SIGKILL, which the scaler cannot handle: the kernel's parent-death signal drains them.
    let (mut scaler, kids) = spawn_scaler(dir.path());
    scaler.child.kill().unwrap();
    scaler.child.wait().unwrap();
    wait_until("orphans to exit", Duration::from_secs(15), async || {
        kids.iter().all(|p| !alive(*p))
    })
    .await;
}
