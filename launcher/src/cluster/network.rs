//! Overlay networks: sized for a run, on a free subnet, created idempotently.
//!
//! The network is attachable (plain containers join it) and its subnet is sized for the
//! run: peers + coordinator + one address per host + network, gateway and broadcast, in
//! the smallest prefix from /24 to /16 that fits. A run that fits no /16 is refused before
//! anything is created.

use crate::cluster::host::Host;
use crate::engine::retry::retry;
use crate::engine::{EngineError, NetworkDriver, NetworkSpec};
use anyhow::Context;
use cmesh_common::exit::bad_input;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// An IPv4 prefix, e.g. `10.120.0.0/22`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let bad = || format!("`{s}` is not an IPv4 subnet like 10.120.0.0/22");
        let (ip, p) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("`{s}`: use a prefix between /8 and /30"));
        }
        Ok(Subnet { base, prefix }.normalized())
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    fn normalized(self) -> Subnet {
        Subnet {
            base: Ipv4Addr::from(u32::from(self.base) & self.mask()),
            prefix: self.prefix,
        }
    }

    /// Addresses containers can use (all but network, gateway and broadcast).
    pub fn usable(self) -> u64 {
        (1u64 << (32 - self.prefix)) - 3
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        let prefix = self.prefix.min(other.prefix);
        let mask = u32::MAX << (32 - prefix);
        u32::from(self.base) & mask == u32::from(other.base) & mask
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Addresses a run needs on its network.
pub fn addresses_needed(peers: usize, hosts: usize) -> u64 {
    peers as u64 + 1 + hosts as u64
}

/// The smallest prefix (/24 to /16) that fits the run, or a bad-input error.
pub fn prefix_for(peers: usize, hosts: usize) -> anyhow::Result<u8> {
    let need = addresses_needed(peers, hosts);
    (16..=24u8)
        .rev()
        .find(|&p| Subnet { base: Ipv4Addr::new(10, 0, 0, 0), prefix: p }.usable() >= need)
        .ok_or_else(|| {
            bad_input(format!(
                "{peers} peers need {need} addresses, more than an overlay /16 holds (65533); split the run"
            ))
        })
}

/// Checks that a subnet given with --subnet fits the run.
pub fn check_fits(subnet: Subnet, peers: usize, hosts: usize) -> anyhow::Result<()> {
    let need = addresses_needed(peers, hosts);
    if subnet.usable() < need {
        return Err(bad_input(format!(
            "subnet {subnet} has {} usable addresses, but {peers} peers need {need} (peers, coordinator, one per host); use a larger subnet or fewer peers",
            subnet.usable()
        )));
    }
    Ok(())
}

/// Picks `10.X.0.0/prefix` not overlapping `taken`, starting from a block derived from
/// the run id so concurrent runs rarely collide.
pub fn pick_subnet(run: &str, prefix: u8, taken: &[Subnet]) -> anyhow::Result<Subnet> {
    let start = run
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % 150;
    for i in 0..150 {
        let candidate = Subnet {
            base: Ipv4Addr::new(10, (100 + (start + i) % 150) as u8, 0, 0),
            prefix,
        };
        if !taken.iter().any(|t| t.overlaps(candidate)) {
            return Ok(candidate);
        }
    }
    anyhow::bail!("no free 10.100-249.0.0/16 block for the run's network; pass --subnet")
}

/// Subnets of the networks on `host`.
pub async fn taken_subnets(host: &Host) -> anyhow::Result<Vec<Subnet>> {
    let subnets = retry(|| host.engine.list_network_subnets())
        .await
        .with_context(|| format!("listing networks on host {}", host.name()))?;
    Ok(subnets
        .iter()
        .filter_map(|s| Subnet::parse(s).ok())
        .collect())
}

/// Creates attachable overlay network `name` with `labels` on the manager if it does not
/// exist; returns its id and subnet (an existing network keeps its own).
pub async fn ensure_network(
    manager: &Host,
    name: &str,
    labels: BTreeMap<String, String>,
    subnet: Subnet,
    encrypted: bool,
) -> anyhow::Result<(String, Subnet)> {
    let name = name.to_owned();
    let spec = NetworkSpec {
        name: name.clone(),
        driver: NetworkDriver::AttachableOverlay,
        subnet: subnet.to_string(),
        labels,
        encrypted,
    };
    // A network created by a spawn that raced this one (409) is found on the next pass.
    for _ in 0..2 {
        match retry(|| manager.engine.inspect_network(&name)).await {
            Ok(existing) => {
                let actual = existing
                    .subnets
                    .iter()
                    .find_map(|s| Subnet::parse(s).ok())
                    .unwrap_or(subnet);
                return Ok((existing.id, actual));
            }
            Err(EngineError::NotFound(_)) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "inspecting network {name} on host {}",
                    manager.name()
                )))
            }
        }
        match retry(|| manager.engine.create_network(&spec)).await {
            Ok(id) => return Ok((id, subnet)),
            Err(EngineError::Conflict(_)) => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "creating network {name} ({subnet}) on host {}",
                    manager.name()
                )))
            }
        }
    }
    anyhow::bail!("network {name} was created and removed again while spawn made it; re-run spawn")
}

