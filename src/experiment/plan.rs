//! The experiment's plan (`experiment.json`) and its folder: the flags checked and what cannot
//! run refused before anything starts, a new dated folder (or `--out`), or, with `--resume`,
//! the saved plan read back and checked against the flags given again.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

use super::{BackendKind, LoadKind, MonitorKind, Opts, Profile, STATE_FILE, WorkloadKind, swarm};
use crate::monitor;

/// The experiment's plan, saved in `experiment.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: String,
    pub runs: u32,
    pub profile: Profile,
    /// The rule file's text (so a resumed experiment evaluates the same rules).
    pub rules: String,
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub backend: BackendKind,
    #[serde(default)]
    pub monitor: MonitorKind,
    #[serde(default)]
    pub swarm: swarm::SwarmOpts,
    #[serde(default)]
    pub load: LoadKind,
    #[serde(default)]
    pub workload: WorkloadKind,
    /// Where the .NET runtime is (`--workload dotnet`).
    #[serde(default)]
    pub dotnet: crate::dotnet::RuntimeOpts,
    /// `--workload dotnet`: the Microsoft.NETCore.App version found when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dotnet_runtime: Option<String>,
    /// `--reference`: a `starvation compare` folder of the same profile the report compares
    /// the baseline with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<PathBuf>,
}

const STATE_FORMAT: &str = "starvation-experiment/1";

/// The monitor a backend runs with: `--monitor` if it fits the backend, else its default.
fn monitor_kind_for(
    backend: BackendKind,
    monitor: Option<MonitorKind>,
) -> anyhow::Result<MonitorKind> {
    match (backend, monitor) {
        (BackendKind::Local, m) => Ok(m.unwrap_or_default()),
        (BackendKind::Swarm, None | Some(MonitorKind::Prometheus)) => Ok(MonitorKind::Prometheus),
        (BackendKind::Swarm, Some(MonitorKind::Embedded)) => anyhow::bail!(
            "--backend swarm --monitor embedded: the swarm backend is watched by the stack's own \
             Prometheus; drop --monitor (or say --monitor prometheus)"
        ),
    }
}

/// Refuses a workload that cannot run here, before anything starts; with `dotnet`, finds the
/// runtime and builds the service (or says what to install) and returns it.
/// (On the swarm backend the replicas run the image's runtime: [`swarm::preflight`] checks the
/// image and says which.)
fn check_workload(
    workload: WorkloadKind,
    dotnet: &crate::dotnet::RuntimeOpts,
    profile: &Profile,
) -> anyhow::Result<Option<crate::dotnet::Sut>> {
    if workload == WorkloadKind::Model {
        return Ok(None);
    }
    if !profile.serve_args.is_empty() {
        eprintln!(
            "note: --workload dotnet: the profile's serve_args ({}) tune the model's pool and are \
             not given to the .NET replicas (the runtime has its own pool)",
            crate::util::redact::args(&profile.serve_args).join(" ")
        );
    }
    Ok(Some(crate::dotnet::Sut::prepare(
        dotnet.dotnet_root.as_deref(),
    )?))
}

/// What [`prepare`] settled: the plan, the folder it writes, and with `--workload dotnet` the
/// .NET service found and built (once, for every run).
pub(super) struct Prepared {
    pub state: State,
    pub out: PathBuf,
    pub sut: Option<crate::dotnet::Sut>,
}

/// Refuses a `--reference` folder that is unreadable or compared another load.
fn check_reference(reference: Option<&Path>, profile: &Profile) -> anyhow::Result<()> {
    if let Some(dir) = reference {
        super::reference::dotnet_curves(dir, profile)?;
    }
    Ok(())
}

/// Refuses a load generator that cannot run here, before anything starts.
fn check_load(load: LoadKind, backend: BackendKind, profile: &Profile) -> anyhow::Result<()> {
    if load == LoadKind::K6 {
        anyhow::ensure!(
            backend == BackendKind::Local,
            "--load k6 --backend swarm: the swarm backend sends its load from a container of \
             the starvation image, which holds no k6; use --load builtin there"
        );
        crate::load::k6::check(&profile.schedule()?)?;
        crate::load::k6::find()?;
    }
    Ok(())
}

/// The parent of the dated default output folders, and its `latest` link.
pub const DEFAULT_OUT_ROOT: &str = "experiment";
pub const LATEST_LINK: &str = "latest";

