//! The scaler's HTTP API: `POST /alert` (Alertmanager webhook), `GET /events`, `/metrics`,
//! `/healthz`, and the status page at `/`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

use super::alert;
use super::controller::{Controller, HandleError};
use super::policy::Action;

/// Alertmanager payloads are small; anything larger is refused before parsing.
pub const MAX_BODY: usize = 1024 * 1024;

pub struct ApiState {
    pub controller: Arc<Controller>,
    /// `None` only with `--insecure-no-auth`.
    pub token: Option<String>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/alert", post(alert_webhook))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/", get(status_page))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

fn authorized(state: &ApiState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time: the comparison must not tell an attacker how much of the token matched.
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

async fn alert_webhook(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
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

async fn handle_alert(
    state: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !authorized(state, headers) {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            outcome: "unauthorized",
            message: "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
        });
    }
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        ApiError {
            status,
            outcome: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            },
            message: if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("payload larger than {MAX_BODY} bytes")
            } else {
                rejection.body_text()
            },
        }
    })?;
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
            s.firing
                .iter()
                .map(|f| format!("{} (since {})", escape(&f.name), escape(&f.starts_at)))
                .collect::<Vec<_>>()
                .join("<br>")
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
