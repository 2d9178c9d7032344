//! The scaler's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub service: String,
    pub direction: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockedLabels {
    pub service: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

pub struct ScalerMetrics {
    /// The original's name. It counted every call because every call scaled; here it counts
    /// the webhook calls that changed a replica count.
    pub alert_endpoint_call: Gauge,
    pub scale_events: Family<ScaleLabels, Counter>,
    pub replicas: Family<ServiceLabels, Gauge>,
    pub desired: Family<ServiceLabels, Gauge>,
    pub scaling_blocked: Family<BlockedLabels, Gauge>,
    pub webhook_requests: Family<OutcomeLabels, Counter>,
    pub webhook_duration: Histogram,
    registry: Registry,
}

impl ScalerMetrics {
    pub fn new() -> ScalerMetrics {
        let m = ScalerMetrics {
            alert_endpoint_call: Gauge::default(),
            scale_events: Family::default(),
            replicas: Family::default(),
            desired: Family::default(),
            scaling_blocked: Family::default(),
            webhook_requests: Family::default(),
            webhook_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            registry: Registry::default(),
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "alert_endpoint_call",
            "Webhook calls that changed a replica count (the original AlertAPI's metric)",
            m.alert_endpoint_call.clone(),
        );
        r.register(
            "starvation_scale_events",
            "Replica changes made, by service, direction (up/down) and reason",
            m.scale_events.clone(),
        );
        r.register(
            "starvation_service_replicas",
            "Desired replicas of each managed service as last seen",
            m.replicas.clone(),
        );
        r.register(
            "starvation_desired_replicas",
            "Replicas the last decision wanted for each service (also in shadow mode)",
            m.desired.clone(),
        );
        r.register(
            "starvation_scaling_blocked",
            "1 while a service's scaling is held: at_max (the load wants more than max), dry_run (shadow mode)",
            m.scaling_blocked.clone(),
        );
        r.register(
            "starvation_webhook_requests",
            "POST /alert calls by outcome (ok, bad_request, unauthorized, forbidden, too_large, orchestrator_error, not_leader)",
            m.webhook_requests.clone(),
        );
        r.register(
            "starvation_webhook_duration_seconds",
            "Time to handle one POST /alert, orchestrator calls included",
            m.webhook_duration.clone(),
        );
        m
    }

    pub fn blocked(&self, service: &str, reason: &str, on: bool) {
        self.scaling_blocked
            .get_or_create(&BlockedLabels {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
            .set(on as i64);
    }

    pub fn outcome(&self, outcome: &str) {
        self.webhook_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for ScalerMetrics {
    fn default() -> Self {
        ScalerMetrics::new()
    }
}
