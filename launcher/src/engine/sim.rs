//! A simulated engine: Docker hosts in memory, behind the same [`Engine`] seam.
//!
//! A [`Cluster`] holds any number of simulated hosts. Each host is a daemon that serves
//! at most [`Model::parallelism`] requests at once; every request holds one of those
//! slots for its modelled latency, so a host's throughput and queueing follow the model
//! and the launcher's own concurrency only decides how full the daemon is kept. Time is
//! tokio's: under a paused clock (`#[tokio::test(start_paused = true)]`) a 10,000-peer
//! run takes seconds of real time and is deterministic.
//!
//! Containers "run" for the time a [`Behaviour`] gives them and then exit with its code,
//! writing a report file first where the behaviour says (on one of the container's
//! volumes, as a real peer writes to the run's reports volume: [`crate::simlab`]). Image distribution is not modelled: every host has every image the builder has
//! (bench/spawn measures distribution on real engines).
//!
//! Faults: [`Cluster::vanish_at`] (a host stops answering at a time: every request then
//! fails as [`EngineError::Unreachable`] and its event streams end with that error),
//! [`Model::failure_rate`] (a request fails with a transient error, seeded), and a
//! behaviour's exit times and codes.
//!
//! ## The model's numbers
//!
//! Calibrated from this machine (2 cores, Docker 20.10.24; docs/benchmarks.md and
//! shared/ENVIRONMENT.md): containers start at about 4/s per engine on an overlay whatever
//! the client's concurrency (bench/spawn: 200 in 50.7 s; 60 in 16.5 s), so create + start
//! hold a slot 0.5 s with 2 slots; `down` removed 1001 containers in 6 s (12 ms each with
//! 2 slots); extract read 201 containers (inspect, logs, one archive per host) in
//! 0.37 s. See [`Model::calibrated`] for each figure.

use super::{
    ByteStream, ContainerEvent, ContainerInfo, ContainerSpec, ContainerState, ContainerSummary,
    Engine, EngineError, EngineInfo, EventKind, ImageInfo, LogOptions, NetworkInfo, NetworkSpec,
    NodeLabels, NodeState, RegistryAuth, SwarmJoin, SwarmState, VolumeSpec,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, Semaphore};
use tokio::time::Instant;

/// How long each kind of request holds a daemon slot, and how many slots a host has.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Requests a daemon serves at once.
    pub parallelism: usize,
    pub create: Duration,
    pub start: Duration,
    pub inspect: Duration,
    /// A list costs this plus [`Model::list_per_container`] for each container listed.
    pub list: Duration,
    pub list_per_container: Duration,
    pub signal: Duration,
    pub remove: Duration,
    pub logs: Duration,
    /// An archive costs this plus [`Model::archive_per_kib`] for each KiB in it.
    pub archive: Duration,
    pub archive_per_kib: Duration,
    pub volume: Duration,
    pub network: Duration,
    /// How long a removed network is still listed and inspectable: Docker removes a
    /// swarm network's local copy after the removal call returns.
    pub network_linger: Duration,
    pub info: Duration,
    pub swarm: Duration,
    pub image: Duration,
    /// Chance that a request fails with a transient (5xx) error.
    pub failure_rate: f64,
}

impl Model {
    /// The numbers measured on this project's machines (module docs).
    pub fn calibrated() -> Model {
        Model {
            parallelism: 2,
            // 2 slots / (0.12 s + 0.38 s) = 4 containers/s: bench/spawn's 3.95/s.
            create: Duration::from_millis(120),
            start: Duration::from_millis(380),
            // extract: 201 × (inspect + logs) + 1 archive in 0.37 s with 2 slots.
            inspect: Duration::from_millis(2),
            logs: Duration::from_millis(2),
            archive: Duration::from_millis(30),
            archive_per_kib: Duration::from_micros(20),
            list: Duration::from_millis(5),
            list_per_container: Duration::from_micros(20),
            signal: Duration::from_millis(20),
            // down: 1001 in 6 s with 2 slots.
            remove: Duration::from_millis(12),
            volume: Duration::from_millis(10),
            network: Duration::from_millis(200),
            // `docker network rm` of an attachable overlay, then `network ls` every
            // 0.2 s: listed once more, gone 0.25 s after the call returned (idle engine).
            network_linger: Duration::from_millis(250),
            info: Duration::from_millis(2),
            swarm: Duration::from_millis(50),
            image: Duration::from_millis(5),
            failure_rate: 0.0,
        }
    }
}

