//! Legends never cover data, every scale event is marked, and the legend shows what is drawn.
//! Synthetic means whose points run along the top edge of every chart, right into the top-right
//! corner where a legend placed inside the plot would sit.

use starvation::figures::{Format, Geometry, MeanData, Rect, ScaleMarks, draw_figure};
use starvation::results::metrics;
use std::path::Path;

const METRICS: [&str; 6] = [
    metrics::BUSY_WORKER_THREADS,
    metrics::REQUEST_DURATION_P99,
    metrics::PROCESS_THREADS,
    metrics::RUNTIME_CPU,
    metrics::NODE_CPU,
    metrics::QUEUE_LENGTH,
];

/// Every metric, both roles: one low point at 0 s, then 100 from 5 s to 150 s (the top edge).
fn top_heavy() -> MeanData {
    let curve = |first: f64| {
        let mut v = vec![(0.0, first)];
        v.extend((1..=30).map(|i| (i as f64 * 5.0, 100.0)));
        v
    };
    let mut data = MeanData::default();
    for m in METRICS {
        data.baseline.insert(m, curve(0.0));
        data.scaled.insert(m, curve(10.0));
    }
    data
}

/// Three distinct seconds (30, 41, 90) among five events.
fn marks() -> ScaleMarks {
    ScaleMarks {
        window: Some((28.0, 45.0)),
        events_s: vec![41.2, 30.2, 90.0, 30.4, 41.0],
    }
}

struct Image {
    w: u32,
    h: u32,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn read(path: &Path) -> Image {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let n = info.color_type.samples();
        assert!(n >= 3, "{:?}", info.color_type);
        let rgb = buf[..info.buffer_size()]
            .chunks(n)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Image {
            w: info.width,
            h: info.height,
            rgb,
        }
    }
    fn at(&self, x: i32, y: i32) -> [u8; 3] {
        self.rgb[y as usize * self.w as usize + x as usize]
    }
    /// Pixels of `r` matching `pred`.
    fn find(&self, r: &Rect, pred: impl Fn([u8; 3]) -> bool) -> Vec<(i32, i32)> {
        let mut v = Vec::new();
        for y in r.y0.max(0)..r.y1.min(self.h as i32) {
            for x in r.x0.max(0)..r.x1.min(self.w as i32) {
                if pred(self.at(x, y)) {
                    v.push((x, y));
                }
            }
        }
        v
    }
}

/// Fully saturated series colours (blue, red, orange); a legend's translucent background or a
/// label drawn over a point changes them.
fn series([r, g, b]: [u8; 3]) -> bool {
    (b > 200 && r < 60 && g < 60)
        || (r > 200 && g < 60 && b < 60)
        || (r > 200 && (130..200).contains(&g) && b < 60)
}
fn purple([r, g, b]: [u8; 3]) -> bool {
    (100..=160).contains(&r) && g < 40 && (100..=160).contains(&b)
}
fn band_grey([r, g, b]: [u8; 3]) -> bool {
    r == g && g == b && (220..=226).contains(&r)
}

fn bbox(px: &[(i32, i32)]) -> Rect {
    Rect {
        x0: px.iter().map(|p| p.0).min().unwrap(),
        y0: px.iter().map(|p| p.1).min().unwrap(),
        x1: px.iter().map(|p| p.0).max().unwrap() + 1,
        y1: px.iter().map(|p| p.1).max().unwrap() + 1,
    }
}

/// Widths of the vertical purple lines in plot `p`: runs of adjacent columns that are purple
/// over most of the plot's height (red squares anti-aliased over blue lines make purple specks).
fn vertical_lines(img: &Image, p: &Rect) -> Vec<usize> {
    let h = (p.y1 - p.y0) as usize;
    let mut count = vec![0usize; (p.x1 - p.x0) as usize];
    for (x, _) in img.find(p, purple) {
        count[(x - p.x0) as usize] += 1;
    }
    let mut widths = Vec::new();
    let mut run = 0;
    for c in count.iter().chain([&0]) {
        if *c * 2 > h {
            run += 1;
        } else if run > 0 {
            widths.push(run);
            run = 0;
        }
    }
    widths
}

/// The largest 4-connected group of `px` (anti-aliased text makes stray specks of any grey).
fn largest_blob(px: &[(i32, i32)]) -> Vec<(i32, i32)> {
    let mut left: std::collections::HashSet<(i32, i32)> = px.iter().copied().collect();
    let mut best = Vec::new();
    while let Some(&start) = left.iter().next() {
        left.remove(&start);
        let (mut blob, mut todo) = (vec![start], vec![start]);
        while let Some((x, y)) = todo.pop() {
            for n in [(x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)] {
                if left.remove(&n) {
                    blob.push(n);
                    todo.push(n);
                }
            }
        }
        if blob.len() > best.len() {
            best = blob;
        }
    }
    best
}

fn draw(stem: &str, dir: &Path) -> (Geometry, Image) {
    let path = dir.join(format!("{stem}.png"));
    let g = draw_figure(stem, &top_heavy(), &marks(), Format::Png, &path).unwrap();
    let img = Image::read(&path);
    assert_eq!(g.size, (img.w, img.h), "{stem}");
    (g, img)
}

const FIGURES: [(&str, usize); 3] = [
    ("Stacked_Figures", 6),
    ("Thread_Response_CPU", 6),
    ("Request_Duration_overlay", 1),
];

