//! A peer's lifecycle and the run's phase, as the coordinator sees them: the states its
//! API ([`crate::protocol`]) and its live view ([`crate::live`]) report.

use serde::{Deserialize, Serialize};

/// A peer's lifecycle as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Registered, waiting for the plan.
    Init,
    /// Has the plan, connecting to its neighbours.
    Ready,
    /// Writing records.
    Running,
    /// Writing stopped; catching up and writing its report.
    Reporting,
    /// Report written; exited or about to.
    Done,
    /// The peer said it failed.
    Failed,
    /// Missed 3 heartbeats in a row.
    Lost,
}

impl PeerState {
    pub const ALL: [PeerState; 7] = [
        PeerState::Init,
        PeerState::Ready,
        PeerState::Running,
        PeerState::Reporting,
        PeerState::Done,
        PeerState::Failed,
        PeerState::Lost,
    ];

    /// Done, Failed and Lost end a peer's part in the run (a Lost peer that beats again
    /// comes back, but the run does not wait for it).
    pub fn is_terminal(self) -> bool {
        matches!(self, PeerState::Done | PeerState::Failed | PeerState::Lost)
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerState::Init => "init",
            PeerState::Ready => "ready",
            PeerState::Running => "running",
            PeerState::Reporting => "reporting",
            PeerState::Done => "done",
            PeerState::Failed => "failed",
            PeerState::Lost => "lost",
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The run's phase as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Waiting for peers to register.
    Registering,
    /// The plan is out; peers are working.
    Planned,
    /// Every peer is Done, Failed or Lost.
    Finished,
    /// Not enough peers came before the start timeout.
    Aborted,
}
