//! The coordinator's command line.
//!
//! The doc comments on the flags are their `--help` text, written for a terminal, not
//! for rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use clap::Parser;
use cmesh_common::graph::GraphKind;
use cmesh_common::parse::{self, MillisRange};
use cmesh_common::plan::{Dissemination, PlanSpec};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The cmesh coordinator: one per run.
///
/// Peers register with it, long-poll for the execution plan (who connects to whom, when
/// to start, how fast to write), meet at barriers and send heartbeats. It writes the plan,
/// the graph (DOT) and a timeline of state changes to --output, and exits when every peer
/// is done, failed or lost: 0 if all are done, 1 otherwise, 2 on bad input.
///
/// Example: coordinator --listen 127.0.0.1:7400 --peers 20 --duration 10s --graph ring
/// --output out/coordinator --token-file token
#[derive(Debug, Parser)]
#[command(name = "coordinator", version)]
pub struct Args {
    /// Address to serve the API on (IP:PORT).
    #[arg(long, value_parser = parse::socket_addr, default_value = "0.0.0.0:7400")]
    pub listen: SocketAddr,
    /// File holding the run token peers must present (first line).
    #[arg(long)]
    pub token_file: PathBuf,
    /// File holding the SHA-256 digest (hex) of the admin token that `POST /v1/chaos`
    /// needs. Without it, no request may change the run.
    #[arg(long)]
    pub admin_digest_file: Option<PathBuf>,
    /// Directory for plan.json, graph.dot, timeline.jsonl and coordinator.json.
    #[arg(long)]
    pub output: PathBuf,
    /// Run identifier, echoed in the plan and reports.
    #[arg(long, default_value = "local")]
    pub run_id: String,
    /// Peers expected to register.
    #[arg(long)]
    pub peers: usize,
    /// Start with at least this many peers if --start-timeout passes first [default: --peers].
    #[arg(long)]
    pub min_peers: Option<usize>,
    /// How long peers write records.
    #[arg(long, value_parser = parse::duration, default_value = "30s")]
    pub duration: Duration,
    /// Connection graph: complete, spanning-tree, la-model, ring, random-regular.
    #[arg(long, value_parser = GraphKind::parse, default_value = "random-regular")]
    pub graph: GraphKind,
    /// Degree for --graph random-regular [default: 4, or --peers minus 1 if fewer].
    #[arg(long)]
    pub degree: Option<usize>,
    /// Seed for the graph and write timing; the same seed gives the same plan.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pause between two writes of a peer, in ms, drawn from MIN..MAX.
    #[arg(long, value_parser = MillisRange::parse, default_value = "200..500")]
    pub write_interval: MillisRange,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// How the mesh backend spreads records: plumtree or flood.
    #[arg(long, value_parser = Dissemination::parse, default_value = "plumtree")]
    pub dissemination: Dissemination,
    /// Peers start writing this long after the plan is made (at least 8 ms per peer, so
    /// that every peer has the plan and its clock exchanges first).
    #[arg(long, value_parser = parse::duration, default_value = "2s")]
    pub start_delay: Duration,
    /// Plan with whoever registered (if at least --min-peers) after this long.
    #[arg(long, value_parser = parse::duration, default_value = "2m")]
    pub start_timeout: Duration,
    /// Heartbeat interval; a peer is lost after 3 missed beats. Longer with more than 500
    /// peers: 4 ms per peer, so the coordinator takes at most 250 beats a second.
    #[arg(long, value_parser = parse::duration, default_value = "2s")]
    pub heartbeat: Duration,
    /// After writing stops, how long peers may take to receive every record.
    #[arg(long, value_parser = parse::duration, default_value = "10s")]
    pub settle_timeout: Duration,
    /// Keep serving /status this long after the run finishes.
    #[arg(long, value_parser = parse::duration, default_value = "1s")]
    pub linger: Duration,
    /// Give the first N peers (by name) series of their own on `GET /metrics`. Off by
    /// default: a run's series are per host, so a Prometheus of any size can take them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub metrics_per_peer: u16,
    /// The plan's fault timeline as JSON: {"groups": {...}, "faults": [...]} (the launcher
    /// writes it from the plan file's [groups] and [[fault]]; see docs/configs.md).
    #[arg(long)]
    pub faults: Option<String>,
}

/// The JSON of `--faults`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsArg {
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub faults: Vec<cmesh_common::faults::FaultSpec>,
}

impl Args {
    /// The plan spec these flags describe.
    pub fn spec(&self) -> Result<PlanSpec, String> {
        let faults: FaultsArg = match &self.faults {
            Some(json) => serde_json::from_str(json).map_err(|e| format!("--faults: {e}"))?,
            None => FaultsArg::default(),
        };
        Ok(PlanSpec {
            peers: self.peers,
            min_peers: self.min_peers,
            duration_ms: self.duration.as_millis() as u64,
            graph: self.graph,
            degree: self
                .degree
                .unwrap_or_else(|| 4.min(self.peers.saturating_sub(1)).max(2)),
            seed: self.seed,
            write_interval: self.write_interval,
            payload_bytes: self.payload_bytes,
            dissemination: self.dissemination,
            start_delay_ms: self.start_delay.as_millis() as u64,
            start_timeout_ms: self.start_timeout.as_millis() as u64,
            heartbeat_ms: self.heartbeat.as_millis() as u64,
            settle_timeout_ms: self.settle_timeout.as_millis() as u64,
            groups: faults.groups,
            faults: faults.faults,
        })
    }
}
