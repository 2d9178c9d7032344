//! A reference run: a `starvation compare --out DIR` folder (`summary.json` says what ran,
//! `curves.csv` holds every second of every run of both sides). Read here for the .NET side's
//! mean curves of busy threads, queue length and p99, refused unless it ran the profile's load.
//! `calibrate --reference` fits to its busy curve; `experiment --reference` reports against all
//! three ([`super::report::DotnetComparison`]).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::Profile;
use crate::figures::Series;

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "--reference {}: cannot read {file} ({source}); give a folder written by `starvation compare --out DIR`",
        dir.display()
    )]
    Read {
        dir: PathBuf,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("--reference {}: {file} is not what `starvation compare` writes: {detail}", dir.display())]
    Format {
        dir: PathBuf,
        file: &'static str,
        detail: String,
    },
    #[error(
        "--reference {}: it compared under `{scenario}` (block {block_ms} ms, {processors} processor(s)), \
         but this is profile {profile} (stages {stages}, block {profile_block_ms} ms, min threads \
         {min_threads}); run `starvation compare --scenario profile:{profile} --out DIR` or pass the \
         matching --profile",
        dir.display()
    )]
    OtherLoad {
        dir: PathBuf,
        scenario: String,
        block_ms: u64,
        processors: u32,
        profile: String,
        stages: String,
        profile_block_ms: u64,
        min_threads: u32,
    },
}

/// The part of `summary.json` that says what ran.
#[derive(Debug, Deserialize)]
struct SummaryHead {
    scenario: String,
    runtime: String,
    processors: u32,
    block_ms: u64,
}

/// One row of `curves.csv` (the columns read here).
#[derive(Debug, Deserialize)]
struct CurveRow {
    run: u32,
    side: String,
    t_s: f64,
    busy: Option<f64>,
    queue: Option<f64>,
    p99_s: Option<f64>,
}

/// The .NET side of a compare folder: each curve averaged over its runs at each second
/// (seconds from the load's start; p99 in seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct DotnetCurves {
    pub busy: Series,
    pub queue: Series,
    pub p99_s: Series,
    /// The .NET runtime's version (`summary.json`'s `runtime`).
    pub runtime: String,
    /// .NET runs in the folder.
    pub runs: usize,
}

#[derive(Default)]
struct Mean(BTreeMap<u64, (f64, u32)>);

impl Mean {
    fn add(&mut self, t_s: f64, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            let e = self.0.entry(t_s.round() as u64).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    fn curve(self) -> Series {
        self.0
            .into_iter()
            .map(|(t, (sum, n))| (t as f64, sum / f64::from(n)))
            .collect()
    }
}

/// The .NET side's mean curves of the compare folder `dir`. Refused unless `dir` ran
/// `profile`'s load (its scenario, block and processors) or holds no .NET busy-thread value.
pub fn dotnet_curves(dir: &Path, profile: &Profile) -> Result<DotnetCurves, ReferenceError> {
    let read = |file: &'static str| {
        std::fs::read(dir.join(file)).map_err(|source| ReferenceError::Read {
            dir: dir.to_path_buf(),
            file,
            source,
        })
    };
    let format = |file: &'static str, detail: String| ReferenceError::Format {
        dir: dir.to_path_buf(),
        file,
        detail,
    };
    let head: SummaryHead = serde_json::from_slice(&read("summary.json")?)
        .map_err(|e| format("summary.json", e.to_string()))?;
    let expected = format!("profile {}: stages {}", profile.name, profile.stages);
    if head.scenario != expected
        || head.block_ms != profile.block_ms
        || head.processors != profile.min_threads
    {
        return Err(ReferenceError::OtherLoad {
            dir: dir.to_path_buf(),
            scenario: head.scenario,
            block_ms: head.block_ms,
            processors: head.processors,
            profile: profile.name.clone(),
            stages: profile.stages.clone(),
            profile_block_ms: profile.block_ms,
            min_threads: profile.min_threads,
        });
    }
    let csv = read("curves.csv")?;
    let (mut busy, mut queue, mut p99) = (Mean::default(), Mean::default(), Mean::default());
    let mut runs = BTreeSet::new();
    for (i, row) in csv::Reader::from_reader(csv.as_slice())
        .deserialize::<CurveRow>()
        .enumerate()
    {
        let row = row.map_err(|e| format("curves.csv", format!("row {}: {e}", i + 2)))?;
        if row.side != "dotnet" {
            continue;
        }
        runs.insert(row.run);
        busy.add(row.t_s, row.busy);
        queue.add(row.t_s, row.queue);
        p99.add(row.t_s, row.p99_s);
    }
    if busy.0.is_empty() {
        return Err(format("curves.csv", "no .NET busy-thread values".into()));
    }
    Ok(DotnetCurves {
        busy: busy.curve(),
        queue: queue.curve(),
        p99_s: p99.curve(),
        runtime: head.runtime,
        runs: runs.len(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A compare folder of `scenario` holding `curves` (after the header).
    pub(crate) fn folder(scenario: &str, curves: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let summary = serde_json::json!({
            "scenario": scenario, "runtime": "8.0.4", "processors": 1, "block_ms": 2000,
            "model_args": [], "runs": [], "summary": {}
        });
        std::fs::write(dir.path().join("summary.json"), summary.to_string()).unwrap();
        std::fs::write(dir.path().join("curves.csv"), format!("{HEADER}{curves}")).unwrap();
        dir
    }

    pub(crate) const HEADER: &str = "run,side,t_s,busy,threads,queue,p50_s,p99_s,work_items\n";

    #[test]
    fn every_dotnet_curve_is_averaged_over_runs_at_each_second() {
        let quick = Profile::quick();
        let scenario = format!("profile quick: stages {}", quick.stages);
        let dir = folder(
            &scenario,
            "1,dotnet,0,1,1,0,,,0\n1,dotnet,1,3,3,5,0.5,2.0,2\n1,model,1,9,9,7,,9,2\n\
             2,dotnet,0,1,1,2,,,0\n2,dotnet,1,5,5,7,0.5,4.0,2\n",
        );
        let c = dotnet_curves(dir.path(), &quick).unwrap();
        assert_eq!(c.busy, vec![(0.0, 1.0), (1.0, 4.0)]);
        assert_eq!(c.queue, vec![(0.0, 1.0), (1.0, 6.0)]);
        assert_eq!(c.p99_s, vec![(1.0, 3.0)]);
        assert_eq!((c.runs, c.runtime.as_str()), (2, "8.0.4"));
    }
}
