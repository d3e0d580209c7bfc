//! The coordinator's own report, in its output directory:
//!
//! | file | written | content |
//! |---|---|---|
//! | `coordinator.addr` | at start | the address it listens on (useful with port 0) |
//! | `plan.json` | when the plan is made | the [`ExecutionPlan`] every peer got |
//! | `graph.dot` | when the plan is made | the connection graph, Graphviz DOT, peers by name |
//! | `timeline.jsonl` | as things happen | one JSON object per registration, state change, barrier arrival, plan, abort |
//! | `coordinator.json` | at the end | the final status: phase, outcome, counts, a row per peer |
//!
//! Each file is written to a temporary name and renamed, so a reader never sees half a file.

use crate::state::TimelineEvent;
use anyhow::Context;
pub use cmesh_common::fsutil::write_atomic;
use cmesh_common::lifecycle::RunPhase;
use cmesh_common::plan::ExecutionPlan;
use cmesh_common::protocol::StatusReport;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// The value of `schema` in `coordinator.json`.
pub const COORDINATOR_REPORT_SCHEMA: &str = "cmesh.coordinator-report";

/// `coordinator.json`.
#[derive(Debug, Serialize)]
pub struct CoordinatorReport {
    pub schema: &'static str,
    pub schema_version: u32,
    pub run_id: String,
    pub phase: RunPhase,
    /// True when every planned peer reported Done.
    pub all_done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at_unix_ms: u64,
    pub finished_at_unix_ms: u64,
    pub status: StatusReport,
}

/// Writes `plan.json` and `graph.dot`.
pub fn write_plan(dir: &Path, plan: &ExecutionPlan, json: &[u8]) -> anyhow::Result<()> {
    let pretty: serde_json::Value = serde_json::from_slice(json)?;
    write_atomic(
        &dir.join("plan.json"),
        serde_json::to_string_pretty(&pretty)?.as_bytes(),
    )?;
    let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
    Ok(write_atomic(
        &dir.join("graph.dot"),
        plan.graph.to_dot(&names).as_bytes(),
    )?)
}

/// Writes `coordinator.json`.
pub fn write_report(dir: &Path, report: &CoordinatorReport) -> anyhow::Result<()> {
    Ok(write_atomic(
        &dir.join("coordinator.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?)
}

/// Appends timeline events to `timeline.jsonl` until every sender is gone. Flushes after
/// each burst, so a crash loses at most the events of the last moment.
pub async fn timeline_writer(
    path: PathBuf,
    mut events: mpsc::UnboundedReceiver<TimelineEvent>,
) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    while let Some(event) = events.recv().await {
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
        while let Ok(event) = events.try_recv() {
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
        }
        out.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
