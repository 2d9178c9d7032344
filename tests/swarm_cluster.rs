//! A real multi-node Docker Swarm on this one machine (issue 17): `deploy/cluster.sh up` starts
//! three Docker Engines in containers (Docker-in-Docker nodes built FROM scratch from this
//! machine's `docker.io` binaries) on a bridge network of its own and joins them into a Swarm
//! (node1 the manager, role=master; node2 and node3 workers, role=worker). The test reads the
//! node list from the manager's Engine API, loads the project's image into every node with
//! `cluster.sh load` (docker save | docker load: no registry), proves with `cluster.sh check`
//! that the overlay network carries traffic between tasks on different nodes, and removes
//! everything with `cluster.sh down` on every path (a Drop guard), checking nothing is left.
//! On that cluster, with node2 promoted to a second manager, two `starvation alertapi`
//! processes (one on each manager's Engine) receive the same alert: the one off the leader
//! answers 503 and changes nothing, the one on the leader scales (issue 16).
//!
//! The cluster has a name of its own (`starvation-cluster-t<pid>`), so it never meets a cluster
//! of another run. Traffic goes only to the nodes' addresses on the network the script creates.

mod common;

use common::cluster::{Cluster, cluster, read_env, root};
use common::docker;
use std::process::Command;
use std::time::{Duration, Instant};

const TEST: &str = "swarm_cluster";

