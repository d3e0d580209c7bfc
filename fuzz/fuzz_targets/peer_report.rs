//! A peer's report.json as `analyze` reads it: parsed, checked against the plan, folded
//! and merged into the run's numbers with a good report beside it. Whatever a container
//! wrote, analyze answers with numbers or an "invalid report", never a panic.
#![no_main]
use cmesh_analysis::{Intake, RunInput};
use cmesh_common::plan::PlanSpec;
use cmesh_common::report::PeerReport;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(report) = PeerReport::from_json(text) else {
        return;
    };
    let spec = PlanSpec {
        peers: 2,
        ..PlanSpec::default()
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
});
