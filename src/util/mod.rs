//! Small things every command shares: stopping on SIGINT *and* SIGTERM alike, the duration
//! flags' parser, atomic file writes, free loopback ports, finding a program on `PATH`.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Installs SIGTERM and SIGINT handlers now (so a signal that arrives while starting is not
/// fatal) and returns a future that resolves on the first of them. Every command stops on
/// either: Ctrl-C in a terminal, SIGTERM from `docker stop`, systemd or a test harness.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: stopping"),
            _ = int.recv() => tracing::info!("SIGINT received: stopping"),
        }
    })
}

/// A duration flag (`500ms`, `15s`, `1m`), with examples in the error.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 15s, 1m)"))
}

/// A file write that failed, naming the file. The cause is in the message, not also a
/// `source` (an error chain would print it twice).
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {error}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// A temporary file beside `path` (same folder, so the final rename is atomic) that keeps its
/// extension (plotters picks the image encoder from it); deleted on drop unless persisted.
pub fn temp_beside(path: &Path) -> Result<tempfile::TempPath, WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    // Readable like a file `File::create` makes (tempfile's default is 0600).
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    tempfile::Builder::new()
        .prefix(&format!(".{stem}.tmp-"))
        .suffix(&suffix)
        .permissions(mode)
        .tempfile_in(dir)
        .map(|f| f.into_temp_path())
        .map_err(|error| WriteError {
            path: path.to_path_buf(),
            error,
        })
}

/// Write `bytes` to `path` atomically (temporary file beside it, fsync, rename): a crash or an
/// error never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |error| WriteError {
        path: path.to_path_buf(),
        error,
    };
    let tmp = temp_beside(path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))
}

/// A loopback port free right now (another process may still take it before it is bound).
pub fn free_loopback_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// `program` on `PATH`, if it is there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
        let tmp = temp_beside(&dir.path().join("fig.png")).unwrap();
        assert!(tmp.to_string_lossy().ends_with(".png"));
        let missing = write_atomic(&dir.path().join("no/such/dir/x"), b"x").unwrap_err();
        assert!(missing.to_string().contains("no/such/dir/x"), "{missing}");
    }

    #[test]
    fn durations_parse_or_say_what_works() {
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("examples: 500ms")
        );
    }
}

/// A Prometheus sample value: Go's float syntax plus `NaN`, `+Inf`, `-Inf`.
pub fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

/// The Pushgateway group of one replica's gauges,
/// `<gateway>/metrics/job/webserver/instance/<instance>/service/<service>`: the replica pushes
/// to it and deletes it on exit; the local orchestrator deletes it for a replica that died
/// without doing so.
pub fn push_group_url(gateway: &str, instance: &str, service: &str) -> String {
    format!(
        "{}/metrics/job/webserver/instance/{instance}/service/{service}",
        gateway.trim_end_matches('/')
    )
}

pub mod http_server;
pub mod redact;
