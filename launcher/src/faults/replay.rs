//! `launcher run --like RUN`: RUN's plan again, with the `launcher chaos` actions RUN
//! received live written into it as `[[fault]]`s at the offsets they came at. The peers
//! and `wait` then carry them out as they carry out any planned fault, at the same
//! offsets from the common start, and the new run's timeline names them `plan#N`.
//!
//! Each action acts on the peers it acted on in RUN, by number (not by its selector
//! again: a `10%` or a glob picks the same peers, but a number says so). A partition's
//! groups become `[groups]` named `chaosN-GROUP`. The plan's own kills and pauses, which
//! `wait` records beside the chaos actions, are in the plan already and are left out.

use crate::faults::chaos::ChaosRecord;
use crate::run::dir::RunManifest;
use cmesh_common::faults::{Action, FaultSpec, Selector};
use cmesh_common::plan::PlanSpec;
use std::collections::{BTreeMap, BTreeSet};

/// 0-based peer numbers as a selector: `1-5,7` (1-based ranges).
fn ranges(indices: &BTreeSet<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut it = indices.iter().map(|i| i + 1).peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// RUN's plan with its chaos actions as faults; how many were added.
pub fn like(manifest: &RunManifest, records: &[ChaosRecord]) -> anyhow::Result<(PlanSpec, usize)> {
    let mut peers = manifest.peers.clone();
    peers.sort_by_key(|p| p.index);
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut spec = manifest.spec.clone();
    let mut added = 0;
    for r in records.iter().filter(|r| r.action.id.starts_with("chaos#")) {
        let a = &r.action;
        let f = &a.fault;
        let why = |e: String| anyhow::anyhow!("{} of run {}: {e}", a.id, manifest.run_id);
        let acted: BTreeSet<usize> = a
            .peers
            .iter()
            .filter(|p| !r.errors.contains_key(*p))
            .filter_map(|p| index.get(p.as_str()).copied())
            .collect();
        if acted.is_empty() {
            tracing::warn!("{}: it acted on no peer; not replayed", a.id);
            continue;
        }
        let mut spec_fault = FaultSpec {
            at: format!("{}ms", f.at_ms),
            duration: f.for_ms.map(|ms| format!("{ms}ms")),
            peers: ranges(&acted),
            action: f.action.name().into(),
            ..FaultSpec::default()
        };
        if let Some(to) = &f.to {
            spec_fault.to = Some(ranges(&to.resolve(&names, &a.groups, a.seed).map_err(why)?));
        }
        match &f.action {
            Action::Delay { ms, jitter_ms } => {
                spec_fault.ms = Some(*ms);
                spec_fault.jitter_ms = (*jitter_ms > 0).then_some(*jitter_ms);
            }
            Action::Loss { percent }
            | Action::Duplicate { percent }
            | Action::Corrupt { percent }
            | Action::Reorder { percent } => spec_fault.percent = Some(*percent),
            Action::Rate { kbit } => spec_fault.kbit = Some(*kbit),
            Action::Partition { groups } => {
                let mut named = Vec::new();
                for g in groups {
                    let members = Selector::Group(g.clone())
                        .resolve(&names, &a.groups, a.seed)
                        .map_err(why)?;
                    let name = format!("chaos{}-{g}", a.seq);
                    spec.groups.insert(name.clone(), ranges(&members));
                    named.push(name);
                }
                spec_fault.groups = Some(named);
                spec_fault.peers = "all".into();
            }
            Action::Mobility { every_ms } => spec_fault.every = Some(format!("{every_ms}ms")),
            Action::Kill | Action::Restart | Action::Pause => {}
        }
        spec.faults.push(spec_fault);
        added += 1;
    }
    Ok((spec, added))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_compact_ranges() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<usize>>();
        assert_eq!(ranges(&set(&[0, 1, 2, 4, 6, 7])), "1-3,5,7-8");
        assert_eq!(ranges(&set(&[9])), "10");
        assert_eq!(
            Selector::parse("1-3,5,7-8").unwrap(),
            Selector::Ranges(vec![(1, 3), (5, 5), (7, 8)])
        );
    }

    #[test]
    fn chaos_actions_become_faults_at_their_offsets_on_the_same_peers() {
        let peers: Vec<serde_json::Value> = (1..=6)
            .map(|i| serde_json::json!({"name": format!("r-peer-000{i}"), "host": "local", "index": i}))
            .collect();
        let manifest: RunManifest = serde_json::from_value(serde_json::json!({
            "schema": "cmesh.run-manifest", "schema_version": 1, "run_id": "r",
            "created_at": "2026-12-04T20:00:00Z",
            "hosts": [{"name": "local", "docker_socket": "/var/run/docker.sock", "role": "manager", "capacity": 10}],
            "network": {"name": "cmesh-r", "id": "x", "subnet": "10.100.0.0/24"},
            "images": {"base": {"tag": "b:1", "id": "b"}, "peer": {"tag": "p:1", "id": "p"}, "coordinator": {"tag": "c:1", "id": "c"}},
            "spec": {"peers": 6, "duration_ms": 30_000},
            "coordinator": {"name": "r-coordinator", "host": "local", "index": 0},
            "peers": peers,
        }))
        .unwrap();
        let record =
            |json: serde_json::Value| -> ChaosRecord { serde_json::from_value(json).unwrap() };
        let records = [
            record(serde_json::json!({
                "action": {"seq": 1, "id": "chaos#1", "at_unix_ms": 5,
                    "fault": {"at_ms": 4200, "for_ms": 3000, "peers": "all", "to": null,
                              "action": "partition", "groups": ["a", "b"]},
                    "groups": {"a": {"ranges": [[1, 3]]}, "b": {"ranges": [[4, 6]]}},
                    "seed": 1, "peers": ["r-peer-0001", "r-peer-0002", "r-peer-0003", "r-peer-0004", "r-peer-0005", "r-peer-0006"]},
                "by": "peers"
            })),
            record(serde_json::json!({
                "action": {"seq": 2, "id": "plan#1", "at_unix_ms": 6,
                    "fault": {"at_ms": 5000, "for_ms": null, "peers": "all", "to": null, "action": "kill"},
                    "groups": {}, "seed": 1, "peers": ["r-peer-0006"]},
                "by": "docker"
            })),
            record(serde_json::json!({
                "action": {"seq": 3, "id": "chaos#2", "at_unix_ms": 7,
                    "fault": {"at_ms": 9100, "for_ms": 2000, "peers": {"percent": 50.0}, "to": null,
                              "action": "delay", "ms": 80, "jitter_ms": 0},
                    "groups": {}, "seed": 1, "peers": ["r-peer-0002", "r-peer-0005"]},
                "by": "peers"
            })),
        ];
        let (spec, added) = like(&manifest, &records).unwrap();
        assert_eq!(added, 2, "the plan's own kill is in the plan already");
        let f = &spec.faults;
        assert_eq!(
            (f[0].at.as_str(), f[0].duration.as_deref()),
            ("4200ms", Some("3000ms"))
        );
        assert_eq!(f[0].action, "partition");
        assert_eq!(
            f[0].groups.as_deref(),
            Some(&["chaos1-a".to_string(), "chaos1-b".to_string()][..])
        );
        assert_eq!(spec.groups["chaos1-a"], "1-3");
        assert_eq!(spec.groups["chaos1-b"], "4-6");
        assert_eq!(
            (f[1].at.as_str(), f[1].peers.as_str(), f[1].ms),
            ("9100ms", "2,5", Some(80))
        );
        assert!(spec.checked_faults().is_ok(), "{:?}", spec.checked_faults());
    }
}
