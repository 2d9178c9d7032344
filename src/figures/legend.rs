//! Legends in a strip of their own above the plots: entries in rows, centred, wrapped to the
//! strip's width. The strip is carved off the figure before any chart is laid out, so a legend can
//! never cover a point. Each swatch shows what is drawn: a series is a line with its marker, a
//! scale event a thin vertical line, a band a filled rectangle.

use super::FigureError;
use super::draw::{Rect, err};
use super::panel::{EDGE_GREEN, Marker, marker_element};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

#[derive(Clone, Copy, Debug)]
pub enum Swatch {
    /// A data series: a horizontal line through its marker.
    Series { color: RGBColor, marker: Marker },
    /// A thin vertical line (every scale event).
    VLine { color: RGBColor, width: u32 },
    /// A filled rectangle (a band); `edges`: with the scale band's green edges.
    Band {
        color: RGBColor,
        alpha: f64,
        edges: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub label: String,
    pub swatch: Swatch,
}

/// Sizes of a legend, in pixels.
#[derive(Clone, Copy)]
pub struct Style {
    pub font: u32,
    pub marker: i32,
    pub stroke: u32,
}

impl Style {
    fn swatch_w(&self) -> i32 {
        (self.font * 2) as i32
    }
    fn gap(&self) -> i32 {
        (self.font / 2) as i32
    }
    fn spacing(&self) -> i32 {
        (self.font * 3 / 2) as i32
    }
    fn row_h(&self) -> i32 {
        (self.font as i32 * 3 / 2).max(self.marker * 2 + 6)
    }
    fn pad(&self) -> i32 {
        (self.font / 2) as i32
    }
}

/// Where each entry goes, relative to the legend box's top-left corner.
pub struct Layout {
    pub w: u32,
    pub h: u32,
    /// (x of the swatch's left edge, y of the row's centre) per entry.
    at: Vec<(i32, i32)>,
}

/// Lay `entries` out in rows no wider than `max_w` pixels (text measured on `area`).
pub fn layout<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    s: &Style,
    max_w: u32,
) -> Layout {
    let font: TextStyle = ("sans-serif", s.font).into();
    let widths: Vec<i32> = entries
        .iter()
        .map(|e| {
            let text_w = area
                .estimate_text_size(&e.label, &font)
                .map(|(w, _)| w as i32)
                // Estimating needs only the bundled font; a rough width if it should fail.
                .unwrap_or((e.label.chars().count() as u32 * s.font * 6 / 10) as i32);
            s.swatch_w() + s.gap() + text_w
        })
        .collect();
    let inner_max = max_w as i32 - 2 * s.pad();
    let mut rows: Vec<Vec<usize>> = vec![];
    let mut row_w = 0;
    for (i, w) in widths.iter().enumerate() {
        let add = if row_w == 0 { *w } else { s.spacing() + w };
        match rows.last_mut() {
            Some(row) if row_w + add <= inner_max => {
                row.push(i);
                row_w += add;
            }
            _ => {
                rows.push(vec![i]);
                row_w = *w;
            }
        }
    }
    let row_width = |row: &[usize]| {
        row.iter().map(|&i| widths[i]).sum::<i32>() + s.spacing() * (row.len() as i32 - 1).max(0)
    };
    let inner_w = rows.iter().map(|r| row_width(r)).max().unwrap_or(0);
    let mut at = vec![(0, 0); entries.len()];
    for (r, row) in rows.iter().enumerate() {
        // Rows centred inside the box.
        let mut x = s.pad() + (inner_w - row_width(row)) / 2;
        let y = s.pad() + r as i32 * s.row_h() + s.row_h() / 2;
        for &i in row {
            at[i] = (x, y);
            x += widths[i] + s.spacing();
        }
    }
    Layout {
        w: (inner_w + 2 * s.pad()).max(0) as u32,
        h: (rows.len() as i32 * s.row_h() + 2 * s.pad()).max(0) as u32,
        at,
    }
}

/// The height a strip needs to hold the legend of `entries` laid out within `max_w`.
pub fn strip_height<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    s: &Style,
    max_w: u32,
) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    layout(area, entries, s, max_w).h + 2 * s.pad() as u32
}

/// Draw the legend centred in `strip`; returns the legend box (absolute pixels). Nothing is
/// drawn (and an empty rectangle returned) without entries.
pub fn draw<DB: DrawingBackend>(
    strip: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    s: &Style,
    path: &Path,
) -> Result<Rect, FigureError>
where
    DB::ErrorType: 'static,
{
    let (sw, sh) = strip.dim_in_pixel();
    let (bx, by) = strip.get_base_pixel();
    if entries.is_empty() {
        return Ok(Rect {
            x0: bx,
            y0: by,
            x1: bx,
            y1: by,
        });
    }
    let l = layout(strip, entries, s, sw);
    let ox = (sw as i32 - l.w as i32) / 2;
    let oy = (sh as i32 - l.h as i32) / 2;
    strip
        .draw(&Rectangle::new(
            [(ox, oy), (ox + l.w as i32 - 1, oy + l.h as i32 - 1)],
            RGBColor(160, 160, 160).stroke_width(1),
        ))
        .map_err(err(path))?;
    let font = ("sans-serif", s.font)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let half = s.font as i32 / 2;
    for (e, &(x, y)) in entries.iter().zip(&l.at) {
        let (x, y) = (ox + x, oy + y);
        let x1 = x + s.swatch_w();
        match e.swatch {
            Swatch::Series { color, marker } => {
                strip
                    .draw(&PathElement::new(
                        vec![(x, y), (x1, y)],
                        color.stroke_width(s.stroke),
                    ))
                    .map_err(err(path))?;
                strip
                    .draw(
                        &(EmptyElement::at(((x + x1) / 2, y))
                            + marker_element(marker, s.marker, color, 0)),
                    )
                    .map_err(err(path))?;
            }
            Swatch::VLine { color, width } => {
                let xm = (x + x1) / 2;
                strip
                    .draw(&PathElement::new(
                        vec![(xm, y - half), (xm, y + half)],
                        color.stroke_width(width),
                    ))
                    .map_err(err(path))?;
            }
            Swatch::Band {
                color,
                alpha,
                edges,
            } => {
                strip
                    .draw(&Rectangle::new(
                        [(x, y - half), (x1, y + half)],
                        color.mix(alpha).filled(),
                    ))
                    .map_err(err(path))?;
                for edge in [x, x1].into_iter().filter(|_| edges) {
                    strip
                        .draw(&PathElement::new(
                            vec![(edge, y - half), (edge, y + half)],
                            EDGE_GREEN.stroke_width(2),
                        ))
                        .map_err(err(path))?;
                }
            }
        }
        strip
            .draw(&Text::new(e.label.clone(), (x1 + s.gap(), y), font.clone()))
            .map_err(err(path))?;
    }
    Ok(Rect {
        x0: bx + ox,
        y0: by + oy,
        x1: bx + ox + l.w as i32,
        y1: by + oy + l.h as i32,
    })
}
