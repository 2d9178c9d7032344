//! Output folders of `aggregate` and `figures`, replaced file by file and only where this tool
//! wrote before.
//!
//! Each output folder holds a manifest (`.starvation-output.json`) naming the command that wrote
//! it and every file it wrote. A new output is built in a staging folder inside the target; on
//! [`OutputDir::commit`] each new file replaces the old one of the same name (one rename each),
//! the files of the last output that this one no longer has are removed, and the manifest is
//! rewritten. A file the manifest does not list is never deleted or overwritten: a name clash
//! with one is refused before anything moves. A failed or interrupted run leaves the folder as
//! it was (the staging folder is removed on drop).

use super::ResultsError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The manifest's name inside every output folder.
pub const MANIFEST: &str = ".starvation-output.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// The command that owns the folder, e.g. `starvation aggregate`.
    written_by: String,
    /// Every file it wrote, relative to the folder, `/`-separated.
    files: BTreeSet<String>,
}

/// A staged replacement for the files this tool wrote in one output folder.
pub struct OutputDir {
    target: PathBuf,
    flag: &'static str,
    owner: &'static str,
    previous: BTreeSet<String>,
    /// True when `new` created the target (removed again if nothing is committed).
    created: bool,
    staging: Option<tempfile::TempDir>,
}

impl OutputDir {
    /// Stage a new output of `owner` (e.g. `"starvation aggregate"`) for the folder `target`,
    /// given by `flag`. Refused: a target that is not a directory, or that holds the output of
    /// another command.
    pub fn new(
        target: &Path,
        flag: &'static str,
        owner: &'static str,
    ) -> Result<Self, ResultsError> {
        let usage =
            |what: String| ResultsError::Usage(format!("{flag} {}: {what}", target.display()));
        let mut created = false;
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(usage(
                    "exists and is not a directory; pass a directory".into(),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(target).map_err(|e| {
                    usage(format!(
                        "cannot create the directory: {e}; pass a writable directory"
                    ))
                })?;
                created = true;
            }
            Err(e) => return Err(ResultsError::io(target, e)),
        }
        let previous = match read_manifest(target)? {
            Some(m) if m.written_by != owner => {
                return Err(usage(format!(
                    "holds the output of `{}` ({MANIFEST}), not of `{owner}`; pass another folder",
                    m.written_by
                )));
            }
            Some(m) => m.files,
            None => BTreeSet::new(),
        };
        let staging = tempfile::Builder::new()
            .prefix(".starvation-staging-")
            .tempdir_in(target)
            .map_err(|e| {
                usage(format!(
                    "cannot write into it: {e}; pass a writable directory"
                ))
            })?;
        Ok(Self {
            target: target.to_path_buf(),
            flag,
            owner,
            previous,
            created,
            staging: Some(staging),
        })
    }

    /// Where to write the new output.
    pub fn path(&self) -> &Path {
        self.staging.as_ref().expect("not committed").path()
    }

    /// The final place of a file written at `staged` (a path under [`OutputDir::path`]).
    pub fn final_path(&self, staged: &Path) -> PathBuf {
        staged
            .strip_prefix(self.path())
            .map(|rel| self.target.join(rel))
            .unwrap_or_else(|_| staged.to_path_buf())
    }

