//! Curves over time for other commands (`compare`): charts stacked on a shared time axis, one
//! legend strip above them (never on the data), axes labelled with units, the paper's style
//! (first series blue circles, second red squares).

use super::FigureError;
use super::draw::{Geometry, err, legend_strip, register_fonts, series_entry};
use super::panel::{BASE_BLUE, Line, Marker, Panel, SCALED_RED, Sizes, draw_panel};
use plotters::prelude::*;
use std::path::Path;

/// Which of the two series styles a line takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Blue circles.
    First,
    /// Red squares.
    Second,
}

impl Tone {
    fn style(self) -> (RGBColor, Marker) {
        match self {
            Tone::First => (BASE_BLUE, Marker::Circle),
            Tone::Second => (SCALED_RED, Marker::Square),
        }
    }
}

/// One series: `(seconds, value)` points.
pub struct TimeLine<'a> {
    pub label: &'a str,
    pub tone: Tone,
    pub points: &'a [(f64, f64)],
}

/// One chart.
pub struct TimeChart<'a> {
    pub title: &'a str,
    /// The y axis' label, with its unit.
    pub y_label: &'a str,
    pub lines: Vec<TimeLine<'a>>,
}

/// Width of the image; each chart adds [`CHART_HEIGHT`].
pub const WIDTH: u32 = 1600;
pub const CHART_HEIGHT: u32 = 620;

/// Draws `charts` one above the other into the PNG `path`, the time axis (`x_label`, with its
/// unit) shared; returns where the legend and the charts went.
pub fn draw_time_charts(
    path: &Path,
    charts: &[TimeChart],
    x_label: &str,
) -> Result<Geometry, FigureError> {
    register_fonts();
    let size = (WIDTH, 120 + CHART_HEIGHT * charts.len().max(1) as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    // (title, label, tick, legend, marker, stroke)
    let s = Sizes::new((34, 28, 26, 28, 5, 3));
    let mut entries = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for line in charts.iter().flat_map(|c| &c.lines) {
        if !line.points.is_empty() && !seen.contains(&line.label) {
            seen.push(line.label);
            let (color, marker) = line.tone.style();
            entries.push(series_entry(line.label, color, marker));
        }
    }
    let (legend, rest) = legend_strip(&root, &entries, &s, path)?;
    let x_max = charts
        .iter()
        .flat_map(|c| &c.lines)
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(5.0f64, f64::max);
    let areas = rest.split_evenly((charts.len().max(1), 1));
    let mut plots = Vec::new();
    for (i, (chart, area)) in charts.iter().zip(areas.iter()).enumerate() {
        let lines = chart
            .lines
            .iter()
            .map(|l| {
                let (color, marker) = l.tone.style();
                Line {
                    label: l.label,
                    color,
                    marker,
                    points: l.points,
                    band: &[],
                }
            })
            .collect();
        let panel = Panel {
            title: Some(chart.title),
            y_label: chart.y_label,
            lines,
            marks: None,
            y_range: None,
            x_label: (i + 1 == charts.len()).then_some(x_label),
            x_ticks: true,
        };
        plots.push(draw_panel(area, &panel, x_max, &s, path)?);
    }
    root.present().map_err(err(path))?;
    Ok(Geometry {
        size,
        legend,
        plots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_sits_above_every_chart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        // Points along the top edge, where a legend inside the plot would sit.
        let top: Vec<(f64, f64)> = (0..=20).map(|t| (f64::from(t), 10.0)).collect();
        let low: Vec<(f64, f64)> = (0..=20)
            .map(|t| (f64::from(t), f64::from(t) / 4.0))
            .collect();
        let charts = [
            TimeChart {
                title: "Busy worker threads",
                y_label: "Threads",
                lines: vec![
                    TimeLine {
                        label: ".NET 8",
                        tone: Tone::First,
                        points: &top,
                    },
                    TimeLine {
                        label: "model",
                        tone: Tone::Second,
                        points: &low,
                    },
                ],
            },
            TimeChart {
                title: "Queue",
                y_label: "Work items",
                lines: vec![TimeLine {
                    label: ".NET 8",
                    tone: Tone::First,
                    points: &top,
                }],
            },
        ];
        let g = draw_time_charts(&path, &charts, "Time (s)").unwrap();
        assert_eq!(g.plots.len(), 2);
        assert!(!g.legend.is_empty());
        for p in &g.plots {
            assert!(!p.intersects(&g.legend), "{p:?} {:?}", g.legend);
            assert!(p.y0 >= g.legend.y1);
        }
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }
}
