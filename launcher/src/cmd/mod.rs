//! Every command's code, one file each with one entry point (`main`) and its own flags
//! (`Args`, or a `Command` for the commands with subcommands); [`crate::cli`] only
//! parses and dispatches. What a command builds on lives in its own room:
//! [`crate::spawn`], [`crate::results`] (extract, analyze, export), [`crate::faults`]
//! (chaos), [`crate::cluster`] (hosts, swarm, registry, images, the lab).
//!
//! The flags several commands share are defined once here: [`RunArg`] (`--run`) and
//! [`JsonArg`] (`--json`).
//!
//! The doc comments on the flags are their `--help` text, written for a terminal
//! (`runs/<run>`, `g<MMDD-HHMMSS>`), not for rustdoc's HTML.
#![allow(rustdoc::invalid_html_tags)]

pub mod analyze;
pub mod chaos;
pub mod compare;
pub mod down;
pub mod export;
pub mod extract;
pub mod hosts;
pub mod images;
pub mod lab;
pub mod logs;
pub mod ls;
pub mod registry;
pub mod report;
pub mod run;
pub mod spawn;
pub mod status;
pub mod swarm;
pub mod wait;
pub mod watch;

use crate::hosts::{self as hosts_file, HostsFile};
use crate::run::dir::RunDir;
use clap::ValueEnum;
use std::path::Path;

/// `--run`: which run a command is about.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArg {
    /// The run's id, as spawn printed it (`launcher ls` lists them) [default: the newest].
    #[arg(long)]
    pub run: Option<String>,
}

impl RunArg {
    /// The run's directory under `runs`.
    pub fn open(&self, runs: &Path) -> anyhow::Result<RunDir> {
        RunDir::open(runs, self.run.as_deref())
    }
}

/// `--json`: the result as JSON on stdout (messages stay on stderr).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JsonArg {
    /// Print the result as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The hosts file a `--hosts` flag names, else ./hosts.toml, else the local engine.
pub fn load_hosts(flag: Option<&Path>) -> anyhow::Result<HostsFile> {
    match flag {
        Some(p) => hosts_file::load(p),
        None if Path::new("hosts.toml").exists() => hosts_file::load(Path::new("hosts.toml")),
        None => Ok(hosts_file::local_default()),
    }
}

/// A value's name on the command line (also its name in plans and the coordinator's
/// API).
pub fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}
