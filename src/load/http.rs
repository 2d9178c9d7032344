//! The generator's HTTP client. Plain `http://` targets get hyper's HTTP/1.1 connections
//! directly: one request at a time on each, kept alive and handed back through a lock-free
//! free list, with the request built from parts parsed once. That skips what a general client
//! does for every request (URL parsing, pool bookkeeping behind a lock, redirect and proxy
//! layers), which was most of the generator's user-space time per request (docs/load.md,
//! "Measurements"). `https://` targets go through reqwest (rustls).

use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;

use super::live::Outcome;
use super::runner::RunConfig;

const AGENT: &str = concat!("starvation-load/", env!("CARGO_PKG_VERSION"));

/// Sends the run's GET.
pub enum Client {
    Plain(Box<Plain>),
    Tls(reqwest::Client, url::Url),
}

impl Client {
    pub fn new(config: &RunConfig) -> Result<Self, reqwest::Error> {
        if config.url.scheme() == "http" {
            return Ok(Client::Plain(Box::new(Plain::new(config))));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(config.max_vus as usize)
            .user_agent(AGENT)
            .build()?;
        Ok(Client::Tls(client, config.url.clone()))
    }

    /// One GET, its body read to the end.
    pub async fn get(&self) -> Outcome {
        match self {
            Client::Plain(p) => p.get().await,
            Client::Tls(client, url) => tls_get(client, url).await,
        }
    }
}

/// Keep-alive HTTP/1.1 connections to one `http://` target.
pub struct Plain {
    /// `host:port` to connect to.
    authority: String,
    uri: hyper::Uri,
    host: HeaderValue,
    timeout: Duration,
    /// Idle connections; at most one per VU is ever open.
    idle: ArrayQueue<SendRequest<Empty<Bytes>>>,
}

impl Plain {
    fn new(config: &RunConfig) -> Self {
        let url = &config.url;
        let host = url.host_str().unwrap_or("localhost");
        let authority = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let uri = path
            .parse()
            .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        // Host as the URL wrote it (with the port only when it is not the default).
        let host_header = &url[url::Position::BeforeHost..url::Position::AfterPort];
        Self {
            host: HeaderValue::from_str(host_header)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            authority,
            uri,
            timeout: config.timeout,
            idle: ArrayQueue::new(config.max_vus.clamp(1, 1 << 20) as usize),
        }
    }

    async fn get(&self) -> Outcome {
        match tokio::time::timeout(self.timeout, self.exchange()).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Timeout,
        }
    }

    async fn exchange(&self) -> Outcome {
        // A kept-alive connection the server closed meanwhile fails before the request is
        // sent (`is_canceled`): then once more on a new connection, as hyper's pool does.
        let mut reused = true;
        loop {
            let mut conn = match self.checkout().await {
                Some(c) => c,
                None => {
                    reused = false;
                    match self.connect().await {
                        Ok(c) => c,
                        Err(e) => return classify_error(&e),
                    }
                }
            };
            let req = hyper::Request::get(self.uri.clone())
                .header(HOST, self.host.clone())
                .header(USER_AGENT, HeaderValue::from_static(AGENT))
                .body(Empty::<Bytes>::new())
                .expect("a GET from parsed parts is valid");
            let resp = match conn.send_request(req).await {
                Ok(r) => r,
                Err(e) if reused && e.is_canceled() => {
                    reused = false;
                    continue;
                }
                Err(e) => return classify_error(&e),
            };
            let status = resp.status().as_u16();
            return match resp.into_body().collect().await {
                Ok(_) => {
                    if !conn.is_closed() {
                        // Full only if more requests ran at once than VUs exist: then close it.
                        let _ = self.idle.push(conn);
                    }
                    Outcome::Status(status)
                }
                Err(e) => classify_error(&e),
            };
        }
    }

    /// An idle connection that is still open, if any.
    async fn checkout(&self) -> Option<SendRequest<Empty<Bytes>>> {
        while let Some(mut c) = self.idle.pop() {
            if !c.is_closed() && c.ready().await.is_ok() {
                return Some(c);
            }
        }
        None
    }

    async fn connect(&self) -> std::io::Result<SendRequest<Empty<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        // Drives the connection until it closes (the sender dropped, or the server hung up).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

async fn tls_get(client: &reqwest::Client, url: &url::Url) -> Outcome {
    let classify = |e: &reqwest::Error| {
        if e.is_timeout() {
            Outcome::Timeout
        } else {
            classify_error(e)
        }
    };
    match client.get(url.clone()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(_) => Outcome::Status(status),
                Err(e) => classify(&e),
            }
        }
        Err(e) => classify(&e),
    }
}

/// Maps a client error (and its sources) to the error classes the summary counts.
pub fn classify_error(e: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Outcome::ConnectRefused,
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    return Outcome::Reset;
                }
                TimedOut => return Outcome::Timeout,
                _ => {}
            }
        }
        let text = err.to_string();
        // hyper's words for a connection the peer closed under the request: "connection closed
        // before message completed", "connection was not ready" (closed between connect and
        // send), "channel closed" (the connection task died), "reset".
        if text.contains("connection closed")
            || text.contains("connection was not ready")
            || text.contains("channel closed")
            || text.contains("reset")
        {
            return Outcome::Reset;
        }
        source = err.source();
    }
    // e.g. no route to host, DNS failure, a malformed response
    Outcome::OtherError
}
