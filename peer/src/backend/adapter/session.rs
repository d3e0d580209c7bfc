//! The adapter protocol as the peer keeps it: which writes wait for `written`, how far
//! each origin's records are held, how many links the app has, what the adapter asked
//! of the sync service, and whether a deadline has passed.
//!
//! Synchronous, with time passed in (Unix microseconds), like the coordinator's state:
//! [`super`] feeds it each parsed line ([`Session::on_message`]) and the clock
//! ([`Session::check`]), and carries out the [`Effect`] it returns. Anything the adapter
//! does wrong is a [`Failure`], which ends this peer and no other.

use crate::backend::progress::Progress;
use cmesh_common::adapter::{
    check_name, FromAdapter, LogLevel, RecordId, SubscribeFrom, SYNC_LIMITS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long the adapter may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// From `init` to `ready` (the app's start).
    pub ready: Duration,
    /// From `write` to `written`, and from `stop` to `stopped`.
    pub answer: Duration,
    /// A write acknowledged within this long of being sent counts as available.
    pub in_time: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            ready: Duration::from_secs(60),
            answer: Duration::from_secs(30),
            in_time: Duration::from_millis(crate::metrics::PROBE_DEADLINE_MS),
        }
    }
}

/// Why the adapter's peer fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A line that is not a protocol message, or one that breaks the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The adapter said `error`.
    #[error("the adapter reported an error: {0}")]
    App(String),
    /// The adapter missed a deadline.
    #[error("{0}")]
    Deadline(String),
    /// The adapter exited, or its pipes broke.
    #[error("{0}")]
    Exited(String),
    /// Past a bound of the sync service.
    #[error("the sync service refused the adapter: {0}")]
    Limit(String),
}

/// What the I/O around the session has to do for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing (a duplicate ack, links, a repeated subscription).
    None,
    /// The app is up.
    Ready,
    /// A record from another origin arrived at `at_us` (this peer's clock).
    Seen {
        origin: u32,
        written_at_us: u64,
        at_us: u64,
    },
    /// A record the app had already reported.
    Duplicate,
    Publish {
        topic: String,
        value: String,
    },
    Subscribe {
        topic: String,
        from: SubscribeFrom,
    },
    Barrier {
        name: String,
    },
    Log {
        level: LogLevel,
        message: String,
    },
    Stopped,
}

/// The protocol's state.
#[derive(Debug)]
pub struct Session {
    me: u32,
    origins: usize,
    deadlines: Deadlines,
    started_us: u64,
    ready: bool,
    stopping_since_us: Option<u64>,
    next_seq: u64,
    /// Writes not yet acknowledged: sequence number → when sent.
    pending: BTreeMap<u64, u64>,
    writes_in_time: u64,
    progress: Progress,
    links: u32,
    subscribed: BTreeSet<String>,
    barriers: BTreeSet<String>,
}

impl Session {
    /// A session for peer `me` of `origins`, its `init` sent at `now_us`.
    pub fn new(me: u32, origins: usize, deadlines: Deadlines, now_us: u64) -> Self {
        Session {
            me,
            origins,
            deadlines,
            started_us: now_us,
            ready: false,
            stopping_since_us: None,
            next_seq: 0,
            pending: BTreeMap::new(),
            writes_in_time: 0,
            progress: Progress::new(origins),
            links: 0,
            subscribed: BTreeSet::new(),
            barriers: BTreeSet::new(),
        }
    }

    /// A new record of this peer's, written at `now_us`: its id, for a `write`.
    pub fn write(&mut self, now_us: u64) -> RecordId {
        self.next_seq += 1;
        self.pending.insert(self.next_seq, now_us);
        self.progress.insert(self.me, self.next_seq);
        RecordId {
            origin: self.me,
            seq: self.next_seq,
            written_at_us: now_us,
        }
    }

    /// `stop` was sent at `now_us`.
    pub fn stopping(&mut self, now_us: u64) {
        self.stopping_since_us.get_or_insert(now_us);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping_since_us.is_some()
    }

