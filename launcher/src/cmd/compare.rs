//! `launcher compare`: reads each run's `analysis/summary.json` and hands them to the
//! analysis crate's comparison (`cmesh_analysis::compare`), which does the statistics.
//! Exit 1 when a `--fail-on` gate fails, 2 for a run that is unknown or not analysed.

use crate::cmd::{print_json, JsonArg};
use crate::run::dir::RunDir;
use cmesh_analysis::compare::{self, Comparison, Gate};
use cmesh_analysis::Summary;
use cmesh_common::exit::bad_input;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The baseline run and the candidate run (`launcher ls` lists them).
    #[arg(num_args = 2, value_name = "RUN", required_unless_present = "baseline")]
    pub runs: Vec<String>,
    /// Baseline runs or groups, comma-separated (instead of the two RUNs).
    #[arg(
        long,
        value_name = "RUNS",
        conflicts_with = "runs",
        requires = "candidate"
    )]
    pub baseline: Option<String>,
    /// Candidate runs or groups, comma-separated.
    #[arg(long, value_name = "RUNS", requires = "baseline")]
    pub candidate: Option<String>,
    /// Fail (exit 1) when METRIC is significantly worse by more than this, its whole
    /// 95% interval beyond it: METRIC>+N% where a rise is worse (p99>+10%),
    /// METRIC<-N% where a fall is worse (coverage<-1%). Repeatable.
    #[arg(long = "fail-on", value_name = "GATE")]
    pub fail_on: Vec<Gate>,
    /// Changes smaller than this many percent are no difference, however sure.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0, value_parser = parse_noise)]
    pub noise: f64,
    #[command(flatten)]
    pub out: JsonArg,
    /// Also write an HTML page: the table, every run's latency CDF and p50 over
    /// time overlaid (self-contained, like report.html).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Compares; prints the table (or JSON). Exit 1 when a gate fails.
pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let (b, c) = match (&args.baseline, &args.candidate, args.runs.as_slice()) {
        (Some(b), Some(c), _) => (list(b), list(c)),
        (None, None, [b, c]) => (vec![b.clone()], vec![c.clone()]),
        _ => return Err(bad_input(
            "compare needs two runs (`launcher compare A B`) or --baseline A1,A2 --candidate B1,B2",
        )),
    };
    let (b, c) = (
        crate::run::group::expand(runs, &b)?,
        crate::run::group::expand(runs, &c)?,
    );
    let (comparison, failed) = compare(runs, &b, &c, args.noise / 100.0, &args.fail_on)?;
    if let Some(path) = &args.html {
        write_page(runs, &comparison, &b, &c, path)?;
        tracing::info!("compare: the page is {}", path.display());
    }
    if args.out.json {
        print_json(&serde_json::json!({
            "comparison": comparison,
            "failed_gates": failed,
        }))?;
    } else {
        print!("{}", compare::to_markdown(&comparison));
    }
    for f in &failed {
        tracing::error!("compare: gate failed: {f}");
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// `--noise`: a percentage from 0 to 100.
fn parse_noise(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not a percentage from 0 to 100")),
    }
}

/// A run's summary, by its id; bad input when the run is unknown or not analysed.
fn summary(runs: &Path, id: &str) -> anyhow::Result<(String, Summary)> {
    let run = RunDir::open(runs, Some(id))?;
    let path = run.analysis_dir().join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad_input(format!(
            "run {id} has no analysis ({}: {e}); run `launcher analyze {}` first",
            path.display(),
            run.path.display()
        ))
    })?;
    let s: Summary = serde_json::from_str(&text).map_err(|e| {
        bad_input(format!(
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
        return Err(bad_input(
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
    fn noise_is_a_percentage() {
        assert_eq!(parse_noise("5"), Ok(5.0));
        assert_eq!(parse_noise("2.5%"), Ok(2.5));
        for bad in ["-1", "101", "NaN", "five"] {
            assert!(parse_noise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_are_split_on_commas() {
        assert_eq!(list("a, b,,c "), ["a", "b", "c"]);
        assert!(list(" , ").is_empty());
    }
}
