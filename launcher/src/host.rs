//! A Docker host of the run, behind one interface.
//!
//! Every command works with [`Host`]s: a name, a role, a capacity and a connected
//! `bollard` client. Local and remote hosts differ only in how the client is made (remote
//! hosts, over one SSH master per host, arrive with the multi-host issue).

use crate::error::bad_input;
use crate::hosts::{HostSpec, Role};
use bollard::Docker;

/// Seconds a single Docker API request may take (image builds and log follows are long).
const API_TIMEOUT_SECS: u64 = 3600;

/// A connected Docker host.
#[derive(Clone)]
pub struct Host {
    pub spec: HostSpec,
    pub docker: Docker,
}

impl Host {
    /// Connects to the host's engine and negotiates the API version (the engine may be
    /// older than the client). An unreachable engine is bad input: nothing was changed.
    pub async fn connect(spec: HostSpec) -> anyhow::Result<Host> {
        let socket = spec.engine.trim_start_matches("unix://").to_owned();
        let unreachable = |e: &dyn std::fmt::Display| {
            bad_input(format!(
                "cannot reach the Docker Engine of host `{}` at {socket}: {e}. Is dockerd running, and may this user use the socket? Fix the host's `engine` in hosts.toml if the socket is elsewhere",
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
        Ok(Host { spec, docker })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn is_manager(&self) -> bool {
        self.spec.role == Role::Manager
    }
}

/// Connects to every host; fails on the first that cannot be reached.
pub async fn connect_all(specs: Vec<HostSpec>) -> anyhow::Result<Vec<Host>> {
    let mut hosts = Vec::with_capacity(specs.len());
    for spec in specs {
        hosts.push(Host::connect(spec).await?);
    }
    Ok(hosts)
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
