//! `starvation serve`: the system under test. An HTTP service whose `/test-threadpool` blocks a
//! thread of a .NET-like pool, so a burst of requests starves the pool exactly like the paper's
//! .NET 8 service; with the original's gauges, a Pushgateway pusher and a document store.

pub mod hill_climbing;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod process;
pub mod pusher;
pub mod socket_engine;
pub mod store;

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use hill_climbing::HillClimbingConfig;
use metrics::Metrics;
use pool::{CpuSource, PoolConfig, ThreadPool};
use process::CpuMeter;
use store::Store;

use crate::util::http_server::ServerLimits;
use crate::util::{parse_duration, shutdown_signal};

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Run the workload service: HTTP on --listen, a .NET-like thread pool that \
starves under blocking load, the original's gauges on /metrics and, with --pushgateway, pushed \
every --push-interval."
)]
pub struct Opts {
    /// Address to listen on (the paper's service used port 5000).
    #[arg(long, env = "STARVATION_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,

    /// How long each /test-threadpool request blocks its pool thread, in milliseconds (the
    /// original's Thread.Sleep(2000) inside Task.Run(...).Wait()).
    #[arg(long, env = "STARVATION_BLOCK_MS", default_value_t = 2000)]
    pub block_ms: u64,

    /// Pool min threads: threads released at once, before starvation injection is needed.
    /// Default: the processor count, cgroup-aware and rounded up like .NET.
    #[arg(long, env = "STARVATION_MIN_THREADS")]
    pub min_threads: Option<u32>,

    /// Pool max worker threads (.NET: 32767).
    #[arg(long, env = "STARVATION_MAX_THREADS", default_value_t = 32767)]
    pub max_threads: u32,

    /// Gate thread period: how often starvation is checked, on a grid from the first thread
    /// request (.NET: 500ms).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub gate_interval: Duration,

    /// Age of the pool's last progress (a thread request taken or a work item completed) after
    /// which a pending request counts as starved, while CPU is below --cpu-high-percent
    /// (.NET: 500ms).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub starvation_delay: Duration,

    /// Process CPU usage (percent of all processors) from which injection slows down (.NET: 80).
    #[arg(long, default_value_t = 80.0)]
    pub cpu_high_percent: f64,

    /// At high CPU a pending request must wait goal x this before a thread is injected
    /// (.NET: 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub cpu_high_delay_per_thread: Duration,

    /// Idle pool threads exit after this long without work (.NET: 20s).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a newly created pool thread waits before taking its first work item, to
    /// imitate a slow thread start (.NET 8 here: 0–16ms in a probe of a burst, 44ms on a busier
    /// machine). Default 0: the pool's threads start at once.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub thread_start_delay: Duration,

    /// Turn hill climbing off: the goal then moves only by starvation injection and idle
    /// retirement (.NET: `System.Threading.ThreadPool.HillClimbing.Disable`). Default: on, as
    /// in .NET.
    #[arg(long)]
    pub no_hill_climbing: bool,

    /// Seed of hill climbing's random sample intervals (10–200 ms). Default: the process id,
    /// as .NET seeds it; give one to make a replica's moves repeatable.
    #[arg(long, value_name = "N")]
    pub pool_seed: Option<u64>,

    /// Reported max_completion_port_threads (.NET on Linux: 1000; none are ever busy).
    #[arg(long, default_value_t = 1000)]
    pub max_completion_port_threads: u32,

    /// Pushgateway base URL, e.g. http://pushgateway:9091. Gauges are pushed under
    /// job=webserver, instance=--instance, and the group is deleted at shutdown.
    #[arg(long, env = "STARVATION_PUSHGATEWAY")]
    pub pushgateway: Option<String>,

    /// The `service` label of the pushed gauges, which the alert rules aggregate by and the
    /// scaler scales (on Swarm: the service name, e.g. `{{.Service.Name}}` in the stack file).
    #[arg(long, env = "STARVATION_SERVICE", default_value = "webserver")]
    pub service: String,

    /// How often the gauges are pushed, whatever the request traffic.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub push_interval: Duration,

    /// This replica's `instance` label (letters, digits, `.`, `_`, `:`, `-`). Default:
    /// hostname:port, plus `-<pid>` with --reuse-port since replicas then share the port.
    #[arg(long, env = "STARVATION_INSTANCE")]
    pub instance: Option<String>,

    /// Directory of the SQLite store (created if missing; replicas may share it).
    #[arg(long, env = "STARVATION_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Store documents in MongoDB (database ThreadPoolTestDb, collection TestData) instead
    /// of SQLite, e.g. mongodb://user:pass@mongo:27017.
    #[arg(long, env = "STARVATION_MONGODB_URI")]
    pub mongodb_uri: Option<String>,

