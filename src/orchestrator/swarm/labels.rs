//! The `starvation.*` service labels: bounds, shadow mode, restoring after a redeploy.

use std::collections::HashMap;

use crate::orchestrator::{BoundsOverride, OrchestratorError};

/// Services carrying `starvation.managed=true` are the ones [`Orchestrator::services`] lists.
pub const LABEL_MANAGED: &str = "starvation.managed";
pub const LABEL_MIN: &str = "starvation.min";
pub const LABEL_MAX: &str = "starvation.max";
pub const LABEL_STEP: &str = "starvation.step";
pub const LABEL_DRY_RUN: &str = "starvation.dry-run";
pub const LABEL_RESTORE: &str = "starvation.restore";

/// A `true`/`false` label such as `starvation.dry-run` (absent: `default`).
pub fn flag_from_labels(
    service: &str,
    labels: Option<&HashMap<String, String>>,
    label: &str,
    default: bool,
) -> Result<bool, OrchestratorError> {
    let Some(value) = labels.and_then(|l| l.get(label)) else {
        return Ok(default);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(OrchestratorError::BadLabel {
            service: service.to_string(),
            label: label.to_string(),
            value: value.clone(),
            expected: "true or false",
        }),
    }
}

/// `starvation.min|max|step` labels; each must be a positive integer.
pub fn bounds_from_labels(
    service: &str,
    labels: Option<&HashMap<String, String>>,
) -> Result<BoundsOverride, OrchestratorError> {
    let get = |label: &str| -> Result<Option<u32>, OrchestratorError> {
        let Some(value) = labels.and_then(|l| l.get(label)) else {
            return Ok(None);
        };
        match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(OrchestratorError::BadLabel {
                service: service.to_string(),
                label: label.to_string(),
                value: value.clone(),
                expected: "a positive integer",
            }),
        }
    };
    Ok(BoundsOverride {
        min: get(LABEL_MIN)?,
        max: get(LABEL_MAX)?,
        step: get(LABEL_STEP)?,
    })
}