/// How a container behaves once started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until killed or removed.
    Forever,
    /// Exits after this long with this code. If `report` names a file (a path inside the
    /// container, on one of its volumes), it writes a small report there first.
    Exit {
        after: Duration,
        code: i64,
        report: Option<String>,
    },
}

/// Chooses each container's behaviour from its name and labels.
pub type BehaviourFn = Arc<dyn Fn(&str, &BTreeMap<String, String>) -> Behaviour + Send + Sync>;

struct SimContainer {
    spec: ContainerSpec,
    id: String,
    state: ContainerState,
    exit_code: Option<i64>,
    /// Bumped on every start, so a timer from an earlier start does nothing.
    generation: u64,
}

#[derive(Default)]
struct HostState {
    containers: BTreeMap<String, SimContainer>,
    /// Volume → path inside it → bytes.
    volumes: BTreeMap<String, BTreeMap<String, Bytes>>,
    networks: BTreeMap<String, NetworkInfo>,
    /// Removed networks the engine still lists, until when ([`Model::network_linger`]).
    lingering: BTreeMap<String, (NetworkInfo, Instant)>,
    swarm: NodeState,
    /// Busy time: the sum of every request's slot time (`Model` latency).
    busy: Duration,
    requests: u64,
}

impl HostState {
    /// A network the engine lists: a live one, or a removed one still lingering.
    fn listed_network(&self, name: &str) -> Option<&NetworkInfo> {
        self.networks.get(name).or_else(|| {
            self.lingering
                .get(name)
                .filter(|(_, until)| Instant::now() < *until)
                .map(|(n, _)| n)
        })
    }

    fn listed_networks(&self) -> impl Iterator<Item = (&String, &NetworkInfo)> {
        let now = Instant::now();
        self.networks.iter().chain(
            self.lingering
                .iter()
                .filter(move |(n, (_, until))| now < *until && !self.networks.contains_key(*n))
                .map(|(n, (info, _))| (n, info)),
        )
    }

    fn container(&self, name: &str) -> Result<&SimContainer, EngineError> {
        self.containers.get(name).ok_or_else(|| no_container(name))
    }

    fn container_mut(&mut self, name: &str) -> Result<&mut SimContainer, EngineError> {
        self.containers
            .get_mut(name)
            .ok_or_else(|| no_container(name))
    }
}

fn no_container(name: &str) -> EngineError {
    EngineError::NotFound(format!("No such container: {name}"))
}

struct SimHost {
    name: String,
    state: Mutex<HostState>,
    slots: Semaphore,
    events: broadcast::Sender<ContainerEvent>,
    vanish_at: Mutex<Option<Instant>>,
}

struct ClusterInner {
    model: Model,
    behaviour: BehaviourFn,
    hosts: Mutex<BTreeMap<String, Arc<SimHost>>>,
    /// Images every host has: tag → id.
    images: Mutex<BTreeMap<String, ImageInfo>>,
    /// Swarm node id → labels.
    nodes: Mutex<BTreeMap<String, NodeLabels>>,
    rng: Mutex<u64>,
    clock_offsets: Mutex<BTreeMap<String, i64>>,
    /// Each host's limits, as spawn's pre-flight reads them (unknown unless set).
    facts: Mutex<BTreeMap<String, super::facts::HostFacts>>,
    /// When the last container exited on its own.
    last_exit: Mutex<Option<Instant>>,
}

