//! The Ditto small peer itself (only with the `ditto` feature).
//!
//! Type-checked on machines without the vendor's library with `DOCS_RS=1` (the SDK's
//! build script then skips the download); a real build needs the library
//! (`DITTOFFI_SEARCH_PATH`, docs/ditto.md).

use super::{document_to_record, record_to_document, Secret, TransportPlan};
use crate::backend::progress::Progress;
use crate::backend::{BackendStats, SyncBackend};
use crate::metrics::Metrics;
use bytes::Bytes;
use dittolive_ditto::dql::QueryResult;
use dittolive_ditto::prelude::*;
use dittolive_ditto::store::StoreObserver;
use dittolive_ditto::sync::SyncSubscription;
use dittolive_ditto::transport::TransportConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How to start a Ditto backend.
#[derive(Clone, Debug)]
pub struct DittoSetup {
    pub me: u32,
    /// Every peer's advertised `host:port`, by plan index.
    pub addrs: Vec<String>,
    pub neighbours: Vec<u32>,
    pub secret: Secret,
    /// Where Ditto keeps its store (inside the container).
    pub persistence_dir: std::path::PathBuf,
}

struct Shared {
    me: u32,
    addrs: Vec<String>,
    progress: Mutex<Progress>,
    metrics: Arc<Mutex<Metrics>>,
    changed: Notify,
    next_seq: AtomicU64,
}

/// A running Ditto small peer.
pub struct DittoBackend {
    ditto: Ditto,
    shared: Arc<Shared>,
    connected_hint: Arc<AtomicU64>,
    _observer: Arc<StoreObserver>,
    _subscription: Arc<SyncSubscription>,
}

/// Small peers only: every discovery transport off, TCP listen on the peer's port and
/// TCP connections to exactly the planned neighbours it dials.
fn apply(config: &mut TransportConfig, plan: &TransportPlan) {
    config.peer_to_peer.bluetooth_le.enabled = false;
    config.peer_to_peer.lan.enabled = false;
    config.peer_to_peer.awdl.enabled = false;
    config.peer_to_peer.wifi_aware.enabled = false;
    config.listen.tcp.enabled = true;
    config.listen.tcp.interface_ip = "0.0.0.0".into();
    config.listen.tcp.port = plan.listen_port;
    config.listen.http.enabled = false;
    config.connect.websocket_urls.clear();
    config.connect.tcp_servers = plan.connect.iter().cloned().collect();
}

impl DittoBackend {
    /// Opens Ditto with the secret, configures its transports from the plan, subscribes
    /// to and observes every record, and starts syncing.
    pub async fn start(setup: DittoSetup, metrics: Arc<Mutex<Metrics>>) -> anyhow::Result<Self> {
        let plan = TransportPlan::new(setup.me, &setup.addrs, &setup.neighbours)
            .map_err(anyhow::Error::msg)?;
        let config = DittoConfig::new(
            setup.secret.database_id.clone(),
            DittoConfigConnect::SmallPeersOnly { private_key: None },
        )
        .with_persistence_directory(setup.persistence_dir.clone());
        let ditto = Ditto::open(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open Ditto: {e}"))?;
        ditto
            .set_offline_only_license_token(&setup.secret.license_token)
            .map_err(|e| anyhow::anyhow!("Ditto refused the licence token: {e}"))?;
        ditto.update_transport_config(|c| apply(c, &plan));

        let shared = Arc::new(Shared {
            me: setup.me,
            addrs: setup.addrs.clone(),
            progress: Mutex::new(Progress::new(setup.addrs.len())),
            metrics,
            changed: Notify::new(),
            next_seq: AtomicU64::new(0),
        });
        let seen = shared.clone();
        let observer = ditto
            .store()
            .register_observer(super::SELECT_ALL, move |result: QueryResult| {
                let now = cmesh_common::unix_micros();
                let mut fresh = 0;
                for item in result.iter() {
                    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&item.json_string())
                    else {
                        continue;
                    };
                    let Ok((origin, seq, written_at_us, _)) = document_to_record(&doc) else {
                        continue;
                    };
                    let new = seen
                        .progress
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(origin, seq);
                    if new && origin != seen.me {
                        seen.metrics
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .on_new_record(origin, written_at_us, now);
                        fresh += 1;
                    }
                }
                if fresh > 0 {
                    seen.changed.notify_one();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot observe {}: {e}", super::COLLECTION))?;
        let subscription = ditto
            .sync()
            .register_subscription(super::SELECT_ALL)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", super::COLLECTION))?;
        ditto
            .sync()
            .start()
            .map_err(|e| anyhow::anyhow!("cannot start Ditto sync: {e}"))?;
        Ok(DittoBackend {
            ditto,
            shared,
            connected_hint: Arc::new(AtomicU64::new(plan.connect.len() as u64)),
            _observer: observer,
            _subscription: subscription,
        })
    }
}

impl SyncBackend for DittoBackend {
    fn name(&self) -> &'static str {
        "ditto"
    }

    fn write(&self, payload: Bytes) -> u64 {
        let seq = self.shared.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let doc = record_to_document(self.shared.me, seq, cmesh_common::unix_micros(), &payload);
        self.shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.shared.me, seq);
        let store = self.ditto.store().clone();
        // DQL is async; the write is fire-and-forget like the mesh backend's flood, and a
        // failure is logged, never silently dropped.
        tokio::spawn(async move {
            let args = serde_json::json!({ "doc": doc });
            if let Err(e) = store.execute((super::INSERT, args)).await {
                tracing::error!("Ditto insert of record {seq} failed: {e}");
            }
        });
        seq
    }

    fn progress(&self) -> Vec<u64> {
        self.shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .version_vector()
    }

    async fn changed(&self) {
        self.shared.changed.notified().await
    }

    fn connected(&self) -> usize {
        // Ditto does not say per TCP server whether it is connected; the plan's count.
        self.connected_hint.load(Ordering::Relaxed) as usize
    }

    fn link_gauge(&self) -> crate::backend::LinkGauge {
        let hint = self.connected_hint.clone();
        Arc::new(move || hint.load(Ordering::Relaxed) as usize)
    }

    fn set_neighbours(&self, neighbours: &[u32]) {
        match TransportPlan::new(self.shared.me, &self.shared.addrs, neighbours) {
            Ok(plan) => {
                self.connected_hint
                    .store(plan.connect.len() as u64, Ordering::Relaxed);
                self.ditto.update_transport_config(|c| apply(c, &plan));
            }
            Err(e) => tracing::error!("cannot follow the re-drawn graph: {e}"),
        }
    }

    async fn stop(self) -> BackendStats {
        self.ditto.sync().stop();
        BackendStats::default()
    }
}
