//! The policy's table tests (scenarios row by row) and property tests (any sequence of alerts
//! and clock steps).

use super::*;
use crate::scaler::behavior::Behavior;
use proptest::prelude::*;
use std::time::Duration;

fn cfg(kind: PolicyKind) -> PolicyConfig {
    PolicyConfig {
        kind,
        target: 20.0,
        behavior: Behavior::default(),
        reconciling: false,
        cooldown: Duration::from_secs(15),
        scale_down_delay: Duration::from_secs(60),
        scale_down: true,
        firing_ttl: Duration::from_secs(3600),
        flap_window: Duration::from_secs(60),
    }
}

const BOUNDS: Bounds = Bounds {
    min: 1,
    max: 4,
    step: 1,
};

fn fact(status: &str, fingerprint: &str, starts_at: &str, value: &str) -> AlertFact {
    AlertFact {
        status: if status == "firing" {
            Status::Firing
        } else {
            Status::Resolved
        },
        fingerprint: fingerprint.to_owned(),
        starts_at: DateTime::parse_from_rfc3339(starts_at).unwrap().into(),
        began: DateTime::parse_from_rfc3339(starts_at).unwrap().into(),
        ended: None,
        name: format!("Alert-{fingerprint}"),
        value: value.parse().ok(),
    }
}

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
                let facts: Vec<AlertFact> = alerts
                    .into_iter()
                    .map(|(s, fp, st, v)| fact(s, fp, st, v))
                    .collect();
                Some(mem.plan("web", &facts, replicas, BOUNDS, &cfg, now))
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
            // The same alert twice in one payload counts once.
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
fn alerts_of_one_notification_act_as_if_sent_one_by_one() {
    use Action::*;
    run(
        cfg(PolicyKind::Step),
        1,
        vec![
            // Two new alerts at once: the first scales, the cooldown holds the second...
            (
                0,
                Ev::Notify(vec![("firing", "a", T1, "30"), ("firing", "b", T1, "30")]),
                ScaleUp,
                2,
            ),
            // ...which acts when the cooldown ends, as it would have from its own webhook.
            (15, Ev::Tick, ScaleUp, 3),
            (16, Ev::Tick, None, 3),
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
            // The same alert fires again after the flap window: a new episode.
            (81, Ev::Notify(vec![("firing", "a", T2, "30")]), ScaleUp, 3),
            // A late resolve of the old episode does not end the new one: no scale-down.
            (82, Ev::Notify(vec![("resolved", "a", T1, "30")]), None, 3),
            (250, Ev::Tick, None, 3),
        ],
    );
}

/// Issue 26.3: an alert whose `startsAt` lies in the far future (a skewed clock, a hand-made
/// post) outranked every later resolve, so it stayed firing for `--firing-ttl` (1 h) and
/// blocked scale-down. Not believed (`Alert::fact`), it orders before anything: a later
/// episode's resolve ends it.
#[test]
fn a_far_future_start_does_not_pin_the_alert() {
    let t = |s: &str| -> DateTime<Utc> { DateTime::parse_from_rfc3339(s).unwrap().into() };
    let future = AlertFact {
        began: DateTime::<Utc>::MIN_UTC,
        ..fact("firing", "a", "2099-01-01T00:00:00Z", "30")
    };
    let resolve = AlertFact {
        ended: Some(t("2026-11-22T10:01:00Z")),
        ..fact("resolved", "a", "2026-11-22T10:00:30Z", "30")
    };
    let cfg = cfg(PolicyKind::Step);
    let t0 = Instant::now();
    let mut mem = ServiceMemory::default();
    let up = mem.plan("web", &[future], 1, BOUNDS, &cfg, t0);
    assert_eq!(up.decision.action, Action::ScaleUp);
    mem.commit(&up, t0);
    let at = |s: u64| t0 + Duration::from_secs(s);
    mem.plan("web", &[resolve], 2, BOUNDS, &cfg, at(60));
    assert!(mem.firing().is_empty(), "still firing: {:?}", mem.firing());
    let down = mem
        .tick("web", 2, BOUNDS, &cfg, at(121))
        .expect("scale-down");
    assert_eq!(
        (down.decision.action, down.decision.to),
        (Action::ScaleDown, 1)
    );
}

