use clap::Parser;
use cmesh_common::exit;
use cmesh_coordinator::{bind, cli::Args, serve, Config};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args = Args::parse();
    cmesh_common::init_logging();
    ExitCode::from(run(args) as u8)
}

fn run(args: Args) -> i32 {
    let bad = |msg: String| {
        eprintln!("coordinator: error: {msg}");
        exit::BAD_INPUT
    };
    let spec = match args.spec() {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    if let Err(e) = spec.validate() {
        return bad(e.to_string());
    }
    let peers = match cmesh_common::token::read_token_file(&args.token_file) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    let admin_digest = match args.admin_digest_file.as_deref() {
        None => None,
        Some(path) => match cmesh_common::token::read_digest_file(path) {
            Ok(d) => Some(d),
            Err(e) => return bad(e.to_string()),
        },
    };
    let tokens = cmesh_common::token::Tokens {
        peers,
        admin_digest,
    };
    let fds = cmesh_common::raise_fd_limit();
    if fds < 2 * spec.peers as u64 + 64 {
        tracing::warn!(
            "only {fds} open files allowed; {} peers need about {}. Raise `ulimit -n`",
            spec.peers,
            2 * spec.peers + 64
        );
    }
    // One thread: the work per request is tiny, and a single thread avoids cross-thread
    // wake-ups (measured in bench/coordinator-load).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let listener = match bind(args.listen).await {
            Ok(l) => l,
            Err(e) => return bad(e.0),
        };
        let config = Config {
            listen: args.listen,
            tokens,
            output: args.output,
            run_id: args.run_id,
            spec,
            linger: args.linger,
            long_poll: Duration::from_secs(20),
            metrics_per_peer: usize::from(args.metrics_per_peer),
        };
        match serve(config, listener).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("coordinator: error: {e:#}");
                exit::RUN_FAILED
            }
        }
    })
}
