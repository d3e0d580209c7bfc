//! Will the run fit? Each host's headroom against the limits that break a run at scale.
//!
//! A run of thousands of containers meets kernel and daemon limits long before it runs
//! out of CPU: every container costs threads (its peer, docker-init, its
//! containerd-shim), file descriptors in dockerd, memory, an entry in the overlay's
//! neighbour table, and disk for its logs and reports. [`facts`] reads what a host has
//! (one shell probe over its SSH link, or the simulated host's model); [`headroom`] sets
//! each limit against what the host's share of the run needs, from [`PER_CONTAINER`]
//! (measured on this project's machines). `hosts check --peers N` shows the headroom;
//! `spawn` refuses a run that would pass a hard limit, before anything is created, and
//! names the setting to raise. Soft limits give a warning.
//!
//! Threads, memory and CPUs belong to a kernel, not to an engine: hosts that report the
//! same boot id (the lab's hosts are containers on one machine) share them, so each such
//! host's need there is the need of all of them together ([`headrooms`]).
//!
//! Memory is sized for the start, when every peer connects at once and the engines hold
//! the most, not for the quiet middle of a run; and a margin of it stays free. CPU is
//! sized by what the containers cost doing nothing: a run whose idle containers alone
//! would take more than half of the host's CPUs has none left for its records, and at the
//! start it melts the host (2000 peers on 2 CPUs: a load average of 8,000, and numbers
//! nobody could use). `--force` runs it anyway, with a warning.
//!
//! | limit | from | need per container | kind |
//! |---|---|---|---|
//! | threads | `kernel.pid_max`, `kernel.threads-max`, threads now | [`PerContainer::threads`] | hard |
//! | dockerd's open files | its `Max open files`, its descriptors now | [`PerContainer::dockerd_fds`] | hard |
//! | memory | `MemAvailable`, less [`MEMORY_KEPT_FREE_PERCENT`] | [`PerContainer::memory_kib`], at the start | hard |
//! | idle CPU | the CPUs (`nproc`), [`IDLE_CPU_SHARE_PERCENT`] of them | [`PerContainer::idle_cpu_micros`] | hard |
//! | neighbour table | `net.ipv4.neigh.default.gc_thresh3` | one entry per container on the overlay, plus 64 | hard |
//! | inotify instances | `fs.inotify.max_user_instances` | one per followed log (`launcher logs -f`) | soft |
//! | disk | free space under the engine's root | reports (hard) and capped logs (soft) | hard / soft |

