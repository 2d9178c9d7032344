//! The scaling policy: a pure function of (notification or tick, memory, replicas, now).
//! Nothing here talks to an orchestrator; the controller applies the plan and commits it only
//! when the orchestrator succeeded, so a failed scale is retried by Alertmanager's retry.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::alert::{Alert, Status};
use crate::orchestrator::Bounds;

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// +step per new firing alert (the paper's behaviour, minus its bugs).
    Step,
    /// Kubernetes HPA's formula: desired = ceil(value / target), with a 10 % tolerance.
    Proportional,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub kind: PolicyKind,
    /// Per-replica target of the alert's `value` annotation (proportional policy).
    pub target: f64,
    /// HPA's tolerance: no change while |value/replica / target - 1| <= tolerance.
    pub tolerance: f64,
    pub cooldown: Duration,
    pub scale_down_delay: Duration,
    pub scale_down: bool,
}

/// `alertapi`'s defaults (its flags use the same values).
pub const DEFAULT_TARGET: f64 = 20.0;
pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(15);
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(60);

impl PolicyConfig {
    /// The step policy (the paper's) with `cooldown`, scaling down or not, other values default.
    pub fn step(cooldown: Duration, scale_down: bool) -> Self {
        PolicyConfig {
            kind: PolicyKind::Step,
            target: DEFAULT_TARGET,
            tolerance: DEFAULT_TOLERANCE,
            cooldown,
            scale_down_delay: DEFAULT_SCALE_DOWN_DELAY,
            scale_down,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ScaleUp,
    ScaleDown,
    None,
}

/// What the scaler decided for one service, as answered to the webhook and logged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub service: String,
    pub from: u32,
    pub to: u32,
    pub action: Action,
    pub reason: String,
}

/// A decision plus what to remember once it has been carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    seen_keys: Vec<String>,
}

/// A firing alert as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FiringAlert {
    pub name: String,
    pub starts_at: String,
}

const SEEN_CAPACITY: usize = 4096;

/// What the scaler remembers about one service between notifications.
#[derive(Debug, Default)]
pub struct ServiceMemory {
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    firing: BTreeMap<String, FiringAlert>,
    /// New firing alerts the cooldown held back, by fingerprint: they act when it ends if
    /// they still fire (Alertmanager would re-send them only after `repeat_interval`).
    deferred: BTreeMap<String, Alert>,
    last_scale_up: Option<Instant>,
    /// Since when no alert has been firing (set by a resolved notification).
    quiet_since: Option<Instant>,
}

impl ServiceMemory {
    pub fn firing(&self) -> Vec<FiringAlert> {
        self.firing.values().cloned().collect()
    }

