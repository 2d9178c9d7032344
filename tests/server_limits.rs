//! The listener limits `serve` and `alertapi` share (`src/util/http_server.rs`), on the real
//! binaries bound to port 0: a header-read timeout that closes half-sent requests and idle
//! keep-alive connections, and a connection cap below the open-file limit, so a flood of idle
//! sockets neither hits `EMFILE` nor keeps `/healthz` from answering; and a per-peer cap, so
//! one client's slow-header sockets leave slots for another's healthcheck.

mod common;

use common::{Proc, free_port, spawn_listening, starvation_bin};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Binary {
    Serve,
    Alertapi,
}

const BOTH: [Binary; 2] = [Binary::Serve, Binary::Alertapi];

/// Starts `binary` on 127.0.0.1:0 in `dir` with `extra` flags, under an open-file limit.
fn start(
    binary: Binary,
    dir: &std::path::Path,
    extra: &[&str],
    nofile: Option<u64>,
) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(starvation_bin());
    cmd.current_dir(dir);
    match binary {
        Binary::Serve => {
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--block-ms", "0"]);
        }
        Binary::Alertapi => {
            let local = format!("127.0.0.1:{}", free_port());
            cmd.args([
                "alertapi",
                "--listen",
                "127.0.0.1:0",
                "--orchestrator",
                "local",
                "--default-service",
                "web",
                "--local-listen",
                &local,
                "--local-serve-arg=--block-ms=0",
            ]);
        }
    }
    cmd.args(extra);
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; it only lowers this child's soft limit.
        unsafe {
            cmd.pre_exec(move || {
                let mut lim: libc::rlimit = std::mem::zeroed();
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
                lim.rlim_cur = n;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    spawn_listening(cmd, &format!("{binary:?}"))
}

/// Reads until the peer closes (Ok) or `within` passes (Err).
fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Ok(start.elapsed()),
        }
    }
    Err(format!("still open after {within:?}"))
}

/// One GET on a fresh connection; the status code, or None when no answer came in `within`.
fn get_status(addr: SocketAddr, path: &str, within: Duration) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(within)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn half_sent_headers_and_idle_keep_alive_connections_are_closed() {
    for binary in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let (_proc, addr) = start(binary, dir.path(), &["--header-read-timeout", "1s"], None);

        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 12];
        idle.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "{binary:?}");

        for (what, stream) in [
            ("half-sent headers", &mut half),
            ("idle keep-alive", &mut idle),
        ] {
            let took = closed_within(stream, Duration::from_secs(6))
                .unwrap_or_else(|e| panic!("{binary:?}, {what}: {e}"));
            eprintln!("{binary:?}: {what} closed after {took:?}");
        }
    }
}

#[test]
fn a_flood_of_idle_sockets_under_a_low_file_limit_leaves_healthz_answering() {
    for binary in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let (proc, addr) = start(
            binary,
            dir.path(),
            // One peer may take every slot here: this is the global cap's test.
            &[
                "--header-read-timeout",
                "2s",
                "--max-connections-per-peer",
                "100000",
            ],
            Some(256),
        );
        // More idle sockets than the process may hold files.
        let flood: Vec<TcpStream> = (0..400)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let start = Instant::now();
        let status = get_status(addr, "/healthz", Duration::from_secs(30));
        let took = start.elapsed();
        drop(flood);
        let log = proc.stderr();
        assert_eq!(
            status,
            Some(200),
            "{binary:?}: /healthz after {took:?}\n{log}"
        );
        eprintln!("{binary:?}: /healthz answered {took:?} into a flood of 400 idle sockets");
        assert!(log.contains("lowered to 192"), "{binary:?}: {log}");
        assert!(
            log.contains("connections open (--max-connections)"),
            "{binary:?}: {log}"
        );
        assert!(!log.contains("Too many open files"), "{binary:?}: {log}");
    }
}

#[test]
fn the_connection_cap_holds_new_clients_until_one_closes() {
    for binary in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let (proc, addr) = start(
            binary,
            dir.path(),
            &["--max-connections", "3", "--header-read-timeout", "30s"],
            None,
        );
        let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Poll until the cap is reached and logged, then a fourth client waits...
        let deadline = Instant::now() + Duration::from_secs(10);
        while !proc.stderr().contains("3 connections open") {
            assert!(
                Instant::now() < deadline,
                "{binary:?}: no cap log line\n{}",
                proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            get_status(addr, "/healthz", Duration::from_millis(700)),
            None,
            "{binary:?}"
        );
        // ...until one of the three goes away.
        held.pop();
        assert_eq!(
            get_status(addr, "/healthz", Duration::from_secs(10)),
            Some(200),
            "{binary:?}"
        );
    }
}

/// Raises this process's soft open-file limit to `n` (the flood below needs more than 1,024).
fn raise_nofile(n: u64) {
    // SAFETY: plain data in and out of the kernel.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        assert!(
            lim.rlim_max >= n,
            "this test needs {n} open files; the hard limit is {} (raise it: `ulimit -Hn {n}`)",
            lim.rlim_max
        );
        lim.rlim_cur = lim.rlim_cur.max(n);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// A socket from `from` to `to` that sent half a request's headers (and never sends the rest).
fn slow_header(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&to.into())?;
    let mut s: TcpStream = socket.into();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Whether the server closed `s` (read gives 0 or an error other than "would block").
fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// `GET /healthz` from `from`: its status and how long the answer took.
fn healthz_from(from: std::net::IpAddr, to: SocketAddr) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    (status, start.elapsed())
}

/// Issue 26.10: 1,100 slow-header sockets from one client, reconnected as soon as the server
/// closes one, kept `/healthz` from another address waiting up to 9.8 s (every slot held until
/// its header-read timeout). On loopback every client is 127.0.0.1, so the flood comes from
/// 127.0.0.1 and the healthcheck from 127.0.0.2 (the whole 127/8 is loopback on Linux).
#[test]
fn a_slow_header_flood_from_one_peer_leaves_healthz_from_another_answering_within_1s() {
    raise_nofile(4096);
    for binary in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let (proc, addr) = start(binary, dir.path(), &[], None);
        let flooder: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut flood: Vec<TcpStream> = (0..1100)
            .map(|_| slow_header(flooder, addr).unwrap())
            .collect();
        // Until the server holds its share of them, so the measurement starts under the flood.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = proc.stderr();
            if log.contains("connections open") || log.contains("--max-connections-per-peer") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{binary:?}: no cap reached\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let reconnecting = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reconnects = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for s in flood.iter_mut() {
                        if is_closed(s)
                            && let Ok(fresh) = slow_header(flooder, addr)
                        {
                            *s = fresh;
                            reconnects += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                reconnects
            })
        };
        let mut worst = Duration::ZERO;
        for _ in 0..3 {
            let (status, took) = healthz_from("127.0.0.2".parse().unwrap(), addr);
            assert_eq!(
                status,
                Some(200),
                "{binary:?} after {took:?}\n{}",
                proc.stderr()
            );
            worst = worst.max(took);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reconnects = reconnecting.join().unwrap();
        eprintln!(
            "{binary:?}: /healthz from 127.0.0.2 answered within {worst:?} under 1,100 \
             slow-header sockets from 127.0.0.1 ({reconnects} reconnects)"
        );
        assert!(worst < Duration::from_secs(1), "{binary:?}: {worst:?}");
        let log = proc.stderr();
        assert!(
            log.contains("127.0.0.1 holds 1024 connections (--max-connections-per-peer)"),
            "{binary:?}: {log}"
        );
    }
}
