//! Can the swarm's traffic flow between the hosts? Checked before a run needs it.
//!
//! A swarm's workers join at the manager's advertised address (TCP 2377), and the
//! overlay's data (VXLAN, UDP 4789) and gossip (7946) go between the hosts' advertised
//! addresses. Two things break that silently:
//!
//! - a worker that cannot reach the manager's address: the join fails, or hangs;
//! - a host whose kernel sends to another host from an address other than the one it
//!   advertises, which happens on a multi-homed machine: this machine's engine as the
//!   manager, advertising its default-route address, with lab hosts behind a bridge it
//!   reaches from the bridge's gateway. The workers join, but no packet crosses the
//!   overlay (measured: 9 peers over this machine and two lab hosts all failed; with the
//!   gateway advertised, the same run passed).
//!
//! And a swarm that exists already keeps the address it was made with, whatever
//! hosts.toml says now.
//!
//! [`probe`] runs a small script on a host (through [`Host::exec`]): for each address
//! given, the source address its kernel would use (`ip -4 route get`), and, where asked,
//! whether TCP 2377 there answers. A refused connection counts as reachable: the host is
//! there, its swarm not yet. [`findings`] weighs what the probes said, with no I/O.

use crate::cluster::host::Host;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a TCP connection attempt to the manager's swarm port gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tcp {
    Open,
    /// Refused: the host answered; nothing listens yet (no swarm). Reachable.
    Refused,
    /// No answer within the probe's 3 s: filtered or no route.
    Timeout,
    /// Failed otherwise, with the shell's message (no route to host, …).
    Unreachable(String),
    /// The host has no `bash` or `timeout` to try with.
    Unknown,
}

impl Tcp {
    fn parse(text: &str) -> Tcp {
        match text.split_once(':').map_or((text, ""), |(a, b)| (a, b)) {
            ("open", _) => Tcp::Open,
            ("refused", _) => Tcp::Refused,
            ("timeout", _) => Tcp::Timeout,
            ("unreachable", why) => Tcp::Unreachable(why.trim().to_owned()),
            _ => Tcp::Unknown,
        }
    }

    fn reachable(&self) -> Option<bool> {
        match self {
            Tcp::Open | Tcp::Refused => Some(true),
            Tcp::Timeout | Tcp::Unreachable(_) => Some(false),
            Tcp::Unknown => None,
        }
    }
}

/// What one host's probe said, per address asked about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The source address the host's kernel would use towards each address (absent
    /// where it has no route, or no `ip`).
    pub src: BTreeMap<String, String>,
    /// TCP 2377 at each address asked about.
    pub tcp: BTreeMap<String, Tcp>,
}

/// A POSIX shell script that prints, for each of `routes`, `src ADDR=SOURCE`, and for each
/// of `tcp`, `tcp ADDR=open|refused|timeout|unreachable: why|unknown` for port 2377.
pub fn script(routes: &[String], tcp: &[String]) -> String {
    let q = crate::cluster::ssh::shell_quote;
    let mut s = String::from(
        "route_src() { ip -4 route get \"$1\" 2>/dev/null | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p' | head -n 1; }\n\
         tcp() {\n\
         \x20 if ! command -v bash >/dev/null 2>&1 || ! command -v timeout >/dev/null 2>&1; then echo unknown; return; fi\n\
         \x20 out=$(timeout 3 bash -c \"exec 3<>/dev/tcp/$1/2377\" 2>&1); rc=$?\n\
         \x20 if [ $rc = 0 ]; then echo open; elif [ $rc = 124 ]; then echo timeout;\n\
         \x20 else case \"$out\" in *refused*) echo refused;; *) echo \"unreachable: $(printf '%s' \"$out\" | tr '\\n' ' ' | sed 's/.*: //')\";; esac; fi\n\
         }\n",
    );
    for addr in routes {
        s.push_str(&format!("echo \"src {addr}=$(route_src {})\"\n", q(addr)));
    }
    for addr in tcp {
        s.push_str(&format!("echo \"tcp {addr}=$(tcp {})\"\n", q(addr)));
    }
    s
}

