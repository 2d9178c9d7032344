//! .NET 8.0.4's thread-pool hill climbing as a pure, deterministic state machine.
//!
//! A port of `PortableThreadPool.HillClimbing.cs` (dotnet/runtime,
//! `src/libraries/System.Private.CoreLib/src/System/Threading/`), whose constants and `Update`
//! logic were checked against the 8.0.4 IL (docs/dotnet-pool.md §2). The pool calls
//! [`HillClimbing::update`] on a completion once the current sample interval has elapsed and
//! sets its goal to the answer; it calls [`HillClimbing::force_change`] whenever it changes the
//! goal itself (starvation injection, idle retirement), so the control setting follows.
//!
//! Differences from the runtime, all deliberate:
//! - the interval RNG is a seeded SplitMix64 (the runtime's `new Random()` is seeded per process);
//! - `min_threads`/`max_threads` are fixed at construction (the runtime reads `_minThreads` and
//!   `_maxThreads` live, which `SetMinThreads`/`SetMaxThreads` may change);
//! - the CPU percentage is passed in (the runtime reads the gate thread's `_cpuUtilization`);
//! - the `_log` ring, the per-change throughput it records and the event-source events are not
//!   kept: they only report, they decide nothing.

use std::time::Duration;

/// The live 8.0.4 constants (read by reflection from the runtime, docs/dotnet-pool.md §2).
#[derive(Debug, Clone, PartialEq)]
pub struct HillClimbingConfig {
    /// `_wavePeriod`: samples per period of the square wave (`HillClimbing.WavePeriod`, 4).
    pub wave_period: u32,
    /// `_maxThreadWaveMagnitude` (`MaxWaveMagnitude`, 20).
    pub max_wave_magnitude: u32,
    /// `_threadMagnitudeMultiplier` (`WaveMagnitudeMultiplier` 100 / 100).
    pub wave_magnitude_multiplier: f64,
    /// `WaveHistorySize` (8): `_samplesToMeasure` = `wave_period` × this.
    pub wave_history_size: u32,
    /// `_gainExponent` (`GainExponent` 200 / 100).
    pub gain_exponent: f64,
    /// `_maxChangePerSecond` (4).
    pub max_change_per_second: f64,
    /// `_maxChangePerSample` (20): upper bound of one positive move.
    pub max_change_per_sample: u32,
    /// `_sampleIntervalMsLow` (10 ms); milliseconds are what counts.
    pub sample_interval_low: Duration,
    /// `_sampleIntervalMsHigh` (200 ms).
    pub sample_interval_high: Duration,
    /// `_throughputErrorSmoothingFactor` (`ErrorSmoothingFactor` 1 / 100).
    pub throughput_error_smoothing: f64,
    /// `_targetThroughputRatio` (`Bias` 15 / 100).
    pub target_throughput_ratio: f64,
    /// `_targetSignalToNoiseRatio` (300 / 100).
    pub target_signal_to_noise: f64,
    /// `_maxSampleError` (`MaxSampleErrorPercent` 15 / 100): the sample accuracy rule.
    pub max_sample_error: f64,
    /// `CpuUtilizationHigh` (95): positive moves are vetoed above it.
    pub cpu_high_percent: f64,
}

impl HillClimbingConfig {
    /// The defaults of `CreateHillClimber` and `CpuUtilizationHigh`, as live in 8.0.4.
    pub fn dotnet_defaults() -> Self {
        HillClimbingConfig {
            wave_period: 4,
            max_wave_magnitude: 20,
            wave_magnitude_multiplier: 1.0,
            wave_history_size: 8,
            gain_exponent: 2.0,
            max_change_per_second: 4.0,
            max_change_per_sample: 20,
            sample_interval_low: Duration::from_millis(10),
            sample_interval_high: Duration::from_millis(200),
            throughput_error_smoothing: 0.01,
            target_throughput_ratio: 0.15,
            target_signal_to_noise: 3.0,
            max_sample_error: 0.15,
            cpu_high_percent: 95.0,
        }
    }
}

impl Default for HillClimbingConfig {
    fn default() -> Self {
        Self::dotnet_defaults()
    }
}

/// `HillClimbing.StateOrTransition` (8.0 order). `update` yields `Warmup`, `ClimbingMove` or
/// `Stabilizing`; the others name the reasons given to `force_change`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Warmup,
    Initializing,
    RandomMove,
    ClimbingMove,
    ChangePoint,
    Stabilizing,
    Starvation,
    ThreadTimedOut,
    CooperativeBlocking,
}