/// How long [`remove_network`] waits for the engine to stop listing a removed network.
pub const REMOVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes network `name` on the manager and returns once the engine no longer has it.
///
/// Docker answers the removal of a swarm-scoped network before the node's own copy is
/// gone: `docker network ls` and inspect still show it for a while (measured: 0.25 s on
/// an idle engine, seconds under load). Waiting for it here keeps `down` honest: when it
/// says the network is removed, it is. Gone already is fine. A network still listed
/// after [`REMOVAL_WAIT`] is a [`EngineError::Timeout`].
pub async fn remove_network(manager: &Host, name: &str) -> Result<(), EngineError> {
    match retry(|| manager.engine.remove_network(name)).await {
        Ok(()) | Err(EngineError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
    loop {
        match retry(|| manager.engine.inspect_network(name)).await {
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                return Err(EngineError::Timeout(format!(
                    "network {name} is still listed {} s after its removal",
                    REMOVAL_WAIT.as_secs()
                )))
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_the_subnet_for_the_run() {
        assert_eq!(prefix_for(10, 1).unwrap(), 24);
        assert_eq!(prefix_for(251, 1).unwrap(), 24);
        assert_eq!(prefix_for(252, 1).unwrap(), 23);
        assert_eq!(prefix_for(1000, 3).unwrap(), 22);
        assert_eq!(prefix_for(65_000, 3).unwrap(), 16);
        // 65 531 peers + coordinator + 1 host = 65 533: exactly a /16's usable addresses.
        assert_eq!(prefix_for(65_531, 1).unwrap(), 16);
        let e = prefix_for(65_532, 1).unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
    }

    #[test]
    fn refuses_a_given_subnet_that_is_too_small() {
        let s = Subnet::parse("10.1.2.0/26").unwrap();
        assert!(check_fits(s, 59, 1).is_ok());
        let e = check_fits(s, 60, 1).unwrap_err();
        assert!(
            e.to_string().contains("61 usable") || e.to_string().contains("usable"),
            "{e}"
        );
        assert!(Subnet::parse("10.1.2.0").is_err());
        assert!(Subnet::parse("10.1.2.0/31").is_err());
        assert_eq!(
            Subnet::parse("10.1.2.9/24").unwrap().to_string(),
            "10.1.2.0/24"
        );
    }

    #[test]
    fn picks_a_free_block() {
        let taken = vec![Subnet::parse("10.0.0.0/8").unwrap()];
        assert!(pick_subnet("r1", 24, &taken).is_err());
        let first = pick_subnet("r1", 24, &[]).unwrap();
        let second = pick_subnet("r1", 24, &[first]).unwrap();
        assert_ne!(first, second);
        assert!(!second.overlaps(first));
        assert!(Subnet::parse("10.1.0.0/16")
            .unwrap()
            .overlaps(Subnet::parse("10.1.5.0/24").unwrap()));
        assert!(!Subnet::parse("10.1.0.0/16")
            .unwrap()
            .overlaps(Subnet::parse("10.2.0.0/24").unwrap()));
    }
}
