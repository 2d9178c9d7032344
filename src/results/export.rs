//! `starvation export`: run the query list against Prometheus' `query_range` API and write, per
//! metric, the raw response as `<Readable_Name>_export.json` and a combined CSV
//! `<Readable_Name>_export.csv` (`timestamp,offset_s,value`).

use super::ResultsError;
use super::fsutil::{ensure_dir, py_float};
use super::metrics::{self, Kind, MetricSpec, combine_series};
use super::promjson::{QueryRangeResponse, parse_response};
use super::runmeta::{Role, RunMeta, ScaleEvent};
use crate::util::write_atomic;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Export Prometheus metrics of one run to JSON + CSV.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = export_after_help())]
pub struct ExportOpts {
    /// Prometheus base URL.
    #[arg(
        long,
        env = "STARVATION_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub prometheus: String,
    /// Range start: RFC 3339 (2026-11-22T14:00:00Z) or Unix seconds. Needs --end.
    #[arg(long, value_parser = parse_time, requires = "end", conflicts_with = "last")]
    pub start: Option<DateTime<Utc>>,
    /// Range end: RFC 3339 or Unix seconds. Needs --start.
    #[arg(long, value_parser = parse_time, requires = "start")]
    pub end: Option<DateTime<Utc>>,
    /// Export the last DURATION up to now instead of --start/--end (e.g. 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub last: Option<Duration>,
    /// Query resolution step.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// k6 test id the request metrics are filtered by (regex, as in the paper).
    #[arg(long, default_value = "threadloadtest")]
    pub testid: String,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Per-query HTTP timeout.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Also write run.json (see docs/results.md) marking this run as ROLE of pair --pair, with the
    /// range as start/end and the scale events found in the export.
    #[arg(long, value_enum, requires = "pair")]
    pub role: Option<RoleArg>,
    /// Pair index (≥ 1) for run.json; needs --role.
    #[arg(long, requires = "role", value_parser = clap::value_parser!(u32).range(1..))]
    pub pair: Option<u32>,
}

/// `--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Baseline,
    Scaled,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Baseline => Role::Baseline,
            RoleArg::Scaled => Role::Scaled,
        }
    }
}

fn export_after_help() -> String {
    format!(
        "Files: <Readable_Name>_export.json (raw query_range response, every series kept) and \
         <Readable_Name>_export.csv (timestamp,offset_s,value; offset from --start). \
         \"Scale event\" is written only when it holds samples.\n\n{}",
        metrics::combine_help()
    )
}

/// Accept RFC 3339 or (fractional) Unix seconds.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        let ms = (secs * 1000.0).round() as i64;
        if let Some(t) = DateTime::from_timestamp_millis(ms) {
            return Ok(t);
        }
    }
    Err(format!(
        "{s:?} is neither RFC 3339 (2026-11-22T14:00:00Z) nor Unix seconds"
    ))
}

/// What to export: the range, step and where to.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub prometheus: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step: Duration,
    pub testid: String,
    pub out: PathBuf,
    pub timeout: Duration,
}

/// The outcome of an export: files written, metrics skipped (empty scale event), failures.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    pub written: Vec<PathBuf>,
    pub skipped: Vec<String>,
    pub failures: Vec<(String, String)>,
}