/// One decision of `Update`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The new thread-count goal (`newThreadCount`).
    pub goal: u32,
    /// When to sample next (`newSampleMs`; 10 ms when the sample was only accumulated).
    pub next_sample: Duration,
    /// The state `Update` computed for an accepted sample (the runtime logs it only when the goal
    /// changed); `None` when the sample was only accumulated.
    pub transition: Option<Transition>,
}

/// The sample interval drawn at construction and at each goal change (`DefaultSampleIntervalMs*`).
const FALLBACK_INTERVAL_MS: (u32, u32) = (10, 200);
/// `Update` returns 10 ms while it accumulates an inaccurate sample.
const ACCUMULATE_MS: u64 = 10;

/// The runtime's `HillClimbing.Complex`: just the operations `Update` uses.
#[derive(Debug, Clone, Copy, Default)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    fn scale(self, k: f64) -> Complex {
        Complex {
            re: self.re * k,
            im: self.im * k,
        }
    }

    fn div_scalar(self, d: f64) -> Complex {
        Complex {
            re: self.re / d,
            im: self.im / d,
        }
    }

    fn sub(self, o: Complex) -> Complex {
        Complex {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }

    /// `operator /(Complex, Complex)`, written as the runtime writes it.
    fn div(self, o: Complex) -> Complex {
        let denom = o.re * o.re + o.im * o.im;
        Complex {
            re: (self.re * o.re + self.im * o.im) / denom,
            im: (-self.re * o.im + self.im * o.re) / denom,
        }
    }

    fn abs(self) -> f64 {
        (self.re * self.re + self.im * self.im).sqrt()
    }
}

/// SplitMix64: a tiny seeded generator, so a run's intervals are reproducible.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `Random.Next(low, high + 1)`: uniform in `[low, high]`.
    fn between(&mut self, low: u32, high: u32) -> u32 {
        let span = u64::from(high - low) + 1;
        low + (self.next_u64() % span) as u32
    }
}

/// `GetWaveComponent`: the Goertzel algorithm over the last `num` samples of the ring `ring`
/// (whose newest entry is at `total - 1`), for a sinusoid of `period` samples.
fn wave_component(ring: &[f64], total: u64, num: usize, period: f64) -> Complex {
    let w = 2.0 * std::f64::consts::PI / period;
    let cos = w.cos();
    let coeff = 2.0 * cos;
    let (mut q1, mut q2) = (0.0, 0.0);
    let len = ring.len() as u64;
    for i in 0..num as u64 {
        let q0 = coeff * q1 - q2 + ring[((total - num as u64 + i) % len) as usize];
        q2 = q1;
        q1 = q0;
    }
    Complex {
        re: q1 - q2 * cos,
        im: q2 * w.sin(),
    }
    .div_scalar(num as f64)
}

/// `PortableThreadPool.HillClimbing`: the control setting, the throughput history and the
/// pending (accumulated) sample.
#[derive(Debug, Clone)]
pub struct HillClimbing {
    cfg: HillClimbingConfig,
    min_threads: u32,
    max_threads: u32,
    /// `_sampleIntervalMsLow`/`High` after the constructor's low <= high check.
    interval_ms: (u32, u32),
    /// `_currentControlSetting`.
    control: f64,
    /// `_totalSamples`.
    total_samples: u64,
    /// `_lastThreadCount`.
    last_goal: u32,
    /// `_averageThroughputNoise`.
    average_noise: f64,
    /// `_accumulatedCompletionCount`, `_accumulatedSampleDurationSeconds`.
    accumulated_completions: u64,
    accumulated_secs: f64,
    /// `_samples`, `_threadCounts`: rings of `_samplesToMeasure` entries.
    samples: Vec<f64>,
    thread_counts: Vec<f64>,
    /// `_currentSampleMs`.
    current_sample_ms: u32,
    rng: SplitMix64,
}

