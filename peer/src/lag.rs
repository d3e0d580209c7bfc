//! How late this peer's own timers fire: its scheduling lag.
//!
//! A task sleeps for a period ([`crate::pacing::lag_period`]: 50 ms on a host of few
//! peers, longer on a crowded one) again and again and records how late it woke, over
//! the run and per window of the time series. On a quiet host the lag is under a
//! millisecond (tokio's timers tick in whole milliseconds, so up to 1 ms of it is the
//! timer's own granularity). When the host's CPUs are saturated, or the container's CPU
//! quota is spent, timers fire late, and so does everything else the peer does: its
//! writes, its reads, the handling of every record. The latency it then reports measures
//! the host as much as the network; these figures are the evidence of that.

use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::{LatencyReport, WindowLatency};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Lag {
    start_us: u64,
    window_us: u64,
    all: LatencyHistogram,
    windows: Vec<Option<LatencyHistogram>>,
}

impl Lag {
    /// Records a sample taken within the windows; one before the start or after the
    /// last window (the teardown, when every peer of the host writes its report at
    /// once) is not the measurement's and is left out.
    fn record(&mut self, at_unix_us: u64, late_us: u64) {
        let Some(w) = at_unix_us
            .checked_sub(self.start_us)
            .map(|d| d / self.window_us)
        else {
            return;
        };
        if let Some(slot) = self.windows.get_mut(w as usize) {
            self.all.record(late_us);
            slot.get_or_insert_with(LatencyHistogram::coarse)
                .record(late_us);
        }
    }
}

/// The running sampler; stops when dropped.
pub struct LagSampler {
    lag: Arc<Mutex<Lag>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    /// Samples every `period` from now on, into `windows` windows of `window_ms` from
    /// `start_unix_ms`.
    pub fn start(
        period: Duration,
        start_unix_ms: u64,
        window_ms: u64,
        windows: usize,
    ) -> LagSampler {
        let lag = Arc::new(Mutex::new(Lag {
            start_us: start_unix_ms * 1000,
            window_us: window_ms.max(1) * 1000,
            all: LatencyHistogram::coarse(),
            windows: (0..windows.max(1)).map(|_| None).collect(),
        }));
        let task = tokio::spawn({
            let lag = lag.clone();
            async move {
                loop {
                    let due = Instant::now() + period;
                    tokio::time::sleep_until(due).await;
                    let late = Instant::now().saturating_duration_since(due);
                    lag.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(cmesh_common::unix_micros(), late.as_micros() as u64);
                }
            }
        });
        LagSampler { lag, task }
    }

    /// What was sampled so far: over the run, and per window (windows without samples
    /// left out).
    pub fn snapshot(&self) -> (LatencyReport, Vec<WindowLatency>) {
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        let all = LatencyReport {
            summary: lag.all.summary(),
            negative_samples: 0,
            histogram: lag.all.encode(),
            negative_histogram: None,
        };
        let windows = lag
            .windows
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some(crate::metrics::window_row(i, h.as_ref()?, None)))
            .collect();
        (all, windows)
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_shows_as_lag_in_its_window() {
        let start = cmesh_common::unix_millis();
        const PERIOD: Duration = Duration::from_millis(50);
        let sampler = LagSampler::start(PERIOD, start, 1_000, 10);
        // Let it take a few samples, then hold the only runtime thread for 300 ms: the
        // sampler's next wake-up is at least about that late.
        tokio::time::sleep(PERIOD * 3).await;
        tokio::task::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
            .await
            .unwrap();
        tokio::time::sleep(PERIOD * 2).await;
        let (all, windows) = sampler.snapshot();
        assert!(all.summary.count >= 3, "{all:?}");
        assert!(all.summary.max_us >= 200_000, "{all:?}");
        let max_window = windows.iter().map(|w| w.max_us).max().unwrap();
        assert!(max_window >= 200_000, "{windows:?}");
        assert_eq!(
            windows.iter().map(|w| w.count).sum::<u64>(),
            all.summary.count
        );
        assert!(LatencyHistogram::decode(&all.histogram).is_ok());
    }
}
