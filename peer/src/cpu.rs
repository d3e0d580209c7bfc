//! CPU, as the peer can read it: how busy its whole host is, how much CPU the peer
//! itself used, and how long its container's CPU quota held it back.
//!
//! - `/proc/stat` is not namespaced: inside a container it is the host's. Its first line
//!   gives the time all CPUs spent in each mode; busy is everything but idle and iowait.
//! - `/proc/self/stat` gives this process's user and system time in clock ticks (100 a
//!   second on Linux's ABI), so a window's figure is good to 10 ms.
//! - The cgroup's `cpu.stat` says how long a CPU quota (`spawn --peer-cpus`) throttled
//!   the container: cgroup v2 `throttled_usec`, or v1 `cpu/cpu.stat` `throttled_time`
//!   (ns). The quota itself is v2 `cpu.max` or v1 `cpu.cfs_quota_us` / `cfs_period_us`.
//!
//! Every reader returns `None` where the file is missing or says something else, so a
//! peer on another kernel (or a plain process) reports what it can and nothing false.

use std::path::Path;

/// Clock ticks per second in `/proc` (Linux's `USER_HZ`).
const TICKS_PER_SECOND: u64 = 100;

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

/// `/proc/self/stat`: user plus system time, µs. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
pub fn parse_self_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * (1_000_000 / TICKS_PER_SECOND))
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

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The host's CPU ticks now.
pub fn host_ticks() -> Option<HostTicks> {
    parse_proc_stat(&read("/proc/stat")?)
}

/// This process's CPU time so far, µs.
pub fn process_us() -> Option<u64> {
    parse_self_stat(&read("/proc/self/stat")?)
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

/// Docker and containerd mark their containers with this file.
fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
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
    fn reads_a_process_cpu_time_even_with_spaces_in_its_name() {
        let line =
            "4242 (peer (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_self_stat(line), Some(300 * 10_000));
        assert!(parse_self_stat("4242 (peer) S 1").is_none());
        // This process's own file parses.
        assert!(process_us().is_some());
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
