//! The engine seam: the only code that talks to a container engine.
//!
//! Everything the launcher does to a Docker host goes through the [`Engine`] trait:
//! typed operations ([`ContainerSpec`] in, [`ContainerInfo`] and [`ContainerState`] out)
//! and typed errors ([`EngineError`], classified by HTTP status, never by message text).
//! Two engines sit behind it:
//!
//! - [`docker::DockerEngine`]: a real Docker Engine through bollard (the only module that
//!   names bollard), reached at a local socket or, for a remote host, at the socket an
//!   SSH master forwards ([`crate::cluster::ssh`]);
//! - [`sim::SimEngine`]: an in-memory engine with per-operation latency and per-host
//!   parallelism calibrated from this machine, and injectable faults. It runs the same
//!   orchestration code for fast deterministic tests, and for projecting 10,000 peers on
//!   20 hosts (`bench/sim-scale`).
//!
//! Beside the two engines: [`retry::retry`], where transient errors are retried (the
//! one place), the [`labels`] that find cmesh's objects, and [`facts`], what a host's
//! kernel offers, as a probe reads it or the simulated engine models it.
//!
//! Nothing here knows about hosts files, SSH, swarms or runs: the hosts and what is
//! built on the seam for every engine are [`crate::cluster`]'s; a run's names,
//! containers and volumes are [`crate::run`]'s.

pub mod docker;
pub mod facts;
pub mod labels;
pub mod retry;
pub mod sim;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A short content hash (12 hex digits) of `parts`, each length-prefixed: images are
/// tagged by what they are built from, and the simulated engine's ids are made so.
pub fn short_hash(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())[..12].to_owned()
}

/// What went wrong with an engine operation, by kind. Callers match on the kind; the
/// message is for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The object does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object exists, or is in a state that refuses the operation (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Already in the asked-for state (HTTP 304: started, stopped).
    #[error("not modified: {0}")]
    NotModified(String),
    /// The engine cannot be reached: connection refused or broken, SSH master gone.
    #[error("host unreachable: {0}")]
    Unreachable(String),
    /// The engine did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The engine answered with an error worth retrying (HTTP 5xx).
    #[error("engine error: {0}")]
    Server(String),
    /// Anything else: bad request, bad data.
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    /// Worth retrying: the engine was busy or the connection broke. Not a timeout: an
    /// engine that did not answer for minutes is stuck, and asking again would only
    /// multiply the wait before the host counts as lost.
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Server(_) | EngineError::Unreachable(_))
    }

    /// The host is gone (as opposed to one operation failing on it).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EngineError::Unreachable(_) | EngineError::Timeout(_))
    }
}

/// A container's state, as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// A state this launcher does not know.
    Unknown,
}

impl ContainerState {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Unknown => "unknown",
        }
    }

    /// From Docker's word; [`ContainerState::Unknown`] for any other.
    pub fn parse(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Unknown,
        }
    }

    /// The container has finished: it will not run again unless someone starts it.
    /// (Paused is not finished: it resumes where it stopped.)
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ContainerState::Exited | ContainerState::Dead | ContainerState::Removing
        )
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container as a list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSummary {
    pub name: String,
    pub state: ContainerState,
}

/// A container as inspect shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    pub name: String,
    pub id: String,
    pub image: String,
    pub state: Option<ContainerState>,
    /// Set once the container has stopped.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: i64,
    pub labels: BTreeMap<String, String>,
    /// Container TCP port → the host port it is published on.
    pub published: BTreeMap<u16, u16>,
}

impl ContainerInfo {
    pub fn state(&self) -> ContainerState {
        self.state.unwrap_or(ContainerState::Unknown)
    }
}

/// A TCP port to publish: the container's `port` on `host_ip:host_port` (0: any free).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

/// What to do when a container stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    UnlessStopped,
}

/// `r`, with "it is not there" counted as done: for removals that an earlier, interrupted
/// run of the same command may have made already.
pub fn gone_is_fine(r: Result<(), EngineError>) -> Result<(), EngineError> {
    match r {
        Err(EngineError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// Credentials for cmesh's registry (basic auth, its htpasswd). Never printed.
#[derive(Clone)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// `addr:port`.
    pub server: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RegistryAuth({}@{}, <password>)",
            self.username, self.server
        )
    }
}

