//! The live counters this peer sends on each heartbeat (`cmesh_common::live`).
//!
//! The heartbeat task starts at registration, before there is anything to count; the
//! run hands the board its sources once the backend and the sampler run
//! ([`LiveBoard::measure`]), and the checkpointer once it starts. Each beat then reads
//! them ([`LiveBoard::counters`]): the running totals, and the latency and lag recorded
//! since the previous beat, taken (so each sample travels once). CPU is read against the
//! previous beat's reading, time passed in.

use crate::backend::LinkGauge;
use crate::lag::Lag;
use crate::metrics::Metrics;
use cmesh_common::live::LiveCounters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the counters are read from.
pub struct Sources {
    pub metrics: Arc<Mutex<Metrics>>,
    /// Records written so far.
    pub produced: Arc<AtomicU64>,
    pub links: LinkGauge,
    pub lag: Arc<Mutex<Lag>>,
}

/// A CPU reading: this process's CPU time and when, µs.
#[derive(Clone, Copy, Debug)]
struct CpuReading {
    process_us: u64,
    at_us: u64,
}

#[derive(Default)]
struct Board {
    sources: Option<Sources>,
    /// The neighbours now.
    neighbours: Vec<u32>,
    /// Peers cut off by partitions now: how many partitions cut each.
    cut: std::collections::BTreeMap<u32, u32>,
    checkpoint: Option<Arc<AtomicU64>>,
    cpu: Option<CpuReading>,
}

/// Shared by the run (which fills it) and the heartbeat task (which reads it).
#[derive(Default)]
pub struct LiveBoard {
    board: Mutex<Board>,
    quota_cpus: Option<f64>,
}

