//! `launcher spawn`: from a plan and a hosts file to a running mesh.
//!
//! Order: check everything that can be checked without side effects (hosts file, plan,
//! subnet size, capacity, engines reachable); then images, swarm, network, run directory
//! and manifest; then the coordinator; then the peers, a bounded number at a time.
//!
//! Re-running `spawn` for an existing run id reuses its manifest and creates only what is
//! missing: containers that exist are left alone (or started, if created but never
//! started). So an interrupted spawn is repaired by running it again.

use crate::distribute::Transport;
use crate::error::bad_input;
use crate::host::{self, Host};
use crate::hosts::{HostSpec, HostsFile};
use crate::rundir::{Images, NetworkInfo, Placement, RunDir, RunManifest, MANIFEST_SCHEMA};
use crate::scratch::with_scratch;
use crate::{clock, distribute, images, labels, network, swarm, tasks};
use anyhow::Context;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, UploadToContainerOptionsBuilder,
};
use cmesh_common::plan::PlanSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The coordinator's API port inside the network.
pub const COORDINATOR_PORT: u16 = 7400;
/// The peers' sync port inside the network.
pub const PEER_PORT: u16 = 7500;
/// Where the token file goes inside every container.
const TOKEN_DIR: &str = "/cmesh";

/// What `spawn` needs, resolved from flags, files and environment.
#[derive(Clone, Debug)]
pub struct SpawnRequest {
    pub runs_dir: PathBuf,
    pub hosts: HostsFile,
    /// Place peers only on hosts with these labels (`name` matches the host's name).
    pub host_filter: Vec<(String, String)>,
    pub transport: Transport,
    pub spec: PlanSpec,
    pub run_id: Option<String>,
    pub subnet: Option<network::Subnet>,
    /// Containers started at once per host.
    pub concurrency: usize,
    pub peer_memory_bytes: i64,
    pub bin_dir: PathBuf,
    pub base_image: Option<String>,
    pub backend: BackendChoice,
}

/// The peers' sync backend, its secret, and the peer image that has it.
#[derive(Clone, Debug, Default)]
pub struct BackendChoice {
    /// `mesh` (built in) or another backend the peer image declares.
    pub name: String,
    /// The secret file's bytes, read once (never logged).
    pub secret: Option<Vec<u8>>,
    /// A peer image to run instead of the workspace's.
    pub peer_image: Option<String>,
}

/// The label a peer image lists its backends in (comma-separated).
pub const BACKENDS_LABEL: &str = "io.cmesh.backends";

/// Where the backend's secret goes inside every peer (beside the token).
pub fn secret_path() -> String {
    format!("{TOKEN_DIR}/backend-secret")
}

impl BackendChoice {
    /// Checks the flags without an engine: a secret file, when given, must be readable
    /// and not empty; a backend other than `mesh` needs a peer image built with it.
    pub fn new(
        name: &str,
        secret_file: Option<&Path>,
        peer_image: Option<&str>,
    ) -> anyhow::Result<BackendChoice> {
        let secret = match secret_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    bad_input(format!(
                        "--secret-file {}: cannot read it: {e}",
                        path.display()
                    ))
                })?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Err(bad_input(format!(
                        "--secret-file {} is empty; it must hold what the {name} backend needs (docs/ditto.md for ditto)",
                        path.display()
                    )));
                }
                Some(bytes)
            }
        };
        if name != "mesh" && secret.is_none() {
            return Err(bad_input(format!(
                "--backend {name} needs --secret-file F (for ditto: license_token and database_id, docs/ditto.md)"
            )));
        }
        if name == "mesh" && secret.is_some() {
            return Err(bad_input(
                "--secret-file is for a backend that needs one (e.g. --backend ditto); the mesh backend takes none",
            ));
        }
        if name != "mesh" && peer_image.is_none() {
            return Err(bad_input(format!(
                "the peer image built from this workspace has only the mesh backend, not `{name}`. Build a peer image with it (for ditto: docker build -f images/peer-ditto/Dockerfile -t cmesh-peer-ditto . on a machine with the vendor's library, docs/ditto.md) and pass --peer-image cmesh-peer-ditto"
            )));
        }
        Ok(BackendChoice {
            name: name.to_owned(),
            secret,
            peer_image: peer_image.map(str::to_owned),
        })
    }
}

