//! Clock offsets between hosts, and correcting latency with them.
//!
//! A record's latency is the reader's clock at arrival minus the writer's clock at write.
//! Across hosts that includes the difference of their clocks: `measured = true +
//! offset(reader) - offset(writer)`.
//!
//! The offsets come in-band: every peer measures its clock against the coordinator's at
//! the start and at the end of its run (NTP-style exchanges, each an interval that must
//! hold the true offset; see [`cmesh_common::clock`]). The peers of one host share its
//! clock, so [`ClockModel::from_reports`] combines their intervals the same way (the
//! interval most of them agree on), at the start and at the end. When the two intervals
//! overlap, the offset did not drift beyond what can be measured, and their overlap
//! bounds it for the whole run; when they are apart, it drifted, along the line through
//! their middles, good to the wider of the two. (Taking a drift from two overlapping
//! intervals would turn one slow exchange, a peer starved of CPU for a second, into a
//! drift of thousands of ppm.) `analyze` subtracts
//! `offset(reader) - offset(origin)` from every sample: per host pair at the middle of
//! the run, and per time window at the window's middle. Peers on the same host get no
//! correction at all. A corrected sample below zero is counted, and one below minus the
//! pair's uncertainty means the offsets are wrong; summary.md says so.
//!
//! The older estimate stays as a cross-check: at spawn, the launcher reads each engine's
//! `SystemTime` in `GET /info` (the sample with the shortest round trip of several, at
//! its midpoint) and stores it in the manifest. Over SSH its error is about half a
//! round trip of the tunnel (2.5 ms was seen in a lab whose true offset is 0), so it is
//! used for correction only when the reports carry no in-band estimate.

use cmesh_common::clock::{agree, ClockEstimate, Interval};
use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::PeerReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a run's clock offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// The peers' exchanges with the coordinator, combined per host.
    InBand,
    /// The engines' `SystemTime` read by the launcher at spawn (no stated uncertainty).
    EngineInfo,
}

/// One host's clock against the reference (the coordinator's, or for
/// [`ClockSource::EngineInfo`] the launcher's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostClock {
    pub host: String,
    /// Host clock minus reference, µs, at the start of the run.
    pub offset_us: i64,
    /// The true offset is within this many µs (in-band only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_us: Option<u64>,
    /// How fast the offset changed from the start to the end of the run, µs per s;
    /// absent when the two estimates overlap (no drift beyond their uncertainty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_ppm: Option<f64>,
    /// Peers whose estimates were combined, and how many agree on the interval kept.
    pub peers: usize,
    pub agreeing: usize,
    /// The engine-`/info` estimate, relative to the coordinator's host (a cross-check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_info_offset_us: Option<i64>,
}

/// A host's offset over the run.
#[derive(Clone, Debug, PartialEq)]
enum HostLine {
    /// No drift beyond the uncertainty: the start and end intervals overlap (and their
    /// overlap holds the offset), or there is one estimate.
    Constant(Interval),
    /// The end's interval is apart from the start's: the offset drifted, along the line
    /// through their middles.
    Drifting {
        start_ms: u64,
        start: Interval,
        end_ms: u64,
        end: Interval,
    },
}

impl HostLine {
    fn of(start_ms: u64, start: Interval, end: Option<(u64, Interval)>) -> HostLine {
        match end {
            Some((end_ms, end)) if end_ms > start_ms => match agree(&[start, end]) {
                Some((both, 2)) => HostLine::Constant(both),
                _ => HostLine::Drifting {
                    start_ms,
                    start,
                    end_ms,
                    end,
                },
            },
            _ => HostLine::Constant(start),
        }
    }

    /// Offset and uncertainty at `t_ms` (held at the ends outside them).
    fn at(&self, t_ms: u64) -> (i64, u64) {
        match *self {
            HostLine::Constant(i) => (i.offset_us(), i.uncertainty_us()),
            HostLine::Drifting {
                start_ms,
                start,
                end_ms,
                end,
            } => {
                let f =
                    (t_ms.clamp(start_ms, end_ms) - start_ms) as f64 / (end_ms - start_ms) as f64;
                let (a, b) = (start.offset_us() as f64, end.offset_us() as f64);
                (
                    (a + (b - a) * f).round() as i64,
                    start.uncertainty_us().max(end.uncertainty_us()),
                )
            }
        }
    }

