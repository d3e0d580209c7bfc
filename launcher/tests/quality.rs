//! The measurement-quality verdict on this machine's Docker Engine: a demo run is
//! `clean`, and the same plan under a CPU quota its peers cannot live within is
//! `saturated`, with the reason.
//!
//! They need the Docker Engine and fail without one; they never skip. The two runs take
//! turns (a lock): one run's spawn must not load the host while the other measures.

use cmesh_testkit::{images_built, launcher, text};
use serde_json::Value;
use std::sync::Mutex;

static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `launcher run --peers 10 --duration 15s ARGS --json`: exit 0, the summary.
fn demo_run(tag: &str, args: &[&str]) -> Value {
    images_built();
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runs = tempfile::tempdir().unwrap();
    let id = format!("t{}-{tag}", std::process::id() % 100_000);
    let mut all = vec![
        "run",
        "--peers",
        "10",
        "--duration",
        "15s",
        "--json",
        "--run-id",
        &id,
    ];
    all.extend_from_slice(args);
    let out = launcher(runs.path(), &all);
    let stderr = text(&out.stderr);
    if out.status.code() != Some(0) {
        let _ = launcher(runs.path(), &["down", "--force", "--run", &id]);
    }
    assert_eq!(out.status.code(), Some(0), "launcher run failed:\n{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary.json on stdout");
    assert_eq!(summary["coverage"], 1.0, "{stderr}");
    let md = std::fs::read_to_string(runs.path().join(&id).join("analysis/summary.md")).unwrap();
    let verdict = summary["measurement_quality"]["verdict"].as_str().unwrap();
    // summary.md opens with the verdict.
    let first = md.lines().nth(2).unwrap_or("");
    assert!(
        first.starts_with(&format!("**Measurement quality: {verdict}.**")),
        "{md}"
    );
    summary
}

#[test]
fn the_demo_run_is_clean() {
    let s = demo_run("clean", &[]);
    let q = &s["measurement_quality"];
    assert_eq!(q["verdict"], "clean", "{q:#}");
    assert!(
        q.get("reasons").is_none() && q.get("advice").is_none(),
        "{q:#}"
    );
    // The evidence was there to look at: lag samples, the host's CPU, the coordinator.
    assert!(
        q["scheduling_lag"]["count"].as_u64().unwrap() > 100,
        "{q:#}"
    );
    let host = &q["hosts"][0];
    assert_eq!(host["peers"], 10, "{q:#}");
    assert!(host["cpus"].as_u64().unwrap() >= 1, "{q:#}");
    assert!(host["cpu_windows"].as_u64().unwrap() >= 10, "{q:#}");
    assert!(host["peer_cpu_ms"].as_u64().unwrap() > 0, "{q:#}");
    assert_eq!(q["heartbeats"]["known"], true, "{q:#}");
    assert_eq!(q["heartbeats"]["starved"], 0, "{q:#}");
    assert_eq!(q["writes"]["late"], 0, "{q:#}");
}

#[test]
fn peers_that_want_more_cpu_than_their_quota_saturate_the_run() {
    // 0.02 CPUs each, and writes every 20-50 ms (the demo's are 200-500 ms): each peer
    // needs more than 2% of a CPU, on any machine.
    let s = demo_run(
        "saturated",
        &["--peer-cpus", "0.02", "--write-interval", "20..50"],
    );
    let q = &s["measurement_quality"];
    assert_eq!(q["verdict"], "saturated", "{q:#}");
    let host = &q["hosts"][0];
    assert_eq!(host["peer_quota_cpus"], 0.02, "{q:#}");
    assert!(host["quota_used"].as_f64().unwrap() >= 0.9, "{q:#}");
    assert!(host["throttled_ms"].as_u64().unwrap() > 0, "{q:#}");
    let reasons = q["reasons"].to_string();
    assert!(reasons.contains("of their CPU quota"), "{q:#}");
    let advice = q["advice"].to_string();
    assert!(advice.contains("--peer-cpus"), "{q:#}");
}
