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
