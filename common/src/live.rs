//! A run while it goes: what each peer says of itself on every heartbeat
//! ([`LiveCounters`]), and what the coordinator makes of them for the run and each host
//! ([`LiveReport`], `GET /v1/live`; the same figures as Prometheus metrics on
//! `GET /metrics`).
//!
//! The counters are small and bounded: a heartbeat is at most [`MAX_HEARTBEAT_BYTES`]
//! of JSON. Latencies travel as a [`LiveHistogram`]: log buckets a quarter of an octave
//! wide (19% apart), at most [`LiveHistogram::BUCKETS`] of them, so the coordinator adds
//! them up across peers exactly and reads percentiles off the sum to within a bucket.
//! The figures a report carries at the end are exact; these are for watching.
//!
//! The live verdict ([`LiveVerdict`]) weighs the last window's scheduling lag and CPU
//! quota with the same lines as the final measurement-quality verdict
//! (`cmesh_analysis::quality`, which takes them from here).

use crate::lifecycle::{PeerState, RunPhase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most bytes of JSON a heartbeat may take; the coordinator refuses more (`413`).
/// A heartbeat with two full histograms takes under 3 KiB.
pub const MAX_HEARTBEAT_BYTES: usize = 8 * 1024;

/// Scheduling lag p99 from which a host's figures are degraded, µs (see
/// `cmesh_analysis::quality` for why this line).
pub const LAG_DEGRADED_US: u64 = 10_000;
/// Scheduling lag p99 from which a host's figures measure the host, µs.
pub const LAG_SATURATED_US: u64 = 50_000;
/// Share of the CPU quota used from which a host is degraded.
pub const QUOTA_DEGRADED: f64 = 0.5;
/// Share of the CPU quota used from which a host is saturated: its peers wanted more.
pub const QUOTA_SATURATED: f64 = 0.9;

/// How long after the start a running peer with neighbours may have no link before it
/// counts as isolated.
pub const ISOLATED_AFTER_MS: u64 = 30_000;
/// The share of running peers isolated from which the run is (`--abort-on isolated`).
pub const ISOLATED_SHARE: f64 = 0.5;
/// How long a host must stay saturated before the run counts as saturated
/// (`--abort-on saturated`): the start burst alone does not.
pub const SATURATED_FOR_MS: u64 = 20_000;
/// The window the live rates, percentiles and verdicts cover.
pub const WINDOW_MS: u64 = 10_000;
/// How far back the coordinator keeps a host's seconds, and so how long a saturation
/// it can time: past this, a warning says "a minute or more".
pub const MEMORY_MS: u64 = 60_000;

/// What a peer says of itself on a heartbeat, once it has the plan. Counts are from the
/// peer's start; histograms and CPU cover the time since its previous heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveCounters {
    /// Records this peer wrote so far.
    pub written: u64,
    /// Records it received so far (first deliveries, every origin).
    pub received: u64,
    /// Origins it received at least one record from.
    pub origins: u32,
    /// Links to neighbours up now.
    pub links_up: u32,
    /// Neighbours the plan gives it now.
    pub links_wanted: u32,
    /// Latency of the records received since its previous heartbeat.
    #[serde(default)]
    pub latency: LiveHistogram,
    /// How late its timers fired since its previous heartbeat.
    #[serde(default)]
    pub lag: LiveHistogram,
    /// CPU it used since its previous heartbeat, per mille of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_permille: Option<u32>,
    /// Share of its CPU quota used since its previous heartbeat, per mille (none without
    /// a quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_permille: Option<u32>,
    /// Milliseconds since its last checkpoint (none before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_age_ms: Option<u64>,
}

impl LiveCounters {
    /// Checks what a peer sent: histograms within their buckets, links within reason.
    pub fn check(&self) -> Result<(), String> {
        self.latency.check().map_err(|e| format!("latency: {e}"))?;
        self.lag.check().map_err(|e| format!("lag: {e}"))?;
        if self.links_up > self.links_wanted.max(MAX_LINKS) {
            return Err(format!(
                "links_up {} is more than the peer could have",
                self.links_up
            ));
        }
        Ok(())
    }
}