impl LiveBoard {
    /// A board with nothing to count yet; `quota_cpus` is the container's CPU quota.
    pub fn new(quota_cpus: Option<f64>) -> Arc<LiveBoard> {
        Arc::new(LiveBoard {
            quota_cpus,
            ..Default::default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend and the sampler run: count from them. `neighbours`: the plan's.
    pub fn measure(&self, sources: Sources, neighbours: &[u32]) {
        let mut board = self.lock();
        board.sources = Some(sources);
        board.neighbours = neighbours.to_vec();
    }

    /// The graph was re-drawn: these are the neighbours now.
    pub fn set_neighbours(&self, neighbours: &[u32]) {
        self.lock().neighbours = neighbours.to_vec();
    }

    /// A partition cuts this peer off from `peers` (`true`), or is lifted (`false`).
    /// A link to a neighbour cut off is not up, whatever its socket says: a TCP
    /// connection through a partition stays open, silent, until it times out.
    pub fn cut(&self, peers: &[u32], cut: bool) {
        let mut board = self.lock();
        for &p in peers {
            let n = board.cut.entry(p).or_default();
            if cut {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    board.cut.remove(&p);
                }
            }
        }
    }

    /// Checkpoints are written; `last` holds when the last one was (ms, 0: none yet).
    pub fn checkpoints(&self, last: Arc<AtomicU64>) {
        self.lock().checkpoint = Some(last);
    }

    /// The counters for a heartbeat at `now_ms`, with this process's CPU time
    /// `process_us` (none before [`LiveBoard::measure`]).
    pub fn counters(&self, now_ms: u64, process_us: Option<u64>) -> Option<LiveCounters> {
        let mut board = self.lock();
        let sources = board.sources.as_ref()?;
        let (received, origins, latency) = {
            let mut m = sources.metrics.lock().unwrap_or_else(|e| e.into_inner());
            let received = m.received();
            (
                received.iter().sum(),
                received.iter().filter(|&&n| n > 0).count() as u32,
                m.take_live_latency(),
            )
        };
        let lag = sources
            .lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_recent();
        let reachable = board
            .neighbours
            .iter()
            .filter(|n| !board.cut.contains_key(n))
            .count();
        let mut counters = LiveCounters {
            written: sources.produced.load(Ordering::Relaxed),
            received,
            origins,
            links_up: (sources.links)().min(reachable) as u32,
            links_wanted: board.neighbours.len() as u32,
            latency,
            lag,
            ..Default::default()
        };
        let checkpoint = board.checkpoint.as_ref().map(|c| c.load(Ordering::Relaxed));
        counters.checkpoint_age_ms = checkpoint
            .filter(|&at| at > 0)
            .map(|at| now_ms.saturating_sub(at));
        if let Some(process_us) = process_us {
            let now = CpuReading {
                process_us,
                at_us: now_ms * 1000,
            };
            if let Some(before) = board.cpu.replace(now) {
                let (used, elapsed) = (
                    now.process_us.saturating_sub(before.process_us),
                    now.at_us.saturating_sub(before.at_us),
                );
                if elapsed > 0 {
                    let share = used as f64 / elapsed as f64;
                    counters.cpu_permille = Some((share * 1000.0).round() as u32);
                    counters.quota_permille = self
                        .quota_cpus
                        .filter(|&q| q > 0.0)
                        .map(|q| (share / q * 1000.0).round() as u32);
                }
            }
        }
        Some(counters)
    }
}

/// The counters for the next beat: `newer`, with what `unsent` (a beat that did not get
/// through) counted carried in.
pub fn carry(unsent: Option<LiveCounters>, newer: Option<LiveCounters>) -> Option<LiveCounters> {
    match (unsent, newer) {
        (Some(old), Some(mut new)) => {
            new.carry(&old);
            Some(new)
        }
        (old, new) => new.or(old),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(quota: Option<f64>) -> (Arc<LiveBoard>, Arc<Mutex<Metrics>>, Arc<AtomicU64>) {
        let b = LiveBoard::new(quota);
        let metrics = Arc::new(Mutex::new(Metrics::new(0, 3)));
        let produced = Arc::new(AtomicU64::new(0));
        b.measure(
            Sources {
                metrics: metrics.clone(),
                produced: produced.clone(),
                links: Arc::new(|| 2),
                lag: Arc::new(Mutex::new(Lag::new(0, 1_000, 10))),
            },
            &[1, 2],
        );
        (b, metrics, produced)
    }

    #[test]
    fn nothing_to_count_before_the_backend_runs() {
        assert_eq!(LiveBoard::new(None).counters(1_000, Some(5)), None);
    }

    #[test]
    fn totals_run_on_and_latency_travels_once() {
        let (b, metrics, produced) = board(None);
        produced.store(7, Ordering::Relaxed);
        metrics.lock().unwrap().on_new_record(1, 1_000, 3_000);
        metrics.lock().unwrap().on_new_record(2, 1_000, 5_000);
        let first = b.counters(10, None).unwrap();
        assert_eq!(
            (first.written, first.received, first.origins, first.links_up),
            (7, 2, 2, 2)
        );
        assert_eq!(first.links_wanted, 2);
        assert_eq!(first.latency.count(), 2);
        let second = b.counters(20, None).unwrap();
        assert_eq!(second.received, 2, "totals stay");
        assert_eq!(second.latency.count(), 0, "each sample travels once");
        assert_eq!(second.checkpoint_age_ms, None);
    }

    #[test]
    fn links_to_neighbours_cut_off_are_not_up() {
        let (b, _, _) = board(None);
        b.cut(&[1], true);
        assert_eq!(b.counters(1, None).unwrap().links_up, 1);
        b.cut(&[1, 2], true);
        assert_eq!(b.counters(2, None).unwrap().links_up, 0);
        b.cut(&[1], false);
        assert_eq!(
            b.counters(3, None).unwrap().links_up,
            0,
            "1 is still cut once"
        );
        b.cut(&[1, 2], false);
        assert_eq!(b.counters(4, None).unwrap().links_up, 2);
        b.set_neighbours(&[1, 2, 3]);
        let c = b.counters(5, None).unwrap();
        assert_eq!((c.links_up, c.links_wanted), (2, 3));
    }

    #[test]
    fn cpu_is_read_against_the_previous_beat_and_the_quota() {
        let (b, _, _) = board(Some(0.5));
        let first = b.counters(1_000, Some(10_000)).unwrap();
        assert_eq!(first.cpu_permille, None, "no previous reading");
        // 250 ms of CPU in 1 s: a quarter of a core, half the quota.
        let second = b.counters(2_000, Some(260_000)).unwrap();
        assert_eq!(second.cpu_permille, Some(250));
        assert_eq!(second.quota_permille, Some(500));
    }

    #[test]
    fn checkpoint_age_counts_from_the_last_write() {
        let (b, _, _) = board(None);
        let last = Arc::new(AtomicU64::new(0));
        b.checkpoints(last.clone());
        assert_eq!(b.counters(5_000, None).unwrap().checkpoint_age_ms, None);
        last.store(4_000, Ordering::Relaxed);
        assert_eq!(
            b.counters(5_500, None).unwrap().checkpoint_age_ms,
            Some(1_500)
        );
    }
}
