//! `hosts.toml`: the Docker hosts a run may use, and how to reach them.
//!
//! ```toml
//! [ssh]                                   # only needed when a host has `ssh`
//! identity_file = "keys/id_ed25519"       # relative to this file's directory
//! known_hosts = "keys/known_hosts"
//! strict_host_key_checking = true         # the default; false accepts new keys
//! connect_timeout = "10s"
//!
//! [[host]]
//! name = "lab-1"                          # used in placement and extract paths
//! ssh = "root@172.31.250.2:22"            # leave out for this machine's own engine
//! docker_socket = "/var/run/docker.sock"  # on that host
//! role = "manager"                        # exactly one: swarm, registry, coordinator
//! capacity = 500                          # most peers to place on it (slots)
//! weight = 2                              # its share of the peers [default: capacity]
//! labels = { zone = "a" }                 # for --host-label and swarm node labels
//! advertise_addr = "172.31.250.2"         # its swarm address [default: ssh's host]
//! ```
//!
//! Errors name the file, the line and the key. The format is documented in
//! `docs/hosts.md`.

use cmesh_common::exit::bad_input;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// `[user@]host[:port]`; `None` for this machine's own engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// The engine's socket on that host.
    #[serde(default = "default_socket")]
    pub docker_socket: String,
    #[serde(default = "default_role")]
    pub role: Role,
    /// Most peers placed on this host.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// The host's share of the peers, relative to the others [default: capacity].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Address the host advertises to the swarm [default: the host part of `ssh`; for
    /// the local engine, the default-route address].
    #[serde(default)]
    pub advertise_addr: Option<String>,
}

impl HostSpec {
    pub fn is_remote(&self) -> bool {
        self.ssh.is_some()
    }

    /// The placement weight: `weight`, else `capacity`.
    pub fn weight(&self) -> u64 {
        self.weight.map(u64::from).unwrap_or(self.capacity as u64)
    }

    /// The swarm address: `advertise_addr`, else the host part of `ssh`.
    pub fn swarm_addr(&self) -> Option<String> {
        self.advertise_addr.clone().or_else(|| {
            self.ssh
                .as_deref()
                .and_then(|d| parse_ssh(d).ok())
                .map(|d| d.host)
        })
    }

    /// True if every `key=value` in `filter` is among the host's labels (or is its name).
    pub fn matches(&self, filter: &[(String, String)]) -> bool {
        filter
            .iter()
            .all(|(k, v)| self.labels.get(k) == Some(v) || (k == "name" && *v == self.name))
    }
}

/// The longest host name: it names containers, labels and directories.
pub const MAX_HOST_NAME: usize = 63;
/// Checks a host name: 1 to [`MAX_HOST_NAME`] letters, digits, - and _ (it names
/// directories, so nothing else).
pub fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_HOST_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`{}` is not a host name; use 1 to {MAX_HOST_NAME} letters, digits, - and _",
            shown(name)
        ));
    }
    Ok(())
}

/// The most hosts a hosts file may list.
pub const MAX_HOSTS: usize = 1_000;
/// The largest hosts file read.
pub const MAX_HOSTS_FILE_BYTES: u64 = 1 << 20;

