//! What each fuzz target does to one input, as a plain function: the libFuzzer crate
//! (`fuzz/`, run with `scripts/fuzz`) calls these, and `cargo test` replays every input
//! under `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/` through them
//! (`tests/replay.rs`), so CI keeps every crash ever found fixed without building
//! libFuzzer. Each function panics only on a bug: whatever the bytes, a parser answers
//! with a value or an error.
//!
//! | target | what the input is |
//! |---|---|
//! | [`hosts_toml`] | a hosts.toml, as `spawn --hosts` and `hosts check` read it |
//! | [`plan_file`] | a plan file with groups and faults, as `spawn --config` reads it |
//! | [`peer_report`] | a peer's report.json, as `analyze` reads it |
//! | [`mesh_frame`] | bytes a mesh peer reads from any connection |
//! | [`coordinator_api`] | request bodies applied to the coordinator's state machine |
//! | [`adapter_line`] | lines an adapter program prints to its peer |

use std::collections::BTreeMap;

/// A target: what it does to one input.
pub type Target = fn(&[u8]);

/// Every target, by the name its directories under `fuzz/` have.
pub const TARGETS: [(&str, Target); 6] = [
    ("hosts_toml", hosts_toml),
    ("plan_file", plan_file),
    ("peer_report", peer_report),
    ("mesh_frame", mesh_frame),
    ("coordinator_api", coordinator_api),
    ("adapter_line", adapter_line),
];

/// hosts.toml: any text gives a hosts file with hosts in it, or a bad-input error.
pub fn hosts_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = cmesh_inputs::hosts::parse(text, "fuzz.toml") {
            assert!(!file.hosts.is_empty());
        }
    }
}

/// A plan file: parsed, turned into a plan spec (every bound checked), and for a small
/// plan, the execution plan and its faults' targets made, as the coordinator would.
pub fn plan_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = cmesh_inputs::plan_file::parse(text, "fuzz.toml") else {
        return;
    };
    let Ok(spec) = file.to_spec("fuzz.toml") else {
        return;
    };
    if spec.peers > 64 {
        return;
    }
    let peers: Vec<(String, String)> = (0..spec.peers)
        .map(|i| (format!("p-{i:04}"), format!("127.0.0.1:{}", 9000 + i)))
        .collect();
    if let Ok(plan) = cmesh_common::plan::ExecutionPlan::make("fuzz", &spec, peers, 1_000) {
        let names: Vec<String> = plan.peers.iter().map(|p| p.name.clone()).collect();
        if let Ok((groups, faults)) = cmesh_common::faults::check(&spec.groups, &spec.faults) {
            for f in &faults {
                let _ = f.targets(&names, &groups, spec.seed);
            }
        }
        let _ = plan.mobility_epochs();
    }
}

/// A report.json: parsed, checked against the plan, folded and merged into the run's
/// numbers; analyze answers with numbers or an "invalid report".
pub fn peer_report(data: &[u8]) {
    use cmesh_analysis::{Intake, RunInput};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(report) = cmesh_common::report::PeerReport::from_json(text) else {
        return;
    };
    let spec = cmesh_common::plan::PlanSpec {
        peers: 2,
        ..Default::default()
    };
    let mut intake = Intake::new(RunInput {
        run_id: "fuzz".into(),
        spec,
        hosts: 1,
        peers: vec![
            ("p-0001".into(), "local".into()),
            ("p-0002".into(), "local".into()),
        ],
        coordinator_host: "local".into(),
        clock_offsets_ms: BTreeMap::new(),
        reports: BTreeMap::new(),
        missing: BTreeMap::new(),
        unreadable: BTreeMap::new(),
        unreachable: BTreeMap::new(),
        coordinator: None,
        interventions: Default::default(),
    });
    intake.add("p-0001".into(), report);
    let analysis = intake.finish();
    let _ = serde_json::to_string(&analysis.summary);
}

/// Mesh frames: decoding never panics, and a frame that decodes encodes back to one
/// that decodes the same; the same bytes as a stream of length-prefixed frames.
pub fn mesh_frame(data: &[u8]) {
    use cmesh_peer::backend::mesh::wire;
    if let Ok(frame) = wire::decode(data) {
        let again = wire::encode(&frame);
        assert_eq!(wire::decode(&again[4..]).ok().as_ref(), Some(&frame));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut r = data;
        while let Ok(Some(_)) = wire::read(&mut r).await {}
    });
}

