//! The load a comparison gives both sides (`--scenario`), and where its checkpoints are.

use std::net::SocketAddr;
use std::time::Duration;

use crate::experiment::Profile;
use crate::load::{Plan, PlanError, RunConfig, Schedule, Stage};

/// The most requests `--burst` may start at once (they start within 10 ms: a rate the load
/// generator's schedule accepts).
pub const MAX_BURST: u32 = 5000;
/// The longest `--duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// How long the burst's requests take to start: all of them within this window, evenly spaced.
const BURST_WINDOW: Duration = Duration::from_millis(10);
/// The paper's checkpoints, seconds after the load started (issue 28's goals).
pub const PAPER_CHECKPOINTS: [f64; 3] = [60.0, 90.0, 120.0];
/// The checkpoints of every other scenario, as fractions of its length.
pub const CHECKPOINT_FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];

/// What `--scenario` names, before its parameters are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioName {
    Burst,
    Constant,
    Paper,
    /// `profile:NAME|FILE.toml`: an experiment profile's load.
    Profile(String),
}

/// The value parser of `--scenario`.
pub fn parse_name(s: &str) -> Result<ScenarioName, String> {
    match s {
        "burst" => Ok(ScenarioName::Burst),
        "constant" => Ok(ScenarioName::Constant),
        "paper" => Ok(ScenarioName::Paper),
        _ => match s.strip_prefix("profile:") {
            Some(p) if !p.trim().is_empty() => Ok(ScenarioName::Profile(p.to_string())),
            Some(_) => Err(
                "`profile:` needs a profile: `profile:quick`, `profile:paper` or \
                 `profile:FILE.toml`"
                    .into(),
            ),
            None => Err(format!(
                "`{s}` is not a scenario: pass burst, constant, paper or profile:NAME|FILE.toml \
                 (e.g. profile:quick)"
            )),
        },
    }
}

/// A scenario with its parameters: what both sides get.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// `requests` concurrent `GET /test-threadpool` at the start, each answered or cut at `limit`.
    Burst { requests: u32, limit: Duration },
    /// `rate` requests per second for `duration` (open model: k6's arrival rate).
    Constant { rate: f64, duration: Duration },
    /// An experiment profile's load (`paper` is the paper's profile).
    Profile(Box<Profile>),
}

/// Where the checkpoints of a scenario are.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoints {
    /// Fixed offsets, seconds after the load started.
    At(Vec<f64>),
    /// Fractions of the .NET side's mean run length (a burst lasts as long as the pool takes).
    OfDotnetLength(Vec<f64>),
}

impl Checkpoints {
    /// The offsets, in whole seconds (they land on samples), given the .NET runs' lengths.
    pub fn resolve(&self, dotnet_lengths_s: &[f64]) -> Vec<f64> {
        match self {
            Checkpoints::At(at) => at.clone(),
            Checkpoints::OfDotnetLength(fractions) => {
                let mean = crate::results::stats::mean(dotnet_lengths_s).unwrap_or(0.0);
                fractions.iter().map(|f| (f * mean).round()).collect()
            }
        }
    }
}

impl Scenario {
    /// A short name for tables and file headers.
    pub fn describe(&self) -> String {
        match self {
            Scenario::Burst { requests, limit } => format!(
                "burst: {requests} concurrent requests (cut at {})",
                humantime::format_duration(*limit)
            ),
            Scenario::Constant { rate, duration } => format!(
                "constant: {rate} requests/s for {}",
                humantime::format_duration(*duration)
            ),
            Scenario::Profile(p) => format!("profile {}: stages {}", p.name, p.stages),
        }
    }

    /// The schedule and the k6 settings both sides get.
    pub fn load(&self) -> (Schedule, Settings) {
        match self {
            Scenario::Burst { requests, limit } => {
                // Area requests + 0.5 over the window starts exactly `requests` iterations
                // (k6 starts iteration n when the area reaches n, only before the end).
                let rate = f64::from(*requests) + 0.5;
                let schedule = Schedule::new(
                    rate,
                    BURST_WINDOW,
                    vec![Stage {
                        target: rate,
                        duration: BURST_WINDOW,
                    }],
                )
                .expect("a burst of at most MAX_BURST is a valid schedule");
                let vus = u64::from(*requests);
                (
                    schedule,
                    Settings {
                        timeout: *limit,
                        graceful_stop: *limit,
                        pre_allocated_vus: vus,
                        max_vus: vus,
                    },
                )
            }
            Scenario::Constant { rate, duration } => {
                let schedule = Schedule::new(
                    *rate,
                    Duration::from_secs(1),
                    vec![Stage {
                        target: *rate,
                        duration: *duration,
                    }],
                )
                .expect("the rate and duration were checked");
                (schedule, Settings::k6_defaults())
            }
            Scenario::Profile(p) => (
                p.schedule().expect("a resolved profile is valid"),
                Settings {
                    timeout: Duration::from_secs(p.timeout_s),
                    graceful_stop: Duration::from_secs(p.graceful_stop_s),
                    pre_allocated_vus: p.pre_allocated_vus,
                    max_vus: p.max_vus,
                },
            ),
        }
    }

