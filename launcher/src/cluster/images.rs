//! The images a run needs: a base, the peer and the coordinator.
//!
//! **Base** (`cmesh-base:bookworm-<hash>`, also tagged [`BASE_ALIAS`] for app images to
//! build on), first of:
//! 1. already present on the engine;
//! 2. built from `images/base/Dockerfile` on a pulled `debian:bookworm-slim`;
//! 3. built from Debian's packages with `debootstrap` and imported (no registry needed).
//!
//! **Peer and coordinator** (`cmesh-peer:<hash>`, `cmesh-coordinator:<hash>`): a context of
//! the prebuilt binary plus `images/<kind>/Dockerfile`, packed with `tar`. The tag is a hash
//! of the context and the base image id, so an unchanged build is a no-op.
//!
//! **Between engines**: [`load`] streams images from the builder into the hosts that lack
//! them (`docker save | docker load`); [`super::distribute`] chooses how they travel.

use crate::cluster::host::Host;
use crate::engine::retry::retry;
use crate::engine::short_hash;
use anyhow::Context;
use cmesh_common::exit::bad_input;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const BASE_DOCKERFILE: &str = include_str!("../../../images/base/Dockerfile");
const BASE_PACKAGES: &str = include_str!("../../../images/base/packages");
const PEER_DOCKERFILE: &str = include_str!("../../../images/peer/Dockerfile");
const COORDINATOR_DOCKERFILE: &str = include_str!("../../../images/coordinator/Dockerfile");
const DEBIAN_IMAGE: &str = "debian:bookworm-slim";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The base image's stable name, for app images built on it (`FROM cmesh-base:bookworm`).
pub const BASE_ALIAS: &str = "cmesh-base:bookworm";

/// An image, by tag and id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// `name:tag`.
    pub tag: String,
    /// The image id (`sha256:…`).
    pub id: String,
}

/// The images of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    pub base: ImageRef,
    pub peer: ImageRef,
    pub coordinator: ImageRef,
}

/// How the base image was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasePath {
    Present,
    Pulled,
    Debootstrapped,
    Given,
}

/// The base image's tag: it changes when its recipe does.
pub fn base_tag() -> String {
    format!(
        "cmesh-base:bookworm-{}",
        short_hash(&[BASE_DOCKERFILE.as_bytes(), BASE_PACKAGES.as_bytes()])
    )
}

/// The id of image `tag` on the host's engine, if it has it.
pub async fn image_id(host: &Host, tag: &str) -> Option<String> {
    retry(|| host.engine.inspect_image(tag))
        .await
        .ok()
        .map(|i| i.id)
}

/// Makes sure the base image exists; says which path was taken.
pub async fn ensure_base(
    builder: &Host,
    given: Option<&str>,
) -> anyhow::Result<(ImageRef, BasePath)> {
    if let Some(name) = given {
        let id = image_id(builder, name).await.ok_or_else(|| {
            bad_input(format!(
                "--base-image {name} is not on the engine; load it first (docker load -i FILE) or leave out --base-image"
            ))
        })?;
        return Ok((
            ImageRef {
                tag: name.into(),
                id,
            },
            BasePath::Given,
        ));
    }
    let tag = base_tag();
    if let Some(id) = image_id(builder, &tag).await {
        return Ok((ImageRef { tag, id }, BasePath::Present));
    }
    tracing::info!("images: base {tag} not present; pulling {DEBIAN_IMAGE} to build it");
    let pull_error = match pull_and_build_base(builder, &tag).await {
        Ok(id) => return Ok((ImageRef { tag, id }, BasePath::Pulled)),
        Err(e) => format!("{e:#}"),
    };
    tracing::info!("images: pull failed ({}); building the base from Debian's packages with debootstrap (about a minute)", first_line(&pull_error));
    match debootstrap_base(builder, &tag).await {
        Ok(id) => Ok((ImageRef { tag, id }, BasePath::Debootstrapped)),
        Err(e) => anyhow::bail!(
            "cannot get a base image.\n  present: no image {tag} on the engine\n  pull: {}\n  debootstrap: {e:#}\nFix one of: install debootstrap and run as root (apt-get install debootstrap); make {DEBIAN_IMAGE} pullable; or load an image with iproute2 and iptables and pass --base-image NAME",
            first_line(&pull_error)
        ),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

async fn pull_and_build_base(builder: &Host, tag: &str) -> anyhow::Result<String> {
    builder
        .engine
        .pull_image(DEBIAN_IMAGE, None)
        .await
        .with_context(|| format!("pulling {DEBIAN_IMAGE}"))?;
    let context = tar_context(&[("Dockerfile", BASE_DOCKERFILE.as_bytes(), 0o644)])?;
    build(builder, tag, context, HashMap::new()).await
}

async fn debootstrap_base(builder: &Host, tag: &str) -> anyhow::Result<String> {
    let which = tokio::process::Command::new("sh")
        .args(["-c", "command -v debootstrap"])
        .output()
        .await?;
    if !which.status.success() {
        anyhow::bail!("debootstrap is not installed (apt-get install debootstrap)");
    }
    let dir = tempfile::Builder::new()
        .prefix("cmesh-rootfs-")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .context("cannot make a directory for the root filesystem")?;
    let rootfs = dir.path().join("rootfs");
    let packages: Vec<&str> = BASE_PACKAGES.split_whitespace().collect();
    let out = tokio::process::Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", packages.join(",")),
        ])
        .arg("bookworm")
        .arg(&rootfs)
        .arg(DEBIAN_MIRROR)
        .output()
        .await
        .context("cannot run debootstrap")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        anyhow::bail!(
            "debootstrap failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    // tar(1) handles device nodes and hard links of a root filesystem faithfully.
    let mut tar = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let stdout = tar.stdout.take().context("tar gave no output pipe")?;
    let body = tokio_util::io::ReaderStream::new(stdout)
        .map_err(|e| crate::engine::EngineError::Other(format!("reading tar's output: {e}")));
    let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
    builder
        .engine
        .import_rootfs(repo, version, Box::pin(body))
        .await
        .context("importing the root filesystem")?;
    tar.wait().await?;
    image_id(builder, tag)
        .await
        .ok_or_else(|| anyhow::anyhow!("the imported image {tag} is not on the engine"))
}

/// A tar archive of `(name, bytes, mode)` files.
pub fn tar_context(files: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes)?;
    }
    Ok(builder.into_inner()?)
}

