//! Markdown tables for the summaries, through comfy-table, with every cell escaped.

use comfy_table::{presets, ContentArrangement, Table};

/// A duration given in µs, as milliseconds with two decimals: `1.27 ms`.
pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// A cell's text made safe for a Markdown table: `|` escaped, line breaks as spaces.
pub fn markdown_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// A Markdown table with these headers and rows (cells escaped).
pub fn markdown<'a>(headers: impl IntoIterator<Item = &'a str>, rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.into_iter().map(markdown_cell).collect::<Vec<_>>());
    for r in rows {
        t.add_row(r.iter().map(|c| markdown_cell(c)).collect::<Vec<_>>());
    }
    format!("{t}\n")
}

/// `text` with every run of spaces folded to one: Markdown tables compared by content,
/// whatever their column alignment.
pub fn squash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        if c == ' ' {
            if !last_space {
                out.push(c);
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_pipes_and_line_breaks() {
        let md = markdown(
            ["peer", "reason"],
            &[vec!["r-peer-0001".into(), "exit 1 | OOM\nkilled".into()]],
        );
        assert!(
            squash(&md).contains(r"| r-peer-0001 | exit 1 \| OOM killed |"),
            "{md}"
        );
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 3, "{md}");
        assert!(lines[1].starts_with("|-"), "{md}");
        // Every row has the header's number of unescaped separators.
        let bars = |l: &str| l.replace(r"\|", "").matches('|').count();
        assert_eq!(bars(lines[0]), bars(lines[2]));
    }
}
