//! The launcher's command line: the flags every command takes, one subcommand per
//! command, and the dispatch. Each command's flags and code are `cmd/<name>.rs`'s
//! ([`crate::cmd`]).
//!
//! The doc comments on the commands are their `--help` text, written for a terminal
//! (`runs/<run-id>`, a plan's `[[fault]]`), not for rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use crate::cmd;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// cmesh launcher: run a mesh of peer containers, degrade the network between them,
/// and merge every peer's results into numbers you can compare run to run.
///
/// The usual loop:
///
///   launcher spawn --peers 50 --config configs/smoke.toml
///   launcher status            # containers and peers by state
///   launcher wait              # until every peer has exited
///   launcher extract           # every container's report, logs and state, verified
///   launcher analyze runs/<run-id>
///   launcher down
///
/// or all of it in one go: launcher run --peers 10 --duration 15s
///
/// Across machines: list them in a hosts.toml (docs/hosts.md), check them with
/// `launcher hosts check --hosts hosts.toml`, and pass --hosts to spawn or run. To try
/// it on one machine: `launcher lab up --hosts 3`, then
/// `launcher run --hosts keys/lab/hosts.toml --peers 30`.
///
/// Commands after spawn default to the newest run (runs/latest); pass --run to pick one;
/// `launcher ls` lists the runs.
///
/// Messages go to stderr: -q for warnings and errors only, -v (or -vv) for more;
/// RUST_LOG (e.g. RUST_LOG=cmesh_launcher=debug) overrides both. Results go to stdout,
/// as JSON with --json. This machine's engine is DOCKER_HOST (unix:// or tcp://) or
/// /var/run/docker.sock; other hosts come from hosts.toml.
///
/// Exit codes: 0 ok, 1 the run or command failed (a lost host too), 2 bad input
/// (nothing was changed).
#[derive(Debug, Parser)]
#[command(name = "launcher", version, verbatim_doc_comment)]
pub struct Cli {
    /// Where run directories live.
    #[arg(long, global = true, default_value = "runs", env = "CMESH_RUNS_DIR")]
    pub runs_dir: PathBuf,
    /// More messages (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors, and no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the peer and coordinator images (a no-op when nothing changed).
    #[command(subcommand)]
    Images(cmd::images::Command),
    /// Start a run: network, coordinator and N named peer containers.
    Spawn(cmd::spawn::Args),
    /// List the runs: how far each got (spawned, extracted, analyzed) and its numbers.
    Ls(cmd::ls::Args),
    /// Show a run's containers by state, and its peers as the coordinator sees them.
    ///
    /// Answers within --host-timeout with what the hosts that answered say; a host that
    /// has not answered by then (busy or frozen) is listed as such, and the exit code is 1.
    Status(cmd::status::Args),
    /// Show container logs: one peer's (peer-0003), a glob's ('peer-00[0-4]*'), or all,
    /// prefixed by name when more than one.
    ///
    /// Reads at most 16 containers at a time per host, so it suits a run of any size.
    /// With -f it asks again every second; a host that stops answering is said, left
    /// out, and tried again every 10 s.
    Logs(cmd::logs::Args),
    /// Watch a run live: per host, peers running, linked and lost, records a second,
    /// coverage so far, latency and the live verdict; the faults acting now; warnings.
    ///
    /// Refreshes every second on a terminal; elsewhere prints one line a second
    /// (`--json`: one JSON object a second, as `GET /v1/live` answers). Ends with the run.
    Watch(cmd::watch::Args),
    /// Wait until every peer has exited; exit 1 if any failed.
    Wait(cmd::wait::Args),
    /// Copy every container's report, logs and state into runs/<run>/extract.
    ///
    /// Each host's reports come as one archive, streamed to disk and split per container
    /// as it arrives. What a container wrote beyond the --max-*-mib caps is cut there
    /// (a file keeps its first bytes) and the container is marked `truncated` in
    /// extract.json with the reason; extract again with higher caps to get more. Running
    /// it again skips what was extracted and still verifies.
    Extract(cmd::extract::Args),
    /// Merge the extracted reports: coverage, latency percentiles, a table per peer.
    Analyze(cmd::analyze::Args),
    /// Write analysis/report.html again from the extracted reports, and print its path.
    ///
    /// One self-contained page: the measurement-quality verdict, the key figures, the
    /// plots (latency CDF, latency over time with every fault window shaded, records and
    /// bytes per second, resync, coverage, host pairs) and a sortable table of the
    /// peers. It refers to nothing outside itself, so it opens with the network off.
    /// `launcher analyze` and `launcher run` write it too.
    ///
    ///   launcher report --run r1204-232334 --open
    Report(cmd::report::Args),
    /// Compare runs, metric by metric: each side, the change, a 95% interval (Student's t
    /// over runs, the bootstrap over peers) and a verdict (better, worse, no significant
    /// difference).
    ///
    ///   launcher compare r1204-101500 r1204-102200
    ///   launcher compare --baseline A1,A2,A3 --candidate B1,B2,B3 --fail-on 'p99>+10%'
    ///
    /// With several runs a side, each run is a sample (trust this one: single runs of a
    /// distributed system mislead); with one run a side, its peers are. Metrics: p50, p99,
    /// max (latency), coverage, resync_p50, availability, bytes_per_record,
    /// cpu_per_record. A group's name (`launcher run --repeat N --group NAME`) stands for
    /// its runs. Exit 1 when a --fail-on gate fails: for CI.
    Compare(cmd::compare::Args),
    /// Send a run's numbers to InfluxDB 1.x, as line protocol (also kept in
    /// analysis/metrics.lp): the run, each peer (tagged by run, host and peer), each
    /// window and each fault. configs/grafana/cmesh.json is a dashboard for them.
    ///
    ///   launcher export --influx http://localhost:8086 --db cmesh --run r1204-232334
    Export(cmd::export::Args),
    /// Inject a fault into a running run, now.
    ///
    ///   launcher chaos delay --peers 'peer-00[0-4]*' --ms 200 --jitter 20 --for 60s
    ///   launcher chaos delay --peers 1-5 --to 6-10 --ms 80 --for 30s
    ///   launcher chaos loss --random 20% --seed 3 --percent 10 --for 30s
    ///   launcher chaos partition --groups a:1-50 b:51-100 --for 30s
    ///   launcher chaos kill --random 10% --seed 7
    ///   launcher chaos pause --peers 3 --for 10s
    ///   launcher chaos restart --peers 7
    ///
    /// Peers apply shaping and partitions to themselves (within about a second), as for a
    /// plan's [[fault]]; kill, pause and restart are done through the Docker API. Every action is
    /// recorded in the coordinator's timeline and runs/<id>/chaos.jsonl, and `analyze`
    /// lists it under Faults in summary.md. Peers are numbered from 1, as in container
    /// names. Exit 2 (nothing done) for a bad action or a run that is not running.
    #[command(verbatim_doc_comment)]
    Chaos(cmd::chaos::Args),
    /// Remove a run's containers and network (refused until extracted, unless --force).
    Down(cmd::down::Args),
    /// Spawn, wait, extract, analyze and down in one go; print the summary.
    Run(cmd::run::Args),
    /// Check the hosts of a hosts.toml.
    #[command(subcommand)]
    Hosts(cmd::hosts::Command),
    /// Manage the swarm that joins the hosts (spawn joins it by itself).
    #[command(subcommand)]
    Swarm(cmd::swarm::Command),
    /// Manage the image registry that spawn starts on the manager (--image-transport
    /// registry).
    #[command(subcommand)]
    Registry(cmd::registry::Command),
    /// A local multi-host lab: Docker hosts in containers, reached over SSH.
    #[command(subcommand)]
    Lab(cmd::lab::Command),
    /// Print a shell completion script, e.g. `launcher completions bash >
    /// /etc/bash_completion.d/launcher`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `launcher man | man -l -`.
    Man,
}

