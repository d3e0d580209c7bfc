//! Per origin, how far a backend holds every record: the version vector that
//! [`super::SyncBackend::progress`] returns, kept for backends whose app tells of
//! records one at a time and in any order (Ditto's observer, an adapter's `seen`).

use std::collections::BTreeSet;

/// Per origin, the contiguous progress and the sequence numbers held above it.
#[derive(Debug, Default)]
pub struct Progress {
    contiguous: Vec<u64>,
    above: Vec<BTreeSet<u64>>,
}

impl Progress {
    pub fn new(origins: usize) -> Self {
        Progress {
            contiguous: vec![0; origins],
            above: vec![BTreeSet::new(); origins],
        }
    }

    /// Records that `origin`'s `seq` is held; returns false if it already was.
    pub fn insert(&mut self, origin: u32, seq: u64) -> bool {
        let o = origin as usize;
        if o >= self.contiguous.len() || seq <= self.contiguous[o] || !self.above[o].insert(seq) {
            return false;
        }
        while self.above[o].remove(&(self.contiguous[o] + 1)) {
            self.contiguous[o] += 1;
        }
        true
    }

    /// Per origin, the highest sequence number held with nothing missing below.
    pub fn version_vector(&self) -> Vec<u64> {
        self.contiguous.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_contiguous_per_origin() {
        let mut p = Progress::new(2);
        assert!(p.insert(1, 2));
        assert_eq!(p.version_vector(), vec![0, 0]);
        assert!(p.insert(1, 1));
        assert_eq!(p.version_vector(), vec![0, 2]);
        assert!(!p.insert(1, 2), "held already");
        assert!(!p.insert(5, 1), "no such origin");
    }
}
