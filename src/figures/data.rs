//! Reading mean datasets: `<name>_export_mean_values.csv` (`timestamp,value`) per role.

use super::FigureError;
use crate::results::metrics::{self, METRICS, MetricSpec};
use crate::results::runmeta::Role;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `(offset_s, value)` points, sorted by offset.
pub type Series = Vec<(f64, f64)>;

/// A 5–95 % band: `(offset_s, p5, p95)` points.
pub type Band = Vec<(f64, f64, f64)>;

/// The mean curves of both roles, keyed by readable metric name.
#[derive(Debug, Clone, Default)]
pub struct MeanData {
    pub baseline: BTreeMap<&'static str, Series>,
    pub scaled: BTreeMap<&'static str, Series>,
    /// 5–95 % bands `(offset_s, p5, p95)` from `<name>_export_stats.csv`, when present.
    pub bands: BTreeMap<(Role, &'static str), Band>,
}

impl MeanData {
    pub fn get(&self, role: Role, metric: &str) -> Option<&Series> {
        match role {
            Role::Baseline => self.baseline.get(metric),
            Role::Scaled => self.scaled.get(metric),
        }
        .filter(|s| !s.is_empty())
    }
    pub fn band(&self, role: Role, metric: &str) -> Option<&[(f64, f64, f64)]> {
        self.bands
            .iter()
            .find(|((r, m), _)| *r == role && *m == metric)
            .map(|(_, v)| v.as_slice())
            .filter(|v| !v.is_empty())
    }
    /// Metrics present in either role, in export order.
    pub fn metrics(&self) -> Vec<&'static MetricSpec> {
        METRICS
            .iter()
            .filter(|m| {
                self.get(Role::Baseline, m.readable).is_some()
                    || self.get(Role::Scaled, m.readable).is_some()
            })
            .collect()
    }
    /// Largest offset of any curve.
    pub fn max_offset(&self) -> f64 {
        self.baseline
            .values()
            .chain(self.scaled.values())
            .filter_map(|s| s.last().map(|p| p.0))
            .fold(0.0, f64::max)
    }
}

/// Read one `timestamp,value` CSV.
pub fn read_mean_csv(path: &Path) -> Result<Series, FigureError> {
    let text = crate::results::input::read_regular(path, crate::results::input::SMALL_MAX_BYTES)?;
    parse_mean_csv(&text, path)
}

/// Parse one `timestamp,value` CSV; errors name `path`.
pub fn parse_mean_csv(text: &[u8], path: &Path) -> Result<Series, FigureError> {
    let bad = |message: String| FigureError::BadData {
        path: path.to_path_buf(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(ti), Some(vi)) = (col("timestamp"), col("value")) else {
        return Err(bad(format!(
            "expected the columns timestamp,value (the paper's mean dataset), found {:?}",
            headers.iter().collect::<Vec<_>>()
        )));
    };
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let line = i + 2;
        let num = |idx: usize, what: &str| -> Result<f64, FigureError> {
            let s = rec.get(idx).unwrap_or("");
            crate::results::promjson::parse_prom_float(s)
                .or_else(|| s.parse::<f64>().ok())
                .ok_or_else(|| bad(format!("line {line}: {what} {s:?} is not a number")))
        };
        out.push((num(ti, "timestamp")?, num(vi, "value")?));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// Read a `<name>_export_stats.csv` (`timestamp,n,mean,median,p5,p95`) into `(offset, p5, p95)`.
pub fn read_band_csv(path: &Path) -> Result<Band, FigureError> {
    let bad = |message: String| FigureError::BadData {
        path: path.to_path_buf(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| bad(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(ti), Some(lo), Some(hi)) = (col("timestamp"), col("p5"), col("p95")) else {
        return Err(bad(
            "expected the columns timestamp,n,mean,median,p5,p95 (written by `starvation aggregate`)"
                .into(),
        ));
    };
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let num = |idx: usize| -> Result<f64, FigureError> {
            let s = rec.get(idx).unwrap_or("");
            s.parse::<f64>()
                .map_err(|_| bad(format!("line {}: {s:?} is not a number", i + 2)))
        };
        out.push((num(ti)?, num(lo)?, num(hi)?));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

fn role_dir(data: &Path, role: Role) -> Option<PathBuf> {
    let names: &[&str] = match role {
        Role::Baseline => &["baseline", "initial"],
        Role::Scaled => &["scaled"],
    };
    names.iter().map(|n| data.join(n)).find(|p| p.is_dir())
}

/// Read every mean dataset under `data/{baseline|initial,scaled}/`. Files of unknown metrics
/// are ignored; the node CPU is accepted under both its export name and the paper's
/// `Worker_Node_CPU_Metrics_Over_Time`.
pub fn read_mean_data(data: &Path) -> Result<MeanData, FigureError> {
    if !data.is_dir() {
        return Err(FigureError::Usage(format!(
            "--data {}: not a directory; pass the --out directory of `starvation aggregate`",
            data.display()
        )));
    }
    let mut md = MeanData::default();
    for role in [Role::Baseline, Role::Scaled] {
        let Some(dir) = role_dir(data, role) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| FigureError::BadData {
                path: dir.clone(),
                message: e.to_string(),
            })?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(stem) = name.strip_suffix("_export_stats.csv") {
                if let Some(spec) = metrics::find(stem) {
                    md.bands.insert((role, spec.readable), read_band_csv(&p)?);
                }
                continue;
            }
            let Some(stem) = name.strip_suffix("_export_mean_values.csv") else {
                continue;
            };
            let Some(spec) = metrics::find(stem) else {
                continue;
            };
            let series = read_mean_csv(&p)?;
            match role {
                Role::Baseline => md.baseline.insert(spec.readable, series),
                Role::Scaled => md.scaled.insert(spec.readable, series),
            };
        }
    }
    if md.baseline.is_empty() && md.scaled.is_empty() {
        return Err(FigureError::Usage(format!(
            "--data {}: no *_export_mean_values.csv found in baseline/ (or initial/) or scaled/; run `starvation aggregate --out {}` first",
            data.display(),
            data.display()
        )));
    }
    Ok(md)
}
