//! `launcher swarm join|leave`: the swarm that joins the hosts
//! ([`crate::cluster::swarm`]; spawn joins it by itself).

use crate::cluster::host::{manager, Connector};
use crate::cluster::{registry, swarm};
use crate::cmd::load_hosts;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Init the swarm on the manager, join every worker, label the nodes (idempotent).
    Join {
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
    /// Remove the registry from the manager, then every worker leaves the swarm, then the
    /// manager (undoes `join` and spawn's join).
    Leave {
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
}

pub async fn main(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Join { hosts } => {
            let file = load_hosts(hosts.as_deref())?;
            let hosts = Connector::Docker.connect_all(&file).await.require_all()?;
            swarm::ensure(&hosts).await?;
        }
        Command::Leave { hosts } => {
            let file = load_hosts(hosts.as_deref())?;
            let hosts = Connector::Docker.connect_all(&file).await.require_all()?;
            registry::remove(manager(&hosts)?).await?;
            swarm::leave(&hosts).await?;
        }
    }
    Ok(0)
}
