//! `--metrics-listen ADDR`: the same series as remote write, served as `/metrics` in the
//! Prometheus text format (the duration histogram as a classic histogram, since the text format
//! cannot carry native histograms).

use std::fmt::Write as _;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};

use super::remote_write::{base_labels, check_name, request_tags, with};
use super::runner::{Live, RunConfig, Snapshot};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(String, String)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort();
    let inner: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if inner.is_empty() {
        return String::new();
    }
    format!("{{{}}}", inner.join(","))
}

/// Renders a snapshot in the text exposition format.
pub fn render(snap: &Snapshot, config: &RunConfig) -> String {
    let base = base_labels(config);
    let mut scenario: Vec<(String, String)> = config.tags.clone();
    scenario.retain(|(k, _)| k != "scenario");
    scenario.push(("scenario".into(), "default".into()));
    let tags = config.tags.clone();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# HELP k6_http_reqs_total HTTP requests that ended.");
    let _ = writeln!(w, "# TYPE k6_http_reqs_total counter");
    for (key, s) in &snap.requests {
        let l = with(&base, &request_tags(*key));
        let _ = writeln!(w, "k6_http_reqs_total{} {}", labels(&l), s.count);
    }
    let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    for (name, kind, help, l, v) in [
        (
            "k6_iterations_total",
            "counter",
            "Iterations that completed.",
            &scenario,
            snap.completed as f64,
        ),
        (
            "k6_dropped_iterations_total",
            "counter",
            "Iterations dropped because no VU was free.",
            &scenario,
            snap.dropped as f64,
        ),
        ("k6_vus", "gauge", "Busy VUs.", &tags, snap.vus as f64),
        (
            "k6_vus_max",
            "gauge",
            "Allocated VUs.",
            &tags,
            snap.vus_max as f64,
        ),
    ] {
        let _ = writeln!(w, "# HELP {name} {help}");
        let _ = writeln!(w, "# TYPE {name} {kind}");
        let _ = writeln!(w, "{name}{} {v}", labels(l));
    }
    // Per request series, as k6 tags each sample: 0 for the expected status, 1 otherwise.
    let _ = writeln!(
        w,
        "# HELP k6_http_req_failed_rate Share of requests that failed."
    );
    let _ = writeln!(w, "# TYPE k6_http_req_failed_rate gauge");
    for key in snap.requests.keys() {
        let l = with(&base, &request_tags(*key));
        let failed = if key.expected_response { 0 } else { 1 };
        let _ = writeln!(w, "k6_http_req_failed_rate{} {failed}", labels(&l));
    }
    let checks = with(&scenario, &[("check", check_name(config))]);
    let _ = writeln!(w, "# HELP k6_checks_rate Share of checks that passed.");
    let _ = writeln!(w, "# TYPE k6_checks_rate gauge");
    let _ = writeln!(
        w,
        "k6_checks_rate{} {}",
        labels(&checks),
        ratio(snap.checks_passed, snap.checks_passed + snap.checks_failed)
    );
    let _ = writeln!(
        w,
        "# HELP k6_http_req_duration_seconds HTTP request duration (send to response body)."
    );
    let _ = writeln!(w, "# TYPE k6_http_req_duration_seconds histogram");
    for (key, s) in &snap.requests {
        let l = with(&base, &request_tags(*key));
        for (le, count) in s.duration.classic_cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            let mut lb = l.clone();
            lb.push(("le".into(), le));
            let _ = writeln!(
                w,
                "k6_http_req_duration_seconds_bucket{} {count}",
                labels(&lb)
            );
        }
        let _ = writeln!(
            w,
            "k6_http_req_duration_seconds_sum{} {}",
            labels(&l),
            s.duration.sum
        );
        let _ = writeln!(
            w,
            "k6_http_req_duration_seconds_count{} {}",
            labels(&l),
            s.duration.count
        );
    }
    out
}

/// `GET /metrics` for a live run.
pub fn router(live: Live) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(live)
}

async fn metrics(State(live): State<Live>) -> impl IntoResponse {
    let body = render(&live.snapshot(), live.config());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
