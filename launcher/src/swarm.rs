//! The Docker Swarm that spans the hosts: it carries the run's overlay network.
//!
//! [`ensure`] is idempotent: it initializes a swarm on the manager if it has none, joins
//! every worker through the worker's own Docker API with the manager's worker token, and
//! labels each node `io.cmesh.host=<name>` plus the host's labels from hosts.toml.
//! [`leave`] undoes it (`launcher swarm leave`).

use crate::error::bad_input;
use crate::host::{self, Host};
use anyhow::Context;
use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::{LeaveSwarmOptionsBuilder, UpdateNodeOptionsBuilder};

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
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    /// `inactive`, `pending`, `active`, `error`, `locked`.
    pub state: String,
    pub node_id: String,
    pub node_addr: String,
    pub is_manager: bool,
}

pub async fn node_state(h: &Host) -> anyhow::Result<NodeState> {
    let info = h
        .docker
        .info()
        .await
        .with_context(|| format!("asking host `{}` for its swarm state", h.name()))?;
    let swarm = info.swarm.unwrap_or_default();
    Ok(NodeState {
        state: swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_default(),
        node_id: swarm.node_id.unwrap_or_default(),
        node_addr: swarm.node_addr.unwrap_or_default(),
        is_manager: swarm.control_available.unwrap_or(false),
    })
}

fn advertise_addr(h: &Host) -> anyhow::Result<String> {
    h.spec
        .swarm_addr()
        .or_else(|| (!h.spec.is_remote()).then(default_route_addr).flatten())
        .ok_or_else(|| {
            bad_input(format!(
                "cannot tell which address host `{}` should advertise for the swarm; set advertise_addr in hosts.toml",
                h.name()
            ))
        })
}

/// Initializes a swarm on the manager if it is not in one. Returns true if it did.
pub async fn ensure_manager(manager: &Host) -> anyhow::Result<bool> {
    if node_state(manager).await?.state == "active" {
        return Ok(false);
    }
    let addr = advertise_addr(manager)?;
    let init = manager
        .docker
        .init_swarm(SwarmInitRequest {
            listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
            advertise_addr: Some(addr.clone()),
            ..Default::default()
        })
        .await;
    if let Err(e) = init {
        // Another launcher may have initialized it a moment ago: that is success too.
        if node_state(manager).await?.state == "active" {
            return Ok(false);
        }
        return Err(anyhow::Error::new(e).context(format!(
            "docker swarm init on host {} (advertising {addr})",
            manager.name()
        )));
    }
    eprintln!("swarm: initialized on host {} ({addr})", manager.name());
    Ok(true)
}

/// Makes the hosts one swarm: init on the manager, join the workers, label the nodes.
pub async fn ensure(hosts: &[Host]) -> anyhow::Result<()> {
    let manager = host::manager(hosts);
    ensure_manager(manager).await?;
    let swarm = manager
        .docker
        .inspect_swarm()
        .await
        .with_context(|| format!("inspecting the swarm on manager `{}`", manager.name()))?;
    let token = swarm
        .join_tokens
        .and_then(|t| t.worker)
        .context("the manager gave no worker join token")?;
    let mstate = node_state(manager).await?;
    let manager_addr = format!("{}:{SWARM_PORT}", mstate.node_addr);
    let members: Vec<String> = manager
        .docker
        .list_nodes(None)
        .await
        .context("listing the swarm's nodes")?
        .into_iter()
        .filter_map(|n| n.id)
        .collect();
    let joins = hosts.iter().filter(|h| !h.is_manager()).map(|w| {
        let (token, manager_addr, members) = (&token, &manager_addr, &members);
        async move {
            let st = node_state(w).await?;
            match st.state.as_str() {
                "active" if members.contains(&st.node_id) => return Ok(()),
                "active" | "locked" => {
                    return Err(bad_input(format!(
                        "host `{}` is in another swarm; run `docker swarm leave --force` there (or `launcher swarm leave` with its hosts file) and try again",
                        w.name()
                    )))
                }
                "pending" | "error" => {
                    // A join that never finished: start over.
                    let _ = w
                        .docker
                        .leave_swarm(Some(LeaveSwarmOptionsBuilder::default().force(true).build()))
                        .await;
                }
                _ => {}
            }
            let addr = advertise_addr(w)?;
            w.docker
                .join_swarm(SwarmJoinRequest {
                    listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
                    advertise_addr: Some(addr.clone()),
                    remote_addrs: Some(vec![manager_addr.clone()]),
                    join_token: Some(token.clone()),
                    ..Default::default()
                })
                .await
                .with_context(|| {
                    format!(
                        "host `{}` (advertising {addr}) joining the swarm at {manager_addr}: can it reach the manager on TCP {SWARM_PORT}, and UDP 4789 and 7946?",
                        w.name()
                    )
                })?;
            eprintln!("swarm: host {} joined ({addr})", w.name());
            anyhow::Ok(())
        }
    });
    for r in futures_util::future::join_all(joins).await {
        r?;
    }
    for h in hosts {
        label_node(manager, h).await?;
    }
    Ok(())
}

/// Sets the node labels of host `h`: `io.cmesh.host=<name>` and its hosts.toml labels.
/// Another launcher may update the same node at the same moment ("update out of
/// sequence"): then read it again and retry.
async fn label_node(manager: &Host, h: &Host) -> anyhow::Result<()> {
    let id = node_state(h).await?.node_id;
    let mut attempt = 0;
    loop {
        let node = manager
            .docker
            .inspect_node(&id)
            .await
            .with_context(|| format!("inspecting the swarm node of host `{}`", h.name()))?;
        let mut spec = node.spec.unwrap_or_default();
        let labels = spec.labels.clone().unwrap_or_default();
        let mut want = labels.clone();
        want.insert(crate::labels::HOST.to_owned(), h.name().to_owned());
        for (k, v) in &h.spec.labels {
            want.insert(k.clone(), v.clone());
        }
        if want == labels {
            return Ok(());
        }
        spec.labels = Some(want);
        let version = node.version.and_then(|v| v.index).unwrap_or(0);
        let updated = manager
            .docker
            .update_node(
                &id,
                spec,
                UpdateNodeOptionsBuilder::default()
                    .version(version as i64)
                    .build(),
            )
            .await;
        match updated {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 10 && e.to_string().contains("out of sequence") => attempt += 1,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("labelling the swarm node of host `{}`", h.name())))
            }
        }
    }
}

/// Every worker leaves the swarm, then the manager. Hosts not in a swarm are skipped.
pub async fn leave(hosts: &[Host]) -> anyhow::Result<()> {
    let manager = host::manager(hosts);
    let order = hosts
        .iter()
        .filter(|h| !h.is_manager())
        .chain(std::iter::once(manager));
    for h in order {
        if node_state(h).await?.state == "inactive" {
            eprintln!("swarm: host {} is not in a swarm", h.name());
            continue;
        }
        h.docker
            .leave_swarm(Some(
                LeaveSwarmOptionsBuilder::default().force(true).build(),
            ))
            .await
            .with_context(|| format!("host `{}` leaving the swarm", h.name()))?;
        eprintln!("swarm: host {} left", h.name());
    }
    Ok(())
}