    /// Where each request's document goes: `sqlite` (in --data-dir) or `mongodb` (needs
    /// --mongodb-uri). Default: mongodb when --mongodb-uri is given, else sqlite. The
    /// experiment always says which, so a variable in the shell cannot switch its replicas.
    #[arg(long, value_enum, env = "STARVATION_STORE")]
    pub store: Option<StoreKind>,

    /// Set SO_REUSEPORT so several replicas on one machine share --listen; the kernel spreads
    /// connections between them.
    #[arg(long)]
    pub reuse_port: bool,

    /// How requests reach the pool. `direct` (default): the front door never starves; each
    /// request is one pool item, so the queue-length gauge is the whole backlog. `dotnet`: as
    /// .NET on Linux, requests are read by the socket engine's work items (at most one queued,
    /// each draining for up to 15 ms) before they become pool items, so under starvation they
    /// wait where the queue-length gauge does not count them (socket_engine_* gauges show it).
    #[arg(
        long,
        value_enum,
        env = "STARVATION_IO_MODEL",
        default_value = "direct"
    )]
    pub io_model: IoModel,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Requests it cuts
    /// make the exit status 1.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    #[command(flatten)]
    pub limits: ServerLimits,
}

/// The longest `--block-ms`: ten minutes (the paper's is 2000).
pub const MAX_BLOCK_MS: u64 = 600_000;

/// Where a replica stores its documents (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Mongodb,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Mongodb => "mongodb",
        }
    }
}

/// Parse a replica's `serve` arguments as `serve` would, but from these arguments alone (no
/// `STARVATION_*` variable of this process counts: a local replica does not inherit them), and
/// check every value; the experiment refuses a profile with this before anything starts.
pub fn parse_replica_args<I, S>(args: I) -> anyhow::Result<Opts>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Opts::command()
        .name("serve")
        .mut_args(|a| a.env(None::<&str>));
    let argv =
        std::iter::once(std::ffi::OsString::from("serve")).chain(args.into_iter().map(Into::into));
    let matches = cmd.try_get_matches_from(argv)?;
    let opts = Opts::from_arg_matches(&matches)?;
    opts.pool_config()?;
    Ok(opts)
}

/// How requests reach the pool (`--io-model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoModel {
    /// Each request is one pool item at once.
    Direct,
    /// Through a model of .NET's Linux socket engine (see `socket_engine`).
    Dotnet,
}

impl Opts {
    /// The store this replica uses: `--store`, else mongodb when --mongodb-uri is given.
    pub fn store_kind(&self) -> StoreKind {
        self.store.unwrap_or(if self.mongodb_uri.is_some() {
            StoreKind::Mongodb
        } else {
            StoreKind::Sqlite
        })
    }

    /// Checks every flag before anything starts; each error names its flag and the fix.
    pub fn pool_config(&self) -> anyhow::Result<PoolConfig> {
        let processors = process::processor_count();
        let min_threads = self.min_threads.unwrap_or(processors);
        anyhow::ensure!(
            min_threads >= 1,
            "--min-threads must be at least 1 (got {min_threads})"
        );
        anyhow::ensure!(
            (1..=32767).contains(&self.max_threads),
            "--max-threads must be between 1 and 32767 (got {})",
            self.max_threads
        );
        anyhow::ensure!(
            min_threads <= self.max_threads,
            "--min-threads ({min_threads}) is above --max-threads ({}); lower --min-threads or raise --max-threads",
            self.max_threads
        );
        for (flag, value) in [
            ("--gate-interval", self.gate_interval),
            ("--starvation-delay", self.starvation_delay),
            (
                "--cpu-high-delay-per-thread",
                self.cpu_high_delay_per_thread,
            ),
            ("--idle-timeout", self.idle_timeout),
            ("--push-interval", self.push_interval),
        ] {
            anyhow::ensure!(
                !value.is_zero(),
                "{flag} must be greater than zero (e.g. 500ms)"
            );
        }
        anyhow::ensure!(
            !(self.store == Some(StoreKind::Mongodb) && self.mongodb_uri.is_none()),
            "--store mongodb needs --mongodb-uri (e.g. mongodb://mongo:27017)"
        );
        anyhow::ensure!(
            self.thread_start_delay <= Duration::from_secs(10),
            "--thread-start-delay must be at most 10s (got {:?}); .NET's is 0–44ms",
            self.thread_start_delay
        );
        anyhow::ensure!(
            self.block_ms <= MAX_BLOCK_MS,
            "--block-ms must be at most {MAX_BLOCK_MS} (ten minutes; got {}); the paper's is 2000",
            self.block_ms
        );
        self.limits.check()?;
        anyhow::ensure!(
            self.cpu_high_percent > 0.0 && self.cpu_high_percent <= 100.0,
            "--cpu-high-percent must be in (0, 100] (got {})",
            self.cpu_high_percent
        );
        Ok(PoolConfig {
            min_threads,
            max_threads: self.max_threads,
            gate_interval: self.gate_interval,
            starvation_delay: self.starvation_delay,
            cpu_high_percent: self.cpu_high_percent,
            cpu_high_delay_per_thread: self.cpu_high_delay_per_thread,
            idle_timeout: self.idle_timeout,
            thread_start_delay: self.thread_start_delay,
            tick_resolution: Duration::from_millis(4),
            hill_climbing: (!self.no_hill_climbing).then(HillClimbingConfig::dotnet_defaults),
            seed: self
                .pool_seed
                .unwrap_or_else(|| u64::from(std::process::id())),
        })
    }

