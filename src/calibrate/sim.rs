//! One replica under one load profile, in virtual time: the serve command's own pool decisions
//! ([`Core`]: gate grid, starvation clock, hill climbing) driven by the load generator's own
//! start times ([`Schedule`]), with every request blocking its thread for `block` and ending with
//! the inlined task's completion and then the item's, as `serve` does. Nothing sleeps, so a
//! 165 s run takes a few milliseconds and a fit can try many parameter values.
//!
//! Simplified (see docs/calibrate.md): the direct I/O model (each request is one pool item), no
//! idle-thread retirement (no thread idles 20 s during the ramp), CPU below the high mark (the
//! requests sleep), and a client that drops an iteration when `max_vus` are in flight, as k6 does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::load::schedule::Schedule;
use crate::workload::pool::{Core, PoolConfig, Wake};

/// The gate's mean wake-up latency on .NET 8.0.4 here: ticks 500.13 ms apart over 277 periods
/// (docs/dotnet-pool.md §1).
pub const GATE_LATENCY: Duration = Duration::from_micros(130);

/// What one simulated run needs besides the pool's constants.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub schedule: Schedule,
    /// How long each request holds its thread.
    pub block: Duration,
    /// The client gives up on a request after this long (its thread still blocks).
    pub timeout: Duration,
    pub max_vus: u64,
    /// How late the gate wakes for each tick; the next tick is anchored on the late one, so the
    /// grid drifts (.NET 8 here: ticks 500.13 ms apart on average, docs/dotnet-pool.md §1).
    pub gate_latency: Duration,
    /// Sample every this long, from offset 0 to `until`.
    pub step: Duration,
    pub until: Duration,
}

/// The gauges at each sample offset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// `(offset_s, busy worker threads)`.
    pub busy: Vec<(f64, f64)>,
    /// `(offset_s, pool threads alive)`.
    pub threads: Vec<(f64, f64)>,
    /// `(offset_s, pool queue length)`.
    pub queue: Vec<(f64, f64)>,
    pub dropped: u64,
    pub injections: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    // Order at one instant: completions free threads before arrivals queue, ticks and samples last.
    JobDone(usize),
    Timeout(usize),
    Arrival,
    Release,
    Gate,
    Sample,
}

struct Sim {
    core: Core<usize>,
    base: Instant,
    block: Duration,
    timeout: Duration,
    max_vus: u64,
    events: BinaryHeap<Reverse<(Duration, Event, u64)>>,
    gate_latency: Duration,
    /// When the pending gate tick fires; an older scheduled tick is stale.
    gate_due: Option<Duration>,
    seq: u64,
    /// Per request: the client is still waiting.
    waiting: Vec<bool>,
    in_flight: u64,
    trace: Trace,
}

impl Sim {
    fn at(&mut self, t: Duration, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((t, e, self.seq)));
    }

    fn apply(&mut self, now: Duration, wake: Wake) {
        // A woken idle thread serves at once; a new one after the thread start delay.
        for _ in 0..wake.notify {
            self.at(now, Event::Release);
        }
        let start = now + self.core.config().thread_start_delay;
        for _ in 0..wake.spawn {
            self.at(start, Event::Release);
        }
        if wake.start_gate {
            self.schedule_gate();
        }
    }

    /// The gate's next tick, woken `gate_latency` late.
    fn schedule_gate(&mut self) {
        if let Some(tick) = self.core.next_gate_tick() {
            let due = tick - self.base + self.gate_latency;
            self.gate_due = Some(due);
            self.at(due, Event::Gate);
        }
    }

    /// A released worker: take the request, dispatch until the queue is empty, then stop
    /// (`work_while_requested` in the real pool). `dispatching` is the state after a job ends.
    fn work(&mut self, now: Duration, mut dispatching: Option<bool>) {
        let instant = self.base + now;
        loop {
            let first = match dispatching {
                Some(first) => first,
                None if self.core.take_request(instant) => true,
                None => {
                    let wake = self.core.remove_working_worker();
                    self.apply(now, wake);
                    return;
                }
            };
            let (job, wake) = self.core.dequeue(first, instant);
            self.apply(now, wake);
            match job {
                Some(id) => return self.at(now + self.block, Event::JobDone(id)),
                None => dispatching = None,
            }
        }
    }

    fn client_done(&mut self, id: usize) {
        if std::mem::take(&mut self.waiting[id]) {
            self.in_flight -= 1;
        }
    }

    fn step(&mut self, now: Duration, event: Event) {
        let instant = self.base + now;
        match event {
            Event::Arrival if self.in_flight >= self.max_vus => self.trace.dropped += 1,
            Event::Arrival => {
                let id = self.waiting.len();
                self.waiting.push(true);
                self.in_flight += 1;
                self.at(now + self.timeout, Event::Timeout(id));
                let wake = self.core.enqueue(id, instant);
                self.apply(now, wake);
            }
            Event::JobDone(id) => {
                // The inlined `Task.Run` ends first, then the item itself.
                let wake = self.core.notify_progress(instant);
                self.apply(now, wake);
                let done = self.core.item_completed(instant);
                self.apply(now, done.wake);
                self.client_done(id);
                if done.keep_working {
                    self.work(now, Some(false));
                }
            }
            Event::Timeout(id) => self.client_done(id),
            Event::Release => {
                // A notified idle thread consumes its permit; a new thread has none to take.
                let _ = self.core.take_permit();
                self.work(now, None);
            }
            Event::Gate if self.gate_due == Some(now) => {
                self.gate_due = None;
                let wake = self.core.gate_tick(instant, 0.0);
                self.apply(now, wake);
                self.schedule_gate();
            }
            Event::Gate => {}
            Event::Sample => {
                let s = self.core.snapshot();
                let t = now.as_secs_f64();
                self.trace.busy.push((t, s.busy() as f64));
                self.trace.threads.push((t, f64::from(s.counts.existing)));
                self.trace.queue.push((t, s.queue_length as f64));
            }
        }
    }
}

