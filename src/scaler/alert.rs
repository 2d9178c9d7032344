//! Alertmanager's webhook payload, version "4". Unknown fields are ignored, so newer
//! Alertmanagers keep working.

use chrono::{DateTime, Utc};
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

    /// `endsAt`, unless absent or before 1970 (Alertmanager sends Go's zero time,
    /// 0001-01-01, for an alert that has not ended).
    pub fn ends(&self) -> Option<DateTime<Utc>> {
        rfc3339(&self.ends_at).filter(|t| t.timestamp() > 0)
    }

    /// What the policy keeps of this alert, received at `received` (`parse` checked the
    /// times and the fingerprint). As Alertmanager decides, an alert whose `endsAt` has passed
    /// is resolved whatever its `status`; a `startsAt` more than [`MAX_CLOCK_SKEW`] after
    /// `received` cannot be ordered against other reports of the alert, so it counts as the
    /// earliest time: any resolve of the fingerprint ends it, any other episode replaces it.
    pub fn fact(&self, value: Option<f64>, received: DateTime<Utc>) -> AlertFact {
        let starts_at = rfc3339(&self.starts_at).unwrap_or_default();
        let ended = self.ends();
        let status = match ended {
            Some(end) if end <= received => Status::Resolved,
            _ => self.status,
        };
        let absurd = starts_at > received + MAX_CLOCK_SKEW;
        if absurd {
            tracing::warn!(
                "alert {} (fingerprint {}): startsAt {} is in the future of this host's clock \
                 ({}); any resolve of it ends it (check the clocks of Prometheus and this host)",
                short_name(self.name()),
                self.fingerprint,
                self.starts_at,
                received.to_rfc3339()
            );
        }
        AlertFact {
            status,
            fingerprint: self.fingerprint.clone(),
            starts_at,
            began: if absurd {
                DateTime::<Utc>::MIN_UTC
            } else {
                starts_at
            },
            ended: ended.filter(|_| status == Status::Resolved),
            name: short_name(self.name()),
            value,
        }
    }
}

fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How far an alert's `startsAt` may lie after the scaler's clock before it is not believed.
pub const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

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
    #[error(
        "alert {index}: endsAt {value:?} is not an RFC 3339 time (leave it out, or send \
         0001-01-01T00:00:00Z, for an alert that has not ended)"
    )]
    EndsAt { index: usize, value: String },
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
                value: a.starts_at.chars().take(40).collect(),
            });
        }
        if !a.ends_at.is_empty() && chrono::DateTime::parse_from_rfc3339(&a.ends_at).is_err() {
            return Err(PayloadError::EndsAt {
                index,
                value: a.ends_at.chars().take(40).collect(),
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
        let received = "2026-11-22T10:00:05Z".parse().unwrap();
        let fact = n.alerts[0].fact(Some(30.0), received);
        assert_eq!(fact.starts_at.to_rfc3339(), "2026-11-22T10:00:00+00:00");
        assert_eq!((fact.status, fact.ended), (Status::Firing, None));
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

    /// Issue 26.3: Alertmanager calls an alert whose `endsAt` has passed resolved, whatever
    /// else says so; the scaler used to scale up on such a "firing" alert.
    #[test]
    fn a_firing_alert_whose_end_has_passed_is_resolved() {
        let received: DateTime<Utc> = "2026-11-22T10:05:00Z".parse().unwrap();
        let with_end = |status: &str, end: &str| {
            let mut a = alert(status, "abc", "2026-11-22T10:00:00Z", "w");
            a["endsAt"] = end.into();
            let n = parse(notification(status, vec![a]).to_string().as_bytes()).unwrap();
            let f = n.alerts[0].fact(None, received);
            (f.status, f.ended.map(|t| t.to_rfc3339()))
        };
        let ended = Some("2026-11-22T10:04:00+00:00".to_string());
        assert_eq!(
            with_end("firing", "2026-11-22T10:04:00Z"),
            (Status::Resolved, ended.clone())
        );
        assert_eq!(
            with_end("resolved", "2026-11-22T10:04:00Z"),
            (Status::Resolved, ended)
        );
        // Not ended yet, or Go's zero time: firing.
        assert_eq!(
            with_end("firing", "2026-11-22T10:09:00Z"),
            (Status::Firing, None)
        );
        assert_eq!(
            with_end("firing", "0001-01-01T00:00:00Z"),
            (Status::Firing, None)
        );
        assert_eq!(with_end("firing", ""), (Status::Firing, None));
        let mut a = alert("firing", "abc", "2026-11-22T10:00:00Z", "w");
        a["endsAt"] = "later".into();
        let e = parse(notification("firing", vec![a]).to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("endsAt \"later\"") && e.contains("0001-01-01"),
            "{e}"
        );
    }

    /// A `startsAt` in the far future is not believed: it orders before anything; a little
    /// skew is.
    #[test]
    fn a_far_future_start_orders_before_anything() {
        let received: DateTime<Utc> = "2026-11-22T10:05:00Z".parse().unwrap();
        let began = |starts: &str| {
            let a: Alert = serde_json::from_value(alert("firing", "abc", starts, "w")).unwrap();
            let f = a.fact(None, received);
            assert_eq!(
                f.starts_at,
                starts.parse::<DateTime<Utc>>().unwrap(),
                "the key"
            );
            f.began.to_rfc3339()
        };
        assert_eq!(
            began("2099-01-01T00:00:00Z"),
            DateTime::<Utc>::MIN_UTC.to_rfc3339()
        );
        assert_eq!(began("2026-11-22T10:05:30Z"), "2026-11-22T10:05:30+00:00");
    }
}
