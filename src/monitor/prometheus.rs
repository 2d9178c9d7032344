//! `starvation experiment --monitor prometheus`: the real Prometheus, Pushgateway and
//! Alertmanager (Debian packages) as local processes on free loopback ports, with configs
//! generated from `deploy/prometheus/prometheus.yml` and `deploy/alertmanager/alertmanager.yml`.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::remote::PrometheusReader;
use super::{Monitor, Recording, unix_s};
use crate::results::metrics::MetricSpec;

/// The binaries this monitor runs, and the Debian packages that install them.
pub const BINARIES: [(&str, &str); 3] = [
    ("prometheus", "prometheus"),
    ("prometheus-pushgateway", "prometheus-pushgateway"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
];

/// The three binaries' paths, or an error naming the missing ones and the apt-get line that
/// installs them.
pub fn check_binaries() -> anyhow::Result<[PathBuf; 3]> {
    let found = BINARIES.map(|(b, _)| crate::util::find_on_path(b));
    let missing: Vec<&str> = BINARIES
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|((b, _), _)| *b)
        .collect();
    if !missing.is_empty() {
        let packages: Vec<&str> = BINARIES
            .iter()
            .filter(|(b, _)| missing.contains(b))
            .map(|(_, p)| *p)
            .collect();
        anyhow::bail!(
            "--monitor prometheus needs {} on PATH, not found; install with:\n    \
             sudo apt-get install {}\nor use --monitor embedded (the default)",
            missing.join(", "),
            packages.join(" ")
        );
    }
    Ok(found.map(|f| f.expect("checked above")))
}

/// Check an alert rule file for a real Prometheus: with `promtool check rules` when promtool is
/// installed, else that it is YAML with a `groups` list.
pub fn check_rules(text: &str) -> anyhow::Result<()> {
    if let Some(promtool) = crate::util::find_on_path("promtool") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("alert_rules.yml");
        std::fs::write(&path, text)?;
        let out = std::process::Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&path)
            .output()
            .with_context(|| format!("running {}", promtool.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "the alert rules are not valid for Prometheus (promtool check rules):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(());
    }
    let doc: serde_json::Value =
        serde_norway::from_str(text).context("the alert rules are not YAML")?;
    anyhow::ensure!(
        doc.get("groups").is_some_and(|g| g.is_array()),
        "the alert rules have no `groups:` list (see deploy/prometheus/alert_rules.yml)"
    );
    Ok(())
}

/// The monitor of `--monitor prometheus`: configured by [`PrometheusMonitor::new`], the trio
/// running after [`Monitor::start`].
pub struct PrometheusMonitor {
    dir: PathBuf,
    rules: String,
    running: Option<Trio>,
}

/// The running trio. Each process dies with us (`PR_SET_PDEATHSIG`) and on drop.
struct Trio {
    prometheus: Daemon,
    pushgateway: Daemon,
    alertmanager: Daemon,
    client: reqwest::Client,
    reader: PrometheusReader,
}

/// One child process and the loopback URL it serves.
struct Daemon {
    name: &'static str,
    child: tokio::process::Child,
    url: String,
}

/// `host:port` of the services in `deploy/` → where they are for this run.
type Targets = BTreeMap<&'static str, String>;

const DEPLOY_PROMETHEUS: &str = include_str!("../../deploy/prometheus/prometheus.yml");
/// Shared with the embedded monitor's dispatcher ([`super::dispatch::Route::deployed`]).
pub const DEPLOY_ALERTMANAGER: &str = include_str!("../../deploy/alertmanager/alertmanager.yml");

