//! A peer's report is checked against the run's plan before anything of it is merged.
//!
//! Reports come from containers that run the software under test: a bug or a hostile
//! peer can write anything. A report that does not fit the plan (a window width other
//! than the plan's, window indices or series past the run's end, a time series that
//! starts far from everyone else's, histograms that do not decode, more entries than the
//! run can produce, a file over [`MAX_REPORT_BYTES`]) marks that one peer `invalid`, with
//! the reason, and the rest of the run is analysed. What the merge allocates is then
//! bounded by the plan, not by what a report claims.

use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::plan::PlanSpec;
use cmesh_common::report::{window_ms, PeerReport};

/// The largest report file analyze reads. A peer's final report is a few hundred KiB at
/// 300 windows; a larger one is not a report.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// Windows a report may have beyond the plan's duration (a late write, a slow catch-up).
const SLACK_WINDOWS: u64 = 2;

/// The largest clock offset or uncertainty a report may claim, µs (an hour): clocks
/// further apart than that are not a lab's, and the sums stay far from overflow.
const MAX_CLOCK_US: u64 = 3_600_000_000;

/// Entries of a list a report may have (faults, resyncs, interfaces) beyond what a run
/// can produce; generous, but bounded.
const MAX_ENTRIES: usize = 10_000;

/// What a report may hold in this run.
#[derive(Clone, Debug)]
pub struct Bounds {
    pub window_ms: u64,
    /// Windows by write or sampling time: the run's, and a little slack.
    pub windows: u64,
    /// Windows by arrival time (records received, interface bytes): twice the run's,
    /// as the peer keeps them, for the catch-up after the writing ends.
    pub arrival_windows: u64,
    pub peers: usize,
    pub hosts: usize,
    /// The time series' common start (the median over the run's reports), if known.
    pub start_unix_ms: Option<u64>,
    pub duration_ms: u64,
}

impl Bounds {
    /// The bounds of a run of `spec` over `hosts` hosts.
    pub fn of(spec: &PlanSpec, hosts: usize) -> Bounds {
        let window = window_ms(spec.duration_ms);
        Bounds {
            window_ms: window,
            windows: spec.duration_ms.div_ceil(window) + SLACK_WINDOWS,
            arrival_windows: 2 * spec.duration_ms.div_ceil(window) + SLACK_WINDOWS,
            peers: spec.peers,
            hosts,
            start_unix_ms: None,
            duration_ms: spec.duration_ms,
        }
    }
}