/// `GET http://IP:2375/v1.41PATH` on a node's Engine (plain TCP on the cluster's own network).
async fn engine(ip: &str, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{ip}:2375/v1.41{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{TEST}: GET {path} on {ip}: {e}"));
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
#[ignore = "needs Docker with privileged containers: deploy/cluster.sh builds the nodes (.ci/run runs it)"]
async fn three_node_swarm_from_dind_nodes_with_overlay_across_nodes() {
    common::external("docker", "docker.io", TEST);
    // The node image is made of this machine's Engine binaries.
    common::external("dockerd", "docker.io", TEST);
    common::external("xtables-nft-multi", "iptables", TEST);
    let (ok, info) = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(ok, "{TEST}: no Docker Engine: {info}");

    let name = format!("starvation-cluster-t{}", std::process::id());
    let image = format!("starvation:{name}");
    let mut guard = Cluster {
        test: TEST,
        name: name.clone(),
        // The image is starvation:NAME, removed with the cluster.
        tag: name.clone(),
        down: false,
    };

    // The project's image, FROM scratch (a static build; incremental after the first).
    let started = Instant::now();
    let status = Command::new(root().join("deploy/build-images.sh"))
        .args(["--profile", "dev", "--tag", &image])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success(), "deploy/build-images.sh failed");
    eprintln!(
        "{TEST}: image {image} built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (ok, out, err) = cluster(&name, &["up"]);
    let up_s = started.elapsed().as_secs_f64();
    assert!(ok, "{TEST}: cluster.sh up failed:\n{err}");
    eprintln!("{TEST}: cluster.sh up (3 nodes): {up_s:.1} s\n{err}");
    let env = read_env(&name);
    let manager = env["STARVATION_CLUSTER_MANAGER"].clone();
    assert_eq!(
        out.trim(),
        format!("export DOCKER_HOST=tcp://{manager}:2375")
    );
    assert_eq!(env["DOCKER_HOST"], format!("tcp://{manager}:2375"));
    let nodes: Vec<(String, String)> = env["STARVATION_CLUSTER_NODES"]
        .split(',')
        .map(|n| {
            let (host, ip) = n.split_once(':').unwrap();
            (host.to_owned(), ip.to_owned())
        })
        .collect();
    let hosts: Vec<&str> = nodes.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["node1", "node2", "node3"], "{env:?}");
    assert_eq!(nodes[0].1, manager);
    let subnet = &env["STARVATION_CLUSTER_SUBNET"];
    let prefix = subnet.trim_end_matches("0/24");
    assert!(subnet.starts_with("172.28.") && subnet.ends_with(".0/24"));

    // `up` again: the running cluster is kept as it is.
    let started = Instant::now();
    let (ok, again, err) = cluster(&name, &["up"]);
    assert!(ok && err.contains("already up"), "second up: {err}");
    assert_eq!(again, out);
    assert!(started.elapsed() < Duration::from_secs(20));

    // The node list, from the manager's Engine API.
    let (status, list) = engine(&manager, "/nodes").await;
    assert!(status.is_success(), "GET /nodes: {status} {list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:#?}");
    for (host, ip) in &nodes {
        let node = list
            .iter()
            .find(|n| n["Description"]["Hostname"] == host.as_str())
            .unwrap_or_else(|| panic!("no {host} in the node list: {list:#?}"));
        let (role, label) = if host == "node1" {
            ("manager", "master")
        } else {
            ("worker", "worker")
        };
        assert_eq!(node["Spec"]["Role"], role, "{host}: {node:#}");
        assert_eq!(node["Spec"]["Labels"]["role"], label, "{host}: {node:#}");
        assert_eq!(node["Spec"]["Availability"], "active", "{host}");
        assert_eq!(node["Status"]["State"], "ready", "{host}: {node:#}");
        assert_eq!(node["Status"]["Addr"], ip.as_str(), "{host}");
        assert!(ip.starts_with(prefix), "{host} {ip} outside {subnet}");
        if host == "node1" {
            assert_eq!(node["ManagerStatus"]["Leader"], true);
            assert_eq!(node["ManagerStatus"]["Reachability"], "reachable");
        } else {
            assert!(node["ManagerStatus"].is_null(), "{host}: {node:#}");
        }
        // Each node is an Engine of its own, in the swarm, on overlay2 over its volume.
        let (status, info) = engine(ip, "/info").await;
        assert!(status.is_success(), "{host} /info: {status}");
        assert_eq!(info["Name"], host.as_str());
        assert_eq!(info["Swarm"]["LocalNodeState"], "active", "{host}");
        assert_eq!(info["Swarm"]["NodeAddr"], ip.as_str(), "{host}");
        assert_eq!(info["Driver"], "overlay2", "{host}");
    }

    // Images reach every node without a registry.
    let started = Instant::now();
    let (ok, _, err) = cluster(&name, &["load", &image]);
    assert!(ok, "{TEST}: cluster.sh load failed:\n{err}");
    eprintln!(
        "{TEST}: cluster.sh load {image}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (host, ip) in &nodes {
        let (status, _) = engine(ip, &format!("/images/{image}/json")).await;
        assert!(status.is_success(), "{image} not on {host}: {status}");
    }

    // The overlay across nodes: two `starvation serve` tasks on the two workers, each probed by
    // its overlay address from every other node, and the service probed by its DNS name.
    let started = Instant::now();
    let (ok, out, err) = cluster(&name, &["check", "--image", &image]);
    eprintln!(
        "{TEST}: cluster.sh check: {:.1} s\n{err}",
        started.elapsed().as_secs_f64()
    );
    assert!(ok, "{TEST}: cluster.sh check failed:\n{out}{err}");
    assert!(out.contains("overlay ok"), "{out}");
    for (target, from) in [("node2", "node1 node3"), ("node3", "node1 node2")] {
        let line = format!("{name}-check-probe-{target}: exit 0 on {from} ");
        assert!(err.contains(&line), "no `{line}` in:\n{err}");
    }
    assert!(err.contains(&format!("{name}-check-probe-dns: exit 0 on node1 ")));
    // The check removed what it made.
    let (_, services) = engine(&manager, "/services").await;
    assert_eq!(
        services,
        serde_json::json!([]),
        "services left by the check"
    );

    leader_only_acts(&manager, &nodes[1].1, &image).await;

    let left = guard.down();
    assert!(
        left.is_empty(),
        "still present after cluster.sh down: {left:?}"
    );
    let (ok, _, err) = cluster(&name, &["status"]);
    assert!(!ok, "status after down: {err}");
    // `down` with nothing up succeeds.
    let (ok, _, err) = cluster(&name, &["down"]);
    assert!(ok, "second down: {err}");
}

/// Two scaler replicas, one on each of two managers (node2 promoted): the one whose Engine is
/// not the Swarm leader answers 503 and scales nothing; the one on the leader scales.
async fn leader_only_acts(leader: &str, follower: &str, image: &str) {
    let on = |ip: &str, args: &[&str]| {
        let mut all = vec!["-H".to_owned(), format!("tcp://{ip}:2375")];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        common::docker_ok(&all)
    };
    on(leader, &["node", "promote", "node2"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, nodes) = engine(leader, "/nodes").await;
        let reachable = nodes.as_array().into_iter().flatten().any(|n| {
            n["Description"]["Hostname"] == "node2"
                && n["ManagerStatus"]["Reachability"] == "reachable"
        });
        let (_, info) = engine(follower, "/info").await;
        if reachable && info["Swarm"]["ControlAvailable"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{TEST}: node2 never became a manager: {nodes:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let service = "leader-web";
    on(
        leader,
        &[
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            service,
            "--replicas",
            "1",
            "--label",
            "starvation.managed=true",
            "--constraint",
            "node.role==worker",
            image,
            "serve",
            "--listen",
            "0.0.0.0:5000",
            "--block-ms",
            "0",
        ],
    );
    // Its task runs (a task still starting would answer the alert itself: readiness).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !on(
        leader,
        &[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}",
        ],
    )
    .starts_with("Running")
    {
        assert!(Instant::now() < deadline, "{TEST}: {service} never ran");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let scaler = |engine_ip: &str| {
        let mut cmd = Command::new(common::starvation_bin());
        cmd.args([
            "alertapi",
            "--listen",
            "127.0.0.1:0",
            "--orchestrator",
            "swarm",
            "--default-service",
            service,
            "--max",
            "3",
        ])
        .env("DOCKER_HOST", format!("tcp://{engine_ip}:2375"))
        .env_remove("STARVATION_ALERTAPI_TOKEN");
        common::spawn_listening(cmd, "starvation alertapi")
    };
    let (_on_leader, at_leader) = scaler(leader);
    let (_on_follower, at_follower) = scaler(follower);
    let post = |addr| common::fire_alert(addr, "fp-leader", service);
    let replicas = || {
        on(
            leader,
            &[
                "service",
                "inspect",
                service,
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}}",
            ],
        )
        .trim()
        .to_owned()
    };
    let (status, body) = post(at_follower).await;
    assert_eq!(status, 503, "{TEST}: the follower's scaler answered {body}");
    assert!(
        body["error"].as_str().unwrap().contains("not the leader"),
        "{body}"
    );
    assert_eq!(replicas(), "1", "the follower's scaler changed the service");
    let (status, body) = post(at_leader).await;
    assert_eq!(
        (status, body["to"].as_u64()),
        (200, Some(2)),
        "{TEST}: leader: {body}"
    );
    assert_eq!(replicas(), "2");
    eprintln!("{TEST}: two scaler replicas: the follower answered 503, the leader scaled 1 -> 2");
    on(leader, &["service", "rm", service]);
}
