//! Getting the run's images from the engine that built them to every host.
//!
//! Images are built on this machine's engine (the *builder*). A host that already has an
//! image with the same id (the builder's own engine always does) is skipped. Then, by
//! transport:
//! - `registry` (the default): the manager gets the images (loaded, if it is not the
//!   builder), pushes them once to the registry it runs ([`super::registry`]), and every
//!   worker pulls them by digest and tags them with the run's tag;
//! - `load`: the builder exports the images once (`docker save`) into a temporary file,
//!   and that file is streamed into every host's engine (`docker load`) at once.
//!
//! Image ids are content hashes, so every host ends up with the very same images.

use crate::cluster::host::Host;
use crate::cluster::images::{has, load, missing, ImageRef, Images};
use crate::engine::retry::retry;
use anyhow::Context;
use std::time::Instant;

/// How images reach the hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Push once to a TLS registry on the manager; workers pull by digest.
    Registry,
    /// Stream `docker save` output straight into each host's engine.
    Load,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Registry => "registry",
            Transport::Load => "load",
        })
    }
}

/// Tags image `source` as `target` (`repo:tag`) on `h`.
async fn tag_as(h: &Host, source: &str, target: &str) -> anyhow::Result<()> {
    let (repo, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
    retry(|| h.engine.tag_image(source, repo, tag))
        .await
        .with_context(|| format!("tagging {source} as {target} on host `{}`", h.name()))
}

/// Pushes `image` from the manager to the registry; returns its `repo@sha256:…` reference.
async fn push(
    manager: &Host,
    registry: &crate::cluster::registry::Registry,
    image: &ImageRef,
) -> anyhow::Result<String> {
    let endpoint = &registry.endpoint;
    let remote = crate::cluster::registry::remote_ref(endpoint, &image.tag);
    tag_as(manager, &image.tag, &remote).await?;
    let (repo, tag) = remote
        .rsplit_once(':')
        .unwrap_or((remote.as_str(), "latest"));
    // The registry may still be starting: retry for a while.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let failure = manager
            .engine
            .push_image(repo, tag, Some(&registry.auth))
            .await
            .err();
        match failure {
            None => break,
            Some(e) if Instant::now() > deadline => anyhow::bail!(
                "pushing {remote} from host `{}` failed: {e}. Is the registry running there (docker logs cmesh-registry), and its CA in /etc/docker/certs.d/{endpoint}/?",
                manager.name()
            ),
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
    let info = retry(|| manager.engine.inspect_image(&remote)).await?;
    info.repo_digests
        .into_iter()
        .find(|d| d.starts_with(&format!("{repo}@")))
        .with_context(|| format!("the manager has no digest for {remote} after pushing it"))
}

/// Pulls `digest_ref` on `h` (with the registry's credentials) and tags it as `image.tag`.
async fn pull(
    h: &Host,
    digest_ref: &str,
    image: &ImageRef,
    auth: &crate::engine::RegistryAuth,
) -> anyhow::Result<()> {
    h.engine
        .pull_image(digest_ref, Some(auth))
        .await
        .with_context(|| format!("host `{}` pulling {digest_ref}", h.name()))?;
    tag_as(h, digest_ref, &image.tag).await?;
    if !has(h, image).await {
        anyhow::bail!(
            "host `{}` pulled {digest_ref}, but its id is not {}",
            h.name(),
            image.id
        );
    }
    Ok(())
}

/// Makes sure every host has the run's images; returns how they got there (`local` when
/// every host already had them).
pub async fn distribute(
    builder: &Host,
    hosts: &[Host],
    images: &Images,
    transport: Transport,
) -> anyhow::Result<String> {
    let started = Instant::now();
    // The base comes along as layers of these two; no host needs it by name.
    let all = [&images.peer, &images.coordinator];
    // The builder's own engine (a host without ssh, usually) has them already.
    let mut need: Vec<(Host, Vec<&ImageRef>)> = Vec::new();
    for h in hosts {
        let lacks = missing(h, &all).await;
        if !lacks.is_empty() {
            need.push((h.clone(), lacks));
        }
    }
    if need.is_empty() {
        return Ok("local".into());
    }
    match transport {
        Transport::Load => {
            let to: Vec<Host> = need.iter().map(|(h, _)| h.clone()).collect();
            load(builder, &to, &all).await?;
        }
        Transport::Registry => {
            let manager = crate::cluster::host::manager(hosts)?;
            if need.iter().any(|(h, _)| h.name() == manager.name()) {
                load(builder, std::slice::from_ref(manager), &all).await?;
            }
            let registry = crate::cluster::registry::ensure(builder, hosts, &images.base).await?;
            let workers: Vec<(Host, Vec<&ImageRef>)> = need
                .into_iter()
                .filter(|(h, _)| h.name() != manager.name())
                .collect();
            // Pushed once; each worker pulls only what it lacks.
            let mut digests = std::collections::HashMap::new();
            for i in [&images.peer, &images.coordinator] {
                if workers.iter().any(|(_, lacks)| lacks.contains(&i)) {
                    digests.insert(i.tag.clone(), push(manager, &registry, i).await?);
                }
            }
            if !workers.is_empty() {
                tracing::info!(
                    "images: {} worker(s) pulling from {} by digest",
                    workers.len(),
                    registry.endpoint
                );
            }
            let pulls = workers.iter().map(|(h, lacks)| {
                let (digests, auth) = (&digests, &registry.auth);
                async move {
                    for i in lacks.iter().filter(|i| digests.contains_key(&i.tag)) {
                        pull(h, &digests[&i.tag], i, auth).await?;
                    }
                    anyhow::Ok(())
                }
            });
            for r in futures_util::future::join_all(pulls).await {
                r?;
            }
        }
    }
    tracing::info!(
        "images: on every host by {transport} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(transport.to_string())
}
