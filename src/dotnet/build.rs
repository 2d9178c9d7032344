//! Compiling the checked-in C# with `mcs` against its default profile (the assembly runs on
//! .NET 8 through the framework's facades), cached by the source's hash: the first start
//! compiles (about two seconds), later ones reuse `<cache>/sut-<hash>/`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DotnetError, Runtime};

/// The service's source, built into this binary so it runs from anywhere.
pub const SOURCES: &[(&str, &str)] = &[
    ("Program.cs", include_str!("../../dotnet/Program.cs")),
    ("Options.cs", include_str!("../../dotnet/Options.cs")),
    ("Transport.cs", include_str!("../../dotnet/Transport.cs")),
    (
        "Http1Connection.cs",
        include_str!("../../dotnet/Http1Connection.cs"),
    ),
    ("Gauges.cs", include_str!("../../dotnet/Gauges.cs")),
    ("Pusher.cs", include_str!("../../dotnet/Pusher.cs")),
];

/// The compiler's flags; part of the cache key.
const MCS_FLAGS: &[&str] = &["-nologo", "-optimize+", "-target:exe", "-r:System.dll"];
const EXE: &str = "starvation-dotnet-sut.exe";

/// A compiled service and the runtimeconfig that runs it on one runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub exe: PathBuf,
    pub runtimeconfig: PathBuf,
    /// The source hash (the cache key), for run records.
    pub source_hash: String,
    /// Whether this call compiled it (false: taken from the cache).
    pub compiled: bool,
}

/// SHA-256 of `bytes`, in hex.
pub fn hex_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Move a folder built in `staging` to `dir` with one rename: nobody sees it half made, and a
/// concurrent builder that got there first keeps its copy (ours is dropped).
pub(super) fn publish(staging: tempfile::TempDir, dir: &Path) {
    let staged = staging.keep();
    if std::fs::rename(&staged, dir).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
}

/// The hash of the sources and compiler flags.
pub fn source_hash() -> String {
    let mut h = Sha256::new();
    for (name, text) in SOURCES {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    for f in MCS_FLAGS {
        h.update(f.as_bytes());
    }
    hex(&h.finalize())
}

/// `$XDG_CACHE_HOME/starvation/dotnet`, else `~/.cache/starvation/dotnet`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("starvation").join("dotnet")
}

/// The service compiled into `cache` (once per source), with a runtimeconfig for `runtime`.
pub fn build(runtime: &Runtime, cache: &Path) -> Result<Built, DotnetError> {
    let hash = source_hash();
    let dir = cache.join(format!("sut-{}", &hash[..16]));
    let exe = dir.join(EXE);
    let compiled = !exe.is_file();
    if compiled {
        compile(cache, &dir)?;
    }
    let runtimeconfig = dir.join(format!("sut.{}.runtimeconfig.json", runtime.version));
    if !runtimeconfig.is_file() {
        let config = serde_json::json!({
            "runtimeOptions": {
                "tfm": "net8.0",
                "framework": { "name": "Microsoft.NETCore.App", "version": runtime.version },
            }
        });
        let text = serde_json::to_vec_pretty(&config).expect("a JSON value always serialises");
        crate::util::write_atomic(&runtimeconfig, &text)?;
    }
    Ok(Built {
        exe,
        runtimeconfig,
        source_hash: hash,
        compiled,
    })
}

/// Compile into a staging folder, then [`publish`] it as `dir`.
fn compile(cache: &Path, dir: &Path) -> Result<(), DotnetError> {
    let mcs = crate::util::find_on_path("mcs").ok_or(DotnetError::NoCompiler)?;
    std::fs::create_dir_all(cache).map_err(DotnetError::io("creating", cache))?;
    let staging = tempfile::Builder::new()
        .prefix(".sut-")
        .tempdir_in(cache)
        .map_err(DotnetError::io("creating a folder in", cache))?;
    let mut cmd = Command::new(mcs);
    cmd.args(MCS_FLAGS)
        .arg(format!("-out:{}", staging.path().join(EXE).display()));
    for (name, text) in SOURCES {
        let path = staging.path().join(name);
        std::fs::write(&path, text).map_err(DotnetError::io("writing", &path))?;
        cmd.arg(&path);
    }
    let out = cmd
        .output()
        .map_err(DotnetError::io("running", Path::new("mcs")))?;
    if !out.status.success() {
        return Err(DotnetError::Compile {
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    publish(staging, dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_follows_the_source() {
        let h = source_hash();
        assert_eq!(h.len(), 64);
        assert_eq!(h, source_hash(), "stable within a build");
        assert!(
            SOURCES
                .iter()
                .all(|(_, text)| text.contains("namespace Starvation.Sut"))
        );
    }
}
