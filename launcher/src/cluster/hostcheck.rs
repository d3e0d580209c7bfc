//! `launcher hosts check`: can each host run its part of a mesh?
//!
//! One row per host: reachable (and why not), Docker version and API, swarm state,
//! kernel support (netem for link shaping, IPVS for the routing mesh), free disk under
//! the engine's root, clock offset against the manager, and the neighbour-table limit
//! (`gc_thresh3`). With `--peers N`, each host's headroom for its share of N peers
//! against the limits that break runs at scale ([`limits`]). Then the swarm's paths
//! ([`swarm_path`]): each worker reaches the manager's advertised address, each host
//! sends to the others from the address it advertises, an existing swarm advertises
//! what hosts.toml says. A host that cannot be reached, whose engine does not answer,
//! that would pass a hard limit, or that cannot reach the manager, is unusable: the
//! command exits 1.

use crate::cluster::host::Host;
use crate::cluster::limits::{self, Headroom};
use crate::cluster::swarm_path::{self, Reported};
use crate::engine::facts::{parse_probe, HostFacts};
use crate::hosts::{HostSpec, HostsFile};
use cmesh_common::faults::{choose_path, Action, KernelCaps, ShapingPath};
use serde::Serialize;
use std::collections::BTreeMap;

/// One host's row.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Row {
    pub host: String,
    pub role: String,
    pub reachable: bool,
    /// Why not, when not.
    pub error: Option<String>,
    pub docker_version: Option<String>,
    pub api_version: Option<String>,
    pub swarm: Option<String>,
    /// `yes`, `no` or `unknown`.
    pub netem: Option<String>,
    /// Whether the kernel can carry `spawn --encrypt-overlay`: `yes`, `no` or `unknown`.
    pub ipsec: Option<String>,
    pub ipvs: Option<String>,
    /// How link shaping would be done here: `netem`, `userspace` (NFQUEUE for delay,
    /// iptables for loss, tbf for rate), or `none` (see `cmesh_common::faults`).
    pub shaping: Option<String>,
    pub kernel: Option<String>,
    pub disk_free_gib: Option<f64>,
    /// Host clock minus the manager's, ms.
    pub clock_offset_ms: Option<f64>,
    pub gc_thresh3: Option<u64>,
    /// The host's limits, as read.
    pub facts: HostFacts,
    /// Peers `--peers` would place here.
    pub peers: usize,
    /// The other hosts on its kernel (same boot id): threads and memory count for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_shared_with: Vec<String>,
    /// Each limit against what those peers need (with `--peers`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headroom: Vec<Headroom>,
    /// What the swarm path check found about this host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub swarm_paths: Vec<Reported>,
}

impl Row {
    /// Reachable, answering, and within every hard limit for its peers.
    pub fn usable(&self) -> bool {
        self.reachable
            && self.error.is_none()
            && !self
                .headroom
                .iter()
                .any(|h| h.severity == limits::Severity::Hard && h.fits() == Some(false))
            && !self
                .swarm_paths
                .iter()
                .any(|f| f.severity == swarm_path::Severity::Error)
    }
}

/// A POSIX shell script that prints the kernel facts; `$ROOT` is the engine's root dir.
/// `ipsec` says whether the kernel can carry an encrypted overlay (ESP, the XFRM user
/// interface and iptables' policy match: Docker's `encrypted` overlay needs all three).
/// The limits' lines ([`limits::PROBE`]) follow it.
pub const PROBE: &str = r#"
cfg=$( (zcat /proc/config.gz || cat "/boot/config-$(uname -r)") 2>/dev/null )
feat() {
  if [ -d "/sys/module/$1" ]; then echo yes
  elif printf '%s\n' "$cfg" | grep -q "^$2=[ym]"; then echo yes
  elif modinfo "$1" >/dev/null 2>&1; then echo yes
  elif [ -n "$cfg" ]; then echo no
  else echo unknown; fi
}
ipsec=yes
for f in "esp4 CONFIG_INET_ESP" "xfrm_user CONFIG_XFRM_USER" "xt_policy CONFIG_NETFILTER_XT_MATCH_POLICY"; do
  case "$(feat $f)" in
    no) ipsec=no ;;
    unknown) [ "$ipsec" = yes ] && ipsec=unknown ;;
  esac
