//! The image registry on the swarm manager, served over TLS.
//!
//! - The image is `registry:2` where the manager can pull it, else `cmesh-registry:<hash>`,
//!   built from Debian's `docker-registry` package (images/registry) and loaded into the
//!   manager.
//! - The launcher makes a CA and a certificate for the manager's address (rcgen). The key,
//!   the certificate and `config.yml` go into the volume `cmesh-registry-certs`, written
//!   through a never-started container; the CA's key is never stored. The CA certificate
//!   is installed on every host at `/etc/docker/certs.d/<addr>:5000/ca.crt` (over SSH).
//! - The registry publishes port 5000 on the manager itself: workers reach it at the
//!   manager's address, not through the routing mesh (which needs IPVS).
//!
//! [`ensure`] is idempotent: a running registry for the same address is reused, and its
//! CA certificate re-installed.

use crate::engine::host::Host;
use crate::engine::images::ImageRef;
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::engine::scratch::with_scratch;
use crate::engine::{images, ContainerSpec, ContainerState, Publish, RestartPolicy};
use anyhow::Context;
use futures_util::TryStreamExt;
use std::collections::BTreeMap;

pub const REGISTRY_PORT: u16 = 5000;
pub const CONTAINER: &str = "cmesh-registry";
const CERTS_VOLUME: &str = "cmesh-registry-certs";
const DATA_VOLUME: &str = "cmesh-registry-data";
const ADDR_LABEL: &str = "io.cmesh.registry-addr";
const UPSTREAM: &str = "registry:2";
const DOCKERFILE: &str = include_str!("../../../images/registry/Dockerfile");
const CONFIG: &str = include_str!("../../../images/registry/config.yml");

/// A running registry: where hosts reach it, and the CA that signed its certificate.
#[derive(Clone, Debug)]
pub struct Registry {
    /// `addr:port`, as image references spell it.
    pub endpoint: String,
    pub ca_pem: String,
}