/// `deploy/prometheus/prometheus.yml` for local processes: the Swarm service names become the
/// loopback addresses of this run; jobs that find targets through Swarm DNS (`tasks.<service>`)
/// or scrape services that do not run here are dropped (local replicas share one port, so only
/// their pushed gauges, the path the alert rules use, can tell them apart). Intervals, rule file
/// and alerting stay as deployed.
pub fn prometheus_config(deployed: &str, targets: &Targets) -> anyhow::Result<String> {
    let mut doc: serde_json::Value =
        serde_norway::from_str(deployed).context("deploy/prometheus/prometheus.yml")?;
    let map_static = |cfgs: &mut serde_json::Value| -> bool {
        let mut all = true;
        for cfg in cfgs.as_array_mut().into_iter().flatten() {
            for t in cfg["targets"].as_array_mut().into_iter().flatten() {
                match t.as_str().and_then(|s| targets.get(s)) {
                    Some(local) => *t = local.clone().into(),
                    None => all = false,
                }
            }
        }
        all
    };
    for am in doc["alerting"]["alertmanagers"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        anyhow::ensure!(
            map_static(&mut am["static_configs"]),
            "deploy/prometheus/prometheus.yml: an Alertmanager target other than alertmanager:9093"
        );
    }
    if let Some(jobs) = doc["scrape_configs"].as_array_mut() {
        jobs.retain_mut(|job| {
            // Local targets take no token (the Swarm secret's file does not exist here).
            if let Some(j) = job.as_object_mut() {
                j.remove("authorization");
            }
            job.get("dns_sd_configs").is_none()
                && job.get("static_configs").is_some()
                && map_static(&mut job["static_configs"])
        });
    }
    Ok(serde_norway::to_string(&doc)?)
}

/// `deploy/alertmanager/alertmanager.yml` for local processes: every webhook goes to `webhook`
/// without the Swarm secret's token (the in-process scaler listens on loopback without one);
/// with `None` the receivers notify nobody (baseline runs). Routing and timings stay as deployed.
pub fn alertmanager_config(deployed: &str, webhook: Option<&str>) -> anyhow::Result<String> {
    let mut doc: serde_json::Value =
        serde_norway::from_str(deployed).context("deploy/alertmanager/alertmanager.yml")?;
    for r in doc["receivers"].as_array_mut().into_iter().flatten() {
        let Some(r) = r.as_object_mut() else { continue };
        match webhook {
            Some(url) => {
                for w in r
                    .get_mut("webhook_configs")
                    .and_then(|w| w.as_array_mut())
                    .into_iter()
                    .flatten()
                {
                    w["url"] = url.into();
                    if let Some(w) = w.as_object_mut() {
                        w.remove("http_config");
                    }
                }
            }
            None => {
                r.remove("webhook_configs");
            }
        }
    }
    Ok(serde_norway::to_string(&doc)?)
}

