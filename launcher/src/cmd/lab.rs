//! `launcher lab up|down`: Docker hosts in containers on this machine, reached over SSH
//! ([`crate::cluster::lab`]).

use crate::cluster::lab;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start N lab hosts (dockerd + sshd each) on a private bridge network, with an SSH
    /// key, known_hosts and a hosts.toml for them in DIR. Re-running completes the lab.
    Up {
        /// How many hosts (lab-1 is the manager).
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Where the keys, known_hosts and hosts.toml go.
        #[arg(long, default_value = "keys/lab")]
        dir: PathBuf,
        /// The lab's name: its network and container prefix.
        #[arg(long, default_value = "cmesh-lab")]
        name: String,
        /// Use this image as the base instead of building cmesh-base.
        #[arg(long)]
        base_image: Option<String>,
    },
    /// Remove the lab's hosts and network (keys and hosts.toml stay).
    Down {
        #[arg(long, default_value = "cmesh-lab")]
        name: String,
    },
}

pub async fn main(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Up {
            hosts,
            dir,
            name,
            base_image,
        } => {
            let path = lab::up(&lab::LabRequest {
                name,
                hosts,
                dir,
                base_image,
            })
            .await?;
            println!("{}", path.display());
        }
        Command::Down { name } => {
            lab::down(&name).await?;
        }
    }
    Ok(0)
}
