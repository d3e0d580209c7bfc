//! `launcher export --influx`: a run's numbers to InfluxDB 1.x as line protocol
//! ([`crate::results::export`]).

use crate::cmd::{print_json, JsonArg, RunArg};
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// The InfluxDB server, e.g. http://localhost:8086.
    #[arg(long, value_name = "URL")]
    pub influx: String,
    /// The database (created when missing).
    #[arg(long, value_name = "NAME", default_value = "cmesh")]
    pub db: String,
    #[command(flatten)]
    pub out: JsonArg,
}

pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let run = args.run.open(runs)?;
    let x = crate::results::export::influx(&run, &args.influx, &args.db).await?;
    if args.out.json {
        print_json(&x)?;
    } else {
        println!(
            "exported {} points of run {} to database {} ({})",
            x.points,
            run.id,
            x.db,
            x.file.display()
        );
    }
    Ok(0)
}
