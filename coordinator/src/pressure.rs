//! Is the coordinator keeping up? If not, it sheds load rather than time out.
//!
//! The coordinator serves a few thousand peers from one thread. On an over-committed host
//! that thread gets the CPU late, and every request waits for it: the peers' clients time
//! out, try again, and add to the queue (at 2000 peers on 2 CPUs, 704 peers gave up on a
//! coordinator that was there all along). So it watches its own lag: a ticker every
//! [`TICK_MS`] measures how late it fires, which is how long anything arriving now waits
//! for the thread. While the worst lag of the last [`WINDOW_MS`] is over [`SHED_LAG_MS`]:
//!
//! - a registration is answered `503` with a `Retry-After` ([`Pressure::shed`]), before
//!   any work;
//! - a heartbeat still counts as a beat (the peer that sent it is alive, which is what a
//!   beat is for), but its state and live counters are left for the next one, and it is
//!   answered `503` with a `Retry-After`: the peer carries its counters over and beats
//!   again after that long.
//!
//! The wait asked for grows with the lag: four times the worst lag, rounded up to whole
//! seconds, at least 1 s and at most [`MAX_RETRY_AFTER_S`]; a heartbeat's is also at most
//! one beat period, so that its peer's beats stay well within the lost limit. Peers add a
//! quarter either way, so that a host's peers do not all come back at once.
//! Connections past the coordinator's limit get a fixed `503` before they are closed
//! ([`crate::conn`]).
//!
//! Synchronous, with the time passed in.

use std::collections::VecDeque;

/// How often the lag is measured.
pub const TICK_MS: u64 = 100;
/// How far back the worst lag counts.
pub const WINDOW_MS: u64 = 1_000;
/// The lag past which registrations and heartbeats are shed.
pub const SHED_LAG_MS: u64 = 250;
/// The longest `Retry-After` the coordinator asks for.
pub const MAX_RETRY_AFTER_S: u64 = 10;

/// The coordinator's recent lag.
#[derive(Debug, Default)]
pub struct Pressure {
    /// `(when, how late)` of the ticks of the last [`WINDOW_MS`].
    recent: VecDeque<(u64, u64)>,
    /// Requests answered `503` so far.
    shed: u64,
}

impl Pressure {
    /// A tick due at `due_ms` fired at `now_ms`.
    pub fn tick(&mut self, due_ms: u64, now_ms: u64) {
        self.recent
            .push_back((now_ms, now_ms.saturating_sub(due_ms)));
        while self
            .recent
            .front()
            .is_some_and(|&(at, _)| now_ms.saturating_sub(at) > WINDOW_MS)
        {
            self.recent.pop_front();
        }
    }

    /// The worst lag of the last [`WINDOW_MS`] before `now_ms`.
    pub fn lag_ms(&self, now_ms: u64) -> u64 {
        self.recent
            .iter()
            .filter(|&&(at, _)| now_ms.saturating_sub(at) <= WINDOW_MS)
            .map(|&(_, lag)| lag)
            .max()
            .unwrap_or(0)
    }

    /// `Some(seconds)` to answer `503` with that `Retry-After`, at most `cap_s`; `None`
    /// to serve the request. Counts what it sheds.
    pub fn shed(&mut self, now_ms: u64, cap_s: u64) -> Option<u64> {
        let lag = self.lag_ms(now_ms);
        if lag <= SHED_LAG_MS {
            return None;
        }
        self.shed += 1;
        Some(
            (4 * lag)
                .div_ceil(1000)
                .clamp(1, MAX_RETRY_AFTER_S.min(cap_s.max(1))),
        )
    }

    /// Requests answered `503` so far.
    pub fn shed_count(&self) -> u64 {
        self.shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_it_serves_and_late_it_sheds_with_a_wait_that_grows_with_the_lag() {
        let mut p = Pressure::default();
        for k in 1..=10 {
            p.tick(k * 100, k * 100 + 5);
        }
        assert_eq!(p.lag_ms(1_005), 5);
        assert_eq!(p.shed(1_005, 10), None);
        // One tick 600 ms late: shed for the next second, asking for 3 s.
        p.tick(1_100, 1_700);
        assert_eq!(p.shed(1_700, 10), Some(3));
        assert_eq!(p.shed(1_700, 2), Some(2), "capped by the caller");
        p.tick(1_800, 1_801);
        assert_eq!(p.shed(2_600, 10), Some(3), "still within the second");
        p.tick(2_800, 2_801);
        assert_eq!(p.shed(2_801, 10), None, "a second later it serves again");
        // Starved for 5 s: at most MAX_RETRY_AFTER_S.
        p.tick(2_900, 7_900);
        assert_eq!(p.shed(7_900, 60), Some(MAX_RETRY_AFTER_S));
        assert_eq!(p.shed_count(), 4);
    }
}
