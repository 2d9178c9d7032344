//! What the Engine says of where a service's tasks are: how many are ready (running and
//! healthy), still starting, or unplaceable; how many the nodes can place at most
//! (`max_replicas_per_node`); and whether this Engine is the Swarm leader.
//!
//! All of it is read from the Engine's raw JSON (`/tasks`, `/nodes`, `/info`): pure functions
//! here, the calls in `mod.rs`.

use serde_json::Value;

use crate::orchestrator::Tasks;

/// The Engine's words for a task no node can take (swarmkit's scheduler).
const NO_NODE: &str = "no suitable node";

/// `/tasks?filters=…` for the tasks of service `id` that are meant to run.
pub fn tasks_path(service_id: &str) -> String {
    let filters = serde_json::json!({ "service": [service_id], "desired-state": ["running"] });
    let encoded: String =
        url::form_urlencoded::byte_serialize(filters.to_string().as_bytes()).collect();
    format!("/tasks?filters={encoded}")
}

/// Counts the tasks meant to run by state. A task with a healthcheck stays `starting` until its
/// check passes, so `running` is ready; a task `pending` with "no suitable node" cannot be
/// placed. Tasks in terminal states (on their way out) count nowhere.
pub fn count_tasks(tasks: &Value) -> Tasks {
    let mut out = Tasks::default();
    for task in tasks.as_array().into_iter().flatten() {
        if task["DesiredState"]
            .as_str()
            .is_some_and(|d| d != "running")
        {
            continue;
        }
        let state = task["Status"]["State"].as_str().unwrap_or("");
        let err = task["Status"]["Err"].as_str().unwrap_or("");
        match state {
            "running" => out.ready += 1,
            "pending" if err.contains(NO_NODE) => {
                out.unplaceable += 1;
                out.unplaceable_reason.get_or_insert_with(|| err.to_owned());
            }
            "new" | "allocated" | "pending" | "assigned" | "accepted" | "preparing" | "ready"
            | "starting" => out.starting += 1,
            _ => {}
        }
    }
    out
}

