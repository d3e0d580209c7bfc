//! `launcher status`: the run's containers by state, from Docker, and the peers by
//! state, from the coordinator's status API.
//!
//! It only reads, so it does not wait long for anyone: a host that has not answered
//! within the patience given (busy or frozen, which look alike from outside) is listed
//! with the hosts that could not be reached, and the others are shown as they are.

use crate::cluster::host::Connector;
use crate::cmd::{print_json, JsonArg, RunArg};
use crate::engine::labels;
use crate::run::coordinator::coordinator_api;
use crate::run::dir::RunDir;
use crate::run::live::LiveRun;
use cmesh_common::protocol::StatusReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArg,
    #[command(flatten)]
    pub out: JsonArg,
    /// How long to wait for each host (and the coordinator) to answer.
    #[arg(long, value_parser = cmesh_common::parse::duration, default_value = "8s")]
    pub host_timeout: Duration,
}

/// Shows the status; exit 1 if a host did not answer.
pub async fn main(runs: &std::path::Path, args: Args) -> anyhow::Result<i32> {
    let s = status(&args.run.open(runs)?, args.host_timeout).await?;
    if args.out.json {
        print_json(&s)?;
    } else {
        print!("{}", render(&s));
    }
    Ok(if s.unreachable_hosts.is_empty() { 0 } else { 1 })
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub run_id: String,
    /// Docker state → number of containers, per role.
    pub containers: BTreeMap<String, BTreeMap<String, usize>>,
    /// Per host: peers placed there (from the manifest) and its peers by Docker state.
    pub hosts: BTreeMap<String, HostStatus>,
    /// Containers in the manifest that Docker does not have.
    pub missing: Vec<String>,
    /// Hosts that could not be reached, with the reason: their containers are unknown.
    pub unreachable_hosts: Vec<crate::cluster::host::LostHost>,
    /// The coordinator's view, if it could be asked.
    pub coordinator: Option<StatusReport>,
    /// Why the coordinator could not be asked.
    pub coordinator_error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct HostStatus {
    pub placed: usize,
    pub peers: BTreeMap<String, usize>,
}

/// Gathers the status of a run, waiting at most `patience` for each host, and as long
/// again for the coordinator.
pub async fn status(run: &RunDir, patience: Duration) -> anyhow::Result<Status> {
    let live = LiveRun::load_within(&Connector::Docker, run, Some(patience)).await?;
    let (manifest, hosts, states) = (&live.manifest, &live.hosts, &live.states);
    let mut containers: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (name, _) in live.containers() {
        let state = states[&name].1;
        let role = if name == manifest.coordinator.name {
            labels::ROLE_COORDINATOR
        } else {
            labels::ROLE_PEER
        };
        *containers
            .entry(role.into())
            .or_default()
            .entry(state.to_string())
            .or_default() += 1;
    }
    let mut per_host: BTreeMap<String, HostStatus> = BTreeMap::new();
    for p in &manifest.peers {
        let h = per_host.entry(p.host.clone()).or_default();
        h.placed += 1;
        if let Some((_, state)) = states.get(&p.name) {
            *h.peers.entry(state.to_string()).or_default() += 1;
        }
    }
    let missing = manifest
        .peers
        .iter()
        .chain(std::iter::once(&manifest.coordinator))
        .filter(|p| !states.contains_key(&p.name) && !live.is_lost(&p.host))
        .map(|p| p.name.clone())
        .collect();
    let asked = match crate::cluster::host::manager(hosts) {
        Ok(manager) => tokio::time::timeout(
            patience,
            ask_coordinator(manager, run, &manifest.coordinator.name),
        )
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the coordinator has not answered within {:.0} s",
                patience.as_secs_f64()
            ))
        }),
        Err(e) => Err(e),
    };
    let (coordinator, coordinator_error) = match asked {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Ok(Status {
        run_id: run.id.clone(),
        containers,
        hosts: per_host,
        missing,
        unreachable_hosts: live.lost.clone(),
        coordinator,
        coordinator_error,
    })
}

async fn ask_coordinator(
    host: &crate::cluster::host::Host,
    run: &RunDir,
    name: &str,
) -> anyhow::Result<StatusReport> {
    let (base, token) = coordinator_api(host, run, name).await?;
    let report = reqwest::Client::new()
        .get(format!("{base}/status"))
        .header(cmesh_common::token::HEADER, token)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(report)
}

/// The status as a table.
pub fn render(s: &Status) -> String {
    let mut out = format!("run {}\n\ncontainers (Docker):\n", s.run_id);
    for (role, states) in &s.containers {
        let parts: Vec<String> = states.iter().map(|(st, n)| format!("{n} {st}")).collect();
        out.push_str(&format!("  {role:<12} {}\n", parts.join(", ")));
    }
    if !s.missing.is_empty() {
        out.push_str(&format!(
            "  missing      {} ({})\n",
            s.missing.len(),
            s.missing.join(", ")
        ));
    }
    for l in &s.unreachable_hosts {
        out.push_str(&format!("  unreachable  host {}: {}\n", l.name, l.reason));
    }
    out.push_str("\nhosts (peers placed: by state):\n");
    for (host, h) in &s.hosts {
        let parts: Vec<String> = h.peers.iter().map(|(st, n)| format!("{n} {st}")).collect();
        out.push_str(&format!(
            "  {host:<12} {}: {}\n",
            h.placed,
            parts.join(", ")
        ));
    }
    out.push_str("\npeers (coordinator):\n");
    match (&s.coordinator, &s.coordinator_error) {
        (Some(c), _) => {
            out.push_str(&format!("  phase        {:?}\n", c.phase));
            for (state, n) in c.counts.iter().filter(|(_, n)| **n > 0) {
                out.push_str(&format!("  {:<12} {n}\n", state.to_string()));
            }
        }
        (None, Some(e)) => out.push_str(&format!("  unavailable: {e}\n")),
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_placement_per_host() {
        let s = Status {
            run_id: "r".into(),
            containers: BTreeMap::from([(
                "peer".to_owned(),
                BTreeMap::from([("running".to_owned(), 3)]),
            )]),
            hosts: BTreeMap::from([
                (
                    "lab-1".to_owned(),
                    HostStatus {
                        placed: 2,
                        peers: BTreeMap::from([("running".to_owned(), 2)]),
                    },
                ),
                (
                    "lab-2".to_owned(),
                    HostStatus {
                        placed: 2,
                        peers: BTreeMap::from([
                            ("running".to_owned(), 1),
                            ("exited".to_owned(), 1),
                        ]),
                    },
                ),
            ]),
            missing: vec![],
            unreachable_hosts: vec![crate::cluster::host::LostHost {
                name: "lab-3".into(),
                reason: "ssh: connection timed out".into(),
                bad_input: false,
            }],
            coordinator: None,
            coordinator_error: Some("the coordinator is not running".into()),
        };
        let t = render(&s);
        assert!(t.contains("  lab-1        2: 2 running\n"), "{t}");
        assert!(
            t.contains("unreachable  host lab-3: ssh: connection timed out"),
            "{t}"
        );
        assert!(t.contains("  lab-2        2: 1 exited, 1 running\n"), "{t}");
        assert!(
            t.contains("unavailable: the coordinator is not running"),
            "{t}"
        );
    }
}
