//! The pool's decision logic: a pure state machine over `(now, state)`. Each method names the
//! .NET 8.0.4 member it follows; docs/dotnet-pool.md has the IL offsets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Counts, PoolConfig, Snapshot, Wake};
use crate::workload::hill_climbing::{HillClimbing, Transition};

/// `GateThread.MaxRuns`: ticks the gate keeps running after the last thread request.
const GATE_MAX_RUNS: u8 = 2;

/// Outcome of an idle worker's wait timing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// Work came in meanwhile: stay.
    Stay,
    /// The thread exits; counts already lowered.
    Retire,
}

/// What a worker does after finishing a work item (`NotifyWorkItemComplete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Completed {
    /// Hill climbing raised the goal: release these workers.
    pub wake: Wake,
    /// False when more threads process work than the goal: this worker has already been taken
    /// out of processing and must go idle, even with work queued (`ShouldStopProcessingWorkNow`).
    pub keep_working: bool,
}

/// The gate thread: parked, or ticking on a grid (`DelayHelper`: each tick is the previous
/// tick's time plus the period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Parked,
    Running { next: Instant, runs_left: u8 },
}

/// Hill climbing's sampling state kept by the pool (`_separated.priorCompletionCount`,
/// `priorCompletedWorkRequestsTime`, `_threadAdjustmentIntervalMs`, `_currentSampleStartTime`).
#[derive(Debug)]
struct Sampler {
    climber: HillClimbing,
    interval: Duration,
    prior_time: Instant,
    prior_count: u64,
    sample_start: Instant,
}

#[derive(Debug)]
pub struct Core<J> {
    cfg: PoolConfig,
    counts: Counts,
    queue: VecDeque<J>,
    outstanding_request: bool,
    /// Wake-ups handed to idle threads and not yet consumed (the worker semaphore).
    permits: u32,
    /// `_separated.lastDequeueTime`: the last request taken or work item completed.
    last_progress: Instant,
    /// Where the tick count starts; instants are read in `tick_resolution` steps from it.
    epoch: Instant,
    gate: Gate,
    /// `_cpuUtilization`, read by the gate each tick.
    cpu_percent: f64,
    hill: Option<Sampler>,
    starvation_injections: u64,
    hill_climbing_moves: u64,
    threads_created: u64,
    threads_retired: u64,
    completed_items: u64,
}

impl<J> Core<J> {
    pub fn new(cfg: PoolConfig, now: Instant) -> Self {
        let goal = cfg.min_threads.max(1);
        let hill = cfg.hill_climbing.clone().map(|hc| {
            let climber = HillClimbing::new(hc, goal, cfg.max_threads, cfg.seed);
            Sampler {
                interval: climber.sample_interval(),
                climber,
                prior_time: now,
                prior_count: 0,
                sample_start: now,
            }
        });
        Core {
            cfg,
            counts: Counts {
                goal,
                ..Counts::default()
            },
            queue: VecDeque::new(),
            outstanding_request: false,
            permits: 0,
            last_progress: now,
            epoch: now,
            gate: Gate::Parked,
            cpu_percent: 0.0,
            hill,
            starvation_injections: 0,
            hill_climbing_moves: 0,
            threads_created: 0,
            threads_retired: 0,
            completed_items: 0,
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self.counts,
            max_threads: self.cfg.max_threads,
            queue_length: self.queue.len(),
            starvation_injections: self.starvation_injections,
            hill_climbing_moves: self.hill_climbing_moves,
            threads_created: self.threads_created,
            threads_retired: self.threads_retired,
            completed_items: self.completed_items,
        }
    }

    /// Queue a work item (`ThreadPool.UnsafeQueueUserWorkItem`).
    pub fn enqueue(&mut self, job: J, now: Instant) -> Wake {
        self.queue.push_back(job);
        self.ensure_thread_requested(now)
    }

    /// `ThreadPoolWorkQueue.EnsureThreadRequested` then `RequestWorker`: at most one
    /// outstanding request; each request keeps the gate running.
    fn ensure_thread_requested(&mut self, now: Instant) -> Wake {
        if self.outstanding_request {
            return Wake::default();
        }
        self.outstanding_request = true;
        self.counts.requested += 1;
        let mut wake = self.maybe_add_working_worker();
        wake.start_gate = self.ensure_gate_running(now);
        wake
    }

