//! The scaling policy: a pure function of (alerts or tick, memory, replicas, now).
//! Nothing here talks to an orchestrator; the controller applies the plan and commits it only
//! when the orchestrator succeeded, so a failed scale is retried by Alertmanager's retry.
//!
//! A notification's alerts are decided one by one, in order, exactly as if each had come in its
//! own webhook at the same instant: how Alertmanager batches alerts never changes the outcome.
//! Everything remembered is bounded (see [`MEMORY_BOUND_BYTES`]).

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::alert::Status;
use super::behavior::{self, History};
use crate::orchestrator::Bounds;

mod config;
mod pass;
pub use config::*;
use pass::Pass;

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

/// An alert as the policy sees it: only what it needs, each part bounded in size.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFact {
    pub status: Status,
    /// At most [`super::alert::MAX_FINGERPRINT`] bytes (longer payloads are refused).
    pub fingerprint: String,
    pub starts_at: DateTime<Utc>,
    /// When the episode began as far as ordering goes: `starts_at`, or the earliest time when
    /// `startsAt` lay in the far future of the scaler's clock (such an alert would otherwise
    /// outrank every later resolve and pin itself for `--firing-ttl`).
    pub began: DateTime<Utc>,
    /// A resolve's `endsAt` (None when absent or Go's zero time).
    pub ended: Option<DateTime<Utc>>,
    /// The alert name, cut to [`MAX_NAME_CHARS`].
    pub name: String,
    /// The `value` annotation, already checked to be finite and >= 0.
    pub value: Option<f64>,
}

/// The dedupe key: Alertmanager re-sends the same firing alert (retries, repeat_interval)
/// with the same fingerprint and startsAt; a new episode has a new startsAt.
type Key = (String, DateTime<Utc>);

impl AlertFact {
    fn key(&self) -> Key {
        (self.fingerprint.clone(), self.starts_at)
    }
}

/// Alert names are cut to this many characters wherever they are kept or shown.
pub const MAX_NAME_CHARS: usize = 64;

pub fn short_name(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

/// A number for a reason: plain when short, scientific when huge (1e308 is not 309 digits).
fn number(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.3e}")
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

fn limit_text(l: behavior::Limit) -> &'static str {
    match l {
        behavior::Limit::Stabilized => "held by the stabilization window",
        behavior::Limit::ScaleUpLimit => "limited by the scale-up policies",
        behavior::Limit::ScaleDownLimit => "limited by the scale-down policies",
        behavior::Limit::TooMany => "capped at max",
        behavior::Limit::TooFew => "held at min",
    }
}

/// A decision plus what to remember once it has been carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    seen_keys: Vec<Key>,
    /// The load asked for more than max: the service is pinned at its ceiling.
    pub wants_more: bool,
}

impl Plan {
    /// A plan that remembers nothing beyond its decision (restoring after an outside change;
    /// tests of what wraps the policy).
    pub fn from_decision(decision: Decision) -> Plan {
        Plan {
            decision,
            seen_keys: vec![],
            wants_more: false,
        }
    }
}

/// A firing alert as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FiringAlert {
    pub name: String,
    pub starts_at: String,
}

#[derive(Debug, Clone)]
struct Firing {
    name: String,
    starts_at: DateTime<Utc>,
    /// [`AlertFact::began`] of this episode: resolves are ordered against it.
    began: DateTime<Utc>,
    last_seen: Instant,
}

/// Episodes acted on, remembered per service (the oldest forgotten first).
const SEEN_CAPACITY: usize = 4096;
/// Distinct firing alerts remembered per service; beyond it the least recently seen quarter
/// is forgotten.
pub const MAX_FIRING: usize = 1024;
/// New alerts the cooldown may hold back per service; beyond it they are not held (their
/// re-send acts).
pub const MAX_DEFERRED: usize = 1024;
/// What one service's memory can hold at most, worst case: `SEEN_CAPACITY` keys twice (set and
/// order) of <= 64-byte fingerprints, `MAX_FIRING` + `MAX_DEFERRED` entries with <= 64-character
/// names (<= 256 bytes of UTF-8), `MAX_FIRING` recent resolves, with collection overheads.
/// Checked by a unit test.
pub const MEMORY_BOUND_BYTES: usize = SEEN_CAPACITY * 2 * (64 + 48)
    + (MAX_FIRING + MAX_DEFERRED) * (64 + 256 + 128)
    + MAX_FIRING * (64 + 64);

