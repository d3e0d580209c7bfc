use clap::Parser;
use cmesh_common::exit::{self, bad_input, finish};
use cmesh_common::report::Outcome;
use cmesh_peer::cli::{advertise_addr, Args};
use cmesh_peer::events::EventLog;
use cmesh_peer::run::{announce_done, run, PeerConfig};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    cmesh_common::init_logging();
    let program = format!("peer {}", args.name);
    finish(&program, run_peer(args))
}

fn run_peer(args: Args) -> anyhow::Result<i32> {
    cmesh_common::protocol::validate_peer_name(&args.name).map_err(bad_input)?;
    cmesh_peer::backend::check(
        &args.backend,
        args.secret_file.as_deref(),
        args.adapter.as_deref(),
    )
    .map_err(bad_input)?;
    let token = cmesh_common::token::read_token_file(&args.token_file)
        .map_err(|e| bad_input(e.to_string()))?;
    std::fs::create_dir_all(&args.output).map_err(|e| {
        bad_input(format!(
            "cannot create the output directory {}: {e}",
            args.output.display()
        ))
    })?;
    let events = EventLog::open(&args.output.join("events.jsonl")).map_err(|e| {
        bad_input(format!(
            "cannot open {}/events.jsonl: {e}",
            args.output.display()
        ))
    })?;
    // One thread: a peer is small, and thousands of them share a few cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                bad_input(format!(
                "cannot listen on {}: {e}. Choose a free address with --listen (port 0 picks one)",
                args.listen
            ))
            })?;
        let bound = listener.local_addr()?;
        let cfg = PeerConfig {
            name: args.name.clone(),
            coordinator: args.coordinator.clone(),
            advertise: advertise_addr(args.advertise.as_deref(), bound),
            host: args.host.clone(),
            token,
            coordinator_timeout: args.coordinator_timeout,
            checkpoint_interval: args.checkpoint_interval,
            clock_samples: args.clock_samples,
            window_bytes: args.window_bytes,
            backend: args.backend.clone(),
            secret_file: args.secret_file.clone(),
            state_dir: args.output.clone(),
            adapter: args.adapter.clone(),
            adapter_deadlines: cmesh_peer::backend::adapter::session::Deadlines {
                ready: args.adapter_ready_timeout,
                answer: args.adapter_answer_timeout,
                ..Default::default()
            },
        };
        let report = run(cfg.clone(), listener, &events).await;
        let digest = cmesh_peer::write_report(&args.output, &report)?;
        if report.outcome != Outcome::Ok {
            return Ok(exit::RUN_FAILED);
        }
        match announce_done(&cfg, digest).await {
            Ok(()) => {
                events.log("done", serde_json::Value::Null);
                Ok(exit::OK)
            }
            Err(e) => {
                events.log(
                    "failed",
                    serde_json::json!({"error": format!("cannot report done: {e}")}),
                );
                Err(anyhow::anyhow!(
                    "report written, but cannot tell the coordinator: {e}"
                ))
            }
        }
    })
}
