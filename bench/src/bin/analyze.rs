//! `launcher analyze` on a large run: its wall time and peak memory, with report.html,
//! the CSVs and junit.xml written. Target: 1000 peers × 300 windows in at most 5 s and
//! 256 MiB.
//!
//! The run is written as extract leaves it (a manifest, extract.json, one gzipped
//! report archive per peer), untimed: 4 hosts, every peer hearing every other, 300
//! windows of 1 s with latency split by origin host (the heaviest shape a report has),
//! scheduling lag, interface bytes and in-band clock estimates. Then `launcher analyze`
//! runs on it as a user runs it; its peak RSS is sampled from /proc. The baseline is the
//! same run at a tenth of the peers, in the same process: the ratio says how the cost
//! grows with the peers (10x is linear).
//!
//! cargo run --release -p cmesh-bench --bin analyze [-- --peers 1000 --windows 300]

use anyhow::{Context, Result};
use clap::Parser;
use cmesh_bench::machine;
use cmesh_common::clock::{ClockEstimate, ClockSync};
use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::{
    InterfaceSeries, LatencyReport, OriginStats, PeerReport, TimeSeries, WindowLatency,
    WritingWindow,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    #[arg(long, default_value_t = 300)]
    windows: u32,
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// Only write the run (the target size) into this directory and stop, to profile
    /// `launcher analyze DIR` by hand.
    #[arg(long)]
    write_only: Option<std::path::PathBuf>,
}

const START: u64 = 1_764_000_000_000;

fn host(i: usize, hosts: usize) -> String {
    format!("lab-{}", i % hosts + 1)
}

fn name(i: usize) -> String {
    format!("ba-peer-{:04}", i + 1)
}

/// A coarse window histogram around `base` µs.
fn coarse(base: u64) -> (LatencyHistogram, String) {
    let mut h = LatencyHistogram::coarse();
    for k in 0..20 {
        h.record(base + k * base / 10);
    }
    let text = h.encode();
    (h, text)
}

fn window(i: u32, h: &(LatencyHistogram, String), negative: Option<&str>) -> WindowLatency {
    let s = h.0.summary();
    WindowLatency {
        window: i,
        count: s.count,
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        max_us: s.max_us,
        histogram: h.1.clone(),
        negative_histogram: negative.map(str::to_owned),
    }
}

/// Peer `i`'s report: every other peer heard, `windows` windows of everything.
fn report(i: usize, a: &Args) -> PeerReport {
    let mut r = PeerReport::new(&name(i), "mesh", START);
    r.run_id = Some("bench".into());
    r.index = Some(i as u32 + 1);
    r.host = Some(host(i, a.hosts));
    r.finished_at_unix_ms = START + u64::from(a.windows) * 1000;
    r.writing = Some(WritingWindow {
        start_unix_ms: START,
        end_unix_ms: START + u64::from(a.windows) * 1000,
    });
    let mut full = LatencyHistogram::new();
    for k in 0..400u64 {
        full.record(300 + k * 37 + i as u64 % 50);
    }
    r.message_latency = LatencyReport {
        summary: full.summary(),
        negative_samples: 0,
        histogram: full.encode(),
        negative_histogram: None,
    };
    for h in 0..a.hosts {
        r.latency_by_origin_host
            .insert(format!("lab-{}", h + 1), r.message_latency.clone());
    }
    for o in (0..a.peers).filter(|o| *o != i) {
        r.origins.insert(
            name(o),
            OriginStats {
                received: 30,
                produced: Some(30),
            },
        );
    }
    r.records_produced = 30;
    r.records_received = 30 * (a.peers as u64 - 1);
    r.distinct_origins = a.peers - 1;
    r.expected_origins = a.peers - 1;
    r.caught_up = true;
    let est = |at| ClockEstimate {
        at_unix_ms: at,
        clock_offset_us: 0,
        clock_uncertainty_us: 150,
        samples: 32,
        agreeing: 32,
        min_rtt_us: 300,
    };
    r.clock_sync = Some(ClockSync {
        start: est(START),
        end: Some(est(START + u64::from(a.windows) * 1000)),
    });
    let lat = coarse(400 + i as u64 % 7 * 50);
    let neg = coarse(20).1;
    let lag = coarse(60);
    let n = a.windows;
    r.time_series = Some(TimeSeries {
        start_unix_ms: START,
        window_ms: 1000,
        latency: (0..n).map(|w| window(w, &lat, None)).collect(),
        latency_by_origin_host: (0..a.hosts)
            .map(|h| {
                (
                    format!("lab-{}", h + 1),
                    (0..n).map(|w| window(w, &lat, Some(&neg))).collect(),
                )
            })
            .collect(),
        received: vec![100; n as usize],
        interfaces: BTreeMap::from([(
            "eth0".to_string(),
            InterfaceSeries {
                rx_bytes: vec![40_000; n as usize],
                tx_bytes: vec![40_000; n as usize],
            },
        )]),
        scheduling_lag: (0..n).map(|w| window(w, &lag, None)).collect(),
        cpu: None,
    });
    r
}

