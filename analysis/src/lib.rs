//! cmesh's analysis: pure functions from a run's extracted reports to its summary, and
//! the renderers that write that summary out. No Docker, no network, no files: the
//! launcher reads the run directory into a [`RunInput`], calls [`analyze`], and writes
//! what each [`render::Renderer`] returns.
//!
//! The shape:
//!
//! 1. [`analyze`] checks every report against the plan ([`validate`]), before anything
//!    of it is merged; an invalid report marks its peer `invalid` and is left out.
//! 2. The clocks: in-band offsets when the reports carry them, the engines' `/info`
//!    offsets beside them as a cross-check, else the `/info` ones ([`clock`]).
//! 3. The merge ([`summary::merge`]): coverage, latency (corrected per host pair), the
//!    per-peer table, totals; the faults, windows, resyncs and availability
//!    ([`impairment`]); then the measurement-quality verdict ([`quality`]).
//! 4. The result is an [`Analysis`]: the [`Summary`] (the figures, `summary.json`) and
//!    its [`Detail`] (the merged histograms and coverage the plots draw).
//! 5. Renderers turn an [`Analysis`] into files: Markdown, JSON, HTML with plots, CSV
//!    and JUnit ([`render`]). A new format is a new renderer; the merge does not change.

pub mod clock;
pub mod compare;
pub mod impairment;
pub mod quality;
pub mod render;
pub mod summary;
pub mod table;
pub mod validate;
pub mod windows;

pub use summary::{Detail, Interventions, Summary};

use cmesh_common::plan::PlanSpec;
use cmesh_common::protocol::StatusReport;
use cmesh_common::report::PeerReport;
use std::collections::BTreeMap;
use summary::FailedPeer;

/// Everything [`analyze`] needs of a run, read by the launcher.
#[derive(Clone, Debug)]
pub struct RunInput {
    pub run_id: String,
    /// The plan's spec (peers, duration, write interval, …): reports are checked
    /// against it.
    pub spec: PlanSpec,
    /// Hosts in the run (the bounds of a report's host fields).
    pub hosts: usize,
    /// Every expected peer and its host, in plan order.
    pub peers: Vec<(String, String)>,
    /// The coordinator's host: the reference of the in-band clock offsets.
    pub coordinator_host: String,
    /// Each host's clock minus the launcher's, ms, read from the engines at spawn.
    pub clock_offsets_ms: BTreeMap<String, f64>,
    /// The reports that could be read, by peer name.
    pub reports: BTreeMap<String, PeerReport>,
    /// Peers without a report to read, and why (failed containers, missing files).
    pub missing: BTreeMap<String, String>,
    /// Peers whose report was there but could not be parsed, and why.
    pub unreadable: BTreeMap<String, String>,
    /// Peers whose host could not be reached at extract, and why.
    pub unreachable: BTreeMap<String, String>,
    /// The coordinator's final status, if its report was extracted.
    pub coordinator: Option<StatusReport>,
    /// What the plan and `launcher chaos` did to the peers from outside.
    pub interventions: Interventions,
}

/// A run, analysed.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub summary: Summary,
    pub detail: Detail,
}

/// Validates, merges and assesses a run's reports.
pub fn analyze(input: RunInput) -> Analysis {
    Intake::new(input).finish()
}

/// A run's reports taken in one at a time, so that a large run is never all in memory:
/// each is checked against the plan ([`validate`]) and its window histograms are folded
/// ([`windows`]) and taken out of it as it comes; [`Intake::finish`] merges the rest.
pub struct Intake {
    input: RunInput,
    bounds: validate::Bounds,
    host_of: BTreeMap<String, String>,
    windows: windows::Windows,
}

