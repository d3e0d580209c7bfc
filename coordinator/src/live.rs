//! The run while it goes: the peers' live counters, added up per host and for the run.
//!
//! Synchronous, time passed in, like [`crate::state`] (which owns one [`Live`] and feeds
//! it every heartbeat). What it keeps is bounded by the peers and the hosts, not by the
//! run's length:
//!
//! - per peer, its last counters (totals so far, links, checkpoint age);
//! - per host, one slot a second for the last [`SLOTS`] seconds: records received,
//!   the latency and scheduling-lag histograms the beats carried, the CPU quota used;
//!   and, since the start, the latency histogram and totals Prometheus reads as counters.
//!
//! [`Live::report`] reads the last [`WINDOW_MS`] of slots for the rates, percentiles
//! and verdicts, and walks further back to say how long a host has been saturated.

use cmesh_common::lifecycle::PeerState;
use cmesh_common::live::{
    ActiveFault, LiveCounters, LiveFigures, LiveHistogram, LiveReport, LiveVerdict, LiveWarning,
    ISOLATED_AFTER_MS, WINDOW_MS,
};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Seconds of slots kept per host: the window, and how far back a host's saturation
/// is followed.
pub const SLOTS: u64 = cmesh_common::live::MEMORY_MS / 1000;
/// Peers a warning names at most.
const NAMED: usize = 5;

/// One second of a host.
#[derive(Clone, Debug, Default)]
struct Slot {
    second: u64,
    received: u64,
    latency: LiveHistogram,
    lag: LiveHistogram,
    quota_permille: u64,
    quota_beats: u64,
}

/// A host's slots, and its totals since the start.
#[derive(Clone, Debug, Default)]
pub struct HostLive {
    slots: VecDeque<Slot>,
    /// Every latency the beats carried (Prometheus' histogram).
    pub latency_total: LiveHistogram,
}

impl HostLive {
    fn slot(&mut self, now_ms: u64) -> &mut Slot {
        let second = now_ms / 1000;
        if self.slots.back().is_none_or(|s| s.second < second) {
            self.slots.push_back(Slot {
                second,
                ..Default::default()
            });
        }
        while self
            .slots
            .front()
            .is_some_and(|s| s.second + SLOTS <= second)
        {
            self.slots.pop_front();
        }
        // A beat stamped in an earlier second than the newest slot (the clock is
        // monotonic here; this is only the `now` a caller passed) joins the newest.
        self.slots.back_mut().expect("pushed above")
    }

    fn window(&self, now_ms: u64) -> impl Iterator<Item = &Slot> {
        let from = (now_ms.saturating_sub(WINDOW_MS)) / 1000;
        self.slots.iter().filter(move |s| s.second > from)
    }

    /// The verdict of one slot's lag and quota.
    fn slot_verdict(s: &Slot) -> LiveVerdict {
        LiveVerdict::of(
            s.lag.quantile(0.99),
            (s.quota_beats > 0).then(|| s.quota_permille as f64 / s.quota_beats as f64 / 1000.0),
        )
    }

    /// How long this host has been saturated without a break, ms (slots without
    /// samples do not break it: a saturated host's beats come late and bunched).
    fn saturated_for_ms(&self, now_ms: u64) -> u64 {
        let mut since = None;
        for s in self.slots.iter().rev() {
            match Self::slot_verdict(s) {
                LiveVerdict::Saturated => since = Some(s.second),
                LiveVerdict::Unknown => {}
                _ => break,
            }
        }
        since.map_or(0, |s| now_ms.saturating_sub(s * 1000))
    }
}

/// A peer's last word.
#[derive(Clone, Debug)]
pub struct PeerLive {
    pub host: String,
    pub counters: LiveCounters,
}

/// What [`Live::report`] needs of the run: each registered peer's name, host and state.
pub struct PeerView<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub state: PeerState,
}

/// The live figures of a run.
#[derive(Debug, Default)]
pub struct Live {
    peers: HashMap<String, PeerLive>,
    hosts: BTreeMap<String, HostLive>,
    /// The plan's faults and the chaos actions: (id, action, from ms, until ms, peers).
    faults: Vec<(String, String, u64, Option<u64>, usize)>,
}

