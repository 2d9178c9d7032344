//! Kubernetes HPA's scaling `behavior` (autoscaling/v2), applied to a recommended replica
//! count: per direction a stabilization window, rate policies (`Pods` or `Percent` per period)
//! chosen by `selectPolicy` (Max, Min, Disabled), and a tolerance. The same rules as HPA's
//! `normalizeDesiredReplicasWithBehaviors`: stabilize (the applied recommendation is the
//! highest of the down window and the lowest of the up window, the current count in between),
//! then limit the change to what the policies allow since each period began, then the bounds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PolicyType {
    Pods,
    Percent,
}

/// At most `value` pods (or percent of the replicas at the period's start) per `period`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RatePolicy {
    pub kind: PolicyType,
    pub value: u32,
    pub period: Duration,
}

/// Which policy applies when several do: the one allowing the most change (Max, HPA's
/// default), the least (Min), or none: no scaling in that direction (Disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// One direction's rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rules {
    pub stabilization_window: Duration,
    pub policies: Vec<RatePolicy>,
    pub select: Select,
    /// No change while the usage ratio is within this of 1 (HPA: 0.1).
    pub tolerance: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Default for Behavior {
    /// HPA's defaults: up at once by max(100 %, 4 pods) per 15 s; down by up to 100 % per 15 s
    /// after a 300 s stabilization window; tolerance 0.1 both ways.
    fn default() -> Self {
        let per15 = Duration::from_secs(15);
        Behavior {
            up: Rules {
                stabilization_window: Duration::ZERO,
                policies: vec![
                    RatePolicy {
                        kind: PolicyType::Percent,
                        value: 100,
                        period: per15,
                    },
                    RatePolicy {
                        kind: PolicyType::Pods,
                        value: 4,
                        period: per15,
                    },
                ],
                select: Select::Max,
                tolerance: 0.1,
            },
            down: Rules {
                stabilization_window: Duration::from_secs(300),
                policies: vec![RatePolicy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period: per15,
                }],
                select: Select::Max,
                tolerance: 0.1,
            },
        }
    }
}

/// One direction's policies as one flag value (clap would take a `Vec` as repeated values).
#[derive(Debug, Clone, PartialEq)]
pub struct Policies(pub Vec<RatePolicy>);

impl std::str::FromStr for Policies {
    type Err = String;

    fn from_str(s: &str) -> Result<Policies, String> {
        parse_policies(s).map(Policies)
    }
}

/// `Pods:4:60s,Percent:10:60s`: the policies of one direction (flags and service labels).
pub fn parse_policies(spec: &str) -> Result<Vec<RatePolicy>, String> {
    let mut out = vec![];
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let fields: Vec<&str> = part.split(':').map(str::trim).collect();
        let [kind, value, period] = fields[..] else {
            return Err(format!(
                "policy {part:?}: expected TYPE:VALUE:PERIOD, e.g. Pods:4:15s or Percent:100:15s"
            ));
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "pods" => PolicyType::Pods,
            "percent" => PolicyType::Percent,
            _ => return Err(format!("policy {part:?}: type must be Pods or Percent")),
        };
        let value: u32 = value
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("policy {part:?}: value must be a positive integer"))?;
        let period = humantime::parse_duration(period)
            .ok()
            .filter(|p| !p.is_zero() && *p <= Duration::from_secs(1800))
            .ok_or_else(|| {
                format!("policy {part:?}: period must be a duration in (0, 30m], e.g. 15s")
            })?;
        out.push(RatePolicy {
            kind,
            value,
            period,
        });
    }
    if out.is_empty() {
        return Err("no policy given: e.g. Pods:4:15s,Percent:100:15s".into());
    }
    Ok(out)
}

/// HPA's replica formula on a service total `value` with a per-replica `target`:
/// ceil(value / target), or no change while the per-replica ratio is within the direction's
/// tolerance. `current` 0 counts as 1.
pub fn recommend(value: f64, target: f64, current: u32, b: &Behavior) -> u32 {
    let ratio = value / current.max(1) as f64 / target;
    let tolerance = if ratio >= 1.0 {
        b.up.tolerance
    } else {
        b.down.tolerance
    };
    if (ratio - 1.0).abs() <= tolerance {
        return current;
    }
    // `as` saturates: a huge value asks for u32::MAX, then the bounds apply.
    (value / target).ceil() as u32
}

/// Why the applied count differs from the recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Held by a stabilization window.
    Stabilized,
    ScaleUpLimit,
    ScaleDownLimit,
    TooMany,
    TooFew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: u32,
    pub limit: Option<Limit>,
}

/// What one service's behavior remembers: recent recommendations and scale events.
#[derive(Debug, Default)]
pub struct History {
    /// HPA starts a service's history with its current count, so the first recommendation
    /// cannot scale down past the down window.
    seeded: bool,
    recommendations: VecDeque<(Instant, u32)>,
    ups: VecDeque<(Instant, u32)>,
    downs: VecDeque<(Instant, u32)>,
}