#[test]
fn legend_is_outside_every_plot_and_covers_no_point() {
    let dir = tempfile::tempdir().unwrap();
    for (stem, n_plots) in FIGURES {
        let (g, img) = draw(stem, dir.path());
        let whole = Rect {
            x0: 0,
            y0: 0,
            x1: img.w as i32,
            y1: img.h as i32,
        };
        assert_eq!(g.plots.len(), n_plots, "{stem}: {g:?}");
        assert!(!g.legend.is_empty(), "{stem}: no legend drawn");
        let l = g.legend;
        assert!(
            l.x0 >= 0 && l.y0 >= 0 && l.x1 <= whole.x1 && l.y1 <= whole.y1,
            "{stem}: legend {l:?} leaves the image"
        );
        // The legend box holds the legend: swatches in the series colours.
        assert!(img.find(&l, series).len() > 100, "{stem}: legend swatches");
        for (i, p) in g.plots.iter().enumerate() {
            assert!(!p.is_empty(), "{stem}: plot {i} {p:?}");
            assert!(
                !p.intersects(&l),
                "{stem}: legend {l:?} overlaps plot {i} {p:?}"
            );
            for (j, q) in g.plots.iter().enumerate().skip(i + 1) {
                assert!(!p.intersects(q), "{stem}: plots {i} {p:?} and {j} {q:?}");
            }
            // The points run along the top edge from 5 s to 150 s (x from 0.07 to 0.96 of
            // the plot's width): every column there shows a series colour in the top sixth.
            let w = p.x1 - p.x0;
            let top = Rect {
                x0: p.x0 + w * 8 / 100,
                y0: p.y0,
                x1: p.x0 + w * 95 / 100,
                y1: p.y0 + (p.y1 - p.y0) / 6,
            };
            let mut seen = vec![false; (top.x1 - top.x0) as usize];
            for (x, _) in img.find(&top, series) {
                seen[(x - top.x0) as usize] = true;
            }
            let hidden: Vec<i32> = (top.x0..top.x1)
                .filter(|x| !seen[(x - top.x0) as usize])
                .collect();
            assert!(
                hidden.is_empty(),
                "{stem}: plot {i} {p:?}: the top-edge points are covered in {} columns \
                 ({:?}..{:?})",
                hidden.len(),
                hidden.first(),
                hidden.last()
            );
        }
    }
}

#[test]
fn every_scale_event_is_a_line_and_the_legend_shows_a_line_and_a_band() {
    let dir = tempfile::tempdir().unwrap();
    for (stem, _) in FIGURES {
        let (g, img) = draw(stem, dir.path());
        // The last plot shows the scaled run in every figure (bottom of the scaled column).
        let p = *g.plots.last().unwrap();
        let h = (p.y1 - p.y0) as usize;
        let mut count = vec![0usize; (p.x1 - p.x0) as usize];
        for (x, _) in img.find(&p, purple) {
            count[(x - p.x0) as usize] += 1;
        }
        // Columns purple over most of the plot's height, grouped into adjacent runs.
        let mut lines = 0;
        let mut widths = Vec::new();
        let mut run = 0;
        for c in count.iter().chain([&0]) {
            if *c * 2 > h {
                run += 1;
            } else if run > 0 {
                lines += 1;
                widths.push(run);
                run = 0;
            }
        }
        assert_eq!(
            lines, 3,
            "{stem}: one line per distinct second (30, 41, 90 s)"
        );
        assert!(
            widths.iter().all(|w| *w <= 4),
            "{stem}: thin lines {widths:?}"
        );
        assert!(
            img.find(&p, band_grey).len() > 2000,
            "{stem}: the grey band"
        );

        // In the legend: the event swatch is a thin line, the band swatch a filled rectangle.
        let ev = img.find(&g.legend, purple);
        assert!(!ev.is_empty(), "{stem}: no scale-event swatch");
        let b = bbox(&ev);
        assert!(
            b.x1 - b.x0 <= 4 && b.y1 - b.y0 >= 10,
            "{stem}: event swatch {b:?} is not a thin line"
        );
        let grey = largest_blob(&img.find(&g.legend, band_grey));
        assert!(!grey.is_empty(), "{stem}: no band swatch");
        let b = bbox(&grey);
        let area = ((b.x1 - b.x0) * (b.y1 - b.y0)) as usize;
        assert!(
            b.x1 - b.x0 >= 20 && b.y1 - b.y0 >= 10 && grey.len() * 10 >= area * 8,
            "{stem}: band swatch {b:?} is not a filled rectangle ({} of {area} px)",
            grey.len()
        );
    }
}

#[test]
fn without_scale_events_nothing_is_marked_or_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.png");
    let stem = "Request_Duration_overlay";
    let g = draw_figure(
        stem,
        &top_heavy(),
        &ScaleMarks::default(),
        Format::Png,
        &path,
    )
    .unwrap();
    let img = Image::read(&path);
    let whole = Rect {
        x0: 0,
        y0: 0,
        x1: img.w as i32,
        y1: img.h as i32,
    };
    assert_eq!(vertical_lines(&img, &g.plots[0]), Vec::<usize>::new());
    assert!(img.find(&g.legend, purple).is_empty(), "no event swatch");
    let grey = largest_blob(&img.find(&whole, band_grey));
    assert!(grey.len() < 100, "no band: {} px", grey.len());
    assert!(img.find(&g.legend, series).len() > 100);
}

#[test]
fn thread_response_cpu_has_an_axis_with_a_unit_per_quantity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trc.svg");
    let g = draw_figure(
        "Thread_Response_CPU",
        &top_heavy(),
        &marks(),
        Format::Svg,
        &path,
    )
    .unwrap();
    assert_eq!(g.plots.len(), 6);
    let svg = std::fs::read_to_string(&path).unwrap();
    for label in [
        "Queue Length (items)",
        "Response Time (s)",
        "CPU Usage (%)",
        "Time (s)",
    ] {
        // Once per column (SVG text sits on a line of its own).
        let n = svg.lines().filter(|l| l.trim() == label).count();
        assert_eq!(n, 2, "{label}");
    }
}
