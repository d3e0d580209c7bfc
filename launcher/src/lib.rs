//! The cmesh launcher: runs a mesh of peer containers on Docker hosts and merges their
//! reports.
//!
//! - [`cli`]: the commands and their flags;
//! - [`hosts`] and [`host`]: `hosts.toml`, and the [`host::Host`] every command works with;
//! - [`plan_file`]: test plans (`configs/*.toml`), layered with env and flags;
//! - [`images`]: the base, peer and coordinator images, tagged by content;
//! - [`network`]: the swarm and the run's overlay network, sized for the run;
//! - [`rundir`]: a run is a directory with a manifest;
//! - [`chaos`]: faults injected into a running run;
//! - [`impairment`]: faults, latency over time, resync and availability, for `analyze`;
//! - [`spawn`], [`status`], [`logs`], [`wait`], [`extract`], [`analyze`], [`down`]: the
//!   commands;
//! - [`live`]: a run as Docker sees it now;
//! - [`scratch`]: never-started containers that read and write volumes;
//! - [`tasks`]: bounded-concurrency work with progress and retries;
//! - [`labels`]: how Docker objects are tagged; [`error`]: exit codes.

pub mod analyze;
pub mod chaos;
pub mod cli;
pub mod clock;
pub mod distribute;
pub mod down;
pub mod error;
pub mod extract;
pub mod host;
pub mod hostcheck;
pub mod hosts;
pub mod images;
pub mod impairment;
pub mod lab;
pub mod labels;
pub mod live;
pub mod logs;
pub mod network;
pub mod plan_file;
pub mod registry;
pub mod rundir;
pub mod scratch;
pub mod spawn;
pub mod ssh;
pub mod status;
pub mod swarm;
pub mod tasks;
pub mod wait;
