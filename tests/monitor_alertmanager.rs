//! The embedded monitor notifies as Alertmanager does: one flapping queue trace, pushed at the
//! same moments to the embedded monitor and to real Prometheus + Pushgateway + Alertmanager
//! (the processes of `--monitor prometheus`, configured from `deploy/`), and the two
//! notification sequences compared per alert.

mod common;

use axum::body::Bytes;
use axum::extract::{Path, State};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starvation::monitor::dispatch::Route;
use starvation::monitor::prometheus::{BINARIES, PrometheusMonitor};
use starvation::monitor::rules::DEFAULT_RULES;
use starvation::monitor::{Embedded, Monitor, MonitorConfig, parse_rules};
use starvation::scaler::alert::{Notification, Status};

const TEST: &str = "a_flapping_queue_notifies_as_alertmanager_does";
const QUEUE: &str = "system_runtime_threadpool_queue_length";
const ALERTS: [&str; 2] = ["ThreadPoolSpike", "ThreadPoolStarvation"];

/// The trace: 3 s quiet, then the queue flips between 45 (above the spike's 40) and 35 (below
/// it, still above the starvation's 20) after holds of 1–2 s for 36 s, then 0.
const LEAD_IN: f64 = 3.0;
const HOLDS: [f64; 24] = [
    2.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 1.0, 2.0, 2.0,
    1.0, 2.0, 2.0, 1.0, 2.0,
];

fn queue_at(t: f64) -> f64 {
    let mut edge = LEAD_IN;
    if t < edge {
        return 0.0;
    }
    for (i, hold) in HOLDS.iter().enumerate() {
        edge += hold;
        if t < edge {
            return if i % 2 == 0 { 45.0 } else { 35.0 };
        }
    }
    0.0
}

fn calm_from() -> f64 {
    LEAD_IN + HOLDS.iter().sum::<f64>()
}

/// (seconds since the trace started, the notification), per source.
type Log = Arc<Mutex<BTreeMap<String, Vec<(f64, Notification)>>>>;

