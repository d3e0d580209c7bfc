//! The replicated record log a mesh peer holds, with bounded memory.
//!
//! For each origin the store keeps a *version*: the highest sequence number `s` such that
//! every record `1..=s` of that origin has been seen (plus the few seen out of order above
//! it). The versions of all origins form the peer's *version vector*. On (re)connect two
//! neighbours swap version vectors and each sends only the records the other lacks
//! ([`RecordStore::missing_for`]): delta sync.
//!
//! Only a window of the most recent records per origin is kept. A record older than every
//! neighbour's window can no longer be delivered; when a gap stays open longer than the
//! window, the store skips past it and counts the skipped records as *missed*, so
//! memory stays bounded whatever the network does.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One record of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The writer's index in the plan.
    pub origin: u32,
    /// The writer's sequence number, from 1.
    pub seq: u64,
    /// The writer's clock when it wrote the record, µs since the Unix epoch.
    pub written_at_us: u64,
    pub payload: Bytes,
}

impl Record {
    /// Bytes the record takes in a frame (postcard: varints plus the payload).
    pub fn wire_size(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(self.payload.len() + 24)
    }
}

#[derive(Debug, Default)]
struct OriginLog {
    /// Every seq in 1..=contiguous is known.
    contiguous: u64,
    /// Seqs known above `contiguous` (arrived out of order).
    above: BTreeSet<u64>,
    /// The most recent records, by seq.
    recent: BTreeMap<u64, Record>,
    recent_bytes: usize,
    missed: u64,
}

/// What [`RecordStore::insert`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// The windowed log of every origin's records.
#[derive(Debug)]
pub struct RecordStore {
    window: usize,
    origins: Vec<OriginLog>,
}

impl RecordStore {
    /// A store for `origins` origins keeping the `window` most recent records of each.
    pub fn new(origins: usize, window: usize) -> Self {
        RecordStore {
            window: window.max(1),
            origins: (0..origins).map(|_| OriginLog::default()).collect(),
        }
    }

    /// Adds a record if it is new. Records from unknown origins are ignored as duplicates.
    pub fn insert(&mut self, record: Record) -> Inserted {
        let window = self.window;
        let Some(log) = self.origins.get_mut(record.origin as usize) else {
            return Inserted::Duplicate;
        };
        let seq = record.seq;
        if seq == 0 || seq <= log.contiguous || log.above.contains(&seq) {
            return Inserted::Duplicate;
        }
        if seq == log.contiguous + 1 {
            log.contiguous = seq;
            while log.above.remove(&(log.contiguous + 1)) {
                log.contiguous += 1;
            }
        } else {
            log.above.insert(seq);
            if log.above.len() > window {
                // The gap below has outlived the window: nobody can still send it.
                let first = *log.above.first().expect("not empty");
                log.missed += first - 1 - log.contiguous;
                log.contiguous = first - 1;
                while log.above.remove(&(log.contiguous + 1)) {
                    log.contiguous += 1;
                }
            }
        }
        log.recent_bytes += record.wire_size();
        log.recent.insert(seq, record);
        while log.recent.len() > window {
            if let Some((_, old)) = log.recent.pop_first() {
                log.recent_bytes -= old.wire_size();
            }
        }
        Inserted::New
    }

    /// The version vector: per origin, the highest seq with nothing missing below.
    pub fn version_vector(&self) -> Vec<u64> {
        self.origins.iter().map(|l| l.contiguous).collect()
    }

    /// The records held that a peer with version vector `theirs` lacks, oldest first per
    /// origin. Records it holds out of order above its version are sent again (rare; the
    /// receiver drops them as duplicates).
    pub fn missing_for(&self, theirs: &[u64]) -> Vec<Record> {
        self.origins
            .iter()
            .enumerate()
            .flat_map(|(i, log)| {
                let have = theirs.get(i).copied().unwrap_or(0);
                log.recent.range(have + 1..).map(|(_, r)| r.clone())
            })
            .collect()
    }

    /// Whether record `seq` of `origin` is held (or was, before the window moved on).
    pub fn holds(&self, origin: u32, seq: u64) -> bool {
        self.origins
            .get(origin as usize)
            .is_none_or(|l| seq <= l.contiguous || l.above.contains(&seq))
    }