/// The backends a peer image declares in its [`BACKENDS_LABEL`].
pub fn image_backends(labels: Option<&std::collections::HashMap<String, String>>) -> Vec<String> {
    labels
        .and_then(|l| l.get(BACKENDS_LABEL))
        .map(|v| v.split(',').map(|b| b.trim().to_owned()).collect())
        .unwrap_or_else(|| vec!["mesh".to_owned()])
}

/// Checks that `image` (on this machine's engine) has the backend; returns its
/// reference. Bad input otherwise, before anything is created.
async fn chosen_peer_image(
    builder: &Host,
    image: &str,
    backend: &str,
) -> anyhow::Result<crate::rundir::ImageRef> {
    let info = builder.docker.inspect_image(image).await.map_err(|e| {
        bad_input(format!(
            "--peer-image {image}: not on this machine's Docker Engine ({e}); build or load it first"
        ))
    })?;
    let has = image_backends(info.config.as_ref().and_then(|c| c.labels.as_ref()));
    if !has.iter().any(|b| b == backend) {
        return Err(bad_input(format!(
            "--peer-image {image} was built without the `{backend}` backend (its {BACKENDS_LABEL} label says: {}). Build the image for it: for ditto, docker build -f images/peer-ditto/Dockerfile -t cmesh-peer-ditto . (docs/ditto.md)",
            has.join(",")
        )));
    }
    Ok(crate::rundir::ImageRef {
        tag: image.to_owned(),
        id: info.id.unwrap_or_default(),
    })
}

/// A peer's container name: `<run>-peer-0001`.
pub fn peer_name(run: &str, index: usize, total: usize) -> String {
    let width = total.to_string().len().max(4);
    format!("{run}-peer-{index:0width$}")
}

/// The coordinator's container name.
pub fn coordinator_name(run: &str) -> String {
    format!("{run}-coordinator")
}

/// Places `peers` peers on the hosts that match `filter`, in proportion to their
/// weights (smooth weighted round-robin, so hosts interleave), never beyond a host's
/// capacity. Deterministic: the same hosts and count give the same placement.
pub fn place(
    run: &str,
    peers: usize,
    hosts: &[HostSpec],
    filter: &[(String, String)],
) -> anyhow::Result<Vec<Placement>> {
    let eligible: Vec<&HostSpec> = hosts.iter().filter(|h| h.matches(filter)).collect();
    if eligible.is_empty() {
        let f: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(bad_input(format!(
            "no host in hosts.toml matches --host-label {}",
            f.join(" ")
        )));
    }
    let capacity: usize = eligible.iter().map(|h| h.capacity).sum();
    if peers > capacity {
        return Err(bad_input(format!(
            "{peers} peers do not fit: the hosts' capacity adds up to {capacity}; raise `capacity` in hosts.toml or add hosts"
        )));
    }
    let mut used = vec![0usize; eligible.len()];
    let mut current = vec![0i64; eligible.len()];
    let mut out = Vec::with_capacity(peers);
    for i in 1..=peers {
        let open: Vec<usize> = (0..eligible.len())
            .filter(|&h| used[h] < eligible[h].capacity)
            .collect();
        let total: i64 = open.iter().map(|&h| eligible[h].weight() as i64).sum();
        for &h in &open {
            current[h] += eligible[h].weight() as i64;
        }
        let pick = *open
            .iter()
            .max_by_key(|&&h| (current[h], std::cmp::Reverse(h)))
            .expect("capacity was checked");
        current[pick] -= total;
        used[pick] += 1;
        out.push(Placement {
            name: peer_name(run, i, peers),
            host: eligible[pick].name.clone(),
            index: i as u32,
        });
    }
    Ok(out)
}

