//! `events.jsonl`: the peer's lifecycle events and errors, one JSON object per line.
//!
//! Every line has `t_unix_ms` and `event`; other fields depend on the event. Lines are
//! flushed as they are written, so the log survives a crash up to its last event.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// The event log of one peer (clones write to the same file).
#[derive(Clone)]
pub struct EventLog {
    out: std::sync::Arc<Mutex<Option<std::fs::File>>>,
}

impl EventLog {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog {
            out: std::sync::Arc::new(Mutex::new(Some(file))),
        })
    }

    /// A log that writes nothing.
    pub fn discard() -> Self {
        EventLog {
            out: std::sync::Arc::new(Mutex::new(None)),
        }
    }

    /// Appends one event; `fields` must be a JSON object (anything else is put under `detail`).
    pub fn log(&self, event: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("t_unix_ms".into(), json!(cmesh_common::unix_millis()));
        line.insert("event".into(), json!(event));
        match fields {
            Value::Object(map) => line.extend(map),
            Value::Null => {}
            other => {
                line.insert("detail".into(), other);
            }
        }
        let mut text = Value::Object(line).to_string();
        // The same line on stderr, so `docker logs` / `launcher logs` show the lifecycle.
        tracing::info!(target: "peer::event", "{text}");
        text.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = out.as_mut() {
            // Losing a log line must not stop the run; say so once on stderr instead.
            if let Err(e) = file.write_all(text.as_bytes()) {
                eprintln!("peer: cannot write events.jsonl: {e}; events are no longer logged");
                *out = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path).unwrap();
        log.log("registered", json!({"coordinator": "x:1"}));
        log.log("error", json!("boom"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "registered");
        assert_eq!(lines[0]["coordinator"], "x:1");
        assert_eq!(lines[1]["detail"], "boom");
        assert!(lines[1]["t_unix_ms"].as_u64().unwrap() > 0);
    }
}
