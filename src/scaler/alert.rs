//! Alertmanager's webhook payload, version "4". Unknown fields are ignored, so newer
//! Alertmanagers keep working.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    pub status: Status,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub truncated_alerts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("unnamed")
    }

    /// The dedupe key: Alertmanager re-sends the same firing alert (retries, repeat_interval)
    /// with the same fingerprint and startsAt; a new episode has a new startsAt.
    pub fn key(&self) -> String {
        format!("{}@{}", self.fingerprint, self.starts_at)
    }

    /// The `value` annotation (the rule's `{{ $value }}`), for the proportional policy.
    pub fn value(&self) -> Option<f64> {
        self.annotations
            .get("value")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed Alertmanager webhook payload: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported webhook payload version {0:?}: this scaler speaks version \"4\"")]
    Version(String),
    #[error("alert {index} has an empty fingerprint")]
    Fingerprint { index: usize },
    #[error("alert {index}: startsAt {value:?} is not an RFC 3339 time")]
    StartsAt { index: usize, value: String },
}

pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let n: Notification = serde_json::from_slice(body)?;
    if n.version != "4" {
        return Err(PayloadError::Version(n.version));
    }
    for (index, a) in n.alerts.iter().enumerate() {
        if a.fingerprint.trim().is_empty() {
            return Err(PayloadError::Fingerprint { index });
        }
        if chrono::DateTime::parse_from_rfc3339(&a.starts_at).is_err() {
            return Err(PayloadError::StartsAt {
                index,
                value: a.starts_at.clone(),
            });
        }
    }
    Ok(n)
}

#[cfg(test)]
pub mod sample {
    //! Builders for payloads in tests.
    use serde_json::json;

    pub fn alert(
        status: &str,
        fingerprint: &str,
        starts_at: &str,
        service: &str,
    ) -> serde_json::Value {
        json!({
            "status": status,
            "labels": {"alertname": "ThreadPoolStarvation", "service": service, "severity": "critical"},
            "annotations": {"value": "30"},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint,
        })
    }

    pub fn notification(status: &str, alerts: Vec<serde_json::Value>) -> serde_json::Value {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"ThreadPoolStarvation\"}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "alertapi",
            "groupLabels": {"alertname": "ThreadPoolStarvation"},
            "commonLabels": {"alertname": "ThreadPoolStarvation"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
            "someFutureField": {"ignored": true},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sample::*;
    use super::*;

    #[test]
    fn parses_alertmanager_v4_and_tolerates_unknown_fields() {
        let body = notification(
            "firing",
            vec![alert("firing", "abc", "2026-11-22T10:00:00Z", "webserver")],
        );
        let n = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(n.status, Status::Firing);
        assert_eq!(n.alerts[0].key(), "abc@2026-11-22T10:00:00Z");
        assert_eq!(n.alerts[0].value(), Some(30.0));
        assert_eq!(n.alerts[0].name(), "ThreadPoolStarvation");
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let err = |v: serde_json::Value| parse(v.to_string().as_bytes()).unwrap_err().to_string();
        let mut v = notification("firing", vec![]);
        v["version"] = "3".into();
        assert!(err(v).contains("version \"3\""));
        let mut a = alert("firing", "abc", "2026-11-22T10:00:00Z", "w");
        a.as_object_mut().unwrap().remove("fingerprint");
        assert!(err(notification("firing", vec![a])).contains("missing field `fingerprint`"));
        let a = alert("firing", "abc", "yesterday", "w");
        assert!(err(notification("firing", vec![a])).contains("startsAt"));
        let a = alert("burning", "abc", "2026-11-22T10:00:00Z", "w");
        assert!(err(notification("firing", vec![a])).contains("burning"));
        assert!(
            parse(b"{not json")
                .unwrap_err()
                .to_string()
                .contains("malformed")
        );
    }
}