impl LiveCounters {
    /// Takes in `older` counters that never reached the coordinator (a beat that failed
    /// or was turned away): their histograms are added to these, so that what they
    /// counted is not lost; totals and gauges are these, the newer.
    pub fn carry(&mut self, older: &LiveCounters) {
        self.latency.merge(&older.latency);
        self.lag.merge(&older.lag);
    }
}

/// Links a peer may report at most (a plan's largest degree is far below).
pub const MAX_LINKS: u32 = 100_000;

/// Latencies (µs) in log buckets: bucket `i` holds values in `[2^(i/4), 2^((i+1)/4))`,
/// bucket 0 also 0. Kept sparse: `[[bucket, count], …]`, buckets rising.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LiveHistogram(pub Vec<(u8, u64)>);

impl LiveHistogram {
    /// Buckets there are: the last starts at 2^31.75 µs (about an hour); larger values
    /// go in it.
    pub const BUCKETS: u8 = 128;

    /// The bucket of `us`.
    pub fn bucket(us: u64) -> u8 {
        if us <= 1 {
            return 0;
        }
        // 4 * log2(us), floored: the octave from the bits, then which quarter of it.
        let octave = 63 - us.leading_zeros() as u64;
        let base = 1u64 << octave;
        // Quarter-octave lines: base * 2^(k/4), k = 1..3.
        const LINES: [f64; 3] = [1.189_207_115, std::f64::consts::SQRT_2, 1.681_792_831];
        let quarter = LINES
            .iter()
            .filter(|&&l| us as f64 >= base as f64 * l)
            .count() as u64;
        (4 * octave + quarter).min(Self::BUCKETS as u64 - 1) as u8
    }

    /// The smallest value bucket `i` holds, µs.
    pub fn lower(i: u8) -> u64 {
        if i == 0 {
            0
        } else {
            2f64.powf(f64::from(i) / 4.0).ceil() as u64
        }
    }

    /// The value just past bucket `i`, µs.
    pub fn upper(i: u8) -> u64 {
        2f64.powf(f64::from(i + 1) / 4.0).ceil() as u64
    }

    /// Counts one value.
    pub fn record(&mut self, us: u64) {
        self.add(Self::bucket(us), 1);
    }

    fn add(&mut self, bucket: u8, count: u64) {
        match self.0.binary_search_by_key(&bucket, |&(b, _)| b) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(count),
            Err(i) => self.0.insert(i, (bucket, count)),
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &LiveHistogram) {
        for &(b, n) in &other.0 {
            self.add(b, n);
        }
    }

    /// The values counted (saturating: a peer may send any count).
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |sum, &(_, n)| sum.saturating_add(n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at quantile `q` (0 to 1): the upper edge of its bucket, µs (so within
    /// 19% above the true value). None when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(b, n) in &self.0 {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Some(Self::upper(b));
            }
        }
        self.0.last().map(|&(b, _)| Self::upper(b))
    }

    /// Counts at or below each of `edges` (µs, rising): Prometheus' cumulative buckets.
    pub fn cumulative(&self, edges: &[u64]) -> Vec<u64> {
        edges
            .iter()
            .map(|&e| {
                self.0
                    .iter()
                    .filter(|&&(b, _)| Self::upper(b) <= e.saturating_add(1))
                    .fold(0u64, |sum, &(_, n)| sum.saturating_add(n))
            })
            .collect()
    }

    /// An estimate of the values' sum, µs (each bucket at its middle).
    pub fn sum_estimate(&self) -> f64 {
        self.0
            .iter()
            .map(|&(b, n)| (Self::lower(b) + Self::upper(b)) as f64 / 2.0 * n as f64)
            .sum()
    }

    /// Checks buckets are in range, rising and unique.
    pub fn check(&self) -> Result<(), String> {
        if self.0.len() > Self::BUCKETS as usize {
            return Err(format!(
                "{} buckets, at most {}",
                self.0.len(),
                Self::BUCKETS
            ));
        }
        for w in self.0.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err("buckets must rise, each once".into());
            }
        }
        if let Some(&(b, _)) = self.0.last() {
            if b >= Self::BUCKETS {
                return Err(format!(
                    "bucket {b} is past the last, {}",
                    Self::BUCKETS - 1
                ));
            }
        }
        Ok(())
    }
}

