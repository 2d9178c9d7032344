//! A real Prometheus (Debian `prometheus`) with the remote-write receiver, on a free loopback
//! port, in a temporary folder; killed when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Proc, free_port};

/// The Prometheus binary (`STARVATION_PROMETHEUS` or /usr/bin/prometheus), or the test fails
/// saying how to install it.
pub fn prometheus_binary() -> PathBuf {
    let bin = std::env::var_os("STARVATION_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        bin.exists(),
        "{} not found: apt-get install prometheus (or set STARVATION_PROMETHEUS)",
        bin.display()
    );
    bin
}

pub struct Prometheus {
    pub base: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// Starts Prometheus with the remote-write receiver and, if `native`, native histograms.
pub async fn start_prometheus(native: bool) -> Prometheus {
    let bin = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
    let log = dir.path().join("prometheus.log");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if native {
        cmd.arg("--enable-feature=native-histograms");
    }
    let proc = Proc::new(cmd.spawn().unwrap(), "prometheus");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/-/ready")).send().await
            && r.status().is_success()
        {
            return Prometheus {
                base,
                _proc: proc,
                _dir: dir,
                log,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "prometheus not ready: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

impl Prometheus {
    /// `GET path` with `query`; the `data` of a successful answer.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        api_at(&self.base, path, query).await
    }

    /// Instant query; the single result's value.
    pub async fn scalar(&self, query: &str) -> f64 {
        let data = self.api("/api/v1/query", &[("query", query)]).await;
        let result = data["result"].as_array().unwrap();
        assert_eq!(
            result.len(),
            1,
            "{query}: {data}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        result[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

/// The address of the Prometheus a `PrometheusMonitor` started in `dir`, from the config it
/// generated there (its self-scrape job).
/// `GET path` with `query` on the Prometheus at `base`; the `data` of a successful answer.
pub async fn api_at(base: &str, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let v: serde_json::Value = client
        .get(format!("{base}{path}"))
        .query(query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{path} {query:?}: {v}");
    v["data"].clone()
}

pub fn monitor_prometheus_url(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let job = doc["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "prometheus")
        .expect("the prometheus job");
    format!(
        "http://{}",
        job["static_configs"][0]["targets"][0].as_str().unwrap()
    )
}