done
echo "ipsec=$ipsec"
echo "netem=$(feat sch_netem CONFIG_NET_SCH_NETEM)"
echo "ipvs=$(feat ip_vs CONFIG_IP_VS)"
echo "nfqueue=$(feat nfnetlink_queue CONFIG_NETFILTER_NETLINK_QUEUE)"
echo "statistic=$(feat xt_statistic CONFIG_NETFILTER_XT_MATCH_STATISTIC)"
echo "tbf=$(feat sch_tbf CONFIG_NET_SCH_TBF)"
echo "kernel=$(uname -r)"
"#;

/// Refuses (bad input) unless every host's kernel can do IPsec for `spawn
/// --encrypt-overlay`; a host whose kernel cannot be read gets a warning.
pub async fn require_ipsec(hosts: &[Host]) -> anyhow::Result<()> {
    let answers = futures_util::future::join_all(hosts.iter().map(|h| async move {
        let out = h.exec(PROBE, b"").await;
        let ipsec = out
            .map(|o| {
                parse_probe(&o.stdout)
                    .get("ipsec")
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        (h.name().to_owned(), ipsec)
    }))
    .await;
    let mut without = Vec::new();
    for (host, ipsec) in answers {
        match ipsec.as_str() {
            "yes" => {}
            "no" => without.push(host),
            _ => tracing::warn!(
                "spawn: cannot tell whether host `{host}`'s kernel has IPsec; --encrypt-overlay may carry nothing there"
            ),
        }
    }
    if without.is_empty() {
        return Ok(());
    }
    Err(cmesh_common::exit::bad_input(format!(
        "--encrypt-overlay needs IPsec (ESP, XFRM and the iptables policy match) in every host's kernel; {} {} not (see `launcher hosts check`, column ipsec). Load esp4, xfrm_user and xt_policy there, or spawn without --encrypt-overlay",
        if without.len() == 1 { "host" } else { "hosts" },
        without
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
            + if without.len() == 1 { " has" } else { " have" }
    )))
}

/// The shaping path for a delay, in a word: `netem`, `userspace` or `none`.
pub fn shaping_path(caps: KernelCaps) -> &'static str {
    let delay = Action::Delay {
        ms: 1,
        jitter_ms: 0,
    };
    match choose_path(&delay, caps) {
        Ok(ShapingPath::Netem) => "netem",
        Ok(_) => "userspace",
        Err(_) => "none",
    }
}

async fn check_one(spec: HostSpec, file: &HostsFile) -> (Row, Option<Host>) {
    let mut row = Row {
        host: spec.name.clone(),
        role: format!("{:?}", spec.role).to_lowercase(),
        ..Default::default()
    };
    let host = match Host::connect(spec, &file.ssh).await {
        Ok(h) => h,
        Err(e) => {
            row.error = Some(format!("{e:#}"));
            return (row, None);
        }
    };
    row.reachable = true;
    match host.engine.version().await {
        Ok((version, api)) => {
            row.docker_version = Some(version);
            row.api_version = Some(api);
        }
        Err(e) => row.error = Some(format!("docker version: {e}")),
    }
    let root = match host.engine.info().await {
        Ok(info) => {
            row.swarm = Some(info.swarm.state.to_string());
            info.docker_root_dir
                .unwrap_or_else(|| "/var/lib/docker".into())
        }
        Err(e) => {
            row.error = Some(format!("docker info: {e}"));
            "/var/lib/docker".into()
        }
    };
    let script = format!(
        "ROOT={}\n{PROBE}{}",
        crate::cluster::ssh::shell_quote(&root),
        limits::PROBE
    );
    match host.exec(&script, b"").await {
        Ok(out) => {
            let facts = parse_probe(&out.stdout);
            let get = |k: &str| facts.get(k).filter(|v| !v.is_empty()).cloned();
            row.netem = get("netem");
            row.ipvs = get("ipvs");
            row.ipsec = get("ipsec");
            row.kernel = get("kernel");
            let yes = |k: &str| get(k).as_deref() == Some("yes");
            row.shaping = Some(
                shaping_path(KernelCaps {
                    netem: yes("netem"),
                    nfqueue: yes("nfqueue"),
                    iptables_statistic: yes("statistic"),
                    tbf: yes("tbf"),
                })
                .into(),
            );
            row.disk_free_gib = get("disk_free_kb")
                .and_then(|v| v.parse::<f64>().ok())
                .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
            row.facts = HostFacts::parse(&out.stdout);
            row.gc_thresh3 = row.facts.gc_thresh3;
        }
        Err(e) => row.error = Some(format!("running the kernel probe: {e:#}")),
    }
    (row, Some(host))
}

/// Checks every host at once; with peers `placed` on hosts (by name), each host's
/// headroom for its share of them.
pub async fn check(file: &HostsFile, placed: &BTreeMap<String, usize>) -> anyhow::Result<Vec<Row>> {
    let peers: usize = placed.values().sum();
    let results =
        futures_util::future::join_all(file.hosts.iter().map(|spec| check_one(spec.clone(), file)))
            .await;
    let offsets = futures_util::future::join_all(results.iter().map(|(_, h)| async move {
        match h {
            Some(h) => crate::cluster::clock::measure(h).await.ok(),
            None => None,
        }
    }))
    .await;
    let manager = file
        .hosts
        .iter()
        .position(|h| h.role == crate::hosts::Role::Manager)
        .and_then(|i| offsets[i]);
    let connected: Vec<&Host> = results.iter().filter_map(|(_, h)| h.as_ref()).collect();
    let paths = swarm_path::check(&connected).await;
    let shares: Vec<limits::Share> = results
        .iter()
        .map(|(row, _)| limits::Share {
            host: &row.host,
            peers: placed.get(&row.host).copied().unwrap_or(0),
            coordinator: row.role == "manager",
            facts: &row.facts,
        })
        .collect();
    let mut headrooms = limits::headrooms(&shares, peers + 1).into_iter();
    Ok(results
        .into_iter()
        .zip(offsets)
        .map(|((mut row, _), off)| {
            let (headroom, kernel_shared_with) = headrooms.next().unwrap_or_default();
            row.swarm_paths = paths
                .iter()
                .filter(|f| f.host() == row.host)
                .cloned()
                .map(Reported::from)
                .collect();
            if let (Some(o), Some(m)) = (off, manager) {
                row.clock_offset_ms = Some(((o.offset_ms - m.offset_ms) * 10.0).round() / 10.0);
            }
            if peers > 0 && row.reachable {
                row.peers = placed.get(&row.host).copied().unwrap_or(0);
                row.headroom = headroom;
                row.kernel_shared_with = kernel_shared_with;
            }
            row
        })
        .collect())
}

/// The rows as a table.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "host",
        "role",
        "reachable",
        "docker",
        "api",
        "swarm",
        "netem",
        "ipvs",
        "ipsec",
        "shaping",
        "disk free",
        "clock",
        "gc_thresh3",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            vec![
                r.host.clone(),
                r.role.clone(),
                if r.reachable {
                    "yes".into()
                } else {
                    "NO".into()
                },
                o(&r.docker_version),
                o(&r.api_version),
                o(&r.swarm),
                o(&r.netem),
                o(&r.ipvs),
                o(&r.ipsec),
                o(&r.shaping),
                r.disk_free_gib
                    .map(|g| format!("{g} GiB"))
                    .unwrap_or_else(|| "-".into()),
                r.clock_offset_ms
                    .map(|c| format!("{c:+} ms"))
                    .unwrap_or_else(|| "-".into()),
                r.gc_thresh3.map_or_else(|| "-".into(), |t| t.to_string()),
            ]
        })
        .collect();
    let mut table = crate::table::new(header);
    for row in cells {
        table.add_row(row);
    }
    let mut out = format!("{table}\n");
    if let Some(first) = rows.iter().find(|r| !r.headroom.is_empty()) {
        let total: usize = rows.iter().map(|r| r.peers).sum();
        out.push_str(&format!(
            "\nHeadroom for {total} peers (what the host's share needs / what it has free):\n"
        ));
        let mut header = vec!["host".to_owned(), "peers".to_owned()];
        header.extend(first.headroom.iter().map(|h| h.limit.name().to_owned()));
        let mut table = crate::table::new(header);
        for r in rows.iter().filter(|r| !r.headroom.is_empty()) {
            let mut cells = vec![r.host.clone(), r.peers.to_string()];
            cells.extend(r.headroom.iter().map(Headroom::cell));
            table.add_row(cells);
        }
        out.push_str(&format!("{table}\n"));
        let mut told = std::collections::BTreeSet::new();
        for r in rows.iter().filter(|r| !r.kernel_shared_with.is_empty()) {
            let mut group = vec![r.host.clone()];
            group.extend(r.kernel_shared_with.iter().cloned());
            group.sort();
            if told.insert(group.clone()) {
                out.push_str(&format!(
                    "{} share one kernel (the same boot id): their threads and memory are counted together, on each\n",
                    group.join(", ")
                ));
            }
        }
    }
    for r in rows {
        for h in r.headroom.iter().filter(|h| h.fits() == Some(false)) {
            out.push_str(&format!(
                "\n{} {}: {} ({}): {}\n",
                match h.severity {
                    limits::Severity::Hard => "error:",
                    limits::Severity::Soft => "warning:",
                },
                r.host,
                h.limit.name(),
                h.cell(),
                h.limit.fix()
            ));
        }
    }
    for r in rows {
        for f in &r.swarm_paths {
            out.push_str(&format!(
                "\n{} {}\n",
                match f.severity {
                    swarm_path::Severity::Error => "error:",
                    swarm_path::Severity::Warning => "warning:",
                },
                f.message
            ));
        }
    }
    for r in rows.iter().filter(|r| r.error.is_some() || !r.reachable) {
        out.push_str(&format!(
            "\n{}: {}\n",
            r.host,
            r.error.as_deref().unwrap_or("unusable")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_parses() {
        let f = parse_probe("netem=no\nipvs=yes\ndisk_free_kb=1048576\ngc_thresh3=\n");
        assert_eq!(f["netem"], "no");
        assert_eq!(f["gc_thresh3"], "");
        let caps = KernelCaps {
            netem: false,
            nfqueue: true,
            iptables_statistic: true,
            tbf: true,
        };
        assert_eq!(shaping_path(caps), "userspace");
        assert_eq!(
            shaping_path(KernelCaps {
                netem: true,
                ..caps
            }),
            "netem"
        );
        assert_eq!(shaping_path(KernelCaps::default()), "none");
    }

    #[test]
    fn the_probe_runs_here() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ROOT=/\n{PROBE}{}", limits::PROBE))
            .output()
            .unwrap();
        let f = parse_probe(&String::from_utf8_lossy(&out.stdout));
        for key in [
            "netem",
            "ipvs",
            "nfqueue",
            "statistic",
            "tbf",
            "kernel",
            "disk_free_kb",
            "pid_max",
            "threads_now",
            "mem_available_kb",
        ] {
            assert!(f.contains_key(key), "{key} missing: {f:?}");
        }
        let facts = HostFacts::parse(&String::from_utf8_lossy(&out.stdout));
        assert!(
            facts.pid_max.is_some() && facts.mem_available_kib.is_some(),
            "{facts:?}"
        );
        assert!(["yes", "no", "unknown"].contains(&f["netem"].as_str()));
        assert!(f["disk_free_kb"].parse::<u64>().is_ok(), "{f:?}");
    }

    #[test]
    fn unreachable_hosts_are_named_with_the_reason() {
        let rows = vec![
            Row {
                host: "a".into(),
                reachable: true,
                ..Default::default()
            },
            Row {
                host: "b".into(),
                error: Some("connect to host 10.0.0.3 port 22: No route to host".into()),
                ..Default::default()
            },
        ];
        let t = render(&rows);
        assert!(
            t.lines().nth(2).unwrap().starts_with("b ") && t.contains(" NO "),
            "{t}"
        );
        assert!(
            t.contains("b: connect to host 10.0.0.3 port 22: No route to host"),
            "{t}"
        );
        assert!(rows[0].usable() && !rows[1].usable());
    }
}
