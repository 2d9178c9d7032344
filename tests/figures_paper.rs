//! Figures drawn from the paper's 100-run means: every file exists with the expected pixel
//! size, is not blank, and shows both the baseline (blue) and the scaled (red) series.

mod common;

use starvation::figures::{Format, MeanData, ScaleMarks, draw_all, read_mean_data};
use starvation::results::runmeta::Role;
use std::path::Path;

struct Pixels {
    width: u32,
    height: u32,
    non_white: usize,
    blue: usize,
    red: usize,
    orange: usize,
    grey: usize,
}

fn decode(path: &Path) -> Pixels {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{}: {:?}", path.display(), info.color_type);
    let mut p = Pixels {
        width: info.width,
        height: info.height,
        non_white: 0,
        blue: 0,
        red: 0,
        orange: 0,
        grey: 0,
    };
    for px in buf[..info.buffer_size()].chunks(channels) {
        let (r, g, b) = (px[0], px[1], px[2]);
        if (r, g, b) != (255, 255, 255) {
            p.non_white += 1;
        }
        if b > 200 && r < 60 && g < 60 {
            p.blue += 1;
        }
        if r > 200 && g < 60 && b < 60 {
            p.red += 1;
        }
        if r > 200 && (130..200).contains(&g) && b < 60 {
            p.orange += 1;
        }
        if r == g && g == b && (220..=226).contains(&r) {
            p.grey += 1;
        }
    }
    p
}

#[test]
fn paper_figures_render_with_both_series() {
    let data = read_mean_data(&common::paper_fixtures().join("paper-means")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let written = draw_all(
        &data,
        out.path(),
        &[Format::Png, Format::Svg],
        &ScaleMarks {
            window: Some((24.0, 55.0)),
            events_s: vec![],
        },
    )
    .unwrap();
    // Stacked + Thread_Response_CPU + 6 overlays, in two formats.
    assert_eq!(written.len(), 16, "{written:?}");
    for p in &written {
        assert!(p.exists(), "{}", p.display());
    }
    let expect = [
        ("Stacked_Figures.png", (1424, 2880)),
        ("Thread_Response_CPU.png", (2400, 2200)),
        (
            "System_Runtime_ThreadPool_Queue_Length_overlay.png",
            (1600, 900),
        ),
        ("VM_CPU_Metrics_Over_Time_overlay.png", (1600, 900)),
    ];
    for (name, (w, h)) in expect {
        let px = decode(&out.path().join(name));
        assert_eq!((px.width, px.height), (w, h), "{name}");
        let total = (w * h) as usize;
        assert!(
            px.non_white * 50 > total,
            "{name} is (nearly) blank: {} of {total}",
            px.non_white
        );
        assert!(px.blue > 500, "{name}: baseline blue pixels {}", px.blue);
        assert!(px.red > 500, "{name}: scaled red pixels {}", px.red);
        assert!(
            px.grey > 2000,
            "{name}: scaling band grey pixels {}",
            px.grey
        );
    }
    assert!(decode(&out.path().join("Thread_Response_CPU.png")).orange > 500);
    // No temporary files are left behind (the manifest of what was written is the one dotfile).
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != starvation::results::output_dir::MANIFEST)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let svg = std::fs::read_to_string(out.path().join("Stacked_Figures.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("1424") && svg.contains("Scaled Run"));
}

#[test]
fn colour_checks_tell_the_series_apart() {
    // With only the baseline present there is no red and no band: the checks above mean something.
    let full = read_mean_data(&common::paper_fixtures().join("paper-means")).unwrap();
    let only_baseline = MeanData {
        baseline: full.baseline.clone(),
        ..Default::default()
    };
    assert!(
        only_baseline
            .get(Role::Scaled, "Busy Worker Threads")
            .is_none()
    );
    let out = tempfile::tempdir().unwrap();
    draw_all(
        &only_baseline,
        out.path(),
        &[Format::Png],
        &ScaleMarks::default(),
    )
    .unwrap();
    let px = decode(&out.path().join("Stacked_Figures.png"));
    assert!(px.blue > 500);
    assert_eq!(px.red, 0);
    assert!(px.grey < 2000, "no band without a window: {}", px.grey);
}

#[test]
fn bad_data_dirs_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let err = read_mean_data(&tmp.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--data"), "{err}");
    let err = read_mean_data(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("starvation aggregate"), "{err}");
    std::fs::create_dir_all(tmp.path().join("scaled")).unwrap();
    std::fs::write(
        tmp.path()
            .join("scaled/Busy_Worker_Threads_export_mean_values.csv"),
        "timestamp,value\n0.0,abc\n",
    )
    .unwrap();
    let err = read_mean_data(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("Busy_Worker_Threads_export_mean_values.csv") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn overlays_shade_the_5_to_95_percent_band_when_stats_exist() {
    let full = read_mean_data(&common::paper_fixtures().join("paper-means")).unwrap();
    let metric = "System Runtime ThreadPool Queue Length";
    let mut data = MeanData {
        baseline: full.baseline.clone(),
        scaled: full.scaled.clone(),
        ..Default::default()
    };
    let band: Vec<(f64, f64, f64)> = data.baseline[metric]
        .iter()
        .map(|&(t, v)| (t, v * 0.7, v * 1.3 + 2.0))
        .collect();
    data.bands.insert((Role::Baseline, metric), band);
    let out = tempfile::tempdir().unwrap();
    draw_all(&data, out.path(), &[Format::Png], &ScaleMarks::default()).unwrap();
    let light_blue = |name: &str| {
        let decoder = png::Decoder::new(std::fs::File::open(out.path().join(name)).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf[..info.buffer_size()]
            .chunks(info.color_type.samples())
            .filter(|p| p[2] == 255 && p[0] == p[1] && (215..235).contains(&p[0]))
            .count()
    };
    assert!(light_blue("System_Runtime_ThreadPool_Queue_Length_overlay.png") > 5000);
    assert!(
        light_blue("Busy_Worker_Threads_overlay.png") < 500,
        "no band without stats"
    );
}