/// A label key or value: at most 63 of `A-Z a-z 0-9 . _ -` (they become swarm node
/// labels and `--host-label` filters); a key is not empty.
fn check_label(s: &str, key: bool) -> bool {
    (!key || !s.is_empty())
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks one `[[host]]`'s values: the key at fault and what is wrong. Also run on the
/// hosts a manifest records.
pub fn check_host(h: &HostSpec) -> Result<(), (&'static str, String)> {
    check_host_name(&h.name).map_err(|e| ("name", e))?;
    if let Some(d) = &h.ssh {
        if d.len() > MAX_SSH_DESTINATION {
            return Err((
                "ssh",
                format!(
                    "`{}` is {} bytes long; an SSH destination is at most {MAX_SSH_DESTINATION}",
                    shown(d),
                    d.len()
                ),
            ));
        }
        parse_ssh(d).map_err(|e| ("ssh", e))?;
    }
    if !h.docker_socket.starts_with('/') || h.docker_socket.len() > 4096 {
        return Err((
            "docker_socket",
            format!(
                "`{}` is not an absolute socket path like /var/run/docker.sock",
                shown(&h.docker_socket)
            ),
        ));
    }
    if h.capacity == 0 {
        return Err(("capacity", "must be at least 1".into()));
    }
    if h.weight == Some(0) {
        return Err(("weight", "must be at least 1".into()));
    }
    if let Some(a) = &h.advertise_addr {
        if a.parse::<std::net::IpAddr>().is_err() {
            return Err((
                "advertise_addr",
                format!("`{}` is not an IP address", shown(a)),
            ));
        }
    }
    if h.labels.len() > 32 {
        return Err(("labels", format!("{} labels; at most 32", h.labels.len())));
    }
    for (k, v) in &h.labels {
        if !check_label(k, true) || !check_label(v, false) {
            return Err((
                "labels",
                format!(
                    "`{}` = `{}`: a label key (1 to 63) and value (at most 63) are of A-Z a-z 0-9 . _ -",
                    shown(k),
                    shown(v)
                ),
            ));
        }
    }
    Ok(())
}

/// The longest `ssh` destination (a DNS name is at most 253 bytes).
pub const MAX_SSH_DESTINATION: usize = 300;

/// A value from a hosts file as an error shows it: its first 64 characters, then `…`.
fn shown(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_owned(),
    }
}

/// An SSH destination, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshDest {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

/// Parses `[user@]host[:port]` (an IPv6 host goes in brackets).
pub fn parse_ssh(s: &str) -> Result<SshDest, String> {
    let bad = || format!("`{s}` is not an SSH destination like root@10.0.0.2:22");
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
        Some(_) => return Err(bad()),
        None => (None, s),
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 22,
            None => return Err(bad()),
        };
        (h.to_owned(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
            None => (rest.to_owned(), 22),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) || port == 0 {
        return Err(bad());
    }
    // ssh would read a leading `-` as an option (`-oProxyCommand=…` runs a command).
    if s.starts_with('-')
        || host.starts_with('-')
        || user.as_deref().is_some_and(|u| u.starts_with('-'))
    {
        return Err(format!(
            "`{s}` starts with `-`, which ssh reads as an option; an SSH destination is [user@]host[:port]"
        ));
    }
    Ok(SshDest { user, host, port })
}

/// The `[ssh]` table: how every remote host is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Private key to log in with [default: ssh's own choice].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file [default: ~/.ssh/known_hosts].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// Refuse hosts whose key is not in known_hosts (on by default).
    #[serde(default = "yes")]
    pub strict_host_key_checking: bool,
    /// How long to wait for an SSH connection, e.g. "10s".
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            identity_file: None,
            known_hosts: None,
            strict_host_key_checking: true,
            connect_timeout: default_connect_timeout(),
        }
    }
}

impl SshSettings {
    pub fn connect_timeout(&self) -> std::time::Duration {
        cmesh_common::parse::duration(&self.connect_timeout)
            .unwrap_or(std::time::Duration::from_secs(10))
    }
}

fn yes() -> bool {
    true
}
fn default_connect_timeout() -> String {
    "10s".into()
}
/// Where a local Docker Engine's socket is by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

fn default_socket() -> String {
    DEFAULT_SOCKET.into()
}
fn default_role() -> Role {
    Role::Manager
}
fn default_capacity() -> usize {
    1000
}

/// A whole hosts file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    #[serde(default)]
    pub ssh: SshSettings,
    #[serde(rename = "host")]
    pub hosts: Vec<HostSpec>,
}

impl HostsFile {
    /// The manager's spec (validation guarantees exactly one).
    pub fn manager(&self) -> &HostSpec {
        self.hosts
            .iter()
            .find(|h| h.role == Role::Manager)
            .expect("hosts files have exactly one manager")
    }
}