pub async fn build(
    builder: &Host,
    tag: &str,
    context: Vec<u8>,
    args: HashMap<String, String>,
) -> anyhow::Result<String> {
    builder
        .engine
        .build_image(tag, context.into(), &args)
        .await
        .with_context(|| format!("building {tag} on host `{}`", builder.name()))?;
    image_id(builder, tag)
        .await
        .ok_or_else(|| anyhow::anyhow!("built {tag}, but the engine does not list it"))
}

/// The peer or the coordinator.
#[derive(Debug, Clone, Copy)]
pub enum AppImage {
    Peer,
    Coordinator,
}

impl AppImage {
    fn binary(self) -> &'static str {
        match self {
            AppImage::Peer => "peer",
            AppImage::Coordinator => "coordinator",
        }
    }
    fn dockerfile(self) -> &'static str {
        match self {
            AppImage::Peer => PEER_DOCKERFILE,
            AppImage::Coordinator => COORDINATOR_DOCKERFILE,
        }
    }
}

/// Where the prebuilt binaries are: `--bin-dir`, else next to the launcher.
pub fn bin_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_owned).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

/// Builds (or finds) the image for `kind`; returns it and whether it was built now.
pub async fn ensure_app(
    builder: &Host,
    kind: AppImage,
    bins: &Path,
    base: &ImageRef,
) -> anyhow::Result<(ImageRef, bool)> {
    let path = bins.join(kind.binary());
    let binary = std::fs::read(&path).map_err(|e| {
        bad_input(format!(
            "cannot read the {} binary at {}: {e}. Build the workspace first (cargo build --release) or pass --bin-dir",
            kind.binary(),
            path.display()
        ))
    })?;
    let files = [
        ("Dockerfile", kind.dockerfile().as_bytes(), 0o644),
        (kind.binary(), binary.as_slice(), 0o755),
    ];
    ensure_on_base(
        builder,
        &format!("cmesh-{}", kind.binary()),
        &files,
        base,
        None,
    )
    .await
}

/// Builds (or finds) image `repo:<hash>` from a context of `files` (`Dockerfile` among
/// them) on top of `base` (the build argument `BASE_IMAGE`). The tag is a hash of the
/// files' contents and the base's id, so an unchanged image is found, not rebuilt.
/// `announce` is printed before a build. Returns the image and whether it was built now.
pub async fn ensure_on_base(
    builder: &Host,
    repo: &str,
    files: &[(&str, &[u8], u32)],
    base: &ImageRef,
    announce: Option<&str>,
) -> anyhow::Result<(ImageRef, bool)> {
    let mut parts: Vec<&[u8]> = files.iter().map(|(_, bytes, _)| *bytes).collect();
    parts.push(base.id.as_bytes());
    let tag = format!("{repo}:{}", short_hash(&parts));
    if let Some(id) = image_id(builder, &tag).await {
        return Ok((ImageRef { tag, id }, false));
    }
    if let Some(message) = announce {
        tracing::info!("{message}: building {tag}");
    }
    let args = HashMap::from([("BASE_IMAGE".to_owned(), base.tag.clone())]);
    let id = build(builder, &tag, tar_context(files)?, args).await?;
    Ok((ImageRef { tag, id }, true))
}