use crate::cluster::host::Host;
use crate::engine::facts::HostFacts;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one container costs its host, measured (docs/capacity.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerContainer {
    /// Kernel tasks: the peer's threads, docker-init, its containerd-shim's threads.
    pub threads: u64,
    /// Descriptors dockerd holds for it (log pipes, attach streams, its shim).
    pub dockerd_fds: u64,
    /// Resident memory: the peer, its shim, and the engine's share.
    pub memory_kib: u64,
    /// Its report directory at the end of a run (report, checkpoint, events).
    pub report_kib: u64,
    /// Its json-file logs at their cap (2 × 10 MB).
    pub log_kib: u64,
    /// CPU it takes doing nothing, in millionths of a core (the peer's timers and
    /// heartbeat, its containerd-shim).
    pub idle_cpu_micros: u64,
}

/// Of `MemAvailable`, the share a run may not plan to use (the page cache, the engines'
/// growth, the launcher's own work).
pub const MEMORY_KEPT_FREE_PERCENT: u64 = 10;
/// Of a host's CPUs, the share its run's idle containers may take at most.
pub const IDLE_CPU_SHARE_PERCENT: u64 = 50;

/// Measured on this project's machines (docs/capacity.md): 101 containers started,
/// the host's tasks went up by 15.5 each (a shim's 11 threads, the peer's 2,
/// docker-init), dockerd's descriptors by 8.0 each. Memory is the run's peak, not its
/// quiet start: 1000 peers took 6.6 MiB each once started and idle, and 10.4 MiB each at
/// their peak, writing every 20 to 40 s (MemAvailable sampled every 5 s, 2026-12-07);
/// 2000 on the 4-host lab about 10 each with the four engines. 11 MiB, rounded up.
/// Idle CPU: 0.61 ms a second per peer and 0.17 per containerd-shim, at 1000 idle
/// containers (docs/capacity.md).
pub const PER_CONTAINER: PerContainer = PerContainer {
    threads: 16,
    dockerd_fds: 8,
    memory_kib: 11 * 1024,
    report_kib: 512,
    log_kib: 20 * 1024,
    idle_cpu_micros: 800,
};

/// Neighbour-table entries kept free beyond the overlay's containers.
const NEIGHBOUR_SLACK: u64 = 64;

/// The probe's lines for [`HostFacts`] (hostcheck's probe runs them too); `$ROOT` is
/// the engine's root directory.
pub const PROBE: &str = r#"
echo "disk_free_kb=$(df -Pk "$ROOT" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "gc_thresh3=$(cat /proc/sys/net/ipv4/neigh/default/gc_thresh3 2>/dev/null)"
echo "pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null)"
echo "threads_max=$(cat /proc/sys/kernel/threads-max 2>/dev/null)"
echo "threads_now=$(cut -d' ' -f4 /proc/loadavg 2>/dev/null | cut -d/ -f2)"
d=$(pidof dockerd 2>/dev/null | cut -d' ' -f1)
if [ -n "$d" ]; then
  echo "dockerd_nofile=$(awk '/^Max open files/ {print $4}' /proc/$d/limits 2>/dev/null)"
  echo "dockerd_fds=$(ls /proc/$d/fd 2>/dev/null | wc -l)"
fi
echo "inotify_instances=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null)"
echo "mem_available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null)"
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
echo "cpus=$(nproc 2>/dev/null)"
"#;

/// Which limit a row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Threads,
    DockerdFiles,
    Memory,
    IdleCpu,
    NeighbourTable,
    Inotify,
    Disk,
    DiskForLogs,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Threads => "threads",
            Limit::DockerdFiles => "dockerd files",
            Limit::Memory => "memory",
            Limit::IdleCpu => "idle CPU",
            Limit::NeighbourTable => "neighbour table",
            Limit::Inotify => "inotify",
            Limit::Disk => "disk",
            Limit::DiskForLogs => "disk for logs",
        }
    }

    /// What to change when the limit is short.
    pub fn fix(self) -> &'static str {
        match self {
            Limit::Threads => "raise kernel.pid_max and kernel.threads-max (sysctl -w kernel.pid_max=4194304 kernel.threads-max=4194304), or place fewer peers on the host",
            Limit::DockerdFiles => "raise dockerd's open-file limit (LimitNOFILE=1048576 in its systemd unit, then systemctl daemon-reload and restart docker)",
            Limit::Memory => "place fewer peers on the host (hosts.toml `capacity` or `weight`), or add hosts; --force runs it anyway",
            Limit::IdleCpu => "place fewer peers on the host (hosts.toml `capacity` or `weight`), or add hosts or CPUs (docs/capacity.md: about 60 peers per core measure the network); --force runs it anyway",
            Limit::NeighbourTable => "raise net.ipv4.neigh.default.gc_thresh1/2/3 (sysctl -w net.ipv4.neigh.default.gc_thresh3=65536, gc_thresh2=49152, gc_thresh1=8192)",
            Limit::Inotify => "raise fs.inotify.max_user_instances (sysctl -w fs.inotify.max_user_instances=8192) to follow many logs",
            Limit::Disk => "free disk under the engine's root, or place fewer peers on the host",
            Limit::DiskForLogs => "free disk under the engine's root: each container's logs may reach 20 MiB",
        }
    }
}

/// Hard: the run would break; spawn refuses it. Soft: a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Hard,
    Soft,
}

/// One limit on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Headroom {
    pub limit: Limit,
    pub severity: Severity,
    /// What the host's share of the run needs, in the limit's unit.
    pub need: u64,
    /// What the host has free for it; `None` when it could not be read.
    pub free: Option<u64>,
}

impl Headroom {
    /// `Some(true)` when it fits, `None` when unknown.
    pub fn fits(&self) -> Option<bool> {
        self.free.map(|f| f >= self.need)
    }

