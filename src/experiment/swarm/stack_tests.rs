//! Unit tests of [`super`]: the stack a run deploys, for each kernel, role and workload.

use super::*;

const ALL: Kernel = Kernel {
    ipvs: true,
    esp: true,
};
const NO_IPVS: Kernel = Kernel {
    ipvs: false,
    esp: true,
};

/// This VM's kernel: no ESP, so a run's overlays go unencrypted (else no packet would cross
/// nodes); with ESP they stay encrypted.
#[test]
fn overlays_are_encrypted_only_where_the_kernel_can() {
    let vm = "# CONFIG_INET_ESP is not set\n# CONFIG_CRYPTO_GCM is not set\nCONFIG_XFRM=y\n";
    assert!(!esp_in_config(vm));
    assert!(esp_in_config("CONFIG_INET_ESP=m\nCONFIG_CRYPTO_GCM=y\n"));
    let with = stack_doc(ALL).unwrap();
    assert_eq!(
        with["networks"]["starvation"]["driver_opts"]["encrypted"],
        ""
    );
    assert_eq!(with["networks"]["push"]["driver_opts"]["encrypted"], "");
    let without = stack_doc(Kernel {
        ipvs: true,
        esp: false,
    })
    .unwrap();
    for net in ["starvation", "push"] {
        assert!(
            without["networks"][net].get("driver_opts").is_none(),
            "{net}"
        );
        assert_eq!(without["networks"][net]["driver"], "overlay");
    }
}

#[test]
fn runs_publish_the_monitoring_the_runner_reads_and_the_file_does_not() {
    // deploy/'s file publishes only the workload (through the routing mesh, with IPVS).
    assert_eq!(host_ports(&stack_doc(ALL).unwrap()), [5000]);
    assert!(host_ports(&stack_doc(NO_IPVS).unwrap()).is_empty());
    let dir = Path::new("/x/stack");
    for ipvs in [false, true] {
        let kernel = Kernel { ipvs, esp: true };
        let run = stack_for_run(
            &Profile::quick(),
            WorkloadKind::Model,
            Role::Scaled,
            dir,
            kernel,
        )
        .unwrap();
        let mut ports = host_ports(&run);
        ports.sort();
        let mut want = vec![SCALER_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT];
        if ipvs {
            want.push(5000);
        }
        want.sort();
        assert_eq!(ports, want, "ipvs {ipvs}");
        assert_eq!(run["services"]["prometheus"]["ports"][0]["mode"], "host");
    }
    let baseline = stack_for_run(
        &Profile::quick(),
        WorkloadKind::Model,
        Role::Baseline,
        dir,
        NO_IPVS,
    )
    .unwrap();
    assert!(!host_ports(&baseline).contains(&SCALER_PORT));
}

/// tests/swarm_stack.rs publishes first, then switches to dnsrr: both orders give host-mode
/// ports.
#[test]
fn dnsrr_keeps_long_syntax_ports_in_host_mode() {
    let mut doc: Value = serde_norway::from_str(COMPOSE).unwrap();
    publish_on_manager(&mut doc).unwrap();
    use_dnsrr(&mut doc).unwrap();
    let mut ports = host_ports(&doc);
    ports.sort();
    let mut want = vec![SCALER_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT];
    want.sort();
    assert_eq!(ports, want);
    assert_eq!(doc["services"]["alertapi"]["ports"][0]["mode"], "host");
}

#[test]
fn runs_get_the_profile_and_the_scaler_only_when_scaled() {
    let dir = Path::new("/x/stack");
    let p = Profile::quick();
    let scaled = stack_for_run(&p, WorkloadKind::Model, Role::Scaled, dir, NO_IPVS).unwrap();
    let web = &scaled["services"]["webserver"];
    let cmd: Vec<&str> = web["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cmd.windows(2).any(|w| w == ["--block-ms", "2000"]),
        "{cmd:?}"
    );
    assert!(crate::experiment::profile::paper_pool_args().is_empty());
    assert!(
        !cmd.iter().any(|a| a.starts_with("--starvation-delay")),
        "the paper profile runs .NET's own constants: {cmd:?}"
    );
    assert_eq!(web["deploy"]["replicas"], 1);
    assert_eq!(web["deploy"]["labels"]["starvation.max"], "5");
    assert_eq!(web["deploy"]["endpoint_mode"], "dnsrr");
    let alertapi = scaled["services"]["alertapi"]["command"].to_string();
    for flag in [
        "--cooldown=10s",
        "--no-scale-down",
        "--max=5",
        "--min=1",
        "--public-reads",
    ] {
        assert!(alertapi.contains(flag), "{alertapi}");
    }
    assert!(scaled["services"].get("grafana").is_none());
    // The healthcheck stays: the scaler sends the spec back as the Engine's JSON.
    assert!(web.get("healthcheck").is_some());
    assert_eq!(
        scaled["configs"]["alert_rules_yml"]["file"],
        "/x/stack/alert_rules.yml"
    );
    assert_eq!(
        scaled["configs"].as_object().unwrap().len(),
        3,
        "{}",
        scaled["configs"]
    );
    let baseline = stack_for_run(&p, WorkloadKind::Model, Role::Baseline, dir, NO_IPVS).unwrap();
    assert!(baseline["services"].get("alertapi").is_none());
}

