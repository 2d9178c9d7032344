//! The export query list (ARCHITECTURE.md §3), the paper's readable names and file names, and
//! how each metric's series are combined when several replicas report separately.

use super::promjson::Series;
use std::collections::BTreeMap;

/// How the series of one metric are combined into one value per timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Sum across series: quantities that add up across replicas (threads, queued items,
    /// request counters).
    Sum,
    /// Mean across series: percentages of a replica's or a node's own capacity (CPU).
    Mean,
    /// Maximum across series: the worst replica (latency quantiles, the scale-event flag).
    Max,
}

impl Combine {
    pub fn describe(self) -> &'static str {
        match self {
            Combine::Sum => "sum",
            Combine::Mean => "mean",
            Combine::Max => "max",
        }
    }
}

/// What each metric is in figures and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A gauge sampled over time.
    Gauge,
    /// A cumulative counter (requests): the last value is the run's total.
    Counter,
    /// Scale events (`alert_endpoint_call`).
    ScaleEvent,
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// The paper's readable name ("Busy Worker Threads").
    pub readable: &'static str,
    /// Other file stems that mean the same metric (the paper's means call the node CPU
    /// `Worker_Node_CPU_Metrics_Over_Time`).
    pub aliases: &'static [&'static str],
    /// PromQL; `{testid}` is replaced by the test id.
    pub query: &'static str,
    pub combine: Combine,
    pub kind: Kind,
    /// Axis label in figures.
    pub unit: &'static str,
}

impl MetricSpec {
    /// `Busy_Worker_Threads`.
    pub fn stem(&self) -> String {
        self.readable.replace(' ', "_")
    }
    /// `Busy_Worker_Threads_export.json`.
    pub fn json_file(&self) -> String {
        format!("{}_export.json", self.stem())
    }
    /// `Busy_Worker_Threads_export.csv`.
    pub fn csv_file(&self) -> String {
        format!("{}_export.csv", self.stem())
    }
    /// `Busy_Worker_Threads_export_mean_values.csv` (the paper's mean dataset).
    pub fn mean_file(&self) -> String {
        format!("{}_export_mean_values.csv", self.stem())
    }
    /// `Busy_Worker_Threads_export_stats.csv` (n, mean, median, p5, p95).
    pub fn stats_file(&self) -> String {
        format!("{}_export_stats.csv", self.stem())
    }
    /// Every file stem this metric may appear under.
    pub fn stems(&self) -> Vec<String> {
        let mut v = vec![self.stem()];
        v.extend(self.aliases.iter().map(|a| a.to_string()));
        v
    }
    /// The query with the test id filled in.
    pub fn promql(&self, testid: &str) -> String {
        self.query.replace("{testid}", testid)
    }
}

pub const TOTAL_REQUESTS: &str = "Total Requests";
pub const FAILED_REQUESTS: &str = "Failed Requests";
pub const SUCCESSFUL_REQUESTS: &str = "Successful Requests";
pub const DROPPED_ITERATIONS: &str = "Dropped Iterations";
pub const PROCESS_THREADS: &str = "Process Number of Threads";
pub const RUNTIME_CPU: &str = "System Runtime CPU Usage";
pub const BUSY_WORKER_THREADS: &str = "Busy Worker Threads";
pub const QUEUE_LENGTH: &str = "System Runtime ThreadPool Queue Length";
pub const NODE_CPU: &str = "VM CPU Metrics Over Time";
pub const REQUEST_DURATION_P99: &str = "Request Duration";
pub const AVG_REQUEST_DURATION: &str = "Average HTTP Request Duration";
pub const SCALE_EVENT: &str = "Scale event";

