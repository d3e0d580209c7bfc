//! The hosts a run uses, and what is built for them on the engine seam
//! ([`crate::engine`]), for every engine alike:
//!
//! - [`host::Host`]: a hosts.toml entry with its engine and its [`ssh`] link;
//! - [`swarm`] and [`swarm_path`] (can the swarm's traffic flow between the hosts?),
//!   [`network`] (the attachable overlay and its subnets);
//! - [`images`] (the base, the peer and the coordinator, built and loaded), the
//!   [`registry`] on the manager, and [`distribute`]: images to every host;
//! - [`scratch`] containers for volume I/O;
//! - [`lab`]: Docker hosts in containers on this machine;
//! - [`limits`] (will a run fit each host?), [`hostcheck`] (`launcher hosts check`) and
//!   [`clock`] (how far each host's clock is from this one's).
//!
//! Nothing here knows about runs: a run's names, containers and volumes are
//! [`crate::run`]'s, and how many peers go where is [`crate::placement`]'s.

pub mod clock;
pub mod distribute;
pub mod host;
pub mod hostcheck;
pub mod images;
pub mod lab;
pub mod limits;
pub mod network;
pub mod registry;
pub mod scratch;
pub mod ssh;
pub mod swarm;
pub mod swarm_path;
