//! Secrets never leak: a recognisable secret is planted in every input a credential can come
//! through (environment variables, URLs with userinfo, a profile's `serve_args`, the scaler's
//! token) and every output is searched for it — each `--help`, stderr logs, the scaler's
//! `/events` and status page, a load summary, the experiment's report.md, report.json,
//! experiment.json and run folders, and the command lines and environments of local replicas.

mod common;

use common::experiment::experiment_with_env;
use common::{Proc, free_port, spawn_listening, starvation_bin, webhook};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every planted secret contains this; no output may.
const MARK: &str = "PLANTED";
const PASSWORD: &str = "pw-PLANTED-1";
const TOKEN: &str = "token-PLANTED-2";

/// `http://admin:PASSWORD@127.0.0.1:port` + `path`: credentials for a port nothing listens on.
fn with_userinfo(scheme: &str, port: u16, path: &str) -> String {
    format!("{scheme}://admin:{PASSWORD}@127.0.0.1:{port}{path}")
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(MARK),
        "{what} shows a planted secret:\n{}",
        text.lines()
            .filter(|l| l.contains(MARK))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `timeout`.
fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids of `parent`'s children.
fn children(parent: i32) -> Vec<i32> {
    let mut kids = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(parent) {
            kids.push(pid);
        }
    }
    kids
}

/// A process's command line and environment, NULs as spaces.
fn cmdline_and_environ(pid: i32) -> (String, String) {
    let read = |f: &str| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default())
            .replace('\0', " ")
    };
    (read("cmdline"), read("environ"))
}

/// Every environment variable `starvation` reads, with a planted secret in a URL as its value.
fn planted_env() -> Vec<(String, String)> {
    use clap::CommandFactory;
    let mut names = std::collections::BTreeSet::new();
    let cli = starvation::cli::Cli::command();
    for sub in cli.get_subcommands() {
        for a in sub.get_arguments() {
            if let Some(env) = a.get_env() {
                names.insert(env.to_string_lossy().into_owned());
            }
        }
    }
    names.insert("STARVATION_ALERTAPI_TOKEN".into());
    assert!(names.len() >= 15, "{names:?}");
    names
        .into_iter()
        .map(|n| (n, with_userinfo("http", 1, "/")))
        .collect()
}

#[test]
fn help_never_shows_environment_values() {
    let env = planted_env();
    let subcommands = [
        "serve",
        "alertapi",
        "probe",
        "export",
        "aggregate",
        "figures",
        "load",
        "experiment",
        "calibrate",
    ];
    let mut checked = 0;
    for args in std::iter::once(vec!["--help"])
        .chain(subcommands.iter().map(|s| vec![*s, "--help"]))
        .chain(subcommands.iter().map(|s| vec!["help", *s]))
    {
        let out = Command::new(starvation_bin())
            .args(&args)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_clean(&format!("starvation {}", args.join(" ")), &text);
        checked += text.matches("[env: STARVATION_").count();
    }
    // The variables are still named, only their values are hidden.
    assert!(checked >= 30, "{checked} env mentions");
}

