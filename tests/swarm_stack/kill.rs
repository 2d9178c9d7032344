//! The kill phase of `swarm_stack` (issue 26.2 on the one-node Swarm): a starved task
//! SIGKILLed stops counting, is replaced, and the scaler does not climb on its last gauges.

use super::*;

/// The alert rules' signal per replica, as the stack's Prometheus loaded it: the
/// ThreadPoolSpike rule's query (`sum by (service) (SIGNAL) > 40`, from `/api/v1/rules`) with
/// its threshold and sum taken off, so the test evaluates exactly what the deployed rule sums
/// (with `deploy/prometheus/alert_rules.yml`: the queue of the replicas whose last push is under
/// 5 s old).
async fn rules_signal_per_replica() -> String {
    use promql_parser::parser::{self, Expr};
    let rules = get_json("http://127.0.0.1:9090/api/v1/rules")
        .await
        .expect("Prometheus' rules");
    let query = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["name"] == "ThreadPoolSpike")
        .and_then(|r| r["query"].as_str())
        .unwrap_or_else(|| panic!("no ThreadPoolSpike rule loaded: {rules}"))
        .to_owned();
    let unparen = |mut e: Expr| {
        while let Expr::Paren(p) = e {
            e = *p.expr;
        }
        e
    };
    let e = parser::parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let Expr::Binary(threshold) = unparen(e) else {
        panic!("ThreadPoolSpike is not `sum by (service) (...) > N`: {query}")
    };
    let Expr::Aggregate(sum) = unparen(*threshold.lhs) else {
        panic!("ThreadPoolSpike is not `sum by (service) (...) > N`: {query}")
    };
    unparen(*sum.expr).to_string()
}

/// An instant query's series as instance → value; `None` when Prometheus did not answer, which
/// is never read as "no series".
async fn by_instance(expr: &str) -> Option<std::collections::BTreeMap<String, f64>> {
    let url = format!(
        "http://127.0.0.1:9090/api/v1/query?query={}",
        url_escape(expr)
    );
    let v = get_json(&url).await?;
    if v["status"] != "success" {
        return None;
    }
    Some(
        v["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| {
                let instance = s["metric"]["instance"].as_str().unwrap_or("").to_owned();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (instance, value)
            })
            .collect(),
    )
}

fn desired_replicas(service: &str) -> u64 {
    let r = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        service,
    ]);
    r.trim().parse().unwrap_or_else(|_| panic!("replicas: {r}"))
}

/// The service's tasks Swarm wants running: (task id, slot `<service>.<n>`, current state).
fn tasks_meant_to_run(service: &str) -> Vec<(String, String, String)> {
    let (ok, out) = docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.ID}} {{.Name}} {{.CurrentState}}",
        service,
    ]);
    if !ok {
        return vec![];
    }
    out.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some((
                it.next()?.to_owned(),
                it.next()?.to_owned(),
                it.next()?.to_owned(),
            ))
        })
        .collect()
}

/// One running container of the service: (container id, instance it pushes as, task id, slot,
/// address on the stack's network).
struct Task {
    container: String,
    instance: String,
    task: String,
    slot: String,
    address: String,
}

fn running_tasks(stack: &str, service: &str) -> Vec<Task> {
    let ids = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--filter",
        "status=running",
    ]);
    ids.split_whitespace()
        .filter_map(|id| {
            let format = format!(
                "{{{{.Config.Hostname}}}} {{{{index .Config.Labels \"com.docker.swarm.task.id\"}}}} \
                 {{{{index .Config.Labels \"com.docker.swarm.task.name\"}}}} \
                 {{{{(index .NetworkSettings.Networks \"{stack}_starvation\").IPAddress}}}}"
            );
            let (ok, out) = docker(&["inspect", "--format", &format, id]);
            let mut it = out.split_whitespace();
            let (host, task, name, address) = (it.next()?, it.next()?, it.next()?, it.next()?);
            // The task's name is `<service>.<slot>.<task id>`.
            let slot = name.strip_suffix(&format!(".{task}"))?;
            ok.then(|| Task {
                container: id.to_owned(),
                // `serve`'s default instance: the hostname (the container's, unique per task)
                // and the port.
                instance: format!("{host}:5000"),
                task: task.to_owned(),
                slot: slot.to_owned(),
                address: address.to_owned(),
            })
        })
        .collect()
}

