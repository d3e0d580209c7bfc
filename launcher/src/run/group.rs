//! Run groups: `launcher run --repeat N` runs one plan N times with different seeds and
//! records the runs as a group, `runs/<name>.group.json`, which `launcher compare`
//! accepts wherever it takes a run. The file is rewritten after each run, so an
//! interrupted repeat keeps the runs it finished, and the same command again goes on
//! from there.

use crate::run::dir::{validate_run_id, write_json};
use cmesh_common::exit::bad_input;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const GROUP_SCHEMA: &str = "cmesh.run-group";

/// `runs/<name>.group.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunGroup {
    pub schema: String,
    pub schema_version: u32,
    pub name: String,
    /// The runs finished so far, in order, and the seed each ran with.
    pub runs: Vec<GroupRun>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRun {
    pub run_id: String,
    pub seed: u64,
}

/// Where group `name` is recorded under `runs`.
pub fn path(runs: &Path, name: &str) -> PathBuf {
    runs.join(format!("{name}.group.json"))
}

/// The id of the `i`-th run (from 1) of group `name`.
pub fn run_id(name: &str, i: usize) -> String {
    format!("{name}-{i}")
}

/// A new group name from the UTC time: `g1204-232334`.
pub fn new_name() -> String {
    let id = crate::run::dir::new_run_id();
    format!("g{}", &id[1..])
}

/// Checks a group name for `n` runs: its run ids must be valid run ids.
pub fn validate(name: &str, n: usize) -> anyhow::Result<()> {
    validate_run_id(name)?;
    validate_run_id(&run_id(name, n.max(1))).map_err(|_| {
        bad_input(format!(
            "group name `{name}` is too long: its runs are named `{name}-N`, at most 40 characters"
        ))
    })
}

/// Group `name`, if it is recorded.
pub fn read(runs: &Path, name: &str) -> anyhow::Result<Option<RunGroup>> {
    let p = path(runs, name);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", p.display())),
    };
    let g: RunGroup = serde_json::from_str(&text)
        .map_err(|e| bad_input(format!("{} is not a run group: {e}", p.display())))?;
    if g.schema != GROUP_SCHEMA {
        return Err(bad_input(format!(
            "{} has schema `{}`, not {GROUP_SCHEMA}",
            p.display(),
            g.schema
        )));
    }
    Ok(Some(g))
}

/// Records `group` (atomically).
pub fn write(runs: &Path, group: &RunGroup) -> anyhow::Result<()> {
    write_json(&path(runs, &group.name), group)
}

/// The runs `names` stand for: a group's runs for a group's name, else the name itself.
pub fn expand(runs: &Path, names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        match read(runs, n)? {
            Some(g) if !g.runs.is_empty() => out.extend(g.runs.into_iter().map(|r| r.run_id)),
            Some(_) => return Err(bad_input(format!("group `{n}` has no finished run yet"))),
            None => out.push(n.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_expand_to_their_runs() {
        let dir = tempfile::tempdir().unwrap();
        let g = RunGroup {
            schema: GROUP_SCHEMA.into(),
            schema_version: 1,
            name: "base".into(),
            runs: vec![
                GroupRun {
                    run_id: run_id("base", 1),
                    seed: 7,
                },
                GroupRun {
                    run_id: run_id("base", 2),
                    seed: 8,
                },
            ],
        };
        write(dir.path(), &g).unwrap();
        assert_eq!(read(dir.path(), "base").unwrap(), Some(g));
        let names = ["base".to_string(), "r1".to_string()];
        assert_eq!(
            expand(dir.path(), &names).unwrap(),
            ["base-1", "base-2", "r1"]
        );
        assert_eq!(read(dir.path(), "none").unwrap(), None);
    }

    #[test]
    fn names_must_leave_room_for_their_run_numbers() {
        assert!(validate("baseline", 3).is_ok());
        assert!(validate(&"x".repeat(38), 3).is_ok());
        assert!(validate(&"x".repeat(39), 10).is_err());
        assert!(validate("Bad_Name", 3).is_err());
        let n = new_name();
        assert!(n.starts_with('g') && validate(&n, 100).is_ok(), "{n}");
    }
}
