//! The `export`, `aggregate` and `figures` subcommands through the command-line parser and
//! `cli::run`, end to end on the paper's pair: exports → means + summary → figures.

mod common;

use clap::Parser;
use starvation::cli::{Cli, Command, run};

#[test]
fn subcommands_parse_their_flags() {
    let cli = Cli::try_parse_from([
        "starvation",
        "figures",
        "--data",
        "d",
        "--out",
        "o",
        "--format",
        "png,svg",
        "--scale-window",
        "24:55",
        "--scale-events",
        "24,31.5,55",
    ])
    .unwrap();
    let Command::Figures(f) = cli.command else {
        panic!("not figures")
    };
    assert_eq!(f.scale_events, Some(vec![24.0, 31.5, 55.0]));
    assert_eq!(
        f.format,
        vec![
            starvation::figures::Format::Png,
            starvation::figures::Format::Svg
        ]
    );
    assert_eq!(f.scale_window, Some((24.0, 55.0)));

    let cli =
        Cli::try_parse_from(["starvation", "aggregate", "--runs", "r", "--out", "o"]).unwrap();
    let Command::Aggregate(a) = cli.command else {
        panic!("not aggregate")
    };
    assert_eq!(a.step, std::time::Duration::from_secs(5));
    assert_eq!(a.resamples, 2000);

    let err = Cli::try_parse_from([
        "starvation",
        "figures",
        "--data",
        "d",
        "--out",
        "o",
        "--scale-window",
        "55:24",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--scale-window") && err.contains("START"),
        "{err}"
    );
    let err = Cli::try_parse_from([
        "starvation",
        "figures",
        "--data",
        "d",
        "--out",
        "o",
        "--scale-events",
        "24,-3",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--scale-events") && err.contains("≥ 0"),
        "{err}"
    );
    let err = Cli::try_parse_from([
        "starvation",
        "export",
        "--out",
        "o",
        "--start",
        "1",
        "--end",
        "2",
        "--last",
        "5m",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("--last"), "{err}");
    let err = Cli::try_parse_from([
        "starvation",
        "export",
        "--out",
        "o",
        "--last",
        "5m",
        "--role",
        "scaled",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("--pair"), "{err}");
    assert!(
        Cli::try_parse_from([
            "starvation",
            "export",
            "--out",
            "o",
            "--last",
            "5m",
            "--role",
            "scaled",
            "--pair",
            "0"
        ])
        .is_err()
    );
}

#[tokio::test]
async fn aggregate_then_figures_on_the_paper_pair() {
    let reference = common::paper_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let means = tmp.path().join("means");
    let figs = tmp.path().join("figs");
    let runs = reference.join("paper-exports");
    let cli = Cli::try_parse_from([
        "starvation",
        "aggregate",
        "--runs",
        runs.to_str().unwrap(),
        "--out",
        means.to_str().unwrap(),
    ])
    .unwrap();
    run(cli).await.unwrap();
    assert!(means.join("summary.json").exists());
    assert!(
        means
            .join("scaled/System_Runtime_ThreadPool_Queue_Length_export_mean_values.csv")
            .exists()
    );

    // No --scale-window: the band comes from summary.json.
    let cli = Cli::try_parse_from([
        "starvation",
        "figures",
        "--data",
        means.to_str().unwrap(),
        "--out",
        figs.to_str().unwrap(),
        "--format",
        "svg",
    ])
    .unwrap();
    run(cli).await.unwrap();
    for f in [
        "Stacked_Figures.svg",
        "Thread_Response_CPU.svg",
        "Request_Duration_overlay.svg",
        "Total_Requests_overlay.svg",
    ] {
        assert!(figs.join(f).exists(), "{f}");
    }
    let svg = std::fs::read_to_string(figs.join("Stacked_Figures.svg")).unwrap();
    assert!(
        svg.contains("First scale event, earliest–latest"),
        "band legend from the recorded window"
    );
    // The paper pair's one scale event (19 s) as aggregate recorded it: one line per panel.
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(means.join("summary.json")).unwrap()
        )
        .unwrap()["scale_events"]["events_s"],
        serde_json::json!([19.0])
    );
    assert!(svg.contains("Scale events (all runs)"), "event legend");
    assert_eq!(
        svg.matches("stroke=\"#800080\"").count(),
        6 + 1,
        "event lines"
    );

    // Every scale event recorded in summary.json (`scale_events.events_s`) gets a line.
    let summary = means.join("summary.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    v["scale_events"]["events_s"] = serde_json::json!([24.0, 24.3, 40.0]);
    std::fs::write(&summary, serde_json::to_vec(&v).unwrap()).unwrap();
    let cli = Cli::try_parse_from([
        "starvation",
        "figures",
        "--data",
        means.to_str().unwrap(),
        "--out",
        figs.to_str().unwrap(),
        "--format",
        "svg",
    ])
    .unwrap();
    run(cli).await.unwrap();
    let svg = std::fs::read_to_string(figs.join("Stacked_Figures.svg")).unwrap();
    assert!(svg.contains("Scale events (all runs)"), "event legend");
    // Two distinct seconds (24, 40), one line each in each of the six panels, and the swatch.
    let lines = svg.matches("stroke=\"#800080\"").count();
    assert_eq!(lines, 2 * 6 + 1, "event lines");
}

/// An I/O error names its file and its cause once (it used to print "Is a directory (os
/// error 21)" twice: in the message and again as the error's source).
#[test]
fn an_io_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("runs/r1/run.json")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_starvation"))
        .args(["aggregate", "--runs"])
        .arg(dir.path().join("runs"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run.json: not a regular file (a directory)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("a directory").count(), 1, "{stderr}");
    assert!(
        !dir.path().join("out").exists(),
        "nothing written on an error"
    );
}
