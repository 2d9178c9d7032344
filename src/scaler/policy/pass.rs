//! The running state of one plan: what the alerts so far left (replicas, cooldown, episodes
//! acted on) and what happened to each, for the decision's reason.

use std::collections::HashSet;
use std::time::Instant;

use super::{Action, Decision, Key, Plan};

/// The running state of one plan: replicas and cooldown as they would be after the alerts so
/// far, and what happened to each.
pub(super) struct Pass {
    pub(super) replicas: u32,
    pub(super) last_up: Option<Instant>,
    pub(super) seen: Vec<Key>,
    pub(super) seen_set: HashSet<Key>,
    pub(super) scaled: Option<String>,
    pub(super) first: Option<String>,
    pub(super) duplicates: usize,
    pub(super) held: usize,
    pub(super) at_max: usize,
    pub(super) no_more: usize,
    pub(super) firing: usize,
    pub(super) capped: bool,
}

impl Pass {
    pub(super) fn new(replicas: u32, last_up: Option<Instant>) -> Pass {
        Pass {
            replicas,
            last_up,
            seen: vec![],
            seen_set: HashSet::new(),
            scaled: None,
            first: None,
            duplicates: 0,
            held: 0,
            at_max: 0,
            no_more: 0,
            firing: 0,
            capped: false,
        }
    }

    pub(super) fn remember(&mut self, key: Key) {
        if self.seen_set.insert(key.clone()) {
            self.seen.push(key);
        }
    }

    pub(super) fn first_reason(&mut self, reason: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(reason());
        }
    }

    /// The scale-up's reason (else the first alert's), with a count of the others: bounded
    /// whatever the number of alerts.
    pub(super) fn reason(&self) -> Option<String> {
        let main = self.scaled.clone().or_else(|| self.first.clone())?;
        if self.firing <= 1 {
            return Some(main);
        }
        let parts: Vec<String> = [
            (self.duplicates, "already acted on"),
            (self.held, "held back by the cooldown"),
            (self.at_max, "at max"),
            (self.no_more, "needing no more replicas"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        Some(format!(
            "{main} ({} firing alerts: {})",
            self.firing,
            parts.join(", ")
        ))
    }

    pub(super) fn into_plan(self, service: &str, current: u32, reason: String) -> Plan {
        Plan {
            decision: Decision {
                service: service.to_owned(),
                from: current,
                to: self.replicas,
                action: if self.replicas > current {
                    Action::ScaleUp
                } else {
                    Action::None
                },
                reason,
            },
            seen_keys: self.seen,
            wants_more: self.at_max > 0 || self.capped,
        }
    }
}