    /// `need / free`, for a table cell: `8.4k / 32.1k`, `LOW 9.2k / 2.0k`, `unknown`.
    pub fn cell(&self) -> String {
        let k = |v: u64| {
            if v >= 10_000 {
                format!("{:.1}k", v as f64 / 1000.0)
            } else {
                v.to_string()
            }
        };
        let unit = |v: u64| match self.limit {
            Limit::Memory | Limit::Disk | Limit::DiskForLogs => {
                format!("{:.1} GiB", v as f64 / (1024.0 * 1024.0))
            }
            Limit::IdleCpu => format!("{:.2} CPUs", v as f64 / 1e6),
            _ => k(v),
        };
        match (self.free, self.fits()) {
            (Some(f), Some(true)) => format!("{} / {}", unit(self.need), unit(f)),
            (Some(f), _) => format!("LOW {} / {}", unit(self.need), unit(f)),
            (None, _) => format!("{} / unknown", unit(self.need)),
        }
    }
}

/// Each limit for `peers` peers on a host with `facts` (plus the coordinator when it is
/// the manager), on an overlay of `overlay` containers in all.
pub fn headroom(
    facts: &HostFacts,
    peers: usize,
    coordinator_here: bool,
    overlay: usize,
) -> Vec<Headroom> {
    let c = PER_CONTAINER;
    let here = peers as u64 + u64::from(coordinator_here);
    let threads_limit = match (facts.pid_max, facts.threads_max) {
        (Some(p), Some(t)) => Some(p.min(t)),
        (p, t) => p.or(t),
    };
    let minus =
        |limit: Option<u64>, used: Option<u64>| limit.map(|l| l.saturating_sub(used.unwrap_or(0)));
    vec![
        Headroom {
            limit: Limit::Threads,
            severity: Severity::Hard,
            need: here * c.threads,
            free: minus(threads_limit, facts.threads_now),
        },
        Headroom {
            limit: Limit::DockerdFiles,
            severity: Severity::Hard,
            need: here * c.dockerd_fds,
            // Without its current count (not root), the limit alone: optimistic.
            free: minus(facts.dockerd_nofile, facts.dockerd_fds),
        },
        Headroom {
            limit: Limit::Memory,
            severity: Severity::Hard,
            need: here * c.memory_kib,
            free: facts
                .mem_available_kib
                .map(|m| m / 100 * (100 - MEMORY_KEPT_FREE_PERCENT)),
        },
        Headroom {
            limit: Limit::IdleCpu,
            severity: Severity::Hard,
            need: here * c.idle_cpu_micros,
            free: facts
                .cpus
                .map(|n| n * 1_000_000 / 100 * IDLE_CPU_SHARE_PERCENT),
        },
        Headroom {
            limit: Limit::NeighbourTable,
            severity: Severity::Hard,
            need: overlay as u64 + NEIGHBOUR_SLACK,
            free: facts.gc_thresh3,
        },
        Headroom {
            limit: Limit::Inotify,
            severity: Severity::Soft,
            need: 1,
            free: facts.inotify_instances,
        },
        Headroom {
            limit: Limit::Disk,
            severity: Severity::Hard,
            need: here * c.report_kib,
            free: facts.disk_free_kib,
        },
        Headroom {
            limit: Limit::DiskForLogs,
            severity: Severity::Soft,
            need: here * (c.report_kib + c.log_kib),
            free: facts.disk_free_kib,
        },
    ]
}

/// True for the limits of a kernel, which hosts on one kernel share.
fn kernel_wide(limit: Limit) -> bool {
    matches!(limit, Limit::Threads | Limit::Memory | Limit::IdleCpu)
}

/// One host's share of a run, for [`headrooms`].
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    pub host: &'a str,
    pub peers: usize,
    pub coordinator: bool,
    pub facts: &'a HostFacts,
}

/// [`headroom`] for every host, where hosts on one kernel (the same boot id) need, for
/// that kernel's limits, what all of them need together. Also, per host, the other
/// hosts on its kernel.
pub fn headrooms(shares: &[Share], overlay: usize) -> Vec<(Vec<Headroom>, Vec<String>)> {
    let alone: Vec<Vec<Headroom>> = shares
        .iter()
        .map(|s| headroom(s.facts, s.peers, s.coordinator, overlay))
        .collect();
    shares
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let kin: Vec<usize> = match s.facts.kernel {
                Some(k) => (0..shares.len())
                    .filter(|&j| j != i && shares[j].facts.kernel == Some(k))
                    .collect(),
                None => Vec::new(),
            };
            let rows = alone[i]
                .iter()
                .map(|h| {
                    let mut h = h.clone();
                    if kernel_wide(h.limit) {
                        h.need += kin
                            .iter()
                            .flat_map(|&j| alone[j].iter().filter(|o| o.limit == h.limit))
                            .map(|o| o.need)
                            .sum::<u64>();
                    }
                    h
                })
                .collect();
            (
                rows,
                kin.iter().map(|&j| shares[j].host.to_owned()).collect(),
            )
        })
        .collect()
}

