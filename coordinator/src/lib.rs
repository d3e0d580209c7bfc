//! The cmesh coordinator: one per run.
//!
//! It gives a few thousand peers discovery, one shared plan and a common start:
//!
//! - [`state`]: the run's state machine (registrations, peer states, plan, barriers),
//!   synchronous and unit-tested;
//! - [`sync`]: the sync service, topics apps publish on before they connect;
//! - [`liveness`]: which silent peers are lost and which only starved;
//! - [`live`]: the peers' live counters, added up per host and for the run;
//! - [`metrics`]: the same figures in the Prometheus text format;
//! - [`api`]: the HTTP/JSON API over it, behind the run's tokens;
//! - [`conn`]: its connections, bounded in number and in how long they may idle;
//! - [`pressure`]: its own lag, and the load it sheds while it lags;
//! - [`clock`]: its clock over UDP on the same port, for the peers' clock offsets;
//! - [`output`]: the files it leaves in its output directory;
//! - [`cli`]: its flags.
//!
//! [`serve`] ties them together: it serves the API, plans when the peers are in (or at the
//! start timeout), sweeps for lost peers, and returns when every peer is done, failed or
//! lost, after writing its report.

pub mod api;
pub mod cli;
pub mod clock;
pub mod conn;
pub mod live;
pub mod liveness;
pub mod metrics;
pub mod output;
pub mod pressure;
pub mod state;
pub mod sync;

use anyhow::Context;
use cmesh_common::exit;
use cmesh_common::lifecycle::RunPhase;
use state::{PlanSignal, Run};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything [`serve`] needs.
pub struct Config {
    pub listen: SocketAddr,
    pub tokens: cmesh_common::token::Tokens,
    pub output: PathBuf,
    pub run_id: String,
    pub spec: cmesh_common::plan::PlanSpec,
    pub linger: Duration,
    /// Long-polls answer "not yet" after this long.
    pub long_poll: Duration,
    /// Peers with series of their own on `GET /metrics`, at most.
    pub metrics_per_peer: usize,
}

/// Binds the listener; a bound listener is ready to take registrations. An address
/// that cannot be bound is bad input (exit 2).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        exit::bad_input(format!(
            "cannot listen on {addr}: {e}. Choose a free address with --listen (port 0 picks one)"
        ))
    })
}

