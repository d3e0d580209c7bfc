//! The built-in `mesh` backend: a replicated record log over TCP.
//!
//! - Every planned edge is one TCP connection; the peer with the lower index dials.
//! - Each side first proves it holds the run token ([`auth`]: `Hello` with a challenge,
//!   `Auth` with the proof and its version vector); a side that cannot is refused and
//!   counted. On receiving the other's `Auth`, a side sends exactly the records the other
//!   lacks (delta sync), then registers the link, all under one lock so no record falls
//!   between the two.
//! - A new record (own or received) goes on as the plan's dissemination says
//!   ([`gossip`]): flooded to every link but the one it came from and its origin's, or
//!   pushed on a self-pruning spanning tree with lazy announcements and pulls on the
//!   other links (plumtree). Either way multi-hop, so a spanning tree reaches everyone.
//! - Each link has a bounded send queue of frames; its writer batches the records queued
//!   for it into one `Records` frame per wake-up. A link that cannot keep up is dropped
//!   rather than buffered without limit; the dialer reconnects and delta sync repairs
//!   the gap.
//! - A dropped connection is redialled with backoff until the backend stops.
//!
//! [`MeshBackend::set_blocked`] cuts the link to a neighbour and refuses it until unblocked:
//! an application-level partition, used by tests. [`MeshBackend::set_neighbours`] moves
//! the peer to a new set of neighbours (mobility): links to the ones left are closed, the
//! new ones are dialled (by the lower index) and caught up by delta sync.

pub mod auth;
pub mod gossip;
pub mod patience;
pub mod store;
pub mod wire;

use crate::backend::{BackendStats, SyncBackend};
use crate::metrics::Metrics;
use bytes::Bytes;
use cmesh_common::plan::Dissemination;
use cmesh_common::report::{DeltaSyncStats, DisseminationStats, NeighbourStats};
use gossip::{Control, Gossip};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Inserted, Record, RecordStore};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use wire::{Frame, WIRE_VERSION};

/// Records per `Records` frame during catch-up.
const CATCH_UP_BATCH: usize = 256;
/// How long a dial waits for TCP's own handshake (the kernel's: no turn of the other
/// process needed), and an acceptor for the dialer's `Hello` (sent with the connection).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start a mesh backend.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    pub run_id: String,
    /// This peer's index in the plan.
    pub me: u32,
    /// Every peer's address, by plan index.
    pub addrs: Vec<String>,
    /// The planned neighbours' indexes.
    pub neighbours: Vec<u32>,
    /// Records kept per origin.
    pub window: usize,
    /// Frames queued per link before it is dropped as too slow.
    pub queue_frames: usize,
    /// How a record is spread.
    pub dissemination: Dissemination,
    /// The plan's graph, every edge (empty if not known): plumtree starts each origin on
    /// its tree in it ([`gossip::Trees`]).
    pub graph: Vec<(u32, u32)>,
    /// The run token, which both ends of a link prove they hold.
    pub key: auth::RunKey,
    /// The first wait for a neighbour's half of a handshake, which grows with that
    /// neighbour's timeouts in a row ([`patience`]); [`patience::BASE`] but in tests.
    pub handshake_wait: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    records_sent: AtomicU64,
    records_received: AtomicU64,
}

struct Link {
    conn: u64,
    tx: mpsc::Sender<Frame>,
}

struct Node {
    store: RecordStore,
    links: HashMap<u32, Link>,
    blocked: HashSet<u32>,
    /// The neighbours now, and every peer that ever was one (for the report).
    neighbours: HashSet<u32>,
    ever: BTreeSet<u32>,
    /// Neighbours a dial loop runs for.
    dialing: HashSet<u32>,
    delta: DeltaSyncStats,
    gossip: Gossip,
    next_seq: u64,
    next_conn: u64,
}

struct Inner {
    cfg: MeshConfig,
    node: Mutex<Node>,
    /// By peer index (every peer of the plan can become a neighbour).
    counters: Vec<Counters>,
    metrics: Arc<Mutex<Metrics>>,
    changed: Notify,
    /// Becomes true when the backend stops.
    stopping: watch::Sender<bool>,
    /// Wakes a neighbour's dialer early (after an unblock).
    redial: Vec<Notify>,
    /// Wakes the dissemination's ticker when it has work.
    gossip_work: Notify,
    /// Connections whose other end did not prove it holds the run token.
    refused: AtomicU64,
    /// How long to wait for each neighbour's half of a handshake.
    patience: Mutex<patience::Patience>,
    /// Handshakes given up on because the neighbour was slower than that.
    timed_out: AtomicU64,
}

/// A running mesh backend.
pub struct MeshBackend {
    inner: Arc<Inner>,
    tasks: Mutex<JoinSet<()>>,
}