/// Run `scenario` against a pool with `pool`'s constants.
pub fn simulate(pool: &PoolConfig, scenario: &Scenario) -> Trace {
    let base = Instant::now();
    let mut sim = Sim {
        core: Core::new(pool.clone(), base),
        base,
        block: scenario.block,
        timeout: scenario.timeout,
        max_vus: scenario.max_vus,
        events: BinaryHeap::new(),
        gate_latency: scenario.gate_latency,
        gate_due: None,
        seq: 0,
        waiting: Vec::new(),
        in_flight: 0,
        trace: Trace::default(),
    };
    for start in scenario.schedule.iter() {
        sim.at(start, Event::Arrival);
    }
    let mut t = Duration::ZERO;
    while t <= scenario.until && !scenario.step.is_zero() {
        sim.at(t, Event::Sample);
        t += scenario.step;
    }
    while let Some(Reverse((now, event, _))) = sim.events.pop() {
        if now > scenario.until {
            break;
        }
        sim.step(now, event);
    }
    sim.trace.injections = sim.core.snapshot().starvation_injections;
    sim.trace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::schedule::parse_stages;

    fn scenario(stages: &str, until_s: u64) -> Scenario {
        Scenario {
            schedule: Schedule::new(1.0, Duration::from_secs(1), parse_stages(stages).unwrap())
                .unwrap(),
            block: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
            max_vus: 1000,
            gate_latency: Duration::from_micros(130),
            step: Duration::from_secs(1),
            until: Duration::from_secs(until_s),
        }
    }

    fn pool(min: u32, delay_ms: u64) -> PoolConfig {
        PoolConfig {
            min_threads: min,
            starvation_delay: Duration::from_millis(delay_ms),
            ..PoolConfig::dotnet_defaults(1)
        }
    }

    #[test]
    fn with_enough_min_threads_nothing_queues_and_busy_is_rate_times_block() {
        // 10/s of 2 s requests need 20 threads; 100 are free without injection.
        let t = simulate(&pool(100, 500), &scenario("10:30s", 30));
        assert_eq!(t.injections, 0);
        assert!(t.queue.iter().all(|&(_, q)| q == 0.0), "{:?}", t.queue);
        let late: Vec<f64> = t.busy.iter().filter(|p| p.0 >= 25.0).map(|p| p.1).collect();
        assert!(late.iter().all(|&b| (15.0..=21.0).contains(&b)), "{late:?}");
    }

    #[test]
    fn starved_the_pool_grows_by_starvation_and_hill_climbing() {
        // 20/s of 2 s requests: always starved. The gate alone adds at most one thread per
        // second (the new worker's clock write keeps the next tick younger than 500 ms)...
        let t = simulate(&pool(1, 500), &scenario("20:1s,20:60s", 61));
        let busy = |t: &Trace, s: f64| t.busy.iter().find(|p| p.0 == s).unwrap().1;
        assert!(t.injections <= 61, "{} injections in 61 s", t.injections);
        assert!(t.queue.last().unwrap().1 > 300.0, "{:?}", t.queue.last());
        // ...and with hill climbing off, the threads are exactly the injections plus min.
        let plain = simulate(
            &PoolConfig {
                hill_climbing: None,
                ..pool(1, 500)
            },
            &scenario("20:1s,20:60s", 61),
        );
        let threads = plain.threads.last().unwrap().1;
        assert_eq!(threads, plain.injections as f64 + 1.0);
        // A longer starvation delay injects less.
        let slow = simulate(&pool(1, 2250), &scenario("20:1s,20:60s", 61));
        assert!(
            slow.injections * 2 < t.injections,
            "{} vs {}",
            slow.injections,
            t.injections
        );
        assert!(busy(&slow, 30.0) < busy(&t, 30.0));
    }

    #[test]
    fn the_same_seed_gives_the_same_trace() {
        let a = simulate(&pool(1, 500), &scenario("15:30s,20:30s,30:30s", 90));
        let b = simulate(&pool(1, 500), &scenario("15:30s,20:30s,30:30s", 90));
        assert_eq!(a, b);
    }

    #[test]
    fn the_client_drops_iterations_beyond_max_vus() {
        let mut s = scenario("20:1s,20:30s", 31);
        s.max_vus = 50;
        let t = simulate(&pool(1, 2250), &s);
        assert!(t.dropped > 400, "dropped {}", t.dropped);
    }
}
