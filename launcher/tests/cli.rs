//! The launcher's command-line conventions, without an engine: `ls`, `completions`,
//! `man`, value lists in `--help`, `-q`, and `DOCKER_HOST` refused when it cannot be
//! honoured.

use cmesh_testkit::{binary, launcher, text};
use serde_json::Value;
use std::process::Command;

/// A run directory as spawn and analyze leave it: a manifest, and optionally a summary.
fn fake_run(runs: &std::path::Path, id: &str, summary: Option<&str>) {
    let dir = runs.join(id);
    std::fs::create_dir_all(dir.join("analysis")).unwrap();
    let manifest = serde_json::json!({
        "schema": "cmesh.run-manifest",
        "schema_version": 1,
        "run_id": id,
        "created_at": "2026-11-29T20:00:00Z",
        "hosts": [{"name": "local", "docker_socket": "/var/run/docker.sock", "role": "manager", "capacity": 1000}],
        "network": {"name": format!("cmesh-{id}"), "id": "x", "subnet": "10.100.0.0/24"},
        "images": {
            "base": {"tag": "b:1", "id": "sha256:b"},
            "peer": {"tag": "p:1", "id": "sha256:p"},
            "coordinator": {"tag": "c:1", "id": "sha256:c"}
        },
        "spec": {"peers": 7},
        "coordinator": {"name": format!("{id}-coordinator"), "host": "local", "index": 0},
        "peers": []
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    if let Some(s) = summary {
        std::fs::write(dir.join("analysis/summary.json"), s).unwrap();
    }
}

#[test]
fn ls_lists_runs_with_their_stage_and_numbers() {
    let runs = tempfile::tempdir().unwrap();
    let empty = launcher(runs.path(), &["ls"]);
    assert_eq!(empty.status.code(), Some(0), "{}", text(&empty.stderr));
    assert!(
        text(&empty.stdout).contains("no runs yet"),
        "{}",
        text(&empty.stdout)
    );

    fake_run(runs.path(), "r1", None);
    let summary = serde_json::json!({
        "schema": "cmesh.run-summary", "schema_version": 1, "run_id": "r2", "ok": true,
        "peers_expected": 7, "peers_reported": 7, "peers_failed": [], "coverage": 1.0,
        "pairs_delivered": 42, "pairs_expected": 42,
        "message_latency": {"count": 10, "min_us": 100, "p50_us": 400, "p90_us": 900,
                            "p99_us": 1500, "max_us": 2000, "mean_us": 450.0},
        "totals": {"records_produced": 6, "records_received": 42, "records_duplicate": 0,
                   "records_missed": 0, "bytes_sent": 1, "bytes_received": 1,
                   "delta_sync_bytes": 0, "full_resend_bytes": 0},
        "per_peer": []
    });
    fake_run(runs.path(), "r2", Some(&summary.to_string()));
    let out = launcher(runs.path(), &["ls", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["run_id"], "r1");
    assert_eq!(rows[0]["stage"], "spawned");
    assert_eq!(rows[0]["peers"], 7);
    assert!(rows[1]["error"].is_null(), "{}", rows[1]);
    assert_eq!(rows[1]["stage"], "analyzed", "{}", rows[1]);
    assert_eq!(rows[1]["p50_ms"], 0.4);
    assert_eq!(rows[1]["ok"], true);
    // A summary that cannot be read is said, not skipped.
    fake_run(runs.path(), "r3", Some("{not json"));
    let rows: Value =
        serde_json::from_slice(&launcher(runs.path(), &["ls", "--json"]).stdout).unwrap();
    assert!(
        rows[2]["error"]
            .as_str()
            .unwrap_or("")
            .contains("summary.json"),
        "{}",
        rows[2]
    );
    let table = text(&launcher(runs.path(), &["ls"]).stdout);
    assert!(table.contains("r1") && table.contains("spawned"), "{table}");
}

#[test]
fn completions_and_the_man_page_are_printed() {
    let runs = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = launcher(runs.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(
            script.contains("launcher") && script.contains("spawn") && script.contains("extract"),
            "{shell}: {script}"
        );
    }
    let bad = launcher(runs.path(), &["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2));
    let man = launcher(runs.path(), &["man"]);
    assert_eq!(man.status.code(), Some(0), "{}", text(&man.stderr));
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH launcher"),
        "{page}"
    );
    assert!(page.contains("spawn"), "{page}");
}

#[test]
fn help_lists_the_values_of_graph_backend_and_chaos_actions() {
    let runs = tempfile::tempdir().unwrap();
    let spawn = text(&launcher(runs.path(), &["spawn", "--help"]).stdout);
    for value in [
        "random-regular",
        "spanning-tree",
        "la-model",
        "mesh",
        "ditto",
    ] {
        assert!(
            spawn.contains(value),
            "spawn --help lacks {value}:\n{spawn}"
        );
    }
    let chaos = text(&launcher(runs.path(), &["chaos", "--help"]).stdout);
    for value in ["delay", "partition", "restart", "pause"] {
        assert!(
            chaos.contains(value),
            "chaos --help lacks {value}:\n{chaos}"
        );
    }
    let wrong = launcher(runs.path(), &["chaos", "explode"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong.stderr).contains("invalid value 'explode'"));
}

#[test]
fn a_docker_host_that_cannot_be_honoured_is_refused_not_ignored() {
    let runs = tempfile::tempdir().unwrap();
    let out = Command::new(binary("launcher"))
        .args(["images", "build"])
        .env("DOCKER_HOST", "ssh://someone@somewhere")
        .env("CMESH_RUNS_DIR", runs.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("DOCKER_HOST=ssh://someone@somewhere is not supported"),
        "{stderr}"
    );
    // An engine that is not there, named by DOCKER_HOST: the error names it (exit 1).
    let out = Command::new(binary("launcher"))
        .args(["images", "build"])
        .env("DOCKER_HOST", "unix:///tmp/cmesh-no-such-engine.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/tmp/cmesh-no-such-engine.sock"),
        "{}",
        text(&out.stderr)
    );
}
