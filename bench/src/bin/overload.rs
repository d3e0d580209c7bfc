//! A run at the density the tool exists for, and what it does to its host: the 1-minute
//! load average sampled every 10 s (and the threads runnable at that moment), against
//! the same host idle just before, and the run's own outcome: its exit code, coverage,
//! and the running peers the coordinator declared lost.
//!
//! Target (issue 24): `launcher run --peers 1000 --duration 60s --write-interval
//! 20000..40000` on a 2-CPU machine exits 0 with coverage 1.0, no running peer declared
//! lost, and a highest load average of at most 432 (half the 864 it reached on
//! 2026-12-07). The command's flags after `--` replace the default run.
//!
//! cargo run --release -p cmesh-bench --bin overload [-- --peers 1000 --duration 60s --write-interval 20000..40000]

use anyhow::{Context, Result};
use cmesh_bench::machine;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The highest load average the target allows.
const TARGET_LOAD: f64 = 432.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// `(1-minute load, threads runnable now)` from /proc/loadavg.
fn loadavg() -> Option<(f64, u64)> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace();
    let load = fields.next()?.parse().ok()?;
    let runnable = fields.nth(2)?.split('/').next()?.parse().ok()?;
    Some((load, runnable))
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = [
            "--peers",
            "1000",
            "--duration",
            "60s",
            "--write-interval",
            "20000..40000",
        ]
        .map(String::from)
        .to_vec();
    }
    // Kept: the run's directory (its analysis, the coordinator's timeline) is what says
    // why a figure is what it is.
    let runs = tempfile::Builder::new()
        .prefix("cmesh-overload-")
        .tempdir()?
        .keep();
    println!("{}", machine());
    let idle = loadavg().context("/proc/loadavg")?;

    let samples = Arc::new(Mutex::new(Vec::<(f64, f64, u64)>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampler = {
        let (samples, done) = (samples.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some((load, runnable)) = loadavg() {
                    let at = started.elapsed().as_secs_f64();
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((at, load, runnable));
                }
                let next = Instant::now() + SAMPLE_EVERY;
                while Instant::now() < next && !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        })
    };
    let mut child = Command::new(cmesh_testkit::binary("launcher"))
        .arg("--runs-dir")
        .arg(&runs)
        .args(["run", "--json", "--run-id", "overload"])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let progress = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("  {line}");
        }
    });
    let out = child.wait_with_output()?;
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let _ = progress.join();
    let secs = started.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();

    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("\nlauncher run {}", args.join(" "));
    println!(
        "the run's directory (kept): {}",
        runs.join("overload").display()
    );
    println!("\n| s | load (1 min) | runnable |\n|---|---|---|");
    for (at, load, runnable) in &samples {
        println!("| {at:.0} | {load:.1} | {runnable} |");
    }
    let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    let peak_runnable = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let starved = &summary["measurement_quality"]["heartbeats"]["starved"];
    println!(
        "\nexit {:?} after {secs:.0} s; coverage {}; running peers declared lost {}; verdict {}",
        out.status.code(),
        summary["coverage"],
        starved,
        summary["measurement_quality"]["verdict"]
    );
    println!(
        "baseline (this host idle, just before): load {:.1}, {} runnable",
        idle.0, idle.1
    );
    println!(
        "peak: load {peak:.1} ({:.0}x the idle baseline), {peak_runnable} runnable",
        peak / idle.0.max(0.01)
    );
    let met = out.status.success()
        && summary["coverage"].as_f64() == Some(1.0)
        && starved.as_u64() == Some(0)
        && peak <= TARGET_LOAD;
    println!(
        "target: exit 0, coverage 1.0, no running peer lost, load at most {TARGET_LOAD}: {}",
        if met { "met" } else { "NOT met" }
    );
    Ok(())
}