/// Reads and checks a hosts file. Relative key paths become relative to its directory.
pub fn load(path: &Path) -> anyhow::Result<HostsFile> {
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() > MAX_HOSTS_FILE_BYTES {
            return Err(bad_input(format!(
                "the hosts file {} is {} bytes; a hosts file is at most {MAX_HOSTS_FILE_BYTES}",
                path.display(),
                m.len()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad_input(format!(
            "cannot read the hosts file {}: {e}. Pass --hosts with a hosts.toml (see docs/hosts.md)",
            path.display()
        ))
    })?;
    let mut file = parse(&text, &path.display().to_string())?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let origin = path.display().to_string();
    for (key, slot) in [
        ("identity_file", &mut file.ssh.identity_file),
        ("known_hosts", &mut file.ssh.known_hosts),
    ] {
        if let Some(p) = slot.as_mut() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
            if file.hosts.iter().any(HostSpec::is_remote) && !p.is_file() {
                return Err(bad_input(format!(
                    "{origin}:{}: [ssh] `{key}`: {} does not exist",
                    table_key_line(&text, "ssh", key),
                    p.display()
                )));
            }
        }
    }
    Ok(file)
}

/// Parses hosts-file text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<HostsFile> {
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
    if file.hosts.is_empty() {
        return Err(bad_input(format!(
            "{origin}: no [[host]] entries; see docs/hosts.md"
        )));
    }
    if cmesh_common::parse::duration(&file.ssh.connect_timeout).is_err() {
        return Err(bad_input(format!(
            "{origin}:{}: [ssh] `connect_timeout`: `{}` is not a duration like 10s",
            table_key_line(text, "ssh", "connect_timeout"),
            file.ssh.connect_timeout
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut local = None;
    if file.hosts.len() > MAX_HOSTS {
        return Err(bad_input(format!(
            "{origin}: {} hosts; at most {MAX_HOSTS}",
            file.hosts.len()
        )));
    }
    for (i, h) in file.hosts.iter().enumerate() {
        check_host(h).map_err(|(key, e)| bad_input(format!("{}: {e}", at(i, key))))?;
        if !names.insert(h.name.clone()) {
            return Err(bad_input(format!(
                "{}: `{}` is named twice; host names must be unique",
                at(i, "name"),
                h.name
            )));
        }
        if h.ssh.is_none() {
            if let Some(other) = local.replace(&h.name) {
                return Err(bad_input(format!(
                    "{}: hosts `{other}` and `{}` both have no `ssh`, so both would be this machine's engine; give one an ssh destination",
                    at(i, "name"),
                    h.name
                )));
            }
        }
    }
    let managers: Vec<&str> = file
        .hosts
        .iter()
        .filter(|h| h.role == Role::Manager)
        .map(|h| h.name.as_str())
        .collect();
    if managers.len() != 1 {
        return Err(bad_input(format!(
            "{origin}: exactly one host must have role = \"manager\" (found {}{}); the manager runs the swarm, the registry and the coordinator",
            managers.len(),
            if managers.is_empty() {
                String::new()
            } else {
                format!(": {}", managers.join(", "))
            }
        )));
    }
    Ok(file)
}

/// Parses `key=value` host-label filters (`--host-label zone=a`).
pub fn parse_label_filter(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| bad_input(format!("--host-label `{s}`: use KEY=VALUE")))
        })
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// The line of `key` inside the `index`-th `[[host]]` table (best effort; 1 if not found).
/// Keys of other tables (`[ssh]`, `[host.labels]`) do not count.
fn key_line(text: &str, index: usize, key: &str) -> usize {
    let mut hosts_seen = 0;
    let mut in_host = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t == "[[host]]" {
            hosts_seen += 1;
            in_host = true;
        } else if t.starts_with('[') {
            in_host = false;
        } else if in_host
            && hosts_seen == index + 1
            && t.split('=').next().map(str::trim) == Some(key)
        {
            return n + 1;
        }
    }
    1
}

/// The line of `key` inside the `[table]` table (best effort; 1 if not found).
fn table_key_line(text: &str, table: &str, key: &str) -> usize {
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == format!("[{table}]");
        } else if inside && t.split('=').next().map(str::trim) == Some(key) {
            return n + 1;
        }
    }
    1
}

