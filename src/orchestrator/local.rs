//! Replicas as child processes of `starvation serve` on this machine, sharing one port through
//! `SO_REUSEPORT` (the kernel spreads connections, like Swarm's routing mesh).
//!
//! No orphans: every child gets `PR_SET_PDEATHSIG(SIGTERM)`, so it drains and exits if this
//! process dies, even by SIGKILL; [`LocalOrchestrator::shutdown`] stops them gracefully and
//! dropping the orchestrator kills any that are left.
//!
//! A replica that dies on its own (crash, OOM, SIGKILL) is replaced, as Swarm replaces a dead
//! task, and its Pushgateway group is deleted: it could not delete it itself, and the
//! Pushgateway would keep its last gauges (a starved queue) forever.

use futures::future::BoxFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{BoundsOverride, Orchestrator, OrchestratorError, ServiceStatus};

/// How to start one replica.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The service name the scaler addresses (e.g. `webserver`).
    pub service: String,
    /// What a replica runs: `starvation serve` (normally `std::env::current_exe()`), or the
    /// .NET workload on its runtime.
    pub program: ReplicaProgram,
    /// The address every replica listens on (shared with `--reuse-port`).
    pub listen: std::net::SocketAddr,
    /// Further `serve` arguments for every replica (e.g. `--block-ms 2000`). These are
    /// all a replica's settings (none of our `STARVATION_*` variables reaches it); their
    /// `--pushgateway` is where a dead replica's group is deleted.
    pub serve_args: Vec<String>,
    /// How long a replica may take to drain after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// `RUST_LOG` for the replicas (their logs go to our stderr); `None` inherits ours.
    pub log_filter: Option<String>,
}

/// The program of a replica, before the arguments every replica gets (`--listen ADDR
/// --reuse-port --instance NAME --service NAME`, then `serve_args`), which it must take.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaProgram {
    pub path: PathBuf,
    /// Arguments before those (`serve` for the starvation executable).
    pub lead_args: Vec<String>,
    /// Variables set for it (after none of ours, `STARVATION_*` or `DOTNET_*`, was inherited).
    pub env: Vec<(String, String)>,
}

impl ReplicaProgram {
    /// `path serve ...`: the model replica of the `starvation` executable at `path`.
    pub fn serve(path: impl Into<PathBuf>) -> ReplicaProgram {
        ReplicaProgram {
            path: path.into(),
            lead_args: vec!["serve".into()],
            env: Vec::new(),
        }
    }
}

impl From<PathBuf> for ReplicaProgram {
    fn from(path: PathBuf) -> Self {
        ReplicaProgram::serve(path)
    }
}

impl From<&str> for ReplicaProgram {
    fn from(path: &str) -> Self {
        ReplicaProgram::serve(path)
    }
}

impl LocalConfig {
    /// The Pushgateway the replicas push to: their `--pushgateway` flag (they inherit none of
    /// our `STARVATION_*` variables).
    pub fn pushgateway(&self) -> Option<String> {
        let mut args = self.serve_args.iter();
        let mut found = None;
        while let Some(a) = args.next() {
            if a == "--pushgateway" {
                found = args.next().cloned();
            } else if let Some(v) = a.strip_prefix("--pushgateway=") {
                found = Some(v.to_owned());
            }
        }
        found
    }
}

/// How often dead replicas are looked for (they are also noticed by every status call).
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Replacements closer together than this count as a crash loop and back off...
const CRASH_LOOP: Duration = Duration::from_secs(10);
/// ...doubling up to this, like Swarm's restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Replica {
    instance: String,
    child: Child,
    // Kept open so the child's later writes to stdout never hit a closed pipe.
    _stdout: ChildStdout,
}

/// What the orchestrator and its supervisor share.
struct Inner {
    cfg: LocalConfig,
    /// The running replicas; held only to read or change the list, never while a replica
    /// starts or drains, so `status()` answers at once during a scale.
    replicas: Mutex<Vec<Replica>>,
    /// One scale (or shutdown, or replacement) at a time.
    scaling: Mutex<()>,
    /// The count asked for: replicas that die are replaced up to it.
    desired: AtomicU32,
    next_id: AtomicU32,
    pushgateway: Option<String>,
    http: reqwest::Client,
}

