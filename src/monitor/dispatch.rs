//! Alertmanager's dispatcher, for the embedded monitor: the alerts that change state go into
//! aggregation groups (keyed by the route's `group_by` labels), and a group notifies the way
//! Alertmanager's does — `group_wait` after its first alert, then every `group_interval` only
//! if something changed since the last notification (an alert new or firing again, one
//! resolved) or `repeat_interval` has passed. So the scaler sees the same sequence with the
//! embedded monitor as behind a real Alertmanager: a queue flapping around a threshold every
//! second gives one notification per `group_interval`, not one per flip.
//!
//! Time is whatever the caller passes (the sampler's tick), so the schedule is testable
//! without a clock. What is left out: sub-routes, inhibition, silences, and retries of a
//! failed webhook (Alertmanager retries within the group interval; here the failure is
//! counted and the next change or repeat sends again).

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

/// The root route of an Alertmanager config and its receiver's `send_resolved`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub receiver: String,
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
struct RouteFile {
    receiver: String,
    #[serde(default)]
    group_by: Vec<String>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    #[serde(default)]
    routes: Vec<serde_json::Value>,
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
        let r = file.route;
        anyhow::ensure!(
            r.routes.is_empty(),
            "alertmanager.yml: the embedded monitor follows the root route only, not `routes:`"
        );
        let duration = |v: &Option<String>, default: u64, what: &str| match v {
            None => Ok(Duration::from_secs(default)),
            Some(s) => humantime::parse_duration(s)
                .with_context(|| format!("alertmanager.yml: route.{what} = {s:?}")),
        };
        let receiver = file
            .receivers
            .iter()
            .find(|x| x.name == r.receiver)
            .with_context(|| format!("alertmanager.yml: no receiver named {:?}", r.receiver))?;
        let send_resolved = receiver
            .webhook_configs
            .first()
            .and_then(|w| w.send_resolved)
            .unwrap_or(true);
        Ok(Route {
            group_wait: duration(&r.group_wait, 30, "group_wait")?,
            group_interval: duration(&r.group_interval, 300, "group_interval")?,
            repeat_interval: duration(&r.repeat_interval, 4 * 3600, "repeat_interval")?,
            receiver: r.receiver,
            group_by: r.group_by,
            send_resolved,
        })
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
mod tests {
    use super::*;
    use Status::{Firing as F, Resolved as R};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(s)
    }

    fn route(group_by: &[&str], wait: u64, interval: u64, repeat: u64) -> Route {
        Route {
            receiver: "alertapi".into(),
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            group_wait: Duration::from_secs(wait),
            group_interval: Duration::from_secs(interval),
            repeat_interval: Duration::from_secs(repeat),
            send_resolved: true,
        }
    }

