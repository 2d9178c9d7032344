//! What a scale-up may count on, from where the tasks are: ready ones, ones still starting,
//! ones no node can take, and how many the nodes can place at most.
//!
//! Kubernetes' HPA counts pods that are not ready as no capacity on scale-up, so a decision
//! starts from the ready tasks; replicas already asked for and still starting answer an alert
//! without asking for more. A task that no node can take means more replicas would only queue
//! as pending: the scaler stops adding (`blocked: no node`), and `max_replicas_per_node` ×
//! eligible nodes caps the bounds.

use crate::orchestrator::{Bounds, ServiceStatus, Tasks};

use super::policy::{Action, Plan};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Desired replicas (the spec's count).
    pub desired: u32,
    /// `None` when the orchestrator does not tell (every desired replica counts as ready).
    pub tasks: Option<Tasks>,
    /// The most replicas the nodes can place, when limited.
    pub ceiling: Option<u32>,
}

impl Capacity {
    pub fn of(status: &ServiceStatus) -> Capacity {
        Capacity {
            desired: status.replicas,
            tasks: status.tasks.clone(),
            ceiling: status.ceiling,
        }
    }

    /// The replicas a scale-up decision starts from: the ready tasks, at most the desired ones.
    pub fn ready(&self) -> u32 {
        self.tasks
            .as_ref()
            .map_or(self.desired, |t| t.ready.min(self.desired))
    }

    /// Why the scaler must not add replicas now, if it must not.
    pub fn blocked(&self) -> Option<String> {
        let t = self.tasks.as_ref().filter(|t| t.unplaceable > 0)?;
        Some(format!(
            "blocked: no node ({} task{} pending: {})",
            t.unplaceable,
            if t.unplaceable == 1 { "" } else { "s" },
            t.unplaceable_reason
                .as_deref()
                .unwrap_or("no suitable node")
        ))
    }

    /// The bounds with max lowered to what the nodes can place, and to the desired count while
    /// a task cannot be placed (never below min).
    pub fn bounds(&self, b: Bounds) -> Bounds {
        let mut max = b.max;
        if let Some(c) = self.ceiling {
            max = max.min(c);
        }
        if self.blocked().is_some() {
            max = max.min(self.desired);
        }
        Bounds {
            max: max.max(b.min),
            ..b
        }
    }

    /// A scale-up planned from the ready tasks, reported against the desired count: when the
    /// replicas already asked for cover it, it is no action (the alert is answered by the tasks
    /// still starting); otherwise it goes from the desired count. A block is named first.
    pub fn settle(&self, plan: &mut Plan) {
        let d = &mut plan.decision;
        if let Some(why) = self.blocked().filter(|_| d.action != Action::ScaleDown) {
            d.reason = format!("{why}; {}", d.reason);
        }
        let ready = self.ready();
        if d.action != Action::ScaleUp || ready >= self.desired {
            return;
        }
        let starting = self.tasks.as_ref().map_or(0, |t| t.starting);
        let counted = format!(
            "counted from {ready} ready of {} desired ({starting} starting)",
            self.desired
        );
        if d.to <= self.desired {
            d.reason = format!(
                "{}: {counted}, the {} desired already cover it",
                d.reason, self.desired
            );
            d.action = Action::None;
            d.from = self.desired;
            d.to = self.desired;
        } else {
            d.reason = format!("{} ({counted})", d.reason);
            d.from = self.desired;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::policy::Decision;

    fn capacity(desired: u32, ready: u32, starting: u32, unplaceable: u32) -> Capacity {
        Capacity {
            desired,
            tasks: Some(Tasks {
                ready,
                starting,
                unplaceable,
                unplaceable_reason: (unplaceable > 0)
                    .then(|| "no suitable node (max replicas per node limit exceed)".into()),
            }),
            ceiling: None,
        }
    }

    fn up(from: u32, to: u32) -> Plan {
        Plan::from_decision(Decision {
            service: "web".into(),
            from,
            to,
            action: Action::ScaleUp,
            reason: "HighQueue firing: +1".into(),
        })
    }

    const B: Bounds = Bounds {
        min: 1,
        max: 10,
        step: 1,
    };

    #[test]
    fn a_scale_up_counts_ready_tasks_and_starting_ones_answer_the_alert() {
        // 3 desired, 1 ready: +1 from the ready one is 2, which the 3 desired already cover.
        let c = capacity(3, 1, 2, 0);
        assert_eq!(c.ready(), 1);
        let mut plan = up(1, 2);
        c.settle(&mut plan);
        assert_eq!(plan.decision.action, Action::None);
        assert_eq!((plan.decision.from, plan.decision.to), (3, 3));
        assert!(
            plan.decision
                .reason
                .contains("counted from 1 ready of 3 desired (2 starting)"),
            "{}",
            plan.decision.reason
        );
        // A proportional decision wanting 5 from 1 ready goes 3 -> 5.
        let mut plan = up(1, 5);
        c.settle(&mut plan);
        assert_eq!(plan.decision.action, Action::ScaleUp);
        assert_eq!((plan.decision.from, plan.decision.to), (3, 5));
    }

    #[test]
    fn all_ready_or_unknown_leaves_the_plan_alone() {
        for c in [
            capacity(3, 3, 0, 0),
            Capacity {
                desired: 3,
                ..Capacity::default()
            },
        ] {
            assert_eq!(c.ready(), 3);
            let mut plan = up(3, 4);
            c.settle(&mut plan);
            assert_eq!(plan, up(3, 4));
            assert_eq!(c.bounds(B), B);
        }
    }

    #[test]
    fn an_unplaceable_task_blocks_adding_and_says_so() {
        let c = capacity(4, 3, 0, 1);
        assert_eq!(c.bounds(B).max, 4);
        let why = c.blocked().unwrap();
        assert!(why.starts_with("blocked: no node (1 task pending: no suitable node"));
        let mut plan = Plan::from_decision(Decision {
            service: "web".into(),
            from: 3,
            to: 3,
            action: Action::None,
            reason: "HighQueue firing but already at max 4".into(),
        });
        c.settle(&mut plan);
        assert!(plan.decision.reason.starts_with("blocked: no node"));
        // Never below min.
        let c = capacity(1, 0, 0, 1);
        assert_eq!(c.bounds(Bounds { min: 2, ..B }).max, 2);
    }

    #[test]
    fn the_placement_ceiling_caps_max() {
        let c = Capacity {
            desired: 2,
            tasks: None,
            ceiling: Some(4),
        };
        assert_eq!(c.bounds(B).max, 4);
        assert_eq!(c.bounds(Bounds { max: 3, ..B }).max, 3);
        let none = Capacity {
            ceiling: Some(0),
            ..c
        };
        assert_eq!(none.bounds(B).max, 1, "never below min");
    }
}
