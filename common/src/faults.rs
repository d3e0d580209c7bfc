//! The fault timeline of a test plan: at given offsets from the common start, for given
//! durations, actions on selected peers.
//!
//! ```toml
//! [groups]                   # named peer sets, for selectors and partitions
//! a = "1-50"
//! b = "51-100"
//!
//! [[fault]]
//! at = "10s"                 # offset from the common start
//! for = "30s"                # how long; left out: until the end of the run
//! peers = "group:a"          # who: all | 1-50,60 | name:peer-00[0-4]* | group:a | 10%
//! to = "group:b"             # shaping only: traffic towards these peers [default: all]
//! action = "delay"           # delay | loss | duplicate | corrupt | reorder | rate |
//!                            # partition | kill | restart | pause | mobility
//! ms = 200                   # delay: ms and jitter_ms
//! jitter_ms = 20
//! ```
//!
//! Other actions' fields: `loss`, `duplicate`, `corrupt`, `reorder`: `percent`; `rate`:
//! `kbit`; `partition`: `groups` (names from `[groups]`; `peers` is ignored); `mobility`:
//! `every` (the graph is re-drawn that often; every peer derives the same one from the
//! plan). `kill`, `restart`, `pause` take no fields. Peer numbers are 1-based, as in container names (`peer-0001` is 1).
//! A `%` selector picks that share of the peers with the plan's seed, so a plan picks the
//! same peers every time.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One `[[fault]]` as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default = "all", skip_serializing_if = "is_all")]
    pub peers: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
}

fn all() -> String {
    "all".into()
}
fn is_all(s: &String) -> bool {
    s == "all"
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Delay { ms: u64, jitter_ms: u64 },
    Loss { percent: f64 },
    Duplicate { percent: f64 },
    Corrupt { percent: f64 },
    Reorder { percent: f64 },
    Rate { kbit: u64 },
    Partition { groups: Vec<String> },
    Kill,
    Restart,
    Pause,
    Mobility { every_ms: u64 },
}

impl Action {
    /// Done to the container from outside, through the Docker API (`launcher wait` for
    /// a plan's, `launcher chaos`).
    pub fn is_docker(&self) -> bool {
        matches!(self, Action::Kill | Action::Pause | Action::Restart)
    }

    /// Link shaping, applied by the peer to its own traffic.
    pub fn is_shaping(&self) -> bool {
        matches!(
            self,
            Action::Delay { .. }
                | Action::Loss { .. }
                | Action::Duplicate { .. }
                | Action::Corrupt { .. }
                | Action::Reorder { .. }
                | Action::Rate { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Delay { .. } => "delay",
            Action::Loss { .. } => "loss",
            Action::Duplicate { .. } => "duplicate",
            Action::Corrupt { .. } => "corrupt",
            Action::Reorder { .. } => "reorder",
            Action::Rate { .. } => "rate",
            Action::Partition { .. } => "partition",
            Action::Kill => "kill",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Mobility { .. } => "mobility",
        }
    }
}

/// Which peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selector {
    All,
    /// 1-based inclusive ranges.
    Ranges(Vec<(usize, usize)>),
    /// A glob on peer names: `*`, `?` and `[a-z]` classes.
    Names(String),
    Group(String),
    /// A share of the peers, picked with the plan's seed.
    Percent(f64),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Selector::All);
        }
        if let Some(glob) = s.strip_prefix("name:") {
            if glob.is_empty() {
                return Err("`name:` needs a pattern, e.g. name:peer-00[0-4]*".into());
            }
            if glob.chars().count() > MAX_GLOB_CHARS {
                return Err(format!(
                    "a `name:` pattern of {} characters; at most {MAX_GLOB_CHARS}",
                    glob.chars().count()
                ));
            }
            return Ok(Selector::Names(glob.into()));
        }
        if let Some(g) = s.strip_prefix("group:") {
            if g.is_empty() {
                return Err("`group:` needs a group name from [groups]".into());
            }
            return Ok(Selector::Group(g.into()));
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage like 10%"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("`{s}`: use a share between 0% and 100%"));
            }
            return Ok(Selector::Percent(p));
        }
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let bad = || {
                format!(
                    "`{s}` is not a peer selector: use all, 1-50,60, name:GLOB, group:NAME or 10%"
                )
            };
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part.trim(), part.trim()),
            };
            let a: usize = a.parse().map_err(|_| bad())?;
            let b: usize = b.parse().map_err(|_| bad())?;
            if a == 0 || b < a {
                return Err(format!(
                    "`{part}` in `{s}`: peers are numbered from 1, and a range goes up"
                ));
            }
            ranges.push((a, b));
        }
        Ok(Selector::Ranges(ranges))
    }

    /// The 0-based indices of the selected peers among `names` (the plan's sorted names).
    pub fn resolve(
        &self,
        names: &[String],
        groups: &BTreeMap<String, Selector>,
        seed: u64,
    ) -> Result<BTreeSet<usize>, String> {
        let n = names.len();
        Ok(match self {
            Selector::All => (0..n).collect(),
            Selector::Ranges(rs) => {
                let mut out = BTreeSet::new();
                for &(a, b) in rs {
                    if b > n {
                        return Err(format!("peer {b} is beyond the plan's {n} peers"));
                    }
                    out.extend(a - 1..b);
                }
                out
            }
            Selector::Names(glob) => names
                .iter()
                .enumerate()
                .filter(|(_, name)| glob_match(glob, name))
                .map(|(i, _)| i)
                .collect(),
            Selector::Group(g) => match groups.get(g) {
                Some(Selector::Group(_)) | None => {
                    return Err(format!("no group `{g}` in [groups]"));
                }
                Some(sel) => sel.resolve(names, groups, seed)?,
            },
            Selector::Percent(p) => {
                let k = ((n as f64) * p / 100.0).ceil() as usize;
                let mut order: Vec<usize> = (0..n).collect();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x00fa_175e_1ec7);
                order.shuffle(&mut rng);
                order.into_iter().take(k.min(n)).collect()
            }
        })
    }
}