impl MeshBackend {
    /// Starts accepting on `listener` and dialling the neighbours with a higher index.
    pub fn start(cfg: MeshConfig, listener: TcpListener, metrics: Arc<Mutex<Metrics>>) -> Self {
        let origins = cfg.addrs.len();
        let inner = Arc::new(Inner {
            node: Mutex::new(Node {
                store: RecordStore::new(origins, cfg.window),
                links: HashMap::new(),
                blocked: HashSet::new(),
                neighbours: cfg.neighbours.iter().copied().collect(),
                ever: cfg.neighbours.iter().copied().collect(),
                dialing: HashSet::new(),
                delta: DeltaSyncStats::default(),
                gossip: if cfg.graph.is_empty() {
                    Gossip::new(cfg.dissemination, cfg.me)
                } else {
                    Gossip::new(cfg.dissemination, cfg.me)
                        .with_trees(gossip::Trees::new(origins, &cfg.graph, cfg.me))
                },
                next_seq: 0,
                next_conn: 0,
            }),
            counters: (0..origins).map(|_| Counters::default()).collect(),
            redial: (0..origins).map(|_| Notify::new()).collect(),
            metrics,
            changed: Notify::new(),
            gossip_work: Notify::new(),
            stopping: watch::channel(false).0,
            refused: AtomicU64::new(0),
            patience: Mutex::new(patience::Patience::new(cfg.handshake_wait)),
            timed_out: AtomicU64::new(0),
            cfg,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(inner.clone(), listener));
        if inner.cfg.dissemination == Dissemination::Plumtree {
            tasks.spawn(gossip_loop(inner.clone()));
        }
        let backend = MeshBackend {
            inner,
            tasks: Mutex::new(tasks),
        };
        let first = backend.inner.cfg.neighbours.clone();
        backend.set_neighbours(&first);
        backend
    }

    /// Makes `neighbours` this peer's neighbours: closes the links to the others and
    /// dials the new ones it is the dialler for (the lower index dials).
    pub fn set_neighbours(&self, neighbours: &[u32]) {
        let me = self.inner.cfg.me;
        let n = self.inner.cfg.addrs.len() as u32;
        let wanted: HashSet<u32> = neighbours
            .iter()
            .copied()
            .filter(|&p| p != me && p < n)
            .collect();
        let mut node = self.inner.lock();
        let gone: Vec<u32> = node
            .links
            .keys()
            .copied()
            .filter(|p| !wanted.contains(p))
            .collect();
        for p in gone {
            node.links.remove(&p);
            node.gossip.link_down(p);
        }
        if wanted != self.inner.cfg.neighbours.iter().copied().collect() {
            // Not the plan's graph any more: its trees no longer fit.
            node.gossip.forget_trees();
        }
        node.ever.extend(wanted.iter().copied());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for &p in &wanted {
            if me < p && node.dialing.insert(p) {
                tasks.spawn(dial_loop(self.inner.clone(), p));
            }
        }
        node.neighbours = wanted;
    }

    /// The neighbours now.
    pub fn neighbours(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.inner.lock().neighbours.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Neighbours with an established link now.
    pub fn connected(&self) -> usize {
        self.inner.lock().links.len()
    }

    /// Cuts (true) or restores (false) the link to neighbour `peer`.
    pub fn set_blocked(&self, peer: u32, blocked: bool) {
        let mut node = self.inner.lock();
        if blocked {
            node.blocked.insert(peer);
            node.links.remove(&peer);
            node.gossip.link_down(peer);
        } else {
            node.blocked.remove(&peer);
            drop(node);
            if let Some(n) = self.inner.redial.get(peer as usize) {
                n.notify_one();
            }
        }
    }

    /// The catch-up figures so far.
    pub fn delta_stats(&self) -> DeltaSyncStats {
        self.inner.lock().delta.clone()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    fn hello(&self, nonce: auth::Nonce) -> Bytes {
        wire::encode(&Frame::Hello {
            wire_version: WIRE_VERSION,
            run_id: self.cfg.run_id.clone(),
            from: self.cfg.me,
            nonce,
        })
    }

    /// This side's `Auth` to `peer`: the proof over `peer`'s challenge, and the version
    /// vector.
    fn auth(&self, peer: u32, challenge: &auth::Nonce, own: &auth::Nonce) -> Bytes {
        let proof = auth::proof(
            &self.cfg.key,
            &self.cfg.run_id,
            self.cfg.me,
            peer,
            challenge,
            own,
        );
        let versions = self.lock().store.version_vector();
        wire::encode(&Frame::Auth { proof, versions })
    }

    /// Reads `peer`'s `Auth` and checks its proof against this side's `challenge`: its
    /// version vector, or why not (a wrong proof is counted as refused).
    async fn read_auth<R: tokio::io::AsyncRead + Unpin>(
        &self,
        read: &mut R,
        peer: u32,
        challenge: &auth::Nonce,
        theirs: &auth::Nonce,
    ) -> std::io::Result<(Vec<u64>, usize)> {
        let answer = self.handshake_read(read, peer, "auth").await?;
        let refused = |why: &str| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_owned())
        };
        match answer {
            Some((Frame::Auth { proof, versions }, n)) => {
                if auth::verify(
                    &self.cfg.key,
                    &self.cfg.run_id,
                    peer,
                    self.cfg.me,
                    challenge,
                    theirs,
                    &proof,
                ) {
                    Ok((versions, n))
                } else {
                    Err(refused("its proof of the run token is wrong"))
                }
            }
            // Closed before its proof: most often a dialer that gave up waiting (its
            // host is slow), not a stranger; not counted.
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before its proof of the run token",
            )),
            Some(_) => Err(refused("it sent no proof of the run token")),
        }
    }

    /// Reads `peer`'s next handshake message (`what`, for the error), waiting as long as
    /// this side's patience with `peer` says; a timeout makes that patience grow.
    async fn handshake_read<R: tokio::io::AsyncRead + Unpin>(
        &self,
        read: &mut R,
        peer: u32,
        what: &str,
    ) -> std::io::Result<Option<(Frame, usize)>> {
        let wait = self.patience().wait(peer);
        match tokio::time::timeout(wait, wire::read(read)).await {
            Ok(read) => read,
            Err(_) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
                if self.patience().timed_out(peer) {
                    tracing::info!(
                        peer,
                        waited_ms = wait.as_millis() as u64,
                        "handshake timed out; waiting longer for this neighbour next time (is its host short of CPU?)"
                    );
                }
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no {what} within {} ms", wait.as_millis()),
                ))
            }
        }
    }

    fn patience(&self) -> MutexGuard<'_, patience::Patience> {
        self.patience.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` (holding `records` records) on the link to `peer`. A link whose
    /// queue is full is dropped (true): it resyncs on reconnect.
    fn send(&self, node: &mut Node, peer: u32, frame: Frame, records: u64) -> bool {
        let Some(link) = node.links.get(&peer) else {
            return false;
        };
        if link.tx.try_send(frame).is_ok() {
            self.counters[peer as usize]
                .records_sent
                .fetch_add(records, Ordering::Relaxed);
            return false;
        }
        tracing::warn!(
            peer,
            "send queue full; dropping the link to resync on reconnect"
        );
        node.links.remove(&peer);
        node.gossip.link_down(peer);
        true
    }

    /// Pushes records new to this peer (from `from`, or written here) to the links the
    /// dissemination names, one frame per link.
    /// `now_us` is when they arrived (were written, for this peer's own).
    fn push(&self, node: &mut Node, from: Option<u32>, records: Vec<Record>, now_us: u64) {
        let mut to: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let links: Vec<u32> = node.links.keys().copied().collect();
        for r in records {
            node.gossip.arrived(r.origin, r.seq, now_us);
            for p in node
                .gossip
                .on_new(from, r.origin, r.seq, links.iter().copied())
            {
                to.entry(p).or_default().push(r.clone());
            }
        }
        for (peer, records) in to {
            let n = records.len() as u64;
            self.send(node, peer, Frame::Records(records), n);
        }
        if node.gossip.has_work() {
            self.gossip_work.notify_one();
        }
    }

    /// Handles records that arrived from neighbour `from`; `repair` when they came to
    /// catch this peer up (a catch-up or a graft's answer).
    fn receive(&self, from: u32, records: Vec<Record>, repair: bool) {
        let now = cmesh_common::unix_micros();
        let mut node = self.lock();
        let mut fresh = Vec::new();
        let mut duplicates = BTreeSet::new();
        {
            let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            for r in records {
                let (origin, written) = (r.origin, r.written_at_us);
                match node.store.insert(r.clone()) {
                    Inserted::New => {
                        metrics.on_new_record(origin, written, now);
                        fresh.push(r);
                    }
                    Inserted::Duplicate => {
                        metrics.on_duplicate();
                        duplicates.insert(origin);
                    }
                }
            }
        }
        for origin in duplicates {
            if node.gossip.on_duplicate(from, origin, repair) {
                self.send(&mut node, from, Frame::Prune { origin }, 0);
            }
        }
        if fresh.is_empty() {
            return;
        }
        self.push(&mut node, Some(from), fresh, now);
        drop(node);
        self.changed.notify_one();
    }

    /// Handles a control frame from neighbour `from`.
    fn control(&self, from: u32, frame: Frame) {
        let mut node = self.lock();
        match frame {
            Frame::IHave(entries) => {
                let Node { store, gossip, .. } = &mut *node;
                gossip.on_ihave(
                    from,
                    &entries,
                    |o, s| store.holds(o, s),
                    cmesh_common::unix_micros(),
                );
                if gossip.has_work() {
                    self.gossip_work.notify_one();
                }
            }
            Frame::Graft { origin, after } => {
                node.gossip.on_graft(from, origin);
                let records = node.store.after(origin, after);
                for chunk in records.chunks(CATCH_UP_BATCH) {
                    let n = chunk.len() as u64;
                    if self.send(&mut node, from, Frame::Repair(chunk.to_vec()), n) {
                        break;
                    }
                }
            }
            Frame::Prune { origin } => node.gossip.on_prune(from, origin),
            Frame::Hello { .. } | Frame::Auth { .. } | Frame::Records(_) | Frame::Repair(_) => {}
        }
    }

    /// The dissemination's tick: announcements to the lazy links, grafts for what did
    /// not come.
    fn tick(&self) {
        let mut node = self.lock();
        let controls = {
            let Node { store, gossip, .. } = &mut *node;
            let versions = store.version_vector();
            gossip.tick(
                cmesh_common::unix_micros(),
                |o, s| store.holds(o, s),
                |o| versions.get(o as usize).copied().unwrap_or(0),
            )
        };
        for c in controls {
            match c {
                Control::IHave { to, entries } => {
                    self.send(&mut node, to, Frame::IHave(entries), 0);
                }
                Control::Graft { to, origin, after } => {
                    self.send(&mut node, to, Frame::Graft { origin, after }, 0);
                }
            }
        }
    }
}

impl SyncBackend for MeshBackend {
    fn name(&self) -> &'static str {
        "mesh"
    }

    fn connected(&self) -> usize {
        MeshBackend::connected(self)
    }

    fn link_gauge(&self) -> crate::backend::LinkGauge {
        let inner = self.inner.clone();
        Arc::new(move || inner.lock().links.len())
    }

    fn set_neighbours(&self, neighbours: &[u32]) {
        MeshBackend::set_neighbours(self, neighbours)
    }

    fn write(&self, payload: Bytes) -> u64 {
        let inner = &self.inner;
        let mut node = inner.lock();
        node.next_seq += 1;
        let record = Record {
            origin: inner.cfg.me,
            seq: node.next_seq,
            written_at_us: cmesh_common::unix_micros(),
            payload,
        };
        let (seq, at) = (record.seq, record.written_at_us);
        node.store.insert(record.clone());
        inner.push(&mut node, None, vec![record], at);
        seq
    }

    fn progress(&self) -> Vec<u64> {
        self.inner.lock().store.version_vector()
    }

    async fn changed(&self) {
        self.inner.changed.notified().await
    }

    async fn stop(self) -> BackendStats {
        self.inner.stopping.send_replace(true);
        self.inner.lock().links.clear();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while tasks.join_next().await.is_some() {}
        let node = self.inner.lock();
        let neighbours = node
            .ever
            .iter()
            .map(|&n| {
                let c = &self.inner.counters[n as usize];
                NeighbourStats {
                    peer: n.to_string(),
                    addr: self.inner.cfg.addrs[n as usize].clone(),
                    connects: c.connects.load(Ordering::Relaxed),
                    bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
                    bytes_received: c.bytes_received.load(Ordering::Relaxed),
                    records_sent: c.records_sent.load(Ordering::Relaxed),
                    records_received: c.records_received.load(Ordering::Relaxed),
                }
            })
            .collect();
        let g = &node.gossip.stats;
        BackendStats {
            neighbours,
            delta_sync: node.delta.clone(),
            records_missed: node.store.missed(),
            dissemination: Some(DisseminationStats {
                mode: node.gossip.mode().name().into(),
                prunes_sent: g.prunes_sent,
                grafts_sent: g.grafts_sent,
                announcements_sent: g.announcements_sent,
            }),
            handshakes_refused: self.inner.refused.load(Ordering::Relaxed),
            handshakes_timed_out: self.inner.timed_out.load(Ordering::Relaxed),
            writes_in_time: None,
        }
    }
}

/// Resolves when the backend stops (without holding the watch's lock across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Ticks the dissemination while it has work (announcements to send, records awaited):
/// idle peers do not wake.
async fn gossip_loop(inner: Arc<Inner>) {
    let mut stopping = inner.stopping.subscribe();
    loop {
        if !inner.lock().gossip.has_work() {
            tokio::select! {
                _ = stopped(&mut stopping) => return,
                _ = inner.gossip_work.notified() => {}
            }
        }
        tokio::select! {
            _ = stopped(&mut stopping) => return,
            _ = tokio::time::sleep(gossip::TICK) => {}
        }
        inner.tick();
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut stopping = inner.stopping.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    conns.spawn(accept_one(inner.clone(), stream, addr));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

async fn accept_one(inner: Arc<Inner>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello = tokio::time::timeout(CONNECT_TIMEOUT, wire::read(&mut read)).await;
    let (from, theirs, n) = match hello {
        Ok(Ok(Some((
            Frame::Hello {
                wire_version,
                run_id,
                from,
                nonce,
            },
            n,
        )))) if wire_version == WIRE_VERSION && run_id == inner.cfg.run_id => (from, nonce, n),
        _ => {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%addr, "connection without a valid hello for this run; closed");
            return;
        }
    };
    {
        let node = inner.lock();
        if !node.neighbours.contains(&from) || from > inner.cfg.me {
            // Also a neighbour of a graph re-drawn since: the dialler gives up on its own.
            tracing::debug!(%addr, from, "connection from a peer that is not a neighbour's dialler now; closed");
            return;
        }
        if node.blocked.contains(&from) {
            return;
        }
    }
    let Ok(challenge) = auth::nonce() else {
        return;
    };
    let hello = inner.hello(challenge);
    if write.write_all(&hello).await.is_err() {
        return;
    }
    let (versions, m) = match inner.read_auth(&mut read, from, &challenge, &theirs).await {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(%addr, claimed = from, "connection refused: {e}");
            return;
        }
        Err(e) => {
            tracing::debug!(%addr, claimed = from, "handshake failed: {e}");
            return;
        }
    };
    let answer = inner.auth(from, &theirs, &challenge);
    if write.write_all(&answer).await.is_err() {
        return;
    }
    inner.patience().met(from);
    let c = &inner.counters[from as usize];
    c.bytes_sent
        .fetch_add((hello.len() + answer.len()) as u64, Ordering::Relaxed);
    c.bytes_received
        .fetch_add((n + m) as u64, Ordering::Relaxed);
    run_link(inner, from, versions, read, write).await;
}

async fn dial_loop(inner: Arc<Inner>, peer: u32) {
    let addr = inner.cfg.addrs[peer as usize].clone();
    let mut stopping = inner.stopping.subscribe();
    let mut backoff = Duration::from_millis(50);
    while !inner.stopping() {
        let blocked = {
            let mut node = inner.lock();
            if !node.neighbours.contains(&peer) {
                // Not a neighbour any more (mobility): this loop ends, under the lock, so
                // a re-added neighbour gets a new one.
                node.dialing.remove(&peer);
                return;
            }
            node.blocked.contains(&peer)
        };
        if !blocked {
            match dial_once(&inner, peer, &addr).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => tracing::debug!(peer, %addr, "dial failed: {e}"),
            }
        }
        if inner.stopping() {
            break;
        }
        tokio::select! {
            _ = stopped(&mut stopping) => break,
            _ = inner.redial[peer as usize].notified() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn dial_once(inner: &Arc<Inner>, peer: u32, addr: &str) -> std::io::Result<()> {
    // The neighbour's name looked up once (crate::resolve), again after a failure.
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        TcpStream::connect(crate::resolve::lookup(addr).await?).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))
    .and_then(|r| r);
    let stream = connected.inspect_err(|_| crate::resolve::forget(addr))?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let challenge = auth::nonce()?;
    let hello = inner.hello(challenge);
    write.write_all(&hello).await?;
    let answer = inner.handshake_read(&mut read, peer, "hello").await?;
    let (theirs, n) = match answer {
        Some((
            Frame::Hello {
                wire_version,
                run_id,
                from,
                nonce,
            },
            n,
        )) if wire_version == WIRE_VERSION && run_id == inner.cfg.run_id && from == peer => {
            (nonce, n)
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the neighbour did not answer with a hello for this run",
            ))
        }
    };
    let auth = inner.auth(peer, &theirs, &challenge);
    write.write_all(&auth).await?;
    let (versions, m) = inner
        .read_auth(&mut read, peer, &challenge, &theirs)
        .await
        .inspect_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(peer, %addr, "link refused: {e}")
            }
            _ => tracing::debug!(peer, %addr, "handshake failed: {e}"),
        })?;
    inner.patience().met(peer);
    let c = &inner.counters[peer as usize];
    c.bytes_sent
        .fetch_add((hello.len() + auth.len()) as u64, Ordering::Relaxed);
    c.bytes_received
        .fetch_add((n + m) as u64, Ordering::Relaxed);
    run_link(inner.clone(), peer, versions, read, write).await;
    Ok(())
}

/// Catches the neighbour up, registers the link, then pumps frames both ways until either
/// side closes, the link is dropped, or the backend stops.
async fn run_link(
    inner: Arc<Inner>,
    peer: u32,
    their_versions: Vec<u64>,
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::channel::<Frame>(inner.cfg.queue_frames.max(CATCH_UP_BATCH));
    let conn = {
        let mut node = inner.lock();
        if node.blocked.contains(&peer) || !node.neighbours.contains(&peer) || inner.stopping() {
            return;
        }
        // A peer that restarted without its store learns from its neighbours how far it
        // had written, and goes on from there instead of re-using sequence numbers.
        let me = inner.cfg.me as usize;
        node.next_seq = node
            .next_seq
            .max(their_versions.get(me).copied().unwrap_or(0));
        let missing = node.store.missing_for(&their_versions);
        let full = node.store.window_bytes();
        let mut sent_bytes = 0u64;
        for chunk in missing.chunks(CATCH_UP_BATCH) {
            let frame = Frame::Repair(chunk.to_vec());
            sent_bytes += chunk.iter().map(|r| r.wire_size() as u64).sum::<u64>();
            // The queue is fresh and at least CATCH_UP_BATCH deep: a full window fits
            // unless it is huge, in which case what does not fit is left to the next sync.
            if tx.try_send(frame).is_err() {
                break;
            }
        }
        node.delta.sessions += 1;
        node.delta.records_sent += missing.len() as u64;
        node.delta.bytes_sent += sent_bytes;
        node.delta.full_resend_bytes += full;
        inner.counters[peer as usize]
            .records_sent
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        node.next_conn += 1;
        let conn = node.next_conn;
        node.links.insert(peer, Link { conn, tx });
        node.gossip.link_up(peer);
        conn
    };
    inner.counters[peer as usize]
        .connects
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(peer, conn, "link up");
    inner.changed.notify_one();

    let counters = &inner.counters[peer as usize];
    let writer = async {
        let mut out = BufWriter::new(write);
        let mut batch = Batch::default();
        while let Some(first) = rx.recv().await {
            // Everything queued now goes out in this wake-up: pushed records in as few
            // `Records` frames as fit, the other frames as they are, in order.
            let mut next = Some(first);
            while let Some(frame) = next.take().or_else(|| rx.try_recv().ok()) {
                for bytes in batch.add(frame) {
                    out.write_all(&bytes).await?;
                    counters
                        .bytes_sent
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            }
            if let Some(bytes) = batch.take() {
                out.write_all(&bytes).await?;
                counters
                    .bytes_sent
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            out.flush().await?;
        }
        out.shutdown().await
    };
    let reader = async {
        while let Some((frame, n)) = wire::read(&mut read).await? {
            counters
                .bytes_received
                .fetch_add(n as u64, Ordering::Relaxed);
            match frame {
                Frame::Records(records) | Frame::Repair(records) if records.is_empty() => {}
                Frame::Records(records) => {
                    counters
                        .records_received
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    inner.receive(peer, records, false);
                }
                Frame::Repair(records) => {
                    counters
                        .records_received
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    inner.receive(peer, records, true);
                }
                control => inner.control(peer, control),
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let mut stopping = inner.stopping.subscribe();
    let ended = tokio::select! {
        r = writer => r.err().map(|e| format!("write: {e}")),
        r = reader => r.err().map(|e| format!("read: {e}")),
        _ = stopped(&mut stopping) => None,
    };
    let mut node = inner.lock();
    if node.links.get(&peer).is_some_and(|l| l.conn == conn) {
        node.links.remove(&peer);
        node.gossip.link_down(peer);
    }
    drop(node);
    match ended {
        Some(e) if !inner.stopping() => tracing::info!(peer, "link down: {e}"),
        _ => tracing::debug!(peer, "link closed"),
    }
}

/// A link writer's pushed records, gathered into `Records` frames of at most
/// [`CATCH_UP_BATCH`] records.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
}

impl Batch {
    /// Takes `frame` in; returns what must be written before it can go on: a full
    /// batch, or the batch and `frame` itself when it is not a `Records` frame (frames
    /// keep their order).
    fn add(&mut self, frame: Frame) -> Vec<Bytes> {
        let mut out = Vec::new();
        match frame {
            Frame::Records(records) => {
                for r in records {
                    if self.records.len() == CATCH_UP_BATCH {
                        out.extend(self.take());
                    }
                    self.records.push(r);
                }
            }
            other => {
                out.extend(self.take());
                out.push(wire::encode(&other));
            }
        }
        out
    }

    /// The gathered records as one frame, if any.
    fn take(&mut self) -> Option<Bytes> {
        (!self.records.is_empty())
            .then(|| wire::encode(&Frame::Records(std::mem::take(&mut self.records))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node(
        mode: Dissemination,
        me: u32,
        n: usize,
        neighbours: Vec<u32>,
        listener: TcpListener,
        addrs: Vec<String>,
    ) -> (MeshBackend, Arc<Mutex<Metrics>>) {
        start(config(mode, me, neighbours, addrs), n, listener)
    }

    fn config(
        mode: Dissemination,
        me: u32,
        neighbours: Vec<u32>,
        addrs: Vec<String>,
    ) -> MeshConfig {
        MeshConfig {
            run_id: "t".into(),
            me,
            addrs,
            neighbours,
            window: 1000,
            queue_frames: 1024,
            dissemination: mode,
            graph: Vec::new(),
            key: auth::RunKey::new("test-token"),
            handshake_wait: patience::BASE,
        }
    }

    /// Starts `cfg` in a run of `n` peers.
    fn start(
        cfg: MeshConfig,
        n: usize,
        listener: TcpListener,
    ) -> (MeshBackend, Arc<Mutex<Metrics>>) {
        let metrics = Arc::new(Mutex::new(Metrics::new(cfg.me, n)));
        (MeshBackend::start(cfg, listener, metrics.clone()), metrics)
    }

    async fn listeners(n: usize) -> (Vec<TcpListener>, Vec<String>) {
        let mut ls = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(l.local_addr().unwrap().to_string());
            ls.push(l);
        }
        (ls, addrs)
    }

    /// Waits (bounded) until `cond` holds, re-checking whenever the backend reports news.
    async fn until(b: &MeshBackend, cond: impl Fn(&MeshBackend) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !cond(b) {
                tokio::select! {
                    _ = b.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
        .await
        .expect("condition not reached within 10 s");
    }

    #[tokio::test]
    async fn records_go_over_two_hops() {
        for mode in Dissemination::ALL {
            // 0 -- 1 -- 2: a record from 0 reaches 2 through 1.
            let (mut ls, addrs) = listeners(3).await;
            let (b2, m2) = node(mode, 2, 3, vec![1], ls.pop().unwrap(), addrs.clone()).await;
            let (b1, _) = node(mode, 1, 3, vec![0, 2], ls.pop().unwrap(), addrs.clone()).await;
            let (b0, _) = node(mode, 0, 3, vec![1], ls.pop().unwrap(), addrs.clone()).await;
            until(&b1, |b| b.connected() == 2).await;
            for _ in 0..5 {
                b0.write(Bytes::from_static(b"x"));
            }
            until(&b2, |b| b.progress()[0] == 5).await;
            assert_eq!(m2.lock().unwrap().received()[0], 5);
            assert_eq!(m2.lock().unwrap().latency().count(), 5);
            for b in [b0, b1, b2] {
                b.stop().await;
            }
        }
    }

    /// A stranger on the network (no run token) connects to peer 1 as its neighbour 0:
    /// `proof` is its answer to the challenge, or none at all. Returns whether peer 1
    /// closed the connection before the stranger's records could be taken.
    async fn stranger(addr: &str, proof: Option<auth::Proof>) -> bool {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mine = auth::nonce().unwrap();
        let hello = Frame::Hello {
            wire_version: WIRE_VERSION,
            run_id: "t".into(),
            from: 0,
            nonce: mine,
        };
        write.write_all(&wire::encode(&hello)).await.unwrap();
        let Some((Frame::Hello { .. }, _)) = wire::read(&mut read).await.unwrap() else {
            panic!("peer 1 answers a hello with its challenge");
        };
        if let Some(proof) = proof {
            let auth = Frame::Auth {
                proof,
                versions: vec![0, 0],
            };
            write.write_all(&wire::encode(&auth)).await.unwrap();
        }
        let injected = Frame::Records(vec![Record {
            origin: 0,
            seq: 1,
            written_at_us: 1,
            payload: Bytes::from_static(b"injected"),
        }]);
        let _ = write.write_all(&wire::encode(&injected)).await;
        // Peer 1 says nothing more and closes.
        matches!(
            tokio::time::timeout(Duration::from_secs(10), wire::read(&mut read)).await,
            Ok(Ok(None) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_stranger_without_the_token_is_refused_counted_and_injects_nothing() {
        let (mut ls, addrs) = listeners(2).await;
        let mode = Dissemination::Flood;
        let (b1, m1) = node(mode, 1, 2, vec![0], ls.pop().unwrap(), addrs.clone()).await;
        // A guessed key's proof, then no proof at all: both closed, nothing taken.
        let guessed = auth::proof(&auth::RunKey::new("guess"), "t", 0, 1, &[0; 16], &[0; 16]);
        assert!(stranger(&addrs[1], Some(guessed)).await);
        assert!(stranger(&addrs[1], None).await);
        assert_eq!(b1.progress()[0], 0, "no injected record was taken");
        assert_eq!(m1.lock().unwrap().received()[0], 0);
        // The real peer 0, with the token, links and syncs.
        let (b0, _) = node(mode, 0, 2, vec![1], ls.pop().unwrap(), addrs.clone()).await;
        until(&b1, |b| b.connected() == 1).await;
        b0.write(Bytes::from_static(b"real"));
        until(&b1, |b| b.progress()[0] == 1).await;
        let stats = b1.stop().await;
        assert_eq!(stats.handshakes_refused, 2);
        assert_eq!(b0.stop().await.handshakes_refused, 0);
    }

    /// A TCP relay to `to` that holds every chunk for `delay` before passing it on, both
    /// ways: a neighbour on a host too busy to answer in time. Returns its address.
    async fn slow_relay(to: String, delay: Duration) -> String {
        async fn pass(
            mut from: tokio::net::tcp::OwnedReadHalf,
            mut into: tokio::net::tcp::OwnedWriteHalf,
            delay: Duration,
        ) {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                tokio::time::sleep(delay).await;
                if into.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = into.shutdown().await;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&to).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pass(cr, sw, delay));
                tokio::spawn(pass(sr, cw, delay));
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_neighbour_slower_than_the_first_wait_is_joined_all_the_same() {
        // Each handshake message takes 150 ms each way; both sides first wait 100 ms for
        // the other's. With a fixed wait every attempt would time out, forever.
        let (mut ls, addrs) = listeners(2).await;
        let wait = Duration::from_millis(100);
        let mode = Dissemination::Flood;
        let mut c1 = config(mode, 1, vec![0], addrs.clone());
        c1.handshake_wait = wait;
        let (b1, m1) = start(c1, 2, ls.pop().unwrap());
        let relay = slow_relay(addrs[1].clone(), Duration::from_millis(150)).await;
        let mut c0 = config(mode, 0, vec![1], vec![addrs[0].clone(), relay]);
        c0.handshake_wait = wait;
        let (b0, _) = start(c0, 2, ls.pop().unwrap());
        until(&b0, |b| b.connected() == 1).await;
        b0.write(Bytes::from_static(b"late but there"));
        until(&b1, |b| b.progress()[0] == 1).await;
        assert_eq!(m1.lock().unwrap().received()[0], 1);
        let (s0, s1) = (b0.stop().await, b1.stop().await);
        assert!(
            s0.handshakes_timed_out >= 1,
            "the dialer gave up at least once before it waited long enough: {}",
            s0.handshakes_timed_out
        );
        assert_eq!(
            (s0.handshakes_refused, s1.handshakes_refused),
            (0, 0),
            "attempts given up on are no strangers"
        );
    }

    #[tokio::test]
    async fn moving_to_new_neighbours_closes_old_links_and_syncs_over_new_ones() {
        for mode in Dissemination::ALL {
            // 0 -- 1   2: then 1 leaves 0 for 2; 2 gets 0's records through 1.
            let (mut ls, addrs) = listeners(3).await;
            let (b2, m2) = node(mode, 2, 3, vec![], ls.pop().unwrap(), addrs.clone()).await;
            let (b1, _) = node(mode, 1, 3, vec![0], ls.pop().unwrap(), addrs.clone()).await;
            let (b0, _) = node(mode, 0, 3, vec![1], ls.pop().unwrap(), addrs.clone()).await;
            until(&b0, |b| b.connected() == 1).await;
            for _ in 0..4 {
                b0.write(Bytes::from_static(b"x"));
            }
            until(&b1, |b| b.progress()[0] == 4).await;
            assert_eq!(b2.progress()[0], 0, "2 is nobody's neighbour yet");
            b1.set_neighbours(&[2]);
            b2.set_neighbours(&[1]);
            b0.set_neighbours(&[]);
            until(&b2, |b| b.progress()[0] == 4).await;
            assert_eq!(m2.lock().unwrap().received()[0], 4);
            until(&b0, |b| b.connected() == 0).await;
            assert_eq!(b1.neighbours(), vec![2]);
            // And back: 0 and 1 are neighbours again, and what 0 wrote meanwhile arrives.
            b0.write(Bytes::from_static(b"y"));
            b0.set_neighbours(&[1]);
            b1.set_neighbours(&[0, 2]);
            until(&b2, |b| b.progress()[0] == 5).await;
            let s1 = b1.stop().await;
            let peers: Vec<&str> = s1.neighbours.iter().map(|n| n.peer.as_str()).collect();
            assert_eq!(
                peers,
                vec!["0", "2"],
                "every peer that was a neighbour is reported"
            );
            assert!(s1.neighbours[0].connects >= 2, "1 and 0 connected twice");
            b0.stop().await;
            b2.stop().await;
        }
    }

    /// `n` peers, each linked to every other, all links up.
    async fn complete(mode: Dissemination, n: usize) -> Vec<(MeshBackend, Arc<Mutex<Metrics>>)> {
        let (ls, addrs) = listeners(n).await;
        let mut peers = Vec::new();
        for (i, l) in ls.into_iter().enumerate() {
            let others = (0..n as u32).filter(|&p| p != i as u32).collect();
            peers.push(node(mode, i as u32, n, others, l, addrs.clone()).await);
        }
        for (b, _) in &peers {
            until(b, |b| b.connected() == n - 1).await;
        }
        peers
    }

    /// Every peer writes `rounds` records, one a round; each round waits until every
    /// peer holds the round's records. Returns the duplicates received, all peers.
    async fn write_rounds(peers: &[(MeshBackend, Arc<Mutex<Metrics>>)], rounds: usize) -> u64 {
        let before: u64 = peers
            .iter()
            .map(|(_, m)| m.lock().unwrap().duplicates())
            .sum();
        for _ in 0..rounds {
            let seqs: Vec<u64> = peers
                .iter()
                .map(|(b, _)| b.write(Bytes::from_static(b"r")))
                .collect();
            for (b, _) in peers {
                until(b, |b| {
                    let p = b.progress();
                    seqs.iter().enumerate().all(|(o, &s)| p[o] >= s)
                })
                .await;
            }
        }
        peers
            .iter()
            .map(|(_, m)| m.lock().unwrap().duplicates())
            .sum::<u64>()
            - before
    }

    #[tokio::test]
    async fn plumtree_prunes_to_a_tree_and_repairs_it_when_tree_links_are_cut() {
        let flood = complete(Dissemination::Flood, 6).await;
        let flood_dups = write_rounds(&flood, 30).await;
        let tree = complete(Dissemination::Plumtree, 6).await;
        let tree_dups = write_rounds(&tree, 30).await;
        // 6 origins × 30 records × 5 readers = 900 deliveries each way.
        assert!(
            tree_dups * 4 < flood_dups,
            "plumtree {tree_dups} duplicates, flood {flood_dups}"
        );
        // Once pruned, each origin's eager links form a tree: 5 edges for 6 peers, so
        // 10 link ends of 30, about 1.7 a peer, give or take what a race left eager.
        let eager: f64 = tree
            .iter()
            .map(|(b, _)| b.inner.lock().gossip.eager_per_origin())
            .sum();
        assert!(
            eager < 20.0,
            "{eager} eager link ends per origin; flood has 30"
        );
        // Cut a link peer 0 pushes its own records on: what it writes still reaches the
        // peer at the other end, announced to it over a lazy link and pulled (grafted).
        let cut: Vec<u32> = tree[0].0.inner.lock().gossip.eager(0).take(1).collect();
        for &p in &cut {
            tree[0].0.set_blocked(p, true);
            tree[p as usize].0.set_blocked(0, true);
        }
        write_rounds(&tree, 5).await;
        let grafts: u64 = tree
            .iter()
            .map(|(b, _)| b.inner.lock().gossip.stats.grafts_sent)
            .sum();
        for (b, _) in tree {
            assert_eq!(b.stop().await.dissemination.unwrap().mode, "plumtree");
        }
        assert!(
            grafts > 0 || cut.is_empty(),
            "the cut was repaired by grafts"
        );
        for (b, _) in flood {
            b.stop().await;
        }
    }

    #[tokio::test]
    async fn a_cut_off_peer_catches_up_with_only_the_missing_records() {
        for mode in Dissemination::ALL {
            let (mut ls, addrs) = listeners(2).await;
            let (b1, m1) = node(mode, 1, 2, vec![0], ls.pop().unwrap(), addrs.clone()).await;
            let (b0, _) = node(mode, 0, 2, vec![1], ls.pop().unwrap(), addrs.clone()).await;
            until(&b0, |b| b.connected() == 1).await;
            for _ in 0..10 {
                b0.write(Bytes::from(vec![7u8; 100]));
            }
            until(&b1, |b| b.progress()[0] == 10).await;
            let before = b0.delta_stats();

            // Cut the link, write 5 more, then heal it.
            b0.set_blocked(1, true);
            b1.set_blocked(0, true);
            until(&b1, |b| b.connected() == 0).await;
            for _ in 0..5 {
                b0.write(Bytes::from(vec![7u8; 100]));
            }
            assert_eq!(b1.progress()[0], 10, "nothing crosses a cut link");
            b1.set_blocked(0, false);
            b0.set_blocked(1, false);
            until(&b1, |b| b.progress()[0] == 15).await;

            let after = b0.delta_stats();
            assert_eq!(
                after.sessions - before.sessions,
                1,
                "one catch-up on reconnect"
            );
            assert_eq!(
                after.records_sent - before.records_sent,
                5,
                "only the 5 missing records"
            );
            let full = after.full_resend_bytes - before.full_resend_bytes;
            let sent = after.bytes_sent - before.bytes_sent;
            assert!(
                sent * 2 < full,
                "delta {sent} B should be well under a full resend {full} B"
            );
            assert_eq!(m1.lock().unwrap().duplicates(), 0, "nothing sent twice");
            let s0 = b0.stop().await;
            assert_eq!(s0.neighbours[0].connects, 2);
            b1.stop().await;
        }
    }
}
