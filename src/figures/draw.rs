//! The drawing itself, generic over plotters backends (bitmap for PNG, SVG).

use super::{FigureError, Format, MeanData};
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

/// The paper's colours.
const BASE_BLUE: RGBColor = RGBColor(0, 0, 255);
const SCALED_RED: RGBColor = RGBColor(255, 0, 0);
const CPU_ORANGE: RGBColor = RGBColor(255, 165, 0);
const BAND_GREY: RGBColor = RGBColor(128, 128, 128);
const EDGE_GREEN: RGBColor = RGBColor(0, 128, 0);
const GRID: RGBColor = RGBColor(200, 200, 200);

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
}

struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    marker: Marker,
    points: &'a [(f64, f64)],
    /// Optional 5–95 % band drawn behind the line.
    band: &'a [(f64, f64, f64)],
}

struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    lines: Vec<Line<'a>>,
    band: Option<(f64, f64)>,
    band_label: &'a str,
    legend_pos: SeriesLabelPosition,
    x_label: Option<&'a str>,
    x_ticks: bool,
}

/// Scale factor: sizes below are for a 1424 px wide figure (the paper's width).
struct Sizes {
    title: u32,
    label: u32,
    tick: u32,
    legend: u32,
    marker: i32,
    stroke: u32,
}

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

pub const STACKED_SIZE: (u32, u32) = (1424, 2880);
pub const TRC_SIZE: (u32, u32) = (2400, 2200);
pub const OVERLAY_SIZE: (u32, u32) = (1600, 900);

fn err<E: std::error::Error + Send + Sync>(
    path: &Path,
) -> impl Fn(DrawingAreaErrorKind<E>) -> FigureError + '_ {
    move |e| FigureError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Draw the figure `stem` into `path` (whose extension matches `fmt`).
pub fn draw_figure(
    stem: &str,
    data: &MeanData,
    window: Option<(f64, f64)>,
    fmt: Format,
    path: &Path,
) -> Result<(), FigureError> {
    let size = match stem {
        "Stacked_Figures" => STACKED_SIZE,
        "Thread_Response_CPU" => TRC_SIZE,
        _ => OVERLAY_SIZE,
    };
    match fmt {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw_into(stem, data, window, &root, path)?;
            root.present().map_err(err(path))
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw_into(stem, data, window, &root, path)?;
            root.present().map_err(err(path))
        }
    }
}

fn draw_into<DB: DrawingBackend>(
    stem: &str,
    data: &MeanData,
    window: Option<(f64, f64)>,
    root: &DrawingArea<DB, Shift>,
    path: &Path,
) -> Result<(), FigureError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err(path))?;
    let x_max = data
        .max_offset()
        .max(window.map(|w| w.1).unwrap_or(0.0))
        .max(5.0);
    match stem {
        "Stacked_Figures" => {
            let areas = root.split_evenly((STACKED_PANELS.len(), 1));
            let sizes = Sizes {
                title: 30,
                label: 28,
                tick: 32,
                legend: 24,
                marker: 6,
                stroke: 3,
            };
            for (i, ((metric, title, unit), area)) in
                STACKED_PANELS.iter().zip(areas.iter()).enumerate()
            {
                let last = i + 1 == STACKED_PANELS.len();
                let panel = Panel {
                    title,
                    y_label: unit,
                    lines: two_roles(data, metric),
                    band: window,
                    band_label: "Scaling Event",
                    legend_pos: SeriesLabelPosition::UpperRight,
                    x_label: last.then_some("Time (s)"),
                    x_ticks: last,
                };
                draw_panel(area, &panel, x_max, &sizes, path)?;
            }
        }
        "Thread_Response_CPU" => {
            let areas = root.split_evenly((2, 1));
            let sizes = Sizes {
                title: 46,
                label: 38,
                tick: 36,
                legend: 36,
                marker: 9,
                stroke: 4,
            };
            for (i, (role, title)) in [
                (Role::Baseline, "Baseline Run"),
                (Role::Scaled, "Run with Scaling Mechanism"),
            ]
            .into_iter()
            .enumerate()
            {
                let get = |m: &str| data.get(role, m).map(|v| v.as_slice()).unwrap_or(&[]);
                let lines = vec![
                    Line {
                        label: "Threadpool Queue Length",
                        color: BASE_BLUE,
                        marker: Marker::Circle,
                        points: get(metrics::QUEUE_LENGTH),
                        band: &[],
                    },
                    Line {
                        label: "Response Time (s)",
                        color: SCALED_RED,
                        marker: Marker::Circle,
                        points: get(metrics::REQUEST_DURATION_P99),
                        band: &[],
                    },
                    Line {
                        label: "Container CPU Usage (%)",
                        color: CPU_ORANGE,
                        marker: Marker::Circle,
                        points: get(metrics::RUNTIME_CPU),
                        band: &[],
                    },
                ];
                let panel = Panel {
                    title,
                    y_label: "",
                    lines,
                    band: if role == Role::Scaled { window } else { None },
                    band_label: "Scaling Event Window",
                    legend_pos: SeriesLabelPosition::UpperLeft,
                    x_label: (i == 1).then_some("Time (s)"),
                    x_ticks: true,
                };
                draw_panel(&areas[i], &panel, x_max, &sizes, path)?;
            }
        }
        other => {
            let stem = other.strip_suffix("_overlay").unwrap_or(other);
            let spec: &MetricSpec = metrics::find(stem)
                .ok_or_else(|| FigureError::Usage(format!("unknown figure {other}")))?;
            let sizes = Sizes {
                title: 40,
                label: 32,
                tick: 30,
                legend: 30,
                marker: 7,
                stroke: 3,
            };
            let panel = Panel {
                title: spec.readable,
                y_label: spec.unit,
                lines: with_bands(data, spec.readable),
                band: window,
                band_label: "Scaling Event",
                legend_pos: SeriesLabelPosition::UpperRight,
                x_label: Some("Time (s)"),
                x_ticks: true,
            };
            draw_panel(root, &panel, x_max, &sizes, path)?;
        }
    }
    Ok(())
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

