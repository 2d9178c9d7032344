//! `starvation figures`: the paper's figures from mean datasets — `Stacked_Figures` (six panels
//! sharing the time axis), `Thread_Response_CPU` (baseline and scaled panels) and one overlay per
//! metric — as PNG and/or SVG, in the paper's style (baseline blue circles, scaled red squares,
//! grey band from the earliest to the latest first scale event, a thin line at every scale event).
//! Legends sit in their own strip above the plots, never on the data. Fonts are bundled (DejaVu
//! Sans through plotters' `ab_glyph`), so nothing depends on fonts installed on the machine.

pub mod data;
mod draw;
mod legend;
mod panel;
pub mod timeline;

pub use data::{MeanData, Series, parse_mean_csv, read_mean_csv, read_mean_data};
pub use draw::{Geometry, Rect, draw_figure};

use crate::results::fsutil::progress_bar;
use crate::results::output_dir::OutputDir;
use std::path::{Path, PathBuf};

/// Errors of `figures`.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("{path}: {message}")]
    BadData { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
}

/// Image format of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// Draw figures from mean datasets.
#[derive(Debug, Clone, clap::Args)]
pub struct FiguresOpts {
    /// Directory with the mean datasets: `baseline/` (or the paper's `initial/`) and `scaled/`
    /// holding `<name>_export_mean_values.csv`, as `starvation aggregate --out` writes them.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory (created if missing). The figures of an earlier `figures` run here
    /// (listed in its .starvation-output.json) are replaced; any other file is kept, and a name
    /// clash with one is refused.
    #[arg(long)]
    pub out: PathBuf,
    /// Image formats, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "png")]
    pub format: Vec<Format>,
    /// Grey band START:END in seconds (e.g. 24:55), meant for the earliest to the latest first
    /// scale event across runs. Default: `scale_window_s` from `<data>/summary.json`; no band if
    /// absent.
    #[arg(long, value_parser = parse_window)]
    pub scale_window: Option<(f64, f64)>,
    /// Scale events to mark with a thin vertical line, seconds from run start, comma separated
    /// (e.g. 24,31.5,55). Default: `scale_events.events_s` from `<data>/summary.json` (every scale
    /// event of every scaled run); none if absent. Events in the same second are drawn once.
    #[arg(long, value_delimiter = ',', value_parser = parse_seconds)]
    pub scale_events: Option<Vec<f64>>,
}

/// What marks the scale events on the time axis: the grey band from the earliest to the latest
/// *first* scale event across runs, and a thin vertical line at every scale event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleMarks {
    /// Earliest to latest first scale event, seconds from run start (the grey band).
    pub window: Option<(f64, f64)>,
    /// Every scale event, seconds from its run's start (any order, duplicates allowed).
    pub events_s: Vec<f64>,
}

impl ScaleMarks {
    /// The offsets to draw a line at: finite, ≥ 0, rounded to the second, each second once,
    /// ascending (98 runs with three events each draw a few dozen lines, not 300).
    pub fn event_lines(&self) -> Vec<f64> {
        let mut secs: Vec<i64> = self
            .events_s
            .iter()
            .filter(|t| t.is_finite() && **t >= 0.0)
            .map(|t| t.round() as i64)
            .collect();
        secs.sort_unstable();
        secs.dedup();
        secs.into_iter().map(|s| s as f64).collect()
    }

    /// Whether anything is marked.
    pub fn is_empty(&self) -> bool {
        self.window.is_none() && self.event_lines().is_empty()
    }

    /// The latest marked offset, if any.
    pub fn max_offset(&self) -> Option<f64> {
        let w = self.window.map(|w| w.1);
        let e = self.event_lines().last().copied();
        match (w, e) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Parse a number of seconds.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?}: expected seconds from run start (a number ≥ 0)"
        )),
    }
}

/// Parse `START:END` seconds.
pub fn parse_window(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected START:END in seconds, e.g. 24:55"))?;
    let a: f64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: START {a:?} is not a number of seconds"))?;
    let b: f64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: END {b:?} is not a number of seconds"))?;
    if !(a.is_finite() && b.is_finite()) || b < a {
        return Err(format!("{s:?}: END must be a number ≥ START"));
    }
    Ok((a, b))
}

/// `<data>/summary.json` as JSON, if the file exists.
fn read_summary(data: &Path) -> Result<Option<serde_json::Value>, FigureError> {
    let p = data.join("summary.json");
    if !p.exists() {
        return Ok(None);
    }
    let bytes = crate::results::input::read_regular(&p, crate::results::input::SMALL_MAX_BYTES)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| FigureError::BadData {
            path: p.clone(),
            message: format!("not JSON: {e}"),
        })
}

fn window_of(v: &serde_json::Value) -> Option<(f64, f64)> {
    let w = v.get("scale_window_s")?;
    Some((w.get(0)?.as_f64()?, w.get(1)?.as_f64()?))
}

