//! Faults injected while a run goes: [`chaos`] (`launcher chaos`, through the coordinator
//! to the peers, and through the engines), [`planned`] (a plan's kills, pauses and
//! restarts, done by `wait`), and [`containers`] (the engine side of both).

pub mod chaos;
pub mod containers;
pub mod planned;
