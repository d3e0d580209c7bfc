//! How late this peer's own timers fire: its scheduling lag.
//!
//! The sampler ([`crate::sampler`]) wakes every tick (50 ms on a host of few peers,
//! longer on a crowded one: [`crate::pacing::tick_period`]) and records here how late it
//! woke, over the run and per window of the time series. On a quiet host the lag is
//! well under a millisecond. When the host's CPUs are saturated, or the container's CPU
//! quota is spent, timers fire late, and so does everything else the peer does: its
//! writes, its reads, the handling of every record. The latency it then reports measures
//! the host as much as the network; these figures are the evidence of that.

use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::{LatencyReport, WindowLatency};

/// The lag samples: over the run and per window.
#[derive(Debug)]
pub struct Lag {
    start_us: u64,
    window_us: u64,
    all: LatencyHistogram,
    windows: Vec<Option<LatencyHistogram>>,
    /// Since the heartbeat last took it ([`Lag::take_recent`]).
    recent: cmesh_common::live::LiveHistogram,
}

impl Lag {
    /// No samples yet, for `windows` windows of `window_ms` from `start_unix_ms`.
    pub fn new(start_unix_ms: u64, window_ms: u64, windows: usize) -> Lag {
        Lag {
            start_us: start_unix_ms * 1000,
            window_us: window_ms.max(1) * 1000,
            all: LatencyHistogram::coarse(),
            windows: (0..windows.max(1)).map(|_| None).collect(),
            recent: Default::default(),
        }
    }

    /// Records a sample taken within the windows; one before the start or after the
    /// last window (the teardown, when every peer of the host writes its report at
    /// once) is not the measurement's and is left out.
    pub fn record(&mut self, at_unix_us: u64, late_us: u64) {
        let Some(w) = at_unix_us
            .checked_sub(self.start_us)
            .map(|d| d / self.window_us)
        else {
            return;
        };
        if let Some(slot) = self.windows.get_mut(w as usize) {
            self.all.record(late_us);
            self.recent.record(late_us);
            slot.get_or_insert_with(LatencyHistogram::coarse)
                .record(late_us);
        }
    }

    /// The samples since the last call, for the next heartbeat.
    pub fn take_recent(&mut self) -> cmesh_common::live::LiveHistogram {
        std::mem::take(&mut self.recent)
    }

    /// What was sampled so far: over the run, and per window (windows without samples
    /// left out).
    pub fn snapshot(&self) -> (LatencyReport, Vec<WindowLatency>) {
        let all = LatencyReport {
            summary: self.all.summary(),
            negative_samples: 0,
            histogram: self.all.encode(),
            negative_histogram: None,
        };
        let windows = self
            .windows
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some(crate::metrics::window_row(i, h.as_ref()?, None)))
            .collect();
        (all, windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_go_to_their_windows_and_outside_ones_are_left_out() {
        let mut lag = Lag::new(1_000, 1_000, 3);
        lag.record(999_999, 7_000_000); // before the start
        lag.record(1_000_000, 100);
        lag.record(1_500_000, 300);
        lag.record(3_200_000, 60_000);
        lag.record(4_000_000, 9_000_000); // after the last window
        let (all, windows) = lag.snapshot();
        assert_eq!(all.summary.count, 3);
        assert!(all.summary.max_us >= 50_000 && all.summary.max_us < 1_000_000);
        assert_eq!(
            windows.len(),
            2,
            "the empty window is left out: {windows:?}"
        );
        assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), 3);
        assert!(LatencyHistogram::decode(&all.histogram).is_ok());
    }
}