/// The export query list, in the order they are run.
pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        readable: TOTAL_REQUESTS,
        aliases: &[],
        query: "sum by(testid)(k6_http_reqs_total{testid=~'{testid}'})",
        combine: Combine::Sum,
        kind: Kind::Counter,
        unit: "Requests",
    },
    MetricSpec {
        readable: FAILED_REQUESTS,
        aliases: &[],
        query: "sum by(testid)(k6_http_reqs_total{testid=~'{testid}', expected_response='false'})",
        combine: Combine::Sum,
        kind: Kind::Counter,
        unit: "Requests",
    },
    MetricSpec {
        readable: SUCCESSFUL_REQUESTS,
        aliases: &[],
        query: "sum by(testid)(k6_http_reqs_total{testid=~'{testid}', expected_response='true'})",
        combine: Combine::Sum,
        kind: Kind::Counter,
        unit: "Requests",
    },
    MetricSpec {
        readable: DROPPED_ITERATIONS,
        aliases: &[],
        query: "sum by(testid)(k6_dropped_iterations_total{testid=~'{testid}'})",
        combine: Combine::Sum,
        kind: Kind::Counter,
        unit: "Iterations",
    },
    MetricSpec {
        readable: PROCESS_THREADS,
        aliases: &[],
        query: "process_number_of_threads",
        combine: Combine::Sum,
        kind: Kind::Gauge,
        unit: "Threads",
    },
    MetricSpec {
        readable: RUNTIME_CPU,
        aliases: &[],
        query: "system_runtime_cpu_usage",
        combine: Combine::Mean,
        kind: Kind::Gauge,
        unit: "CPU Usage (%)",
    },
    MetricSpec {
        readable: BUSY_WORKER_THREADS,
        aliases: &[],
        query: "busy_worker_threads",
        combine: Combine::Sum,
        kind: Kind::Gauge,
        unit: "Threads",
    },
    MetricSpec {
        readable: QUEUE_LENGTH,
        aliases: &[],
        query: "system_runtime_threadpool_queue_length",
        combine: Combine::Sum,
        kind: Kind::Gauge,
        unit: "Items",
    },
    MetricSpec {
        readable: NODE_CPU,
        aliases: &["Worker_Node_CPU_Metrics_Over_Time"],
        query: "100 * avg by(instance)(rate(node_cpu_seconds_total{mode='user'}[30s]))",
        combine: Combine::Mean,
        kind: Kind::Gauge,
        unit: "CPU Usage (%)",
    },
    MetricSpec {
        readable: REQUEST_DURATION_P99,
        aliases: &[],
        query: "histogram_quantile(0.99, sum by(testid)(rate(k6_http_req_duration_seconds{testid=~'{testid}'}[15s])))",
        combine: Combine::Max,
        kind: Kind::Gauge,
        unit: "Seconds",
    },
    MetricSpec {
        readable: AVG_REQUEST_DURATION,
        aliases: &[],
        query: "histogram_sum(sum by(testid)(rate(k6_http_req_duration_seconds{testid=~'{testid}'}[15s]))) / histogram_count(sum by(testid)(rate(k6_http_req_duration_seconds{testid=~'{testid}'}[15s])))",
        combine: Combine::Mean,
        kind: Kind::Gauge,
        unit: "Seconds",
    },
    MetricSpec {
        readable: SCALE_EVENT,
        aliases: &[],
        query: "alert_endpoint_call",
        combine: Combine::Max,
        kind: Kind::ScaleEvent,
        unit: "Calls",
    },
];

/// Look a metric up by readable name or file stem (aliases included).
pub fn find(name_or_stem: &str) -> Option<&'static MetricSpec> {
    METRICS
        .iter()
        .find(|m| m.readable == name_or_stem || m.stems().iter().any(|s| s == name_or_stem))
}

/// The spec by readable name; panics on a name not in [`METRICS`] (a programming error).
pub fn spec(readable: &str) -> &'static MetricSpec {
    METRICS
        .iter()
        .find(|m| m.readable == readable)
        .unwrap_or_else(|| panic!("unknown metric {readable}"))
}

