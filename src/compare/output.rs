//! What a comparison prints and writes: the table (terminal and `summary.md`), `curves.csv`,
//! `summary.json` (and `compare.png`, [`super::figure`]). `--out` must be a new or empty folder; every file goes in through a
//! temporary file and a rename that never replaces a file (so nothing of someone else's is
//! overwritten, and nothing half-written is left).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::summary::{Curve, Estimate, Metric, Row, Summary};
use super::{CompareError, Comparison};

/// Refuses an `--out` that exists and is not an empty folder, before anything runs.
pub fn check_out(dir: &Path) -> Result<(), CompareError> {
    let usage = |what: &str| CompareError::Usage(format!("--out {}: {what}", dir.display()));
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(usage(&format!("cannot be read ({e}); pass another folder"))),
        Ok(m) if !m.is_dir() => Err(usage(
            "exists and is not a folder; pass a new or empty folder",
        )),
        Ok(_) => match std::fs::read_dir(dir).map(|mut d| d.next().is_none()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(usage(
                "is not empty; compare writes only into a new or empty folder (it never replaces files)",
            )),
            Err(e) => Err(usage(&format!("cannot be read ({e}); pass another folder"))),
        },
    }
}

/// A number as the table shows it: seconds of latency with two decimals, NRMSE with three,
/// counts whole when they are.
fn number(metric: Metric, v: f64) -> String {
    let latency = matches!(
        metric,
        Metric::Peak {
            curve: Curve::P50 | Curve::P99
        } | Metric::At {
            curve: Curve::P50 | Curve::P99,
            ..
        }
    );
    if matches!(metric, Metric::Nrmse { .. }) {
        format!("{v:.3}")
    } else if latency || matches!(metric, Metric::LoadEnd) {
        format!("{v:.2}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn estimate(metric: Metric, e: Option<Estimate>) -> String {
    match e {
        None => "—".into(),
        Some(e) if e.lo == e.hi => number(metric, e.mean),
        Some(e) => format!(
            "{} [{}, {}]",
            number(metric, e.mean),
            number(metric, e.lo),
            number(metric, e.hi)
        ),
    }
}

fn row_cells(r: &Row) -> [String; 6] {
    [
        r.label.clone(),
        estimate(r.metric, r.dotnet),
        estimate(r.metric, r.model),
        r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
        r.goal.map_or(String::new(), |g| g.to_string()),
        match r.within_goal {
            Some(true) => "yes".into(),
            Some(false) => "**no**".into(),
            None if r.goal.is_some() => "n/a".into(),
            None => String::new(),
        },
    ]
}

/// The table, Markdown: metric | .NET 8 | model | model/.NET | goal | within goal?
pub fn table(s: &Summary) -> String {
    let mut t = String::from("| metric | .NET 8 | model | model/.NET | goal | within goal? |\n");
    t.push_str("|---|---:|---:|---:|---|---|\n");
    for r in &s.rows {
        let _ = writeln!(t, "| {} |", row_cells(r).join(" | "));
    }
    t
}

/// The lines above the table: what ran, how often, and how to read the brackets.
pub fn header(c: &Comparison) -> String {
    let (met, judged) = c.summary.goals_met();
    let mut h = String::new();
    let _ = writeln!(h, "Scenario: {}", c.scenario);
    let _ = writeln!(
        h,
        ".NET: Microsoft.NETCore.App {}, DOTNET_PROCESSOR_COUNT={}; model: `starvation serve {}`; \
         --block-ms {}; {} run(s) each, alternating .NET then model.",
        c.runtime,
        c.processors,
        c.model_args.join(" "),
        c.block_ms,
        c.summary.runs
    );
    let _ = writeln!(
        h,
        "Means over runs, [95 % bootstrap interval] when there are several; NRMSE over .NET's range; \
         checkpoints at {} s. Goals met: {met} of {judged}.",
        c.summary
            .checkpoints_s
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    h
}

/// `curves.csv`: one row per run, side and second.
pub fn curves_csv(c: &Comparison) -> String {
    let mut out = String::from("run,side,t_s,busy,threads,queue,p50_s,p99_s,work_items\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    for pair in &c.pairs {
        for side in [&pair.dotnet, &pair.model] {
            for p in &side.points {
                let pool = |f: fn(&super::sample::PoolReading) -> f64| opt(p.pool.as_ref().map(f));
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    pair.run,
                    side.side.key(),
                    p.t_s,
                    pool(|r| r.busy),
                    pool(|r| r.threads),
                    pool(|r| r.queue),
                    opt(p.p50_s.map(round_ms)),
                    opt(p.p99_s.map(round_ms)),
                    pool(|r| r.work_items),
                );
            }
        }
    }
    out
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// What `summary.json` holds.
#[derive(serde::Serialize)]
struct SummaryFile<'a> {
    scenario: &'a str,
    runtime: &'a str,
    processors: u32,
    block_ms: u64,
    model_args: &'a [String],
    runs: Vec<RunTotals>,
    summary: &'a Summary,
}

/// One run's totals, both sides.
#[derive(serde::Serialize)]
struct RunTotals {
    run: u32,
    dotnet: super::side::Totals,
    model: super::side::Totals,
    dotnet_load_s: f64,
    model_load_s: f64,
}

/// Writes `curves.csv`, `summary.json`, `summary.md` and `compare.png` into `dir` (new or empty); returns
/// the files written.
pub fn write(dir: &Path, c: &Comparison) -> Result<Vec<PathBuf>, CompareError> {
    std::fs::create_dir_all(dir).map_err(|source| CompareError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let runs = c
        .pairs
        .iter()
        .map(|p| RunTotals {
            run: p.run,
            dotnet: p.dotnet.totals,
            model: p.model.totals,
            dotnet_load_s: p.dotnet.load_s,
            model_load_s: p.model.load_s,
        })
        .collect();
    let json = serde_json::to_string_pretty(&SummaryFile {
        scenario: &c.scenario,
        runtime: &c.runtime,
        processors: c.processors,
        block_ms: c.block_ms,
        model_args: &c.model_args,
        runs,
        summary: &c.summary,
    })
    .expect("the summary serialises");
    let md = format!(
        "# starvation compare\n\n{}\n{}",
        header(c).replace('\n', "\n\n"),
        table(&c.summary)
    );
    let files = [
        ("curves.csv", curves_csv(c)),
        ("summary.json", json + "\n"),
        ("summary.md", md),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        write_new(&path, text.as_bytes())?;
        written.push(path);
    }
    let png = dir.join("compare.png");
    super::figure::write(&png, c)?;
    written.push(png);
    Ok(written)
}

/// `bytes` into a temporary file beside `path`, synced, then linked in only if `path` does not
/// exist yet.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CompareError> {
    use std::io::Write as _;
    let err = |source| CompareError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = crate::util::temp_beside(path).map_err(|e| err(e.error))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    tmp.persist_noclobber(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_must_be_new_or_empty_and_files_are_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        check_out(&tmp.path().join("new")).unwrap();
        check_out(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("mine.txt"), "keep").unwrap();
        let e = check_out(tmp.path()).unwrap_err().to_string();
        assert!(e.starts_with("--out ") && e.contains("is not empty"), "{e}");
        let e = check_out(&tmp.path().join("mine.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a folder"), "{e}");
        let path = tmp.path().join("mine.txt");
        assert!(write_new(&path, b"theirs").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
        write_new(&tmp.path().join("new.txt"), b"ours").unwrap();
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn numbers_are_shown_for_their_metric() {
        let e = |mean, lo, hi| Some(Estimate { mean, lo, hi, n: 3 });
        let peak = Metric::Peak { curve: Curve::Busy };
        assert_eq!(estimate(peak, e(5.0, 5.0, 5.0)), "5");
        assert_eq!(estimate(peak, e(5.25, 4.0, 6.5)), "5.2 [4, 6.5]");
        let p99 = Metric::Peak { curve: Curve::P99 };
        assert_eq!(estimate(p99, e(10.456, 10.456, 10.456)), "10.46");
        let n = Metric::Nrmse { curve: Curve::Busy };
        assert_eq!(estimate(n, e(0.1234, 0.1234, 0.1234)), "0.123");
        assert_eq!(estimate(n, None), "—");
    }
}
