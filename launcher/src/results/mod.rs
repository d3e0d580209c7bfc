//! What a run produced: [`extract`] (every container's report, logs and state, verified),
//! [`analyze`] (the merged numbers), [`impairment`] (faults, latency over time, resync,
//! availability), [`validate`] (a report checked against the plan before it is merged)
//! and [`clock`] (host clock offsets and the latency correction).

pub mod analyze;
pub mod clock;
pub mod extract;
pub mod impairment;
pub mod validate;
