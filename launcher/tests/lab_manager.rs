//! This machine's engine as the swarm manager, lab hosts as its workers: the product's
//! own shape. It makes this engine's swarm, and leaves it at the end, so it runs with
//! nothing else on this engine (the suite's `alone`). It needs the Docker Engine and
//! fails without one; it never skips.
// suite: alone ~120s

use cmesh_testkit::lab::{hosts_placed, Lab};
use cmesh_testkit::{launcher, read_json, text};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Leaves the swarm of this machine's engine (and the lab's workers) when dropped, so
/// the runs after this test make a swarm of their own on this machine.
struct LeaveSwarm(PathBuf);

impl Drop for LeaveSwarm {
    fn drop(&mut self) {
        let runs = tempfile::tempdir().unwrap();
        let out = launcher(
            runs.path(),
            &["swarm", "leave", "--hosts", self.0.to_str().unwrap()],
        );
        if !out.status.success() {
            eprintln!("swarm leave failed: {}", text(&out.stderr));
        }
    }
}

/// The product's own shape: this machine's engine as the swarm manager, lab hosts as its
/// workers. `lab up` writes the hosts file for it, advertising on the lab bridge's
/// gateway; `hosts check` tells a user who advertises the default-route address what to
/// set; the run passes across the three hosts.
#[test]
fn this_machines_engine_manages_lab_workers() {
    let lab = Lab::up("mixed", 2);
    let file = lab.dir.path().join("hosts-local-manager.toml");
    let text_of = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
    let written = text_of(&file);
    let gateway = written
        .lines()
        .find_map(|l| l.strip_prefix("advertise_addr = "))
        .expect("the local host advertises an address")
        .trim_matches('"')
        .to_owned();
    assert!(
        gateway.ends_with(".1"),
        "the lab bridge's gateway: {gateway}"
    );
    let _leave = LeaveSwarm(file.clone());
    let runs = tempfile::tempdir().unwrap();
    let check = |hosts: &PathBuf| {
        let out = launcher(
            runs.path(),
            &[
                "hosts",
                "check",
                "--hosts",
                hosts.to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array().unwrap().clone()
    };

    // As a user would write it: the local engine with its default address. The check
    // warns, on the local host, and names the gateway to advertise instead.
    let default = lab.dir.path().join("hosts-default-addr.toml");
    let without: String = written
        .lines()
        .filter(|l| !l.starts_with(&format!("advertise_addr = \"{gateway}\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&default, without).unwrap();
    let rows = check(&default);
    let local = rows.iter().find(|r| r["host"] == "local").unwrap();
    let findings = local["swarm_paths"].as_array().cloned().unwrap_or_default();
    let want = format!("advertise_addr = \"{gateway}\" for host `local`");
    assert!(
        findings.iter().any(|f| f["finding"] == "source_differs"
            && f["src"] == gateway.as_str()
            && f["severity"] == "warning"
            && f["message"].as_str().unwrap().contains(&want)),
        "{local}"
    );

    // A swarm this machine's engine may be in (other runs) keeps its address: leave it,
    // then the lab's file has nothing to warn about.
    let out = launcher(
        runs.path(),
        &["swarm", "leave", "--hosts", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for row in check(&file) {
        assert!(row["swarm_paths"].is_null(), "{row}");
    }

    let id = format!("t{}-mixed", std::process::id() % 100_000);
    let out = launcher(
        runs.path(),
        &[
            "run",
            "--hosts",
            file.to_str().unwrap(),
            "--peers",
            "9",
            "--duration",
            "15s",
            "--json",
            "--run-id",
            &id,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "launcher run failed:\n{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary.json on stdout");
    assert_eq!(summary["peers_reported"], 9, "{stderr}");
    assert_eq!(summary["coverage"], 1.0, "{stderr}");
    let manifest = read_json(&runs.path().join(&id).join("manifest.json"));
    assert_eq!(
        hosts_placed(&manifest),
        BTreeSet::from(["local", "lab-1", "lab-2"])
    );
    assert!(
        summary["cross_host_latency"]["count"].as_u64().unwrap() > 0,
        "records crossed the overlay between hosts: {summary}"
    );
}
