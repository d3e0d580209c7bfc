//! What the peer's host and container spent, per time window: bytes per interface
//! ([`crate::netdev`]) and CPU ([`crate::cpu`]): the whole host's busy fraction, this
//! peer's own CPU time, and its throttling by a CPU quota.
//!
//! The sampler ([`crate::sampler`]) takes a [`Reading`] once a window and adds the
//! difference from the one before here.

use crate::cpu;
use crate::metrics::split;
use crate::netdev;
use cmesh_common::report::{CpuSeries, InterfaceSeries};
use std::collections::BTreeMap;

/// The counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    pub interfaces: BTreeMap<String, (u64, u64)>,
    pub cpu: cpu::Reading,
}

impl Reading {
    pub fn now() -> Reading {
        Reading {
            interfaces: netdev::read(),
            cpu: cpu::Reading::now(),
        }
    }
}

/// The series taken so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub interfaces: BTreeMap<String, InterfaceSeries>,
    /// `None` where the host's CPU could not be read at all.
    pub cpu: Option<CpuSeries>,
}

impl Usage {
    /// No windows yet; `first` is the reading they start from.
    pub fn new(first: &Reading) -> Usage {
        Usage {
            interfaces: BTreeMap::new(),
            cpu: first.cpu.host.map(|_| CpuSeries::default()),
        }
    }

    /// Windows so far.
    pub fn windows(&self) -> usize {
        self.cpu.as_ref().map_or_else(
            || {
                self.interfaces
                    .values()
                    .next()
                    .map_or(0, |s| s.rx_bytes.len())
            },
            |c| c.host_busy_permille.len(),
        )
    }

    /// Adds `windows` windows (one, or more when the sampler was too late for the
    /// boundaries between them) from two readings: what was spent between them, split
    /// evenly ([`split`]); the host's busy fraction is the same in each.
    pub fn push(&mut self, windows: usize, before: &Reading, now: &Reading) {
        let done = self.windows();
        netdev::push_windows(
            &mut self.interfaces,
            done,
            &before.interfaces,
            &now.interfaces,
            windows,
        );
        let Some(series) = self.cpu.as_mut() else {
            return;
        };
        // A reading that failed counts as nothing used.
        let busy = match (before.cpu.host, now.cpu.host) {
            (Some(b), Some(n)) => n.busy_permille_since(&b).unwrap_or(0),
            _ => 0,
        };
        let delta = |b: Option<u64>, n: Option<u64>| n.zip(b).map(|(n, b)| n.saturating_sub(b));
        series
            .host_busy_permille
            .extend(std::iter::repeat_n(busy, windows));
        let process = delta(before.cpu.process_us, now.cpu.process_us).unwrap_or(0);
        series.process_us.extend(split(process, windows));
        if let Some(t) = delta(before.cpu.throttled_us, now.cpu.throttled_us) {
            series.throttled_us.extend(split(t, windows));
        }
    }
}

/// The peer's CPU over its whole run so far, where it can be read.
pub fn cpu_usage() -> Option<cmesh_common::report::CpuUsage> {
    let now = cpu::Reading::now();
    Some(cmesh_common::report::CpuUsage {
        process_us: now.process_us?,
        throttled_us: now.throttled_us,
        quota_cpus: cpu::quota_cpus(),
        host_cpus: now.host.map_or(0, |h| h.cpus),
    })
}

/// The CPUs of the host this peer runs on (what its container sees in /proc/cpuinfo, not
/// its quota): for the coordinator's start ramp.
pub fn host_cpus() -> Option<u32> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok();
    let counted = info.map(|t| cpus_in(&t)).filter(|&n| n > 0);
    counted.or_else(|| {
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32)
    })
}

/// The processors /proc/cpuinfo lists.
fn cpus_in(cpuinfo: &str) -> u32 {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpus_are_the_processors_listed() {
        let two =
            "processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
        assert_eq!(cpus_in(two), 2);
        assert_eq!(cpus_in(""), 0);
        assert!(host_cpus().is_some_and(|n| n > 0));
    }

    #[test]
    fn a_late_reading_is_split_over_the_windows_it_covers() {
        assert_eq!(split(10, 3).collect::<Vec<_>>(), vec![4, 3, 3]);
        assert_eq!(split(0, 2).collect::<Vec<_>>(), vec![0, 0]);
        let reading = |busy, total, process_us, rx| Reading {
            interfaces: BTreeMap::from([("eth0".to_owned(), (rx, 0))]),
            cpu: cpu::Reading {
                host: Some(cpu::HostTicks {
                    busy,
                    total,
                    cpus: 2,
                }),
                process_us: Some(process_us),
                throttled_us: None,
            },
        };
        let (a, b, c) = (
            reading(0, 0, 0, 0),
            reading(50, 100, 1_000, 300),
            reading(350, 400, 4_000, 600),
        );
        let mut usage = Usage::new(&a);
        usage.push(1, &a, &b);
        usage.push(3, &b, &c);
        assert_eq!(usage.windows(), 4);
        let cpu = usage.cpu.unwrap();
        assert_eq!(cpu.host_busy_permille, vec![500, 1000, 1000, 1000]);
        assert_eq!(cpu.process_us, vec![1_000, 1_000, 1_000, 1_000]);
        assert!(cpu.throttled_us.is_empty());
        assert_eq!(usage.interfaces["eth0"].rx_bytes, vec![300, 100, 100, 100]);
    }

    #[test]
    fn readings_of_this_machine_give_cpu_windows() {
        let before = Reading::now();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let now = Reading::now();
        let mut usage = Usage::new(&before);
        usage.push(1, &before, &now);
        let cpu = usage.cpu.expect("/proc/stat is readable here");
        assert_eq!(cpu.host_busy_permille.len(), 1);
        assert!(cpu.host_busy_permille[0] <= 1000);
        assert!(cpu.process_us[0] > 0, "the spin shows: {cpu:?}");
        assert!(cpu_usage().is_some_and(|u| u.process_us > 0 && u.host_cpus > 0));
    }
}