impl Daemon {
    /// Start `bin` with `args(port)` on a free loopback port and wait for `ready_path`; a
    /// process that exits before it is ready (a port taken meanwhile) is retried on another.
    async fn start(
        name: &'static str,
        bin: &Path,
        args: impl Fn(u16) -> anyhow::Result<Vec<String>>,
        ready_path: &str,
        log: &Path,
        client: &reqwest::Client,
    ) -> anyhow::Result<Daemon> {
        for _attempt in 0..3 {
            let port = crate::util::free_loopback_port()?;
            let url = format!("http://127.0.0.1:{port}");
            let log_file = std::fs::File::create(log)
                .with_context(|| format!("creating {}", log.display()))?;
            let mut cmd = tokio::process::Command::new(bin);
            cmd.args(args(port)?)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file);
            crate::child::die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut d = Daemon { name, child, url };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if d.child.try_wait()?.is_some() {
                    break; // exited: try another port
                }
                if let Ok(r) = client.get(format!("{}{ready_path}", d.url)).send().await
                    && r.status().is_success()
                {
                    return Ok(d);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            d.stop().await;
        }
        anyhow::bail!(
            "{name} did not become ready on 127.0.0.1; its log: {}\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    async fn stop(&mut self) {
        if !crate::child::terminate(&mut self.child, Duration::from_secs(5)).await {
            tracing::warn!("{} ignored SIGTERM for 5 s: killed it", self.name);
        }
    }
}

impl PrometheusMonitor {
    /// The trio for one run: configs, logs and data in `dir`, evaluating `rules`.
    pub fn new(dir: &Path, rules: &str) -> PrometheusMonitor {
        PrometheusMonitor {
            dir: dir.to_path_buf(),
            rules: rules.to_string(),
            running: None,
        }
    }
}

impl Trio {
    /// Start Pushgateway, Alertmanager (notifying nobody until [`Trio::set_webhook`]) and
    /// Prometheus evaluating `rules`, with configs, logs and data in `dir`.
    async fn start(dir: &Path, rules: &str) -> anyhow::Result<Trio> {
        let [prometheus, pushgateway, alertmanager] = check_binaries()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let path = |f: &str| dir.join(f).display().to_string();
        let mut started = Vec::new();
        let result = async {
            started.push(
                Daemon::start(
                    "pushgateway",
                    &pushgateway,
                    // Debian's build persists every instance's groups to one shared file
                    // (/var/lib/prometheus/pushgateway.data) and loads it at start: a run
                    // would begin with another's groups. Memory only.
                    |port| {
                        Ok(vec![
                            format!("--web.listen-address=127.0.0.1:{port}"),
                            "--persistence.file=".to_owned(),
                        ])
                    },
                    "/-/ready",
                    &dir.join("pushgateway.log"),
                    &client,
                )
                .await?,
            );
            write(
                dir,
                "alertmanager.yml",
                &alertmanager_config(DEPLOY_ALERTMANAGER, None)?,
            )?;
            started.push(
                Daemon::start(
                    "alertmanager",
                    &alertmanager,
                    |port| {
                        Ok(vec![
                            format!("--config.file={}", path("alertmanager.yml")),
                            format!("--storage.path={}", path("alertmanager-data")),
                            format!("--web.listen-address=127.0.0.1:{port}"),
                            // No high-availability cluster: it would bind 0.0.0.0:9094.
                            "--cluster.listen-address=".into(),
                        ])
                    },
                    "/-/ready",
                    &dir.join("alertmanager.log"),
                    &client,
                )
                .await?,
            );
            write(dir, "alert_rules.yml", rules)?;
            let mut targets = Targets::new();
            targets.insert("pushgateway:9091", host_port(&started[0].url));
            targets.insert("alertmanager:9093", host_port(&started[1].url));
            started.push(
                Daemon::start(
                    "prometheus",
                    &prometheus,
                    |port| {
                        // Its self-scrape target is its own port, known only now.
                        let mut targets = targets.clone();
                        targets.insert("localhost:9090", format!("127.0.0.1:{port}"));
                        write(
                            dir,
                            "prometheus.yml",
                            &prometheus_config(DEPLOY_PROMETHEUS, &targets)?,
                        )?;
                        Ok(vec![
                            format!("--config.file={}", path("prometheus.yml")),
                            format!("--storage.tsdb.path={}", path("prometheus-data")),
                            format!("--web.listen-address=127.0.0.1:{port}"),
                        ])
                    },
                    "/-/ready",
                    &dir.join("prometheus.log"),
                    &client,
                )
                .await?,
            );
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            for d in &mut started {
                d.stop().await;
            }
            return Err(e);
        }
        let mut started = started.into_iter();
        let (Some(pushgateway), Some(alertmanager), Some(prometheus)) =
            (started.next(), started.next(), started.next())
        else {
            unreachable!("three daemons started above");
        };
        let reader = PrometheusReader::new(prometheus.url.clone(), alertmanager.url.clone())?;
        Ok(Trio {
            prometheus,
            pushgateway,
            alertmanager,
            client,
            reader,
        })
    }

    /// Point Alertmanager's receivers at `url` (`None`: nobody) and reload it.
    async fn set_webhook(&self, dir: &Path, url: Option<&str>) -> anyhow::Result<()> {
        write(
            dir,
            "alertmanager.yml",
            &alertmanager_config(DEPLOY_ALERTMANAGER, url)?,
        )?;
        let r = self
            .client
            .post(format!("{}/-/reload", self.alertmanager.url))
            .send()
            .await
            .context("reloading Alertmanager")?;
        anyhow::ensure!(
            r.status().is_success(),
            "reloading Alertmanager: HTTP {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Stop all three processes.
    async fn stop(&mut self) {
        for d in [
            &mut self.prometheus,
            &mut self.alertmanager,
            &mut self.pushgateway,
        ] {
            d.stop().await;
        }
    }
}

impl Monitor for PrometheusMonitor {
    fn describe(&self) -> String {
        "Prometheus, Pushgateway and Alertmanager as local processes (ALERTS, 1 s resolution)"
            .into()
    }

    fn start(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            if self.running.is_none() {
                self.running = Some(Trio::start(&self.dir, &self.rules).await?);
            }
            Ok(())
        })
    }

