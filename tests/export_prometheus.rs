//! `export` against a real Prometheus (Debian package): start it on a free loopback port with
//! temporary storage and the remote-write receiver, feed known samples through remote write
//! (protobuf + snappy, encoded here), export, and find those values in the JSON and CSV.

mod common;

use common::{Proc, external, free_port};
use starvation::results::export::{ExportRequest, export_range, export_specs, run_meta_for};
use starvation::results::metrics::{self, Combine, Kind, MetricSpec};
use starvation::results::runmeta::Role;
use std::path::Path;
use std::time::Duration;

const PROMETHEUS: &str = "/usr/bin/prometheus";

// --- a minimal protobuf encoder for prometheus.WriteRequest ---------------------------------

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(((field << 3) | 2) as u64, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// One time series: labels (sorted by name, `__name__` included) and (ms, value) samples.
fn time_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let mut ts = Vec::new();
    for (name, value) in sorted {
        let mut l = Vec::new();
        field_bytes(1, name.as_bytes(), &mut l);
        field_bytes(2, value.as_bytes(), &mut l);
        field_bytes(1, &l, &mut ts);
    }
    for &(ms, v) in samples {
        let mut s = Vec::new();
        varint((1 << 3) | 1, &mut s); // double value = 1
        s.extend_from_slice(&v.to_le_bytes());
        varint(2 << 3, &mut s); // int64 timestamp = 2
        varint(ms as u64, &mut s);
        field_bytes(2, &s, &mut ts);
    }
    ts
}

async fn remote_write(base: &str, series: &[Vec<u8>]) {
    let mut req = Vec::new();
    for s in series {
        field_bytes(1, s, &mut req);
    }
    let body = snap::raw::Encoder::new().compress_vec(&req).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_success(),
        "remote write: {status}: {}",
        resp.text().await.unwrap()
    );
}

