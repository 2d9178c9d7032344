//! Applies the policy: one decision at a time per service, orchestrator calls, the record of
//! decisions, and the periodic scale-down check (`run_once` / `run`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::alert::{Alert, Notification};
use super::capacity::Capacity;
use super::metrics::{ScaleLabels, ScalerMetrics, ServiceLabels};
use super::pinned::{ALERT_NAME, PinnedAlerts};
use super::policy::{
    Action, AlertFact, Decision, FiringAlert, Plan, PolicyConfig, PolicyKind, ServiceMemory,
    short_name,
};
use super::reconcile::ReconcileConfig;
use crate::orchestrator::{Bounds, Orchestrator, OrchestratorError};

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("orchestrator failed for service {service:?}: {source}")]
    Orchestrator {
        service: String,
        source: OrchestratorError,
    },
    /// Another scaler replica acts (Swarm: the one on the leader); Alertmanager retries.
    #[error("{0}")]
    NotLeader(String),
    #[error("service {service:?} has invalid bounds {bounds:?}: need 1 <= step and min <= max")]
    BadBounds { service: String, bounds: Bounds },
}

/// Alert names an event lists at most (distinct, cut to `MAX_NAME_CHARS`), then "+N more".
pub const EVENT_NAMES: usize = 10;

fn alert_names(facts: &[AlertFact]) -> Vec<String> {
    let names: BTreeSet<&str> = facts.iter().map(|f| f.name.as_str()).collect();
    let mut out: Vec<String> = names
        .iter()
        .take(EVENT_NAMES)
        .map(|n| short_name(n))
        .collect();
    if names.len() > EVENT_NAMES {
        out.push(format!("+{} more", names.len() - EVENT_NAMES));
    }
    out
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub time: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub decision: Decision,
    /// Alert names of the notification, empty for the periodic scale-down check.
    pub alerts: Vec<String>,
    /// Shadow mode: decided and reported, nothing scaled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// What the orchestrator says of a service now, with the bounds that apply.
pub(super) struct Seen {
    pub(super) replicas: u32,
    /// The configured bounds (flags and labels); decisions use `capacity.bounds(bounds)`.
    pub(super) bounds: Bounds,
    dry_run: bool,
    /// Restore the scaler's count after an outside change lowered it.
    pub(super) restore: bool,
    pub(super) capacity: Capacity,
}

/// What the status page shows for one service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceView {
    pub name: String,
    pub replicas: Option<u32>,
    pub bounds: Option<Bounds>,
    pub error: Option<String>,
    pub firing: Vec<FiringAlert>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    pub policy: PolicyConfig,
    pub bounds: Bounds,
    pub allow: BTreeSet<String>,
    pub default_service: Option<String>,
    pub events_kept: usize,
    pub audit_log: Option<PathBuf>,
    pub pushgateway: Option<String>,
    /// Alertmanager's base URL for the `ScalerPinnedAtMax` alert.
    pub alertmanager: Option<String>,
    pub reconcile: Option<ReconcileConfig>,
    /// Shadow mode for every service (`--dry-run`); a service's `starvation.dry-run=true`
    /// label does it for one.
    pub dry_run: bool,
}

/// Decisions kept for `/events` and the status page (`alertapi --events`).
pub const DEFAULT_EVENTS_KEPT: usize = 200;

impl ControllerConfig {
    /// A scaler of the one service `service`, the default of every alert, with `alertapi`'s
    /// defaults otherwise (no audit log, no Pushgateway): the in-process scaler of the
    /// experiment, built from typed values rather than flags.
    pub fn one_service(service: &str, bounds: Bounds, policy: PolicyConfig) -> Self {
        ControllerConfig {
            policy,
            bounds,
            allow: [service.to_owned()].into(),
            default_service: Some(service.to_owned()),
            events_kept: DEFAULT_EVENTS_KEPT,
            audit_log: None,
            pushgateway: None,
            alertmanager: None,
            reconcile: None,
            dry_run: false,
        }
    }
}

pub struct Controller {
    orchestrator: Arc<dyn Orchestrator>,
    cfg: ControllerConfig,
    memories: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ServiceMemory>>>>,
    /// The replicas the scaler last set per service, to restore after an outside change.
    pub(super) scaled_to: Mutex<HashMap<String, u32>>,
    events: Mutex<VecDeque<Event>>,
    audit: Mutex<Option<std::fs::File>>,
    pub metrics: ScalerMetrics,
    http: reqwest::Client,
    pinned: Option<PinnedAlerts>,
}

