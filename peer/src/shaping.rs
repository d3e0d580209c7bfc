//! Link shaping the peer applies to its own traffic (its container has NET_ADMIN).
//!
//! The path per action comes from [`cmesh_common::faults::choose_path`] on the kernel's
//! capabilities, read here from `/sys/module` and `/proc/config.gz`:
//! - **netem** (`tc qdisc replace dev IF root netem …`) where the kernel has `sch_netem`;
//! - else, for delay and jitter, **NFQUEUE**: an iptables rule queues every outgoing packet
//!   (but loopback) to a thread of this process, which holds each packet for its delay and
//!   then accepts it. `--queue-bypass` lets packets through if the thread is gone;
//! - for loss without netem, **iptables** `-m statistic --mode random -j DROP`;
//! - for rate, **tbf**.
//!
//! An action that cannot be applied is an error naming the missing kernel feature; the
//! caller fails the peer with it. Nothing is ever silently left unapplied.

use cmesh_common::faults::{choose_path, Action, KernelCaps, ShapingPath};
use std::collections::BinaryHeap;
use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The NFQUEUE number the peer's delay rule uses.
const QUEUE: u16 = 7;

/// Reads what this kernel offers for shaping.
pub fn detect() -> KernelCaps {
    let mut config = String::new();
    if let Ok(f) = std::fs::File::open("/proc/config.gz") {
        let _ = flate2::read::GzDecoder::new(f).read_to_string(&mut config);
    }
    caps_from(&config, |m| {
        std::path::Path::new("/sys/module").join(m).exists()
    })
}

/// Capabilities from a kernel config's text and a "module loaded" test.
pub fn caps_from(config: &str, loaded: impl Fn(&str) -> bool) -> KernelCaps {
    let has = |module: &str, option: &str| {
        loaded(module)
            || config
                .lines()
                .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
    };
    KernelCaps {
        netem: has("sch_netem", "CONFIG_NET_SCH_NETEM"),
        nfqueue: has("nfnetlink_queue", "CONFIG_NETFILTER_NETLINK_QUEUE"),
        iptables_statistic: has("xt_statistic", "CONFIG_NETFILTER_XT_MATCH_STATISTIC"),
        tbf: has("sch_tbf", "CONFIG_NET_SCH_TBF"),
    }
}

/// The commands that apply and undo a shaping action by `path` (`None` for the NFQUEUE
/// thread's own part, which is not a command). `to`: only traffic to these IPv4
/// addresses (else all of it): a `-d` list on the iptables paths; on the qdisc paths a
/// `prio` root whose third band holds the shaping qdisc and gets the `to` traffic by
/// u32 filters.
pub fn commands(
    action: &Action,
    path: ShapingPath,
    iface: &str,
    to: Option<&[String]>,
) -> (Vec<String>, Vec<String>) {
    // A root qdisc on the interface (or on band 3 of a prio root, for `to`), removed
    // again to lift it.
    let qdisc = |spec: String| {
        let undo = vec![format!("tc qdisc del dev {iface} root")];
        match to {
            None => (
                vec![format!("tc qdisc replace dev {iface} root {spec}")],
                undo,
            ),
            Some(ips) => {
                let mut apply = vec![
                    format!("tc qdisc replace dev {iface} root handle 1: prio"),
                    format!("tc qdisc add dev {iface} parent 1:3 handle 30: {spec}"),
                ];
                apply.extend(ips.iter().map(|ip| {
                    format!("tc filter add dev {iface} parent 1:0 protocol ip prio 3 u32 match ip dst {ip}/32 flowid 1:3")
                }));
                (apply, undo)
            }
        }
    };
    let dst = to
        .map(|ips| format!(" -d {}", ips.join(",")))
        .unwrap_or_default();
    match (action, path) {
        (Action::Delay { ms, jitter_ms }, ShapingPath::Netem) => {
            qdisc(format!("netem delay {ms}ms {jitter_ms}ms"))
        }
        (Action::Loss { percent }, ShapingPath::Netem) => qdisc(format!("netem loss {percent}%")),
        (Action::Duplicate { percent }, ShapingPath::Netem) => {
            qdisc(format!("netem duplicate {percent}%"))
        }
        (Action::Corrupt { percent }, ShapingPath::Netem) => {
            qdisc(format!("netem corrupt {percent}%"))
        }
        (Action::Reorder { percent }, ShapingPath::Netem) => {
            qdisc(format!("netem delay 10ms reorder {percent}%"))
        }
        (Action::Rate { kbit }, ShapingPath::Netem) => qdisc(format!("netem rate {kbit}kbit")),
        (Action::Rate { kbit }, ShapingPath::Tbf) => {
            qdisc(format!("tbf rate {kbit}kbit burst 32kbit latency 400ms"))
        }
        (Action::Loss { percent }, ShapingPath::Iptables) => {
            let rule = format!(
                "OUTPUT ! -o lo{dst} -m statistic --mode random --probability {:.4} -j DROP",
                percent / 100.0
            );
            (
                vec![format!("iptables -I {rule}")],
                vec![format!("iptables -D {rule}")],
            )
        }
        (Action::Delay { .. } | Action::Reorder { .. }, ShapingPath::Nfqueue) => {
            let rule = format!("OUTPUT ! -o lo{dst} -j NFQUEUE --queue-num {QUEUE} --queue-bypass");
            (
                vec![format!("iptables -I {rule}")],
                vec![format!("iptables -D {rule}")],
            )
        }
        _ => (Vec::new(), Vec::new()),
    }
}