/// What the scaler remembers about one service between notifications.
#[derive(Debug, Default)]
pub struct ServiceMemory {
    seen: HashSet<Key>,
    seen_order: VecDeque<Key>,
    firing: HashMap<String, Firing>,
    /// Alerts resolved within the flap window, by fingerprint: the episode that ended and when.
    resolved: HashMap<String, (DateTime<Utc>, Instant)>,
    /// New firing alerts the cooldown held back, by fingerprint with their arrival order: they
    /// act when it ends if they still fire (Alertmanager would re-send them only after
    /// `repeat_interval`).
    deferred: HashMap<String, (u64, AlertFact)>,
    deferred_seq: u64,
    last_scale_up: Option<Instant>,
    /// Since when no alert has been firing (set by a resolve or an expiry).
    quiet_since: Option<Instant>,
    /// Proportional decisions' recommendations and changes, for HPA's behavior.
    history: History,
}

impl ServiceMemory {
    /// The firing alerts, sorted by name.
    pub fn firing(&self) -> Vec<FiringAlert> {
        let mut v: Vec<FiringAlert> = self
            .firing
            .values()
            .map(|f| FiringAlert {
                name: f.name.clone(),
                starts_at: f.starts_at.to_rfc3339(),
            })
            .collect();
        v.sort_by(|a, b| (&a.name, &a.starts_at).cmp(&(&b.name, &b.starts_at)));
        v
    }

    /// An estimate of the heap this memory holds (for the bound's test and the soak script).
    pub fn approx_bytes(&self) -> usize {
        let key = |k: &Key| k.0.capacity() + 48;
        self.seen.iter().map(key).sum::<usize>()
            + self.seen_order.iter().map(key).sum::<usize>()
            + self
                .firing
                .iter()
                .map(|(fp, f)| fp.capacity() + f.name.capacity() + 128)
                .sum::<usize>()
            + self
                .resolved
                .keys()
                .map(|fp| fp.capacity() + 64)
                .sum::<usize>()
            + self
                .deferred
                .iter()
                .map(|(fp, (_, a))| {
                    fp.capacity() + a.fingerprint.capacity() + a.name.capacity() + 128
                })
                .sum::<usize>()
    }

