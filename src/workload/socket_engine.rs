//! `serve --io-model dotnet`: a model of .NET's Linux socket engine (`SocketAsyncEngine.Unix.cs`,
//! .NET 5–8), the front door that waits for pool threads as Kestrel's does.
//!
//! The epoll thread puts every readiness event into the engine's own queue and keeps **at most
//! one** pool work item scheduled to drain it (`_eventQueueProcessingRequested`, 0/1). When a
//! pool thread runs that item it clears the flag, takes the first event (none: done), schedules
//! one more item at once (so a second thread can help), then handles events until the queue is
//! empty or 15 ms have passed since it began; in the second case it schedules the item again.
//! Handling an event here is "the request is read": the request then goes to the pool as its
//! own item, as Kestrel dispatches it. So under starvation requests wait in this queue, which
//! `ThreadPool.PendingWorkItemCount` (the queue-length gauge) does not count: the pool queue
//! shows at most one engine item, however many requests wait behind it.
//!
//! [`EngineCore`] is the rule as a plain state machine over time; [`SocketEngine`] runs it on
//! the real pool. See docs/workload.md for what is simplified.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::pool::ThreadPool;

/// How long one engine work item handles events before it re-queues itself (.NET: the literal
/// 15 ms of `SocketAsyncEngine.Execute`).
pub const QUANTUM: Duration = Duration::from_millis(15);

/// The engine's event queue and its "one item scheduled" flag.
#[derive(Debug)]
pub struct EngineCore<E> {
    events: VecDeque<(E, Instant)>,
    processing_requested: bool,
}

/// What an engine work item does after handling an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<E> {
    /// Handle this event next.
    Handle(E),
    /// The quantum is over with events left: the item ends, and the caller schedules it again
    /// if [`EngineCore::schedule`] says so.
    Requeue,
    /// The queue is empty: the item ends.
    Done,
}

impl<E> Default for EngineCore<E> {
    fn default() -> Self {
        EngineCore {
            events: VecDeque::new(),
            processing_requested: false,
        }
    }
}

impl<E> EngineCore<E> {
    /// `ScheduleToProcessEvents`: true if the caller must queue one engine item to the pool
    /// (none was scheduled); false if one already is.
    pub fn schedule(&mut self) -> bool {
        !std::mem::replace(&mut self.processing_requested, true)
    }

    /// A readiness event from the epoll thread; true if the caller must queue an engine item.
    pub fn push(&mut self, ev: E, now: Instant) -> bool {
        self.events.push_back((ev, now));
        self.schedule()
    }

    /// A pool thread starts the engine item: the flag is cleared and the first event taken
    /// (None: nothing to do). With an event, the item schedules one more item before handling
    /// it (the bool: whether the caller must queue one), so another thread can help drain.
    pub fn begin(&mut self) -> (Option<E>, bool) {
        self.processing_requested = false;
        match self.events.pop_front() {
            Some((ev, _)) => (Some(ev), self.schedule()),
            None => (None, false),
        }
    }

    /// After handling an event, `elapsed` since the item began: the next event, or the end.
    pub fn next(&mut self, elapsed: Duration) -> Step<E> {
        if elapsed >= QUANTUM {
            return if self.events.is_empty() {
                Step::Done
            } else {
                Step::Requeue
            };
        }
        match self.events.pop_front() {
            Some((ev, _)) => Step::Handle(ev),
            None => Step::Done,
        }
    }

    /// Events waiting (not counted by the pool's queue-length gauge).
    pub fn backlog(&self) -> usize {
        self.events.len()
    }

    /// How long the oldest waiting event has waited.
    pub fn oldest_wait(&self, now: Instant) -> Duration {
        self.events
            .front()
            .map(|(_, t)| now.saturating_duration_since(*t))
            .unwrap_or_default()
    }
}

/// The engine on the real pool: [`SocketEngine::admit`] resolves once an engine work item,
/// run by a pool thread, has "read" the request.
pub struct SocketEngine {
    core: Mutex<EngineCore<tokio::sync::oneshot::Sender<()>>>,
    /// Weak: the engine's queued items must not keep the pool alive.
    pool: Weak<ThreadPool>,
}