    /// The records of `origin` held after sequence `after`, oldest first.
    pub fn after(&self, origin: u32, after: u64) -> Vec<Record> {
        self.origins
            .get(origin as usize)
            .map(|l| {
                l.recent
                    .range(after + 1..)
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bytes a full resend of everything held would put on the wire.
    pub fn window_bytes(&self) -> u64 {
        self.origins.iter().map(|l| l.recent_bytes as u64).sum()
    }

    /// Records skipped past because they outlived the window, over all origins.
    pub fn missed(&self) -> u64 {
        self.origins.iter().map(|l| l.missed).sum()
    }

    /// Records held, over all origins.
    pub fn held(&self) -> usize {
        self.origins.iter().map(|l| l.recent.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(origin: u32, seq: u64) -> Record {
        Record {
            origin,
            seq,
            written_at_us: seq * 1000,
            payload: Bytes::from(vec![seq as u8; 32]),
        }
    }

    #[test]
    fn says_what_it_holds_and_hands_out_an_origins_records_after_a_sequence() {
        let mut s = RecordStore::new(2, 100);
        for seq in [1, 2, 4] {
            s.insert(rec(1, seq));
        }
        assert!(s.holds(1, 2) && s.holds(1, 4) && !s.holds(1, 3) && !s.holds(0, 1));
        assert!(
            s.holds(7, 1),
            "an origin outside the plan has nothing to fetch"
        );
        let after: Vec<u64> = s.after(1, 1).iter().map(|r| r.seq).collect();
        assert_eq!(after, vec![2, 4]);
        assert!(s.after(0, 0).is_empty() && s.after(9, 0).is_empty());
    }

    #[test]
    fn tracks_versions_through_out_of_order_arrival() {
        let mut s = RecordStore::new(2, 100);
        assert_eq!(s.insert(rec(0, 1)), Inserted::New);
        assert_eq!(s.insert(rec(0, 3)), Inserted::New);
        assert_eq!(s.version_vector(), vec![1, 0]);
        assert_eq!(s.insert(rec(0, 3)), Inserted::Duplicate);
        assert_eq!(s.insert(rec(0, 2)), Inserted::New);
        assert_eq!(s.version_vector(), vec![3, 0]);
        assert_eq!(s.insert(rec(0, 1)), Inserted::Duplicate);
        assert_eq!(s.insert(rec(7, 1)), Inserted::Duplicate, "unknown origin");
    }

    #[test]
    fn a_cut_off_peer_gets_only_what_it_lacks() {
        // A and B both saw 1..=60 of origin 0 and 1..=10 of origin 1; then B was cut off
        // while A received 61..=100 and 11..=15.
        let (mut a, mut b) = (RecordStore::new(2, 1000), RecordStore::new(2, 1000));
        for seq in 1..=60 {
            a.insert(rec(0, seq));
            b.insert(rec(0, seq));
        }
        for seq in 1..=10 {
            a.insert(rec(1, seq));
            b.insert(rec(1, seq));
        }
        for seq in 61..=100 {
            a.insert(rec(0, seq));
        }
        for seq in 11..=15 {
            a.insert(rec(1, seq));
        }
        let delta = a.missing_for(&b.version_vector());
        assert_eq!(delta.len(), 45, "only the 40 + 5 missing records");
        assert!(delta
            .iter()
            .all(|r| (r.origin == 0 && r.seq > 60) || (r.origin == 1 && r.seq > 10)));
        let delta_bytes: u64 = delta.iter().map(|r| r.wire_size() as u64).sum();
        assert!(
            delta_bytes * 2 < a.window_bytes(),
            "delta is well under a full resend"
        );
        for r in delta {
            assert_eq!(b.insert(r), Inserted::New);
        }
        assert_eq!(b.version_vector(), a.version_vector());
        assert!(
            a.missing_for(&b.version_vector()).is_empty(),
            "nothing left to send"
        );
        assert!(b.missing_for(&a.version_vector()).is_empty());
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut s = RecordStore::new(1, 16);
        for seq in 1..=1000 {
            s.insert(rec(0, seq));
        }
        assert_eq!(s.held(), 16);
        assert_eq!(s.version_vector(), vec![1000]);
        let expected: u64 = (985..=1000).map(|q| rec(0, q).wire_size() as u64).sum();
        assert_eq!(s.window_bytes(), expected);
        // A peer far behind gets the window, not everything.
        assert_eq!(s.missing_for(&[0]).len(), 16);
    }

    #[test]
    fn a_gap_older_than_the_window_is_skipped_and_counted() {
        let mut s = RecordStore::new(1, 4);
        s.insert(rec(0, 1));
        // 2..=3 never arrive; 4.. keep coming.
        for seq in 4..=8 {
            s.insert(rec(0, seq));
        }
        assert_eq!(s.version_vector(), vec![8]);
        assert_eq!(s.missed(), 2);
        assert_eq!(s.insert(rec(0, 2)), Inserted::Duplicate, "too late now");
    }
}
