//! Density: how many peers this machine's engine runs with clean numbers, and what grows
//! faster than the peers.
//!
//! For each size (125, 250, 500 and 1000 peers by default) it runs the launcher's whole
//! loop on this machine's engine, one size after another: `images build`, `spawn`,
//! `wait`, `extract`, `analyze`, `down`. A sampler reads the host every 500 ms:
//! MemAvailable, the load average, and dockerd's and containerd's CPU time and resident
//! memory. Per size it prints:
//!
//! - the time of each phase: images, spawn (network and containers), all registered
//!   (the coordinator's last registration, from its timeline), writing (the plan's),
//!   settle (from the end of writing to the last peer done), wait, extract, analyze,
//!   down;
//! - memory per container (MemAvailable at the start less its lowest while the peers
//!   ran, over the containers);
//! - dockerd's and containerd's CPU seconds and peak RSS, and the peak load average;
//! - coverage, latency p50 and p99, and the measurement-quality verdict.
//!
//! Then each size against the smallest, per peer: a ratio above 1 is a cost that grows
//! faster than the peers. The largest size that stayed `clean` is printed per core.
//!
//! cargo run --release -p cmesh-bench --bin scale [-- --sizes 125,250,500,1000 --write-interval 5000..10000 --duration 30s]

use anyhow::{ensure, Context, Result};
use clap::Parser;
use cmesh_bench::{cpu_seconds, machine, memory_kib};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// Peer counts, in order.
    #[arg(long, default_value = "125,250,500,1000", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Pause between a peer's writes, ms.
    #[arg(long, default_value = "5000..10000")]
    write_interval: String,
    /// How long peers write.
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Extra flags for `launcher spawn` (e.g. --dissemination flood), space-separated.
    #[arg(long, default_value = "")]
    spawn_flags: String,
    /// Keep the runs' directories here (default: a temporary directory).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// One host sample.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    mem_available_kib: u64,
    load1: f64,
    dockerd_rss_kib: u64,
    containerd_rss_kib: u64,
}

