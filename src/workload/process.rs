//! Facts about this process the gauges report: processor count (cgroup-aware, like .NET),
//! CPU usage (.NET's definition) and OS thread count (from /proc).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Processors the runtime may use: the affinity mask, capped by a cgroup CPU quota rounded up
/// (.NET's `Environment.ProcessorCount` in a container with `--cpus 1.5` is 2).
pub fn processor_count() -> u32 {
    let affinity = affinity_cpu_count().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    });
    match cgroup_cpu_quota() {
        Some(quota) => affinity.min(quota.ceil() as u32).max(1),
        None => affinity.max(1),
    }
}

fn affinity_cpu_count() -> Option<u32> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(libc::CPU_COUNT(&set) as u32)
    }
}

/// The CPU quota in processors, from cgroup v2 `cpu.max` or v1 `cfs_quota_us/cfs_period_us`.
fn cgroup_cpu_quota() -> Option<f64> {
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        return parse_cpu_max(&text);
    }
    for dir in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
        let quota = std::fs::read_to_string(format!("{dir}/cpu.cfs_quota_us"));
        let period = std::fs::read_to_string(format!("{dir}/cpu.cfs_period_us"));
        if let (Ok(q), Ok(p)) = (quota, period) {
            return parse_cfs(&q, &p);
        }
    }
    None
}

/// cgroup v2: `"max 100000"` (no limit) or `"150000 100000"` (1.5 CPUs).
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next()?.parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then_some(quota / period)
}

/// cgroup v1: quota `-1` means no limit.
pub fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then_some(quota / period)
}

/// User + system CPU time of the whole process.
pub fn process_cpu_time() -> Duration {
    // SAFETY: rusage is plain data filled by the kernel.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
}

/// OS threads of this process (`Threads:` in /proc/self/status), like .NET's
/// `process.ThreadCount` that the original exported as `process_number_of_threads`.
pub fn process_threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_status_threads(&s))
        .unwrap_or(0)
}

pub fn parse_status_threads(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// .NET's `cpu-usage` counter: delta(user + system CPU time) / delta(wall) / processors x 100,
/// measured between consecutive samples.
pub struct CpuMeter {
    processors: u32,
    last: Mutex<(Instant, Duration)>,
}

impl CpuMeter {
    pub fn new(processors: u32) -> Self {
        CpuMeter {
            processors: processors.max(1),
            last: Mutex::new((Instant::now(), process_cpu_time())),
        }
    }

    /// Usage since the previous call, in percent of all processors (0..=100).
    pub fn sample(&self) -> f64 {
        let now = Instant::now();
        let cpu = process_cpu_time();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let percent = usage_percent(cpu - last.1.min(cpu), now - last.0, self.processors);
        *last = (now, cpu);
        percent
    }
}

pub fn usage_percent(cpu: Duration, wall: Duration, processors: u32) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    let p = cpu.as_secs_f64() / wall.as_secs_f64() / processors.max(1) as f64 * 100.0;
    p.clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_quotas_round_up_like_dotnet() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("50000", "100000"), Some(0.5));
        assert!(processor_count() >= 1);
    }

    #[test]
    fn status_thread_count_and_usage_formula() {
        let status = "Name:\tx\nThreads:\t17\nSigQ:\t0/1\n";
        assert_eq!(parse_status_threads(status), Some(17));
        assert!(process_threads() >= 1);
        // One full CPU second per wall second on 2 processors is 50 %.
        assert_eq!(
            usage_percent(Duration::from_secs(1), Duration::from_secs(1), 2),
            50.0
        );
        assert_eq!(usage_percent(Duration::ZERO, Duration::ZERO, 2), 0.0);
    }
}
