//! What a host's kernel and engine offer (pid_max, memory, CPUs, …): the answer of a
//! shell probe (`crate::cluster::limits::PROBE`), or a simulated host's model
//! ([`super::sim::Cluster::set_facts`]). What a run needs of them is
//! `crate::cluster::limits`'.

use serde::Serialize;

/// What a host has, where it could be read (`None`: unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub pid_max: Option<u64>,
    pub threads_max: Option<u64>,
    /// Kernel tasks (threads) running now.
    pub threads_now: Option<u64>,
    pub dockerd_nofile: Option<u64>,
    pub dockerd_fds: Option<u64>,
    pub inotify_instances: Option<u64>,
    pub mem_available_kib: Option<u64>,
    pub disk_free_kib: Option<u64>,
    pub gc_thresh3: Option<u64>,
    /// CPUs the host's processes may use.
    pub cpus: Option<u64>,
    /// The kernel's boot id, folded to 64 bits: hosts with the same one share a kernel.
    #[serde(skip)]
    pub kernel: Option<u64>,
}

impl HostFacts {
    /// From the probe's `key=value` lines (`crate::cluster::limits::PROBE`'s and hostcheck's).
    pub fn parse(text: &str) -> HostFacts {
        let f = parse_probe(text);
        let n = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
        HostFacts {
            pid_max: n("pid_max"),
            threads_max: n("threads_max"),
            threads_now: n("threads_now"),
            // A descriptor count of 0 means /proc/PID/fd could not be read (not root).
            dockerd_nofile: n("dockerd_nofile"),
            dockerd_fds: n("dockerd_fds").filter(|&c| c > 0),
            inotify_instances: n("inotify_instances"),
            mem_available_kib: n("mem_available_kb"),
            disk_free_kib: n("disk_free_kb"),
            gc_thresh3: n("gc_thresh3"),
            cpus: n("cpus").filter(|&c| c > 0),
            kernel: f.get("boot_id").and_then(|id| boot_id_bits(id)),
        }
    }
}

/// The first 64 bits of a boot id (a UUID such as `1b4e28ba-2fa1-11d2-883f-0016d3cca427`).
fn boot_id_bits(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(16).collect();
    if hex.len() < 16 {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

/// What a probe script printed, `key=value` per line.
pub fn parse_probe(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
