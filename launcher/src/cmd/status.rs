//! `launcher status`: the run's containers by state, from Docker, and the peers by
//! state, from the coordinator's status API.
//!
//! It only reads, so it does not wait long for anyone: a host that has not answered
//! within the patience given (busy or frozen, which look alike from outside) is listed
//! with the hosts that could not be reached, and the others are shown as they are.

use crate::engine::host::Connector;
use crate::engine::labels;
use crate::run::dir::RunDir;
use crate::run::live::LiveRun;
use crate::run::names::COORDINATOR_PORT;
use cmesh_common::protocol::StatusReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

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
    pub unreachable_hosts: Vec<crate::engine::host::LostHost>,
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
    let asked = match crate::engine::host::manager(hosts) {
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
    host: &crate::engine::host::Host,
    run: &RunDir,
    name: &str,
) -> anyhow::Result<StatusReport> {
    let (base, token) = coordinator_api(host, run, name).await?;
    let report = reqwest::Client::new()
        .get(format!("{base}/status"))
        .header(cmesh_common::token::HEADER, token)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(report)
}

/// The running coordinator's API, `http://ADDR` (through the SSH master when the manager
/// is remote), and the admin token to call it with (it opens every route).
pub async fn coordinator_api(
    host: &crate::engine::host::Host,
    run: &RunDir,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let info = crate::engine::retry::retry(|| host.engine.inspect_container(name)).await?;
    if info.state() != crate::engine::ContainerState::Running {
        anyhow::bail!(
            "the coordinator is not running (its final status is in extract/…/report.tar.gz)"
        );
    }
    let port = *info
        .published
        .get(&COORDINATOR_PORT)
        .ok_or_else(|| anyhow::anyhow!("the coordinator publishes no port"))?;
    // Read only: this must never make a token (RunDir::admin_token would, if missing).
    // A run spawned before there were two tokens has only the peers' one.
    let admin = run.admin_token_path();
    let path = if admin.exists() {
        admin
    } else {
        run.token_path()
    };
    let token = cmesh_common::token::read_token_file(&path)?;
    // On a remote manager the port is on its loopback: reach it through the SSH master.
    let addr = host.forward_tcp(port).await?;
    Ok((format!("http://{addr}"), token))
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
            unreachable_hosts: vec![crate::engine::host::LostHost {
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
