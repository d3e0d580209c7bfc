//! spawn → wait → extract → down of 10,000 peers on 20 simulated hosts.
//!
//! The launcher's own orchestration code runs against the simulated engine
//! (launcher/src/engine/sim.rs) in virtual time: each host's daemon serves a few
//! requests at once, each for the time measured on this project's machines. For each
//! phase the benchmark prints the (virtual) wall time against the model's ideal, the
//! least time the slowest host's own work can take, so the ratio shows what the
//! orchestration costs beyond the engines: hosts left idle, work serialized across hosts,
//! requests queued behind each other. It also prints the launcher's real CPU time and
//! peak RSS, which are real whatever the clock.
//!
//!   cargo run --release -p cmesh-bench --bin sim-scale [-- --peers 10000 --hosts 20]

use clap::Parser;
use cmesh_launcher::cmd::{down, wait};
use cmesh_launcher::engine::sim::{Cluster, Model};
use cmesh_launcher::results::extract;
use cmesh_launcher::run::dir::RunDir;
use cmesh_launcher::simlab::{self, SimLab};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    #[arg(long, default_value_t = 20)]
    hosts: usize,
    /// How long each peer runs once started (virtual seconds).
    #[arg(long, default_value_t = 60)]
    run_secs: u64,
    /// Requests at once per host (spawn's --concurrency, extract's and down's).
    #[arg(long, default_value_t = 16)]
    per_host: usize,
}

struct Phase {
    name: &'static str,
    wall: Duration,
    ideal: Duration,
}

/// The most any host was busy between two snapshots, over its slots.
fn busiest(before: &BTreeMap<String, (Duration, u64)>, cluster: &Cluster) -> Duration {
    let slots = cluster.parallelism() as u32;
    cluster
        .busy()
        .iter()
        .map(|(h, (busy, _))| {
            let was = before.get(h).map(|(b, _)| *b).unwrap_or_default();
            (*busy - was) / slots
        })
        .max()
        .unwrap_or_default()
}

fn requests(cluster: &Cluster) -> u64 {
    cluster.busy().values().map(|(_, n)| n).sum()
}

async fn bench(args: &Args) -> anyhow::Result<Vec<Phase>> {
    let run_for = Duration::from_secs(args.run_secs);
    let cluster = Cluster::new(
        Model::calibrated(),
        Arc::new(move |name: &str, labels: &BTreeMap<String, String>| {
            simlab::behaviour(name, labels, run_for + Duration::from_secs(10), |_| run_for)
        }),
    );
    let capacity = args.peers.div_ceil(args.hosts.max(1));
    let lab = SimLab::new(cluster.clone(), args.hosts, capacity)?;
    let connector = lab.connector();
    // Extract writes every container's files: keep them off the disk's fsync costs when
    // a memory filesystem is there (the orchestration is what is measured).
    let runs = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm")?,
        false => tempfile::tempdir()?,
    };
    let mut req = lab.request(runs.path(), "scale", args.peers);
    req.concurrency = args.per_host;
    req.spec.duration_ms = run_for.as_millis() as u64;
    let mut phases = Vec::new();

    let (t0, before) = (Instant::now(), cluster.busy());
    let spawned = cmesh_launcher::spawn::spawn_with(&connector, req).await?;
    anyhow::ensure!(
        spawned.started == args.peers,
        "spawn started {} peers",
        spawned.started
    );
    phases.push(Phase {
        name: "spawn",
        wall: t0.elapsed(),
        ideal: busiest(&before, &cluster),
    });

    let run = RunDir::open(runs.path(), Some("scale"))?;
    let (t0, before) = (Instant::now(), cluster.busy());
    let waited = wait::wait_with(&connector, &run, Duration::from_secs(3600), &[]).await?;
    anyhow::ensure!(
        waited.failed().is_empty(),
        "{} peers failed",
        waited.failed().len()
    );
    // The wait cannot end before the last container has exited; after that, its work is
    // the inspection of every peer.
    let inherent = cluster
        .last_exit()
        .map(|at| at.saturating_duration_since(t0))
        .unwrap_or_default();
    phases.push(Phase {
        name: "wait",
        wall: t0.elapsed(),
        ideal: inherent + busiest(&before, &cluster),
    });

    let (t0, before) = (Instant::now(), cluster.busy());
    let x = extract::extract_with(&connector, &run, args.per_host, Default::default()).await?;
    anyhow::ensure!(
        x.index.errors.is_empty(),
        "extract: {:?}",
        x.index.errors.iter().next()
    );
    phases.push(Phase {
        name: "extract",
        wall: t0.elapsed(),
        ideal: busiest(&before, &cluster),
    });

    let (t0, before) = (Instant::now(), cluster.busy());
    let removed = down::down_with(&connector, &run, false, args.per_host).await?;
    anyhow::ensure!(
        removed.containers == args.peers + 1,
        "down removed {}",
        removed.containers
    );
    phases.push(Phase {
        name: "down",
        wall: t0.elapsed(),
        ideal: busiest(&before, &cluster),
    });
    println!("engine requests: {}", requests(&cluster));
    Ok(phases)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cmesh_launcher::logging::init(-1);
    cmesh_launcher::tasks::hide_progress();
    cmesh_common::raise_fd_limit();
    let pid = std::process::id();
    let cpu0 = cmesh_bench::cpu_seconds(pid).unwrap_or(0.0);
    let real = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let phases = runtime.block_on(bench(&args))?;
    let real = real.elapsed();
    let cpu = cmesh_bench::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let (_, peak_kib) = cmesh_bench::memory_kib(pid).unwrap_or((0, 0));

    println!(
        "sim-scale: {} peers on {} simulated hosts, {} requests at once per host, model: {:?}",
        args.peers,
        args.hosts,
        args.per_host,
        Model::calibrated()
    );
    println!();
    println!("| phase | wall (virtual) | ideal (model) | ratio |");
    println!("|---|---|---|---|");
    let (mut wall, mut ideal) = (Duration::ZERO, Duration::ZERO);
    for p in &phases {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.3}x |",
            p.name,
            p.wall.as_secs_f64(),
            p.ideal.as_secs_f64(),
            p.wall.as_secs_f64() / p.ideal.as_secs_f64().max(1e-9)
        );
        wall += p.wall;
        ideal += p.ideal;
    }
    let ratio = wall.as_secs_f64() / ideal.as_secs_f64().max(1e-9);
    println!(
        "| **total** | {:.1} s | {:.1} s | **{ratio:.3}x** |",
        wall.as_secs_f64(),
        ideal.as_secs_f64()
    );
    println!();
    println!(
        "launcher: {:.1} s CPU, {:.1} s real, peak RSS {:.1} MiB",
        cpu,
        real.as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
    println!(
        "targets: wall ≤ 1.05x ideal: {}; RSS ≤ 200 MiB: {}",
        if ratio <= 1.05 { "met" } else { "NOT met" },
        if peak_kib <= 200 * 1024 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
