//! Ctrl-C stops `aggregate` and `figures` between two files and leaves no partial output.
//! (Its own test binary: the cancel flag is process-wide.)

mod common;

use starvation::figures::{FigureError, Format, ScaleMarks, draw_all, read_mean_data};
use starvation::results::ResultsError;
use starvation::results::aggregate::aggregate;
use starvation::results::fsutil::request_cancel;

#[test]
fn cancelled_work_stops_without_partial_files() {
    let reference = common::paper_fixtures();
    let data = read_mean_data(&reference.join("paper-means")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    request_cancel();
    let err = aggregate(&reference.join("paper-exports"), &tmp.path().join("means")).unwrap_err();
    assert!(matches!(err, ResultsError::Interrupted), "{err}");
    let err = draw_all(
        &data,
        &tmp.path().join("figs"),
        &[Format::Png],
        &ScaleMarks::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, FigureError::Results(ResultsError::Interrupted)),
        "{err}"
    );
    for d in ["means", "figs"] {
        let p = tmp.path().join(d);
        let n = std::fs::read_dir(&p).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{d} holds files after an interrupted run");
    }
}