/// Simulated hosts sharing one swarm and one image store.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// An empty cluster; containers behave as `behaviour` says.
    pub fn new(model: Model, behaviour: BehaviourFn) -> Cluster {
        Cluster {
            inner: Arc::new(ClusterInner {
                model,
                behaviour,
                hosts: Mutex::new(BTreeMap::new()),
                images: Mutex::new(BTreeMap::new()),
                nodes: Mutex::new(BTreeMap::new()),
                rng: Mutex::new(0x9e37_79b9_7f4a_7c15),
                clock_offsets: Mutex::new(BTreeMap::new()),
                facts: Mutex::new(BTreeMap::new()),
                last_exit: Mutex::new(None),
            }),
        }
    }

    /// Every container runs for `after`, then exits 0.
    pub fn exiting_after(model: Model, after: Duration) -> Cluster {
        Cluster::new(
            model,
            Arc::new(move |_, _| Behaviour::Exit {
                after,
                code: 0,
                report: None,
            }),
        )
    }

    /// The engine of host `name` (made on first use).
    pub fn engine(&self, name: &str) -> SimEngine {
        let host = lock(&self.inner.hosts)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(SimHost {
                    name: name.to_owned(),
                    state: Mutex::new(HostState::default()),
                    slots: Semaphore::new(self.inner.model.parallelism.max(1)),
                    // A reader that falls this far behind gets `Lagged` and lists again.
                    events: broadcast::channel(4096).0,
                    vanish_at: Mutex::new(None),
                })
            })
            .clone();
        SimEngine {
            cluster: self.clone(),
            host,
        }
    }

    /// Host `name` stops answering at `at` (now, if in the past).
    pub fn vanish_at(&self, name: &str, at: Instant) {
        let engine = self.engine(name);
        *lock(&engine.host.vanish_at) = Some(at);
        // Event streams end with the host: wake their readers at that time.
        let host = engine.host.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = host.events.send(ContainerEvent {
                name: String::new(),
                kind: EventKind::Other,
            });
        });
    }

    /// Host `name` answers again.
    pub fn restore(&self, name: &str) {
        *lock(&self.engine(name).host.vanish_at) = None;
    }

    /// The clock of host `name` runs `micros` ahead of this machine's.
    pub fn set_clock_offset(&self, name: &str, micros: i64) {
        lock(&self.inner.clock_offsets).insert(name.to_owned(), micros);
    }

    /// Puts image `tag` on every host.
    pub fn add_image(&self, tag: &str) {
        let id = format!("sha256:{}", super::short_hash(&[tag.as_bytes()]));
        lock(&self.inner.images).insert(
            tag.to_owned(),
            ImageInfo {
                id,
                ..Default::default()
            },
        );
    }

    /// Each host's busy time so far (the sum of its requests' slot times) and requests.
    pub fn busy(&self) -> BTreeMap<String, (Duration, u64)> {
        lock(&self.inner.hosts)
            .iter()
            .map(|(n, h)| {
                let s = lock(&h.state);
                (n.clone(), (s.busy, s.requests))
            })
            .collect()
    }

    /// The most a host has been busy, divided by its slots: the least time its work can
    /// take (the model's ideal wall time for what was asked of it).
    pub fn ideal(&self) -> Duration {
        let slots = self.inner.model.parallelism.max(1) as u32;
        self.busy()
            .values()
            .map(|(busy, _)| *busy / slots)
            .max()
            .unwrap_or_default()
    }

    /// When the last container exited on its own (its behaviour's time), if any has.
    pub fn last_exit(&self) -> Option<Instant> {
        *lock(&self.inner.last_exit)
    }

    /// The model's slots per host.
    pub fn parallelism(&self) -> usize {
        self.inner.model.parallelism.max(1)
    }

    /// Every container on host `name`, with its state.
    pub fn containers(&self, name: &str) -> BTreeMap<String, ContainerState> {
        lock(&self.engine(name).host.state)
            .containers
            .iter()
            .map(|(n, c)| (n.clone(), c.state))
            .collect()
    }

    /// Volumes on host `name`.
    pub fn volumes(&self, name: &str) -> Vec<String> {
        lock(&self.engine(name).host.state)
            .volumes
            .keys()
            .cloned()
            .collect()
    }

    /// Networks on host `name`.
    /// Gives host `name` these limits (pid_max, memory, …) for spawn's pre-flight.
    pub fn set_facts(&self, name: &str, facts: super::facts::HostFacts) {
        lock(&self.inner.facts).insert(name.to_owned(), facts);
    }

    /// Host `name`'s limits: unknown unless [`Cluster::set_facts`] gave some.
    pub fn facts(&self, name: &str) -> super::facts::HostFacts {
        lock(&self.inner.facts)
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    pub fn networks(&self, name: &str) -> Vec<String> {
        lock(&self.engine(name).host.state)
            .listed_networks()
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn chance(&self) -> f64 {
        // xorshift64*: seeded, so a run with failures is the same every time.
        let mut x = lock(&self.inner.rng);
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One simulated host's engine.
#[derive(Clone)]
pub struct SimEngine {
    cluster: Cluster,
    host: Arc<SimHost>,
}

impl SimEngine {
    fn model(&self) -> &Model {
        &self.cluster.inner.model
    }

    fn gone(&self) -> bool {
        lock(&self.host.vanish_at).is_some_and(|at| Instant::now() >= at)
    }

    fn unreachable(&self) -> EngineError {
        EngineError::Unreachable(format!("simulated host `{}` is gone", self.host.name))
    }

    /// Serves one request: waits for a slot, holds it for `cost`, then runs `apply` on
    /// the host's state.
    async fn serve<R>(
        &self,
        cost: Duration,
        apply: impl FnOnce(&mut HostState) -> Result<R, EngineError>,
    ) -> Result<R, EngineError> {
        if self.gone() {
            return Err(self.unreachable());
        }
        let _slot = self
            .host
            .slots
            .acquire()
            .await
            .map_err(|_| self.unreachable())?;
        tokio::time::sleep(cost).await;
        if self.gone() {
            return Err(self.unreachable());
        }
        let mut state = lock(&self.host.state);
        state.busy += cost;
        state.requests += 1;
        let rate = self.model().failure_rate;
        if rate > 0.0 && self.cluster.chance() < rate {
            return Err(EngineError::Server("simulated transient failure".into()));
        }
        apply(&mut state)
    }

    fn emit(&self, name: &str, kind: EventKind) {
        let _ = self.host.events.send(ContainerEvent {
            name: name.to_owned(),
            kind,
        });
    }

    /// Marks `name` started and schedules its exit.
    fn started(&self, state: &mut HostState, name: &str) -> Result<(), EngineError> {
        let c = state.container_mut(name)?;
        if c.state == ContainerState::Running || c.state == ContainerState::Paused {
            return Err(EngineError::NotModified(format!(
                "{name} is already started"
            )));
        }
        c.state = ContainerState::Running;
        c.exit_code = None;
        c.generation += 1;
        let behaviour = (self.cluster.inner.behaviour)(name, &c.spec.labels);
        let generation = c.generation;
        // The report's volume and the path inside it, from the container's binds.
        let report_at = |path: &str| {
            c.spec.binds.iter().find_map(|b| {
                let mut parts = b.split(':');
                let (volume, mount) = (parts.next()?, parts.next()?);
                let rest = path.strip_prefix(mount)?.strip_prefix('/')?;
                Some((volume.to_owned(), rest.to_owned()))
            })
        };
        self.emit(name, EventKind::Start);
        if let Behaviour::Exit {
            after,
            code,
            report,
        } = behaviour
        {
            let report = report.as_deref().and_then(report_at);
            let (engine, name) = (self.clone(), name.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if engine.gone() {
                    return;
                }
                let mut state = lock(&engine.host.state);
                if let Some((volume, path)) = report {
                    let body = format!("{{\"peer\":\"{name}\",\"simulated\":true}}");
                    state
                        .volumes
                        .entry(volume)
                        .or_default()
                        .insert(path, Bytes::from(body));
                }
                let Some(c) = state.containers.get_mut(&name) else {
                    return;
                };
                if c.generation != generation || c.state != ContainerState::Running {
                    return;
                }
                c.state = ContainerState::Exited;
                c.exit_code = Some(code);
                drop(state);
                *lock(&engine.cluster.inner.last_exit) = Some(Instant::now());
                engine.emit(&name, EventKind::Die);
            });
        }
        Ok(())
    }

    /// A tar of the files under `path` in the container's volumes, named as Docker's
    /// archive API names them (the last part of `path` first).
    fn archive(state: &HostState, name: &str, path: &str) -> Result<Vec<u8>, EngineError> {
        let c = state.container(name)?;
        let (volume, mount) = c
            .spec
            .binds
            .iter()
            .filter_map(|b| {
                let mut parts = b.split(':');
                Some((parts.next()?, parts.next()?))
            })
            .find(|(_, mount)| path == *mount || path.starts_with(&format!("{mount}/")))
            .ok_or_else(|| EngineError::NotFound(format!("{path} in {name}: no such path")))?;
        let inner = path[mount.len()..].trim_start_matches('/');
        let top = path.rsplit('/').next().unwrap_or(path);
        let files = state.volumes.get(volume).cloned().unwrap_or_default();
        let mut tar = tar::Builder::new(Vec::new());
        let mut any = inner.is_empty();
        for (file, bytes) in &files {
            let rest = if inner.is_empty() {
                file.as_str()
            } else if let Some(r) = file.strip_prefix(&format!("{inner}/")) {
                r
            } else {
                continue;
            };
            any = true;
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("{top}/{rest}"), bytes.as_ref())
                .map_err(|e| EngineError::Other(e.to_string()))?;
        }
        if !any {
            return Err(EngineError::NotFound(format!(
                "{path} in {name}: no such path"
            )));
        }
        tar.into_inner()
            .map_err(|e| EngineError::Other(e.to_string()))
    }
}

fn once(result: Result<Bytes, EngineError>) -> ByteStream {
    futures_util::stream::once(async move { result }).boxed()
}

#[async_trait]
impl Engine for SimEngine {
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let cost = self.model().info;
        let offset = lock(&self.cluster.inner.clock_offsets)
            .get(&self.host.name)
            .copied()
            .unwrap_or(0);
        self.serve(cost, |s| {
            let micros = cmesh_common::unix_micros() as i64 + offset;
            let time = std::time::UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
            Ok(EngineInfo {
                docker_root_dir: Some("/var/lib/docker".into()),
                system_time: Some(humantime::format_rfc3339_micros(time).to_string()),
                swarm: s.swarm.clone(),
            })
        })
        .await
    }

    async fn version(&self) -> Result<(String, String), EngineError> {
        self.serve(self.model().info, |_| {
            Ok(("sim".to_owned(), "1.41".to_owned()))
        })
        .await
    }

    async fn list_containers(
        &self,
        (key, value): (&str, &str),
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let n = lock(&self.host.state).containers.len() as u32;
        let cost = self.model().list + self.model().list_per_container * n;
        self.serve(cost, |s| {
            Ok(s.containers
                .iter()
                .filter(|(_, c)| c.spec.labels.get(key).map(String::as_str) == Some(value))
                .map(|(n, c)| ContainerSummary {
                    name: n.clone(),
                    state: c.state,
                })
                .collect())
        })
        .await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<(), EngineError> {
        let images = lock(&self.cluster.inner.images).contains_key(&spec.image);
        self.serve(self.model().create, |s| {
            if !images {
                return Err(EngineError::NotFound(format!(
                    "No such image: {}",
                    spec.image
                )));
            }
            if s.containers.contains_key(&spec.name) {
                return Err(EngineError::Conflict(format!(
                    "The container name \"/{}\" is already in use",
                    spec.name
                )));
            }
            let id = super::short_hash(&[spec.name.as_bytes()]);
            s.containers.insert(
                spec.name.clone(),
                SimContainer {
                    spec: spec.clone(),
                    id,
                    state: ContainerState::Created,
                    exit_code: None,
                    generation: 0,
                },
            );
            Ok(())
        })
        .await
    }

    async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.serve(self.model().start, |s| self.started(s, name))
            .await
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo, EngineError> {
        self.serve(self.model().inspect, |s| {
            let c = s.container(name)?;
            Ok(ContainerInfo {
                name: name.to_owned(),
                id: c.id.clone(),
                image: c.spec.image.clone(),
                state: Some(c.state),
                exit_code: c.exit_code,
                labels: c.spec.labels.clone(),
                published: c
                    .spec
                    .publish
                    .iter()
                    .map(|p| {
                        (
                            p.port,
                            if p.host_port == 0 {
                                40_000
                            } else {
                                p.host_port
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            })
        })
        .await
    }

    async fn kill_container(&self, name: &str) -> Result<(), EngineError> {
        let died = self
            .serve(self.model().signal, |s| {
                let c = s.container_mut(name)?;
                if c.state != ContainerState::Running {
                    return Err(EngineError::Conflict(format!(
                        "Container {name} is not running"
                    )));
                }
                c.state = ContainerState::Exited;
                c.exit_code = Some(137);
                Ok(())
            })
            .await;
        if died.is_ok() {
            self.emit(name, EventKind::Die);
        }
        died
    }

    async fn pause_container(&self, name: &str) -> Result<(), EngineError> {
        self.serve(self.model().signal, |s| {
            let c = s.container_mut(name)?;
            match c.state {
                ContainerState::Running => {
                    c.state = ContainerState::Paused;
                    Ok(())
                }
                ContainerState::Paused => Err(EngineError::Conflict(format!(
                    "Container {name} is already paused"
                ))),
                _ => Err(EngineError::Conflict(format!(
                    "Container {name} is not running"
                ))),
            }
        })
        .await
    }

    async fn unpause_container(&self, name: &str) -> Result<(), EngineError> {
        self.serve(self.model().signal, |s| {
            let c = s.container_mut(name)?;
            if c.state != ContainerState::Paused {
                return Err(EngineError::Conflict(format!(
                    "Container {name} is not paused"
                )));
            }
            c.state = ContainerState::Running;
            Ok(())
        })
        .await
    }

    async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let removed = self
            .serve(self.model().remove, |s| {
                s.container(name)?;
                s.containers.remove(name);
                Ok(())
            })
            .await;
        if removed.is_ok() {
            self.emit(name, EventKind::Destroy);
        }
        removed
    }

    fn download(&self, name: &str, path: &str) -> ByteStream {
        let (engine, name, path) = (self.clone(), name.to_owned(), path.to_owned());
        futures_util::stream::once(async move {
            let kib = lock(&engine.host.state)
                .volumes
                .values()
                .flat_map(|v| v.values())
                .map(|b| b.len() as u32)
                .sum::<u32>()
                / 1024;
            let cost = engine.model().archive + engine.model().archive_per_kib * kib;
            engine
                .serve(cost, |s| Self::archive(s, &name, &path).map(Bytes::from))
                .await
        })
        .boxed()
    }

    async fn upload(&self, name: &str, path: &str, tar: Bytes) -> Result<(), EngineError> {
        self.serve(self.model().archive, |s| {
            let c = s.container(name)?;
            let volume = c
                .spec
                .binds
                .iter()
                .find_map(|b| {
                    let mut parts = b.split(':');
                    let (v, m) = (parts.next()?, parts.next()?);
                    (m == path).then(|| v.to_owned())
                })
                .ok_or_else(|| EngineError::NotFound(format!("{path} in {name}: no volume")))?;
            let mut archive = tar::Archive::new(tar.as_ref());
            let mut files = Vec::new();
            for entry in archive
                .entries()
                .map_err(|e| EngineError::Other(e.to_string()))?
            {
                let mut entry = entry.map_err(|e| EngineError::Other(e.to_string()))?;
                let file = entry
                    .path()
                    .map_err(|e| EngineError::Other(e.to_string()))?
                    .display()
                    .to_string();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes)
                    .map_err(|e| EngineError::Other(e.to_string()))?;
                files.push((file, Bytes::from(bytes)));
            }
            s.volumes.entry(volume).or_default().extend(files);
            Ok(())
        })
        .await
    }

    fn logs(&self, name: &str, options: LogOptions) -> ByteStream {
        let (engine, name) = (self.clone(), name.to_owned());
        // One line, written when the run began (so a follower that asks again sees it
        // once).
        let stamp = if options.timestamps {
            "2026-01-01T00:00:00.000000001Z "
        } else {
            ""
        };
        futures_util::stream::once(async move {
            let cost = engine.model().logs;
            engine
                .serve(cost, |s| {
                    s.container(&name)
                        .map(|_| Bytes::from(format!("{stamp}{name}: simulated\n")))
                })
                .await
        })
        .boxed()
    }

    fn events(
        &self,
        (key, value): (&str, &str),
    ) -> BoxStream<'static, Result<ContainerEvent, EngineError>> {
        if self.gone() {
            return futures_util::stream::once(futures_util::future::ready(
                Err(self.unreachable()),
            ))
            .boxed();
        }
        let receiver = self.host.events.subscribe();
        let (engine, key, value) = (self.clone(), key.to_owned(), value.to_owned());
        futures_util::stream::unfold(Some(receiver), move |receiver| {
            let (engine, key, value) = (engine.clone(), key.clone(), value.clone());
            async move {
                let mut receiver = receiver?;
                loop {
                    let event = receiver.recv().await;
                    if engine.gone() {
                        return Some((Err(engine.unreachable()), None));
                    }
                    match event {
                        Ok(e) => {
                            let labelled = lock(&engine.host.state)
                                .containers
                                .get(&e.name)
                                .is_none_or(|c| {
                                    c.spec.labels.get(&key).map(String::as_str)
                                        == Some(value.as_str())
                                });
                            if labelled && !e.name.is_empty() {
                                return Some((Ok(e), Some(receiver)));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return Some((
                                Err(EngineError::Other("simulated event stream lagged".into())),
                                None,
                            ))
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), EngineError> {
        self.serve(self.model().volume, |s| {
            s.volumes.entry(spec.name.clone()).or_default();
            Ok(())
        })
        .await
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        self.serve(self.model().volume, |s| Ok(s.volumes.contains_key(name)))
            .await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.serve(self.model().volume, |s| {
            let used = s.containers.values().any(|c| {
                c.spec
                    .binds
                    .iter()
                    .any(|b| b.starts_with(&format!("{name}:")))
            });
            if used {
                return Err(EngineError::Conflict(format!("volume {name} is in use")));
            }
            s.volumes
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| EngineError::NotFound(format!("no such volume: {name}")))
        })
        .await
    }

    async fn list_network_subnets(&self) -> Result<Vec<String>, EngineError> {
        self.serve(self.model().info, |s| {
            Ok(s.listed_networks()
                .flat_map(|(_, n)| n.subnets.clone())
                .collect())
        })
        .await
    }

    async fn inspect_network(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        self.serve(self.model().info, |s| {
            s.listed_network(name)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(format!("network {name} not found")))
        })
        .await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        self.serve(self.model().network, |s| {
            if s.networks.contains_key(&spec.name) {
                return Err(EngineError::Conflict(format!(
                    "network with name {} already exists",
                    spec.name
                )));
            }
            let id = super::short_hash(&[spec.name.as_bytes()]);
            s.networks.insert(
                spec.name.clone(),
                NetworkInfo {
                    id: id.clone(),
                    subnets: vec![spec.subnet.clone()],
                },
            );
            Ok(id)
        })
        .await
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        let linger = self.model().network_linger;
        self.serve(self.model().network, |s| {
            let info = s
                .networks
                .remove(name)
                .ok_or_else(|| EngineError::NotFound(format!("network {name} not found")))?;
            s.lingering
                .insert(name.to_owned(), (info, Instant::now() + linger));
            Ok(())
        })
        .await
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo, EngineError> {
        let image = lock(&self.cluster.inner.images).get(reference).cloned();
        self.serve(self.model().image, |_| {
            image.ok_or_else(|| EngineError::NotFound(format!("No such image: {reference}")))
        })
        .await
    }

    async fn build_image(
        &self,
        tag: &str,
        _context: Bytes,
        _build_args: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        self.serve(self.model().image, |_| Ok(())).await?;
        self.cluster.add_image(tag);
        Ok(())
    }

    async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        _tar: ByteStream,
    ) -> Result<(), EngineError> {
        self.serve(self.model().image, |_| Ok(())).await?;
        self.cluster.add_image(&format!("{repo}:{tag}"));
        Ok(())
    }

    async fn pull_image(
        &self,
        reference: &str,
        _auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError> {
        self.serve(self.model().image, |_| {
            Err(EngineError::Other(format!(
                "simulated hosts reach no registry ({reference})"
            )))
        })
        .await
    }

    async fn push_image(
        &self,
        repo: &str,
        _tag: &str,
        _auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError> {
        self.serve(self.model().image, |_| {
            Err(EngineError::Other(format!(
                "simulated hosts reach no registry ({repo})"
            )))
        })
        .await
    }

    async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        self.serve(self.model().image, |_| Ok(())).await?;
        let image = lock(&self.cluster.inner.images).get(source).cloned();
        let image =
            image.ok_or_else(|| EngineError::NotFound(format!("No such image: {source}")))?;
        lock(&self.cluster.inner.images).insert(format!("{repo}:{tag}"), image);
        Ok(())
    }

    fn export_images(&self, _tags: &[&str]) -> ByteStream {
        once(Ok(Bytes::new()))
    }

    async fn load_images(&self, _tar: ByteStream) -> Result<(), EngineError> {
        self.serve(self.model().image, |_| Ok(())).await
    }

    async fn swarm_init(&self, join: &SwarmJoin) -> Result<(), EngineError> {
        let id = format!("node-{}", self.host.name);
        lock(&self.cluster.inner.nodes).insert(id.clone(), NodeLabels::default());
        self.serve(self.model().swarm, |s| {
            s.swarm = NodeState {
                state: SwarmState::Active,
                node_id: id,
                node_addr: join.advertise_addr.clone(),
                is_manager: true,
            };
            Ok(())
        })
        .await
    }

    async fn swarm_join(&self, join: &SwarmJoin) -> Result<(), EngineError> {
        let id = format!("node-{}", self.host.name);
        lock(&self.cluster.inner.nodes).insert(id.clone(), NodeLabels::default());
        self.serve(self.model().swarm, |s| {
            s.swarm = NodeState {
                state: SwarmState::Active,
                node_id: id,
                node_addr: join.advertise_addr.clone(),
                is_manager: false,
            };
            Ok(())
        })
        .await
    }

    async fn swarm_leave(&self) -> Result<(), EngineError> {
        self.serve(self.model().swarm, |s| {
            s.swarm = NodeState::default();
            Ok(())
        })
        .await
    }

    async fn swarm_worker_token(&self) -> Result<String, EngineError> {
        self.serve(self.model().swarm, |_| Ok("SWMTKN-sim".to_owned()))
            .await
    }

    async fn list_nodes(&self) -> Result<Vec<String>, EngineError> {
        let nodes = lock(&self.cluster.inner.nodes).keys().cloned().collect();
        self.serve(self.model().swarm, |_| Ok(nodes)).await
    }

    async fn node_labels(&self, node_id: &str) -> Result<NodeLabels, EngineError> {
        let node = lock(&self.cluster.inner.nodes).get(node_id).cloned();
        self.serve(self.model().swarm, |_| {
            node.ok_or_else(|| EngineError::NotFound(format!("node {node_id} not found")))
        })
        .await
    }

    async fn set_node_labels(&self, node_id: &str, labels: &NodeLabels) -> Result<(), EngineError> {
        self.serve(self.model().swarm, |_| Ok(())).await?;
        let mut nodes = lock(&self.cluster.inner.nodes);
        let node = nodes
            .get_mut(node_id)
            .ok_or_else(|| EngineError::NotFound(format!("node {node_id} not found")))?;
        if node.version != labels.version {
            return Err(EngineError::Conflict("update out of sequence".into()));
        }
        node.version += 1;
        node.labels = labels.labels.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "img:1".into(),
            labels: [("io.cmesh.run".to_owned(), "r".to_owned())].into(),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_daemon_serves_its_slots_at_the_modelled_rate() {
        let cluster = Cluster::exiting_after(Model::calibrated(), Duration::from_secs(60));
        cluster.add_image("img:1");
        let engine = cluster.engine("h");
        let t0 = Instant::now();
        let jobs = (0..8).map(|i| {
            let engine = engine.clone();
            async move {
                let s = spec(&format!("c{i}"));
                engine.create_container(&s).await?;
                engine.start_container(&s.name).await
            }
        });
        for r in futures_util::future::join_all(jobs).await {
            r.unwrap();
        }
        // 8 containers × 0.5 s over 2 slots: 2 s.
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        assert_eq!(cluster.ideal(), Duration::from_secs(2));
        let e = engine.create_container(&spec("c0")).await.unwrap_err();
        assert!(matches!(e, EngineError::Conflict(_)), "{e}");
        assert_eq!(
            engine.start_container("c0").await.unwrap_err(),
            EngineError::NotModified("c0 is already started".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn containers_exit_on_time_and_a_vanished_host_is_unreachable() {
        let cluster = Cluster::new(
            Model::calibrated(),
            Arc::new(|name: &str, _: &BTreeMap<String, String>| Behaviour::Exit {
                after: Duration::from_secs(if name == "slow" { 20 } else { 5 }),
                code: if name == "slow" { 3 } else { 0 },
                report: None,
            }),
        );
        cluster.add_image("img:1");
        let engine = cluster.engine("h");
        let mut events = engine.events(("io.cmesh.run", "r"));
        for name in ["fast", "slow"] {
            engine.create_container(&spec(name)).await.unwrap();
            engine.start_container(name).await.unwrap();
        }
        let mut died = Vec::new();
        while died.len() < 2 {
            let e = events.next().await.unwrap().unwrap();
            if e.kind == EventKind::Die {
                died.push(e.name);
            }
        }
        assert_eq!(died, vec!["fast", "slow"]);
        let info = engine.inspect_container("slow").await.unwrap();
        assert_eq!(
            (info.state(), info.exit_code),
            (ContainerState::Exited, Some(3))
        );
        cluster.vanish_at("h", Instant::now() + Duration::from_secs(1));
        let mut events = engine.events(("io.cmesh.run", "r"));
        let ended = events.next().await.unwrap();
        assert!(matches!(ended, Err(EngineError::Unreachable(_))));
        assert!(matches!(
            engine.inspect_container("slow").await,
            Err(EngineError::Unreachable(_))
        ));
        cluster.restore("h");
        assert!(engine.inspect_container("slow").await.is_ok());
    }
}
