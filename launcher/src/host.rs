//! A Docker host of the run, behind one interface.
//!
//! Every command works with [`Host`]s: a spec from hosts.toml and a connected `bollard`
//! client. Local and remote hosts differ only in how the client is made: the local engine
//! is reached at its socket; a remote one over one SSH master per host ([`crate::ssh`]),
//! with its socket forwarded to a private local socket. Commands on the host itself
//! ([`Host::exec`]) and TCP forwards ([`Host::forward_tcp`]) work the same way on both.

use crate::error::bad_input;
use crate::hosts::{HostSpec, HostsFile, Role};
use crate::ssh::{Link, Output};
use anyhow::Context;
use bollard::Docker;
use std::net::SocketAddr;
use std::sync::Arc;

/// Seconds a single Docker API request may take (image builds and log follows are long).
const API_TIMEOUT_SECS: u64 = 3600;

/// A connected Docker host.
#[derive(Clone)]
pub struct Host {
    pub spec: HostSpec,
    pub docker: Docker,
    link: Option<Arc<Link>>,
}

impl Host {
    /// Connects to the host's engine (over SSH for a remote host) and negotiates the API
    /// version (the engine may be older than the client). An unreachable host is bad
    /// input: nothing was changed.
    pub async fn connect(spec: HostSpec, ssh: &crate::hosts::SshSettings) -> anyhow::Result<Host> {
        let link = match spec.is_remote() {
            true => Some(Link::open(&spec, ssh).await?),
            false => None,
        };
        let socket = match &link {
            Some(l) => l.docker_socket().display().to_string(),
            None => spec.docker_socket.clone(),
        };
        let via = match &spec.ssh {
            Some(d) => format!("{} over SSH ({d})", spec.docker_socket),
            None => socket.clone(),
        };
        let unreachable = |e: &dyn std::fmt::Display| {
            bad_input(format!(
                "cannot reach the Docker Engine of host `{}` at {via}: {e}. Is dockerd running, and may this user use the socket? Fix the host's `docker_socket` in hosts.toml if the socket is elsewhere",
                spec.name
            ))
        };
        let docker =
            Docker::connect_with_unix(&socket, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| unreachable(&e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(&e))?;
        docker.ping().await.map_err(|e| unreachable(&e))?;
        Ok(Host { spec, docker, link })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn is_manager(&self) -> bool {
        self.spec.role == Role::Manager
    }

    /// The SSH link of a remote host.
    pub fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    /// Runs `script` with `sh -c` on the host (over SSH, or here for the local host).
    pub async fn exec(&self, script: &str, stdin: &[u8]) -> anyhow::Result<Output> {
        if let Some(link) = &self.link {
            return link.exec(script, stdin).await;
        }
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running sh")?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).await?;
        }
        Ok(child.wait_with_output().await?.into())
    }

    /// Writes `bytes` to `path` on the host (creating its directory), as root where the
    /// SSH user is not root (`sudo -n`).
    pub async fn install_file(&self, path: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
        let q = crate::ssh::shell_quote;
        let script = format!(
            "s=; [ \"$(id -u)\" = 0 ] || s='sudo -n'; $s mkdir -p {d} && $s sh -c {inner}",
            d = q(dir),
            inner = q(&format!(
                "cat > {p}.tmp && chmod {mode:o} {p}.tmp && mv {p}.tmp {p}",
                p = q(path)
            )),
        );
        let out = self.exec(&script, bytes).await?;
        if out.status != 0 {
            anyhow::bail!(
                "writing {path} on host `{}` failed (exit {}): {}. The SSH user needs root or passwordless sudo",
                self.name(),
                out.status,
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// An address on this machine that reaches `127.0.0.1:port` on the host.
    pub async fn forward_tcp(&self, port: u16) -> anyhow::Result<SocketAddr> {
        match &self.link {
            Some(link) => link.forward_tcp(port).await,
            None => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }
}

/// Connects to every host at once; fails naming every host that cannot be reached.
pub async fn connect_all(file: &HostsFile) -> anyhow::Result<Vec<Host>> {
    let results = futures_util::future::join_all(
        file.hosts
            .iter()
            .map(|spec| Host::connect(spec.clone(), &file.ssh)),
    )
    .await;
    let mut hosts = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(h) => hosts.push(h),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(hosts),
        1 => Err(errors.remove(0)),
        n => {
            let all: Vec<String> = errors.iter().map(|e| format!("  {e:#}")).collect();
            Err(bad_input(format!(
                "{n} hosts cannot be reached:\n{}",
                all.join("\n")
            )))
        }
    }
}

/// This machine's own engine (`DOCKER_HOST` if it is a unix socket, else
/// /var/run/docker.sock): where images are built.
pub async fn builder() -> anyhow::Result<Host> {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|s| s.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let spec = HostSpec {
        name: "this-machine".into(),
        docker_socket: socket,
        role: Role::Worker,
        ..crate::hosts::local_default().hosts.remove(0)
    };
    Host::connect(spec, &crate::hosts::SshSettings::default()).await
}

/// The manager host (hosts.toml guarantees there is exactly one).
pub fn manager(hosts: &[Host]) -> &Host {
    hosts
        .iter()
        .find(|h| h.is_manager())
        .expect("hosts.toml has exactly one manager")
}

/// True for errors worth retrying: the engine was busy or the connection broke.
pub fn is_transient(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error::*;
    match e {
        DockerResponseServerError {
            status_code,
            message,
        } => *status_code >= 500 && !message.contains("No such") && !message.contains("not found"),
        HyperResponseError { .. } | IOError { .. } | RequestTimeoutError => true,
        _ => false,
    }
}