/// The longest `name:` glob a selector takes, in characters.
pub const MAX_GLOB_CHARS: usize = 256;

/// One element of a glob.
#[derive(Clone, Debug, PartialEq)]
enum GlobToken {
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    Any,
    /// `[…]`: one character in these inclusive ranges.
    Class(Vec<(char, char)>),
    Literal(char),
}

/// `glob` as tokens; `None` when a class is not closed (such a glob matches nothing).
fn glob_tokens(glob: &str) -> Option<Vec<GlobToken>> {
    let p: Vec<char> = glob.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        out.push(match p[i] {
            '*' => GlobToken::Star,
            '?' => GlobToken::Any,
            '[' => {
                // A `]` first in the class is a member; `a-z` is a range unless `-` ends it.
                let mut ranges = Vec::new();
                let mut j = i + 1;
                while j < p.len() && (p[j] != ']' || j == i + 1) {
                    if j + 2 < p.len() && p[j + 1] == '-' && p[j + 2] != ']' {
                        ranges.push((p[j], p[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((p[j], p[j]));
                        j += 1;
                    }
                }
                if j >= p.len() {
                    return None;
                }
                i = j;
                GlobToken::Class(ranges)
            }
            c => GlobToken::Literal(c),
        });
        i += 1;
    }
    Some(out)
}

/// Matches `name` against a glob: `*` any run, `?` one character, `[a-z0-9]` a class.
///
/// Iterative, with one backtrack point (the last `*`): at most pattern × name steps,
/// whatever the pattern. (It recursed over every split at each `*` before, which is
/// exponential in the stars, and ran under the coordinator's state lock.)
pub fn glob_match(glob: &str, name: &str) -> bool {
    let Some(p) = glob_tokens(glob) else {
        return false;
    };
    let s: Vec<char> = name.chars().collect();
    let one = |t: &GlobToken, c: char| match t {
        GlobToken::Any => true,
        GlobToken::Literal(l) => *l == c,
        GlobToken::Class(ranges) => ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi),
        GlobToken::Star => false,
    };
    let (mut pi, mut si) = (0, 0);
    // The last star seen, and where in the name its run ends so far.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == GlobToken::Star {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && one(&p[pi], s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, end)) = star {
            // Let the star take one more character and try again after it.
            star = Some((sp, end + 1));
            pi = sp + 1;
            si = end + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|t| *t == GlobToken::Star)
}

