//! The image registry on the swarm manager, served over TLS.
//!
//! - The image is `registry:2` where the manager can pull it, else `cmesh-registry:<hash>`,
//!   built from Debian's `docker-registry` package (images/registry) and loaded into the
//!   manager.
//! - The launcher makes a CA and a certificate for the manager's address (rcgen). The key,
//!   the certificate and `config.yml` go into the volume `cmesh-registry-certs`, written
//!   through a never-started container; the CA's key is never stored. The CA certificate
//!   is installed on every host at `/etc/docker/certs.d/<addr>:5000/ca.crt` (over SSH).
//! - It needs a password: one user, `cmesh`, with a password generated at creation. The
//!   password and its bcrypt hash (`htpasswd`) are kept in the certs volume; the launcher
//!   reads the password back from there and hands it to each engine with the push or
//!   pull request (X-Registry-Auth), so no host stores it. Deletes are disabled.
//! - The registry publishes port 5000 on the manager's advertise address only (not every
//!   interface): workers reach it at that address, not through the routing mesh (which
//!   needs IPVS).
//!
//! [`ensure`] is idempotent: a running registry for the same address and configuration is
//! reused, and its CA certificate re-installed. [`remove`] takes it away with its
//! volumes (`launcher registry rm`, `launcher swarm leave`).

use crate::cluster::host::Host;
use crate::cluster::images;
use crate::cluster::images::ImageRef;
use crate::cluster::scratch::with_scratch;
use crate::engine::labels;
use crate::engine::retry::retry;
use crate::engine::{
    ContainerSpec, ContainerState, EngineError, Publish, RegistryAuth, RestartPolicy,
};
use anyhow::Context;
use futures_util::TryStreamExt;
use std::collections::BTreeMap;

pub const REGISTRY_PORT: u16 = 5000;
pub const CONTAINER: &str = "cmesh-registry";
const CERTS_VOLUME: &str = "cmesh-registry-certs";
const DATA_VOLUME: &str = "cmesh-registry-data";
const ADDR_LABEL: &str = "io.cmesh.registry-addr";
/// A short hash of [`CONFIG`]: a registry made with another configuration is remade.
const CONFIG_LABEL: &str = "io.cmesh.registry-config";
/// The registry's one user.
const USER: &str = "cmesh";
const UPSTREAM: &str = "registry:2";
const DOCKERFILE: &str = include_str!("../../../images/registry/Dockerfile");
const CONFIG: &str = include_str!("../../../images/registry/config.yml");

/// A running registry: where hosts reach it, the CA that signed its certificate, and its
/// credentials.
#[derive(Clone, Debug)]
pub struct Registry {
    /// `addr:port`, as image references spell it.
    pub endpoint: String,
    pub ca_pem: String,
    pub auth: RegistryAuth,
}

fn config_hash() -> String {
    cmesh_common::token::sha256_hex(CONFIG.as_bytes())[..12].to_owned()
}

/// A generated password and its htpasswd line (bcrypt, as distribution requires).
fn make_password() -> anyhow::Result<(String, String)> {
    let password = cmesh_common::token::random_token().context("cannot read /dev/urandom")?;
    let hash = bcrypt::hash(&password, bcrypt::DEFAULT_COST)?;
    Ok((password, format!("{USER}:{hash}\n")))
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
    if manager.engine.pull_image(UPSTREAM, None).await.is_ok() {
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
    images::load(builder, std::slice::from_ref(manager), &[&image]).await?;
    Ok(image.tag)
}

/// A file of the registry's certs volume (`/certs/NAME`), read through the registry.
async fn read_certs_file(manager: &Host, name: &str) -> anyhow::Result<String> {
    let tar: Vec<u8> = manager
        .engine
        .download(CONTAINER, &format!("/certs/{name}"))
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .with_context(|| format!("reading the registry's /certs/{name}"))?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive
        .entries()?
        .next()
        .with_context(|| format!("the registry's /certs/{name} is missing"))??;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text)?;
    Ok(text)
}

