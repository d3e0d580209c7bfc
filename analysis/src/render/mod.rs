//! Renderers: an [`Analysis`] turned into the files under `analysis/`: `summary.json`,
//! `summary.md`, `report.html` ([`html`]), `peers.csv` and `windows.csv` ([`csv`]),
//! `junit.xml` ([`junit`]), `metrics.lp` ([`influx`]). Each is a
//! [`Renderer`]; [`all`] lists the ones `launcher analyze` writes. They read the
//! analysis and never change it, so a new format never touches the merge.

pub mod compare_html;
pub mod csv;
pub mod html;
pub mod influx;
pub mod junit;

use crate::Analysis;

/// Why a renderer could not produce its file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot serialize: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write CSV: {0}")]
    Csv(String),
    #[error("cannot draw the plot `{plot}`: {why}")]
    Plot { plot: &'static str, why: String },
}

/// One output format.
pub trait Renderer {
    /// The file it writes, under the run's `analysis/`.
    fn file_name(&self) -> &'static str;
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError>;
}

/// `summary.json`: the [`crate::Summary`] (docs/report-format.md).
pub struct Json;

impl Renderer for Json {
    fn file_name(&self) -> &'static str {
        "summary.json"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        Ok(serde_json::to_vec_pretty(&a.summary)?)
    }
}

/// `summary.md`: the summary for people and terminals.
pub struct Markdown;

impl Renderer for Markdown {
    fn file_name(&self) -> &'static str {
        "summary.md"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        Ok(crate::summary::to_markdown(&a.summary).into_bytes())
    }
}

/// Text made safe for HTML and XML 1.0, in content and in attribute values: the five
/// markup characters escaped, and characters XML cannot carry at all (most control
/// characters) dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
            c => out.push(c),
        }
    }
    out
}

/// Every renderer `launcher analyze` writes, in order.
pub fn all() -> Vec<Box<dyn Renderer>> {
    vec![
        Box::new(Json),
        Box::new(Markdown),
        Box::new(html::Html),
        Box::new(csv::Peers),
        Box::new(csv::Windows),
        Box::new(junit::Junit),
        Box::new(influx::LineProtocol),
    ]
}
