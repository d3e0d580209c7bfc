//! The run as the coordinator keeps it: registered peers, their states, the plan, barriers.
//!
//! Everything here is synchronous and takes the current time as an argument, so the whole
//! lifecycle is unit-tested without a clock or a network. The HTTP layer ([`crate::api`])
//! holds a [`Run`] behind a mutex and never across an `.await`; long-polls wait on the
//! `watch` channels a `Run` exposes.

use cmesh_common::faults::{self, Action};
use cmesh_common::lifecycle::{PeerState, RunPhase};
use cmesh_common::plan::{ExecutionPlan, PlanSpec};
use cmesh_common::protocol::{BarrierStatus, ChaosAction, ChaosRequest, PeerStatus, StatusReport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The plan as published to peers: the value and its JSON, serialized once.
#[derive(Debug)]
pub struct PublishedPlan {
    pub plan: ExecutionPlan,
    pub json: Vec<u8>,
}

/// What plan long-polls wait on.
#[derive(Clone, Debug)]
pub enum PlanSignal {
    Pending,
    Ready(Arc<PublishedPlan>),
    Aborted(String),
}

/// One line of `timeline.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    pub t_unix_ms: u64,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<PeerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<PeerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why a request cannot be served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// Over one of the run's limits ([`MAX_BARRIERS`] and the like).
    #[error("{0}")]
    TooMany(String),
}

#[derive(Debug)]
struct PeerEntry {
    addr: String,
    host: Option<String>,
    state: PeerState,
    /// When it last beat, on the wall clock and its host's beat clock.
    mark: crate::liveness::Mark,
    reason: Option<String>,
    /// Times this peer was declared lost for missed heartbeats after the plan's start
    /// (it may have come back).
    times_lost: u32,
    /// The first digest of its report posted for this peer, and whether another came.
    report_sha256: Option<String>,
    report_sha256_differs: bool,
}

/// The host a peer is on when it did not say (one engine, no hosts file).
pub const LOCAL_HOST: &str = "local";

fn host_of(entry: &PeerEntry) -> &str {
    entry.host.as_deref().unwrap_or(LOCAL_HOST)
}

/// How often the coordinator sweeps for lost peers: twice a beat.
pub fn sweep_every_ms(spec: &PlanSpec) -> u64 {
    (spec.heartbeat_period_ms() / 2).max(1)
}

/// The most barriers a run may have: peers meet at two ("written", "synced"); a peer
/// that invents names cannot grow the map (each arrival rechecks every open barrier).
pub const MAX_BARRIERS: usize = 64;
/// The most distinct barriers one peer may arrive at.
pub const MAX_BARRIERS_PER_PEER: usize = 16;
/// The most chaos actions a run records (each peer reads them all).
pub const MAX_CHAOS_ACTIONS: usize = 10_000;

#[derive(Debug)]
struct Barrier {
    arrived: BTreeMap<String, Option<u64>>,
    released: watch::Sender<bool>,
}

/// A run's state.
#[derive(Debug)]
pub struct Run {
    run_id: String,
    spec: PlanSpec,
    phase: RunPhase,
    peers: BTreeMap<String, PeerEntry>,
    plan: watch::Sender<PlanSignal>,
    finished: watch::Sender<bool>,
    barriers: BTreeMap<String, Barrier>,
    timeline: mpsc::UnboundedSender<TimelineEvent>,
    /// `launcher chaos` actions, in order; the watch holds how many there are.
    chaos: Vec<ChaosAction>,
    chaos_count: watch::Sender<u32>,
    /// Mobility re-draws already in the timeline.
    mobility_logged: usize,
    /// What apps publish for each other ([`crate::sync`]).
    topics: crate::sync::Topics,
    /// The peers' live counters, added up ([`crate::live`]).
    live: crate::live::Live,
    /// Who is silent for good, and who only starved ([`crate::liveness`]).
    liveness: crate::liveness::Liveness,
    /// CPUs each host has, as its peers said: the start ramp's size.
    host_cpus: BTreeMap<String, u32>,
}

/// The most CPUs a host is taken to have (a peer may say anything).
const MAX_CPUS: u32 = 4096;

