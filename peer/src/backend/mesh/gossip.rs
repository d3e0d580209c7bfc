//! Who gets a record, and when: the mesh backend's dissemination, as a synchronous state
//! machine with time passed in. The backend ([`super`]) does the I/O: it asks this where
//! a record goes and sends the frames the answers name.
//!
//! Two modes ([`Dissemination`]):
//!
//! - **flood**: a new record goes to every link but the one it came over (and its
//!   origin's). Simple and the fastest path, but every link carries every record, so a
//!   peer of degree d receives about d copies of each.
//! - **plumtree** (after Leitão, Pereira and Rodrigues, "Epidemic Broadcast Trees", 2007,
//!   with a tree per origin as Riak's plumtree keeps one per root): for each origin,
//!   every link starts *eager*. A record arriving twice shows that its second link is
//!   redundant for its origin: the receiver makes that link *lazy* for that origin and
//!   tells the sender (`Prune`), which does the same. What remains eager converges on a
//!   spanning tree per origin, and a record travels each of its tree's links once. Over
//!   lazy links a peer sends, every [`TICK`], the highest sequence it newly holds of
//!   each origin (`IHave`). A peer that hears of a record it lacks waits
//!   [`GRAFT_TIMEOUT`] for the tree to bring it; if it does not come, it asks the
//!   announcer for everything of that origin after what it holds (`Graft`) and makes
//!   that link eager again for the origin. So the trees repair themselves when a link
//!   fails, a peer restarts or a partition heals, and delta sync on (re)connect still
//!   catches a link up in one exchange. Records sent in answer to a graft or a catch-up
//!   (`Repair`) prune nothing when they turn out to be duplicates.
//!
//!   Why a tree per origin: with one tree shared by every origin (the paper's), peers
//!   writing at once prune different links of the same cycle concurrently, the eager
//!   links fall apart into a forest, and most records then come by graft, late. Measured
//!   with 50 writing peers (bench/peer-efficiency): 12,003 prunes, 24,339 grafts and a
//!   p50 of 215 ms with one shared tree. A tree per origin converges on its own origin's
//!   records alone.
//!
//!   Where the peers know the plan's graph ([`Trees`]), an origin's tree does not have
//!   to be found by flooding its first records: every peer computes the same
//!   breadth-first tree from the origin over the graph, and starts with only its links
//!   on that tree eager for the origin. Without that, each origin's first record went to
//!   every link, and with writes sparser than the run (a thousand peers each writing once
//!   or twice) nearly every record was a first one: 1.2 duplicates per delivered record
//!   at 1000 peers, flooding's cost with the prunes on top. The seeded tree is a
//!   starting point like any other: duplicates still prune, announcements still graft
//!   (a dead peer on the tree is worked around within a tick and a graft timeout).
//!
//! Under load the tree is slow, not broken: on a saturated host a record can take
//! seconds from peer to peer, and its announcement over a lazy link comes first. Pulling
//! it after a fixed [`GRAFT_TIMEOUT`] then duplicates nearly every record (830,058
//! duplicates beside 2,009,988 deliveries at 1000 peers on 2 CPUs), and the duplicates
//! are more work for the same starved CPUs. So the wait before a graft follows what the
//! tree takes: an announced record that then comes through the tree without a graft
//! says how late the tree is ([`Gossip::arrived`]), and a graft waits twice the latest
//! such delay (decaying by half every [`TREE_DELAY_HALF_LIFE`]), between
//! [`GRAFT_TIMEOUT`] and [`MAX_GRAFT_TIMEOUT`].
//!
//! Nothing here allocates more than the plan's peers and origins allow: announcements
//! are one entry per origin, and at most [`MAX_MISSING`] announced records are awaited.

