//! `GET /metrics`: the live figures ([`crate::live`]) in the Prometheus text format
//! (version 0.0.4), written by `prometheus-client`.
//!
//! Cardinality is bounded by the hosts: every series carries `run` and `host` (and
//! `state` or `verdict` where it says so). Per-peer series come only with
//! `--metrics-per-peer N`, for the first N peers by name. The names:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `cmesh_peers{state}` | gauge | peers by the coordinator's state |
//! | `cmesh_peers_linked`, `cmesh_peers_isolated` | gauge | running peers with a link; with none past the grace |
//! | `cmesh_links_up`, `cmesh_links_wanted` | gauge | links up now, and the plan's |
//! | `cmesh_records_written_total`, `cmesh_records_received_total` | counter | records so far |
//! | `cmesh_coverage_ratio` | gauge | received against what could have been |
//! | `cmesh_latency_seconds` | histogram | every latency the heartbeats carried, since the start |
//! | `cmesh_latency_p50_seconds`, `cmesh_latency_p99_seconds` | gauge | over the last window |
//! | `cmesh_scheduling_lag_p99_seconds` | gauge | over the last window |
//! | `cmesh_cpu_quota_used_ratio` | gauge | mean share of the CPU quota used, last window |
//! | `cmesh_checkpoint_age_max_seconds` | gauge | the oldest checkpoint of a running peer |
//! | `cmesh_verdict{verdict}` | gauge | 1 for the host's live verdict, 0 for the others |
//! | `cmesh_peer_records_received_total{peer}`, `cmesh_peer_links_up{peer}` | counter, gauge | with `--metrics-per-peer` |
//!
//! The run's own series carry `host="all"`.

use crate::live::Live;
use cmesh_common::live::{LiveFigures, LiveHistogram, LiveReport, LiveVerdict};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The histogram's bucket edges, µs: 100 µs to 30 s.
const EDGES_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 30_000_000,
];

/// The host label of the run's own series.
pub const ALL_HOSTS: &str = "all";

/// What one scrape encodes, owned (the registry's collector needs `'static`).
#[derive(Debug)]
struct Scrape {
    run: String,
    /// `(host, figures)`, the run's first as [`ALL_HOSTS`].
    figures: Vec<(String, LiveFigures)>,
    /// `(host, latency since the start)`.
    latency: Vec<(String, LiveHistogram)>,
    /// `(peer, host, received, links up)`, at most the cap.
    peers: Vec<(String, String, u64, u32)>,
}

/// The metrics text for `report` and `live`'s totals, with per-peer series for at most
/// `per_peer` peers.
pub fn render(report: &LiveReport, live: &Live, per_peer: usize) -> String {
    let mut figures = vec![(ALL_HOSTS.to_owned(), report.run.clone())];
    figures.extend(report.hosts.iter().map(|(h, f)| (h.clone(), f.clone())));
    let mut all = LiveHistogram::default();
    let mut latency = Vec::new();
    for (host, h) in live.hosts() {
        all.merge(&h.latency_total);
        latency.push((host.clone(), h.latency_total.clone()));
    }
    latency.insert(0, (ALL_HOSTS.to_owned(), all));
    let mut peers: Vec<_> = live
        .peers()
        .iter()
        .map(|(name, p)| {
            (
                name.clone(),
                p.host.clone(),
                p.counters.received,
                p.counters.links_up,
            )
        })
        .collect();
    peers.sort();
    peers.truncate(per_peer);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        run: report.run_id.clone(),
        figures,
        latency,
        peers,
    }));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// A histogram given by its counts.
struct Counts<'a>(&'a LiveHistogram);