impl Run {
    /// A new run; timeline events go to `timeline`.
    pub fn new(
        run_id: &str,
        spec: PlanSpec,
        timeline: mpsc::UnboundedSender<TimelineEvent>,
    ) -> Self {
        Run {
            run_id: run_id.to_owned(),
            phase: RunPhase::Registering,
            peers: BTreeMap::new(),
            plan: watch::channel(PlanSignal::Pending).0,
            finished: watch::channel(false).0,
            barriers: BTreeMap::new(),
            timeline,
            chaos: Vec::new(),
            chaos_count: watch::channel(0).0,
            mobility_logged: 0,
            topics: crate::sync::Topics::new(cmesh_common::adapter::SYNC_LIMITS),
            live: crate::live::Live::default(),
            host_cpus: BTreeMap::new(),
            liveness: crate::liveness::Liveness::new(
                spec.heartbeat_period_ms(),
                sweep_every_ms(&spec),
            ),
            spec,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn spec(&self) -> &PlanSpec {
        &self.spec
    }

    pub fn phase(&self) -> RunPhase {
        self.phase
    }

    /// Waits here for the plan (or the abort).
    pub fn plan_signal(&self) -> watch::Receiver<PlanSignal> {
        self.plan.subscribe()
    }

    /// Becomes true when the run is finished or aborted.
    pub fn finished_signal(&self) -> watch::Receiver<bool> {
        self.finished.subscribe()
    }

    /// The published plan, once made.
    pub fn plan(&self) -> Option<Arc<PublishedPlan>> {
        match &*self.plan.borrow() {
            PlanSignal::Ready(p) => Some(p.clone()),
            _ => None,
        }
    }

    fn emit(
        &self,
        now: u64,
        event: &'static str,
        peer: Option<&str>,
        from: Option<PeerState>,
        to: Option<PeerState>,
        detail: Option<String>,
    ) {
        // The writer task may be gone at shutdown; losing a line then is harmless.
        let _ = self.timeline.send(TimelineEvent {
            t_unix_ms: now,
            event,
            peer: peer.map(str::to_owned),
            from,
            to,
            detail,
        });
    }

    /// A peer registers (or re-registers after a restart) with the address it listens on.
    pub fn register(&mut self, peer: &str, addr: &str, now: u64) -> Result<(), RunError> {
        self.register_on(peer, addr, None, None, now).map(|_| ())
    }

    /// [`Run::register`], saying which Docker host the peer runs on and how many CPUs
    /// that host has. Returns true when the peer rejoins a run already planned (it
    /// restarted).
    pub fn register_on(
        &mut self,
        peer: &str,
        addr: &str,
        host: Option<&str>,
        cpus: Option<u32>,
        now: u64,
    ) -> Result<bool, RunError> {
        cmesh_common::protocol::validate_peer_name(peer).map_err(RunError::BadRequest)?;
        cmesh_common::parse::host_port(addr).map_err(RunError::BadRequest)?;
        match self.phase {
            RunPhase::Aborted | RunPhase::Finished => {
                return Err(RunError::Conflict(format!(
                    "run {} is {:?}; it takes no more registrations",
                    self.run_id, self.phase
                )))
            }
            RunPhase::Planned if !self.peers.contains_key(peer) => {
                return Err(RunError::Conflict(format!(
                    "the plan of run {} is already made and `{peer}` is not in it",
                    self.run_id
                )))
            }
            _ => {}
        }
        if !self.peers.contains_key(peer) && self.peers.len() >= self.spec.peers {
            return Err(RunError::Conflict(format!(
                "run {} expects {} peers and all have registered; `{peer}` is one too many",
                self.run_id, self.spec.peers
            )));
        }
        match self.peers.get_mut(peer) {
            Some(entry) => {
                if self.phase == RunPhase::Registering {
                    entry.addr = addr.to_owned();
                    if entry.host.as_deref() != host && !entry.state.is_terminal() {
                        self.liveness.left(host_of(entry));
                        entry.host = host.map(str::to_owned);
                        self.liveness.joined(host_of(entry));
                    }
                }
                entry.mark = self.liveness.beat(host_of(entry), now);
                self.emit(
                    now,
                    "re-registered",
                    Some(peer),
                    None,
                    None,
                    Some(addr.to_owned()),
                );
            }
            None => {
                let on = host.unwrap_or(LOCAL_HOST);
                self.liveness.joined(on);
                let mark = self.liveness.mark_now(on, now);
                self.peers.insert(
                    peer.to_owned(),
                    PeerEntry {
                        addr: addr.to_owned(),
                        host: host.map(str::to_owned),
                        state: PeerState::Init,
                        mark,
                        reason: None,
                        times_lost: 0,
                        report_sha256: None,
                        report_sha256_differs: false,
                    },
                );
                self.emit(
                    now,
                    "registered",
                    Some(peer),
                    None,
                    Some(PeerState::Init),
                    Some(addr.to_owned()),
                );
            }
        }
        if let Some(cpus) = cpus.filter(|&c| c > 0) {
            let known = self
                .host_cpus
                .entry(host.unwrap_or(LOCAL_HOST).to_owned())
                .or_insert(cpus);
            *known = (*known).max(cpus).min(MAX_CPUS);
        }
        let rejoined = self.phase == RunPhase::Planned;
        if self.phase == RunPhase::Registering && self.peers.len() == self.spec.peers {
            self.make_plan(now);
        }
        Ok(rejoined)
    }

    /// The start timeout passed: plan with whoever came, or abort if too few did.
    pub fn start_timeout(&mut self, now: u64) {
        if self.phase != RunPhase::Registering {
            return;
        }
        let live = self
            .peers
            .values()
            .filter(|p| !p.state.is_terminal())
            .count();
        if live >= self.spec.min_peers() {
            self.make_plan(now);
        } else {
            self.abort(
                now,
                format!(
                    "only {live} of {} peers registered before the start timeout ({} ms); at least {} were needed",
                    self.spec.peers,
                    self.spec.start_timeout_ms,
                    self.spec.min_peers()
                ),
            );
        }
    }

    fn make_plan(&mut self, now: u64) {
        let registered = self
            .peers
            .iter()
            .filter(|(_, p)| !p.state.is_terminal())
            .map(|(name, p)| (name.clone(), p.addr.clone()))
            .collect();
        match ExecutionPlan::make(&self.run_id, &self.spec, registered, now) {
            Ok(mut plan) => {
                let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
                for p in &mut plan.peers {
                    p.host = self.peers.get(&p.name).and_then(|e| e.host.clone());
                    *per_host
                        .entry(self.peers.get(&p.name).map_or(LOCAL_HOST, host_of))
                        .or_default() += 1;
                }
                // The start burst, spread over what each host's CPUs carry: a host whose
                // peers did not say is taken to have one.
                let ramp = cmesh_common::plan::ramp_ms(
                    per_host
                        .iter()
                        .map(|(h, &n)| (n, self.host_cpus.get(*h).copied().unwrap_or(1))),
                );
                if let Some(over) = ramp {
                    plan = plan.with_ramp(now, over);
                }
                let json = serde_json::to_vec(&plan).expect("plans serialize");
                // Peers that registered but were lost before the plan are not part of it.
                let planned: std::collections::BTreeSet<&str> =
                    plan.peers.iter().map(|p| p.name.as_str()).collect();
                self.peers.retain(|name, _| planned.contains(name.as_str()));
                self.phase = RunPhase::Planned;
                self.emit(
                    now,
                    "planned",
                    None,
                    None,
                    None,
                    Some(format!(
                        "{} peers, graph {} with {} edges, start at {}",
                        plan.peers.len(),
                        plan.spec.graph,
                        plan.graph.edges.len(),
                        plan.start_at_unix_ms
                    )),
                );
                if let Ok((groups, faults)) = plan.spec.checked_faults() {
                    let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
                    for (i, f) in faults.iter().enumerate() {
                        let peers = f
                            .targets(&names, &groups, plan.spec.seed)
                            .map_or(0, |t| t.len());
                        self.live.fault(
                            format!("plan#{}", i + 1),
                            f.action.name(),
                            f.at_ms,
                            f.for_ms.map(|d| f.at_ms + d),
                            peers,
                        );
                    }
                }
                self.plan
                    .send_replace(PlanSignal::Ready(Arc::new(PublishedPlan { plan, json })));
            }
            Err(e) => self.abort(now, format!("cannot make the plan: {e}")),
        }
    }

    fn abort(&mut self, now: u64, reason: String) {
        self.phase = RunPhase::Aborted;
        self.emit(now, "aborted", None, None, None, Some(reason.clone()));
        self.plan.send_replace(PlanSignal::Aborted(reason));
        self.finished.send_replace(true);
    }

    fn set_state(&mut self, peer: &str, to: PeerState, reason: Option<String>, now: u64) {
        let Some(entry) = self.peers.get_mut(peer) else {
            return;
        };
        let from = entry.state;
        let allowed = match (from, to) {
            (a, b) if a == b => false,
            // A lost peer that speaks again is back, in whatever state it says.
            (PeerState::Lost, _) => true,
            (PeerState::Done | PeerState::Failed, _) => false,
            (_, PeerState::Failed | PeerState::Lost) => true,
            (a, b) => b > a,
        };
        if !allowed {
            return;
        }
        entry.state = to;
        if reason.is_some() {
            entry.reason = reason.clone();
        }
        if from.is_terminal() != to.is_terminal() {
            if to.is_terminal() {
                self.liveness.left(host_of(entry));
            } else {
                self.liveness.joined(host_of(entry));
            }
        }
        self.emit(now, "state", Some(peer), Some(from), Some(to), reason);
        if to.is_terminal() || from == PeerState::Lost {
            self.recheck_barriers();
            self.check_finished(now);
        }
    }

    /// True if `peer` has registered (and, once planned, is in the plan).
    pub fn is_registered(&self, peer: &str) -> bool {
        self.peers.contains_key(peer)
    }

    fn known(&self, peer: &str) -> Result<(), RunError> {
        if self.is_registered(peer) {
            Ok(())
        } else {
            Err(RunError::NotFound(format!(
                "peer `{peer}` is not registered in run {}; register first",
                self.run_id
            )))
        }
    }

    /// A heartbeat, carrying the state the peer believes it is in.
    pub fn heartbeat(&mut self, peer: &str, state: PeerState, now: u64) -> Result<(), RunError> {
        self.known(peer)?;
        self.beat(peer, now);
        self.set_state(peer, state, None, now);
        Ok(())
    }

    /// A beat that only says `peer` is alive (a heartbeat the coordinator was too busy
    /// to read further, [`crate::pressure`]).
    pub fn alive(&mut self, peer: &str, now: u64) -> Result<(), RunError> {
        self.known(peer)?;
        self.beat(peer, now);
        Ok(())
    }

    /// The live counters a heartbeat carried ([`crate::live`]).
    pub fn observe_live(
        &mut self,
        peer: &str,
        counters: &cmesh_common::live::LiveCounters,
        now: u64,
    ) -> Result<(), RunError> {
        self.known(peer)?;
        counters.check().map_err(RunError::BadRequest)?;
        let host = self.peers[peer].host.as_deref().unwrap_or(LOCAL_HOST);
        self.live.observe(peer, host, counters, now);
        Ok(())
    }

    /// `GET /v1/live`: the figures now.
    pub fn live_report(&self, now: u64) -> cmesh_common::live::LiveReport {
        let start = self.plan().map(|p| p.plan.start_at_unix_ms);
        let view = self.peers.iter().map(|(name, p)| crate::live::PeerView {
            name,
            host: p.host.as_deref().unwrap_or(LOCAL_HOST),
            state: p.state,
        });
        let mut report = self
            .live
            .report(view, now, start.and_then(|s| now.checked_sub(s)));
        report.run_id = self.run_id.clone();
        report.phase = Some(self.phase);
        report.start_at_unix_ms = start;
        report.duration_ms = self.spec.duration_ms;
        report.expected_peers = self.spec.peers;
        report
    }

    /// The live figures as they are kept, for `GET /metrics`.
    pub fn live(&self) -> &crate::live::Live {
        &self.live
    }

    /// A peer says it moved to `state`.
    pub fn change_state(
        &mut self,
        peer: &str,
        state: PeerState,
        reason: Option<String>,
        now: u64,
    ) -> Result<(), RunError> {
        self.known(peer)?;
        if state == PeerState::Lost {
            return Err(RunError::BadRequest(
                "a peer cannot declare itself lost".into(),
            ));
        }
        self.beat(peer, now);
        self.set_state(peer, state, reason, now);
        Ok(())
    }

    /// Records the SHA-256 (64 hex digits) of `peer`'s report. The first digest stands; a
    /// different one later marks the peer's report as not to be trusted (someone posted
    /// under its name) and is in the timeline.
    pub fn report_digest(&mut self, peer: &str, sha256: &str, now: u64) -> Result<(), RunError> {
        self.known(peer)?;
        if !cmesh_common::token::is_sha256_hex(sha256) {
            return Err(RunError::BadRequest(
                "report_sha256 must be 64 hex digits (a SHA-256)".into(),
            ));
        }
        let sha256 = sha256.to_ascii_lowercase();
        let entry = self.peers.get_mut(peer).expect("known");
        match &entry.report_sha256 {
            None => entry.report_sha256 = Some(sha256),
            Some(first) if *first == sha256 => {}
            Some(_) => {
                entry.report_sha256_differs = true;
                self.emit(
                    now,
                    "report_digest_differs",
                    Some(peer),
                    None,
                    None,
                    Some("a second, different report digest was posted".into()),
                );
            }
        }
        Ok(())
    }

    /// Any request from `peer` is a beat: it is alive now.
    fn beat(&mut self, peer: &str, now: u64) {
        let entry = self.peers.get_mut(peer).expect("known");
        entry.mark = self.liveness.beat(host_of(entry), now);
    }

    /// Marks as Lost the peers that fell silent ([`crate::liveness`]: missed 3 beats while
    /// their host's other peers beat, or their whole host silent for long). Returns how
    /// many were marked. A sweep that comes late (the coordinator itself was starved)
    /// marks none: the beats that waited are read first.
    pub fn sweep_lost(&mut self, now: u64) -> usize {
        if !self.liveness.sweep_due(now) {
            return 0;
        }
        let live = || self.peers.iter().filter(|(_, p)| !p.state.is_terminal());
        let mut overdue: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, p) in live().filter(|(_, p)| self.liveness.overdue(p.mark, now)) {
            *overdue.entry(host_of(p)).or_default() += 1;
        }
        let lost: Vec<(String, crate::liveness::Silence)> = live()
            .filter_map(|(name, p)| {
                let host = host_of(p);
                // A crowd overdue at once, or a host its peers measure as saturated:
                // starving, not losing peers.
                let crowded = self
                    .liveness
                    .crowded(host, overdue.get(host).copied().unwrap_or(0))
                    || self.live.saturated(host, now);
                self.liveness
                    .silence(host, p.mark, now, crowded)
                    .map(|s| (name.clone(), s))
            })
            .collect();
        // Counted from the common start, while the peers measure: a host busy starting
        // containers before it starves heartbeats but no measurement.
        let measuring = self.plan().is_some_and(|p| now >= p.plan.start_at_unix_ms);
        for (name, silence) in &lost {
            let reason = self.liveness.describe(*silence);
            if let Some(p) = self.peers.get_mut(name).filter(|_| measuring) {
                p.times_lost += 1;
            }
            self.set_state(name, PeerState::Lost, Some(reason), now);
        }
        lost.len()
    }

    /// The run's deadline passed: peers still working are marked Failed.
    pub fn deadline(&mut self, now: u64) {
        let stuck: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.state.is_terminal())
            .map(|(n, _)| n.clone())
            .collect();
        for name in stuck {
            self.set_state(
                &name,
                PeerState::Failed,
                Some("the run deadline passed before this peer finished".into()),
                now,
            );
        }
    }

