//! k6's `ramping-arrival-rate` schedule, as a pure function of its parameters.
//!
//! The rate (iterations per `time_unit`) starts at `start_rate` and moves linearly to each
//! stage's target over the stage's duration. Iteration `n` (1-based) starts at the moment the
//! area under the rate curve reaches `n`; the fractional remainder of one stage carries over into
//! the next. This is what k6's `RampingArrivalRate` executor computes (its `cal` function solves
//! the same quadratic).

use std::time::Duration;

/// One stage: ramp linearly to `target` iterations per time unit over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub target: f64,
    pub duration: Duration,
}

/// Errors in a stage list or schedule parameters. Messages name the flag at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("--stages: stage {index} `{text}` is not TARGET:DURATION (e.g. `15:30s`)")]
    StageSyntax { index: usize, text: String },
    #[error("--stages: stage {index}: target `{text}` is not a non-negative number")]
    StageTarget { index: usize, text: String },
    #[error("--stages: stage {index}: duration `{text}`: {reason}")]
    StageDuration {
        index: usize,
        text: String,
        reason: String,
    },
    #[error("--stages: no stages given")]
    NoStages,
    #[error("--stages: total duration is zero")]
    ZeroDuration,
    #[error("--start-rate: must be a finite non-negative number, got {0}")]
    StartRate(f64),
    #[error("--time-unit: must be longer than zero")]
    TimeUnit,
    #[error(
        "{what}: {per_second:.3e} iterations/s is above the most this generator can start, {MAX_RATE_PER_SECOND} per second; lower the target or lengthen --time-unit"
    )]
    RateTooHigh { what: String, per_second: f64 },
}

/// The highest rate a schedule may ask for, iterations per second. One core starts well under
/// 100,000 a second; anything above this bound is a typo, and refusing it keeps planning and
/// the progress figures finite.
pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;

/// Parses `15:30s,20:30s` into stages. Durations use humantime (`30s`, `1m30s`, `500ms`).
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, ScheduleError> {
    let mut stages = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let index = i + 1;
        let part = part.trim();
        if part.is_empty() && text.trim().is_empty() {
            return Err(ScheduleError::NoStages);
        }
        let (target, duration) =
            part.split_once(':')
                .ok_or_else(|| ScheduleError::StageSyntax {
                    index,
                    text: part.to_string(),
                })?;
        let target_value: f64 = target
            .trim()
            .parse()
            .map_err(|_| ScheduleError::StageTarget {
                index,
                text: target.to_string(),
            })?;
        if !target_value.is_finite() || target_value < 0.0 {
            return Err(ScheduleError::StageTarget {
                index,
                text: target.to_string(),
            });
        }
        let duration = humantime::parse_duration(duration.trim()).map_err(|e| {
            ScheduleError::StageDuration {
                index,
                text: duration.to_string(),
                reason: e.to_string(),
            }
        })?;
        stages.push(Stage {
            target: target_value,
            duration,
        });
    }
    if stages.is_empty() {
        return Err(ScheduleError::NoStages);
    }
    Ok(stages)
}

/// A validated ramping-arrival-rate schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    start_rate: f64,
    time_unit: Duration,
    stages: Vec<Stage>,
}

impl Schedule {
    pub fn new(
        start_rate: f64,
        time_unit: Duration,
        stages: Vec<Stage>,
    ) -> Result<Self, ScheduleError> {
        if !start_rate.is_finite() || start_rate < 0.0 {
            return Err(ScheduleError::StartRate(start_rate));
        }
        if time_unit.is_zero() {
            return Err(ScheduleError::TimeUnit);
        }
        if stages.is_empty() {
            return Err(ScheduleError::NoStages);
        }
        if stages.iter().all(|s| s.duration.is_zero()) {
            return Err(ScheduleError::ZeroDuration);
        }
        let unit = time_unit.as_secs_f64();
        let too_high = |rate: f64| rate / unit > MAX_RATE_PER_SECOND;
        if too_high(start_rate) {
            return Err(ScheduleError::RateTooHigh {
                what: "--start-rate".into(),
                per_second: start_rate / unit,
            });
        }
        if let Some((i, s)) = stages.iter().enumerate().find(|(_, s)| too_high(s.target)) {
            return Err(ScheduleError::RateTooHigh {
                what: format!("--stages: stage {}", i + 1),
                per_second: s.target / unit,
            });
        }
        Ok(Self {
            start_rate,
            time_unit,
            stages,
        })
    }