/// Starts (or reuses) the registry on the manager and installs its CA on every host.
pub async fn ensure(builder: &Host, hosts: &[Host], base: &ImageRef) -> anyhow::Result<Registry> {
    let manager = crate::cluster::host::manager(hosts)?;
    let addr = manager.spec.swarm_addr().ok_or_else(|| {
        cmesh_common::exit::bad_input(format!(
            "the registry needs the manager's address: set advertise_addr of host `{}` in hosts.toml",
            manager.name()
        ))
    })?;
    let endpoint = format!("{addr}:{REGISTRY_PORT}");
    let existing = manager.engine.inspect_container(CONTAINER).await.ok();
    let reusable = existing.as_ref().is_some_and(|c| {
        c.labels.get(ADDR_LABEL) == Some(&endpoint)
            && c.labels.get(CONFIG_LABEL) == Some(&config_hash())
    });
    let (ca_pem, password) = if reusable {
        if existing.map(|c| c.state()) != Some(ContainerState::Running) {
            retry(|| manager.engine.start_container(CONTAINER)).await?;
        }
        let ca = read_certs_file(manager, "ca.crt").await?;
        let password = read_certs_file(manager, "password").await?;
        (ca, password.trim().to_owned())
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
    let auth = RegistryAuth {
        username: USER.into(),
        password,
        server: endpoint.clone(),
    };
    Ok(Registry {
        endpoint,
        ca_pem,
        auth,
    })
}

/// Removes the registry from the manager, with its volumes (its images go too). A
/// manager without one is fine. Returns whether there was one.
pub async fn remove(manager: &Host) -> anyhow::Result<bool> {
    let existed = match retry(|| manager.engine.remove_container(CONTAINER)).await {
        Ok(()) => true,
        Err(EngineError::NotFound(_)) => false,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "removing the registry on host `{}`",
                manager.name()
            )))
        }
    };
    for volume in [CERTS_VOLUME, DATA_VOLUME] {
        crate::engine::gone_is_fine(retry(|| manager.engine.remove_volume(volume)).await)
            .with_context(|| format!("removing volume {volume} on host `{}`", manager.name()))?;
    }
    if existed {
        tracing::info!("registry: removed from host {}", manager.name());
    }
    Ok(existed)
}

async fn create(
    builder: &Host,
    manager: &Host,
    base: &ImageRef,
    addr: &str,
    endpoint: &str,
) -> anyhow::Result<(String, String)> {
    let image = registry_image(builder, manager, base).await?;
    let certs = make_certs(addr)?;
    let (password, htpasswd) = make_password()?;
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
        ("htpasswd", htpasswd.as_bytes(), 0o444),
        ("password", password.as_bytes(), 0o400),
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
            (CONFIG_LABEL.to_owned(), config_hash()),
        ]),
        binds: vec![
            format!("{CERTS_VOLUME}:/certs:ro"),
            format!("{DATA_VOLUME}:/var/lib/registry"),
        ],
        publish: vec![Publish {
            port: REGISTRY_PORT,
            host_ip: publish_ip(addr),
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
    Ok((certs.ca_pem, password))
}

/// The address to publish the registry on: the manager's advertise address when it is an
/// IP address, else (a DNS name) every interface, with a warning.
fn publish_ip(addr: &str) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => {
            tracing::warn!(
                "registry: advertise address {addr} is not an IP address; publishing on every interface"
            );
            String::new()
        }
    }
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
    fn the_password_is_fresh_and_its_htpasswd_line_verifies() {
        let (p1, line) = make_password().unwrap();
        let (p2, _) = make_password().unwrap();
        assert_ne!(p1, p2);
        let hash = line.trim().strip_prefix("cmesh:").unwrap();
        assert!(hash.starts_with("$2"), "bcrypt: {hash}");
        assert!(bcrypt::verify(&p1, hash).unwrap());
        assert!(!bcrypt::verify(&p2, hash).unwrap());
        assert_eq!(publish_ip("10.0.0.2"), "10.0.0.2");
        assert_eq!(publish_ip("manager.lab"), "");
        let auth = RegistryAuth {
            username: USER.into(),
            password: p1.clone(),
            server: "10.0.0.2:5000".into(),
        };
        assert!(!format!("{auth:?}").contains(&p1));
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
