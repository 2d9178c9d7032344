//! Reading the files the results commands are given: regular files only (a FIFO or device
//! would block or never end), and no larger than a cap checked before reading.

use super::ResultsError;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest export (`*_export.json`) read: a 5-minute run's is a few kB, the paper's largest
/// 0.3 MB; 64 MiB is room for hours of many replicas at a 1 s step.
pub const EXPORT_MAX_BYTES: u64 = 64 << 20;
/// The largest small file read (run.json, summary.json, a mean CSV).
pub const SMALL_MAX_BYTES: u64 = 16 << 20;

/// The whole of `path`, if it is a regular file of at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ResultsError> {
    let refuse = |what: String| ResultsError::Usage(format!("{}: {what}", path.display()));
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever;
    // for a regular file the flag changes nothing.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ResultsError::io(path, e))?;
    let meta = file.metadata().map_err(|e| ResultsError::io(path, e))?;
    if !meta.is_file() {
        return Err(refuse(format!(
            "not a regular file ({}); results are read from regular files only, remove or rename it",
            kind(&meta)
        )));
    }
    if meta.len() > cap {
        return Err(refuse(format!(
            "{} bytes, more than the {} MiB this file may hold; is it the right file?",
            meta.len(),
            cap >> 20
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded again while reading: the file may grow after the check.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ResultsError::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(refuse(format!(
            "grew past {} MiB while being read",
            cap >> 20
        )));
    }
    Ok(bytes)
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifos_and_oversized_files_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("Total_Requests_export.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = read_regular(&fifo, EXPORT_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file (a FIFO)"), "{err}");

        let sparse = dir.path().join("big.json");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let err = read_regular(&sparse, EXPORT_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2147483648 bytes, more than the 64 MiB"),
            "{err}"
        );

        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, b"{}").unwrap();
        assert_eq!(read_regular(&ok, 2).unwrap(), b"{}");
        assert!(read_regular(&ok, 1).is_err());
    }
}
