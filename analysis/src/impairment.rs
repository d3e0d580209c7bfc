//! What faults did to a run, merged from the peers' reports for `analyze`:
//!
//! - the fault timeline: each plan fault and `launcher chaos` action, when the peers
//!   applied and lifted it (offsets from the common start), how many peers, and errors;
//! - latency per time window (by the time records were written), merged exactly from
//!   the peers' per-window histograms, with deliveries and interface bytes per window;
//!   on a multi-host run each origin host's samples are first corrected for the clock
//!   offsets at the window's middle ([`crate::clock`]), and the window gives
//!   the uncertainty of its cross-host samples;
//! - resync latency after heals, over the peers;
//! - availability: the share of local probes that finished within their deadline.

use crate::clock::{self, ClockModel, Correction};
use crate::windows::Windows;
use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::PeerReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One fault of the run as the peers carried it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    /// `plan#N` (the plan's N-th fault) or `chaos#N` (the run's N-th chaos action).
    pub id: String,
    pub action: String,
    /// Peers that carried it out (or were acted on).
    pub peers: usize,
    /// Earliest application, ms after the common start.
    pub applied_at_ms: Option<i64>,
    /// Latest lift, ms after the common start.
    pub lifted_at_ms: Option<i64>,
    /// `nfqueue`, `iptables`, `docker`, …
    pub paths: Vec<String>,
    pub errors: usize,
}

/// One time window, merged over the peers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// Start of the window, ms after the common start.
    pub start_ms: u64,
    /// Records written in this window and received (by anyone), and their latency.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The largest uncertainty of the clock corrections of this window's cross-host
    /// samples, µs (absent: none, or not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_us: Option<u64>,
    /// Records first received in this window (by arrival time).
    pub received: u64,
    /// Bytes received and sent by all peers' interfaces in this window.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Resync latency over the peers that measured one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResyncSummary {
    /// Heals measured (one per peer per heal).
    pub heals: usize,
    /// Peers with at least one heal.
    pub peers: usize,
    /// Heals after which the peer never caught up.
    pub unfinished: usize,
    pub p50_ms: u64,
    pub max_ms: u64,
}

/// Local probes over all peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AvailabilitySummary {
    pub probes: u64,
    pub ok: u64,
    /// `ok / probes`.
    pub ratio: f64,
    pub deadline_ms: u64,
}

/// The impairment part of the run summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Impairment {
    /// The common start the offsets count from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_unix_ms: Option<u64>,
    #[serde(default)]
    pub window_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultRow>,
    #[serde(default, rename = "time_series", skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowRow>,
    /// True when the windows' cross-host samples were corrected for clock offsets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub time_series_clock_corrected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<ResyncSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<AvailabilitySummary>,
}

/// Something done to the run from outside the peers (`launcher chaos` through the Docker
/// API), from the coordinator's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalAction {
    pub id: String,
    pub action: String,
    pub peers: usize,
    pub at_unix_ms: u64,
    pub until_unix_ms: Option<u64>,
}

