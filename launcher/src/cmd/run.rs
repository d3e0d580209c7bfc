//! `launcher run`: spawn, wait, extract, analyze and down in one go, and print the
//! summary; `--repeat N` runs the plan N times as a group ([`crate::run::group`]),
//! `--like RUN` runs as RUN ran ([`crate::faults::replay`]).

use crate::cmd::extract::CapsArgs;
use crate::cmd::spawn::{spawn_request, SpawnArgs};
use crate::cmd::{down, print_json, wait, JsonArg};
use crate::results::{analyze, extract};
use crate::run::dir::RunDir;
use crate::spawn;
use cmesh_common::parse;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spawn: SpawnArgs,
    #[command(flatten)]
    pub caps: CapsArgs,
    // summary.json, or with --repeat the group.
    #[command(flatten)]
    pub out: JsonArg,
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

/// `launcher run`: spawn, wait, extract, analyze, down; `--repeat N` times as a group.
pub async fn main(runs: &Path, a: Args) -> anyhow::Result<i32> {
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
        if run_once(runs, &one, !a.out.json).await? != 0 {
            failed += 1;
        }
        g.runs.push(GroupRun {
            run_id: group::run_id(&name, i + 1),
            seed,
        });
        group::write(runs, &g)?;
    }
    if a.out.json {
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
async fn run_once(runs: &Path, a: &Args, print: bool) -> anyhow::Result<i32> {
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
    if print && a.out.json {
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
