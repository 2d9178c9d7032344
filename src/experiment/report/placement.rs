//! Which node ran what, per run (runs on a multi-node orchestrator record it in `run.json`):
//! each node's tasks by service, the workload's running tasks per node over the load, and the
//! nodes that went down with where their tasks went. Numbers for `report.json`, a section for
//! `report.md`.

use serde::Serialize;
use std::collections::BTreeMap;

use super::Report;
use crate::results::placement::{NodeInfo, Placement};
use crate::results::runmeta::RunMeta;

/// A node that went down during the run, in seconds from the load's start.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeDown {
    pub node: String,
    /// When the manager marked it down.
    pub down_s: f64,
    /// Its workload tasks before.
    pub tasks: u32,
    /// When they stopped running there.
    pub left_s: f64,
    /// When the other nodes ran as many more (None: not before the load ended).
    pub elsewhere_s: Option<f64>,
    /// Running tasks gained per other node by then.
    pub to: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlacementNumbers {
    pub nodes: Vec<NodeInfo>,
    /// Node hostname → service (without the stack's prefix) → its tasks there, any state.
    pub tasks: BTreeMap<String, BTreeMap<String, u32>>,
    /// The workload's running tasks per node, at each change (seconds from the load's start).
    pub timeline: Vec<(f64, BTreeMap<String, u32>)>,
    /// Every node state change: (seconds, node, from, to).
    pub node_events: Vec<(f64, String, String, String)>,
    pub nodes_down: Vec<NodeDown>,
}

/// The run's placement, if it recorded one, relative to its start.
pub fn placement_numbers(meta: &RunMeta) -> Option<PlacementNumbers> {
    let p: &Placement = meta.placement.as_ref()?;
    let s = |t: chrono::DateTime<chrono::Utc>| {
        ((t - meta.start).num_milliseconds() as f64 / 1000.0).round()
    };
    let stack = p.workload.rsplit_once('_').map_or("", |(s, _)| s);
    let short = |svc: &str| {
        svc.strip_prefix(stack)
            .and_then(|r| r.strip_prefix('_'))
            .unwrap_or(svc)
            .to_owned()
    };
    let mut tasks: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for (svc, nodes) in p.services() {
        for (node, n) in nodes {
            *tasks
                .entry(node.to_owned())
                .or_default()
                .entry(short(svc))
                .or_default() += n;
        }
    }
    Some(PlacementNumbers {
        nodes: p.nodes.clone(),
        tasks,
        timeline: p
            .timeline
            .iter()
            .map(|c| (s(c.at), c.running.clone()))
            .collect(),
        node_events: p
            .node_events
            .iter()
            .map(|e| (s(e.at), e.node.clone(), e.from.clone(), e.to.clone()))
            .collect(),
        nodes_down: p
            .moved()
            .into_iter()
            .map(|m| NodeDown {
                node: m.node,
                down_s: s(m.down_at),
                tasks: m.tasks,
                left_s: s(m.left_at),
                elsewhere_s: m.elsewhere_at.map(s),
                to: m.to,
            })
            .collect(),
    })
}

