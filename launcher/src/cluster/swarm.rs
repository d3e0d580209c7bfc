//! The Docker Swarm that spans the hosts: it carries the run's overlay network.
//!
//! [`ensure`] is idempotent: it initializes a swarm on the manager if it has none, joins
//! every worker through the worker's own Docker API with the manager's worker token, and
//! labels each node `io.cmesh.host=<name>` plus the host's labels from hosts.toml.
//! [`leave`] undoes it (`launcher swarm leave`).

use crate::cluster::host::{self, Host};
use crate::engine::retry::retry;
use crate::engine::{EngineError, NodeState, SwarmJoin, SwarmState};
use anyhow::Context;
use cmesh_common::exit::bad_input;

/// The swarm's control-plane port.
pub const SWARM_PORT: u16 = 2377;

/// The address of this machine's default-route interface (for `swarm init`).
fn default_route_addr() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"00000000"))?
        .first()?
        .to_string();
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &iface])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let inet = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(inet.split('/').next()?.to_owned())
}

/// A host's swarm state as its engine reports it.
pub async fn node_state(h: &Host) -> anyhow::Result<NodeState> {
    Ok(retry(|| h.engine.info())
        .await
        .with_context(|| format!("asking host `{}` for its swarm state", h.name()))?
        .swarm)
}

/// The address `h` advertises when it makes or joins a swarm: hosts.toml's
/// `advertise_addr`, the host part of `ssh`, or this machine's default-route address.
pub fn configured_addr(h: &Host) -> Option<String> {
    h.spec
        .swarm_addr()
        .or_else(|| (!h.spec.is_remote()).then(default_route_addr).flatten())
}

fn advertise_addr(h: &Host) -> anyhow::Result<String> {
    configured_addr(h).ok_or_else(|| {
        bad_input(format!(
            "cannot tell which address host `{}` should advertise for the swarm; set advertise_addr in hosts.toml",
            h.name()
        ))
    })
}

/// What to say when the swarm `host` is in advertises `swarm_addr` and hosts.toml says
/// `configured`.
pub fn advertises_other(host: &str, swarm_addr: &str, configured: &str) -> String {
    format!(
        "the swarm host `{host}` is in advertises {swarm_addr}, but hosts.toml says {configured}; the swarm keeps its address. To use {configured}: `launcher swarm leave --hosts FILE` (when no run uses the swarm), then spawn again"
    )
}

/// Initializes a swarm on the manager if it is not in one. Returns true if it did. A
/// swarm that exists keeps its address: if hosts.toml says another, a warning says so.
pub async fn ensure_manager(manager: &Host) -> anyhow::Result<bool> {
    let state = node_state(manager).await?;
    if state.state == SwarmState::Active {
        if let Some(configured) = configured_addr(manager).filter(|c| *c != state.node_addr) {
            let said = advertises_other(manager.name(), &state.node_addr, &configured);
            tracing::warn!("{said}");
        }
        return Ok(false);
    }
    let addr = advertise_addr(manager)?;
    let init = manager
        .engine
        .swarm_init(&SwarmJoin {
            listen_addr: format!("0.0.0.0:{SWARM_PORT}"),
            advertise_addr: addr.clone(),
            remote_addrs: Vec::new(),
            join_token: String::new(),
        })
        .await;
    if let Err(e) = init {
        // Another launcher may have initialized it a moment ago: that is success too.
        if node_state(manager).await?.state == SwarmState::Active {
            return Ok(false);
        }
        return Err(anyhow::Error::new(e).context(format!(
            "docker swarm init on host {} (advertising {addr})",
            manager.name()
        )));
    }
    tracing::info!("swarm: initialized on host {} ({addr})", manager.name());
    Ok(true)
}