impl SocketEngine {
    pub fn new(pool: &Arc<ThreadPool>) -> Arc<SocketEngine> {
        Arc::new(SocketEngine {
            core: Mutex::default(),
            pool: Arc::downgrade(pool),
        })
    }

    fn core(&self) -> MutexGuard<'_, EngineCore<tokio::sync::oneshot::Sender<()>>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until the engine has read this request (a pool thread ran the engine's item).
    pub async fn admit(self: &Arc<Self>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.core().push(tx, Instant::now()) {
            self.queue_item();
        }
        // The engine never drops an event unhandled while the pool runs; if the pool is gone
        // the request fails further on.
        let _ = rx.await;
    }

    /// (events waiting, oldest wait).
    pub fn backlog(&self) -> (usize, Duration) {
        let core = self.core();
        (core.backlog(), core.oldest_wait(Instant::now()))
    }

    fn queue_item(self: &Arc<Self>) {
        // A pool that is gone (shutting down) leaves the event's waiter to fail.
        if let Some(pool) = self.pool.upgrade() {
            let engine = self.clone();
            pool.enqueue(move || engine.run_item());
        }
    }

    /// One engine work item, on a pool thread.
    fn run_item(self: &Arc<Self>) {
        let started = Instant::now();
        let (first, more) = self.core().begin();
        let Some(mut ev) = first else { return };
        if more {
            self.queue_item();
        }
        loop {
            // The request is read; its handler dispatches it to the pool as its own item.
            let _ = ev.send(());
            let step = self.core().next(started.elapsed());
            match step {
                Step::Handle(next) => ev = next,
                Step::Requeue => {
                    if self.core().schedule() {
                        self.queue_item();
                    }
                    return;
                }
                Step::Done => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn at_most_one_item_is_scheduled_however_many_events_wait() {
        let mut e = EngineCore::default();
        let t0 = Instant::now();
        assert!(e.push(1, t0), "the first event schedules the item");
        for i in 2..=40 {
            assert!(!e.push(i, t0 + ms(i)), "one item is already scheduled");
        }
        assert_eq!(e.backlog(), 40);
        assert_eq!(e.oldest_wait(t0 + ms(100)), ms(100));
    }

    #[test]
    fn an_item_schedules_one_more_then_drains_until_empty() {
        let mut e = EngineCore::default();
        let t0 = Instant::now();
        for i in 1..=3 {
            let _ = e.push(i, t0);
        }
        // A pool thread runs the item: it takes the first and asks for a helper at once.
        assert_eq!(e.begin(), (Some(1), true));
        // While that helper is scheduled, new events schedule nothing more.
        assert!(!e.push(4, t0));
        assert_eq!(e.next(ms(1)), Step::Handle(2));
        assert_eq!(e.next(ms(2)), Step::Handle(3));
        assert_eq!(e.next(ms(3)), Step::Handle(4));
        assert_eq!(e.next(ms(4)), Step::Done);
        // The helper finds the queue empty and schedules nothing.
        assert_eq!(e.begin(), (None, false));
        // So the next event schedules an item again.
        assert!(e.push(5, t0));
    }

    #[test]
    fn after_the_15_ms_quantum_the_item_requeues_if_events_remain() {
        let mut e = EngineCore::default();
        let t0 = Instant::now();
        for i in 1..=3 {
            let _ = e.push(i, t0);
        }
        assert_eq!(e.begin(), (Some(1), true));
        assert_eq!(e.next(ms(14)), Step::Handle(2));
        assert_eq!(e.next(QUANTUM), Step::Requeue);
        assert_eq!(e.backlog(), 1, "the event left waits for the next item");
        // The helper scheduled by `begin` is still pending: re-queueing adds nothing.
        assert!(!e.schedule());
        // Quantum over with nothing left: done, no re-queue.
        assert_eq!(e.begin(), (Some(3), true));
        assert_eq!(e.next(ms(20)), Step::Done);
    }

    #[test]
    fn waiting_events_are_not_pool_items() {
        // 40 requests arrive while every pool thread is blocked: the pool's queue holds one
        // engine item, the engine's queue the 40 requests.
        let mut e = EngineCore::default();
        let t0 = Instant::now();
        let pool_items = (1..=40).filter(|&i| e.push(i, t0)).count();
        assert_eq!(pool_items, 1);
        assert_eq!(e.backlog(), 40);
    }
}
