//! The adapter backend with real adapter programs, peers and a coordinator as processes
//! on loopback: the reference adapter (apps/toy) syncs a run to coverage 1.0 through
//! the sync service, and an adapter that crashes, prints garbage, never answers or
//! floods the sync service ends its own peer with `failed` and the reason, within its
//! deadline, while the other peers finish with their data.

use cmesh_testkit::{wait_child, workspace_root, Mesh};
use std::path::Path;
use std::time::{Duration, Instant};

fn toy() -> String {
    format!(
        "python3 {}",
        workspace_root().join("apps/toy/adapter.py").display()
    )
}

fn adapter_args(command: &str) -> Vec<String> {
    [
        "--backend",
        "adapter",
        "--adapter",
        command,
        "--adapter-ready-timeout",
        "3s",
        "--adapter-answer-timeout",
        "3s",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `n` peers: the first `bad.len()` run the given adapters, the rest the toy one.
fn run(dir: &Path, n: usize, bad: &[&str]) -> Mesh {
    let mut mesh = Mesh::coordinator_only(
        dir,
        n,
        &[
            "--duration",
            "4s",
            "--graph",
            "complete",
            "--write-interval",
            "100..200",
            "--heartbeat",
            "500ms",
            "--linger",
            "0s",
        ],
    )
    .unwrap();
    for i in 1..=n {
        let name = format!("peer-{i:04}");
        let command = bad.get(i - 1).map_or_else(toy, |c| c.to_string());
        let args = adapter_args(&command);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = mesh.spawn_peer(&name, &args).unwrap();
        mesh.peers.push((name, child));
    }
    mesh
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[test]
fn the_reference_adapter_syncs_every_record_through_its_app() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = run(dir.path(), 3, &[]);
    let (codes, coordinator) = mesh.wait(Duration::from_secs(90)).unwrap();
    for (name, code) in &codes {
        assert_eq!(*code, Some(0), "{name}: {}", log(dir.path(), name));
        let r = mesh.report(name).unwrap();
        assert_eq!(r["outcome"], "ok", "{name}: {}", r["error"]);
        assert_eq!(r["backend"], "adapter");
        assert!(r["adapter"]
            .as_str()
            .unwrap()
            .ends_with("apps/toy/adapter.py"));
        assert_eq!(r["distinct_origins"], 2, "{name}");
        assert_eq!(r["caught_up"], true, "{name}");
        assert!(r["records_produced"].as_u64().unwrap() > 5, "{name}");
        let received = r["records_received"].as_u64().unwrap();
        assert_eq!(
            r["message_latency"]["count"].as_u64(),
            Some(received),
            "{name}: a latency sample for every record received"
        );
        let a = &r["availability"];
        assert!(
            a["write_ok"].as_u64() <= a["write_probes"].as_u64(),
            "{name}: {a}"
        );
    }
    assert_eq!(coordinator, Some(0));
    // Its log carries the adapter's stderr, and the app's data directory was its own.
    assert!(dir.path().join("peer-0001/app").is_dir());
}

/// Runs one bad adapter beside two toy ones: the bad peer exits 1 within `within`
/// with `failed` and an error containing `reason`; the others finish ok.
fn one_bad_peer(adapter: &str, reason: &str, within: Duration) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut mesh = run(dir.path(), 3, &[adapter]);
    let (name, bad) = &mut mesh.peers[0];
    let code = wait_child(bad, within + Duration::from_secs(30))
        .unwrap()
        .code();
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{name}: {}", log(dir.path(), name));
    let report = mesh.report("peer-0001").unwrap();
    assert_eq!(report["outcome"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains(reason), "wanted `{reason}` in: {error}");
    eprintln!("the bad peer failed with: {error}");
    assert!(
        took < within + Duration::from_secs(25),
        "took {took:?}, the deadline is {within:?}"
    );
    let (codes, _) = mesh.wait(Duration::from_secs(90)).unwrap();
    for (name, code) in codes.iter().skip(1) {
        assert_eq!(*code, Some(0), "{name}: {}", log(dir.path(), name));
        let r = mesh.report(name).unwrap();
        assert_eq!(r["outcome"], "ok", "{name}: {}", r["error"]);
        assert!(r["records_produced"].as_u64().unwrap() > 0);
        assert!(
            r["records_received"].as_u64().unwrap() > 0,
            "{name} kept its data: {r}"
        );
    }
    report
}

#[test]
fn an_adapter_that_crashes_fails_its_peer_only() {
    // Ready, then it dies at its first write, saying why on stderr.
    let crash = r#"sh -c 'read init; echo "{\"type\":\"ready\"}"; read write; echo "out of cheese" >&2; exit 3'"#;
    let r = one_bad_peer(crash, "exited (exit status: 3)", Duration::from_secs(10));
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("out of cheese"), "stderr tail: {error}");
    assert!(
        r["records_produced"].as_u64().unwrap() >= 1,
        "the data it had is kept: {r}"
    );
}

#[test]
fn an_adapter_that_prints_garbage_fails_its_peer_only() {
    let garbage = r#"sh -c 'read init; echo "{\"type\":\"ready\"}"; read write; echo "hello, world"; sleep 60'"#;
    one_bad_peer(garbage, "not a protocol message", Duration::from_secs(10));
}

#[test]
fn an_adapter_that_never_answers_fails_its_peer_only() {
    one_bad_peer(
        "sleep 600",
        "did not answer `init` with `ready` within 3s",
        Duration::from_secs(3),
    );
}

#[test]
fn an_adapter_that_floods_the_sync_service_fails_its_peer_only() {
    let flood = r#"sh -c 'read init; echo "{\"type\":\"ready\"}"; i=0; while [ $i -lt 200 ]; do echo "{\"type\":\"publish\",\"topic\":\"junk\",\"value\":\"$i\"}"; i=$((i+1)); done; sleep 600'"#;
    one_bad_peer(
        flood,
        "the most one peer may publish",
        Duration::from_secs(10),
    );
}
