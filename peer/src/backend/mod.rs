//! Sync backends: how a peer shares its records with its neighbours.
//!
//! The peer's lifecycle ([`crate::run`]) is written against [`SyncBackend`], the only
//! seam: the built-in [`mesh`] backend, and [`ditto`] (a Ditto small peer, behind the
//! `ditto` cargo feature) plug in without touching registration, timing, faults or
//! reporting. A backend reports every record it receives to the shared
//! [`crate::metrics::Metrics`].

pub mod ditto;
pub mod mesh;

use crate::metrics::Metrics;
use cmesh_common::plan::Dissemination;
use cmesh_common::report::{DeltaSyncStats, DisseminationStats, NeighbourStats};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The backends this build has, as `--backend` takes them.
pub fn available() -> &'static [&'static str] {
    if cfg!(feature = "ditto") {
        &["mesh", "ditto"]
    } else {
        &["mesh"]
    }
}

/// Checks `--backend` and its secret before anything starts (bad input otherwise).
pub fn check(kind: &str, secret_file: Option<&std::path::Path>) -> Result<(), String> {
    if !available().contains(&kind) {
        return Err(format!(
            "this peer has no `{kind}` backend (it has: {}){}",
            available().join(", "),
            if kind == "ditto" {
                "; build the peer with the `ditto` feature (images/peer-ditto, docs/ditto.md)"
            } else {
                ""
            }
        ));
    }
    if kind == "ditto" {
        let path = secret_file.ok_or(
            "the ditto backend needs --secret-file (launcher spawn --backend ditto --secret-file F)",
        )?;
        ditto::Secret::read(path)?;
    }
    Ok(())
}

/// What a backend tells the report when it stops.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub neighbours: Vec<NeighbourStats>,
    pub delta_sync: DeltaSyncStats,
    pub records_missed: u64,
    /// How the records were spread, where the backend decides that (mesh).
    pub dissemination: Option<DisseminationStats>,
    /// Connections refused because the other end did not prove it holds the run token
    /// (mesh).
    pub handshakes_refused: u64,
    /// Handshakes given up on after the other side was slower than this side's patience
    /// (mesh).
    pub handshakes_timed_out: u64,
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
    /// Neighbours with a link up now (as far as the backend can tell).
    fn connected(&self) -> usize;
    /// Moves to a re-drawn graph's neighbours (mobility).
    fn set_neighbours(&self, neighbours: &[u32]);
    /// Disconnects from every neighbour and returns the traffic figures.
    async fn stop(self) -> BackendStats;
}

/// Everything a backend needs to start, from the plan.
pub struct Setup {
    pub run_id: String,
    pub me: u32,
    /// Every peer's advertised `host:port`, by plan index.
    pub addrs: Vec<String>,
    pub neighbours: Vec<u32>,
    /// The plan's graph, every edge (mesh: each origin's first tree).
    pub graph: Vec<(u32, u32)>,
    /// Records kept per origin (mesh).
    pub window: usize,
    /// How records are spread (mesh).
    pub dissemination: Dissemination,
    /// The peer's bound listener (the mesh backend accepts on it; Ditto binds the port
    /// itself, so it is closed first).
    pub listener: TcpListener,
    /// The secret file the launcher copied in (Ditto's licence and database id).
    pub secret_file: Option<std::path::PathBuf>,
    /// A directory the backend may keep state in.
    pub state_dir: std::path::PathBuf,
    /// The run's peers' token (the mesh handshake's key).
    pub token: String,
}

/// The backend a peer runs.
pub enum Backend {
    Mesh(mesh::MeshBackend),
    #[cfg(feature = "ditto")]
    Ditto(ditto::sdk::DittoBackend),
}

impl Backend {
    /// Starts backend `kind` (`mesh` or `ditto`).
    pub async fn start(
        kind: &str,
        setup: Setup,
        metrics: Arc<Mutex<Metrics>>,
    ) -> anyhow::Result<Backend> {
        match kind {
            "mesh" => Ok(Backend::Mesh(mesh::MeshBackend::start(
                mesh::MeshConfig {
                    run_id: setup.run_id,
                    me: setup.me,
                    addrs: setup.addrs,
                    neighbours: setup.neighbours,
                    window: setup.window,
                    queue_frames: 4096,
                    dissemination: setup.dissemination,
                    graph: setup.graph,
                    key: mesh::auth::RunKey::new(&setup.token),
                    handshake_wait: mesh::patience::BASE,
                },
                setup.listener,
                metrics,
            ))),
            #[cfg(feature = "ditto")]
            "ditto" => {
                let path = setup.secret_file.as_deref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "the ditto backend needs --secret-file (launcher spawn --backend ditto --secret-file F)"
                    )
                })?;
                let secret = ditto::Secret::read(path).map_err(anyhow::Error::msg)?;
                drop(setup.listener);
                let backend = ditto::sdk::DittoBackend::start(
                    ditto::sdk::DittoSetup {
                        me: setup.me,
                        addrs: setup.addrs,
                        neighbours: setup.neighbours,
                        secret,
                        persistence_dir: setup.state_dir.join("ditto"),
                    },
                    metrics,
                )
                .await?;
                Ok(Backend::Ditto(backend))
            }
            other => Err(anyhow::Error::msg(
                check(other, setup.secret_file.as_deref())
                    .err()
                    .unwrap_or_else(|| format!("backend `{other}` cannot start here")),
            )),
        }
    }
}

/// Calls the same method on whichever backend runs.
macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            Backend::Mesh($b) => $e,
            #[cfg(feature = "ditto")]
            Backend::Ditto($b) => $e,
        }
    };
}

impl SyncBackend for Backend {
    fn name(&self) -> &'static str {
        each!(self, b => b.name())
    }
    fn write(&self, payload: bytes::Bytes) -> u64 {
        each!(self, b => b.write(payload))
    }
    fn progress(&self) -> Vec<u64> {
        each!(self, b => b.progress())
    }
    async fn changed(&self) {
        each!(self, b => b.changed().await)
    }
    fn connected(&self) -> usize {
        each!(self, b => b.connected())
    }
    fn set_neighbours(&self, neighbours: &[u32]) {
        each!(self, b => b.set_neighbours(neighbours))
    }
    async fn stop(self) -> BackendStats {
        each!(self, b => b.stop().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_and_its_secret_are_checked_before_anything_starts() {
        assert!(check("mesh", None).is_ok());
        let e = check("raft", None).unwrap_err();
        assert!(e.contains("no `raft` backend (it has: mesh"), "{e}");
        if !cfg!(feature = "ditto") {
            let e = check("ditto", None).unwrap_err();
            assert!(e.contains("build the peer with the `ditto` feature"), "{e}");
        }
    }
}
