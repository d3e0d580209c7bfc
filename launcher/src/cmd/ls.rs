//! `launcher ls`: the runs under the runs directory, each with how far it got and its key
//! numbers, read from its files alone (no engine is asked).

use crate::cmd::{print_json, JsonArg};
use crate::results::analyze::Summary;
use crate::results::extract;
use crate::run::dir::{list_runs, RunDir};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub out: JsonArg,
}

pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let rows = ls(runs);
    if args.out.json {
        print_json(&rows)?;
    } else {
        print!("{}", render(&rows));
    }
    Ok(0)
}

/// How far a run got, by the files it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStage {
    /// A manifest: spawned (it may be running, or its containers gone).
    Spawned,
    /// `extract/extract.json`.
    Extracted,
    /// `analysis/summary.json`.
    Analyzed,
}

/// One run in the listing.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub created_at: String,
    pub stage: RunStage,
    pub hosts: usize,
    pub peers: usize,
    pub backend: String,
    /// From the analysis, when there is one.
    pub ok: Option<bool>,
    pub coverage: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Why the run's files could not be read.
    pub error: Option<String>,
}

/// Every run under `base`, oldest first.
pub fn ls(base: &Path) -> Vec<RunRow> {
    list_runs(base)
        .into_iter()
        .map(|id| row(base, &id))
        .collect()
}

fn row(base: &Path, id: &str) -> RunRow {
    let mut row = RunRow {
        run_id: id.to_owned(),
        created_at: String::new(),
        stage: RunStage::Spawned,
        hosts: 0,
        peers: 0,
        backend: String::new(),
        ok: None,
        coverage: None,
        p50_ms: None,
        p99_ms: None,
        error: None,
    };
    let run = match RunDir::open(base, Some(id)) {
        Ok(r) => r,
        Err(e) => {
            row.error = Some(format!("{e:#}"));
            return row;
        }
    };
    match run.read_manifest() {
        Ok(m) => {
            row.created_at = m.created_at;
            row.hosts = m.hosts.len();
            row.peers = m.spec.peers;
            row.backend = m.backend;
        }
        Err(e) => row.error = Some(format!("{e:#}")),
    }
    if extract::read_index(&run).is_some() {
        row.stage = RunStage::Extracted;
    }
    let path = run.analysis_dir().join("summary.json");
    let summary = match std::fs::read_to_string(&path) {
        Err(_) => None,
        Ok(text) => match serde_json::from_str::<Summary>(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                row.error = Some(format!("{} is unreadable: {e}", path.display()));
                None
            }
        },
    };
    if let Some(s) = summary {
        row.stage = RunStage::Analyzed;
        row.ok = Some(s.ok);
        row.coverage = Some(s.coverage);
        let l = &s.message_latency;
        if l.count > 0 {
            row.p50_ms = Some(l.p50_us as f64 / 1000.0);
            row.p99_ms = Some(l.p99_us as f64 / 1000.0);
        }
    }
    row
}

/// The listing as a table.
pub fn render(rows: &[RunRow]) -> String {
    if rows.is_empty() {
        return "no runs yet; start one with `launcher run --peers 10` (or spawn)\n".into();
    }
    let mut table = crate::table::new([
        "run", "created", "stage", "hosts", "peers", "backend", "result", "coverage", "p50", "p99",
    ]);
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.2} ms")).unwrap_or_default();
    for r in rows {
        table.add_row(vec![
            r.run_id.clone(),
            r.created_at.clone(),
            match (&r.error, r.stage) {
                (Some(e), _) => format!("unreadable: {e}"),
                (None, s) => format!("{s:?}").to_lowercase(),
            },
            r.hosts.to_string(),
            r.peers.to_string(),
            r.backend.clone(),
            match r.ok {
                Some(true) => "ok".into(),
                Some(false) => "failed".into(),
                None => String::new(),
            },
            r.coverage.map(|c| format!("{c:.4}")).unwrap_or_default(),
            ms(r.p50_ms),
            ms(r.p99_ms),
        ]);
    }
    format!("{table}\n")
}
