//! Telling people a service is pinned at its max: the load wants more replicas than the scaler
//! may give, so the service is starving at its ceiling and someone should raise the bound or
//! add nodes. With `alertapi --alertmanager URL` the scaler posts an alert `ScalerPinnedAtMax`
//! (labels `service`, `severity=warning`) to Alertmanager's API, where the usual routes and
//! receivers take it; it is posted again on each decision that finds the service still pinned
//! (it expires by itself 5 minutes after the last post, as Alertmanager does with a silent
//! source) and resolved by the first decision that leaves the service below its max.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// The alert's name, as routes and silences match it.
pub const ALERT_NAME: &str = "ScalerPinnedAtMax";
/// How long a posted alert stays firing without another post.
const EXPIRES_AFTER: Duration = Duration::from_secs(300);

pub struct PinnedAlerts {
    /// `…/api/v2/alerts`.
    url: String,
    http: reqwest::Client,
    /// Services posted as pinned and not yet resolved.
    pinned: Mutex<HashSet<String>>,
}

impl PinnedAlerts {
    /// `alertmanager` is its base URL, e.g. `http://alertmanager:9093`.
    pub fn new(alertmanager: &str, http: reqwest::Client) -> PinnedAlerts {
        PinnedAlerts {
            url: format!("{}/api/v2/alerts", alertmanager.trim_end_matches('/')),
            http,
            pinned: Mutex::new(HashSet::new()),
        }
    }

    /// After a decision for `service` that left it at `replicas` of `max`: post the alert
    /// while the load wants more than max (`pinned`), resolve it once the service is below
    /// max. A decision with nothing new to say at max (a repeat) changes nothing.
    pub fn update(&self, service: &str, pinned: bool, replicas: u32, max: u32) {
        let resolve = {
            let mut set = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
            if pinned {
                set.insert(service.to_owned());
                false
            } else {
                replicas < max && set.remove(service)
            }
        };
        if !pinned && !resolve {
            return;
        }
        let now = chrono::Utc::now();
        let ends = if pinned {
            now + chrono::Duration::from_std(EXPIRES_AFTER).expect("5 minutes fit")
        } else {
            now
        };
        let body = serde_json::json!([{
            "labels": {"alertname": ALERT_NAME, "service": service, "severity": "warning"},
            "annotations": {
                "summary": format!(
                    "{service} is pinned at its max of {max} replicas: the load wants more"
                ),
                "description": "Raise the service's max (--max or the starvation.max label) \
                    or add nodes; meanwhile it starves at its ceiling.",
            },
            "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }]);
        let (url, http) = (self.url.clone(), self.http.clone());
        let shown = crate::util::redact::url(&url);
        tokio::spawn(async move {
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!("posting {ALERT_NAME} to {shown}: HTTP {}", r.status()),
                Err(e) => tracing::warn!("posting {ALERT_NAME} to {shown}: {e}"),
            }
        });
    }
}
