//! What each delivered record costs the peers, flood against plumtree (target: plumtree's
//! CPU per delivered record at most 0.4x flood's, coverage 1.0 in both).
//!
//! Runs, in one go and alternating, the same plan with each dissemination: 50 peers as
//! processes on loopback (a coordinator and the peers, `cmesh_testkit::Mesh`), graph
//! random-regular of degree 4, 256-byte records. Each peer's report gives its own CPU
//! time (`cpu.process_us`), its bytes on the wire (every link, every frame) and its
//! deliveries and duplicates. Per case it prints:
//!
//! - CPU µs per delivered record: all peers' CPU time / records delivered;
//! - bytes on the wire per delivered record;
//! - duplicates / delivered;
//! - coverage (origin → reader pairs delivered) and latency p50 and p99.
//!
//! The CPU covers each peer's whole life (start-up, registration and the clock exchanges
//! too); both modes pay the same for those, so the ratio understates the difference.
//!
//! cargo run --release -p cmesh-bench --bin peer-efficiency [-- --duration 30s --rounds 2]

use anyhow::{ensure, Result};
use clap::Parser;
use cmesh_bench::{machine, median};
use cmesh_testkit::Mesh;
use serde_json::Value;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// How long peers write in each case.
    #[arg(long, default_value = "30s", value_parser = cmesh_common::parse::duration)]
    duration: Duration,
    /// Peers.
    #[arg(long, default_value_t = 50)]
    peers: usize,
    /// Pause between a peer's writes, ms (the demo's).
    #[arg(long, default_value = "200..500")]
    write_interval: String,
    /// Runs of each mode, alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Run only this mode (no ratio): for profiling one.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Figures {
    cpu_us: u64,
    bytes: u64,
    delivered: u64,
    duplicates: u64,
    pairs: u64,
    pairs_expected: u64,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    /// The trees' upkeep (plumtree): prunes, grafts and announcement frames.
    prunes: u64,
    grafts: u64,
    announcements: u64,
}

impl Figures {
    fn cpu_per_record(&self) -> f64 {
        self.cpu_us as f64 / self.delivered.max(1) as f64
    }
    fn bytes_per_record(&self) -> f64 {
        self.bytes as f64 / self.delivered.max(1) as f64
    }
    fn duplicates_per_record(&self) -> f64 {
        self.duplicates as f64 / self.delivered.max(1) as f64
    }
    fn coverage(&self) -> f64 {
        self.pairs as f64 / self.pairs_expected.max(1) as f64
    }
}

fn run_case(args: &Args, mode: &str) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let secs = format!("{}s", args.duration.as_secs());
    let mut mesh = Mesh::start(
        dir.path(),
        args.peers,
        &[
            "--graph",
            "random-regular",
            "--degree",
            "4",
            "--duration",
            &secs,
            "--write-interval",
            &args.write_interval,
            "--dissemination",
            mode,
            "--linger",
            "0s",
        ],
    )?;
    let (codes, _) = mesh.wait(args.duration + Duration::from_secs(120))?;
    for (name, code) in &codes {
        ensure!(*code == Some(0), "{mode}: {name} exited {code:?}");
    }
    let mut f = Figures {
        pairs_expected: (args.peers * (args.peers - 1)) as u64,
        ..Figures::default()
    };
    for (name, _) in &mesh.peers {
        let r: Value = mesh.report(name)?;
        ensure!(
            r["dissemination"]["mode"] == mode,
            "{name} did not run {mode}: {}",
            r["dissemination"]
        );
        f.cpu_us += r["cpu"]["process_us"].as_u64().unwrap_or(0);
        f.delivered += r["records_received"].as_u64().unwrap_or(0);
        f.duplicates += r["records_duplicate"].as_u64().unwrap_or(0);
        f.pairs += r["distinct_origins"].as_u64().unwrap_or(0);
        f.bytes += r["neighbours"]
            .as_array()
            .map(|ns| ns.iter().filter_map(|n| n["bytes_sent"].as_u64()).sum())
            .unwrap_or(0);
        let d = &r["dissemination"];
        f.prunes += d["prunes_sent"].as_u64().unwrap_or(0);
        f.grafts += d["grafts_sent"].as_u64().unwrap_or(0);
        f.announcements += d["announcements_sent"].as_u64().unwrap_or(0);
        f.p50_us
            .push(r["message_latency"]["p50_us"].as_f64().unwrap_or(0.0));
        f.p99_us
            .push(r["message_latency"]["p99_us"].as_f64().unwrap_or(0.0));
    }
    Ok(f)
}

fn add(into: &mut Figures, f: Figures) {
    into.cpu_us += f.cpu_us;
    into.bytes += f.bytes;
    into.delivered += f.delivered;
    into.duplicates += f.duplicates;
    into.pairs += f.pairs;
    into.pairs_expected += f.pairs_expected;
    into.prunes += f.prunes;
    into.grafts += f.grafts;
    into.announcements += f.announcements;
    into.p50_us.extend(f.p50_us);
    into.p99_us.extend(f.p99_us);
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "peer-efficiency: {} peers, random-regular degree 4, {}s of writes every {} ms, 256-byte records, {} rounds; {}",
        args.peers,
        args.duration.as_secs(),
        args.write_interval,
        args.rounds,
        machine()
    );
    let modes = ["flood", "plumtree"];
    let mut totals = [Figures::default(), Figures::default()];
    for round in 1..=args.rounds {
        for (i, mode) in modes.iter().enumerate() {
            if args.only.as_deref().is_some_and(|o| o != *mode) {
                continue;
            }
            let f = run_case(&args, mode)?;
            println!(
                "round {round} {mode}: {:.1} µs CPU, {:.0} B, {:.2} duplicates per delivered record; coverage {:.4}; {} prunes, {} grafts, {} announcements",
                f.cpu_per_record(),
                f.bytes_per_record(),
                f.duplicates_per_record(),
                f.coverage(),
                f.prunes,
                f.grafts,
                f.announcements
            );
            add(&mut totals[i], f);
        }
    }
    println!();
    println!("| mode | CPU per delivered record | bytes on the wire per delivered record | duplicates / delivered | coverage | latency p50 (median peer) | p99 (median peer) |");
    println!("|---|---|---|---|---|---|---|");
    for (mode, f) in modes.iter().zip(totals.iter_mut()) {
        println!(
            "| {mode} | {:.1} µs | {:.0} B | {:.2} | {:.4} | {:.2} ms | {:.2} ms |",
            f.cpu_per_record(),
            f.bytes_per_record(),
            f.duplicates_per_record(),
            f.coverage(),
            median(&mut f.p50_us) / 1000.0,
            median(&mut f.p99_us) / 1000.0,
        );
    }
    if args.only.is_some() {
        return Ok(());
    }
    let [flood, tree] = &totals;
    let cpu = tree.cpu_per_record() / flood.cpu_per_record();
    println!();
    println!(
        "ratios (plumtree / flood): CPU {cpu:.2}x, bytes {:.2}x, duplicates {:.2}x",
        tree.bytes_per_record() / flood.bytes_per_record(),
        tree.duplicates_per_record() / flood.duplicates_per_record().max(f64::MIN_POSITIVE)
    );
    let met = cpu <= 0.4 && flood.coverage() == 1.0 && tree.coverage() == 1.0;
    println!(
        "target: plumtree CPU per delivered record at most 0.4x flood's, coverage 1.0 in both: {}",
        if met { "met" } else { "NOT met" }
    );
    Ok(())
}
