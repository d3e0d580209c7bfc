//! The merge: every peer's report into one [`Summary`].
//!
//! - peers expected / reported / failed, with reasons;
//! - coverage: the fraction of ordered (origin, reader) pairs of expected peers where the
//!   reader received at least one record from the origin;
//! - latency percentiles from the peers' HDR histograms added together (exact); on a
//!   multi-host run, each (origin host, reader host) pair is first corrected for the two
//!   hosts' clock offsets, measured in-band by the peers ([`crate::clock`]), and latency
//!   is also given per host pair, within hosts and across hosts, each cross-host figure
//!   with the uncertainty of its correction;
//! - a per-peer table and totals of records and bytes.
//!
//! The merged histograms and the coverage matrix the plots need beside the figures are
//! kept in [`Detail`]. The Markdown of the summary is here too ([`to_markdown`]); the
//! other formats are [`crate::render`]'s.

use crate::clock::{shift, ClockModel, ClockSource, Correction, HostClock, Shifted};
use crate::impairment::{ExternalAction, Impairment};
use crate::quality::{self, MeasurementQuality};
use crate::table::ms;
use crate::windows::Windows;
use cmesh_common::histogram::{LatencyHistogram, LatencySummary};
use cmesh_common::report::{Outcome, PeerReport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const SUMMARY_SCHEMA: &str = "cmesh.run-summary";

/// The columns of the per-peer table, in every format, as [`PeerRow`] orders them.
pub const PEER_COLUMNS: [&str; 10] = [
    "peer",
    "outcome",
    "produced",
    "received",
    "origins",
    "p50",
    "p99",
    "max",
    "bytes sent",
    "bytes received",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedPeer {
    pub peer: String,
    pub reason: String,
}

/// A peer that stopped after a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostPeer {
    pub peer: String,
    /// When its last checkpoint was taken.
    pub checkpoint_unix_ms: u64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    pub peer: String,
    pub outcome: String,
    pub records_produced: u64,
    pub records_received: u64,
    pub distinct_origins: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub records_produced: u64,
    pub records_received: u64,
    pub records_duplicate: u64,
    pub records_missed: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub delta_sync_bytes: u64,
    pub full_resend_bytes: u64,
}

/// A peer's link bytes, sent and received: what its backend counted per neighbour
/// (mesh), else what its container's interfaces carried over the run (an app behind an
/// adapter, which counts nothing itself).
pub fn link_bytes(r: &PeerReport) -> (u64, u64) {
    if !r.neighbours.is_empty() {
        return (
            r.neighbours.iter().map(|n| n.bytes_sent).sum(),
            r.neighbours.iter().map(|n| n.bytes_received).sum(),
        );
    }
    r.time_series.as_ref().map_or((0, 0), |t| {
        t.interfaces.values().fold((0, 0), |(tx, rx), i| {
            (
                tx + i.tx_bytes.iter().sum::<u64>(),
                rx + i.rx_bytes.iter().sum::<u64>(),
            )
        })
    })
}

/// `analysis/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub schema_version: u32,
    pub run_id: String,
    /// True when every expected peer reported `ok`.
    pub ok: bool,
    pub peers_expected: usize,
    pub peers_reported: usize,
    pub peers_failed: Vec<FailedPeer>,
    /// Peers killed on purpose (by the plan or `launcher chaos`), with the action: not
    /// failures, and without reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_killed: Vec<FailedPeer>,
    /// Peers that stopped without a final report but left a checkpoint: their data up
    /// to the checkpoint is counted; they are not `ok`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_lost: Vec<LostPeer>,
    /// Peers whose host could not be reached at extract: nothing of theirs is counted
    /// (extract again when the host is back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_unreachable: Vec<FailedPeer>,
    /// Peers whose report could not be read or does not fit the plan (docs:
    /// `results::validate`): nothing of it is counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_invalid: Vec<FailedPeer>,
    /// Peers that ended `ok` but did not hold every record the others said they wrote
    /// when the settle timeout passed: the coverage below says how much was missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_not_caught_up: Vec<String>,
    /// Peers that had none of their links up when writing started
    /// (`links_at_start` in their reports): their first records waited for a link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_isolated_at_start: Vec<String>,
    pub coverage: f64,
    pub pairs_delivered: u64,
    pub pairs_expected: u64,
    /// Origins left out of the pairs: their report says they wrote nothing, and nobody
    /// received anything from them (with writes sparser than the run, some peers write
    /// none).
    #[serde(default)]
    pub origins_silent: usize,
    /// Every record's latency, merged; corrected for clock offsets when
    /// `clock_corrected`.
    pub message_latency: LatencySummary,
    /// True when the latencies were corrected per host pair for the hosts' clock offsets.
    #[serde(default)]
    pub clock_corrected: bool,
    /// The hosts' clocks the correction used, and how good it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSummary>,
    /// Latency of records between peers on the same host (multi-host runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_host_latency: Option<LatencySummary>,
    /// Latency of records between peers on different hosts (multi-host runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_host_latency: Option<LatencySummary>,
    /// Latency per (origin host, reader host) pair, with the correction applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_by_host_pair: Vec<HostPairLatency>,
    pub totals: Totals,
    /// Whether the hosts kept up, or the figures measure them ([`quality`]).
    #[serde(default)]
    pub measurement_quality: MeasurementQuality,
    pub per_peer: Vec<PeerRow>,
    /// Faults, latency over time, resync and availability.
    #[serde(flatten)]
    pub impairment: Impairment,
}

/// Latency of records written on one host and read on another (or the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostPairLatency {
    pub origin_host: String,
    pub reader_host: String,
    /// Subtracted from every sample: reader's clock offset minus origin's at the middle
    /// of the run, ms.
    pub correction_ms: f64,
    /// The correction is good to this many µs (the two hosts' uncertainties, plus their
    /// drift apart over half the run); absent when it is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_us: Option<u64>,
    /// Corrected samples below 0 (counted as 1 µs), and of those, below minus the
    /// uncertainty: more than a few of these means the correction is wrong.
    #[serde(default)]
    pub negative_samples: u64,
    #[serde(default)]
    pub negative_beyond_uncertainty: u64,
    pub latency: LatencySummary,
}

