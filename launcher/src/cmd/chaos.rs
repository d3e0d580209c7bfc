//! `launcher chaos`: one fault into a running run, now ([`crate::faults::chaos`]).

use crate::cmd::{print_json, value_name, JsonArg, RunArg};
use crate::faults::chaos;
use clap::ValueEnum;
use std::path::Path;

/// A fault `launcher chaos` can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChaosKind {
    /// Delay every packet (--ms, --jitter).
    Delay,
    /// Drop packets (--percent).
    Loss,
    /// Duplicate packets (--percent).
    Duplicate,
    /// Corrupt packets (--percent).
    Corrupt,
    /// Reorder packets (--percent).
    Reorder,
    /// Limit the rate (--kbit).
    Rate,
    /// Cut groups apart (--groups).
    Partition,
    /// SIGKILL the peers' containers.
    Kill,
    /// Freeze the peers' containers (--for).
    Pause,
    /// SIGKILL, then start the same containers again.
    Restart,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[arg(value_enum)]
    pub action: ChaosKind,
    #[command(flatten)]
    pub run: RunArg,
    /// Which peers: all (default), 1-5,9, a name glob (peer-00[0-4]*), group:NAME, N%.
    #[arg(long)]
    pub peers: Option<String>,
    /// A random share of the peers, e.g. 10%, picked with --seed.
    #[arg(long)]
    pub random: Option<String>,
    /// Seed for --random [default: the plan's seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shaping: only the traffic towards these peers (same forms as --peers).
    #[arg(long)]
    pub to: Option<String>,
    /// delay: milliseconds.
    #[arg(long)]
    pub ms: Option<u64>,
    /// delay: jitter, milliseconds.
    #[arg(long)]
    pub jitter: Option<u64>,
    /// loss, duplicate, corrupt, reorder: percent.
    #[arg(long)]
    pub percent: Option<f64>,
    /// rate: kbit/s.
    #[arg(long)]
    pub kbit: Option<u64>,
    /// partition: the groups, NAME:PEERS each, e.g. a:1-50 b:51-100.
    #[arg(long, num_args = 1..)]
    pub groups: Vec<String>,
    /// How long (e.g. 30s); left out: until the peers stop writing. Needed for pause.
    #[arg(long = "for")]
    pub duration: Option<String>,
    #[command(flatten)]
    pub out: JsonArg,
}

/// Injects the fault; prints what was done. Exit 1 if it failed on some peers.
pub async fn main(runs: &Path, a: Args) -> anyhow::Result<i32> {
    let order = chaos::ChaosOrder {
        action: value_name(a.action),
        peers: a.peers,
        random: a.random,
        seed: a.seed,
        to: a.to,
        ms: a.ms,
        jitter_ms: a.jitter,
        percent: a.percent,
        kbit: a.kbit,
        groups: a.groups,
        duration: a.duration,
    };
    let record = chaos::chaos(&a.run.open(runs)?, &order).await?;
    if a.out.json {
        print_json(&record)?;
    } else {
        println!("{}", chaos::describe(&record));
    }
    for (name, e) in &record.errors {
        tracing::warn!("chaos: {name}: {e}");
    }
    Ok(if record.errors.is_empty() { 0 } else { 1 })
}