    fn remember(&mut self, key: String) {
        if self.seen.insert(key.clone()) {
            self.seen_order.push_back(key);
            if self.seen_order.len() > SEEN_CAPACITY
                && let Some(old) = self.seen_order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    /// Decide on a notification's alerts for this service.
    pub fn plan(
        &mut self,
        service: &str,
        alerts: &[&Alert],
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> Plan {
        let mut resolved = false;
        for a in alerts {
            match a.status {
                Status::Firing => {
                    self.firing.insert(
                        a.fingerprint.clone(),
                        FiringAlert {
                            name: a.name().to_owned(),
                            starts_at: a.starts_at.clone(),
                        },
                    );
                }
                Status::Resolved => {
                    self.firing.remove(&a.fingerprint);
                    resolved = true;
                }
            }
        }
        if !self.firing.is_empty() {
            self.quiet_since = None;
        } else if resolved && self.quiet_since.is_none() {
            self.quiet_since = Some(now);
        }

        let mut new: Vec<&Alert> = vec![];
        for a in alerts.iter().filter(|a| a.status == Status::Firing) {
            if !self.seen.contains(&a.key()) && !new.iter().any(|n| n.key() == a.key()) {
                new.push(a);
            }
        }
        let none = |reason: String, seen_keys: Vec<String>| Plan {
            decision: Decision {
                service: service.to_owned(),
                from: current,
                to: current,
                action: Action::None,
                reason,
            },
            seen_keys,
        };
        if new.is_empty() {
            let reason = if !self.firing.is_empty() {
                "duplicate notification: these alerts were already acted on".to_owned()
            } else if resolved && cfg.scale_down {
                format!(
                    "resolved: scale down by {} after {} without a firing alert",
                    bounds.step,
                    humantime::format_duration(cfg.scale_down_delay)
                )
            } else if resolved {
                "resolved: scale-down is disabled".to_owned()
            } else {
                "no firing alert".to_owned()
            };
            return none(reason, vec![]);
        }
        let keys: Vec<String> = new.iter().map(|a| a.key()).collect();
        let names = {
            let mut n: Vec<&str> = new.iter().map(|a| a.name()).collect();
            n.dedup();
            n.join(", ")
        };
        if current >= bounds.max {
            return none(
                format!("{names} firing but already at max {}", bounds.max),
                keys,
            );
        }
        if let Some(t) = self.last_scale_up {
            let since = now.saturating_duration_since(t);
            if since < cfg.cooldown {
                // Not remembered: the tick at the cooldown's end, or a repeat after it, acts.
                for a in &new {
                    self.deferred.insert(a.fingerprint.clone(), (*a).clone());
                }
                let left = (cfg.cooldown - since).as_secs_f64();
                return none(
                    format!("{names} firing but in cooldown ({left:.1} s left)"),
                    vec![],
                );
            }
        }
        let (wanted, why) = match (
            cfg.kind,
            new.iter().filter_map(|a| a.value()).reduce(f64::max),
        ) {
            (PolicyKind::Step, _) => (
                current + bounds.step,
                format!("{names} firing: +{}", bounds.step),
            ),
            (PolicyKind::Proportional, None) => (
                current + bounds.step,
                format!(
                    "{names} firing without a usable `value` annotation: +{}",
                    bounds.step
                ),
            ),
            (PolicyKind::Proportional, Some(value)) => {
                let per_replica = value / current.max(1) as f64;
                let ratio = per_replica / cfg.target;
                if (ratio - 1.0).abs() <= cfg.tolerance {
                    return none(
                        format!(
                            "{names} firing: {per_replica:.1} per replica is within {:.0} % of the target {}",
                            cfg.tolerance * 100.0,
                            cfg.target
                        ),
                        keys,
                    );
                }
                let desired = (value / cfg.target).ceil() as u32;
                (
                    desired,
                    format!(
                        "{names} firing: value {value} / target {} per replica = {desired} replicas",
                        cfg.target
                    ),
                )
            }
        };
        let to = wanted.clamp(bounds.min, bounds.max);
        if to <= current {
            return none(format!("{why}: no more than the current {current}"), keys);
        }
        let capped = if to < wanted {
            format!(" (capped at max {})", bounds.max)
        } else {
            String::new()
        };
        Plan {
            decision: Decision {
                service: service.to_owned(),
                from: current,
                to,
                action: Action::ScaleUp,
                reason: format!("{why}{capped}"),
            },
            seen_keys: keys,
        }
    }

    /// Remember a plan once the orchestrator carried it out (or it needed no action).
    pub fn commit(&mut self, plan: &Plan, now: Instant) {
        for key in &plan.seen_keys {
            self.remember(key.clone());
        }
        match plan.decision.action {
            Action::ScaleUp => self.last_scale_up = Some(now),
            Action::ScaleDown => self.quiet_since = Some(now),
            Action::None => {}
        }
    }

    /// Once the cooldown is over: the alerts it held back that still fire (same episode) and
    /// have not been acted on, decided as if they had just been notified.
    fn deferred_plan(
        &mut self,
        service: &str,
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> Option<Plan> {
        if self.deferred.is_empty()
            || self
                .last_scale_up
                .is_some_and(|t| now.saturating_duration_since(t) < cfg.cooldown)
        {
            return None;
        }
        let deferred = std::mem::take(&mut self.deferred);
        let still: Vec<&Alert> = deferred
            .values()
            .filter(|a| {
                self.firing
                    .get(&a.fingerprint)
                    .is_some_and(|f| f.starts_at == a.starts_at)
                    && !self.seen.contains(&a.key())
            })
            .collect();
        if still.is_empty() {
            return None;
        }
        let mut plan = self.plan(service, &still, current, bounds, cfg, now);
        plan.decision.reason = format!("after the cooldown, still {}", plan.decision.reason);
        Some(plan)
    }

    /// The periodic check: step down once nothing has fired for the scale-down delay.
    /// After each step the delay starts again, so a service steps down gradually.
    pub fn tick(
        &mut self,
        service: &str,
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> Option<Plan> {
        if let Some(plan) = self.deferred_plan(service, current, bounds, cfg, now) {
            return Some(plan);
        }
        if !cfg.scale_down || !self.firing.is_empty() {
            return None;
        }
        let since = self.quiet_since?;
        if now.saturating_duration_since(since) < cfg.scale_down_delay {
            return None;
        }
        if current <= bounds.min {
            self.quiet_since = None;
            return None;
        }
        let to = current.saturating_sub(bounds.step).max(bounds.min);
        Some(Plan {
            decision: Decision {
                service: service.to_owned(),
                from: current,
                to,
                action: Action::ScaleDown,
                reason: format!(
                    "no alert firing for {}: -{}",
                    humantime::format_duration(cfg.scale_down_delay),
                    current - to
                ),
            },
            seen_keys: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::alert::{Notification, sample};

    fn cfg(kind: PolicyKind) -> PolicyConfig {
        PolicyConfig {
            kind,
            target: 20.0,
            tolerance: 0.1,
            cooldown: Duration::from_secs(15),
            scale_down_delay: Duration::from_secs(60),
            scale_down: true,
        }
    }

    const BOUNDS: Bounds = Bounds {
        min: 1,
        max: 4,
        step: 1,
    };

    enum Ev {
        /// (status, fingerprint, startsAt, value annotation)
        Notify(Vec<(&'static str, &'static str, &'static str, &'static str)>),
        Tick,
    }

    /// Runs a scenario: each row is (seconds, event, expected action, expected replicas after).
    fn run(cfg: PolicyConfig, start: u32, rows: Vec<(u64, Ev, Action, u32)>) {
        let t0 = Instant::now();
        let mut mem = ServiceMemory::default();
        let mut replicas = start;
        for (i, (at, ev, action, after)) in rows.into_iter().enumerate() {
            let now = t0 + Duration::from_secs(at);
            let plan = match ev {
                Ev::Notify(alerts) => {
                    let alerts: Vec<_> = alerts
                        .into_iter()
                        .map(|(s, fp, st, v)| {
                            let mut a = sample::alert(s, fp, st, "web");
                            a["annotations"]["value"] = v.into();
                            a
                        })
                        .collect();
                    let n: Notification =
                        serde_json::from_value(sample::notification("firing", alerts)).unwrap();
                    let refs: Vec<&Alert> = n.alerts.iter().collect();
                    Some(mem.plan("web", &refs, replicas, BOUNDS, &cfg, now))
                }
                Ev::Tick => mem.tick("web", replicas, BOUNDS, &cfg, now),
            };
            let got = plan
                .as_ref()
                .map(|p| p.decision.action)
                .unwrap_or(Action::None);
            assert_eq!(got, action, "row {i}: {plan:?}");
            if let Some(plan) = plan {
                assert_eq!(plan.decision.from, replicas, "row {i}");
                mem.commit(&plan, now);
                replicas = plan.decision.to;
            }
            assert_eq!(replicas, after, "row {i}");
        }
    }

    const T1: &str = "2026-11-22T10:00:00Z";
    const T2: &str = "2026-11-22T10:05:00Z";

    #[test]
    fn duplicates_and_retries_scale_once() {
        use Action::*;
        run(
            cfg(PolicyKind::Step),
            1,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
                // Alertmanager retry and repeat_interval re-sends: same fingerprint + startsAt.
                (1, Ev::Notify(vec![("firing", "a", T1, "30")]), None, 2),
                (40, Ev::Notify(vec![("firing", "a", T1, "30")]), None, 2),
                // The same alert twice in one payload counts once; a second alert adds one step.
                (
                    60,
                    Ev::Notify(vec![("firing", "b", T1, "50"), ("firing", "b", T1, "50")]),
                    ScaleUp,
                    3,
                ),
            ],
        );
    }

    #[test]
    fn resolved_never_scales_up_and_new_episode_does() {
        use Action::*;
        run(
            cfg(PolicyKind::Step),
            1,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
                (20, Ev::Notify(vec![("resolved", "a", T1, "30")]), None, 2),
                // The same alert fires again later: a new startsAt is a new episode.
                (30, Ev::Notify(vec![("firing", "a", T2, "30")]), ScaleUp, 3),
            ],
        );
    }

    #[test]
    fn cooldown_blocks_then_a_repeat_acts() {
        use Action::*;
        run(
            cfg(PolicyKind::Step),
            1,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
                (5, Ev::Notify(vec![("firing", "b", T1, "45")]), None, 2),
                // Not remembered during cooldown, so its repeat after the cooldown scales.
                (16, Ev::Notify(vec![("firing", "b", T1, "45")]), ScaleUp, 3),
            ],
        );
    }

    #[test]
    fn an_alert_held_by_the_cooldown_acts_when_it_ends_if_still_firing() {
        use Action::*;
        run(
            cfg(PolicyKind::Step),
            1,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
                (5, Ev::Notify(vec![("firing", "b", T1, "45")]), None, 2),
                (14, Ev::Tick, None, 2),
                // The cooldown is over and b still fires: one step, once.
                (15, Ev::Tick, ScaleUp, 3),
                (16, Ev::Tick, None, 3),
                // Its repeat is now a duplicate.
                (40, Ev::Notify(vec![("firing", "b", T1, "45")]), None, 3),
                // Held back, then resolved before the cooldown ends: nothing.
                (50, Ev::Notify(vec![("firing", "c", T1, "45")]), ScaleUp, 4),
                (52, Ev::Notify(vec![("firing", "d", T1, "45")]), None, 4),
                (53, Ev::Notify(vec![("resolved", "d", T1, "45")]), None, 4),
                (70, Ev::Tick, None, 4),
            ],
        );
    }

    #[test]
    fn bounds_hold() {
        use Action::*;
        let mut c = cfg(PolicyKind::Step);
        c.cooldown = Duration::ZERO;
        run(
            c,
            3,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "1")]), ScaleUp, 4),
                (1, Ev::Notify(vec![("firing", "b", T1, "1")]), None, 4),
                (
                    2,
                    Ev::Notify(vec![("resolved", "a", T1, "1"), ("resolved", "b", T1, "1")]),
                    None,
                    4,
                ),
                (62, Ev::Tick, ScaleDown, 3),
                (122, Ev::Tick, ScaleDown, 2),
                (182, Ev::Tick, ScaleDown, 1),
                (500, Ev::Tick, None, 1),
            ],
        );
    }

    #[test]
    fn proportional_follows_hpa() {
        use Action::*;
        let mut c = cfg(PolicyKind::Proportional);
        c.cooldown = Duration::ZERO;
        run(
            c,
            1,
            vec![
                // 21 per replica vs 20: within 10 % tolerance.
                (0, Ev::Notify(vec![("firing", "a", T1, "21")]), None, 1),
                // 70 in total at 1 replica: ceil(70 / 20) = 4 (= max).
                (1, Ev::Notify(vec![("firing", "b", T1, "70")]), ScaleUp, 4),
            ],
        );
        let mut c = cfg(PolicyKind::Proportional);
        c.cooldown = Duration::ZERO;
        run(
            c,
            1,
            vec![
                // 45 at 1 replica -> 3; then 45 at 3 replicas (15 each) wants 3: no change.
                (0, Ev::Notify(vec![("firing", "a", T1, "45")]), ScaleUp, 3),
                (1, Ev::Notify(vec![("firing", "b", T1, "45")]), None, 3),
                // No usable value: one step.
                (2, Ev::Notify(vec![("firing", "c", T1, "n/a")]), ScaleUp, 4),
            ],
        );
    }

    #[test]
    fn scale_down_waits_for_quiet_and_a_new_alert_cancels_it() {
        use Action::*;
        run(
            cfg(PolicyKind::Step),
            1,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
                (10, Ev::Notify(vec![("resolved", "a", T1, "30")]), None, 2),
                (69, Ev::Tick, None, 2),
                (71, Ev::Tick, ScaleDown, 1),
                (72, Ev::Notify(vec![("firing", "a", T2, "30")]), ScaleUp, 2),
                (80, Ev::Notify(vec![("resolved", "a", T2, "30")]), None, 2),
                // Fires again before the delay ran out: no scale-down while firing.
                (100, Ev::Notify(vec![("firing", "c", T2, "30")]), ScaleUp, 3),
                (200, Ev::Tick, None, 3),
            ],
        );
        let mut c = cfg(PolicyKind::Step);
        c.scale_down = false;
        run(
            c,
            1,
            vec![
                (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
                (10, Ev::Notify(vec![("resolved", "a", T1, "30")]), None, 2),
                (1000, Ev::Tick, None, 2),
            ],
        );
    }
}
