//! How close a run's mean curves come to the paper's: for queue length, busy and process
//! threads, p99 and average duration, baseline and scaled, our mean curve's peak and its time
//! beside the paper's (its 98 published pairs, read by our own `aggregate`, shipped in
//! `assets/paper-raw-means/`), the normalised RMSE between the two curves, and the scaled /
//! baseline p99-peak ratio beside the paper's. Nothing here is fitted: these numbers validate.

use serde::Serialize;
use std::path::Path;

use crate::figures::{Series, parse_mean_csv, read_mean_csv};
use crate::results::metrics as m;
use crate::results::runmeta::Role;
use crate::results::stats::{nrmse, peak};

/// The metrics compared, in the report's order.
pub const METRICS: [&str; 5] = [
    m::QUEUE_LENGTH,
    m::BUSY_WORKER_THREADS,
    m::PROCESS_THREADS,
    m::REQUEST_DURATION_P99,
    m::AVG_REQUEST_DURATION,
];

/// The paper's mean curves (`scripts/paper-raw-summary.sh` regenerates them).
const PAPER_MEANS: [(&str, &str, &str); 10] = {
    macro_rules! both {
        ($stem:literal) => {
            [
                (
                    "baseline",
                    $stem,
                    include_str!(concat!(
                        "../../../assets/paper-raw-means/baseline/",
                        $stem,
                        "_export_mean_values.csv"
                    )),
                ),
                (
                    "scaled",
                    $stem,
                    include_str!(concat!(
                        "../../../assets/paper-raw-means/scaled/",
                        $stem,
                        "_export_mean_values.csv"
                    )),
                ),
            ]
        };
    }
    let [a, b] = both!("System_Runtime_ThreadPool_Queue_Length");
    let [c, d] = both!("Busy_Worker_Threads");
    let [e, f] = both!("Process_Number_of_Threads");
    let [g, h] = both!("Request_Duration");
    let [i, j] = both!("Average_HTTP_Request_Duration");
    [a, b, c, d, e, f, g, h, i, j]
};

/// One metric of one role: ours beside the paper's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityRow {
    pub metric: String,
    pub role: Role,
    pub peak: f64,
    pub peak_at_s: f64,
    pub paper_peak: f64,
    pub paper_peak_at_s: f64,
    /// RMSE over the offsets both curves have, divided by the paper curve's peak.
    pub nrmse: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fidelity {
    pub rows: Vec<FidelityRow>,
    /// Scaled p99 peak / baseline p99 peak of the mean curves.
    pub p99_peak_ratio: Option<f64>,
    pub paper_p99_peak_ratio: f64,
}

/// The paper's mean curve of `metric` for `role`.
pub fn paper_curve(role: Role, metric: &str) -> anyhow::Result<Series> {
    let stem = m::spec(metric).stem();
    let (_, _, text) = PAPER_MEANS
        .iter()
        .find(|(r, s, _)| *r == role.as_str() && *s == stem)
        .ok_or_else(|| anyhow::anyhow!("no paper curve of {metric} ({})", role.as_str()))?;
    Ok(parse_mean_csv(
        text.as_bytes(),
        Path::new(&format!("assets/paper-raw-means/{}/{stem}", role.as_str())),
    )?)
}

/// Compare the mean curves of the aggregate folder `agg` (`<role>/<Metric>_export_mean_values.csv`)
/// with the paper's. A metric missing from `agg` is left out of the table.
pub fn fidelity(agg: &Path) -> anyhow::Result<Fidelity> {
    let mut rows = Vec::new();
    let mut p99 = [None, None];
    for (i, role) in [Role::Baseline, Role::Scaled].into_iter().enumerate() {
        for metric in METRICS {
            let path = agg.join(role.as_str()).join(m::spec(metric).mean_file());
            if !path.exists() {
                continue;
            }
            let ours = read_mean_csv(&path)?;
            let paper = paper_curve(role, metric)?;
            let (Some((at, pk)), Some((paper_at, paper_pk))) = (peak(&ours), peak(&paper)) else {
                continue;
            };
            if metric == m::REQUEST_DURATION_P99 {
                p99[i] = Some(pk);
            }
            rows.push(FidelityRow {
                metric: metric.to_string(),
                role,
                peak: pk,
                peak_at_s: at,
                paper_peak: paper_pk,
                paper_peak_at_s: paper_at,
                nrmse: nrmse(&ours, &paper, paper_pk).unwrap_or(f64::NAN),
            });
        }
    }
    let ratio = |b: Option<f64>, s: Option<f64>| Some(s? / b.filter(|b| *b > 0.0)?);
    let paper_p99 = [Role::Baseline, Role::Scaled].map(|r| {
        paper_curve(r, m::REQUEST_DURATION_P99)
            .ok()
            .and_then(|c| peak(&c))
            .map(|p| p.1)
    });
    Ok(Fidelity {
        rows,
        p99_peak_ratio: ratio(p99[0], p99[1]),
        paper_p99_peak_ratio: ratio(paper_p99[0], paper_p99[1]).unwrap_or(f64::NAN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nrmse_over_the_common_offsets_and_the_first_peak() {
        let paper = vec![(0.0, 10.0), (5.0, 20.0), (10.0, 10.0)];
        // Off by 2 at every common offset; 15 s has no paper value.
        let ours = vec![(0.0, 12.0), (5.0, 22.0), (10.0, 12.0), (15.0, 100.0)];
        let e = nrmse(&ours, &paper, 20.0).unwrap();
        assert!((e - 0.1).abs() < 1e-12, "{e}");
        assert_eq!(nrmse(&ours, &[], 20.0), None);
        assert_eq!(
            peak(&[(0.0, 3.0), (5.0, 7.0), (10.0, 7.0)]),
            Some((5.0, 7.0))
        );
    }

    #[test]
    fn the_shipped_paper_curves_are_the_raw_summary() {
        // The curves and assets/paper-raw-summary.json come from one aggregate of the paper.
        let summary: crate::results::aggregate::Summary =
            serde_json::from_str(super::super::RAW_SUMMARY_JSON).unwrap();
        for role in [Role::Baseline, Role::Scaled] {
            for metric in METRICS {
                let (_, pk) = peak(&paper_curve(role, metric).unwrap()).unwrap();
                let s = summary.metrics.iter().find(|x| x.metric == metric).unwrap();
                let side = match role {
                    Role::Baseline => &s.baseline,
                    Role::Scaled => &s.scaled,
                };
                let want = side.as_ref().unwrap().peak;
                assert!(
                    (pk - want).abs() < 1e-9,
                    "{metric} {role:?}: {pk} vs {want}"
                );
            }
        }
        // Against itself: no error, and the paper's own ratio (≈ 0.37).
        let f = fidelity(Path::new("/nonexistent")).unwrap();
        assert!(f.rows.is_empty());
        assert!(
            (f.paper_p99_peak_ratio - 0.37).abs() < 0.01,
            "{}",
            f.paper_p99_peak_ratio
        );
    }
}