    fn pushgateway_url(&self) -> anyhow::Result<Option<String>> {
        let Some(raw) = &self.pushgateway else {
            return Ok(None);
        };
        let shown = crate::util::redact::url(raw);
        let url = reqwest::Url::parse(raw).map_err(|e| {
            anyhow::anyhow!(
                "--pushgateway {shown:?} is not a URL ({e}); expected e.g. http://pushgateway:9091"
            )
        })?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https") && url.host().is_some(),
            "--pushgateway {shown:?} must be an http(s) URL with a host, e.g. http://pushgateway:9091"
        );
        Ok(Some(raw.trim_end_matches('/').to_owned()))
    }

    fn check_label(flag: &str, value: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)),
            "{flag} {value:?} may hold only letters, digits, '.', '_', ':' and '-'"
        );
        Ok(())
    }

    fn instance_name(&self, bound: SocketAddr) -> anyhow::Result<String> {
        let name = match &self.instance {
            Some(name) => name.clone(),
            None => {
                let host = gethostname::gethostname().to_string_lossy().into_owned();
                let mut name = format!("{host}:{}", bound.port());
                if self.reuse_port {
                    name.push_str(&format!("-{}", std::process::id()));
                }
                name
            }
        };
        Self::check_label("--instance", &name)?;
        Ok(name)
    }
}

/// The gate thread samples CPU each tick (like .NET's gate); the gauge shows the latest sample.
struct GateCpu {
    meter: CpuMeter,
    latest_bits: AtomicU64,
}

impl GateCpu {
    fn latest(&self) -> f64 {
        f64::from_bits(self.latest_bits.load(Ordering::Relaxed))
    }
}

impl CpuSource for GateCpu {
    fn cpu_percent(&self) -> f64 {
        let p = self.meter.sample();
        self.latest_bits.store(p.to_bits(), Ordering::Relaxed);
        p
    }
}

/// Shared state of one running service.
pub struct App {
    pub pool: Arc<ThreadPool>,
    /// `--io-model dotnet`: the socket engine requests pass first.
    pub engine: Option<Arc<socket_engine::SocketEngine>>,
    pub metrics: Metrics,
    pub store: Box<dyn Store>,
    pub instance: String,
    block: Duration,
    completion_port_max: u32,
    cpu: Arc<GateCpu>,
    in_flight: AtomicUsize,
}