/// A resolve carries `endsAt`: one that ended before the firing episode began is a late resolve
/// of an older episode; one that ended after it ends it, whatever its `startsAt`.
#[test]
fn resolves_are_ordered_by_their_end() {
    let t = |s: &str| -> DateTime<Utc> { DateTime::parse_from_rfc3339(s).unwrap().into() };
    let cfg = cfg(PolicyKind::Step);
    let t0 = Instant::now();
    let mut mem = ServiceMemory::default();
    let up = mem.plan("web", &[fact("firing", "a", T2, "30")], 1, BOUNDS, &cfg, t0);
    mem.commit(&up, t0);
    let late = AlertFact {
        ended: Some(t("2026-11-22T10:04:00Z")),
        ..fact("resolved", "a", T1, "30")
    };
    mem.plan("web", &[late], 2, BOUNDS, &cfg, t0);
    assert_eq!(
        mem.firing().len(),
        1,
        "a resolve that ended before T2 ends nothing"
    );
    let this = AlertFact {
        ended: Some(t("2026-11-22T10:06:00Z")),
        ..fact("resolved", "a", T1, "30")
    };
    mem.plan("web", &[this], 2, BOUNDS, &cfg, t0);
    assert!(mem.firing().is_empty());
}

/// A rule without `for` flapping around its threshold, as in the paper pair: one episode.
#[test]
fn an_alert_flapping_within_the_window_is_one_episode() {
    use Action::*;
    let starts = |s: u64| -> &'static str {
        Box::leak(format!("2026-11-22T10:00:{s:02}Z").into_boxed_str())
    };
    let mut rows = vec![(
        0,
        Ev::Notify(vec![("firing", "a", starts(0), "45")]),
        ScaleUp,
        2,
    )];
    for t in (2..50).step_by(2) {
        rows.push((
            t,
            Ev::Notify(vec![("resolved", "a", starts(t - 2), "")]),
            None,
            2,
        ));
        rows.push((
            t + 1,
            Ev::Notify(vec![("firing", "a", starts(t), "45")]),
            None,
            2,
        ));
        rows.push((t + 1, Ev::Tick, None, 2));
    }
    // Quiet for longer than the window, then a spike: a new episode.
    rows.push((
        50,
        Ev::Notify(vec![("resolved", "a", starts(48), "")]),
        None,
        2,
    ));
    rows.push((
        115,
        Ev::Notify(vec![("firing", "a", starts(59), "45")]),
        ScaleUp,
        3,
    ));
    let mut c = cfg(PolicyKind::Step);
    c.scale_down = false;
    run(c, 1, rows);
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
            // No value annotation: one step.
            (2, Ev::Notify(vec![("firing", "c", T1, "")]), ScaleUp, 4),
        ],
    );
}