async fn start_prometheus(dir: &Path) -> (Proc, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 10s\n").unwrap();
    for _attempt in 0..3 {
        let port = free_port();
        let child = std::process::Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        let mut guard = Proc::new(child, "prometheus");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(Some(_)) = guard.child.try_wait() {
                break; // exited (port taken?): try another port
            }
            if let Ok(r) = client.get(format!("{base}/-/ready")).send().await
                && r.status().is_success()
            {
                return (guard, base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(guard);
    }
    panic!(
        "Prometheus did not become ready; log:\n{}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
}

fn read_csv(path: &Path) -> Vec<(f64, f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,offset_s,value"));
    lines
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: apt-get install prometheus (.ci/run does)"]
async fn export_from_real_prometheus_contains_the_written_values() {
    external(
        "prometheus",
        "prometheus",
        "export_from_real_prometheus_contains_the_written_values",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (_prom, base) = start_prometheus(tmp.path()).await;

    // 13 samples at 5 s steps, ending a little before now, aligned to whole 5 s.
    let now_s = chrono::Utc::now().timestamp();
    let end_s = now_s - now_s % 5 - 10;
    let start_s = end_s - 60;
    let steps: Vec<i64> = (0..=12).map(|i| start_s + 5 * i).collect();
    let at = |f: &dyn Fn(usize) -> f64| -> Vec<(i64, f64)> {
        steps
            .iter()
            .enumerate()
            .map(|(i, &t)| (t * 1000, f(i)))
            .collect()
    };
    let tid = "threadloadtest";
    remote_write(
        &base,
        &[
            time_series(
                &[("__name__", "busy_worker_threads"), ("instance", "r1")],
                &at(&|i| i as f64),
            ),
            time_series(
                &[("__name__", "busy_worker_threads"), ("instance", "r2")],
                &at(&|i| 10.0 * i as f64),
            ),
            time_series(
                &[("__name__", "system_runtime_cpu_usage"), ("instance", "r1")],
                &at(&|_| 20.0),
            ),
            time_series(
                &[("__name__", "system_runtime_cpu_usage"), ("instance", "r2")],
                &at(&|_| 40.0),
            ),
            time_series(
                &[
                    ("__name__", "system_runtime_threadpool_queue_length"),
                    ("instance", "r1"),
                ],
                &at(&|i| (i * i) as f64),
            ),
            time_series(
                &[
                    ("__name__", "k6_http_reqs_total"),
                    ("testid", tid),
                    ("expected_response", "true"),
                    ("status", "200"),
                ],
                &at(&|i| 100.0 + i as f64),
            ),
            time_series(
                &[
                    ("__name__", "k6_http_reqs_total"),
                    ("testid", tid),
                    ("expected_response", "false"),
                    ("status", "0"),
                ],
                &at(&|_| 2.0),
            ),
            // Another test's requests must not be counted.
            time_series(
                &[
                    ("__name__", "k6_http_reqs_total"),
                    ("testid", "other"),
                    ("expected_response", "true"),
                ],
                &at(&|_| 5000.0),
            ),
        ],
    )
    .await;

    let out = tmp.path().join("export");
    let req = ExportRequest {
        prometheus: base.clone(),
        start: chrono::DateTime::from_timestamp(start_s, 0).unwrap(),
        end: chrono::DateTime::from_timestamp(end_s, 0).unwrap(),
        step: Duration::from_secs(5),
        testid: tid.into(),
        out: out.clone(),
        timeout: Duration::from_secs(10),
    };
    let report = export_range(&req).await.unwrap();
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.skipped, vec!["Scale event".to_string()]);
    assert!(!out.join("Scale_event_export.json").exists());

    // JSON: the raw response keeps both replicas with their own values.
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("Busy_Worker_Threads_export.json")).unwrap(),
    )
    .unwrap();
    let result = json["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    for s in result {
        let k = if s["metric"]["instance"] == "r1" {
            1.0
        } else {
            10.0
        };
        let vals = s["values"].as_array().unwrap();
        assert_eq!(vals.len(), 13);
        for (i, v) in vals.iter().enumerate() {
            assert_eq!(v[0].as_i64().unwrap(), steps[i]);
            assert_eq!(v[1].as_str().unwrap().parse::<f64>().unwrap(), k * i as f64);
        }
    }
    // CSV: busy threads summed, CPU averaged, queue as written, requests filtered by testid.
    let csv = read_csv(&out.join("Busy_Worker_Threads_export.csv"));
    assert_eq!(csv.len(), 13);
    for (i, &(t, off, v)) in csv.iter().enumerate() {
        assert_eq!(t, steps[i] as f64);
        assert_eq!(off, 5.0 * i as f64);
        assert_eq!(v, 11.0 * i as f64);
    }
    assert!(
        read_csv(&out.join("System_Runtime_CPU_Usage_export.csv"))
            .iter()
            .all(|r| r.2 == 30.0)
    );
    let q = read_csv(&out.join("System_Runtime_ThreadPool_Queue_Length_export.csv"));
    assert_eq!(
        q.iter().map(|r| r.2).collect::<Vec<_>>(),
        (0..=12).map(|i| (i * i) as f64).collect::<Vec<_>>()
    );
    let total = read_csv(&out.join("Total_Requests_export.csv"));
    assert_eq!(
        total.iter().map(|r| r.2).collect::<Vec<_>>(),
        (0..=12).map(|i| 102.0 + i as f64).collect::<Vec<_>>()
    );
    assert!(
        read_csv(&out.join("Failed_Requests_export.csv"))
            .iter()
            .all(|r| r.2 == 2.0)
    );
    // Metrics with no data are still written (empty result), as the paper's Failed_Requests was.
    let p99: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("Request_Duration_export.json")).unwrap())
            .unwrap();
    assert_eq!(p99["status"], "success");
    assert_eq!(read_csv(&out.join("Request_Duration_export.csv")).len(), 0);

    // Once the scaler has called, the scale event is exported.
    remote_write(
        &base,
        &[time_series(
            &[("__name__", "alert_endpoint_call"), ("job", "alertapi")],
            &[(steps[6] * 1000, 1.0)],
        )],
    )
    .await;
    let report = export_range(&req).await.unwrap();
    assert!(report.ok() && report.skipped.is_empty(), "{report:?}");
    let ev = read_csv(&out.join("Scale_event_export.csv"));
    assert_eq!(ev.first().map(|r| (r.0, r.2)), Some((steps[6] as f64, 1.0)));
    // run.json for this run: one scale event, at the first sample of the flag.
    let meta = run_meta_for(&req, Role::Scaled, 3).unwrap();
    assert_eq!(meta.scale_events.len(), 1);
    assert_eq!(meta.scale_events[0].at.timestamp(), steps[6]);
    assert_eq!((meta.pair, meta.start.timestamp()), (3, start_s));

    // A bad query fails alone; the others are still exported; nothing is written for it.
    let bad = MetricSpec {
        readable: "Broken Query",
        aliases: &[],
        query: "sum(",
        combine: Combine::Sum,
        kind: Kind::Gauge,
        unit: "",
    };
    let specs = [bad, *metrics::spec(metrics::QUEUE_LENGTH)];
    let out2 = tmp.path().join("export2");
    let report = export_specs(
        &ExportRequest {
            out: out2.clone(),
            ..req.clone()
        },
        &specs,
    )
    .await
    .unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, "Broken Query");
    assert!(
        report.failures[0].1.contains("bad_data") || report.failures[0].1.contains("400"),
        "{:?}",
        report.failures
    );
    assert!(!out2.join("Broken_Query_export.json").exists());
    assert!(
        out2.join("System_Runtime_ThreadPool_Queue_Length_export.csv")
            .exists()
    );
}

#[tokio::test]
async fn unreachable_prometheus_fails_every_metric_after_trying_all() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens here
    let req = ExportRequest {
        prometheus: format!("http://127.0.0.1:{port}"),
        start: chrono::DateTime::from_timestamp(1_000_000, 0).unwrap(),
        end: chrono::DateTime::from_timestamp(1_000_300, 0).unwrap(),
        step: Duration::from_secs(5),
        testid: "threadloadtest".into(),
        out: tmp.path().join("out"),
        timeout: Duration::from_secs(2),
    };
    let report = export_range(&req).await.unwrap();
    assert_eq!(report.failures.len(), metrics::METRICS.len());
    assert!(
        report.failures[0].1.contains("cannot reach Prometheus"),
        "{:?}",
        report.failures[0]
    );
    assert!(report.written.is_empty());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("out")).unwrap().count(),
        0
    );
}
