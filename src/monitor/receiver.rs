//! A minimal in-process Pushgateway: replicas `PUT`/`POST` their gauges (Prometheus text) to
//! `/metrics/job/<job>/<label>/<value>/...` and `DELETE` the group when they stop. Locally the
//! replicas share one port, so scraping them one by one is impossible; pushing gives each its
//! own group. A group not refreshed for [`STALE_AFTER`] (a replica killed before it could
//! delete it) is left out of samples, like a target that stopped answering scrapes.

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
        Ok(samples) => {
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
}
