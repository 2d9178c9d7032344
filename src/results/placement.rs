//! Which node ran what, in a run on an orchestrator that places tasks on nodes (`run.json`'s
//! `placement`, written by the swarm backend): the nodes with their `role` label, every task
//! of the run's stack with its node, the workload's running tasks per node over the load (at
//! each change), and the nodes' state changes (a node going down). Derived here for the
//! report: where each service ran, and for a node that went down, when its workload tasks ran
//! elsewhere.
//!
//! ```json
//! "placement": {
//!   "workload": "sv1s123_webserver",
//!   "nodes": [{"id": "s4xd…", "hostname": "node1", "role": "master", "manager": true,
//!              "addr": "172.28.0.2", "state": "ready"}, …],
//!   "tasks": [{"id": "ifbf…", "service": "sv1s123_webserver", "slot": 1, "node": "node2",
//!              "node_id": "wkwx…", "desired": "running", "state": "running",
//!              "at": "2026-12-07T10:28:03Z"}, …],
//!   "timeline": [{"at": "2026-12-07T10:28:03Z", "running": {"node2": 1}}, …],
//!   "node_events": [{"at": "2026-12-07T10:28:52Z", "node": "node3", "from": "ready",
//!                    "to": "down"}]
//! }
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node of the cluster as the run saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// Its `role` label (`master`, `worker`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A Swarm manager.
    #[serde(default)]
    pub manager: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Its state when last seen (`ready`, `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One task of the run's stack, in the state the Engine last reported before teardown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInfo {
    pub id: String,
    pub service: String,
    /// Replicated services: the task's slot; global ones have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// The node's hostname (its id when the node is unknown; empty while unassigned).
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub desired: String,
    pub state: String,
    /// When the task reached `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The workload's running tasks per node hostname, from `at` on (nodes with none left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCounts {
    pub at: DateTime<Utc>,
    pub running: BTreeMap<String, u32>,
}

impl NodeCounts {
    pub fn on(&self, node: &str) -> u32 {
        self.running.get(node).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.running.values().sum()
    }
}

/// A node's state changed (`ready` → `down`, and back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEvent {
    pub at: DateTime<Utc>,
    pub node: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The service whose replicas are counted in `timeline`.
    pub workload: String,
    pub nodes: Vec<NodeInfo>,
    pub tasks: Vec<TaskInfo>,
    pub timeline: Vec<NodeCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_events: Vec<NodeEvent>,
}

/// A node that went down, and where its workload tasks ran afterwards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moved {
    pub node: String,
    /// When the manager marked it down.
    pub down_at: DateTime<Utc>,
    /// Workload tasks running on it before.
    pub tasks: u32,
    /// When its last task stopped counting as running there.
    pub left_at: DateTime<Utc>,
    /// When the other nodes ran `tasks` more than they did before (None: never, in the run).
    pub elsewhere_at: Option<DateTime<Utc>>,
    /// Running tasks gained per other node by then.
    pub to: BTreeMap<String, u32>,
}

