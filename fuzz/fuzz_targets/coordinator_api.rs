//! The coordinator's request bodies, applied to its state machine as its HTTP layer
//! would: each line is a route letter and a JSON body (r register, h heartbeat, s state,
//! b barrier NAME BODY, c chaos, q chaos-after, t a second passes). Four peers are
//! registered and planned first, so barriers and chaos are reachable. No body panics it.
#![no_main]
use cmesh_common::plan::PlanSpec;
use cmesh_common::protocol::{
    BarrierArrive, ChaosRequest, Heartbeat, RegisterRequest, StateChange,
};
use cmesh_coordinator::state::Run;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = PlanSpec {
        peers: 4,
        heartbeat_ms: 100,
        ..PlanSpec::default()
    };
    let mut run = Run::new("fuzz", spec, tx);
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
                    let _ = run.register_on(&r.peer, &r.addr, r.host.as_deref(), now);
                }
            }
            'h' => {
                if let Ok(b) = serde_json::from_str::<Heartbeat>(body) {
                    let _ = run.heartbeat(&b.peer, b.state, now);
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
            _ => {
                now += 1_000;
                run.sweep_lost(now);
                run.mobility_tick(now);
                if now > 300_000 {
                    run.deadline(now);
                }
            }
        }
    }
    let _ = serde_json::to_string(&run.status());
});
