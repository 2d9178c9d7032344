//! Several `starvation serve` processes: distinct Pushgateway groups with the real Debian
//! Pushgateway, and one shared port with SO_REUSEPORT.

mod common;

use common::{free_port, spawn_serve, start_pushgateway};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The `instance` labels of the Pushgateway's `job=webserver` groups that carry our gauges.
async fn webserver_instances(gateway: &str) -> BTreeSet<String> {
    let body: serde_json::Value = reqwest::get(format!("{gateway}/api/v1/metrics"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["labels"]["job"] == "webserver")
        .filter(|g| g.get("system_runtime_threadpool_queue_length").is_some())
        .map(|g| g["labels"]["instance"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Pushgateway: apt-get install prometheus-pushgateway (.ci/run does)"]
async fn two_replicas_push_two_groups_and_delete_them_on_shutdown() {
    let (_gateway_proc, gateway) =
        start_pushgateway("two_replicas_push_two_groups_and_delete_them_on_shutdown").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let common_args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--pushgateway",
        &gateway,
        "--push-interval",
        "200ms",
        "--service",
        "threadpool_webserver",
    ];
    let (mut a, addr_a) = spawn_serve(&common_args);
    let (mut b, addr_b) = spawn_serve(&common_args);
    let deadline = Instant::now() + Duration::from_secs(15);
    let instances = loop {
        let found = webserver_instances(&gateway).await;
        if found.len() >= 2 || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected: BTreeSet<String> = [addr_a, addr_b]
        .iter()
        .map(|addr| {
            format!(
                "{}:{}",
                gethostname::gethostname().to_string_lossy(),
                addr.port()
            )
        })
        .collect();
    assert_eq!(
        instances, expected,
        "one group per replica, keyed by hostname:port"
    );

    // Gauges arrive without any request traffic, with the original's values.
    let text = reqwest::get(format!("{gateway}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for instance in &expected {
        let line = format!(
            "max_worker_threads{{instance=\"{instance}\",job=\"webserver\",service=\"threadpool_webserver\"}} 32767"
        );
        assert!(text.contains(&line), "missing {line}");
    }

    for p in [&mut a, &mut b] {
        let status = p
            .terminate(Duration::from_secs(15))
            .expect("exits after SIGTERM");
        assert!(status.success());
    }
    assert!(
        webserver_instances(&gateway).await.is_empty(),
        "groups are deleted at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_port_with_reuse_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--listen",
        &listen,
        "--reuse-port",
        "--block-ms",
        "0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    let (_a, addr_a) = spawn_serve(&args);
    let (_b, addr_b) = spawn_serve(&args);
    assert_eq!(addr_a, addr_b);

    let seen = common::instances_serving(&listen, 2).await;
    assert_eq!(seen.len(), 2, "both replicas served traffic: {seen:?}");
    assert!(
        seen.iter().all(|i| i.contains(&format!(":{port}-"))),
        "{seen:?}"
    );
}