/// The command line, parsed, and the command's name (for messages). Exits 2 with
/// clap's message on a bad one, as `Cli::parse` does.
pub fn parse() -> (Cli, String) {
    let matches = Cli::command().get_matches();
    let name = matches.subcommand_name().unwrap_or("launcher").to_owned();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli, name),
        Err(e) => e.exit(),
    }
}

/// Runs a command; the caller maps errors to exit codes. A SIGINT or SIGTERM stops it
/// where it is (`wait`, `chaos`, `run`, `logs` and `watch` handle it themselves: the
/// first undo their pauses).
pub async fn run(cli: Cli, name: &str) -> anyhow::Result<i32> {
    let handles_signals = matches!(
        cli.command,
        Command::Wait(_)
            | Command::Chaos(_)
            | Command::Run(_)
            | Command::Logs(_)
            | Command::Watch(_)
    );
    if handles_signals {
        return dispatch(cli).await;
    }
    crate::tasks::until_interrupted(name, dispatch(cli)).await
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let runs = cli.runs_dir.as_path();
    match cli.command {
        Command::Images(c) => cmd::images::main(c).await,
        Command::Spawn(a) => cmd::spawn::main(runs, a).await,
        Command::Ls(a) => cmd::ls::main(runs, a).await,
        Command::Status(a) => cmd::status::main(runs, a).await,
        Command::Logs(a) => cmd::logs::main(runs, a).await,
        Command::Watch(a) => cmd::watch::main(runs, a).await,
        Command::Wait(a) => cmd::wait::main(runs, a).await,
        Command::Extract(a) => cmd::extract::main(runs, a).await,
        Command::Analyze(a) => cmd::analyze::main(runs, a).await,
        Command::Report(a) => cmd::report::main(runs, a).await,
        Command::Compare(a) => cmd::compare::main(runs, a).await,
        Command::Export(a) => cmd::export::main(runs, a).await,
        Command::Chaos(a) => cmd::chaos::main(runs, a).await,
        Command::Down(a) => cmd::down::main(runs, a).await,
        Command::Run(a) => cmd::run::main(runs, a).await,
        Command::Hosts(c) => cmd::hosts::main(c).await,
        Command::Swarm(c) => cmd::swarm::main(c).await,
        Command::Registry(c) => cmd::registry::main(c).await,
        Command::Lab(c) => cmd::lab::main(c).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "launcher",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
