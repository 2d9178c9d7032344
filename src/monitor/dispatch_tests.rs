//! The dispatcher against Alertmanager's documented timing.

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
        matchers: Vec::new(),
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        group_wait: Duration::from_secs(wait),
        group_interval: Duration::from_secs(interval),
        repeat_interval: Duration::from_secs(repeat),
        send_resolved: true,
    }
}

/// The spike alert of `service`, firing since `starts` or resolved at `ends` (with the
/// deployed rules' `scaling` label, which routes it to the scaler).
fn spike(service: &str, starts: i64, ends: Option<i64>) -> Alert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), "ThreadPoolSpike".into());
    labels.insert("service".into(), service.into());
    labels.insert("scaling".into(), "out".into());
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
    // Only alerts that carry the scaling label reach the scaler (the root notifies nobody).
    assert_eq!(r.matchers, [("scaling".to_owned(), "out".to_owned())]);
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
            Route::parse("route: {receiver: x, routes: [{}]}\nreceivers: [{name: x}]").unwrap_err()
        )
        .contains("at most one sub-route")
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

#[test]
fn only_alerts_the_sub_route_matches_are_notified() {
    let r = Route::deployed();
    let mut d = Dispatcher::new(r.clone(), at(0));
    let scaling = spike("web", 0, None);
    let mut other = spike("db", 0, None);
    other.labels.remove("scaling");
    d.insert(scaling, at(0));
    d.insert(other, at(0));
    let sent = d.on_tick(at(2));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].alerts[0].labels["service"], "web");
    // A sub-route inherits what it leaves out and may set its own.
    let own = Route::parse(
        "route: {receiver: none, group_by: [a], group_wait: 7s, routes: \
         [{receiver: hook, matchers: ['x = \"1\"'], group_wait: 2s}]}\n\
         receivers: [{name: none}, {name: hook, webhook_configs: [{url: 'http://a', send_resolved: false}]}]",
    )
    .unwrap();
    assert_eq!(own.group_by, ["a"]);
    assert_eq!(own.group_wait, Duration::from_secs(2));
    assert_eq!(own.matchers, [("x".to_owned(), "1".to_owned())]);
    assert!(!own.send_resolved);
    let err = |yaml: &str| format!("{:#}", Route::parse(yaml).unwrap_err());
    let hook = "{name: hook, webhook_configs: [{url: 'http://a'}]}";
    assert!(
        err(&format!(
            "route: {{receiver: hook, routes: [{{receiver: hook, matchers: ['x=1']}}]}}\nreceivers: [{hook}]"
        ))
        .contains("must notify nobody")
    );
    assert!(
        err(&format!(
            "route: {{receiver: none, routes: [{{receiver: hook, matchers: ['x=~1']}}]}}\nreceivers: [{{name: none}}, {hook}]"
        ))
        .contains("only equality matchers")
    );
}
