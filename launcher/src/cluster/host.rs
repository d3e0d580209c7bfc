//! A Docker host of the run, behind one interface.
//!
//! Every command works with [`Host`]s: a spec from hosts.toml and its [`Engine`]. Local
//! and remote hosts differ only in how the engine is reached: the local engine at its
//! socket; a remote one over one SSH master per host ([`crate::cluster::ssh`]), with its
//! socket forwarded to a private local socket. Commands on the host itself
//! ([`Host::exec`]) and TCP forwards ([`Host::forward_tcp`]) work the same way on both.
//!
//! A [`Connector`] makes hosts: of real engines, or of a simulated cluster
//! ([`crate::engine::sim`]). [`Connector::connect_all`] gives every host's outcome: a
//! host that cannot be reached is a [`LostHost`] in the result, not an early return.

use crate::cluster::ssh::{Link, Output};
use crate::engine::docker::{DockerEngine, Endpoint};
use crate::engine::sim;
use crate::engine::Engine;
use crate::hosts::{HostSpec, HostsFile, Role, DEFAULT_SOCKET};
use anyhow::Context;
use cmesh_common::exit::bad_input;
use std::net::SocketAddr;
use std::sync::Arc;

/// A connected Docker host.
#[derive(Clone)]
pub struct Host {
    pub spec: HostSpec,
    pub engine: Arc<dyn Engine>,
    link: Option<Arc<Link>>,
    /// A simulated host's limits (its model); real hosts are probed
    /// ([`crate::cluster::limits::facts`]).
    pub(crate) modelled_facts: Option<crate::engine::facts::HostFacts>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.spec.name)
            .field("remote", &self.spec.is_remote())
            .finish_non_exhaustive()
    }
}

/// A host that could not be reached, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LostHost {
    pub name: String,
    pub reason: String,
    /// The hosts file is at fault (a wrong host key, a refused key, a bad destination),
    /// not the host.
    #[serde(skip)]
    pub bad_input: bool,
}

/// Why a host is taken as lost by a command with limited patience: a busy host and a
/// frozen one look alike from outside (its sshd accepts, and then no banner comes).
pub fn not_answering(host: &str, patience: std::time::Duration) -> String {
    format!(
        "host `{host}` has not answered within {:.0} s (busy or frozen: from outside they look alike); --host-timeout waits longer",
        patience.as_secs_f64()
    )
}

/// What connecting to every host of a hosts file gave.
#[derive(Clone)]
pub struct HostSet {
    /// The reachable hosts, in hosts-file order.
    pub hosts: Vec<Host>,
    pub lost: Vec<LostHost>,
}

impl HostSet {
    /// Every host, or an error that names each lost one with its reason: exit 1 (a lost
    /// host is a failure), or 2 where the hosts file is at fault for one of them.
    pub fn require_all(self) -> anyhow::Result<Vec<Host>> {
        let message = match self.lost.len() {
            0 => return Ok(self.hosts),
            1 => self.lost[0].reason.clone(),
            n => {
                let all: Vec<String> = self
                    .lost
                    .iter()
                    .map(|l| format!("  {}", l.reason))
                    .collect();
                format!("{n} hosts cannot be reached:\n{}", all.join("\n"))
            }
        };
        if self.lost.iter().any(|l| l.bad_input) {
            Err(bad_input(message))
        } else {
            Err(anyhow::anyhow!(message))
        }
    }
}

/// How hosts are reached: real Docker Engines, or a simulated cluster.
#[derive(Clone, Default)]
pub enum Connector {
    #[default]
    Docker,
    Sim(sim::Cluster),
}

impl Connector {
    /// Connects to one host.
    pub async fn connect(
        &self,
        spec: HostSpec,
        ssh: &crate::hosts::SshSettings,
    ) -> anyhow::Result<Host> {
        match self {
            Connector::Docker => Host::connect(spec, ssh).await,
            Connector::Sim(cluster) => {
                // Like a real connect, it fails for a host that does not answer.
                let engine = cluster.engine(&spec.name);
                engine.version().await.map_err(|e| {
                    anyhow::anyhow!("cannot reach the engine of host `{}`: {e}", spec.name)
                })?;
                Ok(Host {
                    modelled_facts: Some(cluster.facts(&spec.name)),
                    engine: Arc::new(engine),
                    spec,
                    link: None,
                })
            }
        }
    }