fn events_of(v: &serde_json::Value) -> Vec<f64> {
    v.pointer("/scale_events/events_s")
        .and_then(|e| e.as_array())
        .map(|a| a.iter().filter_map(|t| t.as_f64()).collect())
        .unwrap_or_default()
}

/// The scale marks `aggregate` recorded in `<data>/summary.json`: the window of first scale
/// events (`scale_window_s`) and every event (`scale_events.events_s`); none when the file or a
/// field is absent (older summaries).
pub fn recorded_marks(data: &Path) -> Result<ScaleMarks, FigureError> {
    let v = read_summary(data)?;
    Ok(ScaleMarks {
        window: v.as_ref().and_then(window_of),
        events_s: v.as_ref().map(events_of).unwrap_or_default(),
    })
}

/// Every figure this crate draws, by file stem.
pub fn figure_stems(data: &MeanData) -> Vec<String> {
    let mut v = vec![
        "Stacked_Figures".to_string(),
        "Thread_Response_CPU".to_string(),
    ];
    for m in data.metrics() {
        v.push(format!("{}_overlay", m.stem()));
    }
    v
}

/// Draw all figures of `data` into `out` in each format; returns the files written. The files
/// are drawn aside and put in place together ([`OutputDir`]): the figures of an earlier run into
/// `out` are replaced, any other file there is kept and never overwritten.
pub fn draw_all(
    data: &MeanData,
    out: &Path,
    formats: &[Format],
    marks: &ScaleMarks,
) -> Result<Vec<PathBuf>, FigureError> {
    if formats.is_empty() {
        return Err(FigureError::Usage(
            "--format: give at least one of png, svg".into(),
        ));
    }
    let staged = OutputDir::new(out, "--out", "starvation figures")?;
    draw::register_fonts();
    let stems = figure_stems(data);
    let bar = progress_bar((stems.len() * formats.len()) as u64, "drawing figures");
    for stem in &stems {
        for &fmt in formats {
            crate::results::fsutil::check_cancel()?;
            let path = staged.path().join(format!("{stem}.{}", fmt.ext()));
            draw::draw_figure(stem, data, marks, fmt, &path)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut written = staged.commit()?;
    written.sort();
    Ok(written)
}

pub async fn run(opts: FiguresOpts) -> anyhow::Result<()> {
    let written = crate::results::run_blocking_interruptible(
        move || -> Result<Vec<PathBuf>, FigureError> {
            let data = read_mean_data(&opts.data)?;
            let mut marks = recorded_marks(&opts.data)?;
            if let Some(w) = opts.scale_window {
                marks.window = Some(w);
            }
            if let Some(e) = opts.scale_events {
                marks.events_s = e;
            }
            draw_all(&data, &opts.out, &opts.format, &marks)
        },
        |e| {
            matches!(
                e,
                FigureError::Results(crate::results::ResultsError::Interrupted)
            )
        },
    )
    .await?;
    println!("wrote {} figures", written.len());
    for p in &written {
        println!("  {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_window() {
        assert_eq!(parse_window("24:55").unwrap(), (24.0, 55.0));
        assert_eq!(parse_window(" 1.5 : 2 ").unwrap(), (1.5, 2.0));
        assert!(parse_window("55:24").unwrap_err().contains("START"));
        assert!(parse_window("24").unwrap_err().contains("START:END"));
        assert!(parse_window("a:3").is_err());
        assert_eq!(parse_seconds(" 31.5").unwrap(), 31.5);
        assert!(parse_seconds("-1").unwrap_err().contains("≥ 0"));
        assert!(parse_seconds("x").is_err());
    }

    #[test]
    fn events_in_the_same_second_are_one_line() {
        let marks = ScaleMarks {
            window: Some((24.0, 55.0)),
            events_s: vec![55.2, 24.4, 24.0, 23.6, 40.49, 40.51, f64::NAN, -3.0, 60.0],
        };
        assert_eq!(marks.event_lines(), vec![24.0, 40.0, 41.0, 55.0, 60.0]);
        assert_eq!(marks.max_offset(), Some(60.0));
        assert!(ScaleMarks::default().is_empty());
        assert_eq!(ScaleMarks::default().max_offset(), None);
    }

    #[test]
    fn marks_come_from_summary_json_and_old_files_have_no_events() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(recorded_marks(tmp.path()).unwrap(), ScaleMarks::default());
        let write = |s: &str| std::fs::write(tmp.path().join("summary.json"), s).unwrap();
        write(r#"{"scale_window_s": [24.0, 55.0], "scale_events": {"runs_with_event": 2}}"#);
        let m = recorded_marks(tmp.path()).unwrap();
        assert_eq!(m.window, Some((24.0, 55.0)));
        assert!(m.events_s.is_empty());
        write(r#"{"scale_window_s": null, "scale_events": {"events_s": [24.0, 30.5, 55.0]}}"#);
        let m = recorded_marks(tmp.path()).unwrap();
        assert_eq!(m.window, None);
        assert_eq!(m.events_s, vec![24.0, 30.5, 55.0]);
        write("not json");
        let e = recorded_marks(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("summary.json") && e.contains("not JSON"), "{e}");
    }
}