/// The clocks behind the correction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockSummary {
    pub source: ClockSource,
    pub hosts: Vec<HostClock>,
    /// The largest uncertainty of a cross-host pair's correction, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_host_uncertainty_us: Option<u64>,
    /// Corrected cross-host samples below minus their pair's uncertainty.
    pub negative_beyond_uncertainty: u64,
}

/// What one host pair's samples came to after correction.
#[derive(Debug)]
struct PairLatency {
    correction: Correction,
    shifted: Shifted,
}

/// What was done to the run from outside the peers (the plan's kills and pauses, and
/// `launcher chaos`), as the launcher recorded it.
#[derive(Clone, Debug, Default)]
pub struct Interventions {
    /// Peers killed on purpose: name → the action's id. Not failures.
    pub killed: BTreeMap<String, String>,
    /// Peers killed, paused or restarted on purpose: their silence is no evidence
    /// against the hosts.
    pub disturbed: BTreeSet<String>,
    /// The Docker-side actions, lined up with the peers' own fault records.
    pub external: Vec<ExternalAction>,
}

/// What the plots draw beyond the summary's figures.
#[derive(Clone, Debug, Default)]
pub struct Detail {
    /// Every record's latency, merged (corrected for clock offsets when the summary's
    /// `clock_corrected` says so).
    pub latency: LatencyHistogram,
    /// Per (origin host, reader host), corrected; empty on a one-host run.
    pub latency_by_host_pair: BTreeMap<(String, String), LatencyHistogram>,
    /// The expected peers, in plan order; [`Detail::heard`] indexes them.
    pub peers: Vec<String>,
    /// Each expected peer's host, in the same order (empty when not known).
    pub hosts: Vec<String>,
    /// Per reader (a report that was read): the origins, by index into `peers`, it
    /// received at least one record from.
    pub heard: BTreeMap<usize, BTreeSet<usize>>,
    /// Every heal's resync latency, ms; `None`: the peer never caught up.
    pub resync_ms: Vec<Option<u64>>,
}

/// Merges the reports of `peers` (expected names) into a summary. `reports` holds what
/// could be read; `missing` says why the others could not.
pub fn summarize(
    run_id: &str,
    peers: &[String],
    reports: &BTreeMap<String, PeerReport>,
    missing: &BTreeMap<String, String>,
    clock: Option<&ClockModel>,
    done: &Interventions,
) -> Summary {
    merge(run_id, peers, reports, missing, clock, done).0
}

/// [`summarize`], with the [`Detail`] behind its figures.
pub fn merge(
    run_id: &str,
    peers: &[String],
    reports: &BTreeMap<String, PeerReport>,
    missing: &BTreeMap<String, String>,
    clock: Option<&ClockModel>,
    done: &Interventions,
) -> (Summary, Detail) {
    let windows = Windows::of(reports, &BTreeMap::new());
    merge_folded(run_id, peers, reports, &windows, missing, clock, done)
}

