//! The .NET side: the paper's service on the real runtime as a child process, its pool read from
//! the sample file its dedicated sampler thread writes (not through a starved `/metrics`).
//! The child is terminated and reaped on every path: after the run, after an error, after
//! Ctrl-C; it also dies with us (`PR_SET_PDEATHSIG`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::sample::{PoolReading, SampleFile, align};
use super::side::{Probe, Side, SideRun, Totals, observe, points};
use super::{CompareError, CompareSpec};
use crate::dotnet::Sut;

/// How long the service may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// SIGTERM, then this long before SIGKILL (the service drains for at most 1 s).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of the service's stderr kept for an error message.
const LOG_LINES: usize = 40;

/// A started .NET service.
struct Service {
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Service {
    fn spawn(sut: &Sut, spec: &CompareSpec, sample_file: &Path) -> Result<Service, CompareError> {
        let (program, lead) = sut.command();
        let mut cmd = Command::new(&program);
        // The pool's settings are its environment: none of the shell's DOTNET_*/COMPlus_*
        // variables may retune it unseen (as the experiment's replicas).
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if ["DOTNET_", "COMPlus_", "STARVATION_"]
                .iter()
                .any(|p| k.starts_with(p))
            {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(Sut::env(spec.processors))
            .args(lead)
            .args(["--listen", "127.0.0.1:0", "--block-ms"])
            .arg(spec.block_ms.to_string())
            .arg("--sample-file")
            .arg(sample_file)
            .args(["--push-interval", "1s", "--drain-timeout", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::child::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| CompareError::DotnetStart {
            program: program.clone(),
            source,
        })?;
        let log: Arc<Mutex<VecDeque<String>>> = Default::default();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        Ok(Service { child, log })
    }

    /// Waits for `listening on http://ADDR` on its stdout; the rest of stdout is read and
    /// dropped so the service never blocks on a full pipe.
    async fn listening(&mut self, cancel: &CancellationToken) -> Result<SocketAddr, CompareError> {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let found = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    return addr.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        };
        let addr = tokio::select! {
            _ = cancel.cancelled() => return Err(CompareError::Interrupted),
            r = tokio::time::timeout(START_TIMEOUT, found) => r.ok().flatten(),
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match addr {
            Some(addr) => Ok(addr),
            None => Err(CompareError::DotnetNotListening {
                waited: START_TIMEOUT,
                log: self.log().await,
            }),
        }
    }

    /// Its last lines of stderr (after a moment, so a process that just died has said it all).
    async fn log(&self) -> String {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, [`STOP_GRACE`], SIGKILL; reaped either way.
    async fn stop(mut self) {
        if self.child.try_wait().ok().flatten().is_none()
            && !crate::child::terminate(&mut self.child, STOP_GRACE).await
        {
            tracing::warn!("the .NET service did not stop within {STOP_GRACE:?}: killed");
        }
        let _ = self.child.wait().await;
    }
}

/// The .NET side's probe: the sample file, and the process (which must not die mid-run).
struct DotnetProbe<'a> {
    file: SampleFile,
    child: &'a mut Child,
}

impl Probe for DotnetProbe<'_> {
    fn poll(&mut self, _elapsed: Duration) -> Result<Option<PoolReading>, CompareError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(CompareError::DotnetExited {
                status: status.to_string(),
            });
        }
        self.file.read_new()?;
        Ok(self.file.latest().map(|s| s.reading()))
    }
}

/// One .NET run under the scenario's load.
pub(crate) async fn run(
    sut: &Sut,
    spec: &CompareSpec,
    cancel: &CancellationToken,
) -> Result<SideRun, CompareError> {
    let dir = tempfile::tempdir().map_err(CompareError::TempDir)?;
    let sample_path = dir.path().join("samples.jsonl");
    let mut service = Service::spawn(sut, spec, &sample_path)?;
    let result = measure(&mut service, spec, &sample_path, cancel).await;
    let result = match result {
        Err(CompareError::DotnetExited { status }) => Err(CompareError::DotnetDied {
            status,
            log: service.log().await,
        }),
        other => other,
    };
    service.stop().await;
    result
}

async fn measure(
    service: &mut Service,
    spec: &CompareSpec,
    sample_path: &Path,
    cancel: &CancellationToken,
) -> Result<SideRun, CompareError> {
    let addr = service.listening(cancel).await?;
    let plan = spec.scenario.plan(addr).map_err(CompareError::Plan)?;
    let mut probe = DotnetProbe {
        file: SampleFile::new(sample_path),
        child: &mut service.child,
    };
    let seen = observe(plan, cancel, &mut probe).await?;
    probe.file.read_new()?;
    let start = seen
        .wall_start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let readings: Vec<(f64, PoolReading)> = probe
        .file
        .samples()
        .iter()
        .map(|s| (s.t - start, s.reading()))
        .collect();
    if readings.iter().all(|(t, _)| *t < -1.0) {
        return Err(CompareError::NoSamples {
            path: probe.file.path().to_path_buf(),
        });
    }
    let pool = align(&readings, seen.observed_s.floor() as u32);
    Ok(SideRun {
        side: Side::Dotnet,
        points: points(&pool, &seen.report.series),
        totals: Totals::of(&seen.report.summary),
        load_s: seen.load_s,
    })
}
