//! Scratch containers: created with some volumes mounted, never started, removed when
//! done. They are how the launcher writes into and reads from volumes through the
//! engine's archive API, with no process running and nothing left behind. They carry the
//! labels they are given (a run's, so `down` finds one an interruption left behind).

use crate::cluster::host::Host;
use crate::engine::retry::retry;
use crate::engine::{ContainerSpec, EngineError};
use anyhow::Context;
use std::future::Future;

/// Creates container `name` from `image` with `binds` (`volume:path[:ro]`) and `labels`,
/// runs `work` while it exists, then removes it. A leftover of the same name (from an
/// interrupted command) is replaced first. `work`'s error wins over a failed removal.
pub async fn with_scratch<T, F, Fut>(
    host: &Host,
    name: &str,
    image: &str,
    binds: Vec<String>,
    labels: &[(&str, &str)],
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let remove = || async {
        match retry(|| host.engine.remove_container(name)).await {
            Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    };
    remove().await.with_context(|| {
        format!(
            "removing a leftover scratch container {name} on host {}",
            host.name()
        )
    })?;
    let spec = ContainerSpec {
        name: name.to_owned(),
        image: image.to_owned(),
        binds,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    retry(|| host.engine.create_container(&spec))
        .await
        .with_context(|| format!("creating scratch container {name} on host {}", host.name()))?;
    let result = work().await;
    let removed = remove()
        .await
        .with_context(|| format!("removing scratch container {name} on host {}", host.name()));
    let value = result?;
    removed?;
    Ok(value)
}