/// A new dated folder under `root` (`2026-12-01_22-38-04`, `-2` … if taken).
fn new_dated_dir(root: &Path) -> PathBuf {
    let stamp = Utc::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    let mut dir = root.join(&stamp);
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// Point `root/latest` at `dir` (a relative symlink, replaced atomically).
fn link_latest(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let Some(name) = dir.file_name() else {
        return Ok(());
    };
    let link = root.join(LATEST_LINK);
    let tmp = root.join(format!(".{LATEST_LINK}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &link))
        .with_context(|| format!("pointing {} at {}", link.display(), dir.display()))
}

/// The experiment's plan and its folder: read back on --resume, else checked and written.
/// Every flag is checked before the output folder is looked at, so a bad flag is reported as
/// the bad flag.
pub(super) async fn prepare(opts: &Opts) -> anyhow::Result<Prepared> {
    if opts.resume {
        let out = opts
            .out
            .clone()
            .unwrap_or_else(|| Path::new(DEFAULT_OUT_ROOT).join(LATEST_LINK));
        let (state, sut) = resume_state(opts, &out).await?;
        return Ok(Prepared { state, out, sut });
    }
    let profile = Profile::resolve(opts.profile.as_deref().unwrap_or("paper"))?;
    check_reference(opts.reference.as_deref(), &profile)?;
    let rules_path = opts.rules.clone().or_else(|| profile.rules.clone());
    let rules = match &rules_path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("--rules {}: cannot read it", p.display()))?,
        None => monitor::rules::DEFAULT_RULES.to_string(),
    };
    let backend = opts.backend.unwrap_or_default();
    let monitor_kind = monitor_kind_for(backend, opts.monitor)?;
    let load = opts.load.unwrap_or_default();
    check_load(load, backend, &profile)?;
    let workload = opts.workload.unwrap_or_default();
    let sut = check_workload(workload, &opts.dotnet, &profile)?;
    let mut dotnet_runtime = sut.as_ref().map(|s| s.runtime.version.clone());
    // Refuse what cannot run before anything starts: rules the embedded monitor cannot
    // evaluate, missing Prometheus binaries, no Swarm.
    match (backend, monitor_kind) {
        (BackendKind::Local, MonitorKind::Embedded) => {
            monitor::parse_rules(&rules)?;
        }
        (BackendKind::Local, MonitorKind::Prometheus) => {
            monitor::prometheus::check_binaries()?;
            monitor::prometheus::check_rules(&rules)?;
        }
        (BackendKind::Swarm, _) => {
            monitor::prometheus::check_rules(&rules)?;
            if let Some(image_runtime) = swarm::preflight(&opts.swarm, workload).await? {
                dotnet_runtime = Some(image_runtime);
            }
        }
    }
    let out = match &opts.out {
        Some(out) => {
            if out.join(STATE_FILE).exists() || out.join("runs").exists() {
                anyhow::bail!(
                    "--out {} already holds an experiment: continue it with --resume --out {0}, \
                     or choose another --out (without --out, each experiment gets a new folder)",
                    out.display()
                );
            }
            out.clone()
        }
        None => new_dated_dir(Path::new(DEFAULT_OUT_ROOT)),
    };
    let st = State {
        format: STATE_FORMAT.into(),
        runs: opts.runs.unwrap_or(1),
        profile,
        rules,
        started: Utc::now(),
        backend,
        monitor: monitor_kind,
        swarm: opts.swarm.clone(),
        load,
        workload,
        dotnet: opts.dotnet.clone(),
        dotnet_runtime,
        reference: opts.reference.clone(),
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("--out {}: cannot create it", out.display()))?;
    crate::util::write_atomic(&out.join(STATE_FILE), &serde_json::to_vec_pretty(&st)?)?;
    if opts.out.is_none() {
        link_latest(Path::new(DEFAULT_OUT_ROOT), &out)?;
    }
    Ok(Prepared {
        state: st,
        out,
        sut,
    })
}

/// The saved plan of the experiment in `out`, checked against the flags given with --resume.
async fn resume_state(
    opts: &Opts,
    out: &Path,
) -> anyhow::Result<(State, Option<crate::dotnet::Sut>)> {
    let state_path = out.join(STATE_FILE);
    let bytes = std::fs::read(&state_path).with_context(|| {
        format!(
            "--resume: no experiment to continue in {} (no {STATE_FILE})",
            out.display()
        )
    })?;
    let mut st: State = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: unreadable", state_path.display()))?;
    anyhow::ensure!(
        st.format == STATE_FORMAT,
        "{}: format {:?}, this version reads {STATE_FORMAT:?}",
        state_path.display(),
        st.format
    );
    // The saved profile lacks its serve_args' secrets (they are redacted): compare what can
    // be compared, and take the secrets from the profile given again.
    if let Some(p) = &opts.profile {
        let given = Profile::resolve(p)?;
        anyhow::ensure!(
            given.shown() == st.profile,
            "--resume --profile {p}: differs from the profile this experiment started with; \
             drop --profile to continue it, or start a new experiment"
        );
        st.profile = given;
    } else if !st.profile.redacted_args().is_empty() {
        anyhow::bail!(
            "--resume: {} holds the profile's serve_args with their secrets hidden ({}); \
             give the profile again: --resume --out {} --profile FILE",
            state_path.display(),
            st.profile.redacted_args().join(" "),
            out.display()
        );
    }
    if let Some(r) = opts.runs {
        st.runs = r;
    }
    if opts.reference.is_some() {
        st.reference = opts.reference.clone();
    }
    check_reference(st.reference.as_deref(), &st.profile)?;
    if opts.backend.is_some_and(|b| b != st.backend)
        || opts.monitor.is_some_and(|m| m != st.monitor)
        || opts.load.is_some_and(|l| l != st.load)
        || opts.workload.is_some_and(|w| w != st.workload)
    {
        anyhow::bail!(
            "--resume: this experiment started with --backend {} --monitor {} --load {} \
             --workload {}; drop --backend/--monitor/--load/--workload to continue it, or start \
             a new experiment",
            st.backend.as_str(),
            st.monitor.as_str(),
            st.load.as_str(),
            st.workload.as_str()
        );
    }
    check_load(st.load, st.backend, &st.profile)?;
    if opts.dotnet.dotnet_root.is_some() {
        st.dotnet = opts.dotnet.clone();
    }
    let sut = check_workload(st.workload, &st.dotnet, &st.profile)?;
    let mut runtime = sut.as_ref().map(|s| s.runtime.version.clone());
    st.swarm = st.swarm.resumed(&opts.swarm);
    if st.backend == BackendKind::Swarm
        && let Some(image_runtime) = swarm::preflight(&st.swarm, st.workload).await?
    {
        runtime = Some(image_runtime);
    }
    anyhow::ensure!(
        runtime == st.dotnet_runtime,
        "--resume: this experiment's replicas ran on .NET {}, this runtime is {}; give \
         --dotnet-root of the first (--backend swarm: rebuild the image with it), or start a \
         new experiment",
        st.dotnet_runtime.as_deref().unwrap_or("-"),
        runtime.as_deref().unwrap_or("-")
    );
    if st.monitor == MonitorKind::Embedded {
        monitor::parse_rules(&st.rules)?;
    }
    Ok((st, sut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Opts,
    }

    fn opts(args: &[&str]) -> Opts {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("experiment").chain(args.iter().copied()))
            .unwrap()
            .opts
    }

    #[tokio::test]
    async fn a_reference_of_another_load_is_refused_before_anything_runs() {
        let reference = super::super::reference::tests::folder(
            "burst: 20 concurrent requests (cut at 1m)",
            "1,dotnet,0,1,1,0,,,0\n",
        );
        let out = tempfile::tempdir().unwrap();
        let out = out.path().join("exp");
        let o = opts(&[
            "--profile",
            "quick",
            "--reference",
            reference.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = prepare(&o).await.err().expect("refused").to_string();
        assert!(e.contains("it compared under `burst"), "{e}");
        assert!(e.contains("--scenario profile:quick"), "{e}");
        assert!(!out.exists(), "nothing written before the refusal");
    }

    #[tokio::test]
    async fn a_reference_of_the_profile_is_recorded_in_the_plan() {
        let quick = Profile::quick();
        let reference = super::super::reference::tests::folder(
            &format!("profile quick: stages {}", quick.stages),
            "1,dotnet,0,1,1,0,,,0\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("exp");
        let o = opts(&[
            "--profile",
            "quick",
            "--reference",
            reference.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let p = prepare(&o).await.unwrap();
        assert_eq!(p.state.reference.as_deref(), Some(reference.path()));
        let saved: State =
            serde_json::from_slice(&std::fs::read(out.join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(saved.reference.as_deref(), Some(reference.path()));
        // --resume sees it without the flag.
        let o = opts(&["--resume", "--out", out.to_str().unwrap()]);
        let (st, _) = resume_state(&o, &out).await.unwrap();
        assert_eq!(st.reference.as_deref(), Some(reference.path()));
    }
}
