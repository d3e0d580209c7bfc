//! A run: its directory and manifest ([`dir`]), the names of its objects ([`names`]),
//! its containers ([`containers`]) and volumes ([`volumes`]), and the run as the engines
//! see it now ([`live`]). The labels that find a run's objects are the engine's
//! ([`crate::engine::labels`]).

pub mod containers;
pub mod dir;
pub mod live;
pub mod names;
pub mod volumes;
