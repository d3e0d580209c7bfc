//! `launcher extract`: every container's report, logs and state into
//! `runs/<run>/extract` ([`crate::results::extract`]), within the caps of [`CapsArgs`].

use crate::cmd::{print_json, JsonArg, RunArg};
use crate::results::{archive, extract};
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// Containers extracted at once on each host.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub caps: CapsArgs,
    #[command(flatten)]
    pub out: JsonArg,
}

/// Extracts; prints extract.json's index with --json. Exit 1 if a container could not
/// be extracted or a host not reached.
pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let run = args.run.open(runs)?;
    let x = extract::extract(&run, args.concurrency.max(1), args.caps.caps()).await?;
    extract::print_summary(&x);
    if args.out.json {
        print_json(&x.index)?;
    }
    Ok(
        if x.index.errors.is_empty() && x.index.unreachable.is_empty() {
            0
        } else {
            1
        },
    )
}

/// What extract may write: what a container's report directory holds beyond these is
/// cut (a file keeps its first bytes) or left out, and the container is marked
/// `truncated` in extract.json with the reason.
#[derive(Debug, Clone, clap::Args)]
pub struct CapsArgs {
    /// Largest file extract keeps from a report directory (MiB).
    #[arg(long, value_name = "MIB", default_value_t = archive::DEFAULT_FILE_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_file_mib: u64,
    /// Most extract keeps from one container's report directory (MiB).
    #[arg(long, value_name = "MIB", default_value_t = archive::DEFAULT_CONTAINER_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_container_mib: u64,
    /// Most extract keeps from one host's reports (MiB).
    #[arg(long, value_name = "MIB", default_value_t = archive::DEFAULT_HOST_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_host_mib: u64,
}

impl CapsArgs {
    pub fn caps(&self) -> archive::Caps {
        archive::Caps::mib(self.max_file_mib, self.max_container_mib, self.max_host_mib)
    }
}