    /// The drift, when there is one beyond the uncertainty.
    fn drift_ppm(&self) -> Option<f64> {
        match *self {
            HostLine::Constant(_) => None,
            HostLine::Drifting {
                start_ms,
                start,
                end_ms,
                end,
            } => Some(
                (end.offset_us() - start.offset_us()) as f64
                    / ((end_ms - start_ms) as f64 / 1000.0),
            ),
        }
    }
}

/// Every host's clock in a run, for correcting latency.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockModel {
    pub source: ClockSource,
    lines: BTreeMap<String, HostLine>,
    pub hosts: Vec<HostClock>,
}

/// A correction for one (origin host, reader host) pair at one time: subtract
/// `shift_us`; good to `uncertainty_us` (when known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Correction {
    pub shift_us: i64,
    pub uncertainty_us: Option<u64>,
}

impl ClockModel {
    /// The in-band model: per host, the interval its peers' estimates agree on, at the
    /// start and at the end. `None` if no report has an estimate.
    pub fn from_reports(reports: &BTreeMap<String, PeerReport>) -> Option<ClockModel> {
        type Series<'a> = (Vec<&'a ClockEstimate>, Vec<&'a ClockEstimate>);
        let mut by_host: BTreeMap<&str, Series> = BTreeMap::new();
        for r in reports.values() {
            let (Some(host), Some(sync)) = (r.host.as_deref(), r.clock_sync.as_ref()) else {
                continue;
            };
            let e = by_host.entry(host).or_default();
            e.0.push(&sync.start);
            e.1.extend(sync.end.as_ref());
        }
        if by_host.is_empty() {
            return None;
        }
        let combine = |list: &[&ClockEstimate]| -> Option<(u64, Interval, usize)> {
            let intervals: Vec<Interval> = list.iter().map(|e| e.interval()).collect();
            let (best, n) = agree(&intervals)?;
            let mut at: Vec<u64> = list.iter().map(|e| e.at_unix_ms).collect();
            at.sort_unstable();
            Some((at[at.len() / 2], best, n))
        };
        let mut lines = BTreeMap::new();
        let mut hosts = Vec::new();
        for (host, (starts, ends)) in by_host {
            let Some((start_ms, start, agreeing)) = combine(&starts) else {
                continue;
            };
            let line = HostLine::of(start_ms, start, combine(&ends).map(|(at, i, _)| (at, i)));
            let (offset_us, uncertainty_us) = line.at(start_ms);
            hosts.push(HostClock {
                host: host.to_owned(),
                offset_us,
                uncertainty_us: Some(uncertainty_us),
                drift_ppm: line.drift_ppm(),
                peers: starts.len(),
                agreeing,
                engine_info_offset_us: None,
            });
            lines.insert(host.to_owned(), line);
        }
        Some(ClockModel {
            source: ClockSource::InBand,
            lines,
            hosts,
        })
    }

    /// The spawn-time model from the manifest's engine-`/info` offsets (ms), constant,
    /// without uncertainty. `None` when there are none.
    pub fn from_engine_info(offsets_ms: &BTreeMap<String, f64>) -> Option<ClockModel> {
        if offsets_ms.is_empty() {
            return None;
        }
        let mut lines = BTreeMap::new();
        let mut hosts = Vec::new();
        for (host, ms) in offsets_ms {
            let us = (ms * 1000.0).round() as i64;
            lines.insert(host.clone(), HostLine::Constant(Interval::around(us, 0)));
            hosts.push(HostClock {
                host: host.clone(),
                offset_us: us,
                uncertainty_us: None,
                drift_ppm: None,
                peers: 0,
                agreeing: 0,
                engine_info_offset_us: Some(us),
            });
        }
        Some(ClockModel {
            source: ClockSource::EngineInfo,
            lines,
            hosts,
        })
    }

    /// Notes the engine-`/info` offsets beside the in-band ones, made relative to
    /// `reference_host` (the coordinator's), as the in-band ones are.
    pub fn cross_check(&mut self, offsets_ms: &BTreeMap<String, f64>, reference_host: &str) {
        let base = offsets_ms.get(reference_host).copied().unwrap_or(0.0);
        for h in &mut self.hosts {
            h.engine_info_offset_us = offsets_ms
                .get(&h.host)
                .map(|ms| ((ms - base) * 1000.0).round() as i64);
        }
    }

