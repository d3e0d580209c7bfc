//! The sync service: what apps must exchange before they can connect (device ids, keys,
//! addresses), published on named topics and read back by every peer that subscribes,
//! after Testground's sync service.
//!
//! A topic is an append-only list of [`Publication`]s, numbered 1, 2, … in the order the
//! coordinator took them; a reader asks for what came after the last number it saw, and
//! long-polls on [`Topics::signal`] when there is nothing new. Like the rest of the
//! coordinator's state it is synchronous, and every bound of
//! [`cmesh_common::adapter::SyncLimits`] is checked before anything is kept: a peer past
//! one gets [`SyncError::Limit`] naming it, and the run goes on. App barriers are not
//! here: they are the run's barriers under an `app-` name
//! ([`cmesh_common::adapter::app_barrier`]).

use cmesh_common::adapter::{check_name, Publication, SyncLimits};
use std::collections::BTreeMap;
use tokio::sync::watch;

/// Why a publication was not kept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// A malformed topic name.
    #[error("{0}")]
    BadName(String),
    /// Past one of the run's bounds.
    #[error("{0}")]
    Limit(String),
}

/// Every topic of a run.
#[derive(Debug)]
pub struct Topics {
    limits: SyncLimits,
    topics: BTreeMap<String, Vec<Publication>>,
    /// Values each peer has published.
    published: BTreeMap<String, usize>,
    bytes: usize,
    /// How many publications there are over all topics: long-polls wait on it.
    count: watch::Sender<u64>,
}

impl Topics {
    pub fn new(limits: SyncLimits) -> Self {
        Topics {
            limits,
            topics: BTreeMap::new(),
            published: BTreeMap::new(),
            bytes: 0,
            count: watch::channel(0).0,
        }
    }

    /// Keeps `peer`'s `value` on `topic`; returns its number on the topic.
    pub fn publish(&mut self, topic: &str, peer: &str, value: &str) -> Result<u64, SyncError> {
        check_name("topic", topic).map_err(SyncError::BadName)?;
        let l = self.limits;
        if value.len() > l.value_bytes {
            return Err(SyncError::Limit(format!(
                "a value on topic `{topic}` is {} bytes; the sync service keeps values of at most {} bytes",
                value.len(),
                l.value_bytes
            )));
        }
        if !self.topics.contains_key(topic) && self.topics.len() >= l.topics {
            return Err(SyncError::Limit(format!(
                "the run has {} topics already, the most the sync service keeps; `{topic}` is not opened",
                l.topics
            )));
        }
        let mine = self.published.get(peer).copied().unwrap_or(0);
        if mine >= l.per_peer {
            return Err(SyncError::Limit(format!(
                "peer `{peer}` has published {mine} values, the most one peer may publish"
            )));
        }
        if self.bytes + value.len() > l.total_bytes {
            return Err(SyncError::Limit(format!(
                "the run's sync service holds {} bytes; `{peer}`'s {} more would pass its {} bytes",
                self.bytes,
                value.len(),
                l.total_bytes
            )));
        }
        let list = self.topics.entry(topic.to_owned()).or_default();
        let seq = list.len() as u64 + 1;
        list.push(Publication {
            seq,
            peer: peer.to_owned(),
            value: value.to_owned(),
        });
        *self.published.entry(peer.to_owned()).or_default() += 1;
        self.bytes += value.len();
        self.count.send_modify(|n| *n += 1);
        Ok(seq)
    }

    /// What `topic` holds after its first `after` publications (at most `max`).
    pub fn after(&self, topic: &str, after: u64, max: usize) -> Vec<Publication> {
        self.topics
            .get(topic)
            .map(|list| {
                list.iter()
                    .skip(usize::try_from(after).unwrap_or(usize::MAX))
                    .take(max)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many publications the run has: changes whenever one is kept.
    pub fn signal(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::adapter::SYNC_LIMITS;

    fn small() -> Topics {
        Topics::new(SyncLimits {
            topics: 2,
            value_bytes: 8,
            per_peer: 3,
            total_bytes: 20,
            barriers_per_peer: 1,
        })
    }

    #[test]
    fn publications_are_numbered_per_topic_and_read_after_a_number() {
        let mut t = Topics::new(SYNC_LIMITS);
        let signal = t.signal();
        assert_eq!(t.publish("device-id", "p1", "AAA"), Ok(1));
        assert_eq!(t.publish("device-id", "p2", "BBB"), Ok(2));
        assert_eq!(t.publish("keys", "p1", "k"), Ok(1));
        assert_eq!(*signal.borrow(), 3);
        let all = t.after("device-id", 0, 100);
        assert_eq!(
            all.iter()
                .map(|p| (&*p.peer, &*p.value))
                .collect::<Vec<_>>(),
            [("p1", "AAA"), ("p2", "BBB")]
        );
        assert_eq!(t.after("device-id", 1, 100)[0].seq, 2);
        assert!(t.after("device-id", 2, 100).is_empty());
        assert!(t.after("device-id", u64::MAX, 100).is_empty());
        assert!(t.after("nothing", 0, 100).is_empty());
        assert_eq!(t.after("device-id", 0, 1).len(), 1);
    }

    #[test]
    fn every_bound_is_checked_before_anything_is_kept() {
        let mut t = small();
        let e = t.publish("a b", "p1", "x").unwrap_err();
        assert!(matches!(e, SyncError::BadName(_)), "{e}");
        let e = t.publish("t", "p1", "123456789").unwrap_err().to_string();
        assert!(e.contains("9 bytes") && e.contains("at most 8"), "{e}");
        t.publish("t1", "p1", "1").unwrap();
        t.publish("t2", "p1", "1").unwrap();
        let e = t.publish("t3", "p2", "1").unwrap_err().to_string();
        assert!(e.contains("2 topics already"), "{e}");
        t.publish("t1", "p1", "1").unwrap();
        let e = t.publish("t1", "p1", "1").unwrap_err().to_string();
        assert!(e.contains("`p1` has published 3 values"), "{e}");
        t.publish("t1", "p2", "12345678").unwrap();
        t.publish("t1", "p3", "12345678").unwrap();
        let e = t.publish("t1", "p4", "12").unwrap_err().to_string();
        assert!(e.contains("would pass its 20 bytes"), "{e}");
        assert_eq!(
            t.after("t1", 0, 100).len(),
            4,
            "refused values are not kept"
        );
        assert_eq!(*t.signal().borrow(), 5);
    }
}