    /// `GateThread.EnsureRunning`: restart a parked gate with its grid anchored now
    /// (`SetGateActivitiesTime`), or give a running one its runs back. True if it was parked.
    fn ensure_gate_running(&mut self, now: Instant) -> bool {
        match &mut self.gate {
            Gate::Running { runs_left, .. } => {
                *runs_left = GATE_MAX_RUNS;
                false
            }
            Gate::Parked => {
                self.gate = Gate::Running {
                    next: now + self.cfg.gate_interval,
                    runs_left: GATE_MAX_RUNS,
                };
                true
            }
        }
    }

    /// `WorkerThread.MaybeAddWorkingWorker`: release one more worker if below the goal,
    /// reusing an idle thread before creating one.
    fn maybe_add_working_worker(&mut self) -> Wake {
        if self.counts.processing >= self.counts.goal {
            return Wake::default();
        }
        self.counts.processing += 1;
        if self.counts.existing >= self.counts.processing {
            self.permits += 1;
            Wake {
                notify: 1,
                ..Wake::default()
            }
        } else {
            self.counts.existing += 1;
            self.threads_created += 1;
            Wake {
                spawn: 1,
                ..Wake::default()
            }
        }
    }

    /// `Environment.TickCount`: the instant rounded down to the clock's resolution.
    fn tick_count(&self, t: Instant) -> Duration {
        let since = t.saturating_duration_since(self.epoch);
        let res = self.cfg.tick_resolution.as_nanos().max(1);
        let steps = since.as_nanos() / res;
        Duration::from_nanos(u64::try_from(steps * res).unwrap_or(u64::MAX))
    }

    /// When the gate ticks next; `None` while it is parked.
    pub fn next_gate_tick(&self) -> Option<Instant> {
        match self.gate {
            Gate::Parked => None,
            Gate::Running { next, .. } => Some(next),
        }
    }

    /// The delay the gate requires since the last progress before it injects a thread
    /// (`SufficientDelaySinceLastDequeue`).
    pub fn required_delay(&self, cpu_percent: f64) -> Duration {
        if cpu_percent < self.cfg.cpu_high_percent {
            self.cfg.starvation_delay
        } else {
            self.cfg.cpu_high_delay_per_thread * self.counts.goal
        }
    }

    /// One gate tick at `now`, its grid instant (`GateThreadStart` loop body): read the CPU,
    /// inject one thread if starved, then schedule the next tick or park.
    pub fn gate_tick(&mut self, now: Instant, cpu_percent: f64) -> Wake {
        self.cpu_percent = cpu_percent;
        // Strictly older than the delay (`cgt.un` in the IL), on the tick count's steps.
        let age = self
            .tick_count(now)
            .saturating_sub(self.tick_count(self.last_progress));
        let starving = self.counts.requested > 0 && age > self.required_delay(cpu_percent);
        let mut wake = Wake::default();
        if starving
            && self.counts.processing < self.cfg.max_threads
            && self.counts.processing >= self.counts.goal
        {
            self.counts.goal = self.counts.processing + 1;
            self.starvation_injections += 1;
            if let Some(h) = &mut self.hill {
                h.climber
                    .force_change(self.counts.goal, Transition::Starvation);
            }
            wake = self.maybe_add_working_worker();
        }
        self.after_gate_tick(now);
        wake
    }

    /// `ShouldGateThreadKeepRunning`: one run used; with none left the gate parks unless a
    /// request is still pending.
    fn after_gate_tick(&mut self, now: Instant) {
        let Gate::Running { runs_left, .. } = self.gate else {
            return;
        };
        let runs_left = runs_left.saturating_sub(1);
        self.gate = if runs_left == 0 && self.counts.requested == 0 {
            Gate::Parked
        } else {
            Gate::Running {
                next: now + self.cfg.gate_interval,
                runs_left: runs_left.max(1),
            }
        };
    }

    /// A released worker asks for a request to serve (`TakeActiveRequest`); taking one writes
    /// the starvation clock (`WorkerDoWork`, before `Dispatch`).
    pub fn take_request(&mut self, now: Instant) -> bool {
        if self.counts.requested == 0 {
            return false;
        }
        self.counts.requested -= 1;
        self.last_progress = now;
        true
    }

