//! `launcher lab up|down`: several Docker hosts on this machine, for trying multi-host
//! runs on a laptop and for the tests.
//!
//! Each lab host is a container running dockerd and sshd (images/labhost) on a private
//! bridge network, with a fixed address. `up` makes an SSH key, a host key per host and a
//! known_hosts file in the lab directory, and writes a `hosts.toml` there that reaches the
//! hosts over SSH with strict host key checking, like real machines. It is idempotent:
//! running hosts are kept, stopped ones started, missing ones created.
//!
//! The containers need `--cap-add ALL` minus SYS_RESOURCE, no seccomp or AppArmor
//! profile, and a volume on /var/lib/docker (so the inner engine uses overlay2): the
//! recipe that works where `--privileged` is refused.

use crate::cluster::host::{Connector, Host};
use crate::cluster::images;
use crate::cluster::network::Subnet;
use crate::engine::retry::retry;
use crate::engine::{ContainerSpec, ContainerState, EngineError, NetworkDriver, NetworkSpec};
use crate::hosts::{HostSpec, HostsFile, Role, SshSettings};
use crate::tasks;
use anyhow::Context;
use cmesh_common::exit::bad_input;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DOCKERFILE: &str = include_str!("../../../images/labhost/Dockerfile");
const SSHD_CONFIG: &str = include_str!("../../../images/labhost/sshd_config");
const ENTRYPOINT: &str = include_str!("../../../images/labhost/entrypoint");
/// Label on every lab object, with the lab's name.
pub const LAB_LABEL: &str = "io.cmesh.lab";

/// What `lab up` makes.
#[derive(Clone, Debug)]
pub struct LabRequest {
    pub name: String,
    pub hosts: usize,
    pub dir: PathBuf,
    pub base_image: Option<String>,
}

/// Container name of lab host `i` (1-based).
pub fn host_container(lab: &str, i: usize) -> String {
    format!("{lab}-{i}")
}

/// The lab's fixed address of host `i`: `.10 + i` in its /24.
pub fn host_addr(subnet: Subnet, i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(subnet.base) + 10 + i as u32)
}

/// Picks a free /24 in 172.31.200-254.0 for the lab network, starting at `start` (so labs
/// created at the same moment rarely reach for the same block).
pub fn pick_lab_subnet(taken: &[Subnet], start: u32) -> anyhow::Result<Subnet> {
    (0..55u32)
        .map(|i| 200 + (start + i) % 55)
        .map(|x| Subnet::parse(&format!("172.31.{x}.0/24")).expect("valid"))
        .find(|c| !taken.iter().any(|t| t.overlaps(*c)))
        .ok_or_else(|| anyhow::anyhow!("no free 172.31.200-254.0/24 block for the lab network"))
}

/// The hosts file for a lab: lab-1 is the manager, the rest workers.
pub fn hosts_file(lab: &str, subnet: Subnet, n: usize) -> HostsFile {
    HostsFile {
        ssh: SshSettings {
            identity_file: Some("id_ed25519".into()),
            known_hosts: Some("known_hosts".into()),
            strict_host_key_checking: true,
            connect_timeout: "5s".into(),
        },
        hosts: (1..=n)
            .map(|i| {
                let addr = host_addr(subnet, i).to_string();
                HostSpec {
                    name: format!("lab-{i}"),
                    ssh: Some(format!("root@{addr}:22")),
                    docker_socket: "/var/run/docker.sock".into(),
                    role: if i == 1 { Role::Manager } else { Role::Worker },
                    capacity: 500,
                    weight: None,
                    labels: BTreeMap::from([("lab".to_owned(), lab.to_owned())]),
                    advertise_addr: Some(addr),
                }
            })
            .collect(),
    }
}

/// The file name of the lab's second hosts file: this machine's engine as the swarm
/// manager, the lab hosts as its workers ([`local_manager_hosts_file`]).
pub const LOCAL_MANAGER_FILE: &str = "hosts-local-manager.toml";