fn y_range(lines: &[Line]) -> (f64, f64) {
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

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    x_max: f64,
    s: &Sizes,
    path: &Path,
) -> Result<(), FigureError>
where
    DB::ErrorType: 'static,
{
    let (y_lo, y_hi) = y_range(&p.lines);
    let x_lo = -0.02 * x_max;
    let x_hi = x_max * 1.02;
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", s.title))
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

    if let Some((a, b)) = p.band {
        let band = BAND_GREY.mix(0.25).filled();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y_lo), (b, y_hi)],
                band,
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

    for line in &p.lines {
        if line.band.len() < 2 {
            continue;
        }
        let mut outline: Vec<(f64, f64)> = line.band.iter().map(|b| (b.0, b.2)).collect();
        outline.extend(line.band.iter().rev().map(|b| (b.0, b.1)));
        let color = line.color;
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.12).filled(),
            )))
            .map_err(err(path))?
            .label(format!("{} 5–95 %", line.label))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 8), (x + 32, y + 8)], color.mix(0.12).filled())
            });
    }
    for line in &p.lines {
        if line.points.is_empty() {
            continue;
        }
        let style = line.color.stroke_width(s.stroke);
        let (color, marker, m) = (line.color, line.marker, s.marker);
        chart
            .draw_series(LineSeries::new(line.points.iter().cloned(), style))
            .map_err(err(path))?
            .label(line.label)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (32, 0)], color.stroke_width(3))
                    + marker_element(marker, m, color, 16)
            });
        chart
            .draw_series(line.points.iter().map(|&(x, y)| {
                EmptyElement::at((x, y)) + marker_element(line.marker, s.marker, line.color, 0)
            }))
            .map_err(err(path))?;
    }
    if p.band.is_some() {
        // An empty series that only carries the band's legend entry, after the lines (the
        // paper's legend order).
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(err(path))?
            .label(p.band_label)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 8), (x + 32, y + 8)], BAND_GREY.mix(0.25).filled())
            });
    }
    chart
        .configure_series_labels()
        .legend_area_size(44)
        .position(p.legend_pos.clone())
        .background_style(WHITE.mix(0.7))
        .border_style(TRANSPARENT)
        .label_font(("sans-serif", s.legend))
        .margin(10)
        .draw()
        .map_err(err(path))?;
    Ok(())
}

/// A marker as a filled polygon in pixel offsets (a 20-gon for circles), so both shapes share
/// one element type and compose with `EmptyElement::at`.
fn marker_element(marker: Marker, size: i32, color: RGBColor, dx: i32) -> Polygon<(i32, i32)> {
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

fn trim_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
