//! `hosts.toml`: the Docker hosts a run may use.
//!
//! ```toml
//! [[host]]
//! name = "local"                          # used in container placement and extract paths
//! engine = "unix:///var/run/docker.sock"  # how to reach its Docker Engine
//! role = "manager"                        # exactly one manager: swarm and coordinator live there
//! capacity = 500                          # most peers to place on it
//! ```
//!
//! Errors name the file, the line and the key. The format is documented in
//! `docs/hosts.md`.

use crate::error::bad_input;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A host's job in the swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Worker,
}

/// One `[[host]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// `unix:///path/to/docker.sock` (remote hosts arrive with the multi-host issue).
    #[serde(default = "default_engine")]
    pub engine: String,
    #[serde(default = "default_role")]
    pub role: Role,
    /// Most peers placed on this host.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Address to advertise when this host starts a swarm [default: the host's
    /// default-route address].
    #[serde(default)]
    pub advertise_addr: Option<String>,
}

fn default_engine() -> String {
    "unix:///var/run/docker.sock".into()
}
fn default_role() -> Role {
    Role::Manager
}
fn default_capacity() -> usize {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    host: Vec<HostSpec>,
}

/// Reads and checks a hosts file.
pub fn load(path: &Path) -> anyhow::Result<Vec<HostSpec>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad_input(format!(
            "cannot read the hosts file {}: {e}. Pass --hosts with a hosts.toml (see docs/hosts.md)",
            path.display()
        ))
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses hosts-file text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<Vec<HostSpec>> {
    let file: HostsFile = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| format!(" key `{}`:", k.trim()))
            .unwrap_or_default();
        bad_input(format!(
            "{origin}:{line}:{col}:{key} {}. See docs/hosts.md for the format",
            e.message().trim_end_matches('\n')
        ))
    })?;
    let at = |i: usize, key: &str| {
        let line = key_line(text, i, key);
        format!("{origin}:{line}: host #{} `{key}`", i + 1)
    };
    let mut names = std::collections::BTreeSet::new();
    for (i, h) in file.host.iter().enumerate() {
        if h.name.is_empty()
            || !h
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad_input(format!(
                "{}: `{}` is not a host name; use letters, digits, - and _",
                at(i, "name"),
                h.name
            )));
        }
        if !names.insert(h.name.clone()) {
            return Err(bad_input(format!(
                "{}: `{}` is named twice",
                at(i, "name"),
                h.name
            )));
        }
        if !h.engine.starts_with("unix://") {
            return Err(bad_input(format!(
                "{}: `{}` is not supported yet; use unix:///var/run/docker.sock",
                at(i, "engine"),
                h.engine
            )));
        }
        if h.capacity == 0 {
            return Err(bad_input(format!(
                "{}: must be at least 1",
                at(i, "capacity")
            )));
        }
    }
    let managers = file.host.iter().filter(|h| h.role == Role::Manager).count();
    if managers != 1 {
        return Err(bad_input(format!(
            "{origin}: exactly one host must have role = \"manager\" (found {managers})"
        )));
    }
    Ok(file.host)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// The line of `key` inside the `index`-th `[[host]]` table (best effort; 1 if not found).
fn key_line(text: &str, index: usize, key: &str) -> usize {
    let mut table = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t == "[[host]]" {
            table = Some(table.map_or(0, |i: usize| i + 1));
        } else if table == Some(index) && t.split('=').next().map(str::trim) == Some(key) {
            return n + 1;
        }
    }
    1
}

/// The default hosts file: only the local Docker Engine.
pub fn local_default() -> Vec<HostSpec> {
    vec![HostSpec {
        name: "local".into(),
        engine: default_engine(),
        role: Role::Manager,
        capacity: default_capacity(),
        advertise_addr: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_file() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../hosts.toml")).unwrap();
        let hosts = parse(&text, "hosts.toml").unwrap();
        assert_eq!(hosts, local_default());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "[[host]]\nname = \"a\"\ncapacity = \"lots\"\n";
        let e = parse(text, "h.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("h.toml:3:12: key `capacity`: invalid type"),
            "{e}"
        );

        let e = parse("[[host]]\nname = \"a\"\ncolour = 1\n", "h.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.toml:3:") && e.contains("colour"), "{e}");

        let e = parse("[[host]]\nname = \"a\"\ncapacity = 0\n", "h.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.toml:3: host #1 `capacity`"), "{e}");

        let e = parse("[[host]]\nname = \"a b\"\n", "h.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.toml:2: host #1 `name`"), "{e}");

        let e = parse("[[host]]\nname = \"a\"\nrole = \"worker\"\n", "h.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one host"), "{e}");

        let e = parse("[[host]\n", "h.toml").unwrap_err().to_string();
        assert!(e.starts_with("h.toml:1:"), "{e}");
    }
}
