//! What a run asks for, and what the coordinator decides.
//!
//! A [`PlanSpec`] is the user's request (from flags or a `configs/*.toml` test plan). When
//! the peers have registered, the coordinator turns it into an [`ExecutionPlan`]: the
//! numbered peers with their addresses, the connection graph, a common start time, and the
//! write workload. Every peer receives the same plan.

use crate::graph::{Graph, GraphKind};
use crate::parse::MillisRange;
use serde::{Deserialize, Serialize};

/// The plan schema version. Bumped on any change a reader must know about.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// The user's request for a run's workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanSpec {
    /// Peers expected to register.
    pub peers: usize,
    /// Start with at least this many if `start_timeout_ms` passes first (default: all).
    pub min_peers: Option<usize>,
    /// How long peers write, in milliseconds.
    pub duration_ms: u64,
    /// The connection graph.
    pub graph: GraphKind,
    /// The degree for `random-regular`.
    pub degree: usize,
    /// Seed for every random choice in the plan (graph, write timing).
    pub seed: u64,
    /// Pause between two writes of one peer, drawn uniformly from this range.
    pub write_interval: MillisRange,
    /// Payload bytes per record.
    pub payload_bytes: usize,
    /// How the mesh backend spreads each record to its neighbours.
    #[serde(default)]
    pub dissemination: Dissemination,
    /// The common start is this long after the plan is made.
    pub start_delay_ms: u64,
    /// Give up waiting for registrations after this long.
    pub start_timeout_ms: u64,
    /// Peers beat this often; a peer is lost after 3 missed beats.
    pub heartbeat_ms: u64,
    /// After writing stops, how long peers may take to receive every record.
    pub settle_timeout_ms: u64,
    /// Named peer sets for fault selectors and partitions (see [`crate::faults`]).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub groups: std::collections::BTreeMap<String, String>,
    /// The fault timeline (see [`crate::faults`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::faults::FaultSpec>,
}

impl Default for PlanSpec {
    fn default() -> Self {
        PlanSpec {
            peers: 10,
            min_peers: None,
            duration_ms: 30_000,
            graph: GraphKind::RandomRegular,
            degree: 4,
            seed: 1,
            write_interval: MillisRange {
                min_ms: 200,
                max_ms: 500,
            },
            payload_bytes: 256,
            dissemination: Dissemination::default(),
            start_delay_ms: 2_000,
            start_timeout_ms: 120_000,
            heartbeat_ms: 2_000,
            settle_timeout_ms: 10_000,
            groups: Default::default(),
            faults: Vec::new(),
        }
    }
}

/// How the mesh backend spreads a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Dissemination {
    /// Every new record to every neighbour but the one it came from: simple, the
    /// fastest path, and about as many duplicates as links.
    Flood,
    /// Eager push on a spanning tree the peers prune from their links (a duplicate cuts
    /// the link it came over), lazy announcements on the other links, and a pull (graft)
    /// when an announced record does not arrive; after Leitão et al.'s Plumtree.
    #[default]
    Plumtree,
}

impl Dissemination {
    pub const ALL: [Dissemination; 2] = [Dissemination::Flood, Dissemination::Plumtree];

    /// Its name in plan files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dissemination::Flood => "flood",
            Dissemination::Plumtree => "plumtree",
        }
    }

    /// Parses a name, with an error that lists the valid ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown dissemination `{s}`; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Why a spec cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("--peers must be at least 1 (got 0)")]
    NoPeers,
    #[error("--min-peers ({min}) must be between 1 and --peers ({peers})")]
    BadMinPeers { min: usize, peers: usize },
    #[error("--duration must be longer than 0")]
    NoDuration,
    #[error("--payload-bytes must be between 16 and 1048576 (got {0})")]
    BadPayload(usize),
    #[error("--heartbeat must be between 100ms and 60s (got {0}ms)")]
    BadHeartbeat(u64),
    #[error("random-regular needs 2 <= --degree < --peers (degree {degree}, peers {peers})")]
    BadDegree { degree: usize, peers: usize },
    #[error("{0}")]
    BadFaults(String),
    #[error("{what} is {value}; at most {max}")]
    TooLarge {
        what: &'static str,
        value: u64,
        max: u64,
    },
}

/// The most peers a plan may have.
pub const MAX_PEERS: usize = 100_000;
/// The longest a run may write: a week.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3_600_000;
/// The longest any of the plan's waits (start delay and timeout, settle timeout, the
/// pause between writes) may be: a day.
pub const MAX_WAIT_MS: u64 = 24 * 3_600_000;

