//! The listener limits `serve` and `alertapi` share (`src/util/http_server.rs`), on the real
//! binaries bound to port 0: a header-read timeout that closes half-sent requests and idle
//! keep-alive connections, and a connection cap below the open-file limit, so a flood of idle
//! sockets neither hits `EMFILE` nor keeps `/healthz` from answering.

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
            &["--header-read-timeout", "2s"],
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
