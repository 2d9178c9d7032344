//! The Engine API calls the Swarm orchestrator makes ([`ServiceApi`]) and the real client
//! ([`EngineApi`]): bollard for the read-only calls, raw JSON for the spec round trip and the
//! calls whose bollard models lose fields.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::Service;
use bollard::query_parameters::{EventsOptions, ListServicesOptions};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::orchestrator::OrchestratorError;

/// What an Engine API call reported, reduced to what scaling decides on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such service")]
    NotFound,
    /// The version sent with an update is not the service's current one.
    #[error("{0}")]
    OutOfSequence(String),
    #[error("{0}")]
    Other(String),
}

impl From<bollard::errors::Error> for ApiError {
    fn from(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => ApiError::NotFound,
            bollard::errors::Error::DockerResponseServerError { message, .. }
                if message.contains("update out of sequence") =>
            {
                ApiError::OutOfSequence(message)
            }
            other => ApiError::Other(other.to_string()),
        }
    }
}

/// The Engine API calls the Swarm orchestrator makes. [`EngineApi`] is the real one.
pub trait ServiceApi: Send + Sync + 'static {
    /// `GET /services/{id or name}`: the service object exactly as the Engine sent it.
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// `POST /services/{id}/update?version={version}` with the whole spec, as raw JSON.
    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// `GET /services?filters={"label":[label]}`; `label` is `key` or `key=value`.
    fn list_labelled<'a>(&'a self, label: &'a str)
    -> BoxFuture<'a, Result<Vec<Service>, ApiError>>;

    /// `GET {path}` (e.g. `/info`, `/nodes`, `/tasks?filters=...`): the Engine's JSON as it
    /// sent it, for the read-only calls readiness, placement and leadership need.
    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// The names of services as the Engine reports them updated (`/events`, type service,
    /// action update), until the connection ends. Fakes that do not script events end at once.
    fn service_updates(&self) -> BoxStream<'static, Result<String, ApiError>> {
        Box::pin(futures::stream::empty())
    }

    /// Where the API is, for logs ("unix:///var/run/docker.sock").
    fn endpoint(&self) -> String;
}

/// Shared APIs: keep an `Arc` to a fake (or a wrapper) and give the orchestrator a clone.
impl<T: ServiceApi + ?Sized> ServiceApi for Arc<T> {
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        (**self).inspect(service)
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        (**self).update(service_id, version, spec)
    }

    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Service>, ApiError>> {
        (**self).list_labelled(label)
    }

    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        (**self).get(path)
    }

    fn service_updates(&self) -> BoxStream<'static, Result<String, ApiError>> {
        (**self).service_updates()
    }

    fn endpoint(&self) -> String {
        (**self).endpoint()
    }
}
/// The Docker Engine API over the unix socket, or wherever `DOCKER_HOST` points.
#[derive(Debug, Clone)]
pub struct EngineApi {
    docker: Docker,
    endpoint: String,
    /// For the raw JSON calls: a client bound to the socket (or TCP host) and the versioned
    /// base URL, `http://docker/v1.41`.
    raw: reqwest::Client,
    raw_base: String,
}

impl EngineApi {
    /// Connects like the docker CLI does (`DOCKER_HOST`, else the default unix socket) and
    /// negotiates the API version down to what the Engine speaks (20.10 speaks 1.41).
    pub async fn connect() -> Result<EngineApi, OrchestratorError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let fail = |e: &dyn std::fmt::Display| {
            OrchestratorError::Backend(format!("Docker at {endpoint}: {e}"))
        };
        let docker = Docker::connect_with_defaults()
            .map_err(|e| fail(&e))?
            .negotiate_version()
            .await
            .map_err(|e| fail(&e))?;
        let (builder, host) = if let Some(path) = endpoint.strip_prefix("unix://") {
            (
                reqwest::Client::builder().unix_socket(path),
                "docker".to_string(),
            )
        } else if let Some(addr) = endpoint.strip_prefix("tcp://") {
            (reqwest::Client::builder(), addr.to_string())
        } else {
            return Err(fail(
                &"only unix:// and tcp:// (plain HTTP) DOCKER_HOST are supported",
            ));
        };
        let raw = builder
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| fail(&e))?;
        let v = docker.client_version();
        let raw_base = format!("http://{host}/v{}.{}", v.major_version, v.minor_version);
        Ok(EngineApi {
            docker,
            endpoint,
            raw,
            raw_base,
        })
    }

    /// The bollard client, for callers that need more of the API (tests, deploy).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Send a request; a JSON answer on success, else the Engine's `message` as an error.
    async fn raw_call(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Other(format!("{} unreachable: {e}", self.endpoint)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Other(format!("reading the Engine's answer: {e}")))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(match status.as_u16() {
            404 => ApiError::NotFound,
            _ if message.contains("update out of sequence") => ApiError::OutOfSequence(message),
            code => ApiError::Other(format!("HTTP {code}: {message}")),
        })
    }
}

impl ServiceApi for EngineApi {
    fn inspect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = format!("{}/services/{}", self.raw_base, url_segment(service));
            self.raw_call(self.raw.get(url)).await
        })
    }

    fn update<'a>(
        &'a self,
        service_id: &'a str,
        version: u64,
        spec: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let url = format!(
                "{}/services/{}/update",
                self.raw_base,
                url_segment(service_id)
            );
            let req = self
                .raw
                .post(url)
                .query(&[("version", version)])
                .json(&spec);
            let answer = self.raw_call(req).await?;
            for warning in answer["Warnings"].as_array().into_iter().flatten() {
                tracing::warn!(service = service_id, "Docker: {warning}");
            }
            Ok(())
        })
    }

    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Service>, ApiError>> {
        Box::pin(async move {
            let options = ListServicesOptions {
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![label.to_string()],
                )])),
                status: None,
            };
            Ok(self.docker.list_services(Some(options)).await?)
        })
    }

    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = format!("{}{path}", self.raw_base);
            self.raw_call(self.raw.get(url)).await
        })
    }

    fn service_updates(&self) -> BoxStream<'static, Result<String, ApiError>> {
        let options = EventsOptions {
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["service".to_string()]),
                ("event".to_string(), vec!["update".to_string()]),
            ])),
            ..Default::default()
        };
        Box::pin(
            self.docker
                .events(Some(options))
                .filter_map(|event| async move {
                    match event {
                        Ok(e) => e.actor?.attributes?.remove("name").map(Ok),
                        Err(e) => Some(Err(ApiError::from(e))),
                    }
                }),
        )
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
}

/// A service name or ID as one URL path segment.
pub(super) fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
