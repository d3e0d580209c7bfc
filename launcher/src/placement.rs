//! Where each peer goes: hosts by weight, within capacity, deterministically.

use crate::hosts::HostSpec;
use crate::run::dir::Placement;
use crate::run::names::peer_name;
use cmesh_common::exit::bad_input;
use std::collections::BTreeMap;

/// Places `peers` peers on the hosts that match `filter`, in proportion to their
/// weights (smooth weighted round-robin, so hosts interleave), never beyond a host's
/// capacity. Deterministic: the same hosts and count give the same placement.
pub fn place(
    run: &str,
    peers: usize,
    hosts: &[HostSpec],
    filter: &[(String, String)],
) -> anyhow::Result<Vec<Placement>> {
    let eligible: Vec<&HostSpec> = hosts.iter().filter(|h| h.matches(filter)).collect();
    if eligible.is_empty() {
        let f: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(bad_input(format!(
            "no host in hosts.toml matches --host-label {}",
            f.join(" ")
        )));
    }
    let capacity: usize = eligible.iter().map(|h| h.capacity).sum();
    if peers > capacity {
        return Err(bad_input(format!(
            "{peers} peers do not fit: the hosts' capacity adds up to {capacity}; raise `capacity` in hosts.toml or add hosts"
        )));
    }
    let mut used = vec![0usize; eligible.len()];
    let mut current = vec![0i64; eligible.len()];
    let mut out = Vec::with_capacity(peers);
    for i in 1..=peers {
        let open: Vec<usize> = (0..eligible.len())
            .filter(|&h| used[h] < eligible[h].capacity)
            .collect();
        let total: i64 = open.iter().map(|&h| eligible[h].weight() as i64).sum();
        for &h in &open {
            current[h] += eligible[h].weight() as i64;
        }
        let pick = *open
            .iter()
            .max_by_key(|&&h| (current[h], std::cmp::Reverse(h)))
            .expect("capacity was checked");
        current[pick] -= total;
        used[pick] += 1;
        out.push(Placement {
            name: peer_name(run, i, peers),
            host: eligible[pick].name.clone(),
            index: i as u32,
        });
    }
    Ok(out)
}

/// How many of `peers` peers the placement puts on each host (those matching `filter`).
pub fn peers_per_host(
    peers: usize,
    hosts: &[HostSpec],
    filter: &[(String, String)],
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    if peers == 0 {
        return Ok(out);
    }
    for p in place("preflight", peers, hosts, filter)? {
        *out.entry(p.host).or_default() += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::Role;

    fn host(name: &str, capacity: usize, weight: Option<u32>) -> HostSpec {
        HostSpec {
            name: name.into(),
            ssh: Some(format!("root@{name}")),
            role: Role::Worker,
            capacity,
            weight,
            labels: [("zone".to_owned(), name.to_uppercase())].into(),
            ..crate::hosts::local_default().hosts.remove(0)
        }
    }

    fn hosts_of(p: &[Placement]) -> String {
        p.iter()
            .map(|p| p.host.as_str())
            .collect::<Vec<_>>()
            .join("")
    }

    #[test]
    fn places_by_weight_within_capacity() {
        let equal = vec![
            host("a", 10, None),
            host("b", 10, None),
            host("c", 10, None),
        ];
        let p = place("r", 7, &equal, &[]).unwrap();
        assert_eq!(hosts_of(&p), "abcabca");
        assert_eq!(p[0].name, "r-peer-0001");
        assert_eq!(p[6].index, 7);
        // Weight 2:1 interleaves; a full host is skipped.
        let weighted = vec![host("a", 100, Some(2)), host("b", 100, Some(1))];
        assert_eq!(hosts_of(&place("r", 6, &weighted, &[]).unwrap()), "abaaba");
        let small = vec![host("a", 1, Some(5)), host("b", 5, Some(1))];
        assert_eq!(hosts_of(&place("r", 4, &small, &[]).unwrap()), "abbb");
        // Deterministic.
        assert_eq!(
            place("r", 30, &equal, &[]).unwrap(),
            place("r", 30, &equal, &[]).unwrap()
        );
        let e = place("r", 7, &small, &[]).unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
    }

    #[test]
    fn a_label_filter_narrows_the_hosts() {
        let hosts = vec![host("a", 10, None), host("b", 10, None)];
        let only_b = [("zone".to_owned(), "B".to_owned())];
        assert_eq!(hosts_of(&place("r", 3, &hosts, &only_b).unwrap()), "bbb");
        let e = place("r", 11, &hosts, &only_b).unwrap_err();
        assert!(e.to_string().contains("capacity adds up to 10"), "{e}");
        let none = [("zone".to_owned(), "Z".to_owned())];
        let e = place("r", 1, &hosts, &none).unwrap_err();
        assert!(e.to_string().contains("--host-label zone=Z"), "{e}");
    }
}