/// Everything a container is created with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `volume:path[:ro]` or `/host/path:path[:rw]`.
    pub binds: Vec<String>,
    /// A network to attach to, with a fixed IPv4 address on it if given.
    pub network: Option<String>,
    pub ipv4_address: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    /// Nothing masked or read-only under /proc and /sys (`systempaths=unconfined`).
    pub unconfined_system_paths: bool,
    pub device_cgroup_rules: Vec<String>,
    pub tmpfs: Vec<String>,
    /// Memory limit in bytes (swap the same: none).
    pub memory_bytes: Option<i64>,
    /// CPU quota in billionths of a CPU (`docker run --cpus`).
    pub nano_cpus: Option<i64>,
    /// The container's CPU weight against the others (`docker run --cpu-shares`; the
    /// engine's default is 1024).
    pub cpu_shares: Option<i64>,
    /// Run an init process as PID 1.
    pub init: bool,
    /// json-file logs capped at 2 × 10 MB.
    pub capped_logs: bool,
    pub publish: Vec<Publish>,
    pub restart: RestartPolicy,
}

/// A volume to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The network driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkDriver {
    /// Spans the swarm's hosts; attachable by plain containers.
    AttachableOverlay,
    /// One host's bridge.
    Bridge,
}

/// A network to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: NetworkDriver,
    pub subnet: String,
    pub labels: BTreeMap<String, String>,
    /// An overlay whose traffic between hosts is encrypted (IPsec, the `encrypted`
    /// driver option).
    pub encrypted: bool,
}

/// A network as inspect shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkInfo {
    pub id: String,
    pub subnets: Vec<String>,
}

/// An image as inspect shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub repo_digests: Vec<String>,
}

/// A host's place in a swarm, as its engine reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwarmState {
    #[default]
    Inactive,
    Pending,
    Active,
    Error,
    Locked,
}

impl SwarmState {
    pub fn parse(s: &str) -> SwarmState {
        match s {
            "pending" => SwarmState::Pending,
            "active" => SwarmState::Active,
            "error" => SwarmState::Error,
            "locked" => SwarmState::Locked,
            _ => SwarmState::Inactive,
        }
    }
}

impl fmt::Display for SwarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwarmState::Inactive => "inactive",
            SwarmState::Pending => "pending",
            SwarmState::Active => "active",
            SwarmState::Error => "error",
            SwarmState::Locked => "locked",
        })
    }
}

/// What `docker info` says that the launcher uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineInfo {
    pub docker_root_dir: Option<String>,
    /// The engine's clock, RFC 3339 with fractions.
    pub system_time: Option<String>,
    pub swarm: NodeState,
}

/// A host's swarm membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    pub state: SwarmState,
    pub node_id: String,
    pub node_addr: String,
    pub is_manager: bool,
}

/// Joining or initializing a swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmJoin {
    pub listen_addr: String,
    pub advertise_addr: String,
    /// Empty for init.
    pub remote_addrs: Vec<String>,
    pub join_token: String,
}

/// A swarm node's labels and the version to update them at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLabels {
    pub version: u64,
    pub labels: HashMap<String, String>,
}

/// What happened to a container, from the engine's event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Start,
    Die,
    Pause,
    Unpause,
    Destroy,
    /// Anything else (create, kill, attach …).
    Other,
}

/// One container event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    pub name: String,
    pub kind: EventKind,
}

/// Which log streams, and whether to follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Each line starts with its RFC 3339 time (nanoseconds) and a space.
    pub timestamps: bool,
    /// Only lines from this second on (Unix time).
    pub since: Option<i64>,
}

/// A stream of bytes from the engine (logs, archives, exported images).
pub type ByteStream = BoxStream<'static, Result<Bytes, EngineError>>;

/// The operations the launcher needs from a container engine. Each one is a single
/// request: retries are the caller's ([`retry::retry`]).
#[async_trait]
pub trait Engine: Send + Sync {
    /// `docker info`: one request (the clock is read from it).
    async fn info(&self) -> Result<EngineInfo, EngineError>;
    /// The engine's version and API version.
    async fn version(&self) -> Result<(String, String), EngineError>;

