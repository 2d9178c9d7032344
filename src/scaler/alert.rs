//! Alertmanager's webhook payload, version "4". Unknown fields are ignored, so newer
//! Alertmanagers keep working.

use std::collections::BTreeMap;

use super::policy::{AlertFact, short_name};

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
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Status {
    Firing,
    Resolved,
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(s: String) -> Result<Status, String> {
        match s.as_str() {
            "firing" => Ok(Status::Firing),
            "resolved" => Ok(Status::Resolved),
            _ => Err(format!(
                "unknown status {:?}: expected \"firing\" or \"resolved\"",
                s.chars().take(40).collect::<String>()
            )),
        }
    }
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

    /// The `value` annotation (the rule's `{{ $value }}`), for the proportional policy:
    /// absent is `None`; present, it must be a finite number >= 0.
    pub fn value(&self) -> Result<Option<f64>, String> {
        let Some(raw) = self.annotations.get("value") else {
            return Ok(None);
        };
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(format!(
                "alert {}: annotation `value` = {:?} is not a finite number >= 0 (the \
                 proportional policy reads the service's total from it, e.g. {{{{ $value }}}})",
                short_name(self.name()),
                raw.chars().take(40).collect::<String>()
            )),
        }
    }

    /// What the policy keeps of this alert (`parse` checked startsAt and the fingerprint).
    pub fn fact(&self, value: Option<f64>) -> AlertFact {
        AlertFact {
            status: self.status,
            fingerprint: self.fingerprint.clone(),
            starts_at: chrono::DateTime::parse_from_rfc3339(&self.starts_at)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_default(),
            name: short_name(self.name()),
            value,
        }
    }
}

/// Alertmanager's fingerprints are 16 hex digits; longer ones are refused, so what the scaler
/// remembers per alert stays small.
pub const MAX_FINGERPRINT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed Alertmanager webhook payload: {0}")]
    Json(String),
    #[error("unsupported webhook payload version {0:?}: this scaler speaks version \"4\"")]
    Version(String),
    #[error("alert {index} has an empty fingerprint")]
    Fingerprint { index: usize },
    #[error(
        "alert {index}: fingerprint longer than {MAX_FINGERPRINT} bytes (Alertmanager's are 16 hex digits)"
    )]
    LongFingerprint { index: usize },
    #[error("alert {index}: startsAt {value:?} is not an RFC 3339 time")]
    StartsAt { index: usize, value: String },
}

pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    // The path names the field at fault: `alerts[0].status: unknown variant ...`.
    let n: Notification = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        PayloadError::Json(if path == "." {
            inner.to_string()
        } else {
            format!("at `{path}`: {inner}")
        })
    })?;
    if n.version != "4" {
        return Err(PayloadError::Version(n.version));
    }
    for (index, a) in n.alerts.iter().enumerate() {
        if a.fingerprint.trim().is_empty() {
            return Err(PayloadError::Fingerprint { index });
        }
        if a.fingerprint.len() > MAX_FINGERPRINT {
            return Err(PayloadError::LongFingerprint { index });
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
        assert_eq!(n.alerts[0].value(), Ok(Some(30.0)));
        let fact = n.alerts[0].fact(Some(30.0));
        assert_eq!(fact.starts_at.to_rfc3339(), "2026-11-22T10:00:00+00:00");
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
        let e = err(notification("firing", vec![a]));
        assert!(
            e.contains("burning") && e.contains("`alerts[0].status`"),
            "{e}"
        );
        let mut v = notification("firing", vec![]);
        v["status"] = 5.into();
        let e = err(v);
        assert!(e.contains("`status`") && e.contains("integer `5`"), "{e}");
        let a = alert("firing", &"f".repeat(65), "2026-11-22T10:00:00Z", "w");
        assert!(err(notification("firing", vec![a])).contains("fingerprint longer"));
        assert!(
            parse(b"{not json")
                .unwrap_err()
                .to_string()
                .contains("malformed")
        );
    }

    #[test]
    fn the_value_annotation_must_be_a_finite_number() {
        let with = |v: &str| {
            let mut a = alert("firing", "abc", "2026-11-22T10:00:00Z", "w");
            a["annotations"]["value"] = v.into();
            let a: Alert = serde_json::from_value(a).unwrap();
            a.value()
        };
        assert_eq!(with(" 12.5 "), Ok(Some(12.5)));
        for bad in ["NaN", "-1", "inf", "-inf", "lots", "1e999"] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("annotation `value`") && e.contains(bad), "{e}");
        }
        let mut a = alert("firing", "abc", "2026-11-22T10:00:00Z", "w");
        a["annotations"] = serde_json::json!({});
        let a: Alert = serde_json::from_value(a).unwrap();
        assert_eq!(a.value(), Ok(None));
    }
}
