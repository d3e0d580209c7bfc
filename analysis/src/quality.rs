//! Is the run measuring the network, or its own hosts? The measurement-quality verdict.
//!
//! A peer's latency figures are only as good as its host's ability to run it on time.
//! When a host's CPUs are saturated (too many peers per core) or a container's CPU quota
//! is spent, every timer, write and read is late, and that queueing reads as "network
//! latency". This module weighs the evidence the peers and the coordinator left and gives
//! a verdict, per host and for the run:
//!
//! | evidence | from | degraded at | saturated at |
//! |---|---|---|---|
//! | scheduling lag p99 (how late a periodic timer fires) | each peer, merged per host | [`LAG_DEGRADED_US`] | [`LAG_SATURATED_US`] |
//! | windows whose merged lag p99 reached those lines | each peer, per window | in ≥ [`WINDOWS_AFFECTED`] of the host's windows | in ≥ [`WINDOWS_AFFECTED`] of them |
//! | records received in such windows (by arrival) | each peer, per window | ≥ [`DELIVERIES_AFFECTED`] of the host's deliveries | ≥ [`DELIVERIES_AFFECTED`] of them |
//! | writes late against the plan (more than 100 ms) | each peer's write probes | [`LATE_DEGRADED`] of writes | [`LATE_SATURATED`] of writes |
//! | peers the coordinator declared lost (missed heartbeats) that still reported | coordinator.json | | any one |
//! | host CPU busy ≥ [`CPU_BUSY_PERMILLE`]‰ | /proc/stat, per window | in ≥ [`CPU_BUSY_WINDOWS`] of the windows | |
//! | time throttled by a CPU quota | each container's cgroup | ≥ [`THROTTLED_DEGRADED`] of its CPU time | |
//! | the CPU quota used (CPU time against quota × time) | each peer, per window | [`QUOTA_DEGRADED`] | [`QUOTA_SATURATED`] |
//!
//! A host's verdict is the worst its evidence reaches; the run's is the worst host's, or
//! worse when the run-wide evidence (late writes, starved heartbeats) says so. Peers
//! paused, killed or restarted on purpose are left out of the heartbeat evidence: their
//! silence was the plan's. The lag thresholds sit well above tokio's 1 ms timer
//! granularity (an idle host's p99 is about 1 ms) and the scheduler's own period (a few
//! ms with dozens of processes), and below the 100 ms availability
//! deadline, which a saturated host misses. The window rule catches stalls that come in
//! bursts: a peer under a small CPU quota keeps up on average but stalls for a few
//! periods whenever it needs more at once; in those windows its figures measure the
//! host, though the run's p99 may not show it. Under a quota the lag itself levels off
//! near the scheduler's period (100 ms, less the quota), so the share of the quota used
//! says how saturated a quota'd peer is: a peer that used all it was allowed wanted more.
//!
//! The deliveries rule weighs the windows by what was measured in them. With writes
//! sparse enough, most windows are quiet and the run's lag p99 looks clean, while every
//! record still reaches a thousand peers in one burst that queues them on the host's
//! CPUs (measured: 1000 peers on 2 CPUs, 72 records in 4 minutes; lag p99 of 100 to
//! 300 ms in the windows the records crossed). A record's latency is as good as the
//! host was when it arrived, so what counts is how many records arrived in a bad window.
//!
//! Windows are listed where a host's merged lag p99 reached [`LAG_DEGRADED_US`], so a
//! user sees *when* the harness was measuring itself (the start burst, a fault, the
//! teardown) as well as *whether*.

use crate::table::ms;
use crate::windows::{host_of, Windows};
use cmesh_common::histogram::{LatencyHistogram, LatencySummary};
use cmesh_common::protocol::StatusReport;
use cmesh_common::report::PeerReport;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

// The lag lines: Linux's scheduler gives every runnable task a turn within its latency
// period (6 ms × (1 + log2 CPUs): 12 ms on 2 CPUs), so a host with dozens of peer
// processes sees a few ms of lag at p99 while it keeps up: measured here, 40 peers
// writing every 5 to 10 s on 2 CPUs read 3.2 and 5.4 ms in two runs. Past 10 ms
// (LAG_DEGRADED_US), tasks wait longer than the scheduler's period: the host is short of
// CPU. The lines live in `cmesh_common::live`, so the live verdict a run shows while it
// goes draws them where this one does.
pub use cmesh_common::live::{LAG_DEGRADED_US, LAG_SATURATED_US, QUOTA_DEGRADED, QUOTA_SATURATED};
/// Fraction of writes late by more than the availability deadline: degraded.
pub const LATE_DEGRADED: f64 = 0.01;
/// Fraction of writes late by more than the availability deadline: saturated.
pub const LATE_SATURATED: f64 = 0.10;
/// Fraction of a host's windows past a lag line from which the host is past it too.
pub const WINDOWS_AFFECTED: f64 = 0.10;
/// Fraction of a host's deliveries (records first received) that arrived in windows
/// past a lag line, from which the host is past it too.
pub const DELIVERIES_AFFECTED: f64 = 0.10;
/// Host CPU busy from this per mille counts as a busy window.
pub const CPU_BUSY_PERMILLE: u16 = 900;
/// Fraction of a host's windows busy from which it is degraded.
pub const CPU_BUSY_WINDOWS: f64 = 0.25;
/// Time throttled, against the CPU the peers used, from which a host is degraded.
pub const THROTTLED_DEGRADED: f64 = 0.10;
/// Affected windows listed at most (the count says how many there were).
const MAX_WINDOWS_LISTED: usize = 60;
/// Peers named at most in a reason.
const MAX_NAMED: usize = 5;