/// The coordinator's request bodies, applied to its state machine as its HTTP layer
/// would: each line is a route letter and a JSON body (r register, h heartbeat with its
/// live counters, s state,
/// b barrier NAME BODY, c chaos, q chaos-after, p publish TOPIC BODY, g publications
/// TOPIC AFTER, anything else: a second passes, and the live figures and the metrics are
/// read). Four peers are registered and planned first, so barriers and chaos are
/// reachable.
pub fn coordinator_api(data: &[u8]) {
    use cmesh_common::adapter::PublishRequest;
    use cmesh_common::protocol::{
        BarrierArrive, ChaosRequest, Heartbeat, RegisterRequest, StateChange,
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = cmesh_common::plan::PlanSpec {
        peers: 4,
        heartbeat_ms: 100,
        ..Default::default()
    };
    let mut run = cmesh_coordinator::state::Run::new("fuzz", spec, tx);
    let mut now = 1_000u64;
    for i in 0..4 {
        let _ = run.register(&format!("p{i}"), &format!("127.0.0.1:{}", 9000 + i), now);
    }
    for line in text.lines().take(256) {
        let mut chars = line.chars();
        let route = chars.next().unwrap_or('t');
        let body = chars.as_str().trim_start();
        match route {
            'r' => {
                if let Ok(r) = serde_json::from_str::<RegisterRequest>(body) {
                    let _ = run.register_on(&r.peer, &r.addr, r.host.as_deref(), r.cpus, now);
                }
            }
            'h' => {
                if let Ok(b) = serde_json::from_str::<Heartbeat>(body) {
                    let _ = run.heartbeat(&b.peer, b.state, now);
                    if let Some(live) = &b.live {
                        let _ = run.observe_live(&b.peer, live, now);
                    }
                }
            }
            's' => {
                if let Ok(c) = serde_json::from_str::<StateChange>(body) {
                    if let Some(d) = &c.report_sha256 {
                        let _ = run.report_digest(&c.peer, d, now);
                    }
                    let _ = run.change_state(&c.peer, c.state, c.reason, now);
                }
            }
            'b' => {
                let (name, body) = body.split_once(' ').unwrap_or((body, ""));
                if let Ok(a) = serde_json::from_str::<BarrierArrive>(body) {
                    let _ = run.arrive(name, &a.peer, a.value, now);
                    let _ = run.barrier_status(name);
                }
            }
            'c' => {
                if let Ok(c) = serde_json::from_str::<ChaosRequest>(body) {
                    let _ = run.chaos(&c, now);
                }
            }
            'q' => {
                let after = body.parse().unwrap_or(0);
                let _ = run.chaos_after(after);
            }
            'p' => {
                let (topic, body) = body.split_once(' ').unwrap_or((body, ""));
                if let Ok(p) = serde_json::from_str::<PublishRequest>(body) {
                    let _ = run.publish(topic, &p.peer, &p.value);
                }
            }
            'g' => {
                let (topic, after) = body.split_once(' ').unwrap_or((body, "0"));
                let _ = run.publications(topic, after.parse().unwrap_or(0), 1024);
            }
            _ => {
                now += 1_000;
                run.sweep_lost(now);
                run.mobility_tick(now);
                if now > 300_000 {
                    run.deadline(now);
                }
                let live = run.live_report(now);
                let _ = cmesh_coordinator::metrics::render(&live, run.live(), 2);
            }
        }
    }
    let _ = serde_json::to_string(&run.status());
}

/// Lines from an adapter program, into a peer's session (peer 1 of 4), with the clock
/// moving a second per line: each line gives a message or a protocol error, never a
/// panic; a written record's id comes back as the peer made it.
pub fn adapter_line(data: &[u8]) {
    use cmesh_common::adapter::FromAdapter;
    use cmesh_peer::backend::adapter::session::{Deadlines, Session};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut now = 1_000_000u64;
    let mut session = Session::new(1, 4, Deadlines::default(), now);
    for line in text.lines().take(256) {
        now += 1_000_000;
        if line == "w" {
            let id = session.write(now);
            assert_eq!(id.to_string().parse(), Ok(id));
            continue;
        }
        if let Ok(message) = FromAdapter::parse(line) {
            let _ = session.on_message(message, now);
        }
        let _ = session.check(now);
        assert_eq!(session.progress().len(), 4);
    }
}
