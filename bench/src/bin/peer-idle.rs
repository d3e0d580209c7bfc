//! What a peer costs its host when it has nothing to do: the harness's fixed cost, which
//! sets how many peers a core can hold before the numbers measure the host.
//!
//! For each size (100 and 1000 peers by default) it starts a coordinator and the peers as
//! processes on loopback (`cmesh_testkit::Mesh`) with a plan that writes (almost)
//! nothing: one write an hour, for two minutes. Once every peer is writing, it waits
//! 5 s, then reads every peer's CPU time (`/proc/PID/task/*/schedstat`: exact, where
//! `/proc/PID/stat` counts 10 ms ticks by sampling) and voluntary context switches (its
//! wake-ups) twice, `--window` apart, and the host's CPU from `/proc/stat`. Per size it
//! prints, per peer: CPU µs a second and wake-ups a second; the coordinator's CPU; the
//! host busy. Then each size against the smallest, per peer: below 1 is the pacing
//! (peer/src/pacing.rs) spreading a crowded host's periodic work.
//!
//! cargo run --release -p cmesh-bench --bin peer-idle [-- --sizes 100,1000 --window 30s]

use anyhow::{ensure, Context, Result};
use clap::Parser;
use cmesh_bench::machine;
use cmesh_testkit::Mesh;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Peer counts, in order.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// How long to measure, once every peer writes.
    #[arg(long, default_value = "30s", value_parser = cmesh_common::parse::duration)]
    window: Duration,
}

/// CPU ns and voluntary switches of a process, all its threads.
fn usage(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    let (mut ns, mut switches) = (0, 0);
    for t in tasks.flatten() {
        let p = t.path();
        if let Ok(s) = std::fs::read_to_string(p.join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(s) = std::fs::read_to_string(p.join("status")) {
            switches += s
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (ns, switches)
}

/// Busy and total ticks of all CPUs (the peer's own reader of /proc/stat).
fn host_ticks() -> Result<(u64, u64)> {
    let t = cmesh_peer::cpu::host_ticks().context("reading /proc/stat")?;
    Ok((t.busy, t.total))
}

#[derive(Clone, Copy, Debug)]
struct Figures {
    peers: usize,
    cpu_us_per_peer_s: f64,
    wakeups_per_peer_s: f64,
    coordinator_pct: f64,
    host_busy_pct: f64,
}

fn measure(n: usize, window: Duration) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let mesh = Mesh::start(
        dir.path(),
        n,
        &[
            "--duration",
            "120s",
            "--write-interval",
            "3600000..3600000",
            "--linger",
            "0s",
        ],
    )?;
    // Every peer writing: its events say so.
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 4);
    loop {
        let writing = mesh
            .peers
            .iter()
            .filter(|(name, _)| {
                std::fs::read_to_string(dir.path().join(name).join("events.jsonl"))
                    .is_ok_and(|t| t.contains("\"writing\""))
            })
            .count();
        if writing == n {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {writing} of {n} peers writing after {:?}",
            deadline
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let pids: Vec<u32> = mesh.peers.iter().map(|(_, c)| c.id()).collect();
    let coordinator = mesh.coordinator.id();
    let sum = |pids: &[u32]| {
        pids.iter()
            .map(|&p| usage(p))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    };
    let (c0, _) = usage(coordinator);
    let (p0, w0) = sum(&pids);
    let (b0, t0) = host_ticks()?;
    let start = Instant::now();
    std::thread::sleep(window);
    let (p1, w1) = sum(&pids);
    let (c1, _) = usage(coordinator);
    let (b1, t1) = host_ticks()?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        mesh.peers.len() == n,
        "the peers did not all start: {}",
        mesh.peers.len()
    );
    Ok(Figures {
        peers: n,
        cpu_us_per_peer_s: (p1 - p0) as f64 / 1000.0 / secs / n as f64,
        wakeups_per_peer_s: (w1 - w0) as f64 / secs / n as f64,
        coordinator_pct: (c1 - c0) as f64 / 1e9 / secs * 100.0,
        host_busy_pct: (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * 100.0,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "peer-idle: peers as processes on loopback, one write an hour, measured over {} s once all write; {}",
        args.window.as_secs(),
        machine()
    );
    let mut all = Vec::new();
    for &n in &args.sizes {
        let f = measure(n, args.window)?;
        println!(
            "{n} peers: {:.0} µs CPU and {:.2} wake-ups a second per peer; coordinator {:.1}% of a core; host busy {:.1}%",
            f.cpu_us_per_peer_s, f.wakeups_per_peer_s, f.coordinator_pct, f.host_busy_pct
        );
        all.push(f);
    }
    println!();
    println!("| peers | CPU per peer | wake-ups per peer | all peers | coordinator | host busy | per peer vs {} |", all[0].peers);
    println!("|---|---|---|---|---|---|---|");
    for f in &all {
        println!(
            "| {} | {:.0} µs/s | {:.2}/s | {:.1}% of a core | {:.1}% of a core | {:.1}% | {:.2}x |",
            f.peers,
            f.cpu_us_per_peer_s,
            f.wakeups_per_peer_s,
            f.cpu_us_per_peer_s * f.peers as f64 / 10_000.0,
            f.coordinator_pct,
            f.host_busy_pct,
            f.cpu_us_per_peer_s / all[0].cpu_us_per_peer_s
        );
    }
    Ok(())
}
