//! Sync backends: how a peer shares its records with its neighbours.
//!
//! The peer's lifecycle ([`crate::run`]) is written against [`SyncBackend`], the only
//! seam: the built-in [`mesh`] backend, [`adapter`] (any app, driven by the user's
//! adapter program over JSON lines) and [`ditto`] (a Ditto small peer, behind the
//! `ditto` cargo feature) plug in without touching registration, timing, faults or
//! reporting. A backend reports every record it receives to the shared
//! [`crate::metrics::Metrics`]; [`progress`] keeps the version vector for backends
//! whose app tells of records one at a time.

pub mod adapter;
pub mod ditto;
pub mod mesh;
pub mod progress;

use crate::metrics::Metrics;
use cmesh_common::plan::Dissemination;
use cmesh_common::report::{DeltaSyncStats, DisseminationStats, NeighbourStats};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The backends this build has, as `--backend` takes them.
pub fn available() -> &'static [&'static str] {
    if cfg!(feature = "ditto") {
        &["mesh", "adapter", "ditto"]
    } else {
        &["mesh", "adapter"]
    }
}

/// Checks `--backend`, its secret and its adapter before anything starts (bad input
/// otherwise).
pub fn check(
    kind: &str,
    secret_file: Option<&std::path::Path>,
    adapter: Option<&str>,
) -> Result<(), String> {
    match (kind, adapter) {
        ("adapter", None) => {
            return Err(
                "the adapter backend needs --adapter CMD, the program that drives the app (docs/apps.md)"
                    .into(),
            )
        }
        ("adapter", Some(cmd)) if cmd.trim().is_empty() => {
            return Err("--adapter is empty; give the adapter's command line".into())
        }
        ("adapter", _) => {}
        (_, Some(_)) => {
            return Err(format!(
                "--adapter is for --backend adapter, not `{kind}`"
            ))
        }
        _ => {}
    }
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
    /// Writes the app acknowledged in time, where the app acknowledges them
    /// ([`SyncBackend::writes_in_time`]).
    pub writes_in_time: Option<u64>,
}

/// Reads a backend's links up, from another task.
pub type LinkGauge = Arc<dyn Fn() -> usize + Send + Sync>;

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
    /// [`SyncBackend::connected`] as a handle the heartbeat can read while the backend
    /// runs ([`crate::live`]).
    fn link_gauge(&self) -> LinkGauge;
    /// Moves to a re-drawn graph's neighbours (mobility).
    fn set_neighbours(&self, neighbours: &[u32]);
    /// Resolves, with the reason, once the backend cannot go on (an adapter that
    /// exited, broke the protocol or missed a deadline); the peer then fails. Never,
    /// for backends that cannot fail on their own.
    async fn failed(&self) -> String {
        std::future::pending().await
    }
    /// Writes the app acknowledged within the availability deadline of being sent, for
    /// backends whose app acknowledges writes itself (adapter); `None` where `write`
    /// returning is the acknowledgement.
    fn writes_in_time(&self) -> Option<u64> {
        None
    }
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
    /// Every peer's name, by plan index.
    pub names: Vec<String>,
    /// How long the peers write, and each record's payload.
    pub duration_ms: u64,
    pub payload_bytes: usize,
    /// The adapter's command line (the adapter backend).
    pub adapter: Option<String>,
    pub adapter_deadlines: adapter::session::Deadlines,
    /// The coordinator, for the adapter's sync service, and how long its requests may
    /// retry.
    pub client: crate::client::CoordinatorClient,
    pub patience: std::time::Duration,
}

/// The backend a peer runs.
pub enum Backend {
    Mesh(mesh::MeshBackend),
    Adapter(adapter::AdapterBackend),
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
            "adapter" => {
                let command = setup.adapter.clone().ok_or_else(|| {
                    anyhow::anyhow!("the adapter backend needs --adapter CMD (docs/apps.md)")
                })?;
                let listen = setup
                    .listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                // The app takes the peer's port over.
                drop(setup.listener);
                Ok(Backend::Adapter(
                    adapter::AdapterBackend::start(
                        adapter::AdapterSetup {
                            command,
                            run_id: setup.run_id,
                            me: setup.me,
                            names: setup.names,
                            addrs: setup.addrs,
                            neighbours: setup.neighbours,
                            listen,
                            // Absolute: the adapter runs in it, and passes it on.
                            data_dir: std::path::absolute(setup.state_dir.join("app"))?,
                            duration_ms: setup.duration_ms,
                            payload_bytes: setup.payload_bytes,
                            deadlines: setup.adapter_deadlines,
                            client: setup.client,
                            patience: setup.patience,
                        },
                        metrics,
                    )
                    .await?,
                ))
            }
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
                check(
                    other,
                    setup.secret_file.as_deref(),
                    setup.adapter.as_deref(),
                )
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
            Backend::Adapter($b) => $e,
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
    fn link_gauge(&self) -> LinkGauge {
        each!(self, b => b.link_gauge())
    }
    fn set_neighbours(&self, neighbours: &[u32]) {
        each!(self, b => b.set_neighbours(neighbours))
    }
    async fn failed(&self) -> String {
        each!(self, b => b.failed().await)
    }
    fn writes_in_time(&self) -> Option<u64> {
        each!(self, b => b.writes_in_time())
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
        assert!(check("mesh", None, None).is_ok());
        assert!(check("adapter", None, Some("./adapter.py")).is_ok());
        let e = check("adapter", None, None).unwrap_err();
        assert!(e.contains("needs --adapter CMD"), "{e}");
        let e = check("adapter", None, Some(" ")).unwrap_err();
        assert!(e.contains("--adapter is empty"), "{e}");
        let e = check("mesh", None, Some("x")).unwrap_err();
        assert!(e.contains("--adapter is for --backend adapter"), "{e}");
        let e = check("raft", None, None).unwrap_err();
        assert!(
            e.contains("no `raft` backend (it has: mesh, adapter"),
            "{e}"
        );
        if !cfg!(feature = "ditto") {
            let e = check("ditto", None, None).unwrap_err();
            assert!(e.contains("build the peer with the `ditto` feature"), "{e}");
        }
    }
}