impl Live {
    /// A beat from `peer` on `host` carried `c` at `now_ms`.
    pub fn observe(&mut self, peer: &str, host: &str, c: &LiveCounters, now_ms: u64) {
        let before = self.peers.get(peer).map_or(0, |p| p.counters.received);
        // A peer that restarted counts from 0 again: all it has is new.
        let new = if c.received >= before {
            c.received - before
        } else {
            c.received
        };
        let h = self.hosts.entry(host.to_owned()).or_default();
        h.latency_total.merge(&c.latency);
        let slot = h.slot(now_ms);
        // Sums saturate: a peer may send any number.
        slot.received = slot.received.saturating_add(new);
        slot.latency.merge(&c.latency);
        slot.lag.merge(&c.lag);
        if let Some(q) = c.quota_permille {
            slot.quota_permille = slot.quota_permille.saturating_add(u64::from(q));
            slot.quota_beats += 1;
        }
        let mut kept = c.clone();
        kept.latency = LiveHistogram::default();
        kept.lag = LiveHistogram::default();
        self.peers.insert(
            peer.to_owned(),
            PeerLive {
                host: host.to_owned(),
                counters: kept,
            },
        );
    }

    /// A fault that acts from `from_ms` (from the start) until `until_ms` on `peers`.
    pub fn fault(
        &mut self,
        id: String,
        action: &str,
        from_ms: u64,
        until_ms: Option<u64>,
        peers: usize,
    ) {
        self.faults
            .push((id, action.to_owned(), from_ms, until_ms, peers));
    }

    /// Each peer's last counters.
    pub fn peers(&self) -> &HashMap<String, PeerLive> {
        &self.peers
    }

    /// Each host's slots and totals.
    /// True when `host`'s peers measured it saturated lately (their timers' lag, or
    /// their quota): its silent peers are starving, not gone ([`crate::liveness`]).
    pub fn saturated(&self, host: &str, now_ms: u64) -> bool {
        self.hosts
            .get(host)
            .is_some_and(|h| h.saturated_for_ms(now_ms) > 0)
    }

    pub fn hosts(&self) -> &BTreeMap<String, HostLive> {
        &self.hosts
    }

    /// The figures at `now_ms` for the peers `view` lists. `elapsed_ms` is the time since
    /// the plan's start (none before it).
    pub fn report<'a>(
        &self,
        view: impl Iterator<Item = PeerView<'a>>,
        now_ms: u64,
        elapsed_ms: Option<u64>,
    ) -> LiveReport {
        let past_grace = elapsed_ms.is_some_and(|e| e >= ISOLATED_AFTER_MS);
        let mut run = LiveFigures::default();
        let mut hosts: BTreeMap<String, LiveFigures> = BTreeMap::new();
        let mut isolated_names = Vec::new();
        // Coverage: what each counted peer received, against what the others wrote.
        let written_total = self
            .peers
            .values()
            .fold(0u64, |sum, p| sum.saturating_add(p.counters.written));
        let mut could: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for p in view {
            let h = hosts.entry(p.host.to_owned()).or_default();
            for f in [&mut run, &mut *h] {
                *f.peers.entry(p.state).or_default() += 1;
            }
            let Some(live) = self.peers.get(p.name) else {
                continue;
            };
            let c = &live.counters;
            let active = matches!(p.state, PeerState::Running | PeerState::Reporting);
            let isolated = p.state == PeerState::Running
                && past_grace
                && c.links_wanted > 0
                && c.links_up == 0;
            if isolated && isolated_names.len() < NAMED {
                isolated_names.push(p.name.to_owned());
            }
            for f in [&mut run, &mut *h] {
                f.written = f.written.saturating_add(c.written);
                f.received = f.received.saturating_add(c.received);
                if active {
                    f.links_up += u64::from(c.links_up);
                    f.links_wanted += u64::from(c.links_wanted);
                }
                if p.state == PeerState::Running && c.links_up > 0 {
                    f.linked += 1;
                }
                f.isolated += usize::from(isolated);
                if p.state == PeerState::Running {
                    if let Some(age) = c.checkpoint_age_ms {
                        f.checkpoint_age_max_ms =
                            Some(f.checkpoint_age_max_ms.unwrap_or(0).max(age));
                    }
                }
            }
            if !matches!(p.state, PeerState::Lost | PeerState::Failed) {
                let others = written_total.saturating_sub(c.written);
                for key in ["", p.host] {
                    let e = could.entry(key.to_owned()).or_default();
                    e.0 = e.0.saturating_add(c.received);
                    e.1 = e.1.saturating_add(others);
                }
            }
        }
        let coverage = |key: &str| {
            could
                .get(key)
                .filter(|(_, of)| *of > 0)
                .map(|(got, of)| (*got as f64 / *of as f64).min(1.0))
        };
        run.coverage = coverage("");
        let mut run_latency = LiveHistogram::default();
        let mut run_lag = LiveHistogram::default();
        let (mut run_quota, mut run_quota_beats) = (0u64, 0u64);
        let mut warnings = Vec::new();
        if run.isolated > 0 {
            warnings.push(LiveWarning::NoLinks {
                peers: run.isolated,
                named: isolated_names,
            });
        }
        let window_s = (WINDOW_MS / 1000) as f64;
        for (name, f) in hosts.iter_mut() {
            f.coverage = coverage(name);
            let Some(h) = self.hosts.get(name) else {
                f.verdict = LiveVerdict::Unknown;
                continue;
            };
            let mut latency = LiveHistogram::default();
            let mut lag = LiveHistogram::default();
            let (mut quota, mut beats, mut received) = (0u64, 0u64, 0u64);
            for s in h.window(now_ms) {
                latency.merge(&s.latency);
                lag.merge(&s.lag);
                quota = quota.saturating_add(s.quota_permille);
                beats += s.quota_beats;
                received = received.saturating_add(s.received);
            }
            f.received_per_s = received as f64 / window_s;
            run.received_per_s += f.received_per_s;
            fill_window(f, &latency, &lag, quota, beats);
            run_latency.merge(&latency);
            run_lag.merge(&lag);
            run_quota = run_quota.saturating_add(quota);
            run_quota_beats += beats;
            let saturated_ms = h.saturated_for_ms(now_ms);
            if f.verdict == LiveVerdict::Saturated && saturated_ms > 0 {
                warnings.push(LiveWarning::Saturating {
                    host: name.clone(),
                    since_ms: saturated_ms,
                });
            }
        }
        fill_window(&mut run, &run_latency, &run_lag, run_quota, run_quota_beats);
        for (name, f) in &hosts {
            let lost = f.peers.get(&PeerState::Lost).copied().unwrap_or(0);
            let all: usize = f.peers.values().sum();
            if lost > 0 && lost == all {
                warnings.push(LiveWarning::HostLost { host: name.clone() });
            } else if lost > 0 {
                warnings.push(LiveWarning::HeartbeatsMissing {
                    host: name.clone(),
                    peers: lost,
                });
            }
        }
        let faults = elapsed_ms
            .map(|e| {
                self.faults
                    .iter()
                    .filter(|(_, _, from, until, _)| *from <= e && until.is_none_or(|u| e < u))
                    .map(|(id, action, _, until, peers)| ActiveFault {
                        id: id.clone(),
                        action: action.clone(),
                        until_ms: *until,
                        peers: *peers,
                    })
                    .collect()
            })
            .unwrap_or_default();
        LiveReport {
            at_unix_ms: now_ms,
            run,
            hosts,
            faults,
            warnings,
            ..Default::default()
        }
    }
}

