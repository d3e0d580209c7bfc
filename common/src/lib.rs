//! Types shared by the three cmesh programs.
//!
//! The launcher, the coordinator and the peer talk to each other through the
//! types in this crate and nothing else:
//!
//! - [`adapter`]: the protocol between a peer and the adapter program that drives a
//!   user's app, and the sync service's messages and bounds.
//! - [`plan`]: what a run asks for ([`plan::PlanSpec`]) and what the coordinator
//!   decides ([`plan::ExecutionPlan`]): who connects to whom, when to start, how fast to write.
//! - [`graph`]: the connection graphs a plan can use, generated deterministically from a seed.
//! - [`protocol`]: the coordinator's HTTP/JSON API messages, and the peer lifecycle states.
//! - [`live`]: a run while it goes: the peers' live counters and the coordinator's
//!   figures from them.
//! - [`report`]: the versioned per-peer report schema (`report.json`).
//! - [`clock`]: clock offsets from NTP-style exchanges, as bounded intervals.
//! - [`histogram`]: latency histograms that serialize for exact merging across peers.
//! - [`token`]: the per-run token: reading it from a file, comparing it safely.
//! - [`exit`]: the exit codes every cmesh program uses.
//! - [`fsutil`]: the one atomic, durable file write.
//! - [`parse`]: parsers for the command-line forms the programs share (durations, ranges).
//!
//! Everything that crosses a process boundary carries a schema version, so a launcher can
//! refuse (rather than misread) a report written by a newer peer.

pub mod adapter;
pub mod clock;
pub mod exit;
pub mod faults;
pub mod fsutil;
pub mod graph;
pub mod histogram;
pub mod lifecycle;
pub mod live;
pub mod parse;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod token;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`), in colour
/// only when stderr is a terminal (container logs stay plain text).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Microseconds since the Unix epoch, from the system clock.
///
/// Record timestamps use wall-clock time because writer and reader are different
/// processes (often different hosts); latency is reader clock minus writer clock.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn unix_millis() -> u64 {
    unix_micros() / 1000
}

/// Raises this process's soft open-files limit to its hard limit and returns the new soft
/// limit. Long-polls and keep-alive connections use one descriptor each; 1024 (a common
/// default) is too few for a coordinator with thousands of peers.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(0),
    }
}
