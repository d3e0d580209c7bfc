//! Tables for people: on a terminal ([`new`]), through comfy-table; the Markdown ones
//! are the analysis crate's ([`markdown`]), re-exported here.

pub use cmesh_analysis::table::{markdown, markdown_cell, ms, squash};
use comfy_table::{presets, ContentArrangement, Table};

/// A plain table for the terminal with these column headers: no borders, columns two
/// spaces apart.
pub fn new<S: ToString>(headers: impl IntoIterator<Item = S>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(
            headers
                .into_iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>(),
        );
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_tables_align_columns_without_borders() {
        let mut t = new(["host", "state"]);
        t.add_row(vec!["lab-1", "running"]);
        t.add_row(vec!["b", "lost"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("host   state"), "{text}");
        assert!(lines[2].starts_with("b      lost"), "{text}");
    }
}