#[test]
fn a_huge_value_is_capped_and_its_reason_stays_short() {
    let mut mem = ServiceMemory::default();
    let c = cfg(PolicyKind::Proportional);
    let plan = mem.plan(
        "web",
        &[fact("firing", "a", T1, "1e308")],
        1,
        BOUNDS,
        &c,
        Instant::now(),
    );
    assert_eq!(plan.decision.to, BOUNDS.max);
    let reason = &plan.decision.reason;
    assert!(
        reason.len() < 120 && reason.contains("1.000e308"),
        "{reason}"
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

#[test]
fn a_firing_alert_never_resolved_expires_after_the_ttl() {
    use Action::*;
    let mut c = cfg(PolicyKind::Step);
    c.firing_ttl = Duration::from_secs(100);
    run(
        c,
        1,
        vec![
            (0, Ev::Notify(vec![("firing", "a", T1, "30")]), ScaleUp, 2),
            // Its re-send keeps it alive...
            (90, Ev::Notify(vec![("firing", "a", T1, "30")]), None, 2),
            (180, Ev::Tick, None, 2),
            // ...then no word of it: forgotten at 190 s, scale-down 60 s later.
            (249, Ev::Tick, None, 2),
            (251, Ev::Tick, ScaleDown, 1),
        ],
    );
}

/// Many distinct alerts: memory stays within its stated bound, the reason stays short, and the
/// work is linear (10,000 alerts, which took seconds when it was quadratic).
#[test]
fn memory_and_reasons_stay_bounded_under_floods_of_alerts() {
    let c = cfg(PolicyKind::Step);
    let mut mem = ServiceMemory::default();
    let t0 = Instant::now();
    let mut replicas = 1;
    for round in 0..5u64 {
        let facts: Vec<AlertFact> = (0..10_000)
            .map(|i| AlertFact {
                status: Status::Firing,
                fingerprint: format!("{:064x}", round * 100_000 + i),
                starts_at: DateTime::parse_from_rfc3339(T1).unwrap().into(),
                began: DateTime::parse_from_rfc3339(T1).unwrap().into(),
                ended: None,
                name: short_name(&"N".repeat(10_000)),
                value: None,
            })
            .collect();
        let now = t0 + Duration::from_secs(round * 20);
        let plan = mem.plan("web", &facts, replicas, BOUNDS, &c, now);
        assert!(plan.decision.reason.len() < 400, "{}", plan.decision.reason);
        mem.commit(&plan, now);
        replicas = plan.decision.to;
        assert!(mem.firing.len() <= MAX_FIRING);
        assert!(mem.deferred.len() <= MAX_DEFERRED);
        assert!(mem.seen.len() <= SEEN_CAPACITY);
        let bytes = mem.approx_bytes();
        assert!(
            bytes <= MEMORY_BOUND_BYTES,
            "{bytes} > {MEMORY_BOUND_BYTES}"
        );
    }
    assert!(replicas <= BOUNDS.max);
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    /// Alerts of one webhook: (fingerprint 0..5, episode 0..3, firing?, value).
    Notify(Vec<(u8, u8, bool, Option<u16>)>),
    Advance(u64),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let alert = (
        0u8..5,
        0u8..3,
        any::<bool>(),
        proptest::option::of(0u16..200),
    );
    prop_oneof![
        4 => proptest::collection::vec(alert, 1..6).prop_map(Op::Notify),
        3 => (0u64..40).prop_map(Op::Advance),
        2 => Just(Op::Tick),
    ]
}

fn config() -> impl Strategy<Value = (PolicyConfig, Bounds, u32)> {
    (
        any::<bool>(),
        0u64..20,
        1u64..90,
        (20u64..300, 0u64..90),
        any::<bool>(),
        (1u32..4, 0u32..6, 1u32..3),
    )
        .prop_flat_map(|(prop, cd, delay, (ttl, flap), down, (min, span, step))| {
            let cfg = PolicyConfig {
                kind: if prop {
                    PolicyKind::Proportional
                } else {
                    PolicyKind::Step
                },
                target: 20.0,
                behavior: Behavior::default(),
                reconciling: false,
                cooldown: Duration::from_secs(cd),
                scale_down_delay: Duration::from_secs(delay),
                scale_down: down,
                firing_ttl: Duration::from_secs(ttl),
                flap_window: Duration::from_secs(flap),
            };
            let bounds = Bounds {
                min,
                max: min + span,
                step,
            };
            (Just(cfg), Just(bounds), min..=min + span)
        })
}

fn to_fact(&(fp, episode, firing, value): &(u8, u8, bool, Option<u16>)) -> AlertFact {
    AlertFact {
        status: if firing {
            Status::Firing
        } else {
            Status::Resolved
        },
        fingerprint: format!("fp{fp}"),
        starts_at: DateTime::<Utc>::from_timestamp(1_700_000_000 + episode as i64 * 60, 0).unwrap(),
        began: DateTime::<Utc>::from_timestamp(1_700_000_000 + episode as i64 * 60, 0).unwrap(),
        ended: None,
        name: format!("A{fp}"),
        value: value.map(f64::from),
    }
}

/// What a run did: replicas after each op, and every scale-up as (seconds, from, to).
#[derive(Debug, PartialEq)]
struct Trace {
    replicas: Vec<u32>,
    scale_ups: Vec<(u64, u32, u32)>,
}

/// Runs the ops; `split` sends every alert in a webhook of its own at the same instant.
fn simulate(ops: &[Op], cfg: &PolicyConfig, bounds: Bounds, start: u32, split: bool) -> Trace {
    let t0 = Instant::now();
    let mut secs = 0;
    let mut mem = ServiceMemory::default();
    let mut replicas = start;
    let mut trace = Trace {
        replicas: vec![],
        scale_ups: vec![],
    };
    let mut apply = |plan: Plan, mem: &mut ServiceMemory, replicas: &mut u32, secs: u64| {
        assert_eq!(plan.decision.from, *replicas);
        if plan.decision.action == Action::ScaleUp {
            trace
                .scale_ups
                .push((secs, plan.decision.from, plan.decision.to));
        }
        mem.commit(&plan, t0 + Duration::from_secs(secs));
        *replicas = plan.decision.to;
    };
    let mut after = vec![];
    for op in ops {
        let now = t0 + Duration::from_secs(secs);
        match op {
            Op::Advance(s) => secs += s,
            Op::Tick => {
                if let Some(plan) = mem.tick("web", replicas, bounds, cfg, now) {
                    apply(plan, &mut mem, &mut replicas, secs);
                }
            }
            Op::Notify(alerts) => {
                let facts: Vec<AlertFact> = alerts.iter().map(to_fact).collect();
                let batches: Vec<&[AlertFact]> = if split {
                    facts.chunks(1).collect()
                } else {
                    vec![&facts[..]]
                };
                for batch in batches {
                    let plan = mem.plan("web", batch, replicas, bounds, cfg, now);
                    apply(plan, &mut mem, &mut replicas, secs);
                }
            }
        }
        after.push(replicas);
    }
    trace.replicas = after;
    trace
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Replicas stay within [min, max]; scale-ups are a cooldown apart; there are never more
    /// scale-ups than firing episodes; splitting webhooks changes nothing.
    #[test]
    fn any_alert_sequence_keeps_the_policy_safe(
        (cfg, bounds, start) in config(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let batched = simulate(&ops, &cfg, bounds, start, false);
        for r in &batched.replicas {
            prop_assert!((bounds.min..=bounds.max).contains(r), "{r} outside {bounds:?}");
        }
        if !cfg.cooldown.is_zero() {
            for w in batched.scale_ups.windows(2) {
                prop_assert!(
                    Duration::from_secs(w[1].0 - w[0].0) >= cfg.cooldown,
                    "scale-ups at {} s and {} s, cooldown {:?}", w[0].0, w[1].0, cfg.cooldown
                );
            }
        }
        let episodes: HashSet<(u8, u8)> = ops
            .iter()
            .filter_map(|op| match op { Op::Notify(a) => Some(a), _ => None })
            .flatten()
            .filter(|a| a.2)
            .map(|a| (a.0, a.1))
            .collect();
        prop_assert!(batched.scale_ups.len() <= episodes.len());
        let split = simulate(&ops, &cfg, bounds, start, true);
        prop_assert_eq!(&batched.replicas, &split.replicas);
        if !cfg.cooldown.is_zero() {
            // Without a cooldown one webhook may merge several steps into one decision.
            prop_assert_eq!(&batched.scale_ups, &split.scale_ups);
        }
    }
}