    /// The load plan against a side listening on `addr`.
    pub fn plan(&self, addr: SocketAddr) -> Result<Plan, PlanError> {
        let (schedule, s) = self.load();
        let config = Plan::config_for(&format!("http://{addr}/test-threadpool"))?;
        Plan::new(
            schedule,
            RunConfig {
                timeout: s.timeout,
                graceful_stop: s.graceful_stop,
                pre_allocated_vus: s.pre_allocated_vus,
                max_vus: s.max_vus,
                ..config
            },
        )
    }

    /// The paper's 60/90/120 s for a profile with the paper's load; 25/50/75 % of the load's
    /// length for the others (of the .NET side's run length for a burst).
    pub fn checkpoints(&self) -> Checkpoints {
        let fractions = CHECKPOINT_FRACTIONS.to_vec();
        match self {
            Scenario::Burst { .. } => Checkpoints::OfDotnetLength(fractions),
            Scenario::Constant { duration, .. } => Checkpoints::At(
                fractions
                    .iter()
                    .map(|f| (f * duration.as_secs_f64()).round())
                    .collect(),
            ),
            Scenario::Profile(p) => {
                let schedule = p.schedule().expect("a resolved profile is valid");
                if schedule == Schedule::paper() {
                    Checkpoints::At(PAPER_CHECKPOINTS.to_vec())
                } else {
                    let len = schedule.duration().as_secs_f64();
                    Checkpoints::At(fractions.iter().map(|f| (f * len).round()).collect())
                }
            }
        }
    }

    /// The profile's `block_ms` and `dotnet_processors`, the defaults of `--block-ms` and
    /// `--processors` for a profile scenario.
    pub fn profile_pool(&self) -> Option<(u64, u32)> {
        match self {
            Scenario::Profile(p) => Some((p.block_ms, p.dotnet_processors)),
            _ => None,
        }
    }
}

/// The k6 settings of a scenario's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Per-request timeout: a request unanswered by then fails.
    pub timeout: Duration,
    /// How long requests still running after the last start may finish.
    pub graceful_stop: Duration,
    pub pre_allocated_vus: u64,
    pub max_vus: u64,
}

impl Settings {
    /// `starvation load`'s defaults (the paper's k6 script).
    pub fn k6_defaults() -> Settings {
        Settings {
            timeout: Duration::from_secs(60),
            graceful_stop: Duration::from_secs(30),
            pre_allocated_vus: 50,
            max_vus: 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_say_what_works() {
        assert_eq!(parse_name("burst"), Ok(ScenarioName::Burst));
        assert_eq!(parse_name("paper"), Ok(ScenarioName::Paper));
        assert_eq!(
            parse_name("profile:quick"),
            Ok(ScenarioName::Profile("quick".into()))
        );
        let e = parse_name("nope").unwrap_err();
        assert!(
            e.contains("`nope` is not a scenario") && e.contains("profile:NAME|FILE.toml"),
            "{e}"
        );
        let e = parse_name("profile:").unwrap_err();
        assert!(e.contains("profile:quick"), "{e}");
    }

    #[test]
    fn a_burst_starts_exactly_its_requests_at_once() {
        for n in [1, 20, MAX_BURST] {
            let s = Scenario::Burst {
                requests: n,
                limit: Duration::from_secs(60),
            };
            let (schedule, settings) = s.load();
            assert_eq!(schedule.total_iterations(), u64::from(n));
            let last = schedule.iter().last().unwrap();
            assert!(last <= BURST_WINDOW, "{last:?}");
            assert_eq!(settings.max_vus, u64::from(n));
            assert_eq!(settings.pre_allocated_vus, u64::from(n));
            assert_eq!(settings.timeout, Duration::from_secs(60));
        }
    }

    #[test]
    fn checkpoints_follow_the_scenario() {
        let paper = Scenario::Profile(Box::new(Profile::paper()));
        assert_eq!(paper.checkpoints().resolve(&[]), vec![60.0, 90.0, 120.0]);
        let quick = Scenario::Profile(Box::new(Profile::quick()));
        assert_eq!(quick.checkpoints().resolve(&[]), vec![13.0, 25.0, 38.0]);
        let constant = Scenario::Constant {
            rate: 10.0,
            duration: Duration::from_secs(60),
        };
        assert_eq!(constant.checkpoints().resolve(&[]), vec![15.0, 30.0, 45.0]);
        let (schedule, settings) = constant.load();
        assert_eq!(schedule.total_iterations(), 599);
        assert_eq!(settings, Settings::k6_defaults());
        let burst = Scenario::Burst {
            requests: 20,
            limit: Duration::from_secs(60),
        };
        assert_eq!(
            burst.checkpoints().resolve(&[10.0, 12.0]),
            vec![3.0, 6.0, 8.0]
        );
    }

    #[test]
    fn a_plan_targets_the_side_and_keeps_the_scenarios_settings() {
        let quick = Scenario::Profile(Box::new(Profile::quick()));
        let plan = quick.plan("127.0.0.1:4321".parse().unwrap()).unwrap();
        assert_eq!(
            plan.config.url.as_str(),
            "http://127.0.0.1:4321/test-threadpool"
        );
        assert_eq!(plan.config.timeout, Duration::from_secs(30));
        assert_eq!(plan.config.graceful_stop, Duration::from_secs(10));
        assert_eq!(plan.config.max_vus, 1000);
    }
}
