//! Which node ran what during a swarm run: each second of the load, the Swarm's nodes (their
//! state changes: a worker going down) and the workload's running tasks per node (kept at each
//! change); after the load, every task of the run's stack with its node. Read from the
//! Engine's JSON (`/nodes`, `/services`, `/tasks`); the conversions are pure functions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::engine::Engine;
use crate::results::placement::{NodeCounts, NodeEvent, NodeInfo, Placement, TaskInfo};

/// `/tasks` (or `/services`) with `filters` URL-encoded.
fn filtered(path: &str, filters: &Value) -> String {
    let encoded: String =
        url::form_urlencoded::byte_serialize(filters.to_string().as_bytes()).collect();
    format!("{path}?filters={encoded}")
}

/// The nodes of `GET /nodes`, by hostname.
pub(super) fn nodes_of(nodes: &Value) -> Vec<NodeInfo> {
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    let mut out: Vec<NodeInfo> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let id = s(&n["ID"]).unwrap_or_default();
            NodeInfo {
                hostname: s(&n["Description"]["Hostname"]).unwrap_or_else(|| id.clone()),
                id,
                role: s(&n["Spec"]["Labels"]["role"]),
                manager: n["Spec"]["Role"] == "manager",
                addr: s(&n["Status"]["Addr"]),
                state: Some(s(&n["Status"]["State"]).unwrap_or_else(|| "unknown".into())),
            }
        })
        .collect();
    out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    out
}

fn hostname<'a>(nodes: &'a [NodeInfo], id: &'a str) -> &'a str {
    nodes
        .iter()
        .find(|n| n.id == id)
        .map_or(id, |n| n.hostname.as_str())
}

/// Tasks running (and healthy: Swarm reports a task with a healthcheck `starting` until it
/// passes) and meant to run, per node hostname.
pub(super) fn running_per_node(tasks: &Value, nodes: &[NodeInfo]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for t in tasks.as_array().into_iter().flatten() {
        if t["DesiredState"] == "running" && t["Status"]["State"] == "running" {
            let node = hostname(nodes, t["NodeID"].as_str().unwrap_or(""));
            *out.entry(node.to_owned()).or_default() += 1;
        }
    }
    out
}

/// The tasks of `GET /tasks`, named by `services` (id → name) and `nodes`, sorted by service,
/// slot and time.
pub(super) fn tasks_of(
    tasks: &Value,
    services: &BTreeMap<String, String>,
    nodes: &[NodeInfo],
) -> Vec<TaskInfo> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut out: Vec<TaskInfo> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let service_id = s(&t["ServiceID"]);
            let node_id = s(&t["NodeID"]);
            TaskInfo {
                id: s(&t["ID"]),
                service: services.get(&service_id).cloned().unwrap_or(service_id),
                slot: t["Slot"].as_u64().filter(|s| *s > 0),
                node: hostname(nodes, &node_id).to_owned(),
                node_id,
                desired: s(&t["DesiredState"]),
                state: s(&t["Status"]["State"]),
                at: t["Status"]["Timestamp"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
                error: t["Status"]["Err"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .map(String::from),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.service, a.slot, a.at).cmp(&(&b.service, b.slot, b.at)));
    out
}

/// What a run has seen of the Swarm so far.
pub(super) struct PlacementRecorder {
    stack: String,
    workload: String,
    nodes: Vec<NodeInfo>,
    states: BTreeMap<String, String>,
    timeline: Vec<NodeCounts>,
    events: Vec<NodeEvent>,
}