/// The coordinator's command line for a plan.
pub fn coordinator_args(run: &str, spec: &PlanSpec) -> Vec<String> {
    let ms = |v: u64| format!("{v}ms");
    let mut args = vec![
        "--listen".into(),
        format!("0.0.0.0:{COORDINATOR_PORT}"),
        "--output".into(),
        report_dir(&coordinator_name(run)),
        "--token-file".into(),
        format!("{TOKEN_DIR}/token"),
        "--run-id".into(),
        run.into(),
        "--peers".into(),
        spec.peers.to_string(),
        "--duration".into(),
        ms(spec.duration_ms),
        "--graph".into(),
        spec.graph.to_string(),
        "--degree".into(),
        spec.degree.to_string(),
        "--seed".into(),
        spec.seed.to_string(),
        "--write-interval".into(),
        spec.write_interval.to_string(),
        "--payload-bytes".into(),
        spec.payload_bytes.to_string(),
        "--start-delay".into(),
        ms(spec.start_delay_ms),
        "--start-timeout".into(),
        ms(spec.start_timeout_ms),
        "--heartbeat".into(),
        ms(spec.heartbeat_ms),
        "--settle-timeout".into(),
        ms(spec.settle_timeout_ms),
        "--linger".into(),
        "2s".into(),
    ];
    if let Some(min) = spec.min_peers {
        args.extend(["--min-peers".into(), min.to_string()]);
    }
    if !spec.faults.is_empty() {
        let faults = serde_json::json!({ "groups": spec.groups, "faults": spec.faults });
        args.extend(["--faults".into(), faults.to_string()]);
    }
    args
}

/// A peer's command line; a backend other than mesh gets `--backend` and its secret.
pub fn peer_args(run: &str, name: &str, host: &str, backend: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--name",
        name,
        "--host",
        host,
        "--coordinator",
        &format!("{}:{COORDINATOR_PORT}", coordinator_name(run)),
        "--listen",
        &format!("0.0.0.0:{PEER_PORT}"),
        "--output",
        &report_dir(name),
        "--token-file",
        &format!("{TOKEN_DIR}/token"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if backend != "mesh" {
        args.extend([
            "--backend".into(),
            backend.into(),
            "--secret-file".into(),
            secret_path(),
        ]);
    }
    args
}

/// What to create for one container.
#[derive(Clone, Debug)]
struct ContainerPlan {
    name: String,
    role: &'static str,
    index: u32,
    image: String,
    args: Vec<String>,
    memory: i64,
    publish: bool,
}

/// Where the run's reports volume is mounted in every container.
pub const REPORTS_DIR: &str = "/reports";

/// The run's reports volume on a host, mounted at [`REPORTS_DIR`] by every container of
/// the run. Each container writes its report to its own [`report_dir`]. One volume per
/// host (not per container: each volume costs the engine a serialized metadata write)
/// lets `extract` fetch every report on a host in one archive, and keeps report writes
/// off the containers' root filesystems.
pub fn reports_volume(run: &str) -> String {
    format!("cmesh-{run}-reports")
}

/// A container's report directory: `/reports/<container>`.
pub fn report_dir(container: &str) -> String {
    format!("{REPORTS_DIR}/{container}")
}

/// The run's secrets volume on a host: holds the token file, mounted read-only at
/// `/cmesh` by every container of the run.
pub fn secrets_volume(run: &str) -> String {
    format!("cmesh-{run}-secrets")
}

fn container_body(run: &str, host: &str, network: &str, c: &ContainerPlan) -> ContainerCreateBody {
    let labels = HashMap::from([
        (labels::RUN.to_owned(), run.to_owned()),
        (labels::ROLE.to_owned(), c.role.to_owned()),
        (labels::INDEX.to_owned(), c.index.to_string()),
        (labels::HOST.to_owned(), host.to_owned()),
    ]);
    let port_bindings = c.publish.then(|| {
        HashMap::from([(
            format!("{COORDINATOR_PORT}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )])
    });
    ContainerCreateBody {
        image: Some(c.image.clone()),
        cmd: Some(c.args.clone()),
        hostname: Some(c.name.clone()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(vec![
                format!("{}:{TOKEN_DIR}:ro", secrets_volume(run)),
                format!("{}:{REPORTS_DIR}", reports_volume(run)),
            ]),
            network_mode: Some(network.to_owned()),
            cap_add: Some(vec!["NET_ADMIN".into()]),
            memory: Some(c.memory),
            memory_swap: Some(c.memory),
            init: Some(true),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            port_bindings,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Existing containers of the run on `host`: name → state (`created`, `running`, `exited`…).
pub async fn existing(host: &Host, run: &str) -> anyhow::Result<HashMap<String, String>> {
    let list = host
        .docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&labels::run_filter(run))
                .build(),
        ))
        .await
        .with_context(|| format!("listing containers on host {}", host.name()))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_owned();
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            Some((name, state))
        })
        .collect())
}

async fn create_and_start(
    host: &Host,
    run: &str,
    network: &str,
    c: &ContainerPlan,
    state: Option<&str>,
) -> anyhow::Result<()> {
    let docker = &host.docker;
    let where_ = || format!("container {} on host {}", c.name, host.name());
    match state {
        Some("created") => {}
        Some(_) => return Ok(()), // running or already ran: leave it alone
        None => {
            let body = container_body(run, host.name(), network, c);
            tasks::retry(|| {
                docker.create_container(
                    Some(
                        CreateContainerOptionsBuilder::default()
                            .name(&c.name)
                            .build(),
                    ),
                    body.clone(),
                )
            })
            .await
            .with_context(|| format!("creating {}", where_()))?;
        }
    }
    tasks::retry(|| {
        docker.start_container(
            &c.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
    })
    .await
    .with_context(|| format!("starting {}", where_()))?;
    Ok(())
}

/// Creates (or finds) volume `volume` on `host` with one label `key=value`.
pub(crate) async fn create_volume(
    host: &Host,
    volume: &str,
    (key, value): (&str, &str),
) -> anyhow::Result<()> {
    tasks::retry(|| {
        host.docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(volume.to_owned()),
                labels: Some(HashMap::from([(key.to_owned(), value.to_owned())])),
                ..Default::default()
            })
    })
    .await
    .with_context(|| format!("creating volume {volume} on host {}", host.name()))?;
    Ok(())
}

/// Creates the run's reports and secrets volumes on `host` and writes the token into the
/// secrets volume, once: through a container that is created with the volume mounted,
/// never started, and removed again. The token never appears in an environment, a
/// command line, an image or `docker inspect`.
pub async fn ensure_volumes(
    host: &Host,
    run: &str,
    image: &str,
    token: &str,
    secret: Option<&[u8]>,
) -> anyhow::Result<()> {
    let docker = &host.docker;
    for volume in [reports_volume(run), secrets_volume(run)] {
        create_volume(host, &volume, (labels::RUN, run)).await?;
    }
    let volume = secrets_volume(run);
    let seed = format!("{run}-secrets");
    let token_line = format!("{token}\n");
    let mut files: Vec<(&str, &[u8], u32)> = vec![("token", token_line.as_bytes(), 0o400)];
    if let Some(secret) = secret {
        files.push(("backend-secret", secret, 0o400));
    }
    let tar = images::tar_context(&files)?;
    let binds = vec![format!("{volume}:{TOKEN_DIR}")];
    with_scratch(host, &seed, image, binds, || async {
        tasks::retry(|| {
            docker.upload_to_container(
                &seed,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(TOKEN_DIR)
                        .build(),
                ),
                bollard::body_full(tar.clone().into()),
            )
        })
        .await
        .with_context(|| {
            format!(
                "writing the run token into volume {volume} on host {}",
                host.name()
            )
        })
    })
    .await
}

