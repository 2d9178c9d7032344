//! Helpers shared by the integration tests: real processes with kill-on-drop guards, free
//! loopback ports, and the rule for external binaries: a test that needs one is
//! `#[ignore = "needs …"]` (a plain `cargo test` lists it as ignored), and when it runs
//! (`cargo test -- --include-ignored`, as `.ci/run` does) a missing binary fails it.
#![allow(dead_code)]

pub mod cluster;
pub mod experiment;
pub mod prometheus;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds an external binary on PATH, or fails the test saying how to install it. Tests that
/// call this are `#[ignore = "needs …"]`: they run only when asked for, and then must not pass
/// after testing nothing.
pub fn external(binary: &str, package: &str, test: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let path = PathBuf::from(dir).join(binary);
        if path.is_file() {
            return path;
        }
    }
    panic!("{test}: {binary} not found: install it with `apt-get install {package}`");
}

/// The paper's data the tests read, shipped in the repository (`tests/fixtures/paper/`): its
/// one published pair (`paper-exports/`), its published means (`paper-means/`), and two raw
/// pairs that show the traps of its exporter (`raw/pair_10`: one replica in two series;
/// `raw/pair_103`: the p99 file overwritten by a per-status query).
pub fn paper_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paper")
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
/// A piped stderr is collected, not printed: the test log stays quiet, and a failing test
/// prints what its process said.
pub struct Proc {
    pub child: Child,
    pub name: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    /// Guard `child`; its stderr, if piped, is collected (see [`Proc::stderr`]).
    pub fn new(mut child: Child, name: &str) -> Self {
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Proc {
            child,
            name: name.into(),
            stderr: log,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait_for(timeout)
    }

    pub fn wait_for(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let err = self.stderr();
            if !err.is_empty() {
                eprintln!("--- stderr of {} ---\n{err}", self.name);
            }
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn starvation_bin() -> &'static str {
    env!("CARGO_BIN_EXE_starvation")
}

/// Starts `starvation serve ARGS` and waits for its "listening on" line.
pub fn spawn_serve(args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(starvation_bin());
    cmd.arg("serve").args(args);
    spawn_listening(cmd, "starvation serve")
}

/// Starts `cmd` (a `starvation` subcommand) and waits for its "listening on" line.
pub fn spawn_listening(mut cmd: Command, name: &str) -> (Proc, SocketAddr) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let proc = Proc::new(child, name);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{name} did not report its address within 20 s"));
    (proc, addr)
}

/// The body of `GET url`, as text.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Resident memory of process `pid`, in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Starts the Debian Pushgateway on a free loopback port.
pub async fn start_pushgateway(test: &str) -> (Proc, String) {
    let bin = external("prometheus-pushgateway", "prometheus-pushgateway", test);
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Debian's build persists to one file shared by every instance and loads it at start
        // (a group another test pushed showed up here): memory only.
        .arg("--persistence.file=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus-pushgateway");
    let proc = Proc::new(child, "pushgateway");
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(20)).await;
    (proc, url)
}

pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Value of an unlabelled or fully labelled sample line in Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// A scripted orchestrator for scaler tests that are about HTTP and policy, not processes.
pub struct FakeOrchestrator {
    initial: u32,
    by_service: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    pub fail: std::sync::atomic::AtomicBool,
    pub scale_calls: std::sync::atomic::AtomicU32,
    /// What `status` reports as the service's dry-run label.
    pub dry_run: std::sync::atomic::AtomicBool,
    /// `may_act` answers "not the leader" while set (a scaler replica on a follower manager).
    pub follower: std::sync::atomic::AtomicBool,
}

impl FakeOrchestrator {
    pub fn new(replicas: u32) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FakeOrchestrator {
            initial: replicas,
            by_service: Default::default(),
            fail: Default::default(),
            scale_calls: Default::default(),
            dry_run: Default::default(),
            follower: Default::default(),
        })
    }
}

impl FakeOrchestrator {
    pub fn replicas(&self, service: &str) -> u32 {
        let map = self.by_service.lock().unwrap();
        map.get(service).copied().unwrap_or(self.initial)
    }
}

