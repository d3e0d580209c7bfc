//! The launcher's command line, and what each command does with it.

use crate::cmd::{down, logs, ls, status, wait, watch};
use crate::engine::distribute::Transport;
use crate::engine::host::Connector;
use crate::engine::{hostcheck, images, lab, network, swarm};
use crate::error::bad_input;
use crate::results::{analyze, archive, extract};
use crate::run::dir::RunDir;
use crate::{hosts, plan_file, spawn};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use cmesh_common::graph::GraphKind;
use cmesh_common::parse;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    Images(ImagesCommand),
    /// Start a run: network, coordinator and N named peer containers.
    Spawn {
        #[command(flatten)]
        args: SpawnArgs,
        /// Print what was spawned as JSON (the run id alone otherwise).
        #[arg(long)]
        json: bool,
    },
    /// List the runs: how far each got (spawned, extracted, analyzed) and its numbers.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a run's containers by state, and its peers as the coordinator sees them.
    ///
    /// Answers within --host-timeout with what the hosts that answered say; a host that
    /// has not answered by then (busy or frozen) is listed as such, and the exit code is 1.
    Status {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to wait for each host (and the coordinator) to answer.
        #[arg(long, value_parser = parse::duration, default_value = "8s")]
        host_timeout: std::time::Duration,
    },
    /// Show container logs: one peer's (peer-0003), a glob's ('peer-00[0-4]*'), or all,
    /// prefixed by name when more than one.
    ///
    /// Reads at most 16 containers at a time per host, so it suits a run of any size.
    /// With -f it asks again every second; a host that stops answering is said, left
    /// out, and tried again every 10 s.
    Logs {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// A peer (peer-0003), a container name, or a glob over either (`*`, `?`,
        /// `[0-4]`; quote it); all containers if left out.
        peer: Option<String>,
        /// Keep following the logs.
        #[arg(short, long)]
        follow: bool,
        /// Only lines from then on: a time ago (10m, 90s) or an RFC 3339 time
        /// (2026-12-07T16:00:00Z).
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        /// How long to wait for each host to answer; one that has not is said and left
        /// out (with -f, tried again every 10 s).
        #[arg(long, value_parser = parse::duration, default_value = "8s")]
        host_timeout: std::time::Duration,
    },
    /// Watch a run live: per host, peers running, linked and lost, records a second,
    /// coverage so far, latency and the live verdict; the faults acting now; warnings.
    ///
    /// Refreshes every second on a terminal; elsewhere prints one line a second
    /// (`--json`: one JSON object a second, as `GET /v1/live` answers). Ends with the run.
    Watch {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// One JSON object a second instead of a screen or lines.
        #[arg(long)]
        json: bool,
        /// How long to wait for each host to answer at the start; one that has not is
        /// shown as such.
        #[arg(long, value_parser = parse::duration, default_value = "8s")]
        host_timeout: std::time::Duration,
    },
    /// Wait until every peer has exited; exit 1 if any failed.
    Wait {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// Give up after this long.
        #[arg(long, value_parser = parse::duration, default_value = "30m")]
        timeout: Duration,
        /// Stop the run as soon as its numbers will be garbage, and exit 1 with the
        /// reason: `isolated` (half the running peers have no link 30 s after the start),
        /// `saturated` (a host saturated for 20 s). Repeat or comma-separate for both.
        #[arg(long, value_enum, value_delimiter = ',')]
        abort_on: Vec<cmesh_common::live::AbortOn>,
        /// Print how every peer ended as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy every container's report, logs and state into runs/<run>/extract.
    ///
    /// Each host's reports come as one archive, streamed to disk and split per container
    /// as it arrives. What a container wrote beyond the --max-*-mib caps is cut there
    /// (a file keeps its first bytes) and the container is marked `truncated` in
    /// extract.json with the reason; extract again with higher caps to get more. Running
    /// it again skips what was extracted and still verifies.
    Extract {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// Containers extracted at once on each host.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[command(flatten)]
        caps: CapsArgs,
        /// Print extract.json's index on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Merge the extracted reports: coverage, latency percentiles, a table per peer.
    Analyze {
        /// The run directory (runs/r1122-031800) or the run's id (r1122-031800)
        /// [default: the newest run].
        dir: Option<PathBuf>,
        /// Print summary.json instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Write analysis/report.html again from the extracted reports, and print its path.
    ///
    /// One self-contained page: the measurement-quality verdict, the key figures, the
    /// plots (latency CDF, latency over time with every fault window shaded, records and
    /// bytes per second, resync, coverage, host pairs) and a sortable table of the
    /// peers. It refers to nothing outside itself, so it opens with the network off.
    /// `launcher analyze` and `launcher run` write it too.
    ///
    ///   launcher report --run r1204-232334 --open
    Report {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// Open it in the desktop's browser ($BROWSER, else xdg-open).
        #[arg(long)]
        open: bool,
    },
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
    Compare {
        /// The baseline run and the candidate run (`launcher ls` lists them).
        #[arg(num_args = 0..=2, value_name = "RUN")]
        runs: Vec<String>,
        /// Baseline runs or groups, comma-separated (instead of the two RUNs).
        #[arg(long, value_name = "RUNS", conflicts_with = "runs")]
        baseline: Option<String>,
        /// Candidate runs or groups, comma-separated.
        #[arg(long, value_name = "RUNS", requires = "baseline")]
        candidate: Option<String>,
        /// Fail (exit 1) when METRIC is significantly worse by more than this, its whole
        /// 95% interval beyond it: METRIC>+N% where a rise is worse (p99>+10%),
        /// METRIC<-N% where a fall is worse (coverage<-1%). Repeatable.
        #[arg(long = "fail-on", value_name = "GATE")]
        fail_on: Vec<cmesh_analysis::compare::Gate>,
        /// Changes smaller than this many percent are no difference, however sure.
        #[arg(long, value_name = "PERCENT", default_value_t = 5.0, value_parser = parse_noise)]
        noise: f64,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
        /// Also write an HTML page: the table, every run's latency CDF and p50 over
        /// time overlaid (self-contained, like report.html).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Send a run's numbers to InfluxDB 1.x, as line protocol (also kept in
    /// analysis/metrics.lp): the run, each peer (tagged by run, host and peer), each
    /// window and each fault. configs/grafana/cmesh.json is a dashboard for them.
    ///
    ///   launcher export --influx http://localhost:8086 --db cmesh --run r1204-232334
    Export {
        /// The run's id [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// The InfluxDB server, e.g. http://localhost:8086.
        #[arg(long, value_name = "URL")]
        influx: String,
        /// The database (created when missing).
        #[arg(long, value_name = "NAME", default_value = "cmesh")]
        db: String,
        /// Print what was sent as JSON.
        #[arg(long)]
        json: bool,
    },
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
    Chaos(ChaosArgs),
    /// Remove a run's containers and network (refused until extracted, unless --force).
    Down {
        /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
        #[arg(long)]
        run: Option<String>,
        /// Remove even what was not extracted; its reports are lost.
        #[arg(long)]
        force: bool,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Spawn, wait, extract, analyze and down in one go; print the summary.
    Run(RunArgs),
    /// Check the hosts of a hosts.toml.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Manage the swarm that joins the hosts (spawn joins it by itself).
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Manage the image registry that spawn starts on the manager (--image-transport
    /// registry).
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// A local multi-host lab: Docker hosts in containers, reached over SSH.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print a shell completion script, e.g. `launcher completions bash >
    /// /etc/bash_completion.d/launcher`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `launcher man | man -l -`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// One row per host: reachable, Docker version and API, swarm state, netem and IPVS,
    /// free disk, clock offset against the manager, neighbour-table limit. Exit 1 if a
    /// host is unusable.
    Check {
        #[arg(long)]
        hosts: Option<PathBuf>,
        /// Planned peers: each host's headroom for its share of them (threads, dockerd's
        /// open files, memory, the neighbour table, inotify, disk).
        #[arg(long, default_value_t = 0)]
        peers: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Init the swarm on the manager, join every worker, label the nodes (idempotent).
    Join {
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
    /// Remove the registry from the manager, then every worker leaves the swarm, then the
    /// manager (undoes `join` and spawn's join).
    Leave {
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Remove the registry container from the manager, with its certificate, password
    /// and image volumes (the next spawn that needs one makes a new one).
    Rm {
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start N lab hosts (dockerd + sshd each) on a private bridge network, with an SSH
    /// key, known_hosts and a hosts.toml for them in DIR. Re-running completes the lab.
    Up {
        /// How many hosts (lab-1 is the manager).
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Where the keys, known_hosts and hosts.toml go.
        #[arg(long, default_value = "keys/lab")]
        dir: PathBuf,
        /// The lab's name: its network and container prefix.
        #[arg(long, default_value = "cmesh-lab")]
        name: String,
        /// Use this image as the base instead of building cmesh-base.
        #[arg(long)]
        base_image: Option<String>,
    },
    /// Remove the lab's hosts and network (keys and hosts.toml stay).
    Down {
        #[arg(long, default_value = "cmesh-lab")]
        name: String,
    },
}

/// A fault `launcher chaos` can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChaosKind {
    /// Delay every packet (--ms, --jitter).
    Delay,
    /// Drop packets (--percent).
    Loss,
    /// Duplicate packets (--percent).
    Duplicate,
    /// Corrupt packets (--percent).
    Corrupt,
    /// Reorder packets (--percent).
    Reorder,
    /// Limit the rate (--kbit).
    Rate,
    /// Cut groups apart (--groups).
    Partition,
    /// SIGKILL the peers' containers.
    Kill,
    /// Freeze the peers' containers (--for).
    Pause,
    /// SIGKILL, then start the same containers again.
    Restart,
}

/// A value's name on the command line (also its name in plans and the coordinator's
/// API).
pub fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// The peers' sync backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The built-in replicated log over TCP.
    Mesh,
    /// Your app, driven by your adapter program (needs --app-image and --adapter;
    /// docs/apps.md). The default when --adapter is given.
    Adapter,
    /// A Ditto small peer (needs --peer-image and --secret-file; docs/ditto.md).
    Ditto,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: ChaosKind,
    /// The run [default: the newest].
    #[arg(long)]
    pub run: Option<String>,
    /// Which peers: all (default), 1-5,9, a name glob (peer-00[0-4]*), group:NAME, N%.
    #[arg(long)]
    pub peers: Option<String>,
    /// A random share of the peers, e.g. 10%, picked with --seed.
    #[arg(long)]
    pub random: Option<String>,
    /// Seed for --random [default: the plan's seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shaping: only the traffic towards these peers (same forms as --peers).
    #[arg(long)]
    pub to: Option<String>,
    /// delay: milliseconds.
    #[arg(long)]
    pub ms: Option<u64>,
    /// delay: jitter, milliseconds.
    #[arg(long)]
    pub jitter: Option<u64>,
    /// loss, duplicate, corrupt, reorder: percent.
    #[arg(long)]
    pub percent: Option<f64>,
    /// rate: kbit/s.
    #[arg(long)]
    pub kbit: Option<u64>,
    /// partition: the groups, NAME:PEERS each, e.g. a:1-50 b:51-100.
    #[arg(long, num_args = 1..)]
    pub groups: Vec<String>,
    /// How long (e.g. 30s); left out: until the peers stop writing. Needed for pause.
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Print the action as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build the base (if missing), peer and coordinator images on this machine's engine
    /// (spawn puts them on the other hosts).
    Build {
        #[arg(long)]
        hosts: Option<PathBuf>,
        #[command(flatten)]
        images: ImageArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// Where the prebuilt peer and coordinator binaries are [default: next to launcher].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Use this image as the base instead of building cmesh-base.
    #[arg(long)]
    pub base_image: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SpawnArgs {
    /// The hosts file [default: ./hosts.toml, or the local Docker Engine if there is none].
    #[arg(long)]
    pub hosts: Option<PathBuf>,
    /// A test plan (configs/*.toml); flags override it, CMESH_PLAN_* variables sit between.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of peers [default: the plan's, else 10].
    #[arg(long)]
    pub peers: Option<usize>,
    /// How long peers write, e.g. 30s.
    #[arg(long)]
    pub duration: Option<String>,
    /// Connection graph.
    #[arg(long, value_enum)]
    pub graph: Option<GraphKind>,
    /// Degree of random-regular.
    #[arg(long)]
    pub degree: Option<usize>,
    /// Pause between a peer's writes in ms, MIN..MAX.
    #[arg(long)]
    pub write_interval: Option<String>,
    /// Bytes per record.
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// How the mesh backend spreads records [default: the plan's, else plumtree]:
    /// plumtree pushes on a tree and pulls on the other links, flood sends every record
    /// to every neighbour.
    #[arg(long, value_enum)]
    pub dissemination: Option<cmesh_common::plan::Dissemination>,
    /// Seed of the plan's random choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Name the run (a-z 0-9 -); re-using an id completes that run.
    #[arg(long)]
    pub run_id: Option<String>,
    /// The overlay subnet, e.g. 10.120.0.0/22 [default: sized for the peers].
    #[arg(long)]
    pub subnet: Option<String>,
    /// Containers started at once, per host.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Spawn even when the run does not fit its hosts (memory at the start, idle CPU),
    /// with a warning. `run --force` then stops the run once a host is saturated for
    /// 20 s (as --abort-on saturated), unless --abort-on says otherwise.
    #[arg(long)]
    pub force: bool,
    /// Place peers only on hosts with this label (KEY=VALUE; repeatable; `name=HOST`
    /// picks a host by name).
    #[arg(long = "host-label")]
    pub host_label: Vec<String>,
    /// How images reach the other hosts: a TLS registry on the manager, or streamed
    /// straight into each engine (`docker save | docker load`).
    #[arg(long, value_enum, default_value_t = Transport::Registry)]
    pub image_transport: Transport,
    /// Memory limit per peer container, in MiB.
    #[arg(long, default_value_t = 128)]
    pub peer_memory_mib: u64,
    /// CPU quota per peer container, in CPUs (0.01 to 1024; e.g. 0.25 for a quarter of a
    /// core) [default: none]. Emulates small devices, and makes CPU saturation
    /// reproducible on any machine.
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub peer_cpus: Option<f64>,
    /// The peers' sync backend; the peer image must have it (its io.cmesh.backends
    /// label) [default: mesh, or adapter with --adapter].
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Your app's image (on this machine's engine): the peers run in an image derived
    /// from it, with the peer and --adapter added, and checked for what they need
    /// (docs/apps.md).
    #[arg(
        long,
        value_name = "IMAGE",
        requires = "adapter",
        conflicts_with = "peer_image"
    )]
    pub app_image: Option<String>,
    /// The program that drives your app in each peer: a script or binary speaking
    /// cmesh's adapter protocol on stdin/stdout (docs/apps.md; apps/toy/adapter.py).
    #[arg(long, value_name = "PATH", requires = "app_image")]
    pub adapter: Option<PathBuf>,
    /// A secret file the backend needs (ditto: licence token and database id). It is
    /// copied into each host's secrets volume, never into an environment or an image.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Run this peer image instead of the one built from this workspace (it must be on
    /// this machine's engine; spawn puts it on the hosts).
    #[arg(long)]
    pub peer_image: Option<String>,
    /// When some hosts do not answer, place the peers on the others (the manager must
    /// answer) and record the ones left out in the manifest. Without it, spawn refuses.
    #[arg(long)]
    pub allow_missing_hosts: bool,
    /// Encrypt the run's overlay between hosts (IPsec, Docker's `encrypted` overlay), so
    /// that no one else on the lab network reads or alters the peers' traffic. Every
    /// host's kernel must have IPsec (ESP and XFRM): `launcher hosts check` says; spawn
    /// refuses before creating anything if one has not. Costs CPU per packet.
    #[arg(long)]
    pub encrypt_overlay: bool,
    #[command(flatten)]
    pub images: ImageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub spawn: SpawnArgs,
    #[command(flatten)]
    pub caps: CapsArgs,
    /// Print summary.json on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Keep the containers and network afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Give up waiting for the peers after this long [default: from the plan].
    #[arg(long, value_parser = parse::duration)]
    pub timeout: Option<Duration>,
    /// Stop the run as soon as its numbers will be garbage: `isolated` (half the running
    /// peers have no link 30 s after the start), `saturated` (a host saturated for 20 s).
    /// What was measured is still extracted and analysed; the exit is 1, with the reason.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub abort_on: Vec<cmesh_common::live::AbortOn>,
    /// Run the plan N times, seeds the plan's seed, +1, +2, …, as a group that `launcher
    /// compare` takes by name (runs/NAME.group.json; runs NAME-1 … NAME-N). Running the
    /// same command again after an interruption goes on from the last finished run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100), conflicts_with = "run_id")]
    pub repeat: Option<u32>,
    /// The group's name [default: g<MMDD-HHMMSS>].
    #[arg(long, value_name = "NAME", requires = "repeat")]
    pub group: Option<String>,
    /// Run as RUN ran: its plan, seed, hosts and placement, with the `launcher chaos`
    /// actions it received replayed at the same offsets from the start (as planned
    /// faults, on the same peers). With --peer-image, the A/B after changing the peer:
    /// then `launcher compare RUN NEW`.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["config", "hosts", "peers", "duration", "graph", "seed", "repeat"])]
    pub like: Option<String>,
}

/// What extract may write: what a container's report directory holds beyond these is
/// cut (a file keeps its first bytes) or left out, and the container is marked
/// `truncated` in extract.json with the reason.
#[derive(Debug, Clone, clap::Args)]
pub struct CapsArgs {
    /// Largest file extract keeps from a report directory (MiB).
    #[arg(long, value_name = "MIB", default_value_t = archive::DEFAULT_FILE_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_file_mib: u64,
    /// Most extract keeps from one container's report directory (MiB).
    #[arg(long, value_name = "MIB", default_value_t = archive::DEFAULT_CONTAINER_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_container_mib: u64,
    /// Most extract keeps from one host's reports (MiB).
    #[arg(long, value_name = "MIB", default_value_t = archive::DEFAULT_HOST_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_host_mib: u64,
}

impl CapsArgs {
    pub fn caps(&self) -> archive::Caps {
        archive::Caps::mib(self.max_file_mib, self.max_container_mib, self.max_host_mib)
    }
}

/// `--peer-cpus`: a number of CPUs from 0.01 (Docker's smallest quota) to 1024.
fn parse_cpus(s: &str) -> Result<f64, String> {
    let cpus: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of CPUs (e.g. 0.25)"))?;
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!("{s} CPUs: give 0.01 to 1024"));
    }
    Ok(cpus)
}

fn load_hosts(flag: Option<&Path>) -> anyhow::Result<hosts::HostsFile> {
    match flag {
        Some(p) => hosts::load(p),
        None if Path::new("hosts.toml").exists() => hosts::load(Path::new("hosts.toml")),
        None => Ok(hosts::local_default()),
    }
}

/// Turns spawn flags into a request, checking everything that needs no engine.
pub fn spawn_request(runs_dir: &Path, a: &SpawnArgs) -> anyhow::Result<spawn::SpawnRequest> {
    let hosts = load_hosts(a.hosts.as_deref())?;
    let flags = plan_file::PlanFile {
        peers: a.peers,
        duration: a.duration.clone(),
        graph: a.graph.map(value_name),
        degree: a.degree,
        write_interval: a.write_interval.clone(),
        payload_bytes: a.payload_bytes,
        dissemination: a.dissemination.map(value_name),
        seed: a.seed,
        ..Default::default()
    };
    let origin = a
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "flags".into());
    let spec = plan_file::load(a.config.as_deref())?
        .merge(flags)
        .to_spec(&origin)?;
    let subnet = match &a.subnet {
        Some(s) => Some(network::Subnet::parse(s).map_err(bad_input)?),
        None => None,
    };
    if a.concurrency == 0 {
        return Err(bad_input("--concurrency must be at least 1"));
    }
    let req = spawn::SpawnRequest {
        runs_dir: runs_dir.to_owned(),
        hosts,
        host_filter: hosts::parse_label_filter(&a.host_label)?,
        transport: a.image_transport,
        spec,
        run_id: a.run_id.clone(),
        subnet,
        concurrency: a.concurrency,
        force: a.force,
        peer_memory_bytes: (a.peer_memory_mib as i64) << 20,
        peer_nano_cpus: a.peer_cpus.map(|c| (c * 1e9).round() as i64),
        bin_dir: images::bin_dir(a.images.bin_dir.as_deref()),
        base_image: a.images.base_image.clone(),
        backend: spawn::BackendChoice::new(
            &value_name(a.backend.unwrap_or(if a.adapter.is_some() {
                BackendKind::Adapter
            } else {
                BackendKind::Mesh
            })),
            a.secret_file.as_deref(),
            a.peer_image.as_deref(),
            match (&a.app_image, &a.adapter) {
                (Some(image), Some(adapter)) => {
                    Some(spawn::app_image::AppChoice::new(image, adapter)?)
                }
                _ => None,
            },
        )?,
        allow_missing_hosts: a.allow_missing_hosts,
        encrypt_overlay: a.encrypt_overlay,
    };
    spawn::precheck(&req)?;
    Ok(req)
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a command; the caller maps errors to exit codes. A SIGINT or SIGTERM stops it
/// where it is (`wait`, `chaos` and `run` first undo their pauses).
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let handles_signals = matches!(
        cli.command,
        Command::Wait { .. }
            | Command::Chaos(_)
            | Command::Run(_)
            | Command::Logs { .. }
            | Command::Watch { .. }
    );
    if handles_signals {
        return dispatch(cli).await;
    }
    let name = cli_name(&cli.command);
    crate::tasks::until_interrupted(name, dispatch(cli)).await
}

/// The command's name, for messages.
fn cli_name(c: &Command) -> &'static str {
    match c {
        Command::Images(_) => "images",
        Command::Spawn { .. } => "spawn",
        Command::Ls { .. } => "ls",
        Command::Status { .. } => "status",
        Command::Watch { .. } => "watch",
        Command::Logs { .. } => "logs",
        Command::Wait { .. } => "wait",
        Command::Extract { .. } => "extract",
        Command::Analyze { .. } => "analyze",
        Command::Report { .. } => "report",
        Command::Compare { .. } => "compare",
        Command::Export { .. } => "export",
        Command::Chaos(_) => "chaos",
        Command::Down { .. } => "down",
        Command::Run(_) => "run",
        Command::Hosts(_) => "hosts check",
        Command::Swarm(_) => "swarm",
        Command::Registry(_) => "registry",
        Command::Lab(_) => "lab",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let runs = cli.runs_dir.as_path();
    match cli.command {
        Command::Images(ImagesCommand::Build { hosts, images: i }) => {
            // Checks the hosts file; images are built on this machine's engine.
            load_hosts(hosts.as_deref())?;
            let builder = Connector::Docker.builder().await?;
            images::ensure_all(
                &builder,
                &images::bin_dir(i.bin_dir.as_deref()),
                i.base_image.as_deref(),
            )
            .await?;
            Ok(0)
        }
        Command::Spawn { args, json } => {
            let spawned = spawn::spawn(spawn_request(runs, &args)?).await?;
            if json {
                print_json(&spawned)?;
            } else {
                println!("{}", spawned.run_id);
            }
            Ok(0)
        }
        Command::Ls { json } => {
            let rows = ls::ls(runs);
            if json {
                print_json(&rows)?;
            } else {
                print!("{}", ls::render(&rows));
            }
            Ok(0)
        }
        Command::Status {
            run,
            json,
            host_timeout,
        } => {
            let s = status::status(&RunDir::open(runs, run.as_deref())?, host_timeout).await?;
            if json {
                print_json(&s)?;
            } else {
                print!("{}", status::render(&s));
            }
            Ok(if s.unreachable_hosts.is_empty() { 0 } else { 1 })
        }
        Command::Logs {
            run,
            peer,
            follow,
            since,
            host_timeout,
        } => {
            let request = logs::Request {
                selector: peer,
                follow,
                since,
                host_timeout: Some(host_timeout),
            };
            logs::logs(&RunDir::open(runs, run.as_deref())?, &request).await?;
            Ok(0)
        }
        Command::Watch {
            run,
            json,
            host_timeout,
        } => {
            let run = RunDir::open(runs, run.as_deref())?;
            watch::watch(&run, watch::Output::pick(json), host_timeout).await
        }
        Command::Wait {
            run,
            timeout,
            abort_on,
            json,
        } => {
            let waited =
                wait::wait(&RunDir::open(runs, run.as_deref())?, timeout, &abort_on).await?;
            let failed = waited.failed();
            for e in &failed {
                tracing::warn!("{}: {}", e.name, e.reason());
            }
            if let Some(reason) = &waited.aborted {
                tracing::error!("run {} aborted: {reason}", waited.run_id);
            }
            if json {
                print_json(&waited)?;
            }
            Ok(if failed.is_empty() && waited.aborted.is_none() {
                0
            } else {
                1
            })
        }
        Command::Extract {
            run,
            concurrency,
            caps,
            json,
        } => {
            let run = RunDir::open(runs, run.as_deref())?;
            let x = extract::extract(&run, concurrency.max(1), caps.caps()).await?;
            extract::print_summary(&x);
            if json {
                print_json(&x.index)?;
            }
            Ok(
                if x.index.errors.is_empty() && x.index.unreachable.is_empty() {
                    0
                } else {
                    1
                },
            )
        }
        Command::Analyze { dir, json } => {
            let run = match dir {
                Some(d) => RunDir::open_arg(runs, &d)?,
                None => RunDir::open(runs, None)?,
            };
            let s = analyze::analyze(&run)?;
            if json {
                print_json(&s)?;
            } else {
                print!("{}", analyze::to_markdown(&s));
            }
            Ok(if s.ok { 0 } else { 1 })
        }
        Command::Report { run, open } => {
            let run = RunDir::open(runs, run.as_deref())?;
            let path = analyze::report(&run)?;
            println!("{}", path.display());
            if open {
                crate::results::analyze::open_in_browser(&path)?;
            }
            Ok(0)
        }
        Command::Compare {
            runs: pair,
            baseline,
            candidate,
            fail_on,
            noise,
            json,
            html,
        } => {
            use crate::cmd::compare;
            let (b, c) = match (baseline, candidate) {
                (Some(b), Some(c)) => (compare::list(&b), compare::list(&c)),
                (Some(_), None) => {
                    return Err(crate::error::bad_input("--baseline needs --candidate"))
                }
                _ if pair.len() == 2 => (vec![pair[0].clone()], vec![pair[1].clone()]),
                _ => {
                    return Err(crate::error::bad_input(
                        "compare needs two runs (`launcher compare A B`) or --baseline A1,A2 --candidate B1,B2",
                    ))
                }
            };
            let (b, c) = (
                crate::run::group::expand(runs, &b)?,
                crate::run::group::expand(runs, &c)?,
            );
            let (comparison, failed) = compare::compare(runs, &b, &c, noise / 100.0, &fail_on)?;
            if let Some(path) = &html {
                compare::write_page(runs, &comparison, &b, &c, path)?;
                tracing::info!("compare: the page is {}", path.display());
            }
            if json {
                print_json(&serde_json::json!({
                    "comparison": comparison,
                    "failed_gates": failed,
                }))?;
            } else {
                print!("{}", cmesh_analysis::compare::to_markdown(&comparison));
            }
            for f in &failed {
                tracing::error!("compare: gate failed: {f}");
            }
            Ok(if failed.is_empty() { 0 } else { 1 })
        }
        Command::Export {
            run,
            influx,
            db,
            json,
        } => {
            let run = RunDir::open(runs, run.as_deref())?;
            let x = crate::results::export::influx(&run, &influx, &db).await?;
            if json {
                print_json(&x)?;
            } else {
                println!(
                    "exported {} points of run {} to database {} ({})",
                    x.points,
                    run.id,
                    x.db,
                    x.file.display()
                );
            }
            Ok(0)
        }
        Command::Chaos(a) => {
            let order = crate::faults::chaos::ChaosOrder {
                action: value_name(a.action),
                peers: a.peers,
                random: a.random,
                seed: a.seed,
                to: a.to,
                ms: a.ms,
                jitter_ms: a.jitter,
                percent: a.percent,
                kbit: a.kbit,
                groups: a.groups,
                duration: a.duration,
            };
            let record =
                crate::faults::chaos::chaos(&RunDir::open(runs, a.run.as_deref())?, &order).await?;
            if a.json {
                print_json(&record)?;
            } else {
                println!("{}", crate::faults::chaos::describe(&record));
            }
            for (name, e) in &record.errors {
                tracing::warn!("chaos: {name}: {e}");
            }
            Ok(if record.errors.is_empty() { 0 } else { 1 })
        }
        Command::Down { run, force, json } => {
            let removed = down::down(&RunDir::open(runs, run.as_deref())?, force, 16).await?;
            if json {
                print_json(&removed)?;
            }
            Ok(if removed.remaining.is_empty() { 0 } else { 1 })
        }
        Command::Run(a) => run_all(runs, a).await,
        Command::Hosts(HostsCommand::Check { hosts, peers, json }) => {
            let file = load_hosts(hosts.as_deref())?;
            let rows = hostcheck::check(&file, peers).await?;
            if json {
                print_json(&rows)?;
            } else {
                print!("{}", hostcheck::render(&rows));
            }
            Ok(if rows.iter().all(hostcheck::Row::usable) {
                0
            } else {
                1
            })
        }
        Command::Swarm(SwarmCommand::Join { hosts }) => {
            let file = load_hosts(hosts.as_deref())?;
            let hosts = Connector::Docker.connect_all(&file).await.require_all()?;
            swarm::ensure(&hosts).await?;
            Ok(0)
        }
        Command::Swarm(SwarmCommand::Leave { hosts }) => {
            let file = load_hosts(hosts.as_deref())?;
            let hosts = Connector::Docker.connect_all(&file).await.require_all()?;
            crate::engine::registry::remove(crate::engine::host::manager(&hosts)?).await?;
            swarm::leave(&hosts).await?;
            Ok(0)
        }
        Command::Registry(RegistryCommand::Rm { hosts }) => {
            let file = load_hosts(hosts.as_deref())?;
            let hosts = Connector::Docker.connect_all(&file).await.require_all()?;
            let manager = crate::engine::host::manager(&hosts)?;
            if !crate::engine::registry::remove(manager).await? {
                eprintln!("launcher: host `{}` has no registry", manager.name());
            }
            Ok(0)
        }
        Command::Lab(LabCommand::Up {
            hosts,
            dir,
            name,
            base_image,
        }) => {
            let path = lab::up(&lab::LabRequest {
                name,
                hosts,
                dir,
                base_image,
            })
            .await?;
            println!("{}", path.display());
            Ok(0)
        }
        Command::Lab(LabCommand::Down { name }) => {
            lab::down(&name).await?;
            Ok(0)
        }
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

/// `launcher run`: spawn, wait, extract, analyze, down; `--repeat N` times as a group.
async fn run_all(runs: &Path, a: RunArgs) -> anyhow::Result<i32> {
    let Some(n) = a.repeat else {
        return run_once(runs, &a, true).await;
    };
    use crate::run::group::{self, GroupRun, RunGroup};
    let n = n as usize;
    let name = a.group.clone().unwrap_or_else(group::new_name);
    group::validate(&name, n)?;
    // Checked once before anything starts; each run's seed is the plan's plus its number.
    let base_seed = spawn_request(runs, &a.spawn)?.spec.seed;
    let mut g = group::read(runs, &name)?.unwrap_or(RunGroup {
        schema: group::GROUP_SCHEMA.into(),
        schema_version: 1,
        name: name.clone(),
        runs: Vec::new(),
    });
    let mut failed = 0;
    for i in g.runs.len()..n {
        let seed = base_seed.wrapping_add(i as u64);
        let mut one = a.clone();
        one.spawn.seed = Some(seed);
        one.spawn.run_id = Some(group::run_id(&name, i + 1));
        tracing::info!("run {} of {} in group {name} (seed {seed})", i + 1, n);
        if run_once(runs, &one, !a.json).await? != 0 {
            failed += 1;
        }
        g.runs.push(GroupRun {
            run_id: group::run_id(&name, i + 1),
            seed,
        });
        group::write(runs, &g)?;
    }
    if a.json {
        print_json(&g)?;
    }
    tracing::info!(
        "group {name}: {} runs in {}; compare it with `launcher compare --baseline {name} --candidate OTHER`",
        g.runs.len(),
        group::path(runs, &name).display()
    );
    Ok(if failed == 0 { 0 } else { 1 })
}

/// One `launcher run`; prints the summary when `print`.
async fn run_once(runs: &Path, a: &RunArgs, print: bool) -> anyhow::Result<i32> {
    let mut request = spawn_request(runs, &a.spawn)?;
    if let Some(like) = &a.like {
        let old = RunDir::open(runs, Some(like))?;
        let manifest = old.read_manifest()?;
        let (spec, replayed) =
            crate::faults::replay::like(&manifest, &crate::faults::chaos::read(&old))?;
        tracing::info!(
            "run like {like}: its plan, seed and hosts, and its {replayed} chaos actions as planned faults"
        );
        request.spec = spec;
        request.hosts = manifest.hosts_file();
        spawn::precheck(&request)?;
    }
    let spawned = crate::tasks::until_interrupted("spawn", spawn::spawn(request)).await?;
    let run = RunDir::open(runs, Some(&spawned.run_id))?;
    // The run's own plan: a re-used run id keeps its manifest, whatever the flags say.
    let spec = run.read_manifest()?.spec;
    let timeout = a.timeout.unwrap_or(Duration::from_millis(
        spec.start_timeout_ms
            + spec.start_delay_for(spec.peers)
            + spec.duration_ms
            + spec.settle_timeout_ms
            + 300_000,
    ));
    // A run that did not fit and was forced stops itself once its numbers are garbage,
    // rather than burn half an hour at a load in the thousands.
    let abort_on = if spawned.forced && a.abort_on.is_empty() {
        tracing::warn!(
            "run {}: forced past its hosts' limits; it stops if a host is saturated for 20 s (--abort-on saturated)",
            spawned.run_id
        );
        vec![cmesh_common::live::AbortOn::Saturated]
    } else {
        a.abort_on.clone()
    };
    // A failed wait (a stuck peer) still goes on to extract what exists.
    let waited = wait::wait(&run, timeout, &abort_on).await;
    if let Err(e) = &waited {
        tracing::warn!("wait: {e:#}");
    }
    let aborted = waited.as_ref().ok().and_then(|w| w.aborted.clone());
    let x = crate::tasks::until_interrupted("extract", extract::extract(&run, 16, a.caps.caps()))
        .await?;
    extract::print_summary(&x);
    let summary = analyze::analyze(&run)?;
    if print && a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if print {
        print!("{}", analyze::to_markdown(&summary));
    }
    tracing::info!("run {}: results in {}", run.id, run.path.display());
    if let Some(reason) = &aborted {
        tracing::error!(
            "run {} aborted: {reason}. What was measured until then is analysed above",
            run.id
        );
    }
    if !a.keep {
        if waited.is_err() {
            tracing::warn!("run {}: containers kept, since some were still running; `launcher status`, then `launcher down --force` when done with them", run.id);
        } else if !x.index.errors.is_empty() || !x.index.unreachable.is_empty() {
            tracing::warn!("run {}: containers kept, since some could not be extracted; `launcher extract` then `launcher down`", run.id);
        } else {
            down::down(&run, false, 16).await?;
        }
    }
    Ok(if summary.ok && waited.is_ok() && aborted.is_none() {
        0
    } else {
        1
    })
}

/// `--since`: a time ago or an RFC 3339 time, as a Unix second.
fn parse_since(text: &str) -> Result<i64, String> {
    logs::parse_since(text, std::time::SystemTime::now())
}

/// `--noise`: a percentage from 0 to 100.
fn parse_noise(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not a percentage from 0 to 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn noise_is_a_percentage() {
        assert_eq!(parse_noise("5"), Ok(5.0));
        assert_eq!(parse_noise("2.5%"), Ok(2.5));
        for bad in ["-1", "101", "NaN", "five"] {
            assert!(parse_noise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_cpus_are_a_bounded_number() {
        assert_eq!(parse_cpus("0.25"), Ok(0.25));
        assert_eq!(parse_cpus("2"), Ok(2.0));
        for bad in ["0", "0.001", "-1", "NaN", "inf", "2000", "a quarter"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }
}