pub struct LocalOrchestrator {
    inner: Arc<Inner>,
    /// Stops the supervisor when the orchestrator is dropped.
    _supervisor: DropGuard,
}

impl LocalOrchestrator {
    /// Starts `initial` replicas and waits until each listens; from then on a replica that
    /// dies on its own is replaced.
    pub async fn start(
        cfg: LocalConfig,
        initial: u32,
    ) -> Result<LocalOrchestrator, OrchestratorError> {
        let inner = Arc::new(Inner {
            pushgateway: cfg.pushgateway(),
            cfg,
            replicas: Mutex::new(Vec::new()),
            scaling: Mutex::new(()),
            desired: AtomicU32::new(0),
            next_id: AtomicU32::new(1),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("a client with only a timeout set always builds"),
        });
        let stop = CancellationToken::new();
        tokio::spawn(supervise(Arc::downgrade(&inner), stop.clone()));
        let orch = LocalOrchestrator {
            inner,
            _supervisor: stop.drop_guard(),
        };
        orch.inner.scale_to(initial).await?;
        Ok(orch)
    }

    pub fn config(&self) -> &LocalConfig {
        &self.inner.cfg
    }

    /// Process ids of the running replicas, oldest first.
    pub async fn pids(&self) -> Vec<u32> {
        let mut replicas = self.inner.replicas.lock().await;
        self.inner.reap(&mut replicas);
        replicas.iter().filter_map(|r| r.child.id()).collect()
    }

    /// SIGTERM every replica and wait for their drain (after a scale in progress ends, so no
    /// replica it starts is left behind); none is replaced afterwards.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let _one_at_a_time = inner.scaling.lock().await;
        inner.desired.store(0, Ordering::SeqCst);
        let all: Vec<Replica> = inner.replicas.lock().await.drain(..).collect();
        futures::future::join_all(all.into_iter().map(|r| stop(r, inner.cfg.stop_timeout))).await;
    }
}

impl Inner {
    /// Replicas that run now (a starting one counts once it listens).
    async fn running(&self) -> u32 {
        let mut replicas = self.replicas.lock().await;
        self.reap(&mut replicas);
        replicas.len() as u32
    }

    async fn scale_to(&self, target: u32) -> Result<(), OrchestratorError> {
        let _one_at_a_time = self.scaling.lock().await;
        self.desired.store(target, Ordering::SeqCst);
        self.fill(target).await?;
        // Newest first, like Swarm removing the highest slots.
        while self.running().await > target {
            let Some(replica) = self.replicas.lock().await.pop() else {
                break;
            };
            stop(replica, self.cfg.stop_timeout).await;
        }
        Ok(())
    }

    /// Start replicas until `target` run; the number started. Call with `scaling` held.
    async fn fill(&self, target: u32) -> Result<u32, OrchestratorError> {
        let mut started = 0;
        while self.running().await < target {
            let replica = self.spawn().await?;
            self.replicas.lock().await.push(replica);
            started += 1;
        }
        Ok(started)
    }

    /// Replace replicas that died; the number started. A scale in progress replaces them
    /// itself, so this waits for none.
    async fn replace_dead(&self) -> Result<u32, OrchestratorError> {
        let Ok(_one_at_a_time) = self.scaling.try_lock() else {
            return Ok(0);
        };
        let started = self.fill(self.desired.load(Ordering::SeqCst)).await?;
        if started > 0 {
            tracing::info!(
                "replaced {started} replica(s) of {} that died",
                self.cfg.service
            );
        }
        Ok(started)
    }

