//! A minimal in-process Pushgateway: replicas `PUT`/`POST` their gauges (Prometheus text) to
//! `/metrics/job/<job>/<label>/<value>/...` and `DELETE` the group when they stop. Locally the
//! replicas share one port, so scraping them one by one is impossible; pushing gives each its
//! own group. A group not refreshed for [`STALE_AFTER`] (a replica killed before it could
//! delete it) is left out of samples, like a target that stopped answering scrapes. Like the
//! Pushgateway, each group also carries `push_time_seconds` (unix time of its last push), which
//! the alert rules' staleness filter reads on every path.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rules::{Labels, Sample};

pub const STALE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Groups {
    groups: BTreeMap<Labels, (Instant, Vec<Sample>)>,
}

impl Groups {
    /// Every sample of every fresh group, with the group's labels added.
    pub fn samples(&mut self, now: Instant) -> Vec<Sample> {
        self.groups
            .retain(|_, (at, _)| now.saturating_duration_since(*at) <= STALE_AFTER);
        self.groups
            .values()
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

pub type Shared = Arc<Mutex<Groups>>;

fn grouping(job: &str, rest: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    labels.insert("job".into(), job.into());
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if !parts.len().is_multiple_of(2) {
        return Err(format!("odd number of grouping path segments in {rest:?}"));
    }
    for kv in parts.chunks(2) {
        labels.insert(kv[0].into(), kv[1].into());
    }
    Ok(labels)
}

async fn push(
    State(groups): State<Shared>,
    Path((job, rest)): Path<(String, String)>,
    body: Bytes,
) -> (StatusCode, String) {
    let group = match grouping(&job, &rest) {
        Ok(g) => g,
        Err(e) => return (StatusCode::BAD_REQUEST, e),
    };
    let text = String::from_utf8_lossy(&body);
    match super::text_format::parse(&text, &group) {
        Ok(mut samples) => {
            samples.push(push_time(&group, std::time::SystemTime::now()));
            let mut g = groups.lock().unwrap_or_else(|e| e.into_inner());
            g.groups.insert(group, (Instant::now(), samples));
            (StatusCode::OK, String::new())
        }
        Err(e) => (StatusCode::BAD_REQUEST, e),
    }
}

async fn delete(
    State(groups): State<Shared>,
    Path((job, rest)): Path<(String, String)>,
) -> (StatusCode, String) {
    match grouping(&job, &rest) {
        Ok(group) => {
            let mut g = groups.lock().unwrap_or_else(|e| e.into_inner());
            g.groups.remove(&group);
            (StatusCode::ACCEPTED, String::new())
        }
        Err(e) => (StatusCode::BAD_REQUEST, e),
    }
}

/// The `push_time_seconds` sample the Pushgateway adds to a group pushed at `at`.
fn push_time(group: &Labels, at: std::time::SystemTime) -> Sample {
    let mut labels = group.clone();
    labels.insert("__name__".into(), "push_time_seconds".into());
    let value = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    Sample { labels, value }
}

pub fn router(groups: Shared) -> Router {
    Router::new()
        .route(
            "/metrics/job/{job}/{*rest}",
            put(push).post(push).delete(delete),
        )
        .with_state(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_workload_push_body() {
        let group = grouping("webserver", "instance/web-1/service/web").unwrap();
        let body = "# HELP x y\n# TYPE system_runtime_threadpool_queue_length gauge\n\
                    system_runtime_threadpool_queue_length 7\nbusy_worker_threads{a=\"b,c\"} 2.5\n# EOF\n";
        let s = super::super::text_format::parse(body, &group).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value, 7.0);
        assert_eq!(s[0].labels["instance"], "web-1");
        assert_eq!(s[0].labels["service"], "web");
        assert_eq!(s[0].labels["job"], "webserver");
        assert_eq!(s[1].labels["a"], "b,c");
        assert!(grouping("j", "instance").is_err());
    }

    #[tokio::test]
    async fn every_group_carries_its_push_time() {
        let groups: Shared = Arc::default();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let (status, _) = push(
            State(groups.clone()),
            Path(("webserver".into(), "instance/web-1/service/web".into())),
            Bytes::from_static(b"system_runtime_threadpool_queue_length 7\n"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let samples = groups.lock().unwrap().samples(Instant::now());
        let t = samples
            .iter()
            .find(|s| s.labels["__name__"] == "push_time_seconds")
            .expect("push_time_seconds added");
        assert_eq!(t.labels["instance"], "web-1");
        assert_eq!(t.labels["service"], "web");
        assert!(t.value >= before && t.value < before + 5.0, "{}", t.value);
    }
}
