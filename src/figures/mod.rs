//! `starvation figures`: the paper's figures from mean datasets — `Stacked_Figures` (six panels
//! sharing the time axis), `Thread_Response_CPU` (baseline and scaled panels) and one overlay per
//! metric — as PNG and/or SVG, in the paper's style (baseline blue circles, scaled red squares,
//! grey scaling-event band). Fonts are bundled (DejaVu Sans through plotters' `ab_glyph`), so
//! nothing depends on fonts installed on the machine.

pub mod data;
mod draw;

pub use data::{MeanData, Series, read_mean_data};

use crate::results::fsutil::{ensure_dir, progress_bar, temp_path_for};
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
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Image formats, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "png")]
    pub format: Vec<Format>,
    /// Scaling-event band START:END in seconds (e.g. 24:55). Default: `scale_window_s` from
    /// `<data>/summary.json` (earliest to latest first scale event across runs); no band if absent.
    #[arg(long, value_parser = parse_window)]
    pub scale_window: Option<(f64, f64)>,
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

/// The scale window recorded by `aggregate` in `<data>/summary.json`, if any.
pub fn recorded_window(data: &Path) -> Result<Option<(f64, f64)>, FigureError> {
    let p = data.join("summary.json");
    if !p.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&p).map_err(|e| FigureError::BadData {
        path: p.clone(),
        message: e.to_string(),
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| FigureError::BadData {
            path: p.clone(),
            message: format!("not JSON: {e}"),
        })?;
    Ok(v.get("scale_window_s")
        .and_then(|w| Some((w.get(0)?.as_f64()?, w.get(1)?.as_f64()?))))
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

/// Draw all figures of `data` into `out` in each format; returns the files written.
pub fn draw_all(
    data: &MeanData,
    out: &Path,
    formats: &[Format],
    window: Option<(f64, f64)>,
) -> Result<Vec<PathBuf>, FigureError> {
    if formats.is_empty() {
        return Err(FigureError::Usage(
            "--format: give at least one of png, svg".into(),
        ));
    }
    ensure_dir(out, "--out")?;
    draw::register_fonts();
    let stems = figure_stems(data);
    let bar = progress_bar((stems.len() * formats.len()) as u64, "drawing figures");
    let mut written = Vec::new();
    for stem in &stems {
        for &fmt in formats {
            crate::results::fsutil::check_cancel()?;
            let path = out.join(format!("{stem}.{}", fmt.ext()));
            let tmp = temp_path_for(&path);
            let res = draw::draw_figure(stem, data, window, fmt, &tmp).and_then(|_| {
                std::fs::rename(&tmp, &path).map_err(|e| FigureError::Draw {
                    path: path.clone(),
                    message: e.to_string(),
                })
            });
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            written.push(path);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(written)
}

pub async fn run(opts: FiguresOpts) -> anyhow::Result<()> {
    let written = crate::results::run_blocking_interruptible(
        move || -> Result<Vec<PathBuf>, FigureError> {
            let data = read_mean_data(&opts.data)?;
            let window = match opts.scale_window {
                Some(w) => Some(w),
                None => recorded_window(&opts.data)?,
            };
            draw_all(&data, &opts.out, &opts.format, window)
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
    }
}
