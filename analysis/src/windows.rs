//! The reports' per-window histograms, folded as the reports are read: latency per
//! window of write time, split by origin host where a report splits it, and scheduling
//! lag per window. A 1000-peer, 300-window run over 4 hosts carries 1.8 million of them
//! (about 450 KiB a report); held until the merge, they were most of analyze's memory.
//!
//! Folding before the clock model is known stays exact: a window's correction depends
//! only on its (origin host, reader host) pair and the window's middle, so every sample
//! under one key gets the same shift, and the raw samples of a key are merged first and
//! corrected once ([`crate::impairment`]). The middle depends on the series' start,
//! so the fold keeps one group per start; a report whose start turns out to be far from
//! the others' (invalid) takes its group with it ([`Windows::drop_start`]).

use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::PeerReport;
use std::collections::BTreeMap;

/// One window's raw samples and the magnitudes of its negative ones.
#[derive(Clone, Debug)]
pub struct Raw {
    pub hist: LatencyHistogram,
    pub negative: Option<LatencyHistogram>,
}

/// The windows of the reports whose series start at one time, with one window length.
#[derive(Clone, Debug, Default)]
pub struct Group {
    /// (origin host, reader host) → window → samples, from reports split by origin
    /// host that name their own host.
    pub by_pair: BTreeMap<(String, String), BTreeMap<u32, Raw>>,
    /// Window → samples of the same reports, unsplit: used instead of `by_pair` when
    /// there is no clock model to correct with.
    pub split_plain: BTreeMap<u32, LatencyHistogram>,
    /// Window → samples of the reports not split by origin host.
    pub plain: BTreeMap<u32, LatencyHistogram>,
}

/// Every report's windows, folded.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    /// (series start, window length) → its group.
    pub groups: BTreeMap<(u64, u64), Group>,
    /// (series start, host) → window → scheduling lag of the host's peers.
    pub lag: BTreeMap<(u64, String), BTreeMap<u32, LatencyHistogram>>,
}

impl Windows {
    /// Folds `r`'s windows (`lag_host`: the host its scheduling lag counts for).
    pub fn add(&mut self, r: &PeerReport, lag_host: &str) {
        let reader = r.host.as_ref();
        let Some(s) = r.time_series.as_ref() else {
            return;
        };
        let key = (s.start_unix_ms, s.window_ms);
        let decode = |text: &str| LatencyHistogram::decode(text).ok();
        let g = self.groups.entry(key).or_default();
        let split = reader.is_some() && !s.latency_by_origin_host.is_empty();
        if let (true, Some(reader)) = (split, reader) {
            for (origin, rows) in &s.latency_by_origin_host {
                // Looked up once per pair, not per window.
                let pair = g
                    .by_pair
                    .entry((origin.clone(), reader.clone()))
                    .or_default();
                for w in rows {
                    let Some(h) = decode(&w.histogram) else {
                        continue;
                    };
                    let neg = w.negative_histogram.as_deref().and_then(decode);
                    let raw = pair.entry(w.window).or_insert_with(|| Raw {
                        hist: LatencyHistogram::coarse(),
                        negative: None,
                    });
                    raw.hist.merge(&h);
                    if let Some(n) = neg {
                        raw.negative
                            .get_or_insert_with(LatencyHistogram::coarse)
                            .merge(&n);
                    }
                }
            }
        }
        let plain = if split {
            &mut g.split_plain
        } else {
            &mut g.plain
        };
        for w in &s.latency {
            if let Some(h) = decode(&w.histogram) {
                plain
                    .entry(w.window)
                    .or_insert_with(LatencyHistogram::coarse)
                    .merge(&h);
            }
        }
        if !s.scheduling_lag.is_empty() {
            let lag = self
                .lag
                .entry((s.start_unix_ms, lag_host.to_owned()))
                .or_default();
            for w in &s.scheduling_lag {
                if let Some(h) = decode(&w.histogram) {
                    lag.entry(w.window)
                        .or_insert_with(LatencyHistogram::coarse)
                        .merge(&h);
                }
            }
        }
    }

    /// Takes out of `r` the lists [`Windows::add`] folds: once folded, nothing reads
    /// them again, and they are most of a report's size.
    pub fn strip(r: &mut PeerReport) {
        if let Some(s) = r.time_series.as_mut() {
            s.latency = Vec::new();
            s.latency_by_origin_host = BTreeMap::new();
            s.scheduling_lag = Vec::new();
        }
    }

    /// The windows of `reports` (left as they are), the lag counted for each report's
    /// host in `host_of`, else its own, else `local`.
    pub fn of(reports: &BTreeMap<String, PeerReport>, hosts: &BTreeMap<String, String>) -> Windows {
        let mut w = Windows::default();
        for (name, r) in reports {
            w.add(r, &host_of(hosts, name, r));
        }
        w
    }

    /// Forgets the windows of series that start at `start`.
    pub fn drop_start(&mut self, start: u64) {
        self.groups.retain(|(s, _), _| *s != start);
        self.lag.retain(|(s, _), _| *s != start);
    }
}

/// The host a peer's evidence counts for: the manifest's, else the report's own, else
/// `local`.
pub fn host_of(manifest: &BTreeMap<String, String>, name: &str, r: &PeerReport) -> String {
    manifest
        .get(name)
        .or(r.host.as_ref())
        .cloned()
        .unwrap_or_else(|| "local".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::report::{TimeSeries, WindowLatency};

    fn window(i: u32, v: u64) -> WindowLatency {
        let mut h = LatencyHistogram::coarse();
        h.record(v);
        WindowLatency {
            window: i,
            count: 1,
            histogram: h.encode(),
            ..WindowLatency::default()
        }
    }

    fn report(host: &str, start: u64) -> PeerReport {
        let mut r = PeerReport::new("p", "mesh", 0);
        r.host = Some(host.into());
        r.time_series = Some(TimeSeries {
            start_unix_ms: start,
            window_ms: 1000,
            latency: vec![window(0, 400), window(1, 500)],
            latency_by_origin_host: BTreeMap::from([
                ("x".to_string(), vec![window(0, 400)]),
                ("y".to_string(), vec![window(1, 500)]),
            ]),
            scheduling_lag: vec![window(0, 60)],
            received: vec![1, 1],
            ..TimeSeries::default()
        });
        r
    }

    #[test]
    fn windows_fold_by_start_and_pair_and_strip_what_they_took() {
        let mut w = Windows::default();
        let mut a = report("x", 5_000);
        let mut b = report("y", 5_000);
        let mut far = report("x", 9_999_999);
        for (r, host) in [(&mut a, "x"), (&mut b, "y"), (&mut far, "x")] {
            w.add(r, host);
            Windows::strip(r);
        }
        let g = &w.groups[&(5_000, 1000)];
        assert_eq!(g.by_pair[&("x".into(), "x".into())][&0].hist.count(), 1);
        assert_eq!(g.by_pair[&("y".into(), "y".into())][&1].hist.count(), 1);
        assert_eq!(g.split_plain[&1].count(), 2);
        assert!(g.plain.is_empty(), "both reports are split");
        assert_eq!(w.lag[&(5_000, "y".into())][&0].count(), 1);
        let s = a.time_series.as_ref().unwrap();
        assert!(s.latency.is_empty() && s.latency_by_origin_host.is_empty());
        assert_eq!(s.received, [1, 1], "what is not folded stays");
        w.drop_start(9_999_999);
        assert_eq!(w.groups.len(), 1);
        assert!(w.lag.keys().all(|(s, _)| *s == 5_000));
    }
}