/// The lab's hosts with this machine's engine as the manager (the product's own shape:
/// the launcher on the swarm manager), advertising on the lab bridge's gateway, the
/// address its kernel sends to the lab hosts from ([`crate::cluster::swarm_path`]).
pub fn local_manager_hosts_file(lab: &str, subnet: Subnet, n: usize) -> HostsFile {
    let mut file = hosts_file(lab, subnet, n);
    for h in &mut file.hosts {
        h.role = Role::Worker;
    }
    let gateway = std::net::Ipv4Addr::from(u32::from(subnet.base) + 1);
    file.hosts.insert(
        0,
        HostSpec {
            name: "local".into(),
            ssh: None,
            docker_socket: "/var/run/docker.sock".into(),
            role: Role::Manager,
            capacity: 500,
            weight: None,
            labels: BTreeMap::new(),
            advertise_addr: Some(gateway.to_string()),
        },
    );
    file
}

fn run_keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .context("cannot run ssh-keygen (install openssh-client)")?;
    if !out.status.success() {
        anyhow::bail!(
            "ssh-keygen for {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn ensure_image(builder: &Host, base: Option<&str>) -> anyhow::Result<String> {
    let (base, _) = images::ensure_base(builder, base).await?;
    let files = [
        ("Dockerfile", DOCKERFILE.as_bytes(), 0o644),
        ("sshd_config", SSHD_CONFIG.as_bytes(), 0o644),
        ("entrypoint", ENTRYPOINT.as_bytes(), 0o755),
    ];
    let announce = "lab: Docker Engine and sshd from Debian's packages";
    let (image, _) =
        images::ensure_on_base(builder, "cmesh-labhost", &files, &base, Some(announce)).await?;
    Ok(image.tag)
}

async fn ensure_network(builder: &Host, lab: &str) -> anyhow::Result<Subnet> {
    if let Ok(n) = builder.engine.inspect_network(lab).await {
        return n
            .subnets
            .iter()
            .find_map(|s| Subnet::parse(s).ok())
            .with_context(|| format!("network {lab} exists but has no IPv4 subnet; remove it"));
    }
    // Another lab may take the same block at the same moment: pick again then.
    let mut start = lab
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    for attempt in 0.. {
        let subnet = pick_lab_subnet(
            &crate::cluster::network::taken_subnets(builder).await?,
            start,
        )?;
        match create_network(builder, lab, subnet).await {
            Ok(()) => return Ok(subnet),
            Err(_) if attempt < 10 => start = start.wrapping_add(7),
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

async fn create_network(builder: &Host, lab: &str, subnet: Subnet) -> anyhow::Result<()> {
    let spec = NetworkSpec {
        encrypted: false,
        name: lab.to_owned(),
        driver: NetworkDriver::Bridge,
        subnet: subnet.to_string(),
        labels: BTreeMap::from([(LAB_LABEL.to_owned(), lab.to_owned())]),
    };
    builder
        .engine
        .create_network(&spec)
        .await
        .with_context(|| format!("creating the lab network {lab} ({subnet})"))?;
    Ok(())
}

/// A lab host: dockerd and sshd, with what an inner engine needs where `--privileged`
/// is refused (all capabilities but SYS_RESOURCE, no seccomp or AppArmor profile, nothing
/// masked under /proc and /sys, every device, the host's cgroups, a volume for
/// /var/lib/docker) and a fixed address on the lab network. An init process is PID 1:
/// containerd's shims are re-parented to PID 1 when their containers exit, and dockerd
/// there never reaped them (2,036 zombies after 2000 peers).
fn spec(lab: &str, name: &str, image: &str, addr: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        image: image.to_owned(),
        hostname: Some(name.to_owned()),
        labels: BTreeMap::from([(LAB_LABEL.to_owned(), lab.to_owned())]),
        cap_add: vec!["ALL".into()],
        cap_drop: vec!["SYS_RESOURCE".into()],
        security_opt: vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()],
        unconfined_system_paths: true,
        device_cgroup_rules: vec!["a *:* rwm".into()],
        binds: vec![
            "/sys/fs/cgroup:/sys/fs/cgroup:rw".into(),
            format!("{name}-docker:/var/lib/docker"),
        ],
        tmpfs: vec!["/run".into()],
        network: Some(lab.to_owned()),
        ipv4_address: Some(addr.to_owned()),
        init: true,
        ..Default::default()
    }
}

async fn ensure_host(
    builder: &Host,
    lab: &str,
    i: usize,
    image: &str,
    addr: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let name = host_container(lab, i);
    let engine = &builder.engine;
    if let Ok(c) = engine.inspect_container(&name).await {
        if c.state() != ContainerState::Running {
            engine
                .start_container(&name)
                .await
                .with_context(|| format!("starting lab host {name}"))?;
        }
        return Ok(());
    }
    engine
        .create_container(&spec(lab, &name, image, addr))
        .await
        .with_context(|| format!("creating lab host {name}"))?;
    let host_key = std::fs::read(dir.join("hostkeys").join(format!("lab-{i}_ed25519")))?;
    let authorized = std::fs::read(dir.join("id_ed25519.pub"))?;
    let tar = images::tar_context(&[
        ("etc/ssh/ssh_host_ed25519_key", &host_key, 0o600),
        ("root/.ssh/authorized_keys", &authorized, 0o600),
    ])?;
    engine
        .upload(&name, "/", tar.into())
        .await
        .with_context(|| format!("writing keys into lab host {name}"))?;
    engine
        .start_container(&name)
        .await
        .with_context(|| format!("starting lab host {name}"))?;
    Ok(())
}

/// Starts the lab (or completes it); returns the path of its hosts.toml.
pub async fn up(req: &LabRequest) -> anyhow::Result<PathBuf> {
    if !(1..=20).contains(&req.hosts) {
        return Err(bad_input("--hosts must be between 1 and 20"));
    }
    let builder = Connector::Docker.builder().await?;
    let dir = &req.dir;
    std::fs::create_dir_all(dir.join("hostkeys"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    run_keygen(&dir.join("id_ed25519"), "cmesh-lab")?;
    for i in 1..=req.hosts {
        run_keygen(
            &dir.join("hostkeys").join(format!("lab-{i}_ed25519")),
            &format!("lab-{i}"),
        )?;
    }
    let image = ensure_image(&builder, req.base_image.as_deref()).await?;
    let subnet = ensure_network(&builder, &req.name).await?;
    let mut known = String::new();
    for i in 1..=req.hosts {
        let addr = host_addr(subnet, i).to_string();
        let public =
            std::fs::read_to_string(dir.join("hostkeys").join(format!("lab-{i}_ed25519.pub")))?;
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        known.push_str(&format!("{addr} {}\n", key.join(" ")));
        ensure_host(&builder, &req.name, i, &image, &addr, dir).await?;
    }
    std::fs::write(dir.join("known_hosts"), known)?;
    let file = hosts_file(&req.name, subnet, req.hosts);
    let path = dir.join("hosts.toml");
    let text = format!(
        "# The `{}` lab: {} Docker hosts on this machine (launcher lab up). Format: docs/hosts.md.\n\n{}",
        req.name,
        req.hosts,
        toml::to_string(&file)?
    );
    std::fs::write(&path, text)?;
    let local_manager = dir.join(LOCAL_MANAGER_FILE);
    std::fs::write(
        &local_manager,
        format!(
            "# The `{}` lab with this machine's engine as the swarm manager (advertising on the lab\n# bridge's gateway) and its {} hosts as workers (launcher lab up). Format: docs/hosts.md.\n\n{}",
            req.name,
            req.hosts,
            toml::to_string(&local_manager_hosts_file(&req.name, subnet, req.hosts))?
        ),
    )?;
    // Ready when every host answers over SSH with its engine up.
    let loaded = crate::hosts::load(&path)?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match Connector::Docker.connect_all(&loaded).await.require_all() {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(anyhow::anyhow!("{e:#}").context(format!(
                    "the lab hosts did not come up within 90 s; see `docker logs {}`",
                    host_container(&req.name, 1)
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    tracing::info!(
        "lab: {} hosts up on {} ({subnet}); hosts file {} (and {}: this machine's engine as the manager)",
        req.hosts,
        req.name,
        path.display(),
        local_manager.display()
    );
    Ok(path)
}

/// Removes the lab's hosts, their engines' volumes and its network. Keys and the hosts
/// file stay, so `lab up` brings back the same lab.
pub async fn down(lab: &str) -> anyhow::Result<usize> {
    let builder = Connector::Docker.builder().await?;
    let engine = &builder.engine;
    let list = retry(|| engine.list_containers((LAB_LABEL, lab))).await?;
    let names: Vec<String> = list.into_iter().map(|c| c.name).collect();
    let n = names.len();
    let results = tasks::for_each("lab down", names, 8, |name: String| async move {
        engine
            .remove_container(&name)
            .await
            .with_context(|| format!("removing lab host {name}"))?;
        let _ = engine.remove_volume(&format!("{name}-docker")).await;
        anyhow::Ok(())
    })
    .await;
    for (_, r) in results {
        r?;
    }
    match engine.remove_network(lab).await {
        Ok(()) | Err(EngineError::NotFound(_)) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("removing the lab network {lab}")))
        }
    }
    tracing::info!("lab: removed {n} hosts and network {lab}");
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_hosts_file_round_trips_and_validates() {
        let subnet = Subnet::parse("172.31.250.0/24").unwrap();
        let file = hosts_file("cmesh-lab", subnet, 3);
        let text = toml::to_string(&file).unwrap();
        let parsed = crate::hosts::parse(&text, "lab.toml").unwrap();
        assert_eq!(parsed, file);
        assert_eq!(parsed.manager().name, "lab-1");
        assert_eq!(
            parsed.hosts[2].ssh.as_deref(),
            Some("root@172.31.250.13:22")
        );
        assert_eq!(
            parsed.hosts[2].swarm_addr().as_deref(),
            Some("172.31.250.13")
        );
        assert!(parsed.ssh.strict_host_key_checking);
    }

    #[test]
    fn the_local_manager_file_puts_this_engine_first_advertising_the_gateway() {
        let subnet = Subnet::parse("172.31.250.0/24").unwrap();
        let file = local_manager_hosts_file("cmesh-lab", subnet, 2);
        let parsed = crate::hosts::parse(&toml::to_string(&file).unwrap(), "f.toml").unwrap();
        assert_eq!(parsed, file);
        let names: Vec<&str> = parsed.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["local", "lab-1", "lab-2"]);
        let manager = parsed.manager();
        assert_eq!(manager.name, "local");
        assert!(!manager.is_remote());
        assert_eq!(manager.swarm_addr().as_deref(), Some("172.31.250.1"));
        assert!(parsed.hosts[1..].iter().all(|h| h.role == Role::Worker));
    }

    #[test]
    fn picks_a_free_lab_subnet() {
        let first = pick_lab_subnet(&[], 0).unwrap();
        assert_eq!(first.to_string(), "172.31.200.0/24");
        let next = pick_lab_subnet(&[first, Subnet::parse("172.31.201.0/24").unwrap()], 0).unwrap();
        assert_eq!(next.to_string(), "172.31.202.0/24");
        assert_eq!(
            pick_lab_subnet(&[], 54).unwrap().to_string(),
            "172.31.254.0/24"
        );
        assert_eq!(
            pick_lab_subnet(&[], 55).unwrap().to_string(),
            "172.31.200.0/24"
        );
        assert!(pick_lab_subnet(&[Subnet::parse("172.16.0.0/12").unwrap()], 3).is_err());
    }

    #[test]
    fn lab_containers_get_the_dind_recipe() {
        let s = spec("lab", "lab-1", "img", "172.31.200.11");
        assert_eq!(s.cap_add, vec!["ALL".to_owned()]);
        assert_eq!(s.cap_drop, vec!["SYS_RESOURCE".to_owned()]);
        assert!(s.unconfined_system_paths);
        assert!(s.binds.contains(&"lab-1-docker:/var/lib/docker".to_owned()));
        assert_eq!(s.ipv4_address.as_deref(), Some("172.31.200.11"));
        assert!(s.init, "an init reaps the shims dockerd leaves to PID 1");
    }
}