/// A checked fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub at_ms: u64,
    /// `None`: until the end of the run.
    pub for_ms: Option<u64>,
    pub peers: Selector,
    pub to: Option<Selector>,
    #[serde(flatten)]
    pub action: Action,
}

impl Fault {
    /// The 0-based indices of the peers this fault acts on: for a partition, the members
    /// of its groups (its `peers` is ignored); else its `peers` selector.
    pub fn targets(
        &self,
        names: &[String],
        groups: &BTreeMap<String, Selector>,
        seed: u64,
    ) -> Result<BTreeSet<usize>, String> {
        match &self.action {
            Action::Partition { groups: listed } => {
                let mut out = BTreeSet::new();
                for g in listed {
                    out.extend(Selector::Group(g.clone()).resolve(names, groups, seed)?);
                }
                Ok(out)
            }
            _ => self.peers.resolve(names, groups, seed),
        }
    }
}

/// For a partition of `listed` groups: the peers peer `me` must cut itself off from, the
/// members of every listed group `me` is not in (but not those that share a group with
/// it). Empty if `me` is in none of the groups.
pub fn partition_cut(
    listed: &[String],
    names: &[String],
    groups: &BTreeMap<String, Selector>,
    seed: u64,
    me: usize,
) -> Result<BTreeSet<usize>, String> {
    let mut mine = BTreeSet::new();
    let mut others = BTreeSet::new();
    for g in listed {
        let members = Selector::Group(g.clone()).resolve(names, groups, seed)?;
        if members.contains(&me) {
            mine.extend(members);
        } else {
            others.extend(members);
        }
    }
    if mine.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(others.difference(&mine).copied().collect())
}

/// The most `[[fault]]` entries a plan may have.
pub const MAX_FAULTS: usize = 1_000;
/// The most `[groups]` a plan may have.
pub const MAX_GROUPS: usize = 256;
/// The longest any string of a fault or group may be (selectors, durations, names).
pub const MAX_FAULT_STRING: usize = 300;

