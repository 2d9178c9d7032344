//! HPA's documented `behavior` examples, reproduced (kubernetes.io, "Horizontal Pod
//! Autoscaling", section "Configurable scaling behavior").

use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn policy(kind: PolicyType, value: u32, period: u64) -> RatePolicy {
    RatePolicy {
        kind,
        value,
        period: s(period),
    }
}

/// Runs `desired` recommendations `every` seconds apart from `start` replicas, applying each
/// result; returns the replicas after each step.
fn steps(b: &Behavior, start: u32, desired: &[u32], every: u64, bounds: (u32, u32)) -> Vec<u32> {
    let t0 = Instant::now();
    let mut h = History::default();
    let mut current = start;
    let mut out = vec![];
    for (i, &d) in desired.iter().enumerate() {
        let now = t0 + s(i as u64 * every);
        let n = h.normalize(b, current, d, bounds, now);
        if n.replicas != current {
            h.record(current, n.replicas, now);
        }
        current = n.replicas;
        out.push(current);
    }
    out
}

/// "scaleDown: policies: Pods 4 per 60 s, Percent 10 per 60 s": from 80 replicas towards 10,
/// 10 % (rounded so the change is at least 8, 8, 7, ...) while above 40, then 4 at a time.
#[test]
fn scale_down_80_to_10_with_pods_4_and_percent_10_per_minute() {
    let mut b = Behavior {
        down: Rules {
            stabilization_window: Duration::ZERO,
            policies: vec![
                policy(PolicyType::Pods, 4, 60),
                policy(PolicyType::Percent, 10, 60),
            ],
            select: Select::Max,
            tolerance: 0.1,
        },
        ..Default::default()
    };
    let got = steps(&b, 80, &[10; 14], 60, (1, 100));
    assert_eq!(
        got,
        [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]
    );
    // selectPolicy Min: the least change, 4 pods while 10 % is more.
    b.down.select = Select::Min;
    let got = steps(&b, 80, &[10; 3], 60, (1, 100));
    assert_eq!(got, [76, 72, 68]);
    // Twice in one period: the period's budget is spent by the first.
    b.down.select = Select::Max;
    let got = steps(&b, 80, &[10; 3], 20, (1, 100));
    assert_eq!(got, [72, 72, 72]);
}

/// The defaults: up by max(100 %, 4 pods) per 15 s, no up window.
#[test]
fn scale_up_defaults_double_or_add_four_per_fifteen_seconds() {
    let b = Behavior::default();
    assert_eq!(steps(&b, 1, &[20, 20, 20], 15, (1, 100)), [5, 10, 20]);
    // Within one period, no more than the budget from the period's start.
    assert_eq!(steps(&b, 1, &[20, 20, 20], 5, (1, 100)), [5, 5, 5]);
    // max bounds it.
    assert_eq!(steps(&b, 1, &[20], 15, (1, 3)), [3]);
}

/// "scaleUp: policies: Percent 900 per 60 s": 10 times the replicas per minute.
#[test]
fn scale_up_by_nine_hundred_percent() {
    let mut b = Behavior::default();
    b.up.policies = vec![policy(PolicyType::Percent, 900, 60)];
    assert_eq!(
        steps(&b, 1, &[150, 150, 150], 60, (1, 1000)),
        [10, 100, 150]
    );
}

/// "stabilizationWindowSeconds: 300" (down): the highest recommendation of the last 5 minutes.
#[test]
fn the_down_window_applies_the_highest_recent_recommendation() {
    let b = Behavior::default();
    // Recommendations at 0, 60, ..., 420 s: a dip to 4, 3, then back up.
    let got = steps(&b, 10, &[10, 5, 3, 3, 3, 3, 3, 3], 60, (1, 100));
    // At 300 s the 10 from 0 s has left the window (strictly after now - 300 s).
    assert_eq!(got, [10, 10, 10, 10, 10, 5, 3, 3]);
    // A flapping recommendation never scales down within the window.
    let got = steps(&b, 6, &[2, 6, 2, 6, 2, 6, 2], 10, (1, 100));
    assert!(got.iter().all(|r| *r == 6), "{got:?}");
}

/// An up window holds a scale-up until the recommendation stayed high for the whole window.
#[test]
fn an_up_window_applies_the_lowest_recent_recommendation() {
    let mut b = Behavior::default();
    b.up.stabilization_window = s(30);
    let got = steps(&b, 2, &[2, 8, 8, 8, 8], 10, (1, 100));
    // At 30 s the 2s have left the window: up, by at most max(100 %, 4 pods).
    assert_eq!(got, [2, 2, 2, 6, 6]);
}

#[test]
fn disabled_directions_never_move() {
    let mut b = Behavior::default();
    b.down.select = Select::Disabled;
    b.down.stabilization_window = Duration::ZERO;
    assert_eq!(steps(&b, 8, &[1, 1], 60, (1, 10)), [8, 8]);
    b.up.select = Select::Disabled;
    assert_eq!(steps(&b, 8, &[10], 60, (1, 10)), [8]);
}

#[test]
fn the_formula_keeps_a_per_direction_tolerance() {
    let mut b = Behavior::default();
    // 21 per replica vs a target of 20 is within 10 %.
    assert_eq!(recommend(42.0, 20.0, 2, &b), 2);
    assert_eq!(recommend(70.0, 20.0, 1, &b), 4);
    b.down.tolerance = 0.5;
    assert_eq!(recommend(24.0, 20.0, 2, &b), 2);
    assert_eq!(recommend(10.0, 20.0, 4, &b), 1);
    assert_eq!(recommend(1e308, 20.0, 1, &b), u32::MAX);
}

#[test]
fn policies_parse_and_say_what_is_wrong() {
    let p = parse_policies("Pods:4:60s, percent:10:1m").unwrap();
    assert_eq!(
        p,
        [
            policy(PolicyType::Pods, 4, 60),
            policy(PolicyType::Percent, 10, 60)
        ]
    );
    for (bad, what) in [
        ("Pods:4", "TYPE:VALUE:PERIOD"),
        ("Nodes:4:1s", "Pods or Percent"),
        ("Pods:0:1s", "positive"),
        ("Pods:4:0s", "period"),
        ("", "no policy"),
    ] {
        let e = parse_policies(bad).unwrap_err();
        assert!(e.contains(what), "{bad:?}: {e}");
    }
}

#[test]
fn the_limit_says_why() {
    let b = Behavior::default();
    let mut h = History::default();
    let now = Instant::now();
    let n = h.normalize(&b, 1, 20, (1, 100), now);
    assert_eq!((n.replicas, n.limit), (5, Some(Limit::ScaleUpLimit)));
    let n = History::default().normalize(&b, 1, 20, (1, 3), now);
    assert_eq!((n.replicas, n.limit), (3, Some(Limit::TooMany)));
    let n = History::default().normalize(&b, 4, 4, (1, 10), now);
    assert_eq!((n.replicas, n.limit), (4, None));
}