impl EncodeMetric for Counts<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        // The encoder adds the buckets up itself, and writes `le="+Inf"` with the count.
        let cumulative = self.0.cumulative(&EDGES_US);
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = EDGES_US
            .iter()
            .zip(&cumulative)
            .map(|(&edge, &n)| {
                let in_bucket = n.saturating_sub(below);
                below = n;
                (edge as f64 / 1e6, in_bucket)
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_estimate() / 1e6,
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Scrape {
    fn gauge(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&LiveFigures) -> Option<f64>,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (host, f) in &self.figures {
            if let Some(v) = value(f) {
                let labels: Labels = vec![("run", &self.run), ("host", host)];
                metric.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        Ok(())
    }

    fn counter(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&LiveFigures) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (host, f) in &self.figures {
            let labels: Labels = vec![("run", &self.run), ("host", host)];
            metric
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value(f), None)?;
        }
        Ok(())
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        {
            let mut metric = e.encode_descriptor(
                "cmesh_peers",
                "Peers by the coordinator's state.",
                None,
                MetricType::Gauge,
            )?;
            for (host, f) in &self.figures {
                for (state, n) in &f.peers {
                    let labels: Labels =
                        vec![("run", &self.run), ("host", host), ("state", state.name())];
                    metric.encode_family(&labels)?.encode_gauge(&(*n as i64))?;
                }
            }
        }
        self.gauge(
            e,
            "cmesh_peers_linked",
            "Running peers with a link up.",
            |f| Some(f.linked as f64),
        )?;
        self.gauge(
            e,
            "cmesh_peers_isolated",
            "Running peers with neighbours and no link, 30 s after the start.",
            |f| Some(f.isolated as f64),
        )?;
        self.gauge(e, "cmesh_links_up", "Links to neighbours up now.", |f| {
            Some(f.links_up as f64)
        })?;
        self.gauge(
            e,
            "cmesh_links_wanted",
            "Links the plan gives the peers now.",
            |f| Some(f.links_wanted as f64),
        )?;
        self.counter(e, "cmesh_records_written", "Records written so far.", |f| {
            f.written
        })?;
        self.counter(
            e,
            "cmesh_records_received",
            "Records received so far (first deliveries).",
            |f| f.received,
        )?;
        self.gauge(
            e,
            "cmesh_coverage_ratio",
            "Records received so far against what the others wrote.",
            |f| f.coverage,
        )?;
        {
            let mut metric = e.encode_descriptor(
                "cmesh_latency_seconds",
                "Latency of the records received, as the heartbeats carried it (buckets 19% wide).",
                None,
                MetricType::Histogram,
            )?;
            for (host, h) in &self.latency {
                let labels: Labels = vec![("run", &self.run), ("host", host)];
                Counts(h).encode(metric.encode_family(&labels)?)?;
            }
        }
        let seconds = |us: Option<u64>| us.map(|u| u as f64 / 1e6);
        self.gauge(
            e,
            "cmesh_latency_p50_seconds",
            "Latency p50 over the last window.",
            |f| seconds(f.p50_us),
        )?;
        self.gauge(
            e,
            "cmesh_latency_p99_seconds",
            "Latency p99 over the last window.",
            |f| seconds(f.p99_us),
        )?;
        self.gauge(
            e,
            "cmesh_scheduling_lag_p99_seconds",
            "How late the peers' timers fired, p99 over the last window.",
            |f| seconds(f.lag_p99_us),
        )?;
        self.gauge(
            e,
            "cmesh_cpu_quota_used_ratio",
            "Mean share of the CPU quota the peers used over the last window.",
            |f| f.quota_used,
        )?;
        self.gauge(
            e,
            "cmesh_checkpoint_age_max_seconds",
            "The oldest checkpoint of a running peer.",
            |f| f.checkpoint_age_max_ms.map(|ms| ms as f64 / 1e3),
        )?;
        {
            let mut metric = e.encode_descriptor(
                "cmesh_verdict",
                "1 for the live measurement-quality verdict, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for (host, f) in &self.figures {
                for v in [
                    LiveVerdict::Unknown,
                    LiveVerdict::Clean,
                    LiveVerdict::Degraded,
                    LiveVerdict::Saturated,
                ] {
                    let labels: Labels =
                        vec![("run", &self.run), ("host", host), ("verdict", v.as_str())];
                    metric
                        .encode_family(&labels)?
                        .encode_gauge(&i64::from(f.verdict == v))?;
                }
            }
        }
        if !self.peers.is_empty() {
            {
                let mut metric = e.encode_descriptor(
                    "cmesh_peer_records_received",
                    "Records one peer received so far.",
                    None,
                    MetricType::Counter,
                )?;
                for (peer, host, received, _) in &self.peers {
                    let labels: Labels = vec![("run", &self.run), ("host", host), ("peer", peer)];
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(received, None)?;
                }
            }
            let mut metric = e.encode_descriptor(
                "cmesh_peer_links_up",
                "One peer's links up now.",
                None,
                MetricType::Gauge,
            )?;
            for (peer, host, _, links) in &self.peers {
                let labels: Labels = vec![("run", &self.run), ("host", host), ("peer", peer)];
                metric
                    .encode_family(&labels)?
                    .encode_gauge(&i64::from(*links))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::PeerView;
    use cmesh_common::lifecycle::PeerState;
    use cmesh_common::live::LiveCounters;

    fn live() -> (Live, LiveReport) {
        let mut live = Live::default();
        for (i, host) in ["h1", "h1", "h2"].iter().enumerate() {
            let mut latency = LiveHistogram::default();
            latency.record(3_000);
            latency.record(200_000);
            live.observe(
                &format!("p{i}"),
                host,
                &LiveCounters {
                    written: 5,
                    received: 10,
                    links_up: 2,
                    links_wanted: 2,
                    latency,
                    lag: LiveHistogram(vec![(36, 5)]),
                    quota_permille: Some(300),
                    checkpoint_age_ms: Some(1_000),
                    ..Default::default()
                },
                1_000,
            );
        }
        let peers = [
            ("p0", "h1", PeerState::Running),
            ("p1", "h1", PeerState::Running),
            ("p2", "h2", PeerState::Running),
        ];
        let mut report = live.report(
            peers
                .iter()
                .map(|&(name, host, state)| PeerView { name, host, state }),
            1_500,
            Some(500),
        );
        report.run_id = "r1".into();
        (live, report)
    }

    #[test]
    fn the_text_has_run_and_host_labels_and_no_peers_by_default() {
        let (live, report) = live();
        let text = render(&report, &live, 0);
        assert!(
            text.contains("cmesh_records_received_total{run=\"r1\",host=\"all\"} 30\n"),
            "{text}"
        );
        assert!(
            text.contains("cmesh_records_received_total{run=\"r1\",host=\"h1\"} 20\n"),
            "{text}"
        );
        assert!(
            text.contains("cmesh_links_up{run=\"r1\",host=\"all\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("cmesh_peers{run=\"r1\",host=\"h2\",state=\"running\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE cmesh_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("cmesh_latency_seconds_bucket{le=\"0.005\",run=\"r1\",host=\"all\"} 3\n")
                || text.contains(
                    "cmesh_latency_seconds_bucket{run=\"r1\",host=\"all\",le=\"0.005\"} 3\n"
                ),
            "{text}"
        );
        assert!(
            text.contains("cmesh_latency_seconds_count{run=\"r1\",host=\"all\"} 6\n"),
            "{text}"
        );
        assert!(!text.contains("peer=\""), "{text}");
        // Every sample line parses as NAME{LABELS} VALUE.
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        }
    }

    #[test]
    fn per_peer_series_are_capped() {
        let (live, report) = live();
        let text = render(&report, &live, 2);
        assert!(text.contains("peer=\"p0\""), "{text}");
        assert!(text.contains("peer=\"p1\""), "{text}");
        assert!(!text.contains("peer=\"p2\""), "{text}");
    }

    #[test]
    fn the_grafana_dashboard_asks_for_metrics_that_exist() {
        let (live, report) = live();
        let text = render(&report, &live, 0);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../configs/grafana/cmesh-live.json"
        );
        let dashboard = std::fs::read_to_string(path).unwrap();
        let _: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
        let mut asked = 0;
        for piece in dashboard.split("cmesh_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            asked += 1;
            assert!(
                text.contains(&format!("\ncmesh_{name}{{")),
                "the dashboard asks for cmesh_{name}, which /metrics does not have"
            );
        }
        assert!(asked >= 10, "{asked}");
    }
}