/// How far a host's figures can be trusted, from its last window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveVerdict {
    /// No lag or CPU figures yet.
    #[default]
    Unknown,
    Clean,
    Degraded,
    Saturated,
}

impl LiveVerdict {
    /// From the window's scheduling lag p99 and the share of the CPU quota used.
    pub fn of(lag_p99_us: Option<u64>, quota_used: Option<f64>) -> LiveVerdict {
        if lag_p99_us.is_none() && quota_used.is_none() {
            return LiveVerdict::Unknown;
        }
        let lag = lag_p99_us.unwrap_or(0);
        let quota = quota_used.unwrap_or(0.0);
        if lag >= LAG_SATURATED_US || quota >= QUOTA_SATURATED {
            LiveVerdict::Saturated
        } else if lag >= LAG_DEGRADED_US || quota >= QUOTA_DEGRADED {
            LiveVerdict::Degraded
        } else {
            LiveVerdict::Clean
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LiveVerdict::Unknown => "unknown",
            LiveVerdict::Clean => "clean",
            LiveVerdict::Degraded => "degraded",
            LiveVerdict::Saturated => "saturated",
        }
    }
}

/// The figures of a host, or of the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveFigures {
    /// Peers by state (the coordinator's view); states with none left out.
    pub peers: BTreeMap<PeerState, usize>,
    /// Running peers with at least one link up.
    pub linked: usize,
    /// Running peers with neighbours and no link, past [`ISOLATED_AFTER_MS`] from the
    /// start (0 before).
    pub isolated: usize,
    pub links_up: u64,
    pub links_wanted: u64,
    pub written: u64,
    pub received: u64,
    /// Records received per second over the last window.
    pub received_per_s: f64,
    /// Records received so far against what the peers could have received (what the
    /// others wrote so far); none before anything was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Latency over the last window, µs (to within a bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
    /// Scheduling lag p99 over the last window, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_p99_us: Option<u64>,
    /// Mean share of the CPU quota used over the last window (peers with a quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_used: Option<f64>,
    /// The oldest checkpoint among running peers, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_age_max_ms: Option<u64>,
    pub verdict: LiveVerdict,
}

/// A fault acting now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// `plan#N` or `chaos#N`.
    pub id: String,
    pub action: String,
    /// When it ends, ms from the start (none: with the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    pub peers: usize,
}

/// Something the user should know now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveWarning {
    /// Running peers with neighbours and no link, [`ISOLATED_AFTER_MS`] after the start.
    NoLinks { peers: usize, named: Vec<String> },
    /// A host's last window is saturated, without a break for `since_ms` (at most
    /// about [`MEMORY_MS`]: the seconds kept).
    Saturating { host: String, since_ms: u64 },
    /// Peers that missed heartbeats (now lost).
    HeartbeatsMissing { host: String, peers: usize },
    /// Every peer of a host missed its heartbeats.
    HostLost { host: String },
}

impl std::fmt::Display for LiveWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveWarning::NoLinks { peers, named } => write!(
                f,
                "{peers} running peers have no link {}s after the start ({}{})",
                ISOLATED_AFTER_MS / 1000,
                named.join(", "),
                if *peers > named.len() { ", …" } else { "" }
            ),
            LiveWarning::Saturating { host, since_ms } if *since_ms + 2_000 >= MEMORY_MS => {
                write!(
                    f,
                    "host {host} is saturated (for a minute or more): its latency measures the host"
                )
            }
            LiveWarning::Saturating { host, since_ms } => write!(
                f,
                "host {host} is saturated (for {}s): its latency measures the host",
                since_ms / 1000
            ),
            LiveWarning::HeartbeatsMissing { host, peers } => {
                write!(f, "{peers} peers on host {host} missed their heartbeats")
            }
            LiveWarning::HostLost { host } => {
                write!(
                    f,
                    "host {host} is lost: every peer on it missed its heartbeats"
                )
            }
        }
    }
}

