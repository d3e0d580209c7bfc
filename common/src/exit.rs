//! Exit codes shared by every cmesh program.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the command did what was asked |
//! | 1 | the run (or the command's work) failed: a peer failed, the coordinator was unreachable, ... |
//! | 2 | bad input: a flag, file or address was wrong; nothing was changed |

/// The command did what was asked.
pub const OK: i32 = 0;
/// The run, or the command's work, failed.
pub const RUN_FAILED: i32 = 1;
/// Bad input: the command refused before changing anything.
pub const BAD_INPUT: i32 = 2;
