//! The runner's sequence against a fake backend and monitor: the order of the phases, the
//! record it assembles, and teardown after a failure or a Ctrl-C in every phase.

use super::*;
use crate::monitor::Recording;
use crate::scaler::policy::{Action, Decision};
use std::sync::{Arc, Mutex};

/// Every phase a run goes through, in order (the scaler phases in scaled runs only).
const PHASES: [&str; 8] = [
    "monitor.start",
    "deploy",
    "start_scaler",
    "monitor.set_webhook",
    "start_load",
    "load",
    "stop_scaler",
    "monitor.collect",
];

/// What the fakes do in one phase.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Fail,
    CtrlC,
}

#[derive(Clone)]
struct Script {
    log: Arc<Mutex<Vec<&'static str>>>,
    fault: Option<(&'static str, Fault)>,
    cancel: CancellationToken,
}

impl Script {
    /// Log `phase`; fail, or press Ctrl-C, there if told to.
    fn enter(&self, phase: &'static str) -> anyhow::Result<()> {
        self.log.lock().unwrap().push(phase);
        match self.fault {
            Some((p, Fault::Fail)) if p == phase => anyhow::bail!("{phase} failed"),
            Some((p, Fault::CtrlC)) if p == phase => {
                self.cancel.cancel();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn log(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().clone()
    }
}

struct FakeBackend(Script);

fn event(from: u32, to: u32, action: Action) -> Event {
    Event {
        time: Utc::now(),
        decision: Decision {
            service: "web".into(),
            from,
            to,
            action,
            reason: "test".into(),
        },
        alerts: vec!["ThreadPoolSpike".into()],
        dry_run: false,
    }
}

impl Backend for FakeBackend {
    fn service(&self) -> String {
        "web".into()
    }
    fn deploy<'a>(
        &'a mut self,
        _run: &'a RunContext<'a>,
        pushgateway: Option<String>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        assert_eq!(pushgateway.as_deref(), Some("http://fake-pushgateway"));
        Box::pin(async { self.0.enter("deploy") })
    }
    fn start_scaler<'a>(
        &'a mut self,
        _run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async {
            self.0.enter("start_scaler")?;
            Ok(Some("http://fake-scaler/alert".into()))
        })
    }
    fn start_load<'a>(
        &'a mut self,
        _run: &'a RunContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<RunningLoad>> {
        Box::pin(async {
            self.0.enter("start_load")?;
            let script = self.0.clone();
            let start = Utc::now();
            let done: BoxFuture<'static, anyhow::Result<LoadEnd>> = Box::pin(async move {
                script.enter("load")?;
                if script.cancel.is_cancelled() {
                    // A load that would go on: only Ctrl-C ends it.
                    std::future::pending::<()>().await;
                }
                // Long enough for the runner to sample the replicas at least once.
                tokio::time::sleep(Duration::from_millis(1200)).await;
                Ok(LoadEnd {
                    start,
                    end: Utc::now(),
                    summary: crate::load::Summary {
                        requests: 42,
                        ..Default::default()
                    },
                })
            });
            Ok(RunningLoad {
                done,
                recorder: None,
            })
        })
    }
    fn replicas(&self) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async { Some(2) })
    }
    fn stop_scaler(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<Event>>> {
        Box::pin(async {
            self.0.enter("stop_scaler")?;
            Ok(vec![
                event(1, 2, Action::ScaleUp),
                event(2, 2, Action::None),
            ])
        })
    }
    fn teardown(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async {
            self.0.log.lock().unwrap().push("teardown");
            Ok(())
        })
    }
}

struct FakeMonitor(Script);

impl Monitor for FakeMonitor {
    fn describe(&self) -> String {
        "fake".into()
    }
    fn start(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { self.0.enter("monitor.start") })
    }
    fn pushgateway_url(&self) -> Option<String> {
        Some("http://fake-pushgateway".into())
    }
    fn set_webhook<'a>(&'a mut self, url: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        assert_eq!(url, "http://fake-scaler/alert");
        Box::pin(async { self.0.enter("monitor.set_webhook") })
    }
    fn collect<'a>(
        &'a mut self,
        specs: &'a [MetricSpec],
        _start: DateTime<Utc>,
        _end: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<Recording>> {
        // Without an in-process recorder the monitor is asked for the load's metrics too.
        assert!(specs.iter().any(|s| s.readable == m::TOTAL_REQUESTS));
        assert!(!specs.iter().any(|s| s.kind == Kind::ScaleEvent));
        Box::pin(async {
            self.0.enter("monitor.collect")?;
            Ok(Recording::default())
        })
    }
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            self.0.log.lock().unwrap().push("monitor.stop");
        })
    }
}

