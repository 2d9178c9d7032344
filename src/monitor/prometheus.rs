//! `starvation experiment --monitor prometheus`: the real Prometheus, Pushgateway and
//! Alertmanager (Debian packages) as local processes on free loopback ports, with configs
//! generated from `deploy/prometheus/prometheus.yml` and `deploy/alertmanager/alertmanager.yml`.

use anyhow::Context as _;
use std::path::PathBuf;

/// The binaries this monitor runs, and the Debian packages that install them.
pub const BINARIES: [(&str, &str); 3] = [
    ("prometheus", "prometheus"),
    ("prometheus-pushgateway", "prometheus-pushgateway"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
];

/// `binary` on `PATH`.
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// The three binaries' paths, or an error naming the missing ones and the apt-get line that
/// installs them.
pub fn check_binaries() -> anyhow::Result<[PathBuf; 3]> {
    let found = BINARIES.map(|(b, _)| find_binary(b));
    let missing: Vec<&str> = BINARIES
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|((b, _), _)| *b)
        .collect();
    if !missing.is_empty() {
        let packages: Vec<&str> = BINARIES
            .iter()
            .filter(|(b, _)| missing.contains(b))
            .map(|(_, p)| *p)
            .collect();
        anyhow::bail!(
            "--monitor prometheus needs {} on PATH, not found; install with:\n    \
             sudo apt-get install {}\nor use --monitor embedded (the default)",
            missing.join(", "),
            packages.join(" ")
        );
    }
    Ok(found.map(|f| f.expect("checked above")))
}

/// Check an alert rule file for a real Prometheus: with `promtool check rules` when promtool is
/// installed, else that it is YAML with a `groups` list.
pub fn check_rules(text: &str) -> anyhow::Result<()> {
    if let Some(promtool) = find_binary("promtool") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("alert_rules.yml");
        std::fs::write(&path, text)?;
        let out = std::process::Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&path)
            .output()
            .with_context(|| format!("running {}", promtool.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "the alert rules are not valid for Prometheus (promtool check rules):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(());
    }
    let doc: serde_json::Value =
        serde_norway::from_str(text).context("the alert rules are not YAML")?;
    anyhow::ensure!(
        doc.get("groups").is_some_and(|g| g.is_array()),
        "the alert rules have no `groups:` list (see deploy/prometheus/alert_rules.yml)"
    );
    Ok(())
}
