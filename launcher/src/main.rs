use clap::Parser;
use cmesh_launcher::{cli, error};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    cmesh_common::init_logging();
    cmesh_common::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let code = match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("launcher: error: {e:#}");
            error::exit_code(&e)
        }
    };
    ExitCode::from(code as u8)
}