/// Reads what [`script`] printed.
pub fn parse(text: &str) -> Probe {
    let mut p = Probe::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.split_once(' ') {
            Some(("src", addr)) if !value.is_empty() => {
                p.src.insert(addr.to_owned(), value.to_owned());
            }
            Some(("tcp", addr)) => {
                p.tcp.insert(addr.to_owned(), Tcp::parse(value));
            }
            _ => {}
        }
    }
    p
}

/// Runs the probe on `host`. A probe that cannot run says nothing (no findings).
pub async fn probe(host: &Host, routes: &[String], tcp: &[String]) -> Probe {
    match host.exec(&script(routes, tcp), b"").await {
        Ok(out) => parse(&out.stdout),
        Err(e) => {
            tracing::debug!("swarm path probe on {}: {e:#}", host.name());
            Probe::default()
        }
    }
}

/// A host as the swarm sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmHost {
    pub name: String,
    /// The address it will advertise: hosts.toml's, or the default.
    pub configured: Option<String>,
    /// The address its swarm advertises now, if it is in one.
    pub advertised: Option<String>,
}

impl SwarmHost {
    /// The address the others will reach it at: its swarm's, else the configured one.
    fn addr(&self) -> Option<&str> {
        self.advertised.as_deref().or(self.configured.as_deref())
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The swarm cannot work this way: the host is unusable.
    Error,
    /// It may not work: the message says what to change.
    Warning,
}

/// One thing the check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// A worker cannot reach the manager's swarm port.
    ManagerUnreachable {
        worker: String,
        manager: String,
        addr: String,
        why: String,
    },
    /// `host` would send to `to` from `src`, not from the address it advertises.
    SourceDiffers {
        host: String,
        to: String,
        to_addr: String,
        src: String,
        advertised: String,
    },
    /// The swarm `host` is in advertises another address than hosts.toml says.
    SwarmAdvertisesOther {
        host: String,
        swarm_addr: String,
        configured: String,
    },
}

impl Finding {
    pub fn severity(&self) -> Severity {
        match self {
            Finding::ManagerUnreachable { .. } => Severity::Error,
            Finding::SourceDiffers { .. } | Finding::SwarmAdvertisesOther { .. } => {
                Severity::Warning
            }
        }
    }

    /// The host it is about.
    pub fn host(&self) -> &str {
        match self {
            Finding::ManagerUnreachable { worker, .. } => worker,
            Finding::SourceDiffers { host, .. } | Finding::SwarmAdvertisesOther { host, .. } => {
                host
            }
        }
    }

    /// What was found, and what to do.
    pub fn message(&self) -> String {
        match self {
            Finding::ManagerUnreachable { worker, manager, addr, why } => format!(
                "host `{worker}` cannot reach the swarm manager `{manager}` at {addr}:2377 ({why}); workers join the swarm there. Set advertise_addr of `{manager}` in hosts.toml to an address `{worker}` can reach, or open TCP 2377, TCP/UDP 7946 and UDP 4789 between them"
            ),
            Finding::SourceDiffers { host, to, to_addr, src, advertised } => format!(
                "host `{host}` would send overlay traffic to `{to}` ({to_addr}) from {src}, not from the address it advertises ({advertised}): the overlay may carry nothing between them. Set advertise_addr = \"{src}\" for host `{host}` in hosts.toml (a swarm it is in keeps its old address: leave it first, `launcher swarm leave --hosts FILE`)"
            ),
            Finding::SwarmAdvertisesOther { host, swarm_addr, configured } => {
                crate::cluster::swarm::advertises_other(host, swarm_addr, configured)
            }
        }
    }
}

/// `h` as the swarm sees it.
async fn swarm_host(h: &Host) -> SwarmHost {
    let advertised = match crate::cluster::swarm::node_state(h).await {
        Ok(n) if n.state == crate::engine::SwarmState::Active => Some(n.node_addr),
        _ => None,
    };
    SwarmHost {
        name: h.name().to_owned(),
        configured: crate::cluster::swarm::configured_addr(h),
        advertised,
    }
}