/// Why a run's numbers will be garbage, as soon as that is known
/// (`launcher run|wait --abort-on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum AbortOn {
    /// A host stayed saturated for [`SATURATED_FOR_MS`].
    Saturated,
    /// At least [`ISOLATED_SHARE`] of the running peers have no link,
    /// [`ISOLATED_AFTER_MS`] after the start.
    Isolated,
}

/// `GET /v1/live`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    pub run_id: String,
    pub phase: Option<RunPhase>,
    pub at_unix_ms: u64,
    /// The plan's common start, once planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_unix_ms: Option<u64>,
    pub duration_ms: u64,
    pub expected_peers: usize,
    pub run: LiveFigures,
    pub hosts: BTreeMap<String, LiveFigures>,
    pub faults: Vec<ActiveFault>,
    pub warnings: Vec<LiveWarning>,
}

impl LiveReport {
    /// Elapsed since the start, ms (negative before it: none).
    pub fn elapsed_ms(&self) -> Option<u64> {
        self.at_unix_ms.checked_sub(self.start_at_unix_ms?)
    }

    /// Why the run should stop now for `on`, if it should, with the time from the
    /// start: `… (at 34s)`.
    pub fn abort_reason(&self, on: AbortOn) -> Option<String> {
        let at = self
            .elapsed_ms()
            .map(|e| format!(" (at {}s)", e / 1000))
            .unwrap_or_default();
        self.abort_cause(on).map(|why| why + &at)
    }

