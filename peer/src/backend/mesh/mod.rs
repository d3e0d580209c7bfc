//! The built-in `mesh` backend: a replicated record log flooded over TCP.
//!
//! - Every planned edge is one TCP connection; the peer with the lower index dials.
//! - Each side's first frame is `Hello` with its version vector. On receiving the other's,
//!   a side sends exactly the records the other lacks (delta sync), then registers the
//!   link for flooding, all under one lock so no record falls between the two.
//! - A new record (own or received) is flooded to every link but the one it came from and
//!   its origin's: multi-hop delivery, so a spanning tree reaches everyone.
//! - Each link has a bounded send queue. A link that cannot keep up is dropped rather than
//!   buffered without limit; the dialer reconnects and delta sync repairs the gap.
//! - A dropped connection is redialled with backoff until the backend stops.
//!
//! [`MeshBackend::set_blocked`] cuts the link to a neighbour and refuses it until unblocked:
//! an application-level partition, used by tests. [`MeshBackend::set_neighbours`] moves
//! the peer to a new set of neighbours (mobility): links to the ones left are closed, the
//! new ones are dialled (by the lower index) and caught up by delta sync.

pub mod store;
pub mod wire;

use crate::backend::{BackendStats, SyncBackend};
use crate::metrics::Metrics;
use bytes::Bytes;
use cmesh_common::report::{DeltaSyncStats, NeighbourStats};
use std::collections::{HashMap, HashSet};
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
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

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
    tx: mpsc::Sender<Bytes>,
}

struct Node {
    store: RecordStore,
    links: HashMap<u32, Link>,
    blocked: HashSet<u32>,
    /// The neighbours now, and every peer that ever was one (for the report).
    neighbours: HashSet<u32>,
    ever: std::collections::BTreeSet<u32>,
    /// Neighbours a dial loop runs for.
    dialing: HashSet<u32>,
    delta: DeltaSyncStats,
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
                next_seq: 0,
                next_conn: 0,
            }),
            counters: (0..origins).map(|_| Counters::default()).collect(),
            redial: (0..origins).map(|_| Notify::new()).collect(),
            metrics,
            changed: Notify::new(),
            stopping: watch::channel(false).0,
            cfg,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(inner.clone(), listener));
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
        node.links.retain(|p, _| wanted.contains(p));
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

    fn hello(&self, node: &Node) -> Bytes {
        wire::encode(&Frame::Hello {
            wire_version: WIRE_VERSION,
            run_id: self.cfg.run_id.clone(),
            from: self.cfg.me,
            versions: node.store.version_vector(),
        })
    }

    /// Sends `frame` (holding `records` records) to every link but `except`; drops links
    /// whose queue is full.
    fn flood(&self, node: &mut Node, frame: &Bytes, records: u64, except: &[u32]) {
        let mut overflowed = Vec::new();
        for (&peer, link) in &node.links {
            if except.contains(&peer) {
                continue;
            }
            match link.tx.try_send(frame.clone()) {
                Ok(()) => {
                    self.counters[peer as usize]
                        .records_sent
                        .fetch_add(records, Ordering::Relaxed);
                }
                Err(_) => overflowed.push(peer),
            }
        }
        for peer in overflowed {
            tracing::warn!(
                peer,
                "send queue full; dropping the link to resync on reconnect"
            );
            node.links.remove(&peer);
        }
    }

    /// Handles records that arrived from neighbour `from`.
    fn receive(&self, from: u32, records: Vec<Record>) {
        let now = cmesh_common::unix_micros();
        let mut node = self.lock();
        let mut fresh = Vec::new();
        {
            let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            for r in records {
                let (origin, written) = (r.origin, r.written_at_us);
                match node.store.insert(r.clone()) {
                    Inserted::New => {
                        metrics.on_new_record(origin, written, now);
                        fresh.push(r);
                    }
                    Inserted::Duplicate => metrics.on_duplicate(),
                }
            }
        }
        if fresh.is_empty() {
            return;
        }
        let origin = fresh[0].origin;
        let single_origin = fresh.iter().all(|r| r.origin == origin);
        let count = fresh.len() as u64;
        let frame = wire::encode(&Frame::Records(fresh));
        let except = if single_origin {
            vec![from, origin]
        } else {
            vec![from]
        };
        self.flood(&mut node, &frame, count, &except);
        drop(node);
        self.changed.notify_one();
    }
}

impl SyncBackend for MeshBackend {
    fn name(&self) -> &'static str {
        "mesh"
    }

    fn connected(&self) -> usize {
        MeshBackend::connected(self)
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
        let seq = record.seq;
        node.store.insert(record.clone());
        let frame = wire::encode(&Frame::Records(vec![record]));
        inner.flood(&mut node, &frame, 1, &[]);
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
        BackendStats {
            neighbours,
            delta_sync: node.delta.clone(),
            records_missed: node.store.missed(),
        }
    }
}

