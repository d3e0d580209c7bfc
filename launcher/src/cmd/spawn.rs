//! `launcher spawn`: from flags (and a plan file) to a [`crate::spawn::SpawnRequest`],
//! checked before any engine is asked, then [`crate::spawn::spawn`]. `launcher run`
//! takes the same flags ([`SpawnArgs`]).

use crate::cluster::distribute::Transport;
use crate::cluster::{images, network};
use crate::cmd::images::ImageArgs;
use crate::cmd::{load_hosts, print_json, value_name, JsonArg};
use crate::{hosts, plan_file, spawn};
use clap::ValueEnum;
use cmesh_common::exit::bad_input;
use cmesh_common::graph::GraphKind;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spawn: SpawnArgs,
    #[command(flatten)]
    pub out: JsonArg,
}

/// Spawns the run; prints its id, or what was spawned as JSON.
pub async fn main(runs: &Path, args: Args) -> anyhow::Result<i32> {
    let spawned = spawn::spawn(spawn_request(runs, &args.spawn)?).await?;
    if args.out.json {
        print_json(&spawned)?;
    } else {
        println!("{}", spawned.run_id);
    }
    Ok(0)
}

/// The peers' sync backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The built-in replicated log over TCP.
    Mesh,
    /// Your app, driven by your adapter program (needs --app-image and --adapter;
    /// docs/apps.md). The default when --adapter is given.
    Adapter,
    /// A Ditto small peer (needs --peer-image and --secret-file; docs/ditto.md).
    Ditto,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SpawnArgs {
    /// The hosts file [default: ./hosts.toml, or the local Docker Engine if there is none].
    #[arg(long)]
    pub hosts: Option<PathBuf>,
    /// A test plan (configs/*.toml); flags override it, CMESH_PLAN_* variables sit between.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of peers [default: the plan's, else 10].
    #[arg(long)]
    pub peers: Option<usize>,
    /// How long peers write, e.g. 30s.
    #[arg(long)]
    pub duration: Option<String>,
    /// Connection graph.
    #[arg(long, value_enum)]
    pub graph: Option<GraphKind>,
    /// Degree of random-regular.
    #[arg(long)]
    pub degree: Option<usize>,
    /// Pause between a peer's writes in ms, MIN..MAX.
    #[arg(long)]
    pub write_interval: Option<String>,
    /// Bytes per record.
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// How the mesh backend spreads records [default: the plan's, else plumtree]:
    /// plumtree pushes on a tree and pulls on the other links, flood sends every record
    /// to every neighbour.
    #[arg(long, value_enum)]
    pub dissemination: Option<cmesh_common::plan::Dissemination>,
    /// Seed of the plan's random choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Name the run (a-z 0-9 -); re-using an id completes that run.
    #[arg(long)]
    pub run_id: Option<String>,
    /// The overlay subnet, e.g. 10.120.0.0/22 [default: sized for the peers].
    #[arg(long)]
    pub subnet: Option<String>,
    /// Containers started at once, per host.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Spawn even when the run does not fit its hosts (memory at the start, idle CPU),
    /// with a warning. `run --force` then stops the run once a host is saturated for
    /// 20 s (as --abort-on saturated), unless --abort-on says otherwise.
    #[arg(long)]
    pub force: bool,
    /// Place peers only on hosts with this label (KEY=VALUE; repeatable; `name=HOST`
    /// picks a host by name).
    #[arg(long = "host-label")]
    pub host_label: Vec<String>,
    /// How images reach the other hosts: a TLS registry on the manager, or streamed
    /// straight into each engine (`docker save | docker load`).
    #[arg(long, value_enum, default_value_t = Transport::Registry)]
    pub image_transport: Transport,
    /// Memory limit per peer container, in MiB.
    #[arg(long, default_value_t = 128)]
    pub peer_memory_mib: u64,
    /// CPU quota per peer container, in CPUs (0.01 to 1024; e.g. 0.25 for a quarter of a
    /// core) [default: none]. Emulates small devices, and makes CPU saturation
    /// reproducible on any machine.
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub peer_cpus: Option<f64>,
    /// The peers' sync backend; the peer image must have it (its io.cmesh.backends
    /// label) [default: mesh, or adapter with --adapter].
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Your app's image (on this machine's engine): the peers run in an image derived
    /// from it, with the peer and --adapter added, and checked for what they need
    /// (docs/apps.md).
    #[arg(
        long,
        value_name = "IMAGE",
        requires = "adapter",
        conflicts_with = "peer_image"
    )]
    pub app_image: Option<String>,
    /// The program that drives your app in each peer: a script or binary speaking
    /// cmesh's adapter protocol on stdin/stdout (docs/apps.md; apps/toy/adapter.py).
    #[arg(long, value_name = "PATH", requires = "app_image")]
    pub adapter: Option<PathBuf>,
    /// A secret file the backend needs (ditto: licence token and database id). It is
    /// copied into each host's secrets volume, never into an environment or an image.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Run this peer image instead of the one built from this workspace (it must be on
    /// this machine's engine; spawn puts it on the hosts).
    #[arg(long)]
    pub peer_image: Option<String>,
    /// When some hosts do not answer, place the peers on the others (the manager must
    /// answer) and record the ones left out in the manifest. Without it, spawn refuses.
    #[arg(long)]
    pub allow_missing_hosts: bool,
    /// Encrypt the run's overlay between hosts (IPsec, Docker's `encrypted` overlay), so
    /// that no one else on the lab network reads or alters the peers' traffic. Every
    /// host's kernel must have IPsec (ESP and XFRM): `launcher hosts check` says; spawn
    /// refuses before creating anything if one has not. Costs CPU per packet.
    #[arg(long)]
    pub encrypt_overlay: bool,
    #[command(flatten)]
    pub images: ImageArgs,
}

