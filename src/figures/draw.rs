//! The figures' layout, generic over plotters backends (bitmap for PNG, SVG): each figure is cut
//! into a legend strip and the charts before anything is drawn, so the legend has its own pixels.

use super::legend::{self, Entry, Swatch};
use super::panel::{
    BAND_ALPHA, BAND_GREY, BASE_BLUE, CPU_ORANGE, EVENT_PURPLE, Line, Marker, Panel, SCALED_RED,
    Sizes, draw_panel, event_stroke, y_range,
};
use super::{FigureError, Format, MeanData, ScaleMarks};
use crate::results::metrics::{self, MetricSpec};
use crate::results::runmeta::Role;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Register the bundled font as plotters' `sans-serif` (once per process).
pub fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_err() {
            // The font is compiled in; failing to parse it is a build defect.
            panic!("bundled font assets/fonts/DejaVuSans.ttf is not a valid font");
        }
    });
}

/// A pixel rectangle, `x0..x1` × `y0..y1` (end exclusive), from the image's top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    pub fn is_empty(&self) -> bool {
        self.x1 <= self.x0 || self.y1 <= self.y0
    }
    /// Whether the two rectangles share a pixel.
    pub fn intersects(&self, o: &Rect) -> bool {
        !self.is_empty()
            && !o.is_empty()
            && self.x0 < o.x1
            && o.x0 < self.x1
            && self.y0 < o.y1
            && o.y0 < self.y1
    }
    pub fn contains(&self, x: i32, y: i32) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

/// Where a drawn figure put things: its legend box and the plotting area of each chart (inside
/// the axes; where the points are). Charts are listed top to bottom, then left to right.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub size: (u32, u32),
    /// Empty when the figure has nothing to label.
    pub legend: Rect,
    pub plots: Vec<Rect>,
}

/// Rows of `Stacked_Figures`: metric, panel title, y-axis label with unit.
const STACKED_PANELS: [(&str, &str, &str); 6] = [
    (
        metrics::BUSY_WORKER_THREADS,
        "Busy Worker Threads",
        "Threads",
    ),
    (
        metrics::REQUEST_DURATION_P99,
        "Request Duration (p99)",
        "Seconds",
    ),
    (metrics::PROCESS_THREADS, "Process Threads", "Threads"),
    (metrics::RUNTIME_CPU, "System CPU Usage", "CPU Usage (%)"),
    (metrics::NODE_CPU, "Worker Node CPU", "CPU Usage (%)"),
    (metrics::QUEUE_LENGTH, "Thread Pool Queue", "Items"),
];

/// Rows of `Thread_Response_CPU`, one quantity per chart: metric, legend label, y-axis label,
/// colour.
const TRC_ROWS: [(&str, &str, &str, RGBColor); 3] = [
    (
        metrics::QUEUE_LENGTH,
        "Threadpool Queue Length",
        "Queue Length (items)",
        BASE_BLUE,
    ),
    (
        metrics::REQUEST_DURATION_P99,
        "Response Time (p99)",
        "Response Time (s)",
        SCALED_RED,
    ),
    (
        metrics::RUNTIME_CPU,
        "Container CPU Usage",
        "CPU Usage (%)",
        CPU_ORANGE,
    ),
];

pub const STACKED_SIZE: (u32, u32) = (1424, 2880);
pub const TRC_SIZE: (u32, u32) = (2400, 2200);
pub const OVERLAY_SIZE: (u32, u32) = (1600, 900);

/// Legend labels of the scale marks.
pub const EVENT_LABEL: &str = "Scale events (all runs)";
pub const WINDOW_LABEL: &str = "First scale event, earliest–latest";

pub(super) fn err<E: std::error::Error + Send + Sync>(
    path: &Path,
) -> impl Fn(DrawingAreaErrorKind<E>) -> FigureError + '_ {
    move |e| FigureError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Draw the figure `stem` (one of [`super::figure_stems`]) into `path` in `fmt`; returns where
/// the legend and the charts went.
pub fn draw_figure(
    stem: &str,
    data: &MeanData,
    marks: &ScaleMarks,
    fmt: Format,
    path: &Path,
) -> Result<Geometry, FigureError> {
    register_fonts();
    let size = match stem {
        "Stacked_Figures" => STACKED_SIZE,
        "Thread_Response_CPU" => TRC_SIZE,
        _ => OVERLAY_SIZE,
    };
    let (legend, plots) = match fmt {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            let g = draw_into(stem, data, marks, &root, path)?;
            root.present().map_err(err(path))?;
            g
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            let g = draw_into(stem, data, marks, &root, path)?;
            root.present().map_err(err(path))?;
            g
        }
    };
    Ok(Geometry {
        size,
        legend,
        plots,
    })
}

