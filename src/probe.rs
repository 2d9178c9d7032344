//! `starvation probe URL`: a container healthcheck for FROM-scratch images, which have no
//! shell, curl or wget. Exits 0 when the URL answers 2xx within the timeout.

use clap::Parser;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Check that URL answers 2xx (a healthcheck for images without curl); exit 0 \
if it does, 1 otherwise"
)]
pub struct Opts {
    /// The URL to GET, e.g. http://127.0.0.1:5000/healthz.
    pub url: String,

    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&opts.url)
        .map_err(|e| anyhow::anyhow!("URL {:?} is not valid: {e}", opts.url))?;
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
