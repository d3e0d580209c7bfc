//! A run as it is now: its manifest, its hosts (connected), and the engines' view of its
//! containers, found by their `io.cmesh.run` label. Every command after `spawn` starts
//! from this.
//!
//! Hosts that cannot be reached are kept as values ([`LiveRun::lost`]), with the reason:
//! a command decides what a lost host means for it. [`Ended`] is how a container ended.

use crate::cluster::host::{not_answering, Connector, Host, LostHost};
use crate::engine::ContainerState;
use crate::run::dir::{RunDir, RunManifest};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

pub struct LiveRun {
    pub manifest: RunManifest,
    /// The reachable hosts.
    pub hosts: Vec<Host>,
    /// Hosts that could not be reached (at connect, or at the last refresh).
    pub lost: Vec<LostHost>,
    /// Container name → (index into `hosts`, state).
    pub states: HashMap<String, (usize, ContainerState)>,
    /// How long a host may take to answer before it counts as lost (`None`: the
    /// engine's own bounds).
    patience: Option<Duration>,
}

impl LiveRun {
    /// Reads the manifest, connects to its hosts and lists the run's containers.
    pub async fn load(run: &RunDir) -> anyhow::Result<LiveRun> {
        LiveRun::load_with(&Connector::Docker, run).await
    }

    /// [`LiveRun::load`] on the hosts `connector` reaches.
    pub async fn load_with(connector: &Connector, run: &RunDir) -> anyhow::Result<LiveRun> {
        LiveRun::load_within(connector, run, None).await
    }

    /// [`LiveRun::load_with`], where a host that has not connected within `patience`,
    /// or then not listed its containers within `patience`, is taken as lost, saying it
    /// has not answered: the commands that only read answer with what the other hosts
    /// say.
    pub async fn load_within(
        connector: &Connector,
        run: &RunDir,
        patience: Option<Duration>,
    ) -> anyhow::Result<LiveRun> {
        let manifest = run.read_manifest()?;
        let set = connector
            .connect_all_within(&manifest.hosts_file(), patience)
            .await;
        let mut live = LiveRun {
            manifest,
            hosts: set.hosts,
            lost: set.lost,
            states: HashMap::new(),
            patience,
        };
        // The hosts that connected list their containers, each with the same patience
        // (a host connects or lists in time, or it is left out: the slowest of either
        // step sets how long this takes).
        live.refresh_within(patience).await;
        Ok(live)
    }

    /// Lists the run's containers again; a host that fails to answer joins
    /// [`LiveRun::lost`] (and its containers leave `states`).
    pub async fn refresh(&mut self) {
        self.refresh_within(self.patience).await
    }

    async fn refresh_within(&mut self, patience: Option<Duration>) {
        let run = self.manifest.run_id.clone();
        // Each host's containers, or why it is lost.
        let lists = futures_util::future::join_all(self.hosts.iter().map(|h| async {
            let stopped = |e: crate::engine::EngineError| {
                format!("host `{}` stopped answering: {e}", h.name())
            };
            let list = crate::run::containers::existing(h, &run);
            match patience {
                None => list.await.map_err(stopped),
                Some(p) => match tokio::time::timeout(p, list).await {
                    Ok(r) => r.map_err(stopped),
                    Err(_) => Err(not_answering(h.name(), p)),
                },
            }
        }))
        .await;
        self.states.clear();
        for (i, list) in lists.into_iter().enumerate() {
            match list {
                Ok(list) => {
                    for (name, state) in list {
                        self.states.insert(name, (i, state));
                    }
                }
                Err(reason) => self.mark(i, reason),
            }
        }
    }

    /// Records that host `i` stopped answering.
    pub fn mark_lost(&mut self, i: usize, reason: &str) {
        let name = self.hosts[i].name();
        let reason = format!("host `{name}` stopped answering: {reason}");
        self.mark(i, reason);
    }

    fn mark(&mut self, i: usize, reason: String) {
        let name = self.hosts[i].name().to_owned();
        if !self.lost.iter().any(|l| l.name == name) {
            self.lost.push(LostHost {
                reason,
                name,
                bad_input: false,
            });
        }
    }

    /// The hosts that are not lost.
    pub fn reachable(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| !self.is_lost(h.name()))
    }

    /// True if host `name` is lost.
    pub fn is_lost(&self, name: &str) -> bool {
        self.lost.iter().any(|l| l.name == name)
    }

    /// Fails (exit 1) if any host is lost, naming each with its reason.
    pub fn require_all_hosts(&self) -> anyhow::Result<()> {
        crate::cluster::host::HostSet {
            hosts: Vec::new(),
            lost: self.lost.clone(),
        }
        .require_all()
        .map(|_| ())
    }

    /// The index in [`LiveRun::hosts`] of host `name`.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name() == name)
    }

    /// The run's peers and coordinator that the engines have, as (name, host index),
    /// sorted by name. (Scratch containers an interrupted command left behind carry the
    /// run's label too; they are in `states`, for `down`, not here.)
    pub fn containers(&self) -> Vec<(String, usize)> {
        let m = &self.manifest;
        let mut names: Vec<(String, usize)> = m
            .peers
            .iter()
            .chain(std::iter::once(&m.coordinator))
            .filter_map(|p| self.states.get(&p.name).map(|(h, _)| (p.name.clone(), *h)))
            .collect();
        names.sort();
        names
    }

    /// True if the container has finished (or does not exist).
    pub fn is_done(&self, name: &str) -> bool {
        self.states.get(name).is_none_or(|(_, s)| s.is_finished())
    }
}

/// How one container ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub name: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Killed on purpose by this fault (`plan#N`, `chaos#N`): not a failure.
    pub killed_by: Option<String>,
    /// Its host could not be reached, and why.
    pub unreachable: Option<String>,
}

impl Ended {
    pub fn failed(&self) -> bool {
        self.killed_by.is_none()
            && (self.unreachable.is_some() || self.oom_killed || self.exit_code != Some(0))
    }

    /// How it ended, in words.
    pub fn reason(&self) -> String {
        if let Some(id) = &self.killed_by {
            return format!("killed on purpose ({id})");
        }
        if let Some(why) = &self.unreachable {
            return format!("unreachable: {why}");
        }
        match (self.oom_killed, self.exit_code) {
            (true, _) => "killed for using too much memory (OOM)".into(),
            (_, Some(137)) => "killed (exit 137)".into(),
            (_, Some(c)) => format!("exited {c}"),
            (_, None) => "never ran".into(),
        }
    }
}
