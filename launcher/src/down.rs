//! `launcher down`: remove a run's containers and network.
//!
//! Refuses while the run has containers that were not extracted, unless `--force`:
//! removing a container loses its report.

use crate::error::bad_input;
use crate::live::LiveRun;
use crate::rundir::RunDir;
use crate::{extract, network, tasks};
use anyhow::Context;

/// Removes a volume; one that is already gone is fine.
async fn remove_volume(docker: &bollard::Docker, name: &str) -> Result<(), bollard::errors::Error> {
    match docker
        .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
    {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}

/// Removes the run's containers and network; returns how many containers were removed.
pub async fn down(run: &RunDir, force: bool, concurrency: usize) -> anyhow::Result<usize> {
    let live = LiveRun::load(run).await?;
    let (hosts, states) = (&live.hosts, &live.states);
    if !force {
        let extracted: std::collections::BTreeSet<String> = extract::read_index(run)
            .map(|i| {
                i.containers
                    .into_iter()
                    .filter(|c| c.state != "running")
                    .map(|c| c.name)
                    .collect()
            })
            .unwrap_or_default();
        let mut running: Vec<&String> = states.keys().filter(|n| !live.is_done(n)).collect();
        running.sort();
        if !running.is_empty() {
            return Err(bad_input(format!(
                "run {} still has {} containers running (e.g. {}); `launcher wait --run {}`, then `launcher extract`, or pass --force to stop them and lose their reports",
                run.id,
                running.len(),
                running[0],
                run.id
            )));
        }
        let not_extracted: Vec<&String> =
            states.keys().filter(|n| !extracted.contains(*n)).collect();
        if !not_extracted.is_empty() {
            return Err(bad_input(format!(
                "run {} has {} containers not extracted since they exited (e.g. {}); run `launcher extract --run {}` first, or pass --force to lose them",
                run.id,
                not_extracted.len(),
                not_extracted[0],
                run.id
            )));
        }
    }
    let names: Vec<(String, usize)> = states.iter().map(|(n, (h, _))| (n.clone(), *h)).collect();
    let count = names.len();
    let results = tasks::for_each("down", names, concurrency, |(name, h): (String, usize)| {
        let docker = &hosts[h].docker;
        async move {
            let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                .force(true)
                .build();
            match tasks::retry(|| docker.remove_container(&name, Some(opts.clone()))).await {
                Ok(()) => Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(()),
                Err(e) => Err(anyhow::Error::new(e).context(format!("removing {name}"))),
            }
        }
    })
    .await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|((n, _), r)| r.err().map(|e| format!("  {n}: {e:#}")))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "could not remove {} containers:\n{}\nRe-run `launcher down` to retry",
            failed.len(),
            failed.join("\n")
        );
    }
    let manager = crate::host::manager(hosts);
    match manager
        .docker
        .remove_network(&network::network_name(&run.id))
        .await
    {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => anyhow::bail!("removing network {}: {e}", network::network_name(&run.id)),
    }
    let volumes = [
        crate::spawn::reports_volume(&run.id),
        crate::spawn::secrets_volume(&run.id),
    ];
    let removals = hosts.iter().map(|h| {
        let volumes = &volumes;
        async move {
            for volume in volumes {
                remove_volume(&h.docker, volume)
                    .await
                    .with_context(|| format!("removing volume {volume} on host {}", h.name()))?;
            }
            anyhow::Ok(())
        }
    });
    for r in futures_util::future::join_all(removals).await {
        r?;
    }
    eprintln!(
        "down: removed {count} containers, network {} and volumes {}",
        network::network_name(&run.id),
        volumes.join(", ")
    );
    Ok(count)
}
