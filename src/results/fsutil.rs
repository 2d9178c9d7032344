//! File-system helpers of the results commands: Python-compatible float text, cancellation
//! between files, progress bars. (Output folders: [`super::output_dir`]; reading inputs:
//! [`super::input`]; atomic single-file writes: [`crate::util::write_atomic`].)

use super::ResultsError;
use std::path::Path;

/// Create `dir` (and parents), naming the flag it came from when that fails.
pub fn ensure_dir(dir: &Path, flag: &str) -> Result<(), ResultsError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ResultsError::Usage(format!(
            "{flag} {}: cannot create the directory: {e}; pass a writable directory",
            dir.display()
        ))
    })
}

/// Format a float the way Python's `repr` does for ordinary values (`5.0`, `7.25531914893617`),
/// so our CSVs look like the paper's.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

static CANCEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ask long-running work (aggregate, figures) to stop before its next file.
pub fn request_cancel() {
    CANCEL.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// True once [`request_cancel`] was called (Ctrl-C).
pub fn cancelled() -> bool {
    CANCEL.load(std::sync::atomic::Ordering::SeqCst)
}

pub(crate) fn reset_cancel() {
    CANCEL.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// `Err(Interrupted)` once Ctrl-C was pressed.
pub fn check_cancel() -> Result<(), ResultsError> {
    if cancelled() {
        Err(ResultsError::Interrupted)
    } else {
        Ok(())
    }
}

/// A progress bar on stderr for long work (hidden for fewer than 20 items, and by indicatif
/// when stderr is not a terminal).
pub fn progress_bar(len: u64, msg: &'static str) -> indicatif::ProgressBar {
    if len < 20 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
    {
        bar.set_style(style);
    }
    bar.set_message(msg);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_float_matches_python_repr() {
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(145.0), "145.0");
        assert_eq!(py_float(7.25531914893617), "7.25531914893617");
        assert_eq!(py_float(-2.5), "-2.5");
    }
}
