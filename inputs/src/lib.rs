//! The files cmesh's users write, each read and checked before anything is created:
//!
//! - [`hosts`]: hosts.toml, the Docker hosts and how to reach them (docs/hosts.md);
//! - [`plan_file`]: a test plan (configs/*.toml; docs/configs.md), with the flags and
//!   `CMESH_PLAN_*` variables over it.
//!
//! Every error names the file, the line where it can, and what to write instead, and is
//! bad input (exit 2, `cmesh_common::exit`). Nothing here knows about engines or SSH,
//! so the fuzz targets build on this crate alone.

pub mod hosts;
pub mod plan_file;