/// [`merge`], with the reports' window histograms already folded into `windows`.
pub fn merge_folded(
    run_id: &str,
    peers: &[String],
    reports: &BTreeMap<String, PeerReport>,
    windows: &Windows,
    missing: &BTreeMap<String, String>,
    clock: Option<&ClockModel>,
    done: &Interventions,
) -> (Summary, Detail) {
    let mut latency = LatencyHistogram::new();
    let by_pair = host_pairs(reports, clock);
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    let mut per_peer = Vec::new();
    let mut delivered = 0u64;
    let killed_on_purpose = &done.killed;
    let mut killed = Vec::new();
    let mut lost = Vec::new();
    let mut not_caught_up = Vec::new();
    let mut isolated = Vec::new();
    for name in peers {
        let killed_by = killed_on_purpose.get(name);
        // Killed on purpose: not a failure; what it checkpointed before still counts.
        if let Some(id) = killed_by {
            if reports.get(name).is_none_or(|r| r.partial) {
                killed.push(FailedPeer {
                    peer: name.clone(),
                    reason: format!("killed on purpose ({id})"),
                });
            }
        }
        if reports.get(name).is_none() && killed_by.is_some() {
            continue;
        }
        let Some(r) = reports.get(name) else {
            failed.push(FailedPeer {
                peer: name.clone(),
                reason: missing
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "no report".into()),
            });
            continue;
        };
        if r.partial && killed_by.is_some() {
            // Listed under peers_killed above.
        } else if r.partial {
            lost.push(LostPeer {
                peer: name.clone(),
                checkpoint_unix_ms: r.checkpoint_unix_ms.unwrap_or(r.finished_at_unix_ms),
                reason: "stopped without a final report; counted up to its last checkpoint".into(),
            });
        } else if r.outcome != Outcome::Ok {
            failed.push(FailedPeer {
                peer: name.clone(),
                reason: r.error.clone().unwrap_or_else(|| "failed".into()),
            });
        } else if !r.caught_up {
            not_caught_up.push(name.clone());
        }
        if r.links_at_start.is_some_and(|l| l.isolated()) {
            isolated.push(name.clone());
        }
        match LatencyHistogram::decode(&r.message_latency.histogram) {
            Ok(h) => latency.merge(&h),
            Err(e) => failed.push(FailedPeer {
                peer: name.clone(),
                reason: format!("unreadable latency histogram: {e}"),
            }),
        }
        delivered += peers
            .iter()
            .filter(|origin| *origin != name)
            .filter(|origin| r.origins.get(*origin).is_some_and(|o| o.received > 0))
            .count() as u64;
        let (sent, received) = link_bytes(r);
        totals.records_produced += r.records_produced;
        totals.records_received += r.records_received;
        totals.records_duplicate += r.records_duplicate;
        totals.records_missed += r.records_missed;
        totals.bytes_sent += sent;
        totals.bytes_received += received;
        totals.delta_sync_bytes += r.delta_sync.bytes_sent;
        totals.full_resend_bytes += r.delta_sync.full_resend_bytes;
        let s = &r.message_latency.summary;
        per_peer.push(PeerRow {
            peer: name.clone(),
            outcome: match (r.partial, r.outcome) {
                (true, _) if killed_by.is_some() => "killed".into(),
                (true, _) => "lost".into(),
                (false, Outcome::Ok) => "ok".into(),
                (false, Outcome::Failed) => "failed".into(),
            },
            records_produced: r.records_produced,
            records_received: r.records_received,
            distinct_origins: r.distinct_origins,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            max_us: s.max_us,
            bytes_sent: sent,
            bytes_received: received,
        });
    }
    // Origins with nothing to deliver: they wrote nothing, by their own final report,
    // and nobody heard from them. Their pairs are not expected.
    let heard: BTreeSet<&str> = reports
        .values()
        .flat_map(|r| r.origins.iter())
        .filter(|(_, o)| o.received > 0)
        .map(|(origin, _)| origin.as_str())
        .collect();
    let silent = peers
        .iter()
        .filter(|p| !heard.contains(p.as_str()))
        .filter(|p| {
            reports
                .get(*p)
                .is_some_and(|r| !r.partial && r.records_produced == 0)
        })
        .count() as u64;
    let n = peers.len() as u64;
    let expected_pairs = (n - silent) * n.saturating_sub(1);
    let mut pairs = Vec::new();
    let (mut same, mut cross) = (LatencyHistogram::new(), LatencyHistogram::new());
    if let Some(by_pair) = &by_pair {
        let mut corrected = LatencyHistogram::new();
        for ((origin, reader), p) in by_pair {
            let h = &p.shifted.hist;
            corrected.merge(h);
            if origin == reader {
                &mut same
            } else {
                &mut cross
            }
            .merge(h);
            pairs.push(HostPairLatency {
                origin_host: origin.clone(),
                reader_host: reader.clone(),
                correction_ms: p.correction.shift_us as f64 / 1000.0,
                uncertainty_us: p.correction.uncertainty_us,
                negative_samples: p.shifted.negative,
                negative_beyond_uncertainty: p.shifted.beyond_uncertainty,
                latency: h.summary(),
            });
        }
        latency = corrected;
    }
    let multi_host = pairs.iter().any(|p| p.origin_host != p.reader_host);
    let position: BTreeMap<&str, usize> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let detail = Detail {
        latency: latency.clone(),
        latency_by_host_pair: match (&by_pair, multi_host) {
            (Some(by_pair), true) => by_pair
                .iter()
                .map(|(k, p)| (k.clone(), p.shifted.hist.clone()))
                .collect(),
            _ => BTreeMap::new(),
        },
        peers: peers.to_vec(),
        hosts: Vec::new(),
        heard: reports
            .iter()
            .filter_map(|(name, r)| {
                let reader = *position.get(name.as_str())?;
                let origins = r
                    .origins
                    .iter()
                    .filter(|(_, o)| o.received > 0)
                    .filter_map(|(o, _)| position.get(o.as_str()).copied())
                    .collect();
                Some((reader, origins))
            })
            .collect(),
        resync_ms: reports
            .values()
            .flat_map(|r| r.resync.iter().map(|h| h.latency_ms))
            .collect(),
    };
    let cross_pairs = || pairs.iter().filter(|p| p.origin_host != p.reader_host);
    let clock_summary = clock.filter(|_| multi_host).map(|m| ClockSummary {
        source: m.source,
        hosts: m.hosts.clone(),
        cross_host_uncertainty_us: cross_pairs().filter_map(|p| p.uncertainty_us).max(),
        negative_beyond_uncertainty: cross_pairs().map(|p| p.negative_beyond_uncertainty).sum(),
    });
    let summary = Summary {
        schema: SUMMARY_SCHEMA.into(),
        schema_version: 1,
        run_id: run_id.into(),
        ok: failed.is_empty()
            && lost.is_empty()
            && peers
                .iter()
                .all(|p| reports.contains_key(p) || killed_on_purpose.contains_key(p)),
        peers_expected: peers.len(),
        peers_reported: peers.iter().filter(|p| reports.contains_key(*p)).count(),
        peers_failed: failed,
        peers_killed: killed,
        peers_lost: lost,
        peers_unreachable: Vec::new(),
        peers_invalid: Vec::new(),
        peers_not_caught_up: not_caught_up,
        peers_isolated_at_start: isolated,
        coverage: if expected_pairs == 0 {
            1.0
        } else {
            delivered as f64 / expected_pairs as f64
        },
        pairs_delivered: delivered,
        pairs_expected: expected_pairs,
        origins_silent: silent as usize,
        message_latency: latency.summary(),
        clock_corrected: by_pair.is_some() && multi_host && clock.is_some(),
        clock: clock_summary,
        same_host_latency: (multi_host && same.count() > 0).then(|| same.summary()),
        cross_host_latency: multi_host.then(|| cross.summary()),
        latency_by_host_pair: if multi_host { pairs } else { Vec::new() },
        totals,
        measurement_quality: MeasurementQuality::default(),
        per_peer,
        impairment: crate::impairment::merge(reports, windows, &done.external, clock),
    };
    (summary, detail)
}