impl ExportReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Run one `query_range` and return the raw body and its parse.
pub async fn query_range(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    start: f64,
    end: f64,
    step: Duration,
) -> Result<(Vec<u8>, QueryRangeResponse), String> {
    let url = format!("{}/api/v1/query_range", base.trim_end_matches('/'));
    let (shown_base, shown_url) = (
        crate::util::redact::url(base),
        crate::util::redact::url(&url),
    );
    let step_s = step.as_secs_f64();
    let resp = client
        .get(&url)
        .query(&[
            ("query", query.to_string()),
            ("start", format!("{start}")),
            ("end", format!("{end}")),
            ("step", format!("{step_s}")),
        ])
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot reach Prometheus at {shown_base} ({}); is it running? check --prometheus",
                error_chain(&e.without_url())
            )
        })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the response from {shown_url}: {e}"))?
        .to_vec();
    let parsed = parse_response(&body);
    match parsed {
        Ok(r) if status.is_success() => Ok((body, r)),
        Ok(_) => Err(format!("HTTP {status}")),
        Err(e) => Err(format!(
            "HTTP {status}: {e}; body: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
    }
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The CSV of one metric: its series combined per the metric's rule.
pub fn export_csv(spec: &MetricSpec, resp: &QueryRangeResponse, start: f64) -> String {
    let series = resp.series().unwrap_or(&[]);
    let mut s = String::from("timestamp,offset_s,value\n");
    for (ts, v) in combine_series(series, spec.combine).points {
        s.push_str(&format!(
            "{},{},{}\n",
            format_ts(ts),
            py_float(ts - start),
            py_float(v)
        ));
    }
    s
}

fn format_ts(ts: f64) -> String {
    if ts.fract() == 0.0 {
        format!("{}", ts as i64)
    } else {
        format!("{ts}")
    }
}

/// Export every metric of [`metrics::METRICS`] for `req`. Every metric is tried; failures are
/// collected in the report rather than returned early.
pub async fn export_range(req: &ExportRequest) -> Result<ExportReport, ResultsError> {
    export_specs(req, metrics::METRICS).await
}

/// [`export_range`] for a chosen list of metrics.
pub async fn export_specs(
    req: &ExportRequest,
    specs: &[MetricSpec],
) -> Result<ExportReport, ResultsError> {
    if req.end <= req.start {
        return Err(ResultsError::Usage(format!(
            "--end ({}) must be after --start ({})",
            req.end, req.start
        )));
    }
    if req.step.is_zero() {
        return Err(ResultsError::Usage(
            "--step must be positive (e.g. 5s)".into(),
        ));
    }
    ensure_dir(&req.out, "--out")?;
    let client = reqwest::Client::builder()
        .timeout(req.timeout)
        .build()
        .map_err(|e| ResultsError::Usage(format!("cannot build the HTTP client: {e}")))?;
    let (start, end) = (unix(req.start), unix(req.end));
    let mut report = ExportReport::default();
    for spec in specs {
        let q = spec.promql(&req.testid);
        match query_range(&client, &req.prometheus, &q, start, end, req.step).await {
            Ok((body, resp)) => {
                if spec.kind == Kind::ScaleEvent && resp.is_empty() {
                    report.skipped.push(spec.readable.to_string());
                    continue;
                }
                let json_path = req.out.join(spec.json_file());
                let csv_path = req.out.join(spec.csv_file());
                let res = write_atomic(&json_path, &body).and_then(|_| {
                    write_atomic(&csv_path, export_csv(spec, &resp, start).as_bytes())
                });
                match res {
                    Ok(()) => {
                        report.written.push(json_path);
                        report.written.push(csv_path);
                    }
                    Err(e) => report.failures.push((spec.readable.into(), e.to_string())),
                }
            }
            Err(e) => report
                .failures
                .push((spec.readable.into(), format!("query {q:?}: {e}"))),
        }
    }
    Ok(report)
}

/// Run metadata for an exported run: the range, step and test id, and one scale event per
/// rise of the exported `Scale event` series (the scaler's call counter/flag).
pub fn run_meta_for(req: &ExportRequest, role: Role, pair: u32) -> Result<RunMeta, ResultsError> {
    let mut meta = RunMeta::new(role, pair, req.start);
    meta.end = Some(req.end);
    meta.step_s = Some(req.step.as_secs_f64());
    meta.testid = Some(req.testid.clone());
    let spec = metrics::spec(metrics::SCALE_EVENT);
    let path = req.out.join(spec.json_file());
    if path.exists() {
        let resp = super::promjson::read_export(&path)?;
        let mut prev = 0.0;
        for (ts, v) in combine_series(resp.series().unwrap_or(&[]), spec.combine).points {
            if v > prev
                && let Some(at) = DateTime::from_timestamp_millis((ts * 1000.0).round() as i64)
            {
                meta.scale_events.push(ScaleEvent {
                    at,
                    from: None,
                    to: None,
                });
            }
            prev = v;
        }
    }
    Ok(meta)
}

/// Resolve the time range from the options.
pub fn request_from_opts(
    opts: &ExportOpts,
    now: DateTime<Utc>,
) -> Result<ExportRequest, ResultsError> {
    let (start, end) = match (opts.start, opts.end, opts.last) {
        (Some(s), Some(e), None) => (s, e),
        (None, None, Some(d)) => {
            let d = chrono::Duration::from_std(d)
                .map_err(|_| ResultsError::Usage("--last is too long".into()))?;
            (now - d, now)
        }
        _ => {
            return Err(ResultsError::Usage(
                "give the range with --start and --end, or --last (e.g. --last 5m)".into(),
            ));
        }
    };
    Ok(ExportRequest {
        prometheus: opts.prometheus.clone(),
        start,
        end,
        step: opts.step,
        testid: opts.testid.clone(),
        out: opts.out.clone(),
        timeout: opts.timeout,
    })
}

pub async fn run(opts: ExportOpts) -> anyhow::Result<()> {
    let req = request_from_opts(&opts, Utc::now())?;
    // Dropping the export at Ctrl-C is safe: files are written synchronously between two
    // awaits, so an interrupted export stops during a query, never mid-file.
    let signal = crate::util::shutdown_signal()?;
    let report = tokio::select! {
        r = export_range(&req) => r?,
        _ = signal => return Err(anyhow::Error::new(crate::Interrupted)),
    };
    print_report(&report, &req.out);
    if let (Some(role), Some(pair)) = (opts.role, opts.pair) {
        let meta = run_meta_for(&req, role.into(), pair)?;
        meta.write(&req.out)?;
        println!(
            "  run.json: {} run of pair {pair}, {} scale event(s)",
            meta.role.as_str(),
            meta.scale_events.len()
        );
    }
    if !report.ok() {
        anyhow::bail!(
            "{} of {} metrics failed to export: {}",
            report.failures.len(),
            metrics::METRICS.len(),
            report
                .failures
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn print_report(report: &ExportReport, out: &Path) {
    println!(
        "exported {} files to {}",
        report.written.len(),
        out.display()
    );
    for s in &report.skipped {
        println!("  {s}: no samples, not written");
    }
    for (m, e) in &report.failures {
        eprintln!("  FAILED {m}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: ExportOpts,
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("1711383348").unwrap().timestamp(), 1711383348);
        assert_eq!(
            parse_time("2024-03-25T16:15:48Z").unwrap().timestamp(),
            1711383348
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn range_from_last_or_start_end() {
        let now = parse_time("1000").unwrap();
        let t = T::try_parse_from(["x", "--out", "o", "--last", "5m"]).unwrap();
        let r = request_from_opts(&t.o, now).unwrap();
        assert_eq!(r.start.timestamp(), 700);
        assert_eq!(r.step, Duration::from_secs(5));
        let t = T::try_parse_from(["x", "--out", "o"]).unwrap();
        assert!(
            request_from_opts(&t.o, now)
                .unwrap_err()
                .to_string()
                .contains("--last")
        );
        assert!(T::try_parse_from(["x", "--out", "o", "--start", "1"]).is_err());
    }

    #[test]
    fn csv_combines_replicas() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"instance":"a"},"values":[[100,"1"],[105,"2"]]},
          {"metric":{"instance":"b"},"values":[[100,"3"],[105,"4"]]}]}}"#;
        let r = parse_response(body).unwrap();
        let csv = export_csv(metrics::spec(metrics::QUEUE_LENGTH), &r, 95.0);
        assert_eq!(csv, "timestamp,offset_s,value\n100,5.0,4.0\n105,10.0,6.0\n");
        let csv = export_csv(metrics::spec(metrics::RUNTIME_CPU), &r, 100.0);
        assert_eq!(csv, "timestamp,offset_s,value\n100,0.0,2.0\n105,5.0,3.0\n");
    }
}
