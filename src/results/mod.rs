//! Results: Prometheus `query_range` → per-metric JSON + CSV (`export`), pairing baseline and
//! scaled runs and averaging them per time offset (`aggregate`). Formats: `docs/results.md`.

pub mod aggregate;
pub mod export;
pub mod fsutil;
pub mod metrics;
pub mod promjson;
pub mod runmeta;
pub mod stats;

use std::path::PathBuf;

/// Everything that can go wrong in `export` and `aggregate`.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Prometheus query_range response: {message}")]
    BadJson { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    BadCsv { path: PathBuf, message: String },
    #[error("{path}: invalid run metadata: {message}")]
    BadRunMeta { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

impl ResultsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ResultsError::Io {
            path: path.into(),
            source,
        }
    }
}
