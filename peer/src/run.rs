//! A peer's life: register, get the plan, connect, write, catch up, report.
//!
//! ```text
//! register ──► wait for plan ──► Ready: connect to neighbours ──► wait for the common start
//!    ──► Running: write records for the planned duration
//!    ──► Reporting: barrier `written` (everyone shares how many records it wrote)
//!        ──► wait until every origin's records are held (or the settle timeout)
//!        ──► barrier `synced` (links stay up, so others still catch up through us)
//!    ──► stop the backend, write report.json ──► Done
//! ```
//!
//! Every step that depends on the coordinator retries up to `coordinator_timeout`; if it
//! stays unreachable the peer fails with a report that says why.

use crate::backend::{Backend, Setup, SyncBackend};
use crate::client::{ClientError, CoordinatorClient};
use crate::events::EventLog;
use crate::metrics::{Metrics, PROBE_DEADLINE_MS};
use bytes::Bytes;
use cmesh_common::clock::ClockSync;
use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::lifecycle::PeerState;
use cmesh_common::plan::ExecutionPlan;
use cmesh_common::report::{
    AppliedFault, Availability, LatencyReport, OriginStats, Outcome, PeerReport, TimeSeries,
    WritingWindow,
};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a peer runs.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub name: String,
    /// The coordinator's `HOST:PORT`.
    pub coordinator: String,
    /// The address other peers dial, `HOST:PORT`.
    pub advertise: String,
    /// The Docker host this peer runs on, if the launcher said.
    pub host: Option<String>,
    pub token: String,
    /// How long to keep trying an unreachable coordinator before failing.
    pub coordinator_timeout: Duration,
    /// How often to write `checkpoint.json` while writing records (zero: never).
    pub checkpoint_interval: Duration,
    /// Clock exchanges at the start and at the end ([`crate::clock`]).
    pub clock_samples: u32,
    /// Memory budget for the record window, over all origins.
    pub window_bytes: usize,
    /// The sync backend: `mesh` (built in) or `ditto` (with the feature).
    pub backend: String,
    /// A secret file for the backend (Ditto's licence), copied in by the launcher.
    pub secret_file: Option<std::path::PathBuf>,
    /// Where the backend may keep state (the output directory).
    pub state_dir: std::path::PathBuf,
    /// The adapter's command line, for the adapter backend.
    pub adapter: Option<String>,
    pub adapter_deadlines: crate::backend::adapter::session::Deadlines,
}

/// Records kept per origin: the budget split over the origins, within 16..=1024.
pub fn window_per_origin(window_bytes: usize, origins: usize, payload_bytes: usize) -> usize {
    (window_bytes / (origins.max(1) * (payload_bytes + 32))).clamp(16, 1024)
}

/// Runs the peer to its end and returns its report (outcome `failed` with a reason if it
/// could not finish). The caller writes the report.
pub async fn run(cfg: PeerConfig, listener: TcpListener, events: &EventLog) -> PeerReport {
    let mut report = PeerReport::new(&cfg.name, &cfg.backend, cmesh_common::unix_millis());
    report.host = cfg.host.clone();
    report.adapter = cfg.adapter.clone();
    let client = CoordinatorClient::new(&cfg.coordinator, &cfg.token, &cfg.name);
    let (state_tx, state_rx) = watch::channel(PeerState::Init);
    let result = lifecycle(
        &cfg,
        listener,
        &client,
        &state_tx,
        state_rx,
        events,
        &mut report,
    )
    .await;
    report.finished_at_unix_ms = cmesh_common::unix_millis();
    if let Err(e) = result {
        let message = format!("{e:#}");
        events.log("failed", json!({ "error": message }));
        tracing::error!("{message}");
        report.outcome = Outcome::Failed;
        report.error = Some(message.clone());
        if !matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::Unreachable { .. } | ClientError::Unauthorized)
        ) {
            // Best effort: the coordinator may be the reason we failed.
            let _ = client
                .set_state(PeerState::Failed, Some(message), Duration::from_secs(5))
                .await;
        }
    }
    report
}