impl Controller {
    pub fn new(orchestrator: Arc<dyn Orchestrator>, cfg: ControllerConfig) -> anyhow::Result<Self> {
        let audit = match &cfg.audit_log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("--audit-log {}: cannot append to it: {e}", path.display())
                    })?,
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a client with only a timeout set always builds");
        Ok(Controller {
            orchestrator,
            pinned: cfg
                .alertmanager
                .as_deref()
                .map(|url| PinnedAlerts::new(url, http.clone())),
            cfg,
            memories: Mutex::new(HashMap::new()),
            scaled_to: Mutex::new(HashMap::new()),
            events: Mutex::new(VecDeque::new()),
            audit: Mutex::new(audit),
            metrics: ScalerMetrics::new(),
            http,
        })
    }

    pub fn orchestrator(&self) -> &Arc<dyn Orchestrator> {
        &self.orchestrator
    }

    pub(super) fn memory(&self, service: &str) -> Arc<tokio::sync::Mutex<ServiceMemory>> {
        let mut map = self.memories.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(service.to_owned()).or_default().clone()
    }

    /// The service an alert targets: its `service` label, else `--default-service`.
    fn target<'a>(&'a self, alert: &'a Alert) -> Result<&'a str, HandleError> {
        let service = alert
            .labels
            .get("service")
            .map(String::as_str)
            .or(self.cfg.default_service.as_deref())
            .ok_or_else(|| {
                HandleError::Forbidden(format!(
                    "alert {} has no `service` label and no --default-service is set",
                    alert.name()
                ))
            })?;
        if !self.cfg.allow.contains(service) {
            return Err(HandleError::Forbidden(format!(
                "service {service:?} is not in the allow-list ({}); add it with --allow",
                self.cfg
                    .allow
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(service)
    }

    /// Handle one webhook: every alert is checked before anything changes; then one decision
    /// per service, serialized with any other decision for that service.
    pub async fn handle(&self, n: &Notification) -> Result<Vec<Decision>, HandleError> {
        self.may_act().await?;
        let mut by_service: BTreeMap<&str, Vec<AlertFact>> = BTreeMap::new();
        let received = chrono::Utc::now();
        // The scaler's own alert, routed back to it, says nothing about load.
        for alert in n.alerts.iter().filter(|a| a.name() != ALERT_NAME) {
            let value = match self.cfg.policy.kind {
                PolicyKind::Proportional => alert.value().map_err(HandleError::BadRequest)?,
                PolicyKind::Step => None,
            };
            by_service
                .entry(self.target(alert)?)
                .or_default()
                .push(alert.fact(value, received));
        }
        let mut decisions = vec![];
        for (service, facts) in by_service {
            let memory = self.memory(service);
            let mut memory = memory.lock().await;
            let seen = self.seen(service).await?;
            let mut plan = memory.plan(
                service,
                &facts,
                seen.capacity.ready(),
                seen.capacity.bounds(seen.bounds),
                &self.cfg.policy,
                Instant::now(),
            );
            seen.capacity.settle(&mut plan);
            let decision = self
                .apply(&mut memory, &plan, &seen, Some(alert_names(&facts)))
                .await?;
            decisions.push(decision);
        }
        Ok(decisions)
    }

    /// Carry out a plan (in shadow mode only report it), then remember and record it. `alerts`
    /// is the notification's alert names, `None` for the periodic checks.
    pub(super) async fn apply(
        &self,
        memory: &mut ServiceMemory,
        plan: &Plan,
        seen: &Seen,
        alerts: Option<Vec<String>>,
    ) -> Result<Decision, HandleError> {
        let mut d = plan.decision.clone();
        let shadow = seen.dry_run || self.cfg.dry_run;
        let acts = d.action != Action::None;
        if acts && shadow {
            d.reason = format!("dry run, nothing scaled: {}", d.reason);
            tracing::info!(
                "{}: would scale {} -> {} ({})",
                d.service,
                d.from,
                d.to,
                d.reason
            );
        } else if acts {
            self.carry_out(&d).await?;
            if alerts.is_some() {
                self.metrics.alert_endpoint_call.inc();
            }
            self.push_scale_event();
        }
        memory.commit(plan, Instant::now());
        let service = ServiceLabels {
            service: d.service.clone(),
        };
        self.metrics
            .desired
            .get_or_create(&service)
            .set(d.to as i64);
        let pinned = plan.wants_more && d.to >= seen.bounds.max;
        self.metrics.blocked(&d.service, "at_max", pinned);
        if let Some(alerts) = &self.pinned {
            alerts.update(&d.service, pinned, d.to, seen.bounds.max);
        }
        self.metrics.blocked(&d.service, "dry_run", shadow && acts);
        self.record(&d, alerts.unwrap_or_default(), shadow);
        Ok(d)
    }

    /// Whether this scaler replica acts (Swarm: only the one on the leader manager).
    pub(super) async fn may_act(&self) -> Result<(), HandleError> {
        self.orchestrator.may_act().await.map_err(|e| match e {
            OrchestratorError::NotLeader(why) => HandleError::NotLeader(why),
            source => HandleError::Orchestrator {
                service: "(any)".to_owned(),
                source,
            },
        })
    }

    /// Every allowed service's replicas into `starvation_service_replicas`, so the metric is
    /// there before the first decision.
    pub async fn refresh_replicas(&self) {
        for name in &self.cfg.allow {
            if let Err(e) = self.seen(name).await {
                tracing::warn!("{name}: {e}");
            }
        }
    }

    pub(super) async fn seen(&self, service: &str) -> Result<Seen, HandleError> {
        let status = self.orchestrator.status(service).await.map_err(|source| {
            HandleError::Orchestrator {
                service: service.to_owned(),
                source,
            }
        })?;
        self.metrics
            .replicas
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .set(status.replicas as i64);
        let bounds = self.cfg.bounds.with(status.bounds);
        if bounds.step == 0 || bounds.min > bounds.max {
            return Err(HandleError::BadBounds {
                service: service.to_owned(),
                bounds,
            });
        }
        let capacity = Capacity::of(&status);
        self.metrics
            .blocked(service, "no_node", capacity.blocked().is_some());
        Ok(Seen {
            replicas: status.replicas,
            bounds,
            dry_run: status.dry_run,
            restore: status.restore,
            capacity,
        })
    }

    async fn carry_out(&self, d: &Decision) -> Result<(), HandleError> {
        if d.action == Action::None {
            return Ok(());
        }
        self.orchestrator
            .scale(&d.service, d.to)
            .await
            .map_err(|source| HandleError::Orchestrator {
                service: d.service.clone(),
                source,
            })?;
        tracing::info!("{}: {} -> {} ({})", d.service, d.from, d.to, d.reason);
        self.scaled_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.service.clone(), d.to);
        let (direction, reason) = match d.action {
            Action::ScaleUp => ("up", format!("{:?}", self.cfg.policy.kind).to_lowercase()),
            _ => ("down", "scale_down_delay".to_owned()),
        };
        self.metrics
            .scale_events
            .get_or_create(&ScaleLabels {
                service: d.service.clone(),
                direction: direction.to_owned(),
                reason,
            })
            .inc();
        self.metrics
            .replicas
            .get_or_create(&ServiceLabels {
                service: d.service.clone(),
            })
            .set(d.to as i64);
        Ok(())
    }

    fn record(&self, decision: &Decision, alerts: Vec<String>, dry_run: bool) {
        let event = Event {
            time: chrono::Utc::now(),
            decision: decision.clone(),
            alerts,
            dry_run,
        };
        if let Some(file) = self
            .audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            let line = serde_json::to_string(&event).expect("events serialize");
            if let Err(e) = writeln!(file, "{line}") {
                tracing::error!("cannot append to the audit log: {e}");
            }
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.push_back(event);
        while events.len() > self.cfg.events_kept {
            events.pop_front();
        }
    }

    /// The original pushed `alert_endpoint_call` to the Pushgateway under `job=alertapi`; the
    /// paper's "Scale event" export reads it from there.
    fn push_scale_event(&self) {
        let Some(gateway) = &self.cfg.pushgateway else {
            return;
        };
        let url = format!("{}/metrics/job/alertapi", gateway.trim_end_matches('/'));
        let shown = crate::util::redact::url(&url);
        let body = format!(
            "# TYPE alert_endpoint_call gauge\nalert_endpoint_call {}\n",
            self.metrics.alert_endpoint_call.get()
        );
        let http = self.http.clone();
        tokio::spawn(async move {
            match http.put(&url).body(body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!("pushing the scale event to {shown}: HTTP {}", r.status()),
                Err(e) => tracing::warn!("pushing the scale event to {shown}: {e}"),
            }
        });
    }

    /// Recent decisions, oldest first.
    pub fn events(&self) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().cloned().collect()
    }

    /// The periodic check: scale-ups the cooldown held back and scale-downs that are due.
    /// A failed scale-down is retried next tick, a failed held-back scale-up by the alert's
    /// next repeat.
    pub async fn run_once(&self) -> Vec<Decision> {
        // Only services the scaler has heard of: a service with no memory has nothing due, and
        // each visit costs an orchestrator call every second.
        let services: Vec<(String, Arc<tokio::sync::Mutex<ServiceMemory>>)> = {
            let map = self.memories.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        if let Err(e) = self.may_act().await {
            tracing::debug!("periodic check skipped: {e}");
            return vec![];
        }
        let mut done = vec![];
        for (service, memory) in &services {
            let service = service.as_str();
            let mut memory = memory.lock().await;
            let seen = match self.seen(service).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("periodic check skipped: {e}");
                    continue;
                }
            };
            let Some(mut plan) = memory.tick(
                service,
                seen.replicas,
                seen.capacity.bounds(seen.bounds),
                &self.cfg.policy,
                Instant::now(),
            ) else {
                continue;
            };
            seen.capacity.settle(&mut plan);
            match self.apply(&mut memory, &plan, &seen, None).await {
                Ok(d) => done.push(d),
                Err(e) => tracing::warn!("{}: {e}", plan.decision.reason),
            }
        }
        done
    }

    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        let reconcile_every = self
            .cfg
            .reconcile
            .as_ref()
            .map_or(Duration::from_secs(3600), |r| r.every);
        let mut reconciler = tokio::time::interval(reconcile_every);
        reconciler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => { self.run_once().await; }
                _ = reconciler.tick(), if self.cfg.reconcile.is_some() => {
                    self.reconcile_once().await;
                }
            }
        }
    }

    /// One reconciliation of every allowed service: its query's value, decided by the same
    /// memory (cooldown, behavior) as the webhooks. A failed query or scale waits for the next.
    pub async fn reconcile_once(&self) -> Vec<Decision> {
        let Some(rc) = &self.cfg.reconcile else {
            return vec![];
        };
        if let Err(e) = self.may_act().await {
            tracing::debug!("reconciliation skipped: {e}");
            return vec![];
        }
        let mut done = vec![];
        for service in &self.cfg.allow {
            let value = match rc.value(&self.http, service).await {
                Ok(Some(v)) => v,
                Ok(None) => {
                    tracing::debug!("reconcile {service}: the query returned no data");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("reconcile {service}: {e}");
                    continue;
                }
            };
            let memory = self.memory(service);
            let mut memory = memory.lock().await;
            let seen = match self.seen(service).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("reconcile skipped: {e}");
                    continue;
                }
            };
            let query = rc.query_for(service);
            let Some(plan) = memory.reconcile(
                service,
                (&query, value),
                seen.replicas,
                seen.capacity.bounds(seen.bounds),
                &self.cfg.policy,
                Instant::now(),
            ) else {
                continue;
            };
            match self.apply(&mut memory, &plan, &seen, None).await {
                Ok(d) => done.push(d),
                Err(e) => tracing::warn!("{}: {e}", plan.decision.reason),
            }
        }
        done
    }

    /// Every allowed service with its replicas, bounds and firing alerts.
    pub async fn overview(&self) -> Vec<ServiceView> {
        let mut views = vec![];
        for name in &self.cfg.allow {
            let firing = self.memory(name).lock().await.firing();
            let view = match self.seen(name).await {
                Ok(seen) => ServiceView {
                    name: name.clone(),
                    replicas: Some(seen.replicas),
                    bounds: Some(seen.bounds),
                    error: None,
                    firing,
                },
                Err(e) => ServiceView {
                    name: name.clone(),
                    replicas: None,
                    bounds: None,
                    error: Some(e.to_string()),
                    firing,
                },
            };
            views.push(view);
        }
        views
    }
}