    fn check_finished(&mut self, now: u64) {
        if self.phase == RunPhase::Planned && self.peers.values().all(|p| p.state.is_terminal()) {
            self.phase = RunPhase::Finished;
            self.emit(now, "finished", None, None, None, None);
            self.finished.send_replace(true);
        }
    }

    /// Records a `launcher chaos` action on the running run and publishes it to the
    /// peers. A `kill` marks its peers failed (they will not report); the launcher does
    /// the killing and pausing through the Docker API.
    pub fn chaos(&mut self, req: &ChaosRequest, now: u64) -> Result<ChaosAction, RunError> {
        let plan = match (self.phase, self.plan()) {
            (RunPhase::Planned, Some(p)) => p,
            (phase, _) => {
                return Err(RunError::Conflict(format!(
                    "run {} is not running (it is {phase:?}); chaos acts on a running run",
                    self.run_id
                )))
            }
        };
        let spec = faults::FaultSpec {
            at: "0s".into(),
            ..req.fault.clone()
        };
        let (groups, mut checked) = faults::check(&req.groups, std::slice::from_ref(&spec))
            .map_err(|e| {
                RunError::BadRequest(
                    e.replace("[[fault]] #1 ", "")
                        .replace("[groups]", "--groups"),
                )
            })?;
        let mut fault = checked.remove(0);
        if matches!(fault.action, Action::Mobility { .. }) {
            return Err(RunError::BadRequest(
                "mobility is planned (`[[fault]]` with every = …), not injected".into(),
            ));
        }
        fault.at_ms = now.saturating_sub(plan.plan.start_at_unix_ms);
        let names: Vec<String> = plan.plan.peers.iter().map(|p| p.name.clone()).collect();
        let seed = req.seed.unwrap_or(plan.plan.spec.seed);
        let targets = fault
            .targets(&names, &groups, seed)
            .map_err(RunError::BadRequest)?;
        if targets.is_empty() {
            return Err(RunError::BadRequest(
                "the selector picks no peers of this run".into(),
            ));
        }
        if self.chaos.len() >= MAX_CHAOS_ACTIONS {
            return Err(RunError::TooMany(format!(
                "run {} has {MAX_CHAOS_ACTIONS} chaos actions already, the most it records",
                self.run_id
            )));
        }
        let seq = self.chaos.len() as u32 + 1;
        let id = match &req.id {
            Some(id) if !id.starts_with("plan#") => {
                return Err(RunError::BadRequest(format!(
                    "`{id}`: only a plan's own faults (plan#N) are recorded by name"
                )))
            }
            Some(id) if self.chaos.iter().any(|c| &c.id == id) => {
                return Err(RunError::Conflict(format!("{id} was already carried out")))
            }
            Some(id) => id.clone(),
            None => format!(
                "chaos#{}",
                self.chaos
                    .iter()
                    .filter(|c| c.id.starts_with("chaos#"))
                    .count()
                    + 1
            ),
        };
        let action = ChaosAction {
            seq,
            id,
            at_unix_ms: now,
            peers: targets.iter().map(|&i| names[i].clone()).collect(),
            fault,
            groups,
            seed,
        };
        self.emit(
            now,
            "chaos",
            None,
            None,
            None,
            Some(format!(
                "{} {} on {} peers{}",
                action.id,
                action.fault.action.name(),
                action.peers.len(),
                action
                    .fault
                    .for_ms
                    .map(|d| format!(" for {d} ms"))
                    .unwrap_or_default()
            )),
        );
        if !action.id.starts_with("plan#") {
            // The plan's own are in the live figures from the plan.
            let from = self
                .plan()
                .map_or(0, |p| now.saturating_sub(p.plan.start_at_unix_ms));
            self.live.fault(
                action.id.clone(),
                action.fault.action.name(),
                from,
                action.fault.for_ms.map(|d| from + d),
                action.peers.len(),
            );
        }
        if action.fault.action == Action::Kill {
            for peer in &action.peers {
                let by = if action.id.starts_with("plan#") {
                    "the plan"
                } else {
                    "launcher chaos"
                };
                let reason = format!("killed by {by} ({})", action.id);
                self.set_state(peer, PeerState::Failed, Some(reason), now);
            }
        }
        self.chaos.push(action.clone());
        self.chaos_count.send_replace(seq);
        Ok(action)
    }

