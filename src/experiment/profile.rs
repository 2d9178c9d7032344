//! Experiment profiles: `paper`, `quick`, or a TOML file (`deny_unknown_fields`; see
//! `scenarios/experiment-example.toml`).

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Everything that defines one pair of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A name for reports.
    pub name: String,
    /// Load stages, `TARGET:DURATION,...` (iterations per second), as `starvation load --stages`.
    pub stages: String,
    /// Rate at the start of the first stage (iterations per second).
    #[serde(default = "one")]
    pub start_rate: f64,
    /// How long each request blocks a pool thread (`serve --block-ms`).
    pub block_ms: u64,
    /// The pool's minimum threads per replica (`serve --min-threads`).
    pub min_threads: u32,
    /// Replicas at the start of every run.
    #[serde(default = "one_u32")]
    pub initial_replicas: u32,
    /// Most replicas the scaler may run.
    pub max_replicas: u32,
    /// Seconds between two scale-ups (`alertapi --cooldown`).
    #[serde(default = "default_cooldown")]
    pub cooldown_s: u64,
    /// Seconds after its resolve within which a re-firing alert continues its episode
    /// (`alertapi --flap-window`; 0 makes every re-fire a new episode, as the paper's scaler).
    #[serde(default = "default_flap_window")]
    pub flap_window_s: u64,
    /// Request timeout (k6 `timeout`), seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// How long in-flight iterations may finish after the last stage (k6 `gracefulStop`), seconds.
    #[serde(default = "default_graceful")]
    pub graceful_stop_s: u64,
    /// VUs allocated before the run (k6 `preAllocatedVUs`).
    #[serde(default = "default_pre_vus")]
    pub pre_allocated_vus: u64,
    /// Most VUs (k6 `maxVUs`).
    #[serde(default = "default_max_vus")]
    pub max_vus: u64,
    /// Further `starvation serve` arguments for every replica (e.g. the pool's injection knobs).
    /// Saved and shown (experiment.json, report.json, report.md) with their credentials
    /// redacted (`crate::util::redact`), so `--resume` needs such a profile given again.
    #[serde(default, serialize_with = "serialize_redacted")]
    pub serve_args: Vec<String>,
    /// `--workload dotnet`: the processors the .NET runtime sees (`DOTNET_PROCESSOR_COUNT`),
    /// hence its pool's minimum threads; the paper's worker had one vCPU.
    #[serde(default = "one_u32")]
    pub dotnet_processors: u32,
    /// Alert rule file to evaluate instead of the embedded `deploy/prometheus/alert_rules.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<std::path::PathBuf>,
}

fn serialize_redacted<S: serde::Serializer>(args: &[String], s: S) -> Result<S::Ok, S::Error> {
    crate::util::redact::args(args).serialize(s)
}

fn one() -> f64 {
    1.0
}
fn one_u32() -> u32 {
    1
}
fn default_cooldown() -> u64 {
    15
}
fn default_flap_window() -> u64 {
    crate::scaler::policy::DEFAULT_FLAP_WINDOW.as_secs()
}
fn default_timeout() -> u64 {
    60
}
fn default_graceful() -> u64 {
    30
}
fn default_pre_vus() -> u64 {
    50
}
fn default_max_vus() -> u64 {
    1000
}

/// The longest load a run may have (and the longest of its other durations).
const MAX_LOAD: Duration = Duration::from_secs(24 * 3600);
/// The most replicas a profile may allow.
pub const MAX_REPLICAS: u32 = 100;

fn store_named(v: &str) -> crate::workload::StoreKind {
    <crate::workload::StoreKind as clap::ValueEnum>::from_str(v, true)
        .unwrap_or(crate::workload::StoreKind::Sqlite)
}

/// The paper profile's extra `serve` arguments: none. The pool runs .NET 8.0.4's own constants
/// and rules (docs/dotnet-pool.md, docs/workload.md "The pool model"). Earlier versions passed
/// `--starvation-delay 1630ms`, fitted by `calibrate` to the paper's busy-thread curve with no
/// mechanism behind it; `starvation compare` now measures the model against the runtime instead.
pub fn paper_pool_args() -> Vec<String> {
    Vec::new()
}

/// One part of a profile's load that is not the paper's (what makes its curves incomparable
/// with the paper's; the timeout, VUs and graceful stop do not change the load).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum LoadDifference {
    Stages {
        ours: String,
        paper: String,
    },
    StartRate {
        ours: f64,
        paper: f64,
    },
    BlockMs {
        ours: u64,
        paper: u64,
    },
    /// The paper's worker had one vCPU: a pool of minimum one thread.
    MinThreads {
        ours: u32,
        paper: u32,
    },
}

