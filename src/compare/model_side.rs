//! The model side: `starvation serve` started in this process on a free loopback port with a
//! throw-away data folder, its pool's snapshot read every second.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::sample::PoolReading;
use super::side::{Probe, Side, SideRun, Totals, observe, points};
use super::{CompareError, CompareSpec};
use crate::workload::{App, Server};

/// `starvation serve` flags `compare` sets itself; `--model-arg` may not give them.
pub const RESERVED: [(&str, &str); 7] = [
    ("--listen", "the model listens on a free loopback port"),
    ("--data-dir", "the model stores into a temporary folder"),
    (
        "--block-ms",
        "pass --block-ms to compare: both sides block alike",
    ),
    (
        "--store",
        "the model stores into SQLite in a temporary folder",
    ),
    (
        "--mongodb-uri",
        "the model stores into SQLite in a temporary folder",
    ),
    ("--pushgateway", "compare reads the pool in process"),
    ("--reuse-port", "the model listens on a port of its own"),
];

fn gives(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// The `serve` arguments of the model: compare's, then `--model-arg`s. `--min-threads` is
/// `--processors` unless a `--model-arg` sets it.
pub fn serve_args(spec: &CompareSpec, data_dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--store".into(),
        "sqlite".into(),
        "--block-ms".into(),
        spec.block_ms.to_string(),
    ];
    if !gives(&spec.model_args, "--min-threads") {
        args.extend(["--min-threads".into(), spec.processors.to_string()]);
    }
    if !gives(&spec.model_args, "--drain-timeout") {
        args.extend(["--drain-timeout".into(), "5s".into()]);
    }
    args.extend(spec.model_args.iter().cloned());
    args
}

/// Refuses `--model-arg`s that compare sets itself or that `serve` would refuse, before
/// anything starts.
pub fn check_args(spec: &CompareSpec) -> Result<(), CompareError> {
    for (flag, why) in RESERVED {
        if gives(&spec.model_args, flag) {
            return Err(CompareError::Usage(format!(
                "--model-arg {flag}: compare sets it ({why}); drop it"
            )));
        }
    }
    crate::workload::parse_replica_args(serve_args(spec, Path::new("unused"))).map_err(|e| {
        // clap's message without its "error:" and "--help" lines.
        let text = e.to_string();
        let why: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
            .map(|l| l.strip_prefix("error: ").unwrap_or(l))
            .collect();
        CompareError::Usage(format!(
            "--model-arg: `starvation serve` refuses {:?}: {}",
            spec.model_args,
            why.join(" ")
        ))
    })?;
    Ok(())
}

struct ModelProbe {
    app: Arc<App>,
    readings: Vec<(f64, PoolReading)>,
}

impl Probe for ModelProbe {
    fn poll(&mut self, elapsed: Duration) -> Result<Option<PoolReading>, CompareError> {
        let s = self.app.pool.snapshot();
        let reading = PoolReading {
            busy: f64::from(s.counts.processing),
            threads: f64::from(s.counts.existing),
            queue: s.queue_length as f64,
            work_items: s.completed_items as f64,
        };
        self.readings.push((elapsed.as_secs_f64(), reading));
        Ok(Some(reading))
    }
}

/// One model run under the scenario's load.
pub(crate) async fn run(
    spec: &CompareSpec,
    cancel: &CancellationToken,
) -> Result<SideRun, CompareError> {
    let dir = tempfile::tempdir().map_err(CompareError::TempDir)?;
    let opts = crate::workload::parse_replica_args(serve_args(spec, dir.path()))
        .map_err(|e| CompareError::Usage(format!("--model-arg: {e}")))?;
    let server = Server::start(opts)
        .await
        .map_err(|e| CompareError::Model(e.into()))?;
    let result = measure(&server, spec, cancel).await;
    if let Err(e) = server.shutdown().await {
        tracing::warn!("stopping the model: {e:#}");
    }
    result
}

async fn measure(
    server: &Server,
    spec: &CompareSpec,
    cancel: &CancellationToken,
) -> Result<SideRun, CompareError> {
    let plan = spec
        .scenario
        .plan(server.local_addr())
        .map_err(CompareError::Plan)?;
    let mut probe = ModelProbe {
        app: server.app().clone(),
        readings: Vec::new(),
    };
    let seen = observe(plan, cancel, &mut probe).await?;
    let pool = super::sample::align(&probe.readings, seen.observed_s.floor() as u32);
    Ok(SideRun {
        side: Side::Model,
        points: points(&pool, &seen.report.series),
        totals: Totals::of(&seen.report.summary),
        load_s: seen.load_s,
    })
}
