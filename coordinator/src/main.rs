use clap::Parser;
use cmesh_common::exit::{bad_input, finish};
use cmesh_coordinator::{bind, cli::Args, serve, Config};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args = Args::parse();
    cmesh_common::init_logging();
    finish("coordinator", run(args))
}

fn run(args: Args) -> anyhow::Result<i32> {
    let spec = args.spec().map_err(bad_input)?;
    spec.validate().map_err(|e| bad_input(e.to_string()))?;
    let peers = cmesh_common::token::read_token_file(&args.token_file)
        .map_err(|e| bad_input(e.to_string()))?;
    let admin_digest = match args.admin_digest_file.as_deref() {
        None => None,
        Some(path) => Some(
            cmesh_common::token::read_digest_file(path).map_err(|e| bad_input(e.to_string()))?,
        ),
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
        .build()?;
    runtime.block_on(async {
        let listener = bind(args.listen).await?;
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
        serve(config, listener).await
    })
}
