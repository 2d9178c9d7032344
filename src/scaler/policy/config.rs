//! The policy's settings (`alertapi`'s flags) and their defaults.

use std::time::Duration;

use crate::scaler::behavior::Behavior;

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// +step per new firing alert (the paper's behaviour, minus its bugs).
    Step,
    /// Kubernetes HPA's formula: desired = ceil(value / target), with a 10 % tolerance.
    Proportional,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub kind: PolicyKind,
    /// Per-replica target of the alert's `value` annotation (proportional policy) and of the
    /// reconciliation query.
    pub target: f64,
    /// HPA's behavior (tolerance, stabilization, rate policies) for proportional decisions.
    pub behavior: Behavior,
    /// A reconciliation loop owns scale-down: the quiet-period step-down is off.
    pub reconciling: bool,
    pub cooldown: Duration,
    pub scale_down_delay: Duration,
    pub scale_down: bool,
    /// A firing alert neither re-sent nor resolved for this long is forgotten, as if resolved
    /// (a lost resolve, an Alertmanager restart).
    pub firing_ttl: Duration,
    /// An alert that fires again this soon after its resolve continues its episode (a rule
    /// without `for` flapping around its threshold is one episode, not one per flap).
    pub flap_window: Duration,
}

/// `alertapi`'s defaults (its flags use the same values).
pub const DEFAULT_TARGET: f64 = 20.0;
pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(15);
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(60);
pub const DEFAULT_FIRING_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(60);

impl PolicyConfig {
    /// The step policy (the paper's) with `cooldown`, scaling down or not, other values default.
    pub fn step(cooldown: Duration, scale_down: bool) -> Self {
        PolicyConfig {
            kind: PolicyKind::Step,
            target: DEFAULT_TARGET,
            behavior: Behavior::default(),
            reconciling: false,
            cooldown,
            scale_down_delay: DEFAULT_SCALE_DOWN_DELAY,
            scale_down,
            firing_ttl: DEFAULT_FIRING_TTL,
            flap_window: DEFAULT_FLAP_WINDOW,
        }
    }
}