/// Kept at most: a recommendation per second over a 30-minute window is 1,800.
const MAX_ENTRIES: usize = 4096;

fn within(t: Instant, now: Instant, d: Duration) -> bool {
    // HPA keeps samples strictly after `now - window`.
    now.saturating_duration_since(t) < d
}

fn changed_in(events: &VecDeque<(Instant, u32)>, period: Duration, now: Instant) -> u32 {
    events
        .iter()
        .filter(|(t, _)| within(*t, now, period))
        .map(|(_, n)| n)
        .sum()
}

impl History {
    /// The replicas to set for `desired` (already through [`recommend`]), within [min, max].
    pub fn normalize(
        &mut self,
        b: &Behavior,
        current: u32,
        desired: u32,
        (min, max): (u32, u32),
        now: Instant,
    ) -> Normalized {
        if !self.seeded {
            self.seeded = true;
            self.recommendations.push_back((now, current));
        }
        let keep = b.up.stabilization_window.max(b.down.stabilization_window);
        self.recommendations
            .retain(|(t, _)| within(*t, now, keep.max(Duration::from_secs(1))));
        let (mut up, mut down) = (desired, desired);
        for &(t, r) in &self.recommendations {
            if within(t, now, b.up.stabilization_window) {
                up = up.min(r);
            }
            if within(t, now, b.down.stabilization_window) {
                down = down.max(r);
            }
        }
        self.recommendations.push_back((now, desired));
        if self.recommendations.len() > MAX_ENTRIES {
            self.recommendations.pop_front();
        }
        let stabilized = current.max(up).min(down);
        let mut limit = (stabilized != desired).then_some(Limit::Stabilized);

        let replicas = if stabilized > current {
            let cap = self.up_limit(current, &b.up, now).max(current);
            if max <= cap {
                if stabilized > max {
                    limit = Some(Limit::TooMany);
                }
                stabilized.min(max)
            } else {
                if stabilized > cap {
                    limit = Some(Limit::ScaleUpLimit);
                }
                stabilized.min(cap)
            }
        } else if stabilized < current {
            let floor = self.down_limit(current, &b.down, now).min(current);
            if min >= floor {
                if stabilized < min {
                    limit = Some(Limit::TooFew);
                }
                stabilized.max(min)
            } else {
                if stabilized < floor {
                    limit = Some(Limit::ScaleDownLimit);
                }
                stabilized.max(floor)
            }
        } else {
            stabilized
        };
        Normalized {
            replicas: replicas.clamp(min, max.max(min)),
            limit,
        }
    }

    /// Record a change that was carried out, for the rate policies.
    pub fn record(&mut self, from: u32, to: u32, now: Instant) {
        let keep = Duration::from_secs(1800);
        for q in [&mut self.ups, &mut self.downs] {
            q.retain(|(t, _)| within(*t, now, keep));
        }
        let q = if to > from {
            &mut self.ups
        } else {
            &mut self.downs
        };
        q.push_back((now, from.abs_diff(to)));
        if q.len() > MAX_ENTRIES {
            q.pop_front();
        }
    }

    /// The replicas at each policy's period start, from the changes since.
    fn period_start(&self, current: u32, p: &RatePolicy, now: Instant) -> u32 {
        (current + changed_in(&self.downs, p.period, now))
            .saturating_sub(changed_in(&self.ups, p.period, now))
    }

    fn up_limit(&self, current: u32, r: &Rules, now: Instant) -> u32 {
        let proposals = r.policies.iter().map(|p| {
            let start = self.period_start(current, p, now) as f64;
            match p.kind {
                PolicyType::Pods => start + p.value as f64,
                // Rounded up, or a small service could never grow.
                PolicyType::Percent => (start * (1.0 + p.value as f64 / 100.0)).ceil(),
            }
        });
        let pick = match r.select {
            Select::Disabled => return current,
            Select::Max => proposals.fold(f64::MIN, f64::max),
            Select::Min => proposals.fold(f64::MAX, f64::min),
        };
        pick.clamp(0.0, u32::MAX as f64) as u32
    }

    fn down_limit(&self, current: u32, r: &Rules, now: Instant) -> u32 {
        let proposals = r.policies.iter().map(|p| {
            let start = self.period_start(current, p, now) as f64;
            match p.kind {
                PolicyType::Pods => start - p.value as f64,
                // Truncated, as HPA does.
                PolicyType::Percent => (start * (1.0 - p.value as f64 / 100.0)).trunc(),
            }
        });
        // The most change down is the lowest count.
        let pick = match r.select {
            Select::Disabled => return current,
            Select::Max => proposals.fold(f64::MAX, f64::min),
            Select::Min => proposals.fold(f64::MIN, f64::max),
        };
        pick.clamp(0.0, u32::MAX as f64) as u32
    }
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;
