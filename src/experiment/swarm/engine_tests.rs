//! Unit tests of [`super`]'s reading of Engine answers (the calls themselves need an Engine:
//! `tests/experiment_swarm.rs`).

use super::*;

#[test]
fn container_times_are_read_with_nanoseconds_and_errors_name_the_field() {
    let t = parse_time("StartedAt", Some("2026-01-02T03:04:05.123456789Z")).unwrap();
    assert_eq!(t.timestamp(), 1_767_323_045);
    assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
    // A running container's FinishedAt.
    let zero = parse_time("FinishedAt", Some("0001-01-01T00:00:00Z")).unwrap();
    assert!(zero < t);
    let e = parse_time("FinishedAt", Some("yesterday")).unwrap_err();
    assert!(
        format!("{e:#}").contains("FinishedAt \"yesterday\""),
        "{e:#}"
    );
    let e = parse_time("StartedAt", None).unwrap_err();
    assert!(e.to_string().contains("no StartedAt"), "{e}");
}

#[test]
fn only_an_active_manager_is_accepted_and_the_others_are_told_what_to_do() {
    let info = |state, control| SwarmInfo {
        node_id: Some("n1".into()),
        local_node_state: Some(state),
        control_available: Some(control),
        ..Default::default()
    };
    assert_eq!(
        manager_id(info(LocalNodeState::ACTIVE, true)).unwrap(),
        "n1"
    );
    let worker = manager_id(info(LocalNodeState::ACTIVE, false)).unwrap_err();
    assert!(
        worker
            .to_string()
            .contains("run the experiment on a manager")
    );
    let none = manager_id(info(LocalNodeState::INACTIVE, false)).unwrap_err();
    let none = none.to_string();
    assert!(none.contains("(state inactive)"), "{none}");
    assert!(none.contains("docker swarm init --advertise-addr 127.0.0.1"));
    assert!(manager_id(SwarmInfo::default()).is_err());
}

#[test]
fn engine_errors_are_told_apart() {
    let e = |status_code, message: &str| BollardError::DockerResponseServerError {
        status_code,
        message: message.into(),
    };
    assert!(not_found(&e(404, "No such container: x")));
    assert!(!not_found(&e(500, "boom")));
    assert!(out_of_sequence(&e(
        500,
        "rpc error: code = Unknown desc = update out of sequence"
    )));
    assert!(!out_of_sequence(&e(409, "conflict")));
    assert_eq!(
        namespace_filter("sv1s2").unwrap()["label"],
        ["com.docker.stack.namespace=sv1s2"]
    );
    let listed = Ok(vec![Some("a1"), None, Some("b2")]);
    let ids = |v: Option<&str>| v.map(String::from);
    assert_eq!(
        leftover("service", listed, ids),
        ["service a1", "service b2"]
    );
    let failed: Result<Vec<Option<&str>>, _> = Err(e(500, "down"));
    let line = leftover("volume", failed, ids);
    assert!(
        line[0].starts_with("volumes unknown: listing them failed:"),
        "{line:?}"
    );
}

/// The node, label, secret and listing calls on this machine's Engine (the container calls run
/// in `tests/experiment_swarm.rs`, which builds an image to run).
#[tokio::test]
#[ignore = "needs a Docker Engine in a Swarm: docker swarm init --advertise-addr 127.0.0.1"]
async fn node_label_and_secret_calls_on_the_real_swarm() {
    let engine = Engine::connect().await.unwrap();
    let node = engine.manager_node().await.unwrap();
    let roles = engine.node_roles().await.unwrap();
    assert!(roles.iter().any(|(id, _)| *id == node), "{roles:?}");

    let key = format!("starvation.test-{}", std::process::id());
    let label = async || {
        let n = engine.docker().inspect_node(&node).await.unwrap();
        n.spec
            .unwrap()
            .labels
            .unwrap_or_default()
            .get(&key)
            .cloned()
    };
    engine.set_node_label(&node, &key, Some("a")).await.unwrap();
    assert_eq!(label().await.as_deref(), Some("a"));
    // Unchanged, changed, removed, removed again.
    engine.set_node_label(&node, &key, Some("a")).await.unwrap();
    engine.set_node_label(&node, &key, Some("b")).await.unwrap();
    assert_eq!(label().await.as_deref(), Some("b"));
    engine.set_node_label(&node, &key, None).await.unwrap();
    assert_eq!(label().await, None);
    engine.set_node_label(&node, &key, None).await.unwrap();

    let secret = key.replace('.', "_");
    assert!(!engine.secret_exists(&secret).await.unwrap());
    engine.create_secret(&secret, b"token").await.unwrap();
    assert!(engine.secret_exists(&secret).await.unwrap());
    // A name that only starts like it is another secret.
    assert!(
        !engine
            .secret_exists(&secret[..secret.len() - 1])
            .await
            .unwrap()
    );
    engine.remove_secret(&secret).await.unwrap();
    assert!(!engine.secret_exists(&secret).await.unwrap());
    assert!(engine.remove_secret(&secret).await.is_err());

    let stack = format!("nostack{}", std::process::id());
    assert_eq!(engine.stack_leftovers(&stack).await, Vec::<String>::new());
    let missing = vec![format!("starvation/none:{stack}")];
    assert_eq!(engine.missing_images(&missing).await.unwrap(), missing);
    engine.remove_container(&stack).await.unwrap();
    let e = engine.exit_code(&stack).await.unwrap_err();
    assert!(format!("{e:#}").contains(&stack), "{e:#}");
}