fn pid_of(name: &str) -> Option<u32> {
    let out = Command::new("pidof").arg(name).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn sample(dockerd: Option<u32>, containerd: Option<u32>) -> Sample {
    let rss = |p: Option<u32>| p.and_then(memory_kib).map_or(0, |(r, _)| r);
    Sample {
        mem_available_kib: mem_available_kib(),
        load1: load1(),
        dockerd_rss_kib: rss(dockerd),
        containerd_rss_kib: rss(containerd),
    }
}

/// Samples the host every 500 ms until dropped.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start() -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (samples, stop) = (samples.clone(), stop.clone());
            move || {
                let (d, c) = (pid_of("dockerd"), pid_of("containerd"));
                while !stop.load(Ordering::Relaxed) {
                    samples.lock().unwrap().push(sample(d, c));
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        });
        Sampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn take(&self) -> Vec<Sample> {
        std::mem::take(&mut self.samples.lock().unwrap())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `launcher ARGS` and returns its stdout and how long it took.
fn launcher(runs: &Path, args: &[&str]) -> Result<(String, f64)> {
    let start = Instant::now();
    let out = Command::new(cmesh_testkit::binary("launcher"))
        .arg("--runs-dir")
        .arg(runs)
        .args(args)
        .output()
        .context("run the launcher")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!(
            "launcher {} exited {}:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), secs))
}

#[derive(Debug, Default, Clone)]
struct Result1 {
    peers: usize,
    images_s: f64,
    spawn_s: f64,
    registered_s: f64,
    writing_s: f64,
    settle_s: f64,
    wait_s: f64,
    extract_s: f64,
    analyze_s: f64,
    down_s: f64,
    mem_per_container_mib: f64,
    dockerd_cpu_s: f64,
    containerd_cpu_s: f64,
    dockerd_rss_mib: f64,
    containerd_rss_mib: f64,
    load_peak: f64,
    coverage: f64,
    p50_ms: f64,
    p99_ms: f64,
    verdict: String,
    reasons: Vec<String>,
}

/// The coordinator's timeline from its extracted report: (event, t_unix_ms, to-state).
fn timeline(dir: &Path, run: &str) -> Result<Vec<Value>> {
    let archive = dir
        .join("extract/local")
        .join(format!("{run}-coordinator"))
        .join("report.tar.gz");
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(&archive)
        .arg("report/timeline.jsonl")
        .output()?;
    ensure!(out.status.success(), "no timeline in {}", archive.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn run_size(args: &Args, runs: &Path, peers: usize) -> Result<Result1> {
    let id = format!("scale-{peers}");
    let mut r = Result1 {
        peers,
        ..Default::default()
    };
    r.images_s = launcher(runs, &["images", "build"])?.1;
    // From here on the host's figures are the run's: memory, CPU, load.
    let (d, c) = (pid_of("dockerd"), pid_of("containerd"));
    let cpu = |p: Option<u32>| p.and_then(cpu_seconds).unwrap_or(0.0);
    let (d0, c0) = (cpu(d), cpu(c));
    let sampler = Sampler::start();
    let mem0 = mem_available_kib();
    let n = peers.to_string();
    let mut spawn: Vec<&str> = vec![
        "spawn",
        "--peers",
        &n,
        "--duration",
        &args.duration,
        "--write-interval",
        &args.write_interval,
        "--run-id",
        &id,
        "--json",
    ];
    spawn.extend(args.spawn_flags.split_whitespace());
    let spawn_start = now_ms();
    let (out, secs) = launcher(runs, &spawn)?;
    r.spawn_s = secs;
    let spawned: Value = serde_json::from_str(&out).context("spawn --json")?;
    ensure!(
        spawned["started"].as_u64() == Some(peers as u64),
        "spawn: {spawned}"
    );
    r.wait_s = launcher(runs, &["wait", "--run", &id])?.1;
    let during = sampler.take();
    r.extract_s = launcher(runs, &["extract", "--run", &id])?.1;
    let dir = runs.join(&id);
    let (summary, analyze_s) = launcher(runs, &["analyze", dir.to_str().unwrap(), "--json"])?;
    r.analyze_s = analyze_s;
    r.down_s = launcher(runs, &["down", "--force", "--run", &id])?.1;
    let after = sampler.take();
    drop(sampler);

    r.dockerd_cpu_s = cpu(d) - d0;
    r.containerd_cpu_s = cpu(c) - c0;
    let all: Vec<&Sample> = during.iter().chain(&after).collect();
    let peak = |f: fn(&Sample) -> u64| all.iter().map(|s| f(s)).max().unwrap_or(0) as f64 / 1024.0;
    r.dockerd_rss_mib = peak(|s| s.dockerd_rss_kib);
    r.containerd_rss_mib = peak(|s| s.containerd_rss_kib);
    r.load_peak = all.iter().map(|s| s.load1).fold(0.0, f64::max);
    let low = during
        .iter()
        .map(|s| s.mem_available_kib)
        .min()
        .unwrap_or(mem0);
    r.mem_per_container_mib = mem0.saturating_sub(low) as f64 / 1024.0 / (peers + 1) as f64;

    let events = timeline(&dir, &id)?;
    let t = |v: &Value| v["t_unix_ms"].as_u64().unwrap_or(0);
    let last = |pred: &dyn Fn(&Value) -> bool| events.iter().filter(|e| pred(e)).map(t).max();
    if let Some(reg) = last(&|e| e["event"] == "registered") {
        r.registered_s = reg.saturating_sub(spawn_start) as f64 / 1000.0;
    }
    let plan = read_plan(&dir, &id)?;
    let start = plan["start_at_unix_ms"].as_u64().unwrap_or(0);
    let duration = plan["spec"]["duration_ms"].as_u64().unwrap_or(0);
    r.writing_s = duration as f64 / 1000.0;
    if let Some(done) = last(&|e| e["event"] == "state" && e["to"] == "done") {
        r.settle_s = done.saturating_sub(start + duration) as f64 / 1000.0;
    }

    let s: Value = serde_json::from_str(&summary).context("analyze --json")?;
    r.coverage = s["coverage"].as_f64().unwrap_or(0.0);
    r.p50_ms = s["message_latency"]["p50_us"].as_f64().unwrap_or(0.0) / 1000.0;
    r.p99_ms = s["message_latency"]["p99_us"].as_f64().unwrap_or(0.0) / 1000.0;
    let q = &s["measurement_quality"];
    r.verdict = q["verdict"].as_str().unwrap_or("?").to_owned();
    r.reasons = q["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(r)
}

fn read_plan(dir: &Path, run: &str) -> Result<Value> {
    let archive = dir
        .join("extract/local")
        .join(format!("{run}-coordinator"))
        .join("report.tar.gz");
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(&archive)
        .arg("report/plan.json")
        .output()?;
    ensure!(
        out.status.success(),
        "no plan.json in {}",
        archive.display()
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "scale: sizes {:?}, {} of writes every {} ms, {}; {}",
        args.sizes,
        args.duration,
        args.write_interval,
        if args.spawn_flags.is_empty() {
            "default flags".to_owned()
        } else {
            args.spawn_flags.clone()
        },
        machine()
    );
    // Built (once) before anything is timed.
    cmesh_testkit::binary("launcher");
    let tmp = tempfile::tempdir()?;
    let runs = args.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let mut results = Vec::new();
    for &n in &args.sizes {
        let r = run_size(&args, &runs, n)?;
        println!(
            "{n} peers: spawn {:.1} s, wait {:.1} s, {:.2} MiB per container, verdict {}{}",
            r.spawn_s,
            r.wait_s,
            r.mem_per_container_mib,
            r.verdict,
            if r.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.reasons.join("; "))
            }
        );
        results.push(r);
    }
    println!();
    println!("| peers | images | spawn | all registered | writing | settle | wait | extract | analyze | down | memory per container | dockerd CPU / peak RSS | containerd CPU / peak RSS | peak load | coverage | p50 | p99 | verdict |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.1} s | {:.0} s | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.2} MiB | {:.1} s / {:.0} MiB | {:.1} s / {:.0} MiB | {:.0} | {:.4} | {:.2} ms | {:.2} ms | {} |",
            r.peers, r.images_s, r.spawn_s, r.registered_s, r.writing_s, r.settle_s, r.wait_s,
            r.extract_s, r.analyze_s, r.down_s, r.mem_per_container_mib, r.dockerd_cpu_s,
            r.dockerd_rss_mib, r.containerd_cpu_s, r.containerd_rss_mib, r.load_peak,
            r.coverage, r.p50_ms, r.p99_ms, r.verdict
        );
    }
    if let Some(base) = results.first() {
        println!();
        println!(
            "per peer, against {} peers (above 1: grows faster than the peers):",
            base.peers
        );
        println!("| peers | spawn | all registered | settle | extract | analyze | down | dockerd CPU | memory per container |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let per = |v: f64, n: usize| v / n as f64;
        for r in &results {
            let ratio = |a: f64, b: f64| {
                if per(b, base.peers) > 0.0 {
                    per(a, r.peers) / per(b, base.peers)
                } else {
                    0.0
                }
            };
            println!(
                "| {} | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
                r.peers,
                ratio(r.spawn_s, base.spawn_s),
                ratio(r.registered_s, base.registered_s),
                ratio(r.settle_s, base.settle_s),
                ratio(r.extract_s, base.extract_s),
                ratio(r.analyze_s, base.analyze_s),
                ratio(r.down_s, base.down_s),
                ratio(r.dockerd_cpu_s, base.dockerd_cpu_s),
                r.mem_per_container_mib / base.mem_per_container_mib.max(f64::MIN_POSITIVE),
            );
        }
    }
    let clean = results
        .iter()
        .filter(|r| r.verdict == "clean" && r.coverage == 1.0)
        .map(|r| r.peers)
        .max();
    println!();
    match clean {
        Some(n) => println!(
            "largest clean size: {n} peers on {cpus} CPUs ({} per core) at {} ms between writes",
            n / cpus,
            args.write_interval
        ),
        None => println!(
            "no size was clean at {} ms between writes",
            args.write_interval
        ),
    }
    Ok(())
}
