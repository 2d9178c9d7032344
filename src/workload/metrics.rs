//! The service's Prometheus metrics: the original's gauges (names kept exactly) plus request
//! counters and latency, encoded with prometheus-client. The pool's queue, threads and completed
//! items are also exported under the names .NET's own instrumentation gets in Prometheus
//! (`register_runtime_names`), so rules written for an operator's .NET service fit this one.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::pool::Snapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The gauges of the original .NET service. They are both scraped and pushed.
#[derive(Default)]
pub struct PoolGauges {
    pub max_worker_threads: Gauge,
    pub available_worker_threads: Gauge,
    pub busy_worker_threads: Gauge,
    pub max_completion_port_threads: Gauge,
    pub available_completion_port_threads: Gauge,
    pub busy_completion_port_threads: Gauge,
    pub queue_length: Gauge,
    pub cpu_usage: Gauge<f64, AtomicU64>,
    pub process_threads: Gauge,
    /// Pool threads that exist (.NET's `ThreadPool.ThreadCount`), for the runtime names only.
    pub pool_threads: Gauge,
    /// `--io-model dotnet`: socket-engine events waiting (.NET does not expose this).
    pub socket_engine_queue_length: Gauge,
    pub socket_engine_oldest_wait: Gauge<f64, AtomicU64>,
}

pub struct Metrics {
    pub gauges: PoolGauges,
    pub http_requests: Family<RouteLabels, Counter>,
    pub http_latency: LatencyFamily,
    pub starvation_injections: Counter,
    pub threads_created: Counter,
    pub threads_retired: Counter,
    pub completed_items: Counter,
    pub push_failures: Counter,
    pub store_failures: Counter,
    /// Everything, for `/metrics`.
    registry: Registry,
    /// The gauges alone, for the Pushgateway (classic text format).
    push_registry: Registry,
}

