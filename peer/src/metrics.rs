//! What a peer measures, independent of the sync backend.

use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::{Resync, WindowLatency};
use std::collections::BTreeMap;

pub use cmesh_common::report::{window_ms, MAX_WINDOWS};

/// A local probe is ok when it finishes within this long of its scheduled time.
pub const PROBE_DEADLINE_MS: u64 = 100;

/// `total` in `parts` whole parts, as equal as can be, that add up to it.
pub fn split(total: u64, parts: usize) -> impl Iterator<Item = u64> {
    let n = parts.max(1) as u64;
    (0..n).map(move |k| total / n + u64::from(k < total % n))
}

/// One window's latency from one origin host: coarse histograms, made at the first
/// sample (and at the first negative one).
#[derive(Debug)]
struct WindowHist {
    latency: LatencyHistogram,
    /// Magnitudes of the negative samples (writer's clock ahead).
    negative: Option<LatencyHistogram>,
}

impl WindowHist {
    fn new() -> Self {
        WindowHist {
            latency: LatencyHistogram::coarse(),
            negative: None,
        }
    }

    fn record(&mut self, written_at_us: u64, now_us: u64) {
        match now_us.checked_sub(written_at_us) {
            Some(l) => self.latency.record(l),
            None => self
                .negative
                .get_or_insert_with(LatencyHistogram::coarse)
                .record(written_at_us - now_us),
        }
    }

    /// Negative samples count as 1 µs, as in the merged latency.
    fn merged_into(&self, out: &mut LatencyHistogram) {
        out.merge(&self.latency);
        if let Some(n) = &self.negative {
            out.record_n(1, n.count());
        }
    }
}

/// Latency by write-time window and deliveries by arrival window.
#[derive(Debug)]
struct Series {
    start_us: u64,
    window_us: u64,
    windows: usize,
    /// Per origin host (one list when the plan has a single host, or none known), per
    /// window.
    latency: Vec<Vec<Option<WindowHist>>>,
    received: Vec<u64>,
}

impl Series {
    fn window(&self, at_us: u64, len: usize) -> Option<usize> {
        let w = (at_us.checked_sub(self.start_us)? / self.window_us) as usize;
        // Late samples go in the last window rather than growing without bound.
        Some(w.min(len.saturating_sub(1)))
    }
}

/// A heal being watched: records written before it that arrive after it.
#[derive(Debug)]
struct Heal {
    cause: String,
    at_us: u64,
    last_arrival_us: Option<u64>,
    records: u64,
}

