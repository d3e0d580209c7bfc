//! The peer's command line.

use clap::Parser;
use cmesh_common::parse;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A cmesh peer: the workload under test.
///
/// It registers with the coordinator, waits for the plan, connects to its planned
/// neighbours, writes timestamped records at the planned rate, measures the latency of
/// every record it receives, and writes report.json and events.jsonl to --output.
/// Exit codes: 0 ok, 1 the run failed (the report says why), 2 bad input.
///
/// Example: peer --name peer-0001 --coordinator 127.0.0.1:7400 --listen 127.0.0.1:0
/// --output out/peer-0001 --token-file token
#[derive(Debug, Parser)]
#[command(name = "peer", version)]
pub struct Args {
    /// This peer's name (1 to 64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    pub name: String,
    /// The coordinator's HOST:PORT.
    #[arg(long, value_parser = parse::host_port)]
    pub coordinator: String,
    /// Where to accept neighbours (IP:PORT; port 0 picks a free port).
    #[arg(long, value_parser = parse::socket_addr, default_value = "0.0.0.0:7500")]
    pub listen: SocketAddr,
    /// The HOST:PORT neighbours dial [default: the listen IP, or the hostname when
    /// listening on 0.0.0.0, with the bound port].
    #[arg(long, value_parser = parse::host_port)]
    pub advertise: Option<String>,
    /// The Docker host this peer runs on (the launcher sets it). Reported, so analysis
    /// can correct latency between hosts for their clock offsets.
    #[arg(long)]
    pub host: Option<String>,
    /// Directory for report.json and events.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// File holding the run token (first line).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Keep retrying an unreachable coordinator this long before failing.
    #[arg(long, value_parser = parse::duration, default_value = "60s")]
    pub coordinator_timeout: Duration,
    /// How often to checkpoint what was measured so far into `checkpoint.json` (a
    /// report marked partial), so a peer that dies leaves its data; 0s: never. On a host
    /// of more than 200 peers, longer: its peers take at most 40 a second together.
    #[arg(long, value_parser = parse::duration, default_value = "5s")]
    pub checkpoint_interval: Duration,
    /// Clock exchanges with the coordinator at the start and at the end of the run (the
    /// offset is what they all agree on; more samples, a tighter bound); 0: none.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub clock_samples: u32,
    /// Memory for the window of recent records, over all origins (bytes).
    #[arg(long, default_value_t = 2 << 20)]
    pub window_bytes: usize,
    /// The sync backend: mesh (built in), adapter (any app, driven by the program
    /// --adapter names; docs/apps.md), or ditto (a Ditto small peer; only in a peer
    /// built with the `ditto` feature, see docs/ditto.md).
    #[arg(long, default_value = "mesh")]
    pub backend: String,
    /// For --backend adapter: the adapter's command line, run with `sh -c` in the app's
    /// directory (OUTPUT/app). It speaks the protocol of docs/apps.md on stdin/stdout.
    #[arg(long, value_name = "CMD")]
    pub adapter: Option<String>,
    /// How long the adapter may take to answer `init` with `ready` (the app's start).
    #[arg(long, value_parser = parse::duration, default_value = "60s")]
    pub adapter_ready_timeout: Duration,
    /// How long the adapter may take to answer a `write` with `written`, or `stop`
    /// with `stopped`.
    #[arg(long, value_parser = parse::duration, default_value = "30s")]
    pub adapter_answer_timeout: Duration,
    /// A secret file for the backend: for ditto, `license_token = …` and
    /// `database_id = …` lines. The launcher copies it in; never put it in the
    /// environment.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
}

/// The address to advertise: the flag, else the listen IP, else (0.0.0.0) the hostname.
pub fn advertise_addr(flag: Option<&str>, bound: SocketAddr) -> String {
    if let Some(a) = flag {
        return a.to_owned();
    }
    if bound.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_flag_then_ip_then_hostname() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(advertise_addr(Some("h:1"), bound), "h:1");
        assert_eq!(advertise_addr(None, bound), "127.0.0.1:4000");
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let a = advertise_addr(None, any);
        assert!(a.ends_with(":4000") && !a.starts_with("0.0.0.0"), "{a}");
    }
}
