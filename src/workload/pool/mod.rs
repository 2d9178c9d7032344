//! A model of .NET 8.0.4's `PortableThreadPool`, checked rule by rule against the runtime
//! (docs/dotnet-pool.md gives the IL offsets and the measurements behind each rule).
//!
//! The decisions live in [`Core`], a plain state machine over `(now, state)` that never sleeps
//! or spawns, so every rule is unit-tested with synthetic instants and the simulator drives the
//! same rules in virtual time. [`ThreadPool`] runs it on real threads: workers that block for
//! real, and a gate thread that ticks on the core's grid.
//!
//! What is modelled:
//! - `goal` starts at min threads; a thread request below the goal releases a worker at once
//!   (an idle one if any, else a new thread) — `MaybeAddWorkingWorker`;
//! - at most one outstanding thread request from the work queue; a worker that dequeues an item
//!   requests another thread to parallelise the rest — `EnsureThreadRequested`;
//! - the starvation clock (`lastDequeueTime`) is written when a worker takes a thread request
//!   and after **every** completed work item or inlined task (`NotifyWorkItemProgress`), so it
//!   measures time since the pool last made progress, not since it last dispatched;
//! - the gate thread ticks every 500 ms after its previous tick's actual time (so the grid drifts
//!   later by each wake-up's latency), parks after two ticks with no thread request and restarts
//!   (re-anchored) at the next one — `GateThread`, `DelayHelper`;
//! - a worker injected at a tick stamps the clock as it takes the request, so the next tick
//!   finds the clock exactly one period old (not older) and fully starved the pool gains one
//!   thread per second; items started on ticks end just before the tick four periods later
//!   (the grid drifts later), so once a few threads cover the four phases of a 2 s cycle,
//!   starvation injection all but stops (measured, docs/dotnet-pool.md §6);
//!   each tick injects one thread if a request is pending and the last progress is strictly
//!   older than 500 ms (at CPU >= 80 %, goal x 1000 ms);
//! - hill climbing ([`super::hill_climbing`]) samples completion throughput on completions and
//!   moves the goal up and down; a worker finishing an item while more threads process work than
//!   the goal stops processing, even with work queued — `ShouldStopProcessingWorkNow`;
//! - idle workers retire after 20 s, lowering the goal toward min threads.
//!
//! Not modelled: per-thread local queues (requests arrive from outside the pool, so every item
//! lands in the global queue) and cooperative blocking (`Task.Wait` inlines the task, so
//! `NotifyThreadBlocked` never runs for this service: measured, docs/dotnet-pool.md §3).

mod core;
mod threads;

pub use core::{Completed, Core, IdleOutcome};
pub use threads::{CpuSource, Progress, ThreadPool};

use std::time::Duration;

use super::hill_climbing::HillClimbingConfig;

/// Every constant of the model; the CLI has a flag for each.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Threads the pool may release without waiting for starvation injection.
    pub min_threads: u32,
    /// Upper bound for busy threads (.NET: 32767).
    pub max_threads: u32,
    /// Period of the gate thread (.NET: `GateActivitiesPeriodMs` = 500).
    pub gate_interval: Duration,
    /// Minimum age of the last progress before injecting while CPU is below `cpu_high_percent`.
    pub starvation_delay: Duration,
    /// CPU usage (percent of all processors) at which injection slows down (.NET: 80).
    pub cpu_high_percent: f64,
    /// At high CPU the required delay is goal x this (.NET: `DequeueDelayThresholdMs` = 1000).
    pub cpu_high_delay_per_thread: Duration,
    /// Idle workers exit after this long without work (.NET: 20 s).
    pub idle_timeout: Duration,
    /// Resolution of the clock the starvation rule reads (.NET: `Environment.TickCount`, which
    /// on Linux advanced in 4 ms steps here: every probed timestamp was a multiple of 4).
    pub tick_resolution: Duration,
    /// How long a newly created worker takes to reach its first thread request. .NET 8.0.4
    /// here: 0–16 ms from the injecting tick to the new worker's clock write in a 1 ms probe of
    /// a burst, 44 ms in an earlier probe on a busier machine (docs/dotnet-pool.md §1, §6). The
    /// model's threads start in well under a millisecond; default 0.
    pub thread_start_delay: Duration,
    /// Hill climbing's constants; `None` disables it (.NET:
    /// `System.Threading.ThreadPool.HillClimbing.Disable`).
    pub hill_climbing: Option<HillClimbingConfig>,
    /// Seeds hill climbing's random sample intervals (.NET seeds from the process id).
    pub seed: u64,
}

impl PoolConfig {
    /// .NET's defaults for a machine with `processors` CPUs.
    pub fn dotnet_defaults(processors: u32) -> Self {
        PoolConfig {
            min_threads: processors.max(1),
            max_threads: 32767,
            gate_interval: Duration::from_millis(500),
            starvation_delay: Duration::from_millis(500),
            cpu_high_percent: 80.0,
            cpu_high_delay_per_thread: Duration::from_millis(1000),
            idle_timeout: Duration::from_secs(20),
            tick_resolution: Duration::from_millis(4),
            thread_start_delay: Duration::ZERO,
            hill_climbing: Some(HillClimbingConfig::dotnet_defaults()),
            seed: 0,
        }
    }
}

/// .NET's `ThreadCounts` plus the pending-request count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Target number of threads processing work.
    pub goal: u32,
    /// OS threads alive (working or idle).
    pub existing: u32,
    /// Threads released to process work: .NET's "busy" (`max - available`).
    pub processing: u32,
    /// Thread requests not yet taken by a worker (`numRequestedWorkers`).
    pub requested: u32,
}

/// What the wrapper must do after a decision: start threads, wake idle ones, start the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Wake {
    pub spawn: u32,
    pub notify: u32,
    /// The gate thread was parked and must start ticking (`GateThread.EnsureRunning`).
    pub start_gate: bool,
}

impl Wake {
    pub fn merge(self, other: Wake) -> Wake {
        Wake {
            spawn: self.spawn + other.spawn,
            notify: self.notify + other.notify,
            start_gate: self.start_gate || other.start_gate,
        }
    }

    /// Workers released (new or woken).
    pub fn released(&self) -> u32 {
        self.spawn + self.notify
    }
}

/// A point-in-time view of the pool for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub counts: Counts,
    pub max_threads: u32,
    pub queue_length: usize,
    pub starvation_injections: u64,
    pub hill_climbing_moves: u64,
    pub threads_created: u64,
    pub threads_retired: u64,
    /// Completed work items plus inlined tasks: .NET's `ThreadPool.CompletedWorkItemCount`.
    pub completed_items: u64,
}

impl Snapshot {
    pub fn busy(&self) -> u32 {
        self.counts.processing
    }
    /// .NET's `GetAvailableThreads`: max minus busy, never negative.
    pub fn available(&self) -> u32 {
        self.max_threads.saturating_sub(self.counts.processing)
    }
}