/// Serves a run to its end. Returns the exit code: 0 if every peer is done, 1 otherwise.
pub async fn serve(config: Config, listener: TcpListener) -> anyhow::Result<i32> {
    let started = cmesh_common::unix_millis();
    std::fs::create_dir_all(&config.output).with_context(|| {
        format!(
            "cannot create the output directory {}",
            config.output.display()
        )
    })?;
    let (timeline_tx, timeline_rx) = tokio::sync::mpsc::unbounded_channel();
    let timeline = tokio::spawn(output::timeline_writer(
        config.output.join("timeline.jsonl"),
        timeline_rx,
    ));
    let spec = config.spec.clone();
    let shared = Arc::new(api::Shared {
        run: std::sync::Mutex::new(Run::new(&config.run_id, spec.clone(), timeline_tx)),
        tokens: config.tokens.clone(),
        long_poll: config.long_poll,
        metrics_per_peer: config.metrics_per_peer,
        pressure: std::sync::Mutex::new(pressure::Pressure::default()),
    });
    let (mut plan_signal, mut finished) = {
        let run = shared.lock();
        (run.plan_signal(), run.finished_signal())
    };
    let local = listener.local_addr()?;
    // Tells tests and the launcher the port when --listen asked for port 0.
    output::write_atomic(
        &config.output.join("coordinator.addr"),
        local.to_string().as_bytes(),
    )?;
    tracing::info!(%local, run_id = %config.run_id, peers = spec.peers, "coordinator listening");

    // The clock service, on the same port over UDP. Without it the peers get no
    // in-band offset, and analyze falls back to the engines' clocks: a warning, not a
    // failure.
    let clock_service = match tokio::net::UdpSocket::bind(local).await {
        Ok(socket) => Some(tokio::spawn(clock::serve(socket))),
        Err(e) => {
            tracing::warn!(
                "cannot serve the clock on udp {local}: {e}; peers will have no clock offsets"
            );
            None
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(conn::serve(
        listener,
        api::router(shared.clone()),
        conn::Limits::for_peers(spec.peers),
        stop_rx.clone(),
    ));

    // The coordinator's own lag, for shedding load ([`pressure`]).
    let lag = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(pressure::TICK_MS);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut due = cmesh_common::unix_millis();
            loop {
                tick.tick().await;
                let now = cmesh_common::unix_millis();
                shared.pressure().tick(due, now);
                due = now + pressure::TICK_MS;
            }
        })
    };

    // Lost-peer sweeps, the start timeout and the run deadline.
    let clock = {
        let shared = shared.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(state::sweep_every_ms(&spec)));
            let start_deadline = started + spec.start_timeout_ms;
            loop {
                tick.tick().await;
                let now = cmesh_common::unix_millis();
                let mut run = shared.lock();
                if run.phase() == RunPhase::Registering && now >= start_deadline {
                    run.start_timeout(now);
                }
                run.sweep_lost(now);
                run.mobility_tick(now);
                if let Some(plan) = run.plan() {
                    // Generous: writing, settling, and two minutes for reports and stragglers.
                    let end = plan.plan.start_at_unix_ms
                        + spec.duration_ms
                        + spec.settle_timeout_ms
                        + 120_000;
                    if now > end && run.phase() == RunPhase::Planned {
                        tracing::warn!("run deadline passed; failing peers still working");
                        run.deadline(now);
                    }
                }
            }
        })
    };

    // plan.json and graph.dot as soon as the plan exists.
    let plan_files = {
        let dir = config.output.clone();
        tokio::spawn(async move {
            if plan_signal
                .wait_for(|s| !matches!(s, PlanSignal::Pending))
                .await
                .is_ok()
            {
                let signal = plan_signal.borrow().clone();
                if let PlanSignal::Ready(p) = signal {
                    if let Err(e) = output::write_plan(&dir, &p.plan, &p.json) {
                        tracing::error!("{e:#}");
                    }
                }
            }
        })
    };

    let interrupted = tokio::select! {
        _ = finished.wait_for(|f| *f) => false,
        _ = shutdown_signal() => true,
    };
    let _ = plan_files.await;
    let report = {
        let run = shared.lock();
        let status = run.status();
        let error = match (&*run.plan_signal().borrow(), interrupted) {
            (_, true) => Some("interrupted by a signal before the run finished".to_owned()),
            (PlanSignal::Aborted(reason), _) => Some(reason.clone()),
            _ if !run.all_done() => Some(format!(
                "{} of {} peers did not finish: {} failed, {} lost",
                status.peers.len() - status.counts[&cmesh_common::lifecycle::PeerState::Done],
                status.peers.len(),
                status.counts[&cmesh_common::lifecycle::PeerState::Failed],
                status.counts[&cmesh_common::lifecycle::PeerState::Lost],
            )),
            _ => None,
        };
        output::CoordinatorReport {
            schema: output::COORDINATOR_REPORT_SCHEMA,
            schema_version: 1,
            run_id: config.run_id.clone(),
            phase: run.phase(),
            all_done: run.all_done() && !interrupted,
            error,
            started_at_unix_ms: started,
            finished_at_unix_ms: cmesh_common::unix_millis(),
            status,
        }
    };
    output::write_report(&config.output, &report)?;
    match &report.error {
        None => tracing::info!("run finished: every peer is done"),
        Some(e) => tracing::warn!("run finished: {e}"),
    }
    if !interrupted {
        tokio::time::sleep(config.linger).await;
    }
    clock.abort();
    lag.abort();
    let shed = shared.pressure().shed_count();
    if shed > 0 {
        tracing::warn!(
            "the coordinator lagged and answered {shed} registrations and heartbeats 503 (come back later); its host was short of CPU"
        );
    }
    if let Some(c) = clock_service {
        c.abort();
    }
    let _ = stop_tx.send(true);
    drop(shared);
    let _ = server.await;
    let _ = timeline.await;
    Ok(if report.all_done {
        exit::OK
    } else {
        exit::RUN_FAILED
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
