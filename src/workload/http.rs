//! The service's HTTP front door. Handlers run on tokio, never on the pool model: only the
//! blocking work item of `/test-threadpool` goes to the pool, so the queue is the real backlog.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::App;
use super::metrics::RouteLabels;
use super::store::TestDocument;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        // HEAD must be safe: it would otherwise run the GET handler (block, insert a row).
        .route(
            "/test-threadpool",
            get(test_threadpool)
                .head(|| async { (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")]) }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the thread pool dropped the work item (the service is shutting down)")]
    PoolGone,
    #[error("storing the document failed: {0}")]
    Store(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.to_string() }));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// The original endpoint: block one pool thread for `--block-ms` (sync-over-async), then store
/// the document.
async fn test_threadpool(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let queued = Instant::now();
    if let Some(engine) = &app.engine {
        // `--io-model dotnet`: the request is read by a socket-engine item on a pool thread
        // before it is dispatched to the pool as its own item.
        engine.admit().await;
    }
    let (done, wait) = tokio::sync::oneshot::channel();
    let block = app.block;
    // The original runs `Task.Run(() => Thread.Sleep(block)).Wait()` on a pool thread: `Wait`
    // inlines the task there, and the task's end counts as a completion of its own before the
    // item's (`TryExecuteTaskInline` → `NotifyWorkItemProgress`; docs/dotnet-pool.md §3).
    let inlined_task = app.pool.progress();
    app.pool.enqueue(move || {
        let waited = queued.elapsed();
        std::thread::sleep(block);
        inlined_task.notify();
        let _ = done.send(waited);
    });
    let waited = wait.await.map_err(|_| ApiError::PoolGone)?;
    // Refuse rather than write into a file nobody can read again.
    app.store
        .check()
        .map_err(|e| ApiError::Store(e.to_string()))?;
    let doc = TestDocument {
        timestamp: chrono::Utc::now(),
        note: format!("Blocked a pool thread for {} ms", block.as_millis()),
    };
    let timestamp = doc.timestamp;
    if let Err(e) = app.store.insert(doc).await {
        app.metrics.store_failures.inc();
        tracing::warn!("store insert failed: {e}");
        return Err(ApiError::Store(e.to_string()));
    }
    Ok(Json(json!({
        "status": "ok",
        "instance": app.instance,
        "timestamp": timestamp,
        "queued_ms": waited.as_secs_f64() * 1000.0,
        "blocked_ms": block.as_millis() as u64,
    })))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    app.refresh_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}

/// How long `/healthz` waits for the store: below the stack's healthcheck timeout (3 s), so a
/// store that does not answer is reported as such rather than as a probe timeout.
pub const STORE_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// 503 when the store cannot take documents (its file deleted or replaced, its table gone, its
/// server unreachable or refusing inserts), else 200.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let snap = app.pool.snapshot();
    let health = match tokio::time::timeout(STORE_HEALTH_TIMEOUT, app.store.health()).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the store did not answer within {STORE_HEALTH_TIMEOUT:?}; is its server reachable?"
        )),
    };
    let (status, code, error) = match health {
        Ok(()) => ("ok", StatusCode::OK, None),
        Err(e) => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE, Some(e)),
    };
    let body = Json(json!({
        "status": status,
        "error": error,
        "instance": app.instance,
        "store": app.store.describe(),
        "pool": {
            "busy": snap.busy(),
            "available": snap.available(),
            "goal": snap.counts.goal,
            "threads": snap.counts.existing,
            "queue_length": snap.queue_length,
        },
    }));
    (code, body).into_response()
}

/// Counts every request by route and status and times it; tracks in-flight requests for the
/// drain at shutdown.
async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    app.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlightGuard(&app);
    let response = next.run(req).await;
    let labels = RouteLabels {
        route,
        status: response.status().as_u16().to_string(),
    };
    app.metrics.http_requests.get_or_create(&labels).inc();
    app.metrics
        .http_latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Decrements the in-flight count even when the client goes away mid-request.
struct InFlightGuard<'a>(&'a App);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
