//! The deploy/ files stay valid: every PromQL expression in the Grafana dashboards and the
//! alert rules parses, the dashboards are well-formed, and the rules carry what the scaler needs.
//! (promtool, amtool and the Compose tool check the rest in `deploy/check.sh`.)

use std::path::Path;

fn deploy() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy"))
}

/// Grafana's template variables are not PromQL; give them plausible values before parsing.
fn expand_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$service", "threadpool_webserver")
}

#[test]
fn every_dashboard_expression_parses() {
    let dir = deploy().join("grafana/dashboards");
    let mut files = 0;
    let mut exprs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
        files += 1;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                promql_parser::parser::parse(&expand_grafana_variables(expr)).unwrap_or_else(|e| {
                    panic!("{} panel {:?}: {expr}: {e}", path.display(), panel["title"])
                });
                exprs += 1;
            }
        }
    }
    assert_eq!(files, 4, "pool, scaler, load and node dashboards");
    assert!(exprs >= 20, "only {exprs} expressions found");
}

#[test]
fn alert_rules_parse_and_carry_service_and_value() {
    let text = std::fs::read_to_string(deploy().join("prometheus/alert_rules.yml")).unwrap();
    let rules: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut names = vec![];
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert!(
            expr.contains("by (service)"),
            "aggregated per service: {expr}"
        );
        assert_eq!(rule["labels"]["severity"], "critical");
        assert_eq!(rule["annotations"]["value"], "{{ $value }}");
        names.push(rule["alert"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["ThreadPoolSpike", "ThreadPoolStarvation"]);
}

fn yaml(file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(deploy().join(file)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Issue 26.4: nothing but the workload's port is published (the Pushgateway, Alertmanager,
/// Prometheus and the scaler are unauthenticated or hold secrets); Grafana only in its opt-in
/// file, behind an admin password from a secret.
#[test]
fn the_stack_publishes_only_the_workloads_port() {
    let stack = yaml("docker-compose.yml");
    let published: Vec<(&str, String)> = stack["services"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(name, svc)| {
            let ports = svc["ports"].as_array().cloned().unwrap_or_default();
            ports
                .into_iter()
                .map(move |p| (name.as_str(), p.to_string()))
        })
        .collect();
    assert_eq!(published, [("webserver", "\"5000:5000\"".to_owned())]);
    assert!(
        stack["services"].get("grafana").is_none(),
        "Grafana is opt-in"
    );

    let grafana = yaml("docker-compose.grafana.yml");
    let env = &grafana["services"]["grafana"]["environment"];
    assert_eq!(env["GF_AUTH_ANONYMOUS_ENABLED"], "false");
    assert_eq!(
        env["GF_SECURITY_ADMIN_PASSWORD__FILE"],
        "/run/secrets/grafana_admin_password"
    );
    assert_eq!(
        grafana["secrets"]["grafana_admin_password"]["external"],
        true
    );
}

/// No admin or lifecycle API on Prometheus (nothing uses them): the image's command line.
#[test]
fn prometheus_runs_without_admin_or_lifecycle_flags() {
    let build =
        std::fs::read_to_string(deploy().join("docker/build-monitoring-images.sh")).unwrap();
    let stack = std::fs::read_to_string(deploy().join("docker-compose.yml")).unwrap();
    for text in [&build, &stack] {
        for flag in ["--web.enable-admin-api", "--web.enable-lifecycle"] {
            assert!(!text.contains(flag), "{flag} is back");
        }
    }
    assert!(build.contains("--web.enable-remote-write-receiver"));
}

/// Alertmanager sends only alerts that carry the scaling label to the scaler; the root's
/// receiver notifies nobody. Both rules carry the label.
#[test]
fn only_scaling_alerts_are_routed_to_the_scaler() {
    let am = yaml("alertmanager/alertmanager.yml");
    let root = &am["route"];
    let receivers = am["receivers"].as_array().unwrap();
    let receiver = |name: &serde_json::Value| {
        receivers
            .iter()
            .find(|r| &r["name"] == name)
            .unwrap_or_else(|| panic!("no receiver {name}"))
    };
    let null = receiver(&root["receiver"]);
    assert!(
        null.get("webhook_configs").is_none() && null.as_object().unwrap().len() == 1,
        "the root receiver notifies nobody: {null}"
    );
    let routes = root["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["receiver"], "alertapi");
    assert_eq!(
        routes[0]["matchers"],
        serde_json::json!(["scaling=\"out\""])
    );
    let hook = &receiver(&routes[0]["receiver"])["webhook_configs"][0];
    assert_eq!(hook["url"], "http://alertapi:5001/alert");

    let rules = yaml("prometheus/alert_rules.yml");
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        assert_eq!(rule["labels"]["scaling"], "out", "{}", rule["alert"]);
    }
}

/// Docker configs are immutable: each name carries CONFIG_VERSION (required), so a deploy after
/// an edit creates new ones; the overlay is encrypted.
#[test]
fn config_names_are_versioned_and_the_overlay_is_encrypted() {
    for file in ["docker-compose.yml", "docker-compose.grafana.yml"] {
        let doc = yaml(file);
        let configs = doc["configs"].as_object().unwrap();
        assert!(!configs.is_empty());
        for (key, c) in configs {
            let name = c["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {key}: no name"));
            assert!(
                name.starts_with("${STACK_NAME:-threadpool}_")
                    && name.contains(&format!("_{key}_${{CONFIG_VERSION:?")),
                "{file}: {key}: {name}"
            );
        }
    }
    let stack = yaml("docker-compose.yml");
    let net = &stack["networks"]["starvation"];
    assert_eq!(net["driver"], "overlay");
    assert_eq!(net["driver_opts"]["encrypted"], "");
}

/// Issue 26.4: the Pushgateway takes any push and the alert rules read the queue from it, so it
/// is reachable only from what must push or scrape: it sits on the `push` network alone, which
/// only the replicas, the scaler and Prometheus join and which no standalone container can
/// attach to; nothing publishes it, not even the experiment's opt-in on the manager.
#[test]
fn only_the_replicas_the_scaler_and_prometheus_reach_the_pushgateway() {
    let stack = yaml("docker-compose.yml");
    let services = stack["services"].as_object().unwrap();
    let mut on_push: Vec<&str> = services
        .iter()
        .filter(|(_, svc)| {
            svc["networks"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "push"))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    on_push.sort();
    assert_eq!(
        on_push,
        ["alertapi", "prometheus", "pushgateway", "webserver"]
    );
    assert_eq!(
        services["pushgateway"]["networks"],
        serde_json::json!(["push"])
    );
    let push = &stack["networks"]["push"];
    assert_eq!(push["driver"], "overlay");
    assert_eq!(push["attachable"], false);
    assert_eq!(push["driver_opts"]["encrypted"], "");

    let mut run = stack.clone();
    starvation::experiment::swarm::publish_on_manager(&mut run).unwrap();
    assert!(run["services"]["pushgateway"].get("ports").is_none());
}

/// Issue 27.6: the rules for an operator's own .NET service parse, are accepted whole by the
/// embedded evaluator, carry what the scaler and Alertmanager need, and read .NET's own names.
#[test]
fn dotnet_rules_parse_and_read_the_ecosystem_names() {
    let text = std::fs::read_to_string(deploy().join("prometheus/alert_rules_dotnet.yml")).unwrap();
    let rules: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let groups = rules["groups"].as_array().unwrap();
    let mut paths = vec![];
    for group in groups {
        let mut names = vec![];
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            for needle in [
                "by (service)",
                "dotnet_thread_pool_queue_length(_total)?",
                "process_runtime_dotnet_thread_pool_queue_length",
            ] {
                assert!(expr.contains(needle), "{needle:?} missing in {expr}");
            }
            assert!(!expr.contains("system_runtime_threadpool"), "{expr}");
            assert_eq!(rule["labels"]["severity"], "critical");
            assert_eq!(rule["labels"]["scaling"], "out");
            assert_eq!(rule["annotations"]["value"], "{{ $value }}");
            paths.push(rule["labels"]["path"].as_str().unwrap().to_owned());
            names.push(rule["alert"].as_str().unwrap().to_owned());
        }
        assert_eq!(names, ["ThreadPoolSpike", "ThreadPoolStarvation"]);
    }
    assert_eq!(paths, ["scrape", "scrape", "push", "push"]);
    let compiled = starvation::monitor::parse_rules(&text).expect("the embedded subset");
    let fors: Vec<u64> = compiled.iter().map(|r| r.for_.as_secs()).collect();
    assert_eq!(fors, [0, 5, 0, 5]);
}

mod dotnet_rules_in_the_embedded_monitor {
    use chrono::{DateTime, Duration, Utc};
    use starvation::monitor::{AlertStates, Labels, Sample, parse_rules, text_format};
    use starvation::scaler::alert::{Alert, Status};
    use starvation::workload::metrics::Metrics;
    use starvation::workload::pool::{Counts, Snapshot};

    fn states() -> AlertStates {
        let text =
            std::fs::read_to_string(super::deploy().join("prometheus/alert_rules_dotnet.yml"))
                .unwrap();
        AlertStates::new(parse_rules(&text).unwrap())
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What `serve` pushes with `queue` queued, as the embedded receiver stores it, without the
    /// paper's queue gauge (so only the ecosystem names can fire), plus the push time.
    fn pushed_by_serve(queue: usize, at: DateTime<Utc>) -> Vec<Sample> {
        let m = Metrics::new();
        let snap = Snapshot {
            counts: Counts {
                goal: 4,
                existing: 4,
                processing: 4,
                requested: 1,
            },
            max_threads: 32767,
            queue_length: queue,
            starvation_injections: 0,
            hill_climbing_moves: 0,
            threads_created: 4,
            threads_retired: 0,
            completed_items: 7,
        };
        m.refresh(&snap, 50.0, 1000);
        let group = labels(&[
            ("job", "webserver"),
            ("instance", "orders.1:5000"),
            ("service", "shop_orders"),
        ]);
        let mut samples = text_format::parse(&m.encode_for_push(), &group).unwrap();
        samples.retain(|s| s.labels["__name__"] != "system_runtime_threadpool_queue_length");
        let mut push_time = group.clone();
        push_time.insert("__name__".into(), "push_time_seconds".into());
        samples.push(Sample {
            labels: push_time,
            value: starvation::monitor::unix_s(at),
        });
        samples
    }

    fn firing(alerts: &[Alert], name: &str) -> Vec<(String, String, String)> {
        alerts
            .iter()
            .filter(|a| a.name() == name && a.status == Status::Firing)
            .map(|a| {
                (
                    a.labels["service"].clone(),
                    a.labels["path"].clone(),
                    a.annotations["value"].clone(),
                )
            })
            .collect()
    }

    /// `serve`'s pushed ecosystem names fire the push group: 45 queued is a spike at once (45,
    /// not 90: the replica's two names count once), 25 starves after 5 s, as in Prometheus.
    #[test]
    fn they_fire_on_what_serve_pushes() {
        let t0 = Utc::now();
        let mut spike = states();
        let alerts = spike.step(&pushed_by_serve(45, t0), t0);
        let want = vec![("shop_orders".into(), "push".into(), "45".into())];
        assert_eq!(firing(&alerts, "ThreadPoolSpike"), want);

        let mut starving = states();
        for s in 0..5 {
            let at = t0 + Duration::seconds(s);
            let alerts = starving.step(&pushed_by_serve(25, at), at);
            assert!(alerts.is_empty(), "at {s} s: {alerts:?}");
        }
        let at = t0 + Duration::seconds(5);
        let alerts = starving.step(&pushed_by_serve(25, at), at);
        let want = vec![("shop_orders".into(), "push".into(), "25".into())];
        assert_eq!(firing(&alerts, "ThreadPoolStarvation"), want);
        assert!(firing(&alerts, "ThreadPoolSpike").is_empty());
    }

    /// Each name .NET exports fires alone, scraped (`up`) or pushed; a group whose last push is
    /// older than 5 s does not.
    #[test]
    fn each_ecosystem_name_fires_alone_on_either_path() {
        let now = Utc::now();
        let target = [("instance", "10.0.1.5:8080"), ("service", "shop_orders")];
        for name in [
            "dotnet_thread_pool_queue_length",
            "dotnet_thread_pool_queue_length_total",
            "process_runtime_dotnet_thread_pool_queue_length",
        ] {
            let queue = Sample {
                labels: labels(&[&[("__name__", name), ("job", "orders")], &target[..]].concat()),
                value: 41.0,
            };
            for (path, liveness, fires) in [
                ("scrape", ("up", 1.0), true),
                ("scrape", ("up", 0.0), false),
                (
                    "push",
                    ("push_time_seconds", starvation::monitor::unix_s(now)),
                    true,
                ),
                (
                    "push",
                    ("push_time_seconds", starvation::monitor::unix_s(now) - 6.0),
                    false,
                ),
            ] {
                let live = Sample {
                    labels: labels(&[&[("__name__", liveness.0)], &target[..]].concat()),
                    value: liveness.1,
                };
                let alerts = states().step(&[queue.clone(), live], now);
                let want = if fires {
                    vec![(
                        "shop_orders".to_string(),
                        path.to_string(),
                        "41".to_string(),
                    )]
                } else {
                    vec![]
                };
                assert_eq!(
                    firing(&alerts, "ThreadPoolSpike"),
                    want,
                    "{name} {liveness:?}"
                );
            }
        }
    }
}