impl App {
    pub fn refresh_metrics(&self) {
        let engine = self
            .engine
            .as_ref()
            .map(|e| e.backlog())
            .unwrap_or_default();
        self.metrics.refresh(
            &self.pool.snapshot(),
            self.cpu.latest(),
            self.completion_port_max,
        );
        self.metrics.refresh_engine(engine);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// A started service: bound, serving, pushing. Stop it with [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    stop_serving: CancellationToken,
    stop_pushing: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
    pushing: Option<tokio::task::JoinHandle<()>>,
    drain_timeout: Duration,
}

impl Server {
    /// Validate the options, open the store, bind, and start serving and pushing.
    pub async fn start(opts: Opts) -> anyhow::Result<Server> {
        let pool_config = opts.pool_config()?;
        let pushgateway = opts.pushgateway_url()?;
        Opts::check_label("--service", &opts.service)?;
        let store: Box<dyn Store> = match (opts.store_kind(), &opts.mongodb_uri) {
            (StoreKind::Mongodb, Some(uri)) => Box::new(store::MongoStore::connect(uri).await?),
            _ => Box::new(store::SqliteStore::open(&opts.data_dir)?),
        };
        let listener = bind(opts.listen, opts.reuse_port).with_context(|| {
            format!(
                "--listen {}: cannot bind; is another replica on that port? pick another \
                 port, or pass --reuse-port to every replica sharing it",
                opts.listen
            )
        })?;
        let addr = listener.local_addr()?;
        let instance = opts.instance_name(addr)?;
        let cpu = Arc::new(GateCpu {
            meter: CpuMeter::new(process::processor_count()),
            latest_bits: AtomicU64::new(0f64.to_bits()),
        });
        let pool =
            Arc::new(ThreadPool::start(pool_config, cpu.clone()).context("starting the pool")?);
        let engine = match opts.io_model {
            IoModel::Direct => None,
            IoModel::Dotnet => Some(socket_engine::SocketEngine::new(&pool)),
        };
        let app = Arc::new(App {
            pool,
            engine,
            metrics: Metrics::new(),
            store,
            instance,
            block: Duration::from_millis(opts.block_ms),
            completion_port_max: opts.max_completion_port_threads,
            cpu,
            in_flight: AtomicUsize::new(0),
        });
        tracing::info!(
            "serving on {addr} as instance {} (store: {}, min threads {})",
            app.instance,
            app.store.describe(),
            app.pool.config().min_threads
        );

        let stop_serving = CancellationToken::new();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let serving = tokio::spawn(crate::util::http_server::serve(
            listener,
            http::router(app.clone()),
            opts.limits.clone(),
            "serve",
            stop_serving.clone(),
        ));

        let stop_pushing = CancellationToken::new();
        let pushing = pushgateway.map(|gateway| {
            let pusher =
                pusher::Pusher::new(&gateway, &app.instance, &opts.service, opts.push_interval);
            tracing::info!(
                "pushing gauges to {} every {:?}",
                crate::util::redact::url(pusher.group_url()),
                opts.push_interval
            );
            tokio::spawn(pusher.run(app.clone(), stop_pushing.clone()))
        });
        Ok(Server {
            addr,
            app,
            stop_serving,
            stop_pushing,
            serving,
            pushing,
            drain_timeout: opts.drain_timeout,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stop accepting, let in-flight requests finish within the drain timeout, then stop the
    /// pusher (which deletes its Pushgateway group). Requests the timeout cut are an error.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop_serving.cancel();
        let mut serving = self.serving;
        let mut cut = 0;
        match tokio::time::timeout(self.drain_timeout, &mut serving).await {
            Ok(result) => result.context("the HTTP server task failed")?,
            Err(_) => {
                cut = self.app.in_flight();
                tracing::warn!(
                    "drain timeout ({:?}) reached with {cut} requests in flight; dropping them",
                    self.drain_timeout,
                );
                serving.abort();
            }
        }
        self.stop_pushing.cancel();
        if let Some(pushing) = self.pushing {
            let _ = tokio::time::timeout(Duration::from_secs(10), pushing).await;
        }
        anyhow::ensure!(
            cut == 0,
            "the drain timeout ({}) cut {cut} requests in flight; raise --drain-timeout to let \
             them finish",
            humantime::format_duration(self.drain_timeout)
        );
        Ok(())
    }
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let signal = shutdown_signal()?;
    let server = Server::start(opts).await?;
    // Scripts and tests read the bound address (useful with port 0) from this line.
    println!("listening on http://{}", server.local_addr());
    signal.await;
    server.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Opts {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Opts::try_parse_from(all).unwrap()
    }

    #[test]
    fn bad_flags_name_themselves() {
        let err = |args: &[&str]| opts(args).pool_config().unwrap_err().to_string();
        assert!(err(&["--min-threads", "9", "--max-threads", "4"]).contains("--min-threads (9)"));
        assert!(err(&["--min-threads", "0"]).contains("--min-threads"));
        assert!(err(&["--idle-timeout", "0s"]).contains("--idle-timeout"));
        assert!(err(&["--push-interval", "0ms"]).contains("--push-interval"));
        assert!(err(&["--max-threads", "40000"]).contains("--max-threads"));
        let e = opts(&["--pushgateway", "not a url"])
            .pushgateway_url()
            .unwrap_err();
        assert!(e.to_string().contains("--pushgateway"));
        let e = opts(&["--pushgateway", "ftp://x"])
            .pushgateway_url()
            .unwrap_err();
        assert!(e.to_string().contains("http(s)"));
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let e = opts(&["--instance", "a/b"])
            .instance_name(addr)
            .unwrap_err();
        assert!(e.to_string().contains("--instance"));
        assert!(Opts::try_parse_from(["serve", "--gate-interval", "soon"]).is_err());
    }

    #[test]
    fn defaults_follow_dotnet() {
        let o = opts(&[]);
        let cfg = o.pool_config().unwrap();
        assert_eq!(cfg.min_threads, process::processor_count());
        let seeded = PoolConfig {
            seed: u64::from(std::process::id()),
            ..PoolConfig::dotnet_defaults(process::processor_count())
        };
        assert_eq!(cfg, seeded);
        assert_eq!(o.listen.port(), 5000);
        assert_eq!(o.block_ms, 2000);
        let addr: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert!(o.instance_name(addr).unwrap().ends_with(":5000"));
        let shared = opts(&["--reuse-port"]).instance_name(addr).unwrap();
        assert!(shared.ends_with(&format!(":5000-{}", std::process::id())));
    }
}