/// How far the run's numbers can be trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The hosts kept up: the figures measure the system under test.
    #[default]
    Clean,
    /// The hosts were under pressure: latency figures include some host queueing.
    Degraded,
    /// The hosts could not keep up: latency figures measure the hosts.
    Saturated,
    /// The reports carry no evidence (no scheduling lag, no CPU): nothing can be said.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Degraded => "degraded",
            Verdict::Saturated => "saturated",
            Verdict::Unknown => "unknown",
        }
    }

    fn of_lag(p99_us: u64) -> Verdict {
        if p99_us >= LAG_SATURATED_US {
            Verdict::Saturated
        } else if p99_us >= LAG_DEGRADED_US {
            Verdict::Degraded
        } else {
            Verdict::Clean
        }
    }
}

/// One host's evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostQuality {
    pub host: String,
    pub peers: usize,
    /// CPUs the host has, as its peers read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// The peers' CPU quota, in CPUs each, if they had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_quota_cpus: Option<f64>,
    /// Its peers' scheduling lag, merged.
    pub scheduling_lag: LatencySummary,
    /// Host CPU busy per mille, median and highest over the windows (absent where it
    /// could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy_p50_permille: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy_max_permille: Option<u16>,
    /// Windows with the host's CPU busy from [`CPU_BUSY_PERMILLE`], of those sampled.
    pub cpu_busy_windows: usize,
    pub cpu_windows: usize,
    /// The peers' own CPU time, all of them, ms, from the plan's start (their start-up
    /// before it left out).
    pub peer_cpu_ms: u64,
    /// The share of their CPU quota the peers used over the same time (absent without a
    /// quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_used: Option<f64>,
    /// Time their CPU quota throttled them over the same time, ms, where their cgroups
    /// said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_ms: Option<u64>,
    pub verdict: Verdict,
}

/// A window in which a host's lag reached [`LAG_DEGRADED_US`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowQuality {
    pub window: u32,
    pub host: String,
    pub scheduling_lag_p99_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy_permille: Option<u16>,
    pub verdict: Verdict,
}

/// Writes made against the plan's schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteTiming {
    pub writes: u64,
    /// Writes that happened more than the availability deadline after they were due.
    pub late: u64,
    pub late_fraction: f64,
    pub deadline_ms: u64,
}

/// What the coordinator's liveness said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeats {
    /// Whether coordinator.json could be read.
    pub known: bool,
    /// Peers the coordinator declared lost at least once for missed heartbeats.
    pub declared_lost: usize,
    /// Of those, peers that still sent a report (not paused or killed on purpose): their
    /// heartbeats starved while they ran.
    pub starved: usize,
    /// The first few of them, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starved_peers: Vec<String>,
}

/// `measurement_quality` in summary.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasurementQuality {
    pub verdict: Verdict,
    /// The rule the verdict follows, in words.
    pub rule: String,
    /// What made it worse than clean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// What to change for cleaner numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advice: Vec<String>,
    /// Every peer's scheduling lag, merged.
    pub scheduling_lag: LatencySummary,
    pub writes: WriteTiming,
    pub heartbeats: Heartbeats,
    /// Peers with none of their links up when writing started (not those cut off on
    /// purpose by a fault or `launcher chaos`).
    #[serde(default)]
    pub isolated_at_start: usize,
    pub hosts: Vec<HostQuality>,
    /// Windows (and hosts) whose lag reached [`LAG_DEGRADED_US`], the first
    /// [`MAX_WINDOWS_LISTED`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowQuality>,
    pub windows_affected: usize,
}

/// What [`assess`] weighs.
pub struct Evidence<'a> {
    /// The reports that passed validation, by peer name.
    pub reports: &'a BTreeMap<String, PeerReport>,
    /// Each peer's host, from the manifest.
    pub host_of: &'a BTreeMap<String, String>,
    /// The coordinator's final status, if its report was extracted.
    pub coordinator: Option<&'a StatusReport>,
    /// Peers paused, killed or restarted on purpose.
    pub disturbed: &'a BTreeSet<String>,
    /// The plan's pause between two writes of a peer, ms.
    pub write_interval_ms: (u64, u64),
    /// The reports' windows, folded as they were read (their scheduling-lag windows
    /// may have been taken out of them).
    pub windows: &'a Windows,
}

fn pct(f: f64) -> String {
    format!("{:.1}%", 100.0 * f)
}

/// Names, the first [`MAX_NAMED`], then how many more.
pub(crate) fn named(list: &[String]) -> String {
    let mut s = list
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > MAX_NAMED {
        s.push_str(&format!(" and {} more", list.len() - MAX_NAMED));
    }
    s
}

#[derive(Default)]
struct HostAcc {
    peers: usize,
    cpus: Option<u32>,
    quota: Option<f64>,
    lag: LatencyHistogram,
    lag_windows: BTreeMap<u32, LatencyHistogram>,
    /// Window → the host's busy per mille as each of its peers read it.
    busy: BTreeMap<usize, Vec<u16>>,
    /// Window → records its peers first received in it (by arrival).
    received: BTreeMap<u32, u64>,
    cpu_us: u64,
    throttled_us: Option<u64>,
    /// CPU used by peers with a quota, and what their quotas allowed over the same
    /// windows, µs.
    quota_used_us: u64,
    quota_allowed_us: f64,
}