fn draw_into<DB: DrawingBackend>(
    stem: &str,
    data: &MeanData,
    marks: &ScaleMarks,
    root: &DrawingArea<DB, Shift>,
    path: &Path,
) -> Result<(Rect, Vec<Rect>), FigureError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err(path))?;
    let x_max = data
        .max_offset()
        .max(marks.max_offset().unwrap_or(0.0))
        .max(5.0);
    match stem {
        "Stacked_Figures" => stacked(data, marks, x_max, root, path),
        "Thread_Response_CPU" => thread_response_cpu(data, marks, x_max, root, path),
        other => {
            let metric = other.strip_suffix("_overlay").unwrap_or(other);
            let spec: &MetricSpec = metrics::find(metric)
                .ok_or_else(|| FigureError::Usage(format!("unknown figure {other}")))?;
            overlay(data, spec, marks, x_max, root, path)
        }
    }
}

/// Cut a legend strip off the top of `area`, draw the legend in it; returns the legend box and
/// the area below.
pub(super) fn legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    s: &Sizes,
    path: &Path,
) -> Result<(Rect, DrawingArea<DB, Shift>), FigureError>
where
    DB::ErrorType: 'static,
{
    let style = legend::Style {
        font: s.legend,
        marker: s.marker,
        stroke: s.stroke,
    };
    let (w, _) = area.dim_in_pixel();
    let h = legend::strip_height(area, entries, &style, w);
    let (strip, rest) = area.split_vertically(h);
    let rect = legend::draw(&strip, entries, &style, path)?;
    Ok((rect, rest))
}

/// Legend entries of the scale marks that are drawn.
fn mark_entries(marks: &ScaleMarks, s: &Sizes) -> Vec<Entry> {
    let mut v = Vec::new();
    if !marks.event_lines().is_empty() {
        v.push(Entry {
            label: EVENT_LABEL.into(),
            swatch: Swatch::VLine {
                color: EVENT_PURPLE,
                width: event_stroke(s),
            },
        });
    }
    if marks.window.is_some() {
        v.push(Entry {
            label: WINDOW_LABEL.into(),
            swatch: Swatch::Band {
                color: BAND_GREY,
                alpha: BAND_ALPHA,
                edges: true,
            },
        });
    }
    v
}

pub(super) fn series_entry(label: &str, color: RGBColor, marker: Marker) -> Entry {
    Entry {
        label: label.into(),
        swatch: Swatch::Series { color, marker },
    }
}

/// Legend entries of the lines (and their 5–95 % bands) that have data.
fn line_entries(lines: &[Line]) -> Vec<Entry> {
    let mut v: Vec<Entry> = lines
        .iter()
        .filter(|l| !l.points.is_empty())
        .map(|l| series_entry(l.label, l.color, l.marker))
        .collect();
    v.extend(lines.iter().filter(|l| l.band.len() >= 2).map(|l| Entry {
        label: format!("{} 5–95 %", l.label),
        swatch: Swatch::Band {
            color: l.color,
            alpha: 0.12,
            edges: false,
        },
    }));
    v
}

fn stacked<DB: DrawingBackend>(
    data: &MeanData,
    marks: &ScaleMarks,
    x_max: f64,
    root: &DrawingArea<DB, Shift>,
    path: &Path,
) -> Result<(Rect, Vec<Rect>), FigureError>
where
    DB::ErrorType: 'static,
{
    // (title, label, tick, legend, marker, stroke)
    let s = Sizes::new((30, 28, 32, 26, 6, 3));
    let panels: Vec<Vec<Line>> = STACKED_PANELS
        .iter()
        .map(|(m, _, _)| two_roles(data, m))
        .collect();
    // One legend for all six panels: the roles drawn in any of them, then the marks.
    let mut entries: Vec<Entry> = Vec::new();
    for (i, role) in two_roles(data, "").iter().enumerate() {
        if panels.iter().any(|p| !p[i].points.is_empty()) {
            entries.push(series_entry(role.label, role.color, role.marker));
        }
    }
    entries.extend(mark_entries(marks, &s));
    let (legend, rest) = legend_strip(root, &entries, &s, path)?;
    let areas = rest.split_evenly((STACKED_PANELS.len(), 1));
    let mut plots = Vec::new();
    for (i, (((_, title, unit), lines), area)) in STACKED_PANELS
        .iter()
        .zip(panels)
        .zip(areas.iter())
        .enumerate()
    {
        let last = i + 1 == STACKED_PANELS.len();
        let panel = Panel {
            title: Some(title),
            y_label: unit,
            lines,
            marks: Some(marks),
            y_range: None,
            x_label: last.then_some("Time (s)"),
            x_ticks: last,
        };
        plots.push(draw_panel(area, &panel, x_max, &s, path)?);
    }
    Ok((legend, plots))
}

