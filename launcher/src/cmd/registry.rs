//! `launcher registry rm`: the image registry spawn starts on the manager
//! ([`crate::cluster::registry`]).

use crate::cluster::host::{manager, Connector};
use crate::cluster::registry;
use crate::cmd::load_hosts;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Remove the registry container from the manager, with its certificate, password
    /// and image volumes (the next spawn that needs one makes a new one).
    Rm {
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
}

pub async fn main(command: Command) -> anyhow::Result<i32> {
    let Command::Rm { hosts } = command;
    let file = load_hosts(hosts.as_deref())?;
    let hosts = Connector::Docker.connect_all(&file).await.require_all()?;
    let manager = manager(&hosts)?;
    if !registry::remove(manager).await? {
        eprintln!("launcher: host `{}` has no registry", manager.name());
    }
    Ok(0)
}
