use super::*;
use crate::compare::sample::PoolReading;
use crate::compare::side::{Side, Totals};

/// A run whose busy and thread counts are `busy`, queue `queue`, p99 `p99`.
fn run(side: Side, busy: &[f64], queue: &[f64], p99: &[Option<f64>], totals: Totals) -> SideRun {
    let len = busy.len().max(p99.len());
    let points = (0..len)
        .map(|k| Point {
            t_s: k as u32,
            pool: busy.get(k).map(|&b| PoolReading {
                busy: b,
                threads: b + 1.0,
                queue: queue.get(k).copied().unwrap_or(0.0),
                work_items: 0.0,
            }),
            p50_s: p99.get(k).copied().flatten().map(|v| v / 2.0),
            p99_s: p99.get(k).copied().flatten(),
        })
        .collect();
    SideRun {
        side,
        points,
        totals,
        load_s: len as f64 - 1.0,
    }
}

fn totals(completed: u64, dropped: u64, failed: u64) -> Totals {
    Totals {
        completed,
        dropped,
        failed,
    }
}

const DOTNET_BUSY: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 4.0, 0.0];
const MODEL_BUSY: [f64; 6] = [2.0, 4.0, 6.0, 6.0, 6.0, 0.0];

fn pair(run_no: u32, model_completed: u64, model_dropped: u64) -> RunPair {
    let p99 = [
        None,
        None,
        Some(2.0),
        Some(4.0),
        None,
        Some(8.0),
        Some(9.0),
        None,
    ];
    let mp99 = [None, None, Some(2.0), Some(3.0), Some(4.0), None];
    RunPair {
        run: run_no,
        dotnet: run(
            Side::Dotnet,
            &DOTNET_BUSY,
            &[0.0, 10.0, 16.0, 12.0, 8.0, 4.0, 0.0, 0.0],
            &p99,
            totals(20, 0, 0),
        ),
        model: run(
            Side::Model,
            &MODEL_BUSY,
            &[0.0, 12.0, 9.0, 3.0, 0.0, 0.0],
            &mp99,
            totals(model_completed, model_dropped, 0),
        ),
    }
}

#[test]
fn a_shorter_run_is_extended_idle() {
    let p = pair(1, 20, 0);
    let busy = extended(&p.model, Curve::Busy, 8);
    assert_eq!(busy.len(), 8);
    assert_eq!(&busy[5..], &[(5.0, 0.0), (6.0, 0.0), (7.0, 0.0)]);
    let threads = extended(&p.model, Curve::Threads, 8);
    assert_eq!(threads[7], (7.0, 1.0), "held at the last reading");
    assert_eq!(
        extended(&p.model, Curve::P99, 8).len(),
        3,
        "latency is not extended"
    );
}