/// Merges the reports' fault records, time series, resyncs and probes; their window
/// histograms come folded in `folded` (the reports may have had them taken out).
pub fn merge(
    reports: &BTreeMap<String, PeerReport>,
    folded: &Windows,
    external: &[ExternalAction],
    clock: Option<&ClockModel>,
) -> Impairment {
    let series: Vec<_> = reports
        .values()
        .filter_map(|r| r.time_series.as_ref())
        .collect();
    let start = series.iter().map(|s| s.start_unix_ms).min();
    let window_ms = series.first().map_or(1000, |s| s.window_ms);
    let offset = |t: u64| start.map(|s| t as i64 - s as i64);

    // Fault timeline.
    let mut rows: BTreeMap<String, FaultRow> = BTreeMap::new();
    for f in reports.values().flat_map(|r| &r.faults) {
        let row = rows.entry(f.id.clone()).or_insert_with(|| FaultRow {
            id: f.id.clone(),
            action: f.action.clone(),
            peers: 0,
            applied_at_ms: None,
            lifted_at_ms: None,
            paths: Vec::new(),
            errors: 0,
        });
        row.peers += 1;
        if let Some(t) = f.applied_at_unix_ms.and_then(offset) {
            row.applied_at_ms = Some(row.applied_at_ms.map_or(t, |a| a.min(t)));
        }
        if let Some(t) = f.lifted_at_unix_ms.and_then(offset) {
            row.lifted_at_ms = Some(row.lifted_at_ms.map_or(t, |a| a.max(t)));
        }
        if let Some(p) = &f.path {
            if !row.paths.contains(p) {
                row.paths.push(p.clone());
            }
        }
        row.errors += usize::from(f.error.is_some());
    }
    for a in external {
        rows.insert(
            a.id.clone(),
            FaultRow {
                id: a.id.clone(),
                action: a.action.clone(),
                peers: a.peers,
                applied_at_ms: offset(a.at_unix_ms),
                lifted_at_ms: a.until_unix_ms.and_then(offset),
                paths: vec!["docker".into()],
                errors: 0,
            },
        );
    }
    let mut faults: Vec<FaultRow> = rows.into_values().collect();
    faults.sort_by_key(|f| (f.applied_at_ms.unwrap_or(i64::MAX), f.id.clone()));

    // Windows: latency by index, arrivals and interface bytes by position.
    let mut hists: BTreeMap<u32, LatencyHistogram> = BTreeMap::new();
    let mut uncertainty: BTreeMap<u32, u64> = BTreeMap::new();
    let mut corrected = false;
    let mut windows: Vec<WindowRow> = Vec::new();
    let grow = |windows: &mut Vec<WindowRow>, len: usize| {
        while windows.len() < len {
            let start_ms = windows.len() as u64 * window_ms;
            windows.push(WindowRow {
                start_ms,
                ..WindowRow::default()
            });
        }
    };
    for (&(g_start, g_window), g) in &folded.groups {
        if g_window != window_ms {
            continue;
        }
        // A group whose start differs (it should not) is shifted to the common start.
        let shift = (g_start.saturating_sub(start.unwrap_or(0)) / window_ms) as u32;
        let mut add = |at: u32, h: &LatencyHistogram| {
            hists
                .entry(at + shift)
                .or_insert_with(LatencyHistogram::coarse)
                .merge(h);
        };
        match clock {
            Some(m) if !g.by_pair.is_empty() => {
                corrected = true;
                for ((origin, reader), w, raw) in g
                    .by_pair
                    .iter()
                    .flat_map(|(pair, ws)| ws.iter().map(move |(w, raw)| (pair, w, raw)))
                {
                    let middle = g_start + u64::from(*w) * window_ms + window_ms / 2;
                    let c = m.correction(origin, reader, middle).unwrap_or(Correction {
                        shift_us: 0,
                        uncertainty_us: None,
                    });
                    if origin != reader {
                        if let Some(u) = c.uncertainty_us {
                            let e = uncertainty.entry(w + shift).or_default();
                            *e = (*e).max(u);
                        }
                    }
                    add(*w, &clock::shift(&raw.hist, raw.negative.as_ref(), c).hist);
                }
            }
            _ => {
                for (w, h) in &g.split_plain {
                    add(*w, h);
                }
            }
        }
        for (w, h) in &g.plain {
            add(*w, h);
        }
    }
    for s in reports
        .values()
        .filter_map(|r| r.time_series.as_ref())
        .filter(|s| s.window_ms == window_ms)
    {
        let shift = ((s.start_unix_ms - start.unwrap_or(0)) / window_ms) as usize;
        grow(&mut windows, shift + s.received.len());
        for (i, n) in s.received.iter().enumerate() {
            windows[shift + i].received += n;
        }
        for iface in s.interfaces.values() {
            grow(&mut windows, shift + iface.rx_bytes.len());
            for (i, (rx, tx)) in iface.rx_bytes.iter().zip(&iface.tx_bytes).enumerate() {
                windows[shift + i].rx_bytes += rx;
                windows[shift + i].tx_bytes += tx;
            }
        }
    }
    if let Some(&last) = hists.keys().next_back() {
        grow(&mut windows, last as usize + 1);
    }
    for (w, h) in &hists {
        let s = h.summary();
        let row = &mut windows[*w as usize];
        (row.count, row.p50_us, row.p99_us, row.max_us) = (s.count, s.p50_us, s.p99_us, s.max_us);
        row.uncertainty_us = uncertainty.get(w).copied();
    }

    // Resync.
    let heals: Vec<_> = reports.values().flat_map(|r| &r.resync).collect();
    let resync = (!heals.is_empty()).then(|| {
        let mut done: Vec<u64> = heals.iter().filter_map(|h| h.latency_ms).collect();
        done.sort_unstable();
        ResyncSummary {
            heals: heals.len(),
            peers: reports.values().filter(|r| !r.resync.is_empty()).count(),
            unfinished: heals.len() - done.len(),
            p50_ms: done
                .get(done.len().saturating_sub(1) / 2)
                .copied()
                .unwrap_or(0),
            max_ms: done.last().copied().unwrap_or(0),
        }
    });

    // Availability.
    let probes: Vec<_> = reports
        .values()
        .filter_map(|r| r.availability.as_ref())
        .collect();
    let availability = (!probes.is_empty()).then(|| {
        let total: u64 = probes.iter().map(|a| a.write_probes + a.read_probes).sum();
        let ok: u64 = probes.iter().map(|a| a.write_ok + a.read_ok).sum();
        AvailabilitySummary {
            probes: total,
            ok,
            ratio: if total == 0 {
                1.0
            } else {
                ok as f64 / total as f64
            },
            deadline_ms: probes.iter().map(|a| a.deadline_ms).max().unwrap_or(0),
        }
    });

    Impairment {
        start_unix_ms: start,
        window_ms,
        faults,
        windows,
        time_series_clock_corrected: corrected,
        resync,
        availability,
    }
}