    /// Forget replicas that exited on their own (crash, OOM, SIGKILL) so the count stays true,
    /// and delete their Pushgateway groups.
    fn reap(&self, replicas: &mut Vec<Replica>) {
        replicas.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!("replica {} exited on its own: {status}", r.instance);
                self.forget_group(&r.instance);
                false
            }
            _ => true,
        });
    }

    /// Delete a dead replica's group in the background (reaping happens under a lock).
    fn forget_group(&self, instance: &str) {
        let Some(gateway) = &self.pushgateway else {
            return;
        };
        let url = crate::util::push_group_url(gateway, instance, &self.cfg.service);
        let http = self.http.clone();
        tokio::spawn(async move {
            match http.delete(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!("deleted the dead replica's Pushgateway group {url}")
                }
                Ok(r) => tracing::warn!("deleting {url}: HTTP {}", r.status()),
                Err(e) => tracing::warn!("deleting {url}: {e}"),
            }
        });
    }

    async fn spawn(&self) -> Result<Replica, OrchestratorError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let instance = format!("{}-{id}", self.cfg.service);
        let (serve_args, secrets) = super::child_env::split_secrets(&self.cfg.serve_args);
        let program = &self.cfg.program;
        let mut cmd = Command::new(&program.path);
        // A replica's settings are its arguments: none of our STARVATION_* variables reaches
        // it (a MongoDB URI or the scaler's token in the shell would otherwise change or leak
        // into every replica without a word), nor DOTNET_* or COMPlus_* (they would retune a
        // .NET replica's pool unseen). Then the credentials of its arguments come back as its
        // own variables, out of `ps`'s sight.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if ["STARVATION_", "DOTNET_", "COMPlus_"]
                .iter()
                .any(|p| key_text.starts_with(p))
            {
                cmd.env_remove(key);
            }
        }
        cmd.envs(program.env.iter().map(|(k, v)| (k, v)));
        cmd.envs(secrets);
        cmd.args(&program.lead_args)
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
                self.cfg.program.path.display()
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
            instance,
            child,
            _stdout: lines.into_inner().into_inner(),
        })
    }
}

/// Every [`CHECK_EVERY`], replace the replicas that died, backing off (up to [`MAX_BACKOFF`])
/// while they keep dying soon after their start or cannot start at all.
async fn supervise(inner: Weak<Inner>, stop: CancellationToken) {
    let mut wait = CHECK_EVERY;
    let mut last_replacement: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let crash_loop = |wait: Duration| (wait * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        wait = match inner.replace_dead().await {
            Ok(0) => CHECK_EVERY,
            Ok(_) => {
                let looping = last_replacement.is_some_and(|t| t.elapsed() < CRASH_LOOP);
                last_replacement = Some(Instant::now());
                if looping {
                    crash_loop(wait)
                } else {
                    CHECK_EVERY
                }
            }
            Err(e) => {
                let next = crash_loop(wait);
                tracing::warn!("replacing a dead replica: {e}; trying again in {next:?}");
                next
            }
        };
    }
}

async fn stop(mut replica: Replica, timeout: Duration) {
    if crate::child::terminate(&mut replica.child, timeout).await {
        tracing::info!("replica {} stopped", replica.instance);
    } else {
        tracing::warn!(
            "replica {} did not drain within {timeout:?}; killed it",
            replica.instance
        );
    }
}