/// A window's percentiles, lag, quota and verdict into `f`.
fn fill_window(
    f: &mut LiveFigures,
    latency: &LiveHistogram,
    lag: &LiveHistogram,
    quota_permille: u64,
    beats: u64,
) {
    f.p50_us = latency.quantile(0.5);
    f.p99_us = latency.quantile(0.99);
    f.lag_p99_us = lag.quantile(0.99);
    f.quota_used = (beats > 0).then(|| quota_permille as f64 / beats as f64 / 1000.0);
    f.verdict = LiveVerdict::of(f.lag_p99_us, f.quota_used);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(written: u64, received: u64, links_up: u32, lag_us: u64) -> LiveCounters {
        let mut lag = LiveHistogram::default();
        for _ in 0..20 {
            lag.record(lag_us);
        }
        let mut latency = LiveHistogram::default();
        latency.record(2_000);
        LiveCounters {
            written,
            received,
            origins: 1,
            links_up,
            links_wanted: 2,
            latency,
            lag,
            ..Default::default()
        }
    }

    fn view<'a>(peers: &'a [(&'a str, &'a str, PeerState)]) -> impl Iterator<Item = PeerView<'a>> {
        peers
            .iter()
            .map(|&(name, host, state)| PeerView { name, host, state })
    }

    #[test]
    fn figures_add_up_per_host_and_for_the_run() {
        let mut live = Live::default();
        live.observe("a", "h1", &counters(10, 15, 2, 100), 1_000);
        live.observe("b", "h1", &counters(10, 20, 2, 100), 1_200);
        live.observe("c", "h2", &counters(10, 5, 1, 100), 1_500);
        let peers = [
            ("a", "h1", PeerState::Running),
            ("b", "h1", PeerState::Running),
            ("c", "h2", PeerState::Running),
        ];
        let r = live.report(view(&peers), 2_000, Some(1_000));
        assert_eq!(r.run.written, 30);
        assert_eq!(r.run.received, 40);
        assert_eq!((r.run.links_up, r.run.links_wanted), (5, 6));
        assert_eq!(r.run.linked, 3);
        assert_eq!(r.hosts["h1"].received, 35);
        // Each could have had the 20 records the others wrote.
        assert_eq!(r.run.coverage, Some(40.0 / 60.0));
        assert_eq!(r.hosts["h2"].coverage, Some(5.0 / 20.0));
        assert!(r.run.p50_us.unwrap() >= 2_000);
        assert_eq!(r.run.verdict, LiveVerdict::Clean);
        assert!(
            (r.run.received_per_s - 4.0).abs() < 1e-9,
            "{}",
            r.run.received_per_s
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn received_per_second_counts_what_is_new_in_the_window() {
        let mut live = Live::default();
        live.observe("a", "h", &counters(0, 100, 1, 100), 1_000);
        live.observe("a", "h", &counters(0, 150, 1, 100), 2_000);
        let peers = [("a", "h", PeerState::Running)];
        let r = live.report(view(&peers), 2_000, Some(0));
        assert!((r.run.received_per_s - 15.0).abs() < 1e-9);
        // A window later, nothing new.
        let r = live.report(view(&peers), 2_000 + WINDOW_MS + 1_000, Some(0));
        assert_eq!(r.run.received_per_s, 0.0);
        assert_eq!(r.run.received, 150, "totals stay");
        // A restart counts from 0: what it has is new.
        live.observe("a", "h", &counters(0, 30, 1, 100), 20_000);
        let r = live.report(view(&peers), 20_000, Some(0));
        assert!((r.run.received_per_s - 3.0).abs() < 1e-9);
    }

    #[test]
    fn peers_without_links_are_isolated_only_after_the_grace() {
        let mut live = Live::default();
        live.observe("a", "h", &counters(1, 0, 0, 100), 1_000);
        live.observe("b", "h", &counters(1, 0, 0, 100), 1_000);
        let peers = [
            ("a", "h", PeerState::Running),
            ("b", "h", PeerState::Running),
        ];
        let early = live.report(view(&peers), 1_000, Some(ISOLATED_AFTER_MS - 1));
        assert_eq!(early.run.isolated, 0);
        let late = live.report(view(&peers), 1_000, Some(ISOLATED_AFTER_MS));
        assert_eq!(late.run.isolated, 2);
        assert!(
            matches!(&late.warnings[0], LiveWarning::NoLinks { peers: 2, named } if named.len() == 2)
        );
        assert!(late
            .abort_reason(cmesh_common::live::AbortOn::Isolated)
            .is_some());
    }

    #[test]
    fn a_host_saturated_without_a_break_says_for_how_long() {
        let mut live = Live::default();
        let peers = [
            ("a", "h", PeerState::Running),
            ("b", "g", PeerState::Running),
        ];
        for s in 0..30u64 {
            let lag = if s < 5 { 100 } else { 80_000 };
            live.observe("a", "h", &counters(1, 1, 1, lag), s * 1000 + 500);
            live.observe("b", "g", &counters(1, 1, 1, 100), s * 1000 + 500);
        }
        let r = live.report(view(&peers), 29_900, Some(29_000));
        assert_eq!(r.hosts["h"].verdict, LiveVerdict::Saturated);
        assert_eq!(r.hosts["g"].verdict, LiveVerdict::Clean);
        let since = r
            .warnings
            .iter()
            .find_map(|w| match w {
                LiveWarning::Saturating { host, since_ms } if host == "h" => Some(*since_ms),
                _ => None,
            })
            .expect("a saturation warning");
        assert_eq!(since, 24_900);
        assert!(r
            .abort_reason(cmesh_common::live::AbortOn::Saturated)
            .unwrap()
            .contains("host h"));
    }

    #[test]
    fn lost_peers_and_lost_hosts_are_warned_of_and_faults_shown_while_they_act() {
        let mut live = Live::default();
        live.fault("plan#1".into(), "partition", 8_000, Some(18_000), 10);
        let peers = [
            ("a", "h", PeerState::Lost),
            ("b", "h", PeerState::Running),
            ("c", "g", PeerState::Lost),
        ];
        let r = live.report(view(&peers), 0, Some(10_000));
        assert!(r.warnings.contains(&LiveWarning::HeartbeatsMissing {
            host: "h".into(),
            peers: 1
        }));
        assert!(r
            .warnings
            .contains(&LiveWarning::HostLost { host: "g".into() }));
        assert_eq!(r.faults.len(), 1);
        assert_eq!(r.faults[0].id, "plan#1");
        assert!(live.report(view(&peers), 0, Some(18_000)).faults.is_empty());
        assert!(live.report(view(&peers), 0, None).faults.is_empty());
    }
}