/// `--peer-cpus`: a number of CPUs from 0.01 (Docker's smallest quota) to 1024.
fn parse_cpus(s: &str) -> Result<f64, String> {
    let cpus: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of CPUs (e.g. 0.25)"))?;
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!("{s} CPUs: give 0.01 to 1024"));
    }
    Ok(cpus)
}

/// Turns spawn flags into a request, checking everything that needs no engine.
pub fn spawn_request(runs_dir: &Path, a: &SpawnArgs) -> anyhow::Result<spawn::SpawnRequest> {
    let hosts = load_hosts(a.hosts.as_deref())?;
    let flags = plan_file::PlanFile {
        peers: a.peers,
        duration: a.duration.clone(),
        graph: a.graph.map(value_name),
        degree: a.degree,
        write_interval: a.write_interval.clone(),
        payload_bytes: a.payload_bytes,
        dissemination: a.dissemination.map(value_name),
        seed: a.seed,
        ..Default::default()
    };
    let origin = a
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "flags".into());
    let spec = plan_file::load(a.config.as_deref())?
        .merge(flags)
        .to_spec(&origin)?;
    let subnet = match &a.subnet {
        Some(s) => Some(network::Subnet::parse(s).map_err(bad_input)?),
        None => None,
    };
    if a.concurrency == 0 {
        return Err(bad_input("--concurrency must be at least 1"));
    }
    let req = spawn::SpawnRequest {
        runs_dir: runs_dir.to_owned(),
        hosts,
        host_filter: hosts::parse_label_filter(&a.host_label)?,
        transport: a.image_transport,
        spec,
        run_id: a.run_id.clone(),
        subnet,
        concurrency: a.concurrency,
        force: a.force,
        peer_memory_bytes: (a.peer_memory_mib as i64) << 20,
        peer_nano_cpus: a.peer_cpus.map(|c| (c * 1e9).round() as i64),
        bin_dir: images::bin_dir(a.images.bin_dir.as_deref()),
        base_image: a.images.base_image.clone(),
        backend: spawn::BackendChoice::new(
            &value_name(a.backend.unwrap_or(if a.adapter.is_some() {
                BackendKind::Adapter
            } else {
                BackendKind::Mesh
            })),
            a.secret_file.as_deref(),
            a.peer_image.as_deref(),
            match (&a.app_image, &a.adapter) {
                (Some(image), Some(adapter)) => {
                    Some(spawn::app_image::AppChoice::new(image, adapter)?)
                }
                _ => None,
            },
        )?,
        allow_missing_hosts: a.allow_missing_hosts,
        encrypt_overlay: a.encrypt_overlay,
    };
    spawn::precheck(&req)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_cpus_are_a_bounded_number() {
        assert_eq!(parse_cpus("0.25"), Ok(0.25));
        assert_eq!(parse_cpus("2"), Ok(2.0));
        for bad in ["0", "0.001", "-1", "NaN", "inf", "2000", "a quarter"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }
}
