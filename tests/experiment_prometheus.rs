//! `starvation experiment --monitor prometheus`: the quick pair watched by the real Prometheus,
//! Pushgateway and Alertmanager of the Debian packages, and the refusal when one is missing.
//! Its own test binary, so it never shares the two cores with the embedded quick pair.

mod common;

use common::experiment::{assert_quick_pair, experiment, processes_mentioning};
use common::{external, starvation_bin};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST: &str = "quick_pair_with_real_prometheus";

#[test]
#[ignore = "needs Prometheus, Pushgateway, Alertmanager: apt-get install prometheus prometheus-pushgateway prometheus-alertmanager (.ci/run does)"]
fn quick_pair_with_real_prometheus() {
    for (bin, package) in starvation::monitor::prometheus::BINARIES {
        external(bin, package, TEST);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let out_s = out.to_str().unwrap();
    let started = Instant::now();
    let mut p = experiment(&[
        "--profile",
        "quick",
        "--monitor",
        "prometheus",
        "--out",
        out_s,
    ]);
    let status = p
        .wait_for(Duration::from_secs(360))
        .expect("a quick pair finishes within 6 minutes");
    assert!(status.success(), "experiment failed: {status}");
    eprintln!("quick pair with Prometheus took {:?}", started.elapsed());
    // Prometheus, Pushgateway and Alertmanager had their configs in the run folders.
    let left = processes_mentioning(out_s);
    assert!(left.is_empty(), "left running: {left:?}");

    assert_quick_pair(&out, tmp.path());

    for role in ["baseline", "scaled"] {
        let run = out.join(format!("runs/pair_1/{role}"));
        // The configs generated from deploy/: the run's own ports, the rule file beside them.
        let prom = std::fs::read_to_string(run.join("monitor/prometheus.yml")).unwrap();
        assert!(prom.contains("alert_rules.yml"), "{prom}");
        assert!(!prom.contains("pushgateway:9091"), "{prom}");
        assert!(!prom.contains("tasks.webserver"), "{prom}");
        assert_eq!(
            std::fs::read_to_string(run.join("monitor/alert_rules.yml")).unwrap(),
            starvation::monitor::rules::DEFAULT_RULES
        );
        let am = std::fs::read_to_string(run.join("monitor/alertmanager.yml")).unwrap();
        assert_eq!(
            am.contains("/alert"),
            role == "scaled",
            "only the scaled run notifies the scaler:\n{am}"
        );
        // TSDB and Alertmanager state are deleted; the logs stay.
        assert!(!run.join("monitor/prometheus-data").exists());
        assert!(run.join("monitor/prometheus.log").exists());

        // The gauges came through Prometheus: labelled by the Pushgateway job and instance.
        let queue = starvation::results::promjson::read_export(
            &run.join("System_Runtime_ThreadPool_Queue_Length_export.json"),
        )
        .unwrap();
        let series = queue.series().unwrap();
        assert!(
            series
                .iter()
                .all(|s| s.metric.get("job").map(String::as_str) == Some("webserver")),
            "{:?}",
            series.iter().map(|s| &s.metric).collect::<Vec<_>>()
        );
        let peak = series
            .iter()
            .flat_map(|s| s.values.iter().map(|v| v.value))
            .fold(0.0, f64::max);
        assert!(peak > 20.0, "{role}: queue peak {peak}");

        // Prometheus fired the alerts in both runs (from its ALERTS series).
        let alerts: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("alerts.json")).unwrap()).unwrap();
        let fired: Vec<&str> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["status"] == "firing")
            .filter_map(|a| a["alert"].as_str())
            .collect();
        assert!(
            fired.contains(&"ThreadPoolSpike") || fired.contains(&"ThreadPoolStarvation"),
            "{role}: {alerts}"
        );
        assert_eq!(alerts["webhook_failures"], 0, "{role}: {alerts}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["monitor"], "prometheus");
}

#[test]
fn a_missing_binary_stops_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let o = Command::new(starvation_bin())
        .args([
            "experiment",
            "--profile",
            "quick",
            "--monitor",
            "prometheus",
        ])
        .arg("--out")
        .arg(&out)
        .env("PATH", tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("apt-get install prometheus prometheus-pushgateway prometheus-alertmanager"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written before the check");
}
