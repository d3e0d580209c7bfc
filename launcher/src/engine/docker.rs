//! [`Engine`] on a real Docker Engine, through bollard: the one module that names it.
//!
//! Errors are classified by the HTTP status the engine answered with (404, 409, 304,
//! 5xx) or by the transport failing, never by message text.

use super::{
    ByteStream, ContainerEvent, ContainerInfo, ContainerSpec, ContainerState, ContainerSummary,
    Engine, EngineError, EngineInfo, EventKind, ImageInfo, LogOptions, NetworkDriver, NetworkInfo,
    NetworkSpec, NodeLabels, NodeState, RegistryAuth, RestartPolicy, SwarmJoin, SwarmState,
    VolumeSpec,
};
use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig,
    Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicyNameEnum,
    SwarmInitRequest, SwarmJoinRequest, VolumeCreateRequest,
};
use bollard::query_parameters as q;
use bollard::Docker;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;

/// Seconds a long Docker API request may take (image builds, pulls and loads, archives,
/// log follows).
const API_TIMEOUT_SECS: u64 = 3600;
/// Seconds any other request may take to be answered (inspect, list, create, start,
/// remove, networks, volumes, swarm). Past it the engine counts as unreachable, and the
/// host as lost: a deadlocked engine answers nothing (seen with Docker 20.10.24 at 1000
/// containers, moby/moby#46661), and every command would otherwise wait for an hour.
/// Generous: under the load of a 1000-container spawn an answer took seconds.
pub const ANSWER_TIMEOUT_SECS: u64 = 120;

/// Where a Docker Engine is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `tcp://host:port` (plain HTTP: the engine's TLS mode is not supported).
    Tcp(String),
}

impl Endpoint {
    /// Reads a `DOCKER_HOST` value: `unix:///path`, a bare path, or `tcp://host:port`.
    /// Anything else (ssh://, npipe://, `DOCKER_TLS_VERIFY`) is refused with the reason.
    pub fn parse_docker_host(value: &str, tls_verify: bool) -> Result<Endpoint, String> {
        if let Some(path) = value.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.to_owned()));
        }
        if value.starts_with('/') {
            return Ok(Endpoint::Unix(value.to_owned()));
        }
        if let Some(addr) = value.strip_prefix("tcp://") {
            if tls_verify {
                return Err(format!(
                    "DOCKER_HOST={value} with DOCKER_TLS_VERIFY: the launcher does not speak TLS to an engine; reach it over SSH instead (an `ssh` host in hosts.toml) or unset DOCKER_TLS_VERIFY for a plain-HTTP engine"
                ));
            }
            if addr.is_empty() {
                return Err(format!("DOCKER_HOST={value} names no address"));
            }
            return Ok(Endpoint::Tcp(value.to_owned()));
        }
        Err(format!(
            "DOCKER_HOST={value} is not supported: use unix:///path/to/docker.sock or tcp://HOST:PORT, or list remote hosts in hosts.toml with `ssh` (docs/hosts.md)"
        ))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => f.write_str(p),
            Endpoint::Tcp(a) => f.write_str(a),
        }
    }
}

/// A connected Docker Engine.
#[derive(Clone)]
pub struct DockerEngine {
    /// For the long requests.
    docker: Docker,
    /// The same connection, for requests that must be answered within
    /// [`ANSWER_TIMEOUT_SECS`].
    quick: Docker,
}

/// The kind of a bollard error.
pub fn classify(e: bollard::errors::Error) -> EngineError {
    use bollard::errors::Error::*;
    match e {
        DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => EngineError::NotFound(message),
            409 => EngineError::Conflict(message),
            304 => EngineError::NotModified(message),
            s if s >= 500 => EngineError::Server(message),
            s => EngineError::Other(format!("HTTP {s}: {message}")),
        },
        RequestTimeoutError => EngineError::Timeout(
            "the engine did not answer in time: is dockerd stuck? `docker info` on the host tells; restarting dockerd frees it".into(),
        ),
        e @ (HyperResponseError { .. }
        | IOError { .. }
        | SocketNotFoundError(_)
        | HyperLegacyError { .. }
        | HttpClientError { .. }) => EngineError::Unreachable(e.to_string()),
        other => EngineError::Other(other.to_string()),
    }
}

