//! Child processes that never outlive us (replicas, Prometheus and friends): they get
//! `PR_SET_PDEATHSIG(SIGTERM)` and kill-on-drop, and stop with SIGTERM then SIGKILL.

use std::time::Duration;
use tokio::process::{Child, Command};

/// Make `cmd`'s process die with us: SIGTERM when we exit (even on SIGKILL), SIGKILL when its
/// handle is dropped.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the new process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.kill_on_drop(true)
}

/// SIGTERM, up to `grace` to exit, then SIGKILL. True if it exited within `grace`.
pub async fn terminate(child: &mut Child, grace: Duration) -> bool {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return true;
    }
    let _ = child.kill().await;
    false
}
