//! A model of .NET's `PortableThreadPool` (.NET 6+) on real OS threads.
//!
//! The decisions live in [`Core`], a plain state machine over `(now, state)` that never sleeps
//! or spawns, so every rule is unit-tested with synthetic instants. [`ThreadPool`] wraps it with
//! real threads: workers that block for real, and a gate thread that ticks every 500 ms.
//!
//! What is modelled (see `docs/workload.md` for the mapping to the .NET sources):
//! - `goal` starts at min threads; a thread request below the goal releases a worker at once
//!   (an idle one if any, else a new thread) — `MaybeAddWorkingWorker`;
//! - at most one outstanding thread request from the work queue; a worker that dequeues an item
//!   requests another thread to parallelise the rest — `EnsureThreadRequested`;
//! - busy workers keep dispatching without going back through the request path, so the
//!   last-dispatch timestamp is written only when a worker is released to serve a request;
//! - starvation injection by the gate thread: every tick, if a request is pending and the last
//!   dispatch is older than the delay (500 ms; at CPU >= 80 %, goal x 1000 ms), set the goal to
//!   busy + 1 and release exactly one worker;
//! - idle workers retire after 20 s, lowering the goal toward min threads.
//!
//! Not modelled: hill climbing (it reacts to completion throughput, which is flat when every item
//! sleeps), per-thread local queues (requests arrive from outside the pool, so every item lands in
//! the global queue), and the cooperative-blocking fast path (`Thread.Sleep` does not trigger it).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Every constant of the model; the CLI has a flag for each.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Threads the pool may release without waiting for starvation injection.
    pub min_threads: u32,
    /// Upper bound for busy threads (.NET: 32767).
    pub max_threads: u32,
    /// Period of the gate thread (.NET: `GateThreadDelayMs` = 500).
    pub gate_interval: Duration,
    /// Minimum age of the last dispatch before injecting while CPU is below `cpu_high_percent`.
    pub starvation_delay: Duration,
    /// CPU usage (percent of all processors) at which injection slows down (.NET: 80).
    pub cpu_high_percent: f64,
    /// At high CPU the required delay is goal x this (.NET: `DequeueDelayThresholdMs` = 1000).
    pub cpu_high_delay_per_thread: Duration,
    /// Idle workers exit after this long without work (.NET: 20 s).
    pub idle_timeout: Duration,
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

/// What the wrapper must do after a decision: start threads, wake idle ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Wake {
    pub spawn: u32,
    pub notify: u32,
}

#[cfg(test)]
impl Wake {
    fn merge(self, other: Wake) -> Wake {
        Wake {
            spawn: self.spawn + other.spawn,
            notify: self.notify + other.notify,
        }
    }
}

/// Outcome of an idle worker's wait timing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// Work came in meanwhile: stay.
    Stay,
    /// The thread exits; counts already lowered.
    Retire,
}

/// A point-in-time view of the pool for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub counts: Counts,
    pub max_threads: u32,
    pub queue_length: usize,
    pub starvation_injections: u64,
    pub threads_created: u64,
    pub threads_retired: u64,
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

/// The pool's decision logic: a pure state machine over `(now, state)`.
#[derive(Debug)]
pub struct Core<J> {
    cfg: PoolConfig,
    counts: Counts,
    queue: VecDeque<J>,
    outstanding_request: bool,
    /// Wake-ups handed to idle threads and not yet consumed (the worker semaphore).
    permits: u32,
    last_dispatch: Instant,
    starvation_injections: u64,
    threads_created: u64,
    threads_retired: u64,
    completed_items: u64,
}