    /// The correction for records written on `origin` and read on `reader` around
    /// `t_ms`: none for the same host (one clock), `None` when a host is unknown.
    pub fn correction(&self, origin: &str, reader: &str, t_ms: u64) -> Option<Correction> {
        if origin == reader {
            return Some(Correction {
                shift_us: 0,
                uncertainty_us: Some(0),
            });
        }
        let (o, ou) = self.lines.get(origin)?.at(t_ms);
        let (r, ru) = self.lines.get(reader)?.at(t_ms);
        Some(Correction {
            shift_us: r - o,
            uncertainty_us: (self.source == ClockSource::InBand).then_some(ou + ru),
        })
    }

    /// How far the offsets of `origin` and `reader` drift apart over `span_ms`, µs: what
    /// a single correction over that span may be off by, beyond the uncertainty.
    pub fn drift_error_us(&self, origin: &str, reader: &str, span_ms: u64) -> u64 {
        let ppm = |h: &str| {
            self.lines
                .get(h)
                .and_then(HostLine::drift_ppm)
                .unwrap_or(0.0)
        };
        ((ppm(reader) - ppm(origin)).abs() * span_ms as f64 / 1000.0).ceil() as u64
    }
}

/// A histogram after correction, with the samples the correction made negative.
#[derive(Debug, Default)]
pub struct Shifted {
    /// Corrected samples; those below 1 µs count as 1 µs.
    pub hist: LatencyHistogram,
    /// Corrected samples below 0, and below minus the correction's uncertainty.
    pub negative: u64,
    pub beyond_uncertainty: u64,
}

