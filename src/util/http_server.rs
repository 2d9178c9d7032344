//! The HTTP/1.1 server loop `serve` and `alertapi` share, hardened for a `0.0.0.0` listen:
//! a cap on open connections (below the open-file limit, so accept never meets `EMFILE`), a
//! header-read timeout that also closes idle keep-alive connections (hyper starts it whenever
//! it waits for the next request's head), accept errors backed off and logged at most once a
//! second, and a graceful shutdown that lets in-flight requests finish.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// File descriptors kept free of connections (the store, logs, child pipes, sockets out).
const RESERVED_FDS: u64 = 64;

/// The listener's limits (`--max-connections`, `--header-read-timeout`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ServerLimits {
    /// Connections open at once, at most; further clients wait in the kernel's backlog (a
    /// warning is logged) until one closes. Lowered to fit the open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// A client must send a request's headers within this, and an idle keep-alive connection
    /// is closed after it.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_connections >= 1,
            "--max-connections must be at least 1"
        );
        anyhow::ensure!(
            !self.header_read_timeout.is_zero(),
            "--header-read-timeout must be greater than zero (e.g. 10s)"
        );
        Ok(())
    }

    /// `--max-connections`, lowered (with a log line) to what the open-file limit allows.
    pub fn connection_cap(&self) -> usize {
        let fit = open_file_limit()
            .map(|n| n.saturating_sub(RESERVED_FDS).max(1) as usize)
            .unwrap_or(usize::MAX);
        if fit < self.max_connections {
            tracing::warn!(
                "--max-connections {} lowered to {fit}: the open-file limit is {} (raise it \
                 with `ulimit -n`)",
                self.max_connections,
                fit as u64 + RESERVED_FDS
            );
        }
        self.max_connections.min(fit)
    }
}

fn open_file_limit() -> Option<u64> {
    // SAFETY: rlimit is plain data filled by the kernel.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0).then_some(limit.rlim_cur)
    }
}

/// Logs at most once a second, however often it is called.
struct Throttle(Option<Instant>);

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .0
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// Serves `app` on `listener` until `stop`, then waits for open connections to finish their
/// requests (idle ones close at once). `name` prefixes the log lines.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    name: &'static str,
    stop: CancellationToken,
) {
    let cap = limits.connection_cap();
    let permits = Arc::new(Semaphore::new(cap));
    let connections = TaskTracker::new();
    let (mut full, mut failing) = (Throttle(None), Throttle(None));
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if full.ready() {
                    tracing::warn!(
                        "{name}: {cap} connections open (--max-connections); new connections \
                         wait until one closes"
                    );
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.cancelled() => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if failing.ready() {
                        tracing::warn!("{name}: accept failed: {e}; retrying (if this is `Too many open files`, raise `ulimit -n` or lower --max-connections)");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = stop.cancelled() => break,
                    }
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        let timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            // Errors of one connection (a client gone, a header timeout) are that client's.
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_fit_the_open_file_limit() {
        assert!(
            ServerLimits {
                max_connections: 0,
                ..Default::default()
            }
            .check()
            .is_err()
        );
        let huge = ServerLimits {
            max_connections: usize::MAX,
            ..Default::default()
        };
        let cap = huge.connection_cap();
        assert!(cap < usize::MAX && cap as u64 + RESERVED_FDS <= open_file_limit().unwrap());
        assert_eq!(ServerLimits::default().connection_cap(), cap.min(1024));
    }
}
