//! Faults injected while a run goes: [`chaos`] (`launcher chaos`, through the coordinator
//! to the peers, and through the engines), [`planned`] (a plan's kills, pauses and
//! restarts, done by `wait`), [`containers`] (the engine side of both), and [`replay`]
//! (a run's chaos actions written into the plan of a new run, `run --like`).

pub mod chaos;
pub mod containers;
pub mod planned;
pub mod replay;
