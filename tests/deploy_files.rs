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
