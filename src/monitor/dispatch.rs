//! Alertmanager's dispatcher, for the embedded monitor: the alerts that change state go into
//! aggregation groups (keyed by the route's `group_by` labels), and a group notifies the way
//! Alertmanager's does — `group_wait` after its first alert, then every `group_interval` only
//! if something changed since the last notification (an alert new or firing again, one
//! resolved) or `repeat_interval` has passed. So the scaler sees the same sequence with the
//! embedded monitor as behind a real Alertmanager: a queue flapping around a threshold every
//! second gives one notification per `group_interval`, not one per flip.
//!
//! Time is whatever the caller passes (the sampler's tick), so the schedule is testable
//! without a clock. Routing follows deploy/'s shape: a root route, optionally with one
//! sub-route of equality `matchers` to the webhook (the root's receiver then must notify
//! nobody, and alerts the sub-route does not match are dropped, as its null receiver would).
//! What is left out: other sub-routes, inhibition, silences, and retries of a failed webhook
//! (Alertmanager retries within the group interval; here the failure is counted and the next
//! change or repeat sends again).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Labels, notification};
use crate::scaler::alert::{Alert, Notification, Status};

/// Alertmanager removes empty aggregation groups on this period, not at once: until then an
/// alert that comes back joins the old group and waits for its next `group_interval` tick
/// rather than a fresh `group_wait`.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(30);

/// The route to an Alertmanager config's webhook (the root, or its one sub-route) and its
/// receiver's `send_resolved`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub receiver: String,
    /// Label name and value an alert must carry to be notified (the sub-route's `matchers`;
    /// empty: every alert).
    pub matchers: Vec<(String, String)>,
    /// Label names; `...` groups by every label, as in Alertmanager.
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub send_resolved: bool,
}

#[derive(serde::Deserialize)]
struct ConfigFile {
    route: RouteFile,
    #[serde(default)]
    receivers: Vec<ReceiverFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    receiver: Option<String>,
    group_by: Option<Vec<String>>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

/// `name="value"` (or `name=value`): the equality matchers the embedded monitor follows.
fn equality_matcher(m: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = m
        .split_once('=')
        .filter(|(n, v)| {
            let n = n.trim();
            !n.is_empty() && !n.ends_with(['!', '=', '~']) && !v.starts_with(['=', '~'])
        })
        .with_context(|| {
            format!(
                "alertmanager.yml: matcher {m:?}: the embedded monitor follows only equality \
                 matchers, name=\"value\""
            )
        })?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Ok((name.trim().to_owned(), value.to_owned()))
}

#[derive(serde::Deserialize)]
struct ReceiverFile {
    name: String,
    #[serde(default)]
    webhook_configs: Vec<WebhookFile>,
}

#[derive(serde::Deserialize)]
struct WebhookFile {
    send_resolved: Option<bool>,
}

impl Route {
    /// The root route of an `alertmanager.yml`, with Alertmanager's defaults for what it
    /// leaves out (30 s, 5 m, 4 h; webhooks send resolved alerts).
    pub fn parse(yaml: &str) -> anyhow::Result<Route> {
        let file: ConfigFile = serde_norway::from_str(yaml).context("alertmanager.yml")?;
        let root = file.route;
        let webhook = |name: &str| {
            file.receivers
                .iter()
                .find(|x| x.name == name)
                .with_context(|| format!("alertmanager.yml: no receiver named {name:?}"))
        };
        let root_receiver = root
            .receiver
            .clone()
            .context("alertmanager.yml: the root route has no receiver")?;
        webhook(&root_receiver)?;
        // The route whose receiver the embedded monitor plays: the root, or its one sub-route
        // (which inherits what it leaves out, as in Alertmanager).
        let (r, matchers) = match root.routes.as_slice() {
            [] => (&root, Vec::new()),
            [sub] => {
                anyhow::ensure!(
                    sub.routes.is_empty() && !sub.matchers.is_empty(),
                    "alertmanager.yml: the embedded monitor follows a root route with at most one \
                     sub-route, which has `matchers` and no `routes:` of its own"
                );
                anyhow::ensure!(
                    webhook(&root_receiver)?.webhook_configs.is_empty(),
                    "alertmanager.yml: with a sub-route, the root's receiver {root_receiver:?} \
                     must notify nobody (the embedded monitor drops what the sub-route does not \
                     match)"
                );
                let matchers = sub
                    .matchers
                    .iter()
                    .map(|m| equality_matcher(m))
                    .collect::<anyhow::Result<_>>()?;
                (sub, matchers)
            }
            _ => anyhow::bail!(
                "alertmanager.yml: the embedded monitor follows a root route with at most one \
                 sub-route, not {}",
                root.routes.len()
            ),
        };
        let pick = |own: &Option<String>, inherited: &Option<String>| {
            own.clone().or_else(|| inherited.clone())
        };
        let duration = |v: Option<String>, default: u64, what: &str| match v {
            None => Ok(Duration::from_secs(default)),
            Some(s) => humantime::parse_duration(&s)
                .with_context(|| format!("alertmanager.yml: route.{what} = {s:?}")),
        };
        let receiver = r.receiver.clone().unwrap_or(root_receiver);
        let send_resolved = webhook(&receiver)?
            .webhook_configs
            .first()
            .and_then(|w| w.send_resolved)
            .unwrap_or(true);
        Ok(Route {
            group_wait: duration(pick(&r.group_wait, &root.group_wait), 30, "group_wait")?,
            group_interval: duration(
                pick(&r.group_interval, &root.group_interval),
                300,
                "group_interval",
            )?,
            repeat_interval: duration(
                pick(&r.repeat_interval, &root.repeat_interval),
                4 * 3600,
                "repeat_interval",
            )?,
            group_by: r
                .group_by
                .clone()
                .or_else(|| root.group_by.clone())
                .unwrap_or_default(),
            receiver,
            matchers,
            send_resolved,
        })
    }

