//! Run metadata (`run.json`, written by the experiment runner next to a run's exports), run
//! discovery under a directory, and pairing of baseline and scaled runs.
//!
//! ```json
//! {
//!   "format": "starvation-run/1",
//!   "role": "baseline",            // or "scaled"
//!   "pair": 3,                      // pair index, 1-based; baseline and scaled share it
//!   "start": "2026-11-22T14:00:00Z",// load start (RFC 3339): offset 0 of scale events
//!   "end": "2026-11-22T14:05:00Z",  // optional
//!   "step_s": 5,                    // optional, export step
//!   "testid": "threadloadtest",     // optional
//!   "scale_events": [               // optional; scaled runs: every scale action taken
//!     {"at": "2026-11-22T14:00:24Z", "from": 1, "to": 2}
//!   ],
//!   "placement": {…}               // optional; runs on a multi-node orchestrator: which node
//!                                   // ran what (see `placement.rs`)
//! }
//! ```

use super::ResultsError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const RUN_META_FILE: &str = "run.json";
pub const RUN_META_FORMAT: &str = "starvation-run/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Baseline,
    Scaled,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Baseline => "baseline",
            Role::Scaled => "scaled",
        }
    }
}

/// One scale action of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleEvent {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
}

/// The content of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunMeta {
    pub format: String,
    pub role: Role,
    pub pair: u32,
    pub start: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub testid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_events: Vec<ScaleEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<super::placement::Placement>,
    /// Where the replicas stored their documents (`sqlite`, `mongodb`), as the experiment told
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// What the replicas ran: `model` (`starvation serve`) or `dotnet` (the .NET workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The runtime of a .NET workload, e.g. `Microsoft.NETCore.App 8.0.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

impl RunMeta {
    pub fn new(role: Role, pair: u32, start: DateTime<Utc>) -> Self {
        RunMeta {
            format: RUN_META_FORMAT.into(),
            role,
            pair,
            start,
            end: None,
            step_s: None,
            testid: None,
            scale_events: Vec::new(),
            placement: None,
            store: None,
            workload: None,
            runtime: None,
        }
    }

    pub fn read(path: &Path) -> Result<Self, ResultsError> {
        let bytes = super::input::read_regular(path, super::input::SMALL_MAX_BYTES)?;
        let m: RunMeta = serde_json::from_slice(&bytes).map_err(|e| ResultsError::BadRunMeta {
            path: path.into(),
            message: e.to_string(),
        })?;
        if m.format != RUN_META_FORMAT {
            return Err(ResultsError::BadRunMeta {
                path: path.into(),
                message: format!(
                    "\"format\" is {:?}, this version reads {RUN_META_FORMAT:?}",
                    m.format
                ),
            });
        }
        Ok(m)
    }

    /// Write `run.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ResultsError> {
        let json = serde_json::to_vec_pretty(self).expect("run metadata serialises");
        Ok(crate::util::write_atomic(&dir.join(RUN_META_FILE), &json)?)
    }
}

/// A run directory found under `--runs`.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub role: Role,
    pub pair: u32,
    pub meta: Option<RunMeta>,
}

/// Baseline and scaled runs grouped by pair index; either side may be missing.
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    pub pairs: BTreeMap<u32, (Option<RunDir>, Option<RunDir>)>,
    /// Directories that look like runs but could not be placed, with the reason.
    pub unplaced: Vec<(PathBuf, String)>,
}

impl Pairs {
    pub fn runs(&self, role: Role) -> Vec<&RunDir> {
        self.pairs
            .values()
            .filter_map(|(b, s)| match role {
                Role::Baseline => b.as_ref(),
                Role::Scaled => s.as_ref(),
            })
            .collect()
    }
    pub fn complete(&self) -> Vec<(&RunDir, &RunDir)> {
        self.pairs
            .values()
            .filter_map(|(b, s)| Some((b.as_ref()?, s.as_ref()?)))
            .collect()
    }
}

fn is_export_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n == RUN_META_FILE || n.ends_with("_export.json")
            })
        })
        .unwrap_or(false)
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, ResultsError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ResultsError::io(dir, e))?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// `pair_12` → 12.
fn pair_index(dir: &Path) -> Option<u32> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("pair_")?
        .parse()
        .ok()
}

/// True when `Scale_event_export.json` exists and holds at least one sample.
pub fn has_scale_events(dir: &Path) -> bool {
    let p = dir.join("Scale_event_export.json");
    p.exists()
        && super::promjson::read_export(&p)
            .map(|r| !r.is_empty())
            .unwrap_or(true)
}