fn state() -> State {
    State {
        format: "starvation-experiment/1".into(),
        runs: 1,
        profile: Profile::quick(),
        rules: crate::monitor::rules::DEFAULT_RULES.into(),
        started: Utc::now(),
        backend: super::super::BackendKind::Local,
        monitor: super::super::MonitorKind::Embedded,
        swarm: Default::default(),
        load: Default::default(),
        workload: Default::default(),
        dotnet: Default::default(),
        dotnet_runtime: None,
        reference: None,
    }
}

/// One scaled run with `fault`: the runner's result and the phases it went through.
async fn scaled_run(
    fault: Option<(&'static str, Fault)>,
) -> (anyhow::Result<RunRecord>, Vec<&'static str>) {
    let cancel = CancellationToken::new();
    let script = Script {
        log: Arc::default(),
        fault,
        cancel: cancel.clone(),
    };
    let st = state();
    let bar = indicatif::ProgressBar::hidden();
    let run = RunContext {
        state: &st,
        pair: 1,
        role: Role::Scaled,
        dir: Path::new("/nonexistent"),
        cancel: &cancel,
        bar: &bar,
        label: "test",
    };
    let mut backend = FakeBackend(script.clone());
    let mut monitor = FakeMonitor(script.clone());
    let res = run_one(&run, &mut backend, &mut monitor).await;
    (res, script.log())
}

#[tokio::test]
async fn a_run_goes_through_every_phase_then_tears_down() {
    let (res, log) = scaled_run(None).await;
    let rec = res.unwrap();
    let mut expected = PHASES.to_vec();
    expected.extend(["teardown", "monitor.stop"]);
    assert_eq!(log, expected);
    // The record: the sampled replicas, scale events from the decisions that acted, the
    // scaler's every decision in alerts.json, the load's summary.
    let replicas = &rec.exports[record::REPLICAS][0];
    assert_eq!(replicas.metric["service"], "web");
    assert!(replicas.values.iter().all(|s| s.value == 2.0));
    assert!(!replicas.values.is_empty());
    assert_eq!(rec.scale_events.len(), 1);
    assert_eq!(
        (rec.scale_events[0].from, rec.scale_events[0].to),
        (Some(1), Some(2))
    );
    assert_eq!(rec.alerts.scaler_events.len(), 2);
    assert_eq!(rec.alerts.source, "fake");
    assert_eq!(rec.summary.requests, 42);
}

#[tokio::test]
async fn a_failure_in_any_phase_stops_the_run_and_tears_down() {
    for (i, phase) in PHASES.iter().enumerate() {
        let (res, log) = scaled_run(Some((phase, Fault::Fail))).await;
        let err = res.err().unwrap_or_else(|| panic!("{phase}: no error"));
        assert!(
            format!("{err:#}").contains(&format!("{phase} failed")),
            "{phase}: {err:#}"
        );
        let mut expected = PHASES[..=i].to_vec();
        expected.extend(["teardown", "monitor.stop"]);
        assert_eq!(log, expected, "failure in {phase}");
    }
}

#[tokio::test]
async fn ctrl_c_in_any_phase_stops_the_run_and_tears_down() {
    for (i, phase) in PHASES.iter().enumerate() {
        let (res, log) = scaled_run(Some((phase, Fault::CtrlC))).await;
        let err = res.err().unwrap_or_else(|| panic!("{phase}: no error"));
        assert!(err.is::<crate::Interrupted>(), "{phase}: {err:#}");
        let mut expected = PHASES[..=i].to_vec();
        expected.extend(["teardown", "monitor.stop"]);
        assert_eq!(log, expected, "Ctrl-C in {phase}");
    }
}
