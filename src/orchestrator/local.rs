//! Replicas as child processes of `starvation serve` on this machine, sharing one port through
//! `SO_REUSEPORT` (the kernel spreads connections, like Swarm's routing mesh).
//!
//! No orphans: every child gets `PR_SET_PDEATHSIG(SIGTERM)`, so it drains and exits if this
//! process dies, even by SIGKILL; [`LocalOrchestrator::shutdown`] stops them gracefully and
//! dropping the orchestrator kills any that are left.

use futures::future::BoxFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::Mutex;

use super::{BoundsOverride, Orchestrator, OrchestratorError, ServiceStatus};

/// How to start one replica.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The service name the scaler addresses (e.g. `webserver`).
    pub service: String,
    /// The `starvation` executable (normally `std::env::current_exe()`).
    pub program: PathBuf,
    /// The address every replica listens on (shared with `--reuse-port`).
    pub listen: std::net::SocketAddr,
    /// Further `serve` arguments for every replica (e.g. `--block-ms 2000`).
    pub serve_args: Vec<String>,
    /// How long a replica may take to drain after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// `RUST_LOG` for the replicas (their logs go to our stderr); `None` inherits ours.
    pub log_filter: Option<String>,
}

struct Replica {
    id: u32,
    child: Child,
    // Kept open so the child's later writes to stdout never hit a closed pipe.
    _stdout: ChildStdout,
}

pub struct LocalOrchestrator {
    cfg: LocalConfig,
    /// The running replicas; held only to read or change the list, never while a replica
    /// starts or drains, so `status()` answers at once during a scale.
    replicas: Mutex<Vec<Replica>>,
    /// One scale (or shutdown) at a time.
    scaling: Mutex<()>,
    next_id: std::sync::atomic::AtomicU32,
}

impl LocalOrchestrator {
    /// Starts `initial` replicas and waits until each listens.
    pub async fn start(
        cfg: LocalConfig,
        initial: u32,
    ) -> Result<LocalOrchestrator, OrchestratorError> {
        let orch = LocalOrchestrator {
            cfg,
            replicas: Mutex::new(Vec::new()),
            scaling: Mutex::new(()),
            next_id: std::sync::atomic::AtomicU32::new(1),
        };
        orch.scale_to(initial).await?;
        Ok(orch)
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    /// Process ids of the running replicas, oldest first.
    pub async fn pids(&self) -> Vec<u32> {
        let mut replicas = self.replicas.lock().await;
        reap(&mut replicas);
        replicas.iter().filter_map(|r| r.child.id()).collect()
    }

    /// Replicas that run now (a starting one counts once it listens).
    async fn running(&self) -> u32 {
        let mut replicas = self.replicas.lock().await;
        reap(&mut replicas);
        replicas.len() as u32
    }

    async fn scale_to(&self, target: u32) -> Result<(), OrchestratorError> {
        let _one_at_a_time = self.scaling.lock().await;
        while self.running().await < target {
            let replica = self.spawn().await?;
            self.replicas.lock().await.push(replica);
        }
        // Newest first, like Swarm removing the highest slots.
        while self.running().await > target {
            let Some(replica) = self.replicas.lock().await.pop() else {
                break;
            };
            stop(replica, self.cfg.stop_timeout).await;
        }
        Ok(())
    }

    async fn spawn(&self) -> Result<Replica, OrchestratorError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let instance = format!("{}-{id}", self.cfg.service);
        let (serve_args, secrets) = super::child_env::split_secrets(&self.cfg.serve_args);
        let mut cmd = Command::new(&self.cfg.program);
        cmd.envs(secrets);
        for var in super::child_env::NOT_INHERITED {
            cmd.env_remove(var);
        }
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.cfg.listen.to_string())
            .arg("--reuse-port")
            .arg("--instance")
            .arg(&instance)
            .arg("--service")
            .arg(&self.cfg.service)
            .args(&serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(filter) = &self.cfg.log_filter {
            cmd.env("RUST_LOG", filter);
        }
        crate::child::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            OrchestratorError::Backend(format!(
                "cannot start replica {instance} ({}): {e}",
                self.cfg.program.display()
            ))
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("listening on ") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let _ = child.kill().await;
            return Err(OrchestratorError::Backend(format!(
                "replica {instance} did not start listening on {} (see its log above)",
                self.cfg.listen
            )));
        }
        tracing::info!("started replica {instance} (pid {:?})", child.id());
        Ok(Replica {
            id,
            child,
            _stdout: lines.into_inner().into_inner(),
        })
    }

    /// SIGTERM every replica and wait for their drain (after a scale in progress ends, so no
    /// replica it starts is left behind).
    pub async fn shutdown(&self) {
        let _one_at_a_time = self.scaling.lock().await;
        let all: Vec<Replica> = self.replicas.lock().await.drain(..).collect();
        futures::future::join_all(all.into_iter().map(|r| stop(r, self.cfg.stop_timeout))).await;
    }
}