impl Placement {
    /// The node called `hostname`.
    pub fn node(&self, hostname: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.hostname == hostname)
    }

    /// Service → node hostname → its tasks there (any state), services sorted by name.
    pub fn services(&self) -> BTreeMap<&str, BTreeMap<&str, u32>> {
        let mut out: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
        for t in &self.tasks {
            *out.entry(t.service.as_str())
                .or_default()
                .entry(t.node.as_str())
                .or_default() += 1;
        }
        out
    }

    /// Every node the timeline mentions, sorted.
    pub fn timeline_nodes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .timeline
            .iter()
            .flat_map(|c| c.running.keys().map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// For each node that went down while it ran workload tasks: how many, when they left it,
    /// and when the other nodes ran as many more.
    pub fn moved(&self) -> Vec<Moved> {
        let mut out = Vec::new();
        for ev in self.node_events.iter().filter(|e| e.to == "down") {
            // The last count with tasks on the node, at or before it was marked down.
            let Some(last) = self
                .timeline
                .iter()
                .rposition(|c| c.at <= ev.at && c.on(&ev.node) > 0)
            else {
                continue;
            };
            let before = &self.timeline[last];
            let tasks = before.on(&ev.node);
            let others = |c: &NodeCounts| c.total() - c.on(&ev.node);
            let Some(left) = self.timeline[last + 1..]
                .iter()
                .find(|c| c.on(&ev.node) < tasks)
            else {
                continue;
            };
            let back = self.timeline[last + 1..]
                .iter()
                .find(|c| c.at >= left.at && others(c) >= others(before) + tasks);
            let to = back
                .map(|c| {
                    c.running
                        .iter()
                        .filter(|(n, _)| **n != ev.node)
                        .filter_map(|(n, v)| {
                            let gained = v.saturating_sub(before.on(n));
                            (gained > 0).then(|| (n.clone(), gained))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Moved {
                node: ev.node.clone(),
                down_at: ev.at,
                tasks,
                left_at: left.at,
                elsewhere_at: back.map(|c| c.at),
                to,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn counts(s: i64, running: &[(&str, u32)]) -> NodeCounts {
        NodeCounts {
            at: at(s),
            running: running.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        }
    }

    fn task(service: &str, node: &str) -> TaskInfo {
        TaskInfo {
            id: format!("{service}-{node}"),
            service: service.into(),
            slot: None,
            node: node.into(),
            node_id: String::new(),
            desired: "running".into(),
            state: "running".into(),
            at: None,
            error: None,
        }
    }

    fn placement(timeline: Vec<NodeCounts>, down_at: i64) -> Placement {
        Placement {
            workload: "web".into(),
            nodes: Vec::new(),
            tasks: vec![
                task("web", "node2"),
                task("web", "node3"),
                task("prom", "node1"),
            ],
            timeline,
            node_events: vec![NodeEvent {
                at: at(down_at),
                node: "node3".into(),
                from: "ready".into(),
                to: "down".into(),
            }],
        }
    }

    #[test]
    fn a_node_down_moves_its_tasks_to_the_others() {
        // node3 stops at 10 with one task: its dockerd stops the task (11), the manager marks
        // the node down (22), the task runs on node2 again at 17.
        let p = placement(
            vec![
                counts(0, &[("node2", 1)]),
                counts(5, &[("node2", 1), ("node3", 1)]),
                counts(11, &[("node2", 1)]),
                counts(17, &[("node2", 2)]),
                counts(30, &[("node2", 3)]),
            ],
            22,
        );
        let m = p.moved();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!((m[0].tasks, m[0].left_at), (1, at(11)));
        assert_eq!(m[0].elsewhere_at, Some(at(17)));
        assert_eq!(m[0].to, BTreeMap::from([("node2".to_string(), 1)]));
        assert_eq!(p.timeline_nodes(), ["node2", "node3"]);
        assert_eq!(
            p.services()["web"],
            BTreeMap::from([("node2", 1), ("node3", 1)])
        );
    }

    #[test]
    fn tasks_still_counted_until_the_node_is_down_and_never_replaced() {
        // A killed node: its tasks count as running until the manager marks it down (12), and
        // nothing replaces them before the run ends.
        let p = placement(
            vec![
                counts(0, &[("node2", 1), ("node3", 2)]),
                counts(13, &[("node2", 1)]),
            ],
            12,
        );
        let m = p.moved();
        assert_eq!(
            (m[0].tasks, m[0].left_at, m[0].elsewhere_at),
            (2, at(13), None)
        );
        // A node down without workload tasks moved nothing.
        let p = placement(vec![counts(0, &[("node2", 1)])], 5);
        assert!(p.moved().is_empty());
    }

    #[test]
    fn round_trips_as_json() {
        let p = placement(vec![counts(0, &[("node2", 1)])], 5);
        let back: Placement = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
