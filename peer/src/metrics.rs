//! What a peer measures, independent of the sync backend.

use cmesh_common::histogram::LatencyHistogram;

/// Latency and delivery counts, fed by the backend as records arrive.
#[derive(Debug)]
pub struct Metrics {
    me: u32,
    latency: LatencyHistogram,
    negative: u64,
    received: Vec<u64>,
    duplicates: u64,
}

impl Metrics {
    /// Metrics for peer `me` in a plan of `origins` peers.
    pub fn new(me: u32, origins: usize) -> Self {
        Metrics {
            me,
            latency: LatencyHistogram::new(),
            negative: 0,
            received: vec![0; origins],
            duplicates: 0,
        }
    }

    /// A record from `origin`, written at `written_at_us`, arrived for the first time at
    /// `now_us` (both µs since the Unix epoch). Own records are not counted.
    pub fn on_new_record(&mut self, origin: u32, written_at_us: u64, now_us: u64) {
        if origin == self.me {
            return;
        }
        if let Some(count) = self.received.get_mut(origin as usize) {
            *count += 1;
        }
        match now_us.checked_sub(written_at_us) {
            Some(latency) => self.latency.record(latency),
            None => {
                self.negative += 1;
                self.latency.record(1);
            }
        }
    }

    /// A copy of a record already held arrived.
    pub fn on_duplicate(&mut self) {
        self.duplicates += 1;
    }

    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    pub fn negative_samples(&self) -> u64 {
        self.negative
    }

    /// Distinct records received per origin index.
    pub fn received(&self) -> &[u64] {
        &self.received
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_others_and_measures_latency() {
        let mut m = Metrics::new(0, 3);
        m.on_new_record(0, 100, 200);
        m.on_new_record(1, 1_000, 1_500);
        m.on_new_record(2, 1_000, 3_000);
        m.on_new_record(2, 5_000, 4_000);
        assert_eq!(m.received(), &[0, 1, 2]);
        assert_eq!(m.latency().count(), 3);
        assert_eq!(m.negative_samples(), 1);
        let s = m.latency().summary();
        assert_eq!(s.min_us, 1);
        assert!(s.max_us >= 2_000 && s.max_us < 2_010);
    }
}
