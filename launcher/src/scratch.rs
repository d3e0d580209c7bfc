//! Scratch containers: created with some volumes mounted, never started, removed when
//! done. They are how the launcher writes into and reads from volumes through the Docker
//! archive API, with no process running and nothing left behind.

use crate::host::Host;
use crate::tasks;
use anyhow::Context;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use std::future::Future;

/// Creates container `name` from `image` with `binds` (`volume:path[:ro]`), runs `work`
/// while it exists, then removes it. A leftover of the same name (from an interrupted
/// command) is replaced first. `work`'s error wins over a failed removal.
pub async fn with_scratch<T, F, Fut>(
    host: &Host,
    name: &str,
    image: &str,
    binds: Vec<String>,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let docker = &host.docker;
    let remove = || {
        docker.remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
    };
    let _ = remove().await;
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        host_config: Some(HostConfig {
            binds: Some(binds),
            ..Default::default()
        }),
        ..Default::default()
    };
    tasks::retry(|| {
        docker.create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body.clone(),
        )
    })
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