impl Intake {
    /// An intake for the run `input` describes (its `reports` are added too).
    pub fn new(mut input: RunInput) -> Intake {
        let reports = std::mem::take(&mut input.reports);
        let mut intake = Intake {
            bounds: validate::Bounds::of(&input.spec, input.hosts),
            host_of: input.peers.iter().cloned().collect(),
            windows: windows::Windows::default(),
            input,
        };
        for (name, r) in reports {
            intake.add(name, r);
        }
        intake
    }

    /// Takes in `name`'s report: invalid if it does not fit the plan (its series' start
    /// is checked against the others' at the end).
    pub fn add(&mut self, name: String, mut r: PeerReport) {
        if let Err(why) = validate::check(&r, &self.bounds) {
            self.input
                .unreadable
                .insert(name, format!("invalid report: {why}"));
            return;
        }
        self.windows
            .add(&r, &windows::host_of(&self.host_of, &name, &r));
        windows::Windows::strip(&mut r);
        self.input.reports.insert(name, r);
    }

    /// Takes note of a report that could not be read.
    pub fn unreadable(&mut self, name: String, why: String) {
        self.input.unreadable.insert(name, why);
    }

    /// Merges and assesses what was taken in.
    pub fn finish(self) -> Analysis {
        let Intake {
            input, mut windows, ..
        } = self;
        let RunInput {
            run_id,
            spec,
            hosts: _,
            peers: peer_hosts,
            coordinator_host,
            clock_offsets_ms,
            mut reports,
            missing,
            unreadable: mut invalid,
            unreachable,
            coordinator,
            interventions,
        } = input;
        // A series that starts far from the others' (the median) is not this run's.
        let mut starts: Vec<u64> = reports
            .values()
            .filter_map(|r| r.time_series.as_ref().map(|s| s.start_unix_ms))
            .collect();
        starts.sort_unstable();
        if let Some(&median) = starts.get(starts.len() / 2) {
            reports.retain(|name, r| {
                let Some(s) = &r.time_series else {
                    return true;
                };
                match validate::start_fits(s.start_unix_ms, median, spec.duration_ms) {
                    Ok(()) => true,
                    Err(why) => {
                        windows.drop_start(s.start_unix_ms);
                        invalid.insert(name.clone(), format!("invalid report: {why}"));
                        false
                    }
                }
            });
        }
        // In-band offsets when the reports have them (the engines' /info offsets beside
        // them as a cross-check), else the /info ones.
        let clock = match clock::ClockModel::from_reports(&reports) {
            Some(mut m) => {
                m.cross_check(&clock_offsets_ms, &coordinator_host);
                Some(m)
            }
            None => clock::ClockModel::from_engine_info(&clock_offsets_ms),
        };
        let peers: Vec<String> = peer_hosts.iter().map(|(p, _)| p.clone()).collect();
        let (mut summary, mut detail) = summary::merge_folded(
            &run_id,
            &peers,
            &reports,
            &windows,
            &missing,
            clock.as_ref(),
            &interventions,
        );
        detail.hosts = peer_hosts.iter().map(|(_, h)| h.clone()).collect();
        summary.measurement_quality = quality::assess(&quality::Evidence {
            reports: &reports,
            host_of: &peer_hosts.into_iter().collect(),
            coordinator: coordinator.as_ref(),
            disturbed: &interventions.disturbed,
            write_interval_ms: (spec.write_interval.min_ms, spec.write_interval.max_ms),
            windows: &windows,
        });
        // Peers on a host that could not be reached, and peers with an invalid report,
        // are listed as such, not as failures.
        summary
            .peers_failed
            .retain(|f| !unreachable.contains_key(&f.peer) && !invalid.contains_key(&f.peer));
        summary.peers_invalid = invalid
            .into_iter()
            .map(|(peer, reason)| FailedPeer { peer, reason })
            .collect();
        summary.peers_unreachable = peers
            .iter()
            .filter_map(|p| {
                unreachable.get(p).map(|reason| FailedPeer {
                    peer: p.clone(),
                    reason: reason.clone(),
                })
            })
            .collect();
        Analysis { summary, detail }
    }
}
