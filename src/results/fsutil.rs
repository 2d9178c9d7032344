//! File-system helpers of the results commands: output folders created or replaced whole
//! ([`StagedDir`]), Python-compatible float text, cancellation between files, progress bars.
//! (Atomic single-file writes are [`crate::util::write_atomic`].)

use super::ResultsError;
use std::path::{Path, PathBuf};

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

/// An output folder built aside and swapped in whole: everything is written into a hidden
/// temporary folder beside `--out`, and [`StagedDir::commit`] puts it in place of `--out`. A
/// failed or interrupted run leaves `--out` as it was (the staging folder is removed on drop),
/// and no file of an older run survives a successful one.
pub struct StagedDir {
    target: PathBuf,
    staging: Option<tempfile::TempDir>,
}

impl StagedDir {
    /// Stage a replacement for `target`. `marker` is a file every earlier output of this command
    /// holds: a non-empty `target` without it is someone else's folder and is refused rather
    /// than replaced.
    pub fn new(target: &Path, flag: &str, marker: &str) -> Result<Self, ResultsError> {
        if target.exists() {
            if !target.is_dir() {
                return Err(ResultsError::Usage(format!(
                    "{flag} {}: exists and is not a directory; pass a directory",
                    target.display()
                )));
            }
            let non_empty = std::fs::read_dir(target)
                .map_err(|e| ResultsError::io(target, e))?
                .next()
                .is_some();
            if non_empty && !target.join(marker).exists() {
                return Err(ResultsError::Usage(format!(
                    "{flag} {}: holds files that this command did not write (no {marker}), and \
                     its output replaces the whole folder; pass a new or empty folder",
                    target.display()
                )));
            }
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        ensure_dir(&parent, flag)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-"))
            .tempdir_in(&parent)
            .map_err(|e| {
                ResultsError::Usage(format!(
                    "{flag} {}: cannot create a folder beside it: {e}; pass a writable location",
                    target.display()
                ))
            })?;
        Ok(Self {
            target: target.to_path_buf(),
            staging: Some(staging),
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        self.staging.as_ref().expect("not committed").path()
    }

    /// Replace the target with the staged folder.
    pub fn commit(mut self) -> Result<(), ResultsError> {
        let staged = self.staging.take().expect("not committed").keep();
        let old = self.target.with_file_name(format!(
            ".{}.old-{}",
            self.target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.target.exists();
        let res = (|| {
            if had_old {
                std::fs::rename(&self.target, &old)?;
            }
            if let Err(e) = std::fs::rename(&staged, &self.target) {
                if had_old {
                    let _ = std::fs::rename(&old, &self.target);
                }
                return Err(e);
            }
            Ok(())
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(ResultsError::io(&self.target, e));
        }
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
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

    #[test]
    fn staged_dir_replaces_the_whole_folder_or_nothing() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("means");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("summary.json"), "{}").unwrap();
        std::fs::write(out.join("stale.csv"), "old").unwrap();
        // Dropped without commit: the old folder is untouched, no staging folder remains.
        {
            let staged = StagedDir::new(&out, "--out", "summary.json").unwrap();
            std::fs::write(staged.path().join("half.csv"), "x").unwrap();
        }
        assert!(out.join("stale.csv").exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
        // Committed: only the new files.
        let staged = StagedDir::new(&out, "--out", "summary.json").unwrap();
        std::fs::write(staged.path().join("summary.json"), "{\"new\":1}").unwrap();
        staged.commit().unwrap();
        assert!(!out.join("stale.csv").exists());
        assert!(out.join("summary.json").exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
        // A folder that is not ours is refused, and kept.
        let other = root.path().join("photos");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("cat.jpg"), "meow").unwrap();
        let err = StagedDir::new(&other, "--out", "summary.json")
            .err()
            .unwrap();
        assert!(err.to_string().contains("new or empty folder"), "{err}");
        assert!(other.join("cat.jpg").exists());
    }
}
