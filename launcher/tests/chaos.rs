//! `launcher chaos` on a running run, on this machine's Docker Engine: shaping and a
//! partition carried out by the peers, a kill and a pause through the Docker API, all in
//! the coordinator's timeline and in `analysis/summary.md`. Needs the Docker Engine and
//! fails without one; never skips. It runs alone: beside other Docker tests on 2 CPUs a
//! peer of the first run has exited 1 (twice in three suites, 2026-12-07), which is to be
//! understood, not hidden by a retry.
// suite: alone ~90s

use cmesh_testkit::{
    expected_shaping_path, images_built, launcher, read_json, run_plan_json, text, unpack,
    wait_until,
};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn status(runs: &Path, id: &str) -> Option<Value> {
    let out = launcher(runs, &["status", "--run", id, "--json"]);
    serde_json::from_slice(&out.stdout).ok()
}

/// Runs `launcher chaos ACTION ARGS… --run ID --json`; returns the exit code and record.
fn chaos(runs: &Path, id: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["chaos"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--run", id, "--json"]);
    let out = launcher(runs, &all);
    let record = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), record)
}

#[test]
fn chaos_actions_land_in_the_timeline_and_the_summary() {
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = scratch.path().join("plan.toml");
    std::fs::write(
        &plan,
        "peers = 10\nduration = \"30s\"\ngraph = \"ring\"\nwrite_interval = \"200..500\"\n",
    )
    .unwrap();
    let id = format!("t{}-chaos", std::process::id() % 100_000);
    let out = launcher(
        &runs,
        &["spawn", "--config", plan.to_str().unwrap(), "--run-id", &id],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Before the peers write, the run is not running yet for chaos: wait for that.
    wait_until(
        "every peer running",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || {
            let s = status(&runs, &id)?;
            let peers = s["coordinator"]["peers"].as_array()?;
            (peers.len() == 10 && peers.iter().all(|p| p["state"] == "running")).then_some(())
        },
    )
    .unwrap();

    let (code, partition) = chaos(
        &runs,
        &id,
        &["partition", "--groups", "a:1-5", "b:6-10", "--for", "6s"],
    );
    assert_eq!(code, Some(0), "{partition}");
    assert_eq!(partition["action"]["id"], "chaos#1");
    assert_eq!(partition["by"], "peers");
    let (code, delay) = chaos(
        &runs,
        &id,
        &[
            "delay",
            "--peers",
            "peer-000[1-3]",
            "--ms",
            "100",
            "--for",
            "5s",
        ],
    );
    assert_eq!(code, Some(0), "{delay}");
    assert_eq!(delay["action"]["peers"].as_array().unwrap().len(), 3);
    let (code, towards) = chaos(
        &runs,
        &id,
        &[
            "loss",
            "--peers",
            "4",
            "--to",
            "5-6",
            "--percent",
            "20",
            "--for",
            "4s",
        ],
    );
    assert_eq!(code, Some(0), "{towards}");
    assert_eq!(
        towards["action"]["fault"]["to"]["ranges"][0],
        serde_json::json!([5, 6])
    );
    let (code, kill) = chaos(&runs, &id, &["kill", "--peers", "10"]);
    assert_eq!(code, Some(0), "{kill}");
    assert_eq!(kill["by"], "docker");
    assert_eq!(kill["action"]["id"], "chaos#4");
    let (code, pause) = chaos(&runs, &id, &["pause", "--peers", "9", "--for", "2s"]);
    assert_eq!(pause["action"]["id"], "chaos#5");
    assert_eq!(code, Some(0), "{pause}");
    assert!(pause["until_unix_ms"].as_u64() > pause["action"]["at_unix_ms"].as_u64());
    // A peer container holds the peers' token and the admin token's digest, not the
    // admin token: with either, its own POST /v1/chaos (the kill the launcher sent, again)
    // gets 401 and changes nothing.
    let peer = format!("{id}-peer-0001");
    let body = serde_json::json!({ "fault": kill["action"]["fault"] }).to_string();
    for file in ["/cmesh/token", "/cmesh/admin.sha256"] {
        let answer = post_from_container(&peer, &format!("{id}-coordinator"), file, &body);
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{peer} posted chaos with {file}: {answer}"
        );
        if file == "/cmesh/token" {
            assert!(answer.contains("needs the admin token"), "{answer}");
        }
    }
    let listing = std::process::Command::new("docker")
        .args(["exec", &peer, "ls", "/cmesh"])
        .output()
        .unwrap();
    assert_eq!(
        text(&listing.stdout).split_whitespace().collect::<Vec<_>>(),
        ["admin.sha256", "token"]
    );
    // Bad actions change nothing: exit 2, no chaos#6.
    for bad in [
        vec!["delay", "--peers", "1"],
        vec!["partition", "--groups", "a:0-4", "b:5-9"],
        vec!["kill", "--peers", "11"],
    ] {
        let (code, _) = chaos(&runs, &id, &bad);
        assert_eq!(code, Some(2), "{bad:?}");
    }

    let out = launcher(&runs, &["wait", "--run", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a peer killed on purpose is not a failure: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("1 killed on purpose"));
    let out = launcher(&runs, &["extract", "--run", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run_dir = runs.join(&id);
    let out = launcher(&runs, &["analyze", run_dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "killed on purpose is not a failure: {}",
        text(&out.stdout)
    );
    let _ = launcher(&runs, &["down", "--run", &id, "--force"]);

    let summary = read_json(&run_dir.join("analysis/summary.json"));
    let faults = summary["faults"].as_array().expect("faults in the summary");
    let row = |id: &str| {
        faults
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {faults:?}"))
    };
    assert_eq!(row("chaos#1")["action"], "partition");
    assert_eq!(row("chaos#1")["peers"], 9, "the killed peer did not report");
    assert_eq!(row("chaos#2")["action"], "delay");
    assert_eq!(row("chaos#2")["peers"], 3);
    assert_eq!(row("chaos#2")["paths"][0], expected_shaping_path("nfqueue"));
    assert_eq!(row("chaos#3")["action"], "loss");
    assert_eq!(
        row("chaos#3")["peers"],
        1,
        "only peer 4 shapes, towards 5 and 6"
    );
    assert_eq!(
        row("chaos#3")["paths"][0],
        expected_shaping_path("iptables")
    );
    assert_eq!(row("chaos#3")["errors"], 0);
    assert_eq!(row("chaos#4")["action"], "kill");
    assert_eq!(row("chaos#5")["action"], "pause");
    assert!(row("chaos#5")["lifted_at_ms"].as_i64() > row("chaos#5")["applied_at_ms"].as_i64());
    assert_eq!(faults.len(), 5);
    assert_eq!(summary["resync"]["peers"], 9);
    assert_eq!(summary["peers_failed"], serde_json::json!([]));
    let killed = &summary["peers_killed"][0];
    assert!(killed["peer"].as_str().unwrap().ends_with("peer-0010"));
    assert_eq!(killed["reason"], "killed on purpose (chaos#4)");
    let md = std::fs::read_to_string(run_dir.join("analysis/summary.md")).unwrap();
    for part in [
        "## Faults",
        "| chaos#1 | partition |",
        "| chaos#4 | kill | 1 |",
    ] {
        assert!(
            cmesh_launcher::table::squash(&md).contains(part),
            "{part} in\n{md}"
        );
    }

    // The coordinator's timeline has every action, and the kill's effect on the peer.
    let coordinator = std::fs::read_dir(run_dir.join("extract/local"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-coordinator"))
        .unwrap();
    let unpacked = unpack(&coordinator.join("report.tar.gz"));
    let timeline = walk(unpacked.path(), "timeline.jsonl").expect("timeline.jsonl");
    let timeline = std::fs::read_to_string(timeline).unwrap();
    for n in 1..=5 {
        assert!(
            timeline.contains(&format!("\"detail\":\"chaos#{n} ")),
            "chaos#{n} in\n{timeline}"
        );
    }
    assert!(timeline.contains("killed by launcher chaos (chaos#4)"));

    // The same run again, `--like` it: the five actions come as the plan's faults, at the
    // same offsets from the common start (±1 s), on the same peers.
    let like = format!("{id}-like");
    let out = launcher(&runs, &["run", "--like", &id, "--run-id", &like, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again: Value = serde_json::from_slice(&out.stdout).expect("the summary");
    let replayed = again["faults"].as_array().expect("faults");
    assert_eq!(replayed.len(), 5, "{replayed:?}");
    for n in 1..=5 {
        let (was, now) = (
            row(&format!("chaos#{n}")),
            replayed
                .iter()
                .find(|f| f["id"] == format!("plan#{n}"))
                .unwrap_or_else(|| panic!("no plan#{n} in {replayed:?}")),
        );
        assert_eq!(was["action"], now["action"]);
        assert_eq!(was["peers"], now["peers"], "plan#{n} on as many peers");
        let (a, b) = (
            was["applied_at_ms"].as_i64().unwrap(),
            now["applied_at_ms"].as_i64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1_000,
            "chaos#{n} at {a} ms, replayed at {b} ms"
        );
    }
    assert_eq!(
        again["peers_killed"][0]["reason"],
        "killed on purpose (plan#4)"
    );
}

/// Posts `body` to the coordinator's `/v1/chaos` from inside `container`, with the token
/// in the container's `token_file`, through bash's /dev/tcp (the image has no HTTP
/// client); returns the answer's head.
fn post_from_container(container: &str, coordinator: &str, token_file: &str, body: &str) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/{coordinator}/7400 && \
         printf 'POST /v1/chaos HTTP/1.1\\r\\nHost: c\\r\\nx-cmesh-token: %s\\r\\n\
         Content-Type: application/json\\r\\nContent-Length: %s\\r\\nConnection: close\\r\\n\\r\\n%s' \
         \"$(head -1 {token_file})\" \"${{#1}}\" \"$1\" >&3 && cat <&3"
    );
    let out = std::process::Command::new("docker")
        .args(["exec", container, "bash", "-c", &script, "post", body])
        .output()
        .unwrap();
    text(&out.stdout)
}

fn walk(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(found) = walk(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn a_plans_kills_and_pauses_are_carried_out_at_their_times() {
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = cmesh_testkit::workspace_root().join("configs/churn.toml");
    let id = format!("t{}-churn", std::process::id() % 100_000);
    let (summary, stderr) = run_plan_json(&runs, &plan, &id);
    assert!(stderr.contains("2 killed on purpose"), "{stderr}");
    assert_eq!(summary["peers_killed"].as_array().unwrap().len(), 2);
    // 10 final reports, and the checkpoints the 2 killed peers left: their data counts.
    assert_eq!(summary["peers_reported"], 12);
    let killed_rows = summary["per_peer"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "killed")
        .count();
    assert_eq!(killed_rows, 2, "{summary}");
    let faults = summary["faults"].as_array().unwrap();
    let (kill, restart, pause) = (&faults[0], &faults[1], &faults[2]);
    assert_eq!(
        (kill["id"].as_str(), kill["action"].as_str()),
        (Some("plan#1"), Some("kill"))
    );
    assert_eq!(kill["peers"], 2, "10% of 12");
    let at = kill["applied_at_ms"].as_i64().unwrap();
    assert!(
        (9_000..13_000).contains(&at),
        "the kill was due at 10 s: {at}"
    );
    assert_eq!(
        (restart["id"].as_str(), restart["action"].as_str()),
        (Some("plan#2"), Some("restart"))
    );
    assert_eq!(restart["peers"], 1);
    // The restarted peer rejoined with an empty store, went on writing, and reported
    // how long it took to hold again everything written before.
    let resync = &summary["resync"];
    assert_eq!(
        (resync["heals"].as_u64(), resync["unfinished"].as_u64()),
        (Some(1), Some(0)),
        "{resync}"
    );
    let p8 = summary["per_peer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"].as_str().unwrap().ends_with("peer-0008"))
        .expect("the restarted peer reported");
    assert_eq!(p8["outcome"], "ok");
    assert_eq!(pause["action"], "pause");
    let held = pause["lifted_at_ms"].as_i64().unwrap() - pause["applied_at_ms"].as_i64().unwrap();
    assert!((4_000..8_000).contains(&held), "paused for 5 s: {held}");
    // The paused peers' probes were late: availability shows it.
    let ratio = summary["availability"]["ratio"].as_f64().unwrap();
    assert!(ratio < 1.0, "availability {ratio}");
}