#[test]
fn peak_time_of_peak_checkpoints_and_nrmse_on_synthetic_curves() {
    let s = summarize(&[pair(1, 20, 0)], &Checkpoints::At(vec![3.0, 6.0]));
    let row = |m| s.get(m).unwrap();
    let busy = Curve::Busy;
    let peak = row(Metric::Peak { curve: busy });
    assert_eq!(peak.dotnet.unwrap().mean, 5.0);
    assert_eq!(peak.model.unwrap().mean, 6.0);
    assert_eq!(peak.ratio, Some(1.2));
    assert_eq!(peak.goal, None);
    let when = row(Metric::PeakTime { curve: busy });
    assert_eq!(
        (when.dotnet.unwrap().mean, when.model.unwrap().mean),
        (4.0, 2.0)
    );
    let at3 = row(Metric::At {
        curve: busy,
        t_s: 3.0,
    });
    assert_eq!(
        (at3.dotnet.unwrap().mean, at3.model.unwrap().mean),
        (4.0, 6.0)
    );
    assert_eq!(at3.within_goal, Some(false), "+50 % is outside ±20 %");
    let at6 = row(Metric::At {
        curve: busy,
        t_s: 6.0,
    });
    assert_eq!(
        (at6.dotnet.unwrap().mean, at6.model.unwrap().mean),
        (4.0, 0.0)
    );
    // Differences 1, 2, 3, 2, 1, -5, -4, 0 (the model idle from 5 s): RMSE sqrt(60/8) over
    // .NET's range 5.
    let n = row(Metric::Nrmse { curve: busy });
    assert!(n.dotnet.is_none() && n.ratio.is_none());
    let want = (60.0f64 / 8.0).sqrt() / 5.0;
    assert!((n.model.unwrap().mean - want).abs() < 1e-12, "{n:?}");
    assert_eq!(n.goal, Some(Goal::AtMost(0.15)));
    assert_eq!(n.within_goal, Some(false));

    let q = row(Metric::Peak {
        curve: Curve::Queue,
    });
    assert_eq!(
        (q.dotnet.unwrap().mean, q.model.unwrap().mean),
        (16.0, 12.0)
    );
    assert_eq!(q.within_goal, Some(true), "-25 % is inside ±30 %");
    let p99 = row(Metric::Peak { curve: Curve::P99 });
    assert_eq!(
        (p99.dotnet.unwrap().mean, p99.model.unwrap().mean),
        (9.0, 4.0)
    );
    assert_eq!(p99.within_goal, Some(false));
    let p99_at6 = row(Metric::At {
        curve: Curve::P99,
        t_s: 6.0,
    });
    assert_eq!(p99_at6.model, None, "no model request completed at 6 s");
    assert_eq!(p99_at6.ratio, None);
    // Over the two seconds both have (2 and 3): differences 0 and -1 over .NET's range 7.
    let n99 = row(Metric::Nrmse { curve: Curve::P99 }).model.unwrap().mean;
    assert!((n99 - (0.5f64).sqrt() / 7.0).abs() < 1e-12, "{n99}");

    let done = row(Metric::Completed);
    assert_eq!(done.within_goal, Some(true));
    assert_eq!(row(Metric::Dropped).within_goal, Some(true), "0 and 0");
    assert_eq!(row(Metric::Failed).goal, None);
    let end = row(Metric::LoadEnd);
    assert_eq!(
        (end.dotnet.unwrap().mean, end.model.unwrap().mean),
        (7.0, 5.0)
    );
    assert_eq!(s.checkpoints_s, vec![3.0, 6.0]);
}

#[test]
fn over_runs_each_side_gets_a_mean_and_an_interval() {
    let runs = [pair(1, 20, 0), pair(2, 16, 1), pair(3, 19, 0)];
    let s = summarize(&runs, &Checkpoints::OfDotnetLength(vec![0.5]));
    assert_eq!(s.runs, 3);
    // The .NET runs last 7 s each: the checkpoint is at 3.5 s, rounded to 4.
    assert_eq!(s.checkpoints_s, vec![4.0]);
    let done = s.get(Metric::Completed).unwrap();
    let (d, m) = (done.dotnet.unwrap(), done.model.unwrap());
    assert_eq!((d.mean, d.lo, d.hi, d.n), (20.0, 20.0, 20.0, 3));
    assert!((m.mean - 55.0 / 3.0).abs() < 1e-12);
    assert!(
        m.lo >= 16.0 && m.lo < m.mean && m.mean < m.hi && m.hi <= 20.0,
        "{m:?}"
    );
    assert_eq!(done.within_goal, Some(true), "18.3 is within 10 % of 20");
    let dropped = s.get(Metric::Dropped).unwrap();
    assert_eq!(dropped.ratio, None, ".NET dropped none");
    assert_eq!(
        dropped.within_goal,
        Some(false),
        "the model dropped one, .NET none"
    );
    assert_eq!(
        s.goals_met().1,
        s.rows.iter().filter(|r| r.goal.is_some()).count()
    );
}

#[test]
fn goals_are_judged_on_the_means() {
    assert_eq!(Goal::WithinPercent(10.0).met(Some(20.0), 22.0), Some(true));
    assert_eq!(Goal::WithinPercent(10.0).met(Some(20.0), 22.5), Some(false));
    assert_eq!(Goal::WithinPercent(10.0).met(Some(0.0), 0.0), Some(true));
    assert_eq!(Goal::WithinPercent(10.0).met(None, 1.0), None);
    assert_eq!(Goal::AtMost(0.15).met(None, 0.15), Some(true));
    assert_eq!(Goal::WithinPercent(20.0).to_string(), "±20 %");
    assert_eq!(
        Metric::At {
            curve: Curve::Busy,
            t_s: 60.0
        }
        .to_string(),
        "busy threads at 60 s"
    );
}