/// `node2: 1@0s → 2@12s; node3: 0@0s → 1@25s → 0@40s` (count@seconds, at each change).
pub fn per_node_timeline(p: &PlacementNumbers) -> String {
    let mut nodes: Vec<&String> = p.timeline.iter().flat_map(|(_, c)| c.keys()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .iter()
        .map(|node| {
            let mut steps: Vec<String> = Vec::new();
            let mut last = None;
            for (t, c) in &p.timeline {
                let n = c.get(*node).copied().unwrap_or(0);
                if last != Some(n) {
                    steps.push(format!("{n}@{t:.0}s"));
                    last = Some(n);
                }
            }
            format!("{node}: {}", steps.join(" → "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn run_section(label: &str, p: &PlacementNumbers) -> String {
    let mut md = format!(
        "### {label}\n\n| node | role label | Swarm role | state at the end | tasks (any state) |\n|---|---|---|---|---|\n"
    );
    for n in &p.nodes {
        let tasks = p
            .tasks
            .get(&n.hostname)
            .map(|t| {
                t.iter()
                    .map(|(svc, k)| format!("{svc} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            n.hostname,
            n.role.as_deref().unwrap_or("—"),
            if n.manager { "manager" } else { "worker" },
            n.state.as_deref().unwrap_or("—"),
            tasks
        ));
    }
    md.push_str(&format!(
        "\n- workload tasks running per node (count@seconds from load start): {}\n",
        per_node_timeline(p)
    ));
    for (t, node, from, to) in &p.node_events {
        md.push_str(&format!("- node {node}: {from} → {to} at {t:.0} s\n"));
    }
    for d in &p.nodes_down {
        let to: Vec<String> = d.to.iter().map(|(n, k)| format!("{n} +{k}")).collect();
        md.push_str(&format!(
            "- tasks moved: {} workload task(s) left {} at {:.0} s (marked down at {:.0} s); {}\n",
            d.tasks,
            d.node,
            d.left_s,
            d.down_s,
            match d.elsewhere_s {
                Some(e) => format!(
                    "running elsewhere at {e:.0} s ({}), {:.0} s after they left",
                    to.join(", "),
                    e - d.left_s
                ),
                None => "not running elsewhere before the load ended".into(),
            }
        ));
    }
    md.push('\n');
    md
}

/// The report's placement section; empty when no run recorded one.
pub fn placement_section(r: &Report) -> String {
    let runs: Vec<(String, &PlacementNumbers)> = [("baseline", &r.baseline), ("scaled", &r.scaled)]
        .into_iter()
        .flat_map(|(role, n)| {
            n.per_run.iter().filter_map(move |run| {
                Some((format!("pair {} {role}", run.pair), run.placement.as_ref()?))
            })
        })
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "## Placement (which node ran what)\n\nFrom the Engine of the Swarm's manager: each \
         node's tasks by service after the load (the task list keeps tasks that ended), the \
         workload's running tasks per node during the load, and node state changes.\n\n",
    );
    for (label, p) in runs {
        md.push_str(&run_section(&label, p));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::placement::{NodeCounts, NodeEvent, TaskInfo};
    use crate::results::runmeta::Role;

    #[test]
    fn a_run_on_three_nodes_with_a_worker_down() {
        let start: chrono::DateTime<chrono::Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let at = |s: i64| start + chrono::Duration::seconds(s);
        let counts = |s: i64, r: &[(&str, u32)]| NodeCounts {
            at: at(s),
            running: r.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        };
        let node = |h: &str, role: &str, manager: bool| NodeInfo {
            id: format!("id-{h}"),
            hostname: h.into(),
            role: Some(role.into()),
            manager,
            addr: None,
            state: Some("ready".into()),
        };
        let task = |svc: &str, node: &str| TaskInfo {
            id: "t".into(),
            service: format!("sv1s1_{svc}"),
            slot: None,
            node: node.into(),
            node_id: String::new(),
            desired: "running".into(),
            state: "running".into(),
            at: None,
            error: None,
        };
        let mut meta = RunMeta::new(Role::Scaled, 1, start);
        meta.placement = Some(Placement {
            workload: "sv1s1_webserver".into(),
            nodes: vec![
                node("node1", "master", true),
                node("node2", "worker", false),
                node("node3", "worker", false),
            ],
            tasks: vec![
                task("prometheus", "node1"),
                task("webserver", "node2"),
                task("webserver", "node3"),
                task("webserver", "node2"),
            ],
            timeline: vec![
                counts(0, &[("node2", 1)]),
                counts(12, &[("node2", 1), ("node3", 1)]),
                counts(20, &[("node2", 1)]),
                counts(26, &[("node2", 2)]),
            ],
            node_events: vec![NodeEvent {
                at: at(31),
                node: "node3".into(),
                from: "ready".into(),
                to: "down".into(),
            }],
        });
        let p = placement_numbers(&meta).unwrap();
        assert_eq!(p.tasks["node2"]["webserver"], 2);
        assert_eq!(p.tasks["node1"]["prometheus"], 1);
        assert_eq!(
            per_node_timeline(&p),
            "node2: 1@0s → 2@26s; node3: 0@0s → 1@12s → 0@20s"
        );
        let d = &p.nodes_down[0];
        assert_eq!(
            (d.left_s, d.down_s, d.elsewhere_s),
            (20.0, 31.0, Some(26.0))
        );
        let md = run_section("pair 1 scaled", &p);
        assert!(
            md.contains("| node1 | master | manager | ready | prometheus 1 |"),
            "{md}"
        );
        assert!(md.contains("- node node3: ready → down at 31 s"), "{md}");
        assert!(
            md.contains("running elsewhere at 26 s (node2 +1), 6 s after they left"),
            "{md}"
        );
        assert!(placement_numbers(&RunMeta::new(Role::Scaled, 1, start)).is_none());
    }
}