use cmesh_common::plan::Dissemination;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// How often a plumtree peer announces and checks for records that did not come.
///
/// Announcements cost a frame per lazy link per tick whether or not anyone lacks a
/// record, so they are sent seldom: with a 50 ms tick, 50 peers writing at the demo's
/// rate spent 0.88x flood's CPU per delivered record; with 500 ms, 0.68x
/// (bench/peer-efficiency). A record the tree lost is pulled a tick and
/// [`GRAFT_TIMEOUT`] later at most.
pub const TICK: Duration = Duration::from_millis(500);
/// How long an announced record may take through the tree before it is pulled.
pub const GRAFT_TIMEOUT: Duration = Duration::from_millis(150);
/// The longest a graft waits for a slow tree.
pub const MAX_GRAFT_TIMEOUT: Duration = Duration::from_secs(10);
/// How fast a slow tree's delay is forgotten.
pub const TREE_DELAY_HALF_LIFE: Duration = Duration::from_secs(10);
/// Announced records awaited at most; more announcements wait for the next ones.
pub const MAX_MISSING: usize = 4096;

/// What a tick asks the backend to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// To a neighbour lazy for these origins: per origin, the highest sequence newly
    /// held.
    IHave { to: u32, entries: Vec<(u32, u64)> },
    /// To an announcer: send what you hold of `origin` after `after`.
    Graft { to: u32, origin: u32, after: u64 },
}

/// What the backend tells the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    pub prunes_sent: u64,
    pub grafts_sent: u64,
    pub announcements_sent: u64,
}

#[derive(Debug)]
struct Missing {
    /// Neighbours that announced it, first first.
    announcers: VecDeque<u32>,
    /// When to pull it if it has not come, µs.
    due_us: u64,
    /// When it was first announced, µs.
    announced_us: u64,
    /// Whether it was pulled already (then its arrival says nothing of the tree).
    grafted: bool,
}

/// This peer's links on each origin's breadth-first tree over the plan's graph: its
/// parent (the neighbour one hop nearer the origin, the lowest-numbered if several) and
/// its children (the neighbours whose parent it is). Every peer computes the same trees.
#[derive(Clone, Debug)]
pub struct Trees {
    me: u32,
    adjacency: Vec<Vec<u32>>,
}

impl Trees {
    /// The trees of a graph of `n` peers with these `edges`, as peer `me` sees them.
    pub fn new(n: usize, edges: &[(u32, u32)], me: u32) -> Trees {
        let mut adjacency = vec![Vec::new(); n];
        for &(a, b) in edges {
            if (a as usize) < n && (b as usize) < n && a != b {
                adjacency[a as usize].push(b);
                adjacency[b as usize].push(a);
            }
        }
        for a in &mut adjacency {
            a.sort_unstable();
            a.dedup();
        }
        Trees { me, adjacency }
    }

    /// This peer's links on `origin`'s tree (none if either is not in the graph, or
    /// this peer cannot be reached from the origin).
    pub fn links(&self, origin: u32) -> BTreeSet<u32> {
        let n = self.adjacency.len();
        if origin as usize >= n || self.me as usize >= n {
            return BTreeSet::new();
        }
        // Breadth first from the origin, neighbours in index order: each peer's parent
        // is the first peer of the level above that reaches it.
        let mut parent = vec![u32::MAX; n];
        parent[origin as usize] = origin;
        let mut queue = VecDeque::from([origin]);
        while let Some(v) = queue.pop_front() {
            for &u in &self.adjacency[v as usize] {
                if parent[u as usize] == u32::MAX {
                    parent[u as usize] = v;
                    queue.push_back(u);
                }
            }
        }
        let me = self.me;
        if parent[me as usize] == u32::MAX {
            return BTreeSet::new();
        }
        self.adjacency[me as usize]
            .iter()
            .copied()
            .filter(|&u| {
                (me != origin && parent[me as usize] == u)
                    || (u != origin && parent[u as usize] == me)
            })
            .collect()
    }
}