/// The IPv4 addresses of peers' `HOST:PORT` addresses, resolved now.
pub fn resolve(addrs: &[String]) -> Result<Vec<String>, String> {
    use std::net::ToSocketAddrs;
    let mut ips = std::collections::BTreeSet::new();
    for addr in addrs {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve peer address `{addr}`: {e}"))?;
        ips.extend(resolved.filter(|a| a.is_ipv4()).map(|a| a.ip().to_string()));
    }
    if ips.is_empty() {
        return Err("none of the peers has an IPv4 address".into());
    }
    Ok(ips.into_iter().collect())
}

fn run(cmd: &str) -> Result<(), String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A shaping action in force; [`Active::undo`] lifts it.
pub struct Active {
    pub path: ShapingPath,
    undo: Vec<String>,
    delay: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

/// Applies `action` to this container's traffic (or only to the peers at `to`, if
/// given), on the kernel with `caps`.
pub fn apply(
    action: &Action,
    caps: KernelCaps,
    iface: &str,
    seed: u64,
    to: Option<&[String]>,
) -> Result<Active, String> {
    let path = choose_path(action, caps)?;
    let to = to
        .map(resolve)
        .transpose()
        .map_err(|e| format!("`to`: {e}"))?;
    let (apply, undo) = commands(action, path, iface, to.as_deref());
    let mut delay = None;
    if path == ShapingPath::Nfqueue {
        let (ms, jitter_ms) = match action {
            Action::Delay { ms, jitter_ms } => (*ms, *jitter_ms),
            // Reordering: hold a share of packets a little, so later ones overtake them.
            _ => (0, 20),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("nfqueue-delay".into())
            .spawn(move || hold_and_release(ms, jitter_ms, seed, thread_stop, ready_tx))
            .map_err(|e| format!("cannot start the delay thread: {e}"))?;
        // The queue must be bound before packets are sent to it.
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("NFQUEUE: {e}")),
            Err(_) => return Err("NFQUEUE: the delay thread did not start".into()),
        }
        delay = Some((stop, handle));
    }
    let active = Active { path, undo, delay };
    for cmd in &apply {
        if let Err(e) = run(cmd) {
            active.undo();
            return Err(e);
        }
    }
    Ok(active)
}

