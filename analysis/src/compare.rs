//! `launcher compare`: a candidate against a baseline, metric by metric, with a 95%
//! confidence interval on the change, and a verdict per metric.
//!
//! - With several runs on a side (`--baseline A1,A2,A3 --candidate B1,B2,B3`), each run
//!   is one sample: a side's value is the mean of its runs' figures. This is the
//!   comparison to trust: single runs of a distributed system mislead.
//! - With one run on each side (`compare A B`), the peers are the samples: a side's
//!   value is the mean over its peers of their own figure (p50, p99, max latency,
//!   coverage, bytes per record), and the bootstrap resamples peers. Metrics without a
//!   per-peer figure (resync, availability, CPU) are shown without an interval.
//!
//! The change is relative: candidate / baseline − 1, with a 95% interval:
//! - **runs** (a few samples a side): Student's t interval (Welch's, for unequal
//!   variances) on the ratio of the means, its standard error by the delta method. A side
//!   of one run borrows the other side's variance. The percentile bootstrap is too sure
//!   of itself with so few samples: with three runs a side it excludes zero for about
//!   one pair in six of the *same* plan (17%), where a 95% interval should for one in
//!   twenty; the t interval does for 4.4% (`few_runs_get_a_t_interval_as_wide_as_they_need`
//!   measures both).
//! - **peers** (tens to thousands of samples): the 2.5th to 97.5th percentile of that
//!   change over [`RESAMPLES`] resamplings of both sides (seeded, so the same inputs
//!   give the same output), which needs no assumption about the shape of the peers'
//!   spread.
//!
//! A metric is **worse** or **better** when the whole
//! interval is on one side of zero and the change is larger than the noise threshold
//! (default [`DEFAULT_NOISE`], 5%: on shared machines, runs of the same plan differ by a
//! few percent); otherwise there is no significant difference. Which side is better
//! depends on the metric: lower latency, bytes and CPU; higher coverage and availability.
//!
//! A gate (`--fail-on 'p99>+10%'`) fails when its metric is worse and the whole interval
//! lies beyond the given change: significantly worse by more than that.

use crate::Summary;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bootstrap resamplings.
pub const RESAMPLES: usize = 2000;
/// The change below which a significant difference is still called no difference.
pub const DEFAULT_NOISE: f64 = 0.05;

/// What is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    P50,
    P99,
    Max,
    Coverage,
    ResyncP50,
    Availability,
    BytesPerRecord,
    CpuPerRecord,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::P50,
        Metric::P99,
        Metric::Max,
        Metric::Coverage,
        Metric::ResyncP50,
        Metric::Availability,
        Metric::BytesPerRecord,
        Metric::CpuPerRecord,
    ];

    /// The name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::Max => "max",
            Metric::Coverage => "coverage",
            Metric::ResyncP50 => "resync_p50",
            Metric::Availability => "availability",
            Metric::BytesPerRecord => "bytes_per_record",
            Metric::CpuPerRecord => "cpu_per_record",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::P50 | Metric::P99 | Metric::Max | Metric::ResyncP50 => "ms",
            Metric::Coverage | Metric::Availability => "",
            Metric::BytesPerRecord => "B",
            Metric::CpuPerRecord => "µs",
        }
    }

    /// True when a lower value is the better one.
    pub fn lower_is_better(self) -> bool {
        !matches!(self, Metric::Coverage | Metric::Availability)
    }

    /// The run's figure.
    pub fn of_run(self, s: &Summary) -> Option<f64> {
        let l = &s.message_latency;
        let per_record = |total: f64| {
            (s.totals.records_received > 0).then(|| total / s.totals.records_received as f64)
        };
        match self {
            Metric::P50 => (l.count > 0).then(|| l.p50_us as f64 / 1000.0),
            Metric::P99 => (l.count > 0).then(|| l.p99_us as f64 / 1000.0),
            Metric::Max => (l.count > 0).then(|| l.max_us as f64 / 1000.0),
            Metric::Coverage => Some(s.coverage),
            Metric::ResyncP50 => s.impairment.resync.as_ref().map(|r| r.p50_ms as f64),
            Metric::Availability => s.impairment.availability.as_ref().map(|a| a.ratio),
            Metric::BytesPerRecord => per_record(s.totals.bytes_sent as f64),
            Metric::CpuPerRecord => {
                let hosts = &s.measurement_quality.hosts;
                (!hosts.is_empty())
                    .then(|| hosts.iter().map(|h| h.peer_cpu_ms).sum::<u64>() as f64 * 1000.0)
                    .and_then(per_record)
            }
        }
    }

    /// Each peer's own figure, where a peer has one.
    pub fn of_peers(self, s: &Summary) -> Option<Vec<f64>> {
        let others = s.peers_expected.saturating_sub(1).max(1) as f64;
        let rows = s.per_peer.iter();
        let v: Vec<f64> = match self {
            Metric::P50 => rows.map(|p| p.p50_us as f64 / 1000.0).collect(),
            Metric::P99 => rows.map(|p| p.p99_us as f64 / 1000.0).collect(),
            Metric::Max => rows.map(|p| p.max_us as f64 / 1000.0).collect(),
            Metric::Coverage => rows.map(|p| p.distinct_origins as f64 / others).collect(),
            Metric::BytesPerRecord => rows
                .filter(|p| p.records_received > 0)
                .map(|p| p.bytes_sent as f64 / p.records_received as f64)
                .collect(),
            Metric::ResyncP50 | Metric::Availability | Metric::CpuPerRecord => return None,
        };
        (!v.is_empty()).then_some(v)
    }
}