    fn pushgateway_url(&self) -> Option<String> {
        self.running.as_ref().map(|t| t.pushgateway.url.clone())
    }

    fn set_webhook<'a>(&'a mut self, url: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let trio = self.running.as_ref().context("Prometheus is not running")?;
            trio.set_webhook(&self.dir, Some(url)).await
        })
    }

    /// What Prometheus recorded over the load, read once its last scrape and rule evaluation
    /// are in.
    fn collect<'a>(
        &'a mut self,
        specs: &'a [MetricSpec],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<Recording>> {
        Box::pin(async move {
            let trio = self.running.as_ref().context("Prometheus is not running")?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (t0, t1) = (unix_s(start).round(), unix_s(end).round());
            trio.reader.read(specs, t0, t1).await
        })
    }

    /// Stop the trio and delete its data (configs and logs stay).
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(mut trio) = self.running.take() {
                trio.stop().await;
            }
            for data in ["prometheus-data", "alertmanager-data"] {
                let _ = std::fs::remove_dir_all(self.dir.join(data));
            }
        })
    }
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    Ok(crate::util::write_atomic(&dir.join(file), text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_config_points_at_this_runs_processes() {
        let mut targets = Targets::new();
        targets.insert("pushgateway:9091", "127.0.0.1:1001".into());
        targets.insert("alertmanager:9093", "127.0.0.1:1002".into());
        targets.insert("localhost:9090", "127.0.0.1:1003".into());
        let text = prometheus_config(DEPLOY_PROMETHEUS, &targets).unwrap();
        let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let deployed: serde_json::Value = serde_norway::from_str(DEPLOY_PROMETHEUS).unwrap();
        // Intervals and the rule file as deployed.
        assert_eq!(doc["global"], deployed["global"]);
        assert_eq!(doc["rule_files"], deployed["rule_files"]);
        assert_eq!(
            doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
            "127.0.0.1:1002"
        );
        let jobs: Vec<(&str, &str)> = doc["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["job_name"].as_str().unwrap(),
                    j["static_configs"][0]["targets"][0].as_str().unwrap(),
                )
            })
            .collect();
        // Swarm DNS jobs and the scaler (in-process, not scraped) are gone.
        assert_eq!(
            jobs,
            [
                ("pushgateway", "127.0.0.1:1001"),
                ("prometheus", "127.0.0.1:1003")
            ]
        );
        let pushgateway = &doc["scrape_configs"][0];
        assert_eq!(pushgateway["honor_labels"], true);
        assert_eq!(pushgateway["scrape_interval"], "1s");
    }

    #[test]
    fn alertmanager_config_notifies_the_scaler_or_nobody() {
        let url = "http://127.0.0.1:4242/alert";
        let doc: serde_json::Value =
            serde_norway::from_str(&alertmanager_config(DEPLOY_ALERTMANAGER, Some(url)).unwrap())
                .unwrap();
        // The route stays as deployed: only `scaling="out"` reaches the webhook.
        assert_eq!(doc["route"]["receiver"], "null");
        assert_eq!(doc["route"]["routes"][0]["matchers"][0], "scaling=\"out\"");
        assert_eq!(doc["receivers"][1]["name"], "alertapi");
        let hook = &doc["receivers"][1]["webhook_configs"][0];
        assert_eq!(hook["url"], url);
        assert_eq!(hook["send_resolved"], true);
        assert!(hook.get("http_config").is_none(), "no Swarm secret here");
        assert_eq!(doc["route"]["group_wait"], "1s");
        let quiet: serde_json::Value =
            serde_norway::from_str(&alertmanager_config(DEPLOY_ALERTMANAGER, None).unwrap())
                .unwrap();
        assert!(quiet["receivers"][1].get("webhook_configs").is_none());
        assert_eq!(quiet["route"]["receiver"], quiet["receivers"][0]["name"]);
    }
}
