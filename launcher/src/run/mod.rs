//! A run: its directory and manifest ([`dir`]), the names of its objects ([`names`]),
//! its containers ([`containers`]) and volumes ([`volumes`]), the run as the engines
//! see it now and how its containers ended ([`live`]), its coordinator's API
//! ([`coordinator`]); groups of runs of one plan ([`group`]). The labels that find a
//! run's objects are the engine's ([`crate::engine::labels`]).

pub mod containers;
pub mod coordinator;
pub mod dir;
pub mod group;
pub mod live;
pub mod names;
pub mod volumes;