/// A CA certificate, and a server certificate and key for `addr`, signed by it.
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a throw-away CA and a certificate for `addr` (an IP address or a DNS name).
pub fn make_certs(addr: &str) -> anyhow::Result<Certs> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "cmesh registry CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec![addr.to_owned()])?;
    leaf.distinguished_name.push(DnType::CommonName, addr);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca)?;
    Ok(Certs {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The image reference of `image` in the registry: `addr:5000/cmesh-peer:<hash>`.
pub fn remote_ref(endpoint: &str, tag: &str) -> String {
    format!("{endpoint}/{tag}")
}

/// Where a host's engine looks for the registry's CA.
pub fn ca_path(endpoint: &str) -> String {
    format!("/etc/docker/certs.d/{endpoint}/ca.crt")
}

/// The registry image on the manager: pulled `registry:2`, else cmesh's own, built on
/// `builder` and loaded into the manager.
async fn registry_image(builder: &Host, manager: &Host, base: &ImageRef) -> anyhow::Result<String> {
    if manager.engine.inspect_image(UPSTREAM).await.is_ok() {
        return Ok(UPSTREAM.into());
    }
    if manager.engine.pull_image(UPSTREAM).await.is_ok() {
        tracing::info!("registry: pulled {UPSTREAM}");
        return Ok(UPSTREAM.into());
    }
    let announce =
        format!("registry: {UPSTREAM} cannot be pulled; from Debian's docker-registry package");
    let (image, _) = images::ensure_on_base(
        builder,
        "cmesh-registry",
        &[("Dockerfile", DOCKERFILE.as_bytes(), 0o644)],
        base,
        Some(&announce),
    )
    .await?;
    crate::engine::distribute::load(builder, std::slice::from_ref(manager), &[&image]).await?;
    Ok(image.tag)
}

async fn read_ca(manager: &Host) -> anyhow::Result<String> {
    let tar: Vec<u8> = manager
        .engine
        .download(CONTAINER, "/certs/ca.crt")
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .context("reading the registry's CA certificate")?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive
        .entries()?
        .next()
        .context("the registry's /certs/ca.crt is missing")??;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text)?;
    Ok(text)
}

/// Starts (or reuses) the registry on the manager and installs its CA on every host.
pub async fn ensure(builder: &Host, hosts: &[Host], base: &ImageRef) -> anyhow::Result<Registry> {
    let manager = crate::engine::host::manager(hosts)?;
    let addr = manager.spec.swarm_addr().ok_or_else(|| {
        crate::error::bad_input(format!(
            "the registry needs the manager's address: set advertise_addr of host `{}` in hosts.toml",
            manager.name()
        ))
    })?;
    let endpoint = format!("{addr}:{REGISTRY_PORT}");
    let existing = manager.engine.inspect_container(CONTAINER).await.ok();
    let reusable = existing
        .as_ref()
        .is_some_and(|c| c.labels.get(ADDR_LABEL) == Some(&endpoint));
    let ca_pem = if reusable {
        if existing.map(|c| c.state()) != Some(ContainerState::Running) {
            retry(|| manager.engine.start_container(CONTAINER)).await?;
        }
        read_ca(manager).await?
    } else {
        if existing.is_some() {
            retry(|| manager.engine.remove_container(CONTAINER)).await?;
        }
        create(builder, manager, base, &addr, &endpoint).await?
    };
    let installs = hosts.iter().map(|h| {
        let (path, pem) = (ca_path(&endpoint), ca_pem.as_bytes());
        async move {
            h.install_file(&path, pem, 0o644)
                .await
                .with_context(|| format!("installing the registry's CA on host `{}`", h.name()))
        }
    });
    for r in futures_util::future::join_all(installs).await {
        r?;
    }
    Ok(Registry { endpoint, ca_pem })
}

async fn create(
    builder: &Host,
    manager: &Host,
    base: &ImageRef,
    addr: &str,
    endpoint: &str,
) -> anyhow::Result<String> {
    let image = registry_image(builder, manager, base).await?;
    let certs = make_certs(addr)?;
    for volume in [CERTS_VOLUME, DATA_VOLUME] {
        manager
            .ensure_volume(volume, (labels::ROLE, "registry"))
            .await?;
    }
    let tar = images::tar_context(&[
        ("config.yml", CONFIG.as_bytes(), 0o444),
        ("ca.crt", certs.ca_pem.as_bytes(), 0o444),
        ("registry.crt", certs.cert_pem.as_bytes(), 0o444),
        ("registry.key", certs.key_pem.as_bytes(), 0o400),
    ])?;
    let seed = "cmesh-registry-certs-seed";
    let tar = bytes::Bytes::from(tar);
    with_scratch(
        manager,
        seed,
        &image,
        vec![format!("{CERTS_VOLUME}:/certs")],
        &[(labels::ROLE, "registry")],
        || async {
            retry(|| manager.engine.upload(seed, "/certs", tar.clone()))
                .await
                .context("writing the registry's certificate into its volume")
        },
    )
    .await?;
    let spec = ContainerSpec {
        name: CONTAINER.to_owned(),
        image: image.clone(),
        cmd: vec!["serve".into(), "/certs/config.yml".into()],
        labels: BTreeMap::from([
            (labels::ROLE.to_owned(), "registry".to_owned()),
            (ADDR_LABEL.to_owned(), endpoint.to_owned()),
        ]),
        binds: vec![
            format!("{CERTS_VOLUME}:/certs:ro"),
            format!("{DATA_VOLUME}:/var/lib/registry"),
        ],
        publish: vec![Publish {
            port: REGISTRY_PORT,
            host_ip: String::new(),
            host_port: REGISTRY_PORT,
        }],
        restart: RestartPolicy::UnlessStopped,
        ..Default::default()
    };
    retry(|| manager.engine.create_container(&spec))
        .await
        .with_context(|| format!("creating the registry on host {}", manager.name()))?;
    retry(|| manager.engine.start_container(CONTAINER))
        .await
        .with_context(|| {
            format!(
                "starting the registry on host {} (is port {REGISTRY_PORT} free there?)",
                manager.name()
            )
        })?;
    tracing::info!(
        "registry: started on host {} at {endpoint} ({image})",
        manager.name()
    );
    Ok(certs.ca_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_the_address_and_chain_to_the_ca() {
        let c = make_certs("172.31.250.2").unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.key_pem.contains("PRIVATE KEY"));
        assert_ne!(c.ca_pem, c.cert_pem);
        // openssl is the judge of the chain and the IP SAN, when it is installed.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &c.ca_pem).unwrap();
        std::fs::write(dir.path().join("leaf.pem"), &c.cert_pem).unwrap();
        if let Ok(out) = std::process::Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "ca.pem",
                "-verify_ip",
                "172.31.250.2",
                "leaf.pem",
            ])
            .current_dir(dir.path())
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn references_and_paths() {
        assert_eq!(
            remote_ref("10.0.0.2:5000", "cmesh-peer:abc"),
            "10.0.0.2:5000/cmesh-peer:abc"
        );
        assert_eq!(
            ca_path("10.0.0.2:5000"),
            "/etc/docker/certs.d/10.0.0.2:5000/ca.crt"
        );
    }
}