impl Orchestrator for LocalOrchestrator {
    fn status<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<ServiceStatus, OrchestratorError>> {
        Box::pin(async move {
            if service != self.inner.cfg.service {
                return Err(OrchestratorError::NotFound(service.to_owned()));
            }
            Ok(ServiceStatus {
                name: service.to_owned(),
                replicas: self.inner.running().await,
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
            if service != self.inner.cfg.service {
                return Err(OrchestratorError::NotFound(service.to_owned()));
            }
            self.inner.scale_to(replicas).await
        })
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, OrchestratorError>> {
        Box::pin(async move { Ok(vec![self.status(&self.inner.cfg.service).await?]) })
    }

    fn describe(&self) -> String {
        format!(
            "local processes of {} on {}",
            self.inner.cfg.program.path.display(),
            self.inner.cfg.listen
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
    use std::sync::Arc;

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
                    program: slow_program(dir.path(), 1.5).into(),
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

    /// A replica gets its program's variables and none of ours that would retune it: no
    /// STARVATION_*, DOTNET_* or COMPlus_* of this process reaches it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_gets_its_programs_variables_and_none_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env-serve");
        let dump = dir.path().join("env.txt");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nenv > {}\necho 'listening on http://127.0.0.1:1'\nexec sleep 600\n",
                dump.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: no other test reads these variables.
        unsafe {
            std::env::set_var("DOTNET_gcServer", "1");
            std::env::set_var("COMPlus_ThreadPool_ForceMinWorkerThreads", "40");
        }
        let mut cfg = config(p, vec![]);
        cfg.program.env = vec![("DOTNET_PROCESSOR_COUNT".into(), "1".into())];
        let orch = LocalOrchestrator::start(cfg, 1).await.unwrap();
        let env = std::fs::read_to_string(&dump).unwrap();
        orch.shutdown().await;
        assert!(
            env.lines().any(|l| l == "DOTNET_PROCESSOR_COUNT=1"),
            "{env}"
        );
        for ours in [
            "DOTNET_gcServer",
            "COMPlus_ThreadPool_ForceMinWorkerThreads",
        ] {
            assert!(!env.contains(ours), "{ours} reached the replica:\n{env}");
        }
    }

    fn config(program: PathBuf, serve_args: Vec<String>) -> LocalConfig {
        LocalConfig {
            service: "web".into(),
            program: program.into(),
            listen: ([127, 0, 0, 1], 1).into(),
            serve_args,
            stop_timeout: Duration::from_secs(2),
            log_filter: None,
        }
    }

    #[test]
    fn the_pushgateway_is_the_replicas_flag() {
        let with = |args: &[&str]| {
            config(PathBuf::new(), args.iter().map(|a| a.to_string()).collect()).pushgateway()
        };
        let gw = Some("http://127.0.0.1:9091".to_string());
        assert_eq!(
            with(&["--block-ms", "5", "--pushgateway", "http://127.0.0.1:9091"]),
            gw
        );
        assert_eq!(with(&["--pushgateway=http://127.0.0.1:9091"]), gw);
        // The last one wins, as clap takes it.
        assert_eq!(
            with(&[
                "--pushgateway",
                "http://a",
                "--pushgateway=http://127.0.0.1:9091"
            ]),
            gw
        );
    }

    /// A stand-in Pushgateway that records the groups deleted.
    async fn deletions() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = record.clone();
            async move {
                if req.method() == axum::http::Method::DELETE {
                    record.lock().unwrap().push(req.uri().path().to_owned());
                }
                axum::http::StatusCode::ACCEPTED
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// SIGKILL one of two replicas: its group is deleted and a new replica takes its place
    /// (before: 2 -> 1 for good, the group left behind); after shutdown nothing is restarted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_dies_is_replaced_and_its_group_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, deleted) = deletions().await;
        let orch = LocalOrchestrator::start(
            config(
                slow_program(dir.path(), 0.0),
                vec!["--pushgateway".into(), gateway],
            ),
            2,
        )
        .await
        .unwrap();
        let before = orch.pids().await;
        assert_eq!(before.len(), 2);
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(before[0] as i32, libc::SIGKILL) };
        let killed_at = Instant::now();
        loop {
            let pids = orch.pids().await;
            let gone = deleted.lock().unwrap().clone();
            if pids.len() == 2 && !pids.contains(&before[0]) && !gone.is_empty() {
                assert_eq!(gone, ["/metrics/job/webserver/instance/web-1/service/web"]);
                assert_eq!(pids[0], before[1], "the survivor is untouched");
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(5),
                "not replaced within 5 s: pids {pids:?} (killed {}), deleted {gone:?}",
                before[0]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "replaced and deleted {:?} after the kill",
            killed_at.elapsed()
        );
        assert_eq!(orch.status("web").await.unwrap().replicas, 2);
        orch.shutdown().await;
        tokio::time::sleep(CHECK_EVERY * 4).await;
        assert_eq!(
            orch.pids().await,
            Vec::<u32>::new(),
            "nothing restarted after shutdown"
        );
        assert_eq!(
            deleted.lock().unwrap().len(),
            1,
            "a stopped replica deletes its own group"
        );
    }
}
