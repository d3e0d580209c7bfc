//! The cmesh launcher: runs a mesh of peer containers on Docker hosts and merges their
//! reports. Where things live:
//!
//! - [`cli`]: the command line and its dispatch; [`cmd`]: each command's flags and code,
//!   one file each (`cmd/spawn.rs`, `cmd/run.rs`, `cmd/status.rs`, …);
//! - [`engine`]: the only code that talks to a container engine: the [`engine::Engine`]
//!   seam, the Docker client behind it ([`engine::docker`]) and a simulated engine
//!   ([`engine::sim`]), retries, labels;
//! - [`cluster`]: the hosts and what is built for them on the seam: SSH, swarm,
//!   networks, images, the registry, image distribution, limits, host checks, the local
//!   lab;
//! - [`spawn`]: from a plan to a running mesh, in named stages; [`placement`]: which peer
//!   goes where;
//! - [`run`]: a run's directory and manifest, the names, containers, volumes and labels
//!   of its objects, and the run as the engines see it now;
//! - [`faults`]: `launcher chaos`, and a plan's kills, pauses and restarts;
//! - [`results`]: extract, analyze (faults, latency over time, resync, availability) and
//!   clock offsets;
//! - [`hosts`] and [`plan_file`]: the input files (hosts.toml, configs/*.toml), read by
//!   the `cmesh-inputs` crate;
//! - [`simlab`]: a simulated lab, to run the commands without Docker;
//! - [`tasks`]: the one bounded-concurrency runner with progress; [`table`]: tables;
//!   [`logging`]: messages and verbosity. Errors and exit codes are
//!   [`cmesh_common::exit`]'s, as for every cmesh program.

pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod engine;
pub mod faults;
pub mod logging;
pub mod placement;
pub mod results;
pub mod run;
pub mod simlab;
pub mod spawn;
pub mod table;
pub mod tasks;

pub use cmesh_inputs::{hosts, plan_file};