/// The help text listing every metric and its combination rule.
pub fn combine_help() -> String {
    let mut s = String::from("Per-metric aggregation across series (replicas) in the CSV:\n");
    for m in METRICS {
        s.push_str(&format!("  {:<40} {}\n", m.readable, m.combine.describe()));
    }
    s
}

/// One metric's series combined into one `(timestamp, value)` series, and what the rules of
/// [`combine_series`] left out on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Combined {
    pub points: Vec<(f64, f64)>,
    /// NaN and ±Inf samples skipped (a non-finite sample says nothing a mean can use).
    pub nonfinite: usize,
    /// Series dropped because another series described the same replica (see [`replica_key`]).
    pub duplicate_series: usize,
}

/// Which replica a series describes, when its labels say so: `(job, instance)` of the process
/// that produced it. A Pushgateway series carries the pusher's labels as `exported_job` /
/// `exported_instance` (its own `job`/`instance` are the Pushgateway's); a direct scrape
/// carries them as `job` / `instance`. So the same replica read through both paths gets one
/// key. `None` for series without an instance label (query results such as `sum by(testid)`):
/// each is its own.
pub fn replica_key(labels: &BTreeMap<String, String>) -> Option<(String, String)> {
    let pick = |exported: &str, own: &str| labels.get(exported).or_else(|| labels.get(own));
    let instance = pick("exported_instance", "instance")?;
    let job = pick("exported_job", "job").cloned().unwrap_or_default();
    Some((job, instance.clone()))
}

/// A series read from the Pushgateway (it carries `exported_*` labels or `job="pushgateway"`).
fn from_pushgateway(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key("exported_instance")
        || labels.contains_key("exported_job")
        || labels.get("job").map(String::as_str) == Some("pushgateway")
}

/// Timestamp key in milliseconds (Prometheus evaluates every series at the same steps).
fn ts_key(ts: f64) -> i64 {
    (ts * 1000.0).round() as i64
}

