//! `launcher images build`: the base (if missing), peer and coordinator images on this
//! machine's engine ([`crate::cluster::images`]); spawn puts them on the other hosts.

use crate::cluster::host::Connector;
use crate::cluster::images;
use crate::cmd::load_hosts;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build the base (if missing), peer and coordinator images on this machine's engine
    /// (spawn puts them on the other hosts).
    Build {
        #[arg(long)]
        hosts: Option<PathBuf>,
        #[command(flatten)]
        images: ImageArgs,
    },
}

/// Where the images come from (spawn and run take these too).
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Where the prebuilt peer and coordinator binaries are [default: next to launcher].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Use this image as the base instead of building cmesh-base.
    #[arg(long)]
    pub base_image: Option<String>,
}

pub async fn main(command: Command) -> anyhow::Result<i32> {
    let Command::Build { hosts, images: i } = command;
    // Checks the hosts file; images are built on this machine's engine.
    load_hosts(hosts.as_deref())?;
    let builder = Connector::Docker.builder().await?;
    images::ensure_all(
        &builder,
        &images::bin_dir(i.bin_dir.as_deref()),
        i.base_image.as_deref(),
    )
    .await?;
    Ok(0)
}