/// The checks that need no engine: run id, subnet size, capacity.
pub fn precheck(req: &SpawnRequest) -> anyhow::Result<()> {
    if let Some(id) = &req.run_id {
        crate::rundir::validate_run_id(id)?;
    }
    req.spec.validate().map_err(|e| bad_input(e.to_string()))?;
    req.spec.checked_faults().map_err(bad_input)?;
    let n = req.hosts.hosts.len();
    match req.subnet {
        Some(s) => network::check_fits(s, req.spec.peers, n)?,
        None => {
            network::prefix_for(req.spec.peers, n)?;
        }
    }
    place("x", req.spec.peers, &req.hosts.hosts, &req.host_filter)?;
    Ok(())
}

/// Spawns (or completes) a run. Returns its directory.
pub async fn spawn(req: SpawnRequest) -> anyhow::Result<RunDir> {
    precheck(&req)?;
    // An existing run is completed with its own manifest (hosts, placement, plan,
    // images), whatever the flags say now.
    let previous = match &req.run_id {
        Some(id) => RunDir::open(&req.runs_dir, Some(id)).ok(),
        None => None,
    };
    let previous = match previous {
        Some(dir) => Some((dir.read_manifest()?, dir)),
        None => None,
    };
    let hosts_file = match &previous {
        Some((m, _)) => m.hosts_file(),
        None => req.hosts.clone(),
    };
    let host_specs = hosts_file.hosts.clone();
    let (builder, hosts) = tokio::try_join!(host::builder(), host::connect_all(&hosts_file))?;
    // A peer image of the user's must have the backend: checked before anything exists.
    let chosen_peer = match &req.backend.peer_image {
        Some(image) => Some(chosen_peer_image(&builder, image, &req.backend.name).await?),
        None => None,
    };
    let manager = host::manager(&hosts).clone();
    let (run, spec, subnet_hint) = match &previous {
        Some((m, dir)) => {
            eprintln!(
                "spawn: run {} exists; creating only what is missing",
                m.run_id
            );
            (
                dir.clone(),
                m.spec.clone(),
                network::Subnet::parse(&m.network.subnet).ok(),
            )
        }
        None => {
            let id = req.run_id.clone().unwrap_or_else(crate::rundir::new_run_id);
            (
                RunDir::create(&req.runs_dir, &id)?,
                req.spec.clone(),
                req.subnet,
            )
        }
    };
    // A re-run keeps the run's images, so every peer runs the same build.
    let images: Images = match &previous {
        Some((m, _)) if images::present(&builder.docker, &m.images).await => m.images.clone(),
        _ => {
            let mut built =
                images::ensure_all(&builder.docker, &req.bin_dir, req.base_image.as_deref())
                    .await?;
            if let Some(peer) = chosen_peer {
                built.peer = peer;
            }
            built
        }
    };
    swarm::ensure(&hosts).await?;
    let transport_used = distribute::distribute(&builder, &hosts, &images, req.transport).await?;
    let offsets = clock::measure_all(&hosts).await?;
    let subnet = match subnet_hint {
        Some(s) => s,
        None => {
            let prefix = network::prefix_for(spec.peers, hosts.len())?;
            network::pick_subnet(&run.id, prefix, &network::taken_subnets(&manager).await?)?
        }
    };
    let (network_id, subnet) = network::ensure_network(&manager, &run.id, subnet).await?;
    let net_name = network::network_name(&run.id);
    eprintln!("network: {net_name} {subnet}");

    let token = run.token()?;
    // A re-run keeps the run's backend, whatever the flags say.
    let backend = match &previous {
        Some((m, _)) => m.backend.clone(),
        None => req.backend.name.clone(),
    };
    let placements = match &previous {
        Some((m, _)) => m.peers.clone(),
        None => place(&run.id, spec.peers, &host_specs, &req.host_filter)?,
    };
    let manifest = RunManifest {
        schema: MANIFEST_SCHEMA.into(),
        schema_version: 1,
        run_id: run.id.clone(),
        created_at: match &previous {
            Some((m, _)) => m.created_at.clone(),
            None => humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        },
        hosts: host_specs,
        ssh: hosts_file.ssh.clone(),
        clock_offsets_ms: match &previous {
            Some((m, _)) if !m.clock_offsets_ms.is_empty() => m.clock_offsets_ms.clone(),
            _ => hosts
                .iter()
                .zip(&offsets)
                .map(|(h, o)| (h.name().to_owned(), (o.offset_ms * 1000.0).round() / 1000.0))
                .collect(),
        },
        image_transport: transport_used,
        backend: backend.clone(),
        network: NetworkInfo {
            name: net_name.clone(),
            id: network_id,
            subnet: subnet.to_string(),
        },
        images: images.clone(),
        spec: spec.clone(),
        coordinator: Placement {
            name: coordinator_name(&run.id),
            host: manager.name().to_owned(),
            index: 0,
        },
        peers: placements.clone(),
    };
    run.write_manifest(&manifest)?;
    let mut on: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for p in &placements {
        *on.entry(p.host.as_str()).or_default() += 1;
    }
    let spread: Vec<String> = on.iter().map(|(h, n)| format!("{h} {n}")).collect();
    eprintln!("placement: {}", spread.join(", "));

    let seeded = futures_util::future::join_all(hosts.iter().map(|h| {
        ensure_volumes(
            h,
            &run.id,
            &images.peer.tag,
            &token,
            req.backend.secret.as_deref(),
        )
    }))
    .await;
    for r in seeded {
        r?;
    }
    let mut states = HashMap::new();
    for list in futures_util::future::join_all(hosts.iter().map(|h| existing(h, &run.id))).await {
        states.extend(list?);
    }
    let coordinator = ContainerPlan {
        name: coordinator_name(&run.id),
        role: labels::ROLE_COORDINATOR,
        index: 0,
        image: images.coordinator.tag.clone(),
        args: coordinator_args(&run.id, &spec),
        memory: 1 << 30,
        publish: true,
    };
    create_and_start(
        &manager,
        &run.id,
        &net_name,
        &coordinator,
        states.get(&coordinator.name).map(String::as_str),
    )
    .await?;

    // Bounded per host: each engine gets at most `concurrency` requests at once.
    let by_name: HashMap<&str, (&Host, tokio::sync::Semaphore)> = hosts
        .iter()
        .map(|h| (h.name(), (h, tokio::sync::Semaphore::new(req.concurrency))))
        .collect();
    let todo: Vec<Placement> = placements
        .into_iter()
        .filter(|p| !matches!(states.get(&p.name).map(String::as_str), Some(s) if s != "created"))
        .collect();
    let skipped = spec.peers - todo.len();
    if skipped > 0 {
        eprintln!("spawn: {skipped} peers already exist");
    }
    let total = req.concurrency * hosts.len();
    let results = tasks::for_each("spawn", todo, total, |p: Placement| {
        let (host, gate) = &by_name[p.host.as_str()];
        let plan = ContainerPlan {
            args: peer_args(&run.id, &p.name, &p.host, &backend),
            name: p.name.clone(),
            role: labels::ROLE_PEER,
            index: p.index,
            image: images.peer.tag.clone(),
            memory: req.peer_memory_bytes,
            publish: false,
        };
        let (run_id, net, state) = (&run.id, &net_name, states.get(&p.name).cloned());
        async move {
            let _permit = gate.acquire().await.expect("never closed");
            create_and_start(host, run_id, net, &plan, state.as_deref()).await
        }
    })
    .await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(p, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("  {} on host {}: {e:#}", p.name, p.host))
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} peers could not be started:\n{}\nRe-run `launcher spawn --run-id {}` to create what is missing",
            failed.len(),
            spec.peers,
            failed.join("\n"),
            run.id
        );
    }
    eprintln!(
        "spawn: run {} has {} peers on {} host(s) and a coordinator on {}",
        run.id,
        spec.peers,
        hosts.len(),
        net_name
    );
    if let Ok((_, faults)) = spec.checked_faults() {
        let outside: Vec<String> = faults
            .iter()
            .enumerate()
            .filter(|(_, f)| f.action.is_docker())
            .map(|(i, f)| format!("plan#{} {}", i + 1, f.action.name()))
            .collect();
        if !outside.is_empty() {
            eprintln!(
                "spawn: the plan's {} are done through the Docker API by `launcher wait --run {}` (or `launcher run`), at their times: keep one running",
                outside.join(", "),
                run.id
            );
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::{HostSpec, Role};

    #[test]
    fn a_backend_choice_is_checked_before_any_engine_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ditto.secret");
        std::fs::write(&secret, "license_token = t\ndatabase_id = d\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        let ok = BackendChoice::new("ditto", Some(&secret), Some("cmesh-peer-ditto")).unwrap();
        assert_eq!(ok.secret.as_deref().map(<[u8]>::len), Some(34));
        assert!(BackendChoice::new("mesh", None, None).is_ok());
        let err = |name: &str, secret: Option<&Path>, image: Option<&str>| {
            let e = BackendChoice::new(name, secret, image).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2);
            e.to_string()
        };
        assert!(err("ditto", None, Some("x")).contains("needs --secret-file"));
        assert!(err("ditto", Some(&empty), Some("x")).contains("is empty"));
        assert!(err("ditto", Some(&dir.path().join("none")), Some("x")).contains("cannot read it"));
        assert!(err("mesh", Some(&secret), None).contains("takes none"));
        let e = err("ditto", Some(&secret), None);
        assert!(
            e.contains("only the mesh backend") && e.contains("images/peer-ditto"),
            "{e}"
        );
        // The secret's content never shows in an error.
        assert!(!err("ditto", Some(&secret), None).contains("license_token = t"));
    }

    #[test]
    fn peers_get_the_backend_and_the_secret_path_and_images_declare_backends() {
        let mesh = peer_args("r", "r-peer-0001", "local", "mesh");
        assert!(!mesh.contains(&"--backend".to_owned()));
        let ditto = peer_args("r", "r-peer-0001", "local", "ditto");
        let tail: Vec<&str> = ditto
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            vec![
                "--backend",
                "ditto",
                "--secret-file",
                "/cmesh/backend-secret"
            ]
        );
        let labels = std::collections::HashMap::from([(
            BACKENDS_LABEL.to_owned(),
            "mesh, ditto".to_owned(),
        )]);
        assert_eq!(image_backends(Some(&labels)), vec!["mesh", "ditto"]);
        assert_eq!(
            image_backends(None),
            vec!["mesh"],
            "unlabelled: the built-in one"
        );
    }

    fn host(name: &str, capacity: usize, weight: Option<u32>) -> HostSpec {
        HostSpec {
            name: name.into(),
            ssh: Some(format!("root@{name}")),
            role: Role::Worker,
            capacity,
            weight,
            labels: [("zone".to_owned(), name.to_uppercase())].into(),
            ..crate::hosts::local_default().hosts.remove(0)
        }
    }

    fn hosts_of(p: &[Placement]) -> String {
        p.iter()
            .map(|p| p.host.as_str())
            .collect::<Vec<_>>()
            .join("")
    }

    #[test]
    fn places_by_weight_within_capacity() {
        let equal = vec![
            host("a", 10, None),
            host("b", 10, None),
            host("c", 10, None),
        ];
        let p = place("r", 7, &equal, &[]).unwrap();
        assert_eq!(hosts_of(&p), "abcabca");
        assert_eq!(p[0].name, "r-peer-0001");
        assert_eq!(p[6].index, 7);
        // Weight 2:1 interleaves; a full host is skipped.
        let weighted = vec![host("a", 100, Some(2)), host("b", 100, Some(1))];
        assert_eq!(hosts_of(&place("r", 6, &weighted, &[]).unwrap()), "abaaba");
        let small = vec![host("a", 1, Some(5)), host("b", 5, Some(1))];
        assert_eq!(hosts_of(&place("r", 4, &small, &[]).unwrap()), "abbb");
        // Deterministic.
        assert_eq!(
            place("r", 30, &equal, &[]).unwrap(),
            place("r", 30, &equal, &[]).unwrap()
        );
        let e = place("r", 7, &small, &[]).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
    }

    #[test]
    fn a_label_filter_narrows_the_hosts() {
        let hosts = vec![host("a", 10, None), host("b", 10, None)];
        let only_b = [("zone".to_owned(), "B".to_owned())];
        assert_eq!(hosts_of(&place("r", 3, &hosts, &only_b).unwrap()), "bbb");
        let e = place("r", 11, &hosts, &only_b).unwrap_err();
        assert!(e.to_string().contains("capacity adds up to 10"), "{e}");
        let none = [("zone".to_owned(), "Z".to_owned())];
        let e = place("r", 1, &hosts, &none).unwrap_err();
        assert!(e.to_string().contains("--host-label zone=Z"), "{e}");
    }

    #[test]
    fn names_are_zero_padded_to_the_count() {
        assert_eq!(peer_name("r", 7, 10), "r-peer-0007");
        assert_eq!(peer_name("r", 7, 12_000), "r-peer-00007");
    }

    #[test]
    fn containers_get_net_admin_labels_limits_and_no_token() {
        let spec = PlanSpec::default();
        let c = ContainerPlan {
            name: "r-peer-0001".into(),
            role: labels::ROLE_PEER,
            index: 1,
            image: "img".into(),
            args: peer_args("r", "r-peer-0001", "local", "mesh"),
            memory: 64 << 20,
            publish: false,
        };
        let body = container_body("r", "local", "cmesh-r", &c);
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.cap_add.as_deref(), Some(&["NET_ADMIN".to_owned()][..]));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(
            hc.log_config.as_ref().unwrap().typ.as_deref(),
            Some("json-file")
        );
        assert_eq!(body.hostname.as_deref(), Some("r-peer-0001"));
        assert_eq!(body.labels.as_ref().unwrap()[labels::RUN], "r");
        assert!(body.env.is_none(), "nothing goes through the environment");
        assert_eq!(
            hc.binds.as_deref(),
            Some(
                &[
                    "cmesh-r-secrets:/cmesh:ro".to_owned(),
                    "cmesh-r-reports:/reports".to_owned()
                ][..]
            )
        );
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains("/cmesh/token") && !json.contains("TOKEN="));
        let args = coordinator_args("r", &spec).join(" ");
        assert!(
            args.contains("--peers 10") && args.contains("--graph random-regular"),
            "{args}"
        );
    }
}
