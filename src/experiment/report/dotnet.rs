//! "Model vs .NET 8": with `--reference DIR` (a `starvation compare` folder of the same
//! profile), our baseline mean curves of busy threads, queue length and p99 against the .NET
//! side's mean curves: peak, time of peak, NRMSE normalised by the .NET curve's range (as
//! `compare` does) and issue 28's goals where they apply. Baseline only: a compare run is one
//! replica, unscaled, like our baseline runs.

use serde::Serialize;
use std::path::Path;

use crate::experiment::Profile;
use crate::experiment::reference::dotnet_curves;
use crate::figures::{Series, read_mean_csv};
use crate::results::metrics as m;
use crate::results::runmeta::Role;
use crate::results::stats::{nrmse, peak};

/// Issue 28's goal of a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum DotnetGoal {
    /// NRMSE at most this.
    NrmseAtMost(f64),
    /// Our peak within ± this percent of .NET's.
    PeakWithinPercent(f64),
}

impl std::fmt::Display for DotnetGoal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DotnetGoal::NrmseAtMost(x) => write!(f, "NRMSE ≤ {x}"),
            DotnetGoal::PeakWithinPercent(p) => write!(f, "peak ±{p} %"),
        }
    }
}

/// One curve: our baseline mean beside the .NET side's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DotnetRow {
    pub metric: String,
    pub peak: f64,
    pub peak_at_s: f64,
    pub dotnet_peak: f64,
    pub dotnet_peak_at_s: f64,
    /// RMSE over the seconds both curves have, divided by the .NET curve's range (`None`:
    /// a flat .NET curve or no common second).
    pub nrmse: Option<f64>,
    pub goal: DotnetGoal,
    /// `None` when the goal's number is missing.
    pub met: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DotnetComparison {
    /// The compare folder.
    pub reference: String,
    pub runtime: String,
    /// .NET runs averaged.
    pub dotnet_runs: usize,
    pub rows: Vec<DotnetRow>,
}

