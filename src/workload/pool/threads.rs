//! The pool on real OS threads: workers that block for real and a gate thread that ticks on
//! the core's grid. Every decision is [`Core`]'s; this file only sleeps, spawns and wakes.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use super::{Core, IdleOutcome, PoolConfig, Snapshot, Wake};

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

/// Lets a work item report progress the way an inlined task does (`Task.Run(...).Wait()` runs
/// the task on the waiting pool thread, and its end counts as a completion). Holds the pool
/// weakly, so a queued item never keeps a dropped pool alive.
#[derive(Clone)]
pub struct Progress(Weak<Shared>);

impl Progress {
    /// `NotifyWorkItemProgress` at the end of an inlined task.
    pub fn notify(&self) {
        if let Some(shared) = self.0.upgrade() {
            let wake = lock(&shared.core).notify_progress(Instant::now());
            apply(&shared, wake);
        }
    }
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

    /// A handle for items that run a task inline and must report its end.
    pub fn progress(&self) -> Progress {
        Progress(Arc::downgrade(&self.shared))
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
        // Take the core's lock so a gate between its check and its wait cannot miss this.
        drop(lock(&self.shared.core));
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
    if wake.start_gate {
        shared.gate_wakeup.notify_all();
    }
    for _ in 0..wake.spawn {
        let s = shared.clone();
        let start_delay = lock(&shared.core).config().thread_start_delay;
        let spawned = std::thread::Builder::new()
            .name("pool-worker".into())
            .spawn(move || {
                // A new .NET worker takes its first request this long after its creation.
                std::thread::sleep(start_delay);
                worker_thread(&s)
            });
        if let Err(e) = spawned {
            // Out of threads: the gate retries later.
            tracing::error!("cannot start a pool thread: {e}");
            lock(&shared.core).spawn_failed();
        }
    }
}

/// Wait for the core's next tick (or, parked, for a thread request), then tick.
fn gate_loop(shared: &Arc<Shared>) {
    let mut core = lock(&shared.core);
    loop {
        if *lock(&shared.shutdown) {
            return;
        }
        let Some(tick) = core.next_gate_tick() else {
            core = shared
                .gate_wakeup
                .wait(core)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        if now < tick {
            core = shared
                .gate_wakeup
                .wait_timeout(core, tick - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        drop(core);
        let cpu = shared.cpu.cpu_percent();
        // The tick's own instant, late by the wake-up latency: .NET reads the tick count after
        // waking and anchors the next tick on it, so the grid drifts later by that latency.
        let wake = lock(&shared.core).gate_tick(Instant::now(), cpu);
        apply(shared, wake);
        core = lock(&shared.core);
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

/// `WorkerDoWork`: serve requests; inside a dispatch, keep dequeuing until the queue is empty
/// or the pool says this worker is one too many.
fn work_while_requested(shared: &Arc<Shared>) {
    let mut core = lock(&shared.core);
    while core.take_request(Instant::now()) {
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
            let done = lock(&shared.core).item_completed(Instant::now());
            apply(shared, done.wake);
            if !done.keep_working {
                // Already out of processing: straight back to the idle wait.
                return;
            }
            core = lock(&shared.core);
        }
    }
    let wake = core.remove_working_worker();
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
    use std::time::Duration;

    struct NoCpu;
    impl CpuSource for NoCpu {
        fn cpu_percent(&self) -> f64 {
            0.0
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn real_threads_run_every_item_and_inject_under_starvation() {
        let mut c = PoolConfig::dotnet_defaults(1);
        c.gate_interval = ms(50);
        c.starvation_delay = ms(50);
        c.thread_start_delay = ms(5);
        c.hill_climbing = None;
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

    #[test]
    fn an_inlined_task_counts_as_a_completion() {
        let pool = ThreadPool::start(PoolConfig::dotnet_defaults(2), Arc::new(NoCpu)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let progress = pool.progress();
        pool.enqueue(move || {
            progress.notify();
            tx.send(()).unwrap();
        });
        rx.recv_timeout(ms(5000)).unwrap();
        let deadline = Instant::now() + ms(5000);
        while pool.snapshot().completed_items < 2 && Instant::now() < deadline {
            std::thread::sleep(ms(5));
        }
        assert_eq!(pool.snapshot().completed_items, 2, "the task and the item");
    }
}