impl<J> Core<J> {
    pub fn new(cfg: PoolConfig, now: Instant) -> Self {
        let goal = cfg.min_threads.max(1);
        Core {
            cfg,
            counts: Counts {
                goal,
                ..Counts::default()
            },
            queue: VecDeque::new(),
            outstanding_request: false,
            permits: 0,
            last_dispatch: now,
            starvation_injections: 0,
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

    /// `ThreadPoolWorkQueue.EnsureThreadRequested`: at most one outstanding request.
    fn ensure_thread_requested(&mut self, now: Instant) -> Wake {
        if self.outstanding_request {
            return Wake::default();
        }
        self.outstanding_request = true;
        self.counts.requested += 1;
        self.maybe_add_working_worker(now)
    }

    /// `WorkerThread.MaybeAddWorkingWorker`: release one more worker if below the goal,
    /// reusing an idle thread before creating one. The release is the dispatch instant.
    fn maybe_add_working_worker(&mut self, now: Instant) -> Wake {
        if self.counts.processing >= self.counts.goal {
            return Wake::default();
        }
        self.counts.processing += 1;
        self.last_dispatch = now;
        if self.counts.existing >= self.counts.processing {
            self.permits += 1;
            Wake {
                spawn: 0,
                notify: 1,
            }
        } else {
            self.counts.existing += 1;
            self.threads_created += 1;
            Wake {
                spawn: 1,
                notify: 0,
            }
        }
    }

    /// The delay the gate requires since the last dispatch before it injects a thread.
    pub fn required_delay(&self, cpu_percent: f64) -> Duration {
        if cpu_percent < self.cfg.cpu_high_percent {
            self.cfg.starvation_delay
        } else {
            self.cfg.cpu_high_delay_per_thread * self.counts.goal
        }
    }

    /// One gate-thread tick (`GateThread` loop body): starvation injection.
    pub fn gate_tick(&mut self, now: Instant, cpu_percent: f64) -> Wake {
        let starving = self.counts.requested > 0
            && now.saturating_duration_since(self.last_dispatch) > self.required_delay(cpu_percent);
        if !starving || self.counts.processing >= self.cfg.max_threads {
            return Wake::default();
        }
        self.counts.goal = self.counts.processing + 1;
        self.starvation_injections += 1;
        self.maybe_add_working_worker(now)
    }

    /// A released worker asks for a request to serve (`TakeActiveRequest`).
    pub fn take_request(&mut self) -> bool {
        if self.counts.requested == 0 {
            return false;
        }
        self.counts.requested -= 1;
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

    pub fn item_completed(&mut self) {
        self.completed_items += 1;
    }

    /// A worker found no more requests and stops processing. If a request slipped in
    /// meanwhile, release another worker for it so it is not lost.
    pub fn remove_working_worker(&mut self, now: Instant) -> Wake {
        self.counts.processing = self.counts.processing.saturating_sub(1);
        if self.counts.requested > 0 {
            self.maybe_add_working_worker(now)
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

    /// An idle thread's wait ran out: retire unless work came in, lowering the goal toward min.
    pub fn idle_timeout(&mut self) -> IdleOutcome {
        if self.permits > 0 || self.counts.existing <= self.counts.processing {
            return IdleOutcome::Stay;
        }
        self.counts.existing -= 1;
        let min_goal = self.cfg.min_threads.max(1);
        self.counts.goal = min_goal.max(self.counts.existing.min(self.counts.goal));
        self.threads_retired += 1;
        IdleOutcome::Retire
    }

    /// Threads leaving at shutdown.
    fn thread_exited(&mut self) {
        self.counts.existing = self.counts.existing.saturating_sub(1);
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Shared {
    core: Mutex<Core<Job>>,
    work_available: Condvar,
    gate_wakeup: Condvar,
    shutdown: Mutex<bool>,
    cpu: Arc<dyn CpuSource>,
}

/// Where the gate thread reads CPU usage (percent of all processors).
pub trait CpuSource: Send + Sync {
    fn cpu_percent(&self) -> f64;
}

/// The pool on real OS threads. Dropping it stops the gate thread and lets idle workers exit;
/// items already running finish.
pub struct ThreadPool {
    shared: Arc<Shared>,
    gate: Option<std::thread::JoinHandle<()>>,
}

impl ThreadPool {
    pub fn start(cfg: PoolConfig, cpu: Arc<dyn CpuSource>) -> std::io::Result<ThreadPool> {
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::new(cfg, Instant::now())),
            work_available: Condvar::new(),
            gate_wakeup: Condvar::new(),
            shutdown: Mutex::new(false),
            cpu,
        });
        let gate_shared = shared.clone();
        let gate = std::thread::Builder::new()
            .name("pool-gate".into())
            .spawn(move || gate_loop(&gate_shared))?;
        Ok(ThreadPool {
            shared,
            gate: Some(gate),
        })
    }

    /// Queue a blocking work item.
    pub fn enqueue(&self, job: impl FnOnce() + Send + 'static) {
        let wake = lock(&self.shared.core).enqueue(Box::new(job), Instant::now());
        apply(&self.shared, wake);
    }

    pub fn snapshot(&self) -> Snapshot {
        lock(&self.shared.core).snapshot()
    }

    pub fn config(&self) -> PoolConfig {
        lock(&self.shared.core).config().clone()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        *lock(&self.shared.shutdown) = true;
        self.shared.gate_wakeup.notify_all();
        self.shared.work_available.notify_all();
        if let Some(gate) = self.gate.take() {
            let _ = gate.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking work item must not take the pool down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn apply(shared: &Arc<Shared>, wake: Wake) {
    for _ in 0..wake.notify {
        shared.work_available.notify_one();
    }
    for _ in 0..wake.spawn {
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("pool-worker".into())
            .spawn(move || worker_thread(&s));
        if let Err(e) = spawned {
            // Out of threads: undo the release so counts stay honest; the gate retries later.
            tracing::error!("cannot start a pool thread: {e}");
            let mut core = lock(&shared.core);
            core.counts.processing = core.counts.processing.saturating_sub(1);
            core.thread_exited();
        }
    }
}

fn gate_loop(shared: &Arc<Shared>) {
    loop {
        let interval = lock(&shared.core).config().gate_interval;
        let stop = lock(&shared.shutdown);
        let (stop, _) = shared
            .gate_wakeup
            .wait_timeout_while(stop, interval, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        if *stop {
            return;
        }
        drop(stop);
        let cpu = shared.cpu.cpu_percent();
        let wake = lock(&shared.core).gate_tick(Instant::now(), cpu);
        apply(shared, wake);
    }
}

/// A worker starts released (its processing slot is already counted).
fn worker_thread(shared: &Arc<Shared>) {
    loop {
        work_while_requested(shared);
        if !wait_for_release(shared) {
            return;
        }
    }
}

/// `WorkerDoWork`: serve requests; inside a dispatch, keep dequeuing until the queue is empty.
fn work_while_requested(shared: &Arc<Shared>) {
    let mut core = lock(&shared.core);
    while core.take_request() {
        let mut first = true;
        loop {
            let (job, wake) = core.dequeue(first, Instant::now());
            first = false;
            drop(core);
            apply(shared, wake);
            let Some(job) = job else {
                core = lock(&shared.core);
                break;
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::error!("a pool work item panicked");
            }
            core = lock(&shared.core);
            core.item_completed();
        }
    }
    let wake = core.remove_working_worker(Instant::now());
    drop(core);
    apply(shared, wake);
}

/// Idle wait on the worker semaphore. Returns false when the thread should exit.
fn wait_for_release(shared: &Arc<Shared>) -> bool {
    let mut core = lock(&shared.core);
    loop {
        if core.take_permit() {
            return true;
        }
        if *lock(&shared.shutdown) {
            core.thread_exited();
            return false;
        }
        let timeout = core.config().idle_timeout;
        let (guard, result) = shared
            .work_available
            .wait_timeout(core, timeout)
            .unwrap_or_else(|e| e.into_inner());
        core = guard;
        if result.timed_out() && core.idle_timeout() == IdleOutcome::Retire {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: u32) -> PoolConfig {
        PoolConfig::dotnet_defaults(min)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives the core like the real threads would, with instantaneous workers: each released
    /// worker takes requests until it dequeues an item, which then blocks "forever"; a worker
    /// that finds no request stops processing. Returns how many items started.
    fn release_workers(core: &mut Core<u32>, wake: Wake, now: Instant) -> u32 {
        let mut started = 0;
        let mut pending = wake.spawn + wake.notify;
        while pending > 0 {
            pending -= 1;
            let _ = core.take_permit();
            loop {
                if !core.take_request() {
                    let w = core.remove_working_worker(now);
                    pending += w.spawn + w.notify;
                    break;
                }
                let (job, w) = core.dequeue(true, now);
                pending += w.spawn + w.notify;
                if job.is_some() {
                    started += 1;
                    break;
                }
            }
        }
        started
    }

    /// A busy worker finishes its item and the queue is empty: it leaves its dispatch loop.
    fn worker_goes_idle(core: &mut Core<u32>, now: Instant) {
        core.item_completed();
        let (job, w) = core.dequeue(false, now);
        assert!(job.is_none());
        assert_eq!(w, Wake::default());
        let mut wake = Wake::default();
        while core.take_request() {
            let (job, w) = core.dequeue(true, now);
            assert!(job.is_none());
            wake = wake.merge(w);
        }
        let wake = wake.merge(core.remove_working_worker(now));
        assert_eq!(release_workers(core, wake, now), 0);
    }

    #[test]
    fn below_min_threads_work_starts_at_once() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(4), t0);
        let mut started = 0;
        for i in 0..10 {
            let w = core.enqueue(i, t0);
            started += release_workers(&mut core, w, t0);
        }
        assert_eq!(started, 4, "exactly min threads start without injection");
        let c = core.counts();
        assert_eq!(c.processing, 4);
        assert_eq!(c.existing, 4);
        assert_eq!(c.goal, 4);
        assert_eq!(core.snapshot().queue_length, 6);
        assert_eq!(c.requested, 1, "one outstanding request for the backlog");
    }

    #[test]
    fn injection_every_gate_tick_while_starved_and_only_then() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(1), t0);
        for i in 0..10 {
            let w = core.enqueue(i, t0);
            release_workers(&mut core, w, t0);
        }
        assert_eq!(core.counts().processing, 1);
        // The gate sleeps 500 ms after each tick's work, so ticks are slightly more than 500 ms apart.
        let tick = |k: u64| t0 + ms(501 * k);
        // Not before the delay has passed.
        assert_eq!(core.gate_tick(t0 + ms(499), 0.0), Wake::default());
        let mut injected_at = vec![];
        for k in 1..=6 {
            let w = core.gate_tick(tick(k), 0.0);
            if w != Wake::default() {
                injected_at.push(k);
                assert_eq!(w.spawn, 1, "exactly one thread per injection");
                assert_eq!(release_workers(&mut core, w, tick(k)), 1);
            }
        }
        assert_eq!(
            injected_at,
            vec![1, 2, 3, 4, 5, 6],
            "one thread per tick: 2 per second"
        );
        assert_eq!(core.counts().processing, 7);
        assert_eq!(core.counts().goal, 7);
        assert_eq!(core.snapshot().starvation_injections, 6);
        assert_eq!(core.snapshot().queue_length, 3);
    }

    #[test]
    fn ticks_exactly_500ms_apart_inject_every_other_tick() {
        // .NET compares `elapsed > 500`: a dispatch exactly one period ago is not yet starvation.
        let t0 = Instant::now();
        let mut core = Core::new(cfg(1), t0);
        for i in 0..10 {
            let w = core.enqueue(i, t0);
            release_workers(&mut core, w, t0);
        }
        let mut injections = 0;
        for k in 1..=8 {
            let w = core.gate_tick(t0 + ms(500 * k), 0.0);
            injections += release_workers(&mut core, w, t0 + ms(500 * k));
        }
        assert_eq!(injections, 4);
    }

    #[test]
    fn no_injection_without_pending_work() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(2), t0);
        let w = core.enqueue(1, t0);
        release_workers(&mut core, w, t0);
        // One item, one busy thread, one spare under the goal: nothing pending.
        for k in 1..=10 {
            assert_eq!(core.gate_tick(t0 + ms(501 * k), 0.0), Wake::default());
        }
        assert_eq!(core.snapshot().starvation_injections, 0);
    }

    #[test]
    fn recent_dispatch_holds_injection_back() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(1), t0);
        for i in 0..5 {
            let w = core.enqueue(i, t0);
            release_workers(&mut core, w, t0);
        }
        // A worker finishes its dispatch and loops back to take the pending request at t=400ms:
        // that is a new dispatch only if it is released again; here the gate injects at 501.
        let w = core.gate_tick(t0 + ms(501), 0.0);
        assert_eq!(w.spawn, 1);
        release_workers(&mut core, w, t0 + ms(501));
        // Last dispatch at 501: a tick at 900 (399 ms later) must not inject.
        assert_eq!(core.gate_tick(t0 + ms(900), 0.0), Wake::default());
    }

    #[test]
    fn high_cpu_waits_goal_times_one_second() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(1), t0);
        for i in 0..20 {
            let w = core.enqueue(i, t0);
            release_workers(&mut core, w, t0);
        }
        // goal 1 at >= 80 % CPU: the required delay is 1 x 1000 ms.
        assert_eq!(core.required_delay(85.0), ms(1000));
        assert_eq!(core.gate_tick(t0 + ms(501), 85.0), Wake::default());
        assert_eq!(core.gate_tick(t0 + ms(1000), 85.0), Wake::default());
        let w = core.gate_tick(t0 + ms(1001), 85.0);
        assert_eq!(w.spawn, 1);
        release_workers(&mut core, w, t0 + ms(1001));
        // goal 2: now 2000 ms must pass; below 80 % the normal 500 ms applies again.
        assert_eq!(core.required_delay(85.0), ms(2000));
        assert_eq!(core.gate_tick(t0 + ms(2500), 85.0), Wake::default());
        assert_eq!(core.gate_tick(t0 + ms(3002), 85.0).spawn, 1);
        assert_eq!(core.required_delay(79.9), ms(500));
    }

