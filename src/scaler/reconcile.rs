//! Reconciliation: every `--reconcile-every` the scaler asks Prometheus for each service's
//! load (`--query`, e.g. the summed queue length) and decides as HPA does, so a lost, delayed
//! or held-back notification cannot stall scaling (Alertmanager's `repeat_interval` defaults to
//! hours). Webhooks and this loop feed the same per-service memory and decision rules.

use std::time::Duration;

/// Where and what to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileConfig {
    /// Prometheus' base URL, e.g. http://prometheus:9090.
    pub prometheus: url::Url,
    /// PromQL with `{service}` standing for the service's name; must give one number.
    pub query: String,
    pub every: Duration,
}

/// The default query: the service's total thread-pool queue over the replicas that pushed in
/// the last 5 s, the signal the alert rules use (a crashed replica's last group stays in the
/// Pushgateway; without the filter its queue would count forever).
pub const DEFAULT_QUERY: &str = r#"sum(system_runtime_threadpool_queue_length{job="webserver",service="{service}"} and on (instance, service) (push_time_seconds{job="webserver",service="{service}"} > time() - 5))"#;

impl ReconcileConfig {
    pub fn query_for(&self, service: &str) -> String {
        self.query.replace("{service}", service)
    }

    /// The query's value now; `None` when it returns no series (no data: nothing decided).
    pub async fn value(
        &self,
        http: &reqwest::Client,
        service: &str,
    ) -> Result<Option<f64>, String> {
        let query = self.query_for(service);
        let mut url = self
            .prometheus
            .join("api/v1/query")
            .map_err(|e| format!("--prometheus: {e}"))?;
        url.query_pairs_mut().append_pair("query", &query);
        let shown = crate::util::redact::url(url.as_str());
        let body: serde_json::Value = http
            .get(url.clone())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("querying {shown}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("querying {shown}: unreadable answer: {e}"))?;
        parse_value(&body).map_err(|e| format!("{query}: {e}"))
    }
}

/// The single number of an instant-query answer (a scalar, or a vector of at most one series).
pub fn parse_value(body: &serde_json::Value) -> Result<Option<f64>, String> {
    if body["status"] != "success" {
        return Err(format!("Prometheus answered {}", body["error"]));
    }
    let data = &body["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) => return Ok(None),
            Some([one]) => &one["value"],
            Some(many) => {
                return Err(format!(
                    "gives {} series; aggregate it to one number, e.g. sum(...)",
                    many.len()
                ));
            }
            None => return Err("a vector without a result list".into()),
        },
        other => return Err(format!("gives a {other:?}, not a number")),
    };
    let raw = sample[1].as_str().unwrap_or_default();
    let v = crate::util::parse_prom_float(raw).ok_or_else(|| format!("value {raw:?}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("value {raw} is not a finite number >= 0"));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instant_query_answers_give_one_number_or_say_why_not() {
        let vector = |r: serde_json::Value| json!({"status": "success", "data": {"resultType": "vector", "result": r}});
        let one = vector(json!([{"metric": {}, "value": [1.0, "42.5"]}]));
        assert_eq!(parse_value(&one), Ok(Some(42.5)));
        assert_eq!(parse_value(&vector(json!([]))), Ok(None));
        let two = vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]));
        assert!(parse_value(&two).unwrap_err().contains("sum(...)"));
        let nan = vector(json!([{"value": [1, "NaN"]}]));
        assert!(parse_value(&nan).unwrap_err().contains("finite"));
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}});
        assert_eq!(parse_value(&scalar), Ok(Some(3.0)));
        let err = json!({"status": "error", "error": "parse error"});
        assert!(parse_value(&err).unwrap_err().contains("parse error"));
        let cfg = ReconcileConfig {
            prometheus: "http://p:9090".parse().unwrap(),
            query: DEFAULT_QUERY.into(),
            every: Duration::from_secs(15),
        };
        assert!(cfg.query_for("web").contains(r#"service="web""#));
    }
}