    /// The containers labelled `key=value` (stopped ones too).
    async fn list_containers(
        &self,
        label: (&str, &str),
    ) -> Result<Vec<ContainerSummary>, EngineError>;
    /// Creates a container (not started). [`EngineError::Conflict`] if the name is taken.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<(), EngineError>;
    async fn start_container(&self, name: &str) -> Result<(), EngineError>;
    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo, EngineError>;
    /// SIGKILL.
    async fn kill_container(&self, name: &str) -> Result<(), EngineError>;
    async fn pause_container(&self, name: &str) -> Result<(), EngineError>;
    async fn unpause_container(&self, name: &str) -> Result<(), EngineError>;
    /// Removes a container, running or not.
    async fn remove_container(&self, name: &str) -> Result<(), EngineError>;
    /// A tar archive of `path` in the container.
    fn download(&self, name: &str, path: &str) -> ByteStream;
    /// Unpacks the tar archive `tar` at `path` in the container.
    async fn upload(&self, name: &str, path: &str, tar: Bytes) -> Result<(), EngineError>;
    /// stdout and stderr.
    fn logs(&self, name: &str, options: LogOptions) -> ByteStream;
    /// Container events of containers labelled `key=value`, from now on.
    fn events(
        &self,
        label: (&str, &str),
    ) -> BoxStream<'static, Result<ContainerEvent, EngineError>>;

    /// Creates a volume; one that exists already is fine.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), EngineError>;
    async fn volume_exists(&self, name: &str) -> Result<bool, EngineError>;
    async fn remove_volume(&self, name: &str) -> Result<(), EngineError>;

    async fn list_network_subnets(&self) -> Result<Vec<String>, EngineError>;
    async fn inspect_network(&self, name: &str) -> Result<NetworkInfo, EngineError>;
    /// Creates a network; returns its id.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError>;
    async fn remove_network(&self, name: &str) -> Result<(), EngineError>;

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo, EngineError>;
    /// Builds `tag` from a tar context with a `Dockerfile`.
    async fn build_image(
        &self,
        tag: &str,
        context: Bytes,
        build_args: &HashMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Imports a root filesystem tar as image `repo:tag`.
    async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        tar: ByteStream,
    ) -> Result<(), EngineError>;
    /// Pulls `reference`, with `auth` for a registry that needs it (sent with the request
    /// only: nothing is stored on the host).
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError>;
    /// Pushes `repo:tag` to the registry named in `repo`, with `auth` if it needs it.
    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError>;
    async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), EngineError>;
    /// `docker save`.
    fn export_images(&self, tags: &[&str]) -> ByteStream;
    /// `docker load`.
    async fn load_images(&self, tar: ByteStream) -> Result<(), EngineError>;

    async fn swarm_init(&self, join: &SwarmJoin) -> Result<(), EngineError>;
    async fn swarm_join(&self, join: &SwarmJoin) -> Result<(), EngineError>;
    async fn swarm_leave(&self) -> Result<(), EngineError>;
    /// The worker join token (on a manager).
    async fn swarm_worker_token(&self) -> Result<String, EngineError>;
    async fn list_nodes(&self) -> Result<Vec<String>, EngineError>;
    async fn node_labels(&self, node_id: &str) -> Result<NodeLabels, EngineError>;
    /// Sets a node's labels at `version`; [`EngineError::Conflict`] when another update
    /// came first.
    async fn set_node_labels(&self, node_id: &str, labels: &NodeLabels) -> Result<(), EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_say_when_finished() {
        for s in [
            ContainerState::Created,
            ContainerState::Running,
            ContainerState::Paused,
            ContainerState::Restarting,
            ContainerState::Removing,
            ContainerState::Exited,
            ContainerState::Dead,
        ] {
            assert_eq!(ContainerState::parse(s.as_str()), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(ContainerState::parse("zombie"), ContainerState::Unknown);
        assert!(ContainerState::Exited.is_finished());
        assert!(!ContainerState::Paused.is_finished());
        assert!(!ContainerState::Created.is_finished());
    }

    #[test]
    fn only_busy_and_broken_is_transient() {
        assert!(EngineError::Server("x".into()).is_transient());
        assert!(EngineError::Unreachable("x".into()).is_transient());
        assert!(!EngineError::NotFound("x".into()).is_transient());
        assert!(!EngineError::Conflict("x".into()).is_transient());
        assert!(!EngineError::Timeout("x".into()).is_transient());
        assert!(EngineError::Timeout("x".into()).is_unreachable());
        assert!(!EngineError::Server("x".into()).is_unreachable());
    }
}
