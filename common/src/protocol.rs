//! The coordinator's HTTP/JSON API: the messages and the peer lifecycle.
//!
//! Every request carries the run token in the [`crate::token::HEADER`] header; a wrong or
//! missing token gets `401` and changes nothing. Endpoints (all JSON):
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/register` | [`RegisterRequest`] | [`RegisterResponse`] |
//! | `GET /v1/plan?peer=NAME` | | long-poll: `200` [`crate::plan::ExecutionPlan`], `204` not yet (ask again), `409` [`ErrorBody`] run aborted |
//! | `POST /v1/heartbeat` | [`Heartbeat`] | `204` |
//! | `POST /v1/state` | [`StateChange`] | `204` |
//! | `POST /v1/barrier/{name}` | [`BarrierArrive`] | long-poll: [`BarrierStatus`] |
//! | `POST /v1/chaos` | [`ChaosRequest`] | [`ChaosAction`]; `400` bad action, `409` the run is not running |
//! | `GET /v1/chaos?peer=NAME&after=N` | | long-poll: `200` the [`ChaosAction`]s with `seq > N` (may be empty) |
//! | `POST /v1/sync/{topic}` | [`crate::adapter::PublishRequest`] | `200` its number on the topic; `400` bad topic name, `429` past a bound of [`crate::adapter::SYNC_LIMITS`] |
//! | `GET /v1/sync/{topic}?after=N` | | long-poll: `200` the [`crate::adapter::Publication`]s after the first N (may be empty) |
//! | `GET /status` | | [`StatusReport`] |
//! | `GET /v1/live` | | [`crate::live::LiveReport`] |
//! | `GET /metrics` | | the same figures in the Prometheus text format |
//! | `GET /healthz` | (no token needed) | `200 ok` |
//!
//! On the same port over UDP, the coordinator answers clock requests
//! ([`crate::clock::request`]), for the peers' clock offsets.

use crate::lifecycle::{PeerState, RunPhase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A fault injected while the run goes (`launcher chaos`), as asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosRequest {
    /// The fault, as in a plan; `at` is ignored (it starts now).
    pub fault: crate::faults::FaultSpec,
    /// Groups for this action's selectors and partition, like a plan's `[groups]`.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// Seed for a `N%` selector [default: the plan's].
    #[serde(default)]
    pub seed: Option<u64>,
    /// For a plan's own kill or pause, carried out by the launcher: `plan#N`, so it is
    /// recorded under the plan's name, once. Left out: the next `chaos#N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A chaos action as the coordinator recorded it: peers carry out link shaping and
/// partitions themselves; `kill` and `pause` are done by the launcher through the
/// Docker API, and recorded here for the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosAction {
    /// 1, 2, … in the order the coordinator received them.
    pub seq: u32,
    /// `chaos#N`, as reports and summaries name it.
    pub id: String,
    pub at_unix_ms: u64,
    /// `at_ms` is from the run's common start.
    pub fault: crate::faults::Fault,
    pub groups: BTreeMap<String, crate::faults::Selector>,
    pub seed: u64,
    /// The peers it acts on, by name.
    pub peers: Vec<String>,
}

/// The API version, in every path as `/v1/`.
pub const API_VERSION: u32 = 1;

/// Checks a peer name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn validate_peer_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "`{}` is not a valid peer name: use 1 to 64 of A-Z a-z 0-9 . _ -",
            name.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub peer: String,
    /// Where the peer's sync backend listens, `HOST:PORT`.
    pub addr: String,
    /// The Docker host the peer runs on, if the launcher said (for clock-offset
    /// correction of cross-host latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// CPUs the peer's host gives it, for sizing the start ramp
    /// ([`crate::plan::ramp_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub run_id: String,
    /// Beat at this interval from now on.
    pub heartbeat_ms: u64,
    /// The peer was in the plan already: it restarted and rejoins the running run.
    #[serde(default)]
    pub rejoined: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub peer: String,
    pub state: PeerState,
    /// What the peer measured so far, once it has the plan (see [`crate::live`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::live::LiveCounters>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub peer: String,
    pub state: PeerState,
    /// Why, for Failed (and anything else worth a line in the timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With Done: the SHA-256 (hex) of the `report.json` the peer wrote. `analyze`
    /// checks the extracted report against it, so a report altered afterwards (by another
    /// container on the shared reports volume) is detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarrierArrive {
    pub peer: String,
    /// A number the peer shares with the others through the barrier (for example how
    /// many records it wrote).
    #[serde(default)]
    pub value: Option<u64>,
}

/// A barrier's state, returned when it is released or the long-poll times out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarrierStatus {
    pub barrier: String,
    /// Every live peer has arrived (Failed and Lost peers are not waited for).
    pub released: bool,
    pub arrived: usize,
    pub expected: usize,
    /// The values the arrived peers shared, by peer name.
    pub values: BTreeMap<String, u64>,
}

/// One row of `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub peer: String,
    pub state: PeerState,
    pub addr: String,
    /// Last heartbeat, milliseconds since the Unix epoch.
    pub last_beat_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Times the coordinator declared this peer lost for missed heartbeats after the
    /// plan's common start, whether or not it came back. A peer that was lost and still
    /// reported had its heartbeats starved: evidence that its host, not the network, was
    /// the bottleneck while it measured.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub times_lost: u32,
    /// The SHA-256 of its `report.json` the peer posted with Done (the first, if more
    /// than one came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_sha256: Option<String>,
    /// A second, different digest was posted for this peer: someone else posted under
    /// its name, so its report is not to be trusted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_sha256_differs: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub run_id: String,
    pub phase: RunPhase,
    pub expected_peers: usize,
    /// Peers per state; every state is present.
    pub counts: BTreeMap<PeerState, usize>,
    pub peers: Vec<PeerStatus>,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&PeerState::Reporting).unwrap(),
            "\"reporting\""
        );
        let mut counts = BTreeMap::new();
        counts.insert(PeerState::Lost, 2);
        assert_eq!(serde_json::to_string(&counts).unwrap(), "{\"lost\":2}");
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = PeerState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![PeerState::Done, PeerState::Failed, PeerState::Lost]
        );
    }

    #[test]
    fn peer_names() {
        assert!(validate_peer_name("run1-peer-0001").is_ok());
        assert!(validate_peer_name("").is_err());
        assert!(validate_peer_name("a/b").is_err());
        assert!(validate_peer_name(&"x".repeat(65)).is_err());
    }
}
