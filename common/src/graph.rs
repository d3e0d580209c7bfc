//! Connection graphs: who connects to whom.
//!
//! Peers are numbered `0..n` (the coordinator numbers them by sorted name, so the same
//! names and seed give the same graph). Every generator returns an undirected simple
//! graph; all of them are connected for `n >= 1`, so a record written anywhere can reach
//! every peer by flooding.
//!
//! | kind | shape | degree |
//! |---|---|---|
//! | `complete` | every pair | `n - 1` |
//! | `spanning-tree` | a random tree (seeded) | at most 3 |
//! | `la-model` | local cliques of 4, the cliques joined in a ring plus one seeded long link each | at most 4 (3 inside the clique, 1 out) |
//! | `ring` | `i -- i+1 (mod n)` | 2 |
//! | `random-regular` | a uniform-ish random `k`-regular graph (seeded), retried until connected | `k` (one peer `k-1` when `n*k` is odd) |

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// The graph kinds a plan can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum GraphKind {
    Complete,
    SpanningTree,
    LaModel,
    Ring,
    RandomRegular,
}

impl GraphKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [GraphKind; 5] = [
        GraphKind::Complete,
        GraphKind::SpanningTree,
        GraphKind::LaModel,
        GraphKind::Ring,
        GraphKind::RandomRegular,
    ];

    /// The kind's name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            GraphKind::Complete => "complete",
            GraphKind::SpanningTree => "spanning-tree",
            GraphKind::LaModel => "la-model",
            GraphKind::Ring => "ring",
            GraphKind::RandomRegular => "random-regular",
        }
    }

    /// Parses a kind by name, with an error that lists the valid names.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown graph `{s}`; choose one of: {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for GraphKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a graph cannot be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("random-regular needs 2 <= degree < peers (degree {degree}, peers {n})")]
    BadDegree { n: usize, degree: usize },
    #[error("could not generate a connected random-regular graph with {n} peers and degree {degree} after {tries} tries; pick another seed or degree")]
    NotConnected {
        n: usize,
        degree: usize,
        tries: usize,
    },
}

/// An undirected simple graph on peers `0..n`, as a sorted edge list `(a, b)` with `a < b`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    pub n: usize,
    pub edges: Vec<(u32, u32)>,
}

impl Graph {
    fn from_edges(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let set: BTreeSet<(u32, u32)> = edges
            .into_iter()
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.min(b) as u32, a.max(b) as u32))
            .collect();
        Graph {
            n,
            edges: set.into_iter().collect(),
        }
    }

    /// The same graph with its peers relabelled at random (`seed`): the same shape and
    /// degrees, other neighbours. Mobility re-draws the graph this way.
    pub fn shuffled(&self, seed: u64) -> Graph {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut perm: Vec<usize> = (0..self.n).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Graph::from_edges(
            self.n,
            self.edges
                .iter()
                .map(|&(a, b)| (perm[a as usize], perm[b as usize])),
        )
    }

    /// The neighbours of `peer`.
    pub fn neighbours(&self, peer: u32) -> Vec<u32> {
        self.edges
            .iter()
            .filter_map(|&(a, b)| match (a == peer, b == peer) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// The neighbour lists, indexed by peer.
    pub fn adjacency(&self) -> Vec<Vec<u32>> {
        let mut adj = vec![Vec::new(); self.n];
        for &(a, b) in &self.edges {
            adj[a as usize].push(b);
            adj[b as usize].push(a);
        }
        adj
    }

    /// Each peer's degree.
    pub fn degrees(&self) -> Vec<usize> {
        self.adjacency().iter().map(Vec::len).collect()
    }

    /// True when every peer can reach every other (trivially true for `n <= 1`).
    pub fn is_connected(&self) -> bool {
        if self.n <= 1 {
            return true;
        }
        let adj = self.adjacency();
        let mut seen = vec![false; self.n];
        let mut queue = VecDeque::from([0usize]);
        seen[0] = true;
        let mut count = 1;
        while let Some(v) = queue.pop_front() {
            for &w in &adj[v] {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    count += 1;
                    queue.push_back(w as usize);
                }
            }
        }
        count == self.n
    }

    /// The graph in Graphviz DOT, with peers labelled by name.
    pub fn to_dot(&self, names: &[String]) -> String {
        let mut out = String::from("graph cmesh {\n  node [shape=circle];\n");
        for (i, name) in names.iter().enumerate().take(self.n) {
            out.push_str(&format!("  {i} [label=\"{name}\"];\n"));
        }
        for (a, b) in &self.edges {
            out.push_str(&format!("  {a} -- {b};\n"));
        }
        out.push_str("}\n");
        out
    }
}

