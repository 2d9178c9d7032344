//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared reference data: `$STARVATION_REFERENCE_DIR`, else
/// `<crate>/../shared/reference` (CI clones the repository with `shared/` beside it).
pub fn reference_dir() -> PathBuf {
    let dir = std::env::var_os("STARVATION_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"));
    assert!(
        dir.join("paper-exports").is_dir() && dir.join("paper-means").is_dir(),
        "reference data not found: looked for paper-exports/ and paper-means/ in {} \
         (set STARVATION_REFERENCE_DIR to the directory holding them)",
        dir.display()
    );
    dir
}

/// True when an external binary is present. When it is missing: panics if
/// `STARVATION_REQUIRE_EXTERNAL=1` (CI), else prints a loud SKIPPED line and returns false.
pub fn external_available(path: &str, test: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    if std::env::var("STARVATION_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!(
            "{test}: {path} is missing and STARVATION_REQUIRE_EXTERNAL=1 (install the Debian package)"
        );
    }
    eprintln!("SKIPPED: {test}: {path} is not installed");
    false
}

/// Kills and reaps the child when dropped, so no test leaves a process behind.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