/// Max minus min of a curve's values.
fn range(curve: &[(f64, f64)]) -> f64 {
    let (lo, hi) = curve
        .iter()
        .filter(|p| p.1.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if lo.is_finite() { hi - lo } else { 0.0 }
}

/// Our curve on whole seconds (the .NET side's are).
fn on_seconds(s: Series) -> Series {
    s.into_iter().map(|(t, v)| (t.round(), v)).collect()
}

/// Compare the baseline mean curves of the aggregate folder `agg` with the .NET side of the
/// compare folder `reference` (refused unless it ran `profile`'s load). A metric missing from
/// `agg`, or a .NET curve without values, is left out of the table.
pub fn dotnet_comparison(
    agg: &Path,
    reference: &Path,
    profile: &Profile,
) -> anyhow::Result<DotnetComparison> {
    let c = dotnet_curves(reference, profile)?;
    let mut rows = Vec::new();
    // Both p99 curves in seconds: our aggregate's `Request Duration` (unit Seconds) and
    // compare's `p99_s`.
    for (metric, dotnet, goal) in [
        (
            m::BUSY_WORKER_THREADS,
            &c.busy,
            DotnetGoal::NrmseAtMost(0.15),
        ),
        (
            m::QUEUE_LENGTH,
            &c.queue,
            DotnetGoal::PeakWithinPercent(30.0),
        ),
        (
            m::REQUEST_DURATION_P99,
            &c.p99_s,
            DotnetGoal::PeakWithinPercent(20.0),
        ),
    ] {
        let path = agg
            .join(Role::Baseline.as_str())
            .join(m::spec(metric).mean_file());
        if !path.exists() {
            continue;
        }
        let ours = on_seconds(read_mean_csv(&path)?);
        let (Some((at, pk)), Some((d_at, d_pk))) = (peak(&ours), peak(dotnet)) else {
            continue;
        };
        let nrmse = nrmse(&ours, dotnet, range(dotnet));
        let met = match goal {
            DotnetGoal::NrmseAtMost(x) => nrmse.map(|n| n <= x),
            DotnetGoal::PeakWithinPercent(_) if d_pk == 0.0 => Some(pk == 0.0),
            DotnetGoal::PeakWithinPercent(p) => Some((pk - d_pk).abs() <= p / 100.0 * d_pk.abs()),
        };
        rows.push(DotnetRow {
            metric: metric.to_string(),
            peak: pk,
            peak_at_s: at,
            dotnet_peak: d_pk,
            dotnet_peak_at_s: d_at,
            nrmse,
            goal,
            met,
        });
    }
    Ok(DotnetComparison {
        reference: reference.display().to_string(),
        runtime: c.runtime,
        dotnet_runs: c.runs,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::reference::tests::folder;

    fn write_mean(agg: &Path, metric: &str, points: &[(f64, f64)]) {
        let dir = agg.join("baseline");
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = String::from("timestamp,value\n");
        for (t, v) in points {
            csv.push_str(&format!("{t},{v}\n"));
        }
        std::fs::write(dir.join(m::spec(metric).mean_file()), csv).unwrap();
    }

    #[test]
    fn the_baseline_is_compared_with_the_dotnet_side() {
        let quick = Profile::quick();
        let reference = folder(
            &format!("profile quick: stages {}", quick.stages),
            // .NET: busy 0,4,2 ; queue 0,10,0 ; p99 1,2,(none) — two runs at t=1 averaged.
            "1,dotnet,0,0,1,0,,1.0,0\n1,dotnet,1,4,4,8,,2.0,0\n2,dotnet,1,4,4,12,,2.0,0\n\
             1,dotnet,2,2,2,0,,,0\n1,model,1,99,99,99,,99,0\n",
        );
        let agg = tempfile::tempdir().unwrap();
        write_mean(
            agg.path(),
            m::BUSY_WORKER_THREADS,
            &[(0.0, 0.0), (1.0, 4.0), (2.0, 4.0)],
        );
        write_mean(
            agg.path(),
            m::QUEUE_LENGTH,
            &[(0.0, 0.0), (1.0, 12.0), (2.0, 1.0)],
        );
        write_mean(
            agg.path(),
            m::REQUEST_DURATION_P99,
            &[(1.0, 3.0), (2.0, 1.0)],
        );
        let c = dotnet_comparison(agg.path(), reference.path(), &quick).unwrap();
        assert_eq!((c.runtime.as_str(), c.dotnet_runs), ("8.0.4", 2));
        let [busy, queue, p99] = &c.rows[..] else {
            panic!("{c:?}")
        };
        assert_eq!(busy.metric, m::BUSY_WORKER_THREADS);
        assert_eq!((busy.peak, busy.peak_at_s), (4.0, 1.0));
        assert_eq!((busy.dotnet_peak, busy.dotnet_peak_at_s), (4.0, 1.0));
        // Diffs 0,0,2 over range 4: sqrt(4/3)/4.
        let n = busy.nrmse.unwrap();
        assert!((n - (4.0f64 / 3.0).sqrt() / 4.0).abs() < 1e-12, "{n}");
        assert_eq!(busy.met, Some(false));
        // Queue peak 12 vs 10: +20 %, within ±30 %.
        assert_eq!((queue.peak, queue.dotnet_peak), (12.0, 10.0));
        assert_eq!(queue.met, Some(true));
        // p99 peak 3 s vs 2 s: +50 %, outside ±20 %; only t=1 in common, over range 1.
        assert_eq!((p99.peak, p99.peak_at_s, p99.dotnet_peak), (3.0, 1.0, 2.0));
        assert_eq!(p99.nrmse, Some(1.0));
        assert_eq!(p99.met, Some(false));
    }

    #[test]
    fn a_reference_of_another_load_is_refused() {
        let reference = folder(
            "burst: 20 concurrent requests (cut at 1m)",
            "1,dotnet,0,1,1,0,,,0\n",
        );
        let agg = tempfile::tempdir().unwrap();
        let e = dotnet_comparison(agg.path(), reference.path(), &Profile::quick())
            .unwrap_err()
            .to_string();
        assert!(e.contains("it compared under `burst"), "{e}");
    }
}