    /// Takes one message from the adapter, arrived at `now_us`.
    pub fn on_message(&mut self, message: FromAdapter, now_us: u64) -> Result<Effect, Failure> {
        Ok(match message {
            FromAdapter::Ready => {
                if self.ready {
                    Effect::None
                } else {
                    self.ready = true;
                    Effect::Ready
                }
            }
            FromAdapter::Written { id } => {
                if id.origin != self.me {
                    return Err(Failure::Protocol(format!(
                        "the adapter acknowledged `written` for record {id}, which peer {} wrote, not this one ({})",
                        id.origin, self.me
                    )));
                }
                if let Some(sent) = self.pending.remove(&id.seq) {
                    let took = now_us.saturating_sub(sent);
                    self.writes_in_time +=
                        u64::from(took <= self.deadlines.in_time.as_micros() as u64);
                }
                Effect::None
            }
            FromAdapter::Seen { id, at_us } => {
                if id.origin as usize >= self.origins {
                    return Err(Failure::Protocol(format!(
                        "the adapter reported `seen` for record {id}, whose origin {} is not in the run's {} peers",
                        id.origin, self.origins
                    )));
                }
                if id.origin == self.me {
                    Effect::None
                } else if self.progress.insert(id.origin, id.seq) {
                    Effect::Seen {
                        origin: id.origin,
                        written_at_us: id.written_at_us,
                        // The app's own time, if it has one, but never in the future.
                        at_us: at_us.map_or(now_us, |t| t.min(now_us)),
                    }
                } else {
                    Effect::Duplicate
                }
            }
            FromAdapter::Links { count } => {
                self.links = count;
                Effect::None
            }
            FromAdapter::Log { level, message } => Effect::Log { level, message },
            FromAdapter::Error { message } => return Err(Failure::App(message)),
            FromAdapter::Publish { topic, value } => {
                check_name("topic", &topic).map_err(Failure::Limit)?;
                if value.len() > SYNC_LIMITS.value_bytes {
                    return Err(Failure::Limit(format!(
                        "a value on topic `{topic}` is {} bytes; the sync service keeps values of at most {} bytes",
                        value.len(),
                        SYNC_LIMITS.value_bytes
                    )));
                }
                Effect::Publish { topic, value }
            }
            FromAdapter::Subscribe { topic, from } => {
                check_name("topic", &topic).map_err(Failure::Limit)?;
                if self.subscribed.contains(&topic) {
                    Effect::None
                } else if self.subscribed.len() >= SYNC_LIMITS.topics {
                    return Err(Failure::Limit(format!(
                        "the adapter subscribed to {} topics already, the most there are",
                        SYNC_LIMITS.topics
                    )));
                } else {
                    self.subscribed.insert(topic.clone());
                    Effect::Subscribe { topic, from }
                }
            }
            FromAdapter::Barrier { name } => {
                check_name("barrier", &name).map_err(Failure::Limit)?;
                if self.barriers.contains(&name) {
                    Effect::None
                } else if self.barriers.len() >= SYNC_LIMITS.barriers_per_peer {
                    return Err(Failure::Limit(format!(
                        "the adapter arrived at {} app barriers already, the most one peer may",
                        SYNC_LIMITS.barriers_per_peer
                    )));
                } else {
                    self.barriers.insert(name.clone());
                    Effect::Barrier { name }
                }
            }
            FromAdapter::Stopped => Effect::Stopped,
        })
    }

