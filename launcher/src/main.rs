use clap::Parser;
use cmesh_launcher::{cli, error, logging, tasks};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init(if args.quiet { -1 } else { args.verbose as i8 });
    if args.quiet {
        tasks::hide_progress();
    }
    cmesh_common::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            error::exit_code(&e)
        }
    };
    ExitCode::from(code as u8)
}
