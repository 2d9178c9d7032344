//! The scaler's HTTP API: `POST /alert` (Alertmanager webhook), `GET /events`, `/metrics`,
//! `/healthz`, and the status page at `/`.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::alert;
use super::controller::{Controller, HandleError};
use super::policy::Action;

/// Alertmanager payloads are small; anything larger is refused before parsing.
pub const MAX_BODY: usize = 1024 * 1024;
/// A webhook body must arrive within this once its headers were accepted.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies read at once (each up to `MAX_BODY`): what webhooks can hold in memory is bounded.
pub const BODIES_AT_ONCE: usize = 16;
/// Firing alerts the status page lists per service.
const PAGE_FIRING: usize = 20;

pub struct ApiState {
    pub controller: Arc<Controller>,
    pub access: Access,
    bodies: Semaphore,
}

/// Who may do what.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `None` only with `--insecure-no-auth` (or a loopback listen without a token).
    pub token: Option<String>,
    /// `GET /`, `/events` and `/metrics` need the token too: they show service and alert names.
    pub protect_reads: bool,
}

impl ApiState {
    pub fn new(controller: Arc<Controller>, access: Access) -> ApiState {
        ApiState {
            controller,
            access,
            bodies: Semaphore::new(BODIES_AT_ONCE),
        }
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    let reads = Router::new()
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
        .layer(middleware::from_fn_with_state(state.clone(), guard_reads));
    Router::new()
        .route("/alert", post(alert_webhook))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(reads)
        .with_state(state)
}

/// Every error answers JSON `{"error": ...}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    outcome: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        response
    }
}

fn unauthorized() -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        outcome: "unauthorized",
        message: "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
    }
}

