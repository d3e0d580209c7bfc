//! The Docker labels cmesh puts on what it creates, so every command finds a run's
//! containers and network without the manifest.

/// The run id.
pub const RUN: &str = "io.cmesh.run";
/// `coordinator` or `peer`.
pub const ROLE: &str = "io.cmesh.role";
/// A peer's number (1-based, as in its name).
pub const INDEX: &str = "io.cmesh.index";
/// The host name from hosts.toml.
pub const HOST: &str = "io.cmesh.host";

pub const ROLE_COORDINATOR: &str = "coordinator";
pub const ROLE_PEER: &str = "peer";