    #[test]
    fn idle_threads_retire_and_goal_returns_to_min() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(1), t0);
        for i in 0..4 {
            let w = core.enqueue(i, t0);
            release_workers(&mut core, w, t0);
        }
        for k in 1..=3 {
            let w = core.gate_tick(t0 + ms(501 * k), 0.0);
            release_workers(&mut core, w, t0 + ms(501 * k));
        }
        assert_eq!(core.counts().processing, 4);
        assert_eq!(core.counts().goal, 4);
        // All four finish and find nothing more.
        for _ in 0..4 {
            worker_goes_idle(&mut core, t0 + ms(3000));
        }
        let c = core.counts();
        assert_eq!((c.processing, c.existing), (0, 4));
        // Idle timeouts: each retiring thread lowers the goal, never below min.
        for expected_existing in (0..4).rev() {
            assert_eq!(core.idle_timeout(), IdleOutcome::Retire);
            assert_eq!(core.counts().existing, expected_existing);
            assert!(core.counts().goal >= 1);
        }
        assert_eq!(core.counts().goal, 1);
        assert_eq!(core.snapshot().threads_retired, 4);
        assert_eq!(core.snapshot().completed_items, 4);
    }

    #[test]
    fn idle_thread_with_a_waiting_permit_stays() {
        let t0 = Instant::now();
        let mut core = Core::new(cfg(1), t0);
        let w = core.enqueue(1, t0);
        release_workers(&mut core, w, t0);
        worker_goes_idle(&mut core, t0);
        // New work arrives while the thread is idle: it is reused, not a new thread.
        let w = core.enqueue(2, t0 + ms(10));
        assert_eq!(
            w,
            Wake {
                spawn: 0,
                notify: 1
            }
        );
        assert_eq!(core.idle_timeout(), IdleOutcome::Stay);
        assert!(core.take_permit());
        assert_eq!(core.counts().existing, 1);
    }

    #[test]
    fn busy_plus_available_is_max_and_max_bounds_injection() {
        let t0 = Instant::now();
        let mut c = cfg(1);
        c.max_threads = 3;
        let mut core = Core::new(c, t0);
        for i in 0..10 {
            let w = core.enqueue(i, t0);
            release_workers(&mut core, w, t0);
        }
        for k in 1..=10 {
            let w = core.gate_tick(t0 + ms(501 * k), 0.0);
            release_workers(&mut core, w, t0 + ms(501 * k));
            let s = core.snapshot();
            assert_eq!(s.busy() + s.available(), s.max_threads);
        }
        assert_eq!(core.counts().processing, 3, "never beyond max threads");
        assert_eq!(core.snapshot().starvation_injections, 2);
    }

    struct NoCpu;
    impl CpuSource for NoCpu {
        fn cpu_percent(&self) -> f64 {
            0.0
        }
    }

    #[test]
    fn real_threads_run_every_item_and_inject_under_starvation() {
        let mut c = cfg(1);
        c.gate_interval = ms(50);
        c.starvation_delay = ms(50);
        let pool = ThreadPool::start(c, Arc::new(NoCpu)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..8 {
            let tx = tx.clone();
            pool.enqueue(move || {
                std::thread::sleep(ms(200));
                tx.send(i).unwrap();
            });
        }
        let mut done: Vec<i32> = (0..8).map(|_| rx.recv_timeout(ms(5000)).unwrap()).collect();
        done.sort();
        assert_eq!(done, (0..8).collect::<Vec<_>>());
        // The completion count is written just after the item's own signal.
        let deadline = Instant::now() + ms(5000);
        while pool.snapshot().completed_items < 8 && Instant::now() < deadline {
            std::thread::sleep(ms(5));
        }
        let s = pool.snapshot();
        assert!(s.starvation_injections >= 1, "{s:?}");
        assert_eq!(s.queue_length, 0);
        assert_eq!(s.completed_items, 8);
    }
}
