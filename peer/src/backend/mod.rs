//! Sync backends: how a peer shares its records with its neighbours.
//!
//! The peer's lifecycle ([`crate::run`]) is written against [`SyncBackend`], so another
//! replication engine (Ditto, behind the `ditto` feature, in a later issue) plugs in
//! without touching registration, timing or reporting. A backend reports every record it
//! receives to the shared [`crate::metrics::Metrics`].

pub mod mesh;

use cmesh_common::report::{DeltaSyncStats, NeighbourStats};

/// What a backend tells the report when it stops.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub neighbours: Vec<NeighbourStats>,
    pub delta_sync: DeltaSyncStats,
    pub records_missed: u64,
}

/// A replication engine under test.
#[allow(async_fn_in_trait)]
pub trait SyncBackend {
    /// The backend's name in reports, e.g. `mesh`.
    fn name(&self) -> &'static str;
    /// Writes one record of this peer's; returns its sequence number (from 1).
    fn write(&self, payload: bytes::Bytes) -> u64;
    /// Per origin index, the highest sequence number held with nothing missing below.
    fn progress(&self) -> Vec<u64>;
    /// Resolves the next time anything new arrives (or at once if something already did
    /// since the last call).
    async fn changed(&self);
    /// Disconnects from every neighbour and returns the traffic figures.
    async fn stop(self) -> BackendStats;
}
