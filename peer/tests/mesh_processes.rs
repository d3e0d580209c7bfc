//! 20 peers and a coordinator as processes on loopback, one test per graph shape. Every
//! peer must hear from all 19 others (multi-hop for the tree and the ring), with sane
//! latency figures, a clock estimate whose interval holds the true offset (0 here), and
//! exit 0.

use cmesh_testkit::Mesh;
use std::time::Duration;

const PEERS: usize = 20;

fn run_mesh(graph: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::start(
        dir.path(),
        PEERS,
        &["--duration", "10s", "--graph", graph, "--heartbeat", "1s"],
    )
    .unwrap();
    let (codes, coordinator) = mesh.wait(Duration::from_secs(120)).unwrap();
    for (name, code) in &codes {
        let log =
            std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
        assert_eq!(
            *code,
            Some(0),
            "{graph}: {name} exited {code:?}; its log:\n{log}"
        );
    }
    assert_eq!(
        coordinator,
        Some(0),
        "{graph}: the coordinator says not every peer is done"
    );

    for (name, _) in &codes {
        let r = mesh.report(name).unwrap();
        assert_eq!(r["schema"], "cmesh.peer-report");
        assert_eq!(r["peer"], name.as_str());
        assert_eq!(r["outcome"], "ok", "{graph}: {name}: {}", r["error"]);
        assert_eq!(
            r["distinct_origins"],
            (PEERS - 1) as u64,
            "{graph}: {name} did not hear from everyone"
        );
        assert!(
            r["records_produced"].as_u64().unwrap() > 0,
            "{graph}: {name} wrote nothing"
        );
        assert!(r["records_received"].as_u64().unwrap() > 0);
        assert_eq!(
            r["caught_up"], true,
            "{graph}: {name} did not receive every record"
        );
        let l = &r["message_latency"];
        let (p50, p99, max) = (
            l["p50_us"].as_u64().unwrap(),
            l["p99_us"].as_u64().unwrap(),
            l["max_us"].as_u64().unwrap(),
        );
        assert!(
            0 < p50 && p50 <= p99 && p99 <= max,
            "{graph}: {name}: p50 {p50} p99 {p99} max {max}"
        );
        assert_eq!(
            l["count"], r["records_received"],
            "one latency sample per received record"
        );
        assert!(!l["histogram"].as_str().unwrap().is_empty());
        // Its own scheduling lag, sampled all along, and per window.
        let lag = &r["scheduling_lag"];
        assert!(lag["count"].as_u64() > Some(10), "{graph}: {name}: {lag}");
        assert!(!r["time_series"]["scheduling_lag"]
            .as_array()
            .unwrap()
            .is_empty());
        // One machine, one clock: the true offset is 0, and every estimate's interval
        // must hold it.
        for at in ["start", "end"] {
            let e = &r["clock_sync"][at];
            let (offset, u) = (
                e["clock_offset_us"].as_i64().unwrap_or(i64::MAX),
                e["clock_uncertainty_us"].as_i64().unwrap_or(0),
            );
            assert!(
                offset.abs() <= u && e["samples"].as_u64() > Some(0),
                "{graph}: {name}: clock at the {at}: {e}"
            );
        }
        let events = std::fs::read_to_string(dir.path().join(name).join("events.jsonl")).unwrap();
        for event in ["registered", "plan", "writing", "report", "done"] {
            assert!(
                events
                    .lines()
                    .any(|l| l.contains(&format!("\"event\":\"{event}\""))),
                "{name}: events.jsonl has no {event} event"
            );
        }
    }

    // The coordinator's own report: plan, graph, timeline, final status.
    let out = dir.path().join("coordinator");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["peers"].as_array().unwrap().len(), PEERS);
    assert_eq!(plan["spec"]["graph"], graph);
    let dot = std::fs::read_to_string(out.join("graph.dot")).unwrap();
    assert!(dot.starts_with("graph cmesh") && dot.contains("peer-0001"));
    let timeline = std::fs::read_to_string(out.join("timeline.jsonl")).unwrap();
    let done = timeline
        .lines()
        .filter(|l| l.contains("\"event\":\"state\"") && l.contains("\"to\":\"done\""))
        .count();
    assert_eq!(done, PEERS, "the timeline records every peer reaching done");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("coordinator.json")).unwrap())
            .unwrap();
    assert_eq!(summary["all_done"], true);
    assert_eq!(summary["status"]["counts"]["done"], PEERS as u64);
}

#[test]
fn complete_graph_every_peer_hears_every_other() {
    run_mesh("complete");
}

#[test]
fn spanning_tree_delivers_over_many_hops() {
    run_mesh("spanning-tree");
}

#[test]
fn ring_delivers_over_many_hops() {
    run_mesh("ring");
}