    /// A worker dequeues inside its dispatch loop. The first dequeue of a dispatch satisfies
    /// the outstanding request and, if it found work, requests a thread for the rest.
    pub fn dequeue(&mut self, first_of_dispatch: bool, now: Instant) -> (Option<J>, Wake) {
        if first_of_dispatch {
            self.outstanding_request = false;
        }
        let job = self.queue.pop_front();
        let wake = if job.is_some() && first_of_dispatch {
            self.ensure_thread_requested(now)
        } else {
            Wake::default()
        };
        (job, wake)
    }

    /// `NotifyWorkItemProgress`: a work item or an inlined task completed. Counts it, writes
    /// the starvation clock and lets hill climbing take a sample.
    pub fn notify_progress(&mut self, now: Instant) -> Wake {
        self.completed_items += 1;
        self.last_progress = now;
        self.adjust_max_workers(now)
    }

    /// `NotifyWorkItemComplete`: progress, then `ShouldStopProcessingWorkNow`.
    pub fn item_completed(&mut self, now: Instant) -> Completed {
        let wake = self.notify_progress(now);
        let keep_working = self.counts.processing <= self.counts.goal;
        if !keep_working {
            self.counts.processing -= 1;
        }
        Completed { wake, keep_working }
    }

    /// `ShouldAdjustMaxWorkersActive` + `AdjustMaxWorkersActive`: once the sample interval has
    /// passed (and at least half of it since the sample began), hand the completions to hill
    /// climbing; a raised goal releases a worker, a lowered one is noticed by completions.
    fn adjust_max_workers(&mut self, now: Instant) -> Wake {
        let Some(h) = &mut self.hill else {
            return Wake::default();
        };
        if now.saturating_duration_since(h.prior_time) < h.interval
            || self.counts.processing > self.counts.goal
        {
            return Wake::default();
        }
        let elapsed = now.saturating_duration_since(h.sample_start);
        if elapsed < h.interval / 2 {
            return Wake::default();
        }
        let completions = self.completed_items - h.prior_count;
        let old_goal = self.counts.goal;
        let step = h.climber.update(
            old_goal,
            elapsed.as_secs_f64(),
            u32::try_from(completions).unwrap_or(u32::MAX),
            self.cpu_percent,
        );
        h.interval = step.next_sample;
        h.prior_count = self.completed_items;
        h.prior_time = now;
        h.sample_start = now;
        if step.goal == old_goal {
            return Wake::default();
        }
        self.hill_climbing_moves += 1;
        self.counts.goal = step.goal;
        if step.goal > old_goal {
            self.maybe_add_working_worker()
        } else {
            Wake::default()
        }
    }

    /// A worker found no more requests and stops processing (`RemoveWorkingWorker`). If a
    /// request slipped in meanwhile, release another worker for it so it is not lost.
    pub fn remove_working_worker(&mut self) -> Wake {
        self.counts.processing = self.counts.processing.saturating_sub(1);
        if self.counts.requested > 0 {
            self.maybe_add_working_worker()
        } else {
            Wake::default()
        }
    }

    /// An idle thread consumes a wake-up if one is waiting for it.
    pub fn take_permit(&mut self) -> bool {
        if self.permits == 0 {
            return false;
        }
        self.permits -= 1;
        true
    }

    /// An idle thread's wait ran out: retire unless work came in, lowering the goal toward min
    /// (`WorkerThread` semaphore timeout; hill climbing follows with `ThreadTimedOut`).
    pub fn idle_timeout(&mut self) -> IdleOutcome {
        if self.permits > 0 || self.counts.existing <= self.counts.processing {
            return IdleOutcome::Stay;
        }
        self.counts.existing -= 1;
        let min_goal = self.cfg.min_threads.max(1);
        self.counts.goal = min_goal.max(self.counts.existing.min(self.counts.goal));
        if let Some(h) = &mut self.hill {
            h.climber
                .force_change(self.counts.goal, Transition::ThreadTimedOut);
        }
        self.threads_retired += 1;
        IdleOutcome::Retire
    }

    /// A thread could not be started: undo its release so counts stay honest.
    pub(super) fn spawn_failed(&mut self) {
        self.counts.processing = self.counts.processing.saturating_sub(1);
        self.thread_exited();
    }

    /// Threads leaving at shutdown.
    pub(super) fn thread_exited(&mut self) {
        self.counts.existing = self.counts.existing.saturating_sub(1);
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