/// Heartbeats a second the coordinator takes at most: with more peers than this over
/// `heartbeat_ms` in seconds, the period stretches ([`PlanSpec::heartbeat_period_ms`]).
pub const HEARTBEATS_PER_SECOND: u64 = 250;
/// The common start comes at least this long per peer after the plan is made
/// ([`PlanSpec::start_delay_for`]): long enough for every peer to get the plan and take
/// its clock exchanges first. Measured at 1000 peers on 2 CPUs: the plan reached the last
/// peers 3.1 s after it was made, past a 2 s start.
pub const START_DELAY_PER_PEER_MS: u64 = 8;

impl PlanSpec {
    /// How often peers beat: `heartbeat_ms`, or longer so that the coordinator takes at
    /// most [`HEARTBEATS_PER_SECOND`] (1000 peers: 4 s). A peer is lost after 3 missed.
    pub fn heartbeat_period_ms(&self) -> u64 {
        self.heartbeat_ms
            .max(self.peers as u64 * 1000 / HEARTBEATS_PER_SECOND)
    }

    /// How long after the plan the common start is, for a plan of `peers`:
    /// `start_delay_ms`, or [`START_DELAY_PER_PEER_MS`] per peer if that is longer.
    pub fn start_delay_for(&self, peers: usize) -> u64 {
        self.start_delay_ms
            .max(peers as u64 * START_DELAY_PER_PEER_MS)
    }

    /// The fault timeline, checked (see [`crate::faults::check`]).
    #[allow(clippy::type_complexity)]
    pub fn checked_faults(
        &self,
    ) -> Result<
        (
            std::collections::BTreeMap<String, crate::faults::Selector>,
            Vec<crate::faults::Fault>,
        ),
        String,
    > {
        crate::faults::check(&self.groups, &self.faults)
    }

    /// Checks the spec before anything starts.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.peers == 0 {
            return Err(SpecError::NoPeers);
        }
        // Bounds first, so that no sum or product of the plan's times and counts can
        // overflow downstream.
        let limits = [
            ("--peers", self.peers as u64, MAX_PEERS as u64),
            ("--degree", self.degree as u64, MAX_PEERS as u64),
            ("--duration (ms)", self.duration_ms, MAX_DURATION_MS),
            ("--start-delay (ms)", self.start_delay_ms, MAX_WAIT_MS),
            ("--start-timeout (ms)", self.start_timeout_ms, MAX_WAIT_MS),
            ("--settle-timeout (ms)", self.settle_timeout_ms, MAX_WAIT_MS),
            (
                "--write-interval (ms)",
                self.write_interval.max_ms,
                MAX_WAIT_MS,
            ),
        ];
        for (what, value, max) in limits {
            if value > max {
                return Err(SpecError::TooLarge { what, value, max });
            }
        }
        let min = self.min_peers();
        if min == 0 || min > self.peers {
            return Err(SpecError::BadMinPeers {
                min,
                peers: self.peers,
            });
        }
        if self.duration_ms == 0 {
            return Err(SpecError::NoDuration);
        }
        if !(16..=1 << 20).contains(&self.payload_bytes) {
            return Err(SpecError::BadPayload(self.payload_bytes));
        }
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            return Err(SpecError::BadHeartbeat(self.heartbeat_ms));
        }
        // Only checkable against the full count; with fewer registered peers the
        // coordinator reduces the degree (see ExecutionPlan::graph_for).
        // With 1 or 2 peers the only graph is complete (see ExecutionPlan::make).
        if self.graph == GraphKind::RandomRegular
            && self.peers > 2
            && (self.degree < 2 || self.degree >= self.peers)
        {
            return Err(SpecError::BadDegree {
                degree: self.degree,
                peers: self.peers,
            });
        }
        self.checked_faults().map_err(SpecError::BadFaults)?;
        Ok(())
    }

    /// The minimum number of peers to start with.
    pub fn min_peers(&self) -> usize {
        self.min_peers.unwrap_or(self.peers)
    }
}

