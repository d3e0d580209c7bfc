//! `launcher wait`: until every peer container has exited, then say who failed.
//!
//! It follows each host's container events (start, die, pause, destroy) rather than
//! polling: one list at the start, after subscribing, then events. A host whose event
//! stream breaks is listed again and re-subscribed; one that does not answer is lost,
//! and its peers end as `unreachable` while the others are still waited for.
//!
//! With `--abort-on saturated|isolated` it also reads the coordinator's live figures
//! every [`ABORT_CHECK`] ([`super::watch::LiveClient`]); once they say the run's numbers
//! will be garbage, it kills the peers still running (each leaves its last checkpoint),
//! waits for the coordinator to see them gone and write its report, and says why in
//! [`Waited::aborted`]. What was measured is extracted and analysed as for any run.

use crate::cluster::host::Connector;
use crate::cmd::{print_json, JsonArg, RunArg};
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::engine::{ContainerEvent, ContainerState, EngineError, EventKind};
use crate::run::dir::RunDir;
use crate::run::live::{Ended, LiveRun};
use crate::tasks;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::StreamExt;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// Give up after this long.
    #[arg(long, value_parser = cmesh_common::parse::duration, default_value = "30m")]
    pub timeout: Duration,
    /// Stop the run as soon as its numbers will be garbage, and exit 1 with the
    /// reason: `isolated` (half the running peers have no link 30 s after the start),
    /// `saturated` (a host saturated for 20 s). Repeat or comma-separate for both.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub abort_on: Vec<cmesh_common::live::AbortOn>,
    // How every peer ended.
    #[command(flatten)]
    pub out: JsonArg,
}

/// Waits; exit 1 if a peer failed or the run was aborted.
pub async fn main(runs: &std::path::Path, args: Args) -> anyhow::Result<i32> {
    let waited = wait(&args.run.open(runs)?, args.timeout, &args.abort_on).await?;
    let failed = waited.failed();
    for e in &failed {
        tracing::warn!("{}: {}", e.name, e.reason());
    }
    if let Some(reason) = &waited.aborted {
        tracing::error!("run {} aborted: {reason}", waited.run_id);
    }
    if args.out.json {
        print_json(&waited)?;
    }
    Ok(if failed.is_empty() && waited.aborted.is_none() {
        0
    } else {
        1
    })
}

/// What `wait` saw.
#[derive(Clone, Debug, Serialize)]
pub struct Waited {
    pub run_id: String,
    pub peers: Vec<Ended>,
    /// Hosts lost while waiting, with the reason.
    pub lost_hosts: Vec<crate::cluster::host::LostHost>,
    /// The run was stopped early (`--abort-on`), and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

/// How often `--abort-on` reads the live figures.
pub const ABORT_CHECK: Duration = Duration::from_secs(2);

impl Waited {
    pub fn failed(&self) -> Vec<&Ended> {
        self.peers.iter().filter(|e| e.failed()).collect()
    }
}

type Events = SelectAll<BoxStream<'static, (usize, Result<ContainerEvent, EngineError>)>>;

fn subscribe(
    live: &LiveRun,
    h: usize,
) -> BoxStream<'static, (usize, Result<ContainerEvent, EngineError>)> {
    live.hosts[h]
        .engine
        .events((labels::RUN, &live.manifest.run_id))
        .map(move |e| (h, e))
        .boxed()
}

/// Applies one event to the run's view.
fn apply(live: &mut LiveRun, h: usize, e: ContainerEvent) {
    let state = match e.kind {
        EventKind::Start | EventKind::Unpause => ContainerState::Running,
        EventKind::Die => ContainerState::Exited,
        EventKind::Pause => ContainerState::Paused,
        EventKind::Destroy => {
            live.states.remove(&e.name);
            return;
        }
        EventKind::Other => return,
    };
    live.states.insert(e.name, (h, state));
}

/// Waits until every peer has exited (or `timeout`) on real engines; stops the run
/// early when the live figures say so for any of `abort_on`.
pub async fn wait(
    run: &RunDir,
    timeout: Duration,
    abort_on: &[cmesh_common::live::AbortOn],
) -> anyhow::Result<Waited> {
    wait_with(&Connector::Docker, run, timeout, abort_on).await
}