/// The test's webhook receiver: `POST /<source>` records what arrives; a payload the scaler
/// would refuse is recorded under `refused`.
async fn receiver(log: Log, t0: Instant) -> String {
    let app = axum::Router::new()
        .route(
            "/{source}",
            axum::routing::post(
                move |State(log): State<Log>, Path(source): Path<String>, body: Bytes| async move {
                    let at = t0.elapsed().as_secs_f64();
                    let mut log = log.lock().unwrap();
                    match starvation::scaler::alert::parse(&body) {
                        Ok(n) => log.entry(source).or_default().push((at, n)),
                        Err(e) => {
                            eprintln!("{source} sent what the scaler refuses: {e}");
                            log.entry("refused".into()).or_default();
                        }
                    }
                },
            ),
        )
        .with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn push(client: &reqwest::Client, gateway: &str, value: f64) {
    let body = format!("# TYPE {QUEUE} gauge\n{QUEUE} {value}\n");
    let url = format!("{gateway}/metrics/job/webserver/instance/flap-1/service/web");
    let r = client.put(&url).body(body).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
}

/// Per alert: (seconds, status) of each notification that concerned it.
type Sequence = BTreeMap<String, Vec<(f64, Status)>>;

fn sequences(log: &[(f64, Notification)]) -> Sequence {
    let mut out = Sequence::new();
    for (at, n) in log {
        let name = n.group_labels.get("alertname").cloned().unwrap_or_default();
        out.entry(name).or_default().push((*at, n.status));
    }
    out
}

fn show(source: &str, seq: &Sequence) {
    for (alert, events) in seq {
        let list: Vec<String> = events
            .iter()
            .map(|(t, s)| format!("{t:.1}s {s:?}"))
            .collect();
        eprintln!("{source:>8} {alert}: {}", list.join(", "));
    }
}

/// Every alert's last notification says resolved.
fn all_resolved(log: &Log, source: &str) -> bool {
    let log = log.lock().unwrap();
    let seq = sequences(log.get(source).map(Vec::as_slice).unwrap_or_default());
    ALERTS
        .iter()
        .all(|a| seq.get(*a).and_then(|e| e.last()).map(|e| e.1) == Some(Status::Resolved))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus and Alertmanager: apt-get install prometheus prometheus-alertmanager prometheus-pushgateway (.ci/run does)"]
async fn a_flapping_queue_notifies_as_alertmanager_does() {
    for (bin, package) in BINARIES {
        common::external(bin, package, TEST);
    }
    let route = Route::deployed();
    let t0 = Instant::now();
    let log = Log::default();
    let hooks = receiver(log.clone(), t0).await;

    let dir = tempfile::tempdir().unwrap();
    let mut real = PrometheusMonitor::new(dir.path(), DEFAULT_RULES);
    real.start().await.unwrap();
    real.set_webhook(&format!("{hooks}/real")).await.unwrap();
    let real_gateway = real.pushgateway_url().unwrap();
    let mut embedded = Embedded::new(MonitorConfig {
        rules: parse_rules(DEFAULT_RULES).unwrap(),
        webhook: Some(format!("{hooks}/embedded")),
        token: None,
        interval: Duration::from_secs(1),
        route: route.clone(),
    });
    embedded.start().await.unwrap();
    let embedded_gateway = embedded.pushgateway_url().unwrap();

    // Both see the quiet lead-in before the trace starts: Prometheus has scraped it.
    let client = reqwest::Client::new();
    push(&client, &real_gateway, 0.0).await;
    let prometheus = common::prometheus::monitor_prometheus_url(dir.path());
    let ready = Instant::now();
    while client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", QUEUE)])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["data"]["result"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(15),
            "Prometheus scraped nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The trace, pushed to both every 250 ms (the embedded receiver forgets a group after
    // 5 s without a push), until both have notified every alert's resolve.
    let start = Instant::now();
    let offset = (start - t0).as_secs_f64();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let deadline = calm_from() + 20.0;
    loop {
        ticker.tick().await;
        let t = start.elapsed().as_secs_f64();
        let v = queue_at(t);
        tokio::join!(
            push(&client, &real_gateway, v),
            push(&client, &embedded_gateway, v)
        );
        if t > calm_from() && all_resolved(&log, "real") && all_resolved(&log, "embedded") {
            break;
        }
        assert!(t < deadline, "not every alert resolved by {deadline} s");
    }
    embedded.stop().await;
    real.stop().await;

    // Seconds since the trace started.
    let log = log.lock().unwrap();
    let sources: Vec<&String> = log.keys().collect();
    assert_eq!(
        sources,
        ["embedded", "real"],
        "who notified (refused: see above)"
    );
    let seq = |source: &str| {
        let mut s = sequences(&log[source]);
        for events in s.values_mut() {
            for e in events.iter_mut() {
                e.0 -= offset;
            }
        }
        s
    };
    let (emb, am) = (seq("embedded"), seq("real"));
    eprintln!(
        "trace: quiet {LEAD_IN} s, 45/35 flipping after holds {HOLDS:?} s, calm from {} s",
        calm_from()
    );
    show("embedded", &emb);
    show("real", &am);

    let interval = route.group_interval.as_secs_f64();
    for (source, seq) in [("embedded", &emb), ("real", &am)] {
        for alert in ALERTS {
            let events = seq
                .get(alert)
                .unwrap_or_else(|| panic!("{source}: no {alert}"));
            // Firing first, then alternating (a group with one alert notifies only when
            // what it would say changed), resolved last.
            for (i, (_, status)) in events.iter().enumerate() {
                let want = if i % 2 == 0 {
                    Status::Firing
                } else {
                    Status::Resolved
                };
                assert_eq!(*status, want, "{source} {alert}: {events:?}");
            }
            // Never closer than group_interval (less the tick's second of jitter).
            for w in events.windows(2) {
                assert!(
                    w[1].0 - w[0].0 >= interval - 1.0,
                    "{source} {alert}: {events:?}"
                );
            }
        }
    }
    for alert in ALERTS {
        let (e, r) = (&emb[alert], &am[alert]);
        // The first notification: group_wait after the first evaluation above the threshold;
        // the real path adds up to a scrape and an evaluation interval.
        assert!(
            (e[0].0 - r[0].0).abs() <= 2.5,
            "{alert}: first at {:.1} s embedded, {:.1} s real",
            e[0].0,
            r[0].0
        );
        // As many notifications, give or take two: which flushes fall on a flip depends on
        // the phase of the scrapes, the evaluations and each group's timer.
        assert!(
            e.len().abs_diff(r.len()) <= 2,
            "{alert}: {} notifications embedded, {} real",
            e.len(),
            r.len()
        );
    }
    // The starvation alert (above 20 throughout) fires once and resolves once in both.
    assert_eq!(emb["ThreadPoolStarvation"].len(), 2);
    assert_eq!(am["ThreadPoolStarvation"].len(), 2);
    // The spike flapped 12 times; both told the scaler at most once per group_interval.
    let flaps = HOLDS.len() / 2;
    let most = (HOLDS.iter().sum::<f64>() / interval).ceil() as usize + 2;
    for (source, n) in [
        ("embedded", emb["ThreadPoolSpike"].len()),
        ("real", am["ThreadPoolSpike"].len()),
    ] {
        assert!(
            n <= most && n < flaps,
            "{source}: {n} spike notifications for {flaps} flaps"
        );
    }
}