/// The default hosts file: only the local Docker Engine.
pub fn local_default() -> HostsFile {
    HostsFile {
        ssh: SshSettings::default(),
        hosts: vec![HostSpec {
            name: "local".into(),
            ssh: None,
            docker_socket: default_socket(),
            role: Role::Manager,
            capacity: default_capacity(),
            weight: None,
            labels: BTreeMap::new(),
            advertise_addr: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = parse(text, "h.toml").unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2, "{e}");
        e.to_string()
    }

    #[test]
    fn parses_the_default_file() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../hosts.toml")).unwrap();
        let hosts = parse(&text, "hosts.toml").unwrap();
        assert_eq!(hosts, local_default());
    }

    #[test]
    fn parses_a_multi_host_file() {
        let text = r#"
[ssh]
identity_file = "keys/id"
known_hosts = "keys/known_hosts"
connect_timeout = "5s"

[[host]]
name = "a"
ssh = "root@10.0.0.2:2222"
capacity = 10
labels = { zone = "x" }

[[host]]
name = "b"
ssh = "10.0.0.3"
role = "worker"
weight = 3
advertise_addr = "10.9.9.9"
"#;
        let f = parse(text, "h.toml").unwrap();
        assert_eq!(f.ssh.connect_timeout(), std::time::Duration::from_secs(5));
        assert!(f.ssh.strict_host_key_checking);
        assert_eq!(f.manager().name, "a");
        assert_eq!(f.hosts[0].swarm_addr().as_deref(), Some("10.0.0.2"));
        assert_eq!(f.hosts[1].swarm_addr().as_deref(), Some("10.9.9.9"));
        assert_eq!(f.hosts[0].weight(), 10);
        assert_eq!(f.hosts[1].weight(), 3);
        assert!(f.hosts[0].matches(&[("zone".into(), "x".into())]));
        assert!(!f.hosts[1].matches(&[("zone".into(), "x".into())]));
        assert!(f.hosts[1].matches(&[("name".into(), "b".into())]));
    }

    #[test]
    fn ssh_destinations() {
        assert_eq!(
            parse_ssh("root@10.0.0.2:2222").unwrap(),
            SshDest {
                user: Some("root".into()),
                host: "10.0.0.2".into(),
                port: 2222
            }
        );
        assert_eq!(parse_ssh("lab").unwrap().port, 22);
        assert_eq!(parse_ssh("u@[fd00::1]:23").unwrap().host, "fd00::1");
        for bad in ["@h", "h:x", "h:0", "", "u@", "[fd00::1"] {
            assert!(parse_ssh(bad).is_err(), "{bad}");
        }
        for option in ["-oProxyCommand=touch /tmp/x", "-p", "u@-oX", "[-x]:22"] {
            let e = parse_ssh(option).unwrap_err();
            assert!(
                e.contains("starts with `-`") || e.contains("not an SSH destination"),
                "{option}: {e}"
            );
        }
        assert!(parse_ssh("-oProxyCommand=x")
            .unwrap_err()
            .contains("ssh reads as an option"));
    }

    #[test]
    fn long_names_and_destinations_are_refused_and_not_echoed_whole() {
        let name = "a".repeat(5_000_000);
        let e = err(&format!("[[host]]\nname = \"{name}\"\n"));
        assert!(
            e.contains("1 to 63 letters") && e.len() < 300,
            "{}",
            &e[..e.len().min(300)]
        );
        assert!(err(&format!("[[host]]\nname = \"{}\"\n", "a".repeat(64))).contains("1 to 63"));
        let e = err("[[host]]\nname = \"a\"\nlabels = { \"rack a\" = \"1\" }\n");
        assert!(e.contains("`labels`") && e.contains("a label key"), "{e}");
        let e = err(&format!(
            "[[host]]\nname = \"a\"\nlabels = {{ rack = \"{}\" }}\n",
            "x".repeat(100_000)
        ));
        assert!(
            e.contains("a label key") && e.len() < 400,
            "{} bytes",
            e.len()
        );
        let e = err(&format!(
            "[[host]]\nname = \"a\"\ndocker_socket = \"/{}\"\n",
            "s".repeat(5000)
        ));
        assert!(
            e.contains("`docker_socket`") && e.len() < 400,
            "{} bytes",
            e.len()
        );
        let many: String = (0..1001)
            .map(|i| format!("[[host]]\nname = \"h{i}\"\nssh = \"h{i}\"\n"))
            .collect();
        assert!(err(&many).contains("at most 1000"));
        let ssh = format!("root@{}", "h".repeat(400));
        let e = err(&format!(
            "[[host]]\nname = \"a\"\nssh = \"{ssh}\"\n[[host]]\nname = \"b\"\n"
        ));
        assert!(e.contains("at most 300") && e.len() < 300, "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[[host]]\nname = \"a\"\ncapacity = \"lots\"\n");
        assert!(
            e.starts_with("h.toml:3:12: key `capacity`: invalid type"),
            "{e}"
        );
        let e = err("[[host]]\nname = \"a\"\ncolour = 1\n");
        assert!(e.starts_with("h.toml:3:") && e.contains("colour"), "{e}");
        let e = err("[ssh]\nport = 1\n[[host]]\nname = \"a\"\n");
        assert!(e.starts_with("h.toml:2:") && e.contains("port"), "{e}");
        let e = err("[[host]]\nname = \"a\"\ncapacity = 0\n");
        assert!(e.starts_with("h.toml:3: host #1 `capacity`"), "{e}");
        let e = err("[[host]]\nname = \"a b\"\n");
        assert!(e.starts_with("h.toml:2: host #1 `name`"), "{e}");
        let e = err("[[host]]\nname = \"a\"\nrole = \"worker\"\n");
        assert!(
            e.contains("exactly one host") && e.contains("found 0"),
            "{e}"
        );
        let e = err("[[host]]\nname = \"a\"\n[[host]]\nname = \"b\"\nssh = \"x\"\n");
        assert!(e.contains("found 2: a, b"), "{e}");
        let e =
            err("[[host]]\nname = \"a\"\n[[host]]\nname = \"a\"\nssh = \"x\"\nrole = \"worker\"\n");
        assert!(
            e.starts_with("h.toml:4: host #2 `name`") && e.contains("twice"),
            "{e}"
        );
        let e = err("[[host]]\nname = \"a\"\n[[host]]\nname = \"b\"\nrole = \"worker\"\n");
        assert!(e.contains("both have no `ssh`"), "{e}");
        let e = err("[[host]]\nname = \"a\"\nssh = \"u@h:x\"\n");
        assert!(e.starts_with("h.toml:3: host #1 `ssh`"), "{e}");
        let e = err("[[host]]\nname = \"a\"\nadvertise_addr = \"lab\"\n");
        assert!(e.starts_with("h.toml:3: host #1 `advertise_addr`"), "{e}");
        // Sub-tables between hosts do not throw the line off.
        let e = err("[[host]]\nname = \"a\"\n[host.labels]\nname = \"x\"\n[[host]]\nname = \"a\"\nssh = \"h\"\n");
        assert!(e.starts_with("h.toml:6: host #2 `name`"), "{e}");
        let e = err("[ssh]\nconnect_timeout = \"soon\"\n[[host]]\nname = \"a\"\n");
        assert!(e.starts_with("h.toml:2: [ssh] `connect_timeout`"), "{e}");
        let e = err("[[host]\n");
        assert!(e.starts_with("h.toml:1:"), "{e}");
        let e = err("[ssh]\n");
        assert!(e.contains("host"), "{e}");
    }

    #[test]
    fn key_paths_are_relative_to_the_file_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id"), "key").unwrap();
        let file = dir.path().join("hosts.toml");
        let body = "[ssh]\nidentity_file = \"id\"\nknown_hosts = \"kh\"\n\n[[host]]\nname = \"a\"\nssh = \"h\"\n";
        std::fs::write(&file, body).unwrap();
        let e = load(&file).unwrap_err();
        assert_eq!(cmesh_common::exit::code(&e), 2);
        assert!(e.to_string().contains(":3: [ssh] `known_hosts`"), "{e}");
        std::fs::write(dir.path().join("kh"), "").unwrap();
        let f = load(&file).unwrap();
        assert_eq!(f.ssh.identity_file.unwrap(), dir.path().join("id"));
    }
}