/// Per (origin host, reader host): the correction applied and the corrected samples.
/// `None` unless every report splits its latency by origin host.
///
/// One correction per pair, at the middle of the writing (the median over the
/// reports); its uncertainty grows by what the two hosts drift apart over half the
/// writing. The time series are corrected per window ([`crate::impairment`]).
fn host_pairs(
    reports: &BTreeMap<String, PeerReport>,
    clock: Option<&ClockModel>,
) -> Option<BTreeMap<(String, String), PairLatency>> {
    if reports.is_empty()
        || reports
            .values()
            .any(|r| r.host.is_none() || r.latency_by_origin_host.is_empty())
    {
        return None;
    }
    let mut mids: Vec<(u64, u64)> = reports
        .values()
        .filter_map(|r| r.writing.as_ref())
        .map(|w| {
            (
                w.start_unix_ms / 2 + w.end_unix_ms / 2,
                w.end_unix_ms.saturating_sub(w.start_unix_ms),
            )
        })
        .collect();
    mids.sort_unstable();
    let (mid_ms, span_ms) = mids.get(mids.len() / 2).copied().unwrap_or((0, 0));
    let none = Correction {
        shift_us: 0,
        uncertainty_us: None,
    };
    let mut out: BTreeMap<(String, String), PairLatency> = BTreeMap::new();
    for r in reports.values() {
        let reader = r.host.clone().unwrap_or_default();
        for (origin, l) in &r.latency_by_origin_host {
            let h = LatencyHistogram::decode(&l.histogram).ok()?;
            let neg = match &l.negative_histogram {
                Some(n) => Some(LatencyHistogram::decode(n).ok()?),
                None => None,
            };
            let pair = out
                .entry((origin.clone(), reader.clone()))
                .or_insert_with(|| {
                    let correction = clock
                        .and_then(|m| {
                            let mut c = m.correction(origin, &reader, mid_ms)?;
                            let drift = m.drift_error_us(origin, &reader, span_ms / 2);
                            c.uncertainty_us = c.uncertainty_us.map(|u| u + drift);
                            Some(c)
                        })
                        .unwrap_or(none);
                    PairLatency {
                        correction,
                        shifted: Shifted::default(),
                    }
                });
            let fixed = shift(&h, neg.as_ref(), pair.correction);
            pair.shifted.hist.merge(&fixed.hist);
            pair.shifted.negative += fixed.negative;
            pair.shifted.beyond_uncertainty += fixed.beyond_uncertainty;
        }
    }
    Some(out)
}

/// The clocks section: each host's offset, its uncertainty and drift, and the
/// engine-`/info` cross-check.
fn clock_markdown(c: &ClockSummary) -> String {
    let mut out = match c.source {
        ClockSource::InBand => "\n## Clocks (each host against the coordinator's, from the peers' exchanges)\n\n".to_owned(),
        ClockSource::EngineInfo => "\n## Clocks (each host against the launcher's, from the engines' /info at spawn; no uncertainty known)\n\n".to_owned(),
    };
    let signed = |us: i64| format!("{:+.3} ms", us as f64 / 1000.0);
    let rows: Vec<Vec<String>> = c
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                signed(h.offset_us),
                h.uncertainty_us
                    .map_or_else(|| "unknown".into(), |u| format!("± {}", ms(u))),
                h.drift_ppm
                    .map_or_else(|| "none".to_owned(), |d| format!("{d:+.1} ppm")),
                format!("{} of {}", h.agreeing, h.peers),
                h.engine_info_offset_us.map_or_else(String::new, signed),
            ]
        })
        .collect();
    out.push_str(&crate::table::markdown(
        [
            "host",
            "offset",
            "uncertainty",
            "drift",
            "peers agreeing",
            "engine /info (cross-check)",
        ],
        &rows,
    ));
    if c.negative_beyond_uncertainty > 0 {
        out.push_str(&format!(
            "\n**Warning:** {} corrected cross-host samples are below minus their uncertainty: the clock estimates are off (a clock stepped during the run?). Treat cross-host latency with care.\n",
            c.negative_beyond_uncertainty
        ));
    }
    out
}

