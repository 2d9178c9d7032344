//! Tests of `hill_climbing`; each cites the `PortableThreadPool.HillClimbing.cs` rule it checks.

use super::*;

fn climber(min: u32, max: u32, seed: u64) -> HillClimbing {
    HillClimbing::new(HillClimbingConfig::dotnet_defaults(), min, max, seed)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Feed `n` samples of `secs`, passing back each answer's goal as the next current goal (as the
/// pool does); `completions(goal, i)` is the sample's completion count. Returns each step with
/// the control setting after it.
fn drive(
    h: &mut HillClimbing,
    mut goal: u32,
    n: usize,
    secs: f64,
    cpu: f64,
    mut completions: impl FnMut(u32, usize) -> u32,
) -> Vec<(Step, f64)> {
    (0..n)
        .map(|i| {
            let step = h.update(goal, secs, completions(goal, i), cpu);
            goal = step.goal;
            (step, h.control_setting())
        })
        .collect()
}

/// Throughput proportional to the goal: `k` completions per thread per second.
fn proportional(k: f64, secs: f64) -> impl FnMut(u32, usize) -> u32 {
    move |goal, _| (f64::from(goal) * k * secs) as u32
}

#[test]
fn defaults_are_the_live_8_0_4_constants() {
    // CreateHillClimber defaults and CpuUtilizationHigh (docs/dotnet-pool.md §2).
    let c = HillClimbingConfig::default();
    assert_eq!(c, HillClimbingConfig::dotnet_defaults());
    assert_eq!(
        (c.wave_period, c.wave_history_size, c.max_wave_magnitude),
        (4, 8, 20)
    );
    assert_eq!(
        (c.max_change_per_second, c.max_change_per_sample),
        (4.0, 20)
    );
    assert_eq!(
        (c.sample_interval_low, c.sample_interval_high),
        (ms(10), ms(200))
    );
    assert_eq!(
        (c.target_throughput_ratio, c.max_sample_error),
        (0.15, 0.15)
    );
    assert_eq!((c.gain_exponent, c.target_signal_to_noise), (2.0, 3.0));
    assert_eq!(
        (c.throughput_error_smoothing, c.cpu_high_percent),
        (0.01, 95.0)
    );
    // Constructor: _samplesToMeasure = wavePeriod * waveHistorySize.
    assert_eq!(climber(1, 10, 0).samples.len(), 32);
}

#[test]
fn under_sampled_updates_accumulate_and_carry_over() {
    let mut h = climber(1, 100, 7);
    // `_totalSamples > 0 && ...`: the very first sample is accepted even with 1 completion;
    // ForceChange(Initializing) first moves the control setting from 0 to the goal.
    let s = h.update(10, 0.1, 1, 0.0);
    assert_eq!(s.transition, Some(Transition::Warmup));
    assert_eq!((s.goal, h.control_setting()), (10, 10.0));
    // `(currentThreadCount - 1.0) / numCompletions >= _maxSampleError`: 9/40 = 0.225.
    let s = h.update(10, 0.1, 40, 0.0);
    assert_eq!(
        s,
        Step {
            goal: 10,
            next_sample: ms(10),
            transition: None
        }
    );
    assert_eq!(h.total_samples, 1);
    // 40 more would be refused alone, but the carried 40 make 9/80 = 0.1125: accepted, and the
    // throughput is the whole sample's, 80 completions over 0.2 s.
    let s = h.update(10, 0.1, 40, 0.0);
    assert_eq!(s.transition, Some(Transition::Warmup));
    assert_eq!(h.total_samples, 2);
    assert!((h.samples[1] - 400.0).abs() < 1e-9, "{}", h.samples[1]);
    // The accumulators were reset: 40 alone is refused again (goal 11: 10/40).
    assert_eq!(s.goal, 11);
    assert_eq!(h.update(11, 0.1, 40, 0.0).transition, None);
    // The bound is inclusive (`>=`): 3/20 == 0.15 is refused, 3/21 accepted.
    let mut h = climber(1, 100, 7);
    h.update(4, 0.1, 100, 0.0);
    assert_eq!(h.update(4, 0.1, 20, 0.0).transition, None);
    let mut h = climber(1, 100, 7);
    h.update(4, 0.1, 100, 0.0);
    assert!(h.update(4, 0.1, 21, 0.0).transition.is_some());
}

#[test]
fn warmup_wave_then_magnitude_pinned_at_max() {
    let mut h = climber(1, 1000, 3);
    // Noisy throughput: 2000 or 20000 per second at random, whatever the goal.
    let mut noise = SplitMix64(99);
    let steps = drive(&mut h, 30, 40, 0.5, 0.0, |_, _| {
        if noise.next_u64().is_multiple_of(2) {
            1000
        } else {
            10000
        }
    });
    // Samples 1..=8: `sampleCount = min(_totalSamples - 1, 32) / 4 * 4` is at most 4, not
    // `> _wavePeriod`: Warmup, no move, noise 0 so magnitude max(1, (int)0.5) = 1, and the goal
    // is `(int)(control + 1 * ((_totalSamples / 2) % 2))`.
    let warmup: Vec<u32> = steps[..8].iter().map(|(s, _)| s.goal).collect();
    assert_eq!(warmup, [30, 31, 31, 30, 30, 31, 31, 30]);
    assert!(
        steps[..8]
            .iter()
            .all(|(s, c)| { s.transition == Some(Transition::Warmup) && *c == 30.0 })
    );
    // From sample 9 the history holds 8 samples: ClimbingMove, and the noise makes
    // `(int)(0.5 + control * noise * 3 * 1 * 2)` exceed 20, so magnitude = _maxThreadWaveMagnitude:
    // two samples at control, two at control + 20.
    assert!(
        h.average_noise * 6.0 * 30.0 > 20.0,
        "noise {}",
        h.average_noise
    );
    for (k, (s, control)) in steps.iter().enumerate().skip(8) {
        let total = k as u64 + 1;
        assert_eq!(s.transition, Some(Transition::ClimbingMove));
        let up = (total / 2) % 2;
        assert_eq!(
            s.goal,
            (control + 20.0 * up as f64) as u32,
            "sample {total}"
        );
    }
    let goals: Vec<u32> = steps[8..16].iter().map(|(s, _)| s.goal).collect();
    let lows: Vec<u32> = steps[8..16].iter().map(|(_, c)| *c as u32).collect();
    assert_eq!(
        goals,
        [
            lows[0],
            lows[1] + 20,
            lows[2] + 20,
            lows[3],
            lows[4],
            lows[5] + 20,
            lows[6] + 20,
            lows[7]
        ]
    );
}

#[test]
fn proportional_throughput_climbs_within_the_move_limits() {
    let mut h = climber(1, 1000, 5);
    let secs = 0.5;
    let steps = drive(&mut h, 10, 100, secs, 0.0, proportional(100.0, secs));
    // Update: `move = |move|^2 * sign * _maxChangePerSecond * seconds`, at most
    // `_maxChangePerSample`; here 4 * 0.5 = 2 per sample.
    let mut rises = 0;
    for w in steps.windows(2) {
        let delta = w[1].1 - w[0].1;
        assert!(delta <= 4.0 * secs + 1e-9 && delta <= 20.0, "delta {delta}");
        rises += usize::from(delta > 0.0);
    }
    let end = steps.last().unwrap().1;
    assert!(rises > 50, "{rises} rises");
    assert!(end > 40.0, "control only reached {end}");
    // With 10 s samples the gain is 40 per sample and `Math.Min(move, _maxChangePerSample)` bites.
    let mut h = climber(1, 10_000, 5);
    let steps = drive(&mut h, 10, 60, 10.0, 0.0, proportional(100.0, 10.0));
    let deltas: Vec<f64> = steps.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(deltas.iter().all(|d| *d <= 20.0 + 1e-9));
    assert!(deltas.iter().any(|d| (d - 20.0).abs() < 1e-9), "{deltas:?}");
    assert!(steps.last().unwrap().1 > 200.0);
}

#[test]
fn cpu_above_95_vetoes_every_positive_move() {
    // Update: `if (move > 0.0 && _cpuUtilization > CpuUtilizationHigh) move = 0.0`.
    let run = |cpu: f64| {
        let mut h = climber(1, 1000, 5);
        drive(&mut h, 10, 100, 0.5, cpu, proportional(100.0, 0.5))
    };
    let vetoed = run(99.0);
    assert!(vetoed.iter().all(|(_, c)| *c <= 10.0), "{vetoed:?}");
    // The test is strict and on the runtime's integer percentage: 95 and 95.9 do not veto.
    let free = run(0.0);
    assert!(free.last().unwrap().1 > 40.0);
    assert_eq!(run(95.0), free);
    assert_eq!(run(95.9), free);
}

#[test]
fn force_change_shifts_the_control_setting_by_the_goal_delta() {
    let mut h = climber(1, 1000, 11);
    assert_eq!(h.update(10, 0.5, 500, 0.0).goal, 10);
    // ForceChange: `_currentControlSetting += newThreadCount - _lastThreadCount`, then
    // ChangeThreadCount draws a new interval.
    let before = h.rng.clone();
    h.force_change(14, Transition::Starvation);
    assert_eq!(h.control_setting(), 14.0);
    assert_ne!(h.rng.0, before.0);
    // Same goal: nothing changes.
    let rng = h.rng.0;
    h.force_change(14, Transition::Starvation);
    assert_eq!((h.control_setting(), h.rng.0), (14.0, rng));
    // The next decision builds on it: sample 2 of the warmup is control + 1.
    let s = h.update(14, 0.5, 700, 0.0);
    assert_eq!((s.goal, h.control_setting()), (15, 14.0));
    // Retirement: 15 → 12 moves the control setting by −3.
    h.force_change(12, Transition::ThreadTimedOut);
    assert_eq!(h.control_setting(), 11.0);
    // Sample 3 (up half): goal = control + 1.
    assert_eq!(h.update(12, 0.5, 600, 0.0).goal, 12);
    // A goal the climber was not told about (12 → 20): Update's own ForceChange(Initializing).
    let s = h.update(20, 0.5, 1000, 0.0);
    assert_eq!(h.control_setting(), 19.0);
    assert_eq!(s.goal, 19); // sample 4: (4 / 2) % 2 = 0, the low half
}

#[test]
fn the_goal_never_leaves_min_max() {
    // Update: control within [min, max − magnitude], goal clamped to [minThreads, maxThreads].
    let mut rnd = SplitMix64(1);
    for (min, max, k) in [(5, 12, 100.0), (1, 3, 100.0), (4, 4, 50.0), (2, 40, 1000.0)] {
        let mut h = climber(min, max, 2);
        let mut goal = min;
        for i in 0..400 {
            let c = if i % 3 == 0 {
                (rnd.next_u64() % 2000) as u32 + 50
            } else {
                (f64::from(goal) * k) as u32
            };
            let cpu = (rnd.next_u64() % 100) as f64;
            let s = h.update(goal, 0.2 + (i % 5) as f64, c, cpu);
            assert!((min..=max).contains(&s.goal), "{min}..={max}: {s:?}");
            if s.transition.is_some() {
                let c = h.control_setting();
                assert!(c >= f64::from(min) && c <= f64::from(max), "control {c}");
            }
            goal = s.goal;
        }
    }
}

#[test]
fn negative_ratio_at_min_threads_waits_up_to_ten_intervals() {
    // Update: `if (ratio.Real < 0.0 && newThreadCount == minThreads)` the next interval is
    // `(int)(0.5 + _currentSampleMs * 10 * min(-ratio.Real, 1))`.
    let mut h = climber(1, 1000, 13);
    let mut longer = 0;
    let mut goal = 1;
    for _ in 0..200 {
        // Throughput falls as threads are added.
        let s = h.update(goal, 0.5, 20_000 / goal, 0.0);
        let current = h.sample_interval();
        if s.next_sample != current {
            assert_eq!(s.goal, 1);
            assert!(s.next_sample > current && s.next_sample <= current * 10);
            longer += 1;
        }
        goal = s.goal;
    }
    assert!(longer > 0);
}

#[test]
fn same_seed_same_steps_other_seed_other_intervals() {
    let run = |seed: u64| {
        let mut h = climber(1, 1000, seed);
        let first = h.sample_interval();
        let steps: Vec<Step> = drive(&mut h, 4, 120, 0.3, 0.0, proportional(200.0, 0.3))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        (first, steps)
    };
    let (first, a) = run(1);
    assert_eq!(run(1), (first, a.clone()));
    let (_, b) = run(2);
    let intervals = |v: &[Step]| v.iter().map(|s| s.next_sample).collect::<Vec<_>>();
    assert_ne!(intervals(&a), intervals(&b));
    // ChangeThreadCount: `Next(_sampleIntervalMsLow, _sampleIntervalMsHigh + 1)`, in [10, 200].
    assert!((ms(10)..=ms(200)).contains(&first));
    assert!(
        a.iter()
            .all(|s| (ms(10)..=ms(200)).contains(&s.next_sample))
    );
    // The interval is redrawn at each goal change: more than one value appears.
    let mut distinct = intervals(&a);
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 10);
}