/// A peer's dissemination state.
#[derive(Debug)]
pub struct Gossip {
    mode: Dissemination,
    me: u32,
    /// The plan's trees, while the graph is the plan's (none after a re-draw).
    trees: Option<Trees>,
    /// Origins whose tree links have been applied to `lazy`.
    seeded: BTreeSet<u32>,
    /// The links up.
    links: BTreeSet<u32>,
    /// Per origin, the links pruned for it (lazy); the other links are eager for it.
    lazy: BTreeMap<u32, BTreeSet<u32>>,
    /// Per origin, the highest sequence newly held since the last announcement.
    announce: BTreeMap<u32, u64>,
    /// Announced records not held yet: (origin, seq).
    missing: BTreeMap<(u32, u64), Missing>,
    /// How late the tree brought announced records lately: `(delay µs, when µs)`.
    tree_delay: (u64, u64),
    pub stats: GossipStats,
}

impl Gossip {
    pub fn new(mode: Dissemination, me: u32) -> Gossip {
        Gossip {
            mode,
            me,
            trees: None,
            seeded: BTreeSet::new(),
            links: BTreeSet::new(),
            lazy: BTreeMap::new(),
            announce: BTreeMap::new(),
            missing: BTreeMap::new(),
            tree_delay: (0, 0),
            stats: GossipStats::default(),
        }
    }

    /// How long an announced record may take through the tree before it is pulled, at
    /// `now_us`: twice the tree's recent delay, within [`GRAFT_TIMEOUT`] and
    /// [`MAX_GRAFT_TIMEOUT`].
    pub fn graft_timeout_us(&self, now_us: u64) -> u64 {
        (2 * self.tree_delay_us(now_us)).clamp(
            GRAFT_TIMEOUT.as_micros() as u64,
            MAX_GRAFT_TIMEOUT.as_micros() as u64,
        )
    }

    /// The tree's recent delay at `now_us`: the latest, halved every
    /// [`TREE_DELAY_HALF_LIFE`] since.
    fn tree_delay_us(&self, now_us: u64) -> u64 {
        let (delay, at) = self.tree_delay;
        let halvings = now_us.saturating_sub(at) / TREE_DELAY_HALF_LIFE.as_micros() as u64;
        delay.checked_shr(halvings.min(63) as u32).unwrap_or(0)
    }

    /// A record new to this peer arrived at `now_us`: if it was announced first and not
    /// pulled, the tree brought it that late.
    pub fn arrived(&mut self, origin: u32, seq: u64, now_us: u64) {
        if self.missing.is_empty() {
            return;
        }
        if let Some(m) = self.missing.remove(&(origin, seq)) {
            if !m.grafted {
                let delay = now_us.saturating_sub(m.announced_us);
                self.tree_delay = (delay.max(self.tree_delay_us(now_us)), now_us);
            }
        }
    }

    pub fn mode(&self) -> Dissemination {
        self.mode
    }

    /// Starts each origin on its tree in the plan's graph ([`Trees`]).
    pub fn with_trees(mut self, trees: Trees) -> Gossip {
        self.trees = Some(trees);
        self
    }

    /// The graph is no longer the plan's (mobility re-drew it): origins not seen yet
    /// start with every link eager, as without trees.
    pub fn forget_trees(&mut self) {
        self.trees = None;
    }

    /// Makes the links up that are not on `origin`'s tree lazy for it, once per origin.
    fn seed(&mut self, origin: u32) {
        if self.mode != Dissemination::Plumtree || !self.seeded.insert(origin) {
            return;
        }
        let Some(trees) = &self.trees else {
            return;
        };
        let on_tree = trees.links(origin);
        if on_tree.is_empty() {
            return; // Not reachable over the plan's graph: keep every link.
        }
        let off: BTreeSet<u32> = self
            .links
            .iter()
            .copied()
            .filter(|p| !on_tree.contains(p))
            .collect();
        if !off.is_empty() {
            self.lazy.entry(origin).or_default().extend(off);
        }
    }

    /// A link came up: it starts eager for every origin.
    pub fn link_up(&mut self, peer: u32) {
        self.links.insert(peer);
        self.lazy.retain(|_, l| {
            l.remove(&peer);
            !l.is_empty()
        });
    }