    /// Connects to every host at once; each host's outcome is in the result.
    pub async fn connect_all(&self, file: &HostsFile) -> HostSet {
        self.connect_all_within(file, None).await
    }

    /// [`Connector::connect_all`], where a host that has not connected within `patience`
    /// counts as lost, saying so ([`not_answering`]).
    pub async fn connect_all_within(
        &self,
        file: &HostsFile,
        patience: Option<std::time::Duration>,
    ) -> HostSet {
        let results = futures_util::future::join_all(file.hosts.iter().map(|spec| async {
            let connect = self.connect(spec.clone(), &file.ssh);
            match patience {
                None => connect.await,
                Some(p) => tokio::time::timeout(p, connect)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!(not_answering(&spec.name, p)))),
            }
        }))
        .await;
        let mut set = HostSet {
            hosts: Vec::new(),
            lost: Vec::new(),
        };
        for (spec, r) in file.hosts.iter().zip(results) {
            match r {
                Ok(h) => set.hosts.push(h),
                Err(e) => set.lost.push(LostHost {
                    name: spec.name.clone(),
                    reason: format!("{e:#}"),
                    bad_input: cmesh_common::exit::code(&e) == cmesh_common::exit::BAD_INPUT,
                }),
            }
        }
        set
    }

    /// This machine's own engine, where images are built: `DOCKER_HOST` (unix:// or
    /// tcp://) if set, else /var/run/docker.sock. Any other `DOCKER_HOST` is refused.
    pub async fn builder(&self) -> anyhow::Result<Host> {
        let endpoint = local_endpoint("this-machine", DEFAULT_SOCKET)?;
        let spec = HostSpec {
            name: "this-machine".into(),
            docker_socket: endpoint.to_string(),
            role: Role::Worker,
            ..crate::hosts::local_default().hosts.remove(0)
        };
        match self {
            Connector::Docker => {
                let engine = DockerEngine::connect(&endpoint).await.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot reach this machine's Docker Engine at {endpoint}: {e}. Is dockerd running, and may this user use it? (DOCKER_HOST picks another engine)"
                    )
                })?;
                Ok(Host {
                    spec,
                    engine: Arc::new(engine),
                    link: None,
                    modelled_facts: None,
                })
            }
            Connector::Sim(_) => self.connect(spec, &Default::default()).await,
        }
    }
}

/// `DOCKER_HOST`, if set: unix:// or tcp://; anything else is bad input.
fn docker_host() -> anyhow::Result<Option<Endpoint>> {
    match std::env::var("DOCKER_HOST") {
        Ok(v) if !v.is_empty() => {
            let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
            Ok(Some(
                Endpoint::parse_docker_host(&v, tls).map_err(bad_input)?,
            ))
        }
        _ => Ok(None),
    }
}

/// This machine's engine for local host `name`, whose hosts.toml entry names `socket`:
/// `DOCKER_HOST` when set, which must then agree with a socket other than the default;
/// else `socket`.
fn local_endpoint(name: &str, socket: &str) -> anyhow::Result<Endpoint> {
    choose_local_endpoint(name, socket, docker_host()?)
}

fn choose_local_endpoint(
    name: &str,
    socket: &str,
    docker_host: Option<Endpoint>,
) -> anyhow::Result<Endpoint> {
    match docker_host {
        None => Ok(Endpoint::Unix(socket.to_owned())),
        Some(Endpoint::Unix(path)) if path == socket => Ok(Endpoint::Unix(path)),
        Some(e) if socket == DEFAULT_SOCKET => Ok(e),
        Some(e) => Err(bad_input(format!(
            "host `{name}` in hosts.toml names the Docker socket {socket}, but DOCKER_HOST names {e}: make them agree, or unset DOCKER_HOST"
        ))),
    }
}

