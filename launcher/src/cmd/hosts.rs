//! `launcher hosts check`: one row per host of a hosts.toml, and each host's headroom
//! for the peers a run would place on it ([`crate::cluster::hostcheck`]).

use crate::cluster::hostcheck;
use crate::cmd::{load_hosts, print_json, JsonArg};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One row per host: reachable, Docker version and API, swarm state, netem and IPVS,
    /// free disk, clock offset against the manager, neighbour-table limit. Exit 1 if a
    /// host is unusable.
    Check {
        #[arg(long)]
        hosts: Option<PathBuf>,
        /// Planned peers: each host's headroom for its share of them (threads, dockerd's
        /// open files, memory, the neighbour table, inotify, disk).
        #[arg(long, default_value_t = 0)]
        peers: usize,
        #[command(flatten)]
        out: JsonArg,
    },
}

/// Checks; exit 1 if a host is unusable.
pub async fn main(command: Command) -> anyhow::Result<i32> {
    let Command::Check { hosts, peers, out } = command;
    let file = load_hosts(hosts.as_deref())?;
    let placed = crate::placement::peers_per_host(peers, &file.hosts, &[])?;
    let rows = hostcheck::check(&file, &placed).await?;
    if out.json {
        print_json(&rows)?;
    } else {
        print!("{}", hostcheck::render(&rows));
    }
    Ok(if rows.iter().all(hostcheck::Row::usable) {
        0
    } else {
        1
    })
}