/// Tells the coordinator the peer finished (after its report is written), with the
/// report's SHA-256.
pub async fn announce_done(cfg: &PeerConfig, report_sha256: String) -> Result<(), ClientError> {
    CoordinatorClient::new(&cfg.coordinator, &cfg.token, &cfg.name)
        .set_done(report_sha256, cfg.coordinator_timeout)
        .await
}

async fn lifecycle(
    cfg: &PeerConfig,
    listener: TcpListener,
    client: &CoordinatorClient,
    state: &watch::Sender<PeerState>,
    state_rx: watch::Receiver<PeerState>,
    events: &EventLog,
    report: &mut PeerReport,
) -> anyhow::Result<()> {
    let patience = cfg.coordinator_timeout;
    events.log(
        "start",
        json!({"coordinator": cfg.coordinator, "advertise": cfg.advertise}),
    );
    let registered = client
        .register(&cfg.advertise, cfg.host.as_deref(), patience)
        .await
        .map_err(|e| anyhow::Error::new(e).context("cannot register with the coordinator"))?;
    report.run_id = Some(registered.run_id.clone());
    events.log(
        "registered",
        json!({"run_id": registered.run_id, "rejoined": registered.rejoined}),
    );
    let live = crate::live::LiveBoard::new(crate::cpu::quota_cpus());
    let heartbeat = tokio::spawn(heartbeats(
        client.clone(),
        state_rx,
        live.clone(),
        Duration::from_millis(registered.heartbeat_ms),
    ));
    let result = follow_plan(
        cfg,
        listener,
        client,
        state,
        events,
        report,
        registered.rejoined,
        &live,
    )
    .await;
    heartbeat.abort();
    result
}

