//! The rule subset's tests: parsing, each operator, refusals, templates.

use super::*;

fn s(name: &str, instance: &str, service: &str, v: f64) -> Sample {
    let mut labels = Labels::new();
    labels.insert("__name__".into(), name.into());
    labels.insert("job".into(), "webserver".into());
    labels.insert("instance".into(), instance.into());
    labels.insert("service".into(), service.into());
    Sample { labels, value: v }
}

/// The evaluation time of these tests (unix seconds).
const NOW: f64 = 1_800_000_000.0;

/// The queue of one replica with the `push_time_seconds` of a push `age` seconds ago.
fn replica(instance: &str, service: &str, queue: f64, age: f64) -> [Sample; 2] {
    [
        s(
            "system_runtime_threadpool_queue_length",
            instance,
            service,
            queue,
        ),
        s("push_time_seconds", instance, service, NOW - age),
    ]
}

#[test]
fn deploy_rules_parse() {
    let rules = parse_rules(DEFAULT_RULES).unwrap();
    let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ThreadPoolSpike", "ThreadPoolStarvation"]);
    assert_eq!(rules[1].for_, Duration::from_secs(5));
    assert_eq!(rules[0].for_, Duration::ZERO);
}

#[test]
fn sum_by_service_then_threshold() {
    let rules = parse_rules(DEFAULT_RULES).unwrap();
    let q = &rules[1].query;
    let mut samples: Vec<Sample> = [
        replica("a-1", "a", 12.0, 1.0),
        replica("a-2", "a", 10.0, 0.5),
        replica("b-1", "b", 15.0, 1.0),
    ]
    .concat();
    samples.push(s("busy_worker_threads", "a-1", "a", 99.0));
    let out = eval(q, &samples, NOW);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels.get("service").unwrap(), "a");
    assert_eq!(out[0].labels.len(), 1);
    assert_eq!(out[0].value, 22.0);
    // The other job is ignored.
    let mut other = s("system_runtime_threadpool_queue_length", "x", "a", 100.0);
    other.labels.insert("job".into(), "other".into());
    assert_eq!(eval(q, &[other], NOW).len(), 0);
}

/// A crashed replica's group stays in the Pushgateway with its last queue: the deployed rules
/// count it only while its last push is under 5 s old.
#[test]
fn the_deployed_rules_ignore_replicas_that_stopped_pushing() {
    let rules = parse_rules(DEFAULT_RULES).unwrap();
    let spike = &rules[0].query;
    let with_dead = |age: f64| {
        let samples = [
            replica("a-1", "a", 10.0, 1.0),
            replica("a-2", "a", 50.0, age),
        ]
        .concat();
        eval(spike, &samples, NOW)
    };
    assert_eq!(with_dead(4.9)[0].value, 60.0, "fresh: both count");
    assert!(
        with_dead(5.0).is_empty(),
        "5 s old: only the live 10 counts"
    );
    assert!(with_dead(86.0).is_empty());
    // A queue with no push_time_seconds at all (not from a Pushgateway) never counts.
    let bare = [s("system_runtime_threadpool_queue_length", "x", "a", 99.0)];
    assert!(eval(spike, &bare, NOW).is_empty());
}

#[test]
fn and_matches_on_ignoring_or_every_label() {
    let samples = vec![
        s("q", "a-1", "a", 1.0),
        s("q", "a-2", "a", 3.0),
        s("q", "b-1", "b", 5.0),
        s("t", "a-1", "a", 0.0),
        s("t", "b-1", "x", 0.0),
    ];
    let v = |e: &str| {
        let mut r: Vec<f64> = eval(&compile_expr(e).unwrap(), &samples, NOW)
            .into_iter()
            .map(|s| s.value)
            .collect();
        r.sort_by(f64::total_cmp);
        r
    };
    assert_eq!(v("q and on (instance) t"), [1.0, 5.0]);
    assert_eq!(v("q and on (instance, service) t"), [1.0]);
    assert_eq!(v("q and ignoring (service) t"), [1.0, 5.0]);
    assert_eq!(v("q and t"), [1.0]);
    assert_eq!(v("q and on (instance) (t > 1)"), Vec::<f64>::new());
    assert_eq!(v("sum by (service) (q and on (instance) t)"), [1.0, 5.0]);
}

