//! Is a silent peer gone, or only starved of CPU?
//!
//! A peer beats every period, and a peer that misses three beats is lost. Counted on the
//! wall clock, that is wrong on an over-committed host: with 1000 peers on 2 CPUs every
//! peer's turn comes late, the coordinator (on the same host) reads their beats late too,
//! and 20 running peers were declared lost at the start of such a run (2026-12-07).
//!
//! So silence is counted in *beat time*, one clock per host: every beat that arrives from
//! a host's peers moves that host's clock on by `period / (its live peers)`. While the
//! host and the coordinator keep up, beat time runs as fast as the wall clock; when either
//! is starved it slows down with them. A peer is lost when it missed three beats on both
//! clocks: its host's other peers beat three rounds without it, and three periods passed.
//!
//! Starvation is not fair, though: with 1300 threads runnable on 2 CPUs some peers wait
//! far longer than others, and at 1000 peers 43 running peers still missed three beats of
//! beat time (silent up to 24 s) while the rest beat on. A host where a crowd is overdue
//! at once ([`Liveness::crowded`]: more than 2% of its peers, and more than 2, silent
//! past one and a half periods) is starving, not losing peers one by one: its silent
//! peers wait for the host limit below, as do those of a host its peers measure as
//! saturated (their live counters' timer lag, [`crate::live`]). A peer that died alone
//! on a healthy host is the only one overdue there, and is lost after three beats as
//! before.
//!
//! Two cases beat time cannot see, and how they end:
//!
//! - A host whose every peer fell silent (it is gone, frozen, or starved completely): its
//!   clock stands still. Its peers are lost after [`Liveness::host_silence_ms`] of wall
//!   time, ten periods and at least 30 s; the launcher's engine checks say which it was.
//! - The coordinator itself not getting the CPU: the beats wait unread in its sockets, and
//!   a sweep that comes that late would call everyone lost. A sweep that comes more than
//!   twice its interval late is skipped ([`Liveness::sweep_due`]); the beats are read first.
//!
//! Everything here is synchronous and takes the time as an argument.

use std::collections::BTreeMap;

/// The least wall time a host's peers may all be silent before they are lost.
pub const HOST_SILENCE_MIN_MS: u64 = 30_000;
/// ... and in periods, if that is longer.
pub const HOST_SILENCE_PERIODS: u64 = 10;
/// Missed beats, on both clocks, that make a peer lost.
pub const MISSED_BEATS: u64 = 3;

/// When a peer last beat, on both clocks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    wall_ms: u64,
    beat_ms: f64,
}

impl Mark {
    /// When it last beat, on the wall clock (unix ms).
    pub fn wall_ms(&self) -> u64 {
        self.wall_ms
    }
}

#[derive(Debug, Default)]
struct HostClock {
    /// Beat time, in ms.
    beat_ms: f64,
    /// Peers on the host that are expected to beat.
    live: usize,
}

/// Every host's beat clock, and the sweeps' pace.
#[derive(Debug)]
pub struct Liveness {
    period_ms: u64,
    /// How often the coordinator sweeps.
    sweep_every_ms: u64,
    last_sweep_ms: Option<u64>,
    hosts: BTreeMap<String, HostClock>,
}

/// Why a peer is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// It missed [`MISSED_BEATS`] while its host's other peers beat.
    MissedBeats,
    /// Silent for [`Liveness::host_silence_ms`], the longest wait: what a peer of a
    /// starving host, or of a host gone silent, gets.
    HostSilent,
}

impl Liveness {
    /// Peers beat every `period_ms`; the coordinator sweeps every `sweep_every_ms`.
    pub fn new(period_ms: u64, sweep_every_ms: u64) -> Liveness {
        Liveness {
            period_ms: period_ms.max(1),
            sweep_every_ms: sweep_every_ms.max(1),
            last_sweep_ms: None,
            hosts: BTreeMap::new(),
        }
    }

    /// How long a whole host may be silent before its peers are lost.
    pub fn host_silence_ms(&self) -> u64 {
        (HOST_SILENCE_PERIODS * self.period_ms).max(HOST_SILENCE_MIN_MS)
    }

    /// A peer on `host` now expects to beat (it registered, or came back).
    pub fn joined(&mut self, host: &str) {
        self.hosts.entry(host.to_owned()).or_default().live += 1;
    }

