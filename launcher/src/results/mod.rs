//! What a run produced: [`extract`] (every container's report, logs and state, verified;
//! [`archive`] streams a host's reports to disk, split per container, under byte caps)
//! and [`analyze`] (the run directory read into the analysis crate, `cmesh_analysis`,
//! which merges, assesses and renders the numbers without Docker), and [`export`] (the
//! numbers sent to InfluxDB).

pub mod analyze;
pub mod archive;
pub mod export;
pub mod extract;