impl PlacementRecorder {
    pub fn new(stack: &str, workload: &str) -> PlacementRecorder {
        PlacementRecorder {
            stack: stack.into(),
            workload: workload.into(),
            nodes: Vec::new(),
            states: BTreeMap::new(),
            timeline: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Note the nodes' states (a change is an event) and, at `now`, the workload's running
    /// tasks per node (kept when they changed).
    pub fn note(&mut self, now: DateTime<Utc>, nodes: &Value, tasks: &Value) {
        let seen = nodes_of(nodes);
        for node in &seen {
            let state = node.state.clone().unwrap_or_default();
            match self.states.insert(node.hostname.clone(), state.clone()) {
                Some(was) if was != state => self.events.push(NodeEvent {
                    at: now,
                    node: node.hostname.clone(),
                    from: was,
                    to: state,
                }),
                _ => {}
            }
        }
        if !seen.is_empty() {
            self.nodes = seen;
        }
        let running = running_per_node(tasks, &self.nodes);
        if self.timeline.last().is_none_or(|c| c.running != running) {
            self.timeline.push(NodeCounts { at: now, running });
        }
    }

    /// One second of the load: `/nodes` and the workload's tasks from `engine`.
    pub async fn observe(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let now = Utc::now();
        let filters = json!({"service": [self.workload], "desired-state": ["running"]});
        let path = filtered("/tasks", &filters);
        let (nodes, tasks) = tokio::join!(engine.get_json("/nodes"), engine.get_json(&path));
        self.note(now, &nodes?, &tasks?);
        Ok(())
    }

    /// After the load: the record, with every task of the stack's services.
    pub async fn finish(&mut self, engine: &Engine) -> anyhow::Result<Placement> {
        let label = format!("com.docker.stack.namespace={}", self.stack);
        let services = engine
            .get_json(&filtered("/services", &json!({"label": [label]})))
            .await?;
        let names: BTreeMap<String, String> = services
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let id = s["ID"].as_str()?;
                let name = s["Spec"]["Name"].as_str().unwrap_or(id);
                Some((id.to_owned(), name.to_owned()))
            })
            .collect();
        let ids: Vec<&String> = names.keys().collect();
        let tasks = if ids.is_empty() {
            Value::Array(Vec::new())
        } else {
            engine
                .get_json(&filtered("/tasks", &json!({"service": ids})))
                .await?
        };
        if let Ok(nodes) = engine.get_json("/nodes").await {
            self.nodes = nodes_of(&nodes);
        }
        Ok(Placement {
            workload: self.workload.clone(),
            nodes: self.nodes.clone(),
            tasks: tasks_of(&tasks, &names, &self.nodes),
            timeline: std::mem::take(&mut self.timeline),
            node_events: std::mem::take(&mut self.events),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(node3: &str) -> Value {
        json!([
            {"ID": "n1", "Description": {"Hostname": "node1"}, "Spec": {"Role": "manager",
             "Labels": {"role": "master"}}, "Status": {"State": "ready", "Addr": "172.28.0.2"}},
            {"ID": "n2", "Description": {"Hostname": "node2"}, "Spec": {"Role": "worker",
             "Labels": {"role": "worker"}}, "Status": {"State": "ready", "Addr": "172.28.0.3"}},
            {"ID": "n3", "Description": {"Hostname": "node3"}, "Spec": {"Role": "worker",
             "Labels": {"role": "worker"}}, "Status": {"State": node3, "Addr": "172.28.0.4"}},
        ])
    }

    fn task(id: &str, node: &str, desired: &str, state: &str) -> Value {
        json!({"ID": id, "ServiceID": "s1", "NodeID": node, "Slot": 1, "DesiredState": desired,
               "Status": {"State": state, "Timestamp": "2026-12-07T10:28:03.5Z"}})
    }

    #[test]
    fn counts_running_tasks_per_node_and_node_state_changes() {
        let mut r = PlacementRecorder::new("sv1s1", "sv1s1_webserver");
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t = |s| t0 + chrono::Duration::seconds(s);
        let two = json!([
            task("a", "n2", "running", "running"),
            task("b", "n3", "running", "running"),
            task("c", "n2", "running", "starting"),
        ]);
        r.note(t(0), &nodes("ready"), &two);
        r.note(t(1), &nodes("ready"), &two);
        let moved = json!([
            task("a", "n2", "running", "running"),
            task("b", "n3", "shutdown", "running"),
            task("c", "n2", "running", "running"),
        ]);
        r.note(t(2), &nodes("down"), &moved);
        assert_eq!(r.timeline.len(), 2, "{:?}", r.timeline);
        assert_eq!(
            r.timeline[0].running,
            BTreeMap::from([("node2".into(), 1), ("node3".into(), 1)])
        );
        assert_eq!(r.timeline[1].running, BTreeMap::from([("node2".into(), 2)]));
        assert_eq!(r.events.len(), 1);
        assert_eq!(
            (r.events[0].node.as_str(), r.events[0].to.as_str()),
            ("node3", "down")
        );
        assert_eq!(r.nodes[0].role.as_deref(), Some("master"));
        assert!(r.nodes[0].manager && !r.nodes[1].manager);
        assert_eq!(r.nodes[2].state.as_deref(), Some("down"));
    }

    #[test]
    fn tasks_are_named_by_service_and_node() {
        let nodes = nodes_of(&nodes("ready"));
        let names = BTreeMap::from([("s1".to_string(), "sv_webserver".to_string())]);
        let mut failed = task("x", "n3", "shutdown", "failed");
        failed["Status"]["Err"] = "node is down".into();
        let tasks = tasks_of(
            &json!([task("a", "n2", "running", "running"), failed]),
            &names,
            &nodes,
        );
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            (tasks[0].service.as_str(), tasks[0].node.as_str()),
            ("sv_webserver", "node2")
        );
        assert_eq!(tasks[1].error.as_deref(), Some("node is down"));
        assert_eq!(tasks[0].at.unwrap().timestamp_subsec_millis(), 500);
    }
}