/// Corrects a host pair's samples: every positive sample `v` of `hist` and every
/// negative one `-m` (`m` in `negative`) becomes `v - c.shift_us` (or `-m - c.shift_us`);
/// results below 1 µs become 1 µs, and are counted.
pub fn shift(
    hist: &LatencyHistogram,
    negative: Option<&LatencyHistogram>,
    c: Correction,
) -> Shifted {
    let mut out = Shifted {
        hist: hist.empty_like(),
        negative: 0,
        beyond_uncertainty: 0,
    };
    let signed = hist
        .recorded()
        .into_iter()
        .map(|(v, c)| (v as i64, c))
        .chain(
            negative
                .map(LatencyHistogram::recorded)
                .unwrap_or_default()
                .into_iter()
                .map(|(m, c)| (-(m as i64), c)),
        );
    for (value, count) in signed {
        let v = value.saturating_sub(c.shift_us);
        if v < 0 {
            out.negative += count;
            if c.uncertainty_us.is_some_and(|u| v.unsigned_abs() > u) {
                out.beyond_uncertainty += count;
            }
        }
        out.hist.record_n(v.max(1) as u64, count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(shift_us: i64) -> Correction {
        Correction {
            shift_us,
            uncertainty_us: Some(100),
        }
    }

    #[test]
    fn shifting_corrects_a_histogram_and_counts_what_turns_negative() {
        let mut h = LatencyHistogram::new();
        h.record(10_000);
        h.record(20_000);
        h.record(500);
        let s = shift(&h, None, by(5_000));
        assert_eq!(s.hist.count(), 3);
        assert_eq!(s.hist.summary().min_us, 1, "500 - 5000 clamps to 1");
        assert_eq!((s.negative, s.beyond_uncertainty), (1, 1));
        let max = s.hist.summary().max_us;
        assert!((14_990..=15_020).contains(&max), "{max}");
        let back = shift(&h, None, by(-1_000));
        assert!(back.hist.summary().min_us >= 1_499);
        assert_eq!(back.negative, 0);
        // A sample of -4 ms (writer 5 ms ahead), corrected by -5 ms, is 1 ms.
        let mut neg = LatencyHistogram::new();
        neg.record(4_000);
        let fixed = shift(&LatencyHistogram::new(), Some(&neg), by(-5_000));
        assert_eq!(fixed.hist.count(), 1);
        assert!((995..=1_005).contains(&fixed.hist.summary().max_us));
        // Within the uncertainty: negative, but not beyond.
        let mut small = LatencyHistogram::new();
        small.record(950);
        let s = shift(&small, None, by(1_000));
        assert_eq!((s.negative, s.beyond_uncertainty), (1, 0));
    }

    fn report(host: &str, start: (u64, i64, u64), end: Option<(u64, i64, u64)>) -> PeerReport {
        let est = |(at, off, u): (u64, i64, u64)| ClockEstimate {
            at_unix_ms: at,
            clock_offset_us: off,
            clock_uncertainty_us: u,
            samples: 32,
            agreeing: 32,
            min_rtt_us: 2 * u,
        };
        let mut r = PeerReport::new("p", "mesh", 0);
        r.host = Some(host.into());
        r.clock_sync = Some(cmesh_common::clock::ClockSync {
            start: est(start),
            end: end.map(est),
        });
        r
    }

    #[test]
    fn a_hosts_peers_are_combined_and_drift_is_interpolated() {
        let reports = BTreeMap::from([
            // Host a: 1 ms ahead, two peers whose intervals intersect in [950, 1050].
            ("a1".to_string(), report("a", (1_000, 1_000, 100), None)),
            ("a2".to_string(), report("a", (1_000, 950, 100), None)),
            // Host b: 0 at the start, +10 ms 10 s later (1000 ppm).
            (
                "b1".to_string(),
                report("b", (1_000, 0, 20), Some((11_000, 10_000, 40))),
            ),
        ]);
        let m = ClockModel::from_reports(&reports).unwrap();
        assert_eq!(m.source, ClockSource::InBand);
        let a = &m.hosts[0];
        assert_eq!(
            (a.host.as_str(), a.offset_us, a.uncertainty_us),
            ("a", 975, Some(75))
        );
        assert_eq!((a.peers, a.agreeing), (2, 2));
        assert_eq!(a.drift_ppm, None, "one estimate: no drift");
        let b = &m.hosts[1];
        assert_eq!(b.drift_ppm, Some(1_000.0));
        // Read on b, written on a, halfway: b is +5 ms, a +0.975 ms.
        let c = m.correction("a", "b", 6_000).unwrap();
        assert_eq!(c.shift_us, 5_000 - 975);
        assert_eq!(c.uncertainty_us, Some(75 + 40));
        assert_eq!(m.correction("a", "a", 6_000).unwrap().shift_us, 0);
        assert!(m.correction("a", "z", 0).is_none());
        assert_eq!(m.drift_error_us("a", "b", 2_000), 2_000);
        let mut m = m;
        m.cross_check(&BTreeMap::from([("a".into(), 3.0), ("b".into(), 1.0)]), "b");
        assert_eq!(m.hosts[0].engine_info_offset_us, Some(2_000));
    }

    #[test]
    fn overlapping_start_and_end_mean_no_drift_and_a_tighter_bound() {
        // A starved peer's end estimate: +720 ms ± 821 ms. It holds the start's interval,
        // so it is no evidence of drift; the overlap is the start's interval.
        let reports = BTreeMap::from([(
            "c1".to_string(),
            report("c", (1_000, -39, 300), Some((21_000, 720_000, 821_000))),
        )]);
        let m = ClockModel::from_reports(&reports).unwrap();
        let c = &m.hosts[0];
        assert_eq!(
            (c.offset_us, c.uncertainty_us, c.drift_ppm),
            (-39, Some(300), None)
        );
        // Two overlapping estimates narrow it down.
        let reports = BTreeMap::from([(
            "c1".to_string(),
            report("c", (1_000, 0, 100), Some((21_000, 150, 100))),
        )]);
        let c = &ClockModel::from_reports(&reports).unwrap().hosts[0];
        assert_eq!(
            (c.offset_us, c.uncertainty_us, c.drift_ppm),
            (75, Some(25), None)
        );
    }

    #[test]
    fn engine_info_offsets_are_the_fallback_without_uncertainty() {
        assert!(ClockModel::from_reports(&BTreeMap::new()).is_none());
        let m =
            ClockModel::from_engine_info(&BTreeMap::from([("x".into(), 10.0), ("y".into(), 15.0)]))
                .unwrap();
        let c = m.correction("x", "y", 0).unwrap();
        assert_eq!((c.shift_us, c.uncertainty_us), (5_000, None));
    }
}