/// The verdict for a run's reports.
pub fn assess(e: &Evidence) -> MeasurementQuality {
    let mut hosts: BTreeMap<String, HostAcc> = BTreeMap::new();
    let mut all_lag = LatencyHistogram::coarse();
    let mut writes = WriteTiming::default();
    for (name, r) in e.reports {
        let acc = hosts
            .entry(host_of(e.host_of, name, r))
            .or_insert_with(|| HostAcc {
                lag: LatencyHistogram::coarse(),
                ..HostAcc::default()
            });
        acc.peers += 1;
        if let Some(h) = r
            .scheduling_lag
            .as_ref()
            .and_then(|l| LatencyHistogram::decode(&l.histogram).ok())
        {
            acc.lag.merge(&h);
            all_lag.merge(&h);
        }
        if let Some(c) = &r.cpu {
            acc.cpus = acc.cpus.max(Some(c.host_cpus)).filter(|&n| n > 0);
            acc.quota = c.quota_cpus.or(acc.quota);
        }
        // CPU used and throttled from the plan's start on, where the measuring is (the
        // process's start-up before it is not); the whole-run totals without series.
        let series = r.time_series.as_ref().and_then(|s| s.cpu.as_ref());
        match (series, &r.cpu) {
            (Some(s), _) => {
                let used = s.process_us.iter().sum::<u64>();
                acc.cpu_us += used;
                let window_us = r.time_series.as_ref().map_or(0, |t| t.window_ms) * 1000;
                if let Some(q) = r.cpu.as_ref().and_then(|c| c.quota_cpus) {
                    acc.quota_used_us += used;
                    acc.quota_allowed_us += q * (s.process_us.len() as u64 * window_us) as f64;
                }
                if !s.throttled_us.is_empty() {
                    *acc.throttled_us.get_or_insert(0) += s.throttled_us.iter().sum::<u64>();
                }
            }
            (None, Some(c)) => {
                acc.cpu_us += c.process_us;
                if let Some(t) = c.throttled_us {
                    *acc.throttled_us.get_or_insert(0) += t;
                }
            }
            (None, None) => {}
        }
        if let Some(s) = &r.time_series {
            if let Some(c) = &s.cpu {
                for (i, &b) in c.host_busy_permille.iter().enumerate() {
                    acc.busy.entry(i).or_default().push(b);
                }
            }
            for (i, &n) in s.received.iter().enumerate() {
                *acc.received.entry(i as u32).or_default() += n;
            }
        }
        if let Some(a) = &r.availability {
            writes.writes += a.write_probes;
            writes.late += a.write_probes.saturating_sub(a.write_ok);
            writes.deadline_ms = a.deadline_ms;
        }
    }
    writes.late_fraction = if writes.writes == 0 {
        0.0
    } else {
        writes.late as f64 / writes.writes as f64
    };

    // Scheduling lag per host and window, from the fold.
    for ((_, host), by_window) in &e.windows.lag {
        if let Some(acc) = hosts.get_mut(host) {
            for (window, h) in by_window {
                acc.lag_windows
                    .entry(*window)
                    .or_insert_with(LatencyHistogram::coarse)
                    .merge(h);
            }
        }
    }
    let mut reasons = Vec::new();
    let mut advice = Vec::new();
    let mut windows = Vec::new();
    let mut host_rows = Vec::new();
    for (host, acc) in &hosts {
        let lag = acc.lag.summary();
        let mut verdict = Verdict::of_lag(lag.p99_us);
        let on_cpus = match (acc.quota, acc.cpus) {
            (Some(q), _) => format!(" with a CPU quota of {q} each"),
            (None, Some(c)) => format!(" on {c} CPUs"),
            (None, None) => String::new(),
        };
        if verdict > Verdict::Clean {
            reasons.push(format!(
                "host {host}: the peers' timers fired up to {} late (p99; max {}): {} peers{on_cpus} were waiting for CPU",
                ms(lag.p99_us),
                ms(lag.max_us),
                acc.peers,
            ));
        }
        // Per window: the merged p99 of each window's samples.
        let per_window: Vec<(u32, Verdict, u64)> = acc
            .lag_windows
            .iter()
            .map(|(&w, h)| {
                let p99 = h.summary().p99_us;
                (w, Verdict::of_lag(p99), p99)
            })
            .collect();
        let sampled = per_window.len();
        let at_least = |v: Verdict| per_window.iter().filter(|(_, wv, _)| *wv >= v).count();
        for v in [Verdict::Saturated, Verdict::Degraded] {
            let n = at_least(v);
            if sampled > 0 && n as f64 >= WINDOWS_AFFECTED * sampled as f64 && verdict < v {
                verdict = v;
                reasons.push(format!(
                    "host {host}: in {n} of {sampled} windows the peers' timers fired {} ms late or more (p99 of the window): {} peers{on_cpus} stalled in bursts",
                    if v == Verdict::Saturated { LAG_SATURATED_US } else { LAG_DEGRADED_US } / 1000,
                    acc.peers,
                ));
                break;
            }
        }
        // The records that arrived in bad windows: their latency includes the queueing.
        let delivered: u64 = acc.received.values().sum();
        for v in [Verdict::Saturated, Verdict::Degraded] {
            let in_bad: u64 = per_window
                .iter()
                .filter(|(_, wv, _)| *wv >= v)
                .map(|(w, _, _)| acc.received.get(w).copied().unwrap_or(0))
                .sum();
            if delivered > 0
                && in_bad as f64 >= DELIVERIES_AFFECTED * delivered as f64
                && verdict < v
            {
                verdict = v;
                reasons.push(format!(
                    "host {host}: {} of the records its peers received ({in_bad} of {delivered}) arrived in windows in which their timers fired {} ms late or more (p99): those latencies include waiting for CPU",
                    pct(in_bad as f64 / delivered as f64),
                    if v == Verdict::Saturated { LAG_SATURATED_US } else { LAG_DEGRADED_US } / 1000,
                ));
                break;
            }
        }
        // The host's busy fraction per window: the median of what its peers read.
        let busy: Vec<u16> = acc
            .busy
            .values()
            .map(|v| {
                let mut v = v.clone();
                v.sort_unstable();
                v[v.len() / 2]
            })
            .collect();
        let busy_windows = busy.iter().filter(|&&b| b >= CPU_BUSY_PERMILLE).count();
        let mut sorted = busy.clone();
        sorted.sort_unstable();
        if !busy.is_empty() && busy_windows as f64 >= CPU_BUSY_WINDOWS * busy.len() as f64 {
            verdict = verdict.max(Verdict::Degraded);
            reasons.push(format!(
                "host {host}: its CPUs were {}‰ busy or more in {busy_windows} of {} windows",
                CPU_BUSY_PERMILLE,
                busy.len()
            ));
        }
        let quota_used =
            (acc.quota_allowed_us > 0.0).then(|| acc.quota_used_us as f64 / acc.quota_allowed_us);
        if let Some(u) = quota_used.filter(|&u| u >= QUOTA_DEGRADED) {
            let v = if u >= QUOTA_SATURATED {
                Verdict::Saturated
            } else {
                Verdict::Degraded
            };
            verdict = verdict.max(v);
            reasons.push(format!(
                "host {host}: the peers used {} of their CPU quota{} from the start of the plan{}",
                pct(u),
                acc.quota
                    .map_or_else(String::new, |q| format!(" ({q} CPUs each)")),
                if v == Verdict::Saturated {
                    ": they wanted more than it allows"
                } else {
                    ""
                }
            ));
        }
        let throttled = acc
            .throttled_us
            .filter(|&t| acc.cpu_us > 0 && t as f64 >= THROTTLED_DEGRADED * acc.cpu_us as f64);
        if let Some(t) = throttled {
            verdict = verdict.max(Verdict::Degraded);
            reasons.push(format!(
                "host {host}: the peers' CPU quota{} held them back for {} while they used {} of CPU (from the start of the plan)",
                acc.quota
                    .map_or_else(String::new, |q| format!(" ({q} CPUs each)")),
                ms(t),
                ms(acc.cpu_us)
            ));
        }
        for &(w, v, p99) in per_window.iter().filter(|(_, v, _)| *v > Verdict::Clean) {
            windows.push(WindowQuality {
                window: w,
                host: host.clone(),
                scheduling_lag_p99_us: p99,
                cpu_busy_permille: busy.get(w as usize).copied(),
                verdict: v,
            });
        }
        host_rows.push(HostQuality {
            host: host.clone(),
            peers: acc.peers,
            cpus: acc.cpus,
            peer_quota_cpus: acc.quota,
            scheduling_lag: lag,
            cpu_busy_p50_permille: sorted.get(sorted.len() / 2).copied(),
            cpu_busy_max_permille: sorted.last().copied(),
            cpu_busy_windows: busy_windows,
            cpu_windows: busy.len(),
            peer_cpu_ms: acc.cpu_us / 1000,
            quota_used,
            throttled_ms: acc.throttled_us.map(|t| t / 1000),
            verdict,
        });
    }
    let mut verdict = host_rows
        .iter()
        .map(|h| h.verdict)
        .max()
        .unwrap_or_default();
    let evidence = all_lag.count() > 0 || e.reports.values().any(|r| r.cpu.is_some());

    if writes.late_fraction >= LATE_DEGRADED {
        let v = if writes.late_fraction >= LATE_SATURATED {
            Verdict::Saturated
        } else {
            Verdict::Degraded
        };
        verdict = verdict.max(v);
        reasons.push(format!(
            "{} of {} writes ({}) happened more than {} ms after the plan had them due",
            writes.late,
            writes.writes,
            pct(writes.late_fraction),
            writes.deadline_ms
        ));
    }

    let heartbeats = match e.coordinator {
        None => Heartbeats::default(),
        Some(status) => {
            let lost: Vec<&str> = status
                .peers
                .iter()
                .filter(|p| p.times_lost > 0)
                .map(|p| p.peer.as_str())
                .collect();
            let starved: Vec<String> = lost
                .iter()
                .filter(|p| e.reports.contains_key(**p) && !e.disturbed.contains(**p))
                .map(|p| p.to_string())
                .collect();
            Heartbeats {
                known: true,
                declared_lost: lost.len(),
                starved: starved.len(),
                starved_peers: starved.into_iter().take(MAX_NAMED * 4).collect(),
            }
        }
    };
    if heartbeats.starved > 0 {
        verdict = Verdict::Saturated;
        reasons.push(format!(
            "the coordinator declared {} peers lost for missed heartbeats that were running all along and reported ({}): their heartbeats starved",
            heartbeats.starved,
            named(&heartbeats.starved_peers)
        ));
    }

    let isolated: Vec<String> = e
        .reports
        .iter()
        .filter(|(name, r)| {
            r.links_at_start.is_some_and(|l| l.isolated()) && !e.disturbed.contains(name.as_str())
        })
        .map(|(name, _)| name.clone())
        .collect();
    if !isolated.is_empty() {
        verdict = verdict.max(Verdict::Degraded);
        reasons.push(format!(
            "{} peers had none of their links up when writing started ({}): their first records waited for a link",
            isolated.len(),
            named(&isolated)
        ));
    }

    if verdict == Verdict::Clean && !evidence {
        verdict = Verdict::Unknown;
        reasons.push("no report carries a scheduling lag or CPU figures (a peer image older than this launcher, or another backend's): whether the hosts kept up is not known".into());
    }
    if matches!(verdict, Verdict::Degraded | Verdict::Saturated) {
        let worst = host_rows
            .iter()
            .max_by_key(|h| (h.verdict, h.scheduling_lag.p99_us))
            .filter(|h| h.verdict > Verdict::Clean);
        if let Some(h) = worst {
            match (h.cpus, h.peer_quota_cpus) {
                (_, Some(q)) if h.throttled_ms.is_some_and(|t| t > 0) => advice.push(format!(
                    "The peers' CPU quota ({q} CPUs each, `--peer-cpus`) limits them: raise it for network figures, or keep it and read the latency as a small device's."
                )),
                (Some(c), _) => advice.push(format!(
                    "Run fewer peers per host: host {} ran {} peers on {c} CPUs ({:.0} per CPU); {}, or spread the run over more hosts (`--hosts`).",
                    h.host,
                    h.peers,
                    h.peers as f64 / f64::from(c),
                    match suggested_peers(h) {
                        Some(n) => format!("try at most {n} there"),
                        None => "its CPUs were pegged, so how far over it was is not known: at least halve them".into(),
                    },
                )),
                _ => advice.push(format!(
                    "Run fewer peers per host (host {} ran {}), or spread the run over more hosts (`--hosts`).",
                    h.host, h.peers
                )),
            }
        }
        let (lo, hi) = e.write_interval_ms;
        advice.push(format!(
            "Or write less often: `--write-interval {}..{}` (this run: {lo}..{hi} ms between a peer's writes) halves the work per peer.",
            lo.saturating_mul(2).max(1),
            hi.saturating_mul(2).max(1)
        ));
    }

    windows.sort_by(|a, b| (a.window, &a.host).cmp(&(b.window, &b.host)));
    let windows_affected = windows.len();
    windows.truncate(MAX_WINDOWS_LISTED);
    MeasurementQuality {
        verdict,
        rule: format!(
            "saturated when a host's scheduling lag p99 reaches {} ms over the run or in {} of its windows, its peers used {} of their CPU quota, {} of writes are more than the availability deadline late, or the coordinator declared running peers lost; degraded when the lag p99 reaches {} ms (over the run or in {} of the windows), {} of writes are late, a host's CPUs are {}‰ busy in {} of the windows, its peers used {} of their CPU quota, or it throttled them for {} of their CPU time; clean otherwise",
            LAG_SATURATED_US / 1000,
            pct(WINDOWS_AFFECTED),
            pct(QUOTA_SATURATED),
            pct(LATE_SATURATED),
            LAG_DEGRADED_US / 1000,
            pct(WINDOWS_AFFECTED),
            pct(LATE_DEGRADED),
            CPU_BUSY_PERMILLE,
            pct(CPU_BUSY_WINDOWS),
            pct(QUOTA_DEGRADED),
            pct(THROTTLED_DEGRADED),
        ),
        reasons,
        advice,
        scheduling_lag: all_lag.summary(),
        writes,
        heartbeats,
        isolated_at_start: isolated.len(),
        hosts: host_rows,
        windows,
        windows_affected,
    }
}

