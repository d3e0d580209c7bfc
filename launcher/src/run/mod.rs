//! A run: its directory and manifest ([`dir`]), the names of its objects ([`names`]),
//! its containers ([`containers`]) and volumes ([`volumes`]), the labels that find them
//! ([`labels`]), scratch containers for volume I/O ([`scratch`]), and the run as the
//! engines see it now ([`live`]).

pub mod containers;
pub mod dir;
pub mod labels;
pub mod live;
pub mod names;
pub mod scratch;
pub mod volumes;
