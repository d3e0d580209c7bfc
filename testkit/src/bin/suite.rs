//! `suite MESSAGES.json [-- TEST-ARGS…]`: runs the test binaries that cargo's JSON
//! messages name, several at once within what each allows (cmesh_testkit::suite).
//! `SUITE_JOBS` (default: the CPUs) and `SUITE_DOCKER` (default 2) set the lanes; the
//! logs go to `target/suite/`.

use cmesh_testkit::suite::{main_with, Limits};
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(messages) = args.next() else {
        eprintln!("usage: suite MESSAGES.json [-- TEST-ARGS...]");
        std::process::exit(2);
    };
    let rest: Vec<String> = args.skip_while(|a| a == "--").collect();
    let lanes = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let limits = Limits {
        jobs: lanes("SUITE_JOBS", cpus),
        docker: lanes("SUITE_DOCKER", 2),
    };
    let logs = cmesh_testkit::workspace_root().join("target/suite");
    match main_with(&PathBuf::from(messages), limits, &rest, &logs) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("suite: {e:#}");
            std::process::exit(2);
        }
    }
}
