//! The commands that are not a stage of their own elsewhere: [`status`], [`watch`],
//! [`logs`], [`wait`], [`down`], [`ls`] and [`compare`]. (`spawn` is in [`crate::spawn`], `extract` and
//! `analyze` in [`crate::results`], `chaos` in [`crate::faults`].)

pub mod compare;
pub mod down;
pub mod logs;
pub mod ls;
pub mod status;
pub mod wait;
pub mod watch;