/// Generates a graph of `kind` on `n` peers. `degree` is used by `random-regular` only;
/// `seed` makes every random choice repeatable.
pub fn generate(kind: GraphKind, n: usize, degree: usize, seed: u64) -> Result<Graph, GraphError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok(match kind {
        GraphKind::Complete => {
            Graph::from_edges(n, (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))))
        }
        GraphKind::Ring => Graph::from_edges(n, (0..n).map(|i| (i, (i + 1) % n.max(1)))),
        GraphKind::SpanningTree => spanning_tree(n, &mut rng),
        GraphKind::LaModel => la_model(n, &mut rng),
        GraphKind::RandomRegular => random_regular(n, degree, &mut rng)?,
    })
}

/// A random tree with maximum degree 3: peers are shuffled, then each joins a random
/// earlier peer that still has a free slot (the root has 3 slots, others 2 below them).
fn spanning_tree(n: usize, rng: &mut ChaCha8Rng) -> Graph {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut open: Vec<usize> = Vec::new(); // positions in `order` with a free slot
    let mut degree = vec![0usize; n];
    let mut edges = Vec::with_capacity(n.saturating_sub(1));
    for (pos, &v) in order.iter().enumerate() {
        if pos > 0 {
            let pick = rng.random_range(0..open.len());
            let parent = order[open[pick]];
            edges.push((parent, v));
            degree[parent] += 1;
            degree[v] += 1;
            if degree[parent] >= 3 {
                open.swap_remove(pick);
            }
        }
        open.push(pos);
    }
    Graph::from_edges(n, edges)
}

/// Local cliques of 4 consecutive peers (the last may be smaller). Clique `c` links to
/// clique `c+1` (a ring of cliques, which keeps the graph connected) through different
/// members, and a seeded matching of the cliques adds one long link per clique: a mesh of
/// neighbourhoods with short cuts, like peers in a city.
fn la_model(n: usize, rng: &mut ChaCha8Rng) -> Graph {
    const CLIQUE: usize = 4;
    let cliques = n.div_ceil(CLIQUE);
    let member = |c: usize, j: usize| {
        let start = c * CLIQUE;
        let size = (n - start).min(CLIQUE);
        start + j % size
    };
    let mut edges = Vec::new();
    for c in 0..cliques {
        let start = c * CLIQUE;
        let end = (start + CLIQUE).min(n);
        for a in start..end {
            for b in a + 1..end {
                edges.push((a, b));
            }
        }
    }
    if cliques > 1 {
        for c in 0..cliques {
            edges.push((member(c, 0), member((c + 1) % cliques, 1)));
        }
    }
    if cliques > 3 {
        // Long links: a seeded matching of the cliques, so each clique has at most one.
        let mut order: Vec<usize> = (0..cliques).collect();
        order.shuffle(rng);
        for pair in order.chunks_exact(2) {
            edges.push((member(pair[0], 2), member(pair[1], 3)));
        }
    }
    Graph::from_edges(n, edges)
}