impl HillClimbing {
    /// `min_threads`/`max_threads` bound the goal as the runtime's do; `seed` seeds the
    /// sample-interval RNG (the runtime seeds from the process id; we want runs reproducible).
    ///
    /// # Panics
    /// If `min_threads > max_threads`, `wave_period < 2` (the runtime's `Debug.Assert(period >= 2)`
    /// in `GetWaveComponent`) or `wave_history_size == 0`.
    pub fn new(cfg: HillClimbingConfig, min_threads: u32, max_threads: u32, seed: u64) -> Self {
        assert!(
            min_threads <= max_threads,
            "hill climbing: min threads {min_threads} above max threads {max_threads}"
        );
        assert!(cfg.wave_period >= 2, "hill climbing: wave period below 2");
        assert!(cfg.wave_history_size >= 1, "hill climbing: empty history");
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        // Constructor: low/high are kept only if low <= high, else the defaults 10/200.
        let (low, high) = (ms(cfg.sample_interval_low), ms(cfg.sample_interval_high));
        let interval_ms = if low <= high {
            (low, high)
        } else {
            FALLBACK_INTERVAL_MS
        };
        // Constructor: `_samplesToMeasure = wavePeriod * waveHistorySize`.
        let n = (cfg.wave_period * cfg.wave_history_size) as usize;
        let mut rng = SplitMix64(seed);
        // Constructor: `_currentSampleMs = Next(low, high + 1)`.
        let current_sample_ms = rng.between(interval_ms.0, interval_ms.1);
        HillClimbing {
            cfg,
            min_threads,
            max_threads,
            interval_ms,
            control: 0.0,
            total_samples: 0,
            last_goal: 0,
            average_noise: 0.0,
            accumulated_completions: 0,
            accumulated_secs: 0.0,
            samples: vec![0.0; n],
            thread_counts: vec![0.0; n],
            current_sample_ms,
            rng,
        }
    }

