//! Clock offsets from NTP-style exchanges, as bounded intervals.
//!
//! A peer asks the coordinator for its clock in one UDP datagram ([`request`]) on the
//! coordinator's API port: it notes its own clock before sending (`t1`) and after the
//! answer arrives (`t4`); the answer ([`reply`]) carries the coordinator's clock when the
//! request arrived (`t2`) and when the answer left (`t3`). The coordinator's `t2` came
//! after `t1` and its `t3` before `t4`, in real time, so the peer's offset (peer clock
//! minus coordinator clock) lies in `[t1 − t2, t4 − t3]`: an interval as wide as the
//! round trip less the coordinator's own time, whatever the network did. Nothing is
//! assumed about symmetric paths. (UDP, not the HTTP API: a request that is parsed,
//! routed and checked on one side and only read on the other makes the two directions
//! unequal, and under load that put the middle of the interval 0.4 ms off.)
//!
//! Many exchanges give many intervals that all hold the true offset, so the offset lies in
//! their intersection, which is at most as wide as the one with the shortest round trip
//! (the minimum-round-trip filter) and often narrower: the lower bound comes from the
//! fastest request, the upper from the fastest answer. If the intervals do not all
//! intersect (the clock was stepped, or a source lies), [`agree`] keeps the interval
//! that most of them share (Marzullo's algorithm, as NTP uses to pick among servers).
//! `analyze` does the same over the peers of one host, which share its clock.

use serde::{Deserialize, Serialize};

/// Offsets between `lo_us` and `hi_us` (µs, inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub lo_us: i64,
    pub hi_us: i64,
}

impl Interval {
    /// The interval one exchange gives: `t1` and `t4` on the peer's clock around the
    /// request, `t2` and `t3` the coordinator's clock when it arrived and when the
    /// answer left (all µs).
    pub fn of_exchange(t1_us: i64, t2_us: i64, t3_us: i64, t4_us: i64) -> Interval {
        let (lo, hi) = (t1_us.saturating_sub(t2_us), t4_us.saturating_sub(t3_us));
        Interval {
            lo_us: lo.min(hi),
            hi_us: lo.max(hi),
        }
    }

    /// An offset and its uncertainty as an interval.
    pub fn around(offset_us: i64, uncertainty_us: u64) -> Interval {
        let u = i64::try_from(uncertainty_us).unwrap_or(i64::MAX / 2);
        Interval {
            lo_us: offset_us.saturating_sub(u),
            hi_us: offset_us.saturating_add(u),
        }
    }

    /// The middle.
    pub fn offset_us(&self) -> i64 {
        ((i128::from(self.lo_us) + i128::from(self.hi_us)) / 2) as i64
    }

    fn width(&self) -> u128 {
        (i128::from(self.hi_us) - i128::from(self.lo_us)).unsigned_abs()
    }

    /// Half the width, rounded up, at least 1 µs (readings are whole µs).
    pub fn uncertainty_us(&self) -> u64 {
        u64::try_from(self.width().div_ceil(2))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The interval shared by the most of `intervals`, and how many share it (Marzullo's
/// algorithm); `None` for no intervals. When all intersect, this is their intersection.
/// Among equally shared intervals the narrowest wins.
pub fn agree(intervals: &[Interval]) -> Option<(Interval, usize)> {
    // Edges sorted by position; at a tie a start comes before an end, so touching
    // intervals count as overlapping.
    let mut edges: Vec<(i64, i8)> = intervals
        .iter()
        .flat_map(|i| [(i.lo_us.min(i.hi_us), -1), (i.lo_us.max(i.hi_us), 1)])
        .collect();
    edges.sort_unstable();
    let (mut best, mut best_count, mut depth) = (None::<Interval>, 0usize, 0usize);
    for (k, &(at, kind)) in edges.iter().enumerate() {
        if kind < 0 {
            depth += 1;
            // Depth holds until the next edge, whatever its kind.
            let end = edges.get(k + 1).map_or(at, |e| e.0);
            let candidate = Interval {
                lo_us: at,
                hi_us: end,
            };
            let narrower = best.is_none_or(|b| candidate.width() < b.width());
            if depth > best_count || (depth == best_count && narrower) {
                best = Some(candidate);
                best_count = depth;
            }
        } else {
            depth -= 1;
        }
    }
    best.map(|b| (b, best_count))
}

/// One clock estimate: a series of exchanges, combined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockEstimate {
    /// When the series was taken (peer clock, ms since the Unix epoch).
    pub at_unix_ms: u64,
    /// Peer clock minus coordinator clock, µs: the middle of the interval the exchanges
    /// agree on.
    pub clock_offset_us: i64,
    /// The true offset is within this many µs of `clock_offset_us` (half the interval).
    pub clock_uncertainty_us: u64,
    /// Exchanges taken, and how many agree on the interval.
    pub samples: u32,
    pub agreeing: u32,
    /// The shortest round trip of the series, µs.
    pub min_rtt_us: u64,
}

impl ClockEstimate {
    /// Combines exchanges `(t1, t2, t3, t4)` (µs) taken around `at_unix_ms`; `None` for
    /// none.
    pub fn of_exchanges(at_unix_ms: u64, exchanges: &[(i64, i64, i64, i64)]) -> Option<Self> {
        let intervals: Vec<Interval> = exchanges
            .iter()
            .map(|&(t1, t2, t3, t4)| Interval::of_exchange(t1, t2, t3, t4))
            .collect();
        let (best, agreeing) = agree(&intervals)?;
        Some(ClockEstimate {
            at_unix_ms,
            clock_offset_us: best.offset_us(),
            clock_uncertainty_us: best.uncertainty_us(),
            samples: exchanges.len() as u32,
            agreeing: agreeing as u32,
            min_rtt_us: exchanges
                .iter()
                .map(|&(t1, _, _, t4)| t4.abs_diff(t1))
                .min()
                .unwrap_or(0),
        })
    }

    pub fn interval(&self) -> Interval {
        Interval::around(self.clock_offset_us, self.clock_uncertainty_us)
    }
}

/// The first bytes of every clock datagram.
const MAGIC: [u8; 4] = *b"cmt1";

/// A clock request: the magic and a nonce the answer echoes, padded to the answer's 28
/// bytes (as NTP does), so that answering cannot amplify traffic.
pub fn request(nonce: u64) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[..4].copy_from_slice(&MAGIC);
    b[4..12].copy_from_slice(&nonce.to_be_bytes());
    b
}

/// The nonce of a clock request; `None` for anything else.
pub fn parse_request(b: &[u8]) -> Option<u64> {
    if b.len() != 28 || b[..4] != MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(b[4..12].try_into().ok()?))
}

