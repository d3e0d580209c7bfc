//! CPU, as the peer can read it: how busy its whole host is, how much CPU the peer
//! itself used, and how long its container's CPU quota held it back.
//!
//! - `/proc/stat` is not namespaced: inside a container it is the host's. Its first line
//!   gives the time all CPUs spent in each mode; busy is everything but idle and iowait.
//! - This process's CPU time is its CPU-time clock (`CLOCK_PROCESS_CPUTIME_ID`): exact
//!   to the ns, where `/proc/self/stat` counts 10 ms ticks by sampling, which charges a
//!   process that wakes briefly on the timer's beat for whole ticks.
//! - The cgroup's `cpu.stat` says how long a CPU quota (`spawn --peer-cpus`) throttled
//!   the container: cgroup v2 `throttled_usec`, or v1 `cpu/cpu.stat` `throttled_time`
//!   (ns). The quota itself is v2 `cpu.max` or v1 `cpu.cfs_quota_us` / `cfs_period_us`.
//!
//! Every reader returns `None` where the file is missing or says something else, so a
//! peer on another kernel (or a plain process) reports what it can and nothing false.

use std::path::Path;

/// The host's CPU time so far, in ticks: busy (all but idle and iowait) and in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostTicks {
    pub busy: u64,
    pub total: u64,
    /// CPUs the host has (the `cpuN` lines).
    pub cpus: u32,
}

impl HostTicks {
    /// Busy per mille of all the host's CPU time between `before` and `self`.
    pub fn busy_permille_since(&self, before: &HostTicks) -> Option<u16> {
        let total = self.total.checked_sub(before.total).filter(|&t| t > 0)?;
        let busy = self.busy.saturating_sub(before.busy).min(total);
        Some((busy * 1000 / total) as u16)
    }
}

/// `/proc/stat`: the `cpu` line's modes (user nice system idle iowait irq softirq steal
/// …; guest time is already in user) and the count of `cpuN` lines.
pub fn parse_proc_stat(text: &str) -> Option<HostTicks> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut fields = first.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let modes: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if modes.len() < 5 {
        return None;
    }
    let total: u64 = modes.iter().sum();
    let idle = modes[3] + modes[4];
    let cpus = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    Some(HostTicks {
        busy: total - idle,
        total,
        cpus,
    })
}

/// A cgroup `cpu.stat`: the time throttled, µs (v2 `throttled_usec`, v1 `throttled_time`
/// in ns).
pub fn parse_throttled(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        let value: u64 = value.trim().parse().ok()?;
        match key {
            "throttled_usec" => Some(value),
            "throttled_time" => Some(value / 1000),
            _ => None,
        }
    })
}

/// The CPU quota in CPUs: v2 `cpu.max` (`QUOTA PERIOD` or `max PERIOD`).
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// The CPU quota in CPUs from v1's `cfs_quota_us` (-1: none) and `cfs_period_us`.
pub fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: i64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// Reads a small kernel file (procfs, cgroupfs) through a descriptor kept open, from
/// offset 0, which makes the kernel generate it anew. Opening it each time walked its
/// path, and `std::fs::read_to_string` grows its buffer from 32 bytes (8 reads for
/// /proc/stat): together most of what a peer's once-a-window reading cost.
pub(crate) fn read(path: &'static str) -> Option<String> {
    use std::collections::btree_map::{BTreeMap, Entry};
    use std::os::unix::fs::FileExt;
    static OPEN: std::sync::Mutex<BTreeMap<&str, std::fs::File>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let file = match open.entry(path) {
        Entry::Occupied(f) => f.into_mut(),
        Entry::Vacant(v) => v.insert(std::fs::File::open(path).ok()?),
    };
    let mut buf = vec![0; 8 * 1024];
    let mut len = 0;
    loop {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => {
                open.remove(path);
                return None;
            }
        }
        if len == buf.len() {
            buf.resize(2 * len, 0);
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// The host's CPU ticks now.
pub fn host_ticks() -> Option<HostTicks> {
    parse_proc_stat(&read("/proc/stat")?)
}

/// This process's CPU time so far (all its threads), µs.
pub fn process_us() -> Option<u64> {
    use rustix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Some(t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000)
}

/// The time this container's cgroup was throttled so far, µs. Only inside a container
/// (a cgroup namespace shows its own cgroup at the root); elsewhere the root's file is
/// the whole machine's, so a plain process reports none.
pub fn throttled_us() -> Option<u64> {
    if !in_container() {
        return None;
    }
    read("/sys/fs/cgroup/cpu.stat")
        .and_then(|t| parse_throttled(&t))
        .or_else(|| parse_throttled(&read("/sys/fs/cgroup/cpu/cpu.stat")?))
}

/// This container's CPU quota in CPUs, if it has one.
pub fn quota_cpus() -> Option<f64> {
    if !in_container() {
        return None;
    }
    read("/sys/fs/cgroup/cpu.max")
        .and_then(|t| parse_cpu_max(&t))
        .or_else(|| {
            parse_cfs(
                &read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?,
                &read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?,
            )
        })
}

/// Docker and containerd mark their containers with this file (looked for once).
fn in_container() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| Path::new("/.dockerenv").exists())
}

