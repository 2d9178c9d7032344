//! The one subcommand enum every component hangs off.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "starvation",
    version,
    about = "Detect thread-pool starvation in a containerised web service and scale it out on Docker Swarm",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open-model spike test with k6 ramping-arrival-rate semantics.
    Load(crate::load::Opts),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Load(opts) => crate::load::run(opts).await,
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
