//! The Docker side of faults: kill, pause, unpause and restart of named containers,
//! every one at once, through each container's host's engine.

use crate::cluster::host::Host;
use crate::engine::EngineError;
use crate::run::dir::RunManifest;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Kill,
    Pause,
    Unpause,
    /// SIGKILL, then start the same container again.
    Restart,
}

/// Does `op` to each named container on its host, a bounded number at a time per host
/// (every host at once); returns the failures. Already in the asked-for state (paused,
/// not running: a re-run after an interruption) counts as done.
pub async fn on_containers(
    manifest: &RunManifest,
    hosts: &[Host],
    names: &[String],
    op: Op,
) -> BTreeMap<String, String> {
    let mut failures = BTreeMap::new();
    let mut items = Vec::new();
    for name in names {
        let host = manifest
            .peers
            .iter()
            .find(|p| &p.name == name)
            .map(|p| &p.host);
        match host {
            None => {
                failures.insert(name.clone(), "not in the run's manifest".to_owned());
            }
            Some(host) => match hosts.iter().position(|h| &h.spec.name == host) {
                Some(h) => items.push((h, name.clone())),
                None => {
                    failures.insert(name.clone(), format!("its host `{host}` is unreachable"));
                }
            },
        }
    }
    let what = format!("{op:?}").to_lowercase();
    let results = crate::tasks::for_each_on_hosts(&what, items, PER_HOST, |h, name: String| {
        let engine = &hosts[h].engine;
        async move {
            let result = match op {
                Op::Kill => engine.kill_container(&name).await,
                Op::Pause => engine.pause_container(&name).await,
                Op::Unpause => engine.unpause_container(&name).await,
                Op::Restart => match engine.kill_container(&name).await {
                    Ok(()) => engine.start_container(&name).await,
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) | Err(EngineError::Conflict(_) | EngineError::NotModified(_)) => Ok(()),
                Err(e) => Err(anyhow::anyhow!(
                    "{op:?} on host `{}`: {e}",
                    hosts[h].spec.name
                )),
            }
        }
    })
    .await;
    for ((_, name), r) in results {
        if let Err(e) = r {
            failures.insert(name, format!("{e:#}").to_lowercase());
        }
    }
    failures
}

/// Requests at once per host: signals are cheap, but an engine still serializes them.
const PER_HOST: usize = 16;