/// Checks the counts, lengths and group names of a plan's faults before anything parses
/// them.
fn check_sizes(groups: &BTreeMap<String, String>, faults: &[FaultSpec]) -> Result<(), String> {
    if faults.len() > MAX_FAULTS {
        return Err(format!(
            "{} [[fault]] entries; at most {MAX_FAULTS}",
            faults.len()
        ));
    }
    if groups.len() > MAX_GROUPS {
        return Err(format!("{} [groups]; at most {MAX_GROUPS}", groups.len()));
    }
    for (name, sel) in groups {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "[groups] `{}`: a group name is 1 to 64 of A-Z a-z 0-9 - _",
                name.chars().take(64).collect::<String>()
            ));
        }
        if sel.len() > MAX_FAULT_STRING {
            return Err(format!(
                "[groups] `{name}`: {} characters; at most {MAX_FAULT_STRING}",
                sel.len()
            ));
        }
    }
    for (i, f) in faults.iter().enumerate() {
        let strings = [
            Some(&f.at),
            f.duration.as_ref(),
            Some(&f.peers),
            f.to.as_ref(),
            Some(&f.action),
            f.every.as_ref(),
        ];
        let list = f.groups.iter().flatten();
        if f.groups.as_ref().is_some_and(|g| g.len() > MAX_GROUPS) {
            return Err(format!(
                "[[fault]] #{}: more than {MAX_GROUPS} groups",
                i + 1
            ));
        }
        if strings
            .into_iter()
            .flatten()
            .chain(list)
            .any(|s| s.len() > MAX_FAULT_STRING)
        {
            return Err(format!(
                "[[fault]] #{}: a value over {MAX_FAULT_STRING} characters",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Checks a plan's `[groups]` and `[[fault]]`s. Errors name the fault (1-based) and key.
pub fn check(
    groups: &BTreeMap<String, String>,
    faults: &[FaultSpec],
) -> Result<(BTreeMap<String, Selector>, Vec<Fault>), String> {
    check_sizes(groups, faults)?;
    let mut parsed_groups = BTreeMap::new();
    for (name, sel) in groups {
        let s = Selector::parse(sel).map_err(|e| format!("[groups] `{name}`: {e}"))?;
        if matches!(s, Selector::Group(_)) {
            return Err(format!(
                "[groups] `{name}`: a group cannot name another group"
            ));
        }
        parsed_groups.insert(name.clone(), s);
    }
    let ms = |v: &str| -> Result<u64, String> {
        crate::parse::duration(v).map(|d| d.as_millis() as u64)
    };
    let mut out = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let at = |key: &str, e: String| format!("[[fault]] #{} `{key}`: {e}", i + 1);
        let peers = Selector::parse(&f.peers).map_err(|e| at("peers", e))?;
        let to =
            f.to.as_deref()
                .map(Selector::parse)
                .transpose()
                .map_err(|e| at("to", e))?;
        for sel in std::iter::once(&peers).chain(to.as_ref()) {
            if let Selector::Group(g) = sel {
                if !parsed_groups.contains_key(g) {
                    return Err(at("peers", format!("no group `{g}` in [groups]")));
                }
            }
        }
        let percent = |name: &str| -> Result<f64, String> {
            match f.percent {
                Some(p) if p > 0.0 && p <= 100.0 => Ok(p),
                Some(p) => Err(at("percent", format!("{p} is not between 0 and 100"))),
                None => Err(at("percent", format!("`{name}` needs percent = N"))),
            }
        };
        let action = match f.action.as_str() {
            "delay" => Action::Delay {
                ms: f.ms.ok_or_else(|| at("ms", "`delay` needs ms = N".into()))?,
                jitter_ms: f.jitter_ms.unwrap_or(0),
            },
            "loss" => Action::Loss {
                percent: percent("loss")?,
            },
            "duplicate" => Action::Duplicate {
                percent: percent("duplicate")?,
            },
            "corrupt" => Action::Corrupt {
                percent: percent("corrupt")?,
            },
            "reorder" => Action::Reorder {
                percent: percent("reorder")?,
            },
            "rate" => Action::Rate {
                kbit: f
                    .kbit
                    .filter(|k| *k > 0)
                    .ok_or_else(|| at("kbit", "`rate` needs kbit = N (at least 1)".into()))?,
            },
            "partition" => {
                let groups = f.groups.clone().unwrap_or_default();
                if groups.len() < 2 {
                    return Err(at("groups", "`partition` needs groups = [\"a\", \"b\", …], at least two".into()));
                }
                for g in &groups {
                    if !parsed_groups.contains_key(g) {
                        return Err(at("groups", format!("no group `{g}` in [groups]")));
                    }
                }
                Action::Partition { groups }
            }
            "kill" => Action::Kill,
            "restart" => Action::Restart,
            "pause" => Action::Pause,
            "mobility" => {
                let every_ms = f
                    .every
                    .as_deref()
                    .ok_or_else(|| at("every", "`mobility` needs every = \"10s\"".into()))
                    .and_then(|v| ms(v).map_err(|e| at("every", e)))?;
                if every_ms < 1_000 {
                    return Err(at(
                        "every",
                        "re-drawing the graph more often than once a second leaves no time to connect; use every = \"1s\" or more".into(),
                    ));
                }
                Action::Mobility { every_ms }
            }
            other => {
                return Err(at(
                    "action",
                    format!("unknown action `{other}`; use delay, loss, duplicate, corrupt, reorder, rate, partition, kill, restart, pause or mobility"),
                ))
            }
        };
        // Fields that belong to other actions are mistakes, not no-ops.
        let used: &[&str] = match &action {
            Action::Delay { .. } => &["ms", "jitter_ms"],
            Action::Loss { .. }
            | Action::Duplicate { .. }
            | Action::Corrupt { .. }
            | Action::Reorder { .. } => &["percent"],
            Action::Rate { .. } => &["kbit"],
            Action::Partition { .. } => &["groups"],
            Action::Mobility { .. } => &["every"],
            _ => &[],
        };
        let set = [
            ("ms", f.ms.is_some()),
            ("jitter_ms", f.jitter_ms.is_some()),
            ("percent", f.percent.is_some()),
            ("kbit", f.kbit.is_some()),
            ("groups", f.groups.is_some()),
            ("every", f.every.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(k, on)| *on && !used.contains(k)) {
            return Err(at(
                key,
                format!("`{key}` does not apply to `{}`", action.name()),
            ));
        }
        if to.is_some() && !action.is_shaping() {
            return Err(at(
                "to",
                format!("`to` applies to link shaping, not `{}`", action.name()),
            ));
        }
        out.push(Fault {
            at_ms: ms(&f.at).map_err(|e| at("at", e))?,
            for_ms: f
                .duration
                .as_deref()
                .map(ms)
                .transpose()
                .map_err(|e| at("for", e))?,
            peers,
            to,
            action,
        });
    }
    Ok((parsed_groups, out))
}

/// What a host's kernel offers for shaping (from `launcher hosts check`'s probe, or the
/// peer's own look at /proc and /sys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCaps {
    pub netem: bool,
    pub nfqueue: bool,
    pub iptables_statistic: bool,
    pub tbf: bool,
}

/// How an action is carried out on a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShapingPath {
    /// `tc qdisc … netem`.
    Netem,
    /// Packets held in userspace (NFQUEUE) before the verdict.
    Nfqueue,
    /// `iptables -m statistic --mode random -j DROP`, or plain DROP for partitions.
    Iptables,
    /// `tc qdisc … tbf`.
    Tbf,
}

/// Picks the path for `action` on a kernel with `caps`: netem wherever the kernel has it,
/// else the userspace path, else an error naming the missing kernel feature.
pub fn choose_path(action: &Action, caps: KernelCaps) -> Result<ShapingPath, String> {
    let missing = |what: &str| Err(format!("`{}` needs {what}", action.name()));
    match action {
        Action::Delay { .. } | Action::Reorder { .. } => {
            if caps.netem {
                Ok(ShapingPath::Netem)
            } else if caps.nfqueue {
                Ok(ShapingPath::Nfqueue)
            } else {
                missing("sch_netem or nfnetlink_queue (NFQUEUE) in the kernel; neither is there")
            }
        }
        Action::Loss { .. } => {
            if caps.netem {
                Ok(ShapingPath::Netem)
            } else if caps.iptables_statistic {
                Ok(ShapingPath::Iptables)
            } else {
                missing("sch_netem or the iptables statistic match (xt_statistic) in the kernel; neither is there")
            }
        }
        Action::Duplicate { .. } | Action::Corrupt { .. } => {
            if caps.netem {
                Ok(ShapingPath::Netem)
            } else {
                missing(
                    "sch_netem in the kernel (no userspace path duplicates or corrupts packets)",
                )
            }
        }
        Action::Rate { .. } => {
            if caps.tbf {
                Ok(ShapingPath::Tbf)
            } else if caps.netem {
                Ok(ShapingPath::Netem)
            } else {
                missing("sch_tbf or sch_netem in the kernel")
            }
        }
        Action::Partition { .. } => Ok(ShapingPath::Iptables),
        _ => Err(format!("`{}` is not link shaping", action.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("r-peer-{i:04}")).collect()
    }

    #[test]
    fn counts_lengths_and_group_names_are_bounded() {
        let fault = FaultSpec {
            at: "1s".into(),
            action: "kill".into(),
            peers: "1".into(),
            ..Default::default()
        };
        let no_groups = BTreeMap::new();
        assert!(check(&no_groups, std::slice::from_ref(&fault)).is_ok());
        let many = vec![fault.clone(); MAX_FAULTS + 1];
        assert!(check(&no_groups, &many).unwrap_err().contains("at most"));
        let long = FaultSpec {
            at: "1".repeat(MAX_FAULT_STRING + 1),
            ..fault.clone()
        };
        assert!(check(&no_groups, &[long]).unwrap_err().contains("over"));
        let bad_name = BTreeMap::from([("a b".to_owned(), "1".to_owned())]);
        assert!(check(&bad_name, &[]).unwrap_err().contains("group name"));
        let huge_name = BTreeMap::from([("a".repeat(5_000_000), "1".to_owned())]);
        let err = check(&huge_name, &[]).unwrap_err();
        assert!(
            err.len() < 200,
            "the error shows a cut name: {} bytes",
            err.len()
        );
    }

    #[test]
    fn selectors_parse_and_resolve() {
        let n = names(100);
        let groups = BTreeMap::from([("a".to_owned(), Selector::parse("1-50").unwrap())]);
        let r = |s: &str| Selector::parse(s).unwrap().resolve(&n, &groups, 7).unwrap();
        assert_eq!(r("all").len(), 100);
        assert_eq!(r("1-3,10"), BTreeSet::from([0, 1, 2, 9]));
        assert_eq!(r("group:a").len(), 50);
        assert_eq!(r("name:r-peer-000[1-4]"), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(r("name:*-0100"), BTreeSet::from([99]));
        let ten = r("10%");
        assert_eq!(ten.len(), 10);
        assert_eq!(ten, r("10%"), "the same seed picks the same peers");
        let other = Selector::parse("10%")
            .unwrap()
            .resolve(&n, &groups, 8)
            .unwrap();
        assert_ne!(ten, other, "another seed picks others");
        assert!(Selector::parse("101")
            .unwrap()
            .resolve(&n, &groups, 1)
            .unwrap_err()
            .contains("beyond the plan's 100 peers"));
        assert!(Selector::parse("group:zz")
            .unwrap()
            .resolve(&n, &groups, 1)
            .is_err());
        for bad in ["0-3", "5-2", "x", "150%", "0%", "name:", "group:"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("peer-00[0-4]*", "peer-0031"));
        assert!(!glob_match("peer-00[0-4]*", "peer-0051"));
        assert!(glob_match("p?er-*", "peer-1"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a[bc]d", "aed"));
        assert!(glob_match("a[bc]d", "acd"));
        assert!(
            !glob_match("a[bc", "ab"),
            "an unclosed class matches nothing"
        );
        assert!(
            glob_match("[]a]x", "]x"),
            "a ] first in a class is a member"
        );
        assert!(glob_match("a-[x-z]*", "a-y1") && !glob_match("a-[x-z]*", "a-b1"));
        assert!(glob_match("*b*", "abc") && glob_match("a*", "a") && !glob_match("a*b", "ac"));
        assert!(glob_match("**a**", "xa") && !glob_match("?", ""));
    }

    #[test]
    fn many_stars_do_not_explode() {
        // Recursing over every split at each star took 2^n steps on this; one backtrack
        // point takes at most pattern × name.
        let pattern = format!("{}b", "a*".repeat(40));
        let name = "a".repeat(200);
        assert!(!glob_match(&pattern, &name));
        assert!(glob_match(&pattern, &format!("{name}b")));
        let long = format!("name:{}", "*".repeat(MAX_GLOB_CHARS + 1));
        let e = Selector::parse(&long).unwrap_err();
        assert!(e.contains("at most 256"), "{e}");
        assert!(Selector::parse(&format!("name:{}", "*".repeat(MAX_GLOB_CHARS))).is_ok());
    }

    fn spec(action: &str) -> FaultSpec {
        FaultSpec {
            at: "5s".into(),
            peers: "all".into(),
            action: action.into(),
            ..Default::default()
        }
    }

    #[test]
    fn faults_check_their_fields() {
        let groups = BTreeMap::from([
            ("a".to_owned(), "1-5".to_owned()),
            ("b".to_owned(), "6-10".to_owned()),
        ]);
        let ok = vec![
            FaultSpec {
                ms: Some(200),
                jitter_ms: Some(20),
                duration: Some("10s".into()),
                to: Some("group:b".into()),
                ..spec("delay")
            },
            FaultSpec {
                groups: Some(vec!["a".into(), "b".into()]),
                ..spec("partition")
            },
            FaultSpec {
                percent: Some(10.0),
                ..spec("loss")
            },
            FaultSpec {
                peers: "10%".into(),
                ..spec("kill")
            },
            FaultSpec {
                every: Some("5s".into()),
                ..spec("mobility")
            },
        ];
        let (g, faults) = check(&groups, &ok).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(faults[0].at_ms, 5_000);
        assert_eq!(faults[0].for_ms, Some(10_000));
        assert_eq!(
            faults[0].action,
            Action::Delay {
                ms: 200,
                jitter_ms: 20
            }
        );
        assert_eq!(faults[4].action, Action::Mobility { every_ms: 5_000 });
        assert_eq!(faults[2].for_ms, None);

        let err = |f: FaultSpec| check(&groups, &[f]).unwrap_err();
        assert!(err(spec("delay")).contains("#1 `ms`"));
        assert!(err(spec("teleport")).contains("unknown action `teleport`"));
        assert!(err(FaultSpec {
            percent: Some(5.0),
            ..spec("kill")
        })
        .contains("`percent` does not apply to `kill`"));
        assert!(err(FaultSpec {
            percent: Some(150.0),
            ..spec("loss")
        })
        .contains("150"));
        assert!(err(FaultSpec {
            groups: Some(vec!["a".into()]),
            ..spec("partition")
        })
        .contains("at least two"));
        assert!(err(FaultSpec {
            groups: Some(vec!["a".into(), "c".into()]),
            ..spec("partition")
        })
        .contains("no group `c`"));
        assert!(err(FaultSpec {
            to: Some("1".into()),
            ..spec("pause")
        })
        .contains("`to` applies to link shaping"));
        assert!(err(FaultSpec {
            at: "soon".into(),
            ..spec("kill")
        })
        .contains("`at`"));
        assert!(err(FaultSpec {
            peers: "group:zz".into(),
            ..spec("kill")
        })
        .contains("no group `zz`"));
        let bad_group = BTreeMap::from([("a".to_owned(), "group:b".to_owned())]);
        assert!(check(&bad_group, &[])
            .unwrap_err()
            .contains("cannot name another group"));
    }

    #[test]
    fn a_partition_cuts_each_group_from_the_others() {
        let n = names(10);
        let groups = BTreeMap::from([
            ("a".to_owned(), Selector::parse("1-4").unwrap()),
            ("b".to_owned(), Selector::parse("5-8").unwrap()),
            ("c".to_owned(), Selector::parse("8-10").unwrap()),
        ]);
        let ab = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            partition_cut(&ab, &n, &groups, 1, 0).unwrap(),
            BTreeSet::from([4, 5, 6, 7])
        );
        assert_eq!(
            partition_cut(&ab, &n, &groups, 1, 5).unwrap(),
            BTreeSet::from([0, 1, 2, 3])
        );
        assert!(
            partition_cut(&ab, &n, &groups, 1, 9).unwrap().is_empty(),
            "peer 10 is in neither group"
        );
        // Peer 8 is in b and c: it is cut from a only, and c's other members from a.
        let abc = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            partition_cut(&abc, &n, &groups, 1, 7).unwrap(),
            BTreeSet::from([0, 1, 2, 3])
        );
        assert_eq!(
            partition_cut(&abc, &n, &groups, 1, 9).unwrap(),
            BTreeSet::from([0, 1, 2, 3, 4, 5, 6])
        );
        let f = Fault {
            at_ms: 0,
            for_ms: None,
            peers: Selector::parse("1").unwrap(),
            to: None,
            action: Action::Partition {
                groups: ab.to_vec(),
            },
        };
        assert_eq!(f.targets(&n, &groups, 1).unwrap().len(), 8);
    }

    #[test]
    fn shaping_prefers_netem_then_the_userspace_path() {
        let delay = Action::Delay {
            ms: 200,
            jitter_ms: 0,
        };
        let loss = Action::Loss { percent: 10.0 };
        let dup = Action::Duplicate { percent: 1.0 };
        let full = KernelCaps {
            netem: true,
            nfqueue: true,
            iptables_statistic: true,
            tbf: true,
        };
        let here = KernelCaps {
            netem: false,
            ..full
        };
        assert_eq!(choose_path(&delay, full), Ok(ShapingPath::Netem));
        assert_eq!(choose_path(&delay, here), Ok(ShapingPath::Nfqueue));
        assert_eq!(choose_path(&loss, here), Ok(ShapingPath::Iptables));
        assert_eq!(
            choose_path(&Action::Rate { kbit: 100 }, here),
            Ok(ShapingPath::Tbf)
        );
        assert!(choose_path(&dup, here).unwrap_err().contains("sch_netem"));
        let bare = KernelCaps::default();
        let e = choose_path(&delay, bare).unwrap_err();
        assert!(e.contains("sch_netem or nfnetlink_queue"), "{e}");
        assert!(choose_path(&Action::Kill, full).is_err());
    }
}