    /// Put the staged files in place of the last output's; returns the files now in place.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, ResultsError> {
        let staging = self.staging.take().expect("not committed");
        let new = staged_files(staging.path())?;
        // Refuse before anything moves: a file of ours would replace one we did not write.
        let foreign: Vec<&String> = new
            .iter()
            .filter(|rel| !self.previous.contains(*rel) && exists(&self.target.join(rel)))
            .collect();
        if !foreign.is_empty() {
            return Err(ResultsError::Usage(format!(
                "{} {}: would overwrite {} that this command did not write (not in its {MANIFEST}); \
                 move {} away or pass another folder",
                self.flag,
                self.target.display(),
                list(&foreign),
                if foreign.len() == 1 { "it" } else { "them" },
            )));
        }
        // The manifest first names both outputs, so a crash in between still owns every file.
        let both: BTreeSet<String> = self.previous.union(&new).cloned().collect();
        self.write_manifest(&both)?;
        for rel in &new {
            let dst = self.target.join(rel);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| ResultsError::io(parent, e))?;
            }
            std::fs::rename(staging.path().join(rel), &dst)
                .map_err(|e| ResultsError::io(&dst, e))?;
        }
        for rel in self.previous.difference(&new) {
            let old = self.target.join(rel);
            match std::fs::remove_file(&old) {
                Ok(()) => remove_empty_parents(&self.target, &old),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ResultsError::io(&old, e)),
            }
        }
        self.write_manifest(&new)?;
        self.created = false;
        drop(staging);
        Ok(new.iter().map(|rel| self.target.join(rel)).collect())
    }

    fn write_manifest(&self, files: &BTreeSet<String>) -> Result<(), ResultsError> {
        let m = Manifest {
            written_by: self.owner.into(),
            files: files.clone(),
        };
        let json = serde_json::to_vec_pretty(&m).expect("manifest serialises");
        crate::util::write_atomic(&self.target.join(MANIFEST), &json)?;
        Ok(())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        // Nothing committed: the staging folder goes, and a target we created while empty.
        drop(self.staging.take());
        if self.created {
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn list(names: &[&String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>, ResultsError> {
    let path = dir.join(MANIFEST);
    if !exists(&path) {
        return Ok(None);
    }
    let bytes = super::input::read_regular(&path, super::input::SMALL_MAX_BYTES)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ResultsError::Usage(format!(
            "{}: not a manifest this tool wrote ({e}); pass another folder",
            path.display()
        ))
    })
}

/// Every file under `root`, relative and `/`-separated.
fn staged_files(root: &Path) -> Result<BTreeSet<String>, ResultsError> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| ResultsError::io(&dir, e))? {
            let path = entry.map_err(|e| ResultsError::io(&dir, e))?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.insert(parts.join("/"));
            }
        }
    }
    Ok(out)
}

/// Remove the folders between `file` and `root` that are left empty.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &OutputDir, rel: &str, text: &str) {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_only_what_it_wrote_and_keeps_foreign_files() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("means");
        let first = OutputDir::new(&out, "--out", "starvation aggregate").unwrap();
        write(&first, "summary.json", "1");
        write(&first, "baseline/old.csv", "old");
        first.commit().unwrap();
        std::fs::write(out.join("precious.txt"), "mine").unwrap();
        std::fs::write(out.join("baseline/notes.txt"), "mine too").unwrap();

        let second = OutputDir::new(&out, "--out", "starvation aggregate").unwrap();
        write(&second, "summary.json", "2");
        write(&second, "scaled/new.csv", "new");
        let placed = second.commit().unwrap();
        assert_eq!(placed.len(), 2);
        assert_eq!(
            std::fs::read_to_string(out.join("summary.json")).unwrap(),
            "2"
        );
        assert!(
            !out.join("baseline/old.csv").exists(),
            "the last output's file is gone"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("precious.txt")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("baseline/notes.txt")).unwrap(),
            "mine too",
            "a folder holding a foreign file stays"
        );
        assert_eq!(
            names(&out),
            [
                MANIFEST,
                "baseline",
                "precious.txt",
                "scaled",
                "summary.json"
            ]
        );
    }

    #[test]
    fn refuses_to_overwrite_a_file_it_did_not_write() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("summary.json"), "{}").unwrap();
        std::fs::write(d.join("thesis.tex"), "x").unwrap();
        let staged = OutputDir::new(&d, "--out", "starvation aggregate").unwrap();
        write(&staged, "summary.json", "new");
        write(&staged, "summary.md", "new");
        let err = staged.commit().unwrap_err().to_string();
        assert!(err.contains("would overwrite summary.json"), "{err}");
        assert_eq!(
            std::fs::read_to_string(d.join("summary.json")).unwrap(),
            "{}"
        );
        assert_eq!(
            names(&d),
            ["summary.json", "thesis.tex"],
            "nothing moved, no staging left"
        );
    }

    #[test]
    fn an_uncommitted_output_leaves_nothing_and_another_commands_folder_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("figs");
        {
            let staged = OutputDir::new(&out, "--out", "starvation figures").unwrap();
            write(&staged, "a.png", "half");
        }
        assert!(
            !out.exists(),
            "a folder we created and never filled is removed"
        );
        let staged = OutputDir::new(&out, "--out", "starvation figures").unwrap();
        write(&staged, "a.png", "png");
        staged.commit().unwrap();
        let err = OutputDir::new(&out, "--out", "starvation aggregate")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("holds the output of `starvation figures`"),
            "{err}"
        );
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = OutputDir::new(&file, "--out", "starvation figures")
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