/// The summary as Markdown (also what `analyze` prints). Every table goes through
/// [`crate::table::markdown`], which escapes what a cell holds.
pub fn to_markdown(s: &Summary) -> String {
    use crate::table::markdown;
    let l = &s.message_latency;
    let mut out = format!("# Run {}\n\n", s.run_id);
    out.push_str(&quality::to_markdown(&s.measurement_quality));
    if !s.peers_not_caught_up.is_empty() {
        out.push_str(&format!(
            "**Not synced:** {} of {} reporting peers did not hold every record when the settle timeout passed ({}); coverage {:.4}. The figures below cover only what arrived: a longer `settle_timeout`, fewer peers per host or a slower write rate.\n\n",
            s.peers_not_caught_up.len(),
            s.peers_reported,
            quality::named(&s.peers_not_caught_up),
            s.coverage
        ));
    }
    if !s.peers_isolated_at_start.is_empty() {
        out.push_str(&format!(
            "**Isolated at the start:** {} of {} reporting peers had none of their links up when writing started ({}): their first records waited for a link, and their latency includes that wait. Fewer peers per host (their connects starved), or a longer start (`start_delay` in the plan file).\n\n",
            s.peers_isolated_at_start.len(),
            s.peers_reported,
            quality::named(&s.peers_isolated_at_start),
        ));
    }
    let overview = [
        ("result", (if s.ok { "ok" } else { "FAILED" }).to_owned()),
        ("peers expected", s.peers_expected.to_string()),
        ("peers reported", s.peers_reported.to_string()),
        ("peers failed", s.peers_failed.len().to_string()),
        ("peers killed on purpose", s.peers_killed.len().to_string()),
        (
            "peers lost (checkpoint only)",
            s.peers_lost.len().to_string(),
        ),
        ("peers unreachable", s.peers_unreachable.len().to_string()),
        (
            "peers with an invalid report",
            s.peers_invalid.len().to_string(),
        ),
        (
            "peers not caught up at the settle timeout",
            s.peers_not_caught_up.len().to_string(),
        ),
        (
            "peers isolated when writing started",
            s.peers_isolated_at_start.len().to_string(),
        ),
        (
            "coverage",
            format!(
                "{:.4} ({} of {} origin→reader pairs{})",
                s.coverage,
                s.pairs_delivered,
                s.pairs_expected,
                match s.origins_silent {
                    0 => String::new(),
                    k => format!("; {k} peers wrote nothing"),
                }
            ),
        ),
        (
            "records produced / received",
            format!(
                "{} / {}",
                s.totals.records_produced, s.totals.records_received
            ),
        ),
        (
            "duplicates / missed",
            format!(
                "{} / {}",
                s.totals.records_duplicate, s.totals.records_missed
            ),
        ),
        (
            "bytes sent / received",
            format!("{} / {}", s.totals.bytes_sent, s.totals.bytes_received),
        ),
    ];
    let rows: Vec<Vec<String>> = overview
        .into_iter()
        .map(|(k, v)| vec![k.to_owned(), v])
        .collect();
    out.push_str(&markdown(["", ""], &rows));
    let cross_u = s.clock.as_ref().and_then(|c| c.cross_host_uncertainty_us);
    out.push_str(&match (s.clock_corrected, cross_u) {
        (true, Some(u)) => format!(
            "\n## Latency (all peers, merged; cross-host samples corrected for clock offsets, ± {})\n\n",
            ms(u)
        ),
        (true, None) => "\n## Latency (all peers, merged; cross-host samples corrected for clock offsets, uncertainty unknown)\n\n".to_owned(),
        _ => "\n## Latency (all peers, merged)\n\n".to_owned(),
    });
    out.push_str(&markdown(
        ["count", "min", "p50", "p90", "p99", "max", "mean"],
        &[vec![
            l.count.to_string(),
            ms(l.min_us),
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.max_us),
            format!("{:.2} ms", l.mean_us / 1000.0),
        ]],
    ));
    if !s.latency_by_host_pair.is_empty() {
        out.push_str(&format!(
            "\n## Latency by host pair ({})\n\n",
            if s.clock_corrected {
                "corrected for the hosts' clock offsets"
            } else {
                "not corrected"
            }
        ));
        let rows: Vec<Vec<String>> = s
            .latency_by_host_pair
            .iter()
            .map(|p| {
                let u = match (p.origin_host == p.reader_host, p.uncertainty_us) {
                    (true, _) => "0 (one clock)".to_owned(),
                    (false, Some(u)) => format!("± {}", ms(u)),
                    (false, None) => "unknown".to_owned(),
                };
                (
                    p.origin_host.as_str(),
                    p.reader_host.as_str(),
                    Some(p.correction_ms),
                    u,
                    &p.latency,
                )
            })
            .chain(
                s.same_host_latency
                    .as_ref()
                    .map(|l| ("(same host)", "", None, "0 (one clock)".to_owned(), l)),
            )
            .chain(s.cross_host_latency.as_ref().map(|l| {
                let u = cross_u.map_or_else(|| "unknown".to_owned(), |u| format!("± {}", ms(u)));
                ("(across hosts)", "", None, u, l)
            }))
            .map(|(o, r, c, u, l)| {
                vec![
                    o.to_owned(),
                    r.to_owned(),
                    c.map(|c| format!("{c:+.3} ms")).unwrap_or_default(),
                    u,
                    l.count.to_string(),
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.max_us),
                ]
            })
            .collect();
        out.push_str(&markdown(
            [
                "origin host",
                "reader host",
                "correction",
                "uncertainty",
                "count",
                "p50",
                "p90",
                "p99",
                "max",
            ],
            &rows,
        ));
    }
    if let Some(c) = &s.clock {
        out.push_str(&clock_markdown(c));
    }
    if s.totals.full_resend_bytes > 0 {
        out.push_str(&format!(
            "\nDelta sync sent {} bytes where resending every record would have sent {} ({:.1}% saved).\n",
            s.totals.delta_sync_bytes,
            s.totals.full_resend_bytes,
            100.0 * (1.0 - s.totals.delta_sync_bytes as f64 / s.totals.full_resend_bytes as f64)
        ));
    }
    out.push_str(&crate::impairment::to_markdown(&s.impairment));
    let pairs = |list: &[FailedPeer]| -> Vec<Vec<String>> {
        list.iter()
            .map(|f| vec![f.peer.clone(), f.reason.clone()])
            .collect()
    };
    if !s.peers_failed.is_empty() {
        out.push_str("\n## Failed peers\n\n");
        out.push_str(&markdown(["peer", "reason"], &pairs(&s.peers_failed)));
    }
    if !s.peers_lost.is_empty() {
        out.push_str("\n## Lost peers (counted up to their last checkpoint)\n\n");
        let rows: Vec<Vec<String>> = s
            .peers_lost
            .iter()
            .map(|l| {
                let at =
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(l.checkpoint_unix_ms);
                vec![
                    l.peer.clone(),
                    humantime::format_rfc3339_millis(at).to_string(),
                    l.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&markdown(["peer", "last checkpoint", "why"], &rows));
    }
    if !s.peers_invalid.is_empty() {
        out.push_str("\n## Invalid reports (not counted)\n\n");
        out.push_str(&markdown(["peer", "reason"], &pairs(&s.peers_invalid)));
    }
    if !s.peers_unreachable.is_empty() {
        out.push_str("\n## Unreachable peers (their host could not be reached)\n\n");
        out.push_str(&markdown(["peer", "reason"], &pairs(&s.peers_unreachable)));
    }
    if !s.peers_killed.is_empty() {
        out.push_str("\n## Killed on purpose\n\n");
        out.push_str(&markdown(["peer", "by"], &pairs(&s.peers_killed)));
    }
    out.push_str(&quality::details_markdown(&s.measurement_quality));
    out.push_str("\n## Peers\n\n");
    let rows: Vec<Vec<String>> = s
        .per_peer
        .iter()
        .map(|p| {
            vec![
                p.peer.clone(),
                p.outcome.to_string(),
                p.records_produced.to_string(),
                p.records_received.to_string(),
                p.distinct_origins.to_string(),
                ms(p.p50_us),
                ms(p.p99_us),
                ms(p.max_us),
                p.bytes_sent.to_string(),
                p.bytes_received.to_string(),
            ]
        })
        .collect();
    out.push_str(&markdown(PEER_COLUMNS, &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::report::{LatencyReport, OriginStats};

    #[test]
    fn link_bytes_come_from_the_backend_else_from_the_interfaces() {
        let mut r = PeerReport::new("p", "adapter", 0);
        assert_eq!(link_bytes(&r), (0, 0));
        let mut series = cmesh_common::report::TimeSeries::default();
        for (name, tx, rx) in [("eth0", [10, 20], [1, 2]), ("eth1", [5, 0], [0, 3])] {
            series.interfaces.insert(
                name.into(),
                cmesh_common::report::InterfaceSeries {
                    rx_bytes: rx.to_vec(),
                    tx_bytes: tx.to_vec(),
                },
            );
        }
        r.time_series = Some(series);
        assert_eq!(link_bytes(&r), (35, 6), "an app's: its interfaces");
        r.neighbours.push(cmesh_common::report::NeighbourStats {
            bytes_sent: 7,
            bytes_received: 9,
            ..Default::default()
        });
        assert_eq!(link_bytes(&r), (7, 9), "the mesh's: its own count");
    }

    fn none() -> Interventions {
        Interventions::default()
    }

    /// `peer` killed through the Docker API by the action `id`, 5 ms after the epoch.
    fn killed(peer: &str, id: &str) -> Interventions {
        Interventions {
            killed: BTreeMap::from([(peer.to_string(), id.to_string())]),
            disturbed: BTreeSet::from([peer.to_string()]),
            external: vec![ExternalAction {
                id: id.into(),
                action: "kill".into(),
                peers: 1,
                at_unix_ms: 5,
                until_unix_ms: None,
            }],
        }
    }

    fn report(name: &str, hears: &[&str], latencies: &[u64]) -> PeerReport {
        let mut r = PeerReport::new(name, "mesh", 0);
        let mut h = LatencyHistogram::new();
        for &l in latencies {
            h.record(l);
        }
        r.message_latency = LatencyReport {
            summary: h.summary(),
            negative_samples: 0,
            histogram: h.encode(),
            negative_histogram: None,
        };
        for o in hears {
            r.origins.insert(
                o.to_string(),
                OriginStats {
                    received: 1,
                    produced: Some(1),
                },
            );
        }
        r.records_received = latencies.len() as u64;
        r.caught_up = true;
        r
    }

    #[test]
    fn merges_exactly_and_counts_coverage_and_failures() {
        let peers: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b", "c"], &[100, 200]));
        reports.insert("b".into(), report("b", &["a"], &[300; 98]));
        let missing =
            BTreeMap::from([("c".to_string(), "container killed (exit 137)".to_string())]);
        let s = summarize("r", &peers, &reports, &missing, None, &none());
        assert_eq!((s.peers_expected, s.peers_reported), (3, 2));
        assert!(!s.ok);
        assert_eq!(
            s.peers_failed,
            vec![FailedPeer {
                peer: "c".into(),
                reason: "container killed (exit 137)".into()
            }]
        );
        assert_eq!((s.pairs_delivered, s.pairs_expected), (3, 6));
        assert!((s.coverage - 0.5).abs() < 1e-9);
        // 100 samples: 98 at 300, one at 100, one at 200. Exact merge: p50 = 300, min = 100.
        assert_eq!(s.message_latency.count, 100);
        assert_eq!(s.message_latency.min_us, 100);
        assert!((299..=301).contains(&s.message_latency.p50_us));
        let md = crate::table::squash(&to_markdown(&s));
        assert!(
            md.contains("FAILED") && md.contains("| c | container killed (exit 137) |"),
            "{md}"
        );
    }

    #[test]
    fn peers_killed_on_purpose_are_not_failures() {
        let peers: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b", "c"], &[100, 200]));
        reports.insert("b".into(), report("b", &["a", "c"], &[300, 300]));
        let kill = killed("c", "plan#1");
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &kill);
        assert!(s.ok, "{s:?}");
        assert!(s.peers_failed.is_empty());
        assert_eq!(s.peers_killed[0].peer, "c");
        assert_eq!(s.peers_killed[0].reason, "killed on purpose (plan#1)");
        assert_eq!(s.impairment.faults[0].id, "plan#1");
        let md = crate::table::squash(&to_markdown(&s));
        assert!(
            md.contains("## Killed on purpose")
                && md.contains("| c | killed on purpose (plan#1) |"),
            "{md}"
        );
    }

    #[test]
    fn a_peer_with_only_a_checkpoint_is_lost_and_its_data_counts() {
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b"], &[100, 200]));
        let mut b = report("b", &["a"], &[300]);
        b.partial = true;
        b.checkpoint_unix_ms = Some(1_764_000_000_000);
        b.outcome = Outcome::Failed;
        reports.insert("b".into(), b);
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert!(!s.ok, "a lost peer is not ok");
        assert!(s.peers_failed.is_empty(), "{:?}", s.peers_failed);
        assert_eq!(s.peers_lost.len(), 1);
        assert_eq!(s.peers_lost[0].peer, "b");
        assert_eq!(s.peers_lost[0].checkpoint_unix_ms, 1_764_000_000_000);
        assert_eq!(s.message_latency.count, 3, "the checkpoint's samples count");
        assert_eq!(s.per_peer[1].outcome, "lost");
        let md = crate::table::squash(&to_markdown(&s));
        assert!(md.contains("## Lost peers"), "{md}");
        assert!(md.contains("| b | 2025-11-24T16:00:00.000Z |"), "{md}");
    }

    #[test]
    fn a_peer_killed_on_purpose_with_a_checkpoint_is_killed_and_its_data_counts() {
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b"], &[100]));
        let mut b = report("b", &["a"], &[300, 400]);
        b.partial = true;
        b.checkpoint_unix_ms = Some(5);
        reports.insert("b".into(), b);
        let kill = killed("b", "chaos#1");
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &kill);
        assert!(s.ok, "{s:?}");
        assert!(s.peers_lost.is_empty() && s.peers_failed.is_empty());
        assert_eq!(s.peers_killed[0].peer, "b");
        assert_eq!(s.message_latency.count, 3, "the checkpoint's samples count");
        assert_eq!(s.per_peer[1].outcome, "killed");
    }

    #[test]
    fn an_origin_that_wrote_nothing_and_was_never_heard_has_no_pairs_to_deliver() {
        let peers: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        for (name, hears) in [("a", &["b"][..]), ("b", &["a"]), ("c", &["a", "b"])] {
            let mut r = report(name, hears, &[5]);
            r.records_produced = u64::from(name != "c");
            reports.insert(name.to_string(), r);
        }
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert_eq!((s.pairs_delivered, s.pairs_expected), (4, 4));
        assert_eq!((s.coverage, s.origins_silent), (1.0, 1));
        assert!(to_markdown(&s).contains("1 peers wrote nothing"));
        // A peer that left only a checkpoint may have written after it: it counts.
        reports.get_mut("c").unwrap().partial = true;
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert_eq!((s.pairs_expected, s.origins_silent), (6, 0));
    }

    #[test]
    fn peers_that_ended_ok_without_every_record_are_named_and_headlined() {
        // At 2000 peers on an overloaded lab every peer exited 0 with 0.65% coverage:
        // the summary must say so above the figures, not only in the coverage row.
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b"], &[100]));
        let mut b = report("b", &[], &[]);
        b.caught_up = false;
        b.records_produced = 1;
        reports.insert("b".into(), b);
        reports.get_mut("a").unwrap().records_produced = 1;
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert_eq!(s.peers_not_caught_up, vec!["b".to_string()]);
        assert!(s.peers_failed.is_empty());
        assert_eq!(s.coverage, 0.5);
        let md = crate::table::squash(&to_markdown(&s));
        let headline = md
            .find("**Not synced:** 1 of 2 reporting peers")
            .expect(&md);
        assert!(headline < md.find("| result |").expect(&md), "{md}");
        assert!(
            md.contains("| peers not caught up at the settle timeout | 1 |"),
            "{md}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["peers_not_caught_up"], serde_json::json!(["b"]));
        // Every peer caught up: no headline, and the JSON leaves the list out.
        reports.get_mut("b").unwrap().caught_up = true;
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert!(!to_markdown(&s).contains("Not synced"));
        assert!(serde_json::to_value(&s)
            .unwrap()
            .get("peers_not_caught_up")
            .is_none());
    }

    #[test]
    fn peers_with_no_link_when_writing_started_are_named_headlined_and_counted() {
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b"], &[100]));
        reports.insert("b".into(), report("b", &["a"], &[100]));
        let links = |up| Some(cmesh_common::report::LinkCount { up, wanted: 1 });
        reports.get_mut("a").unwrap().links_at_start = links(1);
        reports.get_mut("b").unwrap().links_at_start = links(0);
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert_eq!(s.peers_isolated_at_start, vec!["b".to_string()]);
        let md = crate::table::squash(&to_markdown(&s));
        let headline = md
            .find("**Isolated at the start:** 1 of 2 reporting peers")
            .expect(&md);
        assert!(headline < md.find("| result |").expect(&md), "{md}");
        assert!(
            md.contains("| peers isolated when writing started | 1 |"),
            "{md}"
        );
        // Linked, or with no neighbour to link to: not isolated; the list is left out.
        reports.get_mut("b").unwrap().links_at_start =
            Some(cmesh_common::report::LinkCount { up: 0, wanted: 0 });
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert!(!to_markdown(&s).contains("Isolated at the start"));
        assert!(serde_json::to_value(&s)
            .unwrap()
            .get("peers_isolated_at_start")
            .is_none());
    }

    #[test]
    fn full_delivery_is_coverage_one() {
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut reports = BTreeMap::new();
        reports.insert("a".into(), report("a", &["b"], &[5]));
        reports.insert("b".into(), report("b", &["a"], &[7]));
        let s = summarize("r", &peers, &reports, &BTreeMap::new(), None, &none());
        assert!(s.ok);
        assert_eq!(s.coverage, 1.0);
        assert!(!s.clock_corrected && s.cross_host_latency.is_none());
    }

    /// Splits `r`'s latency by origin host; samples are signed µs.
    fn split(r: &mut PeerReport, host: &str, by_origin: &[(&str, &[i64])]) {
        r.host = Some(host.into());
        for (origin, values) in by_origin {
            let (mut h, mut neg) = (LatencyHistogram::new(), LatencyHistogram::new());
            for &v in *values {
                if v >= 0 {
                    h.record(v as u64)
                } else {
                    neg.record(-v as u64)
                }
            }
            r.latency_by_origin_host.insert(
                origin.to_string(),
                LatencyReport {
                    summary: h.summary(),
                    negative_samples: neg.count(),
                    histogram: h.encode(),
                    negative_histogram: Some(neg.encode()),
                },
            );
        }
    }

    #[test]
    fn corrects_cross_host_latency_for_clock_offsets() {
        // Host y's clock is 5 ms ahead of x's. True latency is 1 ms everywhere, so a
        // record x→y measures 6 ms and y→x measures -4 ms (recorded as 1 µs).
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut a = report("a", &["b"], &[1_000, 1]);
        let mut b = report("b", &["a"], &[1_000, 6_000]);
        split(&mut a, "x", &[("x", &[1_000]), ("y", &[-4_000])]);
        split(&mut b, "y", &[("y", &[1_000]), ("x", &[6_000])]);
        let reports = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let offsets = BTreeMap::from([("x".to_string(), 10.0), ("y".to_string(), 15.0)]);
        let clock = ClockModel::from_engine_info(&offsets);
        let s = summarize(
            "r",
            &peers,
            &reports,
            &BTreeMap::new(),
            clock.as_ref(),
            &none(),
        );
        assert!(s.clock_corrected);
        assert_eq!(s.clock.as_ref().unwrap().source, ClockSource::EngineInfo);
        let xy = s
            .latency_by_host_pair
            .iter()
            .find(|p| p.origin_host == "x" && p.reader_host == "y")
            .unwrap();
        assert_eq!(xy.correction_ms, 5.0);
        assert!(
            (995..=1_005).contains(&xy.latency.p50_us),
            "{:?}",
            xy.latency
        );
        let cross = s.cross_host_latency.clone().unwrap();
        assert_eq!(cross.count, 2);
        assert!(cross.max_us <= 1_005, "{cross:?}");
        assert_eq!(s.same_host_latency.as_ref().unwrap().count, 2);
        assert_eq!(s.message_latency.count, 4);
        assert!(s.message_latency.max_us <= 1_005);
        let md = to_markdown(&s);
        assert!(
            crate::table::squash(&md).contains("| x | y | +5.000 ms | unknown | 1 |"),
            "{md}"
        );
    }

    /// A peer whose clock exchanges put it at `offset_us` ± `u` at the start
    /// (t = 1 s) and the end (t = 11 s), and whose windows (1 s, from t = 0) hold
    /// `windows[i]` = (origin host, signed samples) in window i.
    fn in_band(r: &mut PeerReport, (offset_us, u): (i64, u64), windows: &[(&str, &[i64])]) {
        use cmesh_common::clock::{ClockEstimate, ClockSync};
        use cmesh_common::report::{TimeSeries, WindowLatency};
        let est = |at| ClockEstimate {
            at_unix_ms: at,
            clock_offset_us: offset_us,
            clock_uncertainty_us: u,
            samples: 32,
            agreeing: 32,
            min_rtt_us: 2 * u,
        };
        r.clock_sync = Some(ClockSync {
            start: est(1_000),
            end: Some(est(11_000)),
        });
        r.writing = Some(cmesh_common::report::WritingWindow {
            start_unix_ms: 1_000,
            end_unix_ms: 11_000,
        });
        let mut by_host: BTreeMap<String, Vec<WindowLatency>> = BTreeMap::new();
        for (i, (origin, values)) in windows.iter().enumerate() {
            let (mut h, mut neg) = (LatencyHistogram::coarse(), LatencyHistogram::coarse());
            for &v in *values {
                if v >= 0 {
                    h.record(v as u64)
                } else {
                    neg.record(-v as u64)
                }
            }
            by_host
                .entry(origin.to_string())
                .or_default()
                .push(WindowLatency {
                    window: i as u32,
                    count: values.len() as u64,
                    histogram: h.encode(),
                    negative_histogram: (neg.count() > 0).then(|| neg.encode()),
                    ..WindowLatency::default()
                });
        }
        r.time_series = Some(TimeSeries {
            start_unix_ms: 0,
            window_ms: 1_000,
            latency_by_origin_host: by_host,
            ..TimeSeries::default()
        });
    }

    #[test]
    fn in_band_offsets_correct_pairs_and_windows_with_their_uncertainty() {
        // y is 5 ms ahead of x (the coordinator's clock is x's), each known to ±0.1 ms.
        // True latency 1 ms: x→y reads 6 ms, y→x reads -4 ms.
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut a = report("a", &["b"], &[1_000, 1]);
        let mut b = report("b", &["a"], &[1_000, 6_000]);
        split(&mut a, "x", &[("x", &[1_000]), ("y", &[-4_000])]);
        split(&mut b, "y", &[("y", &[1_000]), ("x", &[6_000, 4_800])]);
        in_band(&mut a, (0, 100), &[("x", &[1_000]), ("y", &[-4_000])]);
        in_band(&mut b, (5_000, 100), &[("y", &[1_000]), ("x", &[6_000])]);
        let reports = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let clock = ClockModel::from_reports(&reports).unwrap();
        let s = summarize(
            "r",
            &peers,
            &reports,
            &BTreeMap::new(),
            Some(&clock),
            &none(),
        );
        assert!(s.clock_corrected);
        let c = s.clock.as_ref().unwrap();
        assert_eq!(c.source, ClockSource::InBand);
        assert_eq!(c.cross_host_uncertainty_us, Some(200));
        let xy = s
            .latency_by_host_pair
            .iter()
            .find(|p| p.origin_host == "x" && p.reader_host == "y")
            .unwrap();
        assert_eq!((xy.correction_ms, xy.uncertainty_us), (5.0, Some(200)));
        // 4.8 ms - 5 ms = -0.2 ms: negative, but within the uncertainty.
        assert_eq!(
            (xy.negative_samples, xy.negative_beyond_uncertainty),
            (1, 0)
        );
        assert_eq!(c.negative_beyond_uncertainty, 0);
        // Windows: corrected per origin host, with the uncertainty beside them.
        let w = &s.impairment.windows;
        assert!(s.impairment.time_series_clock_corrected);
        assert!((995..=1_100).contains(&w[1].max_us), "{:?}", w[1]);
        assert_eq!(w[1].uncertainty_us, Some(200));
        assert_eq!(w[0].uncertainty_us, None, "same host only");
        let md = crate::table::squash(&to_markdown(&s));
        assert!(md.contains("| x | y | +5.000 ms | ± 0.20 ms |"), "{md}");
        assert!(md.contains("| (across hosts) | | | ± 0.20 ms |"), "{md}");
        assert!(md.contains("± 0.200"), "{md}");
        assert!(md.contains("## Clocks"), "{md}");
        assert!(!md.contains("Warning"), "{md}");
    }

    #[test]
    fn samples_far_below_zero_after_correction_are_a_warning() {
        let peers: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut a = report("a", &["b"], &[1_000]);
        let mut b = report("b", &["a"], &[1_000]);
        split(&mut a, "x", &[("x", &[1_000]), ("y", &[1_000])]);
        split(&mut b, "y", &[("y", &[1_000]), ("x", &[1_000])]);
        // The estimates claim y is 5 ms ahead, ± 0.1 ms: but the samples say otherwise.
        in_band(&mut a, (0, 100), &[]);
        in_band(&mut b, (5_000, 100), &[]);
        let reports = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let clock = ClockModel::from_reports(&reports).unwrap();
        let s = summarize(
            "r",
            &peers,
            &reports,
            &BTreeMap::new(),
            Some(&clock),
            &none(),
        );
        assert_eq!(s.clock.as_ref().unwrap().negative_beyond_uncertainty, 1);
        assert!(to_markdown(&s).contains("**Warning:** 1 corrected cross-host samples"));
    }
}