/// The answer to request `nonce`: the coordinator's clock when it arrived and when the
/// answer left, µs since the Unix epoch (28 bytes).
pub fn reply(nonce: u64, t2_us: u64, t3_us: u64) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[..4].copy_from_slice(&MAGIC);
    b[4..12].copy_from_slice(&nonce.to_be_bytes());
    b[12..20].copy_from_slice(&t2_us.to_be_bytes());
    b[20..28].copy_from_slice(&t3_us.to_be_bytes());
    b
}

/// `(nonce, t2, t3)` of an answer; `None` for anything else.
pub fn parse_reply(b: &[u8]) -> Option<(u64, u64, u64)> {
    if b.len() != 28 || b[..4] != MAGIC {
        return None;
    }
    let word = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Some((word(4), word(12), word(20)))
}

/// A peer's clock against the coordinator's: at the start of its run and at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    pub start: ClockEstimate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<ClockEstimate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_bounds_the_offset_by_its_round_trip_less_the_servers_time() {
        // Peer 500 µs ahead; 100 µs out, 50 µs at the coordinator, 300 µs back.
        let (t1, t2) = (1_000_500, 1_000_100);
        let (t3, t4) = (t2 + 50, t1 + 450);
        let i = Interval::of_exchange(t1, t2, t3, t4);
        assert!(i.lo_us <= 500 && 500 <= i.hi_us, "{i:?}");
        assert_eq!(i.uncertainty_us(), 200);
        // The midpoint is off by the asymmetry's half: (100 - 300) / 2.
        assert_eq!(i.offset_us(), 600);
    }

    #[test]
    fn datagrams_round_trip_and_anything_else_is_refused() {
        assert_eq!(parse_request(&request(7)), Some(7));
        assert_eq!(parse_reply(&reply(7, 10, 20)), Some((7, 10, 20)));
        assert_eq!(parse_request(b"cmt1"), None);
        assert_eq!(
            parse_request(&reply(7, 1, 2)),
            Some(7),
            "same shape: the magic and nonce"
        );
        assert_eq!(request(7).len(), reply(7, 1, 2).len(), "no amplification");
        assert_eq!(parse_reply(&request(7)), Some((7, 0, 0)));
        let mut bad = request(7);
        bad[0] = b'x';
        assert_eq!(parse_request(&bad), None);
    }

    #[test]
    fn intersecting_exchanges_is_tighter_than_the_fastest_one() {
        // True offset 0. A fast request with a slow answer, and the reverse.
        let a = (0, 10, 10, 200); // 10 out, 190 back: [-10, 190]
        let b = (1_000, 1_190, 1_190, 1_200); // 190 out, 10 back: [-190, 10]
        let e = ClockEstimate::of_exchanges(1, &[a, b]).unwrap();
        assert_eq!((e.clock_offset_us, e.clock_uncertainty_us), (0, 10));
        assert_eq!((e.samples, e.agreeing, e.min_rtt_us), (2, 2, 200));
        assert!(e.interval().lo_us <= 0 && e.interval().hi_us >= 0);
    }

    #[test]
    fn the_interval_most_agree_on_wins_over_an_outlier() {
        let ok = [
            Interval::around(100, 50),
            Interval::around(120, 40),
            Interval::around(90, 60),
        ];
        let liar = Interval::around(5_000_000, 1);
        let mut all = ok.to_vec();
        all.push(liar);
        let (best, n) = agree(&all).unwrap();
        assert_eq!(n, 3);
        assert_eq!((best.lo_us, best.hi_us), (80, 150));
        assert!(agree(&[]).is_none());
        // Disjoint and equally supported: the narrower.
        let (best, n) = agree(&[Interval::around(0, 10), Interval::around(1_000, 2)]).unwrap();
        assert_eq!((n, best.offset_us()), (1, 1_000));
        // Touching intervals overlap in one point.
        let (best, n) = agree(&[Interval::around(0, 10), Interval::around(20, 10)]).unwrap();
        assert_eq!((n, best.lo_us, best.hi_us), (2, 10, 10));
    }

    #[test]
    fn extreme_readings_do_not_overflow() {
        let i = Interval::of_exchange(i64::MAX / 4, -(i64::MAX / 4), i64::MIN, i64::MAX / 4);
        assert!(i.uncertainty_us() >= 1);
        let far = Interval::around(i64::MAX - 1, u64::MAX);
        assert!(agree(&[far, Interval::around(0, 1)]).is_some());
    }
}