    /// Whether a deadline has passed by `now_us`.
    pub fn check(&self, now_us: u64) -> Result<(), Failure> {
        let past =
            |since: u64, limit: Duration| now_us.saturating_sub(since) > limit.as_micros() as u64;
        if !self.ready && past(self.started_us, self.deadlines.ready) {
            return Err(Failure::Deadline(format!(
                "the adapter did not answer `init` with `ready` within {:?} (peer --adapter-ready-timeout); its stderr, in the peer's log, may say why",
                self.deadlines.ready
            )));
        }
        if let Some(since) = self.stopping_since_us {
            if past(since, self.deadlines.answer) {
                return Err(Failure::Deadline(format!(
                    "the adapter did not answer `stop` with `stopped` within {:?}",
                    self.deadlines.answer
                )));
            }
            return Ok(());
        }
        if let Some((&seq, &sent)) = self.pending.iter().next() {
            if past(sent, self.deadlines.answer) {
                let id = RecordId {
                    origin: self.me,
                    seq,
                    written_at_us: sent,
                };
                return Err(Failure::Deadline(format!(
                    "the adapter did not acknowledge `write` {id} with `written` within {:?} ({} writes wait; peer --adapter-answer-timeout)",
                    self.deadlines.answer,
                    self.pending.len()
                )));
            }
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Per origin, the highest sequence number held with nothing missing below.
    pub fn progress(&self) -> Vec<u64> {
        self.progress.version_vector()
    }

    /// Peers the app said it is connected to.
    pub fn links(&self) -> u32 {
        self.links
    }

    /// Writes acknowledged within [`Deadlines::in_time`].
    pub fn writes_in_time(&self) -> u64 {
        self.writes_in_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn session() -> Session {
        Session::new(1, 3, Deadlines::default(), 10 * S)
    }

    fn seen(id: &str, at_us: Option<u64>) -> FromAdapter {
        FromAdapter::Seen {
            id: id.parse().unwrap(),
            at_us,
        }
    }

    #[test]
    fn writes_are_numbered_and_acknowledged_in_time_or_late() {
        let mut s = session();
        assert_eq!(s.on_message(FromAdapter::Ready, 11 * S), Ok(Effect::Ready));
        let a = s.write(20 * S);
        let b = s.write(21 * S);
        assert_eq!((a.origin, a.seq, a.written_at_us), (1, 1, 20 * S));
        assert_eq!(b.seq, 2);
        assert_eq!(s.progress(), vec![0, 2, 0], "its own writes are held");
        s.on_message(FromAdapter::Written { id: a }, 20 * S + 50_000)
            .unwrap();
        s.on_message(FromAdapter::Written { id: b }, 21 * S + 500_000)
            .unwrap();
        assert_eq!(s.writes_in_time(), 1, "the second took 500 ms");
        s.on_message(FromAdapter::Written { id: a }, 22 * S)
            .unwrap();
        assert_eq!(s.writes_in_time(), 1, "a repeated ack counts once");
        let other = "0-1-5".parse().unwrap();
        let e = s
            .on_message(FromAdapter::Written { id: other }, 22 * S)
            .unwrap_err();
        assert!(matches!(e, Failure::Protocol(_)), "{e}");
    }

    #[test]
    fn seen_records_become_latency_samples_once_each() {
        let mut s = session();
        assert_eq!(
            s.on_message(seen("0-1-5000000", None), 12 * S),
            Ok(Effect::Seen {
                origin: 0,
                written_at_us: 5 * S,
                at_us: 12 * S
            })
        );
        assert_eq!(
            s.on_message(seen("0-1-5000000", None), 13 * S),
            Ok(Effect::Duplicate)
        );
        assert_eq!(
            s.on_message(seen("2-1-5000000", Some(11 * S)), 12 * S),
            Ok(Effect::Seen {
                origin: 2,
                written_at_us: 5 * S,
                at_us: 11 * S
            }),
            "the app's own time"
        );
        assert_eq!(
            s.on_message(seen("2-2-5000000", Some(99 * S)), 12 * S),
            Ok(Effect::Seen {
                origin: 2,
                written_at_us: 5 * S,
                at_us: 12 * S
            }),
            "never in the future"
        );
        assert_eq!(s.on_message(seen("1-9-1", None), 12 * S), Ok(Effect::None));
        assert_eq!(s.progress(), vec![1, 0, 2]);
        let e = s.on_message(seen("3-1-1", None), 12 * S).unwrap_err();
        assert!(e.to_string().contains("not in the run's 3 peers"), "{e}");
    }

    #[test]
    fn deadlines_end_a_silent_adapter() {
        let mut s = session();
        assert!(s.check(69 * S).is_ok());
        let e = s.check(71 * S).unwrap_err().to_string();
        assert!(
            e.contains("did not answer `init` with `ready` within 60s"),
            "{e}"
        );
        s.on_message(FromAdapter::Ready, 71 * S).unwrap();
        assert!(s.check(71 * S).is_ok());
        let id = s.write(80 * S);
        assert!(s.check(109 * S).is_ok());
        let e = s.check(111 * S).unwrap_err().to_string();
        assert!(e.contains(&format!("acknowledge `write` {id}")), "{e}");
        s.on_message(FromAdapter::Written { id }, 111 * S).unwrap();
        assert!(s.check(200 * S).is_ok());
        s.stopping(200 * S);
        let e = s.check(231 * S).unwrap_err().to_string();
        assert!(e.contains("`stop` with `stopped`"), "{e}");
    }

    #[test]
    fn sync_requests_are_bounded_before_they_leave_the_peer() {
        let mut s = session();
        let publish = |topic: &str, n: usize| FromAdapter::Publish {
            topic: topic.into(),
            value: "x".repeat(n),
        };
        assert!(matches!(
            s.on_message(publish("device-id", 10), S),
            Ok(Effect::Publish { .. })
        ));
        let e = s.on_message(publish("device-id", 5000), S).unwrap_err();
        assert!(e.to_string().contains("at most 4096 bytes"), "{e}");
        let e = s.on_message(publish("a/b", 1), S).unwrap_err();
        assert!(e.to_string().contains("not a topic name"), "{e}");
        let sub = |topic: String| FromAdapter::Subscribe {
            topic,
            from: SubscribeFrom::All,
        };
        assert!(matches!(
            s.on_message(sub("t".into()), S),
            Ok(Effect::Subscribe { .. })
        ));
        assert_eq!(s.on_message(sub("t".into()), S), Ok(Effect::None));
        for i in 1..SYNC_LIMITS.topics {
            s.on_message(sub(format!("t{i}")), S).unwrap();
        }
        let e = s.on_message(sub("more".into()), S).unwrap_err();
        assert!(e.to_string().contains("64 topics already"), "{e}");
        for i in 0..SYNC_LIMITS.barriers_per_peer {
            let b = FromAdapter::Barrier {
                name: format!("b{i}"),
            };
            assert!(matches!(s.on_message(b, S), Ok(Effect::Barrier { .. })));
        }
        let e = s
            .on_message(FromAdapter::Barrier { name: "b9".into() }, S)
            .unwrap_err();
        assert!(e.to_string().contains("8 app barriers"), "{e}");
        let e = s
            .on_message(
                FromAdapter::Error {
                    message: "disk full".into(),
                },
                S,
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "the adapter reported an error: disk full");
    }
}