// The lifecycle's pieces, each a different owner's: bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
async fn follow_plan(
    cfg: &PeerConfig,
    listener: TcpListener,
    client: &CoordinatorClient,
    state: &watch::Sender<PeerState>,
    events: &EventLog,
    report: &mut PeerReport,
    rejoined: bool,
    live: &Arc<crate::live::LiveBoard>,
) -> anyhow::Result<()> {
    let patience = cfg.coordinator_timeout;
    let plan: ExecutionPlan = client
        .wait_plan(patience)
        .await
        .map_err(|e| anyhow::Error::new(e).context("no plan from the coordinator"))?;
    let me = plan
        .peer(&cfg.name)
        .ok_or_else(|| anyhow::anyhow!("the plan has no peer named `{}`", cfg.name))?
        .clone();
    let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
    let neighbours: Vec<u32> = plan
        .neighbours_of(me.index)
        .iter()
        .map(|p| p.index)
        .collect();
    report.index = Some(me.index);
    report.expected_origins = plan.peers.len() - 1;
    events.log(
        "plan",
        json!({
            "index": me.index,
            "peers": plan.peers.len(),
            "graph": plan.spec.graph,
            "neighbours": neighbours.iter().map(|&n| &names[n as usize]).collect::<Vec<_>>(),
            "start_at_unix_ms": plan.start_at_unix_ms,
        }),
    );
    // The faults that select this peer: refused now, before the start, if they cannot be
    // carried out here.
    let my_faults = crate::faults::mine(&plan, me.index).map_err(anyhow::Error::msg)?;
    let caps = if my_faults.is_empty() {
        Default::default()
    } else {
        crate::shaping::detect()
    };
    crate::faults::precheck(&my_faults, caps, cfg.host.as_deref()).map_err(anyhow::Error::msg)?;
    move_to(client, state, PeerState::Ready, patience).await?;

    let origin_hosts: Vec<Option<String>> = plan.peers.iter().map(|p| p.host.clone()).collect();
    let window_ms = crate::metrics::window_ms(plan.spec.duration_ms);
    let metrics = Arc::new(Mutex::new(
        Metrics::new(me.index, plan.peers.len())
            .with_origin_hosts(&origin_hosts)
            .with_windows(
                plan.start_at_unix_ms,
                window_ms,
                plan.spec.duration_ms.div_ceil(window_ms) as usize,
            ),
    ));
    if rejoined {
        // Restarted into a running run, with an empty store: everything written so far
        // has to come back, and how long that takes is this peer's resync.
        metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .begin_resync("restart", cmesh_common::unix_micros());
    }
    let window = window_per_origin(cfg.window_bytes, plan.peers.len(), plan.spec.payload_bytes);
    // Its turn in the start ramp (the plan's `ramp`: the highest index first, so every
    // neighbour it dials already listens). A peer that rejoins goes at once.
    if let Some(at) = plan.connect_at_unix_ms(me.index).filter(|_| !rejoined) {
        tokio::time::sleep_until(crate::time::unix_ms_to_instant(at)).await;
    }
    let backend = Backend::start(
        &cfg.backend,
        Setup {
            run_id: plan.run_id.clone(),
            me: me.index,
            addrs: plan.peers.iter().map(|p| p.addr.clone()).collect(),
            neighbours: neighbours.clone(),
            graph: plan.graph.edges.clone(),
            window,
            dissemination: plan.spec.dissemination,
            listener,
            secret_file: cfg.secret_file.clone(),
            state_dir: cfg.state_dir.clone(),
            token: cfg.token.clone(),
            names: names.clone(),
            duration_ms: plan.spec.duration_ms,
            payload_bytes: plan.spec.payload_bytes,
            adapter: cfg.adapter.clone(),
            adapter_deadlines: cfg.adapter_deadlines,
            client: client.clone(),
            patience,
        },
        metrics.clone(),
    )
    .await?;
    // From here on, a backend that cannot go on (an adapter that exits, breaks the
    // protocol or misses a deadline) ends this peer, keeping what it measured.
    let kept = |report: &mut PeerReport, produced: u64| {
        report.records_produced = produced;
        let m = metrics.lock().unwrap_or_else(|e| e.into_inner());
        fill_from_metrics(report, &m, &names, me.index, None);
    };
    macro_rules! unless_failed {
        ($work:expr, $produced:expr) => {
            tokio::select! {
                done = $work => done,
                reason = backend.failed() => {
                    kept(report, $produced);
                    anyhow::bail!("{reason}");
                }
            }
        };
    }

    // The plan's faults, and any `launcher chaos` sends while the peers write.
    let read_caps = !my_faults.is_empty();
    let faults = crate::faults::start(
        my_faults,
        plan.start_at_unix_ms,
        read_caps.then_some(caps),
        plan.spec.seed ^ u64::from(me.index),
        events.clone(),
        metrics.clone(),
        live.clone(),
    );
    // Mobility: what each re-drawing fault did, for the report.
    let moved = Mutex::new(Vec::<AppliedFault>::new());
    // From the start to the report: how late this peer's timers fire, and what the host
    // and the peer spend, per window.
    let on_my_host = crate::pacing::peers_on_my_host(&plan, me.index);
    let sampler = crate::sampler::Sampler::start(crate::sampler::Schedule::new(
        plan.start_at_unix_ms,
        window_ms,
        2 * plan.spec.duration_ms.div_ceil(window_ms) as usize,
        on_my_host,
        me.index,
    ));
    let produced_so_far = Arc::new(AtomicU64::new(0));
    live.measure(
        crate::live::Sources {
            metrics: metrics.clone(),
            produced: produced_so_far.clone(),
            links: backend.link_gauge(),
            lag: sampler.lag_handle(),
        },
        &neighbours,
    );
    let start_at = crate::time::unix_ms_to_instant(plan.start_at_unix_ms);
    // The clock, while everyone waits for the start (and before the first checkpoint).
    if cfg.clock_samples > 0 {
        // Done by the start if there is time; a peer that comes late (or rejoins)
        // takes its series first and starts writing after it.
        let now = Instant::now();
        let budget = now + crate::clock::budget(cfg.clock_samples);
        let deadline = if start_at > now + Duration::from_millis(20) {
            budget.min(start_at - Duration::from_millis(5))
        } else {
            budget
        };
        let start = crate::clock::measure(&cfg.coordinator, cfg.clock_samples, deadline).await;
        events.log("clock", json!({"at": "start", "estimate": start}));
        report.clock_sync = start.map(|start| ClockSync { start, end: None });
    }
    unless_failed!(tokio::time::sleep_until(start_at), 0);
    if rejoined {
        // Learn from the neighbours how far this peer had written before it writes
        // again (the mesh backend takes the highest from their hellos): all of them, or
        // whoever answered within 10 s (a neighbour may be dead).
        let deadline = Instant::now() + Duration::from_secs(10);
        while backend.connected() < neighbours.len() && Instant::now() < deadline {
            tokio::select! {
                _ = backend.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        events.log("rejoined", json!({"connected": backend.connected()}));
    }
    // Running goes with the next heartbeat: a thousand peers posting it in the same
    // millisecond would be the start burst again.
    state.send_replace(PeerState::Running);
    let start_unix = cmesh_common::unix_millis();
    let links = cmesh_common::report::LinkCount {
        up: backend.connected() as u32,
        wanted: neighbours.len() as u32,
    };
    report.links_at_start = Some(links);

    // From now on a peer that dies leaves what it measured: stopped (dropped) before
    // the final report.
    let checkpoint_every = crate::pacing::checkpoint_interval(cfg.checkpoint_interval, on_my_host);
    let checkpoints = crate::checkpoint::Checkpointer::start(
        checkpoint_every,
        crate::checkpoint::phase(checkpoint_every, me.index),
        cfg.state_dir.join(crate::checkpoint::FILE),
        {
            let mut base = report.clone();
            base.writing = Some(WritingWindow {
                start_unix_ms: start_unix,
                end_unix_ms: start_unix,
            });
            base
        },
        {
            let (metrics, names, produced, lag) = (
                metrics.clone(),
                names.clone(),
                produced_so_far.clone(),
                sampler.lag_handle(),
            );
            let me = me.index;
            move |report: &mut PeerReport| {
                report.records_produced = produced.load(Ordering::Relaxed);
                let metrics = metrics.lock().unwrap_or_else(|e| e.into_inner());
                fill_from_metrics(report, &metrics, &names, me, None);
                // Resyncs are judged at the end (caught up or not): not in a checkpoint.
                let (lag_all, lag_windows) =
                    lag.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
                report.scheduling_lag = Some(lag_all);
                report.cpu = crate::usage::cpu_usage();
                report.time_series = Some(TimeSeries {
                    start_unix_ms: plan.start_at_unix_ms,
                    window_ms,
                    latency: metrics.window_latency(),
                    latency_by_origin_host: metrics.window_latency_by_host(),
                    received: metrics.received_per_window(),
                    interfaces: Default::default(),
                    scheduling_lag: lag_windows,
                    cpu: None,
                });
            }
        },
    );
    live.checkpoints(checkpoints.last_written());
    events.log(
        "writing",
        json!({"connected": links.up, "of": links.wanted}),
    );
    if links.isolated() {
        tracing::warn!(
            "none of its {} links is up as writing starts: its first records wait for one",
            links.wanted
        );
    }
    let (produced, availability) = {
        // A restarted peer goes on from now; the others keep to the plan's start, so
        // a peer that got there late shows its late writes.
        let from = if rejoined { Instant::now() } else { start_at };
        let writing = write_records(&backend, &plan, me.index, from, events, &produced_so_far);
        tokio::pin!(writing);
        tokio::select! {
            done = &mut writing => done,
            never = follow_chaos(client, &plan, me.index, &faults, events) => match never {},
            never = follow_mobility(&backend, &plan, me.index, &moved, events, live) => match never {},
            reason = backend.failed() => {
                report.faults = faults.finish().await;
                kept(report, produced_so_far.load(Ordering::Relaxed));
                anyhow::bail!("{reason}");
            }
        }
    };
    report.availability = Some(availability);
    let end_unix = cmesh_common::unix_millis();
    report.writing = Some(WritingWindow {
        start_unix_ms: start_unix,
        end_unix_ms: end_unix,
    });
    report.records_produced = produced;
    // Faults last while writing does: lifted now, so catch-up runs on a clean link.
    report.faults = faults.finish().await;
    report
        .faults
        .extend(moved.into_inner().unwrap_or_else(|e| e.into_inner()));
    if let Some(e) = report.faults.iter().find_map(|f| f.error.clone()) {
        anyhow::bail!("a fault could not be applied: {e}");
    }
    move_to(client, state, PeerState::Reporting, patience).await?;
    events.log("written", json!({"records": produced}));

    let settle = Duration::from_millis(plan.spec.settle_timeout_ms);
    let written = unless_failed!(
        client.barrier(
            "written",
            Some(produced),
            settle + Duration::from_secs(30),
            patience,
        ),
        produced
    )?;
    let caught_up = unless_failed!(catch_up(&backend, &plan, &written.values, settle), produced);
    events.log("caught_up", json!({"complete": caught_up}));
    // The measurement ends here: what follows (barriers, the report) is the harness's.
    let (lag_all, lag_windows) = sampler.lag();
    // Stay connected until everyone has caught up: others may depend on us as a hop.
    let synced = unless_failed!(client.barrier("synced", None, settle, patience), produced)?;
    if !synced.released {
        events.log(
            "barrier_timeout",
            json!({"barrier": "synced", "arrived": synced.arrived, "expected": synced.expected}),
        );
    }
    let stats = backend.stop().await;
    let usage = sampler.finish().await;
    // The clock again, now that the host is quiet: with the start's, the drift.
    if cfg.clock_samples > 0 {
        let deadline = Instant::now() + crate::clock::budget(cfg.clock_samples);
        let end = crate::clock::measure(&cfg.coordinator, cfg.clock_samples, deadline).await;
        events.log("clock", json!({"at": "end", "estimate": end}));
        report.clock_sync = match (report.clock_sync.take(), end) {
            (Some(sync), end) => Some(ClockSync { end, ..sync }),
            (None, Some(start)) => Some(ClockSync { start, end: None }),
            (None, None) => None,
        };
    }

    drop(checkpoints);
    let metrics = metrics.lock().unwrap_or_else(|e| e.into_inner());
    fill_from_metrics(report, &metrics, &names, me.index, Some(&written.values));
    report.records_missed = stats.records_missed;
    report.caught_up = caught_up;
    report.neighbours = stats
        .neighbours
        .into_iter()
        .map(|mut n| {
            let index: usize = n.peer.parse().unwrap_or(0);
            n.peer = names[index].clone();
            n
        })
        .collect();
    report.delta_sync = stats.delta_sync;
    report.dissemination = stats.dissemination;
    report.handshakes_refused = stats.handshakes_refused;
    report.handshakes_timed_out = stats.handshakes_timed_out;
    if let (Some(in_time), Some(a)) = (stats.writes_in_time, report.availability.as_mut()) {
        // A write is available when the harness sent it on time and the app took it
        // in time: of the two counts, the lesser.
        a.write_ok = a.write_ok.min(in_time);
    }
    report.resync = metrics.resyncs(caught_up);
    report.scheduling_lag = Some(lag_all);
    report.cpu = crate::usage::cpu_usage();
    report.time_series = Some(TimeSeries {
        start_unix_ms: plan.start_at_unix_ms,
        window_ms,
        latency: metrics.window_latency(),
        latency_by_origin_host: metrics.window_latency_by_host(),
        received: metrics.received_per_window(),
        interfaces: usage.interfaces,
        scheduling_lag: lag_windows,
        cpu: usage.cpu,
    });
    events.log(
        "report",
        json!({
            "received": report.records_received,
            "distinct_origins": report.distinct_origins,
            "p50_us": report.message_latency.summary.p50_us,
        }),
    );
    Ok(())
}

/// What the metrics say, into `report`: deliveries, duplicates, per-origin counts, and
/// latency overall and per origin host. `produced` (per origin, from the `written`
/// barrier) is known only at the end; a checkpoint has none.
fn fill_from_metrics(
    report: &mut PeerReport,
    metrics: &Metrics,
    names: &[String],
    me: u32,
    produced: Option<&BTreeMap<String, u64>>,
) {
    report.records_received = metrics.received().iter().sum();
    report.records_duplicate = metrics.duplicates();
    report.origins = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 != me)
        .map(|(i, name)| {
            (
                name.clone(),
                OriginStats {
                    received: metrics.received()[i],
                    produced: produced.and_then(|p| p.get(name).copied()),
                },
            )
        })
        .collect();
    report.distinct_origins = report.origins.values().filter(|o| o.received > 0).count();
    report.message_latency = LatencyReport {
        summary: metrics.latency().summary(),
        negative_samples: metrics.negative_samples(),
        histogram: metrics.latency().encode(),
        negative_histogram: None,
    };
    report.latency_by_origin_host = metrics
        .latency_by_host()
        .iter()
        .map(|h| {
            let r = LatencyReport {
                summary: h.latency.summary(),
                negative_samples: h.negative.as_ref().map_or(0, LatencyHistogram::count),
                histogram: h.latency.encode(),
                negative_histogram: h.negative.as_ref().map(LatencyHistogram::encode),
            };
            (h.host.clone(), r)
        })
        .collect();
}

async fn move_to(
    client: &CoordinatorClient,
    state: &watch::Sender<PeerState>,
    to: PeerState,
    patience: Duration,
) -> anyhow::Result<()> {
    state.send_replace(to);
    client
        .set_state(to, None, patience)
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot report state {to}")))
}

/// Takes `launcher chaos` actions from the coordinator as they come and hands this
/// peer's to the fault runner. Runs until dropped.
async fn follow_chaos(
    client: &CoordinatorClient,
    plan: &ExecutionPlan,
    me: u32,
    runner: &crate::faults::Runner,
    events: &EventLog,
) -> std::convert::Infallible {
    let mut after = 0;
    loop {
        match client.chaos_since(after).await {
            Ok(actions) => {
                for a in actions {
                    after = after.max(a.seq);
                    if let Some(planned) = crate::faults::from_chaos(plan, me, &a) {
                        events.log(
                            "chaos",
                            json!({"fault": a.id, "action": a.fault.action.name()}),
                        );
                        runner.add(planned);
                    }
                }
            }
            Err(e) => {
                tracing::debug!("asking for chaos actions: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Follows the plan's mobility faults: at `start + at + k * every` (k = 1, 2, … while
/// within `for`) the graph is re-drawn ([`ExecutionPlan::redrawn`], the same on every
/// peer) and the backend moves to this peer's new neighbours. Runs until dropped (it
/// idles once no re-draw is left); `moved` gets one entry per mobility fault.
async fn follow_mobility(
    backend: &impl SyncBackend,
    plan: &ExecutionPlan,
    me: u32,
    moved: &Mutex<Vec<AppliedFault>>,
    events: &EventLog,
    live: &crate::live::LiveBoard,
) -> std::convert::Infallible {
    let steps = plan.mobility_epochs();
    {
        let mut m = moved.lock().unwrap_or_else(|e| e.into_inner());
        for &(_, i, epoch) in &steps {
            if epoch == 1 {
                m.push(AppliedFault {
                    id: format!("plan#{}", i + 1),
                    action: "mobility".into(),
                    path: Some("graph".into()),
                    applied_at_unix_ms: None,
                    lifted_at_unix_ms: None,
                    error: None,
                });
            }
        }
    }
    for (at, i, epoch) in steps {
        tokio::time::sleep_until(crate::time::unix_ms_to_instant(at)).await;
        let neighbours = plan.redrawn(i, epoch).neighbours(me);
        backend.set_neighbours(&neighbours);
        live.set_neighbours(&neighbours);
        let now = cmesh_common::unix_millis();
        if let Some(m) = moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .find(|m| m.id == format!("plan#{}", i + 1))
        {
            m.applied_at_unix_ms.get_or_insert(now);
            m.lifted_at_unix_ms = Some(now);
        }
        events.log(
            "mobility",
            json!({
                "fault": format!("plan#{}", i + 1),
                "epoch": epoch,
                "neighbours": neighbours.iter().map(|&n| &plan.peers[n as usize].name).collect::<Vec<_>>(),
            }),
        );
    }
    std::future::pending().await
}

/// Writes records at the planned rate from `from` until the planned end, and returns at
/// the end (faults and chaos last while writing does); returns the highest sequence
/// number written (how many, unless the peer restarted and went on from its neighbours'
/// view of it), and the availability probes: each write, and a read of the sync progress
/// after it, counts as ok when it finished within [`PROBE_DEADLINE_MS`] of the time it
/// was due (so a paused or starved peer shows as unavailable).
///
/// The first write comes at a random point of a first interval, as if the peer had been
/// writing all along: a plan of sparse writes (an interval as long as the run) still
/// writes about duration / mean interval records per peer, spread over the run.
async fn write_records<B: SyncBackend>(
    backend: &B,
    plan: &ExecutionPlan,
    me: u32,
    from: Instant,
    events: &EventLog,
    produced_so_far: &AtomicU64,
) -> (u64, Availability) {
    let deadline = Duration::from_millis(PROBE_DEADLINE_MS);
    let mut probes = Availability {
        deadline_ms: PROBE_DEADLINE_MS,
        ..Availability::default()
    };
    let spec = &plan.spec;
    let end = crate::time::unix_ms_to_instant(plan.start_at_unix_ms + spec.duration_ms);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed ^ ((me as u64 + 1) << 32));
    let (min, max) = (spec.write_interval.min_ms, spec.write_interval.max_ms);
    let first = Duration::from_millis(rng.random_range(min..=max));
    let mut next = from + first.mul_f64(rng.random_range(0.0..1.0));
    let mut produced = 0;
    let mut writes = 0u64;
    while next < end {
        tokio::time::sleep_until(next).await;
        produced = backend.write(Bytes::from(vec![(writes % 251) as u8; spec.payload_bytes]));
        produced_so_far.store(produced, Ordering::Relaxed);
        probes.write_probes += 1;
        probes.write_ok += u64::from(next.elapsed() <= deadline);
        let _ = backend.progress();
        probes.read_probes += 1;
        probes.read_ok += u64::from(next.elapsed() <= deadline);
        writes += 1;
        if writes == 1 {
            events.log("first_write", json!({"seq": produced}));
        }
        next += Duration::from_millis(rng.random_range(min..=max));
    }
    tokio::time::sleep_until(end).await;
    (produced, probes)
}

/// Waits until every origin's records, as far as it said it wrote them, are held; or
/// until `settle` passes. Returns whether everything arrived.
async fn catch_up<B: SyncBackend>(
    backend: &B,
    plan: &ExecutionPlan,
    produced: &BTreeMap<String, u64>,
    settle: Duration,
) -> bool {
    let complete = || {
        let progress = backend.progress();
        plan.peers.iter().all(|p| {
            produced
                .get(&p.name)
                .is_none_or(|&n| progress[p.index as usize] >= n)
        })
    };
    let deadline = Instant::now() + settle;
    while !complete() {
        tokio::select! {
            _ = backend.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return complete(),
        }
    }
    true
}

/// Beats every `every` until dropped, on a timerfd tick (one wake-up a beat), with the
/// live counters once there are any.
async fn heartbeats(
    client: CoordinatorClient,
    state: watch::Receiver<PeerState>,
    live: Arc<crate::live::LiveBoard>,
    every: Duration,
) {
    let mut tick = crate::ticker::Ticker::new(std::time::Instant::now() + every, every);
    let mut failures = 0u32;
    // Counters a beat did not deliver go with the next one.
    let mut unsent: Option<cmesh_common::live::LiveCounters> = None;
    // A busy coordinator's `Retry-After`: no beat before then.
    let mut quiet_until: Option<Instant> = None;
    loop {
        tick.tick().await;
        if quiet_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let current = *state.borrow();
        let counters = live.counters(cmesh_common::unix_millis(), crate::cpu::process_us());
        let counters = crate::live::carry(unsent.take(), counters);
        match client.heartbeat(current, counters.clone()).await {
            Ok(()) => {
                failures = 0;
                quiet_until = None;
            }
            Err(ClientError::Busy { retry_after, .. }) => {
                unsent = counters;
                quiet_until = Some(Instant::now() + crate::client::spread(retry_after));
            }
            Err(e) => {
                unsent = counters;
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!("heartbeat failed ({failures} in a row): {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_splits_the_budget_within_bounds() {
        assert_eq!(window_per_origin(2 << 20, 11, 256), 661);
        assert_eq!(window_per_origin(2 << 20, 5000, 256), 16);
        assert_eq!(window_per_origin(64 << 20, 2, 16), 1024);
    }
}
