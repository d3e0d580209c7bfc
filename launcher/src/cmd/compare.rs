//! `launcher compare`: reads each run's `analysis/summary.json` and hands them to the
//! analysis crate's comparison (`cmesh_analysis::compare`), which does the statistics.
//! Exit 1 when a `--fail-on` gate fails, 2 for a run that is unknown or not analysed.

use crate::run::dir::RunDir;
use cmesh_analysis::compare::{self, Comparison, Gate};
use cmesh_analysis::Summary;
use std::path::Path;

/// A run's summary, by its id; bad input when the run is unknown or not analysed.
fn summary(runs: &Path, id: &str) -> anyhow::Result<(String, Summary)> {
    let run = RunDir::open(runs, Some(id))?;
    let path = run.analysis_dir().join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        crate::error::bad_input(format!(
            "run {id} has no analysis ({}: {e}); run `launcher analyze {}` first",
            path.display(),
            run.path.display()
        ))
    })?;
    let s: Summary = serde_json::from_str(&text).map_err(|e| {
        crate::error::bad_input(format!(
            "{} is not a summary this launcher reads: {e}; run `launcher analyze {}` again",
            path.display(),
            run.path.display()
        ))
    })?;
    Ok((run.id, s))
}

/// Writes the comparison page to `path`: every run analysed again (in memory) for its
/// latency histogram and windows.
pub fn write_page(
    runs: &Path,
    c: &Comparison,
    baseline: &[String],
    candidate: &[String],
    path: &Path,
) -> anyhow::Result<()> {
    let analysed = |ids: &[String]| -> anyhow::Result<Vec<(String, cmesh_analysis::Analysis)>> {
        ids.iter()
            .map(|id| {
                let run = RunDir::open(runs, Some(id))?;
                Ok((
                    run.id.clone(),
                    crate::results::analyze::load(&run)?.finish(),
                ))
            })
            .collect()
    };
    let page =
        cmesh_analysis::render::compare_html::page(c, &analysed(baseline)?, &analysed(candidate)?)
            .map_err(|e| anyhow::anyhow!("drawing the comparison page: {e}"))?;
    cmesh_common::fsutil::write_atomic(path, page.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// The runs named in a comma-separated list (spaces around names are ignored).
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Compares the candidate runs with the baseline runs; returns the comparison and the
/// gates that failed.
pub fn compare(
    runs: &Path,
    baseline: &[String],
    candidate: &[String],
    noise: f64,
    gates: &[Gate],
) -> anyhow::Result<(Comparison, Vec<String>)> {
    if baseline.is_empty() || candidate.is_empty() {
        return Err(crate::error::bad_input(
            "compare needs runs on both sides: `launcher compare A B`, or --baseline A1,A2,A3 --candidate B1,B2,B3",
        ));
    }
    let read = |ids: &[String]| -> anyhow::Result<Vec<(String, Summary)>> {
        ids.iter().map(|id| summary(runs, id)).collect()
    };
    let (b, c) = (read(baseline)?, read(candidate)?);
    let comparison = compare::compare(&b, &c, noise);
    let failed = compare::failed_gates(&comparison, gates);
    Ok((comparison, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_split_on_commas() {
        assert_eq!(list("a, b,,c "), ["a", "b", "c"]);
        assert!(list(" , ").is_empty());
    }
}