    /// The paper's profile: start 1/s, then 15, 20, 30, 35, 5 per second, 30 s each.
    pub fn paper() -> Self {
        let stages = [15.0, 20.0, 30.0, 35.0, 5.0]
            .into_iter()
            .map(|target| Stage {
                target,
                duration: Duration::from_secs(30),
            })
            .collect();
        Self::new(1.0, Duration::from_secs(1), stages).expect("the paper profile is valid")
    }

    pub fn start_rate(&self) -> f64 {
        self.start_rate
    }

    pub fn time_unit(&self) -> Duration {
        self.time_unit
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Sum of the stage durations.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Rate per second at offset `t` from the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let unit = self.time_unit.as_secs_f64();
        let mut from = self.start_rate;
        let mut begin = Duration::ZERO;
        for stage in &self.stages {
            let end = begin + stage.duration;
            if t < end {
                let d = stage.duration.as_secs_f64();
                let x = (t - begin).as_secs_f64();
                return (from + (stage.target - from) * x / d) / unit;
            }
            from = stage.target;
            begin = end;
        }
        from / unit
    }

    /// Area under the rate curve over the whole schedule: the expected number of iterations
    /// (the schedule starts `floor` of it, plus one when the area is a whole number within
    /// rounding).
    pub fn total_area(&self) -> f64 {
        let unit = self.time_unit.as_secs_f64();
        let mut from = self.start_rate;
        let mut area = 0.0;
        for stage in &self.stages {
            area += (from + stage.target) / 2.0 * stage.duration.as_secs_f64() / unit;
            from = stage.target;
        }
        area
    }

    /// Number of iterations the schedule starts, in closed form: iteration n starts when the
    /// area reaches n, and only before the end, as k6 does (an area of exactly 618 starts 617;
    /// one of 227.5 starts 227): the count of whole numbers n ≥ 1 below the total area, with a
    /// rounding tolerance. [`StartTimes`] stops at this count.
    pub fn total_iterations(&self) -> u64 {
        let unit = self.time_unit.as_secs_f64();
        let mut from = self.start_rate;
        let mut area = 0.0;
        for stage in &self.stages {
            let (a, b) = (from / unit, stage.target / unit);
            area += (a + b) / 2.0 * stage.duration.as_secs_f64();
            from = stage.target;
        }
        ((area - AREA_EPS).ceil() - 1.0).max(0.0) as u64
    }

    /// The start offsets of every iteration, in order.
    pub fn iter(&self) -> StartTimes<'_> {
        StartTimes {
            schedule: self,
            stage: 0,
            stage_begin: 0.0,
            from: self.start_rate,
            area_before: 0.0,
            next: 1,
            last: self.total_iterations(),
        }
    }
}

/// Tolerance for an iteration that falls exactly on a stage boundary (float rounding).
const AREA_EPS: f64 = 1e-9;

/// Iterator over iteration start offsets; see [`Schedule::iter`].
#[derive(Debug, Clone)]
pub struct StartTimes<'a> {
    schedule: &'a Schedule,
    stage: usize,
    /// Start of the current stage, seconds.
    stage_begin: f64,
    /// Rate (per time unit) at the start of the current stage.
    from: f64,
    /// Area accumulated before the current stage.
    area_before: f64,
    /// 1-based index of the next iteration.
    next: u64,
    /// Index of the last iteration (the one at the very end is not started).
    last: u64,
}