/// One peer in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPeer {
    /// Position in the plan: peers are numbered by sorted name.
    pub index: u32,
    pub name: String,
    /// Where its sync backend listens, `HOST:PORT`.
    pub addr: String,
    /// The Docker host it runs on, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The plan every peer of a run follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPlan {
    pub schema_version: u32,
    pub run_id: String,
    /// The spec the plan was made from.
    pub spec: PlanSpec,
    /// The peers that take part, numbered by sorted name.
    pub peers: Vec<PlannedPeer>,
    /// The graph actually generated (its degree may be lower than asked if fewer peers came).
    pub graph: Graph,
    /// When every peer starts writing, milliseconds since the Unix epoch.
    pub start_at_unix_ms: u64,
    /// When each peer connects, before the start ([`Ramp`]); none: all at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

/// The start burst, spread: peers connect to their neighbours, shake hands and take their
/// clock samples one after another over `over_ms` from `from_unix_ms`, the highest index
/// first. A peer dials only neighbours of higher index, so every dial finds its
/// neighbour already listening and answering. The common start comes after the ramp,
/// so the measurement windows are the same for everyone.
///
/// `over_ms` is sized by the coordinator from each host's peers and CPUs
/// ([`ramp_ms`]), so a host that carries more peers per core takes longer, and the
/// busiest host sets the pace for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ramp {
    pub from_unix_ms: u64,
    pub over_ms: u64,
}

impl Ramp {
    /// When peer `index` of `peers` connects, ms since the Unix epoch.
    pub fn slot_unix_ms(&self, index: u32, peers: usize) -> u64 {
        let n = peers.max(1) as u64;
        let rank = n.saturating_sub(1).saturating_sub(u64::from(index));
        self.from_unix_ms + self.over_ms * rank / n
    }
}

/// CPU a peer spends starting (reading the plan, connecting, handshakes, clock samples),
/// in ms of one core, rounded up from what 1000 peers on 2 CPUs took (docs/capacity.md).
pub const START_CPU_MS_PER_PEER: u64 = 20;
/// Between the end of the ramp and the common start: the last peers' clock samples.
pub const RAMP_TO_START_MS: u64 = 3_000;
/// Below this, a ramp is not worth it: everyone starts at once.
pub const RAMP_MIN_MS: u64 = 500;

/// The ramp for hosts of `(peers, CPUs)`: the busiest host's peers × their start cost,
/// shared by its CPUs. `None` when that is short enough to start at once.
pub fn ramp_ms(hosts: impl IntoIterator<Item = (usize, u32)>) -> Option<u64> {
    let over = hosts
        .into_iter()
        .map(|(peers, cpus)| peers as u64 * START_CPU_MS_PER_PEER / u64::from(cpus.max(1)))
        .max()?;
    (over >= RAMP_MIN_MS).then_some(over)
}

impl ExecutionPlan {
    /// Makes the plan for the registered peers `(name, addr)`.
    pub fn make(
        run_id: &str,
        spec: &PlanSpec,
        mut registered: Vec<(String, String)>,
        now_unix_ms: u64,
    ) -> Result<Self, crate::graph::GraphError> {
        registered.sort();
        let n = registered.len();
        let degree = if spec.graph == GraphKind::RandomRegular && n > 2 {
            spec.degree.clamp(2, n - 1)
        } else {
            spec.degree
        };
        let kind = if spec.graph == GraphKind::RandomRegular && n <= 2 {
            GraphKind::Complete
        } else {
            spec.graph
        };
        let graph = crate::graph::generate(kind, n, degree, spec.seed)?;
        Ok(ExecutionPlan {
            schema_version: PLAN_SCHEMA_VERSION,
            run_id: run_id.to_owned(),
            spec: spec.clone(),
            peers: registered
                .into_iter()
                .enumerate()
                .map(|(i, (name, addr))| PlannedPeer {
                    index: i as u32,
                    name,
                    addr,
                    host: None,
                })
                .collect(),
            graph,
            start_at_unix_ms: now_unix_ms + spec.start_delay_for(n),
            ramp: None,
        })
    }

    /// Spreads the start over `over_ms` from `now_unix_ms` ([`Ramp`]), moving the common
    /// start after it if it was sooner.
    pub fn with_ramp(mut self, now_unix_ms: u64, over_ms: u64) -> Self {
        self.ramp = Some(Ramp {
            from_unix_ms: now_unix_ms,
            over_ms,
        });
        self.start_at_unix_ms = self
            .start_at_unix_ms
            .max(now_unix_ms + over_ms + RAMP_TO_START_MS);
        self
    }

    /// When peer `index` connects: its ramp slot, or now.
    pub fn connect_at_unix_ms(&self, index: u32) -> Option<u64> {
        self.ramp.map(|r| r.slot_unix_ms(index, self.peers.len()))
    }

