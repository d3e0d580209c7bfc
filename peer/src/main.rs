use clap::Parser;
use cmesh_common::exit;
use cmesh_common::report::Outcome;
use cmesh_peer::cli::{advertise_addr, Args};
use cmesh_peer::events::EventLog;
use cmesh_peer::run::{announce_done, run, PeerConfig};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    cmesh_common::init_logging();
    ExitCode::from(main_code(args) as u8)
}

fn main_code(args: Args) -> i32 {
    let bad = |msg: String| {
        eprintln!("peer {}: error: {msg}", args.name);
        exit::BAD_INPUT
    };
    if let Err(e) = cmesh_common::protocol::validate_peer_name(&args.name) {
        return bad(e);
    }
    if let Err(e) = cmesh_peer::backend::check(
        &args.backend,
        args.secret_file.as_deref(),
        args.adapter.as_deref(),
    ) {
        return bad(e);
    }
    let token = match cmesh_common::token::read_token_file(&args.token_file) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    if let Err(e) = std::fs::create_dir_all(&args.output) {
        return bad(format!(
            "cannot create the output directory {}: {e}",
            args.output.display()
        ));
    }
    let events = match EventLog::open(&args.output.join("events.jsonl")) {
        Ok(l) => l,
        Err(e) => {
            return bad(format!(
                "cannot open {}/events.jsonl: {e}",
                args.output.display()
            ))
        }
    };
    // One thread: a peer is small, and thousands of them share a few cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                return bad(format!(
                "cannot listen on {}: {e}. Choose a free address with --listen (port 0 picks one)",
                args.listen
            ))
            }
        };
        let bound = listener
            .local_addr()
            .expect("a bound listener has an address");
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
        let digest = match cmesh_peer::write_report(&args.output, &report) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("peer {}: error: {e:#}", args.name);
                return exit::RUN_FAILED;
            }
        };
        if report.outcome != Outcome::Ok {
            return exit::RUN_FAILED;
        }
        match announce_done(&cfg, digest).await {
            Ok(()) => {
                events.log("done", serde_json::Value::Null);
                exit::OK
            }
            Err(e) => {
                events.log(
                    "failed",
                    serde_json::json!({"error": format!("cannot report done: {e}")}),
                );
                eprintln!(
                    "peer {}: error: report written, but cannot tell the coordinator: {e}",
                    args.name
                );
                exit::RUN_FAILED
            }
        }
    })
}