impl Metrics {
    pub fn new() -> Metrics {
        let gauges = PoolGauges::default();
        let completed_items = Counter::default();
        let mut registry = Registry::default();
        let mut push_registry = Registry::default();
        for reg in [&mut registry, &mut push_registry] {
            register_gauges(reg, &gauges);
            register_runtime_names(reg, &gauges, &completed_items);
        }
        let http_requests = Family::<RouteLabels, Counter>::default();
        let http_latency: LatencyFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 16)));
        let m = Metrics {
            gauges,
            http_requests,
            http_latency,
            starvation_injections: Counter::default(),
            threads_created: Counter::default(),
            threads_retired: Counter::default(),
            completed_items,
            push_failures: Counter::default(),
            store_failures: Counter::default(),
            registry,
            push_registry,
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency from accept to response, by route and status",
            m.http_latency.clone(),
        );
        r.register(
            "threadpool_starvation_injections",
            "Threads added by the gate thread's starvation rule",
            m.starvation_injections.clone(),
        );
        r.register(
            "threadpool_threads_created",
            "Pool OS threads started",
            m.threads_created.clone(),
        );
        r.register(
            "threadpool_threads_retired",
            "Pool OS threads that exited after the idle timeout",
            m.threads_retired.clone(),
        );
        r.register(
            "threadpool_completed_items",
            "Work items the pool finished",
            m.completed_items.clone(),
        );
        r.register(
            "pushgateway_push_failures",
            "Pushes to the Pushgateway that failed",
            m.push_failures.clone(),
        );
        r.register(
            "store_failures",
            "Document inserts that failed (answered 503)",
            m.store_failures.clone(),
        );
        m
    }

    /// Copy the pool's state and the process facts into the gauges.
    pub fn refresh(&self, snap: &Snapshot, cpu_percent: f64, completion_port_max: u32) {
        let g = &self.gauges;
        g.max_worker_threads.set(snap.max_threads as i64);
        g.available_worker_threads.set(snap.available() as i64);
        g.busy_worker_threads.set(snap.busy() as i64);
        // On Linux .NET's portable pool uses no I/O completion threads: max stays at its
        // default and none are ever busy.
        g.max_completion_port_threads
            .set(completion_port_max as i64);
        g.available_completion_port_threads
            .set(completion_port_max as i64);
        g.busy_completion_port_threads.set(0);
        g.queue_length.set(snap.queue_length as i64);
        g.cpu_usage.set(cpu_percent);
        g.process_threads
            .set(super::process::process_threads() as i64);
        g.pool_threads.set(snap.counts.existing as i64);
        // Counters mirror the pool's own monotonic totals.
        sync_counter(&self.starvation_injections, snap.starvation_injections);
        sync_counter(&self.threads_created, snap.threads_created);
        sync_counter(&self.threads_retired, snap.threads_retired);
        sync_counter(&self.completed_items, snap.completed_items);
    }

    /// The socket engine's backlog: (events waiting, oldest wait); zero with `--io-model direct`.
    pub fn refresh_engine(&self, (waiting, oldest): (usize, std::time::Duration)) {
        let g = &self.gauges;
        g.socket_engine_queue_length.set(waiting as i64);
        g.socket_engine_oldest_wait.set(oldest.as_secs_f64());
    }

    /// OpenMetrics text for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The gauges in the classic text format the Pushgateway parses (no `# EOF` trailer).
    pub fn encode_for_push(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.push_registry)
            .expect("writing to a String cannot fail");
        out.lines()
            .filter(|l| *l != "# EOF")
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn sync_counter(counter: &Counter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

fn register_gauges(reg: &mut Registry, g: &PoolGauges) {
    reg.register(
        "max_worker_threads",
        "Maximum worker threads of the pool (ThreadPool.GetMaxThreads)",
        g.max_worker_threads.clone(),
    );
    reg.register(
        "available_worker_threads",
        "Worker threads available: max minus busy (ThreadPool.GetAvailableThreads)",
        g.available_worker_threads.clone(),
    );
    reg.register(
        "busy_worker_threads",
        "Worker threads processing work",
        g.busy_worker_threads.clone(),
    );
    reg.register(
        "max_completion_port_threads",
        "Maximum I/O completion port threads",
        g.max_completion_port_threads.clone(),
    );
    reg.register(
        "available_completion_port_threads",
        "I/O completion port threads available",
        g.available_completion_port_threads.clone(),
    );
    reg.register(
        "busy_completion_port_threads",
        "I/O completion port threads busy",
        g.busy_completion_port_threads.clone(),
    );
    reg.register(
        "system_runtime_threadpool_queue_length",
        "Work items queued on the pool and not yet started (all queues)",
        g.queue_length.clone(),
    );
    reg.register(
        "system_runtime_cpu_usage",
        "Process CPU usage in percent of all processors (.NET cpu-usage)",
        g.cpu_usage.clone(),
    );
    reg.register(
        "process_number_of_threads",
        "OS threads of the process",
        g.process_threads.clone(),
    );
    reg.register(
        "socket_engine_queue_length",
        "Requests read by no socket-engine work item yet (--io-model dotnet; not in the pool's queue length)",
        g.socket_engine_queue_length.clone(),
    );
    reg.register(
        "socket_engine_oldest_wait_seconds",
        "How long the oldest request waiting for the socket engine has waited",
        g.socket_engine_oldest_wait.clone(),
    );
}

/// The pool's state also under the names .NET's own instrumentation gets in Prometheus
/// (OpenTelemetry's exporter: `.` becomes `_`, `{work_item}` units add no suffix, counters get
/// `_total`), so the rules for an operator's .NET service read this one too: `System.Runtime`
/// (.NET 9+) and OpenTelemetry.Instrumentation.Runtime (.NET 8). Queue and threads are gauges, as
/// the semantic conventions say; .NET 9 itself exports them as counters (`_total`), which the
/// rules also read (docs/own-dotnet-service.md).
fn register_runtime_names(reg: &mut Registry, g: &PoolGauges, completed: &Counter) {
    for prefix in ["dotnet_thread_pool", "process_runtime_dotnet_thread_pool"] {
        reg.register(
            format!("{prefix}_queue_length"),
            "Work items queued on the pool and not yet started (ThreadPool.PendingWorkItemCount)",
            g.queue_length.clone(),
        );
    }
    for name in [
        "dotnet_thread_pool_thread_count",
        "process_runtime_dotnet_thread_pool_threads_count",
    ] {
        reg.register(
            name,
            "Pool threads that currently exist (ThreadPool.ThreadCount)",
            g.pool_threads.clone(),
        );
    }
    for name in [
        "dotnet_thread_pool_work_item_count",
        "process_runtime_dotnet_thread_pool_completed_items_count",
    ] {
        reg.register(
            name,
            "Work items the pool completed since the process started (ThreadPool.CompletedWorkItemCount)",
            completed.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::pool::Counts;

    #[test]
    fn gauges_carry_the_pool_state_under_the_original_names() {
        let m = Metrics::new();
        let snap = Snapshot {
            counts: Counts {
                goal: 5,
                existing: 6,
                processing: 5,
                requested: 1,
            },
            max_threads: 32767,
            queue_length: 12,
            starvation_injections: 4,
            hill_climbing_moves: 0,
            threads_created: 6,
            threads_retired: 0,
            completed_items: 9,
        };
        m.refresh(&snap, 12.5, 1000);
        let text = m.encode();
        for line in [
            "max_worker_threads 32767",
            "available_worker_threads 32762",
            "busy_worker_threads 5",
            "max_completion_port_threads 1000",
            "busy_completion_port_threads 0",
            "system_runtime_threadpool_queue_length 12",
            "system_runtime_cpu_usage 12.5",
            "threadpool_starvation_injections_total 4",
            "threadpool_completed_items_total 9",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // The same state under .NET's own names, scraped and pushed (the operator's rules read
        // either path).
        let pushed = m.encode_for_push();
        for line in [
            "dotnet_thread_pool_queue_length 12",
            "dotnet_thread_pool_thread_count 6",
            "dotnet_thread_pool_work_item_count_total 9",
            "process_runtime_dotnet_thread_pool_queue_length 12",
            "process_runtime_dotnet_thread_pool_threads_count 6",
            "process_runtime_dotnet_thread_pool_completed_items_count_total 9",
        ] {
            for (what, out) in [("/metrics", &text), ("push", &pushed)] {
                assert!(
                    out.lines().any(|l| l == line),
                    "{what}: missing {line:?} in\n{out}"
                );
            }
        }
        assert!(pushed.contains("busy_worker_threads 5\n"));
        assert!(!pushed.contains("EOF"));
        assert!(!pushed.contains("http_requests"), "only gauges are pushed");
    }
}