impl Host {
    /// Connects to the host's engine (over SSH for a remote host) and negotiates the API
    /// version (the engine may be older than the client). An unreachable host is a
    /// failure (exit 1) naming the host and the socket.
    pub async fn connect(spec: HostSpec, ssh: &crate::hosts::SshSettings) -> anyhow::Result<Host> {
        let link = match spec.is_remote() {
            true => Some(Link::open(&spec, ssh).await?),
            false => None,
        };
        let endpoint = match &link {
            Some(l) => Endpoint::Unix(l.docker_socket().display().to_string()),
            None => local_endpoint(&spec.name, &spec.docker_socket)?,
        };
        let via = match &spec.ssh {
            Some(d) => format!("{} over SSH ({d})", spec.docker_socket),
            None => endpoint.to_string(),
        };
        let engine = DockerEngine::connect(&endpoint).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the Docker Engine of host `{}` at {via}: {e}. Is dockerd running, and may this user use the socket? Fix the host's `docker_socket` in hosts.toml if the socket is elsewhere",
                spec.name
            )
        })?;
        Ok(Host {
            spec,
            engine: Arc::new(engine),
            link,
            modelled_facts: None,
        })
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
        let q = crate::cluster::ssh::shell_quote;
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

    /// Creates (or finds) volume `name` with one label `key=value`.
    pub async fn ensure_volume(
        &self,
        name: &str,
        (key, value): (&str, &str),
    ) -> anyhow::Result<()> {
        let spec = crate::engine::VolumeSpec {
            name: name.to_owned(),
            labels: [(key.to_owned(), value.to_owned())].into(),
        };
        crate::engine::retry::retry(|| self.engine.create_volume(&spec))
            .await
            .with_context(|| format!("creating volume {name} on host {}", self.name()))
    }

    /// An address on this machine that reaches `127.0.0.1:port` on the host.
    pub async fn forward_tcp(&self, port: u16) -> anyhow::Result<SocketAddr> {
        match &self.link {
            Some(link) => link.forward_tcp(port).await,
            None => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }
}

/// The manager host (hosts.toml has exactly one); an error if it is not among `hosts`
/// (it could not be reached).
pub fn manager(hosts: &[Host]) -> anyhow::Result<&Host> {
    hosts.iter().find(|h| h.is_manager()).ok_or_else(|| {
        anyhow::anyhow!(
            "the swarm manager is not among the reachable hosts; it runs the coordinator and the network. Bring it back (`launcher hosts check`) and re-run the command"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(name: &str, bad_input: bool) -> LostHost {
        LostHost {
            name: name.into(),
            reason: format!("host `{name}` is gone"),
            bad_input,
        }
    }

    #[test]
    fn a_lost_host_is_a_failure_and_a_bad_hosts_file_is_bad_input() {
        let set = |lost| HostSet {
            hosts: Vec::new(),
            lost,
        };
        assert!(set(vec![]).require_all().unwrap().is_empty());
        let e = set(vec![lost("a", false)]).require_all().unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 1);
        let e = set(vec![lost("a", false), lost("b", true)])
            .require_all()
            .unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
        assert!(e.to_string().contains("2 hosts cannot be reached"), "{e}");
        assert!(e.to_string().contains("host `b` is gone"), "{e}");
    }

    #[test]
    fn docker_host_picks_the_local_engine_and_a_conflict_is_refused() {
        let tcp = Endpoint::Tcp("tcp://10.0.0.2:2375".into());
        assert_eq!(
            choose_local_endpoint("local", DEFAULT_SOCKET, None).unwrap(),
            Endpoint::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            choose_local_endpoint("local", DEFAULT_SOCKET, Some(tcp.clone())).unwrap(),
            tcp
        );
        let same = Endpoint::Unix("/run/other.sock".into());
        assert_eq!(
            choose_local_endpoint("local", "/run/other.sock", Some(same.clone())).unwrap(),
            same
        );
        let e = choose_local_endpoint("local", "/run/other.sock", Some(tcp)).unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
        assert!(e.to_string().contains("make them agree"), "{e}");
    }
}
