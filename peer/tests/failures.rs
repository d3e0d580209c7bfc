//! The peer as a process when things go wrong: bad input, an unreachable coordinator, a
//! wrong token, and a neighbour that dies mid-run.

use cmesh_testkit::{
    assert_bad_input, binary, token_file, wait_child, wait_until, BadInputFiles, Mesh,
};
use std::process::Command;
use std::time::Duration;

fn peer_args<'a>(
    name: &'a str,
    coordinator: &'a str,
    token: &'a str,
    out: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--name",
        name,
        "--coordinator",
        coordinator,
        "--token-file",
        token,
        "--output",
        out,
    ];
    args.extend(extra);
    args
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_creates_nothing() {
    let files = BadInputFiles::new();
    let (t, e, o) = (&*files.token, &*files.empty_token, &*files.out);
    let c = "127.0.0.1:7400";
    let cases = vec![
        (
            peer_args("p1", c, "/nonexistent/t", o, &[]),
            "/nonexistent/t",
        ),
        (peer_args("p1", c, e, o, &[]), "is empty"),
        (peer_args("p1", "127.0.0.1", t, o, &[]), "HOST:PORT"),
        (peer_args("p1", c, t, o, &["--listen", "here"]), "IP:PORT"),
        (peer_args("bad/name", c, t, o, &[]), "not a valid peer name"),
    ];
    assert_bad_input("peer", &cases, o);
}

#[test]
fn unreachable_coordinator_fails_with_a_report_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "t");
    let out = dir.path().join("p");
    // Nothing listens on port 1.
    let o = Command::new(binary("peer"))
        .args([
            "--name",
            "p1",
            "--coordinator",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--coordinator-timeout", "2s"])
        .arg("--output")
        .arg(&out)
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("127.0.0.1:1") && error.contains("could not be reached"),
        "{error}"
    );
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(
        events.lines().any(|l| l.contains("\"event\":\"failed\"")),
        "{events}"
    );
}

#[test]
fn wrong_token_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = Mesh::coordinator_only(dir.path(), 2, &[]).unwrap();
    let other = dir.path().join("other-token");
    std::fs::write(&other, "not-the-run-token").unwrap();
    let mut peer = Command::new(binary("peer"))
        .args([
            "--name",
            "p1",
            "--coordinator",
            &mesh.coordinator_addr,
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--output")
        .arg(dir.path().join("p1"))
        .arg("--token-file")
        .arg(&other)
        .spawn()
        .unwrap();
    // Far less than the 60 s it would retry an unreachable coordinator.
    let code = wait_child(&mut peer, Duration::from_secs(20))
        .unwrap()
        .code();
    assert_eq!(code, Some(1));
    let report = mesh.report("p1").unwrap();
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("refused the run token"));
}

#[test]
fn a_peer_killed_mid_run_is_lost_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::start(
        dir.path(),
        4,
        &[
            "--duration",
            "6s",
            "--graph",
            "complete",
            "--heartbeat",
            "300ms",
            "--linger",
            "0s",
        ],
    )
    .unwrap();
    let victim_events = dir.path().join("peer-0004/events.jsonl");
    wait_until(
        "peer-0004 to write",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            std::fs::read_to_string(&victim_events)
                .ok()
                .filter(|t| t.contains("\"event\":\"first_write\""))
        },
    )
    .unwrap();
    let (_, victim) = mesh.peers.pop().unwrap();
    let mut victim = victim;
    victim.kill().unwrap();
    victim.wait().unwrap();

    let (codes, coordinator) = mesh.wait(Duration::from_secs(90)).unwrap();
    for (name, code) in &codes {
        assert_eq!(
            *code,
            Some(0),
            "{name} should finish despite the lost neighbour"
        );
        let r = mesh.report(name).unwrap();
        assert_eq!(r["outcome"], "ok");
        assert!(
            r["origins"]["peer-0004"]["produced"].is_null(),
            "it never said how many it wrote"
        );
    }
    assert_eq!(coordinator, Some(1), "not every peer is done");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("coordinator/coordinator.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["status"]["counts"]["lost"], 1);
    assert_eq!(summary["status"]["counts"]["done"], 3);
    assert!(summary["error"].as_str().unwrap().contains("1 lost"));
    let lost = summary["status"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == "peer-0004")
        .unwrap();
    assert!(lost["reason"].as_str().unwrap().contains("no heartbeat"));
}