#[test]
fn time_is_the_evaluation_time() {
    let samples = vec![
        s("t", "a", "a", NOW - 10.0),
        s("t", "b", "b", NOW - 2.0),
        s("t", "c", "c", NOW + 1.0),
    ];
    let v = |e: &str| {
        let mut r: Vec<f64> = eval(&compile_expr(e).unwrap(), &samples, NOW)
            .into_iter()
            .map(|s| NOW - s.value)
            .collect();
        r.sort_by(f64::total_cmp);
        r
    };
    assert_eq!(v("t > time() - 5"), [-1.0, 2.0]);
    assert_eq!(v("t > (time() - 5)"), [-1.0, 2.0]);
    assert_eq!(v("t > time() + -5"), [-1.0, 2.0]);
    assert_eq!(v("t > -5 + time()"), [-1.0, 2.0]);
    assert_eq!(v("time() - 5 < t"), [-1.0, 2.0]);
    assert_eq!(v("t <= time()"), [2.0, 10.0]);
    assert_eq!(v("t > time() - 3 - 2"), [-1.0, 2.0]);
}

#[test]
fn every_operator_of_the_subset() {
    let samples = vec![
        s("q", "a-1", "a", 1.0),
        s("q", "a-2", "a", 3.0),
        s("q", "b-1", "b", 5.0),
    ];
    let v = |e: &str| {
        let mut r: Vec<f64> = eval(&compile_expr(e).unwrap(), &samples, NOW)
            .into_iter()
            .map(|s| s.value)
            .collect();
        r.sort_by(f64::total_cmp);
        r
    };
    assert_eq!(v("max by (service) (q)"), [3.0, 5.0]);
    assert_eq!(v("min by (service) (q)"), [1.0, 5.0]);
    assert_eq!(v("avg by (service) (q)"), [2.0, 5.0]);
    assert_eq!(v("count by (service) (q)"), [1.0, 2.0]);
    assert_eq!(v("sum(q)"), [9.0]);
    assert_eq!(v("sum without (instance) (q)"), [4.0, 5.0]);
    assert_eq!(v("q > 2"), [3.0, 5.0]);
    assert_eq!(v("q >= 3"), [3.0, 5.0]);
    assert_eq!(v("q < 3"), [1.0]);
    assert_eq!(v("q <= 3"), [1.0, 3.0]);
    assert_eq!(v("q == 5"), [5.0]);
    assert_eq!(v("q != 5"), [1.0, 3.0]);
    assert_eq!(v("2 < q"), [3.0, 5.0]);
    assert_eq!(v("q{service=~\"a|c\"}"), [1.0, 3.0]);
    assert_eq!(v("q{service!=\"a\"}"), [5.0]);
    assert_eq!(v("(sum by (service) (q)) >= 4"), [4.0, 5.0]);
    assert_eq!(v("(sum by (service) (q)) > 4"), [5.0]);
}

#[test]
fn unsupported_is_refused_naming_the_prometheus_monitor() {
    for e in [
        "rate(x[1m]) > 1",
        "x > bool 1",
        "x + 1 > 2",
        "topk(1, x)",
        "x > y",
        "x offset 1m > 1",
        "x or y",
        "x unless y",
        "x > time() - time()",
        "x > 5 - time()",
        "x > time() * 2",
        "x > vector(time())",
        "x and on (i) (y + 1)",
    ] {
        let file =
            format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {e}\n");
        let err = parse_rules(&file).unwrap_err().to_string();
        assert!(err.contains("--monitor prometheus"), "{e}: {err}");
    }
}

#[test]
fn templates_render() {
    let mut l = Labels::new();
    l.insert("service".into(), "web".into());
    assert_eq!(
        render("queue of {{ $labels.service }} is {{ $value }}", &l, 42.0),
        "queue of web is 42"
    );
}