/// Forget replicas that exited on their own (crash, OOM): the count must stay true.
fn reap(replicas: &mut Vec<Replica>) {
    replicas.retain_mut(|r| match r.child.try_wait() {
        Ok(Some(status)) => {
            tracing::warn!("replica {} exited on its own: {status}", r.id);
            false
        }
        _ => true,
    });
}

async fn stop(mut replica: Replica, timeout: Duration) {
    if crate::child::terminate(&mut replica.child, timeout).await {
        tracing::info!("replica {} stopped", replica.id);
    } else {
        tracing::warn!(
            "replica {} did not drain within {timeout:?}; killed it",
            replica.id
        );
    }
}

impl Orchestrator for LocalOrchestrator {
    fn status<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<ServiceStatus, OrchestratorError>> {
        Box::pin(async move {
            if service != self.cfg.service {
                return Err(OrchestratorError::NotFound(service.to_owned()));
            }
            Ok(ServiceStatus {
                name: service.to_owned(),
                replicas: self.running().await,
                bounds: BoundsOverride::default(),
                dry_run: false,
                restore: true,
                tasks: None,
                ceiling: None,
            })
        })
    }

    fn scale<'a>(
        &'a self,
        service: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>> {
        Box::pin(async move {
            if service != self.cfg.service {
                return Err(OrchestratorError::NotFound(service.to_owned()));
            }
            self.scale_to(replicas).await
        })
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, OrchestratorError>> {
        Box::pin(async move { Ok(vec![self.status(&self.cfg.service).await?]) })
    }

    fn describe(&self) -> String {
        format!(
            "local processes of {} on {}",
            self.cfg.program.display(),
            self.cfg.listen
        )
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(LocalOrchestrator::shutdown(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for `starvation serve` that takes `secs` to start listening.
    fn slow_program(dir: &std::path::Path, secs: f64) -> PathBuf {
        let p = dir.join("slow-serve");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nsleep {secs}\necho 'listening on http://127.0.0.1:1'\nexec sleep 600\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_answers_at_once_while_a_replica_starts() {
        let dir = tempfile::tempdir().unwrap();
        let orch = std::sync::Arc::new(
            LocalOrchestrator::start(
                LocalConfig {
                    service: "web".into(),
                    program: slow_program(dir.path(), 1.5),
                    listen: ([127, 0, 0, 1], 1).into(),
                    serve_args: vec![],
                    stop_timeout: Duration::from_secs(2),
                    log_filter: None,
                },
                1,
            )
            .await
            .unwrap(),
        );
        let scaling = {
            let orch = orch.clone();
            tokio::spawn(async move { orch.scale("web", 2).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The second replica needs 1.5 s to listen; status must not wait for it.
        let status = tokio::time::timeout(Duration::from_millis(500), orch.status("web"))
            .await
            .expect("status() waited for the starting replica")
            .unwrap();
        assert_eq!(status.replicas, 1, "a starting replica is not counted yet");
        scaling.await.unwrap().unwrap();
        assert_eq!(orch.status("web").await.unwrap().replicas, 2);
        orch.shutdown().await;
        assert_eq!(orch.status("web").await.unwrap().replicas, 0);
    }
}
