//! Our runs against the paper's, only when they ran the paper's load
//! ([`Profile::comparable_with_paper`]): the Fidelity table and the Goals, or why not.
//!
//! In `report.json`: `fidelity: {"comparable": true, "rows": …, "p99_peak_ratio": …,
//! "paper_p99_peak_ratio": …}` and `goals: […]`; or `fidelity: {"comparable": false, "reason":
//! "…", "differences": [{"what": "stages", "ours": …, "paper": …}, …]}` and no `goals`.

use serde::{Serialize, Serializer};
use std::path::Path;

use super::{Fidelity, Goal, fidelity, goals};
use crate::experiment::profile::{LoadDifference, NotComparable, Profile};
use crate::results::runmeta::Pairs;

#[derive(Debug, Clone, PartialEq)]
pub enum PaperComparison {
    /// The profile's load is the paper's: our mean curves beside its, and the goals.
    Compared {
        fidelity: Fidelity,
        goals: Vec<Goal>,
    },
    /// Another load: its curves are not the paper's to compare with.
    NotComparable(NotComparable),
}

impl PaperComparison {
    /// Compare the aggregate `agg` and the runs in `pairs` with the paper's, if `profile` ran
    /// the paper's load.
    pub fn of(profile: &Profile, agg: &Path, pairs: &Pairs) -> anyhow::Result<PaperComparison> {
        Ok(match profile.comparable_with_paper() {
            Ok(()) => PaperComparison::Compared {
                fidelity: fidelity(agg)?,
                goals: goals(pairs)?,
            },
            Err(why) => PaperComparison::NotComparable(why),
        })
    }

    /// The terminal's line: how many goals were met, or why none were assessed.
    pub fn summary_line(&self) -> String {
        match self {
            PaperComparison::Compared { goals, .. } => {
                let met = goals.iter().filter(|g| g.met == Some(true)).count();
                format!(
                    "fidelity vs the paper: {met} of {} goals met (report.md, Goals)",
                    goals.len()
                )
            }
            PaperComparison::NotComparable(why) => {
                format!("fidelity: not compared with the paper: {why}; `--profile paper` compares")
            }
        }
    }
}

/// `fidelity` as `report.json` shows it: `comparable`, then the table or the reason.
#[derive(Serialize)]
struct FidelityShown<'a> {
    comparable: bool,
    #[serde(flatten)]
    compared: Option<&'a Fidelity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    differences: Option<&'a [LoadDifference]>,
}

/// The report's `fidelity` and (when compared) `goals` keys.
#[derive(Serialize)]
struct Shown<'a> {
    fidelity: FidelityShown<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    goals: Option<&'a [Goal]>,
}

impl Serialize for PaperComparison {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let shown = match self {
            PaperComparison::Compared { fidelity, goals } => Shown {
                fidelity: FidelityShown {
                    comparable: true,
                    compared: Some(fidelity),
                    reason: None,
                    differences: None,
                },
                goals: Some(goals),
            },
            PaperComparison::NotComparable(why) => Shown {
                fidelity: FidelityShown {
                    comparable: false,
                    compared: None,
                    reason: Some(why.to_string()),
                    differences: Some(&why.differences),
                },
                goals: None,
            },
        };
        shown.serialize(s)
    }
}

/// A comparison of the paper's load with one goal missed (for tests).
#[cfg(test)]
pub(super) fn compared_example() -> PaperComparison {
    PaperComparison::Compared {
        fidelity: fidelity(Path::new("/nonexistent")).unwrap(),
        goals: vec![Goal {
            what: "baseline queue-length peak".into(),
            ours: Some(300.0),
            ci95: Some((290.0, 310.0)),
            paper: 64.0,
            target_low: 44.8,
            target_high: 83.2,
            met: Some(false),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_load_keeps_the_fields_it_always_had() {
        let v = serde_json::to_value(compared_example()).unwrap();
        assert_eq!(v["fidelity"]["comparable"], true);
        assert!(v["fidelity"]["rows"].is_array(), "{v}");
        assert!(v["fidelity"]["paper_p99_peak_ratio"].is_number(), "{v}");
        assert!(v["fidelity"].get("reason").is_none(), "{v}");
        assert_eq!(v["goals"][0]["met"], false);
        // Flattened into the report, the keys sit beside the others.
        #[derive(Serialize)]
        struct Outer {
            before: u8,
            #[serde(flatten)]
            c: PaperComparison,
        }
        let outer = serde_json::to_value(Outer {
            before: 1,
            c: compared_example(),
        })
        .unwrap();
        assert_eq!(outer["before"], 1);
        assert_eq!(outer["fidelity"], v["fidelity"]);
        assert_eq!(outer["goals"], v["goals"]);
        assert_eq!(
            compared_example().summary_line(),
            "fidelity vs the paper: 0 of 1 goals met (report.md, Goals)"
        );
    }

    #[test]
    fn another_load_says_why_and_has_no_goals() {
        let why = Profile::quick().comparable_with_paper().unwrap_err();
        let c = PaperComparison::NotComparable(why.clone());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["fidelity"]["comparable"], false);
        assert_eq!(v["fidelity"]["reason"], why.to_string());
        assert_eq!(v["fidelity"]["differences"][0]["what"], "stages");
        assert_eq!(
            v["fidelity"]["differences"][0]["ours"],
            Profile::quick().stages
        );
        assert!(v["fidelity"].get("rows").is_none(), "{v}");
        assert!(v.get("goals").is_none(), "{v}");
        let line = c.summary_line();
        assert!(line.contains("not compared with the paper"), "{line}");
        assert!(!line.contains("met"), "{line}");
    }
}