/// A random `k`-regular graph by the Steger–Wormald pairing method: pair random free
/// "stubs" of distinct, not yet adjacent peers; restart if stuck; retry until connected.
fn random_regular(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Result<Graph, GraphError> {
    if k < 2 || k >= n {
        return Err(GraphError::BadDegree { n, degree: k });
    }
    const TRIES: usize = 200;
    for _ in 0..TRIES {
        if let Some(g) = try_pairing(n, k, rng) {
            if g.is_connected() {
                return Ok(g);
            }
        }
    }
    Err(GraphError::NotConnected {
        n,
        degree: k,
        tries: TRIES,
    })
}

fn try_pairing(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Option<Graph> {
    let mut stubs: Vec<usize> = (0..n).flat_map(|v| std::iter::repeat_n(v, k)).collect();
    if stubs.len() % 2 == 1 {
        // n*k odd: one peer gets degree k-1.
        let drop = rng.random_range(0..n);
        let pos = stubs.iter().position(|&v| v == drop)?;
        stubs.swap_remove(pos);
    }
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    while !stubs.is_empty() {
        let mut placed = false;
        for _ in 0..(50 * stubs.len()) {
            let i = rng.random_range(0..stubs.len());
            let j = rng.random_range(0..stubs.len());
            let (a, b) = (stubs[i], stubs[j]);
            if i == j || a == b || edges.contains(&(a.min(b), a.max(b))) {
                continue;
            }
            edges.insert((a.min(b), a.max(b)));
            let (hi, lo) = (i.max(j), i.min(j));
            stubs.swap_remove(hi);
            stubs.swap_remove(lo);
            placed = true;
            break;
        }
        if !placed {
            return None;
        }
    }
    Some(Graph::from_edges(n, edges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffling_keeps_the_shape_and_changes_the_neighbours() {
        let g = generate(GraphKind::Ring, 12, 2, 1).unwrap();
        let s = g.shuffled(7);
        assert_eq!(s.edges.len(), g.edges.len());
        assert!(s.degrees().iter().all(|&d| d == 2));
        assert!(s.is_connected());
        assert_ne!(s, g);
        assert_eq!(s, g.shuffled(7), "the same seed, the same graph");
        assert_eq!(g.neighbours(0), vec![1, 11]);
    }

    const SIZES: [usize; 9] = [1, 2, 3, 4, 5, 7, 20, 101, 1000];

    #[test]
    fn every_kind_is_connected_and_simple() {
        for kind in GraphKind::ALL {
            for n in SIZES {
                let degree = if kind == GraphKind::RandomRegular {
                    if n < 5 {
                        continue;
                    }
                    4
                } else {
                    0
                };
                let g = generate(kind, n, degree, 7).unwrap();
                assert_eq!(g.n, n);
                assert!(g.is_connected(), "{kind} n={n} is not connected");
                for &(a, b) in &g.edges {
                    assert!(a < b && (b as usize) < n, "{kind} n={n}: bad edge {a}-{b}");
                }
                let unique: BTreeSet<_> = g.edges.iter().collect();
                assert_eq!(unique.len(), g.edges.len(), "{kind}: duplicate edge");
            }
        }
    }

    #[test]
    fn degree_bounds_hold() {
        for n in SIZES {
            let complete = generate(GraphKind::Complete, n, 0, 1).unwrap();
            assert!(complete.degrees().iter().all(|&d| d == n - 1));
            assert_eq!(complete.edges.len(), n * (n - 1) / 2);

            let tree = generate(GraphKind::SpanningTree, n, 0, 1).unwrap();
            assert_eq!(
                tree.edges.len(),
                n.saturating_sub(1),
                "a tree has n-1 edges"
            );
            assert!(tree.degrees().iter().all(|&d| d <= 3), "tree degree > 3");

            let ring = generate(GraphKind::Ring, n, 0, 1).unwrap();
            if n >= 3 {
                assert!(ring.degrees().iter().all(|&d| d == 2));
            }

            let la = generate(GraphKind::LaModel, n, 0, 1).unwrap();
            assert!(la.degrees().iter().all(|&d| d <= 4), "la-model degree > 4");
        }
        for (n, k) in [(20, 3), (101, 4), (1000, 6), (10, 9), (7, 3)] {
            let g = generate(GraphKind::RandomRegular, n, k, 3).unwrap();
            let degrees = g.degrees();
            let short = degrees.iter().filter(|&&d| d == k - 1).count();
            assert!(degrees.iter().all(|&d| d == k || d == k - 1));
            assert_eq!(
                short,
                (n * k) % 2,
                "n={n} k={k}: only an odd n*k leaves one short peer"
            );
        }
    }

    #[test]
    fn la_model_has_local_cliques() {
        let g = generate(GraphKind::LaModel, 20, 0, 5).unwrap();
        let edges: BTreeSet<_> = g.edges.iter().copied().collect();
        for c in 0..5u32 {
            for a in c * 4..c * 4 + 4 {
                for b in a + 1..c * 4 + 4 {
                    assert!(edges.contains(&(a, b)), "clique {c} misses {a}-{b}");
                }
            }
        }
    }

    #[test]
    fn same_seed_same_graph_other_seed_other_graph() {
        for kind in [
            GraphKind::SpanningTree,
            GraphKind::RandomRegular,
            GraphKind::LaModel,
        ] {
            let a = generate(kind, 200, 4, 42).unwrap();
            let b = generate(kind, 200, 4, 42).unwrap();
            let c = generate(kind, 200, 4, 43).unwrap();
            assert_eq!(a, b, "{kind}: same seed must give the same graph");
            assert_ne!(a, c, "{kind}: another seed should give another graph");
        }
    }

    #[test]
    fn rejects_impossible_degrees() {
        assert_eq!(
            generate(GraphKind::RandomRegular, 5, 5, 0),
            Err(GraphError::BadDegree { n: 5, degree: 5 })
        );
        assert!(generate(GraphKind::RandomRegular, 5, 1, 0).is_err());
    }

    #[test]
    fn parses_names_and_lists_choices() {
        assert_eq!(GraphKind::parse("ring").unwrap(), GraphKind::Ring);
        let err = GraphKind::parse("star").unwrap_err();
        assert!(
            err.contains("complete") && err.contains("random-regular"),
            "{err}"
        );
    }

    #[test]
    fn dot_names_peers() {
        let g = generate(GraphKind::Ring, 3, 0, 0).unwrap();
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let dot = g.to_dot(&names);
        assert!(
            dot.contains("0 [label=\"a\"]") && dot.contains("0 -- 1;"),
            "{dot}"
        );
    }
}
