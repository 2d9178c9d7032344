//! Results: Prometheus `query_range` → per-metric JSON + CSV (`export`), pairing baseline and
//! scaled runs and averaging them per time offset (`aggregate`). Formats: `docs/results.md`.

pub mod aggregate;
pub mod export;
pub mod fsutil;
pub mod input;
pub mod metrics;
pub mod output_dir;
pub mod placement;
pub mod promjson;
pub mod runmeta;
pub mod stats;

use std::path::PathBuf;

/// Everything that can go wrong in `export` and `aggregate`.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The cause is in the message, not also a `source` (a chain would print it twice).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a Prometheus query_range response: {message}")]
    BadJson { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    BadCsv { path: PathBuf, message: String },
    #[error("{path}: invalid run metadata: {message}")]
    BadRunMeta { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    /// The user pressed Ctrl-C; work stopped between two files.
    #[error("interrupted")]
    Interrupted,
}

impl From<crate::util::WriteError> for ResultsError {
    fn from(e: crate::util::WriteError) -> Self {
        ResultsError::Io {
            path: e.path,
            error: e.error,
        }
    }
}

impl ResultsError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ResultsError::Io {
            path: path.into(),
            error,
        }
    }
}

/// Run blocking work with Ctrl-C (SIGINT or SIGTERM) handling: the first asks the work to stop
/// between two files (see [`fsutil::cancelled`]); an interrupted run returns
/// [`crate::Interrupted`].
pub(crate) async fn run_blocking_interruptible<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
    is_interrupt: fn(&E) -> bool,
) -> anyhow::Result<T>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    fsutil::reset_cancel();
    let signal = crate::util::shutdown_signal()?;
    let watcher = tokio::spawn(async {
        signal.await;
        fsutil::request_cancel();
    });
    let res = tokio::task::spawn_blocking(work).await;
    watcher.abort();
    match res? {
        Ok(v) => Ok(v),
        Err(e) if is_interrupt(&e) => Err(anyhow::Error::new(crate::Interrupted)),
        Err(e) => Err(e.into()),
    }
}
