//! `starvation probe URL`: a container healthcheck for FROM-scratch images, which have no
//! shell, curl or wget. Exits 0 when the URL answers 2xx within the timeout, or, for
//! `tcp://HOST:PORT`, when a connection opens (the .NET workload's healthcheck on Swarm: its
//! `/healthz` waits behind a starving pool like any request, docs/dotnet.md).

use clap::Parser;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Check that URL answers 2xx (a healthcheck for images without curl); exit 0 \
if it does, 1 otherwise"
)]
pub struct Opts {
    /// The URL to GET, e.g. http://127.0.0.1:5000/healthz; or tcp://127.0.0.1:5000 to
    /// connect only.
    pub url: String,

    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&opts.url)
        .map_err(|e| anyhow::anyhow!("URL {:?} is not valid: {e}", opts.url))?;
    if url.scheme() == "tcp" {
        return connect(&url, opts.timeout).await;
    }
    let client = reqwest::Client::builder().timeout(opts.timeout).build()?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET {url}: HTTP {}",
        response.status()
    );
    Ok(())
}

/// Opens (and closes) a TCP connection to `tcp://HOST:PORT`.
async fn connect(url: &reqwest::Url, timeout: Duration) -> anyhow::Result<()> {
    let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
        anyhow::bail!("{url}: say tcp://HOST:PORT, e.g. tcp://127.0.0.1:5000");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("connecting to {host}:{port}: {e}"),
        Err(_) => anyhow::bail!("connecting to {host}:{port}: no connection within {timeout:?}"),
    }
}
