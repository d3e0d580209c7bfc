//! `launcher analyze` on reports that are corrupt or hostile: each bad one marks its peer
//! `invalid` with the reason, and the rest of the run is analysed. No engine needed: the
//! run directory is written here as extract leaves it.

use cmesh_common::histogram::LatencyHistogram;
use cmesh_common::report::{PeerReport, TimeSeries, WindowLatency};
use cmesh_testkit::{launcher, text};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

const START: u64 = 1_764_000_000_000;

fn histogram() -> String {
    let mut h = LatencyHistogram::new();
    h.record(400);
    h.record(900);
    h.encode()
}

fn good(name: &str) -> PeerReport {
    let mut r = PeerReport::new(name, "mesh", START);
    r.message_latency.histogram = histogram();
    r.records_received = 2;
    r.time_series = Some(TimeSeries {
        start_unix_ms: START,
        window_ms: 1_000,
        latency: vec![WindowLatency {
            window: 1,
            count: 2,
            p50_us: 400,
            p99_us: 900,
            max_us: 900,
            histogram: histogram(),
            negative_histogram: None,
        }],
        received: vec![0, 2],
        interfaces: Default::default(),
        latency_by_origin_host: Default::default(),
        scheduling_lag: Default::default(),
        cpu: None,
    });
    r
}

/// `report/report.json` holding `bytes`, gzipped as extract writes it.
fn write_archive(dir: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join("report.tar.gz")).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "report/report.json", bytes)
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

/// An archive whose `report/report.json` says it is 1 GiB (its data is cut short: the
/// size alone must refuse it, before anything is read).
fn write_huge_archive(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join("report.tar.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut header = tar::Header::new_gnu();
    header.set_path("report/report.json").unwrap();
    header.set_size(1 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    gz.write_all(header.as_bytes()).unwrap();
    gz.write_all(&[b'{'; 4096]).unwrap();
    gz.finish().unwrap();
}

#[test]
fn every_bad_report_is_invalid_and_the_rest_is_analysed() {
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("bad");
    let names = [
        "ok-1",
        "ok-2",
        "zero-window",
        "huge-window",
        "far-start",
        "bad-histogram",
        "wrong-schema",
        "huge-file",
        "not-json",
    ];
    let peers: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"name": n, "host": "local", "index": i + 1}))
        .collect();
    let manifest = json!({
        "schema": "cmesh.run-manifest", "schema_version": 1, "run_id": "bad",
        "created_at": "2026-11-29T20:00:00Z",
        "hosts": [{"name": "local", "docker_socket": "/var/run/docker.sock", "role": "manager", "capacity": 1000}],
        "network": {"name": "cmesh-bad", "id": "x", "subnet": "10.100.0.0/24"},
        "images": {"base": {"tag": "b:1", "id": "b"}, "peer": {"tag": "p:1", "id": "p"}, "coordinator": {"tag": "c:1", "id": "c"}},
        "spec": {"peers": names.len(), "duration_ms": 30_000},
        "coordinator": {"name": "bad-coordinator", "host": "local", "index": 0},
        "peers": peers,
    });
    std::fs::create_dir_all(run.join("extract")).unwrap();
    std::fs::write(run.join("manifest.json"), manifest.to_string()).unwrap();
    let mut containers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let dir = run.join("extract/local").join(name);
        let mut r = good(name);
        let series = |r: &mut PeerReport| r.time_series.as_mut().unwrap().clone();
        match *name {
            "zero-window" => {
                let mut s = series(&mut r);
                s.window_ms = 0;
                r.time_series = Some(s);
            }
            "huge-window" => {
                let mut s = series(&mut r);
                s.latency[0].window = u32::MAX;
                s.received = vec![0; 5];
                r.time_series = Some(s);
            }
            "far-start" => {
                let mut s = series(&mut r);
                s.start_unix_ms = u64::MAX / 2;
                r.time_series = Some(s);
            }
            "bad-histogram" => r.message_latency.histogram = "SGVsbG8=".into(),
            _ => {}
        }
        let mut bytes = serde_json::to_vec(&r).unwrap();
        match *name {
            "wrong-schema" => {
                bytes = serde_json::to_vec(&json!({"schema": "someone.else", "schema_version": 1}))
                    .unwrap()
            }
            "not-json" => bytes = b"\x00\x01 not a report".to_vec(),
            _ => {}
        }
        if *name == "huge-file" {
            write_huge_archive(&dir);
        } else {
            write_archive(&dir, &bytes);
        }
        containers.push(json!({
            "name": name, "host": "local", "role": "peer", "index": i + 1,
            "state": "exited", "exit_code": 0, "oom_killed": false,
            "report": "complete", "reason": null, "files": {}
        }));
    }
    let index = json!({
        "schema": "cmesh.extract-index", "schema_version": 1, "run_id": "bad",
        "extracted_at": "2026-11-29T20:01:00Z", "containers": containers, "errors": {}
    });
    std::fs::write(run.join("extract/extract.json"), index.to_string()).unwrap();

    let out = launcher(runs.path(), &["analyze", run.to_str().unwrap(), "--json"]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not ok, and no panic:\n{stderr}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["peers_reported"], 2, "{summary}");
    assert_eq!(
        summary["message_latency"]["count"], 4,
        "the two good reports only"
    );
    let invalid: Vec<(String, String)> = summary["peers_invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["peer"].as_str().unwrap().to_owned(),
                p["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason = |peer: &str| {
        invalid
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{peer} is not invalid: {summary}"))
    };
    assert_eq!(invalid.len(), 7, "{summary}");
    assert!(reason("zero-window").contains("windows of 0 ms"));
    assert!(reason("huge-window").contains("past the run's"));
    assert!(reason("far-start").contains("away from"));
    assert!(reason("bad-histogram").contains("message_latency"));
    assert!(reason("wrong-schema").contains("someone.else"));
    assert!(reason("huge-file").contains("1073741824 bytes"));
    assert!(reason("not-json").contains("not JSON"));
    assert!(
        summary["peers_failed"].as_array().unwrap().is_empty(),
        "invalid is not failed: {summary}"
    );
    let md = std::fs::read_to_string(run.join("analysis/summary.md")).unwrap();
    assert!(md.contains("## Invalid reports"), "{md}");

    // `launcher report` writes report.html again, from the same reports, and says where.
    let html_path = run.join("analysis/report.html");
    std::fs::remove_file(&html_path).unwrap();
    let out = launcher(runs.path(), &["report", "--run", "bad"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), html_path.display().to_string());
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("2 reported") && html.contains("7 invalid"),
        "{html:.3000}"
    );
    assert!(html.contains("data-plot=\"latency-cdf\""));
    // A run not yet extracted: bad input, and nothing written.
    let bare = runs.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(run.join("manifest.json"), bare.join("manifest.json")).unwrap();
    let out = launcher(runs.path(), &["report", "--run", "bare"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("launcher extract --run bare"));
    assert!(!bare.join("analysis").exists());
}
