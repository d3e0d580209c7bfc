//! `analysis/metrics.lp`: the run in InfluxDB's line protocol, which `launcher export
//! --influx URL` writes to an InfluxDB 1.x server (and any reader of the protocol takes).
//! Timestamps in ms (`precision=ms`): the common start for the run and its peers, each
//! window's start, each fault's application. Measurements:
//!
//! | measurement | tags | fields |
//! |---|---|---|
//! | `cmesh_run` | `run` | `ok`, `coverage`, `p50_us`, `p90_us`, `p99_us`, `max_us`, `samples`, `peers_expected`, `peers_reported`, `records_produced`, `records_received`, `bytes_sent`, `quality` |
//! | `cmesh_peer` | `run`, `host`, `peer`, `outcome` | `p50_us`, `p99_us`, `max_us`, `records_produced`, `records_received`, `origins`, `bytes_sent`, `bytes_received` |
//! | `cmesh_window` | `run` | `count`, `p50_us`, `p99_us`, `max_us`, `received`, `rx_bytes`, `tx_bytes` |
//! | `cmesh_fault` | `run`, `fault`, `action` | `peers`, `errors`, `lifted_at_ms` (after the common start, when lifted) |

use super::{RenderError, Renderer};
use crate::Analysis;
use std::fmt::Write as _;

/// The line-protocol export.
pub struct LineProtocol;

/// A tag key or value, or a measurement: commas, equals signs and spaces escaped, line
/// breaks turned to spaces.
fn tag(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ',' | '=' | ' ' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// A string field value, quoted.
fn string(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(['\n', '\r'], " ")
    )
}

/// One field's value.
enum F {
    Int(u64),
    Float(f64),
    Bool(bool),
    Str(String),
}

fn line(
    out: &mut String,
    measurement: &str,
    tags: &[(&str, &str)],
    fields: &[(&str, F)],
    at: Option<u64>,
) {
    out.push_str(measurement);
    for (k, v) in tags.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(out, ",{k}={}", tag(v));
    }
    for (i, (k, v)) in fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        let _ = match v {
            F::Int(n) => write!(out, "{k}={n}i"),
            F::Float(x) if x.is_finite() => write!(out, "{k}={x}"),
            F::Float(_) => write!(out, "{k}=0"),
            F::Bool(b) => write!(out, "{k}={b}"),
            F::Str(s) => write!(out, "{k}={}", string(s)),
        };
    }
    if let Some(t) = at {
        let _ = write!(out, " {t}");
    }
    out.push('\n');
}

impl Renderer for LineProtocol {
    fn file_name(&self) -> &'static str {
        "metrics.lp"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        let s = &a.summary;
        let run = s.run_id.as_str();
        let start = s.impairment.start_unix_ms;
        let l = &s.message_latency;
        let mut out = String::new();
        line(
            &mut out,
            "cmesh_run",
            &[("run", run)],
            &[
                ("ok", F::Bool(s.ok)),
                ("coverage", F::Float(s.coverage)),
                ("p50_us", F::Int(l.p50_us)),
                ("p90_us", F::Int(l.p90_us)),
                ("p99_us", F::Int(l.p99_us)),
                ("max_us", F::Int(l.max_us)),
                ("samples", F::Int(l.count)),
                ("peers_expected", F::Int(s.peers_expected as u64)),
                ("peers_reported", F::Int(s.peers_reported as u64)),
                ("records_produced", F::Int(s.totals.records_produced)),
                ("records_received", F::Int(s.totals.records_received)),
                ("bytes_sent", F::Int(s.totals.bytes_sent)),
                (
                    "quality",
                    F::Str(s.measurement_quality.verdict.as_str().to_owned()),
                ),
            ],
            start,
        );
        let host_of: std::collections::BTreeMap<&str, &str> = a
            .detail
            .peers
            .iter()
            .zip(&a.detail.hosts)
            .map(|(p, h)| (p.as_str(), h.as_str()))
            .collect();
        for p in &s.per_peer {
            line(
                &mut out,
                "cmesh_peer",
                &[
                    ("run", run),
                    ("host", host_of.get(p.peer.as_str()).copied().unwrap_or("")),
                    ("peer", &p.peer),
                    ("outcome", &p.outcome),
                ],
                &[
                    ("p50_us", F::Int(p.p50_us)),
                    ("p99_us", F::Int(p.p99_us)),
                    ("max_us", F::Int(p.max_us)),
                    ("records_produced", F::Int(p.records_produced)),
                    ("records_received", F::Int(p.records_received)),
                    ("origins", F::Int(p.distinct_origins as u64)),
                    ("bytes_sent", F::Int(p.bytes_sent)),
                    ("bytes_received", F::Int(p.bytes_received)),
                ],
                start,
            );
        }
        for w in &s.impairment.windows {
            line(
                &mut out,
                "cmesh_window",
                &[("run", run)],
                &[
                    ("count", F::Int(w.count)),
                    ("p50_us", F::Int(w.p50_us)),
                    ("p99_us", F::Int(w.p99_us)),
                    ("max_us", F::Int(w.max_us)),
                    ("received", F::Int(w.received)),
                    ("rx_bytes", F::Int(w.rx_bytes)),
                    ("tx_bytes", F::Int(w.tx_bytes)),
                ],
                start.map(|t| t + w.start_ms),
            );
        }
        for f in &s.impairment.faults {
            let mut fields = vec![
                ("peers", F::Int(f.peers as u64)),
                ("errors", F::Int(f.errors as u64)),
            ];
            if let Some(t) = f.lifted_at_ms {
                fields.push(("lifted_at_ms", F::Int(t.max(0) as u64)));
            }
            let at = match (start, f.applied_at_ms) {
                (Some(s), Some(t)) => Some(s.saturating_add_signed(t)),
                _ => start,
            };
            line(
                &mut out,
                "cmesh_fault",
                &[("run", run), ("fault", &f.id), ("action", &f.action)],
                &fields,
                at,
            );
        }
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_strings_are_escaped_as_the_protocol_says() {
        assert_eq!(tag("a b,c=d"), "a\\ b\\,c\\=d");
        assert_eq!(string("say \"hi\"\n"), "\"say \\\"hi\\\" \"");
        let mut out = String::new();
        line(
            &mut out,
            "m",
            &[("run", "r 1"), ("host", "")],
            &[
                ("n", F::Int(3)),
                ("x", F::Float(0.5)),
                ("s", F::Str("v".into())),
            ],
            Some(7),
        );
        assert_eq!(
            out, "m,run=r\\ 1 n=3i,x=0.5,s=\"v\" 7\n",
            "an empty tag is left out"
        );
    }
}