/// One window's row of a series: its percentiles and its histograms.
pub(crate) fn window_row(
    window: usize,
    h: &LatencyHistogram,
    negative: Option<&LatencyHistogram>,
) -> WindowLatency {
    let s = h.summary();
    WindowLatency {
        window: window as u32,
        count: s.count + negative.map_or(0, LatencyHistogram::count),
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        max_us: s.max_us,
        histogram: h.encode(),
        negative_histogram: negative.map(LatencyHistogram::encode),
    }
}

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
    series: Option<Series>,
    heals: Vec<Heal>,
    /// Latency since the heartbeat last took it ([`Metrics::take_live_latency`]).
    live_latency: cmesh_common::live::LiveHistogram,
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
            series: None,
            heals: Vec::new(),
            live_latency: Default::default(),
        }
    }

    /// Also keeps latency per window of write time, and deliveries per window of arrival
    /// time, from `start_unix_ms`: `windows` windows of `window_ms` (arrivals get as many
    /// again, for catch-up after the writing ends).
    pub fn with_windows(mut self, start_unix_ms: u64, window_ms: u64, windows: usize) -> Self {
        let windows = windows.max(1);
        self.series = Some(Series {
            start_us: start_unix_ms * 1000,
            window_us: window_ms.max(1) * 1000,
            windows,
            latency: Vec::new(),
            received: vec![0; windows * 2],
        });
        self
    }

    /// Connectivity comes back now (`at_us`): from here on, records written before it
    /// that arrive are what resync waits for.
    pub fn begin_resync(&mut self, cause: &str, at_us: u64) {
        self.heals.push(Heal {
            cause: cause.into(),
            at_us,
            last_arrival_us: None,
            records: 0,
        });
    }

    /// The resyncs after each heal; `caught_up` says whether every record arrived in the
    /// end (else the latency is unknown).
    pub fn resyncs(&self, caught_up: bool) -> Vec<Resync> {
        self.heals
            .iter()
            .map(|h| Resync {
                cause: h.cause.clone(),
                healed_at_unix_ms: h.at_us / 1000,
                latency_ms: caught_up
                    .then(|| h.last_arrival_us.map_or(0, |l| (l - h.at_us) / 1000)),
                records: h.records,
            })
            .collect()
    }

    /// Latency per write-time window, over all origins (windows without samples left
    /// out).
    pub fn window_latency(&self) -> Vec<WindowLatency> {
        let Some(series) = &self.series else {
            return Vec::new();
        };
        (0..series.windows)
            .filter_map(|w| {
                let mut merged: Option<LatencyHistogram> = None;
                for h in series.latency.iter().filter_map(|slot| slot[w].as_ref()) {
                    h.merged_into(merged.get_or_insert_with(LatencyHistogram::coarse));
                }
                merged.map(|h| window_row(w, &h, None))
            })
            .collect()
    }

    /// Latency per write-time window by origin host, negative samples kept apart;
    /// empty unless the plan spans hosts.
    pub fn window_latency_by_host(&self) -> BTreeMap<String, Vec<WindowLatency>> {
        let Some(series) = &self.series else {
            return BTreeMap::new();
        };
        if self.by_host.len() < 2 {
            return BTreeMap::new();
        }
        series
            .latency
            .iter()
            .enumerate()
            .map(|(slot, windows)| {
                let rows = windows
                    .iter()
                    .enumerate()
                    .filter_map(|(w, h)| {
                        let h = h.as_ref()?;
                        Some(window_row(w, &h.latency, h.negative.as_ref()))
                    })
                    .collect();
                (self.by_host[slot].host.clone(), rows)
            })
            .collect()
    }

    /// Records first received per arrival window, up to the last non-empty one.
    pub fn received_per_window(&self) -> Vec<u64> {
        let Some(series) = &self.series else {
            return Vec::new();
        };
        let end = series
            .received
            .iter()
            .rposition(|&n| n > 0)
            .map_or(0, |i| i + 1);
        series.received[..end].to_vec()
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
        for h in &mut self.heals {
            if written_at_us < h.at_us && now_us >= h.at_us {
                h.records += 1;
                h.last_arrival_us = h.last_arrival_us.max(Some(now_us));
            }
        }
        // Windows are split by origin host only when there is more than one.
        let slot = match self.by_host.len() {
            0 | 1 => 0,
            _ => self.origin_host.get(origin as usize).copied().unwrap_or(0),
        };
        if let Some(series) = &mut self.series {
            if let Some(w) = series.window(now_us, series.received.len()) {
                series.received[w] += 1;
            }
            if let Some(w) = series.window(written_at_us, series.windows) {
                let slots = self.by_host.len().max(1);
                if series.latency.len() < slots {
                    series
                        .latency
                        .resize_with(slots, || (0..series.windows).map(|_| None).collect());
                }
                series.latency[slot][w]
                    .get_or_insert_with(WindowHist::new)
                    .record(written_at_us, now_us);
            }
        }
        let by_host = self
            .origin_host
            .get(origin as usize)
            .map(|&h| &mut self.by_host[h]);
        match now_us.checked_sub(written_at_us) {
            Some(latency) => {
                self.latency.record(latency);
                self.live_latency.record(latency);
                if let Some(h) = by_host {
                    h.latency.record(latency);
                }
            }
            None => {
                self.negative += 1;
                self.latency.record(1);
                self.live_latency.record(1);
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

    /// The latency recorded since the last call, for the next heartbeat.
    pub fn take_live_latency(&mut self) -> cmesh_common::live::LiveHistogram {
        std::mem::take(&mut self.live_latency)
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
    fn windows_by_write_time_and_by_arrival() {
        assert_eq!(window_ms(30_000), 1_000);
        assert_eq!(window_ms(3_600_000), 12_000);
        // Windows of 1 s from t = 10 s.
        let mut m = Metrics::new(0, 2).with_windows(10_000, 1_000, 5);
        m.on_new_record(1, 10_100_000, 10_200_000); // written in 0, arrived in 0
        m.on_new_record(1, 11_500_000, 14_500_000); // written in 1, arrived in 4
        m.on_new_record(1, 11_600_000, 11_700_000); // written in 1, arrived in 1
        m.on_new_record(1, 99_000_000, 99_000_100); // late: the last windows
        let w = m.window_latency();
        assert_eq!(
            w.iter().map(|w| (w.window, w.count)).collect::<Vec<_>>(),
            vec![(0, 1), (1, 2), (4, 1)]
        );
        assert!((2_900_000..=3_100_000).contains(&w[1].max_us), "{:?}", w[1]);
        assert_eq!(m.received_per_window(), vec![1, 1, 0, 0, 1, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn resync_waits_for_records_written_before_the_heal() {
        let mut m = Metrics::new(0, 3);
        m.on_new_record(1, 1_000, 2_000); // before the heal: not part of it
        m.begin_resync("partition", 10_000_000);
        m.on_new_record(1, 5_000_000, 10_400_000); // written before, arrives 0.4 s after
        m.on_new_record(2, 9_000_000, 12_500_000); // written before, arrives 2.5 s after
        m.on_new_record(2, 10_100_000, 13_000_000); // written after: not part of it
        let r = m.resyncs(true);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].latency_ms, r[0].records, r[0].healed_at_unix_ms),
            (Some(2_500), 2, 10_000)
        );
        assert_eq!(m.resyncs(false)[0].latency_ms, None, "never caught up");
        let mut quiet = Metrics::new(0, 2);
        quiet.begin_resync("partition", 1_000);
        assert_eq!(
            quiet.resyncs(true)[0].latency_ms,
            Some(0),
            "nothing missing"
        );
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

    #[test]
    fn windows_split_by_origin_host_when_the_plan_spans_hosts() {
        let hosts = [Some("a".to_owned()), Some("b".to_owned())];
        let mut m = Metrics::new(0, 2)
            .with_origin_hosts(&hosts)
            .with_windows(0, 1_000, 3);
        m.on_new_record(1, 100_000, 300_000); // from b, window 0, 200 ms
        m.on_new_record(1, 1_500_000, 1_000_000); // from b, window 1, -500 ms
        let by = m.window_latency_by_host();
        assert_eq!(by.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(by["a"].is_empty());
        let b = &by["b"];
        assert_eq!(
            b.iter().map(|w| (w.window, w.count)).collect::<Vec<_>>(),
            [(0, 1), (1, 1)]
        );
        let neg = LatencyHistogram::decode(b[1].negative_histogram.as_ref().unwrap()).unwrap();
        assert!((450_000..=550_000).contains(&neg.summary().max_us));
        // The merged windows count the negative sample as 1 µs, as before.
        let merged = m.window_latency();
        assert_eq!(
            merged
                .iter()
                .map(|w| (w.window, w.count))
                .collect::<Vec<_>>(),
            [(0, 1), (1, 1)]
        );
        assert_eq!(merged[1].max_us, 1);
        // One host: no split.
        let one = Metrics::new(0, 2)
            .with_origin_hosts(&[Some("a".to_owned()), Some("a".to_owned())])
            .with_windows(0, 1_000, 3);
        assert!(one.window_latency_by_host().is_empty());
    }
}