/// Writes the run as extract leaves it; returns the bytes of the reports, unpacked.
fn write_run(dir: &Path, a: &Args) -> Result<u64> {
    let hosts: Vec<_> = (0..a.hosts)
        .map(|h| json!({"name": format!("lab-{}", h + 1), "docker_socket": "/var/run/docker.sock", "role": if h == 0 {"manager"} else {"worker"}, "capacity": 1000}))
        .collect();
    let peers: Vec<_> = (0..a.peers)
        .map(|i| json!({"name": name(i), "host": host(i, a.hosts), "index": i + 1}))
        .collect();
    let manifest = json!({
        "schema": "cmesh.run-manifest", "schema_version": 1, "run_id": "bench",
        "created_at": "2026-12-04T20:00:00Z",
        "hosts": hosts,
        "network": {"name": "cmesh-bench", "id": "x", "subnet": "10.100.0.0/16"},
        "images": {"base": {"tag": "b:1", "id": "b"}, "peer": {"tag": "p:1", "id": "p"}, "coordinator": {"tag": "c:1", "id": "c"}},
        "spec": {"peers": a.peers, "duration_ms": u64::from(a.windows) * 1000},
        "coordinator": {"name": "bench-coordinator", "host": "lab-1", "index": 0},
        "peers": peers,
    });
    std::fs::create_dir_all(dir.join("extract"))?;
    std::fs::write(dir.join("manifest.json"), manifest.to_string())?;
    let mut containers = Vec::new();
    let mut bytes_total = 0u64;
    for i in 0..a.peers {
        let bytes = serde_json::to_vec(&report(i, a))?;
        bytes_total += bytes.len() as u64;
        let at = dir.join("extract").join(host(i, a.hosts)).join(name(i));
        std::fs::create_dir_all(&at)?;
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(at.join("report.tar.gz"))?,
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "report/report.json", bytes.as_slice())?;
        tar.into_inner()?.finish()?.flush()?;
        containers.push(json!({
            "name": name(i), "host": host(i, a.hosts), "role": "peer", "index": i + 1,
            "state": "exited", "exit_code": 0, "oom_killed": false,
            "report": "complete", "reason": null, "files": {}
        }));
    }
    let index = json!({
        "schema": "cmesh.extract-index", "schema_version": 1, "run_id": "bench",
        "extracted_at": "2026-12-04T20:10:00Z", "containers": containers, "errors": {}
    });
    std::fs::write(dir.join("extract/extract.json"), index.to_string())?;
    Ok(bytes_total)
}

/// `launcher analyze DIR`: its wall time and peak RSS (bytes).
fn analyze(dir: &Path) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let child = Command::new(cmesh_testkit::binary("launcher"))
        .arg("-q")
        .arg("analyze")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        // VmHWM only grows until the process is reaped and the file goes away.
        while let Ok(text) = std::fs::read_to_string(&status) {
            match text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                Some(kib) => peak = peak.max(kib * 1024),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    });
    let out = child.wait_with_output()?;
    let took = started.elapsed();
    let peak = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    // Exit 0: every peer ok. Anything else means the fixture is wrong.
    anyhow::ensure!(
        out.status.success(),
        "launcher analyze {} exited {}: {}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "summary.json",
        "report.html",
        "peers.csv",
        "windows.csv",
        "junit.xml",
    ] {
        std::fs::metadata(dir.join("analysis").join(f))
            .with_context(|| format!("analyze wrote no {f}"))?;
    }
    Ok((took, peak))
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "analyze: {} peers × {} windows on {} hosts; {}",
        args.peers,
        args.windows,
        args.hosts,
        machine()
    );
    if let Some(dir) = &args.write_only {
        let raw = write_run(dir, &args)?;
        println!(
            "wrote {} ({} bytes of reports, unpacked)",
            dir.display(),
            raw
        );
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let base_args = Args {
        peers: (args.peers / 10).max(2),
        write_only: None,
        ..args
    };
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut rows = Vec::new();
    for (label, a) in [("baseline", &base_args), ("target", &args)] {
        let dir = work.path().join(label);
        let raw = write_run(&dir, a)?;
        let html = {
            // The best of two runs: the first also warms the page cache.
            let (t1, m1) = analyze(&dir)?;
            let (t2, m2) = analyze(&dir)?;
            (t1.min(t2), m1.max(m2))
        };
        let size = std::fs::metadata(dir.join("analysis/report.html"))?.len();
        println!(
            "{label}: {} peers, reports {:.0} MiB unpacked: analyze {:.2} s, peak RSS {:.0} MiB, report.html {:.0} KiB",
            a.peers,
            mib(raw),
            html.0.as_secs_f64(),
            mib(html.1),
            size as f64 / 1024.0
        );
        rows.push((a.peers, html));
    }
    let (b, t) = (rows[0].1, rows[1].1);
    println!(
        "ratio {}/{} peers: time {:.1}x, peak RSS {:.1}x",
        rows[1].0,
        rows[0].0,
        t.0.as_secs_f64() / b.0.as_secs_f64(),
        t.1 as f64 / b.1 as f64
    );
    println!(
        "target ≤ 5 s and ≤ 256 MiB: time {}, memory {}",
        if t.0 <= Duration::from_secs(5) {
            "met"
        } else {
            "NOT met"
        },
        if t.1 <= 256 << 20 { "met" } else { "NOT met" }
    );
    Ok(())
}
