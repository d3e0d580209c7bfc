//! How long a side of a link waits for its neighbour's half of the handshake.
//!
//! A handshake takes a few scheduling turns of both processes (`Hello` each way, then
//! `Auth` each way). On a host with spare CPU that is well under a millisecond; on a host
//! whose CPUs are queued hundreds deep (2000 peer containers starting on 2 CPUs: a load
//! average of 7,000) one turn can take seconds. A fixed wait then turns overload into
//! collapse: every attempt times out, the dialer tries again, and each new attempt adds
//! work on both sides (the acceptor still answers the attempts their dialers gave up
//! on), so the links never come up and the run delivers nothing.
//!
//! So each side's patience with one neighbour grows with that neighbour's handshakes
//! that timed out in a row: the base ([`BASE`], 5 s), doubled for each, up to
//! [`MAX_FACTOR`] times the base (80 s); it is back to the base after one handshake with that neighbour completes.
//! Both sides grow theirs from their own timeouts, so the slowest pair of processes
//! still meets within a few attempts, and a healthy host never waits longer than the
//! base. Connecting (TCP's own handshake, done by the kernel) keeps the base: a
//! connection that cannot even be made is a partition or a peer gone, and the dialer
//! should try again soon after it heals.
//!
//! Synchronous and without a clock: the link code asks how long to wait and says how
//! it went.

use std::collections::HashMap;
use std::time::Duration;

/// The wait for a neighbour with no handshake timed out in a row.
pub const BASE: Duration = Duration::from_secs(5);
/// The longest wait is the base times this (after four timeouts in a row): 80 s.
pub const MAX_FACTOR: u32 = 16;

/// Per neighbour: handshakes timed out in a row.
#[derive(Debug)]
pub struct Patience {
    base: Duration,
    max: Duration,
    misses: HashMap<u32, u32>,
}

impl Patience {
    /// Waits from `base`, doubled per timeout in a row, up to [`MAX_FACTOR`] × `base`.
    pub fn new(base: Duration) -> Patience {
        Patience {
            base,
            max: base.saturating_mul(MAX_FACTOR),
            misses: HashMap::new(),
        }
    }

    /// How long to wait for `peer`'s next message of a handshake.
    pub fn wait(&self, peer: u32) -> Duration {
        let misses = self.misses.get(&peer).copied().unwrap_or(0).min(16);
        self.base.saturating_mul(1 << misses).min(self.max)
    }

    /// A handshake with `peer` timed out: wait longer next time, unless already at the
    /// longest. True when the wait grew.
    pub fn timed_out(&mut self, peer: u32) -> bool {
        let before = self.wait(peer);
        let misses = self.misses.entry(peer).or_insert(0);
        *misses = misses.saturating_add(1).min(16);
        self.wait(peer) > before
    }

    /// A handshake with `peer` completed: back to the base.
    pub fn met(&mut self, peer: u32) {
        self.misses.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_doubles_per_timeout_in_a_row_up_to_the_cap_and_resets() {
        let mut p = Patience::new(BASE);
        assert_eq!(p.wait(3), BASE);
        let waits: Vec<u64> = (0..6)
            .map(|_| {
                p.timed_out(3);
                p.wait(3).as_secs()
            })
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 80, 80]);
        assert!(!p.timed_out(3), "at the cap it grows no more");
        assert_eq!(p.wait(4), BASE, "per neighbour");
        p.met(3);
        assert_eq!(p.wait(3), BASE);
    }

    #[test]
    fn many_timeouts_neither_overflow_nor_pass_the_cap() {
        let mut p = Patience::new(Duration::from_secs(u64::MAX / 2));
        for _ in 0..100 {
            p.timed_out(0);
        }
        assert_eq!(p.wait(0), Duration::MAX);
        let mut p = Patience::new(Duration::from_millis(1));
        for _ in 0..100 {
            p.timed_out(0);
        }
        assert_eq!(p.wait(0), Duration::from_millis(16));
    }
}
