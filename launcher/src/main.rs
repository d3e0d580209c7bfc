use cmesh_launcher::{cli, logging, tasks};
use std::process::ExitCode;

fn main() -> ExitCode {
    let (args, name) = cli::parse();
    logging::init(if args.quiet { -1 } else { args.verbose as i8 });
    if args.quiet {
        tasks::hide_progress();
    }
    cmesh_common::raise_fd_limit();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(cli::run(args, &name)));
    cmesh_common::exit::finish("launcher", result)
}