    /// `HillClimbing.Update(currentThreadCount, sampleDurationSeconds, numCompletions, out
    /// adjustmentInterval)` with the CPU veto. `sample_secs` must be > 0 (the pool samples after
    /// at least half an interval).
    pub fn update(
        &mut self,
        current_goal: u32,
        sample_secs: f64,
        completions: u32,
        cpu_percent: f64,
    ) -> Step {
        // Update: "If someone changed the thread count without telling us" → ForceChange.
        if current_goal != self.last_goal {
            self.force_change(current_goal, Transition::Initializing);
        }
        // Update: add in the data already collected about this sample.
        let secs = sample_secs + self.accumulated_secs;
        let completions = u64::from(completions) + self.accumulated_completions;

        // Update: the count is off by ±(threadCount − 1) items, so while
        // `(currentThreadCount - 1.0) / numCompletions >= _maxSampleError` (never for the first
        // sample, `_totalSamples > 0`) accumulate and ask again in 10 ms.
        if self.total_samples > 0
            && (f64::from(current_goal) - 1.0) / completions as f64 >= self.cfg.max_sample_error
        {
            self.accumulated_secs = secs;
            self.accumulated_completions = completions;
            return Step {
                goal: current_goal,
                next_sample: Duration::from_millis(ACCUMULATE_MS),
                transition: None,
            };
        }
        self.accumulated_secs = 0.0;
        self.accumulated_completions = 0;

        // Update: record throughput and thread count in the history rings.
        let throughput = completions as f64 / secs;
        let ring = self.samples.len() as u64;
        let index = (self.total_samples % ring) as usize;
        self.samples[index] = throughput;
        self.thread_counts[index] = f64::from(current_goal);
        self.total_samples += 1;

        let cfg = &self.cfg;
        let period = cfg.wave_period as usize;
        let mut ratio = Complex::default();
        let mut confidence = 0.0;
        let mut state = Transition::Warmup;
        // Update: `sampleCount = min(_totalSamples - 1, _samplesToMeasure) / _wavePeriod * _wavePeriod`.
        let sample_count = (self.total_samples - 1).min(ring) as usize / period * period;
        if sample_count > period {
            let window = |values: &[f64]| -> f64 {
                (0..sample_count as u64)
                    .map(|i| {
                        values[((self.total_samples - sample_count as u64 + i) % ring) as usize]
                    })
                    .sum::<f64>()
                    / sample_count as f64
            };
            let average_throughput = window(&self.samples);
            let average_threads = window(&self.thread_counts);
            if average_throughput > 0.0 && average_threads > 0.0 {
                // Update: the two adjacent Fourier bands measure the noise.
                let bands = sample_count as f64 / period as f64;
                let adjacent1 = sample_count as f64 / (bands + 1.0);
                let adjacent2 = sample_count as f64 / (bands - 1.0);
                let goertzel = |values: &[f64], p: f64| {
                    wave_component(values, self.total_samples, sample_count, p)
                };
                let throughput_wave =
                    goertzel(&self.samples, period as f64).div_scalar(average_throughput);
                let mut error = goertzel(&self.samples, adjacent1)
                    .div_scalar(average_throughput)
                    .abs();
                if adjacent2 <= sample_count as f64 {
                    error = error.max(
                        goertzel(&self.samples, adjacent2)
                            .div_scalar(average_throughput)
                            .abs(),
                    );
                }
                let thread_wave =
                    goertzel(&self.thread_counts, period as f64).div_scalar(average_threads);
                // Update: `_averageThroughputNoise`, seeded by the first estimate, then smoothed.
                self.average_noise = if self.average_noise == 0.0 {
                    error
                } else {
                    cfg.throughput_error_smoothing * error
                        + (1.0 - cfg.throughput_error_smoothing) * self.average_noise
                };
                // Update: ratio = (throughputWave − target × threadWave) / threadWave.
                if thread_wave.abs() > 0.0 {
                    ratio = throughput_wave
                        .sub(thread_wave.scale(cfg.target_throughput_ratio))
                        .div(thread_wave);
                    state = Transition::ClimbingMove;
                } else {
                    state = Transition::Stabilizing;
                }
                // Update: confidence = |threadWave| / max(noise, error) / targetSignalToNoise.
                let noise = self.average_noise.max(error);
                confidence = if noise > 0.0 {
                    thread_wave.abs() / noise / cfg.target_signal_to_noise
                } else {
                    1.0
                };
            }
        }

        // Update: move = clamp(ratio.Real, −1, 1) × clamp(confidence, 0, 1), then the
        // non-linear gain `|move|^gainExponent × sign × maxChangePerSecond × seconds`, capped
        // above (only) by `_maxChangePerSample`.
        let mut step = ratio.re.clamp(-1.0, 1.0) * confidence.clamp(0.0, 1.0);
        let gain = cfg.max_change_per_second * secs;
        let sign = if step >= 0.0 { 1.0 } else { -1.0 };
        step = step.abs().powf(cfg.gain_exponent) * sign * gain;
        step = step.min(f64::from(cfg.max_change_per_sample));
        // Update: `move > 0.0 && _cpuUtilization > CpuUtilizationHigh` → no move. The runtime's
        // `_cpuUtilization` is an integer percentage, hence the truncation.
        if step > 0.0 && cpu_percent.trunc() > cfg.cpu_high_percent {
            step = 0.0;
        }
        self.control += step;

        // Update: magnitude = (int)(0.5 + control × noise × SNR × multiplier × 2), in [1, max].
        let magnitude = ((0.5
            + self.control
                * self.average_noise
                * cfg.target_signal_to_noise
                * cfg.wave_magnitude_multiplier
                * 2.0) as i64)
            .min(i64::from(cfg.max_wave_magnitude))
            .max(1);
        // Update: control within [minThreads, maxThreads − magnitude] (the max applied last).
        self.control = self
            .control
            .min(f64::from(self.max_threads) - magnitude as f64)
            .max(f64::from(self.min_threads));
        // Update: `(int)(control + magnitude × ((_totalSamples / (_wavePeriod / 2)) % 2))`,
        // then clamped to [minThreads, maxThreads].
        let phase = (self.total_samples / u64::from(cfg.wave_period / 2)) % 2;
        let goal = ((self.control + (magnitude as f64) * phase as f64) as i64)
            .min(i64::from(self.max_threads))
            .max(i64::from(self.min_threads)) as u32;
        if goal != current_goal {
            self.change_goal(goal);
        }
        // Update: at minThreads with a negative ratio, wait up to 10× longer before the next try.
        let next_ms = if ratio.re < 0.0 && goal == self.min_threads {
            (0.5 + f64::from(self.current_sample_ms) * (10.0 * (-ratio.re).min(1.0))) as u64
        } else {
            u64::from(self.current_sample_ms)
        };
        Step {
            goal,
            next_sample: Duration::from_millis(next_ms),
            transition: Some(state),
        }
    }

    /// `ForceChange(newThreadCount, reason)`: the control setting follows a change made elsewhere
    /// (starvation injection, idle retirement).
    pub fn force_change(&mut self, new_goal: u32, _reason: Transition) {
        // ForceChange: shift the control setting by the goal's delta, then ChangeThreadCount.
        if new_goal != self.last_goal {
            self.control += f64::from(new_goal) - f64::from(self.last_goal);
            self.change_goal(new_goal);
        }
    }

    /// The current sample interval (`_currentSampleMs`), the first one drawn at construction.
    pub fn sample_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.current_sample_ms))
    }

    /// The control setting (`_currentControlSetting`), for tests and probes.
    pub fn control_setting(&self) -> f64 {
        self.control
    }

    /// `ChangeThreadCount`: remember the goal and draw a new sample interval.
    fn change_goal(&mut self, goal: u32) {
        self.last_goal = goal;
        self.current_sample_ms = self.rng.between(self.interval_ms.0, self.interval_ms.1);
    }
}

#[cfg(test)]
#[path = "hill_climbing_tests.rs"]
mod tests;