fn decodes(what: &str, encoded: &str) -> Result<(), String> {
    LatencyHistogram::decode(encoded)
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Ok if a series starting at `start` belongs with the run's others (their median
/// start `median`): within the run's duration of it.
pub fn start_fits(start: u64, median: u64, duration_ms: u64) -> Result<(), String> {
    if start.abs_diff(median) > duration_ms {
        return Err(format!(
            "time series starts {} ms away from the run's other reports",
            start.abs_diff(median)
        ));
    }
    Ok(())
}

/// Ok if `r` fits `b`; the first reason it does not, otherwise.
pub fn check(r: &PeerReport, b: &Bounds) -> Result<(), String> {
    if r.origins.len() > b.peers {
        return Err(format!(
            "{} origins in a run of {} peers",
            r.origins.len(),
            b.peers
        ));
    }
    if r.latency_by_origin_host.len() > b.hosts.max(1) {
        return Err(format!(
            "latency from {} origin hosts in a run on {} hosts",
            r.latency_by_origin_host.len(),
            b.hosts
        ));
    }
    for (what, n) in [
        ("faults", r.faults.len()),
        ("resyncs", r.resync.len()),
        ("neighbours", r.neighbours.len()),
    ] {
        if n > MAX_ENTRIES {
            return Err(format!("{n} {what}, more than a run can have"));
        }
    }
    if let Some(sync) = &r.clock_sync {
        for e in std::iter::once(&sync.start).chain(sync.end.as_ref()) {
            if e.clock_offset_us.unsigned_abs() > MAX_CLOCK_US
                || e.clock_uncertainty_us > MAX_CLOCK_US
            {
                return Err(format!(
                    "a clock estimate of {} µs ± {} µs, more than an hour",
                    e.clock_offset_us, e.clock_uncertainty_us
                ));
            }
        }
    }
    decodes("message_latency.histogram", &r.message_latency.histogram)?;
    if let Some(l) = &r.scheduling_lag {
        decodes("scheduling_lag.histogram", &l.histogram)?;
    }
    for (host, l) in &r.latency_by_origin_host {
        decodes(&format!("latency from host {host}"), &l.histogram)?;
        if let Some(n) = &l.negative_histogram {
            decodes(&format!("negative latency from host {host}"), n)?;
        }
    }
    let Some(s) = &r.time_series else {
        return Ok(());
    };
    if s.window_ms != b.window_ms {
        return Err(format!(
            "time series windows of {} ms; the plan's are {} ms",
            s.window_ms, b.window_ms
        ));
    }
    if let Some(start) = b.start_unix_ms {
        start_fits(s.start_unix_ms, start, b.duration_ms)?;
    }
    if let Some(w) = s.latency.iter().find(|w| u64::from(w.window) >= b.windows) {
        return Err(format!(
            "latency window {} past the run's {} windows",
            w.window, b.windows
        ));
    }
    if s.latency.len() as u64 > b.windows || s.received.len() as u64 > b.arrival_windows {
        return Err(format!(
            "time series longer than the run's {} windows ({} by arrival)",
            b.windows, b.arrival_windows
        ));
    }
    if s.interfaces.len() > MAX_ENTRIES {
        return Err(format!("{} interfaces", s.interfaces.len()));
    }
    for (name, i) in &s.interfaces {
        if i.rx_bytes.len() as u64 > b.arrival_windows
            || i.tx_bytes.len() as u64 > b.arrival_windows
        {
            return Err(format!(
                "interface {name}: a series longer than the run's {} windows by arrival",
                b.arrival_windows
            ));
        }
    }
    for w in &s.latency {
        decodes(&format!("latency window {}", w.window), &w.histogram)?;
    }
    if let Some(c) = &s.cpu {
        let longest = c
            .host_busy_permille
            .len()
            .max(c.process_us.len())
            .max(c.throttled_us.len());
        if longest as u64 > b.arrival_windows {
            return Err(format!(
                "a CPU series longer than the run's {} windows by sampling time",
                b.arrival_windows
            ));
        }
        if let Some(busy) = c.host_busy_permille.iter().find(|&&b| b > 1000) {
            return Err(format!("host CPU {busy}‰ busy, more than all of it"));
        }
    }
    // By sampling time: through the catch-up, like the arrival series.
    if s.scheduling_lag.len() as u64 > b.arrival_windows {
        return Err(format!(
            "scheduling lag longer than the run's {} windows by sampling time",
            b.arrival_windows
        ));
    }
    for w in &s.scheduling_lag {
        if u64::from(w.window) >= b.arrival_windows {
            return Err(format!(
                "scheduling lag window {} past the run's {} windows by sampling time",
                w.window, b.arrival_windows
            ));
        }
        decodes(&format!("scheduling lag window {}", w.window), &w.histogram)?;
    }
    if s.latency_by_origin_host.len() > b.hosts.max(1) {
        return Err(format!(
            "windows from {} origin hosts in a run on {} hosts",
            s.latency_by_origin_host.len(),
            b.hosts
        ));
    }
    for (host, rows) in &s.latency_by_origin_host {
        if rows.len() as u64 > b.windows {
            return Err(format!(
                "windows from host {host}: longer than the run's {} windows",
                b.windows
            ));
        }
        for w in rows {
            if u64::from(w.window) >= b.windows {
                return Err(format!(
                    "window {} from host {host} past the run's {} windows",
                    w.window, b.windows
                ));
            }
            decodes(
                &format!("window {} from host {host}", w.window),
                &w.histogram,
            )?;
            if let Some(n) = &w.negative_histogram {
                decodes(&format!("negative window {} from host {host}", w.window), n)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmesh_common::report::{TimeSeries, WindowLatency};

    fn bounds() -> Bounds {
        let spec = PlanSpec {
            peers: 3,
            duration_ms: 30_000,
            ..Default::default()
        };
        Bounds {
            start_unix_ms: Some(1_000_000),
            ..Bounds::of(&spec, 1)
        }
    }

    fn good() -> PeerReport {
        let mut r = PeerReport::new("p", "mesh", 0);
        let mut h = LatencyHistogram::new();
        h.record(500);
        r.message_latency.histogram = h.encode();
        r.time_series = Some(TimeSeries {
            start_unix_ms: 1_000_000,
            window_ms: 1_000,
            latency: vec![WindowLatency {
                window: 3,
                count: 1,
                p50_us: 500,
                p99_us: 500,
                max_us: 500,
                histogram: h.encode(),
                negative_histogram: None,
            }],
            received: vec![0, 1],
            interfaces: Default::default(),
            latency_by_origin_host: Default::default(),
            scheduling_lag: Default::default(),
            cpu: None,
        });
        r
    }

    #[test]
    fn a_report_that_fits_the_plan_passes() {
        assert_eq!(check(&good(), &bounds()), Ok(()));
        assert_eq!((bounds().windows, bounds().arrival_windows), (32, 62));
        // A catch-up that goes on past the run (arrivals and interface bytes by arrival
        // time, up to twice the run, as the peer keeps them) is fine.
        let mut late = good();
        late.time_series.as_mut().unwrap().received = vec![1; 60];
        late.time_series.as_mut().unwrap().interfaces.insert(
            "eth0".into(),
            cmesh_common::report::InterfaceSeries {
                rx_bytes: vec![1; 60],
                tx_bytes: vec![1; 60],
            },
        );
        assert_eq!(check(&late, &bounds()), Ok(()));
    }

    fn series(r: &mut PeerReport) -> &mut TimeSeries {
        r.time_series.as_mut().unwrap()
    }

    #[test]
    fn what_does_not_fit_the_plan_is_named() {
        let b = bounds();
        let bad = |f: &dyn Fn(&mut PeerReport)| {
            let mut r = good();
            f(&mut r);
            check(&r, &b).unwrap_err()
        };
        assert!(bad(&|r| series(r).window_ms = 0).contains("windows of 0 ms"));
        assert!(bad(&|r| series(r).latency[0].window = u32::MAX).contains("past the run's"));
        assert!(bad(&|r| series(r).received = vec![1; 100_000]).contains("longer than"));
        assert!(bad(&|r| series(r).start_unix_ms = u64::MAX).contains("away from"));
        assert!(
            bad(&|r| series(r).latency[0].histogram = "not base64!".into())
                .contains("latency window 3")
        );
        assert!(bad(&|r| r.message_latency.histogram = "AAAA".into()).contains("message_latency"));
        assert!(bad(&|r| {
            r.clock_sync = Some(cmesh_common::clock::ClockSync {
                start: cmesh_common::clock::ClockEstimate {
                    at_unix_ms: 0,
                    clock_offset_us: i64::MIN,
                    clock_uncertainty_us: 1,
                    samples: 1,
                    agreeing: 1,
                    min_rtt_us: 2,
                },
                end: None,
            })
        })
        .contains("more than an hour"));
        assert!(bad(&|r| {
            let mut w = series(r).latency[0].clone();
            w.window = 99;
            series(r).scheduling_lag = vec![w];
        })
        .contains("scheduling lag window 99 past"));
        assert!(bad(&|r| {
            let mut l = r.message_latency.clone();
            l.histogram = "%%".into();
            r.scheduling_lag = Some(l);
        })
        .contains("scheduling_lag.histogram"));
        let by_host = |r: &mut PeerReport, window: u32, negative: &str| {
            let mut w = series(r).latency[0].clone();
            w.window = window;
            w.negative_histogram = Some(negative.into());
            series(r).latency_by_origin_host.insert("h".into(), vec![w]);
        };
        let fine = {
            let mut r = good();
            let ok = r.message_latency.histogram.clone();
            by_host(&mut r, 1, &ok);
            r
        };
        assert_eq!(check(&fine, &b), Ok(()));
        assert!(bad(&|r| by_host(r, 40, "")).contains("window 40 from host h past"));
        assert!(bad(&|r| by_host(r, 1, "??")).contains("negative window 1 from host h"));
        assert!(bad(&|r| {
            by_host(r, 1, "");
            let rows = series(r).latency_by_origin_host["h"].clone();
            series(r).latency_by_origin_host.insert("h2".into(), rows);
        })
        .contains("2 origin hosts"));
        assert!(bad(&|r| {
            for i in 0..10 {
                r.origins.insert(format!("o{i}"), Default::default());
            }
        })
        .contains("10 origins"));
        let cpu = |busy: Vec<u16>, process: Vec<u64>| {
            move |r: &mut PeerReport| {
                series(r).cpu = Some(cmesh_common::report::CpuSeries {
                    host_busy_permille: busy.clone(),
                    process_us: process.clone(),
                    throttled_us: Vec::new(),
                })
            }
        };
        let mut fine = good();
        cpu(vec![1000; 60], vec![5; 60])(&mut fine);
        assert_eq!(check(&fine, &b), Ok(()));
        assert!(bad(&cpu(vec![1001], vec![1])).contains("1001‰"));
        assert!(bad(&cpu(vec![], vec![1; 63])).contains("CPU series longer"));
    }
}
