//! `starvation`: detect thread-pool starvation in a containerised web service and scale it out
//! before its users feel it. One module per component; see `docs/architecture.md`.

pub mod calibrate;
pub mod child;
pub mod cli;
pub mod compare;
pub mod dotnet;
pub mod experiment;
pub mod figures;
pub mod load;
pub mod monitor;
pub mod orchestrator;
pub mod probe;
pub mod results;
pub mod scaler;
pub mod util;
pub mod workload;

/// Returned by a command the user stopped with Ctrl-C after it cleaned up; `main` exits 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;