    /// Whether an alert with `labels` reaches the webhook.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }

    /// The route of `deploy/alertmanager/alertmanager.yml`, as built into the binary.
    pub fn deployed() -> Route {
        Route::parse(super::prometheus::DEPLOY_ALERTMANAGER)
            .expect("deploy/alertmanager/alertmanager.yml parses (unit-tested)")
    }

    fn group_labels(&self, labels: &Labels) -> Labels {
        if self.group_by.iter().any(|g| g == "...") {
            return labels.clone();
        }
        self.group_by
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// One alert as Alertmanager stores it: the payload plus its active range.
#[derive(Debug, Clone)]
struct Stored {
    alert: Alert,
    starts: DateTime<Utc>,
    /// `None`: firing, open-ended.
    ends: Option<DateTime<Utc>>,
}

impl Stored {
    fn of(alert: Alert) -> Stored {
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
        };
        let starts = time(&alert.starts_at).unwrap_or_default();
        let ends = match alert.status {
            Status::Firing => None,
            Status::Resolved => Some(time(&alert.ends_at).unwrap_or(starts)),
        };
        Stored {
            alert,
            starts,
            ends,
        }
    }

    fn resolved_at(&self, now: DateTime<Utc>) -> bool {
        self.ends.is_some_and(|e| e <= now)
    }

    /// Alertmanager's store: a newer report of the same alert whose active range overlaps
    /// the stored one continues it (earliest start kept); one that starts after the stored
    /// one ended is a new episode and replaces it, with its own startsAt.
    fn merge(old: &Stored, new: Stored) -> Stored {
        let before_end = |t: DateTime<Utc>| old.ends.is_none_or(|e| t < e);
        let overlaps = new.ends.is_some_and(|e| e > old.starts && before_end(e))
            || (new.starts > old.starts && before_end(new.starts));
        if !overlaps {
            return new;
        }
        let mut merged = new;
        if old.starts < merged.starts {
            merged.starts = old.starts;
            merged.alert.starts_at = old.alert.starts_at.clone();
        }
        if let (Some(o), Some(n)) = (old.ends, merged.ends)
            && o > n
        {
            merged.ends = Some(o);
            merged.alert.ends_at = old.alert.ends_at.clone();
        }
        merged
    }

    /// The alert as a notification carries it at `now`.
    fn payload(&self, now: DateTime<Utc>) -> Alert {
        let mut a = self.alert.clone();
        if self.resolved_at(now) {
            a.status = Status::Resolved;
        } else {
            a.status = Status::Firing;
            a.ends_at = "0001-01-01T00:00:00Z".into();
        }
        a
    }
}

/// One aggregation group.
#[derive(Debug)]
struct Group {
    /// By fingerprint.
    alerts: BTreeMap<String, Stored>,
    next_flush: DateTime<Utc>,
    flushed: bool,
}

/// What a group last notified (Alertmanager's notification log; it outlives the group).
#[derive(Debug)]
struct Sent {
    at: DateTime<Utc>,
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
}

/// Alertmanager's dispatcher for one route.
#[derive(Debug)]
pub struct Dispatcher {
    route: Route,
    groups: BTreeMap<Labels, Group>,
    sent: BTreeMap<Labels, Sent>,
    next_cleanup: DateTime<Utc>,
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    pub fn new(route: Route, now: DateTime<Utc>) -> Dispatcher {
        Dispatcher {
            next_cleanup: after(now, CLEANUP_INTERVAL),
            route,
            groups: BTreeMap::new(),
            sent: BTreeMap::new(),
        }
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// An alert that started firing or resolved at `now` (what Prometheus sends).
    pub fn insert(&mut self, alert: Alert, now: DateTime<Utc>) {
        // The root's null receiver: nobody hears of it.
        if !self.route.matches(&alert.labels) {
            return;
        }
        let key = self.route.group_labels(&alert.labels);
        let group_wait = self.route.group_wait;
        let group = self.groups.entry(key).or_insert_with(|| Group {
            alerts: BTreeMap::new(),
            next_flush: after(now, group_wait),
            flushed: false,
        });
        let new = Stored::of(alert);
        // An alert older than group_wait needs no wait for company.
        if !group.flushed && after(new.starts, group_wait) < now {
            group.next_flush = now;
        }
        let fp = new.alert.fingerprint.clone();
        let merged = match group.alerts.get(&fp) {
            Some(old) => Stored::merge(old, new),
            None => new,
        };
        group.alerts.insert(fp, merged);
    }

    /// The notifications due at `now`: every group whose timer has run out flushes (and
    /// notifies if something changed); empty groups are removed on [`CLEANUP_INTERVAL`].
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> Vec<Notification> {
        let mut out = Vec::new();
        for (key, group) in &mut self.groups {
            if group.next_flush > now {
                continue;
            }
            group.next_flush = after(now, self.route.group_interval);
            group.flushed = true;
            if let Some(n) = flush(&self.route, key, group, &mut self.sent, now) {
                out.push(n);
            }
        }
        if self.next_cleanup <= now {
            self.groups.retain(|_, g| !g.alerts.is_empty());
            while self.next_cleanup <= now {
                self.next_cleanup = after(self.next_cleanup, CLEANUP_INTERVAL);
            }
        }
        out
    }
}

/// One flush of a group: a notification if Alertmanager's dedup stage would let one through;
/// resolved alerts leave the group either way.
fn flush(
    route: &Route,
    key: &Labels,
    group: &mut Group,
    sent: &mut BTreeMap<Labels, Sent>,
    now: DateTime<Utc>,
) -> Option<Notification> {
    if group.alerts.is_empty() {
        return None;
    }
    let (mut firing, mut resolved) = (BTreeSet::new(), BTreeSet::new());
    for (fp, a) in &group.alerts {
        match a.resolved_at(now) {
            true => resolved.insert(fp.clone()),
            false => firing.insert(fp.clone()),
        };
    }
    let last = sent.get(key);
    let due = match last {
        // Never notified: only if something fires.
        None => !firing.is_empty(),
        Some(s) if !firing.is_subset(&s.firing) => true,
        // All resolved: tell the receiver if it last heard of something firing.
        Some(s) if firing.is_empty() => !s.firing.is_empty(),
        Some(s) if route.send_resolved && !resolved.is_subset(&s.resolved) => true,
        Some(s) => after(s.at, route.repeat_interval) < now,
    };
    let mut alerts: Vec<Alert> = group
        .alerts
        .values()
        .filter(|a| route.send_resolved || !a.resolved_at(now))
        .map(|a| a.payload(now))
        .collect();
    alerts.sort_by(|a, b| order(&a.labels, &b.labels));
    group.alerts.retain(|_, a| !a.resolved_at(now));
    if !due {
        return None;
    }
    // Logged even when nothing goes out (only resolved alerts, send_resolved off), so the
    // next firing counts as a change.
    sent.insert(
        key.clone(),
        Sent {
            at: now,
            firing,
            resolved,
        },
    );
    (!alerts.is_empty()).then(|| notification(&route.receiver, key, alerts))
}

/// Alertmanager's order within a notification: by `job`, then `instance`, then labels.
fn order(a: &Labels, b: &Labels) -> std::cmp::Ordering {
    for k in ["job", "instance"] {
        match (a.get(k), b.get(k)) {
            (None, None) => continue,
            (None, Some(_)) => return std::cmp::Ordering::Greater,
            (Some(_), None) => return std::cmp::Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    a.cmp(b)
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