/// Issue 26.2 on the one-node Swarm: SIGKILL a starved task; within 10 s its gauges no longer
/// count, the task is replaced, and the scaler does not climb on its last gauges.
///
/// The main load is over, so the phase makes its own starvation on one task only: a burst of
/// 250 requests in 1 s straight to that task's address (nothing is sent after it, so once the
/// task is dead no live replica has a queue). As soon as the rules count its queue above 40,
/// its container gets SIGKILL. It cannot delete its Pushgateway group, so the group (and
/// Prometheus' copy of its gauges) stays: only the rules' staleness filter can stop it counting.
///
/// What the scaler may do: the queue the rules saw was live, so the alerts it fired may still be
/// answered by one step (the cooldown, 15 s, allows no second one within the window); after the
/// alerts resolve and Alertmanager has had its group_interval (5 s) to tell the scaler, no
/// scale-up at all. Had the dead gauges kept counting, both alerts would stay firing, and an alert
/// held back by the cooldown would add a step when it ends.
pub(super) async fn a_killed_starved_task_stops_counting(
    stack: &str,
    tag: &str,
    service: &str,
    token: Option<&str>,
    cleanup: &mut Cleanup,
) {
    let phase = Instant::now();
    let counted = rules_signal_per_replica().await;
    eprintln!("kill phase: the rules' signal per replica: {counted}");
    let firing_expr = format!(
        "ALERTS{{alertstate=\"firing\",alertname=~\"ThreadPool.*\",service=\"{service}\"}}"
    );
    // Start from quiet: the main load's queues drained and its alerts resolved.
    wait_for(
        "the main load's queues to drain and its alerts to resolve",
        Duration::from_secs(90),
        async || {
            let queues = by_instance(&counted).await?;
            let firing = by_instance(&firing_expr).await?;
            (firing.is_empty() && queues.values().sum::<f64>() <= 20.0).then_some(())
        },
    )
    .await;
    let before = by_instance(&counted).await.unwrap_or_default();
    let target = running_tasks(stack, service)
        .into_iter()
        .find(|t| before.contains_key(&t.instance))
        .unwrap_or_else(|| panic!("no running task of {service} pushes to Prometheus: {before:?}"));
    eprintln!(
        "kill phase: target task {} ({}, instance {}, {})",
        target.task, target.slot, target.instance, target.address
    );

    let burst = format!("{stack}-burst");
    cleanup.load_containers.push(burst.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &burst,
        "--network",
        &format!("{stack}_starvation"),
        &format!("starvation:{tag}"),
        "load",
        "--url",
        &format!("http://{}:5000/test-threadpool", target.address),
        "--stages",
        "250:1s",
        "--start-rate",
        "250",
        "--pre-allocated-vus",
        "250",
        "--max-vus",
        "250",
    ]);
    let queue_at_kill = wait_for(
        "the target's queue above 40 as the rules count it",
        Duration::from_secs(30),
        async || {
            by_instance(&counted)
                .await?
                .get(&target.instance)
                .copied()
                .filter(|q| *q > 40.0)
        },
    )
    .await;

    let desired_at_kill = desired_replicas(service);
    let kill_wall = chrono::Utc::now();
    let killed = Instant::now();
    docker_ok(&["kill", "--signal", "KILL", &target.container]);
    let kill_call = killed.elapsed();

    // Watch, polling, until every fact is in and the window has covered a cooldown after any
    // step (so an alert held back by it would have been released).
    let mut gone: Option<Duration> = None;
    let mut counted_again = false;
    let mut raw_left_at_gone = None;
    let mut replaced: Option<(Duration, String, usize)> = None;
    let mut new_reporting: Option<(Duration, String)> = None;
    let mut resolved: Option<Duration> = None;
    let mut rises: Vec<(Duration, u64)> = vec![];
    let mut max_desired = desired_at_kill;
    loop {
        let t = killed.elapsed();
        if let Some(queues) = by_instance(&counted).await {
            if queues.contains_key(&target.instance) {
                counted_again |= gone.is_some();
            } else if gone.is_none() {
                gone = Some(t);
                // The Pushgateway still holds the dead task's group: the filter is what dropped it.
                raw_left_at_gone = by_instance(&format!(
                    "system_runtime_threadpool_queue_length{{job=\"webserver\",instance=\"{}\"}}",
                    target.instance
                ))
                .await
                .map(|m| m.contains_key(&target.instance));
            }
            if new_reporting.is_none()
                && let Some(new) = queues.keys().find(|i| !before.contains_key(*i))
            {
                new_reporting = Some((t, new.clone()));
            }
        }
        let desired = desired_replicas(service);
        if desired > max_desired {
            max_desired = desired;
            rises.push((t, desired));
        }
        if replaced.is_none() {
            let tasks = tasks_meant_to_run(service);
            if let Some((id, ..)) = tasks.iter().find(|(id, slot, state)| {
                *slot == target.slot && *id != target.task && state.starts_with("Running")
            }) {
                let running = tasks
                    .iter()
                    .filter(|(_, _, s)| s.starts_with("Running"))
                    .count();
                replaced = Some((t, id.clone(), running));
            }
        }
        if let Some(firing) = by_instance(&firing_expr).await {
            if !firing.is_empty() {
                resolved = None;
            } else if resolved.is_none() {
                resolved = Some(t);
            }
        }
        let settled = rises
            .last()
            .is_none_or(|(at, _)| t >= *at + Duration::from_secs(18));
        let done = gone.is_some() && replaced.is_some() && new_reporting.is_some();
        if (t >= Duration::from_secs(25) && done && settled) || t >= Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    docker(&["rm", "-f", &burst]);

    let last_push = by_instance(&format!(
        "push_time_seconds{{job=\"webserver\",instance=\"{}\"}}",
        target.instance
    ))
    .await
    .and_then(|m| m.get(&target.instance).copied());
    let secs =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    eprintln!(
        "kill phase: queue {queue_at_kill} counted at the kill (docker kill took {:.2} s; last \
         push {}); kill → its gauges no longer counted {} (Pushgateway still holding its group \
         then: {raw_left_at_gone:?}); kill → replacement task running {} ({:?}); kill → \
         replacement reporting {} ({:?}); thread-pool alerts resolved {} after the kill; desired \
         replicas {desired_at_kill} at the kill, rises after it: {rises:?}",
        kill_call.as_secs_f64(),
        last_push.map_or("unknown".to_owned(), |p| format!(
            "{:.1} s before the kill",
            kill_wall.timestamp_millis() as f64 / 1000.0 - p
        )),
        secs(gone),
        secs(replaced.as_ref().map(|r| r.0)),
        replaced.as_ref().map(|r| &r.1),
        secs(new_reporting.as_ref().map(|r| r.0)),
        new_reporting.as_ref().map(|r| &r.1),
        secs(resolved),
    );

    eprintln!("kill phase: {:.0} s in all", phase.elapsed().as_secs_f64());
    // (1) Its gauges stop counting within 10 s, and never count again.
    let gone = gone.expect("the killed task's gauges still counted 60 s after the kill");
    assert!(
        gone <= Duration::from_secs(10),
        "the killed task's gauges counted for {gone:?} after the kill"
    );
    assert!(!counted_again, "the killed task's gauges counted again");
    // (2) Swarm runs a replacement in its slot, and every desired task runs.
    let (_, _, running) = replaced
        .clone()
        .expect("no replacement task running 60 s after the kill");
    assert!(
        running as u64 >= desired_replicas(service).min(desired_at_kill),
        "{running} tasks running after the replacement"
    );
    wait_for(
        "every desired task running",
        Duration::from_secs(30),
        async || {
            let desired = desired_replicas(service) as usize;
            let running = tasks_meant_to_run(service)
                .iter()
                .filter(|(_, _, s)| s.starts_with("Running"))
                .count();
            (running == desired).then_some(())
        },
    )
    .await;
    assert!(new_reporting.is_some(), "the replacement never reported");
    // (3) Nothing left to scale on: the alerts resolve, and stay resolved, once the dead queue
    // stops counting; the scaler takes at most the one step the live queue's alerts allow, and
    // none after it has been told they resolved.
    let resolved = resolved.expect("thread-pool alerts still firing at the end of the window");
    assert!(
        resolved <= Duration::from_secs(15),
        "thread-pool alerts resolved only {resolved:?} after the kill"
    );
    assert!(
        max_desired <= desired_at_kill + 1,
        "the scaler climbed from {desired_at_kill} to {max_desired} after the kill: {rises:?}"
    );
    if let Some(token) = token {
        let events = get_json_as("http://127.0.0.1:5001/events", Some(token))
            .await
            .expect("the scaler's events");
        // The scaler's decisions since the kill, in seconds after it.
        let after_kill: Vec<(f64, &serde_json::Value)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str()?).ok()?;
                let secs = (time.with_timezone(&chrono::Utc) - kill_wall).num_milliseconds();
                (secs >= 0).then_some((secs as f64 / 1000.0, e))
            })
            .collect();
        for (secs, e) in &after_kill {
            eprintln!(
                "kill phase: scaler at +{secs:.1} s: {} {} → {} ({}) {}",
                e["action"], e["from"], e["to"], e["reason"], e["alerts"]
            );
        }
        // Alertmanager told the scaler that nothing fires for the service any more (the policy's
        // reason says `resolved: …` only when no alert of the service is firing in its memory):
        // its scale-down clock runs again. Had the dead gauges kept counting, no resolve would
        // ever come and the service could never scale down.
        let told = after_kill
            .iter()
            .find(|(_, e)| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("resolved:"))
            })
            .map(|(secs, _)| *secs)
            .expect("the scaler was never told the alerts resolved after the kill");
        assert!(
            told <= 20.0,
            "the scaler was told the alerts resolved only {told:.1} s after the kill"
        );
        for (secs, e) in &after_kill {
            assert!(
                e["action"] != "scale_up" || *secs <= told,
                "the scaler scaled up {secs:.1} s after the kill, after it had been told the \
                 alerts resolved ({told:.1} s): {e}"
            );
        }
    }
}