    /// The peer with this name.
    pub fn peer(&self, name: &str) -> Option<&PlannedPeer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The graph after `epoch` re-draws of mobility fault `fault` (0-based index among
    /// the plan's faults): the plan's graph shuffled with a seed made from the plan's,
    /// the fault's and the epoch's, so every peer computes the same graph without being
    /// told. Epoch 0 is the plan's graph.
    pub fn redrawn(&self, fault: usize, epoch: u64) -> Graph {
        if epoch == 0 {
            return self.graph.clone();
        }
        let seed = self.spec.seed
            ^ (fault as u64 + 1).rotate_left(32)
            ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.graph.shuffled(seed)
    }

    /// Every re-draw of the plan's mobility faults, soonest first: `(when, ms since the
    /// Unix epoch; fault index; epoch)`, at `start + at + k * every` for k = 1, 2, … while
    /// within the fault's `for` and the writing.
    pub fn mobility_epochs(&self) -> Vec<(u64, usize, u64)> {
        let Ok((_, faults)) = self.spec.checked_faults() else {
            return Vec::new();
        };
        let end = self.start_at_unix_ms + self.spec.duration_ms;
        let mut steps = Vec::new();
        for (i, f) in faults.iter().enumerate() {
            let crate::faults::Action::Mobility { every_ms } = f.action else {
                continue;
            };
            let from = self.start_at_unix_ms + f.at_ms;
            let until = f.for_ms.map_or(end, |d| (from + d).min(end));
            let mut k = 1;
            while every_ms > 0 && from + k * every_ms <= until {
                steps.push((from + k * every_ms, i, k));
                k += 1;
            }
        }
        steps.sort_unstable();
        steps
    }

    /// The planned neighbours of peer `index`.
    pub fn neighbours_of(&self, index: u32) -> Vec<&PlannedPeer> {
        self.graph
            .neighbours(index)
            .into_iter()
            .map(|i| &self.peers[i as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_is_sized_by_the_busiest_host_and_dialers_go_last() {
        // 1000 peers on 2 CPUs: 10 s; the same on 4 hosts of 2 CPUs each: 2.5 s.
        assert_eq!(ramp_ms([(1000, 2)]), Some(10_000));
        assert_eq!(ramp_ms([(250, 2); 4]), Some(2_500));
        assert_eq!(ramp_ms([(250, 2), (500, 4), (100, 1)]), Some(2_500));
        assert_eq!(ramp_ms([(20, 2)]), None, "too short to bother");
        assert_eq!(ramp_ms([(10, 0)]), None);
        assert_eq!(ramp_ms(std::iter::empty()), None);
        let r = Ramp {
            from_unix_ms: 1_000,
            over_ms: 10_000,
        };
        // The highest index first: a peer dials higher indices, which listen already.
        assert_eq!(r.slot_unix_ms(999, 1000), 1_000);
        assert_eq!(r.slot_unix_ms(0, 1000), 1_000 + 9_990);
        assert!(r.slot_unix_ms(10, 1000) > r.slot_unix_ms(11, 1000));
        assert_eq!(r.slot_unix_ms(5, 1), 1_000, "out of range: at once");
    }

    #[test]
    fn a_ramp_moves_the_start_after_it() {
        let spec = PlanSpec {
            start_delay_ms: 10_000,
            ..PlanSpec::default()
        };
        let peers = (0..4)
            .map(|i| (format!("p{i}"), format!("a:{i}")))
            .collect();
        let plan = ExecutionPlan::make("r", &spec, peers, 1_000).unwrap();
        let planned_start = plan.start_at_unix_ms;
        assert_eq!(plan.connect_at_unix_ms(0), None);
        let ramped = plan.clone().with_ramp(1_000, 20_000);
        assert_eq!(ramped.start_at_unix_ms, 1_000 + 20_000 + RAMP_TO_START_MS);
        assert_eq!(ramped.connect_at_unix_ms(3), Some(1_000));
        let short = plan.with_ramp(1_000, 1);
        assert_eq!(short.start_at_unix_ms, planned_start, "kept when later");
        let json = serde_json::to_string(&short).unwrap();
        let back: ExecutionPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, short);
    }

    #[test]
    fn mobility_redraws_on_its_schedule_the_same_everywhere() {
        let spec = PlanSpec {
            peers: 8,
            duration_ms: 30_000,
            graph: GraphKind::Ring,
            faults: vec![crate::faults::FaultSpec {
                at: "5s".into(),
                duration: Some("12s".into()),
                peers: "all".into(),
                action: "mobility".into(),
                every: Some("5s".into()),
                ..Default::default()
            }],
            ..PlanSpec::default()
        };
        let plan = ExecutionPlan::make("r", &spec, registered(8), 1_000).unwrap();
        let start = plan.start_at_unix_ms;
        assert_eq!(
            plan.mobility_epochs(),
            vec![(start + 10_000, 0, 1), (start + 15_000, 0, 2)],
            "every 5 s from 5 s, within 12 s"
        );
        assert_eq!(plan.redrawn(0, 0), plan.graph);
        let g1 = plan.redrawn(0, 1);
        assert_ne!(g1, plan.graph);
        assert_eq!(g1, plan.redrawn(0, 1));
        assert!(g1.is_connected() && g1.edges.len() == plan.graph.edges.len());
        assert_ne!(g1, plan.redrawn(0, 2));
    }

    #[test]
    fn extreme_values_are_refused_before_anything_adds_them_up() {
        let base = PlanSpec {
            peers: 8,
            ..PlanSpec::default()
        };
        let cases = [
            PlanSpec {
                peers: MAX_PEERS + 1,
                ..base.clone()
            },
            PlanSpec {
                duration_ms: u64::MAX,
                ..base.clone()
            },
            PlanSpec {
                settle_timeout_ms: u64::MAX,
                ..base.clone()
            },
            PlanSpec {
                start_delay_ms: MAX_WAIT_MS + 1,
                ..base.clone()
            },
            PlanSpec {
                degree: usize::MAX,
                ..base.clone()
            },
        ];
        for spec in cases {
            let err = spec.validate().unwrap_err();
            assert!(matches!(err, SpecError::TooLarge { .. }), "{err}");
            assert!(err.to_string().contains("at most"), "{err}");
        }
        base.validate().unwrap();
    }

    fn registered(n: usize) -> Vec<(String, String)> {
        (0..n)
            .rev()
            .map(|i| {
                (
                    format!("peer-{:04}", i + 1),
                    format!("127.0.0.1:{}", 9000 + i),
                )
            })
            .collect()
    }

    #[test]
    fn numbers_peers_by_sorted_name() {
        let spec = PlanSpec {
            peers: 5,
            graph: GraphKind::Ring,
            ..PlanSpec::default()
        };
        let plan = ExecutionPlan::make("r1", &spec, registered(5), 1000).unwrap();
        assert_eq!(plan.peers[0].name, "peer-0001");
        assert_eq!(plan.peers[4].index, 4);
        assert_eq!(plan.start_at_unix_ms, 1000 + spec.start_delay_ms);
        let mut n: Vec<_> = plan.neighbours_of(0).iter().map(|p| p.index).collect();
        n.sort();
        assert_eq!(n, vec![1, 4]);
    }

    #[test]
    fn random_regular_degree_shrinks_to_fit_fewer_peers() {
        let spec = PlanSpec {
            peers: 10,
            degree: 6,
            ..PlanSpec::default()
        };
        let plan = ExecutionPlan::make("r", &spec, registered(4), 0).unwrap();
        assert!(plan.graph.degrees().iter().all(|&d| d == 3));
        let two = ExecutionPlan::make("r", &spec, registered(2), 0).unwrap();
        assert_eq!(two.graph.edges, vec![(0, 1)]);
    }

    #[test]
    fn validates_before_anything_starts() {
        let ok = PlanSpec::default();
        assert_eq!(ok.validate(), Ok(()));
        let zero = PlanSpec {
            peers: 0,
            ..ok.clone()
        };
        assert_eq!(zero.validate(), Err(SpecError::NoPeers));
        let min = PlanSpec {
            min_peers: Some(11),
            ..ok.clone()
        };
        assert!(matches!(min.validate(), Err(SpecError::BadMinPeers { .. })));
        let degree = PlanSpec {
            degree: 10,
            ..ok.clone()
        };
        assert!(matches!(
            degree.validate(),
            Err(SpecError::BadDegree { .. })
        ));
        for peers in [1, 2] {
            let tiny = PlanSpec {
                peers,
                ..ok.clone()
            };
            assert_eq!(tiny.validate(), Ok(()), "{peers} peers plan as complete");
        }
    }
}