/// A host's limits that the run passes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Short {
    pub host: String,
    pub peers: usize,
    pub limit: Limit,
    pub severity: Severity,
    pub need: u64,
    pub free: u64,
    /// The other hosts on its kernel, whose containers count too (threads, memory).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_shared_with: Vec<String>,
}

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = Headroom {
            limit: self.limit,
            severity: self.severity,
            need: self.need,
            free: Some(self.free),
        };
        let shared = if self.kernel_shared_with.is_empty() || !kernel_wide(self.limit) {
            String::new()
        } else {
            format!(
                "; it shares its kernel with {}, whose peers count too",
                self.kernel_shared_with.join(", ")
            )
        };
        write!(
            f,
            "host `{}` ({} peers{shared}): {} needs {}: {}",
            self.host,
            self.peers,
            self.limit.name(),
            row.cell().trim_start_matches("LOW "),
            self.limit.fix()
        )
    }
}

/// The limits each host's share passes ([`headrooms`]: hosts on one kernel together).
pub fn shortfalls(shares: &[Share], overlay: usize) -> Vec<Short> {
    shares
        .iter()
        .zip(headrooms(shares, overlay))
        .flat_map(|(s, (rows, kin))| {
            rows.into_iter()
                .filter(|h| h.fits() == Some(false))
                .map(move |h| Short {
                    host: s.host.to_owned(),
                    peers: s.peers,
                    limit: h.limit,
                    severity: h.severity,
                    need: h.need,
                    free: h.free.unwrap_or(0),
                    kernel_shared_with: kin.clone(),
                })
        })
        .collect()
}

/// What `host` has: its model (a simulated host), or one probe over its link.
pub async fn facts(host: &Host) -> HostFacts {
    if let Some(f) = host.modelled_facts {
        return f;
    }
    let root = match host.engine.info().await {
        Ok(info) => info
            .docker_root_dir
            .unwrap_or_else(|| "/var/lib/docker".into()),
        Err(_) => "/var/lib/docker".into(),
    };
    let script = format!("ROOT={}\n{PROBE}", crate::cluster::ssh::shell_quote(&root));
    match host.exec(&script, b"").await {
        Ok(out) => HostFacts::parse(&out.stdout),
        Err(e) => {
            tracing::warn!(
                "host `{}`: cannot read its limits ({e:#}); spawn goes on without the check",
                host.name()
            );
            HostFacts::default()
        }
    }
}

/// What [`preflight`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Within every hard limit.
    Fits,
    /// Past one, and `--force` said to go on.
    Forced,
}

/// Limits `--force` may override: what makes the run slow or its numbers poor. The
/// others (threads, files, the neighbour table, disk) make it fail outright.
fn forceable(limit: Limit) -> bool {
    matches!(limit, Limit::Memory | Limit::IdleCpu)
}