/// One reading of everything at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub host: Option<HostTicks>,
    pub process_us: Option<u64>,
    pub throttled_us: Option<u64>,
}

impl Reading {
    pub fn now() -> Reading {
        Reading {
            host: host_ticks(),
            process_us: process_us(),
            throttled_us: throttled_us(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  159072 0 31699 94021 1320 0 512 617 0 0
cpu0 75857 0 14767 52122 369 0 171 319 0 0
cpu1 83215 0 16932 41898 951 0 340 298 0 0
intr 1234
ctxt 99
";

    #[test]
    fn reads_the_hosts_busy_time_and_its_cpus() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(t.cpus, 2);
        assert_eq!(t.total, 159072 + 31699 + 94021 + 1320 + 512 + 617);
        assert_eq!(t.busy, t.total - 94021 - 1320);
        let later = HostTicks {
            busy: t.busy + 150,
            total: t.total + 200,
            cpus: 2,
        };
        assert_eq!(later.busy_permille_since(&t), Some(750));
        assert_eq!(t.busy_permille_since(&t), None, "no time passed");
        assert!(parse_proc_stat("garbage").is_none());
        assert!(parse_proc_stat("cpu 1 2 x").is_none());
    }

    #[test]
    fn this_process_cpu_time_counts_what_it_spends_to_the_microsecond() {
        let before = process_us().unwrap();
        // Spin until 3 ms of CPU are seen (a busy machine gives less CPU than wall time);
        // a reading in 10 ms ticks would jump from 0 to 10,000 instead.
        let spin = std::time::Instant::now();
        let mut spent = 0;
        while spent < 3_000 && spin.elapsed() < std::time::Duration::from_secs(10) {
            std::hint::black_box(spin.elapsed());
            spent = process_us().unwrap() - before;
        }
        // Well under one 10 ms tick, and seen: /proc/self/stat would say 0 or 10,000.
        assert!(
            spent >= 1_000 && !spent.is_multiple_of(10_000),
            "{spent} µs"
        );
    }

    #[test]
    fn a_kernel_file_read_again_through_its_open_descriptor_is_fresh() {
        // The kernel adds a thread's run time at its ticks and switches, not
        // continuously: spin until a new reading shows more (a stale descriptor never
        // would), for at most a second.
        let a = read("/proc/thread-self/schedstat").unwrap();
        let ns = |t: &str| t.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        let spin = std::time::Instant::now();
        let mut b = a.clone();
        while ns(&b) <= ns(&a) && spin.elapsed() < std::time::Duration::from_secs(1) {
            std::hint::black_box(spin.elapsed());
            b = read("/proc/thread-self/schedstat").unwrap();
        }
        assert!(ns(&b) > ns(&a), "{a} then {b}");
        assert!(read("/nonexistent/file").is_none());
    }

    #[test]
    fn reads_throttling_and_quotas_of_both_cgroup_versions() {
        let v2 = "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 7000\n";
        assert_eq!(parse_throttled(v2), Some(7000));
        let v1 = "nr_periods 2\nnr_throttled 1\nthrottled_time 9000000\n";
        assert_eq!(parse_throttled(v1), Some(9000));
        assert_eq!(parse_throttled("nr_periods 2\n"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cfs("2000\n", "100000\n"), Some(0.02));
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
    }
}
