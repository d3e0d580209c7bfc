//! `analysis/peers.csv` and `analysis/windows.csv`: the per-peer table and the time
//! windows as RFC 4180 CSV (the csv crate quotes what needs it), one header row of the
//! summary.json field names, numbers in their JSON units (µs, bytes, ms since the
//! common start), for spreadsheets, pandas and Python's csv module.

use super::{RenderError, Renderer};
use crate::Analysis;
use serde::Serialize;

/// `peers.csv`: one row per peer that reported, as summary.json's `per_peer`.
pub struct Peers;

/// `windows.csv`: one row per time window, as summary.json's `time_series`.
pub struct Windows;

fn rows<T: Serialize>(items: &[T], header: &[&str]) -> Result<Vec<u8>, RenderError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if items.is_empty() {
        // No rows still gets the header, so a reader sees the columns.
        w.write_record(header).map_err(csv_error)?;
    }
    for item in items {
        w.serialize(item).map_err(csv_error)?;
    }
    w.into_inner().map_err(|e| RenderError::Csv(e.to_string()))
}

fn csv_error(e: csv::Error) -> RenderError {
    RenderError::Csv(e.to_string())
}

/// The columns of peers.csv.
pub const PEER_FIELDS: [&str; 10] = [
    "peer",
    "outcome",
    "records_produced",
    "records_received",
    "distinct_origins",
    "p50_us",
    "p99_us",
    "max_us",
    "bytes_sent",
    "bytes_received",
];

/// The columns of windows.csv.
pub const WINDOW_FIELDS: [&str; 9] = [
    "start_ms",
    "count",
    "p50_us",
    "p99_us",
    "max_us",
    "uncertainty_us",
    "received",
    "rx_bytes",
    "tx_bytes",
];

impl Renderer for Peers {
    fn file_name(&self) -> &'static str {
        "peers.csv"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        rows(&a.summary.per_peer, &PEER_FIELDS)
    }
}

impl Renderer for Windows {
    fn file_name(&self) -> &'static str {
        "windows.csv"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        /// A window with every column present (an absent uncertainty is an empty cell).
        #[derive(Serialize)]
        struct Row {
            start_ms: u64,
            count: u64,
            p50_us: u64,
            p99_us: u64,
            max_us: u64,
            uncertainty_us: Option<u64>,
            received: u64,
            rx_bytes: u64,
            tx_bytes: u64,
        }
        let rows_: Vec<Row> = a
            .summary
            .impairment
            .windows
            .iter()
            .map(|w| Row {
                start_ms: w.start_ms,
                count: w.count,
                p50_us: w.p50_us,
                p99_us: w.p99_us,
                max_us: w.max_us,
                uncertainty_us: w.uncertainty_us,
                received: w.received,
                rx_bytes: w.rx_bytes,
                tx_bytes: w.tx_bytes,
            })
            .collect();
        rows(&rows_, &WINDOW_FIELDS)
    }
}