/// Waits until every peer on a reachable host has exited (or `timeout`); returns how each
/// ended. Peers on a host that is lost end `unreachable`.
pub async fn wait_with(
    connector: &Connector,
    run: &RunDir,
    timeout: Duration,
    abort_on: &[cmesh_common::live::AbortOn],
) -> anyhow::Result<Waited> {
    let mut live = LiveRun::load_with(connector, run).await?;
    if live.hosts.is_empty() {
        live.require_all_hosts()?;
    }
    let manifest = live.manifest.clone();
    // Subscribe first, then list: no exit falls between the two.
    let mut events: Events = SelectAll::new();
    for h in 0..live.hosts.len() {
        if !live.is_lost(live.hosts[h].name()) {
            events.push(subscribe(&live, h));
        }
    }
    live.refresh().await;
    for l in &live.lost {
        tracing::warn!("wait: {}", l.reason);
    }
    let bar = tasks::bar(
        "wait",
        manifest.peers.len() as u64,
        "{msg:>10} [{bar:30}] {pos}/{len} exited {elapsed}",
    );
    let start = Instant::now();
    // The plan's kills and pauses are done from here, at their times.
    let mut planned = crate::faults::planned::PlannedDocker::new(&manifest.spec)?;
    let mut peers_done_at: Option<Instant> = None;
    let mut coordinator_gone_at: Option<Instant> = None;
    let finished =
        |live: &LiveRun, name: &str, host: &str| live.is_lost(host) || live.is_done(name);
    let interrupt = tasks::interrupted();
    tokio::pin!(interrupt);
    let mut watcher = Abort::new(abort_on);
    loop {
        let exited = manifest
            .peers
            .iter()
            .filter(|p| finished(&live, &p.name, &p.host))
            .count();
        bar.set_position(exited as u64);
        let coordinator_done = finished(
            &live,
            &manifest.coordinator.name,
            &manifest.coordinator.host,
        );
        if exited == manifest.peers.len() {
            // The coordinator exits once it has marked every peer done, failed or lost
            // (a killed peer takes 3 heartbeats) and written its report. Wait for that,
            // within reason, so extract gets its final report too.
            let since = *peers_done_at.get_or_insert_with(Instant::now);
            let grace = Duration::from_millis(4 * manifest.spec.heartbeat_period_ms() + 30_000);
            if coordinator_done || since.elapsed() > grace {
                break;
            }
        } else if coordinator_done {
            // The run is over for the coordinator; peers still up after a minute are stuck.
            let gone = *coordinator_gone_at.get_or_insert_with(Instant::now);
            if gone.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        if start.elapsed() > timeout {
            bar.finish_and_clear();
            if let Some(p) = &mut planned {
                p.release(run, &manifest, &live.hosts).await;
            }
            let running: Vec<&str> = manifest
                .peers
                .iter()
                .filter(|p| !finished(&live, &p.name, &p.host))
                .map(|p| p.name.as_str())
                .collect();
            anyhow::bail!(
                "timed out after {:?}: {} peers still running ({}{}). `launcher status` shows where they are; `launcher extract` still collects what exists",
                timeout,
                running.len(),
                running.iter().take(10).copied().collect::<Vec<_>>().join(", "),
                if running.len() > 10 { ", …" } else { "" }
            );
        }
        let mut pause = Duration::from_secs(1);
        if let Some(reason) = watcher.check(&live, run).await {
            tracing::warn!(
                "wait: aborting run {}: {reason}; stopping the peers still running (each leaves its last checkpoint)",
                manifest.run_id
            );
            let running: Vec<(usize, String)> = manifest
                .peers
                .iter()
                .filter(|p| !finished(&live, &p.name, &p.host))
                .filter_map(|p| live.states.get(&p.name).map(|(h, _)| (*h, p.name.clone())))
                .collect();
            let killed = tasks::for_each_on_hosts("abort", running, 16, |h, name: String| {
                let host = &live.hosts[h];
                async move { Ok(retry(|| host.engine.kill_container(&name)).await?) }
            })
            .await;
            for ((_, name), r) in killed {
                match r {
                    Ok(()) => {
                        watcher.killed.insert(name);
                    }
                    Err(e) => tracing::warn!("wait: cannot stop {name}: {e:#}"),
                }
            }
        }
        if let Some(p) = &mut planned {
            match p.tick(run, &manifest, &live.hosts).await {
                Ok(Some(next)) => pause = pause.min(next),
                Ok(None) => {}
                Err(e) => tracing::warn!("wait: the plan's kills and pauses: {e:#}"),
            }
        }
        // Past the grace periods and the timeout, the loop only needs waking by events.
        tokio::select! {
            event = events.next(), if !events.is_empty() => match event {
                Some((h, Ok(e))) => apply(&mut live, h, e),
                Some((h, Err(e))) => {
                    // The stream broke: list again (it may have missed events), and
                    // follow the host again if it answers.
                    let name = live.hosts[h].name().to_owned();
                    match retry(|| crate::run::containers::existing(&live.hosts[h], &manifest.run_id)).await {
                        Ok(list) => {
                            live.states.retain(|_, (hh, _)| *hh != h);
                            live.states.extend(list.into_iter().map(|(n, s)| (n, (h, s))));
                            events.push(subscribe(&live, h));
                        }
                        Err(_) => {
                            live.mark_lost(h, &e.to_string());
                            tracing::warn!("wait: host `{name}` is lost ({e}); its peers are unreachable, the others are still waited for");
                        }
                    }
                }
                None => {}
            },
                        _ = tokio::time::sleep(pause) => {}
            signal = &mut interrupt => {
                bar.finish_and_clear();
                let released = match &mut planned {
                    Some(p) => {
                        p.release(run, &manifest, &live.hosts).await;
                        "; the containers its plan had paused were unpaused"
                    }
                    None => "",
                };
                anyhow::bail!(
                    "wait interrupted ({signal}){released}. The peers go on running; `launcher wait --run {}` again to wait for them (and to carry out the plan's kills and pauses still due)",
                    manifest.run_id
                );
            }
        }
    }
    bar.finish_and_clear();
    if let Some(p) = &mut planned {
        p.release(run, &manifest, &live.hosts).await;
    }
    let mut killed = crate::faults::chaos::killed(&crate::faults::chaos::read(run));
    if let Some(reason) = &watcher.aborted {
        for name in &watcher.killed {
            killed
                .entry(name.clone())
                .or_insert_with(|| format!("--abort-on: {reason}"));
        }
    }
    let peers = ended(&live, &killed).await;
    let failed = peers.iter().filter(|e| e.failed()).count();
    let on_purpose = peers.iter().filter(|e| e.killed_by.is_some()).count();
    let unreachable = peers.iter().filter(|e| e.unreachable.is_some()).count();
    tracing::info!(
        "wait: {} of {} peers exited 0{}{}{}",
        peers.len() - failed - on_purpose,
        peers.len(),
        if on_purpose > 0 {
            format!(", {on_purpose} killed on purpose")
        } else {
            String::new()
        },
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        },
        if unreachable > 0 {
            format!(" ({unreachable} unreachable)")
        } else {
            String::new()
        }
    );
    Ok(Waited {
        run_id: manifest.run_id.clone(),
        peers,
        lost_hosts: live.lost.clone(),
        aborted: watcher.aborted,
    })
}

