//! Link utilization: bytes in and out per network interface, per time window, read from
//! `/proc/net/dev` (the container's own network namespace). Sampled once a window
//! ([`crate::usage`]).

use crate::metrics::split;
use cmesh_common::report::InterfaceSeries;
use std::collections::BTreeMap;

/// Byte counters per interface (loopback left out): name → (received, sent).
pub fn parse(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    // Two header lines, then `  eth0: rx_bytes rx_packets … (8 fields) tx_bytes …`.
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let fields: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if name == "lo" || fields.len() < 9 {
            continue;
        }
        out.insert(name.to_owned(), (fields[0], fields[8]));
    }
    out
}

/// The counters now.
pub fn read() -> BTreeMap<String, (u64, u64)> {
    crate::cpu::read("/proc/net/dev")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Adds `parts` windows to `series` from two readings of the counters: the difference,
/// split evenly over them.
pub fn push_windows(
    series: &mut BTreeMap<String, InterfaceSeries>,
    windows_before: usize,
    before: &BTreeMap<String, (u64, u64)>,
    now: &BTreeMap<String, (u64, u64)>,
    parts: usize,
) {
    for (name, &(rx, tx)) in now {
        let (rx0, tx0) = before.get(name).copied().unwrap_or((rx, tx));
        let s = series
            .entry(name.clone())
            .or_insert_with(|| InterfaceSeries {
                // An interface that appeared late has zeros for the windows before.
                rx_bytes: vec![0; windows_before],
                tx_bytes: vec![0; windows_before],
            });
        s.rx_bytes.extend(split(rx.saturating_sub(rx0), parts));
        s.tx_bytes.extend(split(tx.saturating_sub(tx0), parts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:  52000     400    0    0    0     0          0         0    31000     300    0    0    0     0       0          0
";

    #[test]
    fn reads_bytes_per_interface_without_loopback() {
        let m = parse(DEV);
        assert_eq!(m.len(), 1);
        assert_eq!(m["eth0"], (52_000, 31_000));
        assert!(parse("garbage").is_empty());
    }

    #[test]
    fn windows_are_differences_and_late_interfaces_are_padded() {
        let mut series = BTreeMap::new();
        let a = BTreeMap::from([("eth0".to_owned(), (100, 50))]);
        let b = BTreeMap::from([
            ("eth0".to_owned(), (400, 80)),
            ("eth1".to_owned(), (10, 10)),
        ]);
        push_windows(&mut series, 0, &a, &a, 1);
        push_windows(&mut series, 1, &a, &b, 1);
        assert_eq!(series["eth0"].rx_bytes, vec![0, 300]);
        assert_eq!(series["eth0"].tx_bytes, vec![0, 30]);
        assert_eq!(
            series["eth1"].rx_bytes,
            vec![0, 0],
            "new: counted from here"
        );
    }
}