impl starvation::orchestrator::Orchestrator for FakeOrchestrator {
    fn status<'a>(
        &'a self,
        service: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            starvation::orchestrator::ServiceStatus,
            starvation::orchestrator::OrchestratorError,
        >,
    > {
        Box::pin(async move {
            Ok(starvation::orchestrator::ServiceStatus {
                name: service.to_owned(),
                replicas: self.replicas(service),
                bounds: Default::default(),
                dry_run: self.dry_run.load(std::sync::atomic::Ordering::SeqCst),
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
    ) -> futures::future::BoxFuture<'a, Result<(), starvation::orchestrator::OrchestratorError>>
    {
        Box::pin(async move {
            use std::sync::atomic::Ordering;
            if self.fail.load(Ordering::SeqCst) {
                return Err(starvation::orchestrator::OrchestratorError::Backend(
                    "engine unreachable".into(),
                ));
            }
            // Slow enough that concurrent webhooks would overlap without serialization.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.scale_calls.fetch_add(1, Ordering::SeqCst);
            self.by_service
                .lock()
                .unwrap()
                .insert(service.to_owned(), replicas);
            Ok(())
        })
    }

    fn services(
        &self,
    ) -> futures::future::BoxFuture<
        '_,
        Result<
            Vec<starvation::orchestrator::ServiceStatus>,
            starvation::orchestrator::OrchestratorError,
        >,
    > {
        Box::pin(async move { Ok(vec![self.status("web").await?]) })
    }

    fn may_act(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<(), starvation::orchestrator::OrchestratorError>>
    {
        Box::pin(async move {
            if self.follower.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(starvation::orchestrator::OrchestratorError::NotLeader(
                    "this scaler's Swarm manager (10.0.0.2:2377) is not the leader".into(),
                ));
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        "fake".into()
    }
}

/// An Alertmanager v4 webhook body with one alert for `service`.
pub fn webhook(
    status: &str,
    fingerprint: &str,
    starts_at: &str,
    service: &str,
) -> serde_json::Value {
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"ThreadPoolStarvation\"}",
        "status": status,
        "receiver": "alertapi",
        "groupLabels": {"alertname": "ThreadPoolStarvation", "service": service},
        "commonLabels": {"alertname": "ThreadPoolStarvation", "service": service},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": {"alertname": "ThreadPoolStarvation", "service": service, "severity": "critical"},
            "annotations": {"value": "30", "summary": "queue above 20 for 5s"},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint
        }]
    })
}

/// POSTs a firing webhook (see [`webhook`]) to the scaler at `addr` without a token:
/// (status, JSON body).
pub async fn fire_alert(
    addr: SocketAddr,
    fingerprint: &str,
    service: &str,
) -> (u16, serde_json::Value) {
    let body = webhook("firing", fingerprint, "2026-12-07T10:00:00Z", service);
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/alert"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Starts the scaler in-process on a loopback port with `args` (alertapi flags).
pub async fn start_scaler(
    args: &[&str],
    token: Option<&str>,
    orchestrator: std::sync::Arc<dyn starvation::orchestrator::Orchestrator>,
) -> starvation::scaler::Server {
    use clap::Parser;
    let mut all = vec!["alertapi", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let opts = starvation::scaler::Opts::try_parse_from(all).unwrap();
    let cfg = opts.controller_config().unwrap();
    let access = starvation::scaler::http::Access {
        token: token.map(str::to_owned),
        protect_reads: opts.access().unwrap().protect_reads,
    };
    starvation::scaler::Server::start(opts.listen, access, opts.limits.clone(), orchestrator, cfg)
        .await
        .unwrap()
}

/// The `instance`s answering `/test-threadpool` on `listen` (replicas sharing a port), one new
/// connection per request so the kernel picks a replica each time; stops once `want` are seen.
pub async fn instances_serving(listen: &str, want: usize) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let body: serde_json::Value = client
            .get(format!("http://{listen}/test-threadpool"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.insert(body["instance"].as_str().unwrap().to_owned());
        if seen.len() == want {
            break;
        }
    }
    seen
}

/// `docker ARGS`: (success, stdout + stderr).
pub fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("running docker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`docker`], failing the test when the command fails.
pub fn docker_ok(args: &[&str]) -> String {
    let (ok, text) = docker(args);
    assert!(ok, "docker {}: {text}", args.join(" "));
    text
}

/// This node's id in an active Swarm; fails the test saying what to do when there is none.
pub fn swarm_node(test: &str) -> String {
    external("docker", "docker.io", test);
    let (ok, state) = docker(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
    ]);
    let mut parts = state.split_whitespace();
    match (ok, parts.next(), parts.next()) {
        (true, Some("active"), Some(node)) => node.to_owned(),
        (false, ..) => panic!("{test}: no Docker Engine: {state}"),
        _ => panic!(
            "{test}: not in a swarm ({state}): run `docker swarm init --advertise-addr 127.0.0.1`"
        ),
    }
}

/// The five images of the stack, tagged `tag`.
pub fn stack_images(tag: &str) -> Vec<String> {
    starvation::experiment::swarm::IMAGES
        .iter()
        .map(|i| format!("{i}:{tag}"))
        .collect()
}

/// The .NET workload's image, tagged `tag` (`deploy/build-images.sh --dotnet`).
pub fn dotnet_image(tag: &str) -> String {
    format!("{}:{tag}", starvation::experiment::swarm::DOTNET_IMAGE)
}

/// Builds every image of the stack from scratch with `deploy/build-images.sh --all` (incremental).
pub fn build_stack_images(tag: &str) {
    build_images(tag, false);
}

/// [`build_stack_images`], with `dotnet` also the .NET workload's image (`--dotnet`).
pub fn build_images(tag: &str, dotnet: bool) {
    let root = env!("CARGO_MANIFEST_DIR");
    let started = Instant::now();
    let mut args = vec![
        "--profile".to_owned(),
        "dev".into(),
        "--tag".into(),
        format!("starvation:{tag}"),
        "--all".into(),
    ];
    let mut images = stack_images(tag);
    if dotnet {
        args.push("--dotnet".into());
        images.push(dotnet_image(tag));
    }
    let status = Command::new(format!("{root}/deploy/build-images.sh"))
        .args(&args)
        .current_dir(root)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "deploy/build-images.sh {} failed",
        args.join(" ")
    );
    for image in images {
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    }
    eprintln!("images built in {:.0} s", started.elapsed().as_secs_f64());
}

/// Removes these images when dropped, also when the test fails.
pub struct RemoveImages(pub Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for image in &self.0 {
            docker(&["image", "rm", "-f", image]);
        }
    }
}

/// What the Swarm holds that an experiment could add (services, containers, networks, configs,
/// secrets, volumes, this node's labels), as sorted lines.
pub fn swarm_snapshot(node: &str) -> Vec<String> {
    let mut all = Vec::new();
    for args in [
        vec!["service", "ls", "-q"],
        vec!["ps", "-aq"],
        vec!["network", "ls", "-q"],
        vec!["config", "ls", "-q"],
        vec!["secret", "ls", "-q"],
        vec!["volume", "ls", "-q"],
        vec!["node", "inspect", "--format", "{{json .Spec.Labels}}", node],
    ] {
        let (_, out) = docker(&args);
        all.extend(out.lines().map(|l| format!("{}: {l}", args.join(" "))));
    }
    all.sort();
    all
}
