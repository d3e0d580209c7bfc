//! The cmesh peer: the test workload.
//!
//! - [`run`]: the lifecycle (register, plan, connect, write, catch up, report);
//! - [`backend`]: the [`backend::SyncBackend`] trait and the built-in `mesh` backend, a
//!   replicated record log flooded over TCP with delta sync on reconnect;
//! - [`client`]: the coordinator API client, with retry and backoff;
//! - [`resolve`]: names looked up once (the engine's DNS is a bottleneck at scale);
//! - [`clock`]: this peer's clock against the coordinator's, from NTP-style exchanges;
//! - [`metrics`]: latency (HDR histogram), delivery counts, time windows and resync;
//! - [`sampler`]: one wake-up per tick ([`ticker`]) for the harness's sampling:
//!   [`lag`], how late its own timers fire, and [`usage`], per window, bytes in and out
//!   per interface ([`netdev`]) and CPU ([`cpu`]): the host's, the peer's own, its
//!   throttling;
//! - [`pacing`]: how often the sampler and the checkpoints run, by the peers on the host;
//! - [`faults`], [`shaping`]: the plan's faults, carried out on this container;
//! - [`live`]: the counters each heartbeat carries while the run goes;
//! - [`checkpoint`]: what was measured so far, every few seconds, in `checkpoint.json`;
//! - [`events`]: the `events.jsonl` log;
//! - [`time`]: Unix times on the tokio clock;
//! - [`cli`]: the flags.

pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cpu;
pub mod events;
pub mod faults;
pub mod lag;
pub mod live;
pub mod metrics;
pub mod netdev;
pub mod pacing;
pub mod resolve;
pub mod run;
pub mod sampler;
pub mod shaping;
pub mod ticker;
pub mod time;
pub mod usage;

use anyhow::Context;
use cmesh_common::report::PeerReport;
use std::path::Path;

/// Writes `report.json` into `dir` atomically and durably; returns its SHA-256 (hex).
pub fn write_report(dir: &Path, report: &PeerReport) -> anyhow::Result<String> {
    let path = dir.join("report.json");
    let json = serde_json::to_string_pretty(report)?;
    cmesh_common::fsutil::write_atomic(&path, json.as_bytes())
        .with_context(|| format!("writing the peer's report to {}", path.display()))?;
    Ok(cmesh_common::token::sha256_hex(json.as_bytes()))
}