impl Iterator for StartTimes<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next > self.last {
            return None;
        }
        let unit = self.schedule.time_unit.as_secs_f64();
        while let Some(stage) = self.schedule.stages.get(self.stage) {
            let d = stage.duration.as_secs_f64();
            // Rates per second at the ends of the stage.
            let a = self.from / unit;
            let b = stage.target / unit;
            let stage_area = (a + b) / 2.0 * d;
            let x = self.next as f64 - self.area_before;
            if d > 0.0 && x <= stage_area + AREA_EPS {
                // Solve a*t + (b-a)/(2d)*t^2 = x for t in [0, d] (stable form, exact for a == b).
                let disc = (a * a + 2.0 * (b - a) * x / d).max(0.0);
                let t = (2.0 * x / (a + disc.sqrt())).min(d);
                self.next += 1;
                return Some(Duration::from_secs_f64(self.stage_begin + t));
            }
            self.area_before += stage_area;
            self.stage_begin += d;
            self.from = stage.target;
            self.stage += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn ramp_zero_to_one_matches_k6() {
        // k6's own test (TestRampingArrivalRateCal): 0 -> 1/s over 5 s starts at sqrt(10), sqrt(20).
        let s = Schedule::new(
            0.0,
            Duration::from_secs(1),
            vec![Stage {
                target: 1.0,
                duration: Duration::from_secs(5),
            }],
        )
        .unwrap();
        let times: Vec<f64> = s.iter().map(secs).collect();
        assert_eq!(times.len(), 2, "{times:?}");
        assert!((times[0] - 3.162).abs() < 1e-3, "{times:?}");
        assert!((times[1] - 4.472).abs() < 1e-3, "{times:?}");
    }

    #[test]
    fn ramp_with_carry_over_matches_k6() {
        // k6 TestRampingArrivalRateCal: 0->1 over 5s, then 1->1 over 1 minute... first times.
        let s = Schedule::new(
            0.0,
            Duration::from_secs(1),
            vec![
                Stage {
                    target: 1.0,
                    duration: Duration::from_secs(5),
                },
                Stage {
                    target: 1.0,
                    duration: Duration::from_secs(5),
                },
            ],
        )
        .unwrap();
        let times: Vec<f64> = s.iter().map(secs).collect();
        // Area 2.5 in the ramp: the third iteration needs 0.5 more, at 5.5 s, then every second.
        let want = [10f64.sqrt(), 20f64.sqrt(), 5.5, 6.5, 7.5, 8.5, 9.5];
        assert_eq!(times.len(), want.len(), "{times:?}");
        for (got, want) in times.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn paper_profile_totals() {
        let s = Schedule::paper();
        assert_eq!(s.duration(), Duration::from_secs(150));
        assert!((s.total_area() - 3090.0).abs() < 1e-9);
        let times: Vec<Duration> = s.iter().collect();
        // k6 does not start the one that would fall exactly on the end.
        assert_eq!(times.len(), 3089);
        assert!((secs(times[0]) - 0.8367).abs() < 1e-3, "{:?}", times[0]);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        assert!(*times.last().unwrap() <= Duration::from_secs(150));
        // Peak rate 35/s at 120 s.
        assert!((s.rate_at(Duration::from_secs(120)) - 35.0).abs() < 1e-9);
        assert!((s.rate_at(Duration::from_secs(15)) - 8.0).abs() < 1e-9);
        // After the first 30 s stage the area is 240: iteration 240 starts at the boundary.
        assert!((secs(times[239]) - 30.0).abs() < 1e-6, "{:?}", times[239]);
        // Iterations per second near the peak: between 120 s and 121 s the rate is ~35.
        let in_peak = times
            .iter()
            .filter(|t| secs(**t) >= 120.0 && secs(**t) < 121.0)
            .count();
        assert!((34..=35).contains(&in_peak), "{in_peak}");
    }

    #[test]
    fn constant_rate_and_time_unit() {
        // 30 per minute for 10 s = one every 2 s.
        let s = Schedule::new(
            30.0,
            Duration::from_secs(60),
            vec![Stage {
                target: 30.0,
                duration: Duration::from_secs(10),
            }],
        )
        .unwrap();
        let times: Vec<f64> = s.iter().map(secs).collect();
        // (k6 starts none at the very end: not 10.0)
        assert_eq!(times, vec![2.0, 4.0, 6.0, 8.0]);
    }

    #[test]
    fn zero_rate_stage_starts_nothing() {
        let s = Schedule::new(
            0.0,
            Duration::from_secs(1),
            vec![
                Stage {
                    target: 0.0,
                    duration: Duration::from_secs(3),
                },
                Stage {
                    target: 2.0,
                    duration: Duration::from_secs(1),
                },
                Stage {
                    target: 2.0,
                    duration: Duration::from_secs(1),
                },
            ],
        )
        .unwrap();
        let times: Vec<f64> = s.iter().map(secs).collect();
        // Area 1 in the ramp from 0 to 2 over 1 s: t = 1 s into it; then every 0.5 s, but not
        // at the very end (5.0).
        assert_eq!(times, vec![4.0, 4.5]);
    }

    #[test]
    fn closed_form_count_matches_the_walk() {
        let cases = [
            (1.0, "15:30s,20:30s,30:30s,35:30s,5:30s"),
            (0.0, "1:5s"),
            (0.0, "1:5s,1:5s"),
            (10.0, "0:3s,10:3s,0:1500ms"),
            (20.0, "20:10s"),
            (0.5, "0.7:1s,3.3:2s,0:0s,9:750ms"),
        ];
        for (start, stages) in cases {
            let s = Schedule::new(start, Duration::from_secs(1), parse_stages(stages).unwrap())
                .unwrap();
            assert_eq!(s.total_iterations(), s.iter().count() as u64, "{stages}");
        }
    }

    #[test]
    fn absurd_rates_are_refused_without_planning() {
        let err = Schedule::new(
            1.0,
            Duration::from_secs(1),
            parse_stages("99999999999999999999:1s").unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("--stages: stage 1: 1.000e20"),
            "{err}"
        );
        let err =
            Schedule::new(2e6, Duration::from_secs(1), parse_stages("1:1s").unwrap()).unwrap_err();
        assert!(err.to_string().starts_with("--start-rate"), "{err}");
        // Per minute the same number is fine.
        assert!(
            Schedule::new(
                1.0,
                Duration::from_secs(60),
                parse_stages("6000000:1s").unwrap()
            )
            .is_ok()
        );
        // A long schedule at the maximum rate is counted without walking it.
        let s = Schedule::new(
            MAX_RATE_PER_SECOND,
            Duration::from_secs(1),
            parse_stages("1000000:1000h").unwrap(),
        )
        .unwrap();
        // (walking it would take hours: the test would never end)
        assert_eq!(s.total_iterations(), 3_600_000_000_000 - 1);
    }

    #[test]
    fn parses_stage_lists() {
        let stages = parse_stages("15:30s, 20:1m,0.5:500ms").unwrap();
        assert_eq!(stages.len(), 3);
        assert_eq!(stages[1].duration, Duration::from_secs(60));
        assert_eq!(stages[2].target, 0.5);
        for bad in ["", "15", "x:30s", "15:30", "-1:30s", "15:30s,"] {
            let err = parse_stages(bad).unwrap_err();
            assert!(err.to_string().starts_with("--stages"), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        let one = vec![Stage {
            target: 1.0,
            duration: Duration::from_secs(1),
        }];
        assert_eq!(
            Schedule::new(1.0, Duration::ZERO, one.clone()),
            Err(ScheduleError::TimeUnit)
        );
        assert_eq!(
            Schedule::new(f64::NAN, Duration::from_secs(1), one)
                .unwrap_err()
                .to_string()[..12],
            *"--start-rate"
        );
    }
}