    /// Puts the plan's mobility re-draws that are due by `now` in the timeline (the peers
    /// compute the same graphs from the plan, at the same times).
    pub fn mobility_tick(&mut self, now: u64) {
        let Some(plan) = self.plan() else {
            return;
        };
        let due: Vec<(u64, usize, u64)> = plan
            .plan
            .mobility_epochs()
            .into_iter()
            .skip(self.mobility_logged)
            .take_while(|(at, _, _)| *at <= now)
            .collect();
        for (at, i, epoch) in due {
            let g = plan.plan.redrawn(i, epoch);
            self.emit(
                at,
                "mobility",
                None,
                None,
                None,
                Some(format!(
                    "plan#{} epoch {epoch}: graph re-drawn ({} edges)",
                    i + 1,
                    g.edges.len()
                )),
            );
            self.mobility_logged += 1;
        }
    }

    /// The chaos actions after the first `after`.
    pub fn chaos_after(&self, after: u32) -> Vec<ChaosAction> {
        self.chaos.iter().skip(after as usize).cloned().collect()
    }

    /// Waits here for chaos actions: the count so far.
    pub fn chaos_signal(&self) -> watch::Receiver<u32> {
        self.chaos_count.subscribe()
    }

    /// `peer` publishes `value` on `topic` (the sync service, [`crate::sync`]); returns
    /// its number on the topic.
    pub fn publish(&mut self, topic: &str, peer: &str, value: &str) -> Result<u64, RunError> {
        self.known(peer)?;
        self.topics
            .publish(topic, peer, value)
            .map_err(|e| match e {
                crate::sync::SyncError::BadName(m) => RunError::BadRequest(m),
                crate::sync::SyncError::Limit(m) => RunError::TooMany(m),
            })
    }

