//! The per-peer report: `report.json`, written by every peer at the end of its run.
//!
//! The format is documented for users in `docs/report-format.md`; keep the two in step.
//! Readers must check [`PeerReport::schema`] and [`PeerReport::schema_version`]; fields
//! are only ever added within a version.

use crate::histogram::LatencySummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of `schema` in every peer report.
pub const PEER_REPORT_SCHEMA: &str = "cmesh.peer-report";
/// The current version of the peer report schema.
pub const PEER_REPORT_VERSION: u32 = 1;

/// How the peer's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The peer followed the plan to the end.
    Ok,
    /// The peer could not finish; `error` says why.
    Failed,
}

/// At most this many windows of latency by write time; longer runs get wider windows.
pub const MAX_WINDOWS: u64 = 300;

/// The time-series window width for a run of `duration_ms`: 1 s, or wider (whole
/// seconds) so that the run fits in [`MAX_WINDOWS`].
pub fn window_ms(duration_ms: u64) -> u64 {
    duration_ms.div_ceil(MAX_WINDOWS).div_ceil(1000).max(1) * 1000
}

/// What a peer measured, written to `<output>/report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub schema: String,
    pub schema_version: u32,
    pub peer: String,
    #[serde(default)]
    pub run_id: Option<String>,
    /// The peer's number in the plan (absent if it never got a plan).
    #[serde(default)]
    pub index: Option<u32>,
    /// The sync backend, e.g. `mesh`, or `adapter` for an app driven by an adapter
    /// program.
    pub backend: String,
    /// The adapter program's command line, for the `adapter` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    pub outcome: Outcome,
    #[serde(default)]
    pub error: Option<String>,
    /// A checkpoint written while the peer ran (`checkpoint.json`), not its final
    /// report: it holds what was measured up to [`PeerReport::checkpoint_unix_ms`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// When a checkpoint was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_unix_ms: Option<u64>,
    pub started_at_unix_ms: u64,
    pub finished_at_unix_ms: u64,
    /// When writing started and stopped, if it did.
    #[serde(default)]
    pub writing: Option<WritingWindow>,
    /// Its links to neighbours when writing started: none of them up means its first
    /// records waited for a link ([`LinkCount::isolated`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_at_start: Option<LinkCount>,
    /// Records this peer wrote.
    pub records_produced: u64,
    /// Records from other origins received for the first time.
    pub records_received: u64,
    /// Copies of records already held (flooding sends some twice).
    pub records_duplicate: u64,
    /// Records never received because every neighbour had evicted them from its window.
    pub records_missed: u64,
    /// Other origins this peer received at least one record from.
    pub distinct_origins: usize,
    /// Other peers in the plan.
    pub expected_origins: usize,
    /// True when, after writing stopped, this peer held every record every other peer
    /// said it wrote.
    pub caught_up: bool,
    /// Per other origin: what was received.
    pub origins: BTreeMap<String, OriginStats>,
    /// Per planned neighbour: traffic and connections.
    pub neighbours: Vec<NeighbourStats>,
    pub delta_sync: DeltaSyncStats,
    /// How the backend spread records, and its tree's upkeep (the mesh backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dissemination: Option<DisseminationStats>,
    /// Connections to or from this peer refused because the other end did not prove it
    /// holds the run token (mesh: a stranger on the network, docs/security.md).
    #[serde(default)]
    pub handshakes_refused: u64,
    /// Handshakes this peer gave up on because the other side took longer than this
    /// side's patience (mesh: a host short of CPU; peer/src/backend/mesh/patience.rs).
    #[serde(default)]
    pub handshakes_timed_out: u64,
    /// Latency of every record received from another origin: reader clock minus writer
    /// timestamp, in microseconds.
    pub message_latency: LatencyReport,
    /// The Docker host this peer ran on, if the launcher said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// This peer's clock against the coordinator's, measured in-band at the start and at
    /// the end of its run (see [`crate::clock`]). `analyze` corrects cross-host latency
    /// with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_sync: Option<crate::clock::ClockSync>,
    /// `message_latency` split by the Docker host of the record's origin (present when
    /// the plan knows hosts). Not corrected for clock offsets: `analyze` does that.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_by_origin_host: BTreeMap<String, LatencyReport>,
    /// The plan's faults that applied to this peer, and how each was carried out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<AppliedFault>,
    /// After each heal of a partition: how long until every record written before it
    /// was held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resync: Vec<Resync>,
    /// Latency, deliveries and interface traffic per time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeries>,
    /// How late the peer's own timers fired (a 50 to 500 ms period) while it ran, µs: its
    /// scheduling lag. High when its host's CPUs (or its CPU quota) are saturated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_lag: Option<LatencyReport>,
    /// Local write and read probes and how many finished within the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// The CPU this peer used, and its host's CPUs (absent where it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUsage>,
}