/// Before anything is created: refuses (bad input) a run whose share of some host would
/// pass a hard limit there, naming each and what to raise; warns about soft ones.
/// `placed` is peers per host; the coordinator goes on `manager`. With `force`, memory
/// and idle CPU only warn.
pub async fn preflight(
    hosts: &[Host],
    placed: &BTreeMap<String, usize>,
    manager: &str,
    force: bool,
) -> anyhow::Result<Fit> {
    let facts = futures_util::future::join_all(hosts.iter().map(facts)).await;
    let overlay = placed.values().sum::<usize>() + 1;
    let shares: Vec<Share> = hosts
        .iter()
        .zip(&facts)
        .map(|(h, f)| Share {
            host: h.name(),
            peers: placed.get(h.name()).copied().unwrap_or(0),
            coordinator: h.name() == manager,
            facts: f,
        })
        .collect();
    let short = shortfalls(&shares, overlay);
    for s in short.iter().filter(|s| s.severity == Severity::Soft) {
        tracing::warn!("spawn: {s}");
    }
    let hard: Vec<&Short> = short
        .iter()
        .filter(|s| s.severity == Severity::Hard)
        .collect();
    let overridden = force && !hard.is_empty() && hard.iter().all(|s| forceable(s.limit));
    if overridden {
        for s in &hard {
            tracing::warn!("spawn: --force: going on past a limit: {s}");
        }
        return Ok(Fit::Forced);
    }
    if !hard.is_empty() {
        let lines: Vec<String> = hard.iter().map(|s| format!("  {s}")).collect();
        return Err(cmesh_common::exit::bad_input(format!(
            "the run does not fit its hosts; nothing was created:\n{}\n`launcher hosts check --peers {}` shows every host's headroom{}",
            lines.join("\n"),
            overlay - 1,
            if hard.iter().all(|s| forceable(s.limit)) {
                "; --force spawns it anyway"
            } else {
                ""
            }
        )));
    }
    Ok(Fit::Fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_MACHINE: &str = "pid_max=32768\nthreads_max=192729\nthreads_now=859\ndockerd_nofile=20000\ndockerd_fds=238\ninotify_instances=128\nmem_available_kb=23485064\ndisk_free_kb=83886080\ngc_thresh3=65536\n";

    fn share<'a>(
        host: &'a str,
        peers: usize,
        coordinator: bool,
        facts: &'a HostFacts,
    ) -> Share<'a> {
        Share {
            host,
            peers,
            coordinator,
            facts,
        }
    }

    #[test]
    fn hosts_on_one_kernel_count_their_threads_and_memory_together() {
        // The 4-host lab on this machine: each host alone fits 500 peers, but the four
        // share one kernel's pid_max and memory (2000 peers needed 22 GiB and more).
        let lab = HostFacts::parse(&format!(
            "{THIS_MACHINE}boot_id=1b4e28ba-2fa1-11d2-883f-0016d3cca427\n"
        ));
        assert_eq!(lab.kernel, Some(0x1b4e28ba2fa111d2));
        let names = ["lab-1", "lab-2", "lab-3", "lab-4"];
        let shares: Vec<Share> = names
            .iter()
            .map(|h| share(h, 500, *h == "lab-1", &lab))
            .collect();
        assert!(
            shortfalls(&shares[..1], 2001).is_empty(),
            "one host's share fits alone"
        );
        let short = shortfalls(&shares, 2001);
        let on_lab2: Vec<(Limit, u64)> = short
            .iter()
            .filter(|s| s.host == "lab-2")
            .map(|s| (s.limit, s.need))
            .collect();
        // pid_max 32768 holds 2000 threads-hungry peers on none of them together, and
        // their peak memory passes this machine's 23 GiB less its margin.
        assert_eq!(
            on_lab2,
            vec![
                (Limit::Threads, 2001 * PER_CONTAINER.threads),
                (Limit::Memory, 2001 * PER_CONTAINER.memory_kib)
            ]
        );
        let (rows, kin) = &headrooms(&shares, 2001)[1];
        let memory = rows.iter().find(|h| h.limit == Limit::Memory).unwrap();
        assert_eq!(memory.need, 2001 * PER_CONTAINER.memory_kib);
        assert_eq!(kin, &["lab-1", "lab-3", "lab-4"]);
        let dockerd = rows
            .iter()
            .find(|h| h.limit == Limit::DockerdFiles)
            .unwrap();
        assert_eq!(dockerd.need, 500 * PER_CONTAINER.dockerd_fds, "per engine");
        let msg = short[0].to_string();
        assert!(
            msg.contains("shares its kernel with lab-2, lab-3, lab-4, whose peers count too"),
            "{msg}"
        );
        // Engines' own limits stay per host.
        assert!(short.iter().all(|s| kernel_wide(s.limit)));
        // Different kernels, or unknown ones, are counted alone.
        let other = HostFacts {
            kernel: Some(7),
            ..lab
        };
        let unknown = HostFacts {
            kernel: None,
            ..lab
        };
        let mixed = [
            share("lab-1", 500, true, &lab),
            share("b", 500, false, &other),
            share("c", 500, false, &unknown),
            share("d", 500, false, &unknown),
        ];
        assert!(shortfalls(&mixed, 2001).is_empty());
    }

    #[test]
    fn the_probe_reads_every_fact_and_a_missing_one_is_unknown() {
        let f = HostFacts::parse(THIS_MACHINE);
        assert_eq!(f.pid_max, Some(32768));
        assert_eq!(f.dockerd_fds, Some(238));
        assert_eq!(f.mem_available_kib, Some(23_485_064));
        let g = HostFacts::parse("pid_max=\ndockerd_fds=0\n");
        assert_eq!(g, HostFacts::default(), "blank and unreadable are unknown");
    }

    #[test]
    fn a_thousand_peers_fit_this_machine_and_three_thousand_pass_its_threads() {
        let f = HostFacts::parse(THIS_MACHINE);
        assert!(shortfalls(&[share("local", 1000, true, &f)], 1001).is_empty());
        let short = shortfalls(&[share("local", 3000, true, &f)], 3001);
        let limits: Vec<Limit> = short.iter().map(|s| s.limit).collect();
        assert_eq!(
            limits,
            vec![Limit::Threads, Limit::DockerdFiles, Limit::Memory]
        );
        let msg = short[0].to_string();
        assert!(
            msg.contains("host `local` (3000 peers): threads needs")
                && msg.contains("kernel.pid_max"),
            "{msg}"
        );
        assert!(short.iter().all(|s| s.severity == Severity::Hard));
    }

    #[test]
    fn two_thousand_peers_on_the_lab_of_one_two_cpu_machine_pass_its_cpus_and_memory() {
        // The 4-host lab on this machine, with pid_max raised as for the 2000-peer runs:
        // 2000 idle containers would take 1.6 of its 2 CPUs, and their start more memory
        // than it keeps free. 1000 on the machine itself fit.
        let raised = THIS_MACHINE.replace("pid_max=32768", "pid_max=4194304");
        let lab = HostFacts::parse(&format!(
            "{raised}cpus=2\nboot_id=1b4e28ba-2fa1-11d2-883f-0016d3cca427\n"
        ));
        assert_eq!(lab.cpus, Some(2));
        let shares: Vec<Share> = ["lab-1", "lab-2", "lab-3", "lab-4"]
            .iter()
            .map(|h| share(h, 500, *h == "lab-1", &lab))
            .collect();
        let short = shortfalls(&shares, 2001);
        let on_lab1: Vec<Limit> = short
            .iter()
            .filter(|s| s.host == "lab-1")
            .map(|s| s.limit)
            .collect();
        assert_eq!(on_lab1, vec![Limit::Memory, Limit::IdleCpu]);
        let msg = short[1].to_string();
        assert!(
            msg.contains("idle CPU needs 1.60 CPUs / 1.00 CPUs") && msg.contains("--force"),
            "{msg}"
        );
        assert!(short.iter().all(|s| forceable(s.limit)));
        let machine = HostFacts::parse(&format!("{THIS_MACHINE}cpus=2\n"));
        assert!(shortfalls(&[share("local", 1000, true, &machine)], 1001).is_empty());
    }

    #[test]
    fn unknown_facts_refuse_nothing_and_say_unknown() {
        let rows = headroom(&HostFacts::default(), 5000, false, 5000);
        assert!(rows.iter().all(|h| h.fits().is_none()));
        assert_eq!(rows[0].cell(), "80.0k / unknown");
        assert!(shortfalls(&[share("h", 5000, false, &HostFacts::default())], 5000).is_empty());
    }

    #[test]
    fn the_neighbour_table_counts_the_whole_overlay_and_logs_only_warn() {
        let f = HostFacts {
            gc_thresh3: Some(1024),
            disk_free_kib: Some(5 * 1024 * 1024),
            ..HostFacts::default()
        };
        // 300 peers here, but 1000 containers on the overlay across the hosts.
        let short = shortfalls(&[share("h", 300, false, &f)], 1000);
        let got: Vec<(Limit, Severity)> = short.iter().map(|s| (s.limit, s.severity)).collect();
        assert_eq!(
            got,
            vec![
                (Limit::NeighbourTable, Severity::Hard),
                (Limit::DiskForLogs, Severity::Soft)
            ]
        );
        assert!(short[0].to_string().contains("gc_thresh3"), "{}", short[0]);
        let cell = headroom(&f, 300, false, 1000)
            .iter()
            .find(|h| h.limit == Limit::NeighbourTable)
            .map(Headroom::cell);
        assert_eq!(cell.as_deref(), Some("LOW 1064 / 1024"));
    }
}