    /// A link went down.
    pub fn link_down(&mut self, peer: u32) {
        self.links.remove(&peer);
        self.lazy.retain(|_, l| {
            l.remove(&peer);
            !l.is_empty()
        });
        for m in self.missing.values_mut() {
            m.announcers.retain(|&a| a != peer);
        }
    }

    fn is_lazy(&self, origin: u32, peer: u32) -> bool {
        self.lazy.get(&origin).is_some_and(|l| l.contains(&peer))
    }

    /// The links that push `origin`'s records now.
    pub fn eager(&self, origin: u32) -> impl Iterator<Item = u32> + '_ {
        self.links
            .iter()
            .copied()
            .filter(move |&p| !self.is_lazy(origin, p))
    }

    /// Links per origin that push its records, on average over the origins pruned so
    /// far (every link, without any): about 2 on a tree, the degree when flooding.
    #[cfg(test)]
    pub fn eager_per_origin(&self) -> f64 {
        let links = self.links.len() as f64;
        if self.lazy.is_empty() {
            return links;
        }
        let lazy: usize = self.lazy.values().map(BTreeSet::len).sum();
        links - lazy as f64 / self.lazy.len() as f64
    }

    /// Whether there is anything for [`Gossip::tick`] to do.
    pub fn has_work(&self) -> bool {
        !self.announce.is_empty() || !self.missing.is_empty()
    }

    /// A record new to this peer (written here when `from` is `None`): the links to push
    /// it to now. `links` are the links up.
    pub fn on_new(
        &mut self,
        from: Option<u32>,
        origin: u32,
        seq: u64,
        links: impl Iterator<Item = u32>,
    ) -> Vec<u32> {
        let skip = |p: &u32| Some(*p) == from || *p == origin;
        match self.mode {
            Dissemination::Flood => links.filter(|p| !skip(p)).collect(),
            Dissemination::Plumtree => {
                self.seed(origin);
                let top = self.announce.entry(origin).or_insert(0);
                *top = (*top).max(seq);
                links
                    .filter(|p| !skip(p) && !self.is_lazy(origin, *p))
                    .collect()
            }
        }
    }

    /// A record of `origin` this peer already held came from `from`; `repair` when it
    /// came in answer to a graft or a catch-up. True when `from` should be told to prune
    /// the link for that origin (it pushed a record the tree had already brought).
    pub fn on_duplicate(&mut self, from: u32, origin: u32, repair: bool) -> bool {
        if self.mode != Dissemination::Plumtree || repair || !self.links.contains(&from) {
            return false;
        }
        if !self.lazy.entry(origin).or_default().insert(from) {
            return false;
        }
        self.stats.prunes_sent += 1;
        true
    }

    /// `from` pruned the link for `origin`: it stays up, lazy for that origin.
    pub fn on_prune(&mut self, from: u32, origin: u32) {
        if self.links.contains(&from) {
            self.lazy.entry(origin).or_default().insert(from);
        }
    }

    /// `from` asked for `origin`'s records: the link is eager again for it.
    pub fn on_graft(&mut self, from: u32, origin: u32) {
        self.make_eager(origin, from);
    }

    fn make_eager(&mut self, origin: u32, peer: u32) {
        if let Some(l) = self.lazy.get_mut(&origin) {
            l.remove(&peer);
            if l.is_empty() {
                self.lazy.remove(&origin);
            }
        }
    }

    /// `from` announced records; `holds(origin, seq)` says whether this peer has one.
    pub fn on_ihave(
        &mut self,
        from: u32,
        entries: &[(u32, u64)],
        holds: impl Fn(u32, u64) -> bool,
        now_us: u64,
    ) {
        let due_us = now_us + self.graft_timeout_us(now_us);
        for &(origin, seq) in entries {
            if origin == self.me || holds(origin, seq) {
                continue;
            }
            if let Some(m) = self.missing.get_mut(&(origin, seq)) {
                if !m.announcers.contains(&from) {
                    m.announcers.push_back(from);
                }
            } else if self.missing.len() < MAX_MISSING {
                self.missing.insert(
                    (origin, seq),
                    Missing {
                        announcers: VecDeque::from([from]),
                        due_us,
                        announced_us: now_us,
                        grafted: false,
                    },
                );
            }
        }
    }

    /// Every [`TICK`]: the announcements to the lazy links, and a graft for each record
    /// still missing past its time (one per announcer and origin). `holds` and
    /// `version(origin)` (the highest sequence held with nothing missing below) come from
    /// the store.
    pub fn tick(
        &mut self,
        now_us: u64,
        holds: impl Fn(u32, u64) -> bool,
        version: impl Fn(u32) -> u64,
    ) -> Vec<Control> {
        let mut out = Vec::new();
        let mut per_link: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
        for (origin, seq) in std::mem::take(&mut self.announce) {
            for &to in self.lazy.get(&origin).into_iter().flatten() {
                per_link.entry(to).or_default().push((origin, seq));
            }
        }
        for (to, entries) in per_link {
            out.push(Control::IHave { to, entries });
            self.stats.announcements_sent += 1;
        }
        self.missing.retain(|&(o, s), _| !holds(o, s));
        let mut grafts: BTreeSet<(u32, u32)> = BTreeSet::new();
        let retry_us = now_us + self.graft_timeout_us(now_us);
        self.missing.retain(|&(origin, _), m| {
            if m.due_us > now_us {
                return true;
            }
            let Some(to) = m.announcers.pop_front() else {
                return false;
            };
            grafts.insert((to, origin));
            m.due_us = retry_us;
            m.grafted = true;
            true
        });
        for (to, origin) in grafts {
            self.make_eager(origin, to);
            self.stats.grafts_sent += 1;
            out.push(Control::Graft {
                to,
                origin,
                after: version(origin),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(v: &[u32]) -> impl Iterator<Item = u32> + '_ {
        v.iter().copied()
    }

    /// A ring of 6: 0-1-2-3-4-5-0, and a chord 0-3.
    const RING: [(u32, u32); 7] = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (0, 3)];

    #[test]
    fn every_peer_computes_the_same_breadth_first_tree_per_origin() {
        let trees: Vec<Trees> = (0..6).map(|me| Trees::new(6, &RING, me)).collect();
        // From 0: 1, 3 and 5 are one hop away; 2's parent is 1 (lower than 3), 4's is 3.
        let expect = [
            vec![1, 3, 5],
            vec![0, 2],
            vec![1],
            vec![0, 4],
            vec![3],
            vec![0],
        ];
        for (me, want) in expect.iter().enumerate() {
            assert_eq!(
                trees[me].links(0).into_iter().collect::<Vec<_>>(),
                *want,
                "peer {me}"
            );
        }
        // A tree has n - 1 edges, each seen from both ends.
        for origin in 0..6 {
            let ends: usize = trees.iter().map(|t| t.links(origin).len()).sum();
            assert_eq!(ends, 2 * 5, "origin {origin}");
        }
        // Outside the graph, or out of reach: no tree, nothing seeded.
        assert!(trees[0].links(9).is_empty());
        assert!(Trees::new(3, &[(0, 1)], 2).links(0).is_empty());
    }

    #[test]
    fn an_origins_first_record_goes_down_its_tree_only() {
        // Peer 3 on the ring: links 2, 4 and 0 (the chord).
        let mut g = Gossip::new(Dissemination::Plumtree, 3).with_trees(Trees::new(6, &RING, 3));
        for p in [0, 2, 4] {
            g.link_up(p);
        }
        // Origin 0's record came from 0 (3's parent): on to 4, its child; not to 2 (1's).
        assert_eq!(g.on_new(Some(0), 0, 1, links(&[0, 2, 4])), vec![4]);
        assert_eq!(g.eager(0).collect::<Vec<_>>(), vec![0, 4]);
        // Announced on the off-tree link at the tick.
        let out = g.tick(0, |_, _| true, |_| 1);
        assert_eq!(
            out,
            vec![Control::IHave {
                to: 2,
                entries: vec![(0, 1)]
            }]
        );
        // Its own record: down its own tree, to every neighbour (all one hop away).
        assert_eq!(g.on_new(None, 3, 1, links(&[0, 2, 4])), vec![0, 2, 4]);
        // A re-drawn graph: origins not seen yet start with every link eager again.
        g.forget_trees();
        assert_eq!(g.on_new(Some(2), 1, 1, links(&[0, 2, 4])), vec![0, 4]);
        // Without trees, as before: every link but the sender.
        let mut plain = Gossip::new(Dissemination::Plumtree, 3);
        for p in [0, 2, 4] {
            plain.link_up(p);
        }
        assert_eq!(plain.on_new(Some(0), 0, 1, links(&[0, 2, 4])), vec![2, 4]);
    }

    #[test]
    fn flood_sends_to_every_link_but_the_sender_and_the_origin() {
        let mut g = Gossip::new(Dissemination::Flood, 0);
        assert_eq!(g.on_new(Some(1), 2, 1, links(&[1, 2, 3, 4])), vec![3, 4]);
        assert_eq!(g.on_new(None, 0, 1, links(&[1, 2])), vec![1, 2]);
        g.link_up(3);
        assert!(!g.on_duplicate(3, 2, false), "flood never prunes");
        assert!(!g.has_work() && g.tick(0, |_, _| false, |_| 0).is_empty());
    }

    #[test]
    fn a_duplicate_prunes_its_link_for_that_origin_only_and_lazy_links_get_announcements() {
        let mut g = Gossip::new(Dissemination::Plumtree, 0);
        for p in [1, 2, 3] {
            g.link_up(p);
        }
        assert_eq!(g.on_new(Some(1), 9, 1, links(&[1, 2, 3])), vec![2, 3]);
        assert!(
            g.on_duplicate(2, 9, false),
            "the second copy prunes its link"
        );
        assert!(!g.on_duplicate(2, 9, false), "once");
        assert!(
            !g.on_duplicate(3, 9, true),
            "a repair's duplicate prunes nothing"
        );
        assert!(!g.on_duplicate(7, 9, false), "not a link: nothing to prune");
        assert_eq!(g.eager(9).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(
            g.eager(8).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "other origins: all"
        );
        assert_eq!(g.on_new(Some(1), 9, 2, links(&[1, 2, 3])), vec![3]);
        assert_eq!(g.on_new(Some(1), 8, 1, links(&[1, 2, 3])), vec![2, 3]);
        let out = g.tick(0, |_, _| true, |_| 0);
        assert_eq!(
            out,
            vec![Control::IHave {
                to: 2,
                entries: vec![(9, 2)]
            }],
            "the highest sequence of the origin, to the link lazy for it"
        );
        assert!(!g.has_work());
        g.on_prune(3, 9);
        assert_eq!(g.eager(9).collect::<Vec<_>>(), vec![1]);
        assert_eq!(g.stats.prunes_sent, 1);
        assert!(
            (g.eager_per_origin() - 1.0).abs() < 1e-9,
            "3 links, 2 lazy for origin 9"
        );
        g.on_graft(2, 9);
        assert_eq!(g.eager(9).collect::<Vec<_>>(), vec![1, 2]);
        // A link that comes back up is eager for every origin again.
        g.link_down(3);
        g.link_up(3);
        assert_eq!(g.eager(9).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn an_announced_record_that_does_not_come_is_grafted_from_each_announcer_in_turn() {
        let mut g = Gossip::new(Dissemination::Plumtree, 0);
        for p in [1, 2, 3] {
            g.link_up(p);
        }
        g.on_prune(2, 5);
        g.on_prune(3, 5);
        let t = GRAFT_TIMEOUT.as_micros() as u64;
        g.on_ihave(2, &[(5, 7), (0, 3)], |_, _| false, 0);
        g.on_ihave(3, &[(5, 7)], |_, _| false, 10);
        assert!(g.has_work());
        assert!(g.tick(t - 1, |_, _| false, |_| 4).is_empty(), "not yet due");
        let out = g.tick(t, |_, _| false, |_| 4);
        assert_eq!(
            out,
            vec![Control::Graft {
                to: 2,
                origin: 5,
                after: 4
            }],
            "its own records are never missing; the first announcer first"
        );
        assert!(
            g.eager(5).any(|p| p == 2),
            "a graft makes the link eager for it"
        );
        assert!(!g.eager(5).any(|p| p == 3));
        // Still missing a timeout later: the next announcer.
        let out = g.tick(2 * t, |_, _| false, |_| 4);
        assert_eq!(
            out,
            vec![Control::Graft {
                to: 3,
                origin: 5,
                after: 4
            }]
        );
        // It arrived: nothing more to do.
        assert!(g.tick(3 * t, |_, _| true, |_| 7).is_empty());
        assert!(!g.has_work());
        assert_eq!(g.stats.grafts_sent, 2);
    }

    #[test]
    fn a_slow_tree_makes_grafts_wait_for_it_and_a_fast_one_again_not() {
        let mut g = Gossip::new(Dissemination::Plumtree, 0);
        let base = GRAFT_TIMEOUT.as_micros() as u64;
        assert_eq!(g.graft_timeout_us(0), base);
        // Announced at 0, came through the tree 2 s later: grafts wait 4 s.
        g.on_ihave(1, &[(5, 1)], |_, _| false, 0);
        g.arrived(5, 1, 2_000_000);
        assert_eq!(g.graft_timeout_us(2_000_000), 4_000_000);
        // The next announcement is not pulled 150 ms later, but 4 s later.
        g.on_ihave(1, &[(5, 2)], |_, _| false, 2_000_000);
        assert!(g.tick(2_200_000, |_, _| false, |_| 1).is_empty());
        let out = g.tick(6_000_000, |_, _| false, |_| 1);
        assert_eq!(
            out,
            vec![Control::Graft {
                to: 1,
                origin: 5,
                after: 1
            }]
        );
        // A pulled record's arrival says nothing of the tree.
        g.arrived(5, 2, 9_000_000);
        assert_eq!(g.graft_timeout_us(9_000_000), 4_000_000);
        // Forgotten by half every half-life, down to the floor; capped above.
        let half = TREE_DELAY_HALF_LIFE.as_micros() as u64;
        assert_eq!(g.graft_timeout_us(2_000_000 + half), 2_000_000);
        assert_eq!(g.graft_timeout_us(2_000_000 + 10 * half), base);
        g.on_ihave(1, &[(6, 1)], |_, _| false, 0);
        g.arrived(6, 1, 60_000_000);
        assert_eq!(
            g.graft_timeout_us(60_000_000),
            MAX_GRAFT_TIMEOUT.as_micros() as u64
        );
    }

    #[test]
    fn a_lost_link_is_no_longer_asked_and_awaited_records_are_bounded() {
        let mut g = Gossip::new(Dissemination::Plumtree, 0);
        g.link_up(1);
        g.on_ihave(1, &[(5, 1)], |_, _| false, 0);
        g.link_down(1);
        let t = GRAFT_TIMEOUT.as_micros() as u64;
        assert!(g.tick(t, |_, _| false, |_| 0).is_empty());
        assert!(!g.has_work(), "no announcer left: given up");
        let many: Vec<(u32, u64)> = (0..MAX_MISSING as u64 + 10).map(|s| (5, s + 1)).collect();
        g.on_ihave(2, &many, |_, _| false, 0);
        assert_eq!(g.missing.len(), MAX_MISSING);
        // A graft asks once per announcer and origin, however many records it lacks.
        let out = g.tick(t, |_, _| false, |_| 0);
        assert_eq!(out.len(), 1);
    }
}