/// Resolves when the backend stops (without holding the watch's lock across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
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
    let hello = tokio::time::timeout(HELLO_TIMEOUT, wire::read(&mut read)).await;
    let (from, versions, n) = match hello {
        Ok(Ok(Some((
            Frame::Hello {
                wire_version,
                run_id,
                from,
                versions,
            },
            n,
        )))) if wire_version == WIRE_VERSION && run_id == inner.cfg.run_id => (from, versions, n),
        _ => {
            tracing::warn!(%addr, "connection without a valid hello for this run; closed");
            return;
        }
    };
    let hello = {
        let node = inner.lock();
        if !node.neighbours.contains(&from) || from > inner.cfg.me {
            // Also a neighbour of a graph re-drawn since: the dialler gives up on its own.
            tracing::debug!(%addr, from, "connection from a peer that is not a neighbour's dialler now; closed");
            return;
        }
        if node.blocked.contains(&from) {
            return;
        }
        inner.hello(&node)
    };
    if write.write_all(&hello).await.is_err() {
        return;
    }
    inner.counters[from as usize]
        .bytes_sent
        .fetch_add(hello.len() as u64, Ordering::Relaxed);
    inner.counters[from as usize]
        .bytes_received
        .fetch_add(n as u64, Ordering::Relaxed);
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
    let stream = tokio::time::timeout(HELLO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello = inner.hello(&inner.lock());
    write.write_all(&hello).await?;
    let answer = tokio::time::timeout(HELLO_TIMEOUT, wire::read(&mut read))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no hello"))??;
    let (versions, n) = match answer {
        Some((
            Frame::Hello {
                wire_version,
                run_id,
                from,
                versions,
            },
            n,
        )) if wire_version == WIRE_VERSION && run_id == inner.cfg.run_id && from == peer => {
            (versions, n)
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the neighbour did not answer with a hello for this run",
            ))
        }
    };
    let c = &inner.counters[peer as usize];
    c.bytes_sent
        .fetch_add(hello.len() as u64, Ordering::Relaxed);
    c.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
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
    let (tx, mut rx) = mpsc::channel::<Bytes>(inner.cfg.queue_frames.max(CATCH_UP_BATCH));
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
            let frame = wire::encode(&Frame::Records(chunk.to_vec()));
            sent_bytes += frame.len() as u64;
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
        while let Some(frame) = rx.recv().await {
            out.write_all(&frame).await?;
            counters
                .bytes_sent
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
            while let Ok(frame) = rx.try_recv() {
                out.write_all(&frame).await?;
                counters
                    .bytes_sent
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
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
            if let Frame::Records(records) = frame {
                counters
                    .records_received
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                inner.receive(peer, records);
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
    }
    drop(node);
    match ended {
        Some(e) if !inner.stopping() => tracing::info!(peer, "link down: {e}"),
        _ => tracing::debug!(peer, "link closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node(
        me: u32,
        n: usize,
        neighbours: Vec<u32>,
        listener: TcpListener,
        addrs: Vec<String>,
    ) -> (MeshBackend, Arc<Mutex<Metrics>>) {
        let metrics = Arc::new(Mutex::new(Metrics::new(me, n)));
        let cfg = MeshConfig {
            run_id: "t".into(),
            me,
            addrs,
            neighbours,
            window: 1000,
            queue_frames: 1024,
        };
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
    async fn records_flood_over_two_hops() {
        // 0 -- 1 -- 2: a record from 0 reaches 2 through 1.
        let (mut ls, addrs) = listeners(3).await;
        let (b2, m2) = node(2, 3, vec![1], ls.pop().unwrap(), addrs.clone()).await;
        let (b1, _) = node(1, 3, vec![0, 2], ls.pop().unwrap(), addrs.clone()).await;
        let (b0, _) = node(0, 3, vec![1], ls.pop().unwrap(), addrs.clone()).await;
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

    #[tokio::test]
    async fn moving_to_new_neighbours_closes_old_links_and_syncs_over_new_ones() {
        // 0 -- 1   2: then 1 leaves 0 for 2; 2 gets 0's records through 1.
        let (mut ls, addrs) = listeners(3).await;
        let (b2, m2) = node(2, 3, vec![], ls.pop().unwrap(), addrs.clone()).await;
        let (b1, _) = node(1, 3, vec![0], ls.pop().unwrap(), addrs.clone()).await;
        let (b0, _) = node(0, 3, vec![1], ls.pop().unwrap(), addrs.clone()).await;
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

    #[tokio::test]
    async fn a_cut_off_peer_catches_up_with_only_the_missing_records() {
        let (mut ls, addrs) = listeners(2).await;
        let (b1, m1) = node(1, 2, vec![0], ls.pop().unwrap(), addrs.clone()).await;
        let (b0, _) = node(0, 2, vec![1], ls.pop().unwrap(), addrs.clone()).await;
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