#[test]
fn serve_logs_urls_without_credentials() {
    let mut cmd = Command::new(starvation_bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--push-interval",
        "100ms",
    ])
    .env("RUST_LOG", "info")
    .env(
        "STARVATION_PUSHGATEWAY",
        with_userinfo("http", free_port(), ""),
    )
    .env(
        "STARVATION_MONGODB_URI",
        with_userinfo("mongodb", free_port(), "/?authSource=admin"),
    );
    let (mut serve, _) = spawn_listening(cmd, "serve");
    poll(Duration::from_secs(20), "a failed push logged", || {
        serve.stderr().contains("push failed").then_some(())
    });
    serve.terminate(Duration::from_secs(20)).expect("stops");
    let log = serve.stderr();
    assert!(
        log.contains("pushing gauges to http://admin:***@127.0.0.1"),
        "{log}"
    );
    assert_clean("serve's log", &log);

    // A URL refused at start is named without its password too.
    let out = Command::new(starvation_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--pushgateway"])
        .arg(with_userinfo("ftp", 1, ""))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pushgateway"), "{err}");
    assert_clean("serve's error", &err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertapi_logs_pages_and_replicas_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(starvation_bin());
    cmd.current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env("STARVATION_ALERTAPI_TOKEN", TOKEN)
        .args([
            "alertapi",
            "--listen",
            "127.0.0.1:0",
            "--orchestrator",
            "local",
        ])
        .args(["--default-service", "web", "--cooldown", "0s", "--max", "3"])
        .args(["--reconcile-every", "200ms", "--prometheus"])
        .arg(with_userinfo("http", free_port(), ""))
        .arg("--pushgateway")
        .arg(with_userinfo("http", free_port(), ""))
        .arg("--alertmanager")
        .arg(with_userinfo("http", free_port(), ""))
        .arg(format!(
            "--local-serve-arg=--mongodb-uri={}",
            with_userinfo("mongodb", free_port(), "")
        ))
        .args(["--local-serve-arg=--block-ms=0"])
        .args(["--local-listen", &format!("127.0.0.1:{}", free_port())]);
    let (mut api, addr) = spawn_listening(cmd, "alertapi");
    let http = reqwest::Client::new();
    let status = http
        .post(format!("http://{addr}/alert"))
        .bearer_auth(TOKEN)
        .json(&webhook("firing", "f1", "2026-12-07T10:00:00Z", "web"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    poll(Duration::from_secs(30), "a second replica", || {
        (children(api.pid()).len() >= 2).then_some(())
    });
    poll(
        Duration::from_secs(30),
        "failed reconcile and push logged",
        || {
            let log = api.stderr();
            (log.contains("reconcile web") && log.contains("pushing the scale event")).then_some(())
        },
    );
    for path in ["/", "/events", "/metrics"] {
        let body = http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.len() > 100, "{path}: {body}");
        assert_clean(path, &body);
    }
    for pid in children(api.pid()) {
        let (cmdline, environ) = cmdline_and_environ(pid);
        assert!(cmdline.contains(" serve "), "{pid}: {cmdline}");
        assert_clean(&format!("replica {pid}'s command line"), &cmdline);
        assert!(
            !environ.contains(TOKEN),
            "replica {pid} inherited the scaler's token"
        );
    }
    api.terminate(Duration::from_secs(40)).expect("stops");
    assert_clean("alertapi's log", &api.stderr());
}

#[test]
fn alertapi_refuses_a_token_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(starvation_bin())
        .current_dir(dir.path())
        .args(["alertapi", "--listen", "127.0.0.1:0", "--default-service"])
        .args(["web", "--orchestrator", "local", "--token", TOKEN])
        .args(["--local-listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("STARVATION_ALERTAPI_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut api = Proc::new(child, "alertapi --token");
    let status = api
        .wait_for(Duration::from_secs(20))
        .expect("refuses at once instead of serving");
    assert!(!status.success(), "{status}");
    let err = api.stderr();
    assert!(
        err.contains("--token") && err.contains("STARVATION_ALERTAPI_TOKEN"),
        "{err}"
    );
    assert!(err.contains("--token-file"), "{err}");
    assert_clean("the refusal", &err);
}

#[test]
fn load_and_export_name_urls_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let out = Command::new(starvation_bin())
        .args([
            "load",
            "--stages",
            "2:1s",
            "--graceful-stop",
            "1s",
            "--timeout",
            "1s",
        ])
        .args([
            "--remote-write-interval",
            "200ms",
            "--format",
            "json",
            "--summary",
        ])
        .arg(&summary)
        .env("RUST_LOG", "info")
        .env(
            "STARVATION_LOAD_URL",
            with_userinfo(
                "http",
                free_port(),
                "/test-threadpool?access_token=t-PLANTED",
            ),
        )
        .env(
            "STARVATION_LOAD_REMOTE_WRITE",
            with_userinfo("http", free_port(), "/api/v1/write"),
        )
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let written = std::fs::read_to_string(&summary).unwrap_or_default();
    assert!(written.contains("admin:***@127.0.0.1"), "{written}\n{log}");
    assert!(log.contains("remote write"), "{log}");
    assert_clean("load's log", &log);
    assert_clean("load's summary", &written);

    let out = Command::new(starvation_bin())
        .args(["export", "--last", "1m", "--timeout", "2s", "--out"])
        .arg(dir.path().join("export"))
        .env(
            "STARVATION_PROMETHEUS_URL",
            with_userinfo("http", free_port(), ""),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin:***@127.0.0.1"), "{err}");
    assert_clean("export's error", &err);
}

/// Every file under `dir`, with its text.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

#[test]
fn experiment_saves_and_logs_no_secret_and_resumes_with_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let out_s = out.to_str().unwrap();
    let profile = tmp.path().join("secret.toml");
    let tiny = include_str!("fixtures/experiment-tiny.toml");
    let uri = with_userinfo("mongodb", free_port(), "/?authSource=admin");
    std::fs::write(
        &profile,
        format!("{tiny}serve_args = [\"--mongodb-uri\", \"{uri}\"]\n"),
    )
    .unwrap();
    let profile_s = profile.to_str().unwrap();
    let env = [("STARVATION_ALERTAPI_TOKEN", TOKEN), ("RUST_LOG", "info")];
    let mut p = experiment_with_env(&["--profile", profile_s, "--out", out_s], &env);
    // The replicas while they run: no secret on their command line, no token inherited.
    let replica = poll(Duration::from_secs(60), "a replica", || {
        children(p.pid())
            .into_iter()
            .find(|&pid| cmdline_and_environ(pid).0.contains(" serve "))
    });
    let (cmdline, environ) = cmdline_and_environ(replica);
    assert_clean("the replica's command line", &cmdline);
    assert!(!environ.contains(TOKEN), "the replica inherited the token");
    // It still got the URI, through its environment.
    assert!(environ.contains(&uri), "{environ}");
    let status = p.wait_for(Duration::from_secs(240)).expect("finishes");
    assert!(status.success(), "{status}: {}", p.stderr());
    assert_clean("the experiment's log", &p.stderr());
    let files = files_under(&out);
    for name in ["report.md", "report.json", "experiment.json", "run.json"] {
        assert!(
            files.iter().any(|(f, _)| f.ends_with(name)),
            "no {name} in {files:?}"
        );
    }
    for (file, text) in &files {
        assert_clean(file, text);
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("mongodb://admin:***@127.0.0.1"), "{report}");

    // experiment.json cannot give the URI back: --resume asks for the profile again …
    let mut again = experiment_with_env(&["--resume", "--out", out_s], &env);
    let status = again.wait_for(Duration::from_secs(60)).expect("exits");
    assert!(!status.success());
    let err = again.stderr();
    assert!(err.contains("--profile"), "{err}");
    assert_clean("the resume refusal", &err);
    // … and continues with it.
    let mut again =
        experiment_with_env(&["--resume", "--out", out_s, "--profile", profile_s], &env);
    let status = again.wait_for(Duration::from_secs(120)).expect("exits");
    assert!(status.success(), "{status}: {}", again.stderr());
    for (file, text) in files_under(&out) {
        assert_clean(&file, &text);
    }
}
