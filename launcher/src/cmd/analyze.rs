//! `launcher analyze`: merge the extracted reports ([`crate::results::analyze`]) and
//! print the summary.

use crate::cmd::{print_json, JsonArg};
use crate::results::analyze;
use crate::run::dir::RunDir;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory (runs/r1122-031800) or the run's id (r1122-031800)
    /// [default: the newest run].
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub out: JsonArg,
}

/// Analyzes; prints summary.md's table, or summary.json. Exit 1 if the run failed.
pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let run = match args.dir {
        Some(d) => RunDir::open_arg(runs, &d)?,
        None => RunDir::open(runs, None)?,
    };
    let s = analyze::analyze(&run)?;
    if args.out.json {
        print_json(&s)?;
    } else {
        print!("{}", analyze::to_markdown(&s));
    }
    Ok(if s.ok { 0 } else { 1 })
}
