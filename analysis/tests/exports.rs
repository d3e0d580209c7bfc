//! The exports read by other tools, checked by those tools: junit.xml against the JUnit
//! schema CI systems read (xmllint, from Debian's libxml2-utils, which
//! scripts/prerequisites installs), peers.csv and windows.csv through Python's csv
//! module.

use cmesh_analysis::impairment::WindowRow;
use cmesh_analysis::render::{csv, junit, Renderer};
use cmesh_analysis::summary::{merge, FailedPeer};
use cmesh_analysis::{Analysis, Interventions};
use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::{LatencyReport, OriginStats, PeerReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn report(name: &str, hears: &[&str]) -> PeerReport {
    let mut r = PeerReport::new(name, "mesh", 0);
    let mut h = LatencyHistogram::new();
    h.record(400);
    r.message_latency = LatencyReport {
        summary: h.summary(),
        negative_samples: 0,
        histogram: h.encode(),
        negative_histogram: None,
    };
    for o in hears {
        r.origins.insert(
            o.to_string(),
            OriginStats {
                received: 1,
                produced: Some(1),
            },
        );
    }
    r.records_produced = 1;
    r.caught_up = true;
    r
}

/// Seven peers, one of each fate: two passed (with a comma and a quote in their names),
/// failed, lost, killed on purpose, not caught up, invalid (with characters XML cannot
/// carry in its reason).
fn run() -> Analysis {
    let peers: Vec<String> = ["a,1", "b\"q", "c", "d", "e", "f", "g"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut reports = BTreeMap::new();
    reports.insert("a,1".to_string(), report("a,1", &["b\"q"]));
    reports.insert("b\"q".to_string(), report("b\"q", &["a,1"]));
    let mut d = report("d", &[]);
    d.partial = true;
    reports.insert("d".into(), d);
    let mut f = report("f", &[]);
    f.caught_up = false;
    reports.insert("f".into(), f);
    let missing = BTreeMap::from([("c".to_string(), "exit 1 <&> \"boom\"".to_string())]);
    let done = Interventions {
        killed: BTreeMap::from([("e".to_string(), "chaos#1".to_string())]),
        ..Interventions::default()
    };
    let (mut summary, detail) = merge("r-1", &peers, &reports, &missing, None, &done);
    summary.peers_failed.retain(|p| p.peer != "g");
    summary.peers_invalid.push(FailedPeer {
        peer: "g".into(),
        reason: "invalid report: \u{1}\u{7}bad bytes".into(),
    });
    summary.impairment.windows = (0..3)
        .map(|i| WindowRow {
            start_ms: i * 1000,
            count: 2,
            p50_us: 400,
            p99_us: 900,
            max_us: 900,
            uncertainty_us: (i == 1).then_some(200),
            received: 2,
            rx_bytes: 10,
            tx_bytes: 12,
        })
        .collect();
    Analysis { summary, detail }
}

fn write(dir: &Path, r: &dyn Renderer, a: &Analysis) -> PathBuf {
    let path = dir.join(r.file_name());
    std::fs::write(&path, r.render(a).unwrap()).unwrap();
    path
}

#[test]
fn junit_xml_validates_against_the_schema_ci_tools_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = run();
    let path = write(dir.path(), &junit::Junit, &a);
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/junit.xsd");
    let validate = |path: &Path| {
        Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&xsd)
            .arg(path)
            .output()
            .expect("xmllint runs (scripts/prerequisites installs libxml2-utils)")
    };
    let out = validate(&path);
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(
        out.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The schema has teeth: a case without a name is refused.
    let broken = dir.path().join("broken.xml");
    std::fs::write(
        &broken,
        xml.replacen("<testcase name=", "<testcase nam=", 1),
    )
    .unwrap();
    assert!(!validate(&broken).status.success());
    // One case per peer; the fates as JUnit says them.
    assert_eq!(xml.matches("<testcase ").count(), 7, "{xml}");
    assert!(
        xml.contains("tests=\"7\" failures=\"4\" errors=\"0\" skipped=\"1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure type=\"failed\" message=\"exit 1 &lt;&amp;&gt; &quot;boom&quot;\""),
        "{xml}"
    );
    assert!(xml.contains("<failure type=\"lost\""));
    assert!(xml.contains("<failure type=\"not-caught-up\""));
    assert!(xml.contains("<failure type=\"invalid\" message=\"invalid report: bad bytes\""));
    assert!(xml.contains("<skipped message=\"killed on purpose (chaos#1)\"/>"));
    assert!(xml.contains("<testcase name=\"a,1\" classname=\"cmesh.r-1\"/>"));
    assert!(xml.contains("<property name=\"coverage\""));
}

/// Reads `path` with Python's csv module: the rows as dicts.
fn python_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\nwith open(sys.argv[1], newline='') as f:\n    print(json.dumps(list(csv.DictReader(f))))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn peers_and_windows_csv_load_with_pythons_csv_module() {
    let dir = tempfile::tempdir().unwrap();
    let a = run();
    let peers = python_csv(&write(dir.path(), &csv::Peers, &a));
    assert_eq!(peers.len(), a.summary.per_peer.len());
    let names: Vec<&str> = peers.iter().map(|r| r["peer"].as_str()).collect();
    assert_eq!(names, ["a,1", "b\"q", "d", "f"], "{peers:?}");
    assert_eq!(
        peers[0]
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .len(),
        csv::PEER_FIELDS.len()
    );
    for field in csv::PEER_FIELDS {
        assert!(peers[0].contains_key(field), "{field}");
    }
    assert_eq!(peers[0]["p50_us"], a.summary.per_peer[0].p50_us.to_string());
    assert_eq!(peers[2]["outcome"], "lost");

    let windows = python_csv(&write(dir.path(), &csv::Windows, &a));
    assert_eq!(windows.len(), 3);
    assert_eq!(windows[1]["start_ms"], "1000");
    assert_eq!(windows[1]["uncertainty_us"], "200");
    assert_eq!(windows[0]["uncertainty_us"], "", "absent is an empty cell");
    assert_eq!(windows[2]["tx_bytes"], "12");

    // A run without windows still names its columns.
    let mut empty = run();
    empty.summary.impairment.windows.clear();
    let text = String::from_utf8(csv::Windows.render(&empty).unwrap()).unwrap();
    assert_eq!(text.trim(), csv::WINDOW_FIELDS.join(","));
}