/// What the samples are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Each run is a sample (several runs on each side).
    Runs,
    /// Each peer is a sample (one run on each side).
    Peers,
}

/// A metric's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    NoSignificantDifference,
    /// No interval: too few samples, or the metric is missing on a side.
    NotEnoughData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// One metric, both sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub metric: Metric,
    /// Each side's value (the mean of its samples), in the metric's unit.
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// candidate / baseline − 1.
    pub change: Option<f64>,
    /// The 95% interval of `change`: Student's t over runs, the bootstrap over peers.
    pub ci: Option<(f64, f64)>,
    pub verdict: Verdict,
}

/// `launcher compare`'s result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: Vec<String>,
    pub candidate: Vec<String>,
    pub basis: Basis,
    pub noise: f64,
    pub rows: Vec<Row>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The 95% percentile-bootstrap interval of mean(c) / mean(b) − 1.
pub fn bootstrap(b: &[f64], c: &[f64], seed: u64) -> Option<(f64, f64)> {
    if b.len() < 2 && c.len() < 2 || b.is_empty() || c.is_empty() {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |v: &[f64]| {
        let mut sum = 0.0;
        for _ in 0..v.len() {
            sum += v[rng.random_range(0..v.len())];
        }
        sum / v.len() as f64
    };
    let mut changes: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let (mb, mc) = (draw(b), draw(c));
            (mb != 0.0).then(|| mc / mb - 1.0)
        })
        .collect();
    if changes.len() < RESAMPLES / 2 {
        return None;
    }
    changes.sort_by(f64::total_cmp);
    let at = |q: f64| changes[((changes.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// The 95% Student's t interval of mean(c) / mean(b) − 1, for few samples a side (runs).
///
/// The ratio's standard error is the delta method's, sqrt(v_c/n_c + r²·v_b/n_b) / |m_b|
/// with r = m_c / m_b, and its degrees of freedom Welch–Satterthwaite's over those two
/// terms. A side of one sample has no variance of its own and borrows the other side's
/// (the degrees of freedom are then the other side's alone). None with one sample in all,
/// or a baseline mean of zero.
pub fn t_interval(b: &[f64], c: &[f64]) -> Option<(f64, f64)> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if b.is_empty() || c.is_empty() || b.len() + c.len() < 3 {
        return None;
    }
    let var = |v: &[f64]| -> Option<f64> {
        let m = mean(v);
        (v.len() > 1).then(|| v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64)
    };
    let (mb, mc) = (mean(b), mean(c));
    if mb == 0.0 || !mb.is_finite() || !mc.is_finite() {
        return None;
    }
    let (vb, vc) = match (var(b), var(c)) {
        (Some(vb), Some(vc)) => (vb, vc),
        (Some(v), None) | (None, Some(v)) => (v, v),
        (None, None) => return None,
    };
    let (nb, nc) = (b.len() as f64, c.len() as f64);
    let r = mc / mb;
    let (qb, qc) = (r * r * vb / nb, vc / nc);
    let se = (qb + qc).sqrt() / mb.abs();
    let change = r - 1.0;
    if se == 0.0 {
        return Some((change, change));
    }
    let df = match (b.len(), c.len()) {
        (1, n) | (n, 1) => (n - 1) as f64,
        _ => (qb + qc).powi(2) / (qb * qb / (nb - 1.0) + qc * qc / (nc - 1.0)),
    };
    let t = StudentsT::new(0.0, 1.0, df).ok()?.inverse_cdf(0.975);
    (t.is_finite() && se.is_finite()).then_some((change - t * se, change + t * se))
}

/// Compares `candidate` with `baseline` (the runs' summaries, with their names).
pub fn compare(
    baseline: &[(String, Summary)],
    candidate: &[(String, Summary)],
    noise: f64,
) -> Comparison {
    let basis = if baseline.len() > 1 || candidate.len() > 1 {
        Basis::Runs
    } else {
        Basis::Peers
    };
    let rows = Metric::ALL
        .into_iter()
        .map(|m| {
            let runs = |side: &[(String, Summary)]| -> Option<Vec<f64>> {
                side.iter().map(|(_, s)| m.of_run(s)).collect()
            };
            let (rb, rc) = (runs(baseline), runs(candidate));
            let samples = match basis {
                Basis::Runs => rb.clone().zip(rc.clone()),
                Basis::Peers => m.of_peers(&baseline[0].1).zip(m.of_peers(&candidate[0].1)),
            };
            // Each side's value is the mean of the samples the interval resamples, so
            // that the change and its interval agree; the run's figure where there are
            // no samples.
            let (b_val, c_val) = match &samples {
                Some((b, c)) => (Some(mean(b)), Some(mean(c))),
                None => (rb.as_deref().map(mean), rc.as_deref().map(mean)),
            };
            let ci = samples.as_ref().and_then(|(b, c)| match basis {
                Basis::Runs => t_interval(b, c),
                Basis::Peers => bootstrap(b, c, 0x636d_6573_6800 + m as u64),
            });
            let change = match (b_val, c_val) {
                (Some(b), Some(c)) if b != 0.0 => Some(c / b - 1.0),
                (Some(b), Some(c)) if b == c => Some(0.0),
                _ => None,
            };
            let verdict = match (ci, change) {
                (Some((lo, hi)), Some(ch)) => {
                    let up = lo > 0.0 && ch > noise;
                    let down = hi < 0.0 && ch < -noise;
                    match (up, down, m.lower_is_better()) {
                        (true, _, true) | (_, true, false) => Verdict::Worse,
                        (true, _, false) | (_, true, true) => Verdict::Better,
                        _ => Verdict::NoSignificantDifference,
                    }
                }
                _ => Verdict::NotEnoughData,
            };
            Row {
                metric: m,
                baseline: b_val,
                candidate: c_val,
                change,
                ci,
                verdict,
            }
        })
        .collect();
    Comparison {
        baseline: baseline.iter().map(|(n, _)| n.clone()).collect(),
        candidate: candidate.iter().map(|(n, _)| n.clone()).collect(),
        basis,
        noise,
        rows,
    }
}

/// `--fail-on METRIC>+N%` (a rise is worse) or `METRIC<-N%` (a fall is worse): fails
/// when the metric is worse and its whole interval lies beyond that change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate {
    pub metric: Metric,
    /// The change, as a fraction: +0.5 for `>+50%`, −0.05 for `<-5%`.
    pub change: f64,
}

impl std::str::FromStr for Gate {
    type Err = String;
    fn from_str(text: &str) -> Result<Gate, String> {
        let text = text.trim();
        let usage = || {
            format!(
                "`{text}` is not a gate: write METRIC>+N% (a rise is worse, e.g. p99>+10%) or METRIC<-N% (a fall is worse, e.g. coverage<-1%); metrics: {}",
                Metric::ALL.map(Metric::name).join(", ")
            )
        };
        let (name, rest, rise) = match (text.split_once('>'), text.split_once('<')) {
            (Some((n, r)), None) => (n, r, true),
            (None, Some((n, r))) => (n, r, false),
            _ => return Err(usage()),
        };
        let metric = Metric::from_name(name.trim()).ok_or_else(usage)?;
        let pct: f64 = rest
            .trim()
            .strip_suffix('%')
            .ok_or_else(usage)?
            .trim()
            .parse()
            .map_err(|_| usage())?;
        if !pct.is_finite() || pct.abs() > 1e6 || (rise && pct < 0.0) || (!rise && pct > 0.0) {
            return Err(usage());
        }
        if rise != metric.lower_is_better() {
            return Err(format!(
                "`{text}`: for {} a {} is the better direction; gate on {}",
                metric.name(),
                if rise { "rise" } else { "fall" },
                if rise {
                    "a fall (<-N%)"
                } else {
                    "a rise (>+N%)"
                }
            ));
        }
        Ok(Gate {
            metric,
            change: pct / 100.0,
        })
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = self.change * 100.0;
        if self.change >= 0.0 {
            write!(f, "{}>+{pct}%", self.metric.name())
        } else {
            write!(f, "{}<{pct}%", self.metric.name())
        }
    }
}

/// The gates that fail, each with why.
pub fn failed_gates(c: &Comparison, gates: &[Gate]) -> Vec<String> {
    gates
        .iter()
        .filter_map(|g| {
            let row = c.rows.iter().find(|r| r.metric == g.metric)?;
            let (lo, hi) = row.ci?;
            let beyond = if g.change >= 0.0 {
                lo > g.change
            } else {
                hi < g.change
            };
            (row.verdict == Verdict::Worse && beyond).then(|| {
                format!(
                    "{g}: {} changed {} (95% interval {} to {})",
                    g.metric.name(),
                    pct(row.change.unwrap_or(0.0)),
                    pct(lo),
                    pct(hi)
                )
            })
        })
        .collect()
}

fn pct(f: f64) -> String {
    format!("{:+.1}%", f * 100.0)
}

fn value(m: Metric, v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if m.unit() == "ms" => format!("{v:.3} ms"),
        Some(v) if m.unit().is_empty() => format!("{v:.4}"),
        Some(v) => format!("{v:.1} {}", m.unit()),
    }
}

