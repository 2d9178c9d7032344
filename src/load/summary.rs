//! The end-of-run summary and its text / JSON / CSV writers (all generic over `Write`).

use std::io::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Output format of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// Failed iterations by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub connect_refused: u64,
    pub timeout: u64,
    pub reset: u64,
    /// A response arrived but its status was not `--expect-status`.
    pub unexpected_status: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect_refused + self.timeout + self.reset + self.unexpected_status + self.other
    }

    /// Counts one failed iteration under its class.
    pub fn count(&mut self, outcome: super::Outcome) {
        use super::Outcome::*;
        match outcome {
            Status(_) => self.unexpected_status += 1,
            ConnectRefused => self.connect_refused += 1,
            Timeout => self.timeout += 1,
            Reset => self.reset += 1,
            OtherError => self.other += 1,
        }
    }

    pub fn add(&mut self, other: &ErrorCounts) {
        self.connect_refused += other.connect_refused;
        self.timeout += other.timeout;
        self.reset += other.reset;
        self.unexpected_status += other.unexpected_status;
        self.other += other.other;
    }
}

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    pub(crate) fn from_hist(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// What a run did. Iteration counts: `scheduled = started + dropped`;
/// `started = completed + interrupted`; `failed ⊆ completed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub url: String,
    /// RFC 3339 wall-clock start.
    pub started_at: String,
    pub duration_s: f64,
    /// True when Ctrl-C (or the caller's cancel token) stopped the run early.
    pub stopped_by_user: bool,
    /// Iterations the full schedule starts.
    pub expected_iterations: u64,
    pub scheduled: u64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Started but aborted by graceful stop or Ctrl-C.
    pub interrupted: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// HTTP requests that ended (with a response or an error).
    pub requests: u64,
    /// Started iterations per second while the schedule ran (the drain afterwards excluded).
    pub achieved_rate: f64,
    /// VUs allocated at the end (pre-allocated plus the ones grown).
    pub vus_max: u64,
    /// Most VUs busy at once.
    pub vus_peak_busy: u64,
    pub errors: ErrorCounts,
    /// Send → response body (k6 `http_req_duration`).
    pub service_time: LatencyStats,
    /// Scheduled start → response body (free of coordinated omission).
    pub response_time: LatencyStats,
    /// Scheduled start → actual start.
    pub start_lag: LatencyStats,
}

impl Summary {
    pub fn write<W: Write>(&self, format: Format, w: W) -> std::io::Result<()> {
        match format {
            Format::Text => self.write_text(w),
            Format::Json => self.write_json(w),
            Format::Csv => self.write_csv(w),
        }
    }

    pub fn write_json<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self)?;
        writeln!(w)
    }

    /// `metric,value` rows; latency rows are `service_time.p99_ms` etc.
    pub fn write_csv<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        writeln!(w, "metric,value")?;
        for (k, v) in self.flat() {
            let v = if v.contains(',') || v.contains('"') {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v
            };
            writeln!(w, "{k},{v}")?;
        }
        Ok(())
    }

    /// Flattened `(name, value)` pairs in a stable order.
    pub fn flat(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).expect("summary serialises");
        let mut out = Vec::new();
        flatten("", &value, &mut out);
        out
    }

    pub fn write_text<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        let stop = if self.stopped_by_user {
            "  (stopped early)"
        } else {
            ""
        };
        writeln!(w, "load summary: {}{stop}", self.url)?;
        writeln!(
            w,
            "  duration ........... {:.1} s (started {})",
            self.duration_s, self.started_at
        )?;
        writeln!(
            w,
            "  iterations ......... {} scheduled of {} planned, {} started, {} completed, {} dropped, {} interrupted",
            self.scheduled,
            self.expected_iterations,
            self.started,
            self.completed,
            self.dropped,
            self.interrupted
        )?;
        writeln!(
            w,
            "  achieved rate ...... {:.2} iterations/s",
            self.achieved_rate
        )?;
        writeln!(
            w,
            "  vus ................ {} allocated, {} busy at most",
            self.vus_max, self.vus_peak_busy
        )?;
        let checks = self.checks_passed + self.checks_failed;
        let pct = if checks > 0 {
            100.0 * self.checks_passed as f64 / checks as f64
        } else {
            0.0
        };
        writeln!(
            w,
            "  checks ............. {pct:.2}% ({} passed, {} failed)",
            self.checks_passed, self.checks_failed
        )?;
        let e = &self.errors;
        // Interrupted iterations never got an answer: they are errors to whoever reads this
        // line, not successes (they are not in `failed`, which counts finished iterations).
        writeln!(
            w,
            "  errors ............. {} (interrupted {}, connect refused {}, timeout {}, reset {}, unexpected status {}, other {})",
            e.total() + self.interrupted,
            self.interrupted,
            e.connect_refused,
            e.timeout,
            e.reset,
            e.unexpected_status,
            e.other
        )?;
        for (name, l) in [
            ("service time", &self.service_time),
            ("response time", &self.response_time),
            ("start lag", &self.start_lag),
        ] {
            writeln!(
                w,
                "  {name:<14} ms  min {:.3}  mean {:.3}  p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.min_ms, l.mean_ms, l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.p999_ms, l.max_ms
            )?;
        }
        Ok(())
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        Summary {
            url: "http://127.0.0.1:1/x".into(),
            started_at: "2026-01-01T00:00:00+00:00".into(),
            duration_s: 10.0,
            stopped_by_user: false,
            expected_iterations: 100,
            scheduled: 100,
            started: 90,
            completed: 90,
            failed: 3,
            dropped: 10,
            interrupted: 0,
            checks_passed: 87,
            checks_failed: 3,
            requests: 90,
            achieved_rate: 9.0,
            vus_max: 5,
            vus_peak_busy: 5,
            errors: ErrorCounts {
                timeout: 1,
                unexpected_status: 2,
                ..Default::default()
            },
            service_time: LatencyStats::from_hist(&h),
            response_time: LatencyStats::from_hist(&h),
            start_lag: LatencyStats::default(),
        }
    }

    #[test]
    fn latency_stats_from_hdr() {
        let s = sample();
        assert_eq!(s.service_time.count, 1000);
        assert!((s.service_time.p99_ms - 990.0).abs() < 1.0);
        assert!((s.service_time.max_ms - 1000.0).abs() < 1.0);
        assert_eq!(s.errors.total(), 3);
    }

    #[test]
    fn writes_all_formats() {
        let s = sample();
        let mut json = Vec::new();
        s.write(Format::Json, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["dropped"], 10);
        assert_eq!(v["errors"]["unexpected_status"], 2);

        let mut csv = Vec::new();
        s.write(Format::Csv, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.starts_with("metric,value\n"));
        assert!(csv.contains("\ndropped,10\n"), "{csv}");
        assert!(csv.contains("\nservice_time.p99_ms,"), "{csv}");

        let mut text = Vec::new();
        s.write(Format::Text, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("10 dropped"), "{text}");
        assert!(
            text.contains("errors ............. 3 (interrupted 0,"),
            "{text}"
        );
        let cut = Summary {
            interrupted: 4,
            ..sample()
        };
        let mut text = Vec::new();
        cut.write(Format::Text, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("errors ............. 7 (interrupted 4,"),
            "{text}"
        );
        assert!(text.contains("96.67% (87 passed, 3 failed)"), "{text}");
    }
}
