//! `launcher down`: remove a run's containers, network and volumes.
//!
//! Refuses while the run has containers that were not extracted, unless `--force`:
//! removing a container loses its report. Every host's containers are removed at once, a
//! bounded number at a time per host. Scratch containers an interrupted command left
//! behind carry the run's label, so they go too.
//!
//! A host that cannot be reached keeps what is on it: `down` removes everything else,
//! lists what remains and where (exit 1), and a later `down` finishes the job.

use crate::cluster::host::{Connector, Host};
use crate::cmd::{print_json, JsonArg, RunArg};
use crate::engine::gone_is_fine;
use crate::engine::retry::retry;
use crate::results::extract;
use crate::run::dir::RunDir;
use crate::run::live::LiveRun;
use crate::run::names::{
    backend_secret_volume, coordinator_volume, has_backend_secret, network_name, reports_volume,
    secrets_volume,
};
use crate::tasks;
use anyhow::Context;
use cmesh_common::exit::bad_input;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    /// Remove even what was not extracted; its reports are lost.
    #[arg(long)]
    pub force: bool,
    // What was removed.
    #[command(flatten)]
    pub out: JsonArg,
}

/// Removes the run's objects; exit 1 if some remain.
pub async fn main(runs: &std::path::Path, args: Args) -> anyhow::Result<i32> {
    let removed = down(&args.run.open(runs)?, args.force, 16).await?;
    if args.out.json {
        print_json(&removed)?;
    }
    Ok(if removed.remaining.is_empty() { 0 } else { 1 })
}

/// What `down` removed (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Removed {
    pub run_id: String,
    pub containers: usize,
    pub network: String,
    pub volumes: Vec<String>,
    /// What could not be removed because its host could not be reached.
    pub remaining: Vec<Remaining>,
}

/// Objects left on a host that could not be reached.
#[derive(Clone, Debug, Serialize)]
pub struct Remaining {
    pub host: String,
    /// Containers, the network, volumes: by name.
    pub objects: Vec<String>,
    pub reason: String,
}

/// Removes the run's containers, network and volumes on real engines.
pub async fn down(run: &RunDir, force: bool, per_host: usize) -> anyhow::Result<Removed> {
    down_with(&Connector::Docker, run, force, per_host).await
}

/// Removes the run's containers, network and volumes on the hosts `connector` reaches.
pub async fn down_with(
    connector: &Connector,
    run: &RunDir,
    force: bool,
    per_host: usize,
) -> anyhow::Result<Removed> {
    let live = LiveRun::load_with(connector, run).await?;
    let (hosts, states) = (&live.hosts, &live.states);
    if !force {
        let extracted: std::collections::BTreeSet<String> = extract::read_index(run)
            .map(|i| {
                i.containers
                    .into_iter()
                    .filter(|c| c.state != crate::engine::ContainerState::Running)
                    .map(|c| c.name)
                    .collect()
            })
            .unwrap_or_default();
        let run_containers: Vec<&String> = live
            .manifest
            .peers
            .iter()
            .chain(std::iter::once(&live.manifest.coordinator))
            .map(|p| &p.name)
            .filter(|n| states.contains_key(*n))
            .collect();
        let mut running: Vec<&&String> =
            run_containers.iter().filter(|n| !live.is_done(n)).collect();
        running.sort();
        if let Some(first) = running.first() {
            return Err(bad_input(format!(
                "run {} still has {} containers running (e.g. {first}); `launcher wait --run {}`, then `launcher extract`, or pass --force to stop them and lose their reports",
                run.id,
                running.len(),
                run.id
            )));
        }
        let not_extracted: Vec<&&String> = run_containers
            .iter()
            .filter(|n| !extracted.contains(**n))
            .collect();
        if let Some(first) = not_extracted.first() {
            return Err(bad_input(format!(
                "run {} has {} containers not extracted since they exited (e.g. {first}); run `launcher extract --run {}` first, or pass --force to lose them",
                run.id,
                not_extracted.len(),
                run.id
            )));
        }
    }
    let items: Vec<(usize, String)> = states.iter().map(|(n, (h, _))| (*h, n.clone())).collect();
    let count = items.len();
    let results = tasks::for_each_on_hosts("down", items, per_host, |h, name: String| {
        let host = &hosts[h];
        async move {
            gone_is_fine(retry(|| host.engine.remove_container(&name)).await)
                .with_context(|| format!("removing {name} on host `{}`", host.name()))
        }
    })
    .await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|((_, n), r)| r.err().map(|e| format!("  {n}: {e:#}")))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "could not remove {} containers:\n{}\nRe-run `launcher down` to retry",
            failed.len(),
            failed.join("\n")
        );
    }
    let network = network_name(&run.id);
    // The overlay lives on the manager; it goes once the manager can be reached.
    let reachable: Vec<Host> = live.reachable().cloned().collect();
    // With a host lost, the overlay may still have its containers attached: the manager
    // refuses (409) until they are gone, and the network remains for a later down.
    let mut network_kept = None;
    if let Ok(manager) = crate::cluster::host::manager(&reachable) {
        match crate::cluster::network::remove_network(manager, &network).await {
            Ok(()) => {}
            // 409 or 403 ("has active endpoints"), whatever the engine's version says.
            Err(why) if !live.lost.is_empty() => {
                network_kept = Some((manager.name().to_owned(), why.to_string()));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "removing network {network} on host `{}`",
                    manager.name()
                )))
            }
        }
    }
    let mut volumes = vec![
        reports_volume(&run.id),
        secrets_volume(&run.id),
        coordinator_volume(&run.id),
    ];
    // Only a backend with a secret has its volume, so only then is it named.
    if has_backend_secret(&live.manifest.backend) {
        volumes.push(backend_secret_volume(&run.id));
    }
    let removals = reachable.iter().map(|h| {
        let volumes = &volumes;
        async move {
            for volume in volumes {
                gone_is_fine(retry(|| h.engine.remove_volume(volume)).await)
                    .with_context(|| format!("removing volume {volume} on host `{}`", h.name()))?;
            }
            anyhow::Ok(())
        }
    });
    futures_util::future::join_all(removals)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let mut remaining: Vec<Remaining> = live
        .lost
        .iter()
        .map(|l| {
            let m = &live.manifest;
            let mut objects: Vec<String> = m
                .peers
                .iter()
                .chain(std::iter::once(&m.coordinator))
                .filter(|p| p.host == l.name)
                .map(|p| p.name.clone())
                .collect();
            if m.coordinator.host == l.name {
                objects.push(network.clone());
            }
            objects.extend(volumes.iter().cloned());
            Remaining {
                host: l.name.clone(),
                objects,
                reason: l.reason.clone(),
            }
        })
        .collect();
    if let Some((host, why)) = network_kept {
        remaining.push(Remaining {
            host,
            objects: vec![network.clone()],
            reason: format!("the network still has containers of a lost host attached: {why}"),
        });
    }
    tracing::info!(
        "down: removed {count} containers{} and volumes {} on the hosts that answered",
        if remaining.iter().any(|r| r.objects.contains(&network)) {
            String::new()
        } else {
            format!(", network {network}")
        },
        volumes.join(", ")
    );
    for r in &remaining {
        tracing::warn!(
            "down: host `{}` could not be reached; {} objects of the run remain there ({}{}). Run `launcher down --run {}` again when it is back. {}",
            r.host,
            r.objects.len(),
            r.objects.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if r.objects.len() > 3 { ", …" } else { "" },
            run.id,
            r.reason
        );
    }
    Ok(Removed {
        run_id: run.id.clone(),
        containers: count,
        network,
        volumes,
        remaining,
    })
}