/// Probes the connected `hosts` (one of them the manager) and weighs what they say.
pub async fn check(hosts: &[&Host]) -> Vec<Finding> {
    let Some(manager) = hosts.iter().find(|h| h.is_manager()) else {
        return Vec::new();
    };
    let m = swarm_host(manager).await;
    let Some(maddr) = m.addr().map(str::to_owned) else {
        return Vec::new();
    };
    let workers: Vec<&Host> = hosts.iter().copied().filter(|h| !h.is_manager()).collect();
    let whosts = futures_util::future::join_all(workers.iter().map(|w| swarm_host(w))).await;
    let waddrs: Vec<String> = whosts
        .iter()
        .filter_map(|w| w.addr().map(str::to_owned))
        .collect();
    let (mprobe, wprobes) = tokio::join!(
        probe(manager, &waddrs, &[]),
        futures_util::future::join_all(workers.iter().map(|w| {
            let to = [maddr.clone()];
            async move { probe(w, &to, &to).await }
        }))
    );
    findings(
        &m,
        &mprobe,
        &whosts.into_iter().zip(wprobes).collect::<Vec<_>>(),
    )
}

/// A finding as `hosts check --json` shows it: its fields, how bad, and the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reported {
    #[serde(flatten)]
    pub finding: Finding,
    pub severity: Severity,
    pub message: String,
}

impl From<Finding> for Reported {
    fn from(finding: Finding) -> Reported {
        Reported {
            severity: finding.severity(),
            message: finding.message(),
            finding,
        }
    }
}