/// The comparison as Markdown.
pub fn to_markdown(c: &Comparison) -> String {
    let mut out = format!(
        "# Compare\n\nBaseline: {}\nCandidate: {}\n\n",
        c.baseline.join(", "),
        c.candidate.join(", ")
    );
    out.push_str(&match c.basis {
        Basis::Runs => format!(
            "Each side is the mean of its runs; the 95% interval is Student's t over the runs (Welch's). Changes within ±{:.0}% are called no difference.\n\n",
            c.noise * 100.0
        ),
        Basis::Peers => format!(
            "One run on each side: the interval comes from resampling the peers ({RESAMPLES} times), each side the mean of its peers' own figures (the run's merged figures are in each summary). Runs vary more than peers do: compare groups of runs (--baseline A1,A2,A3 --candidate B1,B2,B3) before trusting a difference. Changes within ±{:.0}% are called no difference.\n\n",
            c.noise * 100.0
        ),
    });
    let rows: Vec<Vec<String>> = c
        .rows
        .iter()
        .map(|r| {
            vec![
                r.metric.name().to_owned(),
                value(r.metric, r.baseline),
                value(r.metric, r.candidate),
                r.change.map_or_else(|| "–".into(), pct),
                r.ci.map_or_else(
                    || "–".into(),
                    |(lo, hi)| format!("{} to {}", pct(lo), pct(hi)),
                ),
                r.verdict.as_str().to_owned(),
            ]
        })
        .collect();
    out.push_str(&crate::table::markdown(
        [
            "metric",
            "baseline",
            "candidate",
            "change",
            "95% interval",
            "verdict",
        ],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p50_ms: f64, coverage: f64) -> Summary {
        let mut s: Summary = serde_json::from_value(serde_json::json!({
            "schema": "cmesh.run-summary", "schema_version": 1, "run_id": "r",
            "ok": true, "peers_expected": 3, "peers_reported": 3, "peers_failed": [],
            "coverage": coverage, "pairs_delivered": 6, "pairs_expected": 6,
            "message_latency": {"count": 10, "min_us": 1, "p50_us": (p50_ms * 1000.0) as u64,
                "p90_us": 0, "p99_us": (p50_ms * 2000.0) as u64, "max_us": (p50_ms * 3000.0) as u64, "mean_us": 0.0},
            "totals": {"records_produced": 5, "records_received": 10, "records_duplicate": 0,
                "records_missed": 0, "bytes_sent": 1000, "bytes_received": 1000,
                "delta_sync_bytes": 0, "full_resend_bytes": 0},
            "per_peer": []
        }))
        .unwrap();
        s.per_peer = (0..3)
            .map(|i| crate::summary::PeerRow {
                peer: format!("p{i}"),
                outcome: "ok".into(),
                records_produced: 1,
                records_received: 4,
                distinct_origins: 2,
                p50_us: (p50_ms * 1000.0) as u64 + i * 10,
                p99_us: (p50_ms * 2000.0) as u64,
                max_us: (p50_ms * 3000.0) as u64,
                bytes_sent: 400,
                bytes_received: 400,
            })
            .collect();
        s
    }

    fn named(v: Vec<Summary>) -> Vec<(String, Summary)> {
        v.into_iter()
            .enumerate()
            .map(|(i, s)| (format!("r{i}"), s))
            .collect()
    }

    fn row(c: &Comparison, m: Metric) -> &Row {
        c.rows.iter().find(|r| r.metric == m).unwrap()
    }

    #[test]
    fn a_slower_candidate_is_worse_and_the_same_plan_is_no_difference() {
        let base = named(vec![run(0.40, 1.0), run(0.45, 1.0), run(0.38, 1.0)]);
        let slow = named(vec![run(200.4, 1.0), run(201.0, 1.0), run(200.2, 1.0)]);
        let same = named(vec![run(0.42, 1.0), run(0.39, 1.0), run(0.44, 1.0)]);
        let c = compare(&base, &slow, DEFAULT_NOISE);
        assert_eq!(c.basis, Basis::Runs);
        let p50 = row(&c, Metric::P50);
        assert_eq!(p50.verdict, Verdict::Worse, "{p50:?}");
        assert!(p50.ci.unwrap().0 > 100.0, "{p50:?}");
        // Coverage 1.0 against 1.0 in every run: no change at all.
        assert_eq!(
            row(&c, Metric::Coverage).verdict,
            Verdict::NoSignificantDifference
        );
        let gate: Gate = "p50>+50%".parse().unwrap();
        assert_eq!(failed_gates(&c, &[gate]).len(), 1);
        let c = compare(&base, &same, DEFAULT_NOISE);
        for r in &c.rows {
            assert!(
                matches!(
                    r.verdict,
                    Verdict::NoSignificantDifference | Verdict::NotEnoughData
                ),
                "{r:?}"
            );
        }
        assert!(failed_gates(&c, &[gate]).is_empty());
        let md = crate::table::squash(&to_markdown(&c));
        assert!(md.contains("| p50 |"), "{md}");
    }

    #[test]
    fn one_run_each_resamples_the_peers() {
        let c = compare(
            &named(vec![run(0.4, 1.0)]),
            &named(vec![run(4.0, 0.5)]),
            0.05,
        );
        assert_eq!(c.basis, Basis::Peers);
        assert_eq!(row(&c, Metric::P50).verdict, Verdict::Worse);
        // Coverage per peer is 2 of 2 others on both sides (the runs' own figures differ,
        // the peers' do not); availability has no per-peer figure here.
        let cov = row(&c, Metric::Coverage);
        assert_eq!(
            (cov.change, cov.verdict),
            (Some(0.0), Verdict::NoSignificantDifference)
        );
        assert_eq!(
            row(&c, Metric::Availability).verdict,
            Verdict::NotEnoughData
        );
        assert!(to_markdown(&c).contains("resampling the peers"));
    }

    #[test]
    fn gates_parse_in_the_worse_direction_only() {
        let g: Gate = "p99>+10%".parse().unwrap();
        assert_eq!((g.metric, g.change), (Metric::P99, 0.10));
        assert_eq!(g.to_string(), "p99>+10%");
        let g: Gate = "coverage<-1%".parse().unwrap();
        assert_eq!((g.metric, g.change), (Metric::Coverage, -0.01));
        for bad in [
            "p99",
            "p99>10",
            "p99<-10%",
            "coverage>+1%",
            "latency>+1%",
            "p99>+NaN%",
            "p99>-5%",
            "p99>+1e9%",
        ] {
            assert!(bad.parse::<Gate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bootstrap_is_seeded_and_brackets_the_change() {
        let b = [1.0, 1.1, 0.9, 1.05];
        let c = [2.0, 2.2, 1.8, 2.1];
        let ci = bootstrap(&b, &c, 7).unwrap();
        assert_eq!(ci, bootstrap(&b, &c, 7).unwrap());
        assert!(
            ci.0 > 0.7 && ci.1 < 1.3 && ci.0 < 1.0 && ci.1 > 1.0,
            "{ci:?}"
        );
        assert!(bootstrap(&[1.0], &[2.0], 7).is_none(), "one sample each");
    }

    /// Pairs of groups of the same plan: three runs a side, each run's p50 1 ms with a
    /// 5% spread. A 95% interval should exclude zero for about one pair in twenty.
    #[test]
    fn few_runs_get_a_t_interval_as_wide_as_they_need() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut group = || -> Vec<f64> {
            (0..3)
                .map(|_| {
                    // Box–Muller: a standard normal from two uniforms.
                    let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
                    1.0 + 0.05 * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                })
                .collect()
        };
        let excludes_zero = |(lo, hi): (f64, f64)| lo > 0.0 || hi < 0.0;
        let (trials, mut t_wrong, mut boot_wrong) = (1000, 0, 0);
        for i in 0..trials {
            let (b, c) = (group(), group());
            t_wrong += usize::from(excludes_zero(t_interval(&b, &c).unwrap()));
            if i < 300 {
                boot_wrong += usize::from(excludes_zero(bootstrap(&b, &c, i as u64).unwrap()));
            }
        }
        let t = t_wrong as f64 / trials as f64;
        let boot = boot_wrong as f64 / 300.0;
        assert!((0.02..=0.08).contains(&t), "t interval: {t}");
        assert!(boot > 3.0 * t, "bootstrap {boot} against t {t}");
    }

    #[test]
    fn the_t_interval_brackets_the_change_and_needs_a_spread() {
        let b = [1.0, 1.1, 0.9];
        let c = [2.0, 2.2, 1.8];
        let (lo, hi) = t_interval(&b, &c).unwrap();
        assert!(lo > 0.5 && lo < 1.0 && hi > 1.0 && hi < 1.5, "{lo} {hi}");
        // One run against three: the one borrows the three's spread.
        let (lo1, hi1) = t_interval(&[2.0], &b).unwrap();
        assert!(lo1 < -0.5 && hi1 > -0.5, "{lo1} {hi1}");
        // No spread at all: the interval is the change itself.
        assert_eq!(t_interval(&[2.0, 2.0], &[3.0, 3.0]), Some((0.5, 0.5)));
        assert_eq!(t_interval(&[1.0], &[2.0]), None, "one sample each");
        assert_eq!(
            t_interval(&[0.0, 0.0], &[1.0, 2.0]),
            None,
            "a zero baseline"
        );
        assert_eq!(t_interval(&[], &[1.0, 2.0]), None);
    }
}
