//! `launcher spawn`: from a plan and a hosts file to a running mesh.
//!
//! [`spawn`] is a sequence of named stages:
//!
//! 1. [`precheck`]: everything that needs no engine (run id, plan, subnet size,
//!    placement); bad input changes nothing;
//! 2. connect: this machine's engine (the image builder) and every host; the peer image's
//!    backend is checked before anything is created;
//! 3. [`open_run`]: the run directory (new, or an existing one with its manifest);
//! 4. images: built on this machine's engine ([`crate::cluster::images`]), then put on
//!    every host ([`crate::cluster::distribute`]);
//! 5. swarm, clock offsets and the run's overlay network ([`crate::cluster::network`]);
//! 6. the manifest, written before any container exists;
//! 7. [`crate::run::volumes`] on every host: reports, and secrets seeded with the token;
//! 8. the coordinator on the manager, then the peers, a bounded number at a time per host
//!    ([`crate::tasks`]).
//!
//! Re-running `spawn` for an existing run id reuses its manifest and creates only what is
//! missing: containers that exist are left alone (or started, if created but never
//! started). So an interrupted spawn is repaired by running it again.

pub mod app_image;
pub mod backend;
pub mod flag_file;

use crate::cluster::clock;
use crate::cluster::distribute::{self, Transport};
use crate::cluster::host::{self, Connector, Host};
use crate::cluster::{images, network, swarm};
use crate::engine::labels;
use crate::hosts::HostsFile;
use crate::placement::place;
use crate::run::containers::{self, coordinator_args, peer_args, ContainerPlan};
use crate::run::dir::{Images, NetworkInfo, Placement, RunDir, RunManifest, MANIFEST_SCHEMA};
use crate::run::names::{coordinator_name, has_backend_secret, network_name};
use crate::tasks;
pub use backend::{image_backends, BackendChoice, BACKENDS_LABEL};
use cmesh_common::exit::bad_input;
use cmesh_common::plan::PlanSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Spawn a run that does not fit its hosts, with a warning (`--force`).
    pub force: bool,
    pub peer_memory_bytes: i64,
    /// CPU quota per peer container, in billionths of a CPU (`--peer-cpus`).
    pub peer_nano_cpus: Option<i64>,
    pub bin_dir: PathBuf,
    pub base_image: Option<String>,
    pub backend: BackendChoice,
    /// Place the peers on the hosts that answer when some do not (the manager must);
    /// the manifest records the ones left out. Without it, spawn refuses (exit 1).
    pub allow_missing_hosts: bool,
    /// Encrypt the overlay's traffic between hosts (IPsec; `--encrypt-overlay`).
    pub encrypt_overlay: bool,
}

/// What spawn did (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Spawned {
    pub run_id: String,
    pub dir: PathBuf,
    pub network: String,
    pub subnet: String,
    pub peers: usize,
    /// Host → peers placed there.
    pub placement: BTreeMap<String, usize>,
    /// Peers that existed already (a re-run).
    pub already_existed: usize,
    pub started: usize,
    pub image_transport: String,
    pub seconds: f64,
    /// The run did not fit its hosts and `--force` spawned it anyway.
    pub forced: bool,
}

