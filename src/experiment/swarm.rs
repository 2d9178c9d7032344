//! `starvation experiment --backend swarm`: each run deploys the stack of `deploy/`, runs the
//! load against it, exports from the stack's Prometheus and removes the stack.

use std::path::Path;
use tokio_util::sync::CancellationToken;

use super::State;
use crate::results::runmeta::Role;

/// Everything the swarm backend needs, checked before anything starts.
pub fn preflight() -> anyhow::Result<()> {
    anyhow::bail!("--backend swarm is not yet implemented in this build; use --backend local")
}

/// One run on a freshly deployed stack. The stack is removed before this returns.
pub async fn run_one(
    _st: &State,
    _pair: u32,
    _role: Role,
    _dir: &Path,
    _cancel: &CancellationToken,
    _bar: &indicatif::ProgressBar,
    _label: &str,
) -> anyhow::Result<()> {
    anyhow::bail!("--backend swarm is not yet implemented in this build; use --backend local")
}