/// How many peers host `h` might run with its busiest window at 70% busy, where that can
/// be known: every peer receives every record of the run, so with the run spread over
/// more hosts a host's work goes with its own peers. A host whose CPUs were pegged
/// (95% or more) says only that the demand was higher, not how much: `None`.
fn suggested_peers(h: &HostQuality) -> Option<usize> {
    let busy = h.cpu_busy_max_permille.filter(|&b| b > 0 && b < 950)?;
    let n = (h.peers as f64 * 700.0 / f64::from(busy)).floor() as usize;
    Some(n.clamp(1, h.peers.saturating_sub(1).max(1)))
}

/// The verdict as the first lines of summary.md: what it is, why, what to change.
pub fn to_markdown(q: &MeasurementQuality) -> String {
    let mut out = format!("**Measurement quality: {}.** ", q.verdict.as_str());
    out.push_str(match q.verdict {
        Verdict::Clean => "The hosts kept up: the latency below measures the system under test.\n",
        Verdict::Degraded => "The hosts were under pressure: the latency below includes some of their own queueing.\n",
        Verdict::Saturated => "The hosts could not keep up: the latency below measures them more than the network. Do not compare it with other runs.\n",
        Verdict::Unknown => "Nothing says whether the hosts kept up.\n",
    });
    for r in &q.reasons {
        out.push_str(&format!("- {r}\n"));
    }
    for a in &q.advice {
        out.push_str(&format!("- To do: {a}\n"));
    }
    out.push('\n');
    out
}