/// The checks that need no engine: run id, subnet size, capacity.
pub fn precheck(req: &SpawnRequest) -> anyhow::Result<()> {
    if let Some(id) = &req.run_id {
        crate::run::dir::validate_run_id(id)?;
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

/// An existing run named by the request, with its manifest.
fn previous(req: &SpawnRequest) -> anyhow::Result<Option<(RunManifest, RunDir)>> {
    match &req.run_id {
        Some(id) => match RunDir::open(&req.runs_dir, Some(id)) {
            Ok(dir) => Ok(Some((dir.read_manifest()?, dir))),
            Err(_) => Ok(None),
        },
        None => Ok(None),
    }
}

/// The run's directory and plan: an existing run keeps its own (hosts, placement, plan,
/// images), whatever the flags say now.
fn open_run(
    req: &SpawnRequest,
    previous: Option<&(RunManifest, RunDir)>,
) -> anyhow::Result<(RunDir, PlanSpec)> {
    Ok(match previous {
        Some((m, dir)) => {
            tracing::info!(
                "spawn: run {} exists; creating only what is missing",
                m.run_id
            );
            (dir.clone(), m.spec.clone())
        }
        None => {
            let id = req
                .run_id
                .clone()
                .unwrap_or_else(crate::run::dir::new_run_id);
            let dir = RunDir::create(&req.runs_dir, &id)?;
            tracing::info!(
                "spawn: run {id} in {} (an interrupted spawn is finished by `launcher spawn --run-id {id}`)",
                dir.path.display()
            );
            (dir, req.spec.clone())
        }
    })
}

/// The run's images on this machine's engine: a re-run keeps the run's images, so every
/// peer runs the same build.
async fn build_images(
    req: &SpawnRequest,
    builder: &Host,
    previous: Option<&RunManifest>,
    chosen_peer: Option<crate::run::dir::ImageRef>,
) -> anyhow::Result<Images> {
    if let Some(m) = previous {
        if images::present(builder, &m.images).await {
            return Ok(m.images.clone());
        }
    }
    let mut built = images::ensure_all(builder, &req.bin_dir, req.base_image.as_deref()).await?;
    if let Some(peer) = chosen_peer {
        built.peer = peer;
    }
    Ok(built)
}

/// The run's overlay network on the manager, sized for the run (or the run's own subnet
/// on a re-run): its id and subnet.
async fn ensure_network(
    run: &RunDir,
    manager: &Host,
    hint: Option<network::Subnet>,
    peers: usize,
    hosts: usize,
    encrypted: bool,
) -> anyhow::Result<(String, network::Subnet)> {
    let subnet = match hint {
        Some(s) => s,
        None => {
            let prefix = network::prefix_for(peers, hosts)?;
            network::pick_subnet(&run.id, prefix, &network::taken_subnets(manager).await?)?
        }
    };
    let labels = BTreeMap::from([(labels::RUN.to_owned(), run.id.clone())]);
    network::ensure_network(manager, &network_name(&run.id), labels, subnet, encrypted).await
}

/// Starts the coordinator on the manager (if it is not there yet).
/// Sets `over` once the coordinator `name` on `manager` has exited, looking every 5 s.
async fn coordinator_gone(
    manager: Host,
    name: String,
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        if let Ok(info) = manager.engine.inspect_container(&name).await {
            if info.state().is_finished() {
                over.store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    }
}

async fn start_coordinator(
    manager: &Host,
    run: &RunDir,
    spec: &PlanSpec,
    images: &Images,
    net: &str,
    states: &std::collections::HashMap<String, crate::engine::ContainerState>,
) -> anyhow::Result<()> {
    let coordinator = ContainerPlan {
        name: coordinator_name(&run.id),
        role: labels::ROLE_COORDINATOR,
        index: 0,
        image: images.coordinator.tag.clone(),
        args: coordinator_args(&run.id, spec),
        memory: 1 << 30,
        nano_cpus: None,
        cpu_shares: Some(containers::COORDINATOR_CPU_SHARES),
        publish: true,
        backend_secret: false,
    };
    manager
        .ensure_volume(
            &crate::run::names::coordinator_volume(&run.id),
            (labels::RUN, &run.id),
        )
        .await?;
    containers::ensure(
        manager,
        &run.id,
        net,
        &coordinator,
        states.get(&coordinator.name).copied(),
    )
    .await
}

/// Writes `runs/ID/prometheus.json`, a Prometheus `file_sd` target list with the
/// coordinator's published port on the manager's loopback (docs/operations.md shows the
/// scrape config). Best effort: a run without it still runs, and `launcher watch` does
/// not need it.
async fn write_prometheus_targets(manager: &Host, run: &RunDir) {
    let name = coordinator_name(&run.id);
    let port = match crate::engine::retry::retry(|| manager.engine.inspect_container(&name)).await {
        Ok(info) => info
            .published
            .get(&crate::run::names::COORDINATOR_PORT)
            .copied(),
        Err(e) => {
            tracing::debug!("spawn: no Prometheus targets: {e}");
            None
        }
    };
    let Some(port) = port else { return };
    let targets = serde_json::json!([{
        "targets": [format!("127.0.0.1:{port}")],
        "labels": {"cmesh_run": run.id, "cmesh_manager": manager.name()},
    }]);
    if let Err(e) = crate::run::dir::write_json(&run.prometheus_targets_path(), &targets) {
        tracing::warn!("spawn: cannot write the Prometheus targets: {e:#}");
    }
}

/// Spawns (or completes) a run on real Docker Engines.
pub async fn spawn(req: SpawnRequest) -> anyhow::Result<Spawned> {
    spawn_with(&Connector::Docker, req).await
}

/// Spawns (or completes) a run on the hosts `connector` reaches.
pub async fn spawn_with(connector: &Connector, req: SpawnRequest) -> anyhow::Result<Spawned> {
    let started_at = std::time::Instant::now();
    precheck(&req)?;
    let previous = previous(&req)?;
    let hosts_file = match &previous {
        Some((m, _)) => m.hosts_file(),
        None => req.hosts.clone(),
    };
    let (builder, set) = tokio::join!(connector.builder(), connector.connect_all(&hosts_file));
    let builder = builder?;
    let leave_out = req.allow_missing_hosts
        && previous.is_none()
        && !set.lost.is_empty()
        && set.lost.iter().all(|l| !l.bad_input);
    let (hosts, missing) = if leave_out {
        for l in &set.lost {
            tracing::warn!(
                "spawn: leaving out host `{}` (--allow-missing-hosts): {}",
                l.name,
                l.reason
            );
        }
        (set.hosts, set.lost)
    } else {
        (set.require_all()?, Vec::new())
    };
    let hosts_file = HostsFile {
        hosts: hosts_file
            .hosts
            .into_iter()
            .filter(|h| !missing.iter().any(|m| m.name == h.name))
            .collect(),
        ssh: hosts_file.ssh,
    };
    // A peer image of the user's must have the backend: checked before anything exists.
    let chosen_peer = match (&req.backend.peer_image, &req.backend.app) {
        (Some(image), _) => {
            Some(backend::chosen_peer_image(&builder, image, &req.backend.name).await?)
        }
        // The user's app: the peer image derived from it, its checks failing here.
        (None, Some(app)) if previous.is_none() => Some(
            app_image::ensure(
                &builder,
                app,
                &req.bin_dir.join("peer"),
                !req.spec.faults.is_empty(),
            )
            .await?,
        ),
        _ => None,
    };
    let manager = host::manager(&hosts)?.clone();
    // A re-run keeps the run's network as it was made.
    let encrypted = match &previous {
        Some((m, _)) => m.network.encrypted,
        None => req.encrypt_overlay,
    };
    if encrypted && previous.is_none() {
        // Before anything is created: every host's kernel must do IPsec, or the overlay
        // would carry nothing between hosts.
        crate::cluster::hostcheck::require_ipsec(&hosts).await?;
    }
    let mut forced = false;
    if previous.is_none() {
        // Before anything is created: each host's share against its limits.
        let placed =
            crate::placement::peers_per_host(req.spec.peers, &hosts_file.hosts, &req.host_filter)?;
        forced = crate::cluster::limits::preflight(&hosts, &placed, manager.name(), req.force)
            .await?
            == crate::cluster::limits::Fit::Forced;
    }
    let (run, spec) = open_run(&req, previous.as_ref())?;
    let previous_manifest = previous.as_ref().map(|(m, _)| m);

    let images = build_images(&req, &builder, previous_manifest, chosen_peer).await?;
    swarm::ensure(&hosts).await?;
    let transport_used = distribute::distribute(&builder, &hosts, &images, req.transport).await?;
    let offsets = clock::measure_all(&hosts).await?;
    let hint = match previous_manifest {
        Some(m) => network::Subnet::parse(&m.network.subnet).ok(),
        None => req.subnet,
    };
    let (network_id, subnet) =
        ensure_network(&run, &manager, hint, spec.peers, hosts.len(), encrypted).await?;
    let net_name = network_name(&run.id);
    tracing::info!("network: {net_name} {subnet}");

    let token = run.token()?;
    let admin_digest = cmesh_common::token::digest(&run.admin_token()?);
    // A re-run keeps the run's backend and placement, whatever the flags say.
    let backend = previous_manifest
        .map(|m| m.backend.clone())
        .unwrap_or_else(|| req.backend.name.clone());
    let adapter = match previous_manifest {
        Some(m) => m.adapter.clone(),
        None => req.backend.app.as_ref().map(app_image::AppChoice::command),
    };
    let placements = match previous_manifest {
        Some(m) => m.peers.clone(),
        None => place(&run.id, spec.peers, &hosts_file.hosts, &req.host_filter)?,
    };
    let manifest = RunManifest {
        schema: MANIFEST_SCHEMA.into(),
        schema_version: 1,
        run_id: run.id.clone(),
        created_at: match previous_manifest {
            Some(m) => m.created_at.clone(),
            None => humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        },
        hosts: hosts_file.hosts.clone(),
        ssh: hosts_file.ssh.clone(),
        clock_offsets_ms: match previous_manifest {
            Some(m) if !m.clock_offsets_ms.is_empty() => m.clock_offsets_ms.clone(),
            _ => hosts
                .iter()
                .zip(&offsets)
                .map(|(h, o)| (h.name().to_owned(), (o.offset_ms * 1000.0).round() / 1000.0))
                .collect(),
        },
        image_transport: transport_used.clone(),
        backend: backend.clone(),
        adapter: adapter.clone(),
        network: NetworkInfo {
            name: net_name.clone(),
            id: network_id,
            subnet: subnet.to_string(),
            encrypted,
        },
        images: images.clone(),
        spec: spec.clone(),
        coordinator: Placement {
            name: coordinator_name(&run.id),
            host: manager.name().to_owned(),
            index: 0,
        },
        peers: placements.clone(),
        hosts_missing_at_spawn: match previous_manifest {
            Some(m) => m.hosts_missing_at_spawn.clone(),
            None => missing,
        },
    };
    run.write_manifest(&manifest)?;
    let mut placement: BTreeMap<String, usize> = BTreeMap::new();
    for p in &placements {
        *placement.entry(p.host.clone()).or_default() += 1;
    }
    let spread: Vec<String> = placement.iter().map(|(h, n)| format!("{h} {n}")).collect();
    tracing::info!("placement: {}", spread.join(", "));

    let secrets = crate::run::volumes::Secrets {
        token: &token,
        admin_digest: &admin_digest,
        backend: req.backend.secret.as_deref(),
    };
    let seeded = futures_util::future::join_all(
        hosts
            .iter()
            .map(|h| crate::run::volumes::ensure(h, &run.id, &images.peer.tag, &secrets)),
    )
    .await;
    seeded.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let mut states = std::collections::HashMap::new();
    for (h, list) in hosts.iter().zip(
        futures_util::future::join_all(hosts.iter().map(|h| containers::existing(h, &run.id)))
            .await,
    ) {
        states.extend(list.map_err(|e| {
            anyhow::Error::new(e).context(format!("listing containers on host {}", h.name()))
        })?);
    }
    start_coordinator(&manager, &run, &spec, &images, &net_name, &states).await?;
    write_prometheus_targets(&manager, &run).await;

    let todo: Vec<Placement> = placements
        .into_iter()
        .filter(|p| {
            !matches!(states.get(&p.name), Some(s) if *s != crate::engine::ContainerState::Created)
        })
        .collect();
    let already_existed = spec.peers - todo.len();
    if already_existed > 0 {
        tracing::info!("spawn: {already_existed} peers already exist");
    }
    // Bounded per host: each engine gets at most `concurrency` requests at once.
    let index: BTreeMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name(), i))
        .collect();
    let items: Vec<(usize, Placement)> = todo
        .into_iter()
        .map(|p| (index.get(p.host.as_str()).copied().unwrap_or(0), p))
        .collect();
    let started = items.len();
    // The coordinator gives up on peers that do not register by its start timeout; once
    // it has exited the run is over, and starting more peers only adds load to hosts that
    // could not keep up. Checked every few seconds while the peers start.
    let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = tokio::spawn(coordinator_gone(
        manager.clone(),
        coordinator_name(&run.id),
        over.clone(),
    ));
    let results = tasks::for_each_on_hosts("spawn", items, req.concurrency, |h, p: Placement| {
        let plan = ContainerPlan {
            args: peer_args(&run.id, &p.name, &p.host, &backend, adapter.as_deref()),
            name: p.name.clone(),
            role: labels::ROLE_PEER,
            index: p.index,
            image: images.peer.tag.clone(),
            memory: req.peer_memory_bytes,
            nano_cpus: req.peer_nano_cpus,
            cpu_shares: None,
            publish: false,
            backend_secret: has_backend_secret(&backend),
        };
        let (host, run_id, net, state) =
            (&hosts[h], &run.id, &net_name, states.get(&p.name).copied());
        let over = over.clone();
        async move {
            if over.load(std::sync::atomic::Ordering::Relaxed) {
                anyhow::bail!("not started: the coordinator has exited, the run is over");
            }
            containers::ensure(host, run_id, net, &plan, state).await
        }
    })
    .await;
    watching.abort();
    if over.load(std::sync::atomic::Ordering::Relaxed) {
        let left = results.iter().filter(|(_, r)| r.is_err()).count();
        anyhow::bail!(
            "the coordinator of run {} exited while spawn was starting its peers ({left} of {} not started): the run is over, most likely aborted at its start timeout because the hosts started the peers too slowly. `launcher logs --run {} {}` says why; `launcher down --run {}` removes what was made",
            run.id,
            spec.peers,
            run.id,
            coordinator_name(&run.id),
            run.id
        );
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|((_, p), r)| {
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
    tracing::info!(
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
            tracing::warn!(
                "spawn: the plan's {} are done through the Docker API by `launcher wait --run {}` (or `launcher run`), at their times: keep one running",
                outside.join(", "),
                run.id
            );
        }
    }
    Ok(Spawned {
        run_id: run.id.clone(),
        dir: run.path.clone(),
        network: net_name,
        subnet: subnet.to_string(),
        peers: spec.peers,
        placement,
        already_existed,
        started,
        image_transport: transport_used,
        seconds: started_at.elapsed().as_secs_f64(),
        forced,
    })
}