/// The most replicas the nodes can place: `max_replicas_per_node` × the ready, active nodes
/// that satisfy the placement constraints. `None` when the spec sets no per-node maximum.
pub fn ceiling(spec: &Value, nodes: &Value) -> Option<u32> {
    let placement = &spec["TaskTemplate"]["Placement"];
    let per_node = placement["MaxReplicas"].as_u64().filter(|n| *n > 0)?;
    let constraints: Vec<&str> = placement["Constraints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let eligible = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["Status"]["State"] == "ready" && n["Spec"]["Availability"] == "active")
        .filter(|n| constraints.iter().all(|c| satisfies(n, c)))
        .count() as u64;
    Some(u32::try_from(per_node * eligible).unwrap_or(u32::MAX))
}

/// One placement constraint (`node.role==worker`, `node.labels.zone!=b`, …) against a node.
/// Attributes this does not read (engine labels, unknown ones) do not exclude the node: the
/// ceiling is then at worst too high, and Swarm's own `no suitable node` still stops scaling.
fn satisfies(node: &Value, constraint: &str) -> bool {
    let (key, want, equal) = match constraint.split_once("!=") {
        Some((k, v)) => (k, v, false),
        None => match constraint.split_once("==") {
            Some((k, v)) => (k, v, true),
            None => return true,
        },
    };
    let key = key.trim();
    let have = match key {
        "node.id" => node["ID"].as_str(),
        "node.hostname" => node["Description"]["Hostname"].as_str(),
        "node.role" => node["Spec"]["Role"].as_str(),
        "node.platform.os" => node["Description"]["Platform"]["OS"].as_str(),
        "node.platform.arch" => node["Description"]["Platform"]["Architecture"].as_str(),
        _ => match key.strip_prefix("node.labels.") {
            Some(label) => node["Spec"]["Labels"][label].as_str(),
            None => return true,
        },
    };
    // Swarm compares case-insensitively; a missing attribute equals nothing.
    let same = have.is_some_and(|h| h.eq_ignore_ascii_case(want.trim()));
    same == equal
}

/// From `/info` and `/nodes/{self}`: `Ok` when this Engine is the Swarm leader, else why not.
pub fn leadership(info: &Value, node: &Value) -> Result<(), String> {
    if info["Swarm"]["ControlAvailable"] != true {
        return Err(
            "this scaler's Docker Engine is not a Swarm manager: run the scaler on a manager \
             (placement constraint node.role==manager)"
                .to_owned(),
        );
    }
    if node["ManagerStatus"]["Leader"] == true {
        return Ok(());
    }
    Err(format!(
        "this scaler's Swarm manager ({}) is not the leader: the scaler replica on the leader \
         acts, retry there",
        node["ManagerStatus"]["Addr"].as_str().unwrap_or("?")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(desired: &str, state: &str, err: &str) -> Value {
        json!({"DesiredState": desired, "Status": {"State": state, "Err": err}})
    }

    #[test]
    fn tasks_are_ready_only_when_running_and_unplaceable_when_no_node_fits() {
        let tasks = json!([
            task("running", "running", ""),
            task("running", "running", ""),
            task("running", "starting", ""),
            task("running", "preparing", ""),
            task(
                "running",
                "pending",
                "no suitable node (max replicas per node limit exceed)"
            ),
            task("running", "pending", ""),
            task("shutdown", "running", ""),
            task("running", "failed", "task: non-zero exit (1)"),
        ]);
        let t = count_tasks(&tasks);
        assert_eq!((t.ready, t.starting, t.unplaceable), (2, 3, 1));
        assert_eq!(
            t.unplaceable_reason.as_deref(),
            Some("no suitable node (max replicas per node limit exceed)")
        );
        assert_eq!(count_tasks(&json!(null)), Tasks::default());
    }

    fn node(role: &str, zone: &str, state: &str, availability: &str) -> Value {
        json!({
            "ID": format!("id-{role}-{zone}"),
            "Description": {"Hostname": format!("{role}-{zone}"), "Platform": {"OS": "linux"}},
            "Spec": {"Role": role, "Availability": availability, "Labels": {"zone": zone}},
            "Status": {"State": state},
        })
    }

    #[test]
    fn ceiling_counts_ready_active_nodes_that_satisfy_the_constraints() {
        let nodes = json!([
            node("manager", "a", "ready", "active"),
            node("worker", "a", "ready", "active"),
            node("worker", "b", "ready", "active"),
            node("worker", "c", "down", "active"),
            node("worker", "d", "ready", "drain"),
        ]);
        let spec = |max: u64, constraints: Value| json!({"TaskTemplate": {"Placement": {"MaxReplicas": max, "Constraints": constraints}}});
        assert_eq!(ceiling(&spec(2, json!([])), &nodes), Some(6));
        assert_eq!(
            ceiling(&spec(2, json!(["node.role==worker"])), &nodes),
            Some(4)
        );
        assert_eq!(
            ceiling(
                &spec(3, json!(["node.role == worker", "node.labels.zone!=b"])),
                &nodes
            ),
            Some(3)
        );
        assert_eq!(
            ceiling(&spec(1, json!(["node.labels.rack==r1"])), &nodes),
            Some(0)
        );
        assert_eq!(
            ceiling(&spec(1, json!(["engine.labels.x==y"])), &nodes),
            Some(3),
            "an attribute not read does not exclude nodes"
        );
        assert_eq!(ceiling(&json!({"TaskTemplate": {}}), &nodes), None);
        assert_eq!(ceiling(&spec(0, json!([])), &nodes), None);
    }

    #[test]
    fn only_the_leader_may_act_and_the_others_say_why() {
        let manager = json!({"Swarm": {"ControlAvailable": true}});
        let leader = json!({"ManagerStatus": {"Leader": true, "Addr": "10.0.0.1:2377"}});
        let follower = json!({"ManagerStatus": {"Leader": false, "Addr": "10.0.0.2:2377"}});
        assert_eq!(leadership(&manager, &leader), Ok(()));
        let no = leadership(&manager, &follower).unwrap_err();
        assert!(
            no.contains("10.0.0.2:2377") && no.contains("not the leader"),
            "{no}"
        );
        let worker = json!({"Swarm": {"ControlAvailable": false}});
        assert!(
            leadership(&worker, &json!({}))
                .unwrap_err()
                .contains("not a Swarm manager")
        );
    }

    #[test]
    fn the_tasks_path_filters_by_service_and_desired_state() {
        let path = tasks_path("abc");
        let query = path.strip_prefix("/tasks?filters=").unwrap();
        let decoded: String = url::form_urlencoded::parse(format!("f={query}").as_bytes())
            .map(|(_, v)| v.into_owned())
            .collect();
        let filters: Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(filters["service"], json!(["abc"]));
        assert_eq!(filters["desired-state"], json!(["running"]));
    }
}