impl Active {
    /// Removes the rule or qdisc, then releases every packet still held.
    pub fn undo(self) {
        for cmd in &self.undo {
            if let Err(e) = run(cmd) {
                tracing::warn!("undoing shaping: {e}");
            }
        }
        if let Some((stop, handle)) = self.delay {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
    }
}

/// The commands that cut this container off from `ips` and restore it: a chain of DROP
/// rules (`-d` for what leaves, `-s` for what arrives), hooked into OUTPUT and INPUT.
pub fn partition_commands(ips: &[String], chain: &str) -> (Vec<String>, Vec<String>) {
    let list = ips.join(",");
    (
        vec![
            format!("iptables -N {chain}"),
            format!("iptables -A {chain} -d {list} -j DROP"),
            format!("iptables -A {chain} -s {list} -j DROP"),
            format!("iptables -I OUTPUT -j {chain}"),
            format!("iptables -I INPUT -j {chain}"),
        ],
        vec![
            format!("iptables -D INPUT -j {chain}"),
            format!("iptables -D OUTPUT -j {chain}"),
            format!("iptables -F {chain}"),
            format!("iptables -X {chain}"),
        ],
    )
}

/// Cuts this container off from the peers at `addrs` (`HOST:PORT`, names resolved now)
/// until [`Active::undo`]. `tag` keeps the chains of overlapping partitions apart.
pub fn partition(addrs: &[String], tag: usize) -> Result<Active, String> {
    let ips = resolve(addrs).map_err(|e| format!("partition: {e}"))?;
    let (apply, undo) = partition_commands(&ips, &format!("CMESH-CUT-{tag}"));
    let active = Active {
        path: ShapingPath::Iptables,
        undo,
        delay: None,
    };
    for cmd in &apply {
        if let Err(e) = run(cmd) {
            active.undo();
            return Err(e);
        }
    }
    Ok(active)
}

/// Uniform in `[ms - jitter, ms + jitter]`, at least 0, from a small xorshift state.
fn next_delay(ms: u64, jitter_ms: u64, state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let spread = 2 * jitter_ms + 1;
    let d = (ms + (*state % spread)).saturating_sub(jitter_ms);
    Duration::from_millis(d)
}

fn hold_and_release(
    ms: u64,
    jitter_ms: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let open = || -> std::io::Result<nfq::Queue> {
        let mut q = nfq::Queue::open()?;
        q.bind(QUEUE)?;
        q.set_fail_open(QUEUE, true)?;
        q.set_copy_range(QUEUE, 0)?;
        q.set_queue_max_len(QUEUE, 65_536)?;
        q.set_nonblocking(true);
        Ok(q)
    };
    let mut q = match open() {
        Ok(q) => {
            let _ = ready.send(Ok(()));
            q
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut state = seed | 1;
    let mut seq = 0u64;
    // Min-heap on (due, arrival order); the messages wait in a map by arrival order.
    let mut due: BinaryHeap<std::cmp::Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut held: std::collections::HashMap<u64, nfq::Message> = Default::default();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        loop {
            match q.recv() {
                Ok(msg) => {
                    let at = Instant::now() + next_delay(ms, jitter_ms, &mut state);
                    due.push(std::cmp::Reverse((at, seq)));
                    held.insert(seq, msg);
                    seq += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("NFQUEUE receive: {e}");
                    break;
                }
            }
        }
        let now = Instant::now();
        while let Some(std::cmp::Reverse((at, id))) = due.peek().copied() {
            if at > now && !stopping {
                break;
            }
            due.pop();
            if let Some(mut msg) = held.remove(&id) {
                msg.set_verdict(nfq::Verdict::Accept);
                if let Err(e) = q.verdict(msg) {
                    tracing::warn!("NFQUEUE verdict: {e}");
                }
            }
        }
        if stopping && held.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_caps_from_config_and_modules() {
        let config = "CONFIG_NETFILTER_NETLINK_QUEUE=y\n# CONFIG_NET_SCH_NETEM is not set\nCONFIG_NET_SCH_TBF=m\n";
        let caps = caps_from(config, |m| m == "xt_statistic");
        assert_eq!(
            caps,
            KernelCaps {
                netem: false,
                nfqueue: true,
                iptables_statistic: true,
                tbf: true
            }
        );
        assert!(caps_from("", |m| m == "sch_netem").netem);
    }

    #[test]
    fn commands_per_path() {
        let delay = Action::Delay {
            ms: 200,
            jitter_ms: 20,
        };
        let (apply, undo) = commands(&delay, ShapingPath::Netem, "eth0", None);
        assert_eq!(
            apply,
            vec!["tc qdisc replace dev eth0 root netem delay 200ms 20ms"]
        );
        assert_eq!(undo, vec!["tc qdisc del dev eth0 root"]);
        let (apply, undo) = commands(&delay, ShapingPath::Nfqueue, "eth0", None);
        assert!(apply[0].starts_with("iptables -I OUTPUT ! -o lo -j NFQUEUE --queue-num 7"));
        assert_eq!(undo[0], apply[0].replacen("-I", "-D", 1));
        let (apply, _) = commands(
            &Action::Loss { percent: 10.0 },
            ShapingPath::Iptables,
            "eth0",
            None,
        );
        assert!(
            apply[0].contains("--probability 0.1000 -j DROP"),
            "{apply:?}"
        );
        let (apply, _) = commands(&Action::Rate { kbit: 512 }, ShapingPath::Tbf, "eth0", None);
        assert!(apply[0].contains("tbf rate 512kbit"));
    }

    #[test]
    fn shaping_towards_some_peers_only() {
        let ips = ["10.0.1.5".to_owned(), "10.0.1.6".to_owned()];
        let delay = Action::Delay {
            ms: 50,
            jitter_ms: 0,
        };
        let (apply, undo) = commands(&delay, ShapingPath::Nfqueue, "eth0", Some(&ips));
        assert!(
            apply[0].starts_with("iptables -I OUTPUT ! -o lo -d 10.0.1.5,10.0.1.6 -j NFQUEUE"),
            "{apply:?}"
        );
        assert_eq!(undo[0], apply[0].replacen("-I", "-D", 1));
        let loss = Action::Loss { percent: 5.0 };
        let (apply, _) = commands(&loss, ShapingPath::Iptables, "eth0", Some(&ips));
        assert!(
            apply[0].contains("-d 10.0.1.5,10.0.1.6 -m statistic"),
            "{apply:?}"
        );
        // netem and tbf: a prio root, the shaping on band 3, a filter per address.
        let (apply, undo) = commands(&delay, ShapingPath::Netem, "eth0", Some(&ips));
        assert_eq!(
            apply,
            vec![
                "tc qdisc replace dev eth0 root handle 1: prio",
                "tc qdisc add dev eth0 parent 1:3 handle 30: netem delay 50ms 0ms",
                "tc filter add dev eth0 parent 1:0 protocol ip prio 3 u32 match ip dst 10.0.1.5/32 flowid 1:3",
                "tc filter add dev eth0 parent 1:0 protocol ip prio 3 u32 match ip dst 10.0.1.6/32 flowid 1:3",
            ]
        );
        assert_eq!(undo, vec!["tc qdisc del dev eth0 root"]);
        assert_eq!(
            resolve(&["127.0.0.1:7000".into()]).unwrap(),
            vec!["127.0.0.1"]
        );
    }

    #[test]
    fn partition_rules_drop_both_ways_and_come_off_in_reverse() {
        let ips = ["10.0.1.5".to_owned(), "10.0.1.6".to_owned()];
        let (apply, undo) = partition_commands(&ips, "CMESH-CUT-0");
        assert_eq!(apply[0], "iptables -N CMESH-CUT-0");
        assert!(apply.contains(&"iptables -A CMESH-CUT-0 -d 10.0.1.5,10.0.1.6 -j DROP".into()));
        assert!(apply.contains(&"iptables -A CMESH-CUT-0 -s 10.0.1.5,10.0.1.6 -j DROP".into()));
        assert!(apply.contains(&"iptables -I INPUT -j CMESH-CUT-0".into()));
        assert_eq!(undo.first().unwrap(), "iptables -D INPUT -j CMESH-CUT-0");
        assert_eq!(undo.last().unwrap(), "iptables -X CMESH-CUT-0");
        let e = match partition(&["no-such-host.invalid:7000".into()], 0) {
            Err(e) => e,
            Ok(_) => panic!("an unknown name cannot be cut off"),
        };
        assert!(
            e.contains("cannot resolve peer address `no-such-host.invalid:7000`"),
            "{e}"
        );
    }

    #[test]
    fn delays_stay_within_the_jitter() {
        let mut state = 42;
        let ds: Vec<u64> = (0..1000)
            .map(|_| next_delay(200, 20, &mut state).as_millis() as u64)
            .collect();
        assert!(ds.iter().all(|d| (180..=220).contains(d)));
        assert!(ds.iter().any(|d| *d < 190) && ds.iter().any(|d| *d > 210));
        assert_eq!(next_delay(5, 0, &mut state), Duration::from_millis(5));
        assert!(next_delay(0, 20, &mut state) <= Duration::from_millis(20));
    }
}