impl std::fmt::Display for LoadDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadDifference::Stages { ours, paper } => write!(f, "stages `{ours}` vs `{paper}`"),
            LoadDifference::StartRate { ours, paper } => {
                write!(f, "start rate {ours}/s vs {paper}/s")
            }
            LoadDifference::BlockMs { ours, paper } => {
                write!(f, "block time {ours} ms vs {paper} ms")
            }
            LoadDifference::MinThreads { ours, paper } => {
                write!(f, "min threads {ours} vs {paper}")
            }
        }
    }
}

/// Why a profile's runs are not compared with the paper's curves: every part of its load that
/// differs from the paper's (never empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotComparable {
    pub differences: Vec<LoadDifference>,
}

impl std::fmt::Display for NotComparable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.differences.iter().map(|d| d.to_string()).collect();
        write!(
            f,
            "this profile's load differs from the paper's ({})",
            parts.join("; ")
        )
    }
}

/// The same stages, however written (`30s` and `0.5m` alike); text that does not parse is
/// never the paper's.
fn same_stages(a: &str, b: &str) -> bool {
    match (crate::load::parse_stages(a), crate::load::parse_stages(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Profile {
    /// The paper: its k6 stages, 2 s blocking requests, a one-vCPU-like pool (min threads 1),
    /// one replica to start, up to 5.
    pub fn paper() -> Profile {
        Profile {
            name: "paper".into(),
            stages: crate::load::PAPER_STAGES.into(),
            start_rate: 1.0,
            block_ms: 2000,
            min_threads: 1,
            initial_replicas: 1,
            max_replicas: 5,
            cooldown_s: 15,
            flap_window_s: default_flap_window(),
            timeout_s: 60,
            graceful_stop_s: 30,
            pre_allocated_vus: 50,
            max_vus: 1000,
            serve_args: paper_pool_args(),
            dotnet_processors: 1,
            rules: None,
        }
    }

    /// The paper's shape in about two minutes a pair: stages a third as long, a shorter
    /// timeout and graceful stop.
    pub fn quick() -> Profile {
        Profile {
            name: "quick".into(),
            stages: "15:10s,20:10s,30:10s,35:10s,5:10s".into(),
            timeout_s: 30,
            graceful_stop_s: 10,
            cooldown_s: 10,
            flap_window_s: default_flap_window(),
            ..Profile::paper()
        }
    }

    /// `Ok` when this profile's load is the paper's: its stages, start rate, 2 s blocking
    /// requests and a pool of minimum one thread (the paper's one-vCPU worker). Only then are
    /// its curves compared with the paper's (the report's Fidelity and Goals).
    pub fn comparable_with_paper(&self) -> Result<(), NotComparable> {
        let paper = Profile::paper();
        let mut differences = Vec::new();
        if !same_stages(&self.stages, &paper.stages) {
            differences.push(LoadDifference::Stages {
                ours: self.stages.clone(),
                paper: paper.stages,
            });
        }
        if self.start_rate != paper.start_rate {
            differences.push(LoadDifference::StartRate {
                ours: self.start_rate,
                paper: paper.start_rate,
            });
        }
        if self.block_ms != paper.block_ms {
            differences.push(LoadDifference::BlockMs {
                ours: self.block_ms,
                paper: paper.block_ms,
            });
        }
        if self.min_threads != paper.min_threads {
            differences.push(LoadDifference::MinThreads {
                ours: self.min_threads,
                paper: paper.min_threads,
            });
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(NotComparable { differences })
        }
    }

    /// `paper`, `quick`, or a path to a TOML file.
    pub fn resolve(spec: &str) -> anyhow::Result<Profile> {
        match spec {
            "paper" => Ok(Profile::paper()),
            "quick" => Ok(Profile::quick()),
            path => Profile::from_file(Path::new(path)),
        }
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "--profile {}: not `paper` or `quick`, and not a readable TOML file ({e})",
                path.display()
            )
        })?;
        Profile::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("--profile {}: {e:#}", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Profile> {
        let p: Profile = toml::from_str(text)?;
        p.validate()?;
        Ok(p)
    }

    /// The load schedule.
    pub fn schedule(&self) -> anyhow::Result<crate::load::Schedule> {
        Ok(crate::load::Schedule::new(
            self.start_rate,
            Duration::from_secs(1),
            crate::load::parse_stages(&self.stages)?,
        )?)
    }

    /// Every check runs before anything is created; each error names its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let schedule = self
            .schedule()
            .map_err(|e| anyhow::anyhow!("stages = {:?}: {e:#}", self.stages))?;
        anyhow::ensure!(
            schedule.total_iterations() >= 1,
            "stages = {:?}: the load starts no iteration (the rate stays too low); give a stage a target above 0",
            self.stages
        );
        anyhow::ensure!(
            schedule.duration() <= MAX_LOAD,
            "stages = {:?}: a run would last {}, longer than the {} h a run may take; shorten the stages",
            self.stages,
            humantime::format_duration(schedule.duration()),
            MAX_LOAD.as_secs() / 3600
        );
        anyhow::ensure!(
            self.block_ms <= crate::workload::MAX_BLOCK_MS,
            "block_ms = {}: at most {} (ten minutes); the paper's is 2000",
            self.block_ms,
            crate::workload::MAX_BLOCK_MS
        );
        anyhow::ensure!(
            self.max_replicas <= MAX_REPLICAS,
            "max_replicas = {}: at most {MAX_REPLICAS} (each replica is a process or task with its own pool); the paper's is 5",
            self.max_replicas
        );
        for (key, secs) in [
            ("timeout_s", self.timeout_s),
            ("graceful_stop_s", self.graceful_stop_s),
            ("cooldown_s", self.cooldown_s),
            ("flap_window_s", self.flap_window_s),
        ] {
            anyhow::ensure!(
                secs <= MAX_LOAD.as_secs(),
                "{key} = {secs}: at most {} (24 h)",
                MAX_LOAD.as_secs()
            );
        }
        crate::workload::parse_replica_args(self.replica_args()).map_err(|e| {
            anyhow::anyhow!(
                "serve_args = {:?}: a replica would refuse them: {e}",
                self.serve_args
            )
        })?;
        anyhow::ensure!(self.min_threads >= 1, "min_threads must be at least 1");
        anyhow::ensure!(
            (1..=1024).contains(&self.dotnet_processors),
            "dotnet_processors = {}: between 1 and 1024 (the paper's worker had 1)",
            self.dotnet_processors
        );
        anyhow::ensure!(
            self.initial_replicas >= 1,
            "initial_replicas must be at least 1"
        );
        anyhow::ensure!(
            self.max_replicas >= self.initial_replicas,
            "max_replicas ({}) is below initial_replicas ({})",
            self.max_replicas,
            self.initial_replicas
        );
        anyhow::ensure!(self.timeout_s >= 1, "timeout_s must be at least 1");
        anyhow::ensure!(
            self.max_vus >= self.pre_allocated_vus && self.max_vus >= 1,
            "max_vus must be at least 1 and at least pre_allocated_vus"
        );
        Ok(())
    }

    /// The `serve` arguments every replica gets from the profile (the backend adds where it
    /// listens and pushes). The store is always explicit: SQLite unless `serve_args` ask for
    /// MongoDB, so no variable in the shell can switch it.
    pub fn replica_args(&self) -> Vec<String> {
        let mut args = vec![
            "--block-ms".to_string(),
            self.block_ms.to_string(),
            "--min-threads".into(),
            self.min_threads.to_string(),
        ];
        let says_store = self
            .serve_args
            .iter()
            .any(|a| a == "--store" || a.starts_with("--store="));
        if !says_store {
            args.push("--store".into());
            args.push(self.store_kind().as_str().into());
        }
        args.extend(self.serve_args.iter().cloned());
        args
    }

    /// The arguments of a .NET replica (`--workload dotnet`): the blocking time and minimum
    /// threads; `serve_args` are the model's and do not apply (the runtime has its own pool).
    pub fn dotnet_args(&self) -> Vec<String> {
        vec![
            "--block-ms".to_string(),
            self.block_ms.to_string(),
            "--min-threads".into(),
            self.min_threads.to_string(),
        ]
    }

    /// The replicas' store: `--store` in `serve_args`, else mongodb with `--mongodb-uri`.
    pub fn store_kind(&self) -> crate::workload::StoreKind {
        let mut args = self.serve_args.iter();
        let mut uri = false;
        while let Some(a) = args.next() {
            match a.as_str() {
                "--store" => {
                    if let Some(v) = args.next() {
                        return store_named(v);
                    }
                }
                "--mongodb-uri" => uri = true,
                _ if a.starts_with("--store=") => return store_named(&a["--store=".len()..]),
                _ if a.starts_with("--mongodb-uri=") => uri = true,
                _ => {}
            }
        }
        if uri {
            crate::workload::StoreKind::Mongodb
        } else {
            crate::workload::StoreKind::Sqlite
        }
    }

    /// Upper bound of one run's load phase (schedule plus graceful stop).
    pub fn run_seconds(&self) -> u64 {
        self.schedule().map(|s| s.duration().as_secs()).unwrap_or(0) + self.graceful_stop_s
    }

    /// The profile as it is saved: `serve_args` redacted.
    pub fn shown(&self) -> Profile {
        Profile {
            serve_args: crate::util::redact::args(&self.serve_args),
            ..self.clone()
        }
    }

    /// The `serve_args` whose secrets were redacted when saved (what a saved profile lacks).
    pub fn redacted_args(&self) -> Vec<&str> {
        self.serve_args
            .iter()
            .map(String::as_str)
            .filter(|a| crate::util::redact::is_redacted(a))
            .collect()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a profile serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_round_trip() {
        for p in [Profile::paper(), Profile::quick()] {
            p.validate().unwrap();
            assert_eq!(Profile::from_toml(&p.to_toml()).unwrap(), p);
        }
        assert_eq!(
            Profile::paper().schedule().unwrap().duration().as_secs(),
            150
        );
        assert_eq!(
            Profile::quick().schedule().unwrap().duration().as_secs(),
            50
        );
    }

    #[test]
    fn saved_profiles_hold_no_credentials() {
        let mut p = Profile::quick();
        p.serve_args = ["--mongodb-uri", "mongodb://admin:hunter2@db:27017"]
            .map(String::from)
            .to_vec();
        let toml = p.to_toml();
        let json = serde_json::to_string(&p).unwrap();
        for text in [&toml, &json] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("mongodb://admin:***@db:27017"), "{text}");
        }
        let saved = Profile::from_toml(&toml).unwrap();
        assert_eq!(saved, p.shown());
        assert_eq!(saved.redacted_args(), ["mongodb://admin:***@db:27017"]);
        assert!(Profile::quick().redacted_args().is_empty());
    }

    #[test]
    fn only_the_papers_load_is_comparable_with_the_paper() {
        assert_eq!(Profile::paper().comparable_with_paper(), Ok(()));
        // What does not change the load does not matter; the stages compare as parsed.
        let mut p = Profile::paper();
        (
            p.timeout_s,
            p.graceful_stop_s,
            p.max_vus,
            p.pre_allocated_vus,
        ) = (5, 1, 7, 7);
        (p.max_replicas, p.cooldown_s, p.name) = (2, 3, "mine".into());
        p.stages = "15:0.5m, 20:30s,30:30s,35:30000ms,5:30s".into();
        assert_eq!(p.comparable_with_paper(), Ok(()));

        let quick = Profile::quick().comparable_with_paper().unwrap_err();
        assert_eq!(
            quick.differences,
            [LoadDifference::Stages {
                ours: "15:10s,20:10s,30:10s,35:10s,5:10s".into(),
                paper: crate::load::PAPER_STAGES.into(),
            }]
        );
        assert_eq!(
            quick.to_string(),
            "this profile's load differs from the paper's (stages \
             `15:10s,20:10s,30:10s,35:10s,5:10s` vs `15:30s,20:30s,30:30s,35:30s,5:30s`)"
        );
    }

    #[test]
    fn a_toml_profile_with_the_papers_stages_and_another_block_time_is_not_comparable() {
        let mut t = Profile::paper().to_toml();
        t = t.replace("block_ms = 2000", "block_ms = 1000");
        let p = Profile::from_toml(&t).unwrap();
        assert_eq!(p.stages, crate::load::PAPER_STAGES);
        let e = p.comparable_with_paper().unwrap_err();
        assert_eq!(
            e.differences,
            [LoadDifference::BlockMs {
                ours: 1000,
                paper: 2000
            }]
        );
        assert!(
            e.to_string().contains("block time 1000 ms vs 2000 ms"),
            "{e}"
        );

        // Every difference is named, in the profile's order.
        let mut p = Profile::paper();
        (p.start_rate, p.min_threads) = (2.0, 4);
        let e = p.comparable_with_paper().unwrap_err();
        assert_eq!(
            e.to_string(),
            "this profile's load differs from the paper's (start rate 2/s vs 1/s; min threads 4 vs 1)"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut t = Profile::quick().to_toml();
        t.push_str("\nblock_msec = 3\n");
        let e = Profile::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("block_msec"), "{e}");
    }
}
