//! `launcher report`: write analysis/report.html again ([`crate::results::analyze::report`])
//! and print its path.

use crate::cmd::RunArg;
use crate::results::analyze;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// Open it in the desktop's browser ($BROWSER, else xdg-open).
    #[arg(long)]
    pub open: bool,
}

pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let run = args.run.open(runs)?;
    let path = analyze::report(&run)?;
    println!("{}", path.display());
    if args.open {
        analyze::open_in_browser(&path)?;
    }
    Ok(0)
}
