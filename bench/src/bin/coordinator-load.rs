//! Coordinator CPU and memory with 2000 registered peers heartbeating every 2 s over
//! loopback (target: under 10% of a core, under 64 MiB).
//!
//! Each simulated peer has its own HTTP client (its own keep-alive connection), as real
//! peers do. Two cases in one run, each against a fresh coordinator:
//! - baseline: the same clients at the same rate hitting `GET /healthz` (bare HTTP, no
//!   run state), the floor any HTTP server would pay;
//! - heartbeats: the clients register, then send `POST /v1/heartbeat` every 2 s;
//! - live: the same heartbeats carrying live counters as a running peer's do (totals,
//!   links, a latency and a lag histogram of a dozen buckets each, CPU, checkpoint age),
//!   with `launcher watch` (`GET /v1/live`) and a Prometheus (`GET /metrics`) each
//!   asking once a second.
//!
//! The coordinator's CPU time is read from /proc over the measurement window.
//!
//! cargo run --release -p cmesh-bench --bin coordinator-load [-- --peers 2000 --measure 30s]

use anyhow::{Context, Result};
use clap::Parser;
use cmesh_bench::{cpu_seconds, machine, memory_kib};
use cmesh_testkit::Mesh;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2000)]
    peers: usize,
    #[arg(long, default_value = "2s", value_parser = cmesh_common::parse::duration)]
    heartbeat: Duration,
    #[arg(long, default_value = "30s", value_parser = cmesh_common::parse::duration)]
    measure: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Load {
    Healthz,
    Heartbeats,
    Live,
}

/// A running peer's live counters: a dozen buckets of latency around 2 ms, of lag
/// around 1 ms.
fn counters(i: usize, beat: u64) -> serde_json::Value {
    let latency: Vec<(u8, u64)> = (40..52).map(|b| (b, 1 + (i as u64 + beat) % 7)).collect();
    let lag: Vec<(u8, u64)> = (36..48).map(|b| (b, 2)).collect();
    serde_json::json!({
        "written": beat * 4,
        "received": beat * 4 * 20,
        "origins": 20,
        "links_up": 4,
        "links_wanted": 4,
        "latency": latency,
        "lag": lag,
        "cpu_permille": 12,
        "checkpoint_age_ms": 1500,
    })
}

struct Figures {
    cpu_percent: f64,
    rss_mib: f64,
    hwm_mib: f64,
    requests: u64,
    errors: u64,
}