#[test]
fn the_run_folder_gets_the_stack_and_the_given_rules_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    let mut profile = Profile::quick();
    profile.serve_args = ["--mongodb-uri", "mongodb://admin:pw-PLANTED@db:27017"]
        .map(String::from)
        .to_vec();
    let compose = write_stack(
        &profile,
        WorkloadKind::Model,
        "groups: []\n",
        Role::Baseline,
        &stack,
        ALL,
    )
    .unwrap();
    let rules = std::fs::read_to_string(stack.join("alert_rules.yml")).unwrap();
    assert_eq!(rules, "groups: []\n");
    let deployed = std::fs::read_to_string(compose.path()).unwrap();
    assert!(
        deployed.contains("pw-PLANTED"),
        "the deployed stack has the real value"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(compose.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the deployed stack is private: {mode:o}");
    let record = std::fs::read_to_string(stack.join("docker-compose.yml")).unwrap();
    assert!(!record.contains("pw-PLANTED"), "{record}");
    assert!(record.contains("mongodb://admin:***@db:27017"), "{record}");
    let doc: Value = serde_norway::from_str(&record).unwrap();
    assert_eq!(
        doc["configs"]["prometheus_yml"]["file"],
        stack.join("prometheus.yml").display().to_string()
    );
    assert!(stack.join("alertmanager.yml").is_file());
    let path = compose.path().to_path_buf();
    drop(compose);
    assert!(!path.exists(), "the deployed stack is removed after use");
}

/// `--workload dotnet`: the same service (name, port, networks, healthcheck, deploy) on the
/// .NET image, its flags from the override file and the profile, its processors from the
/// profile.
#[test]
fn the_dotnet_workload_is_the_same_service_on_its_image() {
    let dir = Path::new("/x/stack");
    let mut p = Profile::quick();
    p.block_ms = 700;
    p.min_threads = 3;
    p.dotnet_processors = 2;
    let model = stack_for_run(&p, WorkloadKind::Model, Role::Scaled, dir, NO_IPVS).unwrap();
    let dotnet = stack_for_run(&p, WorkloadKind::Dotnet, Role::Scaled, dir, NO_IPVS).unwrap();
    let web = &dotnet["services"]["webserver"];
    assert_eq!(web["image"], "starvation/dotnet:${TAG:-dev}");
    assert_eq!(
        web["command"],
        json!([
            "--listen=0.0.0.0:5000",
            "--service=${STACK_NAME:-threadpool}_webserver",
            "--push-interval",
            "1s",
            "--block-ms",
            "700",
            "--min-threads",
            "3"
        ])
    );
    let env = &web["environment"];
    assert_eq!(env["DOTNET_PROCESSOR_COUNT"], "2");
    assert_eq!(env["STARVATION_PUSHGATEWAY"], "http://pushgateway:9091");
    // The healthcheck only connects (/healthz waits behind a starving pool), on the same
    // schedule.
    assert_eq!(
        web["healthcheck"]["test"],
        json!(["CMD", "/starvation", "probe", "tcp://127.0.0.1:5000"])
    );
    // Everything else is the model's service, and the rest of the stack is unchanged.
    let mut same = web.clone();
    for key in ["image", "command", "environment"] {
        same[key] = model["services"]["webserver"][key].clone();
    }
    same["healthcheck"]["test"] = model["services"]["webserver"]["healthcheck"]["test"].clone();
    assert_eq!(same, model["services"]["webserver"]);
    let mut rest = dotnet.clone();
    rest["services"]["webserver"] = model["services"]["webserver"].clone();
    assert_eq!(rest, model);
}

/// Compose's override semantics, as `docker stack deploy -c base -c override` applies them.
#[test]
fn an_override_merges_maps_and_replaces_the_rest() {
    let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
    merge(
        &mut base,
        &json!({"a": {"c": [3], "e": {"f": true}}, "d": "y"}),
    );
    assert_eq!(
        base,
        json!({"a": {"b": 1, "c": [3], "e": {"f": true}}, "d": "y"})
    );
}