/// Makes the hosts one swarm: init on the manager, join the workers, label the nodes.
pub async fn ensure(hosts: &[Host]) -> anyhow::Result<()> {
    let manager = host::manager(hosts)?;
    ensure_manager(manager).await?;
    let token = retry(|| manager.engine.swarm_worker_token())
        .await
        .with_context(|| format!("inspecting the swarm on manager `{}`", manager.name()))?;
    let mstate = node_state(manager).await?;
    let manager_addr = format!("{}:{SWARM_PORT}", mstate.node_addr);
    let members: Vec<String> = retry(|| manager.engine.list_nodes())
        .await
        .context("listing the swarm's nodes")?;
    let joins = hosts.iter().filter(|h| !h.is_manager()).map(|w| {
        let (token, manager_addr, members) = (&token, &manager_addr, &members);
        async move {
            let st = node_state(w).await?;
            match st.state {
                SwarmState::Active if members.contains(&st.node_id) => return Ok(()),
                SwarmState::Active | SwarmState::Locked => {
                    return Err(bad_input(format!(
                        "host `{}` is in another swarm; run `docker swarm leave --force` there (or `launcher swarm leave` with its hosts file) and try again",
                        w.name()
                    )))
                }
                SwarmState::Pending | SwarmState::Error => {
                    // A join that never finished: start over.
                    let _ = w.engine.swarm_leave().await;
                }
                SwarmState::Inactive => {}
            }
            let addr = advertise_addr(w)?;
            w.engine
                .swarm_join(&SwarmJoin {
                    listen_addr: format!("0.0.0.0:{SWARM_PORT}"),
                    advertise_addr: addr.clone(),
                    remote_addrs: vec![manager_addr.clone()],
                    join_token: token.clone(),
                })
                .await
                .with_context(|| {
                    format!(
                        "host `{}` (advertising {addr}) joining the swarm at {manager_addr}: can it reach the manager on TCP {SWARM_PORT}, and UDP 4789 and 7946?",
                        w.name()
                    )
                })?;
            tracing::info!("swarm: host {} joined ({addr})", w.name());
            anyhow::Ok(())
        }
    });
    for r in futures_util::future::join_all(joins).await {
        r?;
    }
    // Every node at once: each has its own version, so the updates do not conflict.
    futures_util::future::join_all(hosts.iter().map(|h| label_node(manager, h)))
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// Sets the node labels of host `h`: `io.cmesh.host=<name>` and its hosts.toml labels.
/// Another launcher may update the same node at the same moment (a conflict): then read
/// it again and retry.
async fn label_node(manager: &Host, h: &Host) -> anyhow::Result<()> {
    let id = node_state(h).await?.node_id;
    let mut attempt = 0;
    loop {
        let node = retry(|| manager.engine.node_labels(&id))
            .await
            .with_context(|| format!("inspecting the swarm node of host `{}`", h.name()))?;
        let mut want = node.labels.clone();
        want.insert(crate::engine::labels::HOST.to_owned(), h.name().to_owned());
        for (k, v) in &h.spec.labels {
            want.insert(k.clone(), v.clone());
        }
        if want == node.labels {
            return Ok(());
        }
        let update = crate::engine::NodeLabels {
            version: node.version,
            labels: want,
        };
        match manager.engine.set_node_labels(&id, &update).await {
            Ok(()) => return Ok(()),
            Err(EngineError::Conflict(_)) if attempt < 10 => attempt += 1,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("labelling the swarm node of host `{}`", h.name())))
            }
        }
    }
}

/// Every worker leaves the swarm, then the manager. Hosts not in a swarm are skipped.
pub async fn leave(hosts: &[Host]) -> anyhow::Result<()> {
    let manager = host::manager(hosts)?;
    let order = hosts
        .iter()
        .filter(|h| !h.is_manager())
        .chain(std::iter::once(manager));
    for h in order {
        if node_state(h).await?.state == SwarmState::Inactive {
            tracing::info!("swarm: host {} is not in a swarm", h.name());
            continue;
        }
        h.engine
            .swarm_leave()
            .await
            .with_context(|| format!("host `{}` leaving the swarm", h.name()))?;
        tracing::info!("swarm: host {} left", h.name());
    }
    Ok(())
}