/// The evidence in detail, per host and per affected window (further down summary.md).
pub fn details_markdown(q: &MeasurementQuality) -> String {
    use crate::table::markdown;
    let mut out = String::from("\n## Measurement quality\n\n");
    out.push_str(&format!("Rule: {}.\n\n", q.rule));
    let permille = |p: Option<u16>| {
        p.map_or_else(
            || "–".to_owned(),
            |p| format!("{:.0}%", f64::from(p) / 10.0),
        )
    };
    let rows: Vec<Vec<String>> = q
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                h.verdict.as_str().into(),
                h.peers.to_string(),
                h.cpus.map_or_else(|| "–".into(), |c| c.to_string()),
                ms(h.scheduling_lag.p50_us),
                ms(h.scheduling_lag.p99_us),
                ms(h.scheduling_lag.max_us),
                permille(h.cpu_busy_p50_permille),
                permille(h.cpu_busy_max_permille),
                format!("{} ms", h.peer_cpu_ms),
                h.quota_used.map_or_else(|| "–".into(), pct),
                h.throttled_ms
                    .map_or_else(|| "–".into(), |t| format!("{t} ms")),
            ]
        })
        .collect();
    out.push_str(&markdown(
        [
            "host",
            "verdict",
            "peers",
            "CPUs",
            "lag p50",
            "lag p99",
            "lag max",
            "CPU busy p50",
            "CPU busy max",
            "peers' CPU",
            "of quota",
            "throttled",
        ],
        &rows,
    ));
    out.push_str(&format!(
        "\nWrites: {} of {} more than {} ms late ({}). Heartbeats: {}.\n",
        q.writes.late,
        q.writes.writes,
        q.writes.deadline_ms,
        pct(q.writes.late_fraction),
        if q.heartbeats.known {
            format!(
                "the coordinator declared {} peers lost, {} of them still reported",
                q.heartbeats.declared_lost, q.heartbeats.starved
            )
        } else {
            "unknown (no coordinator report)".to_owned()
        }
    ));
    if q.windows_affected > 0 {
        out.push_str(&format!(
            "\nWindows with a lag p99 of {} ms or more ({}{}):\n\n",
            LAG_DEGRADED_US / 1000,
            q.windows_affected,
            if q.windows_affected > q.windows.len() {
                format!(", the first {} listed", q.windows.len())
            } else {
                String::new()
            }
        ));
        let rows: Vec<Vec<String>> = q
            .windows
            .iter()
            .map(|w| {
                vec![
                    w.window.to_string(),
                    w.host.clone(),
                    ms(w.scheduling_lag_p99_us),
                    permille(w.cpu_busy_permille),
                    w.verdict.as_str().into(),
                ]
            })
            .collect();
        out.push_str(&markdown(
            ["window", "host", "lag p99", "CPU busy", "verdict"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::lifecycle::{PeerState, RunPhase};
    use cmesh_common::protocol::PeerStatus;
    use cmesh_common::report::{Availability, CpuSeries, CpuUsage, LatencyReport, TimeSeries};

    fn lag_report(samples_us: &[u64]) -> LatencyReport {
        let mut h = LatencyHistogram::coarse();
        for &s in samples_us {
            h.record(s);
        }
        LatencyReport {
            summary: h.summary(),
            histogram: h.encode(),
            ..LatencyReport::default()
        }
    }

    fn peer(name: &str, lag_us: u64, busy: u16, late: u64) -> PeerReport {
        let mut r = PeerReport::new(name, "mesh", 0);
        r.scheduling_lag = Some(lag_report(&[lag_us; 100]));
        let window = cmesh_common::report::WindowLatency {
            window: 2,
            count: 100,
            p50_us: lag_us,
            p99_us: lag_us,
            max_us: lag_us,
            histogram: lag_report(&[lag_us; 100]).histogram,
            negative_histogram: None,
        };
        r.time_series = Some(TimeSeries {
            scheduling_lag: vec![window],
            cpu: Some(CpuSeries {
                host_busy_permille: vec![busy; 4],
                process_us: vec![1000; 4],
                throttled_us: Vec::new(),
            }),
            ..TimeSeries::default()
        });
        r.cpu = Some(CpuUsage {
            process_us: 4000,
            throttled_us: None,
            quota_cpus: None,
            host_cpus: 2,
        });
        r.availability = Some(Availability {
            deadline_ms: 100,
            write_probes: 100,
            write_ok: 100 - late,
            read_probes: 100,
            read_ok: 100,
        });
        r
    }

    fn assess_of(
        reports: Vec<PeerReport>,
        coordinator: Option<&StatusReport>,
        disturbed: &BTreeSet<String>,
    ) -> MeasurementQuality {
        let host_of: BTreeMap<String, String> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| (r.peer.clone(), format!("h{}", i % 2 + 1)))
            .collect();
        let mut reports: BTreeMap<String, PeerReport> =
            reports.into_iter().map(|r| (r.peer.clone(), r)).collect();
        // As analyze takes them in: windows folded and taken out of the reports.
        let mut windows = Windows::default();
        for (name, r) in reports.iter_mut() {
            windows.add(r, &host_of[name]);
            Windows::strip(r);
        }
        assess(&Evidence {
            reports: &reports,
            host_of: &host_of,
            coordinator,
            disturbed,
            write_interval_ms: (200, 500),
            windows: &windows,
        })
    }

    #[test]
    fn a_quiet_run_is_clean_with_nothing_to_do() {
        let q = assess_of(
            (0..4)
                .map(|i| peer(&format!("p{i}"), 900, 300, 0))
                .collect(),
            None,
            &BTreeSet::new(),
        );
        assert_eq!(q.verdict, Verdict::Clean, "{q:?}");
        assert!(q.reasons.is_empty() && q.advice.is_empty());
        assert_eq!(q.hosts.len(), 2);
        assert_eq!(q.hosts[0].cpus, Some(2));
        assert_eq!(q.hosts[0].cpu_busy_p50_permille, Some(300));
        assert_eq!(q.windows_affected, 0);
        assert!(to_markdown(&q).starts_with("**Measurement quality: clean.**"));
    }

    #[test]
    fn peers_isolated_when_writing_started_degrade_a_quiet_run_unless_cut_on_purpose() {
        let mut reports: Vec<PeerReport> = (0..4)
            .map(|i| peer(&format!("p{i}"), 900, 300, 0))
            .collect();
        for (i, r) in reports.iter_mut().enumerate() {
            r.links_at_start = Some(cmesh_common::report::LinkCount {
                up: u32::from(i != 1),
                wanted: 2,
            });
        }
        let q = assess_of(reports.clone(), None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Degraded, "{q:?}");
        assert_eq!(q.isolated_at_start, 1);
        assert!(
            q.reasons
                .iter()
                .any(|r| r.contains("1 peers had none of their links up when writing started (p1)")),
            "{q:?}"
        );
        let cut = BTreeSet::from(["p1".to_string()]);
        let q = assess_of(reports, None, &cut);
        assert_eq!((q.verdict, q.isolated_at_start), (Verdict::Clean, 0));
    }

    #[test]
    fn lag_on_one_host_degrades_or_saturates_the_run_and_names_the_window() {
        let mut reports: Vec<PeerReport> = (0..4)
            .map(|i| peer(&format!("p{i}"), 900, 300, 0))
            .collect();
        // p0 and p2 are on h1.
        reports[0] = peer("p0", 20_000, 900, 0);
        reports[2] = peer("p2", 20_000, 900, 0);
        let q = assess_of(reports.clone(), None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Degraded, "{q:?}");
        assert_eq!(q.hosts[0].verdict, Verdict::Degraded);
        assert_eq!(q.hosts[1].verdict, Verdict::Clean);
        assert!(q
            .reasons
            .iter()
            .any(|r| r.contains("host h1") && r.contains("late")));
        assert!(q
            .reasons
            .iter()
            .any(|r| r.contains("950‰") || r.contains("busy")));
        assert_eq!(q.windows_affected, 1);
        assert_eq!((q.windows[0].window, q.windows[0].host.as_str()), (2, "h1"));
        assert_eq!(q.windows[0].cpu_busy_permille, Some(900));
        assert!(q.advice.iter().any(|a| a.contains("fewer peers per host")
            && a.contains("h1")
            && a.contains("try at most 1 there")));
        assert!(q
            .advice
            .iter()
            .any(|a| a.contains("--write-interval 400..1000")));
        reports[0] = peer("p0", 80_000, 1000, 0);
        reports[2] = peer("p2", 80_000, 1000, 0);
        let q = assess_of(reports, None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Saturated);
        assert!(
            q.advice[0].contains("pegged") && q.advice[0].contains("at least halve"),
            "a host at 100% gives no number: {:?}",
            q.advice
        );
        let md = to_markdown(&q);
        assert!(
            md.starts_with("**Measurement quality: saturated.**"),
            "{md}"
        );
        assert!(md.contains("To do:"), "{md}");
        assert!(
            details_markdown(&q).contains("| h1 "),
            "{}",
            details_markdown(&q)
        );
    }

    #[test]
    fn late_writes_and_starved_heartbeats_are_evidence_but_a_planned_pause_is_not() {
        let reports: Vec<PeerReport> = (0..4)
            .map(|i| peer(&format!("p{i}"), 900, 300, 3))
            .collect();
        let q = assess_of(reports.clone(), None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Degraded, "3% of writes late");
        assert_eq!((q.writes.late, q.writes.writes), (12, 400));
        let fine: Vec<PeerReport> = (0..4)
            .map(|i| peer(&format!("p{i}"), 900, 300, 0))
            .collect();
        let status = StatusReport {
            run_id: "r".into(),
            phase: RunPhase::Finished,
            expected_peers: 4,
            counts: BTreeMap::new(),
            peers: (0..4)
                .map(|i| PeerStatus {
                    peer: format!("p{i}"),
                    state: PeerState::Done,
                    addr: String::new(),
                    last_beat_unix_ms: 0,
                    reason: None,
                    times_lost: u32::from(i < 2),
                    report_sha256: None,
                    report_sha256_differs: false,
                })
                .collect(),
        };
        let q = assess_of(
            fine.clone(),
            Some(&status),
            &BTreeSet::from(["p0".to_owned()]),
        );
        assert_eq!(q.verdict, Verdict::Saturated);
        assert_eq!(q.heartbeats.declared_lost, 2);
        assert_eq!(q.heartbeats.starved, 1, "p0 was paused on purpose");
        assert_eq!(q.heartbeats.starved_peers, vec!["p1".to_owned()]);
        let q = assess_of(
            fine,
            Some(&status),
            &BTreeSet::from(["p0".to_owned(), "p1".to_owned()]),
        );
        assert_eq!(q.verdict, Verdict::Clean);
    }

    /// `r` with one lag window per entry of `lags` (µs), windows 0, 1, …
    fn with_windows(mut r: PeerReport, lags: &[u64]) -> PeerReport {
        let rows = lags
            .iter()
            .enumerate()
            .map(|(i, &l)| cmesh_common::report::WindowLatency {
                window: i as u32,
                count: 20,
                p50_us: l,
                p99_us: l,
                max_us: l,
                histogram: lag_report(&[l; 20]).histogram,
                negative_histogram: None,
            })
            .collect();
        r.time_series.as_mut().unwrap().scheduling_lag = rows;
        r
    }

    #[test]
    fn stalls_in_bursts_count_by_the_windows_they_hit() {
        // The run's p99 is fine (most samples are), but 2 of 10 windows stalled.
        let mut lags = vec![900; 10];
        lags[5] = 90_000;
        lags[8] = 120_000;
        let reports: Vec<PeerReport> = (0..2)
            .map(|i| with_windows(peer(&format!("p{i}"), 900, 100, 0), &lags))
            .collect();
        let q = assess_of(reports, None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Saturated, "{q:?}");
        assert!(
            q.reasons.iter().any(|r| r.contains("in 2 of 10 windows")),
            "{:?}",
            q.reasons
        );
        assert_eq!(q.windows_affected, 4, "2 windows on each of 2 hosts");
        // One stalled window of 20 is not enough to call the host anything.
        let mut lags = vec![900; 20];
        lags[5] = 90_000;
        let reports: Vec<PeerReport> = (0..2)
            .map(|i| with_windows(peer(&format!("p{i}"), 900, 100, 0), &lags))
            .collect();
        let q = assess_of(reports, None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Clean, "{q:?}");
        assert_eq!(q.windows_affected, 2, "but the window is listed");
    }

    #[test]
    fn records_that_arrived_in_a_stalled_window_count_however_few_the_windows() {
        // 1 window of 20 stalled (too few by the window rule), but it is the window in
        // which most records arrived: a sparse broadcast that queued its readers.
        let mut lags = vec![900; 20];
        lags[5] = 90_000;
        let mut received = vec![1; 20];
        received[5] = 40;
        let reports: Vec<PeerReport> = (0..2)
            .map(|i| {
                let mut r = with_windows(peer(&format!("p{i}"), 900, 100, 0), &lags);
                r.time_series.as_mut().unwrap().received = received.clone();
                r
            })
            .collect();
        let q = assess_of(reports.clone(), None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Saturated, "{q:?}");
        assert!(
            q.reasons
                .iter()
                .any(|r| r.contains("(40 of 59)") && r.contains("arrived in windows")),
            "{:?}",
            q.reasons
        );
        // The same records spread over the quiet windows: clean.
        let reports: Vec<PeerReport> = reports
            .into_iter()
            .map(|mut r| {
                r.time_series.as_mut().unwrap().received = vec![3; 20];
                r.time_series.as_mut().unwrap().received[5] = 0;
                r
            })
            .collect();
        assert_eq!(
            assess_of(reports, None, &BTreeSet::new()).verdict,
            Verdict::Clean
        );
    }

    #[test]
    fn a_throttling_quota_degrades_and_the_advice_names_it() {
        let mut reports: Vec<PeerReport> = (0..2)
            .map(|i| peer(&format!("p{i}"), 900, 100, 0))
            .collect();
        for r in &mut reports {
            r.cpu = Some(CpuUsage {
                process_us: 4000,
                throttled_us: Some(900_000),
                quota_cpus: Some(0.02),
                host_cpus: 2,
            });
            // Throttled for 40 ms while it used 4 ms, from the plan's start; the rest of
            // the 900 ms was its start-up, which is not counted.
            r.time_series
                .as_mut()
                .unwrap()
                .cpu
                .as_mut()
                .unwrap()
                .throttled_us = vec![10_000; 4];
        }
        let q = assess_of(reports, None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Degraded);
        assert!(
            q.reasons
                .iter()
                .any(|r| r.contains("quota (0.02 CPUs each)")),
            "{q:?}"
        );
        assert!(q.advice[0].contains("--peer-cpus"), "{:?}", q.advice);
        assert_eq!(
            (q.hosts[0].throttled_ms, q.hosts[0].peer_cpu_ms),
            (Some(40), 4)
        );
        // No window width in the series: the quota's share is not known.
        assert_eq!(q.hosts[0].quota_used, None);
    }

    #[test]
    fn a_peer_that_used_all_its_quota_is_saturated() {
        let quota = |r: &mut PeerReport, used_per_window_us: u64| {
            r.cpu.as_mut().unwrap().quota_cpus = Some(0.02);
            let s = r.time_series.as_mut().unwrap();
            s.window_ms = 1000;
            // 4 windows of 1 s at 0.02 CPUs allow 20 ms each.
            s.cpu.as_mut().unwrap().process_us = vec![used_per_window_us; 4];
        };
        let mut reports: Vec<PeerReport> = (0..2)
            .map(|i| peer(&format!("p{i}"), 900, 100, 0))
            .collect();
        for r in &mut reports {
            quota(r, 19_000);
        }
        let q = assess_of(reports.clone(), None, &BTreeSet::new());
        assert_eq!(q.verdict, Verdict::Saturated, "{q:?}");
        assert!((q.hosts[0].quota_used.unwrap() - 0.95).abs() < 1e-9);
        assert!(
            q.reasons[0].contains("95.0% of their CPU quota"),
            "{:?}",
            q.reasons
        );
        for r in &mut reports {
            quota(r, 12_000);
        }
        assert_eq!(
            assess_of(reports.clone(), None, &BTreeSet::new()).verdict,
            Verdict::Degraded
        );
        for r in &mut reports {
            quota(r, 4_000);
        }
        assert_eq!(
            assess_of(reports, None, &BTreeSet::new()).verdict,
            Verdict::Clean
        );
    }

    #[test]
    fn reports_without_the_evidence_give_no_verdict_and_say_so() {
        let q = assess_of(
            vec![PeerReport::new("p0", "mesh", 0)],
            None,
            &BTreeSet::new(),
        );
        assert_eq!(q.verdict, Verdict::Unknown);
        assert!(q.reasons[0].contains("not known"), "{q:?}");
        assert_eq!(q.hosts[0].cpus, None);
        assert!(!q.heartbeats.known);
        assert!(details_markdown(&q).contains("unknown (no coordinator report)"));
    }
}
