//! A simulated lab: a [`Cluster`] of simulated hosts with their hosts file and what
//! `spawn` needs to run on them, so the launcher's commands run end to end without
//! Docker (tests, `bench/sim-scale`).

use crate::cluster::host::Connector;
use crate::engine::sim::{Behaviour, Cluster};
use std::collections::BTreeMap;
use std::time::Duration;

/// How a cmesh container behaves in a simulation: the coordinator exits `coordinator`
/// after it starts, a peer `peer(index)` after it starts and writes its report where a
/// real peer would.
pub fn behaviour(
    name: &str,
    labels: &BTreeMap<String, String>,
    coordinator: Duration,
    peer: impl Fn(u64) -> Duration,
) -> Behaviour {
    use crate::engine::labels;
    match labels.get(labels::ROLE).map(String::as_str) {
        Some(labels::ROLE_COORDINATOR) => Behaviour::Exit {
            after: coordinator,
            code: 0,
            report: None,
        },
        _ => Behaviour::Exit {
            after: peer(
                labels
                    .get(labels::INDEX)
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0),
            ),
            code: 0,
            report: Some(format!(
                "{}/report.json",
                crate::run::names::report_dir(name)
            )),
        },
    }
}

/// A simulated lab, ready to spawn on: a cluster of `hosts` hosts (the first the
/// manager), their hosts file, and stand-in peer and coordinator binaries for the image
/// stage (the cluster already has the base image).
pub struct SimLab {
    pub cluster: Cluster,
    pub hosts: crate::hosts::HostsFile,
    /// Holds the stand-in binaries.
    pub bin_dir: tempfile::TempDir,
}

impl SimLab {
    /// `hosts` simulated hosts of `capacity` peers each, on `cluster`.
    pub fn new(cluster: Cluster, hosts: usize, capacity: usize) -> anyhow::Result<SimLab> {
        cluster.add_image(&crate::cluster::images::base_tag());
        let template = crate::hosts::local_default().hosts.remove(0);
        let specs = (1..=hosts)
            .map(|i| crate::hosts::HostSpec {
                name: format!("sim-{i}"),
                role: if i == 1 {
                    crate::hosts::Role::Manager
                } else {
                    crate::hosts::Role::Worker
                },
                capacity,
                advertise_addr: Some(format!("10.250.{}.{}", i / 250, i % 250 + 1)),
                ..template.clone()
            })
            .collect();
        let bin_dir = tempfile::tempdir()?;
        for binary in ["peer", "coordinator"] {
            std::fs::write(bin_dir.path().join(binary), format!("simulated {binary}"))?;
        }
        Ok(SimLab {
            cluster,
            hosts: crate::hosts::HostsFile {
                hosts: specs,
                ssh: Default::default(),
            },
            bin_dir,
        })
    }

    /// The connector that reaches this lab's hosts.
    pub fn connector(&self) -> Connector {
        Connector::Sim(self.cluster.clone())
    }

    /// A spawn request for `peers` peers, run `run_id`, runs kept under `runs_dir`.
    pub fn request(
        &self,
        runs_dir: &std::path::Path,
        run_id: &str,
        peers: usize,
    ) -> crate::spawn::SpawnRequest {
        crate::spawn::SpawnRequest {
            runs_dir: runs_dir.to_owned(),
            hosts: self.hosts.clone(),
            host_filter: Vec::new(),
            transport: crate::cluster::distribute::Transport::Registry,
            spec: cmesh_common::plan::PlanSpec {
                peers,
                ..Default::default()
            },
            run_id: Some(run_id.to_owned()),
            subnet: None,
            concurrency: 16,
            force: false,
            peer_memory_bytes: 128 << 20,
            peer_nano_cpus: None,
            bin_dir: self.bin_dir.path().to_owned(),
            base_image: None,
            backend: crate::spawn::BackendChoice {
                name: "mesh".into(),
                ..Default::default()
            },
            allow_missing_hosts: false,
            encrypt_overlay: false,
        }
    }
}