fn secs(ms: Option<i64>) -> String {
    ms.map(|m| format!("{:.1} s", m as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// The impairment sections of `summary.md`.
pub fn to_markdown(i: &Impairment) -> String {
    use crate::table::markdown;
    let mut out = String::new();
    if !i.faults.is_empty() {
        out.push_str("\n## Faults\n\nTimes are from the common start.\n\n");
        let rows: Vec<Vec<String>> = i
            .faults
            .iter()
            .map(|f| {
                vec![
                    f.id.clone(),
                    f.action.clone(),
                    f.peers.to_string(),
                    secs(f.applied_at_ms),
                    secs(f.lifted_at_ms),
                    f.paths.join(", "),
                    f.errors.to_string(),
                ]
            })
            .collect();
        out.push_str(&markdown(
            [
                "fault", "action", "peers", "applied", "lifted", "how", "errors",
            ],
            &rows,
        ));
    }
    if let Some(r) = &i.resync {
        out.push_str("\n## Resync after heals\n\n");
        out.push_str(&markdown(
            ["heals", "peers", "p50", "max", "never caught up"],
            &[vec![
                r.heals.to_string(),
                r.peers.to_string(),
                format!("{} ms", r.p50_ms),
                format!("{} ms", r.max_ms),
                r.unfinished.to_string(),
            ]],
        ));
    }
    if let Some(a) = &i.availability {
        out.push_str(&format!(
            "\n## Availability\n\n{:.4} of {} local write and read probes finished within {} ms.\n",
            a.ratio, a.probes, a.deadline_ms
        ));
    }
    if !i.windows.is_empty() {
        out.push_str(&format!(
            "\n## Over time ({} s windows)\n\nLatency is by the window a record was written in; received and bytes by when they happened.{}\n\n",
            i.window_ms as f64 / 1000.0,
            if i.time_series_clock_corrected {
                " Cross-host samples are corrected for clock offsets at each window's middle; ± is the largest uncertainty of those corrections."
            } else {
                ""
            }
        ));
        let with_u = i.windows.iter().any(|w| w.uncertainty_us.is_some());
        let rows: Vec<Vec<String>> = i
            .windows
            .iter()
            .map(|w| {
                let mut row = vec![
                    format!("{:.0} s", w.start_ms as f64 / 1000.0),
                    w.count.to_string(),
                    ms(w.p50_us),
                    ms(w.p99_us),
                    ms(w.max_us),
                ];
                if with_u {
                    row.push(
                        w.uncertainty_us
                            .map_or_else(String::new, |u| format!("± {:.3}", u as f64 / 1000.0)),
                    );
                }
                row.extend([
                    w.received.to_string(),
                    format!("{:.1}", w.rx_bytes as f64 / 1024.0),
                    format!("{:.1}", w.tx_bytes as f64 / 1024.0),
                ]);
                row
            })
            .collect();
        let mut header = vec!["from", "written→received", "p50 ms", "p99 ms", "max ms"];
        if with_u {
            header.push("± ms");
        }
        header.extend(["received", "KiB in", "KiB out"]);
        out.push_str(&markdown(header, &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::report::{
        AppliedFault, Availability, InterfaceSeries, Resync, TimeSeries, WindowLatency,
    };

    /// [`merge`] of whole reports, without clock offsets.
    fn merged(reports: &BTreeMap<String, PeerReport>, external: &[ExternalAction]) -> Impairment {
        merge(
            reports,
            &Windows::of(reports, &BTreeMap::new()),
            external,
            None,
        )
    }

    fn window(i: u32, latencies: &[u64]) -> WindowLatency {
        let mut h = LatencyHistogram::coarse();
        for &l in latencies {
            h.record(l);
        }
        WindowLatency {
            window: i,
            count: h.count(),
            histogram: h.encode(),
            ..WindowLatency::default()
        }
    }

    fn report(name: &str, healed: Option<Option<u64>>) -> PeerReport {
        let mut r = PeerReport::new(name, "mesh", 0);
        r.faults = vec![AppliedFault {
            id: "plan#1".into(),
            action: "partition".into(),
            path: Some("iptables".into()),
            applied_at_unix_ms: Some(10_000 + 8_000 + name.len() as u64),
            lifted_at_unix_ms: Some(10_000 + 18_000),
            error: None,
        }];
        r.resync = healed
            .map(|latency_ms| Resync {
                cause: "partition".into(),
                healed_at_unix_ms: 28_000,
                latency_ms,
                records: 3,
            })
            .into_iter()
            .collect();
        r.time_series = Some(TimeSeries {
            start_unix_ms: 10_000,
            window_ms: 1_000,
            latency: vec![window(0, &[1_000, 2_000]), window(2, &[9_000_000])],
            received: vec![2, 0, 0, 1],
            latency_by_origin_host: BTreeMap::new(),
            scheduling_lag: Vec::new(),
            cpu: None,
            interfaces: BTreeMap::from([(
                "eth0".to_owned(),
                InterfaceSeries {
                    rx_bytes: vec![100, 200],
                    tx_bytes: vec![10, 20],
                },
            )]),
        });
        r.availability = Some(Availability {
            deadline_ms: 100,
            write_probes: 10,
            write_ok: 9,
            read_probes: 10,
            read_ok: 10,
        });
        r
    }

    #[test]
    fn merges_windows_faults_resync_and_probes() {
        let reports = BTreeMap::from([
            ("a".to_owned(), report("a", Some(Some(400)))),
            ("bb".to_owned(), report("bb", Some(Some(1_200)))),
            ("ccc".to_owned(), report("ccc", Some(None))),
        ]);
        let chaos = [ExternalAction {
            id: "chaos#1".into(),
            action: "kill".into(),
            peers: 2,
            at_unix_ms: 35_000,
            until_unix_ms: None,
        }];
        let i = merged(&reports, &chaos);
        assert_eq!(i.start_unix_ms, Some(10_000));
        assert_eq!(i.faults.len(), 2);
        let f = &i.faults[0];
        assert_eq!((f.id.as_str(), f.peers), ("plan#1", 3));
        assert_eq!(
            (f.applied_at_ms, f.lifted_at_ms),
            (Some(8_001), Some(18_000))
        );
        assert_eq!(f.paths, vec!["iptables"]);
        assert_eq!(
            (i.faults[1].id.as_str(), i.faults[1].applied_at_ms),
            ("chaos#1", Some(25_000))
        );
        assert_eq!(i.windows.len(), 4);
        assert_eq!(i.windows[0].count, 6);
        assert_eq!(i.windows[1].count, 0);
        assert!(i.windows[2].p50_us > 8_000_000, "{:?}", i.windows[2]);
        assert_eq!(i.windows[3].received, 3);
        assert_eq!((i.windows[1].rx_bytes, i.windows[1].tx_bytes), (600, 60));
        let r = i.resync.as_ref().unwrap();
        assert_eq!((r.heals, r.peers, r.unfinished), (3, 3, 1));
        assert_eq!((r.p50_ms, r.max_ms), (400, 1_200));
        let a = i.availability.as_ref().unwrap();
        assert_eq!((a.probes, a.ok), (60, 57));
        let md = to_markdown(&i);
        for part in [
            "## Faults",
            "| plan#1 | partition | 3 | 8.0 s | 18.0 s | iptables | 0 |",
            "| chaos#1 | kill | 2 | 25.0 s | - | docker |",
            "## Resync after heals",
            "## Availability",
            "## Over time",
        ] {
            assert!(crate::table::squash(&md).contains(part), "{part} in\n{md}");
        }
    }

    #[test]
    fn a_run_without_series_or_faults_adds_nothing() {
        let reports = BTreeMap::from([("a".to_owned(), PeerReport::new("a", "mesh", 0))]);
        let i = merged(&reports, &[]);
        assert!(i.faults.is_empty() && i.windows.is_empty());
        assert!(i.resync.is_none() && i.availability.is_none());
        assert_eq!(to_markdown(&i), "");
    }
}
