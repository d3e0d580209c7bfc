//! What a peer measures, independent of the sync backend.

use cmesh_common::histogram::LatencyHistogram;

/// Latency of records from one origin host.
#[derive(Debug)]
pub struct HostLatency {
    pub host: String,
    /// Non-negative samples.
    pub latency: LatencyHistogram,
    /// Magnitudes of the negative samples (writer's clock ahead of the reader's); made
    /// at the first one, as most runs have none.
    pub negative: Option<LatencyHistogram>,
}

/// Latency and delivery counts, fed by the backend as records arrive.
#[derive(Debug)]
pub struct Metrics {
    me: u32,
    latency: LatencyHistogram,
    negative: u64,
    received: Vec<u64>,
    duplicates: u64,
    /// Origin index → index into `by_host` (empty: hosts unknown).
    origin_host: Vec<usize>,
    /// Latency of records by the origin's Docker host.
    by_host: Vec<HostLatency>,
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
            origin_host: Vec::new(),
            by_host: Vec::new(),
        }
    }

    /// Also keeps latency by the origin's Docker host (`hosts[i]` is origin `i`'s), so
    /// analysis can correct each host pair for clock offsets. Unknown hosts count as "".
    pub fn with_origin_hosts(mut self, hosts: &[Option<String>]) -> Self {
        if hosts.iter().all(Option::is_none) {
            return self;
        }
        let mut names: Vec<String> = hosts
            .iter()
            .map(|h| h.clone().unwrap_or_default())
            .collect();
        names.sort();
        names.dedup();
        self.origin_host = hosts
            .iter()
            .map(|h| {
                let h = h.as_deref().unwrap_or_default();
                names.iter().position(|n| n == h).unwrap_or(0)
            })
            .collect();
        self.by_host = names
            .into_iter()
            .map(|host| HostLatency {
                host,
                latency: LatencyHistogram::new(),
                negative: None,
            })
            .collect();
        self
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
        let by_host = self
            .origin_host
            .get(origin as usize)
            .map(|&h| &mut self.by_host[h]);
        match now_us.checked_sub(written_at_us) {
            Some(latency) => {
                self.latency.record(latency);
                if let Some(h) = by_host {
                    h.latency.record(latency);
                }
            }
            None => {
                self.negative += 1;
                self.latency.record(1);
                if let Some(h) = by_host {
                    h.negative
                        .get_or_insert_with(LatencyHistogram::new)
                        .record(written_at_us - now_us);
                }
            }
        }
    }

    /// Latency by origin host, sorted by host.
    pub fn latency_by_host(&self) -> &[HostLatency] {
        &self.by_host
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
        assert!(m.latency_by_host().is_empty());
    }

    #[test]
    fn keeps_latency_by_origin_host() {
        let hosts = [
            Some("b".to_owned()),
            Some("a".to_owned()),
            Some("b".to_owned()),
        ];
        let mut m = Metrics::new(0, 3).with_origin_hosts(&hosts);
        m.on_new_record(1, 1_000, 1_100);
        m.on_new_record(2, 1_000, 1_300);
        m.on_new_record(2, 2_000, 1_000);
        let by = m.latency_by_host();
        assert_eq!(by.len(), 2);
        assert_eq!((by[0].host.as_str(), by[0].latency.count()), ("a", 1));
        assert_eq!((by[1].host.as_str(), by[1].latency.count()), ("b", 1));
        assert!(by[0].negative.is_none());
        let negative = by[1].negative.as_ref().unwrap();
        assert_eq!(negative.count(), 1);
        assert!((999..=1_001).contains(&negative.summary().max_us));
        assert_eq!(m.latency().count(), 3);
    }
}