/// The CPU a peer used over its run, and what held it back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// This process's user and system CPU time from its start to its report, µs.
    pub process_us: u64,
    /// Time its container's CPU quota throttled it, µs, where its cgroup says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_us: Option<u64>,
    /// Its container's CPU quota in CPUs (`spawn --peer-cpus`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_cpus: Option<f64>,
    /// CPUs of the host it ran on.
    pub host_cpus: u32,
}

/// CPU per window, by sampling time (like [`TimeSeries::interfaces`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSeries {
    /// How busy the whole host's CPUs were (all but idle and iowait), per mille.
    pub host_busy_permille: Vec<u16>,
    /// This peer's own CPU time, µs.
    pub process_us: Vec<u64>,
    /// Time its container's CPU quota throttled it, µs (empty where the cgroup does not
    /// say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled_us: Vec<u64>,
}

/// Resync after connectivity came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resync {
    /// What came back: `partition`.
    pub cause: String,
    /// When this peer lifted its cut, ms since the Unix epoch.
    pub healed_at_unix_ms: u64,
    /// From the heal until the last record written before it arrived (0 if nothing
    /// was missing). `None` if the peer never caught up.
    pub latency_ms: Option<u64>,
    /// Records written before the heal that arrived after it.
    pub records: u64,
}

/// Per-window series, window 0 starting at the plan's common start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    pub start_unix_ms: u64,
    pub window_ms: u64,
    /// Latency of the records written in each window (windows with none are left out).
    pub latency: Vec<WindowLatency>,
    /// `latency` split by the Docker host of the record's origin, with the negative
    /// samples kept (present when the plan spans hosts), so that `analyze` can correct
    /// each window for the clock offsets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_by_origin_host: BTreeMap<String, Vec<WindowLatency>>,
    /// Records first received in each window, by arrival time.
    pub received: Vec<u64>,
    /// Bytes received and sent per window, per network interface (loopback left out).
    pub interfaces: BTreeMap<String, InterfaceSeries>,
    /// The scheduling lag per window (windows without samples left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduling_lag: Vec<WindowLatency>,
    /// CPU per window: the host's, this peer's, and its throttling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuSeries>,
}

/// One window's latency: percentiles plus a coarse histogram (1 significant digit,
/// same encoding as [`LatencyReport::histogram`]) that merges across peers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowLatency {
    pub window: u32,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub histogram: String,
    /// Magnitudes of the negative samples (writer's clock ahead), same encoding; only in
    /// [`TimeSeries::latency_by_origin_host`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_histogram: Option<String>,
}

/// An interface's traffic per window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSeries {
    pub rx_bytes: Vec<u64>,
    pub tx_bytes: Vec<u64>,
}

/// Local probes: each write of the plan is a write probe, each followed by a read of the
/// peer's sync progress; a probe is ok when it finishes within `deadline_ms`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub deadline_ms: u64,
    pub write_probes: u64,
    pub write_ok: u64,
    pub read_probes: u64,
    pub read_ok: u64,
}

/// One fault as this peer carried it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppliedFault {
    /// Which fault: `plan#N` (the plan's N-th `[[fault]]`) or `chaos#N` (the N-th
    /// `launcher chaos` action of the run).
    #[serde(default)]
    pub id: String,
    /// `delay`, `loss`, …
    pub action: String,
    /// `netem`, `nfqueue`, `iptables` or `tbf`.
    pub path: Option<String>,
    pub applied_at_unix_ms: Option<u64>,
    pub lifted_at_unix_ms: Option<u64>,
    /// Why it could not be applied (the peer then fails).
    pub error: Option<String>,
}

/// A peer's links at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCount {
    /// Links up.
    pub up: u32,
    /// Neighbours the plan gave it.
    pub wanted: u32,
}

impl LinkCount {
    /// It had neighbours and none of them was linked.
    pub fn isolated(&self) -> bool {
        self.wanted > 0 && self.up == 0
    }
}

/// Start and end of the writing phase, milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritingWindow {
    pub start_unix_ms: u64,
    pub end_unix_ms: u64,
}

/// What one peer received from one origin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStats {
    /// Distinct records received.
    pub received: u64,
    /// How many the origin said it wrote (from the end-of-writing barrier), if known.
    #[serde(default)]
    pub produced: Option<u64>,
}

/// Traffic with one neighbour, over all its connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourStats {
    pub peer: String,
    pub addr: String,
    /// Connections established (more than 1 means it reconnected).
    pub connects: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub records_sent: u64,
    pub records_received: u64,
}