#[test]
fn blocking_cadence_one_sample_per_6_5_s_at_30_threads() {
    // docs/dotnet-pool.md §2 "Sample cadence": 2 s blocking requests, ~2 completions each, so
    // N busy threads complete N items/s, and a sample needs (N−1)/completions < 0.15.
    let mut h = climber(1, 32767, 1);
    let mut goal = h.update(30, 0.5, 15, 0.0).goal;
    let (mut t, mut last_call, mut last_accept) = (0.0f64, 0.0f64, 0.0f64);
    let (mut pending, mut in_sample) = (0u32, 0u32);
    let mut due = h.sample_interval().as_secs_f64();
    let mut accepted = Vec::new();
    while accepted.len() < 8 {
        // The next completion: `goal` threads, one completion per thread per second.
        t += 1.0 / f64::from(goal);
        pending += 1;
        in_sample += 1;
        if t - last_call < due {
            continue;
        }
        let s = h.update(goal, t - last_call, pending, 0.0);
        (last_call, pending, due) = (t, 0, s.next_sample.as_secs_f64());
        if s.transition.is_some() {
            // Accepted at the first completion that makes the error bound hold.
            let n = f64::from(goal) - 1.0;
            assert!(n / f64::from(in_sample) < 0.15 && n / f64::from(in_sample - 1) >= 0.15);
            accepted.push((goal, in_sample, t - last_accept));
            (last_accept, in_sample, goal) = (t, 0, s.goal);
        }
    }
    // Warmup wave of magnitude 1: goals 30/31, 194 or 201 completions, ≈ 6.5 s apart.
    for (goal, completions, gap) in accepted {
        assert!(goal == 30 || goal == 31, "goal {goal}");
        assert_eq!(completions, if goal == 30 { 194 } else { 201 });
        assert!((6.4..6.6).contains(&gap), "gap {gap}");
    }
}