/// Combine all series into one `(timestamp, value)` series by `how`. The rules, in order:
/// 1. Inside one series a timestamp counts once: a repeated timestamp keeps its last sample
///    (a counter's value at a time is its last sample, never a sum of samples).
/// 2. NaN and ±Inf samples are skipped and counted in [`Combined::nonfinite`].
/// 3. Series of the same replica ([`replica_key`]) count once: at each timestamp the
///    Pushgateway's sample wins, the other path's fills the timestamps it lacks.
/// 4. Distinct replicas are combined by `how` at each timestamp.
pub fn combine_series(series: &[Series], how: Combine) -> Combined {
    let mut out = Combined::default();
    // Per replica (or per series without one): timestamp → (ts, value, from the Pushgateway).
    type Slots = BTreeMap<i64, (f64, f64, bool)>;
    let mut replicas: BTreeMap<(String, String), Slots> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let key = replica_key(&s.metric).unwrap_or_else(|| (format!("#{i}"), String::new()));
        let pushed = from_pushgateway(&s.metric);
        let slots = replicas.entry(key).or_default();
        let mut own: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for p in &s.values {
            if !p.value.is_finite() {
                out.nonfinite += 1;
                continue;
            }
            own.insert(ts_key(p.ts), (p.ts, p.value));
        }
        for (k, (ts, v)) in own {
            match slots.get(&k) {
                Some(&(_, _, true)) if !pushed => {}
                _ => {
                    slots.insert(k, (ts, v, pushed));
                }
            }
        }
    }
    // Every series has one key: the series beyond one per key were second paths.
    out.duplicate_series = series.len() - replicas.len();
    let mut by_ts: BTreeMap<i64, (f64, Vec<f64>)> = BTreeMap::new();
    for slots in replicas.into_values() {
        for (k, (ts, v, _)) in slots {
            by_ts.entry(k).or_insert((ts, Vec::new())).1.push(v);
        }
    }
    out.points = by_ts
        .into_values()
        .map(|(ts, vals)| {
            let v = match how {
                Combine::Sum => vals.iter().sum(),
                Combine::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
                Combine::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            };
            (ts, v)
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::promjson::Sample;

    fn series(points: &[(f64, f64)]) -> Series {
        Series {
            metric: Default::default(),
            values: points.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    #[test]
    fn combines_replicas() {
        let a = series(&[(10.0, 1.0), (15.0, 3.0)]);
        let b = series(&[(10.0, 5.0), (20.0, 7.0)]);
        let both = [a, b];
        assert_eq!(
            combine_series(&both, Combine::Sum).points,
            vec![(10.0, 6.0), (15.0, 3.0), (20.0, 7.0)]
        );
        assert_eq!(
            combine_series(&both, Combine::Mean).points,
            vec![(10.0, 3.0), (15.0, 3.0), (20.0, 7.0)]
        );
        assert_eq!(
            combine_series(&both, Combine::Max).points,
            vec![(10.0, 5.0), (15.0, 3.0), (20.0, 7.0)]
        );
    }

    fn labelled(labels: &[(&str, &str)], points: &[(f64, f64)]) -> Series {
        let mut s = series(points);
        s.metric = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    #[test]
    fn a_repeated_timestamp_counts_once_with_its_last_sample() {
        // The experiment's counter exports ended with (60, 435), (60, 435): summed, 870.
        let c = combine_series(
            &[series(&[(55.0, 400.0), (60.0, 430.0), (60.0, 435.0)])],
            Combine::Sum,
        );
        assert_eq!(c.points, vec![(55.0, 400.0), (60.0, 435.0)]);
    }

    #[test]
    fn one_replica_through_the_pushgateway_and_a_direct_scrape_counts_once() {
        let pushed = labelled(
            &[
                ("exported_instance", "webserver:5000"),
                ("exported_job", "webserver"),
                ("instance", "pushgateway:9091"),
                ("job", "pushgateway"),
            ],
            &[(10.0, 5.0), (15.0, 7.0)],
        );
        let scraped = labelled(
            &[("instance", "webserver:5000"), ("job", "webserver")],
            &[(5.0, 1.0), (10.0, 50.0), (15.0, 70.0)],
        );
        let other = labelled(
            &[("instance", "webserver-2:5000"), ("job", "webserver")],
            &[(10.0, 3.0)],
        );
        for order in [
            vec![pushed.clone(), scraped.clone(), other.clone()],
            vec![scraped.clone(), other.clone(), pushed.clone()],
        ] {
            let c = combine_series(&order, Combine::Sum);
            // The Pushgateway wins where it has a sample; the scrape fills t=5; the second
            // replica is still added.
            assert_eq!(c.points, vec![(5.0, 1.0), (10.0, 8.0), (15.0, 7.0)]);
            assert_eq!(c.duplicate_series, 1);
        }
    }

    #[test]
    fn nonfinite_samples_are_skipped_and_counted() {
        let c = combine_series(
            &[
                series(&[(0.0, f64::NAN), (5.0, f64::INFINITY), (10.0, 2.0)]),
                series(&[(5.0, f64::NEG_INFINITY), (10.0, 1.0)]),
            ],
            Combine::Mean,
        );
        assert_eq!(c.points, vec![(10.0, 1.5)]);
        assert_eq!(c.nonfinite, 3);
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(
            spec(QUEUE_LENGTH).json_file(),
            "System_Runtime_ThreadPool_Queue_Length_export.json"
        );
        assert_eq!(
            find("Worker_Node_CPU_Metrics_Over_Time").unwrap().readable,
            NODE_CPU
        );
        assert_eq!(find("VM_CPU_Metrics_Over_Time").unwrap().readable, NODE_CPU);
        assert_eq!(spec(SCALE_EVENT).json_file(), "Scale_event_export.json");
        assert!(spec(TOTAL_REQUESTS).promql("abc").contains("testid=~'abc'"));
    }
}
