//! The measurement-quality verdict on this machine's Docker Engine: a demo run is
//! `clean`, and the same plan under a CPU quota its peers cannot live within is
//! `saturated`, with the reason. What the peers need is measured in the test itself, so
//! the quota is far below it on a fast machine as on a slow one, in a debug build as in
//! a release one.
//!
//! They need the Docker Engine and fail without one; they never skip. The two runs take
//! turns (a lock): one run's spawn must not load the host while the other measures.
// suite: alone ~150s

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

/// Docker's smallest CPU quota, in CPUs.
const SMALLEST_QUOTA: f64 = 0.01;

/// How far the peers' need must be above their quota for the test to mean anything on
/// any machine.
const NEED_OVER_QUOTA: f64 = 4.0;

/// The write interval (`A..B` ms, mean `(A + B) / 2`) that makes each peer need
/// [`NEED_OVER_QUOTA`] times `quota`, when `need` CPUs were measured at a mean interval
/// of `measured_ms`: the work of a peer grows with the records it writes and relays.
fn interval_for(need: f64, measured_ms: f64, quota: f64) -> String {
    let mean = (measured_ms * need / (NEED_OVER_QUOTA * quota)).clamp(2.0, measured_ms);
    let (low, high) = ((mean * 0.5).round().max(1.0), (mean * 1.5).round().max(2.0));
    format!("{low}..{high}")
}

#[test]
fn the_interval_for_a_need_scales_with_what_was_measured() {
    // Measured 0.08 CPUs at 10 ms, twice what the quota 0.01 needs: the writes never come
    // slower than measured.
    assert_eq!(interval_for(0.08, 10.0, 0.01), "5..15");
    // Measured 0.02 at 10 ms: 0.04 needs twice the rate.
    assert_eq!(interval_for(0.02, 10.0, 0.01), "3..8");
    // A machine so fast it needs almost nothing: the floor.
    assert_eq!(interval_for(0.0001, 10.0, 0.01), "1..3");
}

#[test]
fn peers_that_want_more_cpu_than_their_quota_saturate_the_run() {
    // The need is measured here, on this machine and build: the same plan without a
    // quota, writing every 5-15 ms. The quota is then set far below it (a quarter, at
    // least Docker's smallest), and where even the smallest quota is not far enough
    // below, the writes come faster. So the condition holds on any machine.
    let measured_ms = 10.0;
    let free = demo_run("need", &["--write-interval", "5..15"]);
    let host = &free["measurement_quality"]["hosts"][0];
    let peers = host["peers"].as_u64().unwrap() as f64;
    let need = host["peer_cpu_ms"].as_u64().unwrap() as f64 / (15_000.0 * peers);
    let quota = ((need / NEED_OVER_QUOTA * 100.0).floor() / 100.0).max(SMALLEST_QUOTA);
    let interval = interval_for(need, measured_ms, quota);
    let quota_flag = format!("{quota:.2}");
    let s = demo_run(
        "saturated",
        &["--peer-cpus", &quota_flag, "--write-interval", &interval],
    );
    let q = &s["measurement_quality"];
    let setup = format!(
        "each peer needed {need:.4} CPUs at 5..15 ms; quota {quota_flag}, writes every {interval} ms"
    );
    assert_eq!(q["verdict"], "saturated", "{setup}\n{q:#}");
    let host = &q["hosts"][0];
    assert_eq!(host["peer_quota_cpus"], quota, "{setup}\n{q:#}");
    assert!(
        host["quota_used"].as_f64().unwrap() >= 0.9,
        "{setup}\n{q:#}"
    );
    assert!(host["throttled_ms"].as_u64().unwrap() > 0, "{setup}\n{q:#}");
    let reasons = q["reasons"].to_string();
    assert!(reasons.contains("of their CPU quota"), "{setup}\n{q:#}");
    let advice = q["advice"].to_string();
    assert!(advice.contains("--peer-cpus"), "{setup}\n{q:#}");
}
