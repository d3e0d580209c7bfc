//! `analysis/junit.xml`: the run as a JUnit XML report, which CI systems (Jenkins, GitLab,
//! GitHub actions that read test reports) show natively. One `<testsuite>` per run, one
//! `<testcase>` per expected peer:
//!
//! - a peer that failed, was lost (checkpoint only), was unreachable at extract, left an
//!   invalid report, or had not caught up at the settle timeout is a `<failure>` whose
//!   message says why;
//! - a peer killed on purpose is `<skipped>`;
//! - every other peer passed.
//!
//! The suite's `<properties>` carry the run's figures (coverage, p50, p99, the
//! measurement-quality verdict). The structure is the one Jenkins' JUnit schema
//! describes; `analysis/tests/junit.xsd` states it, and a test validates against it.

use super::{RenderError, Renderer};
use crate::Analysis;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The JUnit report.
pub struct Junit;

/// What became of one peer, for JUnit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Case {
    Passed,
    Failed { kind: &'static str, reason: String },
    Skipped { reason: String },
}

/// Each expected peer's case, in plan order.
pub fn cases(a: &Analysis) -> Vec<(String, Case)> {
    let s = &a.summary;
    let mut why: BTreeMap<&str, Case> = BTreeMap::new();
    for (list, kind) in [
        (&s.peers_failed, "failed"),
        (&s.peers_unreachable, "unreachable"),
        (&s.peers_invalid, "invalid"),
    ] {
        for f in list {
            why.insert(
                &f.peer,
                Case::Failed {
                    kind,
                    reason: f.reason.clone(),
                },
            );
        }
    }
    for l in &s.peers_lost {
        why.insert(
            &l.peer,
            Case::Failed {
                kind: "lost",
                reason: l.reason.clone(),
            },
        );
    }
    for p in &s.peers_not_caught_up {
        why.entry(p).or_insert(Case::Failed {
            kind: "not-caught-up",
            reason: "did not hold every record when the settle timeout passed".into(),
        });
    }
    for k in &s.peers_killed {
        why.insert(
            &k.peer,
            Case::Skipped {
                reason: k.reason.clone(),
            },
        );
    }
    a.detail
        .peers
        .iter()
        .map(|p| {
            (
                p.clone(),
                why.get(p.as_str()).cloned().unwrap_or(Case::Passed),
            )
        })
        .collect()
}

use super::escape as xml;

impl Renderer for Junit {
    fn file_name(&self) -> &'static str {
        "junit.xml"
    }
    fn render(&self, a: &Analysis) -> Result<Vec<u8>, RenderError> {
        let s = &a.summary;
        let cases = cases(a);
        let failures = cases
            .iter()
            .filter(|(_, c)| matches!(c, Case::Failed { .. }))
            .count();
        let skipped = cases
            .iter()
            .filter(|(_, c)| matches!(c, Case::Skipped { .. }))
            .count();
        let suite = xml(&format!("cmesh run {}", s.run_id));
        let class = xml(&format!("cmesh.{}", s.run_id));
        let mut x = String::with_capacity(256 + cases.len() * 160);
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"{suite}\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            n = cases.len()
        );
        let _ = writeln!(
            x,
            "  <testsuite name=\"{suite}\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            n = cases.len()
        );
        x.push_str("    <properties>\n");
        let l = &s.message_latency;
        for (k, v) in [
            ("coverage", format!("{:.4}", s.coverage)),
            ("p50_us", l.p50_us.to_string()),
            ("p99_us", l.p99_us.to_string()),
            ("max_us", l.max_us.to_string()),
            (
                "measurement_quality",
                s.measurement_quality.verdict.as_str().to_owned(),
            ),
        ] {
            let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", xml(&v));
        }
        x.push_str("    </properties>\n");
        for (peer, case) in &cases {
            let name = xml(peer);
            match case {
                Case::Passed => {
                    let _ = writeln!(x, "    <testcase name=\"{name}\" classname=\"{class}\"/>");
                }
                Case::Failed { kind, reason } => {
                    let _ = writeln!(
                        x,
                        "    <testcase name=\"{name}\" classname=\"{class}\">\n      <failure type=\"{kind}\" message=\"{m}\">{m}</failure>\n    </testcase>",
                        m = xml(reason)
                    );
                }
                Case::Skipped { reason } => {
                    let _ = writeln!(
                        x,
                        "    <testcase name=\"{name}\" classname=\"{class}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(reason)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        Ok(x.into_bytes())
    }
}
