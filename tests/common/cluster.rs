//! A test cluster of Docker-in-Docker nodes (`deploy/cluster.sh`), seen from this machine: the
//! script run with a name of its own, a guard that runs `cluster.sh down` on every path, the env
//! file `up` writes, and the manager's task list over its Engine API (plain TCP on the cluster's
//! own network), with the paper's placement by role.

use super::docker;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/cluster.sh --name NAME ARGS` against this machine's Engine: (success, stdout,
/// stderr).
pub fn cluster(name: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(root().join("deploy/cluster.sh"))
        .arg("--name")
        .arg(name)
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("STARVATION_CLUSTER_DIR")
        .current_dir(root())
        .output()
        .expect("running deploy/cluster.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cluster and the images the test made: removed on every path.
pub struct Cluster {
    /// The test's name, for messages.
    pub test: &'static str,
    pub name: String,
    /// The images `starvation*:TAG` the test built (removed with the cluster).
    pub tag: String,
    pub down: bool,
}

impl Cluster {
    /// `cluster.sh down` (timed) and the images; then what is left with the cluster's label.
    pub fn down(&mut self) -> Vec<String> {
        self.down = true;
        let started = Instant::now();
        let (ok, _, err) = cluster(&self.name, &["down"]);
        eprintln!(
            "{}: cluster.sh down: {:.1} s",
            self.test,
            started.elapsed().as_secs_f64()
        );
        if !ok {
            eprintln!("{}: cluster.sh down failed:\n{err}", self.test);
        }
        for image in super::stack_images(&self.tag) {
            docker(&["image", "rm", "-f", &image]);
        }
        let filter = format!("label=starvation-cluster={}", self.name);
        let mut left = vec![];
        for kind in [
            vec!["ps", "-aq"],
            vec!["volume", "ls", "-q"],
            vec!["network", "ls", "-q"],
            vec!["images", "-q"],
        ] {
            let mut args = kind.clone();
            args.extend(["--filter", &filter]);
            let (_, out) = docker(&args);
            left.extend(
                out.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("{} {l}", kind[0])),
            );
        }
        // The nodes' containers have their cgroups under /NAME-nodeN (cgroup v1).
        if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup/cpu") {
            left.extend(
                dirs.filter_map(Result::ok)
                    .map(|d| d.file_name().to_string_lossy().into_owned())
                    .filter(|d| d.starts_with(&format!("{}-node", self.name)))
                    .map(|d| format!("cgroup /sys/fs/cgroup/cpu/{d}")),
            );
        }
        left
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.down {
            let left = self.down();
            if !left.is_empty() {
                eprintln!(
                    "{}: still present after cluster.sh down: {left:?}",
                    self.test
                );
            }
        }
    }
}

/// `KEY=VALUE` lines of the env file `cluster.sh up` writes.
pub fn read_env(name: &str) -> HashMap<String, String> {
    let path = root().join("target/cluster").join(name).join("env");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `GET http://IP:2375/v1.41PATH` on the manager's Engine (Null on any failure).
pub async fn engine(http: &reqwest::Client, ip: &str, path: &str) -> Value {
    let Ok(r) = http
        .get(format!("http://{ip}:2375/v1.41{path}"))
        .send()
        .await
    else {
        return Value::Null;
    };
    r.json().await.unwrap_or(Value::Null)
}

/// A task as the test sees it in the manager's task list.
#[derive(Debug, Clone)]
pub struct Seen {
    pub service: String,
    pub node: String,
    pub state: String,
    pub desired: String,
    pub container: String,
}

/// The manager's tasks of the services whose names start with `prefix`, named by node
/// hostname; each node's role label; the desired replicas of those services.
pub async fn tasks(
    http: &reqwest::Client,
    ip: &str,
    prefix: &str,
) -> (Vec<Seen>, BTreeMap<String, String>, BTreeMap<String, u32>) {
    let nodes = engine(http, ip, "/nodes").await;
    let mut host = HashMap::new();
    let mut roles = BTreeMap::new();
    for n in nodes.as_array().into_iter().flatten() {
        let h = n["Description"]["Hostname"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        host.insert(n["ID"].as_str().unwrap_or("").to_owned(), h.clone());
        roles.insert(
            h,
            n["Spec"]["Labels"]["role"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    let services = engine(http, ip, "/services").await;
    let names: HashMap<String, String> = services
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s["Spec"]["Name"].as_str()?;
            name.starts_with(prefix)
                .then(|| (s["ID"].as_str().unwrap_or("").to_owned(), name.to_owned()))
        })
        .collect();
    // Desired replicas of the replicated services.
    let desired = services
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s["Spec"]["Name"].as_str()?;
            let n = s["Spec"]["Mode"]["Replicated"]["Replicas"].as_u64()?;
            name.starts_with(prefix)
                .then(|| (name.to_owned(), u32::try_from(n).unwrap()))
        })
        .collect();
    let all = engine(http, ip, "/tasks").await;
    let seen = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let service = names.get(t["ServiceID"].as_str()?)?.clone();
            let node = t["NodeID"].as_str().unwrap_or("");
            Some(Seen {
                service,
                node: host.get(node).cloned().unwrap_or_else(|| node.to_owned()),
                state: t["Status"]["State"].as_str().unwrap_or("").to_owned(),
                desired: t["DesiredState"].as_str().unwrap_or("").to_owned(),
                container: t["Status"]["ContainerStatus"]["ContainerID"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(12)
                    .collect(),
            })
        })
        .collect();
    (seen, roles, desired)
}

/// `webserver` of `sv1s123_webserver`.
pub fn short(service: &str) -> &str {
    service.split_once('_').map_or(service, |(_, s)| s)
}

/// Placement by role: the workload only on role=worker nodes, the monitoring and the scaler
/// only on role=master; node-exporter is global.
pub fn assert_placed_by_role(
    what: &str,
    placed: &[(String, String)],
    roles: &BTreeMap<String, String>,
) {
    for (service, node) in placed {
        let want = match short(service) {
            "webserver" => "worker",
            "prometheus" | "alertmanager" | "pushgateway" | "alertapi" => "master",
            _ => continue,
        };
        assert_eq!(
            roles.get(node).map(String::as_str),
            Some(want),
            "{what}: {service} ran on {node} ({roles:?})"
        );
    }
}

/// Running workload tasks per node.
pub fn running(seen: &[Seen]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for t in seen.iter().filter(|t| short(&t.service) == "webserver") {
        if t.state == "running" && t.desired == "running" {
            *out.entry(t.node.clone()).or_default() += 1;
        }
    }
    out
}
