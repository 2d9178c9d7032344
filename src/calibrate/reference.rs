//! `calibrate --reference DIR`: the .NET 8 runtime's own busy-thread curve as the target, read
//! from a `starvation compare --out DIR` folder (`summary.json` says what ran, `curves.csv` holds
//! every second of every run of both sides).

use std::path::Path;

use crate::experiment::Profile;
pub use crate::experiment::reference::ReferenceError;
use crate::experiment::reference::dotnet_curves;
use crate::figures::Series;

/// The .NET side's busy-thread curve of `dir`, averaged over its runs at each second, and a
/// description of where it came from. Refused unless `dir` ran `profile`'s load.
pub fn dotnet_busy_curve(
    dir: &Path,
    profile: &Profile,
) -> Result<(Series, String), ReferenceError> {
    let c = dotnet_curves(dir, profile)?;
    let what = format!(
        ".NET {} runs ({} of them) in {}",
        c.runtime,
        c.runs,
        dir.display()
    );
    Ok((c.busy, what))
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
