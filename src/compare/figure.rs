//! `compare.png`: busy threads and the queue over time, both sides (per second, the mean over
//! runs), drawn with `figures`' style (legend in its own strip, axes with units).

use std::path::Path;

use super::summary::{Curve, extended};
use super::{CompareError, Comparison, SideRun};
use crate::figures::timeline::{TimeChart, TimeLine, Tone, draw_time_charts};

/// Per second, the mean over `runs` of `curve` (each run extended idle to the longest).
pub fn mean_curve(runs: &[&SideRun], curve: Curve) -> Vec<(f64, f64)> {
    let len = runs.iter().map(|r| r.points.len()).max().unwrap_or(0);
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| extended(r, curve, len)).collect();
    (0..len)
        .filter_map(|k| {
            let t = k as f64;
            let vals: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.iter().find(|p| p.0 == t).map(|p| p.1))
                .collect();
            crate::results::stats::mean(&vals).map(|m| (t, m))
        })
        .collect()
}

fn two_lines<'a>(
    labels: (&'a str, &'a str),
    dotnet: &'a [(f64, f64)],
    model: &'a [(f64, f64)],
) -> Vec<TimeLine<'a>> {
    vec![
        TimeLine {
            label: labels.0,
            tone: Tone::First,
            points: dotnet,
        },
        TimeLine {
            label: labels.1,
            tone: Tone::Second,
            points: model,
        },
    ]
}

/// Draws the figure into `path` (a new file: drawn beside it, then linked in without
/// replacing anything).
pub fn write(path: &Path, c: &Comparison) -> Result<(), CompareError> {
    let dotnet: Vec<&SideRun> = c.pairs.iter().map(|p| &p.dotnet).collect();
    let model: Vec<&SideRun> = c.pairs.iter().map(|p| &p.model).collect();
    let of = |runs: &[&SideRun], curve| mean_curve(runs, curve);
    let (d_busy, m_busy) = (of(&dotnet, Curve::Busy), of(&model, Curve::Busy));
    let (d_queue, m_queue) = (of(&dotnet, Curve::Queue), of(&model, Curve::Queue));
    let runs = c.pairs.len();
    let (d_label, m_label) = if runs > 1 {
        (
            format!(".NET 8 (mean of {runs} runs)"),
            format!("model (mean of {runs} runs)"),
        )
    } else {
        (".NET 8".to_string(), "model".to_string())
    };
    let lines = |d, m| two_lines((&d_label, &m_label), d, m);
    let charts = [
        TimeChart {
            title: "Busy worker threads",
            y_label: "Threads",
            lines: lines(&d_busy, &m_busy),
        },
        TimeChart {
            title: "Thread-pool queue",
            y_label: "Work items",
            lines: lines(&d_queue, &m_queue),
        },
    ];
    let err = |source| CompareError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = crate::util::temp_beside(path).map_err(|e| err(e.error))?;
    draw_time_charts(&tmp, &charts, "Time since the load started (s)")
        .map_err(|e| err(std::io::Error::other(e.to_string())))?;
    tmp.persist_noclobber(path).map_err(|e| err(e.error))?;
    Ok(())
}
