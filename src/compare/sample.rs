//! Pool readings: what the .NET service's `--sample-file` holds, read as it grows, and both
//! sides' readings put on one grid of whole seconds after the load started.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::CompareError;

/// The pool at one instant, on either side.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PoolReading {
    /// Threads processing work (.NET: max − available worker threads; the model: `processing`).
    pub busy: f64,
    /// Pool threads that exist, working or idle (.NET: `ThreadPool.ThreadCount`; the model:
    /// `existing`).
    pub threads: f64,
    /// Work items queued and not yet started (.NET: `ThreadPool.PendingWorkItemCount`; the
    /// model: its queue length).
    pub queue: f64,
    /// Work items the pool completed so far (.NET: `ThreadPool.CompletedWorkItemCount`).
    pub work_items: f64,
}

impl PoolReading {
    /// Nothing running, nothing waiting.
    pub fn idle(&self) -> bool {
        self.busy == 0.0 && self.queue == 0.0
    }
}

/// One line of the .NET service's `--sample-file` (dotnet/Gauges.cs `Json`); the other fields
/// of the line are not needed here.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct DotnetSample {
    /// Wall-clock time of the reading, Unix seconds.
    pub t: f64,
    /// `max - available` worker threads.
    pub busy: u32,
    /// `ThreadPool.PendingWorkItemCount`.
    pub queue: u64,
    /// `ThreadPool.ThreadCount`.
    pub pool_threads: u32,
    /// `ThreadPool.CompletedWorkItemCount`.
    pub completed: u64,
}

impl DotnetSample {
    pub fn reading(&self) -> PoolReading {
        PoolReading {
            busy: f64::from(self.busy),
            threads: f64::from(self.pool_threads),
            queue: self.queue as f64,
            work_items: self.completed as f64,
        }
    }
}

/// Parses one sample line.
pub fn parse_line(line: &str) -> Result<DotnetSample, serde_json::Error> {
    serde_json::from_str(line)
}

/// Reads the lines a running .NET service appends to its sample file.
#[derive(Debug)]
pub struct SampleFile {
    path: PathBuf,
    offset: u64,
    partial: String,
    samples: Vec<DotnetSample>,
}

impl SampleFile {
    pub fn new(path: &Path) -> SampleFile {
        SampleFile {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            samples: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was appended since the last call; a line still being written waits for the
    /// next. A file not made yet holds nothing.
    pub fn read_new(&mut self) -> Result<(), CompareError> {
        let io = |source| CompareError::SampleFile {
            path: self.path.clone(),
            source,
        };
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let sample = parse_line(line).map_err(|source| CompareError::SampleLine {
                path: self.path.clone(),
                line: line.to_string(),
                source,
            })?;
            self.samples.push(sample);
        }
        Ok(())
    }

    pub fn latest(&self) -> Option<&DotnetSample> {
        self.samples.last()
    }

    pub fn samples(&self) -> &[DotnetSample] {
        &self.samples
    }
}

/// How far from a whole second a reading may be and still stand for it.
pub const ALIGN_TOLERANCE_S: f64 = 0.6;

/// Readings at offsets `t` (seconds after the load started, any phase) put on whole seconds
/// `0..=last`: each second gets the nearest reading within [`ALIGN_TOLERANCE_S`], else none.
pub fn align(readings: &[(f64, PoolReading)], last: u32) -> Vec<Option<PoolReading>> {
    (0..=last)
        .map(|k| {
            let k = f64::from(k);
            readings
                .iter()
                .filter(|(t, _)| (t - k).abs() <= ALIGN_TOLERANCE_S)
                .min_by(|a, b| (a.0 - k).abs().total_cmp(&(b.0 - k).abs()))
                .map(|(_, r)| *r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"t":1765138321.250,"busy":4,"available":32763,"max":32767,"queue":15,"pool_threads":4,"completed":123,"process_threads":21,"cpu":3.50,"in_flight":7}"#;

    #[test]
    fn a_sample_line_parses() {
        let s = parse_line(LINE).unwrap();
        assert_eq!(
            s,
            DotnetSample {
                t: 1765138321.25,
                busy: 4,
                queue: 15,
                pool_threads: 4,
                completed: 123
            }
        );
        let r = s.reading();
        assert_eq!(
            (r.busy, r.threads, r.queue, r.work_items),
            (4.0, 4.0, 15.0, 123.0)
        );
        assert!(!r.idle());
        assert!(parse_line(r#"{"t":1,"busy":-1}"#).is_err());
        assert!(parse_line("listening on").is_err());
    }

    #[test]
    fn the_file_is_read_as_it_grows_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        let mut f = SampleFile::new(&path);
        f.read_new().unwrap();
        assert!(f.latest().is_none());
        let (head, tail) = LINE.split_at(30);
        std::fs::write(&path, format!("{LINE}\n{head}")).unwrap();
        f.read_new().unwrap();
        assert_eq!(f.samples().len(), 1);
        std::fs::write(&path, format!("{LINE}\n{head}{tail}\n")).unwrap();
        f.read_new().unwrap();
        assert_eq!(f.samples().len(), 2);
        assert_eq!(f.latest().unwrap().busy, 4);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"t\":oops}\n");
        std::fs::write(&path, text).unwrap();
        let e = f.read_new().unwrap_err().to_string();
        assert!(
            e.contains("samples.jsonl") && e.contains("{\"t\":oops}"),
            "{e}"
        );
    }

    #[test]
    fn readings_land_on_the_nearest_whole_second() {
        let r = |busy: f64| PoolReading {
            busy,
            threads: busy,
            queue: 0.0,
            work_items: 0.0,
        };
        let readings = [(-0.7, r(9.0)), (0.3, r(1.0)), (1.25, r(2.0)), (1.9, r(3.0))];
        let grid = align(&readings, 4);
        let busy: Vec<Option<f64>> = grid.iter().map(|g| g.map(|r| r.busy)).collect();
        assert_eq!(busy, [Some(1.0), Some(2.0), Some(3.0), None, None]);
    }
}
