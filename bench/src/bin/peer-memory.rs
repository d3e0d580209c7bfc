//! Peer resident memory with 10 neighbours at 1 write/s (target: at most 8 MiB).
//!
//! Runs, in one go, a baseline (1 peer, no neighbours) and the target case (11 peers in a
//! complete graph: 10 neighbours each), both writing 1 record/s of 256 bytes, and samples
//! every peer's RSS from /proc while it runs. Prints peak RSS per case and the ratio. A
//! third case is the target case without checkpoints (`--checkpoint-interval 0s`): what
//! the checkpoint every 5 s costs.
//!
//! cargo run --release -p cmesh-bench --bin peer-memory [-- --duration 30s]

use anyhow::Result;
use clap::Parser;
use cmesh_bench::{machine, median, memory_kib};
use cmesh_testkit::Mesh;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// How long peers write in each case.
    #[arg(long, default_value = "30s", value_parser = cmesh_common::parse::duration)]
    duration: Duration,
}

struct Case {
    peers: usize,
    peak_kib: Vec<f64>,
}

fn run_case(peers: usize, duration: Duration, peer_extra: &[&str]) -> Result<Case> {
    let dir = tempfile::tempdir()?;
    let secs = format!("{}s", duration.as_secs());
    let mut mesh = Mesh::start_with(
        dir.path(),
        peers,
        &[
            "--graph",
            "complete",
            "--duration",
            &secs,
            "--write-interval",
            "1000..1000",
            "--linger",
            "0s",
        ],
        peer_extra,
    )?;
    let pids: Vec<u32> = mesh.peers.iter().map(|(_, c)| c.id()).collect();
    let mut peak = vec![0u64; peers];
    let start = Instant::now();
    // Sample until every peer has exited; VmHWM is the peak so far.
    while start.elapsed() < duration + Duration::from_secs(60) {
        let mut alive = 0;
        for (i, pid) in pids.iter().enumerate() {
            if let Some((_, hwm)) = memory_kib(*pid) {
                peak[i] = peak[i].max(hwm);
                alive += 1;
            }
        }
        if alive == 0
            || mesh
                .peers
                .iter_mut()
                .all(|(_, c)| c.try_wait().ok().flatten().is_some())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (codes, _) = mesh.wait(Duration::from_secs(30))?;
    for (name, code) in codes {
        anyhow::ensure!(code == Some(0), "{name} exited {code:?}");
    }
    for (name, _) in &mesh.peers {
        let r = mesh.report(name)?;
        anyhow::ensure!(
            r["distinct_origins"] == (peers - 1) as u64,
            "{name} missed origins"
        );
    }
    Ok(Case {
        peers,
        peak_kib: peak.into_iter().map(|k| k as f64).collect(),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "peer-memory: {} per case, 1 write/s, 256-byte records; {}",
        humantime_secs(args.duration),
        machine()
    );
    let mut baseline = run_case(1, args.duration, &[])?;
    let mut target = run_case(11, args.duration, &[])?;
    let mut unchecked = run_case(11, args.duration, &["--checkpoint-interval", "0s"])?;
    let base = median(&mut baseline.peak_kib) / 1024.0;
    let max = target.peak_kib.iter().cloned().fold(0.0, f64::max) / 1024.0;
    let med = median(&mut target.peak_kib) / 1024.0;
    let max_unchecked = unchecked.peak_kib.iter().cloned().fold(0.0, f64::max) / 1024.0;
    let med_unchecked = median(&mut unchecked.peak_kib) / 1024.0;
    println!();
    println!("| case | peers | peak RSS, median | peak RSS, max |");
    println!("|---|---|---|---|");
    println!(
        "| baseline: no neighbours | {} | {base:.2} MiB | {base:.2} MiB |",
        baseline.peers
    );
    println!(
        "| 10 neighbours | {} | {med:.2} MiB | {max:.2} MiB |",
        target.peers
    );
    println!(
        "| 10 neighbours, no checkpoints | {} | {med_unchecked:.2} MiB | {max_unchecked:.2} MiB |",
        unchecked.peers
    );
    println!();
    println!("ratio (10 neighbours, max / baseline): {:.2}x", max / base);
    println!(
        "checkpoints every 5 s (max with / max without): {:.2}x",
        max / max_unchecked
    );
    println!(
        "target: at most 8 MiB with 10 neighbours: {}",
        if max <= 8.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
