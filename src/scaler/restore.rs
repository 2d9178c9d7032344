//! Surviving `docker stack deploy`: a redeploy sends the stack file's `replicas` again and
//! resets a scaled service to it (docker/cli#2235), undoing the scaler's work in the middle of
//! a load. The scaler watches the orchestrator's outside changes (Swarm: the Engine's service
//! update events) and puts back the count it last set, within bounds, unless the service opts
//! out (`starvation.restore=false`). Only a lowered count is restored: someone who scaled up by
//! hand gave the service more than the scaler asked for, and scale-down stays the policy's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::controller::Controller;
use super::policy::{Action, Decision, Plan};

/// Watches outside changes until `stop`, reconnecting after a broken stream. After each
/// (re)connection every service the scaler has scaled is checked once, so a change made while
/// the stream was down is not missed.
pub async fn watch(controller: Arc<Controller>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let Some(mut changes) = controller.orchestrator().outside_changes() else {
            return;
        };
        let connected = Instant::now();
        let scaled: Vec<String> = controller
            .scaled_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for service in scaled {
            restore(&controller, &service).await;
        }
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = changes.next() => next,
            };
            match next {
                Some(Ok(service)) => {
                    restore(&controller, &service).await;
                }
                Some(Err(e)) => {
                    tracing::warn!("watching for outside changes: {e}");
                    break;
                }
                None => break,
            }
        }
        // The Engine restarted or the stream broke: again at once if it had lasted a minute
        // (a client timeout), else backing off (1, 2, 4 … 16 s).
        failures = if connected.elapsed() > Duration::from_secs(60) {
            0
        } else {
            failures.saturating_add(1)
        };
        let wait = Duration::from_secs((1u64 << failures.min(5)) / 2);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// After an outside change to `service`: back to the count the scaler last set, if the change
/// lowered it. Returns the decision when one was carried out.
pub async fn restore(controller: &Controller, service: &str) -> Option<Decision> {
    let last = *controller
        .scaled_to
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(service)?;
    if controller.may_act().await.is_err() {
        return None;
    }
    let memory = controller.memory(service);
    let mut memory = memory.lock().await;
    let seen = match controller.seen(service).await {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!("{service}: not restored: {e}");
            return None;
        }
    };
    let bounds = seen.capacity.bounds(seen.bounds);
    let to = last.clamp(bounds.min, bounds.max);
    if !seen.restore || to <= seen.replicas {
        return None;
    }
    let plan = Plan::from_decision(Decision {
        service: service.to_owned(),
        from: seen.replicas,
        to,
        action: Action::ScaleUp,
        reason: format!(
            "restored: an outside update (e.g. docker stack deploy) set {} replicas; the scaler \
             had set {last}",
            seen.replicas
        ),
    });
    match controller.apply(&mut memory, &plan, &seen, None).await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("{service}: not restored: {e}");
            None
        }
    }
}
