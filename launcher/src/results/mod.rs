//! What a run produced: [`extract`] (every container's report, logs and state, verified;
//! [`archive`] streams a host's reports to disk, split per container, under byte caps),
//! [`analyze`] (the merged numbers), [`impairment`] (faults, latency over time, resync,
//! availability), [`validate`] (a report checked against the plan before it is merged)
//! and [`clock`] (host clock offsets and the latency correction).

pub mod analyze;
pub mod archive;
pub mod clock;
pub mod extract;
pub mod impairment;
pub mod quality;
pub mod validate;