impl DockerEngine {
    /// Connects and negotiates the API version (the engine may be older than bollard).
    pub async fn connect(endpoint: &Endpoint) -> Result<DockerEngine, EngineError> {
        let docker = match endpoint {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(path, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Tcp(addr) => {
                Docker::connect_with_http(addr, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(classify)?;
        let docker = docker.negotiate_version().await.map_err(classify)?;
        let quick = docker
            .clone()
            .with_timeout(std::time::Duration::from_secs(ANSWER_TIMEOUT_SECS));
        quick.ping().await.map_err(classify)?;
        Ok(DockerEngine { docker, quick })
    }
}

fn label_filter((key, value): (&str, &str)) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{key}={value}")])])
}

/// Reads a stream of progress messages to its end; the first error message is the error.
async fn drain<T, S>(stream: S, error_of: impl Fn(T) -> Option<String>) -> Result<(), EngineError>
where
    S: futures_util::Stream<Item = Result<T, bollard::errors::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        if let Some(e) = error_of(item.map_err(classify)?) {
            return Err(EngineError::Other(e));
        }
    }
    Ok(())
}

fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let port_bindings = (!spec.publish.is_empty()).then(|| {
        spec.publish
            .iter()
            .map(|p| {
                (
                    format!("{}/tcp", p.port),
                    Some(vec![PortBinding {
                        host_ip: Some(p.host_ip.clone()),
                        host_port: Some(if p.host_port == 0 {
                            String::new()
                        } else {
                            p.host_port.to_string()
                        }),
                    }]),
                )
            })
            .collect()
    });
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: some(&spec.cmd),
        hostname: spec.hostname.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            binds: some(&spec.binds),
            network_mode: spec.network.clone(),
            cap_add: some(&spec.cap_add),
            cap_drop: some(&spec.cap_drop),
            security_opt: some(&spec.security_opt),
            masked_paths: spec.unconfined_system_paths.then(Vec::new),
            readonly_paths: spec.unconfined_system_paths.then(Vec::new),
            device_cgroup_rules: some(&spec.device_cgroup_rules),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| {
                spec.tmpfs
                    .iter()
                    .map(|t| (t.clone(), String::new()))
                    .collect()
            }),
            memory: spec.memory_bytes,
            memory_swap: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            cpu_shares: spec.cpu_shares,
            init: spec.init.then_some(true),
            log_config: spec.capped_logs.then(|| HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            restart_policy: Some(bollard::models::RestartPolicy {
                name: Some(match spec.restart {
                    RestartPolicy::No => RestartPolicyNameEnum::NO,
                    RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
                }),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            port_bindings,
            ..Default::default()
        }),
        networking_config: match (&spec.network, &spec.ipv4_address) {
            (Some(net), Some(addr)) => Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    net.clone(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(addr.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            _ => None,
        },
        ..Default::default()
    }
}

fn bytes_stream(
    s: impl futures_util::Stream<Item = Result<Bytes, bollard::errors::Error>> + Send + 'static,
) -> ByteStream {
    s.map_err(classify).boxed()
}

fn io_stream(
    s: ByteStream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    s.map_err(std::io::Error::other)
}

#[async_trait]
impl Engine for DockerEngine {
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let info = self.quick.info().await.map_err(classify)?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(EngineInfo {
            docker_root_dir: info.docker_root_dir,
            system_time: info.system_time,
            swarm: NodeState {
                state: swarm
                    .local_node_state
                    .map(|s| SwarmState::parse(&s.to_string()))
                    .unwrap_or_default(),
                node_id: swarm.node_id.unwrap_or_default(),
                node_addr: swarm.node_addr.unwrap_or_default(),
                is_manager: swarm.control_available.unwrap_or(false),
            },
        })
    }

    async fn version(&self) -> Result<(String, String), EngineError> {
        let v = self.quick.version().await.map_err(classify)?;
        Ok((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }

    async fn list_containers(
        &self,
        label: (&str, &str),
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let list = self
            .docker
            .list_containers(Some(
                q::ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&label_filter(label))
                    .build(),
            ))
            .await
            .map_err(classify)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                let state = c
                    .state
                    .map(|s| ContainerState::parse(s.as_ref()))
                    .unwrap_or(ContainerState::Unknown);
                Some(ContainerSummary { name, state })
            })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<(), EngineError> {
        self.quick
            .create_container(
                Some(
                    q::CreateContainerOptionsBuilder::default()
                        .name(&spec.name)
                        .build(),
                ),
                create_body(spec),
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.quick
            .start_container(name, None::<q::StartContainerOptions>)
            .await
            .map_err(classify)
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo, EngineError> {
        let info = self
            .docker
            .inspect_container(name, None::<q::InspectContainerOptions>)
            .await
            .map_err(classify)?;
        let state = info.state.unwrap_or_default();
        let status = state.status.map(|s| ContainerState::parse(s.as_ref()));
        let published = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(port, bindings)| {
                let port: u16 = port.strip_suffix("/tcp")?.parse().ok()?;
                let host: u16 = bindings?.first()?.host_port.as_ref()?.parse().ok()?;
                Some((port, host))
            })
            .collect();
        Ok(ContainerInfo {
            name: name.to_owned(),
            id: info.id.unwrap_or_default(),
            image: info.image.unwrap_or_default(),
            exit_code: match status {
                Some(ContainerState::Running | ContainerState::Paused) => None,
                _ => state.exit_code,
            },
            state: status,
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            started_at: state.started_at,
            finished_at: state.finished_at,
            restart_count: info.restart_count.unwrap_or(0),
            labels: info
                .config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            published,
        })
    }

    async fn kill_container(&self, name: &str) -> Result<(), EngineError> {
        self.quick
            .kill_container(
                name,
                Some(q::KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
            .map_err(classify)
    }

    async fn pause_container(&self, name: &str) -> Result<(), EngineError> {
        self.quick.pause_container(name).await.map_err(classify)
    }

    async fn unpause_container(&self, name: &str) -> Result<(), EngineError> {
        self.quick.unpause_container(name).await.map_err(classify)
    }

    async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        self.quick
            .remove_container(
                name,
                Some(
                    q::RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .build(),
                ),
            )
            .await
            .map_err(classify)
    }

    fn download(&self, name: &str, path: &str) -> ByteStream {
        bytes_stream(
            self.quick.download_from_container(
                name,
                Some(
                    q::DownloadFromContainerOptionsBuilder::default()
                        .path(path)
                        .build(),
                ),
            ),
        )
    }

    async fn upload(&self, name: &str, path: &str, tar: Bytes) -> Result<(), EngineError> {
        self.docker
            .upload_to_container(
                name,
                Some(
                    q::UploadToContainerOptionsBuilder::default()
                        .path(path)
                        .build(),
                ),
                bollard::body_full(tar),
            )
            .await
            .map_err(classify)
    }

    fn logs(&self, name: &str, options: LogOptions) -> ByteStream {
        self.docker
            .logs(
                name,
                Some(
                    q::LogsOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .follow(options.follow)
                        .timestamps(options.timestamps)
                        .since(
                            options
                                .since
                                .map_or(0, |s| s.clamp(0, i64::from(i32::MAX)) as i32),
                        )
                        .build(),
                ),
            )
            .map(|chunk| chunk.map(|c| c.into_bytes()).map_err(classify))
            .boxed()
    }

    fn events(
        &self,
        label: (&str, &str),
    ) -> BoxStream<'static, Result<ContainerEvent, EngineError>> {
        let mut filters = label_filter(label);
        filters.insert("type".into(), vec!["container".into()]);
        self.docker
            .events(Some(
                q::EventsOptionsBuilder::default().filters(&filters).build(),
            ))
            .map_err(classify)
            .try_filter_map(|m| async move {
                let Some(name) = m
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|mut a| a.remove("name"))
                else {
                    return Ok(None);
                };
                let action = m.action.unwrap_or_default();
                let kind = match action.as_str() {
                    "start" => EventKind::Start,
                    "die" => EventKind::Die,
                    "pause" => EventKind::Pause,
                    "unpause" => EventKind::Unpause,
                    "destroy" => EventKind::Destroy,
                    _ => EventKind::Other,
                };
                Ok(Some(ContainerEvent { name, kind }))
            })
            .boxed()
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), EngineError> {
        self.quick
            .create_volume(VolumeCreateRequest {
                name: Some(spec.name.clone()),
                labels: Some(spec.labels.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self.quick.inspect_volume(name).await.map_err(classify) {
            Ok(_) => Ok(true),
            Err(EngineError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.quick
            .remove_volume(name, None::<q::RemoveVolumeOptions>)
            .await
            .map_err(classify)
    }

    async fn list_network_subnets(&self) -> Result<Vec<String>, EngineError> {
        let networks = self
            .docker
            .list_networks(None::<q::ListNetworksOptions>)
            .await
            .map_err(classify)?;
        Ok(networks
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
            .filter_map(|c| c.subnet)
            .collect())
    }

    async fn inspect_network(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        let n = self
            .docker
            .inspect_network(name, None::<q::InspectNetworkOptions>)
            .await
            .map_err(classify)?;
        Ok(NetworkInfo {
            id: n.id.unwrap_or_default(),
            subnets: n
                .ipam
                .and_then(|i| i.config)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.subnet)
                .collect(),
        })
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        let overlay = spec.driver == NetworkDriver::AttachableOverlay;
        let response = self
            .docker
            .create_network(NetworkCreateRequest {
                name: spec.name.clone(),
                driver: Some(if overlay { "overlay" } else { "bridge" }.into()),
                attachable: overlay.then_some(true),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(spec.subnet.clone()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                labels: Some(spec.labels.clone().into_iter().collect()),
                options: (overlay && spec.encrypted)
                    .then(|| HashMap::from([("encrypted".to_owned(), String::new())])),
                ..Default::default()
            })
            .await
            .map_err(classify)?;
        Ok(response.id)
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.quick.remove_network(name).await.map_err(classify)
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo, EngineError> {
        let i = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(classify)?;
        Ok(ImageInfo {
            id: i.id.unwrap_or_default(),
            labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
            repo_digests: i.repo_digests.unwrap_or_default(),
        })
    }

    async fn build_image(
        &self,
        tag: &str,
        context: Bytes,
        build_args: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let options = q::BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .buildargs(build_args)
            .build();
        let mut stream = std::pin::pin!(self.docker.build_image(
            options,
            None,
            Some(bollard::body_full(context))
        ));
        let mut log = Vec::new();
        while let Some(item) = stream.next().await {
            let failed = |e: String| EngineError::Other(format!("{e}\n{}", log.concat()));
            match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        return Err(failed(e));
                    }
                    if let Some(s) = info.stream {
                        log.push(s);
                    }
                }
                Err(e) => return Err(failed(e.to_string())),
            }
        }
        Ok(())
    }

    async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        tar: ByteStream,
    ) -> Result<(), EngineError> {
        let stream = self.docker.create_image(
            Some(
                q::CreateImageOptionsBuilder::default()
                    .from_src("-")
                    .repo(repo)
                    .tag(tag)
                    .build(),
            ),
            Some(bollard::body_try_stream(io_stream(tar))),
            None,
        );
        drain(stream, |i| i.error_detail.and_then(|d| d.message)).await?;
        Ok(())
    }

    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError> {
        let stream = self.docker.create_image(
            Some(
                q::CreateImageOptionsBuilder::default()
                    .from_image(reference)
                    .build(),
            ),
            None,
            auth.map(credentials),
        );
        drain(stream, |i| i.error_detail.and_then(|d| d.message)).await?;
        Ok(())
    }

    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError> {
        let stream = self.docker.push_image(
            repo,
            Some(q::PushImageOptionsBuilder::default().tag(tag).build()),
            Some(auth.map(credentials).unwrap_or_default()),
        );
        drain(stream, |i| i.error_detail.and_then(|d| d.message)).await?;
        Ok(())
    }

    async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        self.quick
            .tag_image(
                source,
                Some(
                    q::TagImageOptionsBuilder::default()
                        .repo(repo)
                        .tag(tag)
                        .build(),
                ),
            )
            .await
            .map_err(classify)
    }

    fn export_images(&self, tags: &[&str]) -> ByteStream {
        bytes_stream(self.quick.export_images(tags))
    }

    async fn load_images(&self, tar: ByteStream) -> Result<(), EngineError> {
        let stream = self.docker.import_image_stream(
            q::ImportImageOptionsBuilder::default().quiet(true).build(),
            io_stream(tar),
            None,
        );
        drain(stream, |i| i.error_detail.and_then(|d| d.message)).await?;
        Ok(())
    }

    async fn swarm_init(&self, join: &SwarmJoin) -> Result<(), EngineError> {
        self.quick
            .init_swarm(SwarmInitRequest {
                listen_addr: Some(join.listen_addr.clone()),
                advertise_addr: Some(join.advertise_addr.clone()),
                ..Default::default()
            })
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn swarm_join(&self, join: &SwarmJoin) -> Result<(), EngineError> {
        self.quick
            .join_swarm(SwarmJoinRequest {
                listen_addr: Some(join.listen_addr.clone()),
                advertise_addr: Some(join.advertise_addr.clone()),
                remote_addrs: Some(join.remote_addrs.clone()),
                join_token: Some(join.join_token.clone()),
                ..Default::default()
            })
            .await
            .map_err(classify)
    }

    async fn swarm_leave(&self) -> Result<(), EngineError> {
        self.quick
            .leave_swarm(Some(
                q::LeaveSwarmOptionsBuilder::default().force(true).build(),
            ))
            .await
            .map_err(classify)
    }

    async fn swarm_worker_token(&self) -> Result<String, EngineError> {
        self.quick
            .inspect_swarm()
            .await
            .map_err(classify)?
            .join_tokens
            .and_then(|t| t.worker)
            .ok_or_else(|| EngineError::Other("the manager gave no worker join token".into()))
    }

    async fn list_nodes(&self) -> Result<Vec<String>, EngineError> {
        Ok(self
            .docker
            .list_nodes(None::<q::ListNodesOptions>)
            .await
            .map_err(classify)?
            .into_iter()
            .filter_map(|n| n.id)
            .collect())
    }

    async fn node_labels(&self, node_id: &str) -> Result<NodeLabels, EngineError> {
        let node = self.quick.inspect_node(node_id).await.map_err(classify)?;
        Ok(NodeLabels {
            version: node.version.and_then(|v| v.index).unwrap_or(0),
            labels: node.spec.and_then(|s| s.labels).unwrap_or_default(),
        })
    }

    async fn set_node_labels(&self, node_id: &str, labels: &NodeLabels) -> Result<(), EngineError> {
        let node = self.quick.inspect_node(node_id).await.map_err(classify)?;
        let mut spec = node.spec.unwrap_or_default();
        spec.labels = Some(labels.labels.clone());
        match self
            .docker
            .update_node(
                node_id,
                spec,
                q::UpdateNodeOptionsBuilder::default()
                    .version(labels.version as i64)
                    .build(),
            )
            .await
            .map_err(classify)
        {
            // "update out of sequence" comes back as a 500 from some engines.
            Err(EngineError::Server(m)) | Err(EngineError::Other(m))
                if m.contains("out of sequence") =>
            {
                Err(EngineError::Conflict(m))
            }
            other => other,
        }
    }
}

/// The X-Registry-Auth credentials for `auth`: sent with one request, stored nowhere.
fn credentials(auth: &RegistryAuth) -> bollard::auth::DockerCredentials {
    bollard::auth::DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        serveraddress: Some(auth.server.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_status_not_text() {
        let server =
            |status_code, message: &str| bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.into(),
            };
        assert!(matches!(
            classify(server(404, "whatever")),
            EngineError::NotFound(_)
        ));
        assert!(matches!(
            classify(server(409, "No such")),
            EngineError::Conflict(_)
        ));
        assert!(matches!(
            classify(server(304, "")),
            EngineError::NotModified(_)
        ));
        assert!(matches!(
            classify(server(500, "No such thing")),
            EngineError::Server(_)
        ));
        assert!(matches!(
            classify(server(400, "bad")),
            EngineError::Other(_)
        ));
        assert!(matches!(
            classify(bollard::errors::Error::RequestTimeoutError),
            EngineError::Timeout(_)
        ));
        assert!(matches!(
            classify(bollard::errors::Error::SocketNotFoundError("/x".into())),
            EngineError::Unreachable(_)
        ));
    }

    #[test]
    fn docker_host_is_honoured_or_refused() {
        assert_eq!(
            Endpoint::parse_docker_host("unix:///run/d.sock", false),
            Ok(Endpoint::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            Endpoint::parse_docker_host("tcp://10.0.0.2:2375", false),
            Ok(Endpoint::Tcp("tcp://10.0.0.2:2375".into()))
        );
        assert!(Endpoint::parse_docker_host("tcp://10.0.0.2:2376", true)
            .unwrap_err()
            .contains("TLS"));
        assert!(Endpoint::parse_docker_host("ssh://me@box", false)
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn specs_become_create_bodies() {
        let spec = ContainerSpec {
            name: "c".into(),
            image: "img".into(),
            cmd: vec!["--x".into()],
            network: Some("net".into()),
            ipv4_address: Some("10.0.0.5".into()),
            cap_add: vec!["NET_ADMIN".into()],
            memory_bytes: Some(64 << 20),
            capped_logs: true,
            init: true,
            publish: vec![super::super::Publish {
                port: 7400,
                host_ip: "127.0.0.1".into(),
                host_port: 0,
            }],
            ..Default::default()
        };
        let body = create_body(&spec);
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.cap_add.as_deref(), Some(&["NET_ADMIN".to_owned()][..]));
        assert_eq!(hc.memory_swap, Some(64 << 20));
        assert_eq!(hc.init, Some(true));
        assert!(hc.masked_paths.is_none() && hc.binds.is_none());
        let ports = hc.port_bindings.as_ref().unwrap();
        assert_eq!(
            ports["7400/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("")
        );
        let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["net"];
        assert_eq!(
            endpoint
                .ipam_config
                .as_ref()
                .unwrap()
                .ipv4_address
                .as_deref(),
            Some("10.0.0.5")
        );
        assert!(body.env.is_none());
    }
}