    /// `topic`'s publications after its first `after`, at most `max`.
    pub fn publications(
        &self,
        topic: &str,
        after: u64,
        max: usize,
    ) -> Vec<cmesh_common::adapter::Publication> {
        self.topics.after(topic, after, max)
    }

    /// Waits here for publications: how many the run has.
    pub fn sync_signal(&self) -> watch::Receiver<u64> {
        self.topics.signal()
    }

    /// A peer arrives at barrier `name`. Returns a receiver that becomes true on release.
    pub fn arrive(
        &mut self,
        name: &str,
        peer: &str,
        value: Option<u64>,
        now: u64,
    ) -> Result<watch::Receiver<bool>, RunError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RunError::BadRequest(format!(
                "`{name}` is not a barrier name: use 1 to 64 of a-z 0-9 - _"
            )));
        }
        self.known(peer)?;
        if self.phase == RunPhase::Registering {
            return Err(RunError::Conflict(
                "barriers open once the plan is made".into(),
            ));
        }
        if !self.barriers.contains_key(name) && self.barriers.len() >= MAX_BARRIERS {
            return Err(RunError::TooMany(format!(
                "the run has {MAX_BARRIERS} barriers already, the most it keeps; `{name}` is not opened"
            )));
        }
        let joined = self
            .barriers
            .values()
            .filter(|b| b.arrived.contains_key(peer))
            .count();
        if joined >= MAX_BARRIERS_PER_PEER
            && !self
                .barriers
                .get(name)
                .is_some_and(|b| b.arrived.contains_key(peer))
        {
            return Err(RunError::TooMany(format!(
                "peer `{peer}` is at {MAX_BARRIERS_PER_PEER} barriers already, the most one peer may join"
            )));
        }
        let barrier = self
            .barriers
            .entry(name.to_owned())
            .or_insert_with(|| Barrier {
                arrived: BTreeMap::new(),
                released: watch::channel(false).0,
            });
        let first = barrier.arrived.insert(peer.to_owned(), value).is_none();
        let rx = barrier.released.subscribe();
        if first {
            self.emit(
                now,
                "barrier",
                Some(peer),
                None,
                None,
                Some(name.to_owned()),
            );
        }
        self.recheck_barriers();
        Ok(rx)
    }

    /// A barrier is released when every planned peer has arrived or is Done, Failed or Lost.
    fn recheck_barriers(&mut self) {
        for barrier in self.barriers.values() {
            if *barrier.released.borrow() {
                continue;
            }
            let all = self
                .peers
                .iter()
                .all(|(name, p)| barrier.arrived.contains_key(name) || p.state.is_terminal());
            if all {
                barrier.released.send_replace(true);
            }
        }
    }

    /// A barrier's state now.
    pub fn barrier_status(&self, name: &str) -> Option<BarrierStatus> {
        let b = self.barriers.get(name)?;
        Some(BarrierStatus {
            barrier: name.to_owned(),
            released: *b.released.borrow(),
            arrived: b.arrived.len(),
            expected: self
                .peers
                .iter()
                .filter(|(n, p)| b.arrived.contains_key(*n) || !p.state.is_terminal())
                .count(),
            values: b
                .arrived
                .iter()
                .filter_map(|(n, v)| v.map(|v| (n.clone(), v)))
                .collect(),
        })
    }

    /// `GET /status`.
    pub fn status(&self) -> StatusReport {
        let mut counts: BTreeMap<PeerState, usize> =
            PeerState::ALL.into_iter().map(|s| (s, 0)).collect();
        for p in self.peers.values() {
            *counts.entry(p.state).or_default() += 1;
        }
        StatusReport {
            run_id: self.run_id.clone(),
            phase: self.phase,
            expected_peers: self.spec.peers,
            counts,
            peers: self
                .peers
                .iter()
                .map(|(name, p)| PeerStatus {
                    peer: name.clone(),
                    state: p.state,
                    addr: p.addr.clone(),
                    last_beat_unix_ms: p.mark.wall_ms(),
                    reason: p.reason.clone(),
                    times_lost: p.times_lost,
                    report_sha256: p.report_sha256.clone(),
                    report_sha256_differs: p.report_sha256_differs,
                })
                .collect(),
        }
    }

    /// True when every planned peer is Done.
    pub fn all_done(&self) -> bool {
        self.phase == RunPhase::Finished && self.peers.values().all(|p| p.state == PeerState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::graph::GraphKind;

    fn run(peers: usize) -> (Run, mpsc::UnboundedReceiver<TimelineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let spec = PlanSpec {
            peers,
            min_peers: Some(2),
            graph: GraphKind::Ring,
            heartbeat_ms: 100,
            ..PlanSpec::default()
        };
        (Run::new("r1", spec, tx), rx)
    }

    fn register_all(run: &mut Run, n: usize) {
        for i in 0..n {
            run.register(&format!("p{i}"), &format!("127.0.0.1:{}", 9000 + i), 0)
                .unwrap();
        }
    }

    fn chaos_req(action: &str, peers: &str) -> ChaosRequest {
        ChaosRequest {
            fault: faults::FaultSpec {
                at: "0s".into(),
                peers: peers.into(),
                action: action.into(),
                ..Default::default()
            },
            groups: BTreeMap::new(),
            seed: None,
            id: None,
        }
    }

    #[test]
    fn chaos_is_recorded_published_and_kills_mark_peers_failed() {
        let (mut run, mut rx) = run(4);
        let early = chaos_req("kill", "1");
        assert!(matches!(
            run.chaos(&early, 0),
            Err(RunError::Conflict(m)) if m.contains("not running")
        ));
        register_all(&mut run, 4);
        let start = run.plan().unwrap().plan.start_at_unix_ms;
        let signal = run.chaos_signal();
        let delay = ChaosRequest {
            fault: faults::FaultSpec {
                ms: Some(200),
                duration: Some("5s".into()),
                ..chaos_req("delay", "1-2").fault
            },
            ..chaos_req("delay", "1-2")
        };
        let a = run.chaos(&delay, start + 3_000).unwrap();
        assert_eq!((a.seq, a.id.as_str()), (1, "chaos#1"));
        assert_eq!(a.fault.at_ms, 3_000, "from the common start");
        assert_eq!(a.fault.for_ms, Some(5_000));
        assert_eq!(a.peers, vec!["p0", "p1"]);
        assert_eq!(*signal.borrow(), 1);
        let k = run.chaos(&chaos_req("kill", "4"), start + 4_000).unwrap();
        assert_eq!(k.peers, vec!["p3"]);
        assert_eq!(run.chaos_after(1), vec![k]);
        assert_eq!(run.chaos_after(2), vec![]);
        let status = run.status();
        let p3 = status.peers.iter().find(|p| p.peer == "p3").unwrap();
        assert_eq!(p3.state, PeerState::Failed);
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push((e.event, e.detail.unwrap_or_default()));
        }
        assert!(seen.contains(&("chaos", "chaos#1 delay on 2 peers for 5000 ms".into())));
        assert!(seen.contains(&("chaos", "chaos#2 kill on 1 peers".into())));

        // Bad actions change nothing.
        for (req, want) in [
            (chaos_req("delay", "1"), "`delay` needs ms"),
            (chaos_req("kill", "9"), "beyond the plan's 4 peers"),
            (chaos_req("mobility", "1"), "`mobility` needs every"),
            (chaos_req("kill", "group:x"), "no group `x`"),
        ] {
            match run.chaos(&req, start + 5_000) {
                Err(RunError::BadRequest(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        assert_eq!(run.chaos_after(0).len(), 2);

        // A plan's own kill is recorded under its name, once.
        let planned = ChaosRequest {
            id: Some("plan#2".into()),
            ..chaos_req("kill", "3")
        };
        let p = run.chaos(&planned, start + 6_000).unwrap();
        assert_eq!((p.id.as_str(), p.seq), ("plan#2", 3));
        assert!(matches!(
            run.chaos(&planned, start + 7_000),
            Err(RunError::Conflict(_))
        ));
        let next = run.chaos(&chaos_req("kill", "2"), start + 8_000).unwrap();
        assert_eq!(next.id, "chaos#3", "chaos numbers count chaos actions only");
    }

    #[test]
    fn plans_when_everyone_registered() {
        let (mut run, _rx) = run(3);
        let signal = run.plan_signal();
        register_all(&mut run, 2);
        assert!(matches!(*signal.borrow(), PlanSignal::Pending));
        register_all(&mut run, 3);
        assert_eq!(run.phase(), RunPhase::Planned);
        let plan = run.plan().unwrap();
        assert_eq!(plan.plan.peers.len(), 3);
        assert!(matches!(*signal.borrow(), PlanSignal::Ready(_)));
        let err = run.register("late", "127.0.0.1:1", 1).unwrap_err();
        assert!(matches!(err, RunError::Conflict(m) if m.contains("not in it")));
    }

    #[test]
    fn start_timeout_plans_with_enough_or_aborts() {
        let (mut few, _rx) = run(5);
        register_all(&mut few, 1);
        few.start_timeout(10);
        assert_eq!(few.phase(), RunPhase::Aborted);
        assert!(*few.finished_signal().borrow());
        assert!(
            matches!(&*few.plan_signal().borrow(), PlanSignal::Aborted(m) if m.contains("only 1 of 5"))
        );

        let (mut enough, _rx) = run(5);
        register_all(&mut enough, 2);
        enough.start_timeout(10);
        assert_eq!(enough.phase(), RunPhase::Planned);
        assert_eq!(enough.plan().unwrap().plan.peers.len(), 2);
    }

    #[test]
    fn rejects_bad_registrations_without_changing_anything() {
        let (mut run, _rx) = run(2);
        assert!(matches!(
            run.register("a/b", "127.0.0.1:1", 0),
            Err(RunError::BadRequest(_))
        ));
        assert!(matches!(
            run.register("a", "nope", 0),
            Err(RunError::BadRequest(_))
        ));
        assert_eq!(run.status().peers.len(), 0);
        register_all(&mut run, 2);
        assert!(run.register("p9", "127.0.0.1:1", 0).is_err());
    }

    /// Beats `beating` every 50 ms (half a beat) and sweeps as often, over `(from, to]`;
    /// returns how many the sweeps marked lost.
    fn beat_and_sweep(run: &mut Run, beating: &[&str], from: u64, to: u64) -> usize {
        let mut lost = 0;
        let mut t = from;
        while t < to {
            t += 50;
            for p in beating {
                run.heartbeat(p, PeerState::Running, t).unwrap();
            }
            lost += run.sweep_lost(t);
        }
        lost
    }

    #[test]
    fn lost_after_three_missed_beats_and_back_when_it_beats() {
        let (mut run, _rx) = run(2);
        register_all(&mut run, 2);
        // p0 beats (twice a period: its host's clock runs as fast as the wall); p1 is
        // silent from 0. Three beats of 100 ms later it is lost.
        assert_eq!(beat_and_sweep(&mut run, &["p0"], 0, 300), 0);
        assert_eq!(beat_and_sweep(&mut run, &["p0"], 300, 400), 1);
        let status = run.status();
        assert_eq!(status.counts[&PeerState::Lost], 1);
        assert_eq!(status.counts[&PeerState::Running], 1);
        assert!(status.peers[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("no heartbeat for 3 beats"));
        run.heartbeat("p1", PeerState::Running, 400).unwrap();
        assert_eq!(run.status().counts[&PeerState::Running], 2);
        let times =
            |run: &Run| -> Vec<u32> { run.status().peers.iter().map(|p| p.times_lost).collect() };
        assert_eq!(
            times(&run),
            vec![0, 0],
            "lost before the start: not counted"
        );
        // Lost again once the peers measure: back, but the coordinator remembers it, and
        // the analysis takes that as evidence of starved heartbeats.
        let start = run.plan().unwrap().plan.start_at_unix_ms;
        beat_and_sweep(&mut run, &["p0", "p1"], 400, start);
        assert_eq!(beat_and_sweep(&mut run, &["p0"], start, start + 400), 1);
        run.heartbeat("p1", PeerState::Running, start + 450)
            .unwrap();
        assert_eq!(times(&run), vec![0, 1]);
    }

    #[test]
    fn a_silent_peer_on_a_host_its_peers_measure_saturated_waits_for_the_host_limit() {
        let (mut run, _rx) = run(4);
        register_all(&mut run, 4);
        let start = run.plan().unwrap().plan.start_at_unix_ms;
        let mut lagging = cmesh_common::live::LiveCounters::default();
        for _ in 0..100 {
            lagging.lag.record(2_000_000);
        }
        let beating = ["p0", "p1", "p2"];
        let mut lost = 0;
        let mut t = start;
        while t < start + 20_000 {
            t += 50;
            for p in beating {
                run.heartbeat(p, PeerState::Running, t).unwrap();
                run.observe_live(p, &lagging, t).unwrap();
            }
            lost += run.sweep_lost(t);
        }
        assert_eq!(
            lost, 0,
            "p3 silent 20 s on a saturated host: starving, not lost"
        );
        assert_eq!(beat_and_sweep(&mut run, &beating, t, start + 40_000), 1);
        assert!(run.status().peers[3]
            .reason
            .as_deref()
            .unwrap()
            .contains("the longest wait"));
    }

    #[test]
    fn the_plan_ramps_the_start_by_each_hosts_peers_and_cpus() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let spec = PlanSpec {
            peers: 60,
            ..PlanSpec::default()
        };
        let mut run = Run::new("r", spec.clone(), tx);
        for i in 0..60 {
            let (host, cpus) = if i < 40 { ("a", 1) } else { ("b", 8) };
            run.register_on(
                &format!("p{i:02}"),
                "127.0.0.1:1",
                Some(host),
                Some(cpus),
                1_000,
            )
            .unwrap();
        }
        let plan = &run.plan().unwrap().plan;
        // Host a: 40 peers on 1 CPU, 800 ms; b: 20 on 8, 50 ms. The busier sets it.
        let ramp = plan.ramp.unwrap();
        assert_eq!((ramp.from_unix_ms, ramp.over_ms), (1_000, 800));
        assert_eq!(
            plan.start_at_unix_ms,
            1_000 + 800 + cmesh_common::plan::RAMP_TO_START_MS
        );
        // A few peers on CPUs enough: no ramp, the plan's own start.
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut run = Run::new("r", PlanSpec { peers: 2, ..spec }, tx);
        for i in 0..2 {
            run.register_on(&format!("p{i}"), "127.0.0.1:1", None, Some(2), 1_000)
                .unwrap();
        }
        assert_eq!(run.plan().unwrap().plan.ramp, None);
    }

    #[test]
    fn a_starved_host_whose_beats_all_come_late_loses_nobody() {
        let (mut run, _rx) = run(2);
        register_all(&mut run, 2);
        // Both peers' beats come every 250 ms, past three periods of the wall's pace at
        // times, but neither beats less than the other: nobody is lost.
        let mut lost = 0;
        for k in 1..40u64 {
            let t = k * 125;
            if k % 2 == 0 {
                run.heartbeat(if k % 4 == 0 { "p0" } else { "p1" }, PeerState::Running, t)
                    .unwrap();
            }
            lost += run.sweep_lost(t);
        }
        assert_eq!(lost, 0);
        // A sweep that comes late (the coordinator was starved) marks nobody: the beats
        // that waited are read first.
        assert_eq!(run.sweep_lost(60_000), 0);
        run.heartbeat("p0", PeerState::Running, 60_001).unwrap();
        run.heartbeat("p1", PeerState::Running, 60_001).unwrap();
        assert_eq!(run.sweep_lost(60_050), 0);
        assert_eq!(run.status().counts[&PeerState::Running], 2);
    }

    #[test]
    fn states_only_move_forward_and_terminal_states_stick() {
        let (mut run, _rx) = run(2);
        register_all(&mut run, 2);
        run.change_state("p0", PeerState::Running, None, 1).unwrap();
        run.change_state("p0", PeerState::Ready, None, 2).unwrap();
        assert_eq!(run.status().peers[0].state, PeerState::Running);
        run.change_state("p0", PeerState::Failed, Some("boom".into()), 3)
            .unwrap();
        run.change_state("p0", PeerState::Done, None, 4).unwrap();
        assert_eq!(run.status().peers[0].state, PeerState::Failed);
        assert_eq!(run.status().peers[0].reason.as_deref(), Some("boom"));
        assert!(run.change_state("p0", PeerState::Lost, None, 5).is_err());
        assert!(matches!(
            run.heartbeat("ghost", PeerState::Init, 5),
            Err(RunError::NotFound(_))
        ));
    }

    #[test]
    fn barrier_releases_when_all_live_peers_arrive() {
        let (mut run, _rx) = run(3);
        register_all(&mut run, 3);
        let rx = run.arrive("written", "p0", Some(5), 1).unwrap();
        run.arrive("written", "p1", Some(7), 1).unwrap();
        assert!(!*rx.borrow());
        let status = run.barrier_status("written").unwrap();
        assert_eq!((status.arrived, status.expected), (2, 3));
        // p2 fails: the barrier no longer waits for it.
        run.change_state("p2", PeerState::Failed, Some("x".into()), 2)
            .unwrap();
        assert!(*rx.borrow());
        let status = run.barrier_status("written").unwrap();
        assert!(status.released);
        assert_eq!(status.values.get("p1"), Some(&7));
        assert!(run.arrive("bad name!", "p0", None, 3).is_err());
    }

    #[test]
    fn a_peer_cannot_grow_the_barriers_without_limit() {
        let run_of = run;
        let (mut run, _rx) = run_of(3);
        register_all(&mut run, 3);
        for i in 0..MAX_BARRIERS_PER_PEER {
            run.arrive(&format!("b{i}"), "p0", None, 1).unwrap();
        }
        // Again at one it is in: fine; a new one: refused, and nothing opened.
        run.arrive("b0", "p0", None, 2).unwrap();
        assert!(matches!(
            run.arrive("one-more", "p0", None, 2),
            Err(RunError::TooMany(_))
        ));
        assert!(run.barrier_status("one-more").is_none());
        // Peers together fill the run's limit; past it no peer opens a new barrier, but
        // each may still meet at the open ones.
        let (mut big, _rx) = run_of(8);
        register_all(&mut big, 8);
        for i in 0..MAX_BARRIERS {
            let peer = format!("p{}", i / MAX_BARRIERS_PER_PEER);
            big.arrive(&format!("x{i}"), &peer, None, 1).unwrap();
        }
        assert!(matches!(
            big.arrive("x-new", "p7", None, 2),
            Err(RunError::TooMany(_))
        ));
        big.arrive("x0", "p7", None, 2).unwrap();
    }

    #[test]
    fn a_second_different_report_digest_marks_the_report() {
        let (mut run, _rx) = run(2);
        register_all(&mut run, 2);
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        assert!(matches!(
            run.report_digest("p0", "xyz", 1),
            Err(RunError::BadRequest(_))
        ));
        run.report_digest("p0", &a, 1).unwrap();
        run.report_digest("p0", &a, 2).unwrap();
        let status = |run: &Run| run.status().peers[0].clone();
        assert_eq!(status(&run).report_sha256.as_deref(), Some(a.as_str()));
        assert!(!status(&run).report_sha256_differs);
        run.report_digest("p0", &b, 3).unwrap();
        assert_eq!(status(&run).report_sha256.as_deref(), Some(a.as_str()));
        assert!(status(&run).report_sha256_differs);
        assert!(run.report_digest("ghost", &a, 4).is_err());
    }

    #[test]
    fn finishes_when_every_peer_is_terminal() {
        let (mut run, _rx) = run(2);
        register_all(&mut run, 2);
        let finished = run.finished_signal();
        run.change_state("p0", PeerState::Done, None, 1).unwrap();
        assert!(!*finished.borrow());
        run.change_state("p1", PeerState::Done, None, 2).unwrap();
        assert!(*finished.borrow());
        assert!(run.all_done());
    }

    #[test]
    fn deadline_fails_stuck_peers() {
        let (mut run, _rx) = run(2);
        register_all(&mut run, 2);
        run.change_state("p0", PeerState::Done, None, 1).unwrap();
        run.deadline(9);
        assert_eq!(run.phase(), RunPhase::Finished);
        assert!(!run.all_done());
        assert_eq!(run.status().counts[&PeerState::Failed], 1);
    }

    #[test]
    fn timeline_records_state_changes() {
        let (mut run, mut rx) = run(2);
        register_all(&mut run, 2);
        run.change_state("p0", PeerState::Ready, None, 5).unwrap();
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        assert!(events.iter().any(|e| e.event == "planned"));
        assert!(events.iter().any(|e| e.event == "state"
            && e.peer.as_deref() == Some("p0")
            && e.from == Some(PeerState::Init)
            && e.to == Some(PeerState::Ready)
            && e.t_unix_ms == 5));
    }
}
