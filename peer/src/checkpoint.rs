//! Checkpoints: while it writes records, the peer rewrites `checkpoint.json` every few
//! seconds with what it has measured so far, so a peer that dies (killed, out of memory,
//! its host stopped) leaves its data behind. A checkpoint is the report schema marked
//! `partial: true`, with the time it was taken and outcome `failed` (a peer that stopped
//! after a checkpoint did not finish). The final report goes to `report.json`, a
//! different file, so a late checkpoint can never replace it.
//!
//! A checkpoint costs a few ms of CPU (the histograms are encoded) and an fsync. Peers
//! take theirs at different phases of the interval ([`phase`]), so the peers of a host
//! do not all stall at once: on a busy host that burst was visible as scheduling lag.

use cmesh_common::report::{Outcome, PeerReport};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The checkpoint's file name in the peer's output directory.
pub const FILE: &str = "checkpoint.json";

/// Writes checkpoints until dropped.
pub struct Checkpointer {
    task: Option<tokio::task::JoinHandle<()>>,
    /// When the last checkpoint was written, ms since the Unix epoch (0: none yet).
    last_written: Arc<AtomicU64>,
}

/// `base`, filled by `fill` at `now_ms` and marked as a checkpoint.
pub fn snapshot(base: &PeerReport, fill: &impl Fn(&mut PeerReport), now_ms: u64) -> PeerReport {
    let mut r = base.clone();
    fill(&mut r);
    r.partial = true;
    r.checkpoint_unix_ms = Some(now_ms);
    r.finished_at_unix_ms = now_ms;
    r.outcome = Outcome::Failed;
    r.error = Some("no final report: the peer stopped after this checkpoint".into());
    if let Some(w) = &mut r.writing {
        w.end_unix_ms = now_ms;
    }
    r
}

/// Where in the interval peer `index` takes its checkpoints ([`crate::pacing::spread`]).
pub fn phase(interval: Duration, index: u32) -> Duration {
    interval.mul_f64(crate::pacing::spread(index))
}

impl Checkpointer {
    /// Every `interval` (none if zero) from `interval + offset` on, writes `base`
    /// filled by `fill` to `path`.
    pub fn start(
        interval: Duration,
        offset: Duration,
        path: PathBuf,
        base: PeerReport,
        fill: impl Fn(&mut PeerReport) + Send + 'static,
    ) -> Checkpointer {
        let last_written = Arc::new(AtomicU64::new(0));
        if interval.is_zero() {
            return Checkpointer {
                task: None,
                last_written,
            };
        }
        let written_at = last_written.clone();
        let task = tokio::spawn(async move {
            let first = tokio::time::Instant::now() + interval + offset;
            let mut ticks = tokio::time::interval_at(first, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut warned = false;
            loop {
                ticks.tick().await;
                let report = snapshot(&base, &fill, cmesh_common::unix_millis());
                let path = path.clone();
                let written = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let json = serde_json::to_vec(&report)?;
                    Ok(cmesh_common::fsutil::write_atomic(&path, &json)?)
                })
                .await;
                match written {
                    Ok(Ok(())) => written_at.store(cmesh_common::unix_millis(), Ordering::Relaxed),
                    Ok(Err(e)) if !warned => {
                        warned = true;
                        tracing::warn!("cannot write a checkpoint: {e:#}");
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!("cannot write a checkpoint: {e}");
                    }
                    _ => {}
                }
            }
        });
        Checkpointer {
            task: Some(task),
            last_written,
        }
    }

    /// When the last checkpoint was written (ms since the Unix epoch; 0: none yet), for
    /// the heartbeat's live counters.
    pub fn last_written(&self) -> Arc<AtomicU64> {
        self.last_written.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_a_partial_failed_report_with_its_time() {
        let base = PeerReport::new("p", "mesh", 1_000);
        let r = snapshot(&base, &|r: &mut PeerReport| r.records_received = 42, 5_000);
        assert!(r.partial);
        assert_eq!(r.checkpoint_unix_ms, Some(5_000));
        assert_eq!(r.records_received, 42);
        assert_eq!(r.outcome, Outcome::Failed);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"partial\":true"), "{json}");
        let back: PeerReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        // A final report does not carry the fields at all.
        let final_json = serde_json::to_string(&base).unwrap();
        assert!(!final_json.contains("partial") && !final_json.contains("checkpoint"));
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoints_are_written_on_time_and_stop_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let base = PeerReport::new("p", "mesh", 0);
        let five = Duration::from_secs(5);
        assert!(phase(five, 3) < five);
        assert_ne!(phase(five, 3), phase(five, 4), "neighbours differ");
        let c = Checkpointer::start(
            Duration::from_secs(5),
            Duration::ZERO,
            path.clone(),
            base,
            |r| r.records_received += 1,
        );
        // Virtual time: wait for the first write (off the async threads) to land.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint written"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r: PeerReport = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(r.partial && r.records_received == 1);
        drop(c);
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !path.exists(),
            "no checkpoint after the checkpointer is dropped"
        );
    }
}
