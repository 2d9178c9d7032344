//! One chart: axes, grid, the scale-event marks and the series. Legends are not drawn here —
//! they live in a strip of their own (`legend.rs`), so nothing can cover the data.

use super::draw::{Rect, err};
use super::{FigureError, ScaleMarks};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The paper's colours.
pub const BASE_BLUE: RGBColor = RGBColor(0, 0, 255);
pub const SCALED_RED: RGBColor = RGBColor(255, 0, 0);
pub const CPU_ORANGE: RGBColor = RGBColor(255, 165, 0);
pub const BAND_GREY: RGBColor = RGBColor(128, 128, 128);
/// Opacity of the grey band (on white: RGB 223).
pub const BAND_ALPHA: f64 = 0.25;
pub const EDGE_GREEN: RGBColor = RGBColor(0, 128, 0);
/// Every scale event: a thin solid line in a colour no series uses.
pub const EVENT_PURPLE: RGBColor = RGBColor(128, 0, 128);
const GRID: RGBColor = RGBColor(200, 200, 200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
}

pub struct Line<'a> {
    pub label: &'a str,
    pub color: RGBColor,
    pub marker: Marker,
    pub points: &'a [(f64, f64)],
    /// Optional 5–95 % band drawn behind the line.
    pub band: &'a [(f64, f64, f64)],
}

pub struct Panel<'a> {
    pub title: Option<&'a str>,
    pub y_label: &'a str,
    pub lines: Vec<Line<'a>>,
    /// Scale events to mark (band and lines), if this panel shows them.
    pub marks: Option<&'a ScaleMarks>,
    /// The y range; from the data when `None`.
    pub y_range: Option<(f64, f64)>,
    pub x_label: Option<&'a str>,
    pub x_ticks: bool,
}

/// Text and stroke sizes of one figure.
pub struct Sizes {
    pub title: u32,
    pub label: u32,
    pub tick: u32,
    pub legend: u32,
    pub marker: i32,
    pub stroke: u32,
}

impl Sizes {
    /// `(title, label, tick, legend, marker, stroke)`.
    pub const fn new(t: (u32, u32, u32, u32, i32, u32)) -> Self {
        Sizes {
            title: t.0,
            label: t.1,
            tick: t.2,
            legend: t.3,
            marker: t.4,
            stroke: t.5,
        }
    }
}

/// The y range that shows every value of `lines` with 5 % headroom (from 0 for non-negative data).
pub fn y_range(lines: &[Line]) -> (f64, f64) {
    let vals = lines
        .iter()
        .flat_map(|l| {
            l.points
                .iter()
                .map(|p| p.1)
                .chain(l.band.iter().flat_map(|b| [b.1, b.2]))
        })
        .filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-9);
    let mut lo2 = lo - 0.05 * span;
    if lo >= 0.0 && lo2 < 0.0 {
        lo2 = 0.0;
    }
    let hi2 = if hi == lo { hi + 1.0 } else { hi + 0.05 * span };
    (lo2, hi2)
}

/// Draw `p` into `area`; returns the plotting area's rectangle (absolute pixels).
pub fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    x_max: f64,
    s: &Sizes,
    path: &Path,
) -> Result<Rect, FigureError>
where
    DB::ErrorType: 'static,
{
    let (y_lo, y_hi) = p.y_range.unwrap_or_else(|| y_range(&p.lines));
    let x_lo = -0.02 * x_max;
    let x_hi = x_max * 1.02;
    let mut builder = ChartBuilder::on(area);
    if let Some(t) = p.title {
        builder.caption(t, ("sans-serif", s.title));
    }
    let mut chart = builder
        .margin(12)
        .margin_right(30)
        .x_label_area_size(if p.x_ticks || p.x_label.is_some() {
            s.tick * 2 + 10
        } else {
            10
        })
        .y_label_area_size(s.tick * 3 + 20)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(err(path))?;
    let x_ticks = p.x_ticks;
    let x_fmt = move |v: &f64| if x_ticks { trim_num(*v) } else { String::new() };
    let y_fmt = |v: &f64| trim_num(*v);
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(TRANSPARENT)
        .bold_line_style(GRID.stroke_width(1))
        .axis_style(BLACK.stroke_width(2))
        .x_labels(8)
        .y_labels(5)
        .label_style(("sans-serif", s.tick))
        .axis_desc_style(("sans-serif", s.label))
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt);
    if !p.y_label.is_empty() {
        mesh.y_desc(p.y_label);
    }
    if let Some(x) = p.x_label {
        mesh.x_desc(x);
    }
    mesh.draw().map_err(err(path))?;

    if let Some(marks) = p.marks {
        if let Some((a, b)) = marks.window {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a, y_lo), (b, y_hi)],
                    BAND_GREY.mix(BAND_ALPHA).filled(),
                )))
                .map_err(err(path))?;
            for edge in [a, b] {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(edge, y_lo), (edge, y_hi)],
                        10,
                        6,
                        EDGE_GREEN.stroke_width(s.stroke),
                    ))
                    .map_err(err(path))?;
            }
        }
        for t in marks.event_lines() {
            chart
                .draw_series(LineSeries::new(
                    [(t, y_lo), (t, y_hi)],
                    EVENT_PURPLE.stroke_width(event_stroke(s)),
                ))
                .map_err(err(path))?;
        }
    }

    for line in &p.lines {
        if line.band.len() < 2 {
            continue;
        }
        let mut outline: Vec<(f64, f64)> = line.band.iter().map(|b| (b.0, b.2)).collect();
        outline.extend(line.band.iter().rev().map(|b| (b.0, b.1)));
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                line.color.mix(0.12).filled(),
            )))
            .map_err(err(path))?;
    }
    for line in &p.lines {
        if line.points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                line.points.iter().cloned(),
                line.color.stroke_width(s.stroke),
            ))
            .map_err(err(path))?;
        chart
            .draw_series(line.points.iter().map(|&(x, y)| {
                EmptyElement::at((x, y)) + marker_element(line.marker, s.marker, line.color, 0)
            }))
            .map_err(err(path))?;
    }
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    Ok(Rect {
        x0: xs.start,
        y0: ys.start,
        x1: xs.end,
        y1: ys.end,
    })
}

/// Width of a scale-event line: thinner than the series.
pub fn event_stroke(s: &Sizes) -> u32 {
    s.stroke.div_ceil(2)
}

/// A marker as a filled polygon in pixel offsets (a 20-gon for circles), so both shapes share
/// one element type and compose with `EmptyElement::at`.
pub fn marker_element(marker: Marker, size: i32, color: RGBColor, dx: i32) -> Polygon<(i32, i32)> {
    let pts: Vec<(i32, i32)> = match marker {
        Marker::Square => vec![
            (dx - size, -size),
            (dx + size, -size),
            (dx + size, size),
            (dx - size, size),
        ],
        Marker::Circle => (0..20)
            .map(|i| {
                let a = i as f64 / 20.0 * std::f64::consts::TAU;
                (
                    dx + (a.cos() * size as f64).round() as i32,
                    (a.sin() * size as f64).round() as i32,
                )
            })
            .collect(),
    };
    Polygon::new(pts, color.filled())
}

pub fn trim_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
