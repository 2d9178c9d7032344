//! The HTTP/1.1 server loop `serve` and `alertapi` share, hardened for a `0.0.0.0` listen:
//! a cap on open connections (below the open-file limit, so accept never meets `EMFILE`), a
//! header-read timeout that also closes idle keep-alive connections (hyper starts it whenever
//! it waits for the next request's head), a per-peer cap below it (so one client cannot hold
//! every slot and the container's healthcheck, from another address, still gets one), accept
//! errors backed off and logged at most once a second, and a graceful shutdown that lets
//! in-flight requests finish.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One peer's default share is the cap less [`PEER_RESERVE`]: 1,024, what one client could hold
/// before there was a per-peer cap (the experiment's load generator holds up to 1,000).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1152;
/// Slots one peer leaves to the others by default (an eighth of a cap below 1,024).
pub const PEER_RESERVE: usize = 128;
/// File descriptors kept free of connections (the store, logs, child pipes, sockets out).
const RESERVED_FDS: u64 = 64;

/// The listener's limits (`--max-connections`, `--header-read-timeout`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ServerLimits {
    /// Connections open at once, at most; further clients wait in the kernel's backlog (a
    /// warning is logged) until one closes. Lowered to fit the open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Connections one peer (an IPv4 address, an IPv6 /64) may hold at once; its further
    /// connections are closed as soon as they are accepted. Default: the cap less the slots
    /// reserved for other peers: 128, or an eighth of a cap below 1,024 (behind Swarm's routing
    /// mesh every outside client shares one address; the healthcheck comes from loopback).
    #[arg(long, value_name = "N")]
    pub max_connections_per_peer: Option<usize>,

    /// A client must send a request's headers within this, and an idle keep-alive connection
    /// is closed after it.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: None,
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
            self.max_connections_per_peer != Some(0),
            "--max-connections-per-peer must be at least 1 (or leave it out: the cap less 128)"
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

    /// `--max-connections-per-peer`, or `cap` less [`PEER_RESERVE`] (less an eighth of a
    /// smaller cap), never above `cap`.
    pub fn peer_cap(&self, cap: usize) -> usize {
        self.max_connections_per_peer
            .unwrap_or_else(|| cap - (cap / 8).min(PEER_RESERVE))
            .clamp(1, cap.max(1))
    }
}

/// Who a per-peer cap counts: the address, IPv4-mapped IPv6 as IPv4, IPv6 by its /64 (one
/// host usually holds a whole /64).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Open connections per peer; a [`PeerSlot`] gives its one back when dropped.
#[derive(Default, Clone)]
struct Peers(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct PeerSlot(Peers, IpAddr);

impl Peers {
    /// A slot for `ip`, or None when it already holds `cap` connections.
    fn take(&self, ip: IpAddr, cap: usize) -> Option<PeerSlot> {
        let key = peer_key(ip);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot(self.clone(), key))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
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
    let peer_cap = limits.peer_cap(cap);
    let permits = Arc::new(Semaphore::new(cap));
    let peers = Peers::default();
    let connections = TaskTracker::new();
    let (mut full, mut failing, mut greedy) = (Throttle(None), Throttle(None), Throttle(None));
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
                Ok((stream, peer)) => match peers.take(peer.ip(), peer_cap) {
                    Some(slot) => (stream, slot),
                    None => {
                        // Closed at once: waiting in the backlog, it would delay everyone
                        // queued behind it.
                        if greedy.ready() {
                            tracing::warn!(
                                "{name}: {} holds {peer_cap} connections \
                                 (--max-connections-per-peer); closing its new ones",
                                peer.ip()
                            );
                        }
                        continue;
                    }
                },
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
        let (stream, slot) = stream;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        let timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _held = (permit, slot);
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
        assert_eq!(ServerLimits::default().connection_cap(), cap.min(1152));
        assert!(
            ServerLimits {
                max_connections_per_peer: Some(0),
                ..Default::default()
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn one_peer_gets_the_cap_less_a_reserve_and_gives_slots_back() {
        let d = ServerLimits::default();
        let caps = [1152, 1024, 192, 3].map(|c| d.peer_cap(c));
        assert_eq!(caps, [1024, 896, 168, 3]);
        let given = ServerLimits {
            max_connections_per_peer: Some(5000),
            ..Default::default()
        };
        assert_eq!(given.peer_cap(1024), 1024);
        let peers = Peers::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<PeerSlot> = (0..2).map(|_| peers.take(a, 2).unwrap()).collect();
        assert!(peers.take(a, 2).is_none());
        // Another address, and the same one written as IPv4-mapped IPv6.
        assert!(peers.take("10.0.0.2".parse().unwrap(), 2).is_some());
        assert!(peers.take("::ffff:10.0.0.1".parse().unwrap(), 2).is_none());
        // One IPv6 /64 is one peer.
        let _v6 = peers.take("2001:db8::1".parse().unwrap(), 1).unwrap();
        assert!(peers.take("2001:db8::2".parse().unwrap(), 1).is_none());
        drop(held);
        let again = peers.take(a, 2);
        assert!(again.is_some());
        assert_eq!(peers.0.lock().unwrap().get(&a), Some(&1));
        drop(again);
        assert_eq!(
            peers.0.lock().unwrap().get(&a),
            None,
            "no entry left behind"
        );
    }
}