async fn run_case(args: &Args, load: Load) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let hb = format!("{}ms", args.heartbeat.as_millis());
    let mut mesh = Mesh::coordinator_only(
        dir.path(),
        args.peers,
        &[
            "--heartbeat",
            &hb,
            "--duration",
            "1h",
            "--graph",
            "random-regular",
        ],
    )?;
    let pid = mesh.coordinator.id();
    let base = format!("http://{}", mesh.coordinator_addr);
    let clients: Vec<reqwest::Client> = (0..args.peers)
        .map(|_| reqwest::Client::builder().pool_max_idle_per_host(1).build())
        .collect::<Result<_, _>>()?;
    if load != Load::Healthz {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, client) in clients.iter().enumerate() {
            let (client, base) = (client.clone(), base.clone());
            tasks.spawn(async move {
                client
                    .post(format!("{base}/v1/register"))
                    .header("x-cmesh-token", "test-token")
                    .json(&serde_json::json!({"peer": format!("peer-{:04}", i + 1), "addr": format!("127.0.0.1:{}", 10000 + i)}))
                    .send()
                    .await?
                    .error_for_status()
            });
            if tasks.len() >= 64 {
                tasks.join_next().await.context("join")???;
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
    }
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + args.measure + Duration::from_secs(5);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (base, requests, errors) = (base.clone(), requests.clone(), errors.clone());
        let every = args.heartbeat;
        let offset = every.mul_f64(i as f64 / args.peers as f64);
        tasks.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(every);
            let peer = format!("peer-{:04}", i + 1);
            let mut beat = 0;
            while Instant::now() < stop {
                tick.tick().await;
                beat += 1;
                let req = match load {
                    Load::Healthz => client.get(format!("{base}/healthz")),
                    Load::Heartbeats => client
                        .post(format!("{base}/v1/heartbeat"))
                        .header("x-cmesh-token", "test-token")
                        .json(&serde_json::json!({"peer": peer, "state": "init"})),
                    Load::Live => client
                        .post(format!("{base}/v1/heartbeat"))
                        .header("x-cmesh-token", "test-token")
                        .json(&serde_json::json!({
                            "peer": peer,
                            "state": "init",
                            "live": counters(i, beat),
                        })),
                };
                match req.send().await {
                    Ok(r) if r.status().is_success() => requests.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    if load == Load::Live {
        // A watch and a Prometheus, once a second each.
        for path in ["/v1/live", "/metrics"] {
            let (base, errors) = (base.clone(), errors.clone());
            tasks.spawn(async move {
                let client = reqwest::Client::new();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while Instant::now() < stop {
                    tick.tick().await;
                    let ok = client
                        .get(format!("{base}{path}"))
                        .header("x-cmesh-token", "test-token")
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    // Let every client connect and settle, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu0 = cpu_seconds(pid).context("coordinator cpu")?;
    let req0 = requests.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(args.measure).await;
    let cpu1 = cpu_seconds(pid).context("coordinator cpu")?;
    let wall = t0.elapsed().as_secs_f64();
    let req1 = requests.load(Ordering::Relaxed);
    let (rss, hwm) = memory_kib(pid).context("coordinator memory")?;
    tasks.abort_all();
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/status"))
        .header("x-cmesh-token", "test-token")
        .send()
        .await?
        .json()
        .await?;
    if load != Load::Healthz {
        anyhow::ensure!(
            status["counts"]["lost"] == 0
                && status["peers"].as_array().map(Vec::len) == Some(args.peers),
            "every simulated peer should be registered and none lost: {}",
            status["counts"]
        );
    }
    let _ = mesh.coordinator.kill();
    Ok(Figures {
        cpu_percent: 100.0 * (cpu1 - cpu0) / wall,
        rss_mib: rss as f64 / 1024.0,
        hwm_mib: hwm as f64 / 1024.0,
        requests: req1 - req0,
        errors: errors.load(Ordering::Relaxed),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    cmesh_common::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "coordinator-load: {} peers, one request each every {:?}, measured over {:?}; {}",
        args.peers,
        args.heartbeat,
        args.measure,
        machine()
    );
    let base = rt.block_on(run_case(&args, Load::Healthz))?;
    let beats = rt.block_on(run_case(&args, Load::Heartbeats))?;
    let live = rt.block_on(run_case(&args, Load::Live))?;
    println!();
    println!("| case | requests/s | coordinator CPU | RSS | peak RSS | errors |");
    println!("|---|---|---|---|---|---|");
    for (name, f) in [
        ("baseline: GET /healthz", &base),
        ("heartbeats", &beats),
        (
            "heartbeats with live counters, /v1/live and /metrics each 1/s",
            &live,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.1}% of a core | {:.1} MiB | {:.1} MiB | {} |",
            f.requests as f64 / args.measure.as_secs_f64(),
            f.cpu_percent,
            f.rss_mib,
            f.hwm_mib,
            f.errors
        );
    }
    println!();
    println!(
        "ratio CPU (heartbeats / healthz): {:.2}x",
        beats.cpu_percent / base.cpu_percent.max(0.01)
    );
    println!(
        "ratio RSS (heartbeats / healthz): {:.2}x",
        beats.rss_mib / base.rss_mib.max(0.01)
    );
    println!(
        "ratio CPU (live / heartbeats): {:.2}x",
        live.cpu_percent / beats.cpu_percent.max(0.01)
    );
    println!(
        "ratio peak RSS (live / heartbeats): {:.2}x",
        live.hwm_mib / beats.hwm_mib.max(0.01)
    );
    let met = live.cpu_percent < 10.0 && live.hwm_mib < 64.0;
    println!(
        "target: under 10% of a core and under 64 MiB: {}",
        if met { "met" } else { "NOT met" }
    );
    Ok(())
}