/// Find every run under `root` (up to three levels deep) and pair them.
///
/// * A directory with `run.json` is placed by its `role` and `pair`.
/// * Otherwise, the paper's layout: run directories inside `pair_N/`. The run with a non-empty
///   `Scale_event_export.json` is the scaled one and the other the baseline; when that does not
///   decide it (neither or both have one), folder order decides: the first (the earlier
///   timestamped name) is the baseline, the second the scaled run (the paper ran them in that
///   order).
pub fn discover(root: &Path) -> Result<Pairs, ResultsError> {
    if !root.is_dir() {
        return Err(ResultsError::Usage(format!(
            "--runs {}: not a directory; pass the directory that holds the runs (e.g. paired_metric_exports/)",
            root.display()
        )));
    }
    let mut pairs = Pairs::default();
    let mut legacy_groups: Vec<(Option<u32>, Vec<PathBuf>)> = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let meta_path = dir.join(RUN_META_FILE);
        if meta_path.exists() {
            let meta = RunMeta::read(&meta_path)?;
            place(
                &mut pairs,
                RunDir {
                    path: dir.clone(),
                    role: meta.role,
                    pair: meta.pair,
                    meta: Some(meta),
                },
            );
            continue;
        }
        let subs = subdirs(&dir)?;
        let run_subs: Vec<PathBuf> = subs
            .iter()
            .filter(|d| !d.join(RUN_META_FILE).exists() && is_export_dir(d))
            .cloned()
            .collect();
        if !run_subs.is_empty() {
            legacy_groups.push((pair_index(&dir), run_subs));
        }
        if depth < 3 {
            for s in subs {
                if !is_export_dir(&s) || s.join(RUN_META_FILE).exists() {
                    stack.push((s, depth + 1));
                }
            }
        }
    }
    if is_export_dir(root) && !root.join(RUN_META_FILE).exists() {
        pairs.unplaced.push((
            root.to_path_buf(),
            "exports without run.json directly under --runs: put each run in its own directory (pair_N/<run>/ or with a run.json)".into(),
        ));
    }
    // Paper layout: number groups without a pair_N name after the numbered ones.
    legacy_groups.sort_by(|a, b| a.1.cmp(&b.1));
    let mut next = pairs.pairs.keys().max().copied().unwrap_or(0);
    for (_, g) in &legacy_groups {
        next = next.max(pair_index(g[0].parent().unwrap_or(root)).unwrap_or(0));
    }
    for (idx, runs) in legacy_groups {
        let idx = idx.unwrap_or_else(|| {
            next += 1;
            next
        });
        if runs.len() > 2 {
            for r in &runs {
                pairs.unplaced.push((
                    r.clone(),
                    format!(
                        "{} holds {} runs; a pair directory holds exactly two (baseline, scaled) — add run.json files to say which is which",
                        r.parent().unwrap_or(root).display(),
                        runs.len()
                    ),
                ));
            }
            continue;
        }
        let scaled_flags: Vec<bool> = runs.iter().map(|r| has_scale_events(r)).collect();
        let roles: Vec<Role> = if runs.len() == 1 {
            vec![if scaled_flags[0] {
                Role::Scaled
            } else {
                Role::Baseline
            }]
        } else if scaled_flags[0] != scaled_flags[1] {
            scaled_flags
                .iter()
                .map(|&s| if s { Role::Scaled } else { Role::Baseline })
                .collect()
        } else {
            vec![Role::Baseline, Role::Scaled]
        };
        for (r, role) in runs.into_iter().zip(roles) {
            place(
                &mut pairs,
                RunDir {
                    path: r,
                    role,
                    pair: idx,
                    meta: None,
                },
            );
        }
    }
    Ok(pairs)
}

fn place(pairs: &mut Pairs, run: RunDir) {
    let slot = pairs.pairs.entry(run.pair).or_default();
    let side = match run.role {
        Role::Baseline => &mut slot.0,
        Role::Scaled => &mut slot.1,
    };
    if let Some(prev) = side {
        let reason = format!(
            "pair {} already has a {} run ({})",
            run.pair,
            run.role.as_str(),
            prev.path.display()
        );
        pairs.unplaced.push((run.path, reason));
    } else {
        *side = Some(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_meta_round_trip_and_rejects_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = RunMeta::new(Role::Scaled, 4, "2026-01-01T00:00:00Z".parse().unwrap());
        m.scale_events.push(ScaleEvent {
            at: "2026-01-01T00:00:24Z".parse().unwrap(),
            from: Some(1),
            to: Some(2),
        });
        m.write(dir.path()).unwrap();
        let back = RunMeta::read(&dir.path().join(RUN_META_FILE)).unwrap();
        assert_eq!(back, m);
        std::fs::write(
            dir.path().join(RUN_META_FILE),
            r#"{"format":"starvation-run/1","role":"scaled","pair":1,"start":"2026-01-01T00:00:00Z","colour":"red"}"#,
        )
        .unwrap();
        let err = RunMeta::read(&dir.path().join(RUN_META_FILE)).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