/// Catch-up on (re)connect: what was sent, and what resending everything would have cost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaSyncStats {
    /// Catch-up exchanges (one per connection per side).
    pub sessions: u64,
    /// Records sent because the neighbour lacked them.
    pub records_sent: u64,
    /// Bytes of those records on the wire.
    pub bytes_sent: u64,
    /// Bytes a full resend of the window would have cost instead.
    pub full_resend_bytes: u64,
}

/// How the mesh backend spread records: its mode, and for plumtree what kept its tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisseminationStats {
    /// `flood` or `plumtree`.
    pub mode: String,
    /// Links this peer made lazy because a record came over them twice.
    pub prunes_sent: u64,
    /// Pulls of announced records that the tree did not bring in time.
    pub grafts_sent: u64,
    /// Announcement frames sent to lazy links.
    pub announcements_sent: u64,
}

/// Latency percentiles plus the histogram they came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    #[serde(flatten)]
    pub summary: LatencySummary,
    /// Records whose writer timestamp was later than the reader's clock (clock skew);
    /// recorded as 1 µs.
    pub negative_samples: u64,
    /// The HDR histogram, V2 + deflate + base64 (see `LatencyHistogram::decode`).
    pub histogram: String,
    /// The negative samples' magnitudes (writer ahead of reader), same encoding. Kept in
    /// `latency_by_origin_host`, so a clock-offset correction can bring them back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_histogram: Option<String>,
}

impl PeerReport {
    /// A report with nothing measured yet.
    pub fn new(peer: &str, backend: &str, started_at_unix_ms: u64) -> Self {
        PeerReport {
            schema: PEER_REPORT_SCHEMA.to_owned(),
            schema_version: PEER_REPORT_VERSION,
            peer: peer.to_owned(),
            run_id: None,
            index: None,
            backend: backend.to_owned(),
            adapter: None,
            outcome: Outcome::Ok,
            error: None,
            partial: false,
            checkpoint_unix_ms: None,
            started_at_unix_ms,
            finished_at_unix_ms: started_at_unix_ms,
            writing: None,
            links_at_start: None,
            records_produced: 0,
            records_received: 0,
            records_duplicate: 0,
            records_missed: 0,
            distinct_origins: 0,
            expected_origins: 0,
            caught_up: false,
            origins: BTreeMap::new(),
            neighbours: Vec::new(),
            delta_sync: DeltaSyncStats::default(),
            dissemination: None,
            handshakes_refused: 0,
            handshakes_timed_out: 0,
            message_latency: LatencyReport {
                histogram: crate::histogram::LatencyHistogram::new().encode(),
                ..LatencyReport::default()
            },
            host: None,
            clock_sync: None,
            latency_by_origin_host: BTreeMap::new(),
            faults: Vec::new(),
            resync: Vec::new(),
            time_series: None,
            scheduling_lag: None,
            availability: None,
            cpu: None,
        }
    }

    /// Parses a report, refusing other schemas and newer versions.
    pub fn from_json(text: &str) -> Result<Self, String> {
        /// The schema fields alone: checked before the whole report is read into its
        /// types (reading it as a `Value` first doubled analyze's parsing).
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            schema: serde_json::Value,
            #[serde(default)]
            schema_version: serde_json::Value,
        }
        let value: Head = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let schema = value.schema.as_str().unwrap_or("");
        if schema != PEER_REPORT_SCHEMA {
            return Err(format!(
                "schema is `{schema}`, expected `{PEER_REPORT_SCHEMA}`"
            ));
        }
        let version = value.schema_version.as_u64().unwrap_or(0);
        if version == 0 || version > PEER_REPORT_VERSION as u64 {
            return Err(format!(
                "schema_version {version} is not supported (this build reads 1..={PEER_REPORT_VERSION}); upgrade the launcher"
            ));
        }
        serde_json::from_str(text).map_err(|e| format!("bad report: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_has_the_documented_fields() {
        let mut r = PeerReport::new("peer-0001", "mesh", 5);
        r.records_produced = 3;
        let text = serde_json::to_string_pretty(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "peer",
            "records_produced",
            "records_received",
            "distinct_origins",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in [
            "count",
            "min_us",
            "p50_us",
            "p90_us",
            "p99_us",
            "max_us",
            "mean_us",
            "histogram",
        ] {
            assert!(
                v["message_latency"].get(key).is_some(),
                "missing message_latency.{key}"
            );
        }
        assert_eq!(PeerReport::from_json(&text).unwrap(), r);
    }

    #[test]
    fn refuses_other_schemas_and_newer_versions() {
        assert!(PeerReport::from_json("{}").unwrap_err().contains("schema"));
        let mut v = serde_json::to_value(PeerReport::new("p", "mesh", 0)).unwrap();
        v["schema_version"] = serde_json::json!(PEER_REPORT_VERSION + 1);
        let err = PeerReport::from_json(&v.to_string()).unwrap_err();
        assert!(err.contains("upgrade"), "{err}");
    }
}