/// True if the engine still has every image of `images`, by id.
pub async fn present(builder: &Host, images: &Images) -> bool {
    for i in [&images.base, &images.peer, &images.coordinator] {
        if image_id(builder, &i.tag).await.as_deref() != Some(i.id.as_str()) {
            return false;
        }
    }
    true
}

/// Every image a run needs, on the `builder` host; prints what it did.
pub async fn ensure_all(
    builder: &Host,
    bins: &Path,
    base_image: Option<&str>,
) -> anyhow::Result<Images> {
    let (base, path) = ensure_base(builder, base_image).await?;
    let how = match path {
        BasePath::Present => "present",
        BasePath::Pulled => "built on a pulled Debian image",
        BasePath::Debootstrapped => "built from Debian's packages (debootstrap)",
        BasePath::Given => "given with --base-image",
    };
    tracing::info!("images: base {} ({how})", base.tag);
    // A stable name for users' app images to build on (docs/apps.md): FROM cmesh-base:bookworm.
    let (repo, tag) = BASE_ALIAS.split_once(':').expect("repo:tag");
    retry(|| builder.engine.tag_image(&base.tag, repo, tag))
        .await
        .with_context(|| format!("tagging the base image {} as {BASE_ALIAS}", base.tag))?;
    let (peer, built_peer) = ensure_app(builder, AppImage::Peer, bins, &base).await?;
    let (coordinator, built_coord) =
        ensure_app(builder, AppImage::Coordinator, bins, &base).await?;
    for (image, built) in [(&peer, built_peer), (&coordinator, built_coord)] {
        tracing::info!(
            "images: {} ({})",
            image.tag,
            if built { "built" } else { "up to date" }
        );
    }
    Ok(Images {
        base,
        peer,
        coordinator,
    })
}

/// Whether `h` has `image` (by id, under its tag).
pub async fn has(h: &Host, image: &ImageRef) -> bool {
    image_id(h, &image.tag).await.as_deref() == Some(image.id.as_str())
}

/// The images `h` lacks.
pub async fn missing<'a>(h: &Host, images: &[&'a ImageRef]) -> Vec<&'a ImageRef> {
    let mut out = Vec::new();
    for &i in images {
        if !has(h, i).await {
            out.push(i);
        }
    }
    out
}

/// Streams `images` from `builder` into every host of `to` that lacks one of them
/// (`docker save | docker load`). The builder's own engine never lacks them.
pub async fn load(builder: &Host, to: &[Host], images: &[&ImageRef]) -> anyhow::Result<()> {
    let mut lacking = Vec::new();
    for h in to {
        if !missing(h, images).await.is_empty() {
            lacking.push(h.clone());
        }
    }
    let to = lacking;
    if to.is_empty() {
        return Ok(());
    }
    let tags: Vec<&str> = images.iter().map(|i| i.tag.as_str()).collect();
    let file = tempfile::NamedTempFile::new().context("making a temporary file for the images")?;
    let mut out = tokio::fs::File::from_std(file.reopen()?);
    let mut export = builder.engine.export_images(&tags);
    let mut bytes = 0u64;
    while let Some(chunk) = export.next().await {
        let chunk = chunk
            .with_context(|| format!("exporting {} from this machine's engine", tags.join(", ")))?;
        bytes += chunk.len() as u64;
        tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await?;
    }
    tokio::io::AsyncWriteExt::flush(&mut out).await?;
    let names: Vec<&str> = to.iter().map(Host::name).collect();
    tracing::info!(
        "images: loading {} MiB into {} host(s): {}",
        bytes >> 20,
        to.len(),
        names.join(", ")
    );
    let loads = to.iter().map(|h| {
        let path = file.path().to_owned();
        async move {
            let f = tokio::fs::File::open(&path).await?;
            let body = tokio_util::io::ReaderStream::new(f).map(|chunk| {
                chunk.map_err(|e| {
                    crate::engine::EngineError::Other(format!("reading the saved images: {e}"))
                })
            });
            h.engine
                .load_images(body.boxed())
                .await
                .with_context(|| format!("loading images into host `{}`", h.name()))?;
            for i in images {
                if !has(h, i).await {
                    anyhow::bail!(
                        "host `{}` does not list {} after loading it",
                        h.name(),
                        i.tag
                    );
                }
            }
            anyhow::Ok(())
        }
    });
    for r in futures_util::future::join_all(loads).await {
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_hold_the_files_with_modes() {
        let tar = tar_context(&[
            ("Dockerfile", b"FROM x", 0o644),
            ("peer", b"\x7fELF", 0o755),
        ])
        .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![("Dockerfile".into(), 0o644), ("peer".into(), 0o755)]
        );
    }

    #[test]
    fn tags_follow_content() {
        assert_eq!(short_hash(&[b"a", b"b"]), short_hash(&[b"a", b"b"]));
        assert_ne!(short_hash(&[b"a", b"b"]), short_hash(&[b"ab"]));
        assert!(base_tag().starts_with("cmesh-base:bookworm-"));
    }
}