    /// A peer on `host` no longer beats (done, failed, lost, or left the plan).
    pub fn left(&mut self, host: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.live = h.live.saturating_sub(1);
        }
    }

    /// A beat from a peer on `host` at `now`: moves the host's clock, and is the peer's
    /// new mark.
    pub fn beat(&mut self, host: &str, now: u64) -> Mark {
        let h = self.hosts.entry(host.to_owned()).or_default();
        h.beat_ms += self.period_ms as f64 / h.live.max(1) as f64;
        Mark {
            wall_ms: now,
            beat_ms: h.beat_ms,
        }
    }

    /// A mark for a peer that has not beaten yet (it registers now): the clocks as they are.
    pub fn mark_now(&mut self, host: &str, now: u64) -> Mark {
        let h = self.hosts.entry(host.to_owned()).or_default();
        Mark {
            wall_ms: now,
            beat_ms: h.beat_ms,
        }
    }

    /// True when a sweep at `now` should run: not when it comes more than twice its
    /// interval after the previous one (the coordinator was starved, and the beats that
    /// waited are to be read first). Either way `now` is the previous sweep from here on.
    pub fn sweep_due(&mut self, now: u64) -> bool {
        let late = self
            .last_sweep_ms
            .is_some_and(|last| now.saturating_sub(last) > 2 * self.sweep_every_ms);
        self.last_sweep_ms = Some(now);
        !late
    }

    /// True when a peer last marked at `mark` is overdue at `now`: silent past one and a
    /// half periods.
    pub fn overdue(&self, mark: Mark, now: u64) -> bool {
        now.saturating_sub(mark.wall_ms) > self.period_ms * 3 / 2
    }

    /// True when `overdue` of `host`'s peers being overdue at once means the host is
    /// starving: more than 2% of its live peers, and more than 2.
    pub fn crowded(&self, host: &str, overdue: usize) -> bool {
        let live = self.hosts.get(host).map_or(0, |h| h.live);
        overdue > (live / 50).max(2)
    }

    /// Whether a peer on `host` last marked at `mark` is lost at `now`, and why; `crowded`
    /// when its host is starving ([`Liveness::crowded`]).
    pub fn silence(&self, host: &str, mark: Mark, now: u64, crowded: bool) -> Option<Silence> {
        let wall = now.saturating_sub(mark.wall_ms);
        let limit = MISSED_BEATS * self.period_ms;
        if wall <= limit {
            return None;
        }
        let beat = self.hosts.get(host).map_or(0.0, |h| h.beat_ms) - mark.beat_ms;
        if beat > limit as f64 && !crowded {
            Some(Silence::MissedBeats)
        } else if wall > self.host_silence_ms() {
            Some(Silence::HostSilent)
        } else {
            None
        }
    }

    /// What [`Liveness::silence`] means, for the peer's reason.
    pub fn describe(&self, silence: Silence) -> String {
        match silence {
            Silence::MissedBeats => format!(
                "no heartbeat for {MISSED_BEATS} beats of {} ms while its host's other peers beat",
                self.period_ms
            ),
            Silence::HostSilent => format!(
                "no heartbeat for more than {} ms, the longest wait (its host starving or silent)",
                self.host_silence_ms()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` peers on host "h", each beating every `period` from its own phase, except
    /// those `silent` after `from`; `slow` stretches every gap (a starved host).
    fn run(
        live: &mut Liveness,
        n: usize,
        until: u64,
        slow: u64,
        silent_from: impl Fn(usize) -> Option<u64>,
    ) -> Vec<Mark> {
        let mut marks: Vec<Mark> = (0..n).map(|_| live.mark_now("h", 0)).collect();
        let period = live.period_ms * slow;
        let mut beats: Vec<(u64, usize)> = (0..n)
            .flat_map(|i| {
                let phase = period * i as u64 / n as u64;
                (0..)
                    .map(move |k| phase + k * period)
                    .take_while(move |&t| t <= until)
                    .map(move |t| (t, i))
            })
            .filter(|&(t, i)| silent_from(i).is_none_or(|s| t < s))
            .collect();
        beats.sort();
        for (t, i) in beats {
            marks[i] = live.beat("h", t);
        }
        marks
    }

    fn live(n: usize) -> Liveness {
        let mut l = Liveness::new(1000, 500);
        for _ in 0..n {
            l.joined("h");
        }
        l
    }

    #[test]
    fn a_silent_peer_among_beating_ones_is_lost_after_three_beats() {
        let mut l = live(10);
        let marks = run(&mut l, 10, 20_000, 1, |i| (i == 3).then_some(5_000));
        assert_eq!(l.silence("h", marks[0], 20_000, false), None);
        // Its last beat came at 4.3 s; three beats of 1 s later the others beat on.
        assert_eq!(l.silence("h", marks[3], 7_000, false), None);
        assert_eq!(
            l.silence("h", marks[3], 20_000, false),
            Some(Silence::MissedBeats),
            "{:?}",
            marks[3]
        );
    }

    #[test]
    fn a_starved_host_whose_peers_all_beat_late_loses_none() {
        // Every beat takes five times as long: 5 s gaps, where three 1 s beats would have
        // called every peer lost on the wall clock.
        let mut l = live(10);
        let marks = run(&mut l, 10, 60_000, 5, |_| None);
        for (i, m) in marks.iter().enumerate() {
            // Just before each one's next beat is due.
            assert_eq!(
                l.silence("h", *m, m.wall_ms + 4_900, false),
                None,
                "peer {i}"
            );
        }
        // On that host a peer that stops is still found, later: when the others beat
        // three of its rounds without it.
        let mut l = live(10);
        let marks = run(&mut l, 10, 60_000, 5, |i| (i == 0).then_some(10_000));
        assert_eq!(
            l.silence("h", marks[0], 60_000, false),
            Some(Silence::MissedBeats)
        );
    }

    #[test]
    fn a_host_gone_silent_loses_its_peers_after_the_host_limit() {
        let mut l = live(4);
        let marks = run(&mut l, 4, 5_000, 1, |_| None);
        let last = marks.iter().map(|m| m.wall_ms).max().unwrap();
        assert_eq!(l.host_silence_ms(), 30_000);
        assert_eq!(l.silence("h", marks[0], last + 29_000, false), None);
        assert_eq!(
            l.silence("h", marks[0], last + 30_001, false),
            Some(Silence::HostSilent)
        );
        assert_eq!(Liveness::new(4000, 2000).host_silence_ms(), 40_000);
    }

    #[test]
    fn peers_that_left_do_not_slow_their_hosts_clock() {
        // 10 peers, 9 done: the last one's silence still counts at the wall's pace.
        let mut l = live(10);
        for _ in 0..9 {
            l.left("h");
        }
        let mut marks = [l.mark_now("h", 0); 2];
        for t in (0..=10_000).step_by(1000) {
            marks[0] = l.beat("h", t);
        }
        assert_eq!(
            l.silence("h", marks[1], 4_000, false),
            Some(Silence::MissedBeats)
        );
        // On another host, a peer's clock is its own.
        l.joined("other");
        let m = l.mark_now("other", 0);
        assert_eq!(l.silence("other", m, 4_000, false), None);
        assert_eq!(
            l.silence("other", m, 30_001, false),
            Some(Silence::HostSilent)
        );
    }

    #[test]
    fn a_crowd_overdue_at_once_is_a_starving_host_not_lost_peers() {
        let mut l = live(1000);
        assert!(!l.crowded("h", 1), "one peer alone");
        assert!(!l.crowded("h", 20));
        assert!(l.crowded("h", 21));
        let mut small = live(4);
        assert!(
            !small.crowded("h", 2),
            "two of four killed: still lost after 3 beats"
        );
        assert!(small.crowded("h", 3));
        // A peer silent for 5 periods while the others beat: lost, unless the host is
        // crowded; then the host limit.
        let marks = run(&mut l, 1000, 20_000, 1, |i| (i == 7).then_some(15_000));
        assert!(l.overdue(marks[7], 20_000) && !l.overdue(marks[8], 20_000));
        assert_eq!(
            l.silence("h", marks[7], 20_000, false),
            Some(Silence::MissedBeats)
        );
        assert_eq!(l.silence("h", marks[7], 20_000, true), None);
        assert_eq!(
            l.silence("h", marks[7], 50_000, true),
            Some(Silence::HostSilent)
        );
        small.left("h");
    }

    #[test]
    fn a_sweep_that_comes_late_is_skipped_once() {
        let mut l = Liveness::new(1000, 500);
        assert!(l.sweep_due(0));
        assert!(l.sweep_due(500));
        assert!(l.sweep_due(1_400));
        assert!(!l.sweep_due(5_000), "the coordinator slept 3.6 s");
        assert!(l.sweep_due(5_500));
        l.left("nobody");
        assert_eq!(
            l.describe(Silence::MissedBeats),
            "no heartbeat for 3 beats of 1000 ms while its host's other peers beat"
        );
    }
}