    /// The spike alert of `service`, firing since `starts` or resolved at `ends`.
    fn spike(service: &str, starts: i64, ends: Option<i64>) -> Alert {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "ThreadPoolSpike".into());
        labels.insert("service".into(), service.into());
        Alert {
            status: if ends.is_some() { R } else { F },
            fingerprint: super::super::fingerprint(&labels),
            labels,
            annotations: BTreeMap::new(),
            starts_at: super::super::rfc3339(at(starts)),
            ends_at: ends
                .map(|e| super::super::rfc3339(at(e)))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            generator_url: String::new(),
        }
    }

    /// What each notification said: its second, and per alert (service, status, startsAt s).
    type Sent = Vec<(i64, Vec<(String, Status, i64)>)>;
    /// A notification written out: its second and its alerts (service, status, startsAt s).
    type Row<'a> = (i64, &'a [(&'a str, Status, i64)]);
    /// At a second, a service's spike alert fires or resolves.
    type Event<'a> = (i64, &'a str, Status);
    /// Name, route, events, last second, what is notified.
    type Case<'a> = (&'a str, Route, &'a [Event<'a>], i64, Sent);

    /// Feeds `events` (second, service, status) second by second to `until`, as the
    /// embedded monitor's sampler does, and returns what was notified.
    fn run(route: Route, events: &[Event], until: i64) -> Sent {
        let mut d = Dispatcher::new(route, at(0));
        let mut since: BTreeMap<&str, i64> = BTreeMap::new();
        let mut out = Sent::new();
        for t in 0..=until {
            for &(_, service, status) in events.iter().filter(|e| e.0 == t) {
                let alert = match status {
                    F => spike(service, *since.entry(service).insert_entry(t).get(), None),
                    R => spike(service, since[service], Some(t)),
                };
                d.insert(alert, at(t));
            }
            for n in d.on_tick(at(t)) {
                let alerts = n
                    .alerts
                    .iter()
                    .map(|a| {
                        let starts = DateTime::parse_from_rfc3339(&a.starts_at).unwrap();
                        let s = (starts.with_timezone(&Utc) - at(0)).num_seconds();
                        (a.labels["service"].clone(), a.status, s)
                    })
                    .collect();
                out.push((t, alerts));
            }
        }
        out
    }

    fn sent(rows: &[Row]) -> Sent {
        rows.iter()
            .map(|(t, a)| {
                (
                    *t,
                    a.iter()
                        .map(|(s, st, x)| (s.to_string(), *st, *x))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn notifies_on_alertmanagers_schedule() {
        let deployed = Route::deployed();
        let by_name = route(&["alertname"], 2, 5, 60);
        // Fires at 0, then resolved/fired every second to 12, then calm: firing at the
        // flushes of 1 and 11, resolved at 6 and 16.
        let mut flapping = vec![(0, "web", F)];
        for t in 2..=12 {
            flapping.push((t, "web", if t % 2 == 0 { R } else { F }));
        }
        // Resolved and back between the flushes of 1, 6 and 11: nothing to tell.
        let unseen = [
            (0, "web", F),
            (2, "web", R),
            (3, "web", F),
            (7, "web", R),
            (9, "web", F),
            (13, "web", R),
        ];
        let cases: [Case; 6] = [
            (
                "group_wait batches two alerts of one group",
                by_name.clone(),
                &[(0, "web", F), (1, "api", F)],
                20,
                sent(&[(2, &[("api", F, 1), ("web", F, 0)])]),
            ),
            (
                "group_by keeps services apart",
                deployed.clone(),
                &[(0, "web", F), (1, "api", F)],
                20,
                sent(&[(1, &[("web", F, 0)]), (2, &[("api", F, 1)])]),
            ),
            (
                "group_interval holds a resolve",
                deployed.clone(),
                &[(0, "web", F), (2, "web", R)],
                20,
                sent(&[(1, &[("web", F, 0)]), (6, &[("web", R, 0)])]),
            ),
            (
                "repeat_interval resends on the group_interval grid",
                route(&["alertname", "service"], 1, 5, 20),
                &[(0, "web", F)],
                45,
                sent(&[(1, &[("web", F, 0)]), (26, &[("web", F, 0)])]),
            ),
            (
                "flapping every second: one notification per group_interval, latest startsAt",
                deployed.clone(),
                &flapping,
                30,
                sent(&[
                    (1, &[("web", F, 0)]),
                    (6, &[("web", R, 5)]),
                    (11, &[("web", F, 11)]),
                    (16, &[("web", R, 11)]),
                ]),
            ),
            (
                "flaps between two flushes are not seen",
                deployed,
                &unseen,
                30,
                sent(&[(1, &[("web", F, 0)]), (16, &[("web", R, 9)])]),
            ),
        ];
        for (name, route, events, until, want) in cases {
            assert_eq!(run(route, events, until), want, "{name}");
        }
    }

    #[test]
    fn a_resolve_then_fire_within_group_wait_notifies_nothing_until_it_fires_at_a_flush() {
        // Fired and resolved before the first flush: the receiver never hears of it.
        let got = run(
            Route::deployed(),
            &[(0, "web", F), (1, "web", R), (3, "web", F)],
            10,
        );
        // The group stays (cleanup every 30 s), so the re-fire waits for the grid (6), not
        // for a fresh group_wait (4).
        assert_eq!(got, sent(&[(6, &[("web", F, 3)])]));
    }

    #[test]
    fn an_empty_group_is_removed_on_cleanup_and_starts_over_with_group_wait() {
        let got = run(
            Route::deployed(),
            &[(0, "web", F), (2, "web", R), (40, "web", F)],
            50,
        );
        // Removed at 30: the alert at 40 founds a new group and waits group_wait (41).
        assert_eq!(
            got,
            sent(&[
                (1, &[("web", F, 0)]),
                (6, &[("web", R, 0)]),
                (41, &[("web", F, 40)])
            ])
        );
        let got = run(
            Route::deployed(),
            &[(0, "web", F), (2, "web", R), (42, "web", F)],
            50,
        );
        // At 42 likewise (43), where the old group's grid (1 + 5k) would have said 46.
        assert_eq!(got[2], (43, vec![("web".to_string(), F, 42)]));
    }

    #[test]
    fn without_send_resolved_a_resolve_is_logged_not_sent() {
        let mut r = Route::deployed();
        r.send_resolved = false;
        let got = run(r, &[(0, "web", F), (2, "web", R), (8, "web", F)], 20);
        // Nothing goes out at 6, but the next firing is news.
        assert_eq!(got, sent(&[(1, &[("web", F, 0)]), (11, &[("web", F, 8)])]));
    }

    #[test]
    fn merges_like_alertmanagers_store() {
        let s = |starts, ends| Stored::of(spike("web", starts, ends));
        // A resolve of a firing alert keeps its start.
        let m = Stored::merge(&s(0, None), s(0, Some(5)));
        assert_eq!((m.starts, m.ends), (at(0), Some(at(5))));
        // A late report of an earlier start of the same episode keeps the earliest start.
        let m = Stored::merge(&s(0, None), s(3, None));
        assert_eq!((m.starts, m.ends), (at(0), None));
        // Firing again after the resolve: a new episode, new startsAt.
        let m = Stored::merge(&s(0, Some(5)), s(6, None));
        assert_eq!((m.starts, m.ends), (at(6), None));
        assert_eq!(m.alert.starts_at, super::super::rfc3339(at(6)));
        // Of two resolves of one episode the later end wins.
        let m = Stored::merge(&s(0, Some(5)), s(0, Some(4)));
        assert_eq!(m.ends, Some(at(5)));
    }

    #[test]
    fn reads_the_deployed_route_and_alertmanagers_defaults() {
        let r = Route::deployed();
        assert_eq!(r.receiver, "alertapi");
        assert_eq!(r.group_by, ["alertname", "service"]);
        assert_eq!(r.group_wait, Duration::from_secs(1));
        assert_eq!(r.group_interval, Duration::from_secs(5));
        assert_eq!(r.repeat_interval, Duration::from_secs(60));
        assert!(r.send_resolved);
        let bare = Route::parse(
            "route: {receiver: x}\nreceivers: [{name: x, webhook_configs: [{url: 'http://a'}]}]",
        )
        .unwrap();
        assert_eq!(bare, {
            let mut d = route(&[], 30, 300, 4 * 3600);
            d.receiver = "x".into();
            d
        });
        let all = route(&["..."], 1, 1, 1);
        let mut labels = Labels::new();
        labels.insert("a".into(), "b".into());
        assert_eq!(all.group_labels(&labels), labels);
        let err = |yaml| Route::parse(yaml).unwrap_err().to_string();
        assert!(err("route: {receiver: y}\nreceivers: [{name: x}]").contains("no receiver"));
        assert!(
            format!(
                "{:#}",
                Route::parse("route: {receiver: x, routes: [{}]}\nreceivers: [{name: x}]")
                    .unwrap_err()
            )
            .contains("root route only")
        );
        assert!(
            format!(
                "{:#}",
                Route::parse("route: {receiver: x, group_wait: soon}\nreceivers: [{name: x}]")
                    .unwrap_err()
            )
            .contains("group_wait")
        );
    }
}