/// `--abort-on`: reads the live figures now and then, and decides once.
struct Abort<'a> {
    on: &'a [cmesh_common::live::AbortOn],
    client: Option<super::watch::LiveClient>,
    next: Instant,
    /// Why the run was stopped, once it was.
    aborted: Option<String>,
    /// The peers it stopped.
    killed: std::collections::BTreeSet<String>,
}

impl<'a> Abort<'a> {
    fn new(on: &'a [cmesh_common::live::AbortOn]) -> Self {
        Abort {
            on,
            client: None,
            next: Instant::now(),
            aborted: None,
            killed: Default::default(),
        }
    }

    /// The reason to stop the run now, once: None while the figures are fine, between
    /// checks, after the decision, and when the coordinator cannot be asked (the wait
    /// goes on as without `--abort-on`).
    async fn check(&mut self, live: &LiveRun, run: &RunDir) -> Option<String> {
        if self.on.is_empty() || self.aborted.is_some() || Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + ABORT_CHECK;
        if self.client.is_none() {
            match super::watch::LiveClient::connect(live, run).await {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    tracing::debug!("wait: --abort-on cannot reach the coordinator: {e:#}");
                    return None;
                }
            }
        }
        let report = match self.client.as_ref()?.live().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("wait: --abort-on: the live figures: {e:#}");
                self.client = None;
                return None;
            }
        };
        let reason = self.on.iter().find_map(|&on| report.abort_reason(on))?;
        self.aborted = Some(reason.clone());
        Some(reason)
    }
}

/// How each peer ended: inspected a bounded number at a time on each host.
async fn ended(live: &LiveRun, killed: &std::collections::BTreeMap<String, String>) -> Vec<Ended> {
    let manifest = &live.manifest;
    let unknown = |name: &str, unreachable: Option<String>| Ended {
        name: name.to_owned(),
        killed_by: killed.get(name).cloned(),
        exit_code: None,
        oom_killed: false,
        unreachable,
    };
    let mut out = Vec::with_capacity(manifest.peers.len());
    let mut items = Vec::new();
    for p in &manifest.peers {
        if let Some(l) = live.lost.iter().find(|l| l.name == p.host) {
            out.push(unknown(&p.name, Some(l.reason.clone())));
        } else if let Some((h, _)) = live.states.get(&p.name) {
            items.push((*h, p.name.clone()));
        } else {
            out.push(unknown(&p.name, None));
        }
    }
    let results = tasks::for_each_on_hosts("inspect", items, 16, |h, name: String| async move {
        anyhow::Ok(retry(|| live.hosts[h].engine.inspect_container(&name)).await)
    })
    .await;
    for ((h, name), r) in results {
        out.push(match r {
            Ok(Ok(info)) => Ended {
                killed_by: killed.get(&name).cloned(),
                name,
                exit_code: info.exit_code,
                oom_killed: info.oom_killed,
                unreachable: None,
            },
            Ok(Err(e)) if e.is_unreachable() => {
                let why = format!("host `{}`: {e}", live.hosts[h].name());
                unknown(&name, Some(why))
            }
            Ok(Err(_)) | Err(_) => unknown(&name, None),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
