//! What the peer's host and container spent, per time window: bytes per interface
//! ([`crate::netdev`]) and CPU ([`crate::cpu`]): the whole host's busy fraction, this
//! peer's own CPU time, and its throttling by a CPU quota.
//!
//! One task reads them all at `start + k * window`, the plan's windows (by sampling
//! time, so the series may run past the writing into the catch-up).

use crate::cpu;
use crate::netdev;
use cmesh_common::report::{CpuSeries, InterfaceSeries};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;

/// The series a [`Sampler`] took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub interfaces: BTreeMap<String, InterfaceSeries>,
    /// `None` where the host's CPU could not be read at all.
    pub cpu: Option<CpuSeries>,
}

impl Usage {
    /// Adds one window from two readings of the CPU counters. A reading that failed
    /// counts as nothing used in that window.
    fn push_cpu(&mut self, before: &cpu::Reading, now: &cpu::Reading) {
        let Some(series) = self.cpu.as_mut() else {
            return;
        };
        let busy = match (before.host, now.host) {
            (Some(b), Some(n)) => n.busy_permille_since(&b).unwrap_or(0),
            _ => 0,
        };
        series.host_busy_permille.push(busy);
        let delta = |b: Option<u64>, n: Option<u64>| n.zip(b).map(|(n, b)| n.saturating_sub(b));
        series
            .process_us
            .push(delta(before.process_us, now.process_us).unwrap_or(0));
        if let Some(t) = delta(before.throttled_us, now.throttled_us) {
            series.throttled_us.push(t);
        }
    }
}

/// Samples at `start + k * window` until stopped.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Usage>,
}

impl Sampler {
    /// Samples every `window` from `start_unix_ms`, for at most `max_windows` windows
    /// (a report's arrival-time series are bounded: twice the run's windows).
    pub fn start(start_unix_ms: u64, window: Duration, max_windows: usize) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut at = crate::time::unix_ms_to_instant(start_unix_ms);
            tokio::time::sleep_until(at).await;
            let mut before = (netdev::read(), cpu::Reading::now());
            let mut usage = Usage {
                interfaces: BTreeMap::new(),
                cpu: before.1.host.map(|_| CpuSeries::default()),
            };
            let mut windows = 0;
            while windows < max_windows {
                at += window;
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = &mut stopped => break,
                }
                let now = (netdev::read(), cpu::Reading::now());
                netdev::push_window(&mut usage.interfaces, windows, &before.0, &now.0);
                usage.push_cpu(&before.1, &now.1);
                windows += 1;
                before = now;
            }
            usage
        });
        Sampler { stop, task }
    }

    /// Stops sampling (the window in progress is left out) and returns the series.
    pub async fn finish(self) -> Usage {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn samples_cpu_and_interfaces_per_window_and_stops_when_asked() {
        let window = Duration::from_millis(100);
        let sampler = Sampler::start(cmesh_common::unix_millis(), window, 50);
        // Spend CPU across several windows (the sampler runs on a worker meanwhile), so
        // the process's own time shows.
        let spin = std::time::Instant::now();
        while spin.elapsed() < 4 * window {
            std::hint::black_box(spin.elapsed());
        }
        let usage = sampler.finish().await;
        let cpu = usage.cpu.expect("/proc/stat is readable here");
        let windows = cpu.host_busy_permille.len();
        assert!((1..50).contains(&windows), "{cpu:?}");
        assert_eq!(cpu.process_us.len(), windows);
        assert!(cpu.host_busy_permille.iter().all(|&b| b <= 1000));
        assert!(
            cpu.process_us.iter().sum::<u64>() > 0,
            "the spin shows as this process's CPU: {cpu:?}"
        );
        assert!(cpu_usage().is_some_and(|u| u.process_us > 0 && u.host_cpus > 0));
    }
}