fn authorized(access: &Access, headers: &HeaderMap) -> bool {
    let Some(token) = &access.token else {
        return true;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer x` is `Bearer x`.
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    // Constant time: the comparison must not tell an attacker how much of the token matched.
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

async fn guard_reads(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if state.access.protect_reads && !authorized(&state.access, req.headers()) {
        return unauthorized().into_response();
    }
    next.run(req).await
}

async fn alert_webhook(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let metrics = &state.controller.metrics;
    let result = handle_alert(&state, &headers, body).await;
    metrics
        .webhook_duration
        .observe(start.elapsed().as_secs_f64());
    match result {
        Ok(response) => {
            metrics.outcome("ok");
            response
        }
        Err(e) => {
            metrics.outcome(e.outcome);
            if e.status.is_server_error() {
                tracing::error!("webhook failed: {}", e.message);
            } else {
                tracing::warn!("webhook refused ({}): {}", e.status, e.message);
            }
            e.into_response()
        }
    }
}

fn too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        outcome: "too_large",
        message: format!("payload larger than {MAX_BODY} bytes"),
    }
}

/// The body, read only once the caller is known: at most `BODIES_AT_ONCE` at a time, each
/// within `MAX_BODY` bytes and `BODY_TIMEOUT`.
async fn read_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let read = async {
        let _permit = state.bodies.acquire().await.expect("never closed");
        Limited::new(body, MAX_BODY).collect().await
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            outcome: "bad_request",
            message: format!("the body did not arrive within {BODY_TIMEOUT:?}"),
        }),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            outcome: "bad_request",
            message: format!("reading the body: {e}"),
        }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

async fn handle_alert(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // From the headers alone, before a byte of the body is read.
    if !authorized(&state.access, headers) {
        return Err(unauthorized());
    }
    let body = read_body(state, headers, body).await?;
    let notification = alert::parse(&body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        outcome: "bad_request",
        message: e.to_string(),
    })?;
    let decisions = state
        .controller
        .handle(&notification)
        .await
        .map_err(|e| match e {
            HandleError::Forbidden(message) => ApiError {
                status: StatusCode::FORBIDDEN,
                outcome: "forbidden",
                message,
            },
            HandleError::BadRequest(message) => ApiError {
                status: StatusCode::BAD_REQUEST,
                outcome: "bad_request",
                message,
            },
            // Alertmanager retries; with several scaler replicas behind one name, the retry
            // may reach the one on the leader.
            HandleError::NotLeader(message) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                outcome: "not_leader",
                message,
            },
            // 503 makes Alertmanager retry; nothing was remembered, so the retry acts.
            other => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                outcome: "orchestrator_error",
                message: other.to_string(),
            },
        })?;
    // Alertmanager groups by service, so one decision is the rule; several services in one
    // payload answer `{"decisions": [...]}`.
    let body = match decisions.as_slice() {
        [one] => json!(one),
        many => json!({ "decisions": many }),
    };
    Ok(Json(body).into_response())
}

async fn events(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(json!({ "events": state.controller.events() }))
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.controller.metrics.encode(),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small self-refreshing HTML page: services, replicas, bounds, firing alerts, decisions.
async fn status_page(State(state): State<Arc<ApiState>>) -> Html<String> {
    let controller = &state.controller;
    let mut services = String::new();
    for s in controller.overview().await {
        let replicas = s
            .replicas
            .map(|r| r.to_string())
            .unwrap_or_else(|| "?".into());
        let (min, max, step) = s
            .bounds
            .map(|b| (b.min.to_string(), b.max.to_string(), b.step.to_string()))
            .unwrap_or_default();
        let firing = if s.firing.is_empty() {
            "none".to_owned()
        } else {
            let mut lines: Vec<String> = s
                .firing
                .iter()
                .take(PAGE_FIRING)
                .map(|f| format!("{} (since {})", escape(&f.name), escape(&f.starts_at)))
                .collect();
            if s.firing.len() > PAGE_FIRING {
                lines.push(format!("and {} more", s.firing.len() - PAGE_FIRING));
            }
            lines.join("<br>")
        };
        let error = s
            .error
            .map(|e| format!("<div class=err>{}</div>", escape(&e)))
            .unwrap_or_default();
        services.push_str(&format!(
            "<tr class=service data-service=\"{name}\"><td>{name}{error}</td><td class=replicas>{replicas}</td>\
             <td>{min}</td><td>{max}</td><td>{step}</td><td class=firing>{firing}</td></tr>\n",
            name = escape(&s.name)
        ));
    }
    let mut decisions = String::new();
    for e in controller.events().iter().rev().take(20) {
        decisions.push_str(&format!(
            "<tr class=decision><td>{}</td><td>{}</td><td>{} &rarr; {}</td><td>{}</td><td>{}</td></tr>\n",
            e.time.format("%H:%M:%S"),
            escape(&e.decision.service),
            e.decision.from,
            e.decision.to,
            match e.decision.action {
                Action::ScaleUp => "scale up",
                Action::ScaleDown => "scale down",
                Action::None => "none",
            },
            escape(&e.decision.reason)
        ));
    }
    if decisions.is_empty() {
        decisions.push_str("<tr><td colspan=5>no decisions yet</td></tr>");
    }
    Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>starvation scaler</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #eee; }} .err {{ color: #b00; font-size: small; }}
</style></head><body>
<h1>starvation scaler</h1>
<p>Orchestrator: {orchestrator}. Scale events so far: <b id=scale-events>{calls}</b>.</p>
<h2>Services</h2>
<table id=services><tr><th>service</th><th>replicas</th><th>min</th><th>max</th><th>step</th><th>firing alerts</th></tr>
{services}</table>
<h2>Last decisions</h2>
<table id=decisions><tr><th>time (UTC)</th><th>service</th><th>replicas</th><th>action</th><th>reason</th></tr>
{decisions}</table>
</body></html>"#,
        orchestrator = escape(&controller.orchestrator().describe()),
        calls = controller.metrics.alert_endpoint_call.get(),
    ))
}
