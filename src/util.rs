//! Small things every command shares: stopping on SIGINT *and* SIGTERM alike, and the
//! duration flags' parser.

use anyhow::Context as _;
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

#[cfg(test)]
mod tests {
    use super::*;

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