fn thread_response_cpu<DB: DrawingBackend>(
    data: &MeanData,
    marks: &ScaleMarks,
    x_max: f64,
    root: &DrawingArea<DB, Shift>,
    path: &Path,
) -> Result<(Rect, Vec<Rect>), FigureError>
where
    DB::ErrorType: 'static,
{
    // (title, label, tick, legend, marker, stroke)
    let s = Sizes::new((46, 34, 32, 32, 8, 4));
    let roles = [
        (Role::Baseline, "Baseline Run"),
        (Role::Scaled, "Run with Scaling Mechanism"),
    ];
    let line = |role: Role, (metric, label, _, color): (&str, &'static str, &str, RGBColor)| Line {
        label,
        color,
        marker: Marker::Circle,
        points: data.get(role, metric).map(|v| v.as_slice()).unwrap_or(&[]),
        band: &[],
    };
    let mut entries: Vec<Entry> = Vec::new();
    for row in TRC_ROWS {
        if roles.iter().any(|(r, _)| !line(*r, row).points.is_empty()) {
            entries.push(series_entry(row.1, row.3, Marker::Circle));
        }
    }
    entries.extend(mark_entries(marks, &s));
    let (legend, rest) = legend_strip(root, &entries, &s, path)?;
    let columns = rest.split_evenly((1, 2));
    // Per quantity one y range for both columns, so baseline and scaled compare at a glance.
    let ranges: Vec<(f64, f64)> = TRC_ROWS
        .iter()
        .map(|row| y_range(&roles.map(|(r, _)| line(r, *row))))
        .collect();
    let mut plots = Vec::new();
    for ((role, title), column) in roles.into_iter().zip(columns.iter()) {
        let body = column
            .titled(title, ("sans-serif", s.title))
            .map_err(err(path))?;
        let cells = body.split_evenly((TRC_ROWS.len(), 1));
        for (i, (row, cell)) in TRC_ROWS.iter().zip(cells.iter()).enumerate() {
            let panel = Panel {
                title: None,
                y_label: row.2,
                lines: vec![line(role, *row)],
                marks: (role == Role::Scaled).then_some(marks),
                y_range: Some(ranges[i]),
                x_label: (i + 1 == TRC_ROWS.len()).then_some("Time (s)"),
                x_ticks: true,
            };
            plots.push(draw_panel(cell, &panel, x_max, &s, path)?);
        }
    }
    Ok((legend, plots))
}

fn overlay<DB: DrawingBackend>(
    data: &MeanData,
    spec: &MetricSpec,
    marks: &ScaleMarks,
    x_max: f64,
    root: &DrawingArea<DB, Shift>,
    path: &Path,
) -> Result<(Rect, Vec<Rect>), FigureError>
where
    DB::ErrorType: 'static,
{
    // (title, label, tick, legend, marker, stroke)
    let s = Sizes::new((40, 32, 30, 28, 7, 3));
    let lines = with_bands(data, spec.readable);
    let mut entries = line_entries(&lines);
    entries.extend(mark_entries(marks, &s));
    let body = root
        .margin(10, 0, 0, 0)
        .titled(spec.readable, ("sans-serif", s.title))
        .map_err(err(path))?;
    let (legend, rest) = legend_strip(&body, &entries, &s, path)?;
    let panel = Panel {
        title: None,
        y_label: spec.unit,
        lines,
        marks: Some(marks),
        y_range: None,
        x_label: Some("Time (s)"),
        x_ticks: true,
    };
    let plot = draw_panel(&rest, &panel, x_max, &s, path)?;
    Ok((legend, vec![plot]))
}

fn two_roles<'a>(data: &'a MeanData, metric: &str) -> Vec<Line<'a>> {
    let get = |r: Role| data.get(r, metric).map(|v| v.as_slice()).unwrap_or(&[]);
    vec![
        Line {
            label: "Baseline",
            color: BASE_BLUE,
            marker: Marker::Circle,
            points: get(Role::Baseline),
            band: &[],
        },
        Line {
            label: "Scaled Run",
            color: SCALED_RED,
            marker: Marker::Square,
            points: get(Role::Scaled),
            band: &[],
        },
    ]
}

/// [`two_roles`] with the 5–95 % bands (overlays only; the paper's composite figures have none).
fn with_bands<'a>(data: &'a MeanData, metric: &str) -> Vec<Line<'a>> {
    let mut lines = two_roles(data, metric);
    for (line, role) in lines.iter_mut().zip([Role::Baseline, Role::Scaled]) {
        line.band = data.band(role, metric).unwrap_or(&[]);
    }
    lines
}
