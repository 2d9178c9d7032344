//! `calibrate --reference DIR`: the .NET 8 runtime's own busy-thread curve as the target, read
//! from a `starvation compare --out DIR` folder (`summary.json` says what ran, `curves.csv` holds
//! every second of every run of both sides).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::experiment::Profile;
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
         but calibrate simulates profile {profile} (stages {stages}, block {profile_block_ms} ms, min threads \
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

/// One row of `curves.csv` (the columns calibrate reads).
#[derive(Debug, Deserialize)]
struct CurveRow {
    run: u32,
    side: String,
    t_s: f64,
    busy: Option<f64>,
}

/// The .NET side's busy-thread curve of `dir`, averaged over its runs at each second, and a
/// description of where it came from. Refused unless `dir` ran `profile`'s load.
pub fn dotnet_busy_curve(
    dir: &Path,
    profile: &Profile,
) -> Result<(Series, String), ReferenceError> {
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
    let mut per_second: BTreeMap<u64, (f64, u32)> = BTreeMap::new();
    let mut runs = std::collections::BTreeSet::new();
    for (i, row) in csv::Reader::from_reader(csv.as_slice())
        .deserialize::<CurveRow>()
        .enumerate()
    {
        let row = row.map_err(|e| format("curves.csv", format!("row {}: {e}", i + 2)))?;
        if row.side != "dotnet" {
            continue;
        }
        runs.insert(row.run);
        if let Some(busy) = row.busy {
            let e = per_second.entry(row.t_s.round() as u64).or_default();
            e.0 += busy;
            e.1 += 1;
        }
    }
    if per_second.is_empty() {
        return Err(format("curves.csv", "no .NET busy-thread values".into()));
    }
    let curve = per_second
        .into_iter()
        .map(|(t, (sum, n))| (t as f64, sum / f64::from(n)))
        .collect();
    let what = format!(
        ".NET {} runs ({} of them) in {}",
        head.runtime,
        runs.len(),
        dir.display()
    );
    Ok((curve, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(scenario: &str, curves: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let summary = serde_json::json!({
            "scenario": scenario, "runtime": "8.0.4", "processors": 1, "block_ms": 2000,
            "model_args": [], "runs": [], "summary": {}
        });
        std::fs::write(dir.path().join("summary.json"), summary.to_string()).unwrap();
        std::fs::write(dir.path().join("curves.csv"), curves).unwrap();
        dir
    }

    const HEADER: &str = "run,side,t_s,busy,threads,queue,p50_s,p99_s,work_items\n";

    #[test]
    fn the_dotnet_side_is_averaged_over_runs_at_each_second() {
        let quick = Profile::quick();
        let scenario = format!("profile quick: stages {}", quick.stages);
        let curves = format!(
            "{HEADER}1,dotnet,0,1,1,0,,,0\n1,dotnet,1,3,3,5,,,2\n1,model,1,9,9,0,,,2\n\
             2,dotnet,0,1,1,0,,,0\n2,dotnet,1,5,5,5,,,2\n2,dotnet,2,,,,,,\n"
        );
        let dir = folder(&scenario, &curves);
        let (curve, what) = dotnet_busy_curve(dir.path(), &quick).unwrap();
        assert_eq!(curve, vec![(0.0, 1.0), (1.0, 4.0)]);
        assert!(what.contains("8.0.4 runs (2 of them)"), "{what}");
    }

    #[test]
    fn a_comparison_of_another_load_is_refused_naming_both() {
        let dir = folder(
            "burst: 20 concurrent requests (cut at 1m)",
            &format!("{HEADER}1,dotnet,0,1,1,0,,,0\n"),
        );
        let e = dotnet_busy_curve(dir.path(), &Profile::paper())
            .unwrap_err()
            .to_string();
        assert!(e.contains("it compared under `burst"), "{e}");
        assert!(e.contains("--scenario profile:paper"), "{e}");
    }

    #[test]
    fn a_folder_compare_did_not_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = dotnet_busy_curve(dir.path(), &Profile::paper())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read summary.json"), "{e}");
        assert!(e.contains("starvation compare --out DIR"), "{e}");
    }
}