/// What the probes say about the swarm of `manager` and `workers`. `manager_probe` has
/// the manager's routes towards the workers' addresses; `worker_probes[i]` the route and
/// TCP 2377 from worker `i` towards the manager's address.
pub fn findings(
    manager: &SwarmHost,
    manager_probe: &Probe,
    workers: &[(SwarmHost, Probe)],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in std::iter::once(manager).chain(workers.iter().map(|(w, _)| w)) {
        if let (Some(swarm_addr), Some(configured)) = (&h.advertised, &h.configured) {
            if swarm_addr != configured {
                out.push(Finding::SwarmAdvertisesOther {
                    host: h.name.clone(),
                    swarm_addr: swarm_addr.clone(),
                    configured: configured.clone(),
                });
            }
        }
    }
    let Some(maddr) = manager.addr() else {
        return out;
    };
    for (w, probe) in workers {
        if let Some(t) = probe.tcp.get(maddr) {
            if t.reachable() == Some(false) {
                out.push(Finding::ManagerUnreachable {
                    worker: w.name.clone(),
                    manager: manager.name.clone(),
                    addr: maddr.to_owned(),
                    why: match t {
                        Tcp::Timeout => "no answer within 3 s".into(),
                        Tcp::Unreachable(why) if !why.is_empty() => why.clone(),
                        _ => "unreachable".into(),
                    },
                });
            }
        }
        let Some(waddr) = w.addr() else {
            continue;
        };
        // Each side towards the other: does its kernel send from what it advertises?
        for (from, from_probe, from_addr, to, to_addr) in [
            (manager, manager_probe, maddr, w, waddr),
            (w, probe, waddr, manager, maddr),
        ] {
            if let Some(src) = from_probe.src.get(to_addr) {
                if src != from_addr {
                    out.push(Finding::SourceDiffers {
                        host: from.name.clone(),
                        to: to.name.clone(),
                        to_addr: to_addr.to_owned(),
                        src: src.clone(),
                        advertised: from_addr.to_owned(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, configured: &str, advertised: Option<&str>) -> SwarmHost {
        SwarmHost {
            name: name.into(),
            configured: Some(configured.into()),
            advertised: advertised.map(Into::into),
        }
    }

    fn probe(src: &[(&str, &str)], tcp: &[(&str, Tcp)]) -> Probe {
        Probe {
            src: src
                .iter()
                .map(|(a, s)| (a.to_string(), s.to_string()))
                .collect(),
            tcp: tcp
                .iter()
                .map(|(a, t)| (a.to_string(), t.clone()))
                .collect(),
        }
    }

    #[test]
    fn the_probe_output_parses() {
        let p = parse(
            "src 10.0.0.2=10.0.0.1\nsrc 10.9.9.9=\ntcp 10.0.0.1=refused\ntcp 10.0.0.3=unreachable: No route to host\ntcp 10.0.0.4=timeout\njunk\n",
        );
        assert_eq!(p.src.len(), 1, "no route: nothing");
        assert_eq!(p.src["10.0.0.2"], "10.0.0.1");
        assert_eq!(p.tcp["10.0.0.1"], Tcp::Refused);
        assert_eq!(
            p.tcp["10.0.0.3"],
            Tcp::Unreachable("No route to host".into())
        );
        assert_eq!(p.tcp["10.0.0.4"], Tcp::Timeout);
    }

    #[test]
    fn the_probe_runs_here_and_finds_a_source_for_loopback() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&["127.0.0.1".into()], &["127.0.0.1".into()]))
            .output()
            .unwrap();
        let p = parse(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            p.src.get("127.0.0.1").map(String::as_str),
            Some("127.0.0.1")
        );
        // Nothing listens on 2377 here unless a swarm does: refused or open, never lost.
        assert_eq!(p.tcp["127.0.0.1"].reachable(), Some(true), "{p:?}");
    }

    #[test]
    fn a_manager_advertising_its_default_route_to_lab_workers_is_warned_with_the_gateway() {
        // This machine's engine: eth0 10.0.2.15 by default; the lab behind 172.31.200.1.
        let manager = host("local", "10.0.2.15", None);
        let mprobe = probe(
            &[
                ("172.31.200.11", "172.31.200.1"),
                ("172.31.200.12", "172.31.200.1"),
            ],
            &[],
        );
        let workers: Vec<(SwarmHost, Probe)> = [11, 12]
            .iter()
            .map(|i| {
                let addr = format!("172.31.200.{i}");
                (
                    host(&format!("lab-{}", i - 10), &addr, None),
                    probe(&[("10.0.2.15", &addr)], &[("10.0.2.15", Tcp::Refused)]),
                )
            })
            .collect();
        let f = findings(&manager, &mprobe, &workers);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f
            .iter()
            .all(|f| f.severity() == Severity::Warning && f.host() == "local"));
        assert!(
            f[0].message()
                .contains("advertise_addr = \"172.31.200.1\" for host `local`"),
            "{}",
            f[0].message()
        );
        // Advertising the gateway: nothing to say.
        let manager = host("local", "172.31.200.1", None);
        let workers: Vec<(SwarmHost, Probe)> = workers
            .into_iter()
            .map(|(w, _)| {
                let addr = w.configured.clone().unwrap();
                (
                    w,
                    probe(&[("172.31.200.1", &addr)], &[("172.31.200.1", Tcp::Open)]),
                )
            })
            .collect();
        assert_eq!(findings(&manager, &mprobe, &workers), vec![]);
    }

    #[test]
    fn an_unreachable_manager_is_an_error_and_an_old_swarm_address_a_warning() {
        let manager = host("m", "192.168.1.5", Some("10.0.0.5"));
        let workers = vec![(
            host("w", "192.168.1.6", None),
            probe(
                &[],
                &[("10.0.0.5", Tcp::Unreachable("No route to host".into()))],
            ),
        )];
        let f = findings(&manager, &Probe::default(), &workers);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            matches!(&f[0], Finding::SwarmAdvertisesOther { swarm_addr, .. } if swarm_addr == "10.0.0.5")
        );
        assert!(f[0].message().contains("launcher swarm leave"));
        assert_eq!(f[1].severity(), Severity::Error);
        assert_eq!(f[1].host(), "w");
        assert!(
            f[1].message().contains("10.0.0.5:2377 (No route to host)"),
            "{}",
            f[1].message()
        );
    }
}
