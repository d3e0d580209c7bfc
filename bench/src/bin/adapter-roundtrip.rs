//! What the adapter protocol adds to latency: `write` → `written` → `seen` through a null
//! adapter, against the built-in mesh on the same plan (target: at most 100 µs added to
//! the p50).
//!
//! Runs, alternating, the same plan on each backend: peers as processes on loopback (a
//! coordinator and the peers, `cmesh_testkit::Mesh`), a complete graph, each peer writing
//! 100 records a second. The null adapter is this program run with `--null-adapter`: an
//! app that does nothing but pass each record's id to its neighbours over TCP, one line
//! each, so what it adds is the protocol's own cost (two pipes, JSON both ways, the
//! adapter's process). Prints per round the p50 and p99 of the median peer, and the
//! difference of the medians (adapter − mesh).
//!
//! cargo run --release -p cmesh-bench --bin adapter-roundtrip [-- --duration 20s --rounds 3]

use anyhow::{ensure, Result};
use clap::Parser;
use cmesh_bench::{machine, median};
use cmesh_testkit::Mesh;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// How long peers write in each case.
    #[arg(long, default_value = "20s", value_parser = cmesh_common::parse::duration)]
    duration: Duration,
    /// Peers.
    #[arg(long, default_value_t = 4)]
    peers: usize,
    /// Runs of each backend, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Be the null adapter (the peer starts this program with it).
    #[arg(long, hide = true)]
    null_adapter: bool,
}

/// Per case: each peer's p50 and p99, µs.
fn run_case(args: &Args, adapter: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let dir = tempfile::tempdir()?;
    let secs = format!("{}s", args.duration.as_secs());
    let me = std::env::current_exe()?;
    let command = format!("{} --null-adapter", me.display());
    let peer_flags: Vec<&str> = if adapter {
        vec!["--backend", "adapter", "--adapter", &command]
    } else {
        vec![]
    };
    let mut mesh = Mesh::start_with(
        dir.path(),
        args.peers,
        &[
            "--graph",
            "complete",
            "--duration",
            &secs,
            "--write-interval",
            "10..10",
            "--linger",
            "0s",
        ],
        &peer_flags,
    )?;
    let (codes, _) = mesh.wait(args.duration + Duration::from_secs(120))?;
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for (name, code) in &codes {
        ensure!(*code == Some(0), "{name} exited {code:?}");
        let r = mesh.report(name)?;
        ensure!(r["caught_up"] == true, "{name} did not catch up");
        p50.push(r["message_latency"]["p50_us"].as_f64().unwrap_or(0.0));
        p99.push(r["message_latency"]["p99_us"].as_f64().unwrap_or(0.0));
    }
    Ok((p50, p99))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.null_adapter {
        return null_adapter::run();
    }
    println!(
        "adapter-roundtrip: {} peers, complete graph, {}s of writes at 100 a second per peer, {} rounds; {}",
        args.peers,
        args.duration.as_secs(),
        args.rounds,
        machine()
    );
    let (mut mesh50, mut adapter50, mut mesh99, mut adapter99) = (vec![], vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        for adapter in [false, true] {
            let (mut p50, mut p99) = run_case(&args, adapter)?;
            let (m50, m99) = (median(&mut p50), median(&mut p99));
            let name = if adapter { "adapter" } else { "mesh" };
            println!("round {round} {name}: p50 {m50:.0} µs, p99 {m99:.0} µs (median peer)");
            if adapter {
                adapter50.push(m50);
                adapter99.push(m99);
            } else {
                mesh50.push(m50);
                mesh99.push(m99);
            }
        }
    }
    let (m50, a50) = (median(&mut mesh50), median(&mut adapter50));
    let (m99, a99) = (median(&mut mesh99), median(&mut adapter99));
    println!();
    println!("| backend | latency p50 | p99 |");
    println!("|---|---|---|");
    println!("| mesh (built in) | {m50:.0} µs | {m99:.0} µs |");
    println!("| adapter (null) | {a50:.0} µs | {a99:.0} µs |");
    println!();
    println!(
        "added by the adapter protocol: p50 {:+.0} µs ({:.2}x), p99 {:+.0} µs; target p50 at most +100 µs: {}",
        a50 - m50,
        a50 / m50.max(1.0),
        a99 - m99,
        if a50 - m50 <= 100.0 { "met" } else { "not met" }
    );
    Ok(())
}

/// The null adapter: passes each written record's id to every neighbour over TCP.
mod null_adapter {
    use cmesh_common::adapter::{FromAdapter, ToAdapter};
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    type Out = Arc<Mutex<std::io::Stdout>>;
    type Links = Arc<Mutex<Vec<TcpStream>>>;

    fn send(out: &Out, message: &FromAdapter) {
        let mut line = serde_json::to_vec(message).expect("serializes");
        line.push(b'\n');
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(&line);
        let _ = out.flush();
    }

    fn follow(stream: TcpStream, out: Out, links: Links) {
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        links.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Ok(id) = line.parse() {
                    send(&out, &FromAdapter::Seen { id, at_us: None });
                }
            }
        });
    }

    pub fn run() -> anyhow::Result<()> {
        let out: Out = Arc::new(Mutex::new(std::io::stdout()));
        let links: Links = Arc::default();
        let mut input = std::io::stdin().lock().lines();
        let Some(Ok(first)) = input.next() else {
            return Ok(());
        };
        let ToAdapter::Init(init) = serde_json::from_str(&first)? else {
            anyhow::bail!("the first message was not init");
        };
        let listener = TcpListener::bind(&init.listen)?;
        {
            let (out, links) = (out.clone(), links.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = stream.set_nodelay(true);
                    follow(stream, out.clone(), links.clone());
                }
            });
        }
        for n in init.neighbours.iter().filter(|n| n.index > init.index) {
            let stream = loop {
                match TcpStream::connect(&n.addr) {
                    Ok(s) => break s,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            };
            stream.set_nodelay(true)?;
            follow(stream, out.clone(), links.clone());
        }
        send(&out, &FromAdapter::Ready);
        for line in input {
            match serde_json::from_str::<ToAdapter>(&line?)? {
                ToAdapter::Write { id, .. } => {
                    let line = format!("{id}\n");
                    for link in links.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
                        let _ = link.write_all(line.as_bytes());
                    }
                    send(&out, &FromAdapter::Written { id });
                }
                ToAdapter::Stop => break,
                _ => {}
            }
        }
        send(&out, &FromAdapter::Stopped);
        Ok(())
    }
}
