//! A run as it is now: its manifest, its hosts (connected), and Docker's view of its
//! containers, found by their `io.cmesh.run` label. Every command after `spawn` starts
//! from this.

use crate::host::{self, Host};
use crate::rundir::{RunDir, RunManifest};
use crate::spawn::existing;
use std::collections::HashMap;

pub struct LiveRun {
    pub manifest: RunManifest,
    pub hosts: Vec<Host>,
    /// Container name → (index into `hosts`, Docker state: `running`, `exited`, …).
    pub states: HashMap<String, (usize, String)>,
}

impl LiveRun {
    /// Reads the manifest, connects to its hosts and lists the run's containers.
    pub async fn load(run: &RunDir) -> anyhow::Result<LiveRun> {
        let manifest = run.read_manifest()?;
        let hosts = host::connect_all(&manifest.hosts_file()).await?;
        let mut live = LiveRun {
            manifest,
            hosts,
            states: HashMap::new(),
        };
        live.refresh().await?;
        Ok(live)
    }

    /// Lists the run's containers again.
    pub async fn refresh(&mut self) -> anyhow::Result<()> {
        let run = &self.manifest.run_id;
        self.states.clear();
        let lists =
            futures_util::future::join_all(self.hosts.iter().map(|h| existing(h, run))).await;
        for (i, list) in lists.into_iter().enumerate() {
            for (name, state) in list? {
                self.states.insert(name, (i, state));
            }
        }
        Ok(())
    }

    /// Every container Docker has for the run, as (name, host index), sorted by name.
    pub fn containers(&self) -> Vec<(String, usize)> {
        let mut names: Vec<(String, usize)> = self
            .states
            .iter()
            .map(|(n, (h, _))| (n.clone(), *h))
            .collect();
        names.sort();
        names
    }

    /// True if the container has finished (or never existed): not running, created or
    /// restarting.
    pub fn is_done(&self, name: &str) -> bool {
        !matches!(
            self.states.get(name).map(|(_, s)| s.as_str()),
            Some("running" | "created" | "restarting")
        )
    }
}