    fn remember(&mut self, key: Key) {
        if self.seen.insert(key.clone()) {
            self.seen_order.push_back(key);
            if self.seen_order.len() > SEEN_CAPACITY
                && let Some(old) = self.seen_order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    /// Firing alerts not heard of for the TTL are forgotten as if resolved; resolves older than
    /// the flap window no longer join a re-fire to its episode.
    fn expire(&mut self, cfg: &PolicyConfig, now: Instant) {
        self.resolved
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= cfg.flap_window);
        let mut expired_at: Option<Instant> = None;
        self.firing.retain(|_, f| {
            let keep = now.saturating_duration_since(f.last_seen) <= cfg.firing_ttl;
            if !keep {
                let at = f.last_seen + cfg.firing_ttl;
                expired_at = Some(expired_at.map_or(at, |t| t.max(at)));
            }
            keep
        });
        if let Some(at) = expired_at {
            let firing = &self.firing;
            self.deferred.retain(|fp, _| firing.contains_key(fp));
            // Quiet since the moment it expired, not since this check noticed.
            if self.firing.is_empty() && self.quiet_since.is_none() {
                self.quiet_since = Some(at.min(now));
            }
        }
    }

    /// Update what fires from one alert. A firing alert resolved within the flap window
    /// returns the episode it continues.
    fn observe(&mut self, a: &AlertFact, now: Instant) -> Option<Key> {
        let mut continues = None;
        match a.status {
            Status::Firing => {
                if let Some((old, _)) = self.resolved.remove(&a.fingerprint)
                    && old < a.starts_at
                {
                    continues = Some((a.fingerprint.clone(), old));
                }
                if !self.firing.contains_key(&a.fingerprint) && self.firing.len() >= MAX_FIRING {
                    self.forget_least_recent();
                }
                let entry = self
                    .firing
                    .entry(a.fingerprint.clone())
                    .or_insert_with(|| Firing {
                        name: a.name.clone(),
                        starts_at: a.starts_at,
                        began: a.began,
                        last_seen: now,
                    });
                // An older episode's late re-send does not replace a newer one; a re-send of
                // this one keeps when it began.
                if a.starts_at != entry.starts_at && a.began >= entry.began {
                    entry.starts_at = a.starts_at;
                    entry.began = a.began;
                }
                if a.starts_at == entry.starts_at {
                    entry.name.clone_from(&a.name);
                }
                entry.last_seen = now;
                self.quiet_since = None;
            }
            Status::Resolved => {
                // Matched by fingerprint, as Alertmanager does: the resolve ends what fires
                // unless it ended before that episode began (a late resolve of an older one).
                // Without `endsAt` its own start stands in for its end.
                let ended = a.ended.unwrap_or(a.began);
                if self
                    .firing
                    .get(&a.fingerprint)
                    .is_some_and(|f| f.began <= ended)
                {
                    self.firing.remove(&a.fingerprint);
                    self.deferred.remove(&a.fingerprint);
                    if self.resolved.len() < MAX_FIRING
                        || self.resolved.contains_key(&a.fingerprint)
                    {
                        self.resolved
                            .insert(a.fingerprint.clone(), (a.starts_at, now));
                    }
                    if self.firing.is_empty() && self.quiet_since.is_none() {
                        self.quiet_since = Some(now);
                    }
                }
            }
        }
        continues
    }

    fn forget_least_recent(&mut self) {
        let mut ages: Vec<(Instant, String)> = self
            .firing
            .iter()
            .map(|(fp, f)| (f.last_seen, fp.clone()))
            .collect();
        ages.sort();
        for (_, fp) in ages.into_iter().take(MAX_FIRING / 4) {
            self.firing.remove(&fp);
            self.deferred.remove(&fp);
        }
    }

    /// Decide on a notification's alerts for this service.
    pub fn plan(
        &mut self,
        service: &str,
        alerts: &[AlertFact],
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> Plan {
        self.expire(cfg, now);
        let mut pass = Pass::new(current, self.last_scale_up);
        let mut resolved = false;
        for a in alerts {
            // Fired again soon after its resolve: the same episode goes on, so if that episode
            // was acted on (before, or earlier in this notification), so is this one.
            if let Some(old) = self.observe(a, now)
                && (self.seen.contains(&old) || pass.seen_set.contains(&old))
            {
                pass.remember(a.key());
                pass.first_reason(|| {
                    format!(
                        "{} fired again within {} of its resolve: the same episode, already acted on",
                        a.name,
                        humantime::format_duration(cfg.flap_window)
                    )
                });
            }
            match a.status {
                Status::Firing => self.decide(a, &mut pass, bounds, cfg, now),
                Status::Resolved => resolved = true,
            }
        }
        let reason = pass.reason().unwrap_or_else(|| {
            if !self.firing.is_empty() {
                "no new firing alert".to_owned()
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
            }
        });
        pass.into_plan(service, current, reason)
    }

    /// One firing alert, in the state the alerts before it left.
    fn decide(
        &mut self,
        a: &AlertFact,
        pass: &mut Pass,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) {
        pass.firing += 1;
        let key = a.key();
        if self.seen.contains(&key) || pass.seen_set.contains(&key) {
            pass.duplicates += 1;
            pass.first_reason(|| {
                "duplicate notification: these alerts were already acted on".to_owned()
            });
            return;
        }
        let name = &a.name;
        if pass.replicas >= bounds.max {
            pass.at_max += 1;
            pass.first_reason(|| format!("{name} firing but already at max {}", bounds.max));
            pass.remember(key);
            return;
        }
        if let Some(t) = pass.last_up {
            let since = now.saturating_duration_since(t);
            if since < cfg.cooldown {
                // Not remembered: the tick at the cooldown's end, or a re-send after it, acts.
                if self.deferred.contains_key(&a.fingerprint) || self.deferred.len() < MAX_DEFERRED
                {
                    self.deferred_seq += 1;
                    self.deferred
                        .insert(a.fingerprint.clone(), (self.deferred_seq, a.clone()));
                }
                pass.held += 1;
                let left = (cfg.cooldown - since).as_secs_f64();
                pass.first_reason(|| format!("{name} firing but in cooldown ({left:.1} s left)"));
                return;
            }
        }
        let current = pass.replicas;
        let (wanted, why) = match (cfg.kind, a.value) {
            (PolicyKind::Step, _) => (
                current.saturating_add(bounds.step),
                format!("{name} firing: +{}", bounds.step),
            ),
            (PolicyKind::Proportional, None) => (
                current.saturating_add(bounds.step),
                format!(
                    "{name} firing without a `value` annotation: +{}",
                    bounds.step
                ),
            ),
            (PolicyKind::Proportional, Some(value)) => {
                let (desired, n) = self.proportional(value, current, bounds, cfg, now);
                let why = format!(
                    "{name} firing: value {} / target {} per replica = {} replicas",
                    number(value),
                    number(cfg.target),
                    if desired == current && (value / cfg.target).ceil() as u32 != current {
                        format!("{current} (within the tolerance)")
                    } else {
                        desired.to_string()
                    }
                );
                let limited = match n.limit {
                    Some(l) => format!(" ({})", limit_text(l)),
                    None => String::new(),
                };
                (n.replicas, format!("{why}{limited}"))
            }
        };
        let to = wanted.clamp(bounds.min, bounds.max);
        pass.remember(key);
        if to <= current {
            pass.no_more += 1;
            pass.first_reason(|| format!("{why}: no more than the current {current}"));
            return;
        }
        let capped = if to < wanted {
            format!(" (capped at max {})", bounds.max)
        } else {
            String::new()
        };
        pass.capped |= to < wanted;
        pass.replicas = to;
        pass.last_up = Some(now);
        pass.scaled = Some(format!("{why}{capped}"));
        // Recorded now, not at commit, so the alerts after it in this notification see it (a
        // failed scale leaves the rate limit slightly conservative until its period passes).
        self.history.record(current, to, now);
    }

    /// HPA's recommendation for a service total `value`, and what its behavior lets through.
    fn proportional(
        &mut self,
        value: f64,
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> (u32, behavior::Normalized) {
        let desired = behavior::recommend(value, cfg.target, current, &cfg.behavior);
        let n = self.history.normalize(
            &cfg.behavior,
            current,
            desired,
            (bounds.min, bounds.max),
            now,
        );
        (desired, n)
    }

    /// One reconciliation: `value` of the service's query, decided by HPA's formula and
    /// behavior like a proportional alert, in both directions.
    pub fn reconcile(
        &mut self,
        service: &str,
        (query, value): (&str, f64),
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> Option<Plan> {
        let (desired, n) = self.proportional(value, current, bounds, cfg, now);
        let up = n.replicas > current;
        if n.replicas == current
            || (!up && !cfg.scale_down)
            || (up
                && self
                    .last_scale_up
                    .is_some_and(|t| now.saturating_duration_since(t) < cfg.cooldown))
        {
            return None;
        }
        self.history.record(current, n.replicas, now);
        let limited = n
            .limit
            .map(|l| format!(" ({})", limit_text(l)))
            .unwrap_or_default();
        Some(Plan {
            decision: Decision {
                service: service.to_owned(),
                from: current,
                to: n.replicas,
                action: if up {
                    Action::ScaleUp
                } else {
                    Action::ScaleDown
                },
                reason: format!(
                    "reconcile: {query} = {} / target {} per replica = {desired} replicas{limited}",
                    number(value),
                    number(cfg.target)
                ),
            },
            seen_keys: vec![],
            wants_more: n.limit == Some(behavior::Limit::TooMany),
        })
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
    /// have not been acted on, decided in their arrival order as if just notified.
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
        let mut held: Vec<(u64, AlertFact)> = std::mem::take(&mut self.deferred)
            .into_values()
            .filter(|(_, a)| {
                self.firing
                    .get(&a.fingerprint)
                    .is_some_and(|f| f.starts_at == a.starts_at)
                    && !self.seen.contains(&a.key())
            })
            .collect();
        if held.is_empty() {
            return None;
        }
        held.sort_by_key(|(seq, _)| *seq);
        let mut pass = Pass::new(current, self.last_scale_up);
        for (_, a) in &held {
            self.decide(a, &mut pass, bounds, cfg, now);
        }
        let reason = pass.reason().unwrap_or_default();
        let mut plan = pass.into_plan(service, current, reason);
        plan.decision.reason = format!("after the cooldown, still {}", plan.decision.reason);
        Some(plan)
    }

    /// The periodic check: alerts the cooldown held back, and a step down once nothing has
    /// fired for the scale-down delay (after each step the delay starts again, so a service
    /// steps down gradually).
    pub fn tick(
        &mut self,
        service: &str,
        current: u32,
        bounds: Bounds,
        cfg: &PolicyConfig,
        now: Instant,
    ) -> Option<Plan> {
        self.expire(cfg, now);
        if let Some(plan) = self.deferred_plan(service, current, bounds, cfg, now) {
            return Some(plan);
        }
        if !cfg.scale_down || cfg.reconciling || !self.firing.is_empty() {
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
            wants_more: false,
        })
    }
}

#[cfg(test)]
mod tests;
