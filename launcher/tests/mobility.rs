//! Mobility on this machine's Docker Engine: the plan re-draws the graph every 5 s and
//! the peers follow it, with every record delivered in the end. Needs the Docker Engine
//! and fails without one; never skips.
// suite: docker ~60s

use cmesh_testkit::{images_built, read_json, run_plan_json, unpack, workspace_root};

#[test]
fn peers_follow_a_redrawn_graph_and_still_deliver_everything() {
    images_built();
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let plan = workspace_root().join("configs/mobility.toml");
    let id = format!("t{}-mobility", std::process::id() % 100_000);
    let (summary, _) = run_plan_json(&runs, &plan, &id);
    assert_eq!(summary["coverage"], 1.0);
    let fault = &summary["faults"][0];
    assert_eq!(fault["id"], "plan#1");
    assert_eq!(fault["action"], "mobility");
    assert_eq!(fault["peers"], 12);
    assert_eq!(fault["paths"][0], "graph");

    // Each peer had more neighbours over the run than the graph's degree at any time,
    // and its events show the moves.
    let dir = runs.join(&id).join("extract/local");
    let mut more = 0;
    let mut timeline = String::new();
    for entry in std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()) {
        let unpacked = unpack(&entry.path().join("report.tar.gz"));
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with("-coordinator") {
            timeline = std::fs::read_to_string(unpacked.path().join("report/timeline.jsonl"))
                .unwrap_or_default();
            continue;
        }
        let report = read_json(&unpacked.path().join("report/report.json"));
        let events = std::fs::read_to_string(unpacked.path().join("report/events.jsonl")).unwrap();
        assert!(
            events.contains("\"mobility\""),
            "{name}: no re-draw in its events"
        );
        more += usize::from(report["neighbours"].as_array().unwrap().len() > 3);
    }
    assert!(more >= 6, "only {more} of 12 peers ever had new neighbours");
    // 30 s, every 5 s from 0: re-draws at 5, 10, 15, 20, 25 and 30 s.
    for epoch in 1..=5 {
        assert!(
            timeline.contains(&format!("plan#1 epoch {epoch}: graph re-drawn")),
            "epoch {epoch} in\n{timeline}"
        );
    }
}
