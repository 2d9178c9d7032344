//! Prometheus remote write (protocol 1.0: protobuf `WriteRequest`, snappy block compression)
//! with k6's series names, so dashboards and queries made for k6's `experimental-prometheus-rw`
//! output work unchanged.
//!
//! Counters and gauges go in one request; the native histogram `k6_http_req_duration_seconds`
//! goes in its own request, because a receiver without native histograms rejects a whole request
//! that holds one. When the receiver takes the plain request but rejects the histogram one, the writer falls back to
//! a classic histogram (`_bucket{le}`, `_sum`, `_count`) for the rest of the run.

use std::time::{Duration, UNIX_EPOCH};

use super::runner::{RequestKey, RunConfig, Snapshot};

/// Protobuf messages of `prompb` (only the fields we send).
pub mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// Integer-count native histogram. `count_int`/`zero_count_int` are members of `oneof`s in
    /// the original schema; a single-member oneof has the same wire form as a plain field.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub count_int: u64,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "6")]
        pub zero_count_int: u64,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        /// 0 unknown, 1 yes, 2 no, 3 gauge.
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("remote write to {url}: {source}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("remote write to {url} rejected: HTTP {status}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot build the remote-write client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Builds the label set of every request series: k6's request tags (`proto` as k6 1.1 sets it
/// for an HTTP/1.1 answer) plus the user's tags.
pub(crate) fn base_labels(config: &RunConfig) -> Vec<(String, String)> {
    let url = config.url.to_string();
    let mut labels = vec![
        ("method".to_string(), "GET".to_string()),
        ("url".to_string(), url.clone()),
        ("name".to_string(), url),
        ("proto".to_string(), "HTTP/1.1".to_string()),
        ("scenario".to_string(), "default".to_string()),
    ];
    for (k, v) in &config.tags {
        labels.retain(|(name, _)| name != k);
        labels.push((k.clone(), v.clone()));
    }
    labels
}

/// The per-request tags of one request series.
pub(crate) fn request_tags(key: RequestKey) -> [(&'static str, String); 2] {
    [
        ("status", key.status.to_string()),
        ("expected_response", key.expected_response.to_string()),
    ]
}

/// The check's name, as `scenarios/paper-spike.k6.js` names it.
pub(crate) fn check_name(config: &RunConfig) -> String {
    format!("status is {}", config.expect_status)
}

fn series_labels(name: &str, labels: &[(String, String)]) -> Vec<prompb::Label> {
    let mut out: Vec<prompb::Label> = labels
        .iter()
        .map(|(k, v)| prompb::Label {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    out.push(prompb::Label {
        name: "__name__".into(),
        value: name.into(),
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub(crate) fn with(labels: &[(String, String)], extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut out = labels.to_vec();
    for (k, v) in extra {
        out.retain(|(name, _)| name != k);
        out.push((k.to_string(), v.clone()));
    }
    out
}

fn sample(name: &str, labels: &[(String, String)], value: f64, ts: i64) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: series_labels(name, labels),
        samples: vec![prompb::Sample {
            value,
            timestamp: ts,
        }],
        histograms: vec![],
    }
}

/// Counters and gauges (everything but the duration histogram).
pub fn scalar_request(snap: &Snapshot, config: &RunConfig, ts_ms: i64) -> prompb::WriteRequest {
    let base = base_labels(config);
    // Scenario-level series carry the scenario and user tags only.
    let scenario: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "method" | "url" | "name" | "proto"))
        .cloned()
        .collect();
    let mut ts = Vec::new();
    for (key, series) in &snap.requests {
        let labels = with(&base, &request_tags(*key));
        ts.push(sample(
            "k6_http_reqs_total",
            &labels,
            series.count as f64,
            ts_ms,
        ));
    }
    let ratio = |num: u64, den: u64| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    ts.push(sample(
        "k6_iterations_total",
        &scenario,
        snap.completed as f64,
        ts_ms,
    ));
    ts.push(sample(
        "k6_dropped_iterations_total",
        &scenario,
        snap.dropped as f64,
        ts_ms,
    ));
    let plain: Vec<(String, String)> = config.tags.clone();
    ts.push(sample("k6_vus", &plain, snap.vus as f64, ts_ms));
    ts.push(sample("k6_vus_max", &plain, snap.vus_max as f64, ts_ms));
    // k6 tags each http_req_failed sample like its request, so the rate is per request series:
    // 0 for the expected status, 1 for anything else.
    for key in snap.requests.keys() {
        let labels = with(&base, &request_tags(*key));
        let failed = if key.expected_response { 0.0 } else { 1.0 };
        ts.push(sample("k6_http_req_failed_rate", &labels, failed, ts_ms));
    }
    ts.push(sample(
        "k6_checks_rate",
        &with(&scenario, &[("check", check_name(config))]),
        ratio(snap.checks_passed, snap.checks_passed + snap.checks_failed),
        ts_ms,
    ));
    prompb::WriteRequest { timeseries: ts }
}

/// `k6_http_req_duration_seconds` as native histograms, one series per status.
pub fn native_request(snap: &Snapshot, config: &RunConfig, ts_ms: i64) -> prompb::WriteRequest {
    let base = base_labels(config);
    let timeseries = snap
        .requests
        .iter()
        .map(|(key, series)| {
            let labels = with(&base, &request_tags(*key));
            let h = &series.duration;
            let (spans, deltas) = h.spans_and_deltas();
            prompb::TimeSeries {
                labels: series_labels("k6_http_req_duration_seconds", &labels),
                samples: vec![],
                histograms: vec![prompb::Histogram {
                    count_int: h.count,
                    sum: h.sum,
                    schema: h.schema,
                    zero_threshold: 0.0,
                    zero_count_int: h.zero_count,
                    positive_spans: spans
                        .into_iter()
                        .map(|(offset, length)| prompb::BucketSpan { offset, length })
                        .collect(),
                    positive_deltas: deltas,
                    reset_hint: 0,
                    timestamp: ts_ms,
                }],
            }
        })
        .collect();
    prompb::WriteRequest { timeseries }
}

/// `k6_http_req_duration_seconds` as a classic histogram (the fallback).
pub fn classic_request(snap: &Snapshot, config: &RunConfig, ts_ms: i64) -> prompb::WriteRequest {
    let base = base_labels(config);
    let mut ts = Vec::new();
    for (key, series) in &snap.requests {
        let labels = with(&base, &request_tags(*key));
        let h = &series.duration;
        for (le, count) in h.classic_cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            ts.push(sample(
                "k6_http_req_duration_seconds_bucket",
                &with(&labels, &[("le", le)]),
                count as f64,
                ts_ms,
            ));
        }
        ts.push(sample(
            "k6_http_req_duration_seconds_sum",
            &labels,
            h.sum,
            ts_ms,
        ));
        ts.push(sample(
            "k6_http_req_duration_seconds_count",
            &labels,
            h.count as f64,
            ts_ms,
        ));
    }
    prompb::WriteRequest { timeseries: ts }
}

/// Protobuf-encodes and snappy-compresses a request body.
pub fn encode(req: &prompb::WriteRequest) -> Vec<u8> {
    use prost::Message;
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compression of an in-memory buffer")
}

/// Decodes a body made by [`encode`] (for tests and fake receivers).
pub fn decode(body: &[u8]) -> Result<prompb::WriteRequest, String> {
    use prost::Message;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| e.to_string())?;
    prompb::WriteRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
}

/// Pushes snapshots of a [`Live`] run to a remote-write endpoint.
pub struct RemoteWriter {
    url: url::Url,
    client: reqwest::Client,
    native: bool,
    last_ts: i64,
    /// Requests sent successfully (for tests and the summary log).
    pub sent: u64,
}

impl RemoteWriter {
    /// A writer whose every request gives up after `timeout`.
    pub fn new(url: url::Url, timeout: Duration) -> Result<Self, RemoteWriteError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(RemoteWriteError::Client)?;
        Ok(Self {
            url,
            client,
            native: true,
            last_ts: 0,
            sent: 0,
        })
    }

    /// Whether the histogram still goes out as a native histogram.
    pub fn native(&self) -> bool {
        self.native
    }

    async fn post(&self, req: &prompb::WriteRequest) -> Result<(), RemoteWriteError> {
        let resp = self
            .client
            .post(self.url.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(encode(req))
            .send()
            .await
            .map_err(|source| RemoteWriteError::Send {
                url: crate::util::redact::url(self.url.as_str()),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(RemoteWriteError::Rejected {
            url: crate::util::redact::url(self.url.as_str()),
            status: status.as_u16(),
            body: body.trim().chars().take(300).collect(),
        })
    }

    /// Sends one snapshot: scalars, then the histogram in its own request. Returns the
    /// timestamp (ms since the epoch) the samples carry.
    pub async fn push(
        &mut self,
        snap: &Snapshot,
        config: &RunConfig,
    ) -> Result<i64, RemoteWriteError> {
        let mut ts = snap
            .at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        if ts <= self.last_ts {
            ts = self.last_ts + 1;
        }
        self.last_ts = ts;
        let scalars = self.post(&scalar_request(snap, config, ts)).await;
        if self.native {
            match self.post(&native_request(snap, config, ts)).await {
                // The receiver took the plain samples but not the histogram: it has no native
                // histograms (Prometheus answers 400 or 500 "native histograms are disabled").
                Err(RemoteWriteError::Rejected { status, body, .. }) if scalars.is_ok() => {
                    tracing::warn!(
                        status,
                        body,
                        "remote write: receiver rejects native histograms; sending k6_http_req_duration_seconds as a classic histogram from now on"
                    );
                    self.native = false;
                }
                other => other?,
            }
        }
        if !self.native {
            self.post(&classic_request(snap, config, ts)).await?;
        }
        scalars?;
        self.sent += 1;
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::runner::{RequestKey, RequestSeries};
    use std::collections::BTreeMap;

    fn snapshot() -> (Snapshot, RunConfig) {
        let mut series = RequestSeries::default();
        for v in [0.010, 0.010, 0.020, 1.5] {
            series.count += 1;
            series.duration.observe(v);
        }
        let mut requests = BTreeMap::new();
        requests.insert(
            RequestKey {
                status: 200,
                expected_response: true,
            },
            series,
        );
        let snap = Snapshot {
            elapsed: Duration::from_secs(1),
            at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            scheduled: 5,
            started: 4,
            completed: 4,
            failed: 0,
            dropped: 1,
            interrupted: 0,
            checks_passed: 4,
            checks_failed: 0,
            vus: 0,
            vus_max: 2,
            in_flight: 0,
            errors: Default::default(),
            p99_ms: 1500.0,
            requests,
        };
        let config = RunConfig {
            url: "http://127.0.0.1:5000/test-threadpool".parse().unwrap(),
            pre_allocated_vus: 1,
            max_vus: 2,
            graceful_stop: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            expect_status: 200,
            tags: vec![("testid".into(), "t".into())],
        };
        (snap, config)
    }

    fn labels(ts: &prompb::TimeSeries) -> BTreeMap<String, String> {
        ts.labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    #[test]
    fn scalar_request_has_k6_names_and_labels() {
        let (snap, config) = snapshot();
        let req = decode(&encode(&scalar_request(&snap, &config, 42))).unwrap();
        let by_name: BTreeMap<String, &prompb::TimeSeries> = req
            .timeseries
            .iter()
            .map(|t| (labels(t)["__name__"].clone(), t))
            .collect();
        let reqs = labels(by_name["k6_http_reqs_total"]);
        for (k, v) in [
            ("status", "200"),
            ("expected_response", "true"),
            ("method", "GET"),
            ("url", "http://127.0.0.1:5000/test-threadpool"),
            ("name", "http://127.0.0.1:5000/test-threadpool"),
            ("proto", "HTTP/1.1"),
            ("scenario", "default"),
            ("testid", "t"),
        ] {
            assert_eq!(reqs[k], v, "{k}");
        }
        // k6's http_req_failed rate is per request series, labelled like the requests.
        assert_eq!(labels(by_name["k6_http_req_failed_rate"]), {
            let mut l = reqs.clone();
            l.insert("__name__".into(), "k6_http_req_failed_rate".into());
            l
        });
        assert_eq!(labels(by_name["k6_checks_rate"])["check"], "status is 200");
        assert_eq!(by_name["k6_http_reqs_total"].samples[0].value, 4.0);
        assert_eq!(by_name["k6_http_reqs_total"].samples[0].timestamp, 42);
        assert_eq!(by_name["k6_dropped_iterations_total"].samples[0].value, 1.0);
        assert_eq!(by_name["k6_iterations_total"].samples[0].value, 4.0);
        assert_eq!(by_name["k6_vus_max"].samples[0].value, 2.0);
        assert_eq!(by_name["k6_checks_rate"].samples[0].value, 1.0);
        assert_eq!(by_name["k6_http_req_failed_rate"].samples[0].value, 0.0);
        assert!(by_name.values().all(|t| t.histograms.is_empty()));
    }

    #[test]
    fn native_request_encodes_a_sparse_histogram() {
        let (snap, config) = snapshot();
        let req = decode(&encode(&native_request(&snap, &config, 7))).unwrap();
        assert_eq!(req.timeseries.len(), 1);
        let t = &req.timeseries[0];
        assert!(t.samples.is_empty());
        assert_eq!(labels(t)["__name__"], "k6_http_req_duration_seconds");
        let h = &t.histograms[0];
        assert_eq!(h.count_int, 4);
        assert!((h.sum - 1.54).abs() < 1e-9);
        assert_eq!(h.schema, crate::load::histogram::NATIVE_SCHEMA);
        assert_eq!(h.timestamp, 7);
        // Three occupied buckets (10 ms twice, 20 ms, 1.5 s) in three spans.
        assert_eq!(h.positive_spans.len(), 3);
        assert!(h.positive_spans.iter().all(|s| s.length == 1));
        let counts: Vec<i64> = h
            .positive_deltas
            .iter()
            .scan(0, |acc, d| {
                *acc += d;
                Some(*acc)
            })
            .collect();
        assert_eq!(counts, vec![2, 1, 1]);
    }

    #[test]
    fn classic_request_is_cumulative() {
        let (snap, config) = snapshot();
        let req = classic_request(&snap, &config, 1);
        let bucket = |le: &str| {
            req.timeseries
                .iter()
                .find(|t| {
                    let l = labels(t);
                    l["__name__"] == "k6_http_req_duration_seconds_bucket" && l["le"] == le
                })
                .unwrap()
                .samples[0]
                .value
        };
        assert_eq!(bucket("0.01"), 2.0);
        assert_eq!(bucket("0.025"), 3.0);
        assert_eq!(bucket("1"), 3.0);
        assert_eq!(bucket("2.5"), 4.0);
        assert_eq!(bucket("+Inf"), 4.0);
    }
}