    fn abort_cause(&self, on: AbortOn) -> Option<String> {
        match on {
            AbortOn::Isolated => {
                let running = self
                    .run
                    .peers
                    .get(&PeerState::Running)
                    .copied()
                    .unwrap_or(0);
                let isolated = self.run.isolated;
                (running > 0 && isolated as f64 >= ISOLATED_SHARE * running as f64).then(|| {
                    format!(
                        "isolated: {isolated} of {running} running peers have no link {}s after the start",
                        ISOLATED_AFTER_MS / 1000
                    )
                })
            }
            AbortOn::Saturated => self.warnings.iter().find_map(|w| match w {
                LiveWarning::Saturating { host, since_ms } if *since_ms >= SATURATED_FOR_MS => {
                    Some(format!(
                        "saturated: host {host} has been saturated for {}s",
                        since_ms / 1000
                    ))
                }
                _ => None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carried_over_keep_the_older_histograms() {
        let mut older = LiveCounters {
            written: 3,
            ..Default::default()
        };
        older.latency.record(1000);
        older.lag.record(50);
        let mut newer = LiveCounters {
            written: 5,
            ..Default::default()
        };
        newer.latency.record(1000);
        newer.latency.record(8);
        newer.carry(&older);
        assert_eq!(newer.written, 5, "totals are the newer");
        assert_eq!(newer.latency.count(), 3);
        assert_eq!(newer.lag.count(), 1);
    }

    #[test]
    fn buckets_are_a_quarter_octave_wide_and_cover_an_hour() {
        assert_eq!(LiveHistogram::bucket(0), 0);
        assert_eq!(LiveHistogram::bucket(1), 0);
        assert_eq!(LiveHistogram::bucket(2), 4);
        assert_eq!(LiveHistogram::bucket(1024), 40);
        assert_eq!(LiveHistogram::bucket(1300), 41);
        assert_eq!(LiveHistogram::bucket(u64::MAX), LiveHistogram::BUCKETS - 1);
        for us in [3u64, 100, 999, 1_000, 12_345, 3_600_000_000] {
            let b = LiveHistogram::bucket(us);
            assert!(
                LiveHistogram::lower(b) <= us && us < LiveHistogram::upper(b),
                "{us} in bucket {b}: [{}, {})",
                LiveHistogram::lower(b),
                LiveHistogram::upper(b)
            );
        }
        assert!(LiveHistogram::bucket(3_600_000_000) < LiveHistogram::BUCKETS - 1);
    }

    #[test]
    fn merged_histograms_give_percentiles_within_a_bucket() {
        let mut a = LiveHistogram::default();
        let mut b = LiveHistogram::default();
        for us in 1..=900u64 {
            a.record(us * 100);
        }
        for us in 1..=100u64 {
            b.record(1_000_000 + us);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        a.check().unwrap();
        let p50 = a.quantile(0.5).unwrap();
        assert!((50_000..=60_000).contains(&p50), "{p50}");
        let p99 = a.quantile(0.99).unwrap();
        assert!((1_000_000..=1_200_000).contains(&p99), "{p99}");
        assert_eq!(LiveHistogram::default().quantile(0.5), None);
        let cumulative = a.cumulative(&[1_000, 100_000, 10_000_000]);
        assert_eq!(cumulative[2], 1000);
        assert!(cumulative[0] < cumulative[1], "{cumulative:?}");
    }

    #[test]
    fn a_full_heartbeat_is_within_its_bound() {
        let full = LiveHistogram((0..LiveHistogram::BUCKETS).map(|b| (b, u64::MAX)).collect());
        full.check().unwrap();
        let beat = crate::protocol::Heartbeat {
            peer: "x".repeat(64),
            state: PeerState::Running,
            live: Some(LiveCounters {
                written: u64::MAX,
                received: u64::MAX,
                origins: u32::MAX,
                links_up: MAX_LINKS,
                links_wanted: MAX_LINKS,
                latency: full.clone(),
                lag: full,
                cpu_permille: Some(u32::MAX),
                quota_permille: Some(u32::MAX),
                checkpoint_age_ms: Some(u64::MAX),
            }),
        };
        let bytes = serde_json::to_vec(&beat).unwrap().len();
        assert!(bytes <= MAX_HEARTBEAT_BYTES, "{bytes} bytes");
    }

    #[test]
    fn bad_histograms_are_refused() {
        assert!(LiveHistogram(vec![(3, 1), (3, 1)]).check().is_err());
        assert!(LiveHistogram(vec![(5, 1), (4, 1)]).check().is_err());
        assert!(LiveHistogram(vec![(200, 1)]).check().is_err());
        let c = LiveCounters {
            links_up: MAX_LINKS + 1,
            ..Default::default()
        };
        assert!(c.check().is_err());
    }

    #[test]
    fn verdicts_use_the_quality_lines() {
        assert_eq!(LiveVerdict::of(None, None), LiveVerdict::Unknown);
        assert_eq!(LiveVerdict::of(Some(1_000), None), LiveVerdict::Clean);
        assert_eq!(LiveVerdict::of(Some(20_000), None), LiveVerdict::Degraded);
        assert_eq!(
            LiveVerdict::of(Some(1_000), Some(0.95)),
            LiveVerdict::Saturated
        );
    }

    #[test]
    fn a_saturation_older_than_the_seconds_kept_says_so() {
        let w = |since_ms| {
            LiveWarning::Saturating {
                host: "local".into(),
                since_ms,
            }
            .to_string()
        };
        assert!(w(12_300).contains("(for 12s)"), "{}", w(12_300));
        // The coordinator keeps a minute of seconds: a streak that fills them is older.
        assert!(w(59_100).contains("for a minute or more"), "{}", w(59_100));
    }

    #[test]
    fn isolated_when_half_the_running_peers_have_no_link() {
        let mut r = LiveReport::default();
        r.run.peers.insert(PeerState::Running, 10);
        r.run.isolated = 4;
        assert_eq!(r.abort_reason(AbortOn::Isolated), None);
        r.run.isolated = 5;
        assert!(r
            .abort_reason(AbortOn::Isolated)
            .unwrap()
            .contains("5 of 10 running peers"));
        r.warnings.push(LiveWarning::Saturating {
            host: "lab-1".into(),
            since_ms: 5_000,
        });
        assert_eq!(r.abort_reason(AbortOn::Saturated), None);
        r.warnings[0] = LiveWarning::Saturating {
            host: "lab-1".into(),
            since_ms: SATURATED_FOR_MS,
        };
        assert!(r
            .abort_reason(AbortOn::Saturated)
            .unwrap()
            .contains("lab-1"));
    }
}
